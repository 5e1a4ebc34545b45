#!/usr/bin/env bash
# GPU throughput check for a lent H100/H200 machine (under 8 minutes). Run from the repo root:
#   bash benchmarks/gpu.sh
# It installs pixelwise into .venv-gpu (the CUDA build of torch) and runs gpu_throughput.py.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv-gpu
.venv-gpu/bin/pip install -q -e .
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
timeout 420 .venv-gpu/bin/python benchmarks/gpu_throughput.py --steps 40 "$@"

#!/usr/bin/env bash
# GPU check for a lent H100/H200 machine (about 3 minutes). From the repo root:
#   bash benchmarks/gpu.sh [--camvid PATH] [--workers 14] [--device-workers 4 6 10] [--json FILE]
#   (other gpu_throughput.py options pass through; --device-workers measures --decode-on device)
# Needs a python3 (or $PYTHON) with CUDA PyTorch, torchvision, Pillow, numpy, tqdm and
# matplotlib; pixelwise runs from src/ without installing, so an offline machine works.
# 1. benchmarks/gpu_throughput.py: training images/s, model-only and end-to-end.
# 2. The command line on CUDA: synthetic data, train with bf16 and with --decode-on device, eval, predict.
# 3. The CUDA-only tests (nvJPEG memory race, no stream syncs in a training step), when pytest is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PYTHON=${PYTHON:-python3}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$PYTHON" benchmarks/gpu_throughput.py "$@"

echo "== command line on CUDA"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
pixelwise() { "$PYTHON" -m pixelwise "$@"; }
pixelwise data synth --out "$scratch/data" --num-train 64 --num-val 8 --classes 4
pixelwise train --data "$scratch/data" --out "$scratch/run" --epochs 3 --batch-size 16 --crop-size 96x96 \
    --device cuda --precision bf16 --workers 4 --warmup-epochs 0 --quiet
pixelwise train --data "$scratch/data" --out "$scratch/run-device" --epochs 3 --batch-size 16 --crop-size 96x96 \
    --device cuda --decode-on device --workers 4 --warmup-epochs 0 --quiet
pixelwise eval --checkpoint "$scratch/run/best.pt" --data "$scratch/data" --device cuda | head -3
pixelwise predict "$scratch/data/VOCdevkit/VOC2012/JPEGImages" --checkpoint "$scratch/run/best.pt" \
    --out "$scratch/predicted" --device cuda | tail -1
echo "== CUDA-only tests"
if "$PYTHON" -c "import pytest" 2>/dev/null; then
    "$PYTHON" -m pytest -q -p no:cacheprovider tests/test_engine.py tests/data/test_device_crops.py || echo "gpu.sh: CUDA-only tests FAILED"
else
    echo "pytest is not installed: CUDA-only tests not run"
fi
echo "gpu.sh: done"

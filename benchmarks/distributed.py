"""What DDP costs on the CPU: `pixelwise train` as 2 processes x 1 thread against 1 process x 2 threads.

The same command and global batch (CamVid, FCN-8s, the default recipe) runs in one process
with 2 torch threads and, under torchrun, in 2 processes with 1 thread each; the training
images/s each reaches (metrics.csv: data loading included, validation not) are compared.
Rounds alternate the two, so a drift in the machine's speed falls on both. From the repo root:

    python benchmarks/distributed.py [--camvid PATH] [--rounds 2] [--epochs 1] [--precision fp32]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from common import find_camvid, run_script
from pixelwise.cli_arguments import non_negative_int, positive_int
from pixelwise.errors import PixelwiseError
from pixelwise.serve.launch import free_port

MODES = {"1 process x 2 threads": 1, "2 processes x 1 thread": 2}


def train_command(processes: int, arguments: list[str]) -> tuple[list[str], dict]:
    """The command line and environment of one run in `processes` processes sharing the machine's 2 cores."""
    environment = {**os.environ, "OMP_NUM_THREADS": str(2 // processes), "GLOO_SOCKET_IFNAME": "lo"}
    if processes == 1:
        return [sys.executable, "-m", "pixelwise", "train", *arguments], environment
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(processes),
        "--master-addr", "127.0.0.1", "--master-port", str(free_port())]  # fmt: skip
    return [*launcher, "-m", "pixelwise", "train", *arguments], environment


def images_per_second(run_dir: Path) -> float:
    """Training images/s of the run's last epoch."""
    with open(run_dir / "metrics.csv") as handle:
        return float(list(csv.DictReader(handle))[-1]["images_per_second"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--camvid", help="CamVid folder (default: ../shared/data/camvid)")
    parser.add_argument("--rounds", type=positive_int, default=2, help="runs of each mode, alternated (default: 2)")
    parser.add_argument(
        "--epochs", type=positive_int, default=1, help="epochs per run; the last one is measured (default: 1)"
    )
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"], help="(default: fp32)")
    parser.add_argument(
        "--workers", type=non_negative_int, default=2, help="loader workers in all, shared out (default: 2)"
    )
    parser.add_argument("--out", default="benchmarks/results/distributed.json", help="where the JSON goes")
    args = parser.parse_args()
    try:
        camvid = find_camvid(args.camvid)
        if Path(args.out).is_dir():
            parser.error(f"{args.out}: is a folder; --out names the JSON file to write")
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).touch()  # before the minutes of training, not after
    except PixelwiseError as error:
        parser.error(str(error))
    except OSError as error:
        parser.error(f"{args.out}: cannot write the result ({error.strerror})")
    rates = {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory() as scratch:
        for round_number in range(args.rounds):
            for mode, processes in MODES.items():
                run_dir = Path(scratch) / f"{processes}-{round_number}"
                arguments = ["--data", str(camvid), "--out", str(run_dir), "--epochs", str(args.epochs), "--quiet",
                    "--device", "cpu", "--precision", args.precision, "--workers", str(args.workers // processes)]
                command, environment = train_command(processes, arguments)
                if subprocess.run(command, env=environment, stdout=subprocess.DEVNULL).returncode:
                    sys.exit(f"{mode}: pixelwise train failed (its error is above): {' '.join(command)}")
                rates[mode].append(images_per_second(run_dir))
                print(f"round {round_number + 1}: {mode}: {rates[mode][-1]:.2f} images/s", flush=True)
    one, two = (statistics.median(rates[mode]) for mode in MODES)
    result = {"rates": rates, "median_ratio": two / one, "precision": args.precision, "epochs": args.epochs}
    print(f"2 processes / 1 process: {two / one:.3f} (medians {two:.2f} / {one:.2f} images/s)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    run_script(main)

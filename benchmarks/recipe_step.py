"""What each model's own recipe costs per training step against SGD with cross-entropy.

The step is `benchmarks/models.py`'s (one batch of 8 random 256x320 crops, 11 classes); the two
recipes take turns in one run, so a change of load during it does not bias their ratio (which
depends on the CPU: BENCHMARKS.md names the machine of each figure). The FCNs' own recipe is SGD
with ce, so by default only the models whose recipe differs are timed.
"""

from __future__ import annotations

import argparse

import torch

from common import alternated_medians, result_line, run_script
from models import training_step
from pixelwise.cli_arguments import positive_int
from pixelwise.models import MODELS
from pixelwise.runtime import keep_freed_memory

BASELINE = {"optimizer": "sgd", "loss": "ce"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=positive_int, default=3, help="timed rounds per side (default 3)")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32", help="(default: fp32)")
    differing = [name for name, spec in MODELS.items() if {"optimizer": spec.optimizer, "loss": spec.loss} != BASELINE]
    parser.add_argument("--models", nargs="+", default=differing, choices=list(MODELS))
    args = parser.parse_args()
    keep_freed_memory()  # as every pixelwise command does
    torch.manual_seed(0)
    ratios = {}
    print(f"{args.precision} training steps")
    print("| model | own recipe | step, own recipe (s) | step, sgd and ce (s) | own / sgd |")
    print("|---|---|---|---|---|")
    for name in args.models:
        sides = {"own": training_step(name, args.precision), "sgd": training_step(name, args.precision, **BASELINE)}
        steps = alternated_medians(sides, args.repeats)
        ratio = ratios[f"{name}_own_over_sgd"] = steps["own"] / steps["sgd"]
        spec = MODELS[name]
        row = f"| {name} | {spec.optimizer}, {spec.loss} | {steps['own']:.2f} | {steps['sgd']:.2f} | {ratio:.2f}x |"
        print(row, flush=True)
    print(result_line(**ratios))


if __name__ == "__main__":
    run_script(main)

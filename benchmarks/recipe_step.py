"""What each model's own recipe costs per training step against SGD with cross-entropy, in fp32.

The step is `benchmarks/models.py`'s (one batch of 8 random 256x320 crops, 11 classes); the two
recipes take turns in one run, so a change of load during it does not bias their ratio (which
depends on the CPU: BENCHMARKS.md names the machine of each figure). The FCNs' own recipe is SGD
with ce, so by default only the models whose recipe differs are timed.
"""

from __future__ import annotations

import argparse

import torch

from common import alternated_medians, result_line
from models import training_step
from pixelwise.cli_arguments import positive_int
from pixelwise.models import MODELS
from pixelwise.runtime import keep_freed_memory

BASELINE = {"optimizer": "sgd", "loss": "ce"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=positive_int, default=3, help="timed rounds per side (default 3)")
    baseline = (BASELINE["optimizer"], BASELINE["loss"])
    differing = [name for name, spec in MODELS.items() if (spec.optimizer, spec.loss) != baseline]
    parser.add_argument("--models", nargs="+", default=differing, choices=list(MODELS))
    args = parser.parse_args()
    keep_freed_memory()  # as every pixelwise command does
    torch.manual_seed(0)
    ratios = {}
    print("| model | own recipe | step, own recipe (s) | step, sgd and ce (s) | own / sgd |")
    print("|---|---|---|---|---|")
    for name in args.models:
        sides = {"own": training_step(name, "fp32"), "sgd": training_step(name, "fp32", **BASELINE)}
        steps = alternated_medians(sides, args.repeats)
        ratios[f"{name}_own_over_sgd"] = steps["own"] / steps["sgd"]
        spec = MODELS[name]
        print(
            f"| {name} | {spec.optimizer}, {spec.loss} | {steps['own']:.2f} | {steps['sgd']:.2f} "
            f"| {ratios[f'{name}_own_over_sgd']:.2f}x |",
            flush=True,
        )
    print(result_line(**ratios))


if __name__ == "__main__":
    main()

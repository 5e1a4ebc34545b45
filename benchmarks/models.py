"""Every registered model on this CPU: parameters, GFLOPs at 360x480, training step and inference, fp32 and bf16.

A training step is pixelwise's `train_one_epoch` on one batch of 8 random 256x320 crops (the
default recipe's), 11 classes, with the model's own optimiser and loss; inference is
`Segmenter.for_inference().segment` on one 360x480 photo (CamVid's size). fp32 and bf16 take
turns in one run, so a change of load during it does not bias their ratio.
"""

from __future__ import annotations

import argparse
import json

import torch
from torch.utils.flop_counter import FlopCounterMode

from common import CAMVID_PHOTO, alternated_medians, result_line, run_script
from pixelwise.cli_arguments import positive_int
from pixelwise.engine import autocast, train_one_epoch
from pixelwise.losses import build_criterion
from pixelwise.models import MODELS, build_model
from pixelwise.segmenter import Segmenter
from pixelwise.config import TrainConfig
from pixelwise.schedule import build_optimizer
from pixelwise.runtime import keep_freed_memory

CLASSES, BATCH, CROP, PHOTO = 11, 8, (256, 320), CAMVID_PHOTO
CPU = torch.device("cpu")


def forward_gflops(network: torch.nn.Module) -> float:
    """GFLOPs of one forward pass on a 360x480 photo."""
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        network.eval()(torch.randn(1, 3, *PHOTO))
    return counter.get_total_flops() / 1e9


def training_step(name: str, precision: str, **recipe: str):
    """One `train_one_epoch` step on a fixed batch: the model's optimiser and loss unless `recipe` names others."""
    model = build_model(name, num_classes=CLASSES).to(memory_format=torch.channels_last)
    config = TrainConfig(model=name, **recipe)
    optimizer = build_optimizer(config, model)
    batch = (torch.randint(0, 256, (BATCH, 3, *CROP), dtype=torch.uint8), torch.randint(0, CLASSES, (BATCH, *CROP)))
    criterion = build_criterion(config.loss)
    return lambda: train_one_epoch(model, criterion, [batch], optimizer, None, CPU, precision=precision)


def inference(name: str, precision: str):
    """One photo through the folded model's `segment`."""
    segmenter = Segmenter(
        build_model(name, num_classes=CLASSES),
        model_name=name,
        class_names=tuple("abcdefghijk"),
        palette=((0, 0, 0),) * 11,
    ).for_inference()
    photo = torch.randn(1, 3, *PHOTO).contiguous(memory_format=torch.channels_last)

    def run():
        with torch.inference_mode(), autocast(CPU, precision):
            return segmenter.segment(photo)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=positive_int, default=5, help="timed rounds per side (default 5)")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()
    keep_freed_memory()  # as every pixelwise command does
    torch.manual_seed(0)
    rows = []
    print(
        "| model | encoder | parameters (M) | GFLOPs 360x480 | train step fp32 (s) | bf16 (s) | bf16 speed-up "
        "| inference fp32 (img/s) | bf16 (img/s) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name in args.models:
        network = build_model(name, num_classes=CLASSES)
        steps = alternated_medians({p: training_step(name, p) for p in ("fp32", "bf16")}, args.repeats)
        predicts = alternated_medians({p: inference(name, p) for p in ("fp32", "bf16")}, args.repeats)
        row = {
            "model": name, "encoder": MODELS[name].default_encoder,
            "parameters_m": sum(p.numel() for p in network.parameters()) / 1e6, "gflops": forward_gflops(network),
            "step_fp32_s": steps["fp32"], "step_bf16_s": steps["bf16"],
            "infer_fp32_img_s": 1 / predicts["fp32"], "infer_bf16_img_s": 1 / predicts["bf16"],
        }  # fmt: skip
        rows.append(row)
        print(
            f"| {name} | {row['encoder']} | {row['parameters_m']:.1f} | {row['gflops']:.1f} | {steps['fp32']:.2f} "
            f"| {steps['bf16']:.2f} | {steps['fp32'] / steps['bf16']:.2f}x | {row['infer_fp32_img_s']:.1f} "
            f"| {row['infer_bf16_img_s']:.1f} |",
            flush=True,
        )
    if args.json:
        with open(args.json, "w") as file:
            json.dump(rows, file, indent=1)
    print(result_line(**{f"{row['model']}_step_bf16_speedup": row["step_fp32_s"] / row["step_bf16_s"] for row in rows}))


if __name__ == "__main__":
    run_script(main)

"""Fine-tune a trained CamVid model with each of several losses, on crops or whole photos: what lifts thin classes?

Each loss gets a new run that starts from `--checkpoint`'s weights (`pixelwise train --init-from`)
with the model's own recipe but the loss, learning rate and epochs given here, in bfloat16 unless
`--precision fp32`. Give the checkpoint's own loss among `--losses` as the control: the same
extra epochs at the same rate with the loss unchanged. `--whole-photos` trains on whole
photos at their own size (no random scale; the crop is the photo) instead of the recipe's
scaled crops, as evaluation sees them. `--class-weighting` replaces the recipe's class weights
(its name is added to the run's key), as `--color-jitter S` adds -jitterS, `--weight-decay W`
-wdW, `--ema-decay D` -emaD and `--copy-paste CLASSES` -paste-CLASS.... A run already in
`--out` with the same settings is not trained again. Prints the starting point and each run on
CamVid val (fp32, whole photos), and each run's last epochs from its metrics.csv.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from camvid_models import recipe, result_key, train_and_measure, val_metrics
from common import (
    CAMVID_PHOTO, add_camvid_run_arguments, find_camvid, print_iou_table, result_line, results_so_far, run_script,
    run_variant,
)
from pixelwise.config import CLASS_WEIGHTINGS, TrainConfig
from pixelwise.losses import LOSSES
from pixelwise.runtime import keep_freed_memory
from pixelwise.starting_weights import checkpoint_model
from run_epochs import epoch_summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True, help="a CamVid run's last.pt or best.pt")
    parser.add_argument("--losses", nargs="+", choices=LOSSES, default=["lovasz"], help="(default: lovasz)")
    parser.add_argument("--epochs", type=int, default=15, help="(default: 15)")
    parser.add_argument("--lr", type=float, default=1e-4, help="peak learning rate (default: 1e-4)")
    parser.add_argument("--whole-photos", action="store_true", help="train on whole CamVid photos, unscaled")
    parser.add_argument("--class-weighting", choices=CLASS_WEIGHTINGS, help="(default: the recipe's)")
    add_camvid_run_arguments(parser, "benchmarks/results/fine_tune", "runs and results.json")
    args = parser.parse_args()
    keep_freed_memory()  # as every pixelwise command does
    camvid, out = find_camvid(args.camvid), Path(args.out)
    model, encoder = checkpoint_model(args.checkpoint)
    start = str(args.checkpoint.resolve())
    weighted = f"-{args.class_weighting}" if args.class_weighting else ""
    variant_suffix, variant = run_variant(args, camvid)
    suffix = ("-whole" if args.whole_photos else "") + weighted + variant_suffix
    keys = [result_key(loss, args.precision) + suffix for loss in args.losses]
    photos = {"crop_size": CAMVID_PHOTO, "scale_range": (1.0, 1.0)} if args.whole_photos else {}
    weighting = {"class_weighting": args.class_weighting} if args.class_weighting else {}
    configs = [
        TrainConfig(
            data=str(camvid), out=str(out / key), model=model, encoder=encoder, init_from=start, loss=loss,
            lr=args.lr, epochs=args.epochs, precision=args.precision, **photos, **weighting, **variant,
        )
        for loss, key in zip(args.losses, keys)
    ]  # fmt: skip  # built first, so that a bad setting is refused before --out is made or anything measured
    path, results = results_so_far(out)
    if results.get("start", {}).get("from") != start:  # the table's first row: the checkpoint itself
        results["start"] = {**val_metrics(start, camvid), "minutes": 0.0, "from": start}
        path.write_text(json.dumps(results, indent=1))
    for config, key in zip(configs, keys):
        done = results.get(key, {})
        if (done.get("epochs"), done.get("recipe"), done.get("from")) != (args.epochs, recipe(config), start):
            results[key] = {**train_and_measure(config, camvid, config.loss), "from": start}
            path.write_text(json.dumps(results, indent=1))
    shown = {key: results[key] for key in ("start", *keys)}
    print_iou_table(shown, tuple(results["start"]["iou"]))
    for key in keys:
        print(epoch_summary(key, out / key / "metrics.csv"))
    print(result_line(**{f"{key}_miou": value["miou"] for key, value in shown.items()}))


if __name__ == "__main__":
    run_script(main)

"""Do test-time augmentation and sliding windows help? Checkpoints on CamVid val in every inference mode.

Each mode evaluates the same checkpoint (folded for inference) on CamVid val, whole 480x360
photos, and reports val mIoU, pixel accuracy, the IoU of poles and signs, and seconds per
photo on this CPU, so a mode's gain can be weighed against its cost. Given several
checkpoints (one recipe's seeds), it then prints each mode's scores averaged over them.
`--input-scales` adds one pass at each of those sizes (the photo enlarged or shrunk, the
probabilities resized back).
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from common import SCORE_COLUMNS, VAL_ROW_HEADER, find_camvid, result_line, run_script, score_row, val_row
from pixelwise.cli_arguments import tta_scales
from pixelwise.inference import MS_SCALES
from pixelwise.predict import load_model
from pixelwise.runtime import keep_freed_memory

MODES = {
    "plain": {},
    "flip": {"tta": "flip"},
    "ms": {"tta": "ms"},
    "ms + flip": {"tta": "ms+flip"},
    "window 256x320": {"window": (256, 320)},  # the training crop
    "window 256x320 + flip": {"window": (256, 320), "tta": "flip"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", nargs="+", required=True, help="CamVid checkpoints; several: their mean too")
    parser.add_argument("--camvid", help="CamVid folder (default: ../shared/data/camvid)")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "auto"])
    parser.add_argument("--input-scales", type=tta_scales, default=(), help="single passes at these sizes: 1.25,1.5")
    args = parser.parse_args()
    modes = {**MODES, **{f"scale {scale:g}": {"tta": "ms", "scales": (scale,)} for scale in args.input_scales}}
    keep_freed_memory()  # as every pixelwise command does
    camvid = find_camvid(args.camvid)
    models = {checkpoint: load_model(checkpoint).for_inference() for checkpoint in args.checkpoint}  # refused up front
    runs = [checkpoint_modes(checkpoint, model, modes, camvid, args.precision) for checkpoint, model in models.items()]
    means = {name: {key: statistics.mean(run[name][key] for run in runs) for key in SCORE_COLUMNS} for name in modes}
    if len(runs) > 1:
        print(f"\nmean of {len(runs)} checkpoints")
        for name, mean in means.items():
            print(f"{name:24}{score_row(mean)}")
    print(result_line(**{name.replace(" ", "_").replace("+", "plus"): mean["miou"] for name, mean in means.items()}))


def checkpoint_modes(checkpoint: str, model, modes: dict[str, dict], camvid: Path, precision: str) -> dict[str, dict]:
    """`checkpoint`'s model scored in each mode, printed a row a mode as they come."""
    print(f"{checkpoint} ({model.model_name}, {model.model_record['encoder']}), CamVid val, {precision}")
    print(f"{'mode':24}{VAL_ROW_HEADER}")
    scores = {}
    for name, settings in modes.items():
        model.set_inference(**{"tta": "none", "window": None, "scales": MS_SCALES, **settings})
        scores[name], row = val_row(model, camvid, precision)
        print(f"{name:24}{row}", flush=True)
    return scores


if __name__ == "__main__":
    run_script(main)

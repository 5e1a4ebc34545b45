"""Do test-time augmentation and sliding windows help? One checkpoint on CamVid val in every inference mode.

Each mode evaluates the same checkpoint (folded for inference) on CamVid val, whole 480x360
photos, and reports val mIoU, pixel accuracy, the IoU of poles and signs, and seconds per
photo on this CPU, so a mode's gain can be weighed against its cost. `--input-scales` adds one
pass at each of those sizes (the photo enlarged or shrunk, the probabilities resized back).
"""

from __future__ import annotations

import argparse

from common import VAL_ROW_HEADER, find_camvid, result_line, run_script, val_row
from pixelwise.cli_arguments import tta_scales
from pixelwise.inference import MS_SCALES
from pixelwise.predict import load_model
from pixelwise.runtime import keep_freed_memory

MODES = {
    "plain": {},
    "flip": {"tta": "flip"},
    "ms": {"tta": "ms"},
    "window 256x320": {"window": (256, 320)},  # the training crop
    "window 256x320 + flip": {"window": (256, 320), "tta": "flip"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="a pixelwise checkpoint trained on CamVid")
    parser.add_argument("--camvid", help="CamVid folder (default: ../shared/data/camvid)")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "auto"])
    parser.add_argument("--input-scales", type=tta_scales, default=(), help="single passes at these sizes: 1.25,1.5")
    args = parser.parse_args()
    modes = {**MODES, **{f"scale {scale:g}": {"tta": "ms", "scales": (scale,)} for scale in args.input_scales}}
    keep_freed_memory()  # as every pixelwise command does
    camvid = find_camvid(args.camvid)
    model = load_model(args.checkpoint).for_inference()
    print(f"{args.checkpoint} ({model.model_name}, {model.model_record['encoder']}), CamVid val, {args.precision}")
    print(f"{'mode':24}{VAL_ROW_HEADER}")
    results = {}
    for name, settings in modes.items():
        model.set_inference(**{"tta": "none", "window": None, "scales": MS_SCALES, **settings})
        results[name], row = val_row(model, camvid, args.precision)
        print(f"{name:24}{row}", flush=True)
    print(result_line(**{name.replace(" ", "_").replace("+", "plus"): value for name, value in results.items()}))


if __name__ == "__main__":
    run_script(main)

"""Which model to pick: every registered model trained from scratch on CamVid with its recipe, then measured.

Each model trains on CamVid train (367 photos) with `pixelwise.train` and the recipe in RECIPES,
in bfloat16 unless `--precision fp32` (which checks what bf16 costs), and is evaluated on CamVid val (101
photos, whole 480x360, void ignored). A model whose result with the same epochs is already in
`--out` is not trained again, so the models can run one at a time (`--models`). Writes
results.json, a table, and a figure of val mIoU against training minutes.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from matplotlib.figure import Figure

from common import find_camvid, print_iou_table, result_line
from pixelwise.config import TrainConfig
from pixelwise.models import MODELS
from pixelwise.predict import load_model
from pixelwise.runtime import keep_freed_memory
from pixelwise.training import evaluate_split, train

# The FCNs keep the default recipe. The smp and torchvision decoders are deeper and randomly
# initialised: AdamW adapts each layer's step where one SGD rate did not suit them all (U-Net on
# the SGD recipe reached 0.52, poles 0.00), and dice adds a per-class overlap term that weighs a
# thin class as much as a wide one, for poles and signs.
DECODER_RECIPE = {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 1e-4, "loss": "ce+dice"}
RECIPES = {name: {} if name.startswith("fcn") else DECODER_RECIPE for name in MODELS}


def result_key(name: str, precision: str) -> str:
    """A model's entry in results.json and its run folder: its name, with the precision when that is not bf16."""
    return name if precision == "bf16" else f"{name}-{precision}"


def train_and_measure(name: str, camvid: Path, out: Path, epochs: int, precision: str) -> dict:
    """Train `name` with its recipe; its val metrics, minutes, recipe and precision."""
    key = result_key(name, precision)
    config = TrainConfig(
        data=str(camvid), out=str(out / key), model=name, epochs=epochs, precision=precision, **RECIPES[name]
    )
    started = time.perf_counter()
    train(config, overwrite=True, progress=False, log=lambda line: print(f"{name}: {line}", flush=True))
    minutes = (time.perf_counter() - started) / 60
    model = load_model(out / key / "last.pt").for_inference()
    metrics = evaluate_split(model, camvid, "val", workers=2)
    result = {**metrics.as_dict(model.class_names), "minutes": minutes, "epochs": epochs, "recipe": RECIPES[name]}
    return {**result, "precision": precision}


def write_figure(results: dict, path: Path) -> None:
    """Val mIoU against training minutes, one labelled point per model."""
    figure = Figure(figsize=(6, 4), dpi=120)
    axes = figure.subplots()
    for name, value in results.items():
        axes.scatter(value["minutes"], value["miou"])
        axes.annotate(name, (value["minutes"], value["miou"]), textcoords="offset points", xytext=(4, 4))
    axes.margins(x=0.2, y=0.1)  # room for the labels of the outermost points
    axes.set_xlabel("training minutes (CPU)")
    axes.set_ylabel("CamVid val mIoU")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--epochs", type=int, default=12, help="epochs for every model (default: 12)")
    parser.add_argument("--precision", default="bf16", choices=["bf16", "fp32"], help="(default: bf16)")
    parser.add_argument("--camvid", help="CamVid folder (default: ../shared/data/camvid)")
    parser.add_argument("--out", default="benchmarks/results/models", help="runs, results.json and figure")
    args = parser.parse_args()
    keep_freed_memory()  # as every pixelwise command does
    camvid, out = find_camvid(args.camvid), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "results.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    for name in args.models:
        key = result_key(name, args.precision)
        done = results.get(key, {})
        if done.get("epochs") == args.epochs and done.get("recipe") == RECIPES[name]:
            continue
        results[key] = train_and_measure(name, camvid, out, args.epochs, args.precision)
        path.write_text(json.dumps(results, indent=1))
    print_iou_table(results, tuple(next(iter(results.values()))["iou"]))
    write_figure(results, out / "miou_vs_minutes.png")
    print(result_line(**{f"{key.replace('-', '_')}_miou": value["miou"] for key, value in results.items()}))


if __name__ == "__main__":
    main()

"""Which model to pick: every registered model trained from scratch on CamVid with its recipe, then measured.

Each model trains on CamVid train (367 photos) with `pixelwise.train` and its own recipe (the
optimiser and loss `pixelwise models` lists), in bfloat16 unless `--precision fp32` (which checks
what bf16 costs), and is evaluated on CamVid val (101 photos, whole 480x360, void ignored). A
model whose result with the same epochs and recipe is already in `--out` is not trained again, so
the models can run one at a time (`--models`). `--encoder` trains them on another encoder than
their default, as a run of its own (its key suffixed with the encoder's name),
`--color-jitter S` with that jitter (its key suffixed -jitterS), `--weight-decay W` with
that decay instead of the recipe's (its key suffixed -wdW), `--ema-decay D` validating and
saving the weights' moving average (-emaD), and `--copy-paste CLASSES` with those classes
pasted between photos (its key suffixed -paste-CLASS...). Writes
results.json, a table, each run's mean val mIoU over its last five epochs and its best epoch
(from its metrics.csv), and a figure of val mIoU against wall minutes.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from common import (
    add_camvid_run_arguments, find_camvid, print_iou_table, result_line, results_so_far, run_script, run_variant,
)
from pixelwise.config import TrainConfig
from pixelwise.models import MODELS, model_spec, resolve_encoder
from pixelwise.predict import load_model
from pixelwise.runtime import keep_freed_memory
from pixelwise.training import evaluate_split, train
from run_epochs import epoch_summary

RECIPE = ("optimizer", "lr", "weight_decay", "loss")  # the settings in which the models' recipes differ


def recipe(config: TrainConfig) -> dict:
    """The settings of `config` in which the models' recipes differ, as results.json records them."""
    return {setting: getattr(config, setting) for setting in RECIPE}


def result_key(name: str, precision: str) -> str:
    """A model's entry in results.json and its run folder: its name, with the precision when that is not bf16."""
    return name if precision == "bf16" else f"{name}-{precision}"


def model_key(name: str, encoder: str | None) -> str:
    """A model's name, suffixed with `encoder` when one is given other than the model's default (refused if not its)."""
    encoder = resolve_encoder(name, encoder)
    return name if encoder == model_spec(name).default_encoder else f"{name}-{encoder}"


def val_metrics(checkpoint: Path | str, camvid: Path) -> dict:
    """A checkpoint's metrics on CamVid val: whole photos, fp32, BatchNorm folded as predict runs it."""
    model = load_model(checkpoint).for_inference()
    return evaluate_split(model, camvid, "val", workers=2).as_dict(model.class_names)


def train_and_measure(config: TrainConfig, camvid: Path, label: str) -> dict:
    """Train per `config`, logging lines as `label`; its val metrics, minutes, epochs, recipe and precision."""
    started = time.perf_counter()
    train(config, overwrite=True, progress=False, log=lambda line: print(f"{label}: {line}", flush=True))
    minutes = (time.perf_counter() - started) / 60
    result = {**val_metrics(Path(config.out) / "last.pt", camvid), "minutes": minutes, "epochs": config.epochs}
    return {**result, "recipe": recipe(config), "precision": config.precision}


LABEL_PLACES = (
    (4, 4, "left"), (4, -12, "left"), (0, 7, "center"), (0, -15, "center"), (-4, 4, "right"), (-4, -12, "right"),
)  # fmt: skip
"""Where a point's label may go, in order of preference: (x, y) offset in points and its alignment."""
CLEARANCE = 8  # pixels between a label and any other point, so that no label reads as a neighbour's


def label_points(axes, names: list[str], points: list[tuple[float, float]]) -> None:
    """Label each point at the first of LABEL_PLACES inside the axes, clear of other points and earlier labels.

    Where no place is clear, the first with the fewest clashes. Call once the axes' limits and
    layout are final: the check is made in pixels.
    """
    renderer, frame = axes.figure.canvas.get_renderer(), axes.get_window_extent()
    markers = [axes.transData.transform(point) for point in points]
    placed = []  # the boxes of the labels so far
    for index, (name, point) in enumerate(zip(names, points)):
        others = markers[:index] + markers[index + 1 :]
        label = axes.annotate(name, point, xytext=LABEL_PLACES[0][:2], textcoords="offset points")

        def clashes(place: tuple[int, int, str]) -> int:
            label.xyann = place[:2]  # moves the label there
            label.set_horizontalalignment(place[2])
            box = label.get_window_extent(renderer)
            outside = not (frame.contains(box.x0, box.y0) and frame.contains(box.x1, box.y1))
            near = sum(box.padded(CLEARANCE).contains(*marker) for marker in others)
            return outside + near + sum(box.overlaps(earlier) for earlier in placed)

        clashes(min(LABEL_PLACES, key=clashes))  # min keeps the first of equals: the preferred place
        placed.append(label.get_window_extent(renderer))


def miou_figure(results: dict) -> Figure:
    """Val mIoU against wall minutes (training and the validation after each epoch), a point per model."""
    figure = Figure(figsize=(6, 4), dpi=120)
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    points = [(value["minutes"], value["miou"]) for value in results.values()]
    for point in points:
        axes.scatter(*point)
    axes.margins(x=0.2, y=0.1)  # room for the labels of the outermost points
    axes.set_xlabel("wall minutes (CPU; training and validation)")
    axes.set_ylabel("CamVid val mIoU")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    label_points(axes, list(results), points)
    return figure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--epochs", type=int, default=12, help="epochs for every model (default: 12)")
    parser.add_argument("--encoder", help="encoder for every model (default: each model's own; `pixelwise models`)")
    add_camvid_run_arguments(parser, "benchmarks/results/models", "runs, results.json and figure")
    args = parser.parse_args()
    keep_freed_memory()  # as every pixelwise command does
    camvid, out = find_camvid(args.camvid), Path(args.out)
    suffix, variant = run_variant(args, camvid)
    keys = {name: result_key(model_key(name, args.encoder), args.precision) + suffix for name in args.models}
    configs = {
        key: TrainConfig(
            data=str(camvid), out=str(out / key), model=name, encoder=args.encoder, epochs=args.epochs,
            precision=args.precision, **variant,
        )
        for name, key in keys.items()
    }  # built first, so that a bad setting is refused before --out is made
    path, results = results_so_far(out)
    for key, config in configs.items():
        done = results.get(key, {})
        if done.get("epochs") == args.epochs and done.get("recipe") == recipe(config):
            continue
        results[key] = train_and_measure(config, camvid, key)
        path.write_text(json.dumps(results, indent=1))
    print_iou_table(results, tuple(next(iter(results.values()))["iou"]))
    for key in results:
        print(epoch_summary(key, out / key / "metrics.csv"))
    miou_figure(results).savefig(out / "miou_vs_minutes.png")
    print(result_line(**{f"{key}_miou": value["miou"] for key, value in results.items()}))


if __name__ == "__main__":
    run_script(main)

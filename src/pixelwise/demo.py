"""`pixelwise demo`: synthesise data, train, evaluate, predict, and write a small report."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from pixelwise.config import TrainConfig
from pixelwise.data.io import read_image
from pixelwise.data.synthetic import make_synthetic_voc
from pixelwise.data.voc import VOCSegmentation, is_voc_tree
from pixelwise.errors import TrainingError
from pixelwise.files import refuse_a_file_where_a_folder_goes
from pixelwise.jsontext import strict_json
from pixelwise.predict import load_model
from pixelwise.run_directory import CONFIG_FILE, earlier_checkpoints
from pixelwise.training import Log, evaluate_split, train
from pixelwise.visualize import comparison_figure, overlay

# Many images for few epochs: synthetic photos are free, and 800 images seen 7 times generalise
# far better than 200 seen 28 times for the same compute (docs/training.md).
DEMO_DATA = {"num_train": 800, "num_val": 100, "num_classes": 5, "size_range": (96, 192), "seed": 0}
DEMO_RECIPE = {"epochs": 7, "batch_size": 8, "crop_size": (128, 128), "scale_range": (0.75, 1.5), "workers": 2}
PREVIEW_IMAGES = 6


def write_prediction_figure(model, dataset: VOCSegmentation, path: Path, count: int = PREVIEW_IMAGES) -> None:
    """Rows of photo, ground truth and prediction for the first `count` images, with a legend."""
    rows = []
    for index in range(min(count, len(dataset))):
        photo = read_image(dataset.samples[index][0])
        rows.append((photo, [dataset.load(index)[1].numpy(), model.predict(photo)]))
    comparison_figure(rows, model.class_names, model.palette).save(path)


def refuse_a_run_not_its_own(run_dir: Path, data_dir: Path) -> None:
    """The demo replaces its own earlier run, one that trained on the demo's data folder, and no other."""
    if not earlier_checkpoints(run_dir):
        return
    try:  # resolved here too: earlier releases wrote the path as it was given
        trained_on = Path(json.loads((run_dir / CONFIG_FILE).read_text(encoding="utf-8"))["data"]).resolve()
    except (OSError, UnicodeDecodeError, ValueError, TypeError, KeyError):
        trained_on = None
    if trained_on != data_dir.resolve():
        raise TrainingError(
            f"{run_dir}: holds a run that did not train on the demo's data ({data_dir}), which the demo would "
            "replace: move that run, or give the demo another folder"
        )


def run_demo(out_dir: Path | str, *, epochs: int | None = None, progress: bool = True, log: Log | None = None) -> dict:
    """Run the whole demo into `out_dir`; return the summary that is also saved as metrics.json."""
    log = log or (lambda message: None)
    out_dir = Path(out_dir)
    data_dir = out_dir / "data"
    refuse_a_file_where_a_folder_goes(out_dir / "report" / "overlays")  # and above it: before minutes of training
    refuse_a_run_not_its_own(out_dir / "run", data_dir)
    if not is_voc_tree(data_dir):
        log(f"writing the synthetic dataset to {data_dir}")
        make_synthetic_voc(data_dir, **DEMO_DATA)
    recipe = {**DEMO_RECIPE, **({"epochs": epochs} if epochs else {})}
    config = TrainConfig(data=str(data_dir), out=str(out_dir / "run"), **recipe)
    result = train(config, overwrite=True, progress=progress, log=log)  # the demo owns its run folder
    model = load_model(result.run_dir / "best.pt").for_inference()
    metrics = evaluate_split(model, data_dir, "val")
    report = out_dir / "report"
    (report / "overlays").mkdir(parents=True, exist_ok=True)
    val = VOCSegmentation(data_dir, "val")
    write_prediction_figure(model, val, report / "predictions.png")
    for image_path, _ in val.samples[:PREVIEW_IMAGES]:
        photo = read_image(image_path)
        overlay(photo, model.predict(photo), model.class_names, model.palette).save(
            report / "overlays" / f"{image_path.stem}.png"
        )
    shutil.copyfile(result.run_dir / "curves.png", report / "curves.png")
    summary = {
        "val": metrics.as_dict(model.class_names),
        "best_epoch": result.best_epoch,
        "epochs": config.epochs,
        "train_seconds": sum(row["seconds"] for row in result.history),
        "checkpoint": str(result.run_dir / "best.pt"),
    }
    (report / "metrics.json").write_text(strict_json(summary) + "\n", encoding="utf-8")
    return {**summary, "report": str(report)}

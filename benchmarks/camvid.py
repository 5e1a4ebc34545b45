"""Accuracy on real photos: D2L's recipe against pixelwise's default recipe on CamVid, from scratch.

Both train the same number of epochs on CamVid train (367 photos, 480x360) and are evaluated
by pixelwise's confusion matrix on CamVid val at full resolution (void ignored):
(a) D2L: FCN-32s, `d2l.VOCSegDataset` (random 320x480 crops), the chapter's loss,
    SGD lr 0.001 weight decay 1e-3 without momentum, `d2l.train_ch13`, batch 32;
(b) pixelwise: `pixelwise.train` with its defaults (docs/training.md).
Writes a figure of val photos with both sides' predictions. Runs for tens of minutes (about
100 at the default 30 epochs: pixelwise 30, D2L 70), so the sides can also run one at a time
(`--only`): each keeps its weights and result in `--out`, and the table, figure and RESULT
line include the other side's saved result when it has the same epochs.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader

from common import (
    camvid_as_voc, chapter_fcn, chapter_loss, find_camvid, print_iou_table, result_line, run_script,
)
from pixelwise.config import CLASS_WEIGHTINGS, TrainConfig
from pixelwise.data.folder import FolderSegmentation
from pixelwise.data.transforms import normalize_batch
from pixelwise.engine import evaluate
from pixelwise.metrics import SegmentationMetrics
from pixelwise.predict import load_model
from pixelwise.runtime import keep_freed_memory
from pixelwise.training import train
from pixelwise.visualize import comparison_figure


class CropToInput(nn.Module):
    """D2L's network returns multiples of 32 (384 rows for 360); keep the input's top-left window."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)[..., : x.shape[-2], : x.shape[-1]]

    def segment(self, x: torch.Tensor) -> torch.Tensor:
        """Class indices, as pixelwise's `evaluate` asks its model for them."""
        return self(x).argmax(dim=1)


def train_d2l(camvid: Path, epochs: int, batch_size: int, scratch: Path) -> nn.Module:
    """D2L's chapter 13.11 recipe through the d2l package's own dataset and loop."""
    from d2l import torch as d2l

    voc_dir = camvid_as_voc(camvid, scratch)
    with contextlib.redirect_stdout(io.StringIO()):  # d2l prints and draws an animated plot
        train_set, test_set = (d2l.VOCSegDataset(is_train, (320, 480), str(voc_dir)) for is_train in (True, False))
        train_iter = DataLoader(train_set, batch_size, shuffle=True, drop_last=True, num_workers=2)
        test_iter = DataLoader(test_set, batch_size, drop_last=True, num_workers=2)
        net = chapter_fcn(11)
        trainer = torch.optim.SGD(net.parameters(), lr=0.001, weight_decay=1e-3)
        d2l.train_ch13(net, train_iter, test_iter, chapter_loss, trainer, epochs, [torch.device("cpu")])
    return CropToInput(net)


def evaluate_full(model: nn.Module, camvid: Path) -> SegmentationMetrics:
    """pixelwise's metrics on CamVid val, whole 480x360 photos."""
    loader = DataLoader(FolderSegmentation(camvid, "val"), batch_size=1, num_workers=2)
    return evaluate(model, loader, 11, torch.device("cpu"))


def write_figure(models: dict[str, nn.Module], camvid: Path, path: Path, count: int = 4) -> None:
    """Rows: photo, ground truth, then each side's prediction (in the order of `models`)."""
    dataset = FolderSegmentation(camvid, "val")
    rows = []
    with torch.inference_mode():
        for index in range(0, len(dataset), len(dataset) // count)[:count]:
            image, truth = dataset.load(index)
            batch = normalize_batch(image.unsqueeze(0))
            predictions = [model.eval()(batch).argmax(1)[0].numpy() for model in models.values()]
            rows.append((Image.fromarray(image.permute(1, 2, 0).numpy()), [truth.numpy(), *predictions]))
    comparison_figure(rows, dataset.class_names, dataset.palette).save(path)


def weights_path(out: Path, side: str) -> Path:
    """Where each side's final weights are kept."""
    return out / "pixelwise-run" / "last.pt" if side == "pixelwise" else out / "d2l.pt"


def saved_models(out: Path, sides) -> dict[str, nn.Module]:
    """Each side's final weights as written by its run."""
    models = {}
    for side in sides:
        if side == "pixelwise":
            models[side] = load_model(weights_path(out, side))
        else:
            net = chapter_fcn(11)
            net.load_state_dict(torch.load(weights_path(out, side), weights_only=True))
            models[side] = CropToInput(net)
    return models


def merged_results(out: Path, epochs: int, new: dict) -> dict:
    """Earlier results with the same epochs and saved weights (from a run with `--only`), updated by this run's."""
    path = out / "results.json"
    earlier = json.loads(path.read_text()) if path.exists() else {}
    merged = {
        side: value
        for side, value in earlier.items()
        if value.get("epochs") == epochs and weights_path(out, side).exists()
    }
    merged.update(new)
    return {side: merged[side] for side in ("pixelwise", "d2l") if side in merged}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = TrainConfig()
    parser.add_argument(
        "--quick", action="store_true", help="1 epoch each (a smoke run, under a few minutes; numbers mean little)"
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=defaults.epochs,
        help=f"epochs for both sides (default: {defaults.epochs}, the default recipe's)",
    )
    parser.add_argument("--camvid", help="CamVid folder (default: ../shared/data/camvid)")
    parser.add_argument(
        "--out", default="benchmarks/results/camvid", help="folder for runs, weights, figure and results.json"
    )
    parser.add_argument(
        "--only",
        choices=["d2l", "pixelwise"],
        help=(
            "run one side only; the table, figure and RESULT line then also use the other side's saved result "
            "with the same epochs"
        ),
    )
    parser.add_argument(
        "--class-weighting",
        default=defaults.class_weighting,
        choices=CLASS_WEIGHTINGS,
        help="pixelwise's loss weighting (default: the default recipe's, %(default)s)",
    )
    args = parser.parse_args()
    keep_freed_memory()  # as every pixelwise command does
    epochs = 1 if args.quick else args.epochs
    camvid = find_camvid(args.camvid)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    class_names = FolderSegmentation(camvid, "val").class_names
    new = {}
    if args.only != "d2l":
        started = time.perf_counter()
        config = TrainConfig(
            data=str(camvid), out=str(out / "pixelwise-run"), epochs=epochs, class_weighting=args.class_weighting
        )
        result = train(config, overwrite=True, progress=False, log=print)
        minutes = (time.perf_counter() - started) / 60
        metrics = evaluate_full(load_model(result.run_dir / "last.pt"), camvid)
        run = {"minutes": minutes, "epochs": epochs, "class_weighting": args.class_weighting}
        new["pixelwise"] = {**metrics.as_dict(class_names), **run}
    if args.only != "pixelwise":
        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as scratch:
            model = train_d2l(camvid, epochs, 32, Path(scratch))
        torch.save(model.net.state_dict(), weights_path(out, "d2l"))
        minutes = (time.perf_counter() - started) / 60
        new["d2l"] = {**evaluate_full(model, camvid).as_dict(class_names), "minutes": minutes, "epochs": epochs}
    results = merged_results(out, epochs, new)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"CamVid train -> val (101 photos, 480x360, void ignored), {epochs} epochs each, from scratch, CPU")
    print_iou_table(results, class_names)
    write_figure(saved_models(out, results), camvid, out / "predictions.png")
    keys = {"pixelwise": "miou", "d2l": "miou_d2l"}
    print(result_line(**{keys[side]: value["miou"] for side, value in results.items()}))


if __name__ == "__main__":
    run_script(main)

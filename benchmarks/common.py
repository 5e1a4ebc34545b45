"""Helpers shared by the scripts in benchmarks/: real data as a VOC tree, timing, memory, peaks."""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torchvision
from PIL import Image
from torch import nn
from torch.nn import functional as F

from pixelwise.data.check import dataset_layout
from pixelwise.data.class_paste import class_paste
from pixelwise.data.folder import FolderSegmentation
from pixelwise.data.labels import VOC_BOUNDARY_COLOR, VOC_COLORMAP, palette_png
from pixelwise.data.voc import SPLIT_DIR
from pixelwise.errors import DatasetError, PixelwiseError, one_line
from pixelwise.ops import bilinear_kernel
from pixelwise.segmenter import Segmenter

SHARED_CAMVID = Path(__file__).resolve().parents[2] / "shared" / "data" / "camvid"  # beside the checkout
CAMVID_PHOTO = (360, 480)  # height, width of every photo in the copy
THIN_CLASSES = ("pole", "sign")  # the CamVid classes whose IoU the benchmarks issue sets a target for
SCORE_COLUMNS = {"miou": ("mIoU", 7), "pixel_accuracy": ("pix acc", 9), **{name: (name, 7) for name in THIN_CLASSES}}
"""val_row's scores: each one's heading and column width."""
SECONDS_WIDTH = 9  # val_row's last column, seconds per photo
VAL_ROW_HEADER = "".join(f"{name:>{width}}" for name, width in (*SCORE_COLUMNS.values(), ("s/photo", SECONDS_WIDTH)))


def add_camvid_run_arguments(parser: argparse.ArgumentParser, out: str, holds: str) -> None:
    """--precision, the variant's settings, --camvid and --out (default `out`, holding `holds`) of a CamVid script."""
    parser.add_argument("--precision", default="bf16", choices=["bf16", "fp32"], help="(default: bf16)")
    parser.add_argument(
        "--color-jitter", type=float, default=0.0, metavar="S",
        help="as pixelwise train's; a run of its own, its key suffixed -jitterS (default: 0, none)",
    )  # fmt: skip
    parser.add_argument(
        "--weight-decay", type=float, metavar="W",
        help="as pixelwise train's; a run of its own, its key suffixed -wdW (default: the recipe's)",
    )  # fmt: skip
    parser.add_argument(
        "--copy-paste", metavar="CLASSES",
        help="as pixelwise train's; a run of its own, its key suffixed -paste-CLASS... (default: none)",
    )  # fmt: skip
    parser.add_argument(
        "--ema-decay", type=float, default=0.0, metavar="D",
        help="as pixelwise train's; a run of its own, its key suffixed -emaD (default: 0, none)",
    )  # fmt: skip
    parser.add_argument("--camvid", help="CamVid folder (default: ../shared/data/camvid)")
    parser.add_argument("--out", default=out, help=holds)


def run_variant(args: argparse.Namespace, camvid: Path) -> tuple[str, dict]:
    """What a run's key gains for the variant options ('-jitter0.4-wd0.05-ema0.99'), and their settings.

    A run without them keeps its old key and the recipe's settings. Pasted classes are keyed
    in name order, so one set of classes is one run however it was written, and checked
    against `camvid`'s classes here, before a script makes its folder or measures anything.
    """
    settings = {"color_jitter": args.color_jitter}
    suffix = f"-jitter{args.color_jitter:g}" if args.color_jitter else ""
    if args.weight_decay is not None:
        settings["weight_decay"] = args.weight_decay
        suffix += f"-wd{args.weight_decay:g}"
    if args.ema_decay:
        settings["ema_decay"] = args.ema_decay
        suffix += f"-ema{args.ema_decay:g}"
    if args.copy_paste is not None:
        class_names = dataset_layout(camvid).classes.class_names
        pasted = class_paste([args.copy_paste], class_names).class_indices
        settings["copy_paste"] = tuple(sorted(class_names[index] for index in pasted))
        suffix += "-paste-" + "-".join(re.sub(r"\W+", "_", name) for name in settings["copy_paste"])
    return suffix, settings


def results_so_far(out: Path) -> tuple[Path, dict]:
    """`out`/results.json (the folder made if absent) and what it holds, so finished runs are not trained again."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "results.json"
    return path, json.loads(path.read_text()) if path.exists() else {}


def run_script(main: Callable[[], object]) -> None:
    """Run a benchmark's `main`; a refusal (missing data, a bad checkpoint) ends it in one line, not a traceback."""
    try:
        main()
    except PixelwiseError as error:
        sys.exit(f"{Path(sys.argv[0]).name}: error: {one_line(error)}")


def find_camvid(path: str | Path | None = None) -> Path:
    """The CamVid folder (../shared/data/camvid by default), or DatasetError saying where it looked."""
    folder = Path(path) if path else Path(os.environ.get("PIXELWISE_CAMVID", SHARED_CAMVID))
    if not (folder / "classes.csv").is_file():
        raise DatasetError(f"{folder}: CamVid not found; pass --camvid PATH or set PIXELWISE_CAMVID")
    return folder


def camvid_as_voc(camvid: Path, out: Path, *, train_images: int | None = None) -> Path:
    """Write CamVid as a VOC tree (photos linked, labels as VOC-palette PNGs, void = 255); return VOC2012.

    `train_images` repeats the training photos under new names up to that count (for the
    data-pipeline benchmark at VOC's scale); val is always CamVid's own val split.
    """
    root = out / "VOCdevkit" / "VOC2012"
    for folder in ("JPEGImages", "SegmentationClass", SPLIT_DIR):
        (root / folder).mkdir(parents=True, exist_ok=True)
    palette = VOC_COLORMAP[:11]
    splits = {}
    for split in ("train", "val"):
        dataset = FolderSegmentation(camvid, split)
        count = train_images if split == "train" and train_images else len(dataset)
        names = []
        for index in range(count):
            photo, label = dataset.samples[index % len(dataset)]
            name = f"{split}{index:05d}"
            link = root / "JPEGImages" / f"{name}.jpg"
            if not link.exists():
                link.symlink_to(photo.resolve())
            if index < len(dataset):
                mask = dataset.classes.decode(np.asarray(Image.open(label)), label)
                palette_png(mask, palette, VOC_BOUNDARY_COLOR).save(root / "SegmentationClass" / f"{name}.png")
            else:
                source = root / "SegmentationClass" / f"{split}{index % len(dataset):05d}.png"
                target = root / "SegmentationClass" / f"{name}.png"
                if not target.exists():
                    target.symlink_to(source.name)
            names.append(name)
        splits[split] = names
        (root / SPLIT_DIR / f"{split}.txt").write_text("".join(f"{n}\n" for n in names), encoding="utf-8")
    return root


def gemm_gflops(size: int = 2048, repeats: int = 10, dtype: torch.dtype = torch.float32) -> float:
    """The machine's matrix-multiply rate in GFLOP/s for `dtype` (best of `repeats`), all threads."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    torch.mm(a, b)
    best = min(timed(lambda: torch.mm(a, b)) for _ in range(repeats))
    return 2 * size**3 / best / 1e9


def timed(function: Callable[[], object]) -> float:
    """Seconds one call takes."""
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def alternated_medians(functions: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds per call of each function: one untimed warm-up each, then `repeats` rounds taking turns."""
    for function in functions.values():
        function()  # allocator, oneDNN primitive caches
    times = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            times[name].append(timed(function))
    return {name: statistics.median(values) for name, values in times.items()}


def _tree_pss_bytes(pid: int) -> int:
    """Proportional set size of a process and all its descendants, from /proc (shared pages split)."""
    total, pending = 0, [pid]
    while pending:
        current = pending.pop()
        try:
            with open(f"/proc/{current}/smaps_rollup") as rollup:
                total += next(int(line.split()[1]) * 1024 for line in rollup if line.startswith("Pss:"))
            with open(f"/proc/{current}/task/{current}/children") as children:
                pending += [int(child) for child in children.read().split()]
        except (OSError, StopIteration):
            continue
    return total


class PeakMemory:
    """Context manager sampling the PSS of this process plus its workers; `.peak_bytes` after."""

    def __init__(self, interval: float = 0.1):
        self.interval = interval
        self.peak_bytes = 0
        self._stop = threading.Event()

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak_bytes = max(self.peak_bytes, _tree_pss_bytes(os.getpid()))
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakMemory:
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_bytes = max(self.peak_bytes, _tree_pss_bytes(os.getpid()))


def result_line(**values: float | str) -> str:
    """The closing `RESULT key=value ...` line that scripts and docs read, with identifiers as keys (wd0.05: wd0_05)."""
    return "RESULT " + " ".join(
        f"{re.sub(r'[^0-9A-Za-z_]+', '_', key)}={f'{value:.4g}' if isinstance(value, float) else value}"
        for key, value in values.items()
    )


# D2L chapter 13.11 builds its network, loss and prediction inline in the notebook (the d2l
# package ships only the loops and the dataset); they are restated here from the chapter so
# the benchmarks run D2L's packaged `train_ch13` / `VOCSegDataset` on the chapter's model.


def chapter_fcn(num_classes: int) -> nn.Sequential:
    """D2L's FCN: ResNet-18 without pooling and fc, 1x1 conv, bilinear-initialised x32 transposed conv."""
    backbone = torchvision.models.resnet18(weights=None)
    net = nn.Sequential(*list(backbone.children())[:-2])
    net.add_module("final_conv", nn.Conv2d(512, num_classes, kernel_size=1))
    net.add_module(
        "transpose_conv", nn.ConvTranspose2d(num_classes, num_classes, kernel_size=64, padding=16, stride=32)
    )
    net.transpose_conv.weight.data.copy_(bilinear_kernel(num_classes, num_classes, 64))
    return net


def chapter_loss(inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """D2L's loss: per-image mean cross-entropy over every pixel."""
    return F.cross_entropy(inputs, targets, reduction="none").mean(1).mean(1)


def chapter_predict(net: nn.Module, normalized_image: torch.Tensor) -> torch.Tensor:
    """D2L's `predict`: argmax of the network on one normalised image (3, H, W)."""
    height, width = normalized_image.shape[1:]
    return net(normalized_image.unsqueeze(0)).argmax(dim=1).reshape(height, width)


def val_row(model: Segmenter, camvid: Path, precision: str = "fp32") -> tuple[dict[str, float], str]:
    """`model` on CamVid val: its scores (see `score_row`), and their row with seconds per photo added."""
    from pixelwise.training import evaluate_split, open_dataset, prepare_data

    photos = len(open_dataset(prepare_data(str(camvid)), "val"))
    started = time.perf_counter()
    metrics = evaluate_split(model, camvid, "val", workers=2, precision=precision)
    seconds = (time.perf_counter() - started) / photos
    iou = metrics.as_dict(model.class_names)["iou"]
    thin = {name: iou[name] for name in THIN_CLASSES}
    scores = {"miou": metrics.miou, "pixel_accuracy": metrics.pixel_accuracy, **thin}
    return scores, f"{score_row(scores)}{seconds:>{SECONDS_WIDTH}.2f}"


def score_row(scores: dict[str, float]) -> str:
    """mIoU, pixel accuracy and the thin classes' IoU, in the columns of VAL_ROW_HEADER."""
    return "".join(f"{scores[key]:>{width}.3f}" for key, (_, width) in SCORE_COLUMNS.items())


def print_iou_table(results: dict[str, dict], class_names: tuple[str, ...]) -> None:
    """One row per entry of `results`: mIoU, pixel accuracy, minutes and per-class IoU."""
    width = max([14, *(len(label) + 1 for label in results)])
    columns = " ".join(f"{name[:8]:>8}" for name in class_names)
    print(f"{'':{width}}{'mIoU':>8}{'pixel acc':>11}{'minutes':>9}  {columns}")
    for label, value in results.items():
        ious = " ".join(f"{value['iou'][name]:>8.3f}" for name in class_names)
        print(f"{label:{width}}{value['miou']:>8.3f}{value['pixel_accuracy']:>11.3f}{value['minutes']:>9.1f}  {ious}")


def untrained_segmenter(name: str, num_classes: int = 21):
    """`name` at its default encoder with seeded random weights and `num_classes` classes (VOC's 21 by default).

    Speed does not depend on the weights; the palette gives every class its own gray.
    """
    from pixelwise.models import build_model

    torch.manual_seed(0)
    names = tuple(f"class {index}" for index in range(num_classes))
    palette = tuple((index, index, index) for index in range(num_classes))
    return Segmenter(build_model(name, num_classes=num_classes), model_name=name, class_names=names, palette=palette)

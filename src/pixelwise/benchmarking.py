"""Helpers shared by the scripts in benchmarks/: real data as a VOC tree, timing, memory, peaks."""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pixelwise.data.folder import FolderSegmentation
from pixelwise.data.labels import VOC_BOUNDARY_COLOR, VOC_COLORMAP, palette_png
from pixelwise.data.voc import SPLIT_DIR
from pixelwise.errors import DatasetError

SHARED_CAMVID = Path(__file__).resolve().parents[3] / "shared" / "data" / "camvid"


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


def gemm_gflops(size: int = 2048, repeats: int = 10) -> float:
    """The machine's float32 matrix-multiply rate in GFLOP/s (best of `repeats`), all threads."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    best = min(timed(lambda: torch.mm(a, b)) for _ in range(repeats))
    return 2 * size**3 / best / 1e9


def timed(function: Callable[[], object]) -> float:
    """Seconds one call takes."""
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def median_seconds(function: Callable[[], object], *, warmup: int = 1, repeats: int = 5) -> float:
    """Median wall time of `repeats` calls after `warmup` untimed ones."""
    for _ in range(warmup):
        function()
    return statistics.median(timed(function) for _ in range(repeats))


def _tree_rss_bytes(pid: int) -> int:
    """Resident memory of a process and all its descendants, from /proc."""
    total, pending = 0, [pid]
    while pending:
        current = pending.pop()
        try:
            with open(f"/proc/{current}/status") as status:
                total += next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmRSS:"))
            with open(f"/proc/{current}/task/{current}/children") as children:
                pending += [int(child) for child in children.read().split()]
        except (OSError, StopIteration):
            continue
    return total


class PeakMemory:
    """Context manager sampling the RSS of this process plus its workers; `.peak_bytes` after."""

    def __init__(self, interval: float = 0.02):
        self.interval = interval
        self.peak_bytes = 0
        self._stop = threading.Event()

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak_bytes = max(self.peak_bytes, _tree_rss_bytes(os.getpid()))
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakMemory:
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_bytes = max(self.peak_bytes, _tree_rss_bytes(os.getpid()))


def result_line(**values: float | str) -> str:
    """The closing `RESULT key=value ...` line that scripts and docs read."""
    return "RESULT " + " ".join(f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}" for key, value in values.items())

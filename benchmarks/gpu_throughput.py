"""GPU training throughput at 320x480, batch 32, through pixelwise's own training loop.

Model-only (the same uint8 batch already on the GPU) for fp32, bf16 autocast, and bf16 +
torch.compile; nvJPEG's batched decode alone; then, for each place photos are decoded
(`pixelwise train --decode-on workers|device`) and each loader process count, the loader
alone (batches delivered on the GPU) and end-to-end with the fastest eager setting:
`pixelwise train`'s own loader (seeded samples, persistent workers) reading CamVid JPEGs and
PNG labels from disk, scaling, cropping and flipping in its workers, or leaving the photos
for the GPU to decode and resample. Every model is FCN-8s on ResNet-18, channels-last, SGD with
momentum, as `pixelwise train` builds it. Last, the fastest end-to-end setting and its
model-only figure again with the loss read before its backward pass is queued, as the loop
did until it read it after (a before/after on the same machine); and where the training thread's
time goes in that setting, model-only and end-to-end: milliseconds per step spent waiting for the
loader, preparing the batch (decoding it with `--decode-on device`) and waiting for the loss (the
GPU's work: a thread that waits there most of the step is not the limit). Run by benchmarks/gpu.sh on a lent GPU
machine; `--device cpu --steps 2 --batch-size 2 --crop-size 64 96` checks the script anywhere.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from itertools import count, islice
from pathlib import Path

import torch

from common import camvid_as_voc, find_camvid, result_line, run_script
from pixelwise.config import TrainConfig
from pixelwise.data.device_crops import decode_jpegs
from pixelwise.data.io import read_bytes
from pixelwise.data.loading import train_loader, training_samples
from pixelwise.data.transforms import IMAGENET_MEAN, IMAGENET_STD, train_transforms
from pixelwise.data.voc import VOCSegmentation
from pixelwise import engine
from pixelwise.engine import prepare_batch, train_one_epoch
from pixelwise.losses import build_criterion
from pixelwise.models import build_model
from pixelwise.schedule import build_optimizer

CLASSES = 11


@dataclass(frozen=True)
class Setting:
    """One way to run the training step."""

    name: str
    precision: str = "fp32"
    compile: bool = False


SETTINGS = (
    Setting("fp32"),
    Setting("bf16", "bf16"),
    Setting("bf16 + torch.compile", "bf16", compile=True),
)


class Trainer:
    """A fresh FCN-8s and its optimiser on `device`, stepped by `train_one_epoch`."""

    def __init__(self, setting: Setting, device: torch.device):
        self.model = build_model("fcn8s", num_classes=CLASSES).to(device).to(memory_format=torch.channels_last)
        self.optimizer = build_optimizer(TrainConfig(), self.model)
        self.forward = torch.compile(self.model) if setting.compile else self.model
        self.setting, self.device = setting, device

    def images_per_second(self, batches: Iterator, steps: int, warmup: int) -> float:
        """Throughput over `steps` training steps after `warmup` steps."""
        self.train(islice(batches, warmup))
        started = time.perf_counter()
        images = self.train(islice(batches, steps))
        return images / (time.perf_counter() - started)

    def train(self, batches) -> int:
        """Train on `batches`; the number of images."""
        progress = train_one_epoch(
            self.forward,
            build_criterion("ce"),
            batches,
            self.optimizer,
            None,
            self.device,
            precision=self.setting.precision,
        )
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return progress.images


@contextmanager
def loss_read_before_backward():
    """The training loop as it was until the loss was read after queuing its backward pass: `.item()` at once."""

    def at_once(loss: torch.Tensor):
        value = loss.item()
        return lambda: value

    original, engine.read_later = engine.read_later, at_once
    try:
        yield
    finally:
        engine.read_later = original


@dataclass
class ThreadTimes:
    """Seconds the training thread spent in each part of its steps."""

    loader: float = 0.0
    prepare: float = 0.0
    loss_wait: float = 0.0

    def timed(self, part: str, function):
        """`function`, adding the seconds each call takes to `part`."""

        def call(*args, **kwargs):
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                setattr(self, part, getattr(self, part) + time.perf_counter() - started)

        return call

    def batches(self, batches: Iterator) -> Iterator:
        """`batches`, adding the time spent waiting for each one to `loader`."""
        batches = iter(batches)
        while True:
            started = time.perf_counter()
            batch = next(batches, None)
            self.loader += time.perf_counter() - started
            if batch is None:
                return
            yield batch


@contextmanager
def thread_times():
    """Where train_one_epoch's thread spends its time: waiting for batches (wrap them with `.batches`), preparing
    them, waiting for the loss."""
    times = ThreadTimes()
    original_prepare, original_read = engine.prepare_batch, engine.read_later
    engine.prepare_batch = times.timed("prepare", original_prepare)
    engine.read_later = lambda loss: times.timed("loss_wait", original_read(loss))
    try:
        yield times
    finally:
        engine.prepare_batch, engine.read_later = original_prepare, original_read


def thread_step_ms(report: Report, name: str, trainer: "Trainer", batches: Iterator, steps: int) -> float:
    """Milliseconds per training step; reports those the thread spent waiting for the loader, preparing the batch
    and waiting for the loss."""
    with thread_times() as times:
        trainer.train(islice(batches, 20))
        times.loader = times.prepare = times.loss_wait = 0.0
        started = time.perf_counter()
        trainer.train(islice(times.batches(batches), steps))
        step = (time.perf_counter() - started) / steps
    for part, seconds in (
        ("waiting for the loader", times.loader),
        ("preparing the batch", times.prepare),
        ("waiting for the loss", times.loss_wait),
    ):
        report.add(f"{name}: {part}", 1000 * seconds / steps, "ms per step")
    return 1000 * step


def synthetic_batches(batch_size: int, crop: tuple[int, int], device: torch.device) -> Iterator:
    """The same uint8 batch, already on the device, forever: model-only throughput."""
    images = torch.randint(0, 256, (batch_size, 3, *crop), dtype=torch.uint8, device=device)
    masks = torch.randint(0, CLASSES, (batch_size, *crop), dtype=torch.uint8, device=device)
    while True:
        yield images, masks


def loader_batches(
    voc_root: Path, batch_size: int, crop: tuple[int, int], workers: int, pin_memory: bool, decode_on: str
) -> Iterator:
    """Batches from `pixelwise train`'s loader (its dataset, transforms, seeding and workers), epoch after epoch."""
    samples = training_samples(VOCSegmentation(voc_root, "train", train_transforms(crop)), 0, decode_on=decode_on)
    loader = train_loader(samples, batch_size=batch_size, workers=workers, pin_memory=pin_memory)
    for epoch in count(1):
        loader.batch_sampler.set_epoch(epoch)
        yield from loader


def loader_samples_per_second(batches: Iterator, count: int, device: torch.device) -> float:
    """The loader alone, batches prepared on `device` as training does: samples/s over `count` batches after
    2 * count warm-up."""

    def delivered(number: int) -> int:
        samples = sum(
            len(prepare_batch(*batch[:2], device, (IMAGENET_MEAN, IMAGENET_STD))[1])
            for batch in islice(batches, number)
        )
        if device.type == "cuda":
            torch.cuda.synchronize()
        return samples

    delivered(2 * count)
    started = time.perf_counter()
    return delivered(count) / (time.perf_counter() - started)


def first_jpegs(voc_root: Path, count: int) -> list[torch.Tensor]:
    """The bytes of the first `count` training photos."""
    return [read_bytes(path) for path, _ in VOCSegmentation(voc_root, "train").samples[:count]]


def decode_images_per_second(voc_root: Path, batch_size: int, device: torch.device, repeats: int = 20) -> float:
    """The decoder alone: JPEG bytes already in memory -> RGB on `device`, `batch_size` photos per call."""
    photos = first_jpegs(voc_root, batch_size)
    decode_jpegs(photos, device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(repeats):
        decode_jpegs(photos, device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return repeats * batch_size / (time.perf_counter() - started)


def decode_call_ms(voc_root: Path, batch_size: int, device: torch.device, queued_cycles: int) -> float:
    """How long one decode call holds the training thread while `queued_cycles` GPU cycles of work wait on the
    training stream."""
    photos = first_jpegs(voc_root, batch_size)
    decode_jpegs(photos, device)
    torch.cuda.synchronize()
    torch.cuda._sleep(queued_cycles)
    started = time.perf_counter()
    decode_jpegs(photos, device)
    elapsed = time.perf_counter() - started
    torch.cuda.synchronize()
    return 1000 * elapsed


class Report:
    """Prints each figure as it is measured and keeps them all in a JSON file."""

    def __init__(self, path: Path | None):
        self.path, self.values = path, {}

    def add(self, key: str, value, unit: str = "images/s") -> None:
        """Record one figure (or an error message) and print it at once; a repeated key gets a number."""
        name, copy = key, 1
        while name in self.values:
            copy += 1
            name = f"{key} ({copy})"
        self.values[name] = value
        shown = f"{value:9.{0 if unit == 'images/s' else 2}f} {unit}" if isinstance(value, float) else value
        print(f"{name:48}{shown}", flush=True)
        if self.path:
            self.path.write_text(json.dumps(self.values, indent=2))


def measure(report: Report, key: str, function, unit: str = "images/s") -> float | None:
    """report.add(key, function()); an exception is recorded as the figure, not raised."""
    try:
        value = function()
    except Exception as error:  # a failed setting must not cost the others their figures
        traceback.print_exc()
        report.add(key, f"failed: {type(error).__name__}: {str(error).splitlines()[0][:200]}")
        return None
    report.add(key, value, unit)
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=100, help="timed model-only steps per setting (end-to-end: 4x)")
    parser.add_argument(
        "--workers",
        type=int,
        nargs="+",
        default=[max(1, (os.cpu_count() or 2) - 2)],
        help="loader process counts to try, photos decoded in the workers (default: CPUs - 2)",
    )
    parser.add_argument(
        "--device-workers",
        type=int,
        nargs="*",
        default=[],
        help="loader process counts to try with the photos decoded on the device",
    )
    parser.add_argument(
        "--images", type=int, default=5872, help="training photos in the VOC tree: CamVid's repeated (default: 5872)"
    )
    parser.add_argument("--camvid", help="CamVid folder (default: ../shared/data/camvid)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--crop-size", type=int, nargs=2, default=(320, 480), metavar=("H", "W"))
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile setting")
    parser.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = True
    report = Report(args.json)
    report.add("device", torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu")
    report.add("torch", torch.__version__)
    settings = [s for s in SETTINGS if not (s.compile and args.no_compile)]
    synthetic = partial(synthetic_batches, args.batch_size, tuple(args.crop_size), device)
    model_only: dict[str, float | None] = {}
    # end-to-end images/s, setting, loader processes, where photos are decoded
    runs: list[tuple[float, Setting, int, str]] = []

    def model_only_rate(setting: Setting, note: str = "") -> float | None:
        return measure(
            report,
            f"model-only {setting.name}{note}",
            lambda: Trainer(setting, device).images_per_second(synthetic(), args.steps, 10),
        )

    def end_to_end_rate(setting: Setting, workers: int, decode_on: str, note: str = "") -> None:
        """Loader alone and end-to-end; a run with a `note` is a comparison, not a candidate for the RESULT line."""
        batches = loader_batches(
            voc_root, args.batch_size, tuple(args.crop_size), workers, device.type == "cuda", decode_on
        )
        where = f"decode on {decode_on}, {workers} workers{note}"
        measure(report, f"loader alone, {where}", lambda: loader_samples_per_second(batches, args.steps, device))
        rate = measure(
            report,
            f"end-to-end {setting.name}, {where}",
            lambda: Trainer(setting, device).images_per_second(batches, 4 * args.steps, 20),
        )
        if rate and not note:
            runs.append((rate, setting, workers, decode_on))

    def thread_breakdown(name: str, setting: Setting, batches: Iterator) -> None:
        measure(
            report,
            f"{name}: whole step",
            lambda: thread_step_ms(report, name, Trainer(setting, device), batches, 4 * args.steps),
            "ms",
        )

    for setting in settings:
        if not setting.compile:
            model_only[setting.name] = model_only_rate(setting)
    best = max((s for s in settings if model_only.get(s.name)), key=lambda s: model_only[s.name])
    with tempfile.TemporaryDirectory() as scratch:
        voc_root = camvid_as_voc(find_camvid(args.camvid), Path(scratch), train_images=args.images)
        if args.device_workers:
            measure(
                report,
                f"decoder alone, batches of {args.batch_size}",
                lambda: decode_images_per_second(voc_root, args.batch_size, device),
            )
        if args.device_workers and device.type == "cuda":
            for cycles in (0, 200_000_000, 1_000_000_000):  # 0, about 100 and 500 ms on an H200
                report.add(
                    f"decode call, {cycles:.0e} GPU cycles queued",
                    decode_call_ms(voc_root, args.batch_size, device, cycles),
                    "ms",
                )
        for decode_on, worker_counts in (("device", args.device_workers), ("workers", args.workers)):
            for workers in worker_counts:
                end_to_end_rate(best, workers, decode_on)
        for setting in settings:
            if setting.compile:
                model_only[setting.name] = model_only_rate(setting)
                if (model_only[setting.name] or 0) > 1.05 * model_only[best.name] and runs:
                    fastest = max(runs, key=lambda run: run[0])
                    end_to_end_rate(setting, fastest[2], fastest[3])
        if runs:  # the same machine with the loop's previous order, for a before/after
            fastest = max(runs, key=lambda run: run[0])
            with loss_read_before_backward():
                model_only_rate(fastest[1], ", loss read before backward")
                end_to_end_rate(fastest[1], fastest[2], fastest[3], ", loss read before backward")
            where = f"decode on {fastest[3]}, {fastest[2]} workers"
            thread_breakdown(f"model-only {fastest[1].name}", fastest[1], synthetic())
            thread_breakdown(
                f"end-to-end {fastest[1].name}, {where}",
                fastest[1],
                loader_batches(
                    voc_root, args.batch_size, tuple(args.crop_size), fastest[2], device.type == "cuda", fastest[3]
                ),
            )
    rate, setting, workers, decode_on = max(runs, key=lambda run: run[0])
    print(
        result_line(
            model_only=model_only[setting.name],
            end_to_end=rate,
            loader_fraction=rate / model_only[setting.name],
            setting=setting.name.replace(" ", ""),
            workers=str(workers),
            decode_on=decode_on,
        )
    )


if __name__ == "__main__":
    run_script(main)

"""Data pipeline: pixelwise's training loader against D2L's VOCSegDataset, on CamVid photos at VOC scale.

Each side runs in its own process, alternately, so memory is measured cleanly:
time to first batch, peak memory (PSS of the main process plus workers), steady samples/s.
First, pixelwise's per-sample cost by stage, in this process with one thread.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from common import camvid_as_voc, find_camvid, PeakMemory, result_line, run_script, timed
from pixelwise.cli_arguments import positive_int


def measure_d2l(voc_root: Path, crop: tuple[int, int], batch_size: int, workers: int, batches: int) -> dict:
    """D2L's own dataset and loader settings (shuffle, drop_last), as chapter 13.9 builds them."""
    from d2l import torch as d2l

    started = time.perf_counter()
    with PeakMemory() as memory:
        dataset = d2l.VOCSegDataset(True, crop, str(voc_root))
        loader = torch.utils.data.DataLoader(dataset, batch_size, shuffle=True, drop_last=True, num_workers=workers)
        return _drain(loader, started, memory, batches, normalize=False)


def measure_pixelwise(voc_root: Path, crop: tuple[int, int], batch_size: int, workers: int, batches: int) -> dict:
    """`pixelwise train`'s loader (seeded samples, its transforms) and allocator setting; normalisation counted too."""
    from pixelwise.data.loading import SeededSamples, train_loader
    from pixelwise.data.transforms import train_transforms
    from pixelwise.data.voc import VOCSegmentation
    from pixelwise.runtime import keep_freed_memory

    keep_freed_memory()
    started = time.perf_counter()
    with PeakMemory() as memory:
        samples = SeededSamples(VOCSegmentation(voc_root, "train", train_transforms(crop)), seed=0)
        return _drain(
            train_loader(samples, batch_size=batch_size, workers=workers), started, memory, batches, normalize=True
        )


def _drain(loader, started: float, memory: PeakMemory, batches: int, *, normalize: bool) -> dict:
    """Time the first batch, then `batches` more; report peak memory so far."""
    from pixelwise.data.transforms import normalize_batch

    iterator = iter(loader)
    images = next(iterator)[0]
    first_batch = time.perf_counter() - started
    steady_started, samples = time.perf_counter(), 0
    for _ in range(batches):
        images = next(iterator)[0]
        if normalize:
            images = normalize_batch(images)
        samples += len(images)
    throughput = samples / (time.perf_counter() - steady_started)
    return {
        "first_batch_s": first_batch,
        "peak_bytes": memory.peak_bytes,
        "samples_per_s": throughput,
        "shape": list(images.shape),
    }


def per_sample_stages(voc_root: Path, crop: tuple[int, int], samples: int) -> dict[str, float]:
    """Mean milliseconds per sample of each stage of pixelwise's training dataset, one thread."""
    from pixelwise.data.device_crops import DeviceCrops
    from pixelwise.data.io import read_image, read_label_array
    from pixelwise.data.transforms import train_transforms
    from pixelwise.data.voc import VOCSegmentation

    dataset = VOCSegmentation(voc_root, "train", train_transforms(crop))
    for_device = DeviceCrops(dataset, dataset.transforms)
    pairs = [dataset.load(index) for index in range(samples)]
    stages = {
        "decode photo (PIL)": lambda index: read_image(dataset.samples[index][0]),
        "read and decode label": lambda index: dataset.classes.decode(
            read_label_array(dataset.samples[index][1]), dataset.samples[index][1]
        ),
        "scale, crop, flip": lambda index: dataset.transforms(*pairs[index]),
        "whole __getitem__": lambda index: dataset[index],
        "same, --decode-on device": lambda index: for_device[index],
    }
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return {
            name: 1000 * sum(timed(lambda: stage(index)) for index in range(samples)) / samples
            for name, stage in stages.items()
        }
    finally:
        torch.set_num_threads(threads)


def batch_handover_ms(voc_root: Path, crop: tuple[int, int], batch_size: int, repeats: int = 20) -> dict[str, float]:
    """Median milliseconds to pickle one collated batch from a worker to the training process via shared memory."""
    import copy
    import pickle
    from multiprocessing.reduction import ForkingPickler

    from pixelwise.data.loading import collate_skipping, training_samples
    from pixelwise.data.transforms import train_transforms
    from pixelwise.data.voc import VOCSegmentation

    figures = {}
    for decode_on in ("workers", "device"):
        samples = training_samples(VOCSegmentation(voc_root, "train", train_transforms(crop)), 0, decode_on=decode_on)
        batch = collate_skipping([samples[(1, index)] for index in range(batch_size)])
        fresh = [copy.deepcopy(batch) for _ in range(repeats)]  # new tensors each time, as each batch is in a worker
        figures[decode_on] = 1000 * statistics.median(
            timed(lambda: pickle.loads(ForkingPickler.dumps(one))) for one in fresh
        )
    return figures


def run_side(side: str, args: argparse.Namespace, voc_root: Path) -> dict:
    """One side in a fresh interpreter; its JSON result."""
    command = [
        sys.executable,
        __file__,
        "--side",
        side,
        "--voc-root",
        str(voc_root),
        "--batches",
        str(args.batches),
        "--batch-size",
        str(args.batch_size),
        "--workers",
        str(args.workers),
    ]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one repetition, fewer batches (under 2 minutes)")
    parser.add_argument("--camvid", help="CamVid folder (default: ../shared/data/camvid)")
    parser.add_argument("--images", type=int, default=1468, help="training images in the VOC tree (default: 1468)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batches", type=int, default=None, help="steady-state batches to time")
    parser.add_argument("--repeats", type=positive_int, default=3)
    parser.add_argument("--side", choices=["d2l", "pixelwise"], help=argparse.SUPPRESS)
    parser.add_argument("--voc-root", help=argparse.SUPPRESS)
    args = parser.parse_args()
    crop = (320, 480)
    if args.side:
        measure = measure_d2l if args.side == "d2l" else measure_pixelwise
        print(json.dumps(measure(Path(args.voc_root), crop, args.batch_size, args.workers, args.batches)))
        return
    repeats = 1 if args.quick else args.repeats
    args.batches = args.batches or (4 if args.quick else 12)
    with tempfile.TemporaryDirectory() as scratch:
        voc_root = camvid_as_voc(find_camvid(args.camvid), Path(scratch), train_images=args.images)
        print("pixelwise per sample, one thread (ms):")
        for stage, milliseconds in per_sample_stages(voc_root, crop, 50 if args.quick else 300).items():
            print(f"  {stage:28}{milliseconds:6.2f}")
        handover = batch_handover_ms(voc_root, crop, args.batch_size, 5 if args.quick else 20)
        print(
            f"pixelwise batch of {args.batch_size}, worker to training process (ms): "
            + ", ".join(f"--decode-on {place} {ms:.1f}" for place, ms in handover.items())
        )
        runs = {"d2l": [], "pixelwise": []}
        for _ in range(repeats):
            for side in runs:
                runs[side].append(run_side(side, args, voc_root))
    summary = {
        side: {
            key: statistics.median(r[key] for r in results) for key in ("first_batch_s", "peak_bytes", "samples_per_s")
        }
        for side, results in runs.items()
    }
    print(
        f"{args.images} photos 480x360 (CamVid, repeated), crop {crop[0]}x{crop[1]}, batch {args.batch_size}, "
        f"{args.workers} workers, median of {repeats}"
    )
    print(f"{'':12}{'first batch (s)':>18}{'peak memory (MB)':>18}{'samples/s':>12}")
    for side, values in summary.items():
        print(
            f"{side:12}{values['first_batch_s']:>18.2f}{values['peak_bytes'] / 1e6:>18.0f}"
            f"{values['samples_per_s']:>12.1f}"
        )
    d2l, ours = summary["d2l"], summary["pixelwise"]
    print(
        result_line(
            first_batch_ratio=d2l["first_batch_s"] / ours["first_batch_s"],
            memory_ratio=d2l["peak_bytes"] / ours["peak_bytes"],
            throughput_ratio=ours["samples_per_s"] / d2l["samples_per_s"],
        )
    )


if __name__ == "__main__":
    run_script(main)

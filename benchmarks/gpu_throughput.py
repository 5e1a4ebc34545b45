"""GPU training throughput at 320x480, batch 32: fp32 eager against bf16 autocast + channels-last
(+ torch.compile), model-only (tensors already on the GPU) and end-to-end (the real loader
reading CamVid JPEGs from disk). Run by benchmarks/gpu.sh on a lent GPU machine.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from pixelwise.benchmarking import camvid_as_voc, find_camvid, result_line
from pixelwise.config import TrainConfig
from pixelwise.data.transforms import train_transforms
from pixelwise.data.voc import VOCSegmentation
from pixelwise.engine import prepare_batch, segmentation_loss
from pixelwise.models import build_model
from pixelwise.training import build_optimizer

CROP, BATCH, CLASSES = (320, 480), 32, 11


def make_step(bf16: bool, channels_last: bool, compile_model: bool):
    """A training step closure over a fresh FCN-8s on the GPU."""
    model = build_model("fcn8s", num_classes=CLASSES).cuda()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(TrainConfig(), model)
    forward = torch.compile(model) if compile_model else model
    device = torch.device("cuda")
    memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def step(images: torch.Tensor, masks: torch.Tensor) -> None:
        images, masks = prepare_batch(images, masks, device, ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)))
        images = images.contiguous(memory_format=memory_format)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            loss = segmentation_loss(forward(images), masks)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def images_per_second(step, batches, count: int) -> float:
    """Throughput over `count` steps after 5 warm-up steps."""
    iterator = iter(batches)
    for _ in range(5):
        step(*next(iterator))
    torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(count):
        step(*next(iterator))
    torch.cuda.synchronize()
    return count * BATCH / (time.perf_counter() - started)


def synthetic_batches():
    """The same uint8 batch, already on the GPU, forever: model-only throughput."""
    images = torch.randint(0, 256, (BATCH, 3, *CROP), dtype=torch.uint8, device="cuda")
    masks = torch.randint(0, CLASSES, (BATCH, *CROP), dtype=torch.uint8, device="cuda")
    while True:
        yield images, masks


def loader_batches(voc_root: Path, workers: int):
    """Real batches from pixelwise's training loader, epoch after epoch."""
    dataset = VOCSegmentation(voc_root, "train", train_transforms(CROP))
    loader = DataLoader(dataset, BATCH, shuffle=True, drop_last=True, num_workers=workers, pin_memory=True, persistent_workers=True, prefetch_factor=4)
    while True:
        yield from loader


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--camvid", help="CamVid folder (default: ../shared/data/camvid)")
    args = parser.parse_args()
    torch.backends.cudnn.benchmark = True
    print(torch.cuda.get_device_name(), torch.__version__)
    settings = {"fp32 eager": (False, False, False), "bf16 + channels-last": (True, True, False), "bf16 + channels-last + compile": (True, True, True)}
    model_only = {name: images_per_second(make_step(*flags), synthetic_batches(), args.steps) for name, flags in settings.items()}
    best = max(model_only, key=model_only.get)
    with tempfile.TemporaryDirectory() as scratch:
        voc_root = camvid_as_voc(find_camvid(args.camvid), Path(scratch), train_images=1468)
        end_to_end = images_per_second(make_step(*settings[best]), loader_batches(voc_root, args.workers), args.steps)
    for name, value in model_only.items():
        print(f"model-only  {name:34}{value:>9.0f} images/s")
    print(f"end-to-end  {best:34}{end_to_end:>9.0f} images/s ({args.workers} workers)")
    print(result_line(model_only=model_only[best], end_to_end=end_to_end, loader_fraction=end_to_end / model_only[best]))


if __name__ == "__main__":
    main()

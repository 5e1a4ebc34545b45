"""The loops: one training epoch, one evaluation pass."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from pixelwise.config import PRECISIONS
from pixelwise.data.device_crops import PlannedPhotos
from pixelwise.device import bf16_is_native
from pixelwise.distributed import (
    AGREED_ERRORS, ONE_PROCESS, Ranks, gather, share, sum_over_ranks, talking_to_other_ranks,
)  # fmt: skip
from pixelwise.data.transforms import IMAGENET_MEAN, IMAGENET_STD, normalize_batch
from pixelwise.errors import TrainingError
from pixelwise.losses import Criterion
from pixelwise.metrics import ConfusionMatrix, SegmentationMetrics


@dataclass
class EpochProgress:
    """Running totals of one training epoch; saved in mid-epoch checkpoints to resume exactly."""

    steps: int = 0
    loss_sum: float = 0.0
    images: int = 0
    seconds: float = 0.0
    skipped: list[str] = field(default_factory=list)

    @property
    def loss(self) -> float:
        """Mean loss over the steps so far."""
        return self.loss_sum / self.steps if self.steps else float("nan")

    @property
    def images_per_second(self) -> float:
        """Training throughput, data loading included."""
        return self.images / self.seconds if self.seconds else 0.0


StepCallback = Callable[[EpochProgress, float], None]
"""Called after each optimiser step with the epoch's progress and the learning rate."""

Normalization = tuple[tuple[float, ...], tuple[float, ...]]


def prepare_batch(
    images: torch.Tensor | PlannedPhotos, masks: torch.Tensor, device: torch.device, normalization: Normalization
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """A loader batch -> normalised channels-last floats and int64 masks on `device`, and messages of photos dropped.

    uint8 images are moved and normalised; PlannedPhotos are decoded and resampled on `device`.
    """
    if isinstance(images, PlannedPhotos):
        return images.render(masks, device, normalization)
    images = normalize_batch(images.to(device, non_blocking=True), *normalization)
    return images.contiguous(memory_format=torch.channels_last), masks.to(device, non_blocking=True).long(), []


def read_later(scalar: torch.Tensor) -> Callable[[], float]:
    """Start copying a 0-d tensor to the host; the returned call waits for that copy alone and gives its value.

    On CUDA `.item()` waits for every kernel queued so far; this waits only for those queued
    before the copy, so work queued after it (the backward pass) keeps the GPU busy meanwhile.
    """
    if scalar.device.type != "cuda":
        return scalar.item
    host = scalar.detach().to("cpu", non_blocking=True)  # pinned, asynchronous
    copied = torch.cuda.Event()
    copied.record()

    def value() -> float:
        copied.synchronize()
        return host.item()

    return value


def autocast(device: torch.device, precision: str) -> torch.autocast:
    """bfloat16 autocast on `device` for precision "bf16" (and "auto" where the device has bfloat16 units)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    enabled = precision == "bf16" or (precision == "auto" and bf16_is_native(device))
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


def _next_share(
    batches: Iterator, device: torch.device, normalization: Normalization, min_batch: int
) -> tuple[tuple[torch.Tensor, torch.Tensor] | None, list[str]]:
    """This process's next (images, target) on `device`, None if under `min_batch` are usable, and what was skipped.

    Raises StopIteration at the end of the epoch.
    """
    images, target, *rest = next(batches)
    skipped = list(rest[0]) if rest else []
    if len(target) < max(1, min_batch):
        return None, skipped  # (nearly) every sample of this batch was skipped
    images, target, dropped = prepare_batch(images, target, device, normalization)
    return (None if len(target) < max(1, min_batch) else (images, target)), skipped + dropped


def train_one_epoch(
    model: nn.Module,
    criterion: Criterion,
    loader: Iterable,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    device: torch.device,
    *,
    normalization: Normalization = (IMAGENET_MEAN, IMAGENET_STD),
    precision: str = "fp32",
    progress: EpochProgress | None = None,
    on_step: StepCallback | None = None,
    min_batch: int = 1,
    ranks: Ranks = ONE_PROCESS,
) -> EpochProgress:
    """One pass over `loader` minimising `criterion`, stepping the scheduler per iteration; stops on a non-finite loss.

    Batches are (images, masks) or (images, masks, skipped messages), images uint8 or
    PlannedPhotos (`--decode-on device`), which `prepare_batch` decodes on `device`. `precision`
    "bf16" runs the forward pass under bfloat16 autocast (weights, gradients and the optimiser
    stay float32). Pass the `progress` of an interrupted epoch to continue its totals. The
    loss is checked after its backward pass is queued and before the optimiser step, so a
    non-finite loss leaves the parameters and optimiser state as the last good step left them.
    A batch that skipped samples left with fewer than `min_batch` images is passed over.
    Under torchrun (`ranks`), `model` is the DistributedDataParallel one and `loader` gives
    this rank's share: the ranks agree before each step on whether every share is usable and
    after it on the losses, so a bad sample or a non-finite loss on one rank stops them all
    (RankFailure); the progress counts every rank's images and averages their losses.
    """
    progress = progress or EpochProgress()
    model.train()
    last = time.perf_counter()
    batches = iter(loader)
    while True:
        share_ready, skipped, error = None, [], None
        try:
            share_ready, skipped = _next_share(batches, device, normalization, min_batch)
        except StopIteration:
            break  # every rank has the same number of steps
        except AGREED_ERRORS as caught:
            if ranks.world_size == 1:
                raise
            error = caught
        counts = share(ranks, error, 0 if share_ready is None else len(share_ready[1]), len(skipped))
        if counts[:, 1].any():
            progress.skipped += [message for messages in gather(ranks, skipped) for message in messages]
        if share_ready is None or counts[:, 0].min() == 0:
            continue  # a rank has no usable share: every rank passes this batch over
        images, target = share_ready
        with talking_to_other_ranks(ranks):  # SyncBatchNorm's forward and DDP's backward pass are collectives
            with autocast(device, precision):
                logits = model(images)
            loss = criterion(logits.float(), target)  # losses in float32 whatever the forward pass ran in
            loss_value = read_later(loss)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            value = loss_value()  # read once the backward pass is queued, so the GPU has work while this waits
        diverged = None if math.isfinite(value) else TrainingError(f"loss became {value} at step {progress.steps + 1}")
        losses = share(ranks, diverged, value)
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        now = time.perf_counter()
        progress.steps, progress.loss_sum, progress.images = (
            progress.steps + 1,
            progress.loss_sum + float(losses.mean()),
            progress.images + int(counts[:, 0].sum()),
        )
        progress.seconds, last = progress.seconds + now - last, now
        if on_step:
            on_step(progress, optimizer.param_groups[0]["lr"])
    if progress.steps == 0:
        raise TrainingError("the training split gave no usable batch")
    return progress


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    loader: Iterable,
    num_classes: int,
    device: torch.device,
    *,
    normalization: Normalization = (IMAGENET_MEAN, IMAGENET_STD),
    precision: str = "fp32",
    ranks: Ranks = ONE_PROCESS,
) -> SegmentationMetrics:
    """Metrics over a whole split (uint8 batches) from one confusion matrix; images at their own size.

    `model` is a Segmenter: its `segment` gives the class indices. Under torchrun (`ranks`),
    `loader` holds this rank's share of the split and the ranks' confusion matrices are summed.
    """
    model.eval()
    confusion = ConfusionMatrix(num_classes)
    for batch, target in loader:
        batch, target, _ = prepare_batch(batch, target, device, normalization)
        with autocast(device, precision):
            classes = model.segment(batch)
        confusion.update(classes, target)
    sum_over_ranks(ranks, confusion.matrix)
    return confusion.compute()


def evaluate_photos(
    segment_photos: Callable[[np.ndarray], np.ndarray], loader: Iterable, num_classes: int
) -> SegmentationMetrics:
    """`evaluate`'s metrics through `segment_photos` (uint8 photos (N, H, W, 3) -> masks), torch or exported."""
    confusion = ConfusionMatrix(num_classes)
    for batch, target in loader:
        classes = segment_photos(batch.permute(0, 2, 3, 1).numpy())
        confusion.update(torch.from_numpy(classes), target.long())
    return confusion.compute()

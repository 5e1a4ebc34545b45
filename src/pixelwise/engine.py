"""The loops: one training epoch, one evaluation pass."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from pixelwise.data.labels import IGNORE_INDEX
from pixelwise.data.transforms import IMAGENET_MEAN, IMAGENET_STD, normalize_batch
from pixelwise.errors import TrainingError
from pixelwise.metrics import ConfusionMatrix, SegmentationMetrics


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-pixel cross-entropy over labelled pixels; 0 (not NaN) when a batch has none."""
    total = F.cross_entropy(logits, target, ignore_index=IGNORE_INDEX, reduction="sum")
    return total / (target != IGNORE_INDEX).sum().clamp(min=1)


@dataclass(frozen=True)
class EpochStats:
    """Mean loss over the epoch's steps, images seen, seconds spent."""

    loss: float
    images: int
    seconds: float

    @property
    def images_per_second(self) -> float:
        """Training throughput, data loading included."""
        return self.images / self.seconds if self.seconds else 0.0


StepCallback = Callable[[int, float, float, int], None]
"""Called after each step with (step, loss, lr, images so far)."""

Normalization = tuple[tuple[float, ...], tuple[float, ...]]


def prepare_batch(
    images: torch.Tensor, masks: torch.Tensor, device: torch.device, normalization: Normalization
) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 batch from the loader -> normalised channels-last floats and int64 masks on `device`."""
    images = normalize_batch(images.to(device, non_blocking=True), *normalization)
    return images.contiguous(memory_format=torch.channels_last), masks.to(device, non_blocking=True).long()


def train_one_epoch(
    model: nn.Module,
    loader: Iterable,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    device: torch.device,
    *,
    normalization: Normalization = (IMAGENET_MEAN, IMAGENET_STD),
    on_step: StepCallback | None = None,
) -> EpochStats:
    """One pass over `loader` (uint8 batches), stepping the scheduler per iteration; stops on a non-finite loss."""
    model.train()
    started, total_loss, steps, images = time.perf_counter(), 0.0, 0, 0
    for step, (batch, target) in enumerate(loader, start=1):
        batch, target = prepare_batch(batch, target, device, normalization)
        loss = segmentation_loss(model(batch), target)
        value = loss.item()
        if not math.isfinite(value):
            raise TrainingError(f"loss became {value} at step {step}; lower the learning rate")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        total_loss, steps, images = total_loss + value, steps + 1, images + len(batch)
        if on_step:
            on_step(step, value, optimizer.param_groups[0]["lr"], images)
    if steps == 0:
        raise TrainingError("the training split gave no batch")
    return EpochStats(total_loss / steps, images, time.perf_counter() - started)


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    loader: Iterable,
    num_classes: int,
    device: torch.device,
    *,
    normalization: Normalization = (IMAGENET_MEAN, IMAGENET_STD),
) -> SegmentationMetrics:
    """Metrics over a whole split (uint8 batches) from one confusion matrix; images at their own size."""
    model.eval()
    confusion = ConfusionMatrix(num_classes)
    for batch, target in loader:
        batch, target = prepare_batch(batch, target, device, normalization)
        confusion.update(model(batch).argmax(dim=1), target)
    return confusion.compute()

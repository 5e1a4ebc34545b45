"""Training losses by name; every one leaves pixels labelled with the ignore index out of value and gradient."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from pixelwise.data.labels import IGNORE_INDEX

LOSSES = ("ce", "dice", "focal", "lovasz", "ce+dice", "ohem", "ohem+dice")
OHEM_THRESHOLD = 0.7  # a pixel is hard while its true class's probability is at most this (mmsegmentation's)
OHEM_MIN_KEPT = 100_000 / (512 * 1024)  # share of labelled pixels kept at least: mmsegmentation's per 512x1024 crop
Criterion = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""(logits (N, C, H, W) float32, target (N, H, W) int64 with IGNORE_INDEX) -> scalar loss."""


def cross_entropy(
    logits: torch.Tensor, target: torch.Tensor, class_weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Per-pixel cross-entropy over labelled pixels, optionally class-weighted; 0 (not NaN) when a batch has none."""
    total = F.cross_entropy(logits, target, weight=class_weights, ignore_index=IGNORE_INDEX, reduction="sum")
    labelled = target != IGNORE_INDEX
    # Weights gathered at every pixel and zeroed where ignored: boolean indexing would wait for the GPU.
    normalizer = (
        (class_weights[target.where(labelled, 0)] * labelled).sum() if class_weights is not None else labelled.sum()
    )
    return total / normalizer.clamp(min=1e-12)


def hard_pixel_cross_entropy(
    logits: torch.Tensor, target: torch.Tensor, class_weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Cross-entropy over the hard labelled pixels only (online hard example mining, Shrivastava et al. 2016).

    Hard: the true class's probability is at most OHEM_THRESHOLD, or among the lowest OHEM_MIN_KEPT
    share of the labelled pixels when fewer are. The rest count as ignored, in value and gradient.
    """
    labelled = target != IGNORE_INDEX
    pixel_loss = F.cross_entropy(logits, target, ignore_index=IGNORE_INDEX, reduction="none")  # 0 where ignored
    with torch.no_grad():
        true_probability = (-pixel_loss).exp()  # the softmax's value at the true class, without a second softmax
        scores = true_probability[labelled]
        threshold = OHEM_THRESHOLD
        if scores.numel():
            kept = max(1, round(scores.numel() * OHEM_MIN_KEPT))
            threshold = scores.sort().values[kept - 1].clamp(min=OHEM_THRESHOLD)  # kthvalue: not on every device
        hard = labelled & (true_probability <= threshold)
        weights = hard.float() if class_weights is None else class_weights[target.where(hard, 0)] * hard
    return (pixel_loss * weights).sum() / weights.sum().clamp(min=1e-12)


def build_criterion(name: str, class_weights: torch.Tensor | None = None) -> Criterion:
    """The loss `name` (one of LOSSES). Class weights weight CE's pixels and focal's and dice's per-class terms;
    Lovasz optimises the mean IoU directly and takes none. "ohem" is cross-entropy over the hard pixels only.

    Dice, focal and Lovasz are segmentation_models.pytorch's (multiclass, softmax for dice and Lovasz,
    one-vs-rest sigmoid for focal as in RetinaNet and mmsegmentation).
    """
    if name not in LOSSES:
        raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {name!r}")
    pixel_loss = hard_pixel_cross_entropy if name.startswith("ohem") else cross_entropy
    if name in ("ce", "ohem"):
        return lambda logits, target: pixel_loss(logits, target, class_weights)
    from segmentation_models_pytorch import losses

    # A tensor, not a list: smp keeps it where it is, so no copy to the device at every step.
    if name == "lovasz":
        return _zero_without_labels(losses.LovaszLoss("multiclass", ignore_index=IGNORE_INDEX))
    if name == "focal":
        return _zero_without_labels(
            losses.FocalLoss("multiclass", ignore_index=IGNORE_INDEX, class_weights=class_weights)
        )
    dice = losses.DiceLoss("multiclass", ignore_index=IGNORE_INDEX, class_weights=class_weights)
    if name == "dice":
        return dice
    return lambda logits, target: pixel_loss(logits, target, class_weights) + dice(logits, target)


def _zero_without_labels(criterion: Criterion) -> Criterion:
    """`criterion`, but 0 (zero gradient) for a batch with every pixel ignored, where smp's focal and Lovasz fail.

    The check reads one boolean from the device; these two losses index by a mask, which waits anyway.
    """

    def loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if not bool((target != IGNORE_INDEX).any()):
            return logits.sum() * 0
        return criterion(logits, target)

    return loss

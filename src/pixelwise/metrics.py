"""(logits, mask) -> numbers: one integer confusion matrix per split, metrics derived at the end."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pixelwise.data.labels import IGNORE_INDEX


class ConfusionMatrix:
    """Counts of (true class, predicted class) pixels, accumulated with `torch.bincount`."""

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX):
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    def update(self, prediction: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch of predicted and true class maps of the same shape; ignored pixels skip."""
        if prediction.shape != target.shape:
            raise ValueError(f"prediction {tuple(prediction.shape)} and target {tuple(target.shape)} differ in shape")
        keep = target != self.ignore_index
        target, prediction = target[keep].long(), prediction[keep].long()
        if target.numel() and (target.min() < 0 or target.max() >= self.num_classes):
            raise ValueError(f"target values must be in 0..{self.num_classes - 1} or {self.ignore_index}")
        pairs = target * self.num_classes + prediction
        counts = torch.bincount(pairs.cpu(), minlength=self.num_classes**2)
        self.matrix += counts.reshape(self.num_classes, self.num_classes)

    def compute(self) -> SegmentationMetrics:
        """Metrics of everything accumulated so far."""
        return SegmentationMetrics.from_matrix(self.matrix)


@dataclass(frozen=True)
class SegmentationMetrics:
    """Pixel accuracy, mean class accuracy, per-class IoU, mIoU and frequency-weighted IoU.

    A class absent from both prediction and ground truth has IoU NaN and is left out of the
    mean; a class with ground truth has class accuracy, others NaN.
    """

    pixel_accuracy: float
    mean_class_accuracy: float
    iou: tuple[float, ...]
    miou: float
    fwiou: float

    @classmethod
    def from_matrix(cls, matrix: torch.Tensor) -> SegmentationMetrics:
        """Derive every metric from a (true, predicted) count matrix."""
        matrix = matrix.double()
        true_positive = matrix.diag()
        per_true = matrix.sum(dim=1)
        per_predicted = matrix.sum(dim=0)
        union = per_true + per_predicted - true_positive
        iou = true_positive / union  # 0/0 -> NaN for absent classes
        class_accuracy = true_positive / per_true
        total = per_true.sum()
        frequency = per_true / total
        present = ~iou.isnan()
        return cls(
            pixel_accuracy=float(true_positive.sum() / total),
            mean_class_accuracy=float(class_accuracy.nanmean()),
            iou=tuple(iou.tolist()),
            miou=float(iou.nanmean()),
            fwiou=float((frequency[present] * iou[present]).sum()) if total else float("nan"),
        )

    def as_dict(self, class_names: tuple[str, ...] | None = None) -> dict:
        """Plain dict for JSON and CSV; per-class IoU keyed by name when names are given."""
        names = class_names or tuple(str(i) for i in range(len(self.iou)))
        return {
            "pixel_accuracy": self.pixel_accuracy,
            "mean_class_accuracy": self.mean_class_accuracy,
            "miou": self.miou,
            "fwiou": self.fwiou,
            "iou": dict(zip(names, self.iou)),
        }

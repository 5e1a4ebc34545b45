"""Loss weights from a training split's class frequencies (counted by `data.check`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def median_frequency_weights(
    pixels: Sequence[int], pixels_where_present: Sequence[int], power: float = 1.0
) -> torch.Tensor:
    """SegNet's median frequency balancing: weight_c = (median(freq) / freq_c) ** power (absent classes get 0).

    Args:
        pixels: labelled pixels of each class over the split.
        pixels_where_present: labelled pixels of the images in which each class occurs.
        power: 0.5 (the square root) is a milder balance: rare classes gain less, frequent ones lose less.
    """
    pixels, pixels_where_present = np.asarray(pixels, dtype=np.float64), np.asarray(
        pixels_where_present, dtype=np.float64
    )
    present = pixels > 0
    frequency = np.where(present, pixels / np.maximum(pixels_where_present, 1), 0.0)
    weights = np.where(present, np.median(frequency[present]) / np.where(present, frequency, 1.0), 0.0)
    return torch.tensor(weights**power, dtype=torch.float32)

"""Label statistics of a training split: class frequencies and the loss weights derived from them."""

from __future__ import annotations

import numpy as np
import torch

from pixelwise.data.dataset import SegmentationDataset
from pixelwise.data.io import read_label_array
from pixelwise.errors import DatasetError


def class_frequencies(dataset: SegmentationDataset, skip_bad: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Per class: labelled pixels, and labelled pixels of the images where the class occurs.

    Reads only the label files, once; an unreadable one raises, or with `skip_bad` is left out
    (as training's `--on-bad-sample skip` leaves its sample out).
    """
    classes = dataset.classes
    pixels = np.zeros(classes.num_classes, dtype=np.int64)
    pixels_where_present = np.zeros(classes.num_classes, dtype=np.int64)
    for _, label_path in dataset.samples:
        try:
            mask = classes.decode(read_label_array(label_path), label_path)
        except DatasetError:
            if skip_bad:
                continue
            raise
        counts = np.bincount(mask.ravel(), minlength=256)[: classes.num_classes]
        pixels += counts
        pixels_where_present += np.where(counts > 0, counts.sum(), 0)
    return pixels, pixels_where_present


def median_frequency_weights(dataset: SegmentationDataset, power: float = 1.0, skip_bad: bool = False) -> torch.Tensor:
    """SegNet's median frequency balancing: weight_c = (median(freq) / freq_c) ** power (absent classes get 0).

    power 0.5 (the square root) is a milder balance: rare classes gain less, frequent ones lose less.
    """
    pixels, pixels_where_present = class_frequencies(dataset, skip_bad)
    present = pixels > 0
    frequency = np.where(present, pixels / np.maximum(pixels_where_present, 1), 0.0)
    weights = np.where(present, np.median(frequency[present]) / np.where(present, frequency, 1.0), 0.0)
    return torch.tensor(weights**power, dtype=torch.float32)

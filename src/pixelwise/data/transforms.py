"""Paired (image, mask) transforms: one random scale-crop-flip(-jitter) pass for training, batch normalisation."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
from torchvision.transforms.v2 import ColorJitter
from torchvision.transforms.v2 import functional as F

from pixelwise.data.labels import IGNORE_INDEX

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class AxisWindow:
    """Along one axis: the source span to resize, its resized length, and the part kept from it."""

    source_start: int
    source_stop: int
    resized: int
    kept_start: int
    kept: int
    pad_before: int

    @property
    def source_indices(self) -> np.ndarray:
        """Nearest source pixel (pixel centres aligned) of every kept output pixel."""
        span = self.source_stop - self.source_start
        kept = np.arange(self.kept_start, self.kept_start + self.kept) + 0.5
        return np.minimum(np.floor(kept * span / self.resized).astype(np.int64), span - 1) + self.source_start


def axis_window(length: int, crop: int, factor: float) -> AxisWindow:
    """Where a crop of `crop` pixels from the photo scaled by `factor` comes from, drawn at random.

    Only the source span that lands in the crop (plus one pixel each side for interpolation)
    is resized, not the whole photo. A scaled photo shorter than the crop is kept whole and
    placed at a random offset in the padded crop.
    """
    scaled = max(1, round(length * factor))
    if scaled >= crop:
        start, kept, pad_before = int(torch.randint(scaled - crop + 1, ())), crop, 0
    else:
        start, kept, pad_before = 0, scaled, int(torch.randint(crop - scaled + 1, ()))
    ratio = length / scaled
    source_start = max(0, math.floor(start * ratio) - 1)
    source_stop = min(length, math.ceil((start + kept) * ratio) + 1)
    resized = max(kept, round((source_stop - source_start) / ratio))
    kept_start = min(max(0, round(start - source_start / ratio)), resized - kept)
    return AxisWindow(source_start, source_stop, resized, kept_start, kept, pad_before)


@dataclass(frozen=True)
class CropPlan:
    """One sample's random draw: where its rows and columns come from, and whether it is flipped."""

    rows: AxisWindow
    cols: AxisWindow
    flip: bool

    def column_indices(self) -> np.ndarray:
        """Nearest source column of every kept output column, flip applied."""
        indices = self.cols.source_indices
        return indices[::-1] if self.flip else indices


class RandomScaleCrop:
    """Random scale, random crop padded where the scaled photo is smaller, random flip: one pass.

    The image is resized with antialiased bilinear interpolation, the mask with nearest
    neighbour over the same windows, so the pair cannot drift apart. The photo is padded with
    the mean colour, which `normalize_batch` turns into 0 (to within 1/255 of a standard
    deviation), and the mask with IGNORE_INDEX: small photos are kept, and padding never
    counts as a class. With `color_jitter` > 0 the photo's brightness, contrast and saturation
    are each scaled by a random factor in [1 - color_jitter, 1 + color_jitter], in random order
    (torchvision's ColorJitter, as timm's `--color-jitter`), before the padding is added. uint8
    in, uint8 out. `draw` and `crop_mask` alone serve `pixelwise.data.device_crops`, which
    resizes the photos on the training device.
    """

    def __init__(
        self,
        crop_size: tuple[int, int],
        scale_range: tuple[float, float] = (0.75, 1.5),
        *,
        hflip: bool = True,
        mean: tuple[float, ...] = IMAGENET_MEAN,
        color_jitter: float = 0.0,
    ):
        low, high = scale_range
        if not 0 < low <= high:
            raise ValueError(f"scale range must satisfy 0 < low <= high, got {scale_range}")
        if not 0 <= color_jitter <= 1:
            raise ValueError(f"color jitter must be 0 to 1, got {color_jitter}")
        self.crop_size = tuple(crop_size)
        self.scale_range = (low, high)
        self.hflip = hflip
        self.jitter = ColorJitter(color_jitter, color_jitter, color_jitter) if color_jitter else None
        self.fill = torch.tensor([round(255 * m) for m in mean], dtype=torch.uint8).view(-1, 1, 1)

    def draw(self, height: int, width: int) -> CropPlan:
        """Draw the scale, the crop's place and the flip for a `height` x `width` photo (the jitter: `crop_image`)."""
        low, high = self.scale_range
        factor = low + (high - low) * torch.rand(()).item()
        rows, cols = (axis_window(length, crop, factor) for length, crop in zip((height, width), self.crop_size))
        return CropPlan(rows, cols, self.hflip and torch.rand(()).item() < 0.5)

    def crop_mask(self, mask: torch.Tensor, plan: CropPlan) -> torch.Tensor:
        """The crop-sized mask of `plan`: nearest neighbour, IGNORE_INDEX where the photo does not reach."""
        # Two numpy takes: several times faster than torch's advanced indexing on uint8 here.
        kept = torch.from_numpy(mask.numpy().take(plan.rows.source_indices, 0).take(plan.column_indices(), 1))
        return self._place(kept, plan, torch.tensor(IGNORE_INDEX, dtype=mask.dtype))

    def crop_image(self, image: torch.Tensor, plan: CropPlan) -> torch.Tensor:
        """The crop-sized photo of `plan`: antialiased bilinear, jittered if set, mean colour beyond the photo."""
        rows, cols = plan.rows, plan.cols
        image = image[:, rows.source_start : rows.source_stop, cols.source_start : cols.source_stop]
        if image.shape[-2:] != (rows.resized, cols.resized):
            image = F.resize(image, [rows.resized, cols.resized], antialias=True)
        image = image[:, rows.kept_start : rows.kept_start + rows.kept, cols.kept_start : cols.kept_start + cols.kept]
        if self.jitter is not None:
            image = self.jitter(image)
        return self._place(image.flip(-1) if plan.flip else image, plan, self.fill)

    def __call__(self, image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = image.as_subclass(torch.Tensor), mask.as_subclass(torch.Tensor)
        plan = self.draw(*image.shape[-2:])
        return self.crop_image(image, plan), self.crop_mask(mask, plan)

    def _place(self, kept: torch.Tensor, plan: CropPlan, fill: torch.Tensor) -> torch.Tensor:
        """`kept` at the plan's offset in a crop-sized canvas of `fill`."""
        height, width = kept.shape[-2:]
        if (height, width) == self.crop_size:
            return kept.contiguous()
        canvas = fill.expand(*kept.shape[:-2], *self.crop_size).clone()
        top, left = plan.rows.pad_before, plan.cols.pad_before
        canvas[..., top : top + height, left : left + width] = kept
        return canvas


def train_transforms(
    crop_size: tuple[int, int],
    *,
    scale_range: tuple[float, float] = (0.75, 1.5),
    hflip: bool = True,
    mean: tuple[float, ...] = IMAGENET_MEAN,
    color_jitter: float = 0.0,
) -> RandomScaleCrop:
    """The training augmentation: random scale, random crop (padded, never dropped), flip, colour jitter; uint8.

    Workers hand over uint8 images and masks (a quarter and an eighth of float32 and int64):
    copying batches between processes, not decoding, limited the loader before.
    """
    return RandomScaleCrop(crop_size, scale_range, hflip=hflip, mean=mean, color_jitter=color_jitter)


def normalize_batch(
    images: torch.Tensor, mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD
) -> torch.Tensor:
    """uint8 images (N, 3, H, W) -> float32 standardised per channel, where the batch lives."""
    mean_255, std_255 = _channel_constants(tuple(mean), tuple(std), images.device)
    return images.float().sub_(mean_255).div_(std_255)  # in place: one float copy, not four


@functools.lru_cache(maxsize=8)
def _channel_constants(
    mean: tuple[float, ...], std: tuple[float, ...], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """(1, C, 1, 1) mean and std in 0-255 units on `device`, made once.

    Copying them to a GPU for every batch would be a host-to-device transfer per batch, and a
    blocking one (`torch.tensor(..., device="cuda")`) waits for every kernel already queued.
    """
    shape = (1, -1, 1, 1)
    return (torch.tensor(mean).view(shape) * 255).to(device), (torch.tensor(std).view(shape) * 255).to(device)

"""Paired (image, mask) transforms built on torchvision.transforms.v2."""

from __future__ import annotations

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from pixelwise.data.labels import IGNORE_INDEX

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class RandomScale:
    """Resize image and mask by one factor drawn uniformly from `scale_range`."""

    def __init__(self, scale_range: tuple[float, float]):
        low, high = scale_range
        if not 0 < low <= high:
            raise ValueError(f"scale range must satisfy 0 < low <= high, got {scale_range}")
        self.scale_range = (low, high)

    def __call__(self, image: tv_tensors.Image, mask: tv_tensors.Mask) -> tuple[torch.Tensor, torch.Tensor]:
        low, high = self.scale_range
        factor = low + (high - low) * torch.rand(()).item()
        height, width = F.get_size(image)
        size = [max(1, round(height * factor)), max(1, round(width * factor))]
        # Masks are resized with nearest neighbour by v2's dispatch on tv_tensors.Mask.
        return F.resize(image, size, antialias=True), F.resize(mask, size)


def train_transforms(
    crop_size: tuple[int, int],
    *,
    scale_range: tuple[float, float] = (0.75, 1.5),
    hflip: bool = True,
    mean: tuple[float, ...] = IMAGENET_MEAN,
) -> v2.Compose:
    """Random scale, random crop padded where the photo is smaller, flip; uint8 in and out.

    Workers hand over uint8 images and masks (a quarter and an eighth of float32 and int64):
    copying batches between processes, not decoding, limited the loader before.

    The photo is padded with the mean colour, which `normalize_batch` turns into 0 (to within
    1/255 of a standard deviation), and the mask with IGNORE_INDEX: small photos are kept,
    and padding never counts as a class.
    """
    mean_color = tuple(round(255 * m) for m in mean)
    steps = [
        RandomScale(scale_range),
        v2.RandomCrop(crop_size, pad_if_needed=True, fill={tv_tensors.Image: mean_color, tv_tensors.Mask: IGNORE_INDEX}),
    ]
    if hflip:
        steps.append(v2.RandomHorizontalFlip())
    return v2.Compose(steps)


def normalize_batch(
    images: torch.Tensor, mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD
) -> torch.Tensor:
    """uint8 images (N, 3, H, W) -> float32 standardised per channel, where the batch lives."""
    mean_255 = torch.tensor(mean, device=images.device).view(1, -1, 1, 1) * 255
    std_255 = torch.tensor(std, device=images.device).view(1, -1, 1, 1) * 255
    return images.float().sub_(mean_255).div_(std_255)  # in place: one float copy, not four

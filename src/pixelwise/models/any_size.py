"""A wrapper that lets a network with a fixed output stride take any H x W: pad inside, crop back."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class AnySize(nn.Module):
    """`network` run on the input zero-padded at the bottom and right to a multiple of `multiple`, logits cropped back.

    Zero is the dataset mean once normalised, so padding looks like the mean colour (as crops are padded).
    """

    def __init__(self, network: nn.Module, *, multiple: int):
        super().__init__()
        self.network = network
        self.multiple = multiple

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, C, H, W) for images (N, 3, H, W) of any size."""
        height, width = x.shape[-2:]
        pad_bottom, pad_right = -height % self.multiple, -width % self.multiple
        x = F.pad(x, (0, pad_right, 0, pad_bottom))  # (N, 3, H', W'), multiples of the stride; no branch to export
        return self.network(x)[..., :height, :width]

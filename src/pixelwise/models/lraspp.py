"""LR-ASPP on MobileNetV3-Large (torchvision): the mobile model, a few million parameters."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torchvision.models.segmentation import lraspp_mobilenet_v3_large

from pixelwise.models.any_size import AnySize
from pixelwise.models.encoders import load_encoder_weights

ENCODERS = ("mobilenet_v3_large",)
OUTPUT_STRIDE = 32  # padding to it keeps the 1/16 features at least 2x2, which training's BatchNorm needs
BATCH_NORM_MOMENTUM = 0.1  # PyTorch's default; torchvision's MobileNetV3 uses 0.01, tuned for ImageNet's many steps


class LogitsOnly(nn.Module):
    """torchvision's segmentation model, returning the logits tensor instead of its {"out": ...} dict."""

    def __init__(self, network: nn.Module):
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, C, H, W)."""
        return self.network(x)["out"]


def _backbone_key(key: str) -> str | None:
    """A MobileNetV3 classifier's key as LR-ASPP's backbone names it (`features.3.x` -> `3.x`); the head is dropped."""
    return key.removeprefix("features.") if key.startswith("features.") else None


def lraspp(*, num_classes: int, encoder: str = ENCODERS[0], encoder_weights: str | Path | None = None) -> AnySize:
    """LR-ASPP with a MobileNetV3-Large backbone, taking any input size."""
    network = lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=num_classes)
    # At 0.01 the running statistics trail a from-scratch run by hundreds of steps, so its
    # validation (in eval mode) lags far behind its training on a few hundred photos.
    for norm in (module for module in network.modules() if isinstance(module, nn.BatchNorm2d)):
        norm.momentum = BATCH_NORM_MOMENTUM
    load_encoder_weights(network.backbone, encoder_weights, encoder=encoder, rename=_backbone_key)
    return AnySize(LogitsOnly(network), multiple=OUTPUT_STRIDE)

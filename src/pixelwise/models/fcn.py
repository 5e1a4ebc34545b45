"""Fully convolutional networks on a ResNet backbone: the seed's FCN-32s and FCN-8s (ResNet-18 by default)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torchvision.models import resnet18, resnet34, resnet50

from pixelwise.errors import ModelError
from pixelwise.ops import bilinear_kernel, conv_transpose2d_by_phases, interleave_blocks, phase_blocks
from pixelwise.models.encoders import load_encoder_weights, without_head

VARIANTS = ("32s", "8s")


class BlockConvTranspose2d(nn.ConvTranspose2d):
    """A bias-free ConvTranspose2d whose kernel is a multiple of its stride, computed on CPU as one GEMM.

    Same parameters and state dict as `nn.ConvTranspose2d`; see `conv_transpose2d_by_phases`.
    On other devices torch's own kernel runs: cuDNN's was the faster there.
    Set `by_phases = False` on a layer to run torch's kernel on CPU too.
    """

    by_phases = True

    def forward(self, x: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        """The transposed convolution of `x`; torch's own kernel off CPU, or given `output_size` or a bias."""
        if output_size is not None or not self._runs_by_phases(x):
            return super().forward(x, output_size)
        return conv_transpose2d_by_phases(x, self.weight, stride=self.stride[0], padding=self.padding[0])

    def argmax_channels(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """`self(x)[..., :height, :width].argmax(dim=1)`; by phases, on the GEMM's blocks before interleaving."""
        if not self._runs_by_phases(x):
            return _crop(self(x), height, width).argmax(dim=1)
        blocks = phase_blocks(x, self.weight, stride=self.stride[0])  # (N, H', W', s, s, C)
        return interleave_blocks(
            blocks.argmax(dim=-1), top=self.padding[0], left=self.padding[1], height=height, width=width
        )

    def _runs_by_phases(self, x: torch.Tensor) -> bool:
        """Whether the GEMM form computes this layer for `x`: on CPU, without a bias, unless switched off."""
        return self.by_phases and x.device.type == "cpu" and self.bias is None


def bilinear_upsampler(channels: int, factor: int) -> nn.ConvTranspose2d:
    """ConvTranspose2d(k=2f, s=f, p=f/2) initialised to per-channel bilinear upsampling by f."""
    layer = BlockConvTranspose2d(
        channels, channels, kernel_size=2 * factor, stride=factor, padding=factor // 2, bias=False
    )
    with torch.no_grad():
        layer.weight.copy_(bilinear_kernel(channels, channels, 2 * factor))
    return layer


def _zero_conv1x1(in_channels: int, out_channels: int) -> nn.Conv2d:
    """A 1x1 scoring conv that starts at zero, so a new skip adds nothing until trained."""
    layer = nn.Conv2d(in_channels, out_channels, kernel_size=1)
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


def _crop(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Top-left (height, width) window: strided layers keep the top-left corner aligned."""
    return x[..., :height, :width]


class FCN(nn.Module):
    """A ResNet without pooling and fc, 1x1 class scores, transposed-convolution upsampling.

    `variant="32s"` is the seed's network (one x32 upsampler, kernel 64, padding 16, stride 32);
    `"8s"` fuses scores from the stride-16 and stride-8 stages (Long et al. 2015).
    """

    def __init__(self, backbone: nn.Module, *, num_classes: int, variant: str = "32s"):
        super().__init__()
        if variant not in VARIANTS:
            raise ModelError(f"unknown FCN variant {variant!r}; choose one of {', '.join(VARIANTS)}")
        if num_classes < 1:
            raise ModelError(f"num_classes must be positive, got {num_classes}")
        self.variant = variant
        self.stem = nn.Sequential(backbone.conv1, backbone.bn1, backbone.relu, backbone.maxpool)
        self.layer1, self.layer2 = backbone.layer1, backbone.layer2
        self.layer3, self.layer4 = backbone.layer3, backbone.layer4
        last_block = backbone.layer4[-1]
        channels = getattr(last_block, "bn3", last_block.bn2).num_features  # 512 (BasicBlock), 2048 (Bottleneck)
        self.score32 = nn.Conv2d(channels, num_classes, kernel_size=1)
        if variant == "32s":
            self.upsample32 = bilinear_upsampler(num_classes, 32)
        else:
            self.score16 = _zero_conv1x1(channels // 2, num_classes)
            self.score8 = _zero_conv1x1(channels // 4, num_classes)
            self.upsample32to16 = bilinear_upsampler(num_classes, 2)
            self.upsample16to8 = bilinear_upsampler(num_classes, 2)
            self.upsample8 = bilinear_upsampler(num_classes, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, num_classes, H, W) for images (N, 3, H, W) of any size."""
        scores, upsampler = self._coarse_scores(x)
        return _crop(upsampler(scores), *x.shape[-2:])  # (N, C, H, W)

    def segment(self, x: torch.Tensor) -> torch.Tensor:
        """Class indices (N, H, W), the argmax of `forward(x)`, without full-size logits on CPU."""
        scores, upsampler = self._coarse_scores(x)
        return upsampler.argmax_channels(scores, *x.shape[-2:])

    def _coarse_scores(self, x: torch.Tensor) -> tuple[torch.Tensor, BlockConvTranspose2d]:
        """Class scores before the last upsampling, and the upsampler that takes them to the input's size."""
        features8 = self.layer2(self.layer1(self.stem(x)))  # (N, channels/4, H/8, W/8)
        features16 = self.layer3(features8)  # (N, channels/2, H/16, W/16)
        scores = self.score32(self.layer4(features16))  # (N, C, H/32, W/32)
        if self.variant == "32s":
            return scores, self.upsample32
        scores = _crop(self.upsample32to16(scores), *features16.shape[-2:]) + self.score16(features16)
        scores = _crop(self.upsample16to8(scores), *features8.shape[-2:]) + self.score8(features8)
        return scores, self.upsample8  # (N, C, H/8, W/8)


def with_torch_upsampling(model: nn.Module) -> nn.Module:
    """`model` with its GEMM upsamplers running nn.ConvTranspose2d's own kernels (the "before" figure)."""
    for module in model.modules():
        if isinstance(module, BlockConvTranspose2d):
            module.by_phases = False
    return model


RESNETS = {"resnet18": resnet18, "resnet34": resnet34, "resnet50": resnet50}


def resnet_backbone(encoder: str = "resnet18", weights: str | Path | None = None) -> nn.Module:
    """A torchvision ResNet without its fc head, with random, ImageNet (`"imagenet"`) or file weights."""
    backbone = RESNETS[encoder](weights=None)
    backbone.fc = nn.Identity()
    load_encoder_weights(backbone, weights, encoder=encoder, rename=without_head("fc."))
    return backbone


def fcn_resnet(
    *, num_classes: int, variant: str = "32s", encoder: str = "resnet18", encoder_weights: str | Path | None = None
) -> FCN:
    """FCN on a ResNet; `encoder_weights` is None, "none", "imagenet" or a state-dict path."""
    if encoder not in RESNETS:
        raise ModelError(f"FCN has no encoder {encoder!r}; choose one of {', '.join(RESNETS)}")
    return FCN(resnet_backbone(encoder, encoder_weights), num_classes=num_classes, variant=variant)


def fcn_resnet18(*, num_classes: int, variant: str = "32s", backbone_weights: str | Path | None = None) -> FCN:
    """The seed's FCN on ResNet-18; `backbone_weights` is None, "none", "imagenet" or a state-dict path."""
    return fcn_resnet(num_classes=num_classes, variant=variant, encoder="resnet18", encoder_weights=backbone_weights)

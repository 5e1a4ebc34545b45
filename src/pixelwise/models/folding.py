"""BatchNorm folded into the convolution before it: an inference-only copy with the same outputs, fewer passes."""

from __future__ import annotations

import copy

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def _conv_norm_pairs(module: nn.Module) -> list[tuple[str, str]]:
    """Names of (Conv2d, BatchNorm2d) children where the norm is applied right after the conv.

    Neighbours in a Sequential (a stem, a shortcut, smp's and torchvision's conv-norm-activation
    blocks), and torchvision's `convN` / `bnN` of a residual block.
    """
    children = dict(module.named_children())
    names = list(children)
    if isinstance(module, nn.Sequential):
        pairs = zip(names, names[1:])
    else:
        pairs = ((name, "bn" + name[4:]) for name in names if name.startswith("conv"))
    return [
        (conv, norm)
        for conv, norm in pairs
        if isinstance(children.get(conv), nn.Conv2d) and isinstance(children.get(norm), nn.BatchNorm2d)
    ]


def fold_batch_norms(network: nn.Module) -> nn.Module:
    """An eval-mode copy of `network` with each BatchNorm2d folded into the Conv2d before it."""
    folded = copy.deepcopy(network).eval()
    for module in list(folded.modules()):
        for conv, norm in _conv_norm_pairs(module):
            setattr(module, conv, fuse_conv_bn_eval(getattr(module, conv), getattr(module, norm)))
            setattr(module, norm, nn.Identity())
    return folded

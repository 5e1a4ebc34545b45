"""Whether a training batch can fit in the device's memory at all, known before the first step."""

from __future__ import annotations

import copy
import os

import torch
from torch import nn

from pixelwise.errors import TrainingError

GIB = 2**30


def forward_output_bytes(network: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Bytes of every leaf module's output in a forward pass at `input_shape`: a lower bound of a step's memory.

    Run on the meta device, so nothing is computed or allocated whatever the shape.
    """
    probe = copy.deepcopy(network).to("meta").train()  # as a training step runs it
    total = 0

    def count(module, inputs, output) -> None:
        nonlocal total
        if isinstance(output, torch.Tensor):
            total += output.numel() * output.element_size()

    for module in probe.modules():
        if not list(module.children()):
            module.register_forward_hook(count)
    with torch.no_grad():
        probe(torch.empty(input_shape, device="meta"))
    return total


def device_memory(device: torch.device) -> int:
    """Total memory of `device` in bytes: the GPU's own, or the machine's physical memory for the CPU."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def refuse_impossible_batch(
    network: nn.Module, batch_size: int, crop_size: tuple[int, int], device: torch.device
) -> None:
    """TrainingError, before any work, when a batch cannot train: too big for the device, or a shape a layer refuses."""
    try:
        needed = forward_output_bytes(network, (batch_size, 3, *crop_size))
    except (ValueError, RuntimeError) as error:
        raise TrainingError(
            f"a batch of {batch_size} crops of {crop_size[0]}x{crop_size[1]} cannot be trained on "
            f"({str(error).splitlines()[0]}); "
            "use a larger batch size or crop size"
        ) from None
    available = device_memory(device)
    if needed > available:
        raise TrainingError(
            f"a batch of {batch_size} crops of {crop_size[0]}x{crop_size[1]} needs at least {needed / GIB:,.0f} GiB "
            "for its "
            f"forward pass alone, more than the {available / GIB:,.0f} GiB of {device}; use a smaller crop size or "
            "batch size"
        )

"""Which device a run or a model uses: checked once, in one line, before any work."""

from __future__ import annotations

import torch

from pixelwise.errors import DeviceError

USABLE = "auto, cpu, cuda or cuda:N"


def resolve_device(name: str | torch.device) -> torch.device:
    """'auto' is CUDA when present, else CPU; cpu, cuda, cuda:N (and mps where PyTorch has it) are checked to exist."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise DeviceError(f"unknown device {name!r}; use {USABLE}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {name} requested but CUDA is not available; use cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(
                f"device {name} requested but this machine has {torch.cuda.device_count()} CUDA device(s)"
            )
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise DeviceError(f"device {name} requested but MPS is not available here; use {USABLE}")
    elif device.type != "cpu":
        raise DeviceError(f"device {name!r} cannot run pixelwise; use {USABLE}")
    return device

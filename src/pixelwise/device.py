"""Which device a run or a model uses: checked once, in one line, before any work."""

from __future__ import annotations

import functools
from pathlib import Path

import torch

from pixelwise.errors import DeviceError

USABLE = "auto, cpu, cuda or cuda:N"
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo flags of x86 bfloat16 arithmetic


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


@functools.cache
def _cpu_has_bf16_units() -> bool:
    """Whether this x86 CPU computes in bfloat16 (AVX-512 BF16 or AMX); False where /proc/cpuinfo is absent."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return any(flag in flags for flag in BF16_CPU_FLAGS)


def bf16_is_native(device: torch.device) -> bool:
    """Whether `device` has bfloat16 arithmetic units: a CUDA GPU that supports it, or a CPU with the flags above."""
    if device.type == "cuda":
        return torch.cuda.get_device_capability(device)[0] >= 8  # Ampere on; older GPUs emulate bfloat16
    return device.type == "cpu" and _cpu_has_bf16_units()


def emulated_bf16_warning(device: torch.device, precision: str) -> str | None:
    """A warning when bf16 is asked for on a device without bfloat16 units, where it is slower than fp32."""
    if precision != "bf16" or bf16_is_native(device):
        return None
    on_cpu = device.type == "cpu"
    processor, units = ("CPU", "AVX-512 BF16 or AMX") if on_cpu else ("GPU", "compute capability 8.0 or later")
    return (
        f"this {processor} has no bfloat16 units ({units}): bf16 is emulated, many times slower "
        "than fp32, which precision auto chooses here"
    )

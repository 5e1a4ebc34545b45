"""Process settings for long runs: glibc keeps freed tensor memory; deterministic kernels for a block."""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys

import torch

# glibc's mallopt parameters (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
KEEP_AT_MOST = (1 << 31) - 1  # bytes of free heap kept before glibc returns memory to the OS
OPT_OUT = "PIXELWISE_SYSTEM_MALLOC"


def keep_freed_memory() -> bool:
    """Make glibc reuse freed large blocks instead of unmapping them; False where it does not apply.

    Training and whole-image inference allocate tensors of 100 MB and more at every step.
    glibc serves each with a fresh mmap whose pages fault and are zeroed on first touch, then
    unmaps it when the tensor is freed, which costs a measurable share of a training step
    (benchmarks/train_step.py). With mmap disabled for allocations and a 2 GiB trim
    threshold, the next step reuses the same pages; up to 2 GiB of freed memory stays with the
    process. Set PIXELWISE_SYSTEM_MALLOC=1 to keep the system's behaviour.
    """
    if os.environ.get(OPT_OUT) == "1" or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # no C library symbols, or one without mallopt
        return False
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, KEEP_AT_MOST))


@contextlib.contextmanager
def deterministic_algorithms(enabled: bool):
    """Ask torch for deterministic kernels while the block runs, then restore its settings."""
    previous = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.benchmark,
    )
    workspace = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    if enabled:
        if workspace is None:
            os.environ["CUBLAS_WORKSPACE_CONFIG"] = ":4096:8"  # what deterministic cuBLAS needs
        torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True, warn_only=True)  # some CUDA kernels have no deterministic version
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
        torch.backends.cudnn.benchmark = previous[2]
        if enabled and workspace is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)

import ctypes
import subprocess
import sys

import pytest

from pixelwise.runtime import OPT_OUT, keep_freed_memory

# Prints the bytes glibc holds in mmapped chunks while a 400 MB tensor is alive.
MAPPED_BYTES = """
import ctypes, sys, torch
from pixelwise.runtime import keep_freed_memory
class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]
libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
applied = keep_freed_memory() if sys.argv[1] == "keep" else None
tensor = torch.ones(100_000_000)
print(applied, libc.mallinfo2().hblkhd)
"""


def mapped_bytes(mode: str) -> tuple[str, int]:
    """(what keep_freed_memory returned, mmapped bytes) in a fresh interpreter."""
    output = subprocess.run(
        [sys.executable, "-c", MAPPED_BYTES, mode], capture_output=True, text=True, check=True
    ).stdout
    applied, mapped = output.split()
    return applied, int(mapped)


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or not hasattr(ctypes.CDLL(None), "mallinfo2"), reason="needs glibc >= 2.33"
)
def test_large_tensors_reuse_the_heap_instead_of_fresh_mappings(monkeypatch):
    monkeypatch.delenv(OPT_OUT, raising=False)
    applied, mapped = mapped_bytes("keep")
    assert applied == "True" and mapped < 50_000_000
    _, mapped_by_default = mapped_bytes("system")
    assert mapped_by_default >= 400_000_000


def test_opt_out_leaves_the_allocator_alone(monkeypatch):
    monkeypatch.setenv(OPT_OUT, "1")
    assert keep_freed_memory() is False

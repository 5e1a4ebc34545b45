"""Files written by `torch.save`, read without running pickled code; every failure is one line."""

from __future__ import annotations

import re
import zipfile
import zlib
from pathlib import Path

import torch

from pixelwise.errors import PixelwiseError


def load_weights_only(path: Path, what: str, error: type[PixelwiseError]) -> object:
    """`torch.load(path, weights_only=True)` onto the CPU; a missing or unloadable file raises `error` naming it.

    `what` says what the file should be ("checkpoint"), for the message.
    """
    if path.is_dir():
        inside = next((path / name for name in ("best.pt", "last.pt") if (path / name).is_file()), None)
        raise error(f"{path}: a folder, not a {what}" + (f" (did you mean {inside}?)" if inside else ""))
    if not path.is_file():
        raise error(f"{path}: {what} not found")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; torch.load's errors for other files say little
        raise error(f"{path}: not a loadable {what} (not a PyTorch archive: truncated, or another kind of file)")
    damage = _archive_damage(path)
    if damage:  # torch.load does not check the archive's checksums: flipped bits would load as wrong weights
        raise error(f"{path}: damaged {what} ({damage})")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as failure:  # damaged archive, refused globals
        raise error(f"{path}: not a loadable {what} ({_reason(failure)})") from None


def _archive_damage(path: Path) -> str | None:
    """What is wrong with the zip archive at `path` by its CRC-32 checksums, in a few words; None if nothing."""
    try:
        with zipfile.ZipFile(path) as archive:
            failed = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, zlib.error) as failure:
        return str(failure).splitlines()[0] if str(failure) else type(failure).__name__
    return f"its part {failed} fails its checksum" if failed else None


def _reason(failure: Exception) -> str:
    """torch.load's failure in a few words (its own messages run to paragraphs of advice)."""
    text = str(failure)
    refused = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if refused:
        return f"it holds Python code ({refused.group(1)}), refused without running it"
    if "Weights only load failed" in text:
        return "damaged, or objects other than tensors and plain values; refused without loading them"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else type(failure).__name__

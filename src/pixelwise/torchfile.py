"""Files written by `torch.save`, read without running pickled code; every failure is one line."""

from __future__ import annotations

import re
import zipfile
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
        raise error(f"{path}: {what} not found" if not path.exists() else f"{path}: not a regular file, not a {what}")
    try:
        path.open("rb").close()
    except OSError as failure:
        raise error(f"{path}: cannot read the {what} ({failure.strerror or failure})") from None
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
    """What is wrong with the zip archive at `path` by its CRC-32 checksums, in a few words; None if nothing.

    Parts recorded with a checksum of 0 are not checked: torch writes 0 throughout when its
    `compute_crc32` setting is off, and such files load.
    """
    member = None
    try:
        with zipfile.ZipFile(path) as archive:
            for member in archive.infolist():
                if member.CRC == 0 and member.file_size:
                    continue
                with archive.open(member) as data:  # reading to the end checks the part's CRC-32
                    while data.read(1 << 24):
                        pass
    except zipfile.BadZipFile as failure:
        checksum = member is not None and "CRC" in str(failure)
        return f"its part {member.filename} fails its checksum" if checksum else _first_line(failure)
    except Exception as failure:  # a damaged header reaches zipfile as anything from UnicodeDecodeError to zlib.error
        return _first_line(failure)
    return None


def _first_line(failure: Exception) -> str:
    """The first line of an exception's message, or its type's name."""
    lines = str(failure).strip().splitlines()
    return lines[0].strip() if lines else type(failure).__name__


def _reason(failure: Exception) -> str:
    """torch.load's failure in a few words (its own messages run to paragraphs of advice)."""
    text = str(failure)
    refused = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if refused:
        return f"it holds Python code ({refused.group(1)}), refused without running it"
    if "Weights only load failed" in text:
        return "damaged, or objects other than tensors and plain values; refused without loading them"
    return _first_line(failure)

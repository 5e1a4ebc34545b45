"""Files replaced atomically and durably (a reader sees the old or the new content, even after a power cut),
and no file taken for a folder."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from pixelwise.errors import PixelwiseError


def file_where_a_folder_goes(folder: Path) -> Path | None:
    """The file that stands where `folder` or a folder above it goes, if one does: nothing can be written there."""
    existing = next((path for path in (folder, *folder.parents) if path.exists()), None)
    return existing if existing is not None and not existing.is_dir() else None


def refuse_a_file_where_a_folder_goes(folder: Path) -> None:
    """PixelwiseError naming the file that stands where `folder` or a folder above it goes, if one does."""
    blocking = file_where_a_folder_goes(folder)
    if blocking is not None:
        raise PixelwiseError(f"{blocking}: a file where a folder goes; give another folder")


def _write_new_file(path: Path, data: bytes) -> None:
    """Create `path` (mode 0666 less the umask) and write `data` to disk, fsynced."""
    handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(handle, view) :]  # a full disk raises OSError(ENOSPC) here
        os.fsync(handle)
    finally:
        os.close(handle)


def replace_file(path: Path | str, data: bytes) -> None:
    """Write `data` to a temporary file beside `path`, fsync it, rename it over `path`, fsync the folder."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        _write_new_file(temporary, data)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # make the rename itself durable
    finally:
        os.close(directory)

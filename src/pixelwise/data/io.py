"""Decoding photos and label files into arrays, with errors that name the file."""

from __future__ import annotations

import contextlib
import errno
import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import ExifTags, Image, ImageOps

from pixelwise.errors import DatasetError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def folder_pictures(folder: Path) -> list[Path]:
    """The picture files of `folder` (not its subfolders) by suffix, sorted; broken links too, to be named as such."""
    return sorted(
        path for path in folder.iterdir()
        if path.suffix.lower() in IMAGE_SUFFIXES and (path.is_file() or broken_link(path))
    )  # fmt: skip


def broken_link(path: Path) -> str | None:
    """'broken link (to TARGET)' or 'link loop' when `path` is a link that leads to no file, else None."""
    if not path.is_symlink() or path.exists():
        return None
    try:
        os.stat(path)
    except OSError as error:
        if error.errno == errno.ELOOP:
            return f"link loop (to {os.readlink(path)})"
    return f"broken link (to {os.readlink(path)})"


@contextlib.contextmanager
def _decoder_errors(path: Path | str):
    """Turn every failure of opening or decoding `path` into one DatasetError naming it.

    Pillow's two-line warning for photos between its pixel limit and twice that is silenced:
    such photos (a 108-megapixel phone photo) decode; larger ones are refused in one line.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            yield
    except FileNotFoundError:
        raise DatasetError(f"{path}: {broken_link(Path(path)) or 'file not found'}") from None
    except Image.DecompressionBombError as error:
        raise DatasetError(f"{path}: refused, image too large ({error})") from None
    except (OSError, SyntaxError, ValueError) as error:
        if getattr(error, "errno", None) == errno.ELOOP:
            raise DatasetError(f"{path}: {broken_link(Path(path)) or 'link loop'}") from None
        if Path(path).is_file() and Path(path).stat().st_size == 0:
            raise DatasetError(f"{path}: empty file (0 bytes), not an image") from None
        raise DatasetError(f"{path}: cannot decode image ({error})") from None


def _open(path: Path | str) -> Image.Image:
    """Open and fully decode an image file."""
    with _decoder_errors(path), Image.open(path) as image:
        image.load()
        return image


@dataclass(frozen=True)
class PhotoHeader:
    """What a photo's header says: its size, and whether a JPEG decoder alone gives `read_image`'s pixels."""

    width: int
    height: int
    plain_jpeg: bool  # JPEG, RGB or grayscale, no EXIF rotation


def read_photo_header(path: Path | str, data: torch.Tensor) -> PhotoHeader:
    """The header of the photo whose file `path` holds the bytes `data` (no pixels decoded, nothing read again)."""
    with _decoder_errors(path), Image.open(io.BytesIO(data.numpy())) as image:
        try:
            orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
        except (OSError, SyntaxError, ValueError):
            orientation = 1  # read_image ignores a broken EXIF block too
        return PhotoHeader(
            image.width, image.height, image.format == "JPEG" and image.mode in ("RGB", "L") and orientation == 1
        )


def read_bytes(path: Path | str) -> torch.Tensor:
    """A file's bytes as a 1-D uint8 tensor."""
    with _decoder_errors(path):
        return torch.from_numpy(np.fromfile(path, dtype=np.uint8))


def read_image(path: Path | str) -> Image.Image:
    """An RGB photo, upright per its EXIF orientation; grayscale (8 or 16-bit), RGBA, CMYK are converted."""
    return upright_rgb(_open(path), path)


def upright_rgb(image: Image.Image, name: Path | str) -> Image.Image:
    """A decoded photo turned upright per its EXIF orientation and converted by `to_rgb` (errors name `name`)."""
    try:
        image = ImageOps.exif_transpose(image)
    except (OSError, SyntaxError, ValueError):
        pass  # a broken EXIF block does not make the pixels unusable
    return to_rgb(image, name)


def to_rgb(image: Image.Image, name: Path | str) -> Image.Image:
    """`image` as 8-bit RGB: 16-bit grayscale scaled, not clipped; 32-bit and float pixels refused naming `name`."""
    if image.width == 0 or image.height == 0:
        raise DatasetError(f"{name}: an image without pixels ({image.width}x{image.height})")
    if image.mode == "P" and "transparency" in image.info:  # via RGBA, as Pillow warns it should be
        image = image.convert("RGBA")
    if image.mode.startswith("I;16"):  # convert("RGB") would clip every value above 255 to white
        image = Image.fromarray((np.asarray(image).astype(np.uint16) >> 8).astype(np.uint8))
    elif image.mode in ("I", "F"):
        raise DatasetError(
            f"{name}: photo mode {image.mode!r} (32-bit pixels) is not supported; save it with 8 or 16 bits per channel"
        )
    if image.mode == "RGB":
        return image
    try:
        return image.convert("RGB")
    except ValueError:  # a mode Pillow reads but cannot convert (premultiplied "La")
        raise DatasetError(f"{name}: photo mode {image.mode!r} cannot be converted to RGB; save it as RGB") from None


def read_label_array(path: Path | str) -> np.ndarray:
    """Raw label pixels: (H, W) uint8 for palette/grayscale PNGs, (H, W, 3|4) for RGB/RGBA colour maps."""
    return read_label_file(path)[0]


def read_label_file(path: Path | str) -> tuple[np.ndarray, np.ndarray | None]:
    """`read_label_array`'s pixels, and a palette PNG's own colours as (256, 3) uint8 (None for other modes)."""
    image = _open(path)
    if image.mode in ("P", "L"):
        palette = np.zeros((256, 3), dtype=np.uint8)
        if image.mode == "P" and image.palette is not None and image.palette.mode == "RGB":
            colors = np.frombuffer(bytes(image.palette.palette), dtype=np.uint8)
            colors = colors[: len(colors) // 3 * 3].reshape(-1, 3)[:256]
            palette[: len(colors)] = colors
        return np.asarray(image, dtype=np.uint8), palette if image.mode == "P" else None
    if image.mode in ("RGB", "RGBA"):
        return np.asarray(image, dtype=np.uint8), None
    raise DatasetError(
        f"{path}: label mode {image.mode!r} is not supported; save labels as 8-bit palette, "
        f"grayscale, RGB or RGBA PNG"
    )

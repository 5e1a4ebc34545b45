"""Decoding photos and label files into arrays, with errors that name the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from pixelwise.errors import DatasetError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def _open(path: Path | str) -> Image.Image:
    """Open and fully decode an image file, turning every decoder failure into DatasetError."""
    try:
        with Image.open(path) as image:
            image.load()
            return image
    except FileNotFoundError:
        raise DatasetError(f"{path}: file not found") from None
    except Image.DecompressionBombError as error:
        raise DatasetError(f"{path}: refused, image too large ({error})") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise DatasetError(f"{path}: cannot decode image ({error})") from None


def read_image(path: Path | str) -> Image.Image:
    """An RGB photo, upright per its EXIF orientation; grayscale, RGBA, CMYK are converted."""
    image = _open(path)
    try:
        image = ImageOps.exif_transpose(image)
    except (OSError, SyntaxError, ValueError):
        pass  # a broken EXIF block does not make the pixels unusable
    return image.convert("RGB") if image.mode != "RGB" else image


def read_label_array(path: Path | str) -> np.ndarray:
    """Raw label pixels: (H, W) uint8 for palette/grayscale PNGs, (H, W, 3) for RGB colour maps."""
    image = _open(path)
    if image.mode in ("P", "L"):
        return np.asarray(image, dtype=np.uint8)
    if image.mode in ("RGB", "RGBA"):
        return np.asarray(image.convert("RGB"), dtype=np.uint8)
    raise DatasetError(
        f"{path}: label mode {image.mode!r} is not supported; save labels as 8-bit palette, "
        f"grayscale or RGB PNG"
    )

"""What POST /segment answers: a palette-PNG mask, an overlay, a portrait blur or class pixel counts."""

from __future__ import annotations

import io
import json

import numpy as np
from PIL import Image

from pixelwise.data.labels import palette_png
from pixelwise.predict import keep_mask
from pixelwise.visualize import blur_background, overlay

OUTPUTS = ("mask", "overlay", "blur", "json")
MEDIA_TYPES = {"mask": "image/png", "overlay": "image/jpeg", "blur": "image/jpeg", "json": "application/json"}
JPEG_QUALITY = 90


def class_counts(mask: np.ndarray, class_names: tuple[str, ...]) -> dict:
    """The mask's width, height and, for each class present, its index, name and pixel count."""
    counts = np.bincount(mask.reshape(-1), minlength=len(class_names))
    return {
        "width": int(mask.shape[1]),
        "height": int(mask.shape[0]),
        "classes": [
            {"index": index, "name": class_names[index], "pixels": int(count)}
            for index, count in enumerate(counts)
            if count and index < len(class_names)
        ],
    }


def _encoded(image: Image.Image, format: str, **options) -> bytes:
    """`image` saved to bytes in `format`."""
    buffer = io.BytesIO()
    image.save(buffer, format=format, **options)
    return buffer.getvalue()


def render(output: str, photo: Image.Image, mask: np.ndarray, model, keep: str | None) -> bytes:
    """The body of a /segment answer in `output` for `photo` and its `mask`; `model` gives classes and palette."""
    if output == "mask":
        return _encoded(palette_png(mask, model.palette), "PNG")
    if output == "overlay":
        return _encoded(overlay(photo, mask, model.class_names, model.palette), "JPEG", quality=JPEG_QUALITY)
    if output == "blur":
        kept = keep_mask(mask, model.class_names, keep)
        return _encoded(blur_background(photo, kept), "JPEG", quality=JPEG_QUALITY)
    if output == "json":
        return json.dumps(class_counts(mask, model.class_names)).encode()
    raise ValueError(f"unknown output {output!r}")

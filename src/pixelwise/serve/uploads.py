"""Uploaded bytes -> an upright RGB photo, or a client error that says what is wrong with the upload."""

from __future__ import annotations

import io

from PIL import Image

from pixelwise.data.io import upright_rgb
from pixelwise.errors import PixelwiseError

# Formats decoded by Pillow alone; others it knows (EPS, for one) can run external programs.
FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF")
MAX_PIXELS = Image.MAX_IMAGE_PIXELS * 2  # beyond it Pillow refuses to open a file at all


class UploadError(PixelwiseError):
    """An upload the server refuses, with the HTTP status that says why."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def decode_upload(data: bytes, name: str, *, max_pixels: int) -> Image.Image:
    """The RGB photo in `data` (a file called `name`); its header's size is checked against `max_pixels` first."""
    if not data:
        raise UploadError(400, f"{name}: the upload is empty")
    try:
        image = Image.open(io.BytesIO(data), formats=FORMATS)  # reads the header only
    except Image.DecompressionBombError:  # Pillow's own limit, which MAX_PIXELS stays within
        raise UploadError(413, f"{name}: refused before decoding: more than {max_pixels:,} pixels") from None
    except (OSError, SyntaxError, ValueError):
        formats = ", ".join(FORMATS[:-1]) + " or " + FORMATS[-1]
        raise UploadError(415, f"{name}: not an image this server reads ({formats})") from None
    if image.width * image.height > max_pixels:
        raise UploadError(
            413, f"{name}: refused before decoding: {image.width}x{image.height} is more than {max_pixels:,} pixels"
        )
    try:
        image.load()
        return upright_rgb(image, name)
    except PixelwiseError as error:
        raise UploadError(415, str(error)) from None
    except (OSError, SyntaxError, ValueError) as error:
        raise UploadError(400, f"{name}: cannot decode the image ({error})") from None

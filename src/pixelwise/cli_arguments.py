"""Argument types and parser helpers shared by the command modules: one-line errors, checked numbers and sizes."""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path
from urllib.parse import urlsplit

from pixelwise.config import MAX_SEED, MAX_WORKERS
from pixelwise.inference import MAX_OVERLAP, MAX_SCALES, MIN_WINDOW_SIDE, scales_problem
from pixelwise.numbers import ascii_int


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports a bad argument in one line and exits with code 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


MAX_PICTURE_SIDE = 8192  # data synth: pictures for people, not allocations of gigabytes
MAX_CROP_PICTURE_SIDE = 2048  # data show: up to MAX_PICTURES crops of this size fit in a few GiB
MAX_PICTURES = 64


REAL = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?|[+-]?(inf|nan)", re.IGNORECASE)


def real_number(text: str) -> float:
    """A number written with ASCII digits ('0.02', '1e-4'); ranges are checked by TrainConfig."""
    if not REAL.fullmatch(text.strip()):
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}")
    return float(text)


def size_pair(text: str, largest: int | None = None, smallest: int = 1) -> tuple[int, int]:
    """'256x320' -> (256, 320), height first; each side at least `smallest` and at most `largest` if given."""
    try:
        height, width = (ascii_int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW such as 256x320, got {text!r}") from None
    if height < 1 or width < 1:
        raise argparse.ArgumentTypeError(f"sizes must be positive, got {text!r}")
    if min(height, width) < smallest:
        raise argparse.ArgumentTypeError(f"sides must be at least {smallest}, got {text!r}")
    if largest and max(height, width) > largest:
        raise argparse.ArgumentTypeError(f"sides must be at most {largest}, got {text!r}")
    return height, width


def window_size(text: str) -> tuple[int, int]:
    """A sliding window: sides of at least MIN_WINDOW_SIDE."""
    return size_pair(text, smallest=MIN_WINDOW_SIDE)


def overlap_share(text: str) -> float:
    """A share of a window's side: 0..MAX_OVERLAP."""
    value = real_number(text)
    if not 0 <= value <= MAX_OVERLAP:
        raise argparse.ArgumentTypeError(f"must be between 0 and {MAX_OVERLAP}, got {text!r}")
    return value


def tta_scales(text: str) -> tuple[float, ...]:
    """'0.75,1,1.25' -> the scales --tta ms averages, as InferenceMode takes them."""
    parts = text.split(",")
    if len(parts) > MAX_SCALES:
        raise argparse.ArgumentTypeError(f"at most {MAX_SCALES} scales, got {len(parts)}")
    scales = tuple(real_number(part) for part in parts)
    problem = scales_problem(scales)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return scales


def picture_size(text: str) -> tuple[int, int]:
    """A crop size for `data show`."""
    return size_pair(text, MAX_CROP_PICTURE_SIDE)


def whole_number(text: str, minimum: int, maximum: int | None = None) -> int:
    """An int in minimum..maximum, or an argparse error naming the text."""
    try:
        value = ascii_int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < minimum or (maximum is not None and value > maximum):
        raise argparse.ArgumentTypeError(
            f"must be in {minimum}..{maximum}, got {value}"
            if maximum is not None
            else f"must be at least {minimum}, got {value}"
        )
    return value


def seed_number(text: str) -> int:
    """A random seed: 0..2**63-1."""
    return whole_number(text, 0, MAX_SEED)


def worker_count(text: str) -> int:
    """Loader processes: 0..MAX_WORKERS."""
    return whole_number(text, 0, MAX_WORKERS)


def picture_count(text: str) -> int:
    """How many pictures to draw: 1..MAX_PICTURES."""
    return whole_number(text, 1, MAX_PICTURES)


def picture_side(text: str) -> int:
    """One side of a synthetic picture: 1..MAX_PICTURE_SIDE."""
    return whole_number(text, 1, MAX_PICTURE_SIDE)


def output_file(text: str) -> str:
    """A file to write; a name ending in a separator names a folder, whatever its extension."""
    if text.endswith(("/", os.sep)):
        raise argparse.ArgumentTypeError(f"{text!r} names a folder (it ends in {text[-1]}); name the file to write")
    return text


DEFAULT_PORTS = {"http": 80, "https": 443}  # which a browser leaves out of the origins it sends


def web_origin(text: str) -> str:
    """'*', or a web page's origin written as a browser sends it: scheme, host (IDNA) and a port not the default."""
    if text == "*":
        return text
    try:
        parts = urlsplit(text.strip().rstrip("/"))
        port, host = parts.port, (parts.hostname or "").encode("idna").decode("ascii")
    except (ValueError, UnicodeError):  # a port out of range or not a number, a host IDNA cannot write
        parts, port, host = None, None, ""
    if not host or parts.scheme not in DEFAULT_PORTS or port == 0 or parts.netloc.endswith(":") or (
        parts.username is not None or parts.path or parts.query or parts.fragment
        or any(character.isspace() for character in text.strip())
    ):  # fmt: skip
        raise argparse.ArgumentTypeError(
            f"expected an origin: http:// or https://, a host and perhaps a port, nothing after them "
            f"(such as https://example.org), or * for any; got {text!r}"
        )
    host = f"[{host}]" if ":" in host else host  # an IPv6 address
    return f"{parts.scheme}://{host}" + ("" if port in (None, DEFAULT_PORTS[parts.scheme]) else f":{port}")


def picture_file(text: str) -> str:
    """A file name whose extension names a picture format Pillow writes (.png, .jpg, ...)."""
    from PIL import Image

    output_file(text)
    extension = Path(text).suffix.lower()
    if Image.registered_extensions().get(extension) not in Image.SAVE:
        raise argparse.ArgumentTypeError(
            f"{text!r} does not end in a picture extension Pillow can write, such as .png or .jpg"
        )
    return text


def class_count(text: str) -> int:
    """A number of classes a checkpoint can hold: 1..254 (masks are uint8 and 255 is the ignore value)."""
    return whole_number(text, 1, 254)


def positive_int(text: str) -> int:
    """An int >= 1."""
    return whole_number(text, 1)


def non_negative_int(text: str) -> int:
    """An int >= 0."""
    return whole_number(text, 0)


def command_parser(subparsers, name: str, handler, help_text: str, examples: str) -> ArgumentParser:
    """A subcommand with its help text and an examples epilog."""
    parser = subparsers.add_parser(
        name,
        help=help_text,
        description=help_text,
        epilog=f"examples:\n{examples}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(handler=handler)
    return parser


def overwrite_argument(parser: ArgumentParser) -> None:
    """--overwrite, for commands that refuse to replace what pixelwise did not write."""
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace files and links at the output names that pixelwise did not write (never folders)",
    )

"""Photos named on the command line: files, folders and patterns found, and the names their outputs take."""

from __future__ import annotations

import glob
import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from PIL import Image, PngImagePlugin

from pixelwise.data.io import broken_link, folder_pictures
from pixelwise.errors import PixelwiseError
from pixelwise.files import file_where_a_folder_goes

MASK_SUFFIX, OVERLAY_SUFFIX, BLUR_SUFFIX = PREDICTION_SUFFIXES = ("_mask.png", "_overlay.jpg", "_blur.jpg")
OUTPUT_MARK = "pixelwise"  # in each picture's metadata: a later command may replace a file that carries it
MARKABLE_FORMATS = ("PNG", "JPEG", "GIF", "TIFF")  # the formats whose metadata carries OUTPUT_MARK
TIFF_SOFTWARE_TAG = 305
NOT_OURS = "a file that pixelwise did not write"


def expand_inputs(inputs: list[str]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Files, folders (their images) and globs -> image paths, plus (input, problem) for unusable ones."""
    found, problems = [], []
    for text in inputs:
        path = Path(text)
        if path.is_dir():
            images = folder_pictures(path)
            found += images
            if not images:
                nested = any(p.is_dir() for p in path.iterdir())
                problems.append(
                    (
                        text,
                        "folder holds no images"
                        + (f" (subfolders are not searched; '{path / '**' / '*.jpg'}' is)" if nested else ""),
                    )
                )
        elif path.is_file() or broken_link(path):  # a broken link is read, and named as one
            found.append(path)
        elif glob.has_magic(text):
            matched = (Path(name) for name in glob.glob(text, recursive=True))
            matches = sorted(p for p in matched if p.is_file() or broken_link(p))
            found += matches
            if not matches:
                problems.append((text, "pattern matches no file"))
        elif path.exists():
            problems.append((text, "neither a file nor a folder"))
        else:
            problems.append((text, "no such file or folder"))
    first_named: dict[Path, Path] = {}
    for path in found:  # one file named twice (a folder and a pattern) is one input
        first_named.setdefault(_absolute(path), path)
    return list(first_named.values()), problems


def save_output(image: Image.Image, path: Path | str, **options) -> None:
    """`image.save(path)` with OUTPUT_MARK in its metadata; a link at `path` is replaced, not written through."""
    if Path(path).is_symlink():
        Path(path).unlink()
    picture_format = _format_of(path)
    if picture_format == "PNG":
        options["pnginfo"] = PngImagePlugin.PngInfo()
        options["pnginfo"].add_text("Software", OUTPUT_MARK)
    elif picture_format in ("JPEG", "GIF"):
        options["comment"] = OUTPUT_MARK.encode()
    elif picture_format == "TIFF":
        options["tiffinfo"] = {TIFF_SOFTWARE_TAG: OUTPUT_MARK}
    image.save(path, **options)


def _format_of(path: Path | str) -> str | None:
    """The format Pillow writes for `path`'s suffix (JPEG for .jpg and .jpe), None for one it does not know."""
    return Image.registered_extensions().get(Path(path).suffix.lower())


def in_the_way(
    targets: list[Path], replace_files: bool, ours: Callable[[Path], bool] | None = None
) -> list[tuple[Path, str, bool]]:
    """(path, what it is, whether `replace_files` allows it) for what must not be replaced at or above `targets`.

    Always a folder, a file where a folder goes, or what is neither file nor folder (a pipe);
    unless `replace_files`, also a link, and a file that pixelwise did not write: by `ours`,
    or for pictures one that `save_output` did not write (it lacks OUTPUT_MARK).
    """
    is_ours = ours or _carries_mark
    found: dict[Path, tuple[str, bool]] = {
        blocking: ("a file where a folder goes", False)
        for blocking in sorted({file_where_a_folder_goes(target.parent) for target in targets} - {None})
    }
    for target in targets:
        if target.is_symlink():
            if not replace_files:
                found[target] = ("a link that pixelwise did not make", True)
        elif target.is_dir():
            found[target] = ("a folder", False)
        elif target.exists() and not target.is_file():
            found[target] = ("neither a file nor a folder", False)
        elif target.exists() and not replace_files and not is_ours(target):
            unmarkable = ours is None and _format_of(target) not in MARKABLE_FORMATS
            found[target] = (f"a {target.suffix} file (no room for its mark)" if unmarkable else NOT_OURS, True)
    return [(path, what, replaceable) for path, (what, replaceable) in found.items()]


def refuse_what_is_in_the_way(
    targets: list[Path], replace_files: bool, ours: Callable[[Path], bool] | None = None
) -> None:
    """Raise a PixelwiseError naming the first of `in_the_way(targets, replace_files, ours)`, if any."""
    blocking = in_the_way(targets, replace_files, ours)
    if blocking:
        path, what, replaceable = blocking[0]
        more = f" (and {len(blocking) - 1} more)" if len(blocking) > 1 else ""
        hint = "; --overwrite replaces it" if replaceable else ""
        where = " is where an output goes" if path in targets else ""  # else a folder above them: `what` says it
        raise PixelwiseError(f"{path}: {what}{where}{more}: move it or choose another --out{hint}")


def _carries_mark(path: Path) -> bool:
    """Whether the picture at `path` has OUTPUT_MARK in its metadata."""
    try:
        with Image.open(path) as picture:
            tiff_tags = getattr(picture, "tag_v2", {})
            marks = [picture.info.get("Software"), picture.info.get("comment"), tiff_tags.get(TIFF_SOFTWARE_TAG)]
    except (OSError, ValueError, Image.DecompressionBombError):  # not a picture Pillow reads: not one of ours
        return False
    return OUTPUT_MARK in [mark.decode("latin-1") if isinstance(mark, bytes) else mark for mark in marks]


def _absolute(path: Path) -> Path:
    """`path` made absolute without following links: outputs are named after what the user named."""
    return Path(os.path.abspath(path))


def earlier_outputs(paths: list[Path], out: Path) -> list[Path]:
    """The inputs inside `out` (or its subfolders) named like this command's outputs."""
    out = _absolute(out)
    return [path for path in paths if path.name.endswith(PREDICTION_SUFFIXES) and out in _absolute(path).parents]


def output_names(paths: list[Path]) -> dict[Path, Path]:
    """Each photo's output name: its folder relative to the folder all photos share, and its stem.

    Names do not depend on the order of the inputs and never coincide: a photo whose stem
    another photo of its folder shares, or names in full, keeps its suffix (`x.jpg_mask.png`,
    `x.png_mask.png`).
    """
    if not paths:
        return {}
    absolute = {path: _absolute(path) for path in paths}
    shared = Path(os.path.commonpath([full.parent for full in absolute.values()]))
    names = {path: full.parent.relative_to(shared) / full.stem for path, full in absolute.items()}
    while True:  # full file names are distinct within a folder, so this ends after at most two rounds
        counts = Counter(names.values())
        repeated = {path for path, name in names.items() if counts[name] > 1}
        if not repeated:
            return names
        for path in repeated:
            names[path] = names[path].with_name(absolute[path].name)

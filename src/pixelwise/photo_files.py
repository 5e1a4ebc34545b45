"""Photos named on the command line: files, folders and patterns found, and the names their outputs take."""

from __future__ import annotations

import glob
import os
from collections import Counter
from pathlib import Path

from pixelwise.data.io import IMAGE_SUFFIXES
from pixelwise.errors import PixelwiseError

MASK_SUFFIX, OVERLAY_SUFFIX, BLUR_SUFFIX = PREDICTION_SUFFIXES = ("_mask.png", "_overlay.jpg", "_blur.jpg")


def expand_inputs(inputs: list[str]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Files, folders (their images) and globs -> image paths, plus (input, problem) for unusable ones."""
    found, problems = [], []
    for text in inputs:
        path = Path(text)
        if path.is_dir():
            images = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            found += images
            if not images:
                nested = any(p.is_dir() for p in path.iterdir())
                problems.append((text, "folder holds no images" + (f" (subfolders are not searched; '{path / '**' / '*.jpg'}' is)" if nested else "")))
        elif path.is_file():
            found.append(path)
        elif glob.has_magic(text):
            matches = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
            found += matches
            if not matches:
                problems.append((text, "pattern matches no file"))
        else:
            problems.append((text, "no such file or folder"))
    first_named: dict[Path, Path] = {}
    for path in found:  # one file named twice (a folder and a pattern) is one input
        first_named.setdefault(path.resolve(), path)
    return list(first_named.values()), problems


def earlier_outputs(paths: list[Path], out: Path) -> list[Path]:
    """The inputs inside `out` (or its subfolders) named like this command's outputs."""
    out = out.resolve()
    return [path for path in paths if path.name.endswith(PREDICTION_SUFFIXES) and out in path.resolve().parents]


def output_names(paths: list[Path]) -> dict[Path, Path]:
    """Each photo's output name: its folder relative to the folder all photos share, and its stem.

    Names do not depend on the order of the inputs and never coincide: photos of one folder
    that share a stem keep their suffix (`x.jpg_mask.png`, `x.png_mask.png`).
    """
    if not paths:
        return {}
    resolved = {path: path.resolve() for path in paths}
    shared = Path(os.path.commonpath([full.parent for full in resolved.values()]))
    stems = Counter((full.parent, full.stem) for full in resolved.values())
    names = {path: full.parent.relative_to(shared) / (full.stem if stems[full.parent, full.stem] == 1 else full.name) for path, full in resolved.items()}
    repeated = [name for name, count in Counter(names.values()).items() if count > 1]
    if repeated:
        raise PixelwiseError(f"two photos would write {repeated[0]}{MASK_SUFFIX}: {', '.join(str(p) for p, n in names.items() if n == repeated[0])}")
    return names

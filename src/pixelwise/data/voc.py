"""Pascal VOC layout: VOCdevkit/VOC2012/{JPEGImages,SegmentationClass,ImageSets/Segmentation}."""

from __future__ import annotations

import dataclasses
import unicodedata
from pathlib import Path

from pixelwise.data.dataset import PairTransform, Sample, SegmentationDataset, require_files
from pixelwise.data.labels import VOC_BOUNDARY_COLOR, ClassTable, read_classes_csv, voc_class_table
from pixelwise.errors import DatasetError

SPLIT_DIR = Path("ImageSets", "Segmentation")
MAX_NAME_BYTES = 250  # a file name is at most 255 bytes, and ".jpg" or ".png" is added


def find_voc_root(path: Path | str) -> Path:
    """The VOC2012 folder: `path` itself, `path/VOC2012` or `path/VOCdevkit/VOC2012`."""
    path = Path(path)
    for candidate in (path, path / "VOC2012", path / "VOCdevkit" / "VOC2012"):
        if (candidate / SPLIT_DIR).is_dir():
            return candidate
    raise DatasetError(f"{path}: not a VOC tree (no {SPLIT_DIR} here or under VOCdevkit/VOC2012)")


def is_voc_tree(path: Path | str) -> bool:
    """True when `find_voc_root` would succeed."""
    try:
        find_voc_root(path)
    except DatasetError:
        return False
    return True


def scan_split_file(path: Path) -> tuple[list[str], list[str]]:
    """Usable sample names of a split file, and one message per line that is not usable.

    Names that would leave the dataset folder (`../`, absolute paths, subfolders) and repeated
    names are reported, not used.
    """
    if not path.is_file():
        available = sorted(p.stem for p in path.parent.glob("*.txt"))
        raise DatasetError(f"{path}: split file not found (available: {', '.join(available) or 'none'})")
    names, problems, seen = [], [], set()
    for line_number, line in enumerate(path.read_text(encoding="utf-8-sig", errors="replace").splitlines(), start=1):
        name = line.strip()
        if not name:
            continue
        if "/" in name or "\\" in name or name.startswith("."):
            problems.append(f"{path}:{line_number}: name {name!r} escapes the dataset folder")
        elif len(name.encode("utf-8")) > MAX_NAME_BYTES or any(
            unicodedata.category(c)[0] == "C" or c == "\ufffd" for c in name
        ):
            problems.append(
                f"{path}:{line_number}: name {name[:40]!r} is not a file name (too long, or control or undecodable "
                "characters)"
            )
        elif name in seen:
            problems.append(f"{path}:{line_number}: name {name!r} is listed twice")
        else:
            seen.add(name)
            names.append(name)
    return names, problems


def read_split_file(path: Path) -> list[str]:
    """Sample names of a split file; the first unusable line, or an empty split, is an error."""
    names, problems = scan_split_file(path)
    if problems:
        raise DatasetError(problems[0])
    if not names:
        raise DatasetError(f"{path}: split is empty")
    return names


def voc_splits(root: Path) -> list[str]:
    """Names of the split files of a VOC2012 folder."""
    return sorted(p.stem for p in (root / SPLIT_DIR).glob("*.txt"))


def voc_class_table_of(root: Path) -> ClassTable:
    """The tree's classes.csv, else the 21 VOC classes; VOC's boundary colour is ignored unless a class uses it."""
    csv_path = root / "classes.csv"
    if not csv_path.is_file():
        return voc_class_table()
    table = read_classes_csv(csv_path)
    if VOC_BOUNDARY_COLOR in table.palette + table.ignore_colors:
        return table
    return dataclasses.replace(table, ignore_colors=(*table.ignore_colors, VOC_BOUNDARY_COLOR))


def voc_sample(root: Path, name: str) -> Sample:
    """(photo, label) paths of sample `name`."""
    return root / "JPEGImages" / f"{name}.jpg", root / "SegmentationClass" / f"{name}.png"


class VOCSegmentation(SegmentationDataset):
    """A VOC-format tree; a `classes.csv` beside `JPEGImages` overrides the 21 VOC classes."""

    def __init__(self, root: Path | str, split: str = "train", transforms: PairTransform | None = None):
        self.root = find_voc_root(root)
        split_file = self.root / SPLIT_DIR / f"{split}.txt"
        samples = [voc_sample(self.root, name) for name in read_split_file(split_file)]
        require_files(samples, split_file)
        super().__init__(samples, voc_class_table_of(self.root), transforms)

"""Pascal VOC layout: VOCdevkit/VOC2012/{JPEGImages,SegmentationClass,ImageSets/Segmentation}."""

from __future__ import annotations

from pathlib import Path

from pixelwise.data.dataset import PairTransform, SegmentationDataset, require_files
from pixelwise.data.labels import read_classes_csv, voc_class_table
from pixelwise.errors import DatasetError

SPLIT_DIR = Path("ImageSets", "Segmentation")


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


def read_split_file(path: Path) -> list[str]:
    """Sample names of a split file, refusing names that would leave the dataset folder."""
    if not path.is_file():
        available = sorted(p.stem for p in path.parent.glob("*.txt"))
        raise DatasetError(f"{path}: split file not found (available: {', '.join(available) or 'none'})")
    names = []
    for line_number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        name = line.strip()
        if not name:
            continue
        if "/" in name or "\\" in name or name.startswith("."):
            raise DatasetError(f"{path}:{line_number}: name {name!r} escapes the dataset folder")
        names.append(name)
    if not names:
        raise DatasetError(f"{path}: split is empty")
    return names


class VOCSegmentation(SegmentationDataset):
    """A VOC-format tree; a `classes.csv` beside `JPEGImages` overrides the 21 VOC classes."""

    def __init__(self, root: Path | str, split: str = "train", transforms: PairTransform | None = None):
        self.root = find_voc_root(root)
        split_file = self.root / SPLIT_DIR / f"{split}.txt"
        names = read_split_file(split_file)
        csv_path = self.root / "classes.csv"
        classes = read_classes_csv(csv_path) if csv_path.is_file() else voc_class_table()
        samples = [
            (self.root / "JPEGImages" / f"{name}.jpg", self.root / "SegmentationClass" / f"{name}.png")
            for name in names
        ]
        require_files(samples, split_file)
        super().__init__(samples, classes, transforms)

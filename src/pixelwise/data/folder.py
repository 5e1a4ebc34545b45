"""Folder layout: images/<split>/*, labels/<split>/<stem>.png and a classes.csv."""

from __future__ import annotations

from pathlib import Path

from pixelwise.data.dataset import PairTransform, SegmentationDataset, require_files
from pixelwise.data.io import folder_pictures
from pixelwise.data.labels import read_classes_csv
from pixelwise.errors import DatasetError


def is_folder_tree(path: Path | str) -> bool:
    """True when `path` has the folder layout's classes.csv, images/ and labels/."""
    path = Path(path)
    return (path / "classes.csv").is_file() and (path / "images").is_dir() and (path / "labels").is_dir()


def folder_splits(root: Path) -> list[str]:
    """Split folder names under images/."""
    return sorted(p.name for p in (root / "images").iterdir() if p.is_dir())


class FolderSegmentation(SegmentationDataset):
    """Photos in `images/<split>/`, same-stem PNG labels in `labels/<split>/`, classes in CSV."""

    def __init__(self, root: Path | str, split: str = "train", transforms: PairTransform | None = None):
        self.root = Path(root)
        if not is_folder_tree(self.root):
            raise DatasetError(f"{self.root}: not a folder dataset (needs classes.csv, images/, labels/)")
        classes = read_classes_csv(self.root / "classes.csv")
        image_dir = self.root / "images" / split
        if not image_dir.is_dir():
            available = folder_splits(self.root)
            raise DatasetError(f"{image_dir}: split not found (available: {', '.join(available) or 'none'})")
        photos = folder_pictures(image_dir)
        if not photos:
            raise DatasetError(f"{image_dir}: split is empty")
        samples = [(photo, self.root / "labels" / split / f"{photo.stem}.png") for photo in photos]
        require_files(samples, image_dir)
        super().__init__(samples, classes, transforms)

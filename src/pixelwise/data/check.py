"""`pixelwise data check`: walk a whole dataset and report every problem, without training."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pixelwise.data.dataset import same_name_hint
from pixelwise.data.folder import folder_photos, folder_splits, is_folder_tree
from pixelwise.data.io import read_image, read_label_array
from pixelwise.data.labels import IGNORE_INDEX, ClassTable, read_classes_csv
from pixelwise.data.voc import SPLIT_DIR, find_voc_root, is_voc_tree, scan_split_file, voc_class_table_of, voc_sample, voc_splits
from pixelwise.errors import DatasetError


@dataclass
class SplitReport:
    """What one split holds and what is wrong with it."""

    name: str
    samples: int = 0
    problems: list[str] = field(default_factory=list)
    smaller_than_crop: list[str] = field(default_factory=list)
    class_pixels: list[int] = field(default_factory=list)
    ignored_pixels: int = 0

    def as_dict(self, class_names: tuple[str, ...]) -> dict:
        """Plain dict for --json."""
        total = sum(self.class_pixels) + self.ignored_pixels
        return {
            "samples": self.samples,
            "problems": self.problems,
            "smaller_than_crop": self.smaller_than_crop,
            "class_pixels": dict(zip(class_names, self.class_pixels)),
            "ignored_share": self.ignored_pixels / total if total else 0.0,
        }


@dataclass
class CheckReport:
    """The whole dataset: its layout, classes and one report per split."""

    root: Path
    layout: str
    class_names: tuple[str, ...]
    splits: list[SplitReport]

    @property
    def problems(self) -> list[str]:
        """Every problem of every split."""
        return [problem for split in self.splits for problem in split.problems]

    def as_dict(self) -> dict:
        """Plain dict for --json."""
        return {
            "root": str(self.root),
            "layout": self.layout,
            "classes": list(self.class_names),
            "clean": not self.problems,
            "splits": {split.name: split.as_dict(self.class_names) for split in self.splits},
        }


def _describe_unknown(unknown: dict, rgb: bool) -> str:
    """'values 14 (30 px), 200 (2 px)' or 'colours (1, 2, 3) (5 px)'."""
    items = sorted(unknown.items(), key=lambda item: -item[1])[:5]
    shown = ", ".join(f"{value} ({count} px)" for value, count in items)
    more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
    return f"{'colours' if rgb else 'values'} {shown}{more}"


def _inspect_pair(photo: Path, label: Path, classes: ClassTable, crop_size: tuple[int, int] | None, report: SplitReport) -> None:
    """Decode one pair, adding its problems and pixel counts to `report`."""
    try:
        image = read_image(photo)
        raw = read_label_array(label)
    except DatasetError as error:
        report.problems.append(str(error))
        return
    if raw.shape[:2] != (image.height, image.width):
        report.problems.append(f"{label}: {raw.shape[1]}x{raw.shape[0]} label for a {image.width}x{image.height} image")
        return
    unknown = classes.unknown_values(raw)
    if unknown:
        kind = "colours not in the class map" if raw.ndim == 3 else "label values that are neither a class nor ignored"
        report.problems.append(f"{label}: {kind}: {_describe_unknown(unknown, raw.ndim == 3)}")
        if raw.ndim == 2:
            return  # training refuses this label, so it is not a usable sample
    mask = classes.decode(raw, label)
    counts = np.bincount(mask.ravel(), minlength=256)
    report.class_pixels = [a + int(b) for a, b in zip(report.class_pixels, counts[: classes.num_classes])]
    report.ignored_pixels += int(counts[IGNORE_INDEX])
    if crop_size and (image.height < crop_size[0] or image.width < crop_size[1]):
        report.smaller_than_crop.append(f"{photo.name} ({image.width}x{image.height})")
    report.samples += 1


def _voc_split(root: Path, split: str, classes: ClassTable, crop_size) -> SplitReport:
    """Check one split file of a VOC tree."""
    report = SplitReport(split, class_pixels=[0] * classes.num_classes)
    split_file = root / SPLIT_DIR / f"{split}.txt"
    names, report.problems = scan_split_file(split_file)
    if not names:
        report.problems.append(f"{split_file}: split is empty")
    for name in names:
        photo, label = voc_sample(root, name)
        if not photo.is_file() or not label.is_file():
            absent, kind = (photo, "image") if not photo.is_file() else (label, "label")
            report.problems.append(f"{absent}: {kind} listed by {split_file} is missing{same_name_hint(absent)}")
            continue
        _inspect_pair(photo, label, classes, crop_size, report)
    return report


def _folder_split(root: Path, split: str, classes: ClassTable, crop_size) -> SplitReport:
    """Check one split of a folder-layout dataset."""
    report = SplitReport(split, class_pixels=[0] * classes.num_classes)
    photos = folder_photos(root / "images" / split)
    label_dir = root / "labels" / split
    labels = {p.stem: p for p in label_dir.glob("*.png")} if label_dir.is_dir() else {}
    if not photos:
        report.problems.append(f"{root / 'images' / split}: split is empty")
    for stem in sorted(set(labels) - {photo.stem for photo in photos}):
        report.problems.append(f"{labels[stem]}: label without an image")
    for photo in photos:
        if photo.stem not in labels:
            report.problems.append(f"{photo}: image without a label{same_name_hint(label_dir / f'{photo.stem}.png')}")
            continue
        _inspect_pair(photo, labels[photo.stem], classes, crop_size, report)
    return report


def check_dataset(folder: Path | str, *, splits: list[str] | None = None, crop_size: tuple[int, int] | None = None) -> CheckReport:
    """Report every problem in a VOC tree or folder dataset; raise only if it is neither."""
    folder = Path(folder)
    if is_voc_tree(folder):
        root = find_voc_root(folder)
        layout, classes, available, check_split = "voc", voc_class_table_of(root), voc_splits(root), _voc_split
    elif is_folder_tree(folder):
        root = folder
        layout, classes, available, check_split = "folder", read_classes_csv(root / "classes.csv"), folder_splits(root), _folder_split
    else:
        raise DatasetError(f"{folder}: neither a VOC tree (ImageSets/Segmentation) nor a folder dataset (classes.csv, images/, labels/)")
    unknown = sorted(set(splits or []) - set(available))
    if unknown:
        raise DatasetError(f"{root}: no split {unknown[0]!r} (available: {', '.join(available) or 'none'})")
    reports = [check_split(root, split, classes, crop_size) for split in (splits or available)]
    return CheckReport(root, layout, classes.class_names, reports)

"""Walk whole dataset splits and report every problem: `pixelwise data check`, and training before its first step."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from pixelwise.data.dataset import Sample, require_same_size, same_name_hint
from pixelwise.data.folder import folder_splits, is_folder_tree
from pixelwise.data.io import folder_pictures, read_image, read_label_file
from pixelwise.data.labels import IGNORE_INDEX, ClassTable, read_classes_csv
from pixelwise.data.voc import (
    SPLIT_DIR,
    find_voc_root,
    is_voc_tree,
    scan_split_file,
    voc_class_table_of,
    voc_sample,
    voc_splits,
)
from pixelwise.errors import DatasetError

TRAINING_SPLITS = ("train", "val")
"""The splits `pixelwise train` reads unless told otherwise: a dataset without them is a problem."""


@dataclass
class PaletteMismatch:
    """Palette PNG labels whose own colours disagree with the class table: how many, and the first."""

    labels: int = 0
    example: str = ""


@dataclass
class SplitReport:
    """What one split holds and what is wrong with it.

    `problems` are files or lines left out (training stops on them, or skips them);
    `fatal` make the split unusable as a whole; `warnings` do not stop anything.
    """

    name: str
    usable: list[Sample] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    fatal: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    smaller_than_crop: list[str] = field(default_factory=list)
    class_pixels: list[int] = field(default_factory=list)
    pixels_where_present: list[int] = field(default_factory=list)
    ignored_pixels: int = 0

    @property
    def samples(self) -> int:
        """Usable samples."""
        return len(self.usable)

    def as_dict(self, class_names: tuple[str, ...]) -> dict:
        """Plain dict for --json."""
        total = sum(self.class_pixels) + self.ignored_pixels
        return {
            "samples": self.samples,
            "problems": self.fatal + self.problems,
            "warnings": self.warnings,
            "smaller_than_crop": self.smaller_than_crop,
            "class_pixels": dict(zip(class_names, self.class_pixels)),
            "ignored_share": self.ignored_pixels / total if total else 0.0,
        }


@dataclass
class CheckReport:
    """The whole dataset: its layout, classes and one report per split."""

    root: Path
    layout: str
    classes: ClassTable
    splits: list[SplitReport]

    @property
    def class_names(self) -> tuple[str, ...]:
        """Names of the classes, index order."""
        return self.classes.class_names

    @property
    def problems(self) -> list[str]:
        """Every problem of every split, whole-split ones first."""
        return [problem for split in self.splits for problem in split.fatal + split.problems]

    def split(self, name: str) -> SplitReport:
        """The report of split `name`."""
        return next(split for split in self.splits if split.name == name)

    def as_dict(self) -> dict:
        """Plain dict for --json."""
        return {
            "root": str(self.root),
            "layout": self.layout,
            "classes": list(self.class_names),
            "clean": not self.problems,
            "splits": {split.name: split.as_dict(self.class_names) for split in self.splits},
        }


def _palette_disagreement(label: Path, raw: np.ndarray, palette: np.ndarray, classes: ClassTable) -> str:
    """'value 1 is (0, 128, 0) in FILE, (128, 0, 0) in the class table' for the first value that differs, else ''."""
    for value in np.flatnonzero(np.bincount(raw.ravel(), minlength=256)).tolist():
        index = int(classes.value_to_class[value])
        if 0 <= index < classes.num_classes and tuple(palette[value].tolist()) != classes.palette[index]:
            own = tuple(palette[value].tolist())
            name, table_color = classes.class_names[index], classes.palette[index]
            return f"value {value} ({name}) is {own} in {label}, {table_color} in the class table"
    return ""


def _inspect_pair(
    sample: Sample,
    classes: ClassTable,
    crop_size: tuple[int, int] | None,
    report: SplitReport,
    palettes: PaletteMismatch,
) -> None:
    """Decode one pair as training does; count it as usable with its pixels, or add its problem to `report`."""
    photo, label = sample
    try:
        image = read_image(photo)
        raw, palette = read_label_file(label)
        require_same_size(raw, image.height, image.width, label, photo)
        mask = classes.decode(raw, label)
    except DatasetError as error:
        report.problems.append(str(error))
        return
    if palette is not None:
        disagreement = _palette_disagreement(label, raw, palette, classes)
        palettes.labels += bool(disagreement)
        palettes.example = palettes.example or disagreement
    counts = np.bincount(mask.ravel(), minlength=256)
    class_counts = counts[: classes.num_classes]
    report.class_pixels = [a + int(b) for a, b in zip(report.class_pixels, class_counts)]
    report.pixels_where_present = [
        a + (int(class_counts.sum()) if b else 0) for a, b in zip(report.pixels_where_present, class_counts)
    ]
    report.ignored_pixels += int(counts[IGNORE_INDEX])
    if crop_size and (image.height < crop_size[0] or image.width < crop_size[1]):
        report.smaller_than_crop.append(f"{photo.name} ({image.width}x{image.height})")
    report.usable.append(sample)


def _voc_samples(root: Path, split: str, report: SplitReport) -> tuple[list[Sample], str]:
    """The samples a VOC split file lists whose files exist; the others, and bad lines, go to `report`."""
    split_file = root / SPLIT_DIR / f"{split}.txt"
    names, report.problems = scan_split_file(split_file)
    samples = []
    for name in names:
        photo, label = voc_sample(root, name)
        if not photo.is_file() or not label.is_file():
            absent, kind = (photo, "image") if not photo.is_file() else (label, "label")
            report.problems.append(f"{absent}: {kind} listed by {split_file} is missing{same_name_hint(absent)}")
        else:
            samples.append((photo, label))
    return samples, str(split_file)


def _folder_samples(root: Path, split: str, report: SplitReport) -> tuple[list[Sample], str]:
    """The photo/label pairs of a folder split; lone photos and labels go to `report`."""
    image_dir, label_dir = root / "images" / split, root / "labels" / split
    if not image_dir.is_dir():
        raise DatasetError(f"{image_dir}: split not found (available: {', '.join(folder_splits(root)) or 'none'})")
    photos = folder_pictures(image_dir)
    stems = Counter(photo.stem for photo in photos)
    for photo in photos:
        if stems[photo.stem] > 1:
            report.problems.append(
                f"{photo}: another photo of split {split!r} has the stem {photo.stem!r}, so both would take one label"
            )
    photos = [photo for photo in photos if stems[photo.stem] == 1]
    labels = {p.stem: p for p in label_dir.glob("*.png")} if label_dir.is_dir() else {}
    for stem in sorted(set(labels) - {photo.stem for photo in photos}):
        report.problems.append(f"{labels[stem]}: label without an image")
    samples = []
    for photo in photos:
        if photo.stem in labels:
            samples.append((photo, labels[photo.stem]))
        else:
            report.problems.append(f"{photo}: image without a label{same_name_hint(label_dir / f'{photo.stem}.png')}")
    return samples, str(image_dir)


def _check_split(root: Path, layout: str, split: str, classes: ClassTable, crop_size, trains: bool) -> SplitReport:
    """Check one split: every listed pair decoded, counted, or reported."""
    report = SplitReport(split, class_pixels=[0] * classes.num_classes, pixels_where_present=[0] * classes.num_classes)
    try:
        samples, where = (_voc_samples if layout == "voc" else _folder_samples)(root, split, report)
    except DatasetError as error:  # the split itself is missing
        report.fatal.append(
            f"{error}; `pixelwise train` reads splits {' and '.join(TRAINING_SPLITS)} unless told others"
        )
        return report
    if not samples and not report.problems:
        report.fatal.append(f"{where}: split is empty")
        return report
    palettes = PaletteMismatch()
    for sample in samples:
        _inspect_pair(sample, classes, crop_size, report, palettes)
    _judge_split(report, classes, where, palettes, trains)
    return report


def _judge_split(report: SplitReport, classes: ClassTable, where: str, palettes: PaletteMismatch, trains: bool) -> None:
    """Whole-split verdicts: fatal when nothing is usable or labelled, or one class alone where a model `trains`."""
    if not report.usable:
        report.fatal.append(f"{where}: no usable sample in split {report.name!r} ({len(report.problems)} problem(s))")
    elif sum(report.class_pixels) == 0:
        report.fatal.append(
            f"{where}: no labelled pixel in split {report.name!r}: every pixel of its {report.samples} label(s) is "
            "ignored "
            f"({IGNORE_INDEX} or an ignore colour), so there is nothing to learn or measure"
        )
    else:
        present = [name for name, count in zip(classes.class_names, report.class_pixels) if count]
        if len(present) == 1:
            alone = f"only class {present[0]!r} is labelled in split {report.name!r}: nothing to tell it apart from"
            (report.fatal if trains else report.warnings).append(f"{where}: {alone}" if trains else alone)
        absent = [name for name, count in zip(classes.class_names, report.class_pixels) if count == 0]
        if absent:
            report.warnings.append(f"split {report.name!r} has no pixel of class(es) {', '.join(absent)}")
    if palettes.labels:
        report.warnings.append(
            f"{palettes.labels} palette label(s) of split {report.name!r} colour their values unlike the class table "
            f"(pixel values decide the class; check the table): {palettes.example}"
        )


class DatasetLayout(NamedTuple):
    """What a dataset folder is, read without its photos."""

    root: Path
    layout: str  # "voc" or "folder"
    classes: ClassTable
    splits: list[str]


def dataset_layout(folder: Path | str) -> DatasetLayout:
    """The layout, class table and splits of a VOC tree or folder dataset; DatasetError if it is neither."""
    folder = Path(folder)
    if is_voc_tree(folder):
        root = find_voc_root(folder)
        return DatasetLayout(root, "voc", voc_class_table_of(root), voc_splits(root))
    if is_folder_tree(folder):
        return DatasetLayout(folder, "folder", read_classes_csv(folder / "classes.csv"), folder_splits(folder))
    raise DatasetError(
        f"{folder}: neither a VOC tree (ImageSets/Segmentation) nor a folder dataset (classes.csv, images/, labels/)"
    )


def check_dataset(
    folder: Path | str,
    *,
    splits: list[str] | None = None,
    crop_size: tuple[int, int] | None = None,
    train_split: str = TRAINING_SPLITS[0],
) -> CheckReport:
    """Report every problem in the named splits (default: all, and the training splits) of a VOC tree or folder dataset.

    A model is trained on `train_split`: a single labelled class there is a problem, elsewhere a warning.

    Raises DatasetError only when `folder` is neither kind of dataset or its class table is unreadable.
    """
    root, layout, classes, available = dataset_layout(folder)
    if splits is None:
        names = [*available, *(split for split in TRAINING_SPLITS if split not in available)]
    else:
        unknown = sorted(set(splits) - set(available))
        if unknown:
            raise DatasetError(f"{root}: no split {unknown[0]!r} (available: {', '.join(available) or 'none'})")
        names = list(dict.fromkeys(splits))
    reports = [_check_split(root, layout, split, classes, crop_size, trains=split == train_split) for split in names]
    return CheckReport(root, layout, classes, reports)

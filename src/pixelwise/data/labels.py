"""Class tables and label decoding: palette, grayscale and RGB colour-map label images."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from pixelwise.errors import DatasetError

IGNORE_INDEX = 255
"""Label value that losses and metrics skip: VOC boundaries, void pixels, padding."""

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "potted plant",
    "sheep", "sofa", "train", "tv/monitor",
)  # fmt: skip

VOC_COLORMAP = (
    (0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0), (0, 0, 128), (128, 0, 128),
    (0, 128, 128), (128, 128, 128), (64, 0, 0), (192, 0, 0), (64, 128, 0), (192, 128, 0),
    (64, 0, 128), (192, 0, 128), (64, 128, 128), (192, 128, 128), (0, 64, 0), (128, 64, 0),
    (0, 192, 0), (128, 192, 0), (0, 64, 128),
)  # fmt: skip

VOC_BOUNDARY_COLOR = (224, 224, 192)
"""Colour of VOC's object outlines and 'difficult' regions, decoded as IGNORE_INDEX."""

Color = tuple[int, int, int]


def _color_codes(rgb: np.ndarray) -> np.ndarray:
    """Pack (..., 3) uint8 colours into one int32 per colour."""
    rgb = rgb.astype(np.int32)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def rgb_to_index(rgb: np.ndarray, colormap: tuple[Color, ...]) -> np.ndarray:
    """Map an (H, W, 3) colour-map label to class indices; unknown colours become IGNORE_INDEX.

    A sorted search over the K palette colours replaces the seed's 256**3 lookup table.
    """
    codes = _color_codes(rgb)
    palette_codes = _color_codes(np.asarray(colormap, dtype=np.uint8))
    order = np.argsort(palette_codes)
    sorted_codes = palette_codes[order]
    position = np.clip(np.searchsorted(sorted_codes, codes), 0, len(sorted_codes) - 1)
    known = sorted_codes[position] == codes
    return np.where(known, order[position], IGNORE_INDEX).astype(np.uint8)


def unknown_colors(rgb: np.ndarray, colormap: tuple[Color, ...]) -> dict[Color, int]:
    """Colours of an (H, W, 3) label that are not in the colormap, with their pixel counts."""
    codes, counts = np.unique(_color_codes(rgb), return_counts=True)
    known = set(_color_codes(np.asarray(colormap, dtype=np.uint8)).tolist())
    return {
        ((code >> 16) & 255, (code >> 8) & 255, code & 255): int(count)
        for code, count in zip(codes.tolist(), counts.tolist())
        if code not in known
    }


def label2image(mask: np.ndarray, palette: tuple[Color, ...], ignore_color: Color = VOC_BOUNDARY_COLOR) -> np.ndarray:
    """Colour a class-index mask: (H, W) integers -> (H, W, 3) uint8 RGB."""
    table = np.empty((256, 3), dtype=np.uint8)
    table[:] = ignore_color
    table[: len(palette)] = palette
    return table[np.asarray(mask, dtype=np.uint8)]


@dataclass(frozen=True)
class ClassTable:
    """Class names and colours of a dataset, and how its label files encode them.

    `value_to_class[v]` is the class index of label value v, IGNORE_INDEX for ignored values
    and -1 for values no class uses. `ignore_colors` are extra colours that RGB labels use
    for ignored pixels (VOC's boundary colour, a void colour).
    """

    class_names: tuple[str, ...]
    palette: tuple[Color, ...]
    value_to_class: np.ndarray
    ignore_colors: tuple[Color, ...] = ()

    @property
    def num_classes(self) -> int:
        """Number of real classes (ignored values excluded)."""
        return len(self.class_names)

    def decode(self, label: np.ndarray, path: Path | str) -> np.ndarray:
        """Class-index mask (H, W) uint8 from a label array read by `read_label_array`."""
        if label.ndim == 3:
            return rgb_to_index(label, self.palette)
        mapped = self.value_to_class[label]
        if (mapped < 0).any():
            bad = sorted(np.unique(label[mapped < 0]).tolist())
            raise DatasetError(
                f"{path}: label values {_short_list(bad)} are neither a class "
                f"(0..{self.num_classes - 1}) nor ignored ({IGNORE_INDEX})"
            )
        return mapped.astype(np.uint8)

    def unknown_values(self, label: np.ndarray) -> dict[int, int]:
        """Label values (or packed colours) that no class or ignore entry uses, with counts."""
        if label.ndim == 3:
            return unknown_colors(label, self.palette + self.ignore_colors)
        values, counts = np.unique(label[self.value_to_class[label] < 0], return_counts=True)
        return dict(zip(values.tolist(), counts.tolist()))


def _short_list(values: list[int], limit: int = 8) -> str:
    """'1, 2, 3' or '1, 2, ... (40 values)' for error messages."""
    shown = ", ".join(str(v) for v in values[:limit])
    return shown if len(values) <= limit else f"{shown}, ... ({len(values)} values)"


def identity_value_table(num_classes: int) -> np.ndarray:
    """value_to_class for labels whose values are the class indices, with 255 ignored."""
    table = np.full(256, -1, dtype=np.int16)
    table[:num_classes] = np.arange(num_classes)
    table[IGNORE_INDEX] = IGNORE_INDEX
    return table


def voc_class_table() -> ClassTable:
    """The 21 Pascal VOC classes, palette PNG values 0..20, 255 and the boundary colour ignored."""
    return ClassTable(VOC_CLASSES, VOC_COLORMAP, identity_value_table(len(VOC_CLASSES)), (VOC_BOUNDARY_COLOR,))


def read_classes_csv(path: Path) -> ClassTable:
    """Read `index,name,r,g,b[,ignore]` rows; label values are renumbered to contiguous classes."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DatasetError(f"{path}: cannot read class table ({error})") from None
    required = {"index", "name", "r", "g", "b"}
    if not rows or not required <= set(rows[0]):
        raise DatasetError(f"{path}: needs a header with columns index,name,r,g,b (and optional ignore)")
    entries = sorted((_parse_class_row(row, path, line) for line, row in enumerate(rows, start=2)))
    values = [value for value, *_ in entries]
    if len(set(values)) != len(values):
        raise DatasetError(f"{path}: label values must be unique, got {values}")
    table = np.full(256, -1, dtype=np.int16)
    table[IGNORE_INDEX] = IGNORE_INDEX
    names, palette, ignore_colors = [], [], []
    for value, name, color, ignored in entries:
        if ignored:
            table[value] = IGNORE_INDEX
            ignore_colors.append(color)
        else:
            table[value] = len(names)
            names.append(name)
            palette.append(color)
    if not names:
        raise DatasetError(f"{path}: every class is marked ignore; at least one class is needed")
    return ClassTable(tuple(names), tuple(palette), table, tuple(ignore_colors))


def _parse_class_row(row: dict, path: Path, line: int) -> tuple[int, str, Color, bool]:
    """(label value, name, colour, ignored) of one classes.csv row."""
    try:
        value = int(row["index"])
        color = (int(row["r"]), int(row["g"]), int(row["b"]))
        ignored = int(row.get("ignore") or 0) == 1
    except (TypeError, ValueError):
        raise DatasetError(f"{path}:{line}: index, r, g, b and ignore must be integers") from None
    if not (0 <= value < IGNORE_INDEX or (value == IGNORE_INDEX and ignored)):
        raise DatasetError(f"{path}:{line}: index {value} must be in 0..254 ({IGNORE_INDEX} only on a row with ignore=1)")
    if not all(0 <= c <= 255 for c in color):
        raise DatasetError(f"{path}:{line}: colour {color} must be three values in 0..255")
    name = (row["name"] or "").strip()
    if not name:
        raise DatasetError(f"{path}:{line}: empty class name")
    return value, name, color, ignored


def write_classes_csv(path: Path, table: ClassTable) -> None:
    """Write a class table in the `index,name,r,g,b,ignore` layout that `read_classes_csv` reads."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["index", "name", "r", "g", "b", "ignore"])
        for index, (name, color) in enumerate(zip(table.class_names, table.palette)):
            writer.writerow([index, name, *color, 0])


def palette_png(mask: np.ndarray, palette: tuple[Color, ...], ignore_color: Color = VOC_BOUNDARY_COLOR) -> Image.Image:
    """A 'P'-mode PNG image whose pixel values are the class indices and whose palette shows them."""
    image = Image.fromarray(np.asarray(mask, dtype=np.uint8), mode="P")
    image.putpalette(label2image(np.arange(256), palette, ignore_color).reshape(-1).tolist())
    return image

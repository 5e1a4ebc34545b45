"""Class tables and label decoding: palette, grayscale and RGB colour-map label images."""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from pixelwise.errors import DatasetError
from pixelwise.numbers import ascii_int

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


def _color_positions(rgb: np.ndarray, colormap: tuple[Color, ...]) -> np.ndarray:
    """Index in `colormap` of each pixel's colour of an (..., 3) array, -1 where it is not there.

    A sorted search over the K palette colours replaces the seed's 256**3 lookup table.
    """
    codes = _color_codes(rgb)
    palette_codes = _color_codes(np.asarray(colormap, dtype=np.uint8))
    order = np.argsort(palette_codes)
    sorted_codes = palette_codes[order]
    position = np.clip(np.searchsorted(sorted_codes, codes), 0, len(sorted_codes) - 1)
    return np.where(sorted_codes[position] == codes, order[position], -1)


def rgb_to_index(rgb: np.ndarray, colormap: tuple[Color, ...]) -> np.ndarray:
    """Map an (H, W, 3) colour-map label to class indices; unknown colours become IGNORE_INDEX."""
    positions = _color_positions(rgb, colormap)
    return np.where(positions >= 0, positions, IGNORE_INDEX).astype(np.uint8)


def unknown_colors(rgb: np.ndarray, colormap: tuple[Color, ...]) -> dict[Color, int]:
    """Colours of an (H, W, 3) label that are not in the colormap, with their pixel counts."""
    codes, counts = np.unique(_color_codes(rgb), return_counts=True)
    known = set(_color_codes(np.asarray(colormap, dtype=np.uint8).reshape(-1, 3)).tolist())
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
        """Class-index mask (H, W) uint8 from a label array read by `read_label_array`.

        Values (or colours) that are neither a class nor ignored raise DatasetError naming
        them with their pixel counts; fully transparent pixels of an RGBA label are ignored.
        """
        if label.ndim == 2:
            mapped = self.value_to_class[label]
            unknown = mapped < 0
            if unknown.any():
                values, counts = np.unique(label[unknown], return_counts=True)
                raise DatasetError(
                    f"{path}: {self._describe_unknown(dict(zip(values.tolist(), counts.tolist())), rgb=False)}"
                )
            return mapped.astype(np.uint8)
        rgb, labelled = label[..., :3], self._opaque(label, path)
        positions = _color_positions(rgb, self.palette + self.ignore_colors)
        unknown = (positions < 0) & labelled
        if unknown.any():
            raise DatasetError(f"{path}: {self._describe_unknown(unknown_colors(rgb[unknown], ()), rgb=True)}")
        is_class = labelled & (positions >= 0) & (positions < self.num_classes)
        return np.where(is_class, positions, IGNORE_INDEX).astype(np.uint8)

    @staticmethod
    def _opaque(label: np.ndarray, path: Path | str) -> np.ndarray:
        """Pixels of an RGB(A) label that carry a colour; a semi-transparent one is an error."""
        if label.shape[2] == 3:
            return np.ones(label.shape[:2], dtype=bool)
        alpha = label[..., 3]
        partial = int(((alpha > 0) & (alpha < 255)).sum())
        if partial:
            raise DatasetError(
                f"{path}: {partial} semi-transparent label pixels; a label pixel is opaque "
                "(a class colour) or fully transparent (unlabelled)"
            )
        return alpha == 255

    def _describe_unknown(self, unknown: dict, rgb: bool) -> str:
        """'label values 14 (30 px) are neither a class (0, 1, 2) nor ignored (255)', or the same for colours."""
        items = sorted(unknown.items(), key=lambda item: -item[1])[:5]
        shown = ", ".join(f"{value} ({count} px)" for value, count in items)
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        if rgb:
            return f"colours {shown}{more} are not in the class map (neither a class colour nor an ignore colour)"
        classes = np.flatnonzero((self.value_to_class >= 0) & (self.value_to_class != IGNORE_INDEX)).tolist()
        ignored = np.flatnonzero(self.value_to_class == IGNORE_INDEX).tolist()
        return (
            f"label values {shown}{more} are neither a class ({_short_list(classes)}) "
            f"nor ignored ({_short_list(ignored)})"
        )


def _short_list(values: list[int], limit: int = 8) -> str:
    """'0..20' for a run of values, else '1, 5, 9' or '1, 2, ... (40 values)' for error messages."""
    if len(values) > 2 and values == list(range(values[0], values[-1] + 1)):
        return f"{values[0]}..{values[-1]}"
    shown = ", ".join(str(v) for v in values[:limit])
    return shown if len(values) <= limit else f"{shown}, ... ({len(values)} values)"


def kept_classes(keep: str, class_names: tuple[str, ...]) -> list[str]:
    """The classes `keep` names: the whole text when it names a class (names may hold commas), else its comma list."""
    pieces = [name.strip() for name in keep.split(",")]
    if keep in class_names and len(pieces) > 1 and all(piece in class_names for piece in pieces):
        raise ValueError(
            f"{keep!r} names one class and also the classes {', '.join(pieces)}; this model's names make it "
            "ambiguous"
        )
    names = [keep] if keep in class_names else pieces
    if not all(names):
        raise ValueError(f"expected class names separated by commas, got {keep[:80]!r}")
    return names


def class_indices(names: list[str] | tuple[str, ...], class_names: tuple[str, ...], whose: str) -> list[int]:
    """Index of each of `names`; ValueError naming the first that is not a class, then `whose` class names."""
    unknown = [name for name in names if name not in class_names]
    if unknown:
        raise ValueError(f"unknown class {unknown[0]!r}; {whose} {', '.join(class_names)}")
    return [class_names.index(name) for name in names]


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
    """Read `index,name,r,g,b[,ignore]` rows; label values are renumbered to contiguous classes.

    A spreadsheet's CSV reads too: a UTF-8 byte-order mark, CRLF line ends, spaces around fields,
    capitalised column names, ';' or tab between fields. Repeated values, names or colours are
    refused, naming both rows.
    """
    rows = _class_table_rows(path)
    parsed = [(line, _parse_class_row(row, path, line)) for line, row in rows]
    for what, key in (
        ("label value", lambda entry: entry[0]),
        ("name", lambda entry: entry[1]),
        ("colour", lambda entry: entry[2]),
    ):
        _refuse_repeats(path, what, [(line, key(entry)) for line, entry in parsed])
    table = np.full(256, -1, dtype=np.int16)
    table[IGNORE_INDEX] = IGNORE_INDEX
    names, palette, ignore_colors = [], [], []
    for value, name, color, ignored in sorted(entry for _, entry in parsed):
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


CLASS_COLUMNS = ("index", "name", "r", "g", "b")


def _class_table_rows(path: Path) -> list[tuple[int, dict[str, str]]]:
    """(line number, {column: field}) of each non-blank row; column names are lower-cased, fields stripped."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as error:
        raise DatasetError(f"{path}: cannot read class table ({error})") from None
    lines = text.splitlines()
    declared = re.fullmatch(r"sep=(.)", lines[0].strip()) if lines else None  # Excel's first line naming the delimiter
    first_line = next((line for line in lines[1 if declared else 0 :] if line.strip()), "")
    delimiter = declared.group(1) if declared else next((mark for mark in ",;\t" if mark in first_line), ",")
    text = text.replace("\r\n", "\n").replace("\r", "\n")  # old Mac spreadsheets end lines in CR alone
    reader = csv.reader(io.StringIO(text), delimiter=delimiter, skipinitialspace=True)
    try:
        records = [(reader.line_num, fields) for fields in reader if any(field.strip() for field in fields)][
            1 if declared else 0 :
        ]
    except csv.Error as error:
        raise DatasetError(f"{path}: cannot read class table ({error})") from None
    if not records:
        raise DatasetError(f"{path}: empty; needs a header line with columns index,name,r,g,b (and optional ignore)")
    header = [column.strip().lower() for column in records[0][1]]
    twice = sorted({column for column in header if column and header.count(column) > 1})
    if twice:
        raise DatasetError(f"{path}: the header names column {twice[0]!r} twice")
    lacking = [column for column in CLASS_COLUMNS if column not in header]
    if lacking:
        shown = first_line if len(first_line) <= 80 else f"{first_line[:77]}..."
        raise DatasetError(
            f"{path}: the header line lacks column {', '.join(lacking)} (it needs index,name,r,g,b and optional "
            f"ignore); its first line reads {shown!r}"
        )
    if len(records) < 2:
        raise DatasetError(f"{path}: a header but no class rows under it")
    rows = []
    for line, fields in records[1:]:
        if any(field.strip() for field in fields[len(header) :]):
            raise DatasetError(f"{path}:{line}: {len(fields)} fields for a header of {len(header)} columns")
        rows.append((line, dict(zip(header, (field.strip() for field in fields)))))
    return rows


def _refuse_repeats(path: Path, what: str, keyed_lines: list[tuple[int, object]]) -> None:
    """DatasetError naming the two lines of the first repeated key."""
    first_line: dict = {}
    for line, key in keyed_lines:
        if key in first_line:
            raise DatasetError(
                f"{path}:{line}: {what} {key!r} repeats line {first_line[key]}; each class needs its own"
            )
        first_line[key] = line


def _parse_class_row(row: dict, path: Path, line: int) -> tuple[int, str, Color, bool]:
    """(label value, name, colour, ignored) of one classes.csv row."""
    try:
        value = ascii_int(row.get("index"))
        color = (ascii_int(row.get("r")), ascii_int(row.get("g")), ascii_int(row.get("b")))
        ignore = ascii_int(row.get("ignore") or "0")
    except (TypeError, ValueError):
        raise DatasetError(f"{path}:{line}: index, r, g, b and ignore must be integers") from None
    if ignore not in (0, 1):
        raise DatasetError(f"{path}:{line}: ignore must be 0 or 1, got {ignore}")
    ignored = ignore == 1
    if not (0 <= value < IGNORE_INDEX or (value == IGNORE_INDEX and ignored)):
        raise DatasetError(
            f"{path}:{line}: index {value} must be in 0..254 ({IGNORE_INDEX} only on a row with ignore=1)"
        )
    if not all(0 <= c <= 255 for c in color):
        raise DatasetError(f"{path}:{line}: colour {color} must be three values in 0..255")
    name = row.get("name", "")
    if not name:
        raise DatasetError(f"{path}:{line}: empty class name")
    if any(unicodedata.category(character).startswith("C") for character in name):
        raise DatasetError(f"{path}:{line}: class name {name!r} holds a control character")
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

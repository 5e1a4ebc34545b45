"""A deterministic synthetic dataset written as a real VOC-format tree.

Each object class is a (shape, texture) pair; colours are drawn from one distribution for
every class and for the background (which is smooth), so a model must learn shape and
texture, not colour.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from pixelwise.data.labels import (
    IGNORE_INDEX,
    VOC_COLORMAP,
    ClassTable,
    identity_value_table,
    palette_png,
    read_classes_csv,
    write_classes_csv,
)
from pixelwise.data.voc import SPLIT_DIR
from pixelwise.errors import DatasetError
from pixelwise.files import refuse_a_file_where_a_folder_goes

SHAPES = ("disk", "square", "triangle", "diamond", "ring", "cross")
TEXTURES = ("gridded", "striped", "checkered", "dotted")
MAX_CLASSES = len(VOC_COLORMAP)


def object_style(class_index: int) -> tuple[str, str]:
    """(shape, texture) of object class `class_index` (1-based); distinct for every class."""
    i = class_index - 1
    return SHAPES[i % len(SHAPES)], TEXTURES[(i // len(SHAPES) + i) % len(TEXTURES)]


def synthetic_class_table(num_classes: int) -> ClassTable:
    """Background plus `num_classes - 1` object classes named like 'striped disk'."""
    if not 2 <= num_classes <= MAX_CLASSES:
        raise ValueError(f"num_classes must be in 2..{MAX_CLASSES} (background included), got {num_classes}")
    names = ("background",) + tuple(" ".join(reversed(object_style(c))) for c in range(1, num_classes))
    return ClassTable(names, VOC_COLORMAP[:num_classes], identity_value_table(num_classes))


def _shape_mask(shape: str, dy: np.ndarray, dx: np.ndarray, radius: float) -> np.ndarray:
    """Pixels inside `shape` centred at offsets (dy, dx) = 0 with the given radius."""
    distance = np.hypot(dy, dx)
    ady, adx = np.abs(dy), np.abs(dx)
    if shape == "disk":
        return distance <= radius
    if shape == "square":
        return np.maximum(ady, adx) <= 0.8 * radius
    if shape == "triangle":
        return (dy >= -radius) & (dy <= 0.8 * radius) & (adx <= 0.6 * (dy + radius))
    if shape == "diamond":
        return ady + adx <= radius
    if shape == "ring":
        return (distance <= radius) & (distance >= 0.55 * radius)
    if shape == "cross":
        arm = 0.3 * radius
        return ((adx <= arm) & (ady <= radius)) | ((ady <= arm) & (adx <= radius))
    raise ValueError(f"unknown shape {shape!r}")


def _texture_pattern(texture: str, yy: np.ndarray, xx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A 0/1 pattern over the grid: which of the object's two colours each pixel takes."""
    period = rng.uniform(6, 12)
    half = period / 2
    y, x = yy + rng.uniform(0, period), xx + rng.uniform(0, period)
    if texture == "gridded":
        return (y % period < 2) | (x % period < 2)
    if texture == "striped":
        return ((x + y) // half) % 2 == 1
    if texture == "checkered":
        return ((y // half) + (x // half)) % 2 == 1
    if texture == "dotted":
        return np.hypot(y % period - half, x % period - half) < period / 4
    raise ValueError(f"unknown texture {texture!r}")


def _random_color(rng: np.random.Generator) -> np.ndarray:
    """One RGB colour from the distribution shared by every class and the background."""
    return rng.uniform(30, 225, size=3)


def _background(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A textured float background: a base colour with smooth waves of another colour."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base, other = _random_color(rng), _random_color(rng)
    wave = np.zeros((height, width), dtype=np.float32)
    for _ in range(3):
        angle, frequency, phase = rng.uniform(0, np.pi), rng.uniform(0.01, 0.08), rng.uniform(0, 2 * np.pi)
        wave += np.sin(frequency * (np.cos(angle) * xx + np.sin(angle) * yy) + phase)
    blend = (wave / 6 + 0.5)[..., None]  # in [0, 1]
    return base * (1 - blend) + other * blend


def _boundaries(labels: np.ndarray) -> np.ndarray:
    """Pixels with a 3x3 neighbour of another class: the band VOC marks as ignore."""
    padded = np.pad(labels, 1, mode="edge")
    height, width = labels.shape
    edge = np.zeros_like(labels, dtype=bool)
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            edge |= padded[dy : dy + height, dx : dx + width] != labels
    return edge


def render_sample(
    height: int, width: int, num_classes: int, rng: np.random.Generator, max_objects: int = 4
) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic photo (H, W, 3) uint8 and its label (H, W) uint8 with 255 boundaries."""
    photo = _background(height, width, rng)
    labels = np.zeros((height, width), dtype=np.uint8)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    for _ in range(rng.integers(1, max_objects + 1)):
        class_index = int(rng.integers(1, num_classes))
        shape, texture = object_style(class_index)
        radius = rng.uniform(0.12, 0.35) * min(height, width)
        center_y, center_x = rng.uniform(0, height), rng.uniform(0, width)
        inside = _shape_mask(shape, yy - center_y, xx - center_x, radius)
        first = _random_color(rng)
        second = np.clip(first + rng.choice([-1, 1], size=3) * rng.uniform(60, 100, size=3), 0, 255)
        pattern = _texture_pattern(texture, yy, xx, rng)[..., None]
        photo = np.where(inside[..., None], np.where(pattern, second, first), photo)
        labels[inside] = class_index
    photo = photo + rng.normal(0, 6, size=photo.shape)
    labels[_boundaries(labels)] = IGNORE_INDEX
    return np.clip(photo, 0, 255).astype(np.uint8), labels


def is_synthetic_tree(root: Path) -> bool:
    """True when `root` (a VOC2012 folder) has the classes.csv that `make_synthetic_voc` writes."""
    try:
        names = read_classes_csv(root / "classes.csv").class_names
        return names == synthetic_class_table(len(names)).class_names
    except (DatasetError, ValueError):
        return False


def _remove_other_samples(root: Path, names: set[str]) -> None:
    """Delete the images and labels an earlier synthetic tree has beyond `names`, so the tree holds this one only."""
    for folder, suffix in (("JPEGImages", ".jpg"), ("SegmentationClass", ".png")):
        for path in (root / folder).glob("[0-9]" * 6 + suffix):
            if path.stem not in names:
                path.unlink()


def make_synthetic_voc(
    out_dir: Path | str,
    *,
    num_train: int = 200,
    num_val: int = 50,
    num_classes: int = 5,
    size_range: tuple[int, int] = (96, 224),
    seed: int = 0,
) -> Path:
    """Write `out_dir/VOCdevkit/VOC2012` (JPEGs, palette PNGs, split files, classes.csv); return it.

    Sizes are drawn per image and per side from `size_range`, so some images are smaller than
    a typical crop. The same arguments always write the same files. An earlier synthetic tree
    there is replaced; any other VOC tree (VOC 2012 itself) is refused, not overwritten.
    """
    low, high = size_range
    if not 8 <= low <= high:
        raise ValueError(f"size range must satisfy 8 <= low <= high, got {size_range}")
    if num_train < 1 or num_val < 0:
        raise ValueError("num_train must be at least 1 and num_val at least 0")
    table = synthetic_class_table(num_classes)
    root = Path(out_dir) / "VOCdevkit" / "VOC2012"
    refuse_a_file_where_a_folder_goes(root)
    if root.is_dir() and any(root.iterdir()) and not is_synthetic_tree(root):
        raise DatasetError(f"{root}: holds files that pixelwise data synth did not write; give another folder")
    for folder in ("JPEGImages", "SegmentationClass", SPLIT_DIR):
        (root / folder).mkdir(parents=True, exist_ok=True)
    names = [f"{index:06d}" for index in range(num_train + num_val)]
    _remove_other_samples(root, set(names))
    for index, name in enumerate(names):
        rng = np.random.default_rng([seed, index])
        height, width = (int(v) for v in rng.integers(low, high + 1, size=2))
        photo, labels = render_sample(height, width, num_classes, rng)
        Image.fromarray(photo).save(root / "JPEGImages" / f"{name}.jpg", quality=90)
        palette_png(labels, table.palette).save(root / "SegmentationClass" / f"{name}.png")
    splits = {"train": names[:num_train], "val": names[num_train:], "trainval": names}
    for split, members in splits.items():
        (root / SPLIT_DIR / f"{split}.txt").write_text("".join(f"{n}\n" for n in members), encoding="utf-8")
    write_classes_csv(root / "classes.csv", table)
    return root

"""Pictures for people: colour masks, overlays with a legend, portrait blur, grids, curves."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from pixelwise.data.dataset import PairTransform
from pixelwise.data.labels import IGNORE_INDEX, label2image
from pixelwise.errors import DatasetError

Palette = tuple[tuple[int, int, int], ...]
SWATCH = 14


def colorize(mask: np.ndarray, palette: Palette) -> Image.Image:
    """RGB picture of a class-index mask; ignored pixels in VOC's boundary colour."""
    return Image.fromarray(label2image(mask, palette))


def legend(class_ids: Sequence[int], class_names: Sequence[str], palette: Palette, width: int) -> Image.Image:
    """A white strip listing a colour swatch and name per class id, wrapped at `width` (wider if one entry needs it)."""
    font = ImageFont.load_default()
    entries = [
        (palette[i], class_names[i], SWATCH + 6 + int(font.getlength(class_names[i])) + 14)
        for i in class_ids
        if i < len(class_names)
    ]
    row_height, padding = SWATCH + 6, 6
    width = max([width, *(padding + entry_width for *_, entry_width in entries)])  # a name is never cut
    x, y, positions = padding, padding, []
    for color, name, entry_width in entries:
        if x + entry_width > width and x > padding:
            x, y = padding, y + row_height
        positions.append((x, y, color, name))
        x += entry_width
    strip = Image.new("RGB", (width, y + row_height + padding), "white")
    draw = ImageDraw.Draw(strip)
    for x, y, color, name in positions:
        draw.rectangle([x, y, x + SWATCH, y + SWATCH], fill=tuple(color), outline="black")
        draw.text((x + SWATCH + 6, y + 1), name, fill="black", font=font)
    return strip


def stack_vertically(*images: Image.Image) -> Image.Image:
    """Images one above the other on white, left-aligned."""
    canvas = Image.new("RGB", (max(i.width for i in images), sum(i.height for i in images)), "white")
    y = 0
    for image in images:
        canvas.paste(image, (0, y))
        y += image.height
    return canvas


def present_classes(*masks: np.ndarray) -> list[int]:
    """Sorted class ids occurring in any of the masks, ignore value excluded."""
    values = set()
    for mask in masks:
        values |= set(np.unique(mask).tolist())
    return sorted(values - {IGNORE_INDEX})


def overlay(
    photo: Image.Image, mask: np.ndarray, class_names: Sequence[str], palette: Palette, alpha: float = 0.5
) -> Image.Image:
    """The photo blended with its class colours, above a legend of the classes present."""
    blended = Image.blend(photo.convert("RGB"), colorize(mask, palette), alpha)
    return stack_vertically(blended, legend(present_classes(mask), class_names, palette, blended.width))


def blur_background(photo: Image.Image, keep: np.ndarray, *, strength: float = 0.02) -> Image.Image:
    """Portrait mode: pixels where `keep` is False are blurred, with a soft edge between."""
    size = max(photo.size)
    blurred = photo.filter(ImageFilter.GaussianBlur(radius=max(1.0, strength * size)))
    alpha = Image.fromarray((keep * 255).astype(np.uint8)).filter(
        ImageFilter.GaussianBlur(radius=max(1.0, 0.004 * size))
    )
    return Image.composite(photo, blurred, alpha)


def grid(rows: Sequence[Sequence[Image.Image]], cell_height: int = 160, gap: int = 4) -> Image.Image:
    """Rows of images scaled to one height, on white."""
    scaled = [
        [image.resize((max(1, round(image.width * cell_height / image.height)), cell_height)) for image in row]
        for row in rows
    ]
    width = max(sum(image.width for image in row) + gap * (len(row) - 1) for row in scaled)
    canvas = Image.new("RGB", (width, len(scaled) * (cell_height + gap) - gap), "white")
    for row_index, row in enumerate(scaled):
        x = 0
        for image in row:
            canvas.paste(image, (x, row_index * (cell_height + gap)))
            x += image.width + gap
    return canvas


def plot_curves(history: Sequence[dict], path: Path) -> None:
    """curves.png: training loss and validation mIoU / pixel accuracy per epoch."""
    from matplotlib.figure import Figure  # drawn without pyplot: no backend or global state to set

    epochs = [row["epoch"] for row in history]
    figure = Figure(figsize=(9, 3.4))
    loss_axis, score_axis = figure.subplots(1, 2)
    loss_axis.plot(epochs, [row["loss"] for row in history], marker=".")
    loss_axis.set(title="training loss", xlabel="epoch")
    score_axis.plot(epochs, [row["miou"] for row in history], marker=".", label="val mIoU")
    score_axis.plot(epochs, [row["pixel_accuracy"] for row in history], marker=".", label="val pixel accuracy")
    score_axis.set(title="validation", xlabel="epoch", ylim=(0, 1))
    score_axis.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def pairs_figure(pairs: Sequence[tuple], class_names: Sequence[str], palette: Palette) -> Image.Image:
    """Photos (uint8 (3, H, W) tensors) in a row above their colour-mapped masks, with a legend."""
    photos = [Image.fromarray(image.permute(1, 2, 0).numpy()) for image, _ in pairs]
    masks = [mask.numpy() for _, mask in pairs]
    figure = grid([photos, [colorize(mask, palette) for mask in masks]])
    return stack_vertically(figure, legend(present_classes(*masks), class_names, palette, figure.width))


def comparison_figure(
    rows: Sequence[tuple[Image.Image, Sequence[np.ndarray]]], class_names: Sequence[str], palette: Palette
) -> Image.Image:
    """One row per photo: the photo, then each of its masks (truth, predictions) in colour; a legend below."""
    masks = [mask for _, row_masks in rows for mask in row_masks]
    figure = grid([[photo, *(colorize(mask, palette) for mask in row_masks)] for photo, row_masks in rows])
    return stack_vertically(figure, legend(present_classes(*masks), class_names, palette, figure.width))


def show_samples(dataset, count: int) -> Image.Image:
    """The seed's preview: `count` photos above their colour-mapped labels, with a legend."""
    pairs = [dataset.load(index) for index in range(min(count, len(dataset)))]
    return pairs_figure(pairs, dataset.class_names, dataset.palette)


def show_crops(dataset, index: int, count: int, crop: PairTransform) -> Image.Image:
    """`count` crops of photo `index` (as training loads it) by `crop`, above their labels: they must stay paired."""
    if not 0 <= index < len(dataset):
        raise DatasetError(f"photo index {index} is outside the split (0..{len(dataset) - 1})")
    image, mask = dataset.load(index)
    crops = [crop(*dataset.pasted(index, image, mask)) for _ in range(count)]
    return pairs_figure(crops, dataset.class_names, dataset.palette)

"""Images of any size -> class-index masks, with the model's classes and normalisation attached."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pixelwise.checkpoint import load_segmenter
from pixelwise.data.labels import class_indices, kept_classes
from pixelwise.device import resolve_device
from pixelwise.segmenter import ImageLike, Segmenter, array_to_image, as_rgb_image, require_model

__all__ = [
    "ImageLike", "Segmenter", "array_to_image", "as_rgb_image", "keep_mask", "kept_classes", "load_model", "predict",
]  # fmt: skip


def predict(model: Segmenter, image: ImageLike, *, max_side: int | None = 2048, precision: str = "fp32") -> np.ndarray:
    """Class-index mask (H, W) uint8 of `image`; same as `model.predict(image)`."""
    require_model(model)
    return model.predict(image, max_side=max_side, precision=precision)


def load_model(path: str | Path, device: str | torch.device = "cpu") -> Segmenter:
    """A Segmenter from a checkpoint file, in eval mode and channels-last as training leaves it; nothing else is needed.

    Call `.for_inference()` on it for a faster copy that only predicts. `device` is
    "cpu", "cuda", "cuda:N" or "auto"; one that is not there raises DeviceError.
    """
    return load_segmenter(path).to(resolve_device(device)).to(memory_format=torch.channels_last).eval()


def keep_mask(mask: np.ndarray, class_names: tuple[str, ...], keep: str | None) -> np.ndarray:
    """Pixels of the kept classes (comma-separated names in `keep`), or of every class but 'background' when None."""
    if keep is not None:
        ids = class_indices(kept_classes(keep, class_names), class_names, "the model knows")
    elif "background" in class_names:
        ids = [i for i, name in enumerate(class_names) if name != "background"]
    else:
        raise ValueError(f"this model has no 'background' class; name the classes to keep ({', '.join(class_names)})")
    return np.isin(mask, ids)

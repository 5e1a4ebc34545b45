"""A network with what it needs to segment photos: class names, palette, input normalisation, inference mode."""

from __future__ import annotations

import numbers
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from pixelwise.data.io import read_image, to_rgb
from pixelwise.data.transforms import IMAGENET_MEAN, IMAGENET_STD, normalize_batch
from pixelwise.engine import autocast
from pixelwise.inference import InferenceMode, averaged_probabilities
from pixelwise.models import fold_batch_norms, model_record

ImageLike = str | Path | Image.Image | np.ndarray


def as_rgb_image(image: ImageLike) -> Image.Image:
    """A PIL RGB image from a path (EXIF-upright), a PIL image (16-bit gray scaled) or an (H, W[, 3|4]) uint8 array."""
    if isinstance(image, (str, Path)):
        return read_image(image)
    if isinstance(image, np.ndarray):
        image = array_to_image(image)
    if not isinstance(image, Image.Image):
        raise TypeError(f"expected a path, PIL image or numpy array, got {type(image).__name__}")
    return to_rgb(image, "the image given")


def require_model(model) -> None:
    """Raise a TypeError unless `model` is a loaded pixelwise model (a Segmenter, or an exported one)."""
    if not callable(getattr(model, "segment_photos", None)):
        hint = "; load it first with pixelwise.load_model(path)" if isinstance(model, (str, Path)) else ""
        raise TypeError(f"expected a model from pixelwise.load_model, got {type(model).__name__}{hint}")


def array_to_image(array: np.ndarray) -> Image.Image:
    """A PIL image from an (H, W), (H, W, 3) or (H, W, 4) uint8 array; anything else is a one-line error."""
    channels_ok = array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4))
    if array.dtype != np.uint8 or not channels_ok:
        hint = " (scale floats in [0, 1] by 255 and convert with .astype(np.uint8))" if array.dtype.kind == "f" else ""
        raise TypeError(
            f"expected a uint8 array of shape (H, W), (H, W, 3) or (H, W, 4), got {array.dtype} {array.shape}{hint}"
        )
    if array.size == 0:
        raise ValueError(f"expected an image with pixels, got an array of shape {array.shape}")
    return Image.fromarray(np.ascontiguousarray(array))


class Segmenter(nn.Module):
    """A segmentation network with its class names, palette and input normalisation."""

    def __init__(
        self,
        network: nn.Module,
        *,
        model_name: str,
        class_names: tuple[str, ...],
        encoder: str | None = None,
        palette: tuple[tuple[int, int, int], ...],
        mean: tuple[float, ...] = IMAGENET_MEAN,
        std: tuple[float, ...] = IMAGENET_STD,
        inference: InferenceMode = InferenceMode(),
    ):
        super().__init__()
        self.network = network
        self.class_names = tuple(class_names)
        self.model_record = model_record(model_name, num_classes=len(self.class_names), encoder=encoder)
        self.inference = inference
        self.palette = tuple(tuple(color) for color in palette)
        self.mean, self.std = tuple(mean), tuple(std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, C, H, W) for normalised images (N, 3, H, W)."""
        return self.network(x)

    @property
    def model_name(self) -> str:
        """The registered name of the network."""
        return self.model_record["name"]

    def segment(self, x: torch.Tensor) -> torch.Tensor:
        """Class indices (N, H, W) for normalised images (N, 3, H, W), in the Segmenter's inference mode.

        In the plain mode, the argmax of the logits; a network may offer a faster `segment` of
        its own (FCN's avoids full-size logits on CPU). Otherwise the argmax of the averaged softmax.
        """
        if not self.inference.plain:
            return averaged_probabilities(self.network, x, self.inference).argmax(dim=1)
        fast = getattr(self.network, "segment", None)
        return fast(x) if fast is not None else self.network(x).argmax(dim=1)

    def set_inference(self, **settings) -> Segmenter:
        """Change this Segmenter's InferenceMode `settings` (tta, window, overlap, scales) in place; returns it."""
        self.inference = replace(self.inference, **settings)
        return self

    def for_inference(self) -> Segmenter:
        """A copy for prediction and evaluation only: eval mode, channels-last, BatchNorm folded into the convolutions.

        Same masks, fewer passes over memory; with no BatchNorm left it is not a model to train
        further. `pixelwise predict` and `pixelwise eval` use it.
        """
        inference = self.with_network(fold_batch_norms(self.network))
        return inference.to(memory_format=torch.channels_last).eval()

    def with_network(self, network: nn.Module) -> Segmenter:
        """A Segmenter around `network` with this one's model record, classes, palette, normalisation and mode."""
        return Segmenter(
            network, model_name=self.model_name, encoder=self.model_record["encoder"], class_names=self.class_names,
            palette=self.palette, mean=self.mean, std=self.std, inference=self.inference,
        )  # fmt: skip

    @torch.inference_mode()
    def segment_photos(self, photos: np.ndarray, *, precision: str = "fp32") -> np.ndarray:
        """Class-index masks (N, H, W) uint8 of photos (N, H, W, 3) uint8 of one size, in the inference mode."""
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        batch = torch.from_numpy(np.require(photos, np.uint8, ["C", "W"])).to(device).permute(0, 3, 1, 2)
        batch = normalize_batch(batch, self.mean, self.std)
        with autocast(device, precision):
            classes = self.segment(batch)
        self.train(was_training)
        return classes.to(torch.uint8).cpu().numpy()

    def predict(self, image: ImageLike, *, max_side: int | None = 2048, precision: str = "fp32") -> np.ndarray:
        """Class-index mask (H, W) uint8 of a photo, at the photo's own size.

        Photos whose longer side exceeds `max_side` are segmented at that size and the mask
        resized back (nearest neighbour), which bounds memory; `None` always uses full resolution.
        A sliding window bounds the network's activations, not the full-size logits it averages.
        `precision` "bf16" runs the network under bfloat16 autocast (faster on CPUs and GPUs
        with bfloat16 units).
        """
        return predict_photo(partial(self.segment_photos, precision=precision), image, max_side)


def predict_photo(
    segment_photos: Callable[[np.ndarray], np.ndarray], image: ImageLike, max_side: int | None
) -> np.ndarray:
    """The (H, W) uint8 mask `segment_photos` gives `image`, segmented at `max_side` at most and resized back."""
    if max_side is not None and (isinstance(max_side, bool) or not isinstance(max_side, numbers.Real)):
        raise TypeError(f"max_side must be a number of pixels, or None for full resolution, got {max_side!r}")
    if max_side is not None and not max_side >= 1:  # a negative size would give a 1x1 mask of one class; NaN too
        raise ValueError(f"max_side must be at least 1, or None for full resolution, got {max_side}")
    photo = as_rgb_image(image)
    small = shrunk(photo, max_side)
    # A large photo is shrunk before normalising and its mask enlarged after: neither the
    # float input nor the (C, H, W) logits ever exist at full size.
    return enlarged(segment_photos(np.asarray(small)[None])[0], photo.size)


def enlarged(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`mask` resized (nearest neighbour) to `size` (width, height); `mask` itself when it has that size."""
    if mask.shape[::-1] == tuple(size):
        return mask
    return np.asarray(Image.fromarray(mask).resize(size, Image.NEAREST))


def shrunk(photo: Image.Image, max_side: int | None) -> Image.Image:
    """`photo` resized (bilinear) so that its longer side is at most `max_side`; `photo` itself when it fits."""
    scale = max_side / max(photo.size) if max_side else 1.0
    if scale >= 1:
        return photo
    return photo.resize((max(1, round(photo.width * scale)), max(1, round(photo.height * scale))), Image.BILINEAR)

"""Class copy-paste, ClassMix-style on chosen classes: another training photo's pixels of them, laid at their place."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as F

from pixelwise.data.labels import class_indices, kept_classes
from pixelwise.errors import SettingsError

PASTE_PROBABILITY = 0.5  # share of training photos that get pixels pasted in (ours: half keep their own scenes)


@dataclass(frozen=True)
class ClassPaste:
    """Lay the pixels of `class_indices` from a random other photo over a photo, with `probability`.

    The pasted pixels keep their place (as in ClassMix, Olsson et al. 2021): photos from one
    camera share their perspective, so a pasted pole still stands where poles stand, before
    whatever the photo shows there. A lender of another size is scaled to cover the photo,
    keeping its shape, and centred. Runs before the crop, so the pair is then scaled, cropped
    and flipped as one.
    """

    class_indices: tuple[int, ...]
    probability: float = PASTE_PROBABILITY

    def lender(self, index: int, count: int) -> int | None:
        """Which other of `count` photos lends photo `index` its pixels, drawn at random; None: none this time."""
        if count < 2 or torch.rand(()).item() >= self.probability:
            return None
        return (index + 1 + int(torch.randint(count - 1, ()))) % count

    def paste(
        self, image: torch.Tensor, mask: torch.Tensor, lender_image: torch.Tensor, lender_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`image` (3, H, W) and `mask` (H, W) with the lender's pixels of the classes laid over them."""
        if lender_mask.shape != mask.shape:
            lender_image, lender_mask = _cover(lender_image, lender_mask, *mask.shape)
        chosen = torch.isin(lender_mask, torch.tensor(self.class_indices, dtype=lender_mask.dtype))
        return torch.where(chosen, lender_image, image), torch.where(chosen, lender_mask, mask)


def _cover(image: torch.Tensor, mask: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The pair scaled, shape kept, to cover `height` x `width`, and its centre cut to that size."""
    factor = max(height / mask.shape[0], width / mask.shape[1])
    size = [max(height, round(mask.shape[0] * factor)), max(width, round(mask.shape[1] * factor))]
    image = F.resize(image, size, antialias=True)
    mask = F.resize(mask[None], size, interpolation=InterpolationMode.NEAREST)[0]
    top, left = (size[0] - height) // 2, (size[1] - width) // 2
    return image[:, top : top + height, left : left + width], mask[top : top + height, left : left + width]


def class_paste(entries: Sequence[str], class_names: tuple[str, ...]) -> ClassPaste | None:
    """The paste of the classes `entries` name, as `predict --keep` reads them: each a class or a comma list of them.

    None for no entries; SettingsError on a name that is not one of `class_names`, or one given twice.
    """
    try:
        names = [name for entry in entries for name in kept_classes(entry, class_names)]
        repeated = next((name for name in names if names.count(name) > 1), None)
        if repeated is not None:
            raise ValueError(f"names {repeated!r} twice")
        return ClassPaste(tuple(class_indices(names, class_names, "the data's classes are"))) if names else None
    except ValueError as error:
        raise SettingsError(f"copy_paste: {error}") from None

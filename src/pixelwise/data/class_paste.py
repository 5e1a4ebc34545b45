"""Class copy-paste (ClassMix's, on chosen classes): another training photo's pixels of them, at the same place."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as F

from pixelwise.errors import DatasetError

PASTE_PROBABILITY = 0.5  # ClassMix's share of mixed samples


@dataclass(frozen=True)
class ClassPaste:
    """Lay the pixels of `class_indices` from a random other photo over a photo, with `probability`.

    The pasted pixels keep their place (ClassMix, Olsson et al. 2021): photos from one camera
    keep their perspective, so a pasted pole still stands where poles stand, before whatever
    the photo shows there. A donor of another size is resized to the photo's first. Runs
    before the crop, so the pair is then scaled, cropped and flipped as one.
    """

    class_indices: tuple[int, ...]
    probability: float = PASTE_PROBABILITY

    def donor(self, index: int, count: int) -> int | None:
        """Which other photo of `count` photo `index` takes pixels from, drawn at random; None: none this time."""
        if count < 2 or torch.rand(()).item() >= self.probability:
            return None
        return (index + 1 + int(torch.randint(count - 1, ()))) % count

    def paste(
        self, image: torch.Tensor, mask: torch.Tensor, donor_image: torch.Tensor, donor_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`image` (3, H, W) and `mask` (H, W) with the donor's pixels of the classes laid over them."""
        size = list(mask.shape[-2:])
        if list(donor_mask.shape[-2:]) != size:
            donor_image = F.resize(donor_image, size, antialias=True)
            donor_mask = F.resize(donor_mask[None], size, interpolation=InterpolationMode.NEAREST)[0]
        chosen = torch.isin(donor_mask, torch.tensor(self.class_indices, dtype=donor_mask.dtype))
        return torch.where(chosen, donor_image, image), torch.where(chosen, donor_mask, mask)


def class_paste(names: Sequence[str], class_names: Sequence[str]) -> ClassPaste | None:
    """The paste of the classes `names` from a dataset's `class_names` (None for none); DatasetError on a stranger."""
    unknown = [name for name in names if name not in class_names]
    if unknown:
        raise DatasetError(
            f"copy_paste names {unknown[0]!r}, which is not a class of this data; its classes: "
            + ", ".join(class_names)
        )
    return ClassPaste(tuple(class_names.index(name) for name in names)) if names else None

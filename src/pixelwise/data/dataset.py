"""The dataset base: a list of (photo, label) paths read lazily, one pair per item."""

from __future__ import annotations

import glob
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as F

from pixelwise.data.class_paste import ClassPaste
from pixelwise.data.io import broken_link, read_bytes, read_image, read_label_array, read_photo_header
from pixelwise.data.labels import ClassTable
from pixelwise.errors import DatasetError

Sample = tuple[Path, Path]
PairTransform = Callable[[tv_tensors.Image, tv_tensors.Mask], tuple[torch.Tensor, torch.Tensor]]


class SegmentationDataset(Dataset):
    """(image, mask) pairs: uint8 `Image` (3, H, W) and uint8 `Mask` (H, W), 255 = ignore.

    Only the paths are held; each item is decoded when asked for, given another photo's pixels
    of some classes by `paste` if set, then `transforms` (called on the pair) is applied.
    """

    def __init__(
        self,
        samples: list[Sample],
        classes: ClassTable,
        transforms: PairTransform | None = None,
        paste: ClassPaste | None = None,
    ):
        self.samples = samples
        self.classes = classes
        self.transforms = transforms
        self.paste = paste

    @property
    def class_names(self) -> tuple[str, ...]:
        """Names of the classes, index order."""
        return self.classes.class_names

    @property
    def palette(self) -> tuple[tuple[int, int, int], ...]:
        """Display colour of each class, index order."""
        return self.classes.palette

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, index: int) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
        """Decode sample `index` without transforms."""
        image_path, label_path = self.samples[index]
        image = read_image(image_path)
        return tv_tensors.Image(F.pil_to_tensor(image)), tv_tensors.Mask(
            self._read_mask(index, image.height, image.width)
        )

    def pasted(
        self, index: int, image: tv_tensors.Image, mask: tv_tensors.Mask
    ) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
        """Sample `index`'s decoded pair with `paste`'s draw laid over it; as given when no photo lends.

        A lender that fails to load lends nothing: it is named on its own turn, and this photo
        is not lost with it.
        """
        lender = self.paste.lender(index, len(self)) if self.paste is not None else None
        if lender is None:
            return image, mask
        try:
            lent = self.load(lender)
        except DatasetError:
            return image, mask
        image, mask = self.paste.paste(image, mask, *lent)
        return tv_tensors.Image(image), tv_tensors.Mask(mask)

    def load_for_device(self, index: int) -> tuple[torch.Tensor, tuple[int, int], torch.Tensor]:
        """Sample `index` with its photo left for the training device to decode: (photo, (H, W), mask).

        The photo is the file's bytes when it is a plain JPEG, else decoded uint8 (3, H, W).
        """
        image_path, _ = self.samples[index]
        data = read_bytes(image_path)
        header = read_photo_header(image_path, data)
        photo = data if header.plain_jpeg else F.pil_to_tensor(read_image(image_path))
        height, width = (header.height, header.width) if header.plain_jpeg else photo.shape[-2:]  # upright size
        return photo, (height, width), self._read_mask(index, height, width)

    def _read_mask(self, index: int, height: int, width: int) -> torch.Tensor:
        """Sample `index`'s class-index mask, uint8 (compact across workers), checked against the photo's size."""
        image_path, label_path = self.samples[index]
        label = read_label_array(label_path)
        require_same_size(label, height, width, label_path, image_path)
        return torch.from_numpy(self.classes.decode(label, label_path))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = self.pasted(index, *self.load(index))
        return self.transforms(image, mask) if self.transforms else (image, mask)


def require_same_size(label: np.ndarray, height: int, width: int, label_path: Path, image_path: Path) -> None:
    """DatasetError unless the label array is `height` x `width`, the photo's upright size."""
    if label.shape[:2] != (height, width):
        raise DatasetError(
            f"{label_path}: {label.shape[1]}x{label.shape[0]} label for a {width}x{height} image ({image_path.name})"
        )


def require_files(samples: list[Sample], listed_in: Path | str) -> None:
    """Raise DatasetError naming the first missing photo or label of `samples`."""
    missing = [path for pair in samples for path in pair if not path.is_file()]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        problem = broken_link(missing[0]) or f"file listed by {listed_in} is missing"
        raise DatasetError(f"{missing[0]}: {problem}{more}{same_name_hint(missing[0])}")


def same_name_hint(missing: Path) -> str:
    """'; found NAME.jpg, not NAME.png' when a file of that name but another suffix sits where `missing` should."""
    others = (
        sorted(p.name for p in missing.parent.glob(f"{glob.escape(missing.stem)}.*") if p.is_file())
        if missing.parent.is_dir()
        else []
    )
    return f"; found {', '.join(others)}, not {missing.name}" if others else ""

"""Training crops made on the training device (`pixelwise train --decode-on device`).

Workers send JPEG bytes, the crop's sampling coordinates and the cut mask; the device decodes
the batch (nvJPEG on CUDA) and resamples it at once. The random draws are `RandomScaleCrop`'s,
so the masks are the ones it cuts and the photos are resampled at the same coordinates; only
the interpolation differs (plain bilinear: no antialiasing when a photo is shrunk, which the
scale range 0.75-1.5 does by at most 1/4).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset
from torchvision.io import ImageReadMode, decode_jpeg

from pixelwise.data.dataset import SegmentationDataset
from pixelwise.data.transforms import AxisWindow, RandomScaleCrop, normalize_batch
from pixelwise.errors import DatasetError

OUTSIDE = -4.0
"""Source coordinate of crop positions the photo does not reach: bilinear sampling there reads only zero padding."""


def sampling_coordinates(window: AxisWindow, crop: int, flip: bool = False) -> torch.Tensor:
    """Along one axis, the source coordinate (pixel centres at integers) of each crop position.

    The same coordinates `RandomScaleCrop.crop_image` resizes at, clamped to the window as its
    resize clamps at the window's edges; OUTSIDE in the padding.
    """
    offsets = np.arange(crop) - window.pad_before  # position in the kept part
    inside = (offsets >= 0) & (offsets < window.kept)
    if flip:
        offsets = window.kept - 1 - offsets
    step = (window.source_stop - window.source_start) / window.resized
    coordinates = np.clip(
        (window.kept_start + offsets + 0.5) * step - 0.5 + window.source_start,
        window.source_start,
        window.source_stop - 1,
    )
    return torch.from_numpy(np.where(inside, coordinates, OUTSIDE).astype(np.float32))


@dataclass
class PlannedCrop:
    """One training sample for the device: its photo, where to sample it, its mask already cropped."""

    photo: (
        torch.Tensor
    )  # JPEG bytes (1-D uint8), or uint8 (3, H, W) when a JPEG decoder cannot give read_image's pixels
    path: str
    rows: torch.Tensor  # (crop height,) float32 source row of each crop row
    cols: torch.Tensor  # (crop width,) float32 source column of each crop column
    mask: torch.Tensor  # (crop height, crop width) uint8


class DeviceCrops(Dataset):
    """`crop`'s training samples with the photos left for the device to decode and resize."""

    def __init__(self, dataset: SegmentationDataset, crop: RandomScaleCrop):
        if crop.jitter is not None:
            raise ValueError("crops made on the device cannot be colour-jittered: give a crop without color_jitter")
        if dataset.paste is not None:
            raise ValueError("photos decoded on the device cannot take pasted classes: give a dataset without paste")
        self.dataset = dataset
        self.crop = crop

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> PlannedCrop:
        photo, (height, width), mask = self.dataset.load_for_device(index)
        plan = self.crop.draw(height, width)
        crop_height, crop_width = self.crop.crop_size
        return PlannedCrop(
            photo,
            str(self.dataset.samples[index][0]),
            sampling_coordinates(plan.rows, crop_height),
            sampling_coordinates(plan.cols, crop_width, plan.flip),
            self.crop.crop_mask(mask, plan),
        )


_decode_streams: dict[torch.device, torch.cuda.Stream] = {}


def decode_jpegs(photos: list[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
    """JPEG bytes -> uint8 RGB (3, H, W) on `device`, in one call (batched nvJPEG on CUDA).

    On CUDA the decoder runs under a stream of its own. torchvision's decoder takes its output
    memory from the current stream's pool but nvJPEG's hardware engine writes it without waiting
    for that stream's queued work (pytorch/vision#9606): on the training stream it overwrote
    memory the previous step's kernels still read, and training turned NaN within a few steps.
    A block of the private stream's pool is only handed out once every stream that used
    it is done with it (`record_stream`).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torchvision >= 0.29 points to TorchCodec
        if device.type != "cuda":
            return decode_jpeg(photos, mode=ImageReadMode.RGB, device=device)
        side = _decode_streams.setdefault(device, torch.cuda.Stream(device))
        with torch.cuda.stream(side):
            images = decode_jpeg(photos, mode=ImageReadMode.RGB, device=device)
    training = torch.cuda.current_stream(device)
    training.wait_stream(side)
    for image in images:
        image.record_stream(training)
    return images


def stack_padded(images: list[torch.Tensor]) -> torch.Tensor:
    """(N, C, H, W) of images at the top left of a canvas as large as the largest (one stack when sizes agree)."""
    if all(image.shape == images[0].shape for image in images):
        return torch.stack(images)
    height, width = (max(image.shape[axis] for image in images) for axis in (-2, -1))
    canvas = images[0].new_zeros((len(images), images[0].shape[0], height, width))
    for slot, image in zip(canvas, images):
        slot[:, : image.shape[-2], : image.shape[-1]] = image
    return canvas


def sampling_grid(rows: torch.Tensor, cols: torch.Tensor, source_size: tuple[int, int]) -> torch.Tensor:
    """grid_sample's (N, H, W, 2) grid (align_corners=False) from (N, H) source rows and (N, W) source columns."""
    height, width = source_size
    y = (2 * rows + 1) / height - 1
    x = (2 * cols + 1) / width - 1
    return torch.stack(torch.broadcast_tensors(x[:, None, :], y[:, :, None]), dim=-1)


@dataclass
class PlannedPhotos:
    """The photos of a training batch, still to decode and resample on the device.

    The batch's JPEG files travel as one byte tensor: between processes every tensor is a
    shared-memory block of its own, and 32 of them cost the training process 9 ms a batch here.
    """

    jpeg_bytes: torch.Tensor  # the batch's plain JPEG files, one after another
    jpeg_sizes: list[int]  # bytes of each photo in jpeg_bytes, 0 for a photo decoded in the worker
    decoded: list[torch.Tensor]  # the other photos, uint8 (3, H, W), in batch order
    paths: list[str]
    rows: torch.Tensor  # (N, crop height)
    cols: torch.Tensor  # (N, crop width)
    skip_bad: bool = False

    @classmethod
    def collate(cls, samples: list[PlannedCrop], *, skip_bad: bool = False) -> PlannedPhotos:
        """The photos of `samples` packed, their coordinates stacked."""
        jpegs = [sample.photo for sample in samples if sample.photo.dim() == 1]
        return cls(
            torch.cat(jpegs) if jpegs else torch.empty(0, dtype=torch.uint8),
            [sample.photo.numel() if sample.photo.dim() == 1 else 0 for sample in samples],
            [sample.photo for sample in samples if sample.photo.dim() == 3],
            [sample.path for sample in samples],
            torch.stack([sample.rows for sample in samples]),
            torch.stack([sample.cols for sample in samples]),
            skip_bad,
        )

    @property
    def photos(self) -> list[torch.Tensor]:
        """Each photo as its sample gave it: JPEG bytes (views of jpeg_bytes) or uint8 (3, H, W)."""
        jpegs = iter(self.jpeg_bytes.split([size for size in self.jpeg_sizes if size]))
        decoded = iter(self.decoded)
        return [next(jpegs) if size else next(decoded) for size in self.jpeg_sizes]

    def __len__(self) -> int:
        return len(self.jpeg_sizes)

    def pin_memory(self) -> PlannedPhotos:
        """The coordinates pinned, so their copy to the GPU does not wait for it (DataLoader calls this).

        The JPEG bytes stay in ordinary memory: the decoder reads them on the host.
        """
        return replace(self, rows=self.rows.pin_memory(), cols=self.cols.pin_memory())

    def render(
        self, masks: torch.Tensor, device: torch.device, normalization: tuple[tuple[float, ...], tuple[float, ...]]
    ) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        """Normalised channels-last float crops and int64 masks on `device`, and messages of photos that failed.

        Every copy to the device is non-blocking: a blocking one would wait for the queued training step.
        """
        sources, messages = self._decode(device)
        rows, cols = self.rows, self.cols
        if messages:  # drop the photos that failed
            kept = [index for index, source in enumerate(sources) if source is not None]
            sources, rows, cols, masks = [sources[index] for index in kept], rows[kept], cols[kept], masks[kept]
        if not sources:
            return torch.empty(0), torch.empty(0), messages
        batch = normalize_batch(stack_padded(sources), *normalization)  # (N, 3, H, W) float
        grid = sampling_grid(rows.to(device, non_blocking=True), cols.to(device, non_blocking=True), batch.shape[-2:])
        images = F.grid_sample(
            batch, grid, mode="bilinear", padding_mode="zeros", align_corners=False
        )  # zero = mean colour
        return (
            images.contiguous(memory_format=torch.channels_last),
            masks.to(device, non_blocking=True).long(),
            messages,
        )

    def _decode(self, device: torch.device) -> tuple[list[torch.Tensor | None], list[str]]:
        """Every photo as uint8 (3, H, W) on `device` (None where it failed and bad samples are skipped)."""
        photos = self.photos
        sources: list[torch.Tensor | None] = [
            photo.to(device, non_blocking=True) if photo.dim() == 3 else None for photo in photos
        ]
        encoded = [index for index, photo in enumerate(photos) if photo.dim() == 1]
        messages: list[str] = []
        if not encoded:
            return sources, messages
        try:
            decoded = decode_jpegs([photos[index] for index in encoded], device)
        except RuntimeError:  # find which photo broke the batch
            decoded = [self._decode_alone(photos[index], self.paths[index], device, messages) for index in encoded]
        for index, image in zip(encoded, decoded):
            sources[index] = image
        return sources, messages

    def _decode_alone(
        self, photo: torch.Tensor, path: str, device: torch.device, messages: list[str]
    ) -> torch.Tensor | None:
        """One photo decoded by itself; a failure raises DatasetError, or is noted when bad samples are skipped."""
        try:
            return decode_jpegs([photo], device)[0]
        except RuntimeError:  # torchvision's message names its own source file, not the photo
            message = f"{path}: cannot decode image on {device} (corrupt or truncated JPEG data)"
            if not self.skip_bad:
                raise DatasetError(message) from None
            messages.append(message)
            return None

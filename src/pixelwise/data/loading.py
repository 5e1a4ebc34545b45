"""Training batches whose order and augmentation depend only on (seed, epoch), resumable mid-epoch."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate

from pixelwise.data.dataset import SegmentationDataset
from pixelwise.data.device_crops import DeviceCrops, PlannedCrop, PlannedPhotos
from pixelwise.errors import DatasetError

SEED_MODULUS = 2**64  # torch generators take seeds below it
RANK_SEED_STRIDE = 2**40  # more steps than any run takes, so no two (step, rank) pairs share a seed


def epoch_seed(seed: int, epoch: int) -> int:
    """Seed of one epoch's shuffling."""
    return (seed * 100_003 + epoch) % SEED_MODULUS


def seed_random_layers(seed: int, epoch: int, step: int, rank: int = 0) -> None:
    """Seed the generators that dropout and other random layers draw from, for training step `step` of `epoch`.

    Called before every step, so those draws depend on (seed, epoch, step, rank) only: a
    resumed run makes the same ones as an uninterrupted run, whichever process loaded the
    batch, and each rank of a distributed run draws its own.
    """
    torch.manual_seed((epoch_seed(seed, epoch) * 1_000_033 + step + rank * RANK_SEED_STRIDE) % SEED_MODULUS)


@dataclass(frozen=True)
class SkippedSample:
    """A sample that failed to load, kept as its error message."""

    message: str


class SeededSamples(Dataset):
    """A dataset indexed by (epoch, i): sample i's random augmentation in epoch e depends only on (seed, e, i).

    Which worker loads a sample, and whether the epoch was interrupted and resumed, then no
    longer changes the batch; the epoch travels with the index, so workers can live across
    epochs. With `skip_bad`, a sample that fails to load becomes a SkippedSample instead of
    stopping the run.
    """

    def __init__(self, dataset: Dataset, seed: int, *, skip_bad: bool = False):
        self.dataset = dataset
        self.seed = seed
        self.skip_bad = skip_bad

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        epoch, index = key
        # Forked: with workers=0 this runs in the caller's process, whose global generator stays as it was.
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed((epoch_seed(self.seed, epoch) * 1_000_003 + index) % SEED_MODULUS)
            try:
                return self.dataset[index]
            except DatasetError as error:
                if not self.skip_bad:
                    raise
                return SkippedSample(str(error))


def collate_skipping(
    samples: list, skip_bad: bool = False
) -> tuple[torch.Tensor | PlannedPhotos, torch.Tensor, list[str]]:
    """Stack the good samples; return the skipped ones' messages beside them.

    Samples from `DeviceCrops` give the batch's photos as PlannedPhotos, which decode on the
    device and, with `skip_bad`, drop a photo that fails there instead of stopping the run.
    """
    skipped = [sample.message for sample in samples if isinstance(sample, SkippedSample)]
    good = [sample for sample in samples if not isinstance(sample, SkippedSample)]
    if not good:
        return torch.empty(0), torch.empty(0), skipped
    if isinstance(good[0], PlannedCrop):
        return PlannedPhotos.collate(good, skip_bad=skip_bad), torch.stack([sample.mask for sample in good]), skipped
    images, masks = default_collate(good)
    return images, masks, skipped


def steps_per_epoch(num_samples: int, batch_size: int) -> int:
    """Batches in one epoch; the last partial batch is dropped unless it is the only one."""
    return max(1, num_samples // batch_size)


class EpochBatches(Sampler[list[tuple[int, int]]]):
    """One epoch's batches of (epoch, index) keys, in an order that depends only on (seed, epoch).

    `set_epoch` chooses the epoch and the step to start from (a resumed epoch skips the
    batches it already trained on), so one DataLoader with persistent workers serves the run.
    `batch_size` is the global batch: rank r of `world_size` processes takes every
    world_size-th key of it from the r-th on, so the ranks together see one process's batch.
    """

    def __init__(self, num_samples: int, batch_size: int, seed: int, *, rank: int = 0, world_size: int = 1):
        self.num_samples, self.batch_size, self.seed = num_samples, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.epoch, self.start_step = 1, 0

    def set_epoch(self, epoch: int, start_step: int = 0) -> None:
        """Iterate epoch `epoch` from batch `start_step` on next."""
        self.epoch, self.start_step = epoch, start_step

    def __len__(self) -> int:
        return steps_per_epoch(self.num_samples, self.batch_size) - self.start_step

    def __iter__(self):
        order = torch.randperm(
            self.num_samples, generator=torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        ).tolist()
        for step in range(self.start_step, steps_per_epoch(self.num_samples, self.batch_size)):
            batch = order[step * self.batch_size : (step + 1) * self.batch_size]
            yield [(self.epoch, index) for index in batch[self.rank :: self.world_size]]


def training_samples(
    dataset: SegmentationDataset, seed: int, *, decode_on: str = "workers", skip_bad: bool = False
) -> SeededSamples:
    """`pixelwise train`'s samples of `dataset` (whose transforms are a RandomScaleCrop), seeded.

    decode_on "workers" decodes and crops each photo in the loader workers; "device" leaves
    the photos for the training device to decode and resample (`DeviceCrops`).
    """
    return SeededSamples(
        DeviceCrops(dataset, dataset.transforms) if decode_on == "device" else dataset, seed, skip_bad=skip_bad
    )


def train_loader(
    dataset: SeededSamples,
    *,
    batch_size: int,
    workers: int = 0,
    pin_memory: bool = False,
    rank: int = 0,
    world_size: int = 1,
) -> DataLoader:
    """The run's training loader (of this rank's share of each global batch); call `set_epoch` before each epoch.

    That is `loader.batch_sampler.set_epoch(epoch, start_step)`. Its workers persist across
    epochs: starting a worker pool every epoch cost about a quarter of the end-to-end rate on a
    GPU machine (benchmarks/gpu_throughput.py).
    """
    sampler = EpochBatches(len(dataset), batch_size, dataset.seed, rank=rank, world_size=world_size)
    collate = functools.partial(collate_skipping, skip_bad=dataset.skip_bad)
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=workers,
        collate_fn=collate,
        pin_memory=pin_memory,
        persistent_workers=workers > 0,
    )

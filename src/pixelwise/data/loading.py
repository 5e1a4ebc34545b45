"""Training batches whose order and augmentation depend only on (seed, epoch), resumable mid-epoch."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, default_collate

from pixelwise.errors import DatasetError


def epoch_seed(seed: int, epoch: int) -> int:
    """Seed of one epoch's shuffling."""
    return seed * 100_003 + epoch


@dataclass(frozen=True)
class SkippedSample:
    """A sample that failed to load, kept as its error message."""

    message: str


class SeededSamples(Dataset):
    """Wraps a dataset so sample i's random augmentation in epoch e depends only on (seed, e, i).

    Which worker loads a sample, and whether the epoch was interrupted and resumed, then no
    longer changes the batch. With `skip_bad`, a sample that fails to load becomes a
    SkippedSample instead of stopping the run.
    """

    def __init__(self, dataset: Dataset, seed: int, *, skip_bad: bool = False):
        self.dataset = dataset
        self.seed = seed
        self.skip_bad = skip_bad
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        torch.manual_seed(epoch_seed(self.seed, self.epoch) * 1_000_003 + index)
        try:
            return self.dataset[index]
        except DatasetError as error:
            if not self.skip_bad:
                raise
            return SkippedSample(str(error))


def collate_skipping(samples: list) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Stack the good samples; return the skipped ones' messages beside them."""
    skipped = [sample.message for sample in samples if isinstance(sample, SkippedSample)]
    good = [sample for sample in samples if not isinstance(sample, SkippedSample)]
    if not good:
        return torch.empty(0), torch.empty(0), skipped
    images, masks = default_collate(good)
    return images, masks, skipped


def steps_per_epoch(num_samples: int, batch_size: int) -> int:
    """Batches in one epoch; the last partial batch is dropped unless it is the only one."""
    return max(1, num_samples // batch_size)


def train_loader(dataset: SeededSamples, *, batch_size: int, epoch: int, start_step: int = 0, workers: int = 0, pin_memory: bool = False) -> DataLoader:
    """Epoch `epoch`'s batches from `start_step` on, in the order an uninterrupted epoch has."""
    dataset.epoch = epoch
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(epoch_seed(dataset.seed, epoch))).tolist()
    order = order[: steps_per_epoch(len(dataset), batch_size) * batch_size]
    sampler = BatchSampler(order[start_step * batch_size :], batch_size, drop_last=False)
    return DataLoader(dataset, batch_sampler=sampler, num_workers=workers, collate_fn=collate_skipping, pin_memory=pin_memory)

"""One process of a test run under torchrun: `torchrun --nproc-per-node 2 tests/distributed_worker.py SCENARIO ...`.

Scenarios:
  steps-then-train OUT.json ARGS...
                        a one-epoch run through the Python API; one optimisation step on the ranks against
                        one process on the same global batch, two steps of every registered model, BatchNorm
                        statistics shared over the ranks and sharded evaluation against one process's, on the
                        photos of ARGS' --data, reported in OUT.json; then pixelwise train ARGS with every
                        BatchNorm frozen, in the same processes
  frozen-batch-norm ARGS...
                        pixelwise train ARGS with every BatchNorm frozen
  nan RANK ARGS...      pixelwise train (ARGS) whose loss becomes NaN at step 3 of epoch 2 on rank RANK
  bad-sample RANK ARGS...
                        pixelwise train (ARGS) where a training photo fails to load on rank RANK in epoch 2
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import sys
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset
from torchvision.ops import FrozenBatchNorm2d

import pixelwise
import pixelwise.training
from pixelwise.averaging import share_batch_statistics, weight_average
from pixelwise.cli import main
from pixelwise.config import TrainConfig
from pixelwise.data.dataset import SegmentationDataset
from pixelwise.data.labels import IGNORE_INDEX
from pixelwise.data.loading import train_loader, training_samples
from pixelwise.data.spec import open_dataset
from pixelwise.data.transforms import train_transforms
from pixelwise.distributed import ONE_PROCESS, Ranks, data_parallel, gather, join_process_group, rank_share
from pixelwise.engine import evaluate, train_one_epoch
from pixelwise.errors import DatasetError
from pixelwise.losses import build_criterion
from pixelwise.models import MODELS, build_model, model_spec
from pixelwise.segmenter import Segmenter

CROP = (32, 32)  # within every photo at the smallest scale: no padded (ignored) pixels


def without_batch_statistics(module: torch.nn.Module) -> torch.nn.Module:
    """`module` with every BatchNorm2d replaced by a FrozenBatchNorm2d holding the same statistics."""
    for name, child in module.named_children():
        if isinstance(child, torch.nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
            frozen.weight.copy_(child.weight.detach())
            frozen.bias.copy_(child.bias.detach())
            frozen.running_mean.copy_(child.running_mean)
            frozen.running_var.copy_(child.running_var)
            setattr(module, name, frozen)
        else:
            without_batch_statistics(child)
    return module


class EveryPixelLabelled(Dataset):
    """`dataset`'s pairs with ignored pixels (the synthetic boundaries) as class 0: each rank's loss then averages
    as many pixels, and the mean of the ranks' losses is one process's loss."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        image, mask = self.dataset[index]
        return image, torch.where(mask == IGNORE_INDEX, 0, mask)


def weights_digest(module: torch.nn.Module) -> str:
    """A hash of every parameter's bytes: equal on two ranks only if their weights are bit-for-bit equal."""
    return hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in module.parameters())).hexdigest()


def segmenter_of(model: str, class_names: tuple[str, ...], palette) -> Segmenter:
    """A fresh `model` seeded alike on every rank."""
    torch.manual_seed(0)
    network = build_model(model, num_classes=len(class_names))
    return Segmenter(network, model_name=model, class_names=class_names, palette=palette)


def steps(segmenter: Segmenter, samples, ranks, count: int, batch_size: int) -> list[float]:
    """`count` SGD steps of `segmenter` on the first global batches, on `ranks`; each step's averaged loss."""
    optimizer = torch.optim.SGD(segmenter.parameters(), lr=0.05, momentum=0.9)
    loader = train_loader(samples, batch_size=batch_size, rank=ranks.rank, world_size=ranks.world_size)
    losses = []

    def record(progress, lr) -> None:
        losses.append(progress.loss_sum - sum(losses))
        if progress.steps == count:
            raise StopIteration

    try:
        train_one_epoch(
            data_parallel(segmenter, ranks, torch.device("cpu")), build_criterion("ce"), loader, optimizer, None,
            torch.device("cpu"), on_step=record, ranks=ranks,
        )  # fmt: skip
    except StopIteration:
        pass
    return losses


def statistics_shared(ranks: Ranks, trained: Segmenter) -> list[list[float]]:
    """The distinct BatchNorm statistics of a model and its moving average, from 1 + rank and 3 + rank, once shared."""
    average = weight_average(trained, 0.9)
    statistics = [
        [buffer for name, buffer in module.named_buffers() if name.endswith(("running_mean", "running_var"))]
        for module in (trained, average.module)
    ]
    for buffers, start in zip(statistics, (1.0, 3.0)):
        for buffer in buffers:
            buffer.fill_(start + ranks.rank)
    share_batch_statistics(ranks, trained, average)
    return [sorted({value for buffer in buffers for value in buffer.tolist()}) for buffers in statistics]


def steps_report(ranks: Ranks, data: Path) -> dict:
    """One step on the ranks against one process; two steps of every model; shared statistics; sharded evaluation."""
    dataset = open_dataset(data, "train")
    train_set = SegmentationDataset(dataset.samples, dataset.classes, train_transforms(CROP))
    samples = training_samples(EveryPixelLabelled(train_set), seed=7)
    names, palette = train_set.class_names, train_set.palette
    report = {"world_size": ranks.world_size}

    shared = without_batch_statistics(segmenter_of("fcn8s", names, palette))
    alone = copy.deepcopy(shared)
    report["losses"] = steps(shared, samples, ranks, 1, batch_size=4)
    if ranks.is_main:
        report["one_process_losses"] = steps(alone, samples, ONE_PROCESS, 1, batch_size=4)
        report["largest_weight_difference"] = max(
            float((a - b).abs().max().detach()) for a, b in zip(shared.parameters(), alone.parameters())
        )
    report["rank_weight_digests"] = gather(ranks, weights_digest(shared))

    report["models"] = {}
    for model in MODELS:
        batch_size = 2 * ranks.world_size * model_spec(model).min_batch
        trained = segmenter_of(model, names, palette)
        losses = steps(trained, samples, ranks, 2, batch_size=batch_size)
        report["models"][model] = {"losses": losses, "rank_weight_digests": gather(ranks, weights_digest(trained))}

    report["shared_statistics"] = gather(ranks, statistics_shared(ranks, segmenter_of("fcn8s", names, palette)))

    val = open_dataset(data, "val")
    evaluated = segmenter_of("fcn8s", names, palette)
    sharded = evaluate(evaluated, DataLoader(rank_share(val, ranks)), len(names), torch.device("cpu"), ranks=ranks)
    whole = evaluate(evaluated, DataLoader(val), len(names), torch.device("cpu"))
    report["val_photos"] = len(val)
    report["sharded_iou"], report["whole_iou"] = list(sharded.iou), list(whole.iou)
    report["sharded_pixel_accuracy"], report["whole_pixel_accuracy"] = sharded.pixel_accuracy, whole.pixel_accuracy
    return report


def without_batch_statistics_scenario(arguments: list[str]) -> int:
    """pixelwise train of a model whose BatchNorm layers are frozen: no statistics of the rank's share."""
    real_build_model = pixelwise.training.build_model
    pixelwise.training.build_model = lambda *args, **kwargs: without_batch_statistics(real_build_model(*args, **kwargs))
    return main(["train", *arguments])


def steps_then_train_scenario(out: Path, arguments: list[str]) -> int:
    """A one-epoch run through the Python API (which joins the process group), the steps report on the photos of
    `arguments`' --data, written to `out`; then their frozen-BatchNorm run."""
    data = Path(arguments[arguments.index("--data") + 1])
    api_config = TrainConfig(data=str(data), out=str(out.parent / "api-run"), epochs=1, batch_size=4,
        crop_size=(32, 32), device="cpu", workers=0)  # fmt: skip
    api_result = pixelwise.train(api_config)
    ranks = join_process_group()
    report = steps_report(ranks, data)
    report["api_run"] = {"run_dir": str(api_result.run_dir), "rank_results": gather(ranks, api_result.best_miou)}
    if ranks.is_main:
        out.write_text(json.dumps(report, allow_nan=True))
    return without_batch_statistics_scenario(arguments)


def nan_scenario(rank: int, arguments: list[str]) -> int:
    """pixelwise train whose loss becomes NaN at the 9th step (epoch 2, step 3 of 6) on rank `rank`."""
    real_build_criterion = pixelwise.training.build_criterion
    calls = {"count": 0}

    def criterion_that_diverges(name, class_weights=None):
        real_loss = real_build_criterion(name, class_weights)

        def loss(*args):
            calls["count"] += 1
            value = real_loss(*args)
            return value * float("nan") if calls["count"] == 9 else value

        return loss

    if int(os.environ["RANK"]) == rank:
        pixelwise.training.build_criterion = criterion_that_diverges
    return main(["train", *arguments])


def bad_sample_scenario(rank: int, arguments: list[str]) -> int:
    """pixelwise train in which rank `rank` cannot load a training photo after its 14th (12 loads an epoch)."""
    real_getitem = SegmentationDataset.__getitem__
    loads = {"count": 0}

    def failing_getitem(self, index):
        loads["count"] += 1
        if loads["count"] > 14 and self.transforms is not None:
            raise DatasetError(f"{self.samples[index][0]}: cannot decode image (cut off on this rank)")
        return real_getitem(self, index)

    if int(os.environ["RANK"]) == rank:
        SegmentationDataset.__getitem__ = failing_getitem
    return main(["train", *arguments])


if __name__ == "__main__":
    scenario, *rest = sys.argv[1:]
    if scenario == "steps-then-train":
        sys.exit(steps_then_train_scenario(Path(rest[0]), rest[1:]))
    elif scenario == "frozen-batch-norm":
        sys.exit(without_batch_statistics_scenario(rest))
    elif scenario == "nan":
        sys.exit(nan_scenario(int(rest[0]), rest[1:]))
    elif scenario == "bad-sample":
        sys.exit(bad_sample_scenario(int(rest[0]), rest[1:]))
    else:
        sys.exit(f"unknown scenario {scenario!r}")

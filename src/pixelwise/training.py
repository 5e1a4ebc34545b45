"""`train(config)`: datasets, model, optimiser and schedule, the epoch loop, the run directory."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path

import torch
from torch.optim.swa_utils import AveragedModel
from torch.utils.data import DataLoader
from tqdm import tqdm

from pixelwise._version import __version__
from pixelwise.averaging import average_fields, share_batch_statistics, weight_average
from pixelwise.checkpoint import load_checkpoint, model_fields, save_checkpoint
from pixelwise.config import CLASS_WEIGHTING_POWERS, TrainConfig
from pixelwise.data.check import SplitReport, check_dataset, dataset_layout
from pixelwise.data.class_paste import class_paste
from pixelwise.data.dataset import SegmentationDataset
from pixelwise.data.loading import seed_random_layers, steps_per_epoch, train_loader, training_samples
from pixelwise.data.spec import DEFAULT_ROOTS, open_dataset, prepare_data
from pixelwise.data.statistics import median_frequency_weights
from pixelwise.data.transforms import IMAGENET_MEAN, IMAGENET_STD, RandomScaleCrop, train_transforms
from pixelwise.device import emulated_bf16_warning, resolve_device
from pixelwise.distributed import (
    ONE_PROCESS,
    Ranks,
    data_parallel,
    on_every_rank,
    on_rank_zero,
    join_process_group,
    rank_device,
    rank_share,
)
from pixelwise.engine import EpochProgress, evaluate, evaluate_photos, train_one_epoch
from pixelwise.errors import DatasetError, ModelError, TrainingError, reworded
from pixelwise.memory import refuse_impossible_batch
from pixelwise.metrics import SegmentationMetrics
from pixelwise.onnx_model import OnnxSegmenter
from pixelwise.losses import Criterion, build_criterion
from pixelwise.models import build_model, model_spec, resolve_encoder
from pixelwise.run_directory import prepare_run_dir, refuse_earlier_run, refuse_foreign_folder, write_metrics_csv
from pixelwise.segmenter import Segmenter, require_model
from pixelwise.resume import Log, RunState, restore
from pixelwise.runtime import deterministic_algorithms
from pixelwise.schedule import build_optimizer, build_scheduler
from pixelwise.starting_weights import StartingWeights, starting_weights
from pixelwise.visualize import plot_curves


@dataclass
class TrainResult:
    """Where the run is and how it ended."""

    run_dir: Path
    best_miou: float
    best_epoch: int
    history: list[dict]


def metrics_row(
    epoch: int,
    done: EpochProgress,
    lr: float,
    metrics: SegmentationMetrics,
    class_names: tuple[str, ...],
    val_skipped: int,
) -> dict:
    """One metrics.csv row; `val_skipped` validation photos were left out of the metrics."""
    row = {"epoch": epoch, "loss": done.loss, "lr": lr}
    row.update({key: value for key, value in metrics.as_dict().items() if key != "iou"})
    row.update({f"iou_{name}": value for name, value in zip(class_names, metrics.iou)})
    row.update({"images": done.images, "skipped": len(done.skipped), "val_skipped": val_skipped})
    row.update({"seconds": done.seconds, "images_per_second": done.images_per_second})
    return row


def checkpoint_payload(
    segmenter: Segmenter, config: TrainConfig, epoch: int, history: list[dict], best: tuple[float, int]
) -> dict:
    """What predict and eval need, plus the metrics so far."""
    return {
        **model_fields(segmenter),
        "config": config.to_dict(),
        "pixelwise_version": __version__,
        "epoch": epoch,
        "metrics": history[-1] if history else {},
        "history": history,
        "best": {"miou": best[0], "epoch": best[1]},
    }


@dataclass
class CheckedData:
    """The run's data after the whole-split check: the usable samples, and what was left out."""

    train_set: SegmentationDataset
    val_set: SegmentationDataset
    train_report: SplitReport
    val_report: SplitReport


def _apply_bad_sample_policy(report: SplitReport, skip_bad: bool) -> None:
    """Stop on the split's first problem (unless skipping), or on what makes the whole split unusable."""
    if report.problems and not skip_bad:
        more = f" (and {len(report.problems) - 1} more in split {report.name!r}; `pixelwise data check` lists them)"
        raise DatasetError(report.problems[0] + (more if len(report.problems) > 1 else ""))
    if report.fatal:
        raise DatasetError(report.fatal[0])


def training_transform(config: TrainConfig) -> RandomScaleCrop:
    """What a run with `config` does to each training photo and its mask: scale, crop, flip, colour jitter."""
    return train_transforms(config.crop_size, scale_range=config.scale_range, color_jitter=config.color_jitter)


def _checked_data(config: TrainConfig, folder: Path, log: Log) -> CheckedData:
    """Both splits checked as `data check` does, before training: bad samples stop the run, or are left out."""
    paste = (
        class_paste(config.copy_paste, dataset_layout(folder).classes.class_names) if config.copy_paste else None
    )  # the names checked before the labels are read
    report = check_dataset(folder, splits=[config.train_split, config.val_split], train_split=config.train_split)
    train_report, val_report = report.split(config.train_split), report.split(config.val_split)
    for split in (train_report, val_report):
        _apply_bad_sample_policy(split, config.on_bad_sample == "skip")
        for problem in split.problems:
            log(f"skipped: {problem}")
        for warning in split.warnings:
            log(f"warning: {warning}")
    return CheckedData(
        SegmentationDataset(train_report.usable, report.classes, training_transform(config), paste),
        SegmentationDataset(val_report.usable, report.classes),  # whole photos, normalised in the loop
        train_report,
        val_report,
    )


def _class_weights(
    config: TrainConfig, report: SplitReport, class_names: tuple[str, ...], log: Log
) -> torch.Tensor | None:
    """The loss's class weights from the training split's pixel counts, or None for plain cross-entropy."""
    if config.class_weighting == "none":
        return None
    weights = median_frequency_weights(
        report.class_pixels, report.pixels_where_present, CLASS_WEIGHTING_POWERS[config.class_weighting]
    )
    log("class weights: " + ", ".join(f"{name} {weight:.2f}" for name, weight in zip(class_names, weights.tolist())))
    return weights


def _save(payload: dict, path: Path) -> None:
    """save_checkpoint, with a disk-full or permission failure as one clear TrainingError."""
    try:
        save_checkpoint(payload, path)
    except OSError as error:
        raise TrainingError(
            f"{path}: cannot write checkpoint ({error.strerror or error}); the previous file is intact"
        ) from None


def train(
    config: TrainConfig, *, resume: bool = False, overwrite: bool = False, progress: bool = True, log: Log | None = None
) -> TrainResult:
    """Train per `config`, writing config.json, metrics.csv, curves.png, last.pt and best.pt to `config.out`.

    Both splits are checked first, as `pixelwise data check` does: a bad sample stops the run
    before its first step, or with `on_bad_sample="skip"` is left out and counted. last.pt is
    also written every `config.save_every_steps` steps, so a killed run resumed with
    `resume=True` loses at most that many steps and ends as an uninterrupted run would; a
    resume may change the settings in RESUME_MAY_CHANGE. A new run refuses a folder holding an
    earlier run's checkpoints (unless `overwrite=True`) or files of its own.

    Started by torchrun, every process calls `train` and together they make one run: each
    trains on its share of every global batch, rank 0 alone writes the run directory, logs
    and shows progress, and an error on any rank is raised on all of them (RankFailure).
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"expected a pixelwise.TrainConfig, got {type(config).__name__}")
    # The caller's random state and torch's kernel settings are as they were when train returns.
    cuda_generators = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    ranks = join_process_group()
    with deterministic_algorithms(config.deterministic), torch.random.fork_rng(devices=cuda_generators):
        return _train(
            config, ranks, resume=resume, overwrite=overwrite, progress=progress and ranks.is_main,
            log=log if log and ranks.is_main else (lambda message: None),
        )  # fmt: skip


def _with_absolute_paths(config: TrainConfig) -> TrainConfig:
    """The config with its data folder and root as absolute paths, so the run resumes from any working directory."""
    if config.data in DEFAULT_ROOTS:
        return replace(config, root=str(Path(config.root or DEFAULT_ROOTS[config.data]).resolve()))
    return replace(config, data=str(Path(config.data).resolve()))


def _refuse_unusable_output(config: TrainConfig, *, resume: bool, overwrite: bool) -> None:
    """Refuse a run folder that is not a run's, an earlier run to be replaced unasked, a missing weights file."""
    if not resume:
        refuse_foreign_folder(Path(config.out))
    if not (resume or overwrite):
        refuse_earlier_run(Path(config.out))
    start_folder = Path(config.init_from).resolve().parent if config.init_from is not None else None
    if not resume and start_folder == Path(config.out).resolve():
        raise TrainingError(
            f"{config.init_from}: the checkpoint to start from is in the run's own folder, whose checkpoints the run "
            "replaces: copy it elsewhere first, or train into another folder"
        )
    weights_file = Path(config.encoder_weights)
    if not resume and config.encoder_weights not in ("none", "imagenet") and not weights_file.is_file():
        raise ModelError(  # before the minutes of the data check
            f"{weights_file}: {resolve_encoder(config.model, config.encoder)} weights file "
            f"{'is a folder' if weights_file.is_dir() else 'not found'} (encoder weights are imagenet, none or the "
            "path of a state-dict file)"
        )


def _process_settings(config: TrainConfig, ranks: Ranks) -> tuple[TrainConfig, torch.device]:
    """The config with the encoder resolved and the run's world size recorded, and this process's device."""
    device = rank_device(resolve_device(config.device), ranks)
    return replace(config, encoder=resolve_encoder(config.model, config.encoder), world_size=ranks.world_size), device


def _data_folder(config: TrainConfig, *, download: bool, resume: bool) -> Path:
    """The dataset's folder, downloaded first if asked."""
    try:
        return prepare_data(config.data, root=config.root, download=download)
    except DatasetError as error:
        raise DatasetError(f"{error}{'; if the data moved, resume giving its new place' if resume else ''}") from None


def _network(
    config: TrainConfig,
    num_classes: int,
    num_samples: int,
    weights: str | None,
    start: StartingWeights | None,
    device: torch.device,
) -> torch.nn.Module:
    """The model to train (`start`'s, or built with `weights` for its encoder), refused if a batch cannot train."""
    min_batch = model_spec(config.model).min_batch
    if config.world_size > 1 and min(config.batch_size, num_samples) // config.world_size < min_batch:
        raise TrainingError(
            f"{num_samples} training image(s) cannot give each of the {config.world_size} processes {min_batch} per "
            "step: train in fewer processes"
        )  # else every rank would pass every batch over
    network = start.network if start is not None else build_model(
        config.model, num_classes=num_classes, encoder=config.encoder, encoder_weights=weights
    )
    per_process = -(-min(config.batch_size, num_samples) // config.world_size)
    refuse_impossible_batch(network, per_process, config.crop_size, device)
    return network


def _train(
    config: TrainConfig, ranks: Ranks, *, resume: bool, overwrite: bool, progress: bool, log: Log
) -> TrainResult:
    """The body of `train`: everything is checked before the run directory is touched."""
    on_rank_zero(ranks, partial(_refuse_unusable_output, config, resume=resume, overwrite=overwrite))
    config, device = on_every_rank(ranks, partial(_process_settings, config, ranks))
    start = None  # a resumed run's weights come from its last.pt
    if config.init_from is not None and not resume:  # read before the minutes of the data check, by rank 0 alone
        config = replace(config, init_from=str(Path(config.init_from).absolute()))  # '..' after a link kept
        read = partial(starting_weights, config.init_from, config.model, config.encoder)
        start = on_every_rank(ranks, read if ranks.is_main else lambda: None)
    torch.default_generator.manual_seed(config.seed)  # the model's initial weights
    folder = on_rank_zero(ranks, partial(_data_folder, config, download=config.download, resume=resume))
    if ranks.world_size > 1:  # every machine reads the data from its own disk
        on_every_rank(ranks, partial(_data_folder, config, download=False, resume=resume))
    config = _with_absolute_paths(config)
    data = on_rank_zero(ranks, partial(_checked_data, config, folder, log))
    class_names = data.train_set.class_names
    if config.init_from is not None and not resume:
        on_every_rank(ranks, lambda: start and start.refuse_other_classes(class_names))
        log(f"starting from the weights of {start.describe() if start else config.init_from}")
    # Rank 0's initial weights (`start` is rank 0's only) go to every rank; a resumed run's come from its checkpoint.
    weights = None if resume or not ranks.is_main else config.encoder_weights
    network = on_every_rank(
        ranks, partial(_network, config, len(class_names), len(data.train_set), weights, start, device)
    )
    segmenter = Segmenter(
        network,
        model_name=config.model,
        encoder=config.encoder,
        class_names=class_names,
        palette=data.train_set.palette,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
    )
    segmenter.to(device).to(memory_format=torch.channels_last)
    _choose_batch_norm(segmenter, config, ranks, device, log)
    optimizer = build_optimizer(config, segmenter)
    steps = steps_per_epoch(len(data.train_set), config.batch_size)
    scheduler = build_scheduler(optimizer, config, steps)
    average = weight_average(segmenter, config.ema_decay)
    state = RunState()
    if resume:
        saved = on_rank_zero(ranks, partial(load_checkpoint, Path(config.out) / "last.pt", for_resume=True))
        state = on_every_rank(
            ranks, partial(restore, config, saved, segmenter, optimizer, scheduler, steps, log, average)
        )
    class_weights = None if config.loss == "lovasz" else _class_weights(config, data.train_report, class_names, log)
    criterion = build_criterion(config.loss, None if class_weights is None else class_weights.to(device))
    run_dir = on_rank_zero(ranks, partial(prepare_run_dir, config, replace_earlier=overwrite and not resume, log=log))
    processes = f" in {ranks.world_size} processes" if ranks.world_size > 1 else ""
    log(
        f"training {config.model} ({config.encoder}) on {folder} ({len(data.train_set)} images, "
        f"{len(class_names)} classes) on {device}{processes}, with {config.optimizer} at lr {config.lr:g} "
        f"and {config.loss} loss"
    )
    slow_precision = emulated_bf16_warning(device, config.precision)
    if slow_precision:
        log(f"warning: {slow_precision}")
    if average is not None:
        steps = float(f"{1 / (1 - config.ema_decay):.2g}")  # two figures: a decay of 1 - 1e-9 is not 1000000028 steps
        log(
            f"validating and saving a moving average of the weights (decay {config.ema_decay!r}: about the last "
            f"{steps:,.0f} steps)"
        )
    loop = EpochLoop(config, segmenter, optimizer, scheduler, device, data, criterion, run_dir, log, ranks, average)
    for epoch in range(state.epoch, config.epochs + 1):
        loop.run_epoch(epoch, state, progress)
    return TrainResult(run_dir, state.best[0], state.best[1], state.history)


def _choose_batch_norm(segmenter: Segmenter, config: TrainConfig, ranks: Ranks, device: torch.device, log: Log) -> None:
    """SyncBatchNorm across the ranks on CUDA when asked; elsewhere each rank normalises over its own share."""
    if ranks.world_size == 1:
        return
    if device.type == "cuda" and config.sync_bn:
        torch.nn.SyncBatchNorm.convert_sync_batchnorm(segmenter)
        log("BatchNorm statistics are computed over the global batch (SyncBatchNorm)")
    else:
        per_process = config.batch_size // ranks.world_size
        log(f"BatchNorm statistics are computed over each process's {per_process} images, not the global batch")


class EpochLoop:
    """One run's epochs: train, log what was skipped, validate, save the checkpoints and curves."""

    def __init__(
        self,
        config: TrainConfig,
        segmenter: Segmenter,
        optimizer,
        scheduler,
        device: torch.device,
        data: CheckedData,
        criterion: Criterion,
        run_dir: Path,
        log: Log,
        ranks: Ranks = ONE_PROCESS,
        average: AveragedModel | None = None,
    ):
        self.config, self.segmenter, self.optimizer, self.scheduler = config, segmenter, optimizer, scheduler
        self.device, self.data, self.run_dir, self.log = device, data, run_dir, log
        self.criterion, self.ranks, self.average = criterion, ranks, average
        self.trained = data_parallel(segmenter, ranks, device)  # the segmenter itself for one process
        self.steps = steps_per_epoch(len(data.train_set), config.batch_size)
        samples = training_samples(
            data.train_set, config.seed, decode_on=config.decode_on, skip_bad=config.on_bad_sample == "skip"
        )
        pin_memory = device.type == "cuda"
        self.loader = train_loader(
            samples, batch_size=config.batch_size, workers=config.workers, pin_memory=pin_memory,
            rank=ranks.rank, world_size=ranks.world_size,
        )  # fmt: skip
        self.val_loader = DataLoader(
            rank_share(data.val_set, ranks), batch_size=1, num_workers=config.workers, pin_memory=pin_memory
        )
        self.logged_skips = set(data.train_report.problems)

    @property
    def validated(self) -> Segmenter:
        """The model validated and saved: the weights' moving average when the run keeps one."""
        return self.segmenter if self.average is None else self.average.module

    def _save_state(self, epoch: int, state: RunState, progress: EpochProgress | None) -> None:
        """last.pt with everything a resume needs; mid-epoch (`progress` given) or at the epoch's end (rank 0 only)."""
        payload = checkpoint_payload(self.validated, self.config, epoch, state.history, state.best)
        resume = {
            "progress": asdict(progress) if progress else None,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            **average_fields(self.segmenter, self.average),
        }
        _save({**payload, **resume}, self.run_dir / "last.pt")
        if progress is None and state.best[1] == epoch:
            _save(payload, self.run_dir / "best.pt")

    def run_epoch(self, epoch: int, state: RunState, progress: bool) -> None:
        """Train epoch `epoch` (from where `state` says it stopped), validate it and save."""
        config, rank = self.config, self.ranks.rank
        done = state.progress or EpochProgress(skipped=list(self.data.train_report.problems))
        state.progress = None
        self.loader.batch_sampler.set_epoch(epoch, done.steps)
        bar = tqdm(
            self.loader,
            desc=f"epoch {epoch}/{config.epochs}",
            total=self.steps,
            initial=done.steps,
            disable=not progress,
            leave=False,
            unit="batch",
        )

        def on_step(done: EpochProgress, lr: float) -> None:
            seed_random_layers(config.seed, epoch, done.steps, rank)
            if self.average is not None:
                self.average.update_parameters(self.segmenter)
            bar.set_postfix(
                loss=f"{done.loss_sum / done.steps:.3f}", lr=f"{lr:.2e}", img_s=f"{done.images_per_second:.1f}"
            )
            if config.save_every_steps and done.steps % config.save_every_steps == 0 and done.steps < self.steps:
                share_batch_statistics(self.ranks, self.segmenter, self.average)  # a resume starts from what was saved
                on_rank_zero(self.ranks, partial(self._save_state, epoch, state, done))

        seed_random_layers(config.seed, epoch, done.steps, rank)
        try:
            train_one_epoch(
                self.trained, self.criterion, bar, self.optimizer, self.scheduler, self.device,
                normalization=self.normalization, precision=config.precision, progress=done, on_step=on_step,
                min_batch=model_spec(config.model).min_batch, ranks=self.ranks,
            )  # fmt: skip
        except TrainingError as error:
            saved = self.run_dir / "last.pt"
            where = f"the last good checkpoint is {saved}" if saved.is_file() else "no checkpoint was written before it"
            raise reworded(error, f"epoch {epoch}: {error}; {where}") from None
        finally:
            bar.close()
        for message in done.skipped:
            if message not in self.logged_skips:
                self.logged_skips.add(message)
                self.log(f"skipped: {message}")
        self._finish_epoch(epoch, state, done)

    @property
    def normalization(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """The model's input mean and std."""
        return self.segmenter.mean, self.segmenter.std

    def _write_epoch(self, epoch: int, state: RunState) -> None:
        """The checkpoints, metrics.csv and curves.png after epoch `epoch` (rank 0 only)."""
        self._save_state(epoch, state, None)
        write_metrics_csv(state.history, self.run_dir / "metrics.csv")
        plot_curves(state.history, self.run_dir / "curves.png")

    def _finish_epoch(self, epoch: int, state: RunState, done: EpochProgress) -> None:
        """Validate, record the epoch, save the checkpoints and curves, log one line."""
        class_names = self.segmenter.class_names
        share_batch_statistics(self.ranks, self.segmenter, self.average)  # all ranks validate, rank 0 saves, one model
        metrics = evaluate(
            self.validated, self.val_loader, len(class_names), self.device, normalization=self.normalization,
            ranks=self.ranks,
        )  # fmt: skip
        val_skipped = len(self.data.val_report.problems)
        state.history.append(
            metrics_row(epoch, done, self.optimizer.param_groups[0]["lr"], metrics, class_names, val_skipped)
        )
        if metrics.miou > state.best[0]:
            state.best = (metrics.miou, epoch)
        on_rank_zero(self.ranks, partial(self._write_epoch, epoch, state))
        skipped = f"  skipped {len(done.skipped)} bad sample(s), trained on {done.images}" if done.skipped else ""
        skipped += f"  val left out {val_skipped} bad photo(s)" if val_skipped else ""
        self.log(
            f"epoch {epoch}/{self.config.epochs}  loss {done.loss:.4f}  val mIoU {metrics.miou:.4f}  "
            f"pixel acc {metrics.pixel_accuracy:.4f}  {done.images_per_second:.1f} img/s  {done.seconds:.0f} s{skipped}"
        )


def evaluate_split(
    model: Segmenter | OnnxSegmenter,
    data: str | Path,
    split: str = "val",
    *,
    root: str | None = None,
    workers: int = 0,
    precision: str = "fp32",
) -> SegmentationMetrics:
    """Metrics of `model` (a Segmenter, or an exported model, in fp32) on a split, whole images at their own size."""
    require_model(model)
    folder = prepare_data(str(data), root=root)
    dataset = open_dataset(folder, split)
    if dataset.class_names != model.class_names:
        raise DatasetError(
            f"{folder}: classes {', '.join(dataset.class_names)} differ from the model's {', '.join(model.class_names)}"
        )
    loader = DataLoader(dataset, batch_size=1, num_workers=workers)
    return evaluate_photos(partial(model.segment_photos, precision=precision), loader, len(model.class_names))

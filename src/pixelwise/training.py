"""`train(config)`: datasets, model, optimiser and schedule, the epoch loop, the run directory."""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

import pixelwise
from pixelwise.checkpoint import load_checkpoint, load_weights, save_checkpoint
from pixelwise.config import BOUNDS, CLASS_WEIGHTING_POWERS, TrainConfig
from pixelwise.data.check import SplitReport, check_dataset
from pixelwise.data.dataset import SegmentationDataset
from pixelwise.data.labels import IGNORE_INDEX
from pixelwise.data.loading import steps_per_epoch, train_loader, training_samples
from pixelwise.data.spec import DEFAULT_ROOTS, open_dataset, prepare_data
from pixelwise.data.statistics import median_frequency_weights
from pixelwise.data.transforms import IMAGENET_MEAN, IMAGENET_STD, train_transforms
from pixelwise.device import resolve_device
from pixelwise.engine import EpochProgress, evaluate, train_one_epoch
from pixelwise.errors import CheckpointError, DatasetError, PixelwiseError, TrainingError
from pixelwise.memory import refuse_impossible_batch
from pixelwise.metrics import SegmentationMetrics
from pixelwise.models import build_model
from pixelwise.predict import Segmenter
from pixelwise.run_directory import prepare_run_dir, refuse_earlier_run, refuse_foreign_folder, write_metrics_csv
from pixelwise.runtime import keep_freed_memory
from pixelwise.visualize import plot_curves

Log = Callable[[str], None]
RATES = ("lr", "initial_lr")  # optimiser group entries the schedule moves
RESUME_MAY_CHANGE = (
    "epochs",
    "out",
    "data",
    "root",
    "download",
    "device",
    "workers",
    "lr",
    "deterministic",
    "save_every_steps",
    "on_bad_sample",
)
"""Settings a resume may give anew: where things are, how fast and how long it runs, the learning rate (logged)."""


def lr_factor(step: int, total_steps: int, warmup_steps: int, schedule: str) -> float:
    """Learning-rate multiplier at `step`: linear warm-up from 0.1, then poly(0.9), cosine or constant."""
    if step < warmup_steps:
        return 0.1 + 0.9 * step / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    if schedule == "poly":
        return (1 - progress) ** 0.9
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * progress))
    return 1.0


def build_optimizer(config: TrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    """SGD with momentum or AdamW over every parameter."""
    if config.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)


def build_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step schedule over the whole run."""
    total = config.epochs * steps_per_epoch
    warmup = round(config.warmup_epochs * steps_per_epoch)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, total, warmup, config.schedule))


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
        "model": {"name": config.model, "num_classes": len(segmenter.class_names)},
        "state_dict": segmenter.network.state_dict(),
        "class_names": list(segmenter.class_names),
        "palette": [list(color) for color in segmenter.palette],
        "ignore_index": IGNORE_INDEX,
        "normalization": {"mean": list(segmenter.mean), "std": list(segmenter.std)},
        "config": config.to_dict(),
        "pixelwise_version": pixelwise.__version__,
        "epoch": epoch,
        "metrics": history[-1] if history else {},
        "history": history,
        "best": {"miou": best[0], "epoch": best[1]},
    }


def resume_config(run_dir: Path | str, **changes) -> TrainConfig:
    """The config a run saved in its last.pt, with `changes` (`train` refuses those outside RESUME_MAY_CHANGE)."""
    path = Path(run_dir) / "last.pt"
    config = _saved_config(path, load_checkpoint(path, for_resume=True))
    return replace(config, out=str(run_dir), **{name: value for name, value in changes.items() if value is not None})


def _saved_config(path: Path, payload: dict) -> TrainConfig:
    """The TrainConfig stored in a checkpoint's payload."""
    try:
        return TrainConfig.from_dict(payload["config"])
    except PixelwiseError as error:
        raise CheckpointError(f"{path}: damaged checkpoint: field 'config': {error}") from None


@dataclass
class RunState:
    """Where a run stands: the epoch to run next (or the one interrupted), its progress, the history."""

    epoch: int = 1
    progress: EpochProgress | None = None
    history: list[dict] = field(default_factory=list)
    best: tuple[float, int] = (-1.0, 0)


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


def _checked_data(config: TrainConfig, folder: Path, log: Log) -> CheckedData:
    """Both splits checked as `data check` does, before training: bad samples stop the run, or are left out."""
    report = check_dataset(folder, splits=[config.train_split, config.val_split], train_split=config.train_split)
    train_report, val_report = report.split(config.train_split), report.split(config.val_split)
    for split in (train_report, val_report):
        _apply_bad_sample_policy(split, config.on_bad_sample == "skip")
        for problem in split.problems:
            log(f"skipped: {problem}")
        for warning in split.warnings:
            log(f"warning: {warning}")
    transforms = train_transforms(config.crop_size, scale_range=config.scale_range)
    return CheckedData(
        SegmentationDataset(train_report.usable, report.classes, transforms),
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


@contextlib.contextmanager
def deterministic_algorithms(enabled: bool):
    """Ask torch for deterministic kernels while the block runs, then restore its settings."""
    previous = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.benchmark,
    )
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True, warn_only=True)  # some CUDA kernels have no deterministic version
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
        torch.backends.cudnn.benchmark = previous[2]


def _settings_changed(saved: TrainConfig, config: TrainConfig, log: Log) -> None:
    """Log each setting a resume gives anew; refuse one it may not change (model, classes' meaning, recipe)."""
    for setting in fields(TrainConfig):
        before, now = getattr(saved, setting.name), getattr(config, setting.name)
        if before == now or setting.name == "out":
            continue
        if setting.name not in RESUME_MAY_CHANGE:
            raise TrainingError(
                f"{config.out}: a resumed run keeps its {setting.name.replace('_', ' ')} ({before!r}, asked "
                f"{now!r}); start a new run to change it"
            )
        log(f"resume changes {setting.name.replace('_', ' ')}: {before} -> {now}")


def _restore(config: TrainConfig, segmenter: Segmenter, optimizer, scheduler, steps: int, log: Log) -> RunState:
    """Load the run's last.pt (epochs of `steps` steps) into model, optimiser and scheduler; where to go on from."""
    path = Path(config.out) / "last.pt"
    state = load_checkpoint(path, for_resume=True)
    if tuple(state["class_names"]) != segmenter.class_names:
        raise TrainingError(
            f"{path}: was trained on classes {', '.join(state['class_names'])}; the data now has "
            f"{', '.join(segmenter.class_names)} "
            "(a resumed run keeps its classes; start a new run for the new table)"
        )
    recoloured = [
        name
        for name, before, now in zip(segmenter.class_names, state["palette"], segmenter.palette)
        if tuple(before) != now
    ]
    if recoloured:
        log(f"resume changes the colours of {', '.join(recoloured)} (from the data's class table)")
    saved = _saved_config(path, state)
    _settings_changed(saved, config, log)
    load_weights(path, segmenter.network, state["state_dict"], config.model)
    settings = [{key: value for key, value in group.items() if key != "params"} for group in optimizer.param_groups]
    try:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        _require_run_optimizer(optimizer, settings, scheduler, config)
    except (RuntimeError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise CheckpointError(
            f"{path}: damaged checkpoint: its optimiser or schedule state is not {config.optimizer}'s for this model "
            f"({str(error).splitlines()[0]})"
        ) from None
    if config.lr != saved.lr:
        _set_peak_lr(scheduler, config.lr)
    best = (state["best"]["miou"], state["best"]["epoch"])
    finished = state["epoch"] - (1 if state.get("progress") else 0)
    if finished > config.epochs:  # refused before config.json is rewritten with the shorter count
        raise TrainingError(
            f"{config.out}: has finished {finished} epochs; --epochs {config.epochs} would shorten it (give more to "
            "train longer)"
        )
    if state.get("progress"):
        progress = EpochProgress(**state["progress"])
        if progress.steps >= steps or progress.images > progress.steps * config.batch_size:
            raise CheckpointError(
                f"{path}: damaged checkpoint: field 'progress' says {progress.steps} steps and {progress.images} "
                f"images of an epoch of {steps} steps"
            )
        log(f"resuming {config.out} in epoch {state['epoch']} after step {progress.steps}")
        resumed = RunState(state["epoch"], progress, state["history"], best)
    else:
        log(f"resuming {config.out} after epoch {state['epoch']}")
        resumed = RunState(state["epoch"] + 1, None, state["history"], best)
    if finished == config.epochs:
        log(
            f"{config.out} has finished its {config.epochs} epochs: nothing to train (--epochs {config.epochs + 10} "
            "would add 10)"
        )
    return resumed


def _require_run_optimizer(
    optimizer: torch.optim.Optimizer, settings: list[dict], scheduler, config: TrainConfig
) -> None:
    """ValueError unless the loaded optimiser and schedule are what the config builds (settings, rates, buffers)."""
    for group, expected in zip(optimizer.param_groups, settings, strict=True):
        changed = sorted(
            key
            for key in set(group) | set(expected)
            if key != "params" and key not in RATES and group.get(key) != expected.get(key)
        )
        if changed:
            raise ValueError(
                f"optimiser setting {changed[0]} is {group.get(changed[0])!r}, the run's config gives "
                f"{expected.get(changed[0])!r}"
            )
        if not all(isinstance(group[key], (int, float)) and 0 <= group[key] <= BOUNDS["lr"][1] for key in RATES):
            raise ValueError(f"learning rate {group['lr']!r} outside 0..{BOUNDS['lr'][1]}")
    if len(scheduler.base_lrs) != len(optimizer.param_groups) or not all(
        0 < lr <= BOUNDS["lr"][1] for lr in scheduler.base_lrs
    ):
        raise ValueError(
            f"schedule base rates {scheduler.base_lrs!r} for {len(optimizer.param_groups)} parameter group(s)"
        )
    buffers = {"sgd": {"momentum_buffer"} if config.momentum else set(), "adamw": {"step", "exp_avg", "exp_avg_sq"}}[
        config.optimizer
    ]
    for parameter, values in optimizer.state.items():
        if not isinstance(parameter, torch.Tensor) or set(values) != buffers:
            raise ValueError(f"optimiser state holds {sorted(values)}, {config.optimizer} keeps {sorted(buffers)}")
        for name, value in values.items():
            wanted = ((), torch.float32) if name == "step" else (parameter.shape, parameter.dtype)
            if (
                not isinstance(value, torch.Tensor)
                or (value.shape, value.dtype) != wanted
                or not bool(torch.isfinite(value).all())
            ):
                raise ValueError(
                    f"optimiser buffer {name} is not a finite {wanted[1]} tensor of shape {tuple(wanted[0])}"
                )
            if name == "step" and value < 0:
                raise ValueError(f"optimiser step count {float(value)} is negative")


def _set_peak_lr(scheduler: torch.optim.lr_scheduler.LambdaLR, lr: float) -> None:
    """Make `lr` the schedule's peak from the current step on (a resume that changes the learning rate)."""
    scheduler.base_lrs = [lr] * len(scheduler.base_lrs)
    for group, factor in zip(
        scheduler.optimizer.param_groups, (fn(scheduler.last_epoch) for fn in scheduler.lr_lambdas)
    ):
        group["initial_lr"], group["lr"] = lr, lr * factor


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
    Sets the process's allocator to keep freed memory (`runtime.keep_freed_memory`).
    """
    keep_freed_memory()
    with deterministic_algorithms(config.deterministic):
        return _train(config, resume=resume, overwrite=overwrite, progress=progress, log=log or (lambda message: None))


def _with_absolute_paths(config: TrainConfig) -> TrainConfig:
    """The config with its data folder and root as absolute paths, so the run resumes from any working directory."""
    if config.data in DEFAULT_ROOTS:
        return replace(config, root=str(Path(config.root or DEFAULT_ROOTS[config.data]).resolve()))
    return replace(config, data=str(Path(config.data).resolve()))


def _train(config: TrainConfig, *, resume: bool, overwrite: bool, progress: bool, log: Log) -> TrainResult:
    """The body of `train`: everything is checked before the run directory is touched."""
    if not resume:
        refuse_foreign_folder(Path(config.out))
    if not (resume or overwrite):
        refuse_earlier_run(Path(config.out))
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)  # the model's initial weights
    try:
        folder = prepare_data(config.data, root=config.root, download=config.download)
    except DatasetError as error:
        raise DatasetError(f"{error}{'; if the data moved, resume with --data NEW_PLACE' if resume else ''}") from None
    config = _with_absolute_paths(config)
    data = _checked_data(config, folder, log)
    class_names = data.train_set.class_names
    network = build_model(config.model, num_classes=len(class_names), backbone_weights=config.backbone_weights)
    refuse_impossible_batch(network, min(config.batch_size, len(data.train_set)), config.crop_size, device)
    segmenter = Segmenter(
        network,
        model_name=config.model,
        class_names=class_names,
        palette=data.train_set.palette,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
    )
    segmenter.to(device).to(memory_format=torch.channels_last)
    optimizer = build_optimizer(config, segmenter)
    steps = steps_per_epoch(len(data.train_set), config.batch_size)
    scheduler = build_scheduler(optimizer, config, steps)
    state = _restore(config, segmenter, optimizer, scheduler, steps, log) if resume else RunState()
    class_weights = _class_weights(config, data.train_report, class_names, log)
    run_dir = prepare_run_dir(config, replace_earlier=overwrite and not resume, log=log)
    log(f"training {config.model} on {folder} ({len(data.train_set)} images, {len(class_names)} classes) on {device}")
    loop = EpochLoop(config, segmenter, optimizer, scheduler, device, data, class_weights, run_dir, log)
    for epoch in range(state.epoch, config.epochs + 1):
        loop.run_epoch(epoch, state, progress)
    return TrainResult(run_dir, state.best[0], state.best[1], state.history)


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
        class_weights,
        run_dir: Path,
        log: Log,
    ):
        self.config, self.segmenter, self.optimizer, self.scheduler = config, segmenter, optimizer, scheduler
        self.device, self.data, self.run_dir, self.log = device, data, run_dir, log
        self.class_weights = None if class_weights is None else class_weights.to(device)
        self.steps = steps_per_epoch(len(data.train_set), config.batch_size)
        samples = training_samples(
            data.train_set, config.seed, decode_on=config.decode_on, skip_bad=config.on_bad_sample == "skip"
        )
        self.loader = train_loader(
            samples, batch_size=config.batch_size, workers=config.workers, pin_memory=device.type == "cuda"
        )
        self.val_loader = DataLoader(
            data.val_set, batch_size=1, num_workers=config.workers, pin_memory=device.type == "cuda"
        )
        self.logged_skips = set(data.train_report.problems)

    def _save_state(self, epoch: int, state: RunState, progress: EpochProgress | None) -> None:
        """last.pt with everything a resume needs; mid-epoch (`progress` given) or at the epoch's end."""
        payload = checkpoint_payload(self.segmenter, self.config, epoch, state.history, state.best)
        resume = {
            "progress": asdict(progress) if progress else None,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
        }
        _save({**payload, **resume}, self.run_dir / "last.pt")
        if progress is None and state.best[1] == epoch:
            _save(payload, self.run_dir / "best.pt")

    def run_epoch(self, epoch: int, state: RunState, progress: bool) -> None:
        """Train epoch `epoch` (from where `state` says it stopped), validate it and save."""
        config = self.config
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
            bar.set_postfix(
                loss=f"{done.loss_sum / done.steps:.3f}", lr=f"{lr:.2e}", img_s=f"{done.images_per_second:.1f}"
            )
            if config.save_every_steps and done.steps % config.save_every_steps == 0 and done.steps < self.steps:
                self._save_state(epoch, state, done)

        try:
            train_one_epoch(
                self.segmenter, bar, self.optimizer, self.scheduler, self.device, normalization=self.normalization,
                class_weights=self.class_weights, precision=config.precision, progress=done, on_step=on_step,
            )  # fmt: skip
        except TrainingError as error:
            saved = self.run_dir / "last.pt"
            where = f"the last good checkpoint is {saved}" if saved.is_file() else "no checkpoint was written before it"
            raise TrainingError(f"epoch {epoch}: {error}; {where}") from None
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

    def _finish_epoch(self, epoch: int, state: RunState, done: EpochProgress) -> None:
        """Validate, record the epoch, save the checkpoints and curves, log one line."""
        class_names = self.segmenter.class_names
        metrics = evaluate(
            self.segmenter, self.val_loader, len(class_names), self.device, normalization=self.normalization
        )
        val_skipped = len(self.data.val_report.problems)
        state.history.append(
            metrics_row(epoch, done, self.optimizer.param_groups[0]["lr"], metrics, class_names, val_skipped)
        )
        if metrics.miou > state.best[0]:
            state.best = (metrics.miou, epoch)
        self._save_state(epoch, state, None)
        write_metrics_csv(state.history, self.run_dir / "metrics.csv")
        plot_curves(state.history, self.run_dir / "curves.png")
        skipped = f"  skipped {len(done.skipped)} bad sample(s), trained on {done.images}" if done.skipped else ""
        skipped += f"  val left out {val_skipped} bad photo(s)" if val_skipped else ""
        self.log(
            f"epoch {epoch}/{self.config.epochs}  loss {done.loss:.4f}  val mIoU {metrics.miou:.4f}  "
            f"pixel acc {metrics.pixel_accuracy:.4f}  {done.images_per_second:.1f} img/s  {done.seconds:.0f} s{skipped}"
        )


def evaluate_split(
    model: Segmenter,
    data: str | Path,
    split: str = "val",
    *,
    root: str | None = None,
    workers: int = 0,
    precision: str = "fp32",
) -> SegmentationMetrics:
    """Metrics of `model` on a dataset split, whole images at their own size."""
    folder = prepare_data(str(data), root=root)
    dataset = open_dataset(folder, split)
    if dataset.class_names != model.class_names:
        raise DatasetError(
            f"{folder}: classes {', '.join(dataset.class_names)} differ from the model's {', '.join(model.class_names)}"
        )
    device = next(model.parameters()).device
    loader = DataLoader(dataset, batch_size=1, num_workers=workers)
    return evaluate(
        model, loader, len(model.class_names), device, normalization=(model.mean, model.std), precision=precision
    )

"""`train(config)`: datasets, model, optimiser and schedule, the epoch loop, the run directory."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

import pixelwise
from pixelwise.checkpoint import load_checkpoint, save_checkpoint
from pixelwise.config import CLASS_WEIGHTING_POWERS, TrainConfig
from pixelwise.data.labels import IGNORE_INDEX
from pixelwise.data.loading import steps_per_epoch, train_loader, training_samples
from pixelwise.data.spec import open_dataset, prepare_data
from pixelwise.data.statistics import median_frequency_weights
from pixelwise.data.transforms import IMAGENET_MEAN, IMAGENET_STD, train_transforms
from pixelwise.engine import EpochProgress, evaluate, train_one_epoch
from pixelwise.errors import DatasetError, TrainingError
from pixelwise.metrics import SegmentationMetrics
from pixelwise.models import build_model
from pixelwise.predict import Segmenter
from pixelwise.runtime import keep_freed_memory
from pixelwise.visualize import plot_curves

Log = Callable[[str], None]
CHECKPOINT_FILES = ("last.pt", "best.pt")
RUN_FILES = (*CHECKPOINT_FILES, "metrics.csv", "curves.png")


def resolve_device(name: str) -> torch.device:
    """'auto' is CUDA when present, else CPU; anything else is passed to torch.device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise TrainingError(f"unknown device {name!r}; use auto, cpu or cuda[:N]") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TrainingError("device cuda requested but CUDA is not available; use --device cpu")
    return device


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


def build_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
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


def metrics_row(epoch: int, done: EpochProgress, lr: float, metrics: SegmentationMetrics, class_names: tuple[str, ...]) -> dict:
    """One metrics.csv row."""
    row = {"epoch": epoch, "loss": done.loss, "lr": lr}
    row.update({key: value for key, value in metrics.as_dict().items() if key != "iou"})
    row.update({f"iou_{name}": value for name, value in zip(class_names, metrics.iou)})
    row.update({"images": done.images, "skipped": len(done.skipped), "seconds": done.seconds, "images_per_second": done.images_per_second})
    return row


def write_atomically(path: Path, text: str) -> None:
    """Write text to a temporary file, then rename it over `path`."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def write_metrics_csv(history: list[dict], path: Path) -> None:
    """metrics.csv with one row per finished epoch."""
    if not history:
        return
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(history[0])
    writer.writerows([f"{value:.6g}" if isinstance(value, float) else value for value in row.values()] for row in history)
    write_atomically(path, buffer.getvalue())


def checkpoint_payload(segmenter: Segmenter, config: TrainConfig, epoch: int, history: list[dict], best: tuple[float, int]) -> dict:
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


def resume_config(run_dir: Path | str, *, epochs: int | None = None) -> TrainConfig:
    """The config a run was started with (from its last.pt), optionally with more epochs."""
    payload = load_checkpoint(Path(run_dir) / "last.pt")
    config = TrainConfig.from_dict(payload["config"])
    return replace(config, out=str(run_dir), epochs=epochs or config.epochs)


def _earlier_run(run_dir: Path) -> list[str]:
    """The checkpoints an earlier run left in `run_dir`."""
    return [name for name in CHECKPOINT_FILES if (run_dir / name).exists()]


def _refuse_earlier_run(run_dir: Path) -> None:
    """A new run may not replace an earlier run's checkpoints unless told to."""
    earlier = _earlier_run(run_dir)
    if earlier:
        raise TrainingError(
            f"{run_dir}: holds an earlier run ({' and '.join(earlier)}); continue it with --resume {run_dir}, or give another --out "
            "(in Python: train(config, resume=True), or overwrite=True to replace it)"
        )


def _prepare_run_dir(config: TrainConfig, replace_earlier: bool, log: Log) -> Path:
    """Create the run directory (emptied of an earlier run's files if `replace_earlier`) and prove it is writable."""
    run_dir = Path(config.out)
    if replace_earlier and _earlier_run(run_dir):  # so a crash before the first save leaves no mix of two runs
        log(f"replacing the earlier run in {run_dir}")
        for name in RUN_FILES:
            (run_dir / name).unlink(missing_ok=True)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_atomically(run_dir / "config.json", json.dumps(config.to_dict(), indent=2) + "\n")
    except OSError as error:
        raise TrainingError(f"{run_dir}: cannot write the run directory ({error.strerror or error})") from None
    return run_dir


@dataclass
class RunState:
    """Where a run stands: the epoch to run next (or the one interrupted), its progress, the history."""

    epoch: int = 1
    progress: EpochProgress | None = None
    history: list[dict] = field(default_factory=list)
    best: tuple[float, int] = (-1.0, 0)


def _datasets(config: TrainConfig, folder: Path, device: torch.device):
    """The training dataset and the validation loader (batch 1: whole images differ in size)."""
    train_set = open_dataset(folder, config.train_split, train_transforms(config.crop_size, scale_range=config.scale_range))
    val_set = open_dataset(folder, config.val_split)  # whole photos, normalised in the loop
    if val_set.class_names != train_set.class_names:
        raise DatasetError(f"{folder}: splits {config.train_split} and {config.val_split} have different classes")
    val_loader = DataLoader(val_set, batch_size=1, num_workers=config.workers, pin_memory=device.type == "cuda")
    return train_set, val_loader


@contextlib.contextmanager
def deterministic_algorithms(enabled: bool):
    """Ask torch for deterministic kernels while the block runs, then restore its settings."""
    previous = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(), torch.backends.cudnn.benchmark)
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True, warn_only=True)  # some CUDA kernels have no deterministic version
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
        torch.backends.cudnn.benchmark = previous[2]


def _restore(config: TrainConfig, segmenter: Segmenter, optimizer, scheduler, log: Log) -> RunState:
    """Load last.pt of the run into the model, optimiser and scheduler; where to go on from."""
    state = load_checkpoint(Path(config.out) / "last.pt")
    segmenter.network.load_state_dict(state["state_dict"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    best = (state["best"]["miou"], state["best"]["epoch"])
    finished = state["epoch"] - (1 if state.get("progress") else 0)
    if finished > config.epochs:  # refused before config.json is rewritten with the shorter count
        raise TrainingError(f"{config.out}: has finished {finished} epochs; --epochs {config.epochs} would shorten it (give more to train longer)")
    if state.get("progress"):
        progress = EpochProgress(**state["progress"])
        log(f"resuming {config.out} in epoch {state['epoch']} after step {progress.steps}")
        resumed = RunState(state["epoch"], progress, state["history"], best)
    else:
        log(f"resuming {config.out} after epoch {state['epoch']}")
        resumed = RunState(state["epoch"] + 1, None, state["history"], best)
    if finished == config.epochs:
        log(f"{config.out} has finished its {config.epochs} epochs: nothing to train (--epochs {config.epochs + 10} would add 10)")
    return resumed


def _save(payload: dict, path: Path) -> None:
    """save_checkpoint, with a disk-full or permission failure as one clear TrainingError."""
    try:
        save_checkpoint(payload, path)
    except OSError as error:
        raise TrainingError(f"{path}: cannot write checkpoint ({error.strerror or error}); the previous file is intact") from None


def train(
    config: TrainConfig, *, resume: bool = False, overwrite: bool = False, progress: bool = True, log: Log | None = None
) -> TrainResult:
    """Train per `config`, writing config.json, metrics.csv, curves.png, last.pt and best.pt to `config.out`.

    last.pt is also written every `config.save_every_steps` steps, so a killed run resumed with
    `resume=True` loses at most that many steps and ends as an uninterrupted run would. A new run
    refuses a directory where an earlier one left checkpoints, unless `overwrite=True`.
    Sets the process's allocator to keep freed memory (`runtime.keep_freed_memory`).
    """
    keep_freed_memory()
    with deterministic_algorithms(config.deterministic):
        return _train(config, resume=resume, overwrite=overwrite, progress=progress, log=log or (lambda message: None))


def _train(config: TrainConfig, *, resume: bool, overwrite: bool, progress: bool, log: Log) -> TrainResult:
    """The body of `train`."""
    if not (resume or overwrite):
        _refuse_earlier_run(Path(config.out))
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)  # the model's initial weights
    folder = prepare_data(config.data, root=config.root, download=config.download)
    train_set, val_loader = _datasets(config, folder, device)
    network = build_model(config.model, num_classes=len(train_set.class_names), backbone_weights=config.backbone_weights)
    segmenter = Segmenter(network, model_name=config.model, class_names=train_set.class_names, palette=train_set.palette, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    segmenter.to(device).to(memory_format=torch.channels_last)
    optimizer = build_optimizer(config, segmenter)
    steps = steps_per_epoch(len(train_set), config.batch_size)
    scheduler = build_scheduler(optimizer, config, steps)
    state = _restore(config, segmenter, optimizer, scheduler, log) if resume else RunState()
    skip_bad = config.on_bad_sample == "skip"
    class_weights = None
    if config.class_weighting != "none":  # before the run directory is touched: a bad label stops the run here
        power = CLASS_WEIGHTING_POWERS[config.class_weighting]
        class_weights = median_frequency_weights(train_set, power, skip_bad=skip_bad).to(device)
        log("class weights: " + ", ".join(f"{name} {weight:.2f}" for name, weight in zip(train_set.class_names, class_weights.tolist())))
    run_dir = _prepare_run_dir(config, replace_earlier=overwrite and not resume, log=log)
    samples = training_samples(train_set, config.seed, decode_on=config.decode_on, skip_bad=skip_bad)
    normalization = (segmenter.mean, segmenter.std)
    seen_skipped: set[str] = set()
    log(f"training {config.model} on {folder} ({len(train_set)} images, {len(train_set.class_names)} classes) on {device}")
    loader = train_loader(samples, batch_size=config.batch_size, workers=config.workers, pin_memory=device.type == "cuda")
    for epoch in range(state.epoch, config.epochs + 1):
        epoch_progress = state.progress or EpochProgress()
        state.progress = None
        loader.batch_sampler.set_epoch(epoch, epoch_progress.steps)
        bar = tqdm(loader, desc=f"epoch {epoch}/{config.epochs}", total=steps, initial=epoch_progress.steps, disable=not progress, leave=False, unit="batch")

        def on_step(done: EpochProgress, lr: float) -> None:
            bar.set_postfix(loss=f"{done.loss_sum / done.steps:.3f}", lr=f"{lr:.2e}", img_s=f"{done.images_per_second:.1f}")
            if config.save_every_steps and done.steps % config.save_every_steps == 0 and done.steps < steps:
                mid_epoch = checkpoint_payload(segmenter, config, epoch, state.history, state.best)
                _save({**mid_epoch, "progress": asdict(done), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, run_dir / "last.pt")

        try:
            train_one_epoch(segmenter, bar, optimizer, scheduler, device, normalization=normalization, class_weights=class_weights, precision=config.precision, progress=epoch_progress, on_step=on_step)
        except TrainingError as error:
            saved = run_dir / "last.pt"
            where = f"the last good checkpoint is {saved}" if saved.is_file() else "no checkpoint was written before it"
            raise TrainingError(f"epoch {epoch}: {error}; {where}") from None
        finally:
            bar.close()
        for message in epoch_progress.skipped:
            if message not in seen_skipped:
                seen_skipped.add(message)
                log(f"skipped: {message}")
        metrics = evaluate(segmenter, val_loader, len(train_set.class_names), device, normalization=normalization)
        row = metrics_row(epoch, epoch_progress, optimizer.param_groups[0]["lr"], metrics, train_set.class_names)
        state.history.append(row)
        if metrics.miou > state.best[0]:
            state.best = (metrics.miou, epoch)
        payload = checkpoint_payload(segmenter, config, epoch, state.history, state.best)
        _save({**payload, "progress": None, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, run_dir / "last.pt")
        if state.best[1] == epoch:
            _save(payload, run_dir / "best.pt")
        write_metrics_csv(state.history, run_dir / "metrics.csv")
        plot_curves(state.history, run_dir / "curves.png")
        skipped = f"  skipped {len(epoch_progress.skipped)} bad sample(s), trained on {epoch_progress.images}" if epoch_progress.skipped else ""
        log(
            f"epoch {epoch}/{config.epochs}  loss {epoch_progress.loss:.4f}  val mIoU {metrics.miou:.4f}  "
            f"pixel acc {metrics.pixel_accuracy:.4f}  {epoch_progress.images_per_second:.1f} img/s  {epoch_progress.seconds:.0f} s{skipped}"
        )
    return TrainResult(run_dir, state.best[0], state.best[1], state.history)


def evaluate_split(
    model: Segmenter, data: str | Path, split: str = "val", *, root: str | None = None, workers: int = 0, precision: str = "fp32"
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
    return evaluate(model, loader, len(model.class_names), device, normalization=(model.mean, model.std), precision=precision)

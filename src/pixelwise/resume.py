"""Continuing a run from its last.pt: the settings a resume may change, and the state it restores."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import torch
from torch.optim.swa_utils import AveragedModel

from pixelwise.averaging import restore_weights
from pixelwise.checkpoint import load_checkpoint
from pixelwise.config import BOUNDS, TrainConfig
from pixelwise.engine import EpochProgress
from pixelwise.errors import CheckpointError, PixelwiseError, TrainingError
from pixelwise.models import resolve_encoder
from pixelwise.segmenter import Segmenter

Log = Callable[[str], None]
"""Where library code sends its progress lines (the CLI passes print)."""
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
    "world_size",
    "sync_bn",
)
"""Settings a resume may give anew: where things are, how fast and how long it runs, the learning rate (logged).

The world size is not given but found: a run resumes in as many processes as torchrun starts.
"""


@dataclass
class RunState:
    """Where a run stands: the epoch to run next (or the one interrupted), its progress, the history."""

    epoch: int = 1
    progress: EpochProgress | None = None
    history: list[dict] = field(default_factory=list)
    best: tuple[float, int] = (-1.0, 0)


def resume_config(run_dir: Path | str, **changes) -> TrainConfig:
    """The config a run saved in its last.pt, with `changes` (`train` refuses those outside RESUME_MAY_CHANGE)."""
    if Path(run_dir).is_file():
        raise CheckpointError(f"{run_dir}: a file; --resume takes the run's folder (the one holding last.pt)")
    if not Path(run_dir).is_dir():
        raise CheckpointError(f"{run_dir}: no such run directory to resume")
    path = Path(run_dir) / "last.pt"
    config = _saved_config(path, load_checkpoint(path, for_resume=True))
    return replace(config, out=str(run_dir), **{name: value for name, value in changes.items() if value is not None})


def _saved_config(path: Path, payload: dict) -> TrainConfig:
    """The TrainConfig stored in a checkpoint's payload."""
    try:
        config = TrainConfig.from_dict(payload["config"])
        return replace(config, encoder=resolve_encoder(config.model, config.encoder))
    except PixelwiseError as error:
        raise CheckpointError(f"{path}: damaged checkpoint: field 'config': {error}") from None


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


def restore(
    config: TrainConfig,
    state: dict,
    segmenter: Segmenter,
    optimizer,
    scheduler,
    steps: int,
    log: Log,
    average: AveragedModel | None = None,
) -> RunState:
    """Load the run's last.pt, read as `state` (epochs of `steps` steps), into model, optimiser and scheduler.

    A run with `ema_decay` also has its weights' `average` restored.

    Returns where to go on from.
    """
    path = Path(config.out) / "last.pt"
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
    restore_weights(path, state, segmenter, average, config.model)
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
            f"{config.out}: has finished {finished} epochs; {config.epochs} would shorten it (ask for more to train "
            "longer)"
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
            f"{config.out} has finished its {config.epochs} epochs: nothing to train ({config.epochs + 10} epochs "
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

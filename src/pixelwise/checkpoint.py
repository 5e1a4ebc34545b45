"""A trained model as one self-describing file, written atomically, loaded without pickle code, schema checked."""

from __future__ import annotations

import dataclasses
import io
import math
from collections.abc import Callable
from pathlib import Path

import torch

from pixelwise.config import SAVED_KEYS
from pixelwise.data.labels import IGNORE_INDEX
from pixelwise.engine import EpochProgress
from pixelwise.errors import CheckpointError
from pixelwise.files import replace_file
from pixelwise.models import LEGACY_ENCODER, MODELS, build_from_record
from pixelwise.numbers import is_finite_number
from pixelwise.segmenter import Segmenter
from pixelwise.torchfile import load_weights_only

FORMAT = "pixelwise-checkpoint"
FORMAT_VERSION = 3  # 2: the model record names an encoder, and models beyond the FCNs on ResNet-18 exist;
# 3: a last.pt whose model is the weights' average, the weights trained kept beside it (TRAINED_WEIGHTS)
REQUIRED_KEYS = (
    "format",
    "format_version",
    "model",
    "state_dict",
    "class_names",
    "palette",
    "ignore_index",
    "normalization",
)
RESUME_KEYS = ("config", "epoch", "history", "best", "optimizer", "scheduler")
# A run with ema_decay saves the weights' average as its model; these keep what it trains, for a resume.
TRAINED_WEIGHTS = "trained_state_dict"


def serialize(payload: dict) -> bytes:
    """`torch.save` of `payload` into memory; the zip writer's RuntimeError gives way to the failure it hides."""
    buffer = io.BytesIO()
    try:
        torch.save(payload, buffer)
    except RuntimeError as error:  # torch wraps an exception raised while it writes (Ctrl-C) in "unexpected pos"
        if isinstance(error.__context__, (OSError, KeyboardInterrupt)):
            raise error.__context__ from None
        raise
    return buffer.getvalue()


def save_checkpoint(payload: dict, path: Path | str) -> None:
    """Write `payload` atomically and durably (`files.replace_file`): a crash leaves the previous file intact."""
    replace_file(path, serialize({"format": FORMAT, "format_version": _version_needed(payload), **payload}))


def _version_needed(payload: dict) -> int:
    """The oldest format that reads `payload` right, so that older releases refuse the rest as newer.

    1 for an FCN on ResNet-18 (the first release); 3 for a last.pt that keeps its trained weights
    beside their average (a release before 3 would resume training the average); 2 otherwise.
    """
    if TRAINED_WEIGHTS in payload:
        return 3
    model = payload.get("model") if isinstance(payload.get("model"), dict) else {}
    first_release = model.get("name") in ("fcn32s", "fcn8s") and model.get("encoder", LEGACY_ENCODER) == LEGACY_ENCODER
    return 1 if first_release else 2


def load_checkpoint(path: Path | str, *, for_resume: bool = False) -> dict:
    """Read a checkpoint with `weights_only=True`; refuse a malformed one in a line naming the field.

    `for_resume` also requires the training state (optimiser, schedule, history) that `--resume` needs.
    """
    payload = load_weights_only(Path(path), "checkpoint", CheckpointError)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a pixelwise checkpoint")
    required = REQUIRED_KEYS + (RESUME_KEYS if for_resume else ())
    missing = [key for key in required if key not in payload]
    if missing:
        more = (
            " (a checkpoint to predict with, not a run's last.pt)"
            if for_resume and len(missing) < len(required)
            else ""
        )
        raise CheckpointError(f"{path}: checkpoint lacks {', '.join(missing)}{more}")
    version = payload["format_version"]
    if _is_whole(version) and version > FORMAT_VERSION:
        raise CheckpointError(f"{path}: written by a newer pixelwise (format {version}); upgrade")
    checks = {**MODEL_FIELDS, **(RESUME_FIELDS if for_resume else {})}
    for name, (expected, holds) in checks.items():
        if not holds(payload):
            value = payload.get(name)
            shown = repr(value) if isinstance(value, (int, float, str, type(None))) else type(value).__name__
            raise CheckpointError(f"{path}: damaged checkpoint: field {name!r} should be {expected}, got {shown[:60]}")
    return payload


def load_weights(path: Path | str, network: torch.nn.Module, state_dict: dict, model_name: str) -> None:
    """Load weights into `network`, naming a missing, extra, mis-shaped or mis-typed tensor (torch would cast)."""
    expected = network.state_dict()
    missing, extra = [key for key in expected if key not in state_dict], [
        key for key in state_dict if key not in expected
    ]
    if missing or extra:
        raise CheckpointError(
            f"{path}: weights do not fit {model_name} (missing {missing[:3]}, unexpected {extra[:3]})"
        )
    for key, tensor in expected.items():
        given = state_dict[key]
        if (given.shape, given.dtype) != (tensor.shape, tensor.dtype):
            raise CheckpointError(
                f"{path}: weights do not fit {model_name} ({key} is {given.dtype} {tuple(given.shape)}, the model's "
                f"{tensor.dtype} {tuple(tensor.shape)})"
            )
    network.load_state_dict(state_dict)


def model_fields(segmenter: Segmenter) -> dict:
    """What a checkpoint holds to rebuild `segmenter` alone: its model record, weights, classes and normalisation."""
    return {
        "model": dict(segmenter.model_record),
        "state_dict": segmenter.network.state_dict(),
        "class_names": list(segmenter.class_names),
        "palette": [list(color) for color in segmenter.palette],
        "ignore_index": IGNORE_INDEX,
        "normalization": {"mean": list(segmenter.mean), "std": list(segmenter.std)},
    }


def segmenter_from(payload: dict, path: Path | str) -> Segmenter:
    """The Segmenter a checked payload (from `load_checkpoint(path)`) describes, its weights loaded."""
    record = payload["model"]
    network = build_from_record(record)
    load_weights(path, network, payload["state_dict"], record["name"])
    normalization = payload["normalization"]
    return Segmenter(
        network,
        model_name=record["name"],
        encoder=record.get("encoder"),
        class_names=tuple(payload["class_names"]),
        palette=tuple(tuple(color) for color in payload["palette"]),
        mean=tuple(normalization["mean"]),
        std=tuple(normalization["std"]),
    )


def load_segmenter(path: Path | str) -> Segmenter:
    """A Segmenter on the CPU from a checkpoint file, schema checked; nothing else is needed to rebuild it."""
    return segmenter_from(load_checkpoint(path), path)


def _is_whole(value) -> bool:
    """An int that is not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def _is_list(value, length: int | None = None) -> bool:
    """A list or tuple, of `length` items if given."""
    return isinstance(value, (list, tuple)) and (length is None or len(value) == length)


def _is_color(value) -> bool:
    """Three whole numbers in 0..255."""
    return _is_list(value, 3) and all(_is_whole(c) and 0 <= c <= 255 for c in value)


def _class_names_ok(payload: dict) -> bool:
    """1..255 distinct non-empty names (masks are uint8 and 255 is the ignore value)."""
    names = payload["class_names"]
    return (
        _is_list(names) and 0 < len(names) < IGNORE_INDEX
        and all(isinstance(n, str) and n for n in names) and len(set(names)) == len(names)
    )  # fmt: skip


def _model_ok(payload: dict) -> bool:
    """{'name': a registered model, 'num_classes': the number of class names, 'encoder': one the model takes}.

    Checkpoints written before models had encoders hold no 'encoder': theirs was the default, ResNet-18.
    """
    model = payload["model"]
    return (
        isinstance(model, dict) and isinstance(model.get("name"), str) and model["name"] in MODELS
        and set(model) <= {"name", "num_classes", "encoder"}
        and _is_whole(model.get("num_classes")) and model["num_classes"] == len(payload["class_names"])
        and model.get("encoder", LEGACY_ENCODER) in MODELS[model["name"]].encoders
    )  # fmt: skip


def _normalization_ok(payload: dict) -> bool:
    """{'mean': three numbers, 'std': three positive numbers}."""
    norm = payload["normalization"]
    if not isinstance(norm, dict) or not all(_is_list(norm.get(key), 3) for key in ("mean", "std")):
        return False
    return all(is_finite_number(v) and abs(v) <= 1e3 for v in norm["mean"]) and all(
        is_finite_number(v) and 1e-6 <= v <= 1e3 for v in norm["std"]
    )


def _weights_ok(state: object) -> bool:
    """Named dense tensors of real numbers, all finite."""
    return isinstance(state, dict) and all(
        isinstance(key, str) and isinstance(value, torch.Tensor) and value.layout == torch.strided
        and not value.is_complex() and (not value.is_floating_point() or bool(torch.isfinite(value).all()))
        for key, value in state.items()
    )  # fmt: skip


def _progress_ok(progress) -> bool:
    """An interrupted epoch's totals, as EpochProgress holds them."""
    names = {field.name for field in dataclasses.fields(EpochProgress)}
    return (
        isinstance(progress, dict) and set(progress) == names
        and all(_is_whole(progress[key]) and progress[key] >= 0 for key in ("steps", "images"))
        and all(is_finite_number(progress[key]) and progress[key] >= 0 for key in ("loss_sum", "seconds"))
        and _is_list(progress["skipped"]) and all(isinstance(message, str) for message in progress["skipped"])
    )  # fmt: skip


HISTORY_REQUIRED = ("epoch", "loss", "lr", "miou", "pixel_accuracy")
HISTORY_OPTIONAL = ("mean_class_accuracy", "fwiou", "images", "skipped", "val_skipped", "seconds", "images_per_second")
MAY_BE_UNDEFINED = ("miou", "pixel_accuracy", "mean_class_accuracy", "fwiou")  # NaN when a split had no labelled pixel


def _history_row_ok(row, number: int) -> bool:
    """A metrics row of epoch `number`: pixelwise's columns, numbers, NaN only where a metric may be undefined."""
    if not (isinstance(row, dict) and row.get("epoch") == number and set(HISTORY_REQUIRED) <= set(row)):
        return False
    for key, value in row.items():
        if not (key in HISTORY_REQUIRED + HISTORY_OPTIONAL or key.startswith("iou_")):
            return False
        if not isinstance(value, (int, float)) or isinstance(value, bool) or math.isinf(value):
            return False
        if math.isnan(value) and not (key in MAY_BE_UNDEFINED or key.startswith("iou_")):
            return False
    return True


def _history_ok(payload: dict) -> bool:
    """One row per finished epoch (all epochs before an interrupted one), numbered 1, 2, ..."""
    history = payload["history"]
    finished = payload["epoch"] - (1 if payload.get("progress") else 0)
    return (
        _is_list(history)
        and len(history) == finished
        and all(_history_row_ok(row, number) for number, row in enumerate(history, start=1))
    )


def _best_ok(payload: dict) -> bool:
    """The best validation mIoU so far and its epoch, as the history has it (-1 at epoch 0 before any)."""
    best = payload["best"]
    if not (isinstance(best, dict) and is_finite_number(best.get("miou")) and _is_whole(best.get("epoch"))):
        return False
    if best["epoch"] == 0:
        return best["miou"] == -1
    return (
        1 <= best["epoch"] <= len(payload["history"]) and payload["history"][best["epoch"] - 1]["miou"] == best["miou"]
    )


def _scheduler_ok(payload: dict) -> bool:
    """A LambdaLR state: the step reached and one base rate per parameter group."""
    state = payload["scheduler"]
    return (
        isinstance(state, dict) and _is_whole(state.get("last_epoch")) and state["last_epoch"] >= 0
        and _is_list(state.get("base_lrs")) and all(is_finite_number(lr) and lr > 0 for lr in state["base_lrs"])
    )  # fmt: skip


def _optimizer_ok(payload: dict) -> bool:
    """An optimiser state: parameter groups with number settings, per-parameter tensors."""
    state = payload["optimizer"]
    if not (isinstance(state, dict) and isinstance(state.get("state"), dict) and _is_list(state.get("param_groups"))):
        return False
    numbers = ("lr", "momentum", "weight_decay", "initial_lr")
    groups_ok = all(
        isinstance(group, dict) and all(is_finite_number(group[key]) for key in numbers if key in group)
        for group in state["param_groups"]
    )
    tensors_ok = all(
        isinstance(values, dict)
        and all(isinstance(value, torch.Tensor) and bool(torch.isfinite(value).all()) for value in values.values())
        for values in state["state"].values()
    )  # fmt: skip
    return groups_ok and tensors_ok


Check = tuple[str, Callable[[dict], bool]]

# Checked in order: later checks may assume what earlier ones established.
MODEL_FIELDS: dict[str, Check] = {
    "format_version": (
        f"a whole number 1..{FORMAT_VERSION}",
        lambda p: _is_whole(p["format_version"]) and p["format_version"] >= 1,
    ),
    "class_names": ("a list of 1 to 254 distinct class names", _class_names_ok),
    "model": (
        f"{{'name': one of {', '.join(MODELS)}, 'num_classes': the number of classes, 'encoder': one the model takes}}",
        _model_ok,
    ),
    "palette": (
        "one [r, g, b] colour (0..255) per class",
        lambda p: _is_list(p["palette"], len(p["class_names"])) and all(map(_is_color, p["palette"])),
    ),
    "ignore_index": (str(IGNORE_INDEX), lambda p: _is_whole(p["ignore_index"]) and p["ignore_index"] == IGNORE_INDEX),
    "normalization": ("{'mean': 3 numbers, 'std': 3 positive numbers} of pixel values in 0..1", _normalization_ok),
    "state_dict": ("a dict of named, finite, real tensors", lambda p: _weights_ok(p["state_dict"])),
}  # fmt: skip
RESUME_FIELDS: dict[str, Check] = {
    "config": (
        f"a dict of training settings with {', '.join(sorted(SAVED_KEYS))}",
        lambda p: isinstance(p["config"], dict) and SAVED_KEYS <= set(p["config"]),
    ),
    "epoch": ("a whole number from 1", lambda p: _is_whole(p["epoch"]) and p["epoch"] >= 1),
    "history": ("one dict of numbers per finished epoch, numbered from 1", _history_ok),
    "best": ("{'miou', 'epoch'} of the history's best epoch", _best_ok),
    "optimizer": ("an optimiser state dict of finite numbers and tensors", _optimizer_ok),
    "scheduler": ("a scheduler state dict (last_epoch, base_lrs)", _scheduler_ok),
    "progress": (
        "null or the interrupted epoch's totals",
        lambda p: p.get("progress") is None or _progress_ok(p["progress"]),
    ),
    TRAINED_WEIGHTS: (
        "absent, or a dict of named, finite, real tensors",
        lambda p: TRAINED_WEIGHTS not in p or _weights_ok(p[TRAINED_WEIGHTS]),
    ),
}  # fmt: skip

"""A trained model as one self-describing file, written atomically, loaded without pickle code, schema checked."""

from __future__ import annotations

import dataclasses
import io
import math
import os
import secrets
from collections.abc import Callable
from pathlib import Path

import torch

from pixelwise.data.labels import IGNORE_INDEX
from pixelwise.engine import EpochProgress
from pixelwise.errors import CheckpointError
from pixelwise.models import MODELS
from pixelwise.torchfile import load_weights_only

FORMAT = "pixelwise-checkpoint"
FORMAT_VERSION = 1
REQUIRED_KEYS = ("format", "format_version", "model", "state_dict", "class_names", "palette", "ignore_index", "normalization")
RESUME_KEYS = ("config", "epoch", "history", "best", "optimizer", "scheduler")


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


def _write_new_file(path: Path, data: bytes) -> None:
    """Create `path` (mode 0666 less the umask, as other run files) and write `data` to disk, fsynced."""
    handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(handle, view) :]  # a full disk raises OSError(ENOSPC) here, not inside torch
        os.fsync(handle)
    finally:
        os.close(handle)


def save_checkpoint(payload: dict, path: Path | str) -> None:
    """Write `payload` to a temporary file beside `path`, fsync it, then rename over `path`."""
    path = Path(path)
    data = serialize({"format": FORMAT, "format_version": FORMAT_VERSION, **payload})
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        _write_new_file(temporary, data)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # make the rename itself durable
    finally:
        os.close(directory)


def load_checkpoint(path: Path | str, *, for_resume: bool = False) -> dict:
    """Read a checkpoint with `weights_only=True`; refuse, naming the field, any file that is not a well-formed pixelwise checkpoint.

    `for_resume` also requires the training state (optimiser, schedule, history) that `--resume` needs.
    """
    payload = load_weights_only(Path(path), "checkpoint", CheckpointError)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a pixelwise checkpoint")
    required = REQUIRED_KEYS + (RESUME_KEYS if for_resume else ())
    missing = [key for key in required if key not in payload]
    if missing:
        more = " (a checkpoint to predict with, not a run's last.pt)" if for_resume and len(missing) < len(required) else ""
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


def _is_whole(value) -> bool:
    """An int that is not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def _is_finite(value) -> bool:
    """A finite int or float that is not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_list(value, length: int | None = None) -> bool:
    """A list or tuple, of `length` items if given."""
    return isinstance(value, (list, tuple)) and (length is None or len(value) == length)


def _is_color(value) -> bool:
    """Three whole numbers in 0..255."""
    return _is_list(value, 3) and all(_is_whole(c) and 0 <= c <= 255 for c in value)


def _class_names_ok(payload: dict) -> bool:
    """Distinct non-empty names."""
    names = payload["class_names"]
    return _is_list(names) and len(names) > 0 and all(isinstance(n, str) and n for n in names) and len(set(names)) == len(names)


def _model_ok(payload: dict) -> bool:
    """{'name': a registered model, 'num_classes': the number of class names}."""
    model = payload["model"]
    return (
        isinstance(model, dict) and model.get("name") in MODELS
        and _is_whole(model.get("num_classes")) and model["num_classes"] == len(payload["class_names"])
    )  # fmt: skip


def _normalization_ok(payload: dict) -> bool:
    """{'mean': three numbers, 'std': three positive numbers}."""
    norm = payload["normalization"]
    if not isinstance(norm, dict) or not all(_is_list(norm.get(key), 3) for key in ("mean", "std")):
        return False
    return all(_is_finite(v) for v in norm["mean"]) and all(_is_finite(v) and v > 0 for v in norm["std"])


def _progress_ok(progress) -> bool:
    """An interrupted epoch's totals, as EpochProgress holds them."""
    names = {field.name for field in dataclasses.fields(EpochProgress)}
    return isinstance(progress, dict) and set(progress) == names and _is_whole(progress["steps"]) and _is_list(progress["skipped"])


Check = tuple[str, Callable[[dict], bool]]

# Checked in order: later checks may assume what earlier ones established.
MODEL_FIELDS: dict[str, Check] = {
    "format_version": (f"a whole number 1..{FORMAT_VERSION}", lambda p: _is_whole(p["format_version"]) and p["format_version"] >= 1),
    "class_names": ("a list of distinct class names", _class_names_ok),
    "model": (f"{{'name': one of {', '.join(MODELS)}, 'num_classes': the number of classes}}", _model_ok),
    "palette": ("one [r, g, b] colour (0..255) per class", lambda p: _is_list(p["palette"], len(p["class_names"])) and all(map(_is_color, p["palette"]))),
    "ignore_index": (str(IGNORE_INDEX), lambda p: _is_whole(p["ignore_index"]) and p["ignore_index"] == IGNORE_INDEX),
    "normalization": ("{'mean': 3 numbers, 'std': 3 positive numbers}", _normalization_ok),
    "state_dict": ("a dict of named tensors", lambda p: isinstance(p["state_dict"], dict) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in p["state_dict"].items())),
}  # fmt: skip
RESUME_FIELDS: dict[str, Check] = {
    "config": ("a dict of training settings", lambda p: isinstance(p["config"], dict)),
    "epoch": ("a whole number from 1", lambda p: _is_whole(p["epoch"]) and p["epoch"] >= 1),
    "history": ("a list of per-epoch dicts", lambda p: _is_list(p["history"]) and all(isinstance(row, dict) for row in p["history"])),
    "best": ("{'miou': a number, 'epoch': a whole number}", lambda p: isinstance(p["best"], dict) and _is_finite(p["best"].get("miou")) and _is_whole(p["best"].get("epoch"))),
    "optimizer": ("an optimiser state dict", lambda p: isinstance(p["optimizer"], dict) and {"state", "param_groups"} <= set(p["optimizer"])),
    "scheduler": ("a scheduler state dict", lambda p: isinstance(p["scheduler"], dict)),
    "progress": ("null or the interrupted epoch's totals", lambda p: p.get("progress") is None or _progress_ok(p["progress"])),
}  # fmt: skip

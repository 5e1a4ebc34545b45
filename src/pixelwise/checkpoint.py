"""A trained model as one self-describing file, written atomically, loaded without pickle code."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

from pixelwise.errors import CheckpointError
from pixelwise.torchfile import load_weights_only

FORMAT = "pixelwise-checkpoint"
FORMAT_VERSION = 1
REQUIRED_KEYS = ("format", "format_version", "model", "state_dict", "class_names", "palette", "ignore_index", "normalization")


def save_checkpoint(payload: dict, path: Path | str) -> None:
    """Write `payload` to a temporary file beside `path`, fsync it, then rename over `path`."""
    path = Path(path)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            torch.save({"format": FORMAT, "format_version": FORMAT_VERSION, **payload}, stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # make the rename itself durable
    finally:
        os.close(directory)


def load_checkpoint(path: Path | str) -> dict:
    """Read a checkpoint with `weights_only=True`; refuse files that are not complete pixelwise checkpoints."""
    payload = load_weights_only(Path(path), "checkpoint", CheckpointError)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a pixelwise checkpoint")
    missing = [key for key in REQUIRED_KEYS if key not in payload]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {', '.join(missing)}")
    if payload["format_version"] > FORMAT_VERSION:
        raise CheckpointError(f"{path}: written by a newer pixelwise (format {payload['format_version']}); upgrade")
    return payload

"""The run directory: which folders a run may write, and its text files written atomically."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path

from pixelwise.config import RENAMED, SAVED_KEYS, TrainConfig
from pixelwise.errors import EarlierRunError, PixelwiseError, TrainingError
from pixelwise.files import replace_file
from pixelwise.jsontext import strict_json

CHECKPOINT_FILES = ("last.pt", "best.pt")
RUN_FILES = (*CHECKPOINT_FILES, "metrics.csv", "curves.png")
CONFIG_FILE = "config.json"
METRICS_HEADER = "epoch,loss,lr,"


def write_atomically(path: Path, text: str) -> None:
    """Replace `path` with `text` (UTF-8) atomically and durably."""
    replace_file(path, text.encode("utf-8"))


def write_metrics_csv(history: list[dict], path: Path) -> None:
    """metrics.csv with one row per finished epoch; columns added by a later version are blank in earlier rows."""
    if not history:
        return
    columns = list(dict.fromkeys(key for row in history for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(
        {key: f"{value:.6g}" if isinstance(value, float) else value for key, value in row.items()} for row in history
    )
    write_atomically(path, buffer.getvalue())


def _is_run_config(path: Path) -> bool:
    """Whether `path` is a config.json that pixelwise train wrote: the settings it writes, with values a run can use."""
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
        known = {field.name for field in fields(TrainConfig)}
        return (
            isinstance(values, dict)
            and {RENAMED.get(key, key) for key in values} <= known  # names of earlier releases count
            and SAVED_KEYS <= set(values)
            and bool(TrainConfig.from_dict(values))
        )
    except (OSError, UnicodeDecodeError, ValueError, TypeError, PixelwiseError):
        return False


def _is_run_metrics(path: Path) -> bool:
    """Whether `path`, if present, is a metrics.csv that pixelwise train wrote."""
    try:
        return not path.exists() or path.read_text(encoding="utf-8").startswith(METRICS_HEADER)
    except (OSError, UnicodeDecodeError):
        return False


def refuse_foreign_folder(run_dir: Path) -> None:
    """A new run writes only into a new or empty folder, or a pixelwise run's: never over a user's own files."""
    if run_dir.exists() and not run_dir.is_dir():
        raise TrainingError(f"{run_dir}: is a file, not a folder for the run")
    if not run_dir.is_dir():
        return
    entries = sorted(path.name for path in run_dir.iterdir())
    foreign = [
        name
        for name in entries
        if name not in (*RUN_FILES, CONFIG_FILE) and not (name.startswith(".") and name.endswith(".tmp"))
    ]
    if entries and (
        foreign or not _is_run_config(run_dir / CONFIG_FILE) or not _is_run_metrics(run_dir / "metrics.csv")
    ):
        shown = ", ".join((foreign or entries)[:3]) + (" ..." if len(foreign or entries) > 3 else "")
        raise TrainingError(
            f"{run_dir}: holds files that are not a pixelwise run ({shown}); give a new or empty folder for the run"
        )


def earlier_checkpoints(run_dir: Path) -> list[str]:
    """The checkpoints an earlier run left in `run_dir`."""
    return [name for name in CHECKPOINT_FILES if (run_dir / name).exists()]


def refuse_earlier_run(run_dir: Path) -> None:
    """A new run may not replace an earlier run's checkpoints unless told to."""
    earlier = earlier_checkpoints(run_dir)
    if earlier:
        resumable = "last.pt" in earlier
        resume = "resume it (train(config, resume=True)), " if resumable else ""
        raise EarlierRunError(
            f"{run_dir}: holds an earlier run ({' and '.join(earlier)}); {resume}train into another folder, or "
            "replace it (overwrite=True)",
            run_dir,
            resumable,
        )


def prepare_run_dir(config: TrainConfig, replace_earlier: bool, log: Callable[[str], None]) -> Path:
    """Create the run directory (emptied of an earlier run if `replace_earlier`) and write config.json into it."""
    run_dir = Path(config.out)
    if replace_earlier and earlier_checkpoints(run_dir):  # so a crash before the first save leaves no mix of two runs
        log(f"replacing the earlier run in {run_dir}")
        for name in RUN_FILES:
            (run_dir / name).unlink(missing_ok=True)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_atomically(run_dir / CONFIG_FILE, strict_json(config.to_dict()) + "\n")
    except OSError as error:
        raise TrainingError(f"{run_dir}: cannot write the run directory ({error.strerror or error})") from None
    return run_dir

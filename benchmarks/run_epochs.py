"""Training runs' epochs, read back from the metrics.csv that `pixelwise train` writes in each run folder.

For each run folder: val mIoU as the mean of its last five epochs, the range of mIoU, poles
and signs over them, its best epoch, and its minutes of training (the epochs' seconds, without
validation). Given several runs (one recipe's seeds), it then prints the mean over them of
each run's last epoch and of its training minutes. It reads files only: nothing is trained or
evaluated, so its scores are those of validation during training.
"""

from __future__ import annotations

import argparse
import csv
import statistics
from pathlib import Path

from common import THIN_CLASSES, result_line, run_script
from pixelwise.errors import PixelwiseError, one_line

LAST_EPOCHS = 5
SCORES = {"mIoU": "miou", **{name: f"iou_{name}" for name in THIN_CLASSES}}  # label: metrics.csv column


def read_epochs(metrics_csv: Path) -> list[dict[str, float]]:
    """The epochs of a run's metrics.csv as numbers (a blank cell left out); an error naming the file if unusable."""
    if not metrics_csv.is_file():
        raise PixelwiseError(f"{metrics_csv}: not found; give folders that `pixelwise train --out` wrote")
    try:
        with metrics_csv.open(newline="") as file:
            reader = csv.DictReader(file)
            rows = [{key: float(value) for key, value in row.items() if key and value} for row in reader]
    except OSError as error:
        raise PixelwiseError(f"{metrics_csv}: {error.strerror}") from None
    except (ValueError, csv.Error) as error:  # UnicodeDecodeError is a ValueError
        line = f"line {reader.line_num}: " if reader.line_num else ""
        raise PixelwiseError(f"{metrics_csv}: {line}{one_line(error)}") from None
    if not rows or any(not {"epoch", "seconds", *SCORES.values()} <= row.keys() for row in rows):
        raise PixelwiseError(f"{metrics_csv}: not a metrics.csv of finished epochs with their mIoU and seconds")
    return rows


def training_minutes(rows: list[dict[str, float]]) -> float:
    """The run's minutes of training steps: its epochs' seconds, without validation."""
    return sum(row["seconds"] for row in rows) / 60


def epoch_summary(key: str, metrics_csv: Path) -> str:
    """`summary` of the run whose metrics.csv this is; a line saying why where the file is unusable."""
    try:
        return summary(key, read_epochs(metrics_csv))
    except PixelwiseError as error:
        return f"{key}: {error}"


def summary(key: str, rows: list[dict[str, float]]) -> str:
    """A run's val mIoU over its last epochs, its best epoch, the ranges of mIoU, poles and signs over
    the last epochs and its training minutes."""
    last = rows[-LAST_EPOCHS:]
    best = max(rows, key=lambda row: row["miou"])
    spans = ", ".join(
        f"{label} {min(row[column] for row in last):.3f} to {max(row[column] for row in last):.3f}"
        for label, column in SCORES.items()
    )
    return (
        f"{key}: val mIoU {statistics.mean(row['miou'] for row in last):.3f} as the mean of its last "
        f"{len(last)} epochs ({spans}), best {best['miou']:.3f} at epoch {best['epoch']:.0f} of {len(rows)}; "
        f"{training_minutes(rows):.1f} minutes of training (the epochs' seconds, without validation)"
    )


def runs_mean(runs: dict[str, list[dict[str, float]]]) -> dict[str, float]:
    """The runs' last epochs' scores and their training minutes, each averaged over the runs."""
    means = {column: statistics.mean(rows[-1][column] for rows in runs.values()) for column in SCORES.values()}
    return {**means, "training_minutes": statistics.mean(training_minutes(rows) for rows in runs.values())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="run folders, each holding the metrics.csv training wrote")
    args = parser.parse_args()
    folders = [run.resolve() for run in args.runs]
    if len(set(folders)) < len(folders):
        raise PixelwiseError("a run folder is given twice; give each run once, so that it counts once in the mean")
    runs = {str(run): read_epochs(run / "metrics.csv") for run in args.runs}  # all read before any is printed
    for run, rows in runs.items():
        print(summary(run, rows))
    if len(runs) > 1:
        mean = runs_mean(runs)
        scores = ", ".join(f"{label} {mean[column]:.3f}" for label, column in SCORES.items())
        print(f"mean of {len(runs)} runs' last epochs: {scores}; {mean['training_minutes']:.1f} minutes of training")
        print(result_line(**mean))


if __name__ == "__main__":
    run_script(main)

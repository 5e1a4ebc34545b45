"""Why a class scores low: where its pixels go, for checkpoints trained on CamVid, on CamVid val.

For each checkpoint and class: recall, precision and IoU (hits / (hits + misses + false)), the
classes its missed pixels are predicted as (shares of the misses), and how many misses lie
within `--near` pixels of a prediction of the class (an edge off by a few pixels) rather than
away from any (an object, or a stretch of one, missed); likewise how many false predictions lie
near a true pixel of the class; and recall by the width of the class's horizontal runs in the
labels (a pole's width), which says whether thin stretches are missed more than wide ones.
With `--shifts`, also the class's IoU when its logit is raised by each shift before the argmax:
what a change of the class's prior or loss weight could at best do with the model's scores.
Whole val photos, void ignored, the plain inference mode.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader

from common import find_camvid, result_line, run_script
from pixelwise.cli_arguments import positive_int, real_number
from pixelwise.config import PRECISIONS
from pixelwise.data.labels import IGNORE_INDEX
from pixelwise.data.transforms import normalize_batch
from pixelwise.engine import autocast
from pixelwise.errors import PixelwiseError
from pixelwise.metrics import ConfusionMatrix
from pixelwise.predict import load_model
from pixelwise.runtime import keep_freed_memory
from pixelwise.training import open_dataset, prepare_data

SHOWN_SHARE = 0.03  # confusions below this share of a class's misses are left out of the table
WIDTHS = (1, 3, 5, 9)  # lower ends of the run-width bands, in pixels of the val photos


def run_widths(mask: torch.Tensor) -> torch.Tensor:
    """For each True pixel of `mask` (H, W), the length of the horizontal run of True it lies in; 0 elsewhere."""
    padded = F.pad(mask, (0, 1)).flatten()  # a False after each row, so no run crosses rows
    starts = padded & ~F.pad(padded, (1, 0))[:-1]
    run = torch.cumsum(starts, 0) * padded
    lengths = torch.bincount(run)
    lengths[0] = 0
    return lengths[run].view(mask.shape[0], -1)[:, :-1].contiguous()


def near(mask: torch.Tensor, pixels: int) -> torch.Tensor:
    """Pixels within `pixels` (a square of side 2 * pixels + 1) of a True pixel of `mask` (H, W)."""
    grown = F.max_pool2d(mask[None, None].float(), 2 * pixels + 1, stride=1, padding=pixels)
    return grown[0, 0].bool()


class ClassErrors:
    """Counts, over a split, of one class's misses and false predictions near the class, and its hits by run width."""

    def __init__(self, index: int, pixels: int):
        self.index, self.pixels = index, pixels
        self.misses_near = self.false_near = 0
        self.by_width = torch.zeros(len(WIDTHS), 2, dtype=torch.long)  # per band: true pixels, hits

    def update(self, predicted: torch.Tensor, target: torch.Tensor) -> None:
        """Add one photo's predicted and true class maps (H, W)."""
        true, said = target == self.index, predicted == self.index
        false = said & ~true & (target != IGNORE_INDEX)
        self.misses_near += int((true & ~said & near(said, self.pixels)).sum())
        self.false_near += int((false & near(true, self.pixels)).sum())
        band = torch.bucketize(run_widths(true), torch.tensor(WIDTHS), right=True) - 1
        self.by_width[:, 0] += torch.bincount(band[true], minlength=len(WIDTHS))
        self.by_width[:, 1] += torch.bincount(band[true & said], minlength=len(WIDTHS))


class ShiftedIoU:
    """Counts, over a split, for one class's IoU when its logit is raised by each of `shifts` before the argmax."""

    def __init__(self, index: int, shifts: list[float]):
        self.index, self.shifts = index, torch.tensor(shifts)
        self.counts = torch.zeros(len(shifts), 3, dtype=torch.long)  # per shift: hits, true, predicted

    def update(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        """Add one photo's logits (C, H, W) and true class map (H, W)."""
        if not len(self.shifts):
            return
        labelled = target != IGNORE_INDEX
        others = logits.clone()
        others[self.index] = -torch.inf
        margin = (logits[self.index] - others.amax(dim=0))[labelled]  # > -shift: predicted as the class
        said = margin[None] > -self.shifts[:, None]
        true = (target[labelled] == self.index)[None]
        self.counts += torch.stack([(said & true).sum(1), true.sum(1).expand(len(self.shifts)), said.sum(1)], 1)

    def ious(self) -> list[float]:
        """The class's IoU at each shift."""
        return [share(hits, true + said - hits) for hits, true, said in self.counts.tolist()]


@torch.inference_mode()
def logits_of(model, photos: torch.Tensor, precision: str) -> torch.Tensor:
    """float32 logits (N, C, H, W) of `model` for uint8 photos (N, 3, H, W) on the CPU."""
    with autocast(torch.device("cpu"), precision):
        return model(normalize_batch(photos, model.mean, model.std)).float()


def share(part: int, whole: int) -> float:
    """part / whole, NaN for an empty whole."""
    return part / whole if whole else float("nan")


def measure(checkpoint: str, camvid, class_names: list[str], pixels: int, precision: str, shifts: list[float]) -> dict:
    """Per class of `class_names`: recall, precision, IoU, near shares, confusions, recall by width, shifted IoUs."""
    model = load_model(checkpoint).for_inference()
    dataset = open_dataset(prepare_data(str(camvid)), "val")
    if dataset.class_names != model.class_names:
        raise PixelwiseError(f"{checkpoint}: classes {', '.join(model.class_names)} differ from {camvid}'s")
    unknown = sorted(set(class_names) - set(model.class_names))
    if unknown:
        raise PixelwiseError(f"{checkpoint}: no class {', '.join(unknown)}; it has {', '.join(model.class_names)}")
    counters = {name: ClassErrors(model.class_names.index(name), pixels) for name in class_names}
    shifted = {name: ShiftedIoU(model.class_names.index(name), shifts) for name in class_names}
    confusion = ConfusionMatrix(len(model.class_names))
    for photos, target in DataLoader(dataset, batch_size=1, num_workers=2):
        logits = logits_of(model, photos, precision)  # the plain mode's prediction is their argmax
        predicted, target = logits.argmax(dim=1), target.long()
        confusion.update(predicted, target)
        for counter in counters.values():
            counter.update(predicted[0], target[0])
        for counter in shifted.values():
            counter.update(logits[0], target[0])
    matrix, metrics = confusion.matrix, confusion.compute()
    rows = {}
    for name, c in counters.items():
        hits = int(matrix[c.index, c.index])
        missed = matrix[c.index].clone()
        missed[c.index] = 0
        false = int(matrix[:, c.index].sum()) - hits
        rows[name] = {
            "recall": share(hits, int(matrix[c.index].sum())),
            "precision": share(hits, hits + false),
            "iou": float(metrics.iou[c.index]),
            "misses_near": share(c.misses_near, int(missed.sum())),
            "false_near": share(c.false_near, false),
            "shifted_iou": shifted[name].ious(),
            "by_width": [
                (share(hits_in_band, true_in_band), share(true_in_band, int(c.by_width[:, 0].sum())))
                for true_in_band, hits_in_band in c.by_width.tolist()
            ],
            "missed_as": {
                other: value
                for other, value in zip(model.class_names, (missed / missed.sum().clamp(min=1)).tolist())
                if value >= SHOWN_SHARE
            },
        }
    return rows


def finite_number(text: str) -> float:
    """`real_number`, refusing inf and nan (a NaN shift would silently predict the class nowhere)."""
    value = real_number(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoints", nargs="+", required=True, help="pixelwise checkpoints trained on CamVid")
    parser.add_argument("--classes", nargs="+", default=["pole", "sign"], help="class names (default: pole sign)")
    parser.add_argument("--near", type=positive_int, default=3, help="pixels that count as near (default: 3)")
    parser.add_argument(
        "--shifts", nargs="+", type=finite_number, default=[],
        help="also each class's IoU with its logit raised by these amounts before the argmax (default: none)",
    )  # fmt: skip
    parser.add_argument("--camvid", help="CamVid folder (default: ../shared/data/camvid)")
    parser.add_argument("--precision", default="fp32", choices=PRECISIONS, help="as `pixelwise eval` (default: fp32)")
    args = parser.parse_args()
    keep_freed_memory()  # as every pixelwise command does
    try:
        report(args)
    except PixelwiseError as error:
        raise SystemExit(f"class_errors.py: {error}") from None


def report(args: argparse.Namespace) -> None:
    """Print the table and the RESULT line for the checkpoints and classes `args` names."""
    camvid = find_camvid(args.camvid)
    print(f"CamVid val, {args.precision}; near: within {args.near} pixels")
    header = f"{'class':>8}{'recall':>8}{'prec':>7}{'IoU':>7}{'miss near':>11}{'false near':>12}  missed as"
    labels = distinct_labels(args.checkpoints)
    label_width = max(24, *(len(label) + 1 for label in labels))  # the checkpoint column
    print(f"{'checkpoint':{label_width}}{header} (share of misses)")
    results, measured = {}, []
    for checkpoint, shown in zip(args.checkpoints, labels):
        rows = measure(checkpoint, camvid, args.classes, args.near, args.precision, args.shifts)
        measured.append((shown, rows))
        for name, row in rows.items():
            missed_as = ", ".join(f"{other} {value:.2f}" for other, value in row["missed_as"].items())
            print(
                f"{shown:{label_width}}{name:>8}{row['recall']:>8.3f}{row['precision']:>7.3f}{row['iou']:>7.3f}"
                f"{row['misses_near']:>11.2f}{row['false_near']:>12.2f}  {missed_as}"
            )
            prefix = f"{shown.removesuffix('.pt').replace('/', '_')}_{name}"
            results.update({f"{prefix}_{key}": round(row[key], 4) for key in ("recall", "iou")})
            if args.shifts:
                results[f"{prefix}_best_shifted_iou"] = round(max(row["shifted_iou"]), 4)
    print_by_width(measured, label_width)
    if args.shifts:
        print_shifted(measured, args.shifts, label_width)
    print(result_line(**results))


def distinct_labels(checkpoints: list[str]) -> list[str]:
    """Each checkpoint's folder and file name, with as many more parent folders as tell them apart."""
    parts = [Path(checkpoint).absolute().parts for checkpoint in checkpoints]
    for depth in range(2, max(map(len, parts)) + 1):
        labels = ["/".join(path[-depth:]) for path in parts]
        if len(set(labels)) == len(labels):
            return labels
    return labels  # the same file given twice


def print_by_width(measured: list[tuple[str, dict]], label_width: int) -> None:
    """Print each class's recall per band of run width, with the band's share of the class's pixels."""
    bands = [f"{low}-{high - 1} px" for low, high in zip(WIDTHS, WIDTHS[1:])] + [f"{WIDTHS[-1]}+ px"]
    print("\nrecall by the width of the class's horizontal runs in the labels (share of its pixels)")
    print(f"{'checkpoint':{label_width}}{'class':>8}" + "".join(f"{band:>16}" for band in bands))
    for shown, rows in measured:
        for name, row in rows.items():
            cells = "".join(f"{recall:>9.3f} ({part:.2f})" for recall, part in row["by_width"])
            print(f"{shown:{label_width}}{name:>8}{cells}")


def print_shifted(measured: list[tuple[str, dict]], shifts: list[float], label_width: int) -> None:
    """Print each class's IoU with its logit raised by each shift before the argmax."""
    print("\nIoU with the class's logit raised by each shift before the argmax")
    print(f"{'checkpoint':{label_width}}{'class':>8}" + "".join(f"{shift:>8g}" for shift in shifts))
    for shown, rows in measured:
        for name, row in rows.items():
            print(f"{shown:{label_width}}{name:>8}" + "".join(f"{iou:>8.3f}" for iou in row["shifted_iou"]))


if __name__ == "__main__":
    run_script(main)

"""Does averaging trained models help the classes one model misses? Checkpoints alone and averaged on CamVid val.

Each checkpoint (folded for inference) is evaluated alone on CamVid val, whole 480x360 photos in
the plain inference mode, then all of them together: the argmax of their softmax probabilities
averaged with equal weights. Reports val mIoU, pixel accuracy, the IoU of poles and signs, and
seconds per photo on this CPU. The checkpoints must share their class names.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import nn

from class_errors import distinct_labels
from common import VAL_ROW_HEADER, find_camvid, result_line, run_script, val_row
from pixelwise.errors import PixelwiseError
from pixelwise.predict import load_model
from pixelwise.runtime import keep_freed_memory
from pixelwise.segmenter import Segmenter


class AveragedNetworks(nn.Module):
    """Networks whose softmax probabilities are averaged; returns the average's log, so its argmax and softmax hold."""

    def __init__(self, networks: list[nn.Module]):
        super().__init__()
        self.networks = nn.ModuleList(networks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Log of the mean softmax (N, C, H, W) of the networks on normalised images (N, 3, H, W)."""
        total = sum(network(x).float().softmax(dim=1) for network in self.networks)
        return (total / len(self.networks)).log()


def ensemble(models: list[Segmenter]) -> Segmenter:
    """One Segmenter that averages `models`' probabilities; named as the first. They must share classes and input."""
    first = models[0]
    if any(model.class_names != first.class_names for model in models):
        raise PixelwiseError("the checkpoints have different classes; averaging needs the same classes in one order")
    if any((model.mean, model.std) != (first.mean, first.std) for model in models):
        raise PixelwiseError("the checkpoints normalise their input differently; averaging needs one normalisation")
    return first.with_network(AveragedNetworks([model.network for model in models]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoints", nargs="+", required=True, help="pixelwise checkpoints trained on CamVid")
    parser.add_argument("--camvid", help="CamVid folder (default: ../shared/data/camvid)")
    args = parser.parse_args()
    if len({Path(path).resolve() for path in args.checkpoints}) < max(2, len(args.checkpoints)):
        raise PixelwiseError("give at least two checkpoints to average, each once")
    keep_freed_memory()  # as every pixelwise command does
    camvid = find_camvid(args.camvid)
    labels = distinct_labels(args.checkpoints)
    members = {label: load_model(path).for_inference() for label, path in zip(labels, args.checkpoints)}
    runs = {**members, "all averaged": ensemble(list(members.values()))}
    width = max(len(name) for name in runs) + 2
    print(f"{'model':{width}}{VAL_ROW_HEADER}")
    results = {}
    for name, model in runs.items():
        scores, row = val_row(model, camvid)
        results[name] = scores["miou"]
        print(f"{name:{width}}{row}", flush=True)
    *members_miou, averaged_miou = results.values()
    print(result_line(**{f"member{index}": miou for index, miou in enumerate(members_miou)}, averaged=averaged_miou))


if __name__ == "__main__":
    run_script(main)

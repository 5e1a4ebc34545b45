"""ONNX Runtime against pixelwise's own `for_inference()` path: images/s on whole 500x375 photos, per model, CPU.

Each model (untrained, 21 classes as VOC: speed does not depend on the weights) is exported with
`pixelwise export`'s `export_onnx` and run by `OnnxSegmenter`; the torch side is
`Segmenter.for_inference()` in fp32. Both segment the same real photos (CamVid val, resized to
VOC's usual 500x375) one at a time through `predict`, as `pixelwise predict` and `serve` do, the
two engines taking turns in one run so their ratio holds on any machine. Writes JSON to --out.
With --checkpoint, the trained model in it instead: masks of an untrained model agree easily.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from common import alternated_medians, find_camvid, result_line, run_script, untrained_segmenter
from pixelwise.cli_arguments import positive_int
from pixelwise.export import export_onnx
from pixelwise.models import MODELS
from pixelwise.onnx_model import load_onnx
from pixelwise.predict import load_model
from pixelwise.runtime import keep_freed_memory
from pixelwise.segmenter import Segmenter
from pixelwise.data.io import read_image

PHOTO_SIZE = (500, 375)  # width, height: a whole VOC photo
CLASSES = 21


def real_photos(camvid: Path, count: int) -> list[np.ndarray]:
    """`count` CamVid val photos resized to PHOTO_SIZE, as (H, W, 3) uint8 arrays."""
    paths = sorted((camvid / "images" / "val").iterdir())[:count]
    return [np.asarray(read_image(path).resize(PHOTO_SIZE)) for path in paths]


def measure(segmenter: Segmenter, photos: list[np.ndarray], repeats: int) -> dict:
    """Images/s of both engines on `photos`, and the share of pixels on which their masks agree."""
    torch_model = segmenter.for_inference()
    with tempfile.TemporaryDirectory() as folder:
        export_onnx(segmenter, Path(folder) / "model.onnx")
        onnx_model = load_onnx(Path(folder) / "model.onnx")
    engines = {"torch": torch_model, "onnxruntime": onnx_model}
    seconds = alternated_medians(
        {engine: lambda model=model: [model.predict(photo) for photo in photos] for engine, model in engines.items()},
        repeats,
    )
    agreement = np.mean([(torch_model.predict(photo) == onnx_model.predict(photo)).mean() for photo in photos])
    rates = {engine: len(photos) / value for engine, value in seconds.items()}
    return {**{f"{engine}_images_per_s": rate for engine, rate in rates.items()}, "agreement": float(agreement)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--photos", type=int, default=8, help="CamVid val photos per round (default: 8)")
    parser.add_argument(
        "--repeats", type=positive_int, default=5, help="rounds per engine; the median counts (default: 5)"
    )
    parser.add_argument("--checkpoint", help="measure this trained .pt instead of the untrained --models")
    parser.add_argument("--camvid", help="CamVid folder (default: ../shared/data/camvid)")
    parser.add_argument("--out", default="benchmarks/results/onnx_runtime.json")
    args = parser.parse_args()
    keep_freed_memory()  # as every pixelwise command does
    photos = real_photos(find_camvid(args.camvid), args.photos)
    print(f"{len(photos)} photos of {PHOTO_SIZE[0]}x{PHOTO_SIZE[1]}, {torch.get_num_threads()} threads")
    print(f"{'model':<16}{'torch img/s':>12}{'ORT img/s':>12}{'ORT/torch':>11}{'masks agree':>13}")
    results = {}
    trained = load_model(args.checkpoint) if args.checkpoint else None
    models = {f"trained_{trained.model_name}": trained} if trained else {}
    for name in models or args.models:
        result = results[name] = measure(models.get(name) or untrained_segmenter(name).eval(), photos, args.repeats)
        torch_rate, onnx_rate = result["torch_images_per_s"], result["onnxruntime_images_per_s"]
        print(
            f"{name:<16}{torch_rate:>12.2f}{onnx_rate:>12.2f}{onnx_rate / torch_rate:>10.2f}x"
            f"{result['agreement']:>13.5f}"
        )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1))
    print(result_line(**{f"{name}_ort_over_torch": value["onnxruntime_images_per_s"] / value["torch_images_per_s"]
                         for name, value in results.items()}))  # fmt: skip


if __name__ == "__main__":
    run_script(main)

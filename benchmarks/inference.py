"""Inference on the CPU: pixelwise's whole-image prediction against D2L's chapter `predict`.

pixelwise segments a 500x375 photo whole (any size works): at batch 1 through
`Segmenter.predict` on the copy `for_inference()` makes, exactly what `pixelwise predict`
runs per photo (`pixelwise as built`: the Segmenter without that copy), at batch 8 through
one batched forward of the same model. D2L's network needs inputs whose
sides are multiples of 32, so its chapter predicts 320x480 crops. Both at batch 1 and 8; the
ceiling is the forward pass's FLOPs over the measured float32 GEMM rate. Every row takes
turns with the others, so a slow spell of the machine hits all alike: D2L as its users run
it (`d2l`) in a child process that keeps the system allocator, asked for each timed call
over a pipe; pixelwise in this process with the allocator setting `pixelwise predict` makes
(`pixelwise.runtime.keep_freed_memory`), next to D2L under that same setting
(`speedup_same_allocator`). `pixelwise bf16` is `pixelwise predict --precision bf16`
(bfloat16 autocast), measured against the bfloat16 GEMM rate.
"""

from __future__ import annotations

import argparse
import multiprocessing
from functools import partial

import torch
from torch.utils.flop_counter import FlopCounterMode

from pixelwise.cli_arguments import positive_int
from pixelwise.models.fcn import with_torch_upsampling
from common import alternated_medians, chapter_fcn, chapter_predict, gemm_gflops, result_line, run_script
from pixelwise.data.transforms import normalize_batch
from pixelwise.engine import autocast
from pixelwise.models import build_model
from pixelwise.predict import Segmenter
from pixelwise.runtime import keep_freed_memory

NUM_CLASSES = 21


def forward_flops(model: torch.nn.Module, images: torch.Tensor) -> int:
    """FLOPs of one forward pass."""
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model(images)
    return counter.get_total_flops()


def pixelwise_predictor(
    batch_size: int,
    *,
    photos: torch.Tensor,
    inference_copy: bool = True,
    gemm_upsampling: bool = True,
    precision: str = "fp32",
):
    """pixelwise on `batch_size` 375x500 photos: `predict` on one, as `pixelwise predict` runs it; a batched forward
    for more.

    The model is `Segmenter.for_inference()` (what the CLI uses), or with `inference_copy`
    False the Segmenter as built (BatchNorm kept, default memory format).
    """
    network = build_model("fcn32s", num_classes=NUM_CLASSES)
    model = Segmenter(
        network,
        model_name="fcn32s",
        class_names=tuple(map(str, range(NUM_CLASSES))),
        palette=((0, 0, 0),) * NUM_CLASSES,
    ).eval()
    model = model.for_inference() if inference_copy else model
    if not gemm_upsampling:
        with_torch_upsampling(model)
    if batch_size == 1:
        photo = photos[0].permute(1, 2, 0).contiguous().numpy()  # (H, W, 3), as a decoded file
        return partial(model.predict, photo, precision=precision)

    @torch.inference_mode()
    def run():
        batch = normalize_batch(photos[:batch_size], model.mean, model.std).contiguous(
            memory_format=torch.channels_last
        )
        with autocast(batch.device, precision):
            return model.segment(batch).to(torch.uint8)

    return run


def d2l_predictor(batch_size: int, *, crops: torch.Tensor):
    """D2L's chapter `predict` on `batch_size` normalised 320x480 crops (one call per image, as it is written)."""
    net = chapter_fcn(NUM_CLASSES).eval()
    normalized = normalize_batch(crops[:batch_size])

    @torch.no_grad()
    def run():
        return [chapter_predict(net, image) for image in normalized]

    return run


def serve_d2l(connection, crops: torch.Tensor) -> None:
    """Child process: run D2L's predictor at each batch size asked for until asked for None, replying when done."""
    predictors = {}
    while (batch_size := connection.recv()) is not None:
        if batch_size not in predictors:
            predictors[batch_size] = d2l_predictor(batch_size, crops=crops)
        predictors[batch_size]()
        connection.send(None)


class D2LProcess:
    """D2L's predictor in a fresh process with the system allocator, run on request to take turns with this one's."""

    def __init__(self, crops: torch.Tensor):
        # a new interpreter: glibc's defaults, not this process's setting
        context = multiprocessing.get_context("spawn")
        self.connection, child = context.Pipe()
        self.process = context.Process(target=serve_d2l, args=(child, crops), daemon=True)
        self.process.start()

    def predictor(self, batch_size: int):
        """A call that runs D2L's predictor at `batch_size` in the child and returns when it is done."""

        def run():
            self.connection.send(batch_size)
            self.connection.recv()

        return run

    def close(self) -> None:
        """Stop the child."""
        self.connection.send(None)
        self.process.join()


def time_cases(cases: dict, flops: dict[str, int], repeats: int) -> dict:
    """{(name, batch): (images/s, GFLOP/s)} for predictor factories `cases`, alternated, median of `repeats`."""
    rows = {}
    for batch_size in (1, 8):
        runs = {name: factory(batch_size) for name, factory in cases.items()}
        for name, seconds in alternated_medians(runs, repeats).items():
            rows[(name, batch_size)] = (
                batch_size / seconds,
                flops["d2l" if name.startswith("d2l") else "pixelwise"] * batch_size / seconds / 1e9,
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (under 2 minutes)")
    parser.add_argument("--repeats", type=positive_int, default=None, help="timed calls per case (default 7, quick 3)")
    args = parser.parse_args()
    repeats = args.repeats or (3 if args.quick else 7)
    torch.manual_seed(0)
    photos = torch.randint(0, 256, (8, 3, 375, 500), dtype=torch.uint8)
    crops = photos[:, :, :320, :480].contiguous()
    peak = gemm_gflops()
    peak_bf16 = gemm_gflops(dtype=torch.bfloat16)
    flops = {
        # Counted on torch's transposed convolution: the GEMM form also multiplies the zero padding.
        "pixelwise": forward_flops(
            with_torch_upsampling(build_model("fcn32s", num_classes=NUM_CLASSES)).eval(), normalize_batch(photos[:1])
        ),
        "d2l": forward_flops(chapter_fcn(NUM_CLASSES).eval(), normalize_batch(crops[:1])),
    }
    allocator = "kept freed memory" if keep_freed_memory() else "system allocator"
    d2l = D2LProcess(crops)
    cases = {
        "d2l": d2l.predictor,
        "d2l, same allocator": partial(d2l_predictor, crops=crops),
        "pixelwise": partial(pixelwise_predictor, photos=photos),
        "pixelwise as built": partial(pixelwise_predictor, photos=photos, inference_copy=False),
        "pixelwise oneDNN tconv": partial(pixelwise_predictor, photos=photos, gemm_upsampling=False),
        "pixelwise bf16": partial(pixelwise_predictor, photos=photos, precision="bf16"),
    }
    rows = time_cases(cases, flops, repeats)
    d2l.close()
    print(
        f"FCN-32s ResNet-18 forward, CPU threads {torch.get_num_threads()}, median of {repeats}; "
        f"GEMM peak float32 {peak:.1f}, bfloat16 {peak_bf16:.1f} GFLOP/s"
    )
    print(f"d2l: system allocator, in a child process; the other rows: {allocator}; all taking turns")
    print(
        f"forward FLOPs per image: pixelwise 375x500 {flops['pixelwise'] / 1e9:.1f} G, "
        f"d2l 320x480 {flops['d2l'] / 1e9:.1f} G"
    )
    print(f"{'':24}{'batch':>6}{'images/s':>10}{'GFLOP/s':>10}{'of peak':>9}")
    for (name, batch_size), (images_per_second, gflops) in rows.items():
        ceiling = peak_bf16 if name.endswith("bf16") else peak
        print(f"{name:24}{batch_size:>6}{images_per_second:>10.2f}{gflops:>10.1f}{gflops / ceiling:>9.0%}")

    def lower_ratio(faster: str, slower: str) -> float:
        """images/s of row `faster` over row `slower`, the lower of batch 1 and batch 8."""
        return min(rows[(faster, b)][0] / rows[(slower, b)][0] for b in (1, 8))

    def peak_share(name: str, ceiling: float) -> float:
        """Row `name`'s best GFLOP/s over `ceiling`."""
        return max(rows[(name, b)][1] for b in (1, 8)) / ceiling

    print(
        result_line(
            speedup=lower_ratio("pixelwise", "d2l"),
            peak_fraction=peak_share("pixelwise", peak),
            speedup_same_allocator=lower_ratio("pixelwise", "d2l, same allocator"),
            gemm_upsampling_gain=lower_ratio("pixelwise", "pixelwise oneDNN tconv"),
            inference_copy_gain=lower_ratio("pixelwise", "pixelwise as built"),
            speedup_bf16=lower_ratio("pixelwise bf16", "d2l"),
            peak_fraction_bf16=peak_share("pixelwise bf16", peak_bf16),
        )
    )


if __name__ == "__main__":
    run_script(main)

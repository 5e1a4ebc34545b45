"""Training throughput on the CPU: one step of pixelwise's loop against one of d2l.train_ch13's.

Same model (FCN-32s on ResNet-18, 21 classes), same batch (8 photos 320x480). The ceiling is
the step's FLOP count (torch.utils.flop_counter) over the machine's float32 GEMM rate,
measured in the same run.
"""

from __future__ import annotations

import argparse

import torch
from torch.utils.flop_counter import FlopCounterMode

from pixelwise.models.fcn import with_torch_upsampling
from common import alternated_medians, chapter_fcn, chapter_loss, gemm_gflops, result_line, run_script
from pixelwise.config import TrainConfig
from pixelwise.data.transforms import normalize_batch
from pixelwise.engine import train_one_epoch
from pixelwise.losses import build_criterion, cross_entropy
from pixelwise.models import build_model
from pixelwise.runtime import keep_freed_memory
from pixelwise.schedule import build_optimizer

NUM_CLASSES, HEIGHT, WIDTH = 21, 320, 480


def step_flops(model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor) -> int:
    """FLOPs of one forward and backward pass."""
    with FlopCounterMode(display=False) as counter:
        torch.nn.functional.cross_entropy(model(images), targets).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def pixelwise_step(batch: tuple[torch.Tensor, torch.Tensor], *, gemm_upsampling: bool = True):
    """A callable running one step of pixelwise's `train_one_epoch` (uint8 batch in, channels-last)."""
    model = build_model("fcn32s", num_classes=NUM_CLASSES).to(memory_format=torch.channels_last)
    if not gemm_upsampling:
        model = with_torch_upsampling(model)
    optimizer = build_optimizer(TrainConfig(), model)
    return lambda: train_one_epoch(model, build_criterion("ce"), [batch], optimizer, None, torch.device("cpu"))


def contiguous_step(batch: tuple[torch.Tensor, torch.Tensor]):
    """The same step in the default NCHW memory format: the 'before' figure for channels-last."""
    model = build_model("fcn32s", num_classes=NUM_CLASSES)
    optimizer = build_optimizer(TrainConfig(), model)

    def step():
        loss = cross_entropy(model(normalize_batch(batch[0])), batch[1].long())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def d2l_step(batch: tuple[torch.Tensor, torch.Tensor]):
    """A callable running one `d2l.train_batch_ch13` with the chapter's net, loss and trainer."""
    from d2l import torch as d2l

    net = chapter_fcn(NUM_CLASSES)
    trainer = torch.optim.SGD(net.parameters(), lr=0.001, weight_decay=1e-3)
    images, targets = normalize_batch(batch[0]), batch[1].long()
    return lambda: d2l.train_batch_ch13(net, images, targets, chapter_loss, trainer, [torch.device("cpu")])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer steps (under 2 minutes)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=None, help="timed steps per side (default 8, quick 3)")
    args = parser.parse_args()
    allocator = "kept freed memory" if keep_freed_memory() else "system allocator"  # for both sides
    steps = args.steps or (3 if args.quick else 8)
    torch.manual_seed(0)
    images = torch.randint(0, 256, (args.batch_size, 3, HEIGHT, WIDTH), dtype=torch.uint8)
    targets = torch.randint(0, NUM_CLASSES, (args.batch_size, HEIGHT, WIDTH), dtype=torch.uint8)
    batch = (images, targets)
    # Counted on torch's transposed convolution: the GEMM form also multiplies the zero padding.
    flops = step_flops(
        with_torch_upsampling(build_model("fcn32s", num_classes=NUM_CLASSES)), normalize_batch(images), targets.long()
    )
    peak = gemm_gflops()
    sides = {
        "d2l": d2l_step(batch),
        "pixelwise": pixelwise_step(batch),
        "pixelwise NCHW": contiguous_step(batch),
        "pixelwise oneDNN tconv": pixelwise_step(batch, gemm_upsampling=False),
    }
    median = alternated_medians(sides, steps)
    print(
        f"FCN-32s ResNet-18, batch {args.batch_size} x 3 x {HEIGHT} x {WIDTH}, "
        f"CPU threads {torch.get_num_threads()}, {allocator}, median of {steps} steps"
    )
    print(
        f"step FLOPs {flops / 1e9:.1f} G ({flops / args.batch_size / 1e9:.1f} G per image); "
        f"float32 GEMM peak {peak:.1f} GFLOP/s"
    )
    print(f"{'':24}{'s/step':>10}{'images/s':>10}{'GFLOP/s':>10}{'of peak':>9}")
    for name, seconds in median.items():
        print(
            f"{name:24}{seconds:>10.3f}{args.batch_size / seconds:>10.2f}{flops / seconds / 1e9:>10.1f}"
            f"{flops / seconds / 1e9 / peak:>9.0%}"
        )
    print(
        result_line(
            speedup=median["d2l"] / median["pixelwise"],
            peak_fraction=flops / median["pixelwise"] / 1e9 / peak,
            channels_last_gain=median["pixelwise NCHW"] / median["pixelwise"],
            gemm_upsampling_gain=median["pixelwise oneDNN tconv"] / median["pixelwise"],
        )
    )


if __name__ == "__main__":
    run_script(main)

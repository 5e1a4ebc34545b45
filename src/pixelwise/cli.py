"""Command line: parse arguments, call the library, print. `pixelwise --help` lists the commands."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import itertools
import math
import os
import re
import select
import signal
import sys
from collections.abc import Collection
from pathlib import Path

import numpy as np
import torch

from pixelwise.config import (
    CLASS_WEIGHTINGS,
    DECODE_PLACES,
    LEARNING_RATES,
    OPTIMIZERS,
    PRECISIONS,
    SCHEDULES,
    TrainConfig,
)
from pixelwise.cli_arguments import (
    ArgumentParser,
    MAX_CROP_PICTURE_SIDE,
    MAX_PICTURES,
    MAX_PICTURE_SIDE,
    class_count,
    command_parser,
    non_negative_int,
    overlap_share,
    overwrite_argument,
    picture_count,
    picture_file,
    picture_side,
    picture_size,
    positive_int,
    real_number,
    seed_number,
    size_pair,
    tta_scales,
    window_size,
    worker_count,
)
from pixelwise.cli_deploy import add_export, add_serve
from pixelwise.device import emulated_bf16_warning
from pixelwise.errors import EarlierRunError, PixelwiseError, SettingsError, one_line
from pixelwise.inference import DEFAULT_OVERLAP, MAX_OVERLAP, MS_SCALES, MULTI_SCALE_MODES, SCALE_RANGE, TTA_MODES
from pixelwise.jsontext import strict_json
from pixelwise.losses import LOSSES, OHEM_MIN_KEPT, OHEM_THRESHOLD
from pixelwise.models import MODELS
from pixelwise.onnx_model import is_onnx_file
from pixelwise.photo_files import (
    BLUR_SUFFIX,
    MASK_SUFFIX,
    OVERLAY_SUFFIX,
    PREDICTION_SUFFIXES,
    earlier_outputs,
    expand_inputs,
    refuse_what_is_in_the_way,
    output_names,
    save_output,
)
from pixelwise.runtime import keep_freed_memory

CHECKPOINT_HELP = "a .pt file written by pixelwise train, or a .onnx file written by pixelwise export"


def _data_arguments(parser: ArgumentParser, *, positional: bool = False) -> None:
    """SPEC plus --root and --download, shared by train, eval and data show."""
    spec_help = "voc2012, synthetic, a VOC folder, or a folder with images/, labels/, classes.csv"
    if positional:
        parser.add_argument("data", metavar="SPEC", help=spec_help)
    else:
        parser.add_argument("--data", metavar="SPEC", help=f"{spec_help} (train default: synthetic)")
    parser.add_argument("--root", help="where voc2012 or synthetic data lives (default: data/ and data/synthetic/)")
    parser.add_argument(
        "--download", action="store_true", default=None, help="download VOC 2012 (2 GB) into --root if absent"
    )


# ---------------------------------------------------------------- train


def _flag(name: str) -> str:
    """The command-line flag of a TrainConfig field."""
    return "--" + name.replace("_", "-")


def settings_as_flags(message: str, settings: Collection[str]) -> str:
    """A SettingsError's line with the `settings` it names as their flags: 'color_jitter=0' as '--color-jitter=0'.

    A setting is read as one where TrainConfig names one: at the start of the message or of one of
    its '; '-joined problems, by name or with spaces ('crop size must'), or given a value ('name=').
    Quoted text (a value, a path, a class name) is left as it is.
    """
    if not settings:
        return message
    quoted = [match.span() for match in re.finditer(r"'[^']*'|\"[^\"]*\"", message)]
    names = "|".join(re.escape(name) for name in sorted(settings, key=len, reverse=True))
    heads = {*settings, *(name.replace("_", " ") for name in settings)}  # as written, or spoken
    spoken = "|".join(re.escape(name) for name in sorted(heads, key=len, reverse=True))

    def as_flag(match: re.Match) -> str:
        inside = any(start <= match.start() < end for start, end in quoted)
        return match[0] if inside else match[1] + _flag(match[2].replace(" ", "_"))

    message = re.sub(rf"(^|; )({spoken})(?= must | \S+ needs | \S+ does |: )", as_flag, message)
    return re.sub(rf"(^|[\s(])({names})(?==)", as_flag, message)


def _command_settings(args: argparse.Namespace) -> list[str]:
    """The TrainConfig settings that are flags of the command `args` is for."""
    return [field.name for field in dataclasses.fields(TrainConfig) if hasattr(args, field.name)]


def _train_config(args: argparse.Namespace) -> tuple[TrainConfig, bool]:
    """The run's config: --resume's with the settings a resume may change, or the defaults with the options given."""
    from pixelwise.resume import RESUME_MAY_CHANGE, resume_config

    names = [field.name for field in dataclasses.fields(TrainConfig)]
    given = {name: value for name in names if (value := getattr(args, name, None)) is not None}  # 0 is a value
    if not args.resume:
        if "init_from" in given:  # its model and encoder, unless named
            from pixelwise.starting_weights import checkpoint_model

            model, encoder = checkpoint_model(given["init_from"])
            if given.setdefault("model", model) == model:
                given.setdefault("encoder", encoder)
        config = TrainConfig(**given)
        if "momentum" in given and config.optimizer != "sgd":
            raise PixelwiseError(
                f"--momentum is SGD's, and this run trains with {config.optimizer} (the model's optimiser or "
                "--optimizer's): leave --momentum out, or give --optimizer sgd"
            )
        return config, False
    if "init_from" in given:
        raise PixelwiseError("--init-from starts a new run from a checkpoint, and --resume continues a run: give one")
    may_change = [name for name in RESUME_MAY_CHANGE if name != "out" and hasattr(args, name)]
    refused = [name for name in given if name not in may_change]
    if refused:
        raise PixelwiseError(
            f"--resume continues the run with its own settings: {_flag(refused[0])} cannot change "
            f"(a resume may give {', '.join(map(_flag, may_change))}; start a new run for other settings)"
        )
    return resume_config(args.resume, **given), True


def _say_why_when_torchrun_stops_this(ranks) -> dict:
    """On SIGTERM, one line (unless this process already said why it stops), then exit; returns that flag.

    torchrun sends SIGTERM to every process when one of them fails, or when the job is cancelled.
    """
    said = {"why": False}

    def stop(signal_number, frame) -> None:
        if not said["why"]:
            print(
                f"pixelwise: rank {ranks.rank}: stopped by torchrun (another process of the run failed, or the run "
                "was cancelled); checkpoints are replaced whole, so a last.pt in the run directory is a good one",
                file=sys.stderr,
                flush=True,
            )
        os._exit(2)  # at once: unwinding from wherever the signal lands could print a traceback

    signal.signal(signal.SIGTERM, stop)
    return said


def run_train(args: argparse.Namespace) -> int:
    """pixelwise train, in one process or in every process torchrun starts (one line on failure, from one rank)."""
    from pixelwise.distributed import RankFailure, barrier, join_process_group, on_rank_zero
    from pixelwise.training import train

    ranks = join_process_group()
    if ranks.world_size == 1:
        config, resume = _train_config(args)
        return _report_run(train(config, resume=resume, progress=not args.quiet, log=print))
    said = _say_why_when_torchrun_stops_this(ranks)
    try:
        config, resume = on_rank_zero(ranks, functools.partial(_train_config, args))
        result = train(config, resume=resume, progress=not args.quiet, log=print)
    except RankFailure as failure:  # raised on every rank: rank 0 says it, once all have stopped
        said["why"] = True
        if ranks.is_main:
            print(f"pixelwise: error: {error_line(failure, _command_settings(args))}", file=sys.stderr, flush=True)
        barrier(ranks)
        return 2
    except (PixelwiseError, OSError) as error:  # this rank's own: torchrun stops the others
        said["why"] = True
        line = error_line(error, _command_settings(args))
        print(f"pixelwise: error: rank {ranks.rank}: {line}", file=sys.stderr, flush=True)
        return 2
    said["why"] = True
    return _report_run(result) if ranks.is_main else 0


def _report_run(result) -> int:
    """The last line of a finished run."""
    print(f"best val mIoU {result.best_miou:.4f} at epoch {result.best_epoch}; run in {result.run_dir}")
    return 0


def _the_models(setting: str) -> str:
    """The help's default of a setting each model chooses: "(default: the model's: sgd for fcn32s, ...)"."""
    models_by_value: dict[str, list[str]] = {}
    for name, spec in MODELS.items():
        models_by_value.setdefault(getattr(spec, setting), []).append(name)
    choices = "; ".join(f"{value} for {', '.join(names)}" for value, names in models_by_value.items())
    return f"(default: the model's: {choices})"


def _augmentation_arguments(parser: argparse.ArgumentParser, workers_note: str = "") -> None:
    """The augmentation options, as `train` and `data show --crops` take them."""
    defaults = TrainConfig()
    parser.add_argument(
        "--scale-range", type=real_number, nargs=2, metavar=("LOW", "HIGH"),
        help="random scale of each photo before its crop (default: %g %g); 1 1 keeps the photos' own size, "
        "for data from one camera at one size" % defaults.scale_range,
    )  # fmt: skip
    parser.add_argument(
        "--color-jitter", type=real_number, metavar="S",
        help="photometric augmentation, as timm's --color-jitter: each training crop's brightness, contrast and "
        f"saturation scaled by random factors in [1-S, 1+S], 0 to 1{workers_note} "
        f"(default: {defaults.color_jitter:g}, none)",
    )  # fmt: skip
    parser.add_argument(
        "--copy-paste", metavar="CLASSES",
        help="ClassMix-style class copy-paste: for half the training photos, another training photo's pixels of "
        "these classes (class names separated by commas, such as pole,sign) laid over them at the same place, "
        f"before the crop{workers_note} (default: none)",
    )  # fmt: skip


def add_train(subparsers) -> None:
    """pixelwise train's options."""
    defaults = TrainConfig()
    parser = command_parser(
        subparsers,
        "train",
        run_train,
        "train a segmentation model and write a run directory",
        "  pixelwise train --data synthetic --out runs/synth --epochs 10\n"
        "  pixelwise train --data voc2012 --root data --download --out runs/voc --encoder-weights imagenet\n"
        "  pixelwise train --data ../camvid --out runs/unet --model unet --encoder resnet34\n"
        "  pixelwise train --data ../camvid --out runs/camvid --crop-size 256x320 --epochs 40\n"
        "  pixelwise train --resume runs/camvid --epochs 60\n"
        "  pixelwise train --data ../camvid --out runs/tuned --init-from runs/camvid/last.pt --loss lovasz --lr 1e-4\n"
        "  torchrun --nproc-per-node 4 -m pixelwise train --data voc2012 --root data --out runs/voc --batch-size 32\n\n"
        "Started by torchrun, the processes make one run (docs/distributed.md).",
    )
    _data_arguments(parser)
    parser.add_argument(
        "--out",
        metavar="RUN_DIR",
        help=f"run directory: new, empty, or a run without checkpoints (default: {defaults.out})",
    )
    parser.add_argument(
        "--model",
        choices=list(MODELS),
        help=f"network; `pixelwise models` lists them and docs/training.md says which to choose (default: "
        f"{defaults.model})",
    )
    parser.add_argument(
        "--encoder", metavar="NAME", help="the model's encoder (backbone), one `pixelwise models` lists for it "
        "(default: the model's, resnet18 for the FCNs, U-Net, FPN and DeepLabV3+)",
    )  # fmt: skip
    parser.add_argument(
        "--encoder-weights", "--backbone-weights", dest="encoder_weights", metavar="W",
        help="imagenet (downloaded once), none, or a state-dict file of the encoder's classifier (default: none)",
    )  # fmt: skip
    parser.add_argument(
        "--init-from", metavar="CHECKPOINT",
        help="start from a checkpoint's weights (fine-tuning), with a new optimiser and schedule: its model, "
        "encoder and classes, which the data must share (default: random weights, or --encoder-weights)",
    )  # fmt: skip
    parser.add_argument(
        "--loss", choices=LOSSES,
        help="ce: cross-entropy; dice, focal, lovasz (segmentation_models.pytorch's); ce+dice: their sum; ohem: "
        f"cross-entropy over the hard pixels only (true class's probability at most {OHEM_THRESHOLD:g}; at least "
        f"the hardest {OHEM_MIN_KEPT * 100:.0f}%% of the labelled pixels); "
        "ohem+dice. All leave pixels labelled 255 out; --class-weighting applies to all but lovasz "
        + _the_models("loss"),
    )  # fmt: skip
    parser.add_argument("--epochs", type=positive_int, help=f"epochs (default: {defaults.epochs})")
    parser.add_argument(
        "--batch-size", type=positive_int,
        help="images per step: the global batch, which the processes torchrun starts share (a multiple of their "
        f"number) (default: {defaults.batch_size})",
    )  # fmt: skip
    parser.add_argument(
        "--crop-size", type=size_pair, metavar="HxW", help="training crop (default: %dx%d)" % defaults.crop_size
    )
    _augmentation_arguments(parser, "; not with --decode-on device")
    parser.add_argument(
        "--lr", type=real_number,
        help="peak learning rate (default: the optimiser's, "
        + ", ".join(f"{rate:g} for {name}" for name, rate in LEARNING_RATES.items()) + ")",
    )  # fmt: skip
    parser.add_argument(
        "--optimizer", choices=OPTIMIZERS,
        help=_the_models("optimizer"),
    )  # fmt: skip
    parser.add_argument(
        "--momentum", type=real_number, help=f"SGD's momentum, refused with adamw (default: {defaults.momentum})"
    )
    parser.add_argument("--weight-decay", type=real_number, help=f"(default: {defaults.weight_decay})")
    parser.add_argument(
        "--class-weighting",
        choices=CLASS_WEIGHTINGS,
        help="loss weights per class: median-frequency lifts rare classes, sqrt-median-frequency (their square "
        f"roots) more gently and best on CamVid (docs/training.md) (default: {defaults.class_weighting})",
    )
    parser.add_argument(
        "--schedule", choices=SCHEDULES, help=f"learning-rate schedule after warm-up (default: {defaults.schedule})"
    )
    parser.add_argument(
        "--warmup-epochs", type=real_number, help=f"linear warm-up length (default: {defaults.warmup_epochs})"
    )
    parser.add_argument(
        "--ema-decay", type=real_number, metavar="D",
        help="validate and save an exponential moving average of the weights and BatchNorm statistics, moved 1-D "
        "of the way to the trained ones after each step (0.99 averages about the last 100 steps); below 1, 0 for "
        f"none (default: {defaults.ema_decay:g})",
    )  # fmt: skip
    parser.add_argument("--workers", type=worker_count, help=f"data-loading processes (default: {defaults.workers})")
    parser.add_argument("--seed", type=seed_number, help=f"random seed, 0..2**63-1 (default: {defaults.seed})")
    parser.add_argument(
        "--deterministic", action="store_true", default=None,
        help="deterministic kernels: identical runs on CPU (docs/training.md)",
    )  # fmt: skip
    parser.add_argument(
        "--sync-bn", action=argparse.BooleanOptionalAction,
        help="under torchrun on CUDA GPUs, BatchNorm statistics over the global batch (SyncBatchNorm); on the CPU "
        "each process normalises over its own share (docs/distributed.md) (default: on)",
    )  # fmt: skip
    parser.add_argument(
        "--on-bad-sample", choices=["error", "skip"],
        help="what `data check` calls a problem in the train or val split stops the run before its first step, "
        "or is left out and counted (default: error)",
    )  # fmt: skip
    parser.add_argument(
        "--save-every-steps",
        type=non_negative_int,
        metavar="N",
        help=f"also write last.pt every N steps, 0 for epoch ends only (default: {defaults.save_every_steps})",
    )
    parser.add_argument("--device", help="auto (CUDA when present), cpu, cuda, cuda:1 (default: auto)")
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        help="bf16: forward pass under bfloat16 autocast (weights and optimiser stay float32); auto: bf16 where the "
        "CPU (AVX-512 BF16, AMX) or GPU has bfloat16 units, fp32 elsewhere, where bf16 is emulated and many times "
        "slower; BENCHMARKS.md has speed and accuracy "
        f"(default: {defaults.precision})",
    )
    parser.add_argument(
        "--decode-on", choices=DECODE_PLACES,
        help="where training photos are decoded and resized: in the loader workers, or on the training device "
        "(nvJPEG on CUDA, a whole batch resampled at once; frees the CPU when it limits a GPU) (default: "
        f"{defaults.decode_on})",
    )  # fmt: skip
    parser.add_argument("--train-split", help=f"(default: {defaults.train_split})")
    parser.add_argument("--val-split", help=f"(default: {defaults.val_split})")
    parser.add_argument(
        "--resume", metavar="RUN_DIR",
        help="continue RUN_DIR from its last.pt with its own settings; --epochs, --data, --root, --download, "
        "--device, --workers, --lr (logged), --deterministic, --save-every-steps, --on-bad-sample, --sync-bn and "
        "the number of processes may change (docs/training.md)",
    )  # fmt: skip
    parser.add_argument("--quiet", action="store_true", help="no progress bar, only one line per epoch")


# ---------------------------------------------------------------- eval


def _inference_arguments(parser: ArgumentParser) -> None:
    """--tta, --tta-scales, --sliding-window and --overlap, shared by eval and predict."""
    scales = ",".join(f"{scale:g}" for scale in MS_SCALES)
    parser.add_argument(
        "--tta", choices=TTA_MODES, default="none",
        help="test-time augmentation: flip averages the photo and its mirror image, ms the photo at several "
        "scales (--tta-scales), ms+flip every scale and its mirror image; slower, see BENCHMARKS.md for "
        "whether it helps (default: none)",
    )  # fmt: skip
    parser.add_argument(
        "--tta-scales", type=tta_scales, metavar="S[,S...]",
        help=f"with --tta ms or ms+flip: the photo's size times each, {SCALE_RANGE[0]:g} to {SCALE_RANGE[1]:g}; "
        f"one scale is a single pass at that size (default: {scales})",
    )  # fmt: skip
    parser.add_argument(
        "--sliding-window", type=window_size, metavar="HxW",
        help="segment photos larger than HxW window by window (for photos much larger than the training crops)",
    )  # fmt: skip
    parser.add_argument(
        "--overlap", type=overlap_share,
        help=f"with --sliding-window: share of a window's side that neighbours overlap, 0 to {MAX_OVERLAP} "
        f"(default: {DEFAULT_OVERLAP:.2f})",
    )  # fmt: skip


def _inference_model(args: argparse.Namespace):
    """The checkpoint's Segmenter for eval and predict: folded for inference, in the mode the options ask for."""
    from pixelwise.predict import load_model

    if is_onnx_file(args.checkpoint):
        return _onnx_model(args)
    if args.overlap is not None and args.sliding_window is None:
        raise PixelwiseError("--overlap sets how --sliding-window's windows overlap; add --sliding-window")
    if args.tta_scales is not None and args.tta not in MULTI_SCALE_MODES:
        raise PixelwiseError("--tta-scales sets the sizes --tta ms and ms+flip average; add one of them")
    model = load_model(args.checkpoint, args.device).for_inference()
    slow_precision = emulated_bf16_warning(next(model.parameters()).device, args.precision)
    if slow_precision:
        print(f"pixelwise: warning: {slow_precision}", file=sys.stderr)
    overlap = DEFAULT_OVERLAP if args.overlap is None else args.overlap
    scales = MS_SCALES if args.tta_scales is None else args.tta_scales
    return model.set_inference(tta=args.tta, window=args.sliding_window, overlap=overlap, scales=scales)


def _onnx_model(args: argparse.Namespace):
    """The exported model for eval and predict, refusing the options only a .pt checkpoint takes."""
    from pixelwise.onnx_model import load_onnx, refuse_bf16

    given = (args.tta_scales, args.sliding_window, args.overlap)
    if args.tta != "none" or any(option is not None for option in given):
        raise PixelwiseError(
            "--tta, --tta-scales, --sliding-window and --overlap need the .pt checkpoint; an exported model runs "
            "one pass"
        )
    if args.device not in ("auto", "cpu"):
        raise PixelwiseError(f"an exported model runs on the CPU (ONNX Runtime); --device {args.device} needs the .pt")
    refuse_bf16(args.precision)
    return load_onnx(args.checkpoint)


def run_eval(args: argparse.Namespace) -> int:
    """pixelwise eval."""
    from pixelwise.training import evaluate_split

    model = _inference_model(args)
    metrics = evaluate_split(
        model, args.data, args.split, root=args.root, workers=args.workers, precision=args.precision
    )
    if args.json:
        print(
            strict_json(
                {
                    "checkpoint": str(args.checkpoint),
                    "data": args.data,
                    "split": args.split,
                    **metrics.as_dict(model.class_names),
                }
            )
        )
        return 0

    def shown(value: float, undefined: str = "undefined (no labelled pixel)") -> str:
        return undefined if math.isnan(value) else f"{value:.4f}"

    for label, value in (
        ("pixel accuracy", metrics.pixel_accuracy),
        ("mean class accuracy", metrics.mean_class_accuracy),
        ("mIoU", metrics.miou),
        ("frequency-weighted IoU", metrics.fwiou),
    ):
        print(f"{label:<24}{shown(value)}")
    print(f"\n{'class':<24}IoU")
    for name, value in zip(model.class_names, metrics.iou):
        print(f"{name:<24}{shown(value, 'absent')}")
    return 0


def add_eval(subparsers) -> None:
    """pixelwise eval's options."""
    parser = command_parser(
        subparsers,
        "eval",
        run_eval,
        "measure a checkpoint on a dataset split, whole images at their own size",
        "  pixelwise eval --checkpoint runs/synth/best.pt --data synthetic --split val\n"
        "  pixelwise eval --checkpoint runs/camvid/best.pt --data ../camvid --json > val.json",
    )
    parser.add_argument("--checkpoint", required=True, metavar="CKPT", help=CHECKPOINT_HELP)
    parser.add_argument("--data", required=True, metavar="SPEC", help="voc2012, synthetic, or a dataset folder")
    parser.add_argument("--root", help="where voc2012 or synthetic data lives")
    parser.add_argument("--split", default="val", help="split to measure (default: val)")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="fp32",
        help="bf16: network under bfloat16 autocast; auto: bf16 where the device has bfloat16 units (default: fp32)",
    )
    parser.add_argument("--workers", type=worker_count, default=2, help="data-loading processes (default: 2)")
    _inference_arguments(parser)


# ---------------------------------------------------------------- predict


def _keep_mask(mask: np.ndarray, class_names: tuple[str, ...], keep: str | None) -> np.ndarray:
    """`predict.keep_mask`, its refusal as a --keep error."""
    from pixelwise.predict import keep_mask

    try:
        return keep_mask(mask, class_names, keep)
    except ValueError as error:
        raise PixelwiseError(f"--keep: {error}") from None


def _prediction_pictures(photo, mask: np.ndarray, model, args: argparse.Namespace):
    """(suffix, picture, save options) of each output predict writes for one photo, made as they are asked for."""
    from pixelwise.data.labels import palette_png
    from pixelwise.visualize import blur_background, overlay

    yield MASK_SUFFIX, palette_png(mask, model.palette), {}
    yield OVERLAY_SUFFIX, overlay(photo, mask, model.class_names, model.palette), {"quality": 92}
    if args.blur_background:
        yield BLUR_SUFFIX, blur_background(photo, _keep_mask(mask, model.class_names, args.keep)), {"quality": 92}


def run_predict(args: argparse.Namespace) -> int:
    """pixelwise predict."""
    from pixelwise.data.io import read_image

    if args.keep is not None and not args.blur_background:
        raise PixelwiseError("--keep chooses the classes that --blur-background keeps sharp; add --blur-background")
    model = _inference_model(args)
    if args.blur_background:
        _keep_mask(np.zeros(1, dtype=np.uint8), model.class_names, args.keep)  # validate the classes before any work
    paths, failures = expand_inputs(args.inputs)
    out = Path(args.out)
    earlier = earlier_outputs(paths, out)
    if earlier:
        print(
            f"skipping {len(earlier)} file(s) in {out} named as this command's outputs "
            f"({', '.join('NAME' + suffix for suffix in PREDICTION_SUFFIXES)})"
        )
        paths = [path for path in paths if path not in earlier]
    names = output_names(paths)
    suffixes = PREDICTION_SUFFIXES if args.blur_background else (MASK_SUFFIX, OVERLAY_SUFFIX)
    refuse_what_is_in_the_way([out / f"{n}{suffix}" for n in names.values() for suffix in suffixes], args.overwrite)
    segmented = 0
    for path in paths:
        try:
            photo = read_image(path)
        except PixelwiseError as error:
            failures.append((str(path), str(error)))
            continue
        mask = model.predict(photo, max_side=args.max_side, precision=args.precision)
        target = out / names[path]
        writing = target.parent
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            for suffix, picture, options in _prediction_pictures(photo, mask, model, args):
                writing = f"{target}{suffix}"
                save_output(picture, writing, **options)
        except OSError as error:
            raise PixelwiseError(f"{writing}: cannot write predictions ({error.strerror or error})") from None
        segmented += 1
        print(f"{path} -> {target}{MASK_SUFFIX}")
    print(f"{segmented} image(s) segmented into {out}")
    for source, problem in failures:
        print(f"failed: {problem}" if problem.startswith(source) else f"failed: {source}: {problem}", file=sys.stderr)
    return 1 if failures else 0


def add_predict(subparsers) -> None:
    """pixelwise predict's options."""
    parser = command_parser(
        subparsers,
        "predict",
        run_predict,
        "segment photos of any size: a palette-PNG mask and an overlay with a legend per photo",
        "  pixelwise predict --checkpoint runs/synth/best.pt photo.jpg --out predictions\n"
        "  pixelwise predict --checkpoint best.pt 'holiday/*.jpg' more_photos/ --out out\n"
        "  pixelwise predict --checkpoint voc.pt portrait.jpg --out out --blur-background --keep person",
    )
    parser.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="image files, folders (not their subfolders) or glob patterns ('photos/**/*.jpg' searches subfolders)",
    )
    parser.add_argument("--checkpoint", required=True, metavar="CKPT", help=CHECKPOINT_HELP)
    parser.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="folder for NAME_mask.png, NAME_overlay.jpg, in the photos' subfolders below the folder they share; "
        "files there that pixelwise did not write are left alone: the command stops before any work",
    )
    overwrite_argument(parser)
    parser.add_argument(
        "--blur-background", action="store_true", help="also write NAME_blur.jpg: all but the kept classes blurred"
    )
    parser.add_argument(
        "--keep",
        metavar="CLASS[,CLASS...]",
        help="with --blur-background: classes kept sharp, comma-separated (default: every class but 'background')",
    )
    parser.add_argument(
        "--max-side", type=positive_int, default=2048, help="segment larger photos at this size (default: 2048)"
    )
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="fp32",
        help="bf16: network under bfloat16 autocast, faster on CPUs and GPUs with bfloat16 units; auto: bf16 where "
        "the device has them (default: fp32)",
    )
    _inference_arguments(parser)


# ---------------------------------------------------------------- models


def run_models(args: argparse.Namespace) -> int:
    """pixelwise models."""
    from pixelwise.models import model_table

    table = model_table(num_classes=args.classes)
    if args.json:
        print(strict_json(table))
        return 0
    print(f"{'model':<15}{'default encoder':<20}{'parameters':>12}  encoders; summary ({args.classes} classes)")
    for row in table:
        default = row["default_encoder"] + (" *" if row["default"] else "")
        print(f"{row['name']:<15}{default:<20}{row['parameters'] / 1e6:>11.1f}M  {', '.join(row['encoders'])}")
        print(f"{'':<47}{row['summary']}; {row['optimizer']}, {row['loss']}")
    print("\n* the default model of `pixelwise train`; parameters at the default encoder")
    print("after each summary: the optimiser and loss the model trains with unless told")
    print("which to choose, and for how many epochs: docs/training.md, 'Choosing a model'")
    return 0


def add_models(subparsers) -> None:
    """pixelwise models's options."""
    parser = command_parser(
        subparsers,
        "models",
        run_models,
        "list the models `train --model` takes, with their encoders, parameter counts, recipes and defaults",
        "  pixelwise models\n  pixelwise models --json",
    )
    parser.add_argument("--json", action="store_true", help="print a JSON list of objects")
    parser.add_argument(
        "--classes", type=class_count, default=21, help="count parameters for this many classes, 1..254 (default: 21)"
    )


# ---------------------------------------------------------------- data


def run_download(args: argparse.Namespace) -> int:
    """pixelwise data download."""
    from pixelwise.data.download import VOC2012_URL, download_voc2012

    print(f"VOC 2012 is in {download_voc2012(args.root, url=args.mirror or VOC2012_URL)}")
    return 0


def run_synth(args: argparse.Namespace) -> int:
    """pixelwise data synth."""
    from pixelwise.data.synthetic import make_synthetic_voc

    try:
        root = make_synthetic_voc(
            args.out, num_train=args.num_train, num_val=args.num_val, num_classes=args.classes,
            size_range=(args.min_size, args.max_size), seed=args.seed,
        )  # fmt: skip
    except ValueError as error:
        raise PixelwiseError(str(error)) from None
    print(f"wrote {args.num_train} train and {args.num_val} val images with {args.classes} classes to {root}")
    return 0


SHOWN_PHOTOS = 5  # data show's default
CROP_OPTIONS = ("index", "crop_size", "scale_range", "color_jitter", "copy_paste", "seed")  # data show's, --crops only


def run_show(args: argparse.Namespace) -> int:
    """pixelwise data show."""
    from pixelwise.data.class_paste import class_paste
    from pixelwise.data.spec import open_dataset, prepare_data
    from pixelwise.training import training_transform
    from pixelwise.visualize import show_crops, show_samples

    refuse_what_is_in_the_way([Path(args.out)], args.overwrite)
    given = {name: value for name in CROP_OPTIONS if (value := getattr(args, name)) is not None}
    if args.crops is None and given:
        verb, pronoun = ("are", "them") if len(given) > 1 else ("is", "it")
        raise PixelwiseError(
            f"{', '.join(map(_flag, given))} {verb} for --crops N only, and without it data show draws whole "
            f"photos: add --crops N or leave {pronoun} out"
        )
    if args.crops is not None and args.n is not None:
        raise PixelwiseError("--n counts whole photos and --crops N crops of one photo: give one")
    recipe = TrainConfig(**{name: value for name, value in given.items() if name not in ("index", "seed")})  # bounds
    dataset = open_dataset(prepare_data(args.data, root=args.root, download=bool(args.download)), args.split)
    if args.crops is None:
        figure = show_samples(dataset, args.n or SHOWN_PHOTOS)
    else:  # drawn as a run with these settings draws its crops
        dataset.paste = class_paste(recipe.copy_paste, dataset.class_names)
        torch.manual_seed(given.get("seed", 0))
        figure = show_crops(dataset, given.get("index", 0), args.crops, training_transform(recipe))
    try:
        save_output(figure, args.out)
    except ValueError as error:  # a format Pillow knows but cannot write this picture in (.blp)
        raise PixelwiseError(f"{args.out}: cannot write this picture ({error}); use .png or .jpg") from None
    print(f"wrote {args.out}")
    return 0


def run_check(args: argparse.Namespace) -> int:
    """pixelwise data check."""
    from pixelwise.data.check import check_dataset
    from pixelwise.data.spec import prepare_data

    report = check_dataset(prepare_data(args.data, root=args.root), splits=args.split, crop_size=args.crop_size)
    if args.json:
        print(strict_json(report.as_dict()))
        return 1 if report.problems else 0
    print(f"{report.root}: {report.layout} layout, {len(report.class_names)} classes")
    for split in report.splits:
        summary = split.as_dict(report.class_names)
        print(
            f"\n{split.name}: {split.samples} usable samples, {len(summary['problems'])} problem(s), "
            f"{summary['ignored_share']:.1%} of pixels ignored"
        )
        total = sum(split.class_pixels) or 1
        print(
            "  "
            + ", ".join(f"{name} {count / total:.1%}" for name, count in zip(report.class_names, split.class_pixels))
        )
        if split.smaller_than_crop:
            shown = ", ".join(split.smaller_than_crop[:5]) + (" ..." if len(split.smaller_than_crop) > 5 else "")
            print(
                f"  {len(split.smaller_than_crop)} image(s) smaller than the {args.crop_size[0]}x{args.crop_size[1]} "
                f"crop (training pads them): {shown}"
            )
        for problem in summary["problems"]:
            print(f"  problem: {problem}")
        for warning in split.warnings:
            print(f"  warning: {warning}")
    print(f"\n{'clean' if not report.problems else f'{len(report.problems)} problem(s) found'}")
    return 1 if report.problems else 0


def add_data(subparsers) -> None:
    """pixelwise data {download,synth,show}."""
    data = subparsers.add_parser(
        "data",
        help="download, synthesise, check or look at datasets",
        description="download, synthesise, check or look at datasets",
    )
    commands = data.add_subparsers(
        dest="data_command", required=True, metavar="{download,synth,check,show}", parser_class=ArgumentParser
    )
    download = command_parser(
        commands,
        "download",
        run_download,
        "download and extract Pascal VOC 2012 (2 GB, SHA-1 checked)",
        "  pixelwise data download voc2012 --root data\n  pixelwise data download voc2012 --root data --mirror "
        "http://mirror/VOCtrainval_11-May-2012.tar",
    )
    download.add_argument("dataset", choices=["voc2012"])
    download.add_argument("--root", default="data", help="folder to put VOCdevkit/ in (default: data)")
    download.add_argument("--mirror", metavar="URL", help="download from this URL instead of the official host")
    synth = command_parser(
        commands,
        "synth",
        run_synth,
        "write a synthetic VOC-format dataset (shapes and textures, deterministic per seed)",
        "  pixelwise data synth --out data/synthetic\n  pixelwise data synth --out /tmp/tiny --num-train 20 "
        "--num-val 5 --classes 3",
    )
    synth.add_argument(
        "--out", required=True, metavar="DIR",
        help="folder that receives VOCdevkit/VOC2012; a synthetic dataset already there is replaced",
    )  # fmt: skip
    synth.add_argument("--num-train", type=positive_int, default=200, help="training images (default: 200)")
    synth.add_argument("--num-val", type=non_negative_int, default=50, help="validation images (default: 50)")
    synth.add_argument("--classes", type=int, default=5, help="classes, background included, 2..21 (default: 5)")
    synth.add_argument("--seed", type=seed_number, default=0, help="random seed (default: 0)")
    synth.add_argument("--min-size", type=picture_side, default=96, help="smallest image side (default: 96)")
    synth.add_argument(
        "--max-size",
        type=picture_side,
        default=224,
        help=f"largest image side, at most {MAX_PICTURE_SIDE} (default: 224)",
    )
    check = command_parser(
        commands,
        "check",
        run_check,
        "walk a whole dataset and report problems: exit 0 when clean, 1 when problems were found, 2 on bad arguments",
        "  pixelwise data check ../camvid\n  pixelwise data check data/VOCdevkit --split train --crop-size 320x480 "
        "--json",
    )
    check.add_argument(
        "data", metavar="SPEC", help="synthetic, voc2012, a VOC folder, or a folder with images/, labels/, classes.csv"
    )
    check.add_argument("--root", help="where voc2012 or synthetic data lives")
    check.add_argument("--split", nargs="+", help="splits to check (default: all)")
    check.add_argument(
        "--crop-size",
        type=size_pair,
        default=TrainConfig().crop_size,
        metavar="HxW",
        help="report images smaller than this (default: the training crop)",
    )
    check.add_argument("--json", action="store_true", help="print machine-readable JSON")
    show = command_parser(
        commands,
        "show",
        run_show,
        "draw photos above their colour-mapped labels, or random training crops of one photo",
        "  pixelwise data show synthetic --split train --n 5 --out preview.png\n  pixelwise data show ../camvid "
        "--crops 5 --crop-size 200x300 --out crops.png\n  pixelwise data show ../camvid --crops 5 --color-jitter 0.4 "
        "--out jitter.png\n  pixelwise data show ../camvid --crops 5 --copy-paste pole,sign --out paste.png",
    )
    _data_arguments(show, positional=True)
    show.add_argument("--split", default="train", help="(default: train)")
    show.add_argument(
        "--n", type=picture_count, help=f"photos to show, at most {MAX_PICTURES} (default: {SHOWN_PHOTOS})"
    )
    show.add_argument(
        "--crops", type=picture_count, metavar="N", help="show this many random crops of photo --index instead, "
        "drawn as `pixelwise train` draws them: with classes pasted in, scaled, cropped, flipped and jittered as "
        "--copy-paste, --scale-range and --color-jitter say; --index, --crop-size, --scale-range, --color-jitter, "
        "--copy-paste and --seed are for --crops only",
    )  # fmt: skip
    show.add_argument("--index", type=int, help="photo to crop (default: 0)")
    show.add_argument(
        "--crop-size", type=picture_size, metavar="HxW",
        help=f"crop size, sides at most {MAX_CROP_PICTURE_SIDE} (default: %dx%d)" % TrainConfig().crop_size,
    )  # fmt: skip
    _augmentation_arguments(show)
    show.add_argument("--seed", type=seed_number, help="random seed for the crops (default: 0)")
    show.add_argument(
        "--out", required=True, type=picture_file, metavar="FILE.png", help="picture to write (.png, .jpg, ...); "
        "a file there that pixelwise did not write is left alone",
    )  # fmt: skip
    overwrite_argument(show)


# ---------------------------------------------------------------- demo


def run_demo_command(args: argparse.Namespace) -> int:
    """pixelwise demo."""
    from pixelwise.demo import run_demo

    summary = run_demo(args.out, epochs=args.epochs, progress=not args.quiet, log=print)
    print(f"\nval mIoU {summary['val']['miou']:.3f}, pixel accuracy {summary['val']['pixel_accuracy']:.3f}")
    print(f"report: {summary['report']} (predictions.png, overlays/, curves.png, metrics.json)")
    print(f"try:    pixelwise predict --checkpoint {summary['checkpoint']} YOUR_IMAGES --out predictions")
    return 0


def add_demo(subparsers) -> None:
    """pixelwise demo's options."""
    parser = command_parser(
        subparsers,
        "demo",
        run_demo_command,
        "synthesise data, train, evaluate and predict, in about 5 minutes on a CPU",
        "  pixelwise demo\n  pixelwise demo --out /tmp/demo --epochs 5",
    )
    parser.add_argument(
        "--out", default="demo-output", metavar="DIR",
        help="folder for data, run and report; the demo's own earlier run there is replaced, any other refused "
        "(default: demo-output)",
    )  # fmt: skip
    parser.add_argument("--epochs", type=positive_int, help="override the demo's epochs")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def build_parser() -> ArgumentParser:
    """The whole command tree."""
    parser = ArgumentParser(
        prog="pixelwise",
        description="Semantic segmentation: train, evaluate, predict, export and serve FCN, U-Net, FPN, "
        "DeepLabV3+, SegFormer or LR-ASPP.",
    )
    from pixelwise import __version__

    parser.add_argument("--version", action="version", version=f"pixelwise {__version__}")
    subparsers = parser.add_subparsers(
        dest="command",
        required=True,
        metavar="{train,eval,predict,export,serve,models,data,demo}",
        parser_class=ArgumentParser,
    )
    for add in (add_train, add_eval, add_predict, add_export, add_serve, add_models, add_data, add_demo):
        add(subparsers)
    return parser


def error_line(error: BaseException, settings: Collection[str] = ()) -> str:
    """The one line the command line prints for an error it expects; `settings`: the command's TrainConfig flags."""
    from pixelwise.distributed import RankFailure

    if isinstance(error, RankFailure) and isinstance(error.original, (EarlierRunError, SettingsError)):
        return f"rank {error.rank}: {error_line(error.original, settings)}"  # the command line's words
    if isinstance(error, EarlierRunError):
        run_dir = error.run_dir
        if not error.resumable:
            return f"{run_dir}: holds an earlier run's best.pt, without the last.pt a resume needs; give another --out"
        return f"{run_dir}: holds an earlier run; continue it with --resume {run_dir}, or give another --out"
    if isinstance(error, SettingsError):
        return settings_as_flags(one_line(error), settings)
    return one_line(error)


def _refuse_other_commands_under_torchrun(command: str) -> None:
    """Only train runs in many processes: any other command started by torchrun would race itself on its outputs."""
    from pixelwise.distributed import launched_ranks

    ranks = launched_ranks()
    if command != "train" and ranks.world_size > 1:
        if not ranks.is_main:
            raise SystemExit(2)  # rank 0 says why
        raise PixelwiseError(
            f"pixelwise {command} runs in one process, but torchrun started {ranks.world_size}: only pixelwise train "
            "runs distributed"
        )


def _refuse_unknown_leading_options(parser: ArgumentParser, tokens: list[str]) -> None:
    """Name an unknown option before a command (`pixelwise --bogus`): argparse would say the command is missing."""
    known = ("-h", "--help", "--version")
    for level in ("", "data"):  # the commands, then the data subcommands
        leading = list(itertools.takewhile(lambda token: token.startswith("-") and token != "--", tokens))
        unknown = [token for token in leading if token not in known]
        if unknown:
            parser.error(f"unrecognized option {unknown[0]} before the {'data ' if level else ''}command")
        rest = tokens[len(leading) :]
        if not rest or rest[0] != "data":
            return
        tokens, known = rest[1:], ("-h", "--help")


def _stdout_closed() -> bool:
    """Whether standard output is a pipe whose reader has gone."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll() on this system, or no stdout file
        return False


def _refuse_empty_arguments(parser: ArgumentParser, tokens: list[str]) -> None:
    """Refuse an empty argument (`--resume "$UNSET"`): it would read as not given, or as the current folder."""
    options = list(itertools.takewhile(lambda token: token != "--", tokens))  # after "--", names are names
    for before, token in zip([None, *options], options):
        if token.startswith("--") and token.endswith("="):
            parser.error(f"empty value in {token}")
        if not token.strip():
            parser.error(f"empty argument{f' after {before}' if before else ''} (an unset shell variable?)")


def main(argv: list[str] | None = None) -> int:
    """Entry point: exit 0 on success, 1 when some inputs failed, 2 on bad arguments or files."""
    parser = build_parser()
    tokens = sys.argv[1:] if argv is None else argv
    _refuse_unknown_leading_options(parser, tokens)
    _refuse_empty_arguments(parser, tokens)
    args = parser.parse_args(argv)
    keep_freed_memory()
    try:
        _refuse_other_commands_under_torchrun(args.command)
        code = args.handler(args)
        sys.stdout.flush()  # here, not at exit, so that a closed pipe is seen below
        return code
    except (PixelwiseError, OSError) as error:  # OSError: a file the command had to write (unwritable, disk full)
        if isinstance(error, BrokenPipeError) and _stdout_closed():  # `pixelwise models | head -1`
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit's flush cannot fail again
            return 1
        print(f"pixelwise: error: {error_line(error, _command_settings(args))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # under torchrun, Ctrl-C reaches every process: rank 0 says it
        if os.environ.get("RANK", "0") == "0":
            print("pixelwise: interrupted", file=sys.stderr)
        return 130

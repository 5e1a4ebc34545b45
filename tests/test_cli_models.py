"""The command line's model choice: `pixelwise models`, --model/--encoder/--encoder-weights/--loss, --tta, windows."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from pixelwise.cli import _inference_model, build_parser, main
from pixelwise.inference import MS_SCALES, InferenceMode
from pixelwise.models import MODELS

TINY = ["--epochs", "1", "--batch-size", "4", "--crop-size", "32x32", "--workers", "0", "--quiet", "--device", "cpu"]


@pytest.fixture(scope="module")
def fpn_run(tmp_path_factory):
    """An FPN trained one epoch with its recipe (AdamW, ce+dice) on a tiny synthetic dataset: (data, run folder)."""
    base = tmp_path_factory.mktemp("models")
    assert (
        main(
            [
                "data",
                "synth",
                "--out",
                str(base / "data"),
                "--num-train",
                "8",
                "--num-val",
                "3",
                "--classes",
                "3",
                "--min-size",
                "40",
                "--max-size",
                "72",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "train",
                "--data",
                str(base / "data"),
                "--out",
                str(base / "run"),
                "--model",
                "fpn",
                "--encoder",
                "resnet18",
                "--backbone-weights",
                "none",
                *TINY,
            ]
        )
        == 0
    )
    return base / "data", base / "run"


def test_models_lists_every_model_as_text_and_json(capsys):
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["name"] for row in rows] == list(MODELS)
    for row in rows:
        assert row["default_encoder"] in row["encoders"] and row["parameters"] > 1_000_000
    assert {row["name"] for row in rows if row["default"]} == {"fcn8s"}
    recipes = {row["name"]: (row["optimizer"], row["loss"]) for row in rows}
    assert recipes["fcn8s"] == ("sgd", "ce") and recipes["segformer"] == ("adamw", "ce+dice")
    assert {"resnet18", "resnet34", "resnet50"} <= set(next(r for r in rows if r["name"] == "unet")["encoders"])
    assert main(["models"]) == 0
    text = capsys.readouterr().out
    assert all(name in text for name in MODELS) and "fcn8s          resnet18 *" in text
    assert "docs/training.md" in text


def test_train_records_the_model_encoder_and_the_models_recipe(fpn_run):
    _, run = fpn_run
    config = json.loads((run / "config.json").read_text())
    assert (config["model"], config["encoder"], config["encoder_weights"]) == ("fpn", "resnet18", "none")
    assert (config["optimizer"], config["lr"], config["loss"]) == ("adamw", 1e-3, "ce+dice"), "fpn's, not fcn8s's"


@pytest.mark.parametrize(
    "options",
    [
        ["--tta", "flip"],
        ["--tta", "ms"],
        ["--tta", "ms", "--tta-scales", "0.5,1.25"],
        ["--tta", "ms+flip", "--tta-scales", "0.5,1"],
        ["--sliding-window", "32x40"],
        ["--sliding-window", "32x32", "--overlap", "0.5", "--tta", "flip"],
    ],
)
def test_eval_and_predict_in_every_inference_mode(fpn_run, tmp_path, capsys, options):
    data, run = fpn_run
    assert (
        main(["eval", "--checkpoint", str(run / "best.pt"), "--data", str(data), "--json", "--workers", "0", *options])
        == 0
    )
    assert 0 <= json.loads(capsys.readouterr().out)["miou"] <= 1
    photo = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (97, 131, 3), dtype=np.uint8)).save(photo)
    assert (
        main(["predict", "--checkpoint", str(run / "best.pt"), str(photo), "--out", str(tmp_path / "out"), *options])
        == 0
    )
    assert Image.open(tmp_path / "out" / "photo_mask.png").size == (131, 97)


def test_tta_scales_reach_the_model(fpn_run):
    data, run = fpn_run
    base = ["eval", "--checkpoint", str(run / "best.pt"), "--data", str(data), "--device", "cpu"]
    chosen = _inference_model(build_parser().parse_args([*base, "--tta", "ms", "--tta-scales", "0.5,1,1.75"]))
    assert chosen.inference == InferenceMode(tta="ms", scales=(0.5, 1.0, 1.75))
    assert _inference_model(build_parser().parse_args([*base, "--tta", "ms"])).inference.scales == MS_SCALES
    flipped = _inference_model(build_parser().parse_args([*base, "--tta", "ms+flip", "--tta-scales", "0.75"]))
    assert flipped.inference == InferenceMode(tta="ms+flip", scales=(0.75,))


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--model", "fcn8s", "--encoder", "mit_b0"], "model fcn8s has no encoder 'mit_b0'; choose one of"),
        (["train", "--model", "segformer", "--encoder", "resnet101"], "choose one of mit_b0, mit_b1, mit_b2, resnet18"),
        (["eval", "--checkpoint", "x.pt", "--data", "d", "--sliding-window", "0x5"], "sizes must be positive"),
        (["eval", "--checkpoint", "x.pt", "--data", "d", "--sliding-window", "1x1"], "sides must be at least 32"),
        (["predict", "--checkpoint", "x.pt", "p.jpg", "--out", "o", "--sliding-window", "64"], "expected HxW"),
        (["eval", "--checkpoint", "x.pt", "--data", "d", "--overlap", "0.95"], "--overlap: must be between 0 and 0.9"),
        (["eval", "--checkpoint", "x.pt", "--data", "d", "--overlap", "nan"], "--overlap: must be between 0 and 0.9"),
        (["predict", "--checkpoint", "x.pt", "p.jpg", "--out", "o", "--tta", "rotate"], "invalid choice: 'rotate'"),
        (["eval", "--checkpoint", "x.pt", "--data", "d", "--tta-scales", "1,x"], "expected a number, got 'x'"),
        (["eval", "--checkpoint", "x.pt", "--data", "d", "--tta-scales", "1,3"], "between 0.25 and 2, got 3.0"),
        (["eval", "--checkpoint", "x.pt", "--data", "d", "--tta-scales", "nan"], "between 0.25 and 2, got nan"),
        (["eval", "--checkpoint", "x.pt", "--data", "d", "--tta-scales", "1,1.0"], "scales must differ"),
        (["eval", "--checkpoint", "x.pt", "--data", "d", "--tta-scales", ",".join(["1"] * 5000)], "at most 8 scales"),
        (["eval", "--checkpoint", "x.pt", "--data", "d", "--tta-scales", "1,"], "expected a number, got ''"),
        (["train", "--precision", "fast"], "invalid choice: 'fast'"),
        (["train", "--loss", "dice+focal"], "invalid choice: 'dice+focal'"),
        (["models", "--classes", "100000"], "--classes: must be in 1..254, got 100000"),
    ],
)
def test_bad_model_arguments_give_one_line_and_exit_2(argv, message, capsys):
    try:
        code = main(argv)
    except SystemExit as stop:
        code = stop.code
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_bad_model_choices_fail_before_any_training(fpn_run, tmp_path, capsys):
    data, run = fpn_run
    base = ["train", "--data", str(data), *TINY]
    cases = [
        (
            ["--out", str(tmp_path / "a"), "--encoder-weights", str(tmp_path / "missing.pth")],
            "missing.pth: resnet18 weights file not found",
        ),
        (
            ["--out", str(tmp_path / "a"), "--encoder-weights", str(tmp_path)],
            f"{tmp_path}: resnet18 weights file is a folder",
        ),
        (
            ["--out", str(tmp_path / "b"), "--model", "deeplabv3plus", "--batch-size", "1"],
            "deeplabv3plus trains on at least 2 images per step",
        ),
        (
            ["--out", str(tmp_path / "c"), "--model", "unet", "--encoder-weights", str(run / "best.pt")],
            "expected a resnet18 state dict of tensors",
        ),
        (
            ["eval", "--checkpoint", str(run / "best.pt"), "--data", str(data), "--overlap", "0.5"],
            "--overlap sets how --sliding-window's windows overlap; add --sliding-window",
        ),
        (
            ["eval", "--checkpoint", str(run / "best.pt"), "--data", str(data), "--tta-scales", "1.5"],
            "--tta-scales sets the sizes --tta ms and ms+flip average; add one of them",
        ),
    ]
    torch.save({"conv1.weight": torch.zeros(3)}, tmp_path / "small.pth")
    cases.append(
        (
            ["--out", str(tmp_path / "d"), "--encoder-weights", str(tmp_path / "small.pth")],
            "small.pth: not resnet18 weights (missing [",
        )
    )
    for options, message in cases:
        argv = options if options[0] == "eval" else base + options
        assert main(argv) == 2, options
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
    assert not any((tmp_path / name).exists() for name in "abcd"), "nothing written before the refusal"

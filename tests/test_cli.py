"""End-to-end: the command line on a tiny synthetic dataset."""

import csv
import importlib
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from pixelwise.cli import main, settings_as_flags
from pixelwise.config import TrainConfig
from pixelwise.photo_files import expand_inputs
from pixelwise.errors import PixelwiseError

TINY_TRAIN = ["--epochs", "2", "--batch-size", "4", "--crop-size", "48x48", "--workers", "0", "--quiet", "--device",
    "cpu", "--lr", "0.01", "--warmup-epochs", "0"]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A 2-epoch run on a tiny synthetic dataset: (data folder, run folder, printed output)."""
    base = tmp_path_factory.mktemp("cli")
    assert main(["data", "synth", "--out", str(base / "data"), "--num-train", "24", "--num-val", "4", "--classes",
        "3", "--min-size", "40", "--max-size", "64"]) == 0
    assert main(["train", "--data", str(base / "data"), "--out", str(base / "run"), "--model", "fcn32s",
        *TINY_TRAIN]) == 0
    return base / "data", base / "run"


def test_train_writes_the_run_directory_and_loss_goes_down(trained_run):
    _, run = trained_run
    assert {"config.json", "metrics.csv", "curves.png", "last.pt", "best.pt"} <= {p.name for p in run.iterdir()}
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert float(rows[1]["loss"]) < float(rows[0]["loss"])
    assert {"lr", "pixel_accuracy", "miou", "iou_background", "seconds", "images_per_second"} <= set(rows[0])
    assert json.loads((run / "config.json").read_text())["model"] == "fcn32s"


def test_eval_prints_table_and_json(trained_run, capsys):
    data, run = trained_run
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(run / "best.pt"), "--data", str(data), "--split", "val", "--workers",
        "0"]) == 0
    table = capsys.readouterr().out
    assert "mIoU" in table and "pixel accuracy" in table and "striped square" in table
    assert main(["eval", "--checkpoint", str(run / "best.pt"), "--data", str(data), "--json", "--workers", "0"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert 0 <= result["pixel_accuracy"] <= 1 and set(result["iou"]) == {"background", "gridded disk", "striped square"}
    saved = list(csv.DictReader(open(run / "metrics.csv")))
    best = max(float(r["miou"]) for r in saved)
    assert result["miou"] == pytest.approx(best, abs=1e-4), "eval reproduces the best epoch's validation mIoU"


def test_precision_reaches_the_network_in_train_eval_and_predict(trained_run, tmp_path, monkeypatch, capsys):
    engine, segmenter, device = (
        importlib.import_module(f"pixelwise.{name}") for name in ("engine", "segmenter", "device")
    )
    monkeypatch.setattr(device, "_cpu_has_bf16_units", lambda: False)  # bf16 emulated: warned of, still honoured
    emulated = "warning: this CPU has no bfloat16 units (AVX-512 BF16 or AMX): bf16 is emulated"
    seen = []
    real_autocast = engine.autocast

    def recording_autocast(device, precision):
        seen.append(precision)
        return real_autocast(device, precision)

    monkeypatch.setattr(engine, "autocast", recording_autocast)
    monkeypatch.setattr(segmenter, "autocast", recording_autocast)
    data, run = trained_run
    one_epoch = ["--epochs", "1", *TINY_TRAIN[2:]]
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "run"), "--model", "fcn32s", *one_epoch,
        "--precision", "bf16"]) == 0
    assert "bf16" in seen and "fp32" in seen, "bf16 training steps, fp32 validation"
    assert emulated in capsys.readouterr().out
    results = {}
    for precision in ("fp32", "bf16"):
        seen.clear()
        assert main(["eval", "--checkpoint", str(run / "best.pt"), "--data", str(data), "--json", "--workers", "0",
            "--precision", precision]) == 0
        assert set(seen) == {precision}
        printed = capsys.readouterr()
        assert (emulated in printed.err) == (precision == "bf16")
        results[precision] = json.loads(printed.out)
    assert results["bf16"]["pixel_accuracy"] == pytest.approx(results["fp32"]["pixel_accuracy"], abs=0.02)
    seen.clear()
    Image.new("RGB", (40, 30), (90, 20, 200)).save(tmp_path / "photo.jpg")
    assert main(["predict", "--checkpoint", str(run / "best.pt"), str(tmp_path / "photo.jpg"), "--out",
        str(tmp_path / "out"), "--device", "cpu", "--precision", "bf16"]) == 0
    assert seen == ["bf16"] and emulated in capsys.readouterr().err


def test_predict_writes_masks_overlays_and_blur_for_any_image(trained_run, tmp_path, capsys):
    _, run = trained_run
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (33, 71, 3), dtype=np.uint8)).save(photos / "odd.jpg")
    Image.new("L", (50, 40), 128).save(photos / "gray.png")
    Image.new("RGBA", (30, 60), (10, 200, 30, 128)).save(photos / "rgba.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees to display
    Image.new("RGB", (44, 26), (90, 20, 200)).save(photos / "rotated.jpg", exif=exif)
    out = tmp_path / "out"
    code = main(["predict", "--checkpoint", str(run / "best.pt"), str(photos), "--out", str(out), "--blur-background",
        "--device", "cpu"])
    assert code == 0
    for stem, size in (("odd", (71, 33)), ("gray", (50, 40)), ("rgba", (30, 60)), ("rotated", (26, 44))):
        mask = Image.open(out / f"{stem}_mask.png")
        assert mask.mode == "P" and mask.size == size
        assert np.asarray(mask).max() < 3
        assert Image.open(out / f"{stem}_blur.jpg").size == size
        overlay = Image.open(out / f"{stem}_overlay.jpg")
        assert overlay.width >= size[0], "as wide as the legend's names need"
        assert overlay.height > size[1], "legend below the photo"


def test_predict_reports_unreadable_files_and_goes_on(trained_run, tmp_path, capsys):
    _, run = trained_run
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    Image.new("RGB", (40, 30)).save(tmp_path / "fine.jpg")
    os.mkfifo(tmp_path / "pipe")
    code = main(["predict", "--checkpoint", str(run / "best.pt"), str(tmp_path / "*.jpg"),
        str(tmp_path / "absent.jpg"), str(tmp_path / "pipe"), "--out", str(tmp_path / "out")])
    assert code == 1
    assert (tmp_path / "out" / "fine_mask.png").is_file()
    errors = capsys.readouterr().err
    assert "broken.jpg: cannot decode image" in errors and "absent.jpg: no such file or folder" in errors
    assert "pipe: neither a file nor a folder" in errors
    (tmp_path / "pipe").unlink()  # the folder is read as input below
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "moved.jpg").symlink_to(tmp_path / "gone.jpg")
    (tmp_path / "loop.jpg").symlink_to("loop.jpg")
    for named in (str(tmp_path), str(tmp_path / "*o*.jpg")):  # a folder, a pattern
        assert main(["predict", "--checkpoint", str(run / "best.pt"), named, "--out", str(tmp_path / "out")]) == 1
        errors = capsys.readouterr().err
        assert f"moved.jpg: broken link (to {tmp_path}/gone.jpg)" in errors and "loop.jpg: link loop" in errors
    (tmp_path / "moved.jpg").unlink()
    (tmp_path / "loop.jpg").unlink()
    assert main(["predict", "--checkpoint", str(run / "best.pt"), str(tmp_path / "empty.jpg"), "--out",
        str(tmp_path / "out")]) == 1
    assert "empty.jpg: empty file (0 bytes), not an image" in capsys.readouterr().err


def test_inputs_are_folders_files_and_recursive_patterns(tmp_path):
    photos, nested, empty = tmp_path / "photos", tmp_path / "photos" / "day" / "evening", tmp_path / "empty"
    nested.mkdir(parents=True)
    (empty / "sub").mkdir(parents=True)
    for path in (photos / "top.jpg", nested / "deep.png", empty / "sub" / "x.jpg"):
        Image.new("RGB", (4, 4)).save(path)
    (photos / "notes.txt").write_text("")
    found, problems = expand_inputs([str(photos), str(photos / "**" / "*.png"), str(empty)])
    assert found == [photos / "top.jpg", nested / "deep.png"]
    assert problems == [(str(empty), f"folder holds no images (subfolders are not searched; '{empty}/**/*.jpg' is)")]


def test_predict_into_its_own_input_folder_does_not_segment_its_outputs_again(trained_run, tmp_path, capsys):
    _, run = trained_run
    Image.new("RGB", (40, 30)).save(tmp_path / "a.jpg")
    argv = ["predict", "--checkpoint", str(run / "best.pt"), str(tmp_path), "--out", str(tmp_path), "--blur-background"]
    assert main(argv) == 0 and main(argv) == 0
    assert "skipping 3 file(s) in" in capsys.readouterr().out
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a.jpg", "a_blur.jpg", "a_mask.png", "a_overlay.jpg"]


def test_predict_keep_names_must_be_classes(trained_run, tmp_path, capsys):
    _, run = trained_run
    Image.new("RGB", (40, 30)).save(tmp_path / "a.jpg")
    assert main(["predict", "--checkpoint", str(run / "best.pt"), str(tmp_path / "a.jpg"), "--out", str(tmp_path),
        "--blur-background", "--keep", "person"]) == 2
    assert "unknown class 'person'; the model knows background, gridded disk, striped square" in capsys.readouterr().err
    assert main(["predict", "--checkpoint", str(run / "best.pt"), str(tmp_path / "a.jpg"), "--out", str(tmp_path),
        "--blur-background", "--keep", "background,"]) == 2
    assert "--keep: expected class names separated by commas, got 'background,'" in capsys.readouterr().err


def test_predict_into_an_unwritable_folder_is_one_line(trained_run, tmp_path, capsys):
    _, run = trained_run
    Image.new("RGB", (40, 30)).save(tmp_path / "a.jpg")
    (tmp_path / "file").write_text("")
    assert main(["predict", "--checkpoint", str(run / "best.pt"), str(tmp_path / "a.jpg"), "--out",
        str(tmp_path / "file" / "out")]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path}/file: a file where a folder goes: move it" in err and len(err.strip().splitlines()) == 1
    assert main(["predict", "--checkpoint", str(run / "best.pt"), str(tmp_path / "a.jpg"), "--out",
        "/proc/pixelwise-out"]) == 2
    err = capsys.readouterr().err
    assert "/proc/pixelwise-out: cannot write predictions (" in err and len(err.strip().splitlines()) == 1


def test_resume_continues_from_last_checkpoint(trained_run, tmp_path):
    data, run = trained_run
    import shutil

    resumed = shutil.copytree(run, tmp_path / "resumed")
    assert main(["train", "--resume", str(resumed), "--epochs", "3", "--quiet"]) == 0
    rows = list(csv.DictReader(open(resumed / "metrics.csv")))
    original = list(csv.DictReader(open(run / "metrics.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert rows[:2] == original, "the history before the resume is kept as it was"


def test_a_new_run_refuses_a_directory_with_an_earlier_run(trained_run, capsys):
    data, run = trained_run
    before = (run / "best.pt").read_bytes()
    assert main(["train", "--data", str(data), "--out", str(run), *TINY_TRAIN]) == 2
    expected = f"{run}: holds an earlier run; continue it with --resume {run}, or give another --out"
    assert expected in capsys.readouterr().err
    assert (run / "best.pt").read_bytes() == before


def test_a_folder_with_best_pt_alone_is_not_offered_for_a_resume(trained_run, tmp_path, capsys):
    data, run = trained_run
    kept = tmp_path / "best-only"
    kept.mkdir()
    for name in ("best.pt", "config.json", "metrics.csv"):
        shutil.copy(run / name, kept / name)
    assert main(["train", "--data", str(data), "--out", str(kept), *TINY_TRAIN]) == 2
    error = capsys.readouterr().err
    assert f"{kept}: holds an earlier run's best.pt, without the last.pt a resume needs; give another --out" in error
    assert "--resume" not in error
    assert sorted(path.name for path in kept.iterdir()) == ["best.pt", "config.json", "metrics.csv"]


def test_resuming_a_finished_run_trains_nothing_and_cannot_shorten_it(trained_run, tmp_path, capsys):
    _, run = trained_run
    import shutil

    finished = shutil.copytree(run, tmp_path / "finished")
    before = (finished / "last.pt").read_bytes()
    assert main(["train", "--resume", str(finished), "--epochs", "1"]) == 2
    assert "has finished 2 epochs; 1 would shorten it" in capsys.readouterr().err
    assert main(["train", "--resume", str(finished), "--quiet"]) == 0
    assert "has finished its 2 epochs: nothing to train (12 epochs would add 10)" in capsys.readouterr().out
    assert (finished / "last.pt").read_bytes() == before
    assert json.loads((finished / "config.json").read_text())["epochs"] == 2


@pytest.mark.parametrize(
    "classes, message",
    [
        ("gridded disk,pole",
            "--copy-paste: unknown class 'pole'; the data's classes are background, gridded disk, striped square"),
        ("gridded disk,,striped square", "--copy-paste: expected class names separated by commas, got 'gridded disk,,"),
        (",", "--copy-paste: expected class names separated by commas, got ','"),
        ("gridded disk, gridded disk", "--copy-paste: names 'gridded disk' twice"),
    ],
)  # fmt: skip
def test_pasting_names_that_are_not_the_datas_classes_is_refused_before_the_labels_are_read(trained_run, tmp_path,
        capsys, classes, message):  # fmt: skip
    import shutil

    data = shutil.copytree(trained_run[0], tmp_path / "data")
    next((data / "VOCdevkit" / "VOC2012" / "SegmentationClass").glob("*.png")).write_bytes(b"not a png")
    argv = ["train", "--data", str(data), "--out", str(tmp_path / "run"), "--copy-paste", classes]
    assert main([*argv, *TINY_TRAIN]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, "named before the broken label is met"
    assert not (tmp_path / "run").exists()


def test_data_show_draws_samples_and_crops(trained_run, tmp_path):
    data, _ = trained_run
    assert main(["data", "show", str(data), "--n", "3", "--out", str(tmp_path / "preview.png")]) == 0
    preview = Image.open(tmp_path / "preview.png")
    assert preview.height > 2 * 160
    assert main(["data", "show", str(data), "--crops", "4", "--crop-size", "30x40", "--out",
        str(tmp_path / "crops.png")]) == 0
    assert Image.open(tmp_path / "crops.png").width >= 4 * 160 * 40 // 30


def test_data_show_crops_are_drawn_as_training_draws_them(trained_run, tmp_path, monkeypatch):
    import pixelwise.visualize as visualize
    from pixelwise.data.class_paste import ClassPaste
    from pixelwise.data.transforms import IMAGENET_MEAN
    from pixelwise.training import training_transform

    data, _ = trained_run
    calls, show_crops = [], visualize.show_crops
    monkeypatch.setattr(visualize, "show_crops", lambda *args: calls.append(args) or show_crops(*args))
    argv = ["data", "show", str(data), "--crops", "2", "--out", str(tmp_path / "crops.png")]
    assert main(argv) == 0
    assert main([*argv, "--crop-size", "30x40", "--scale-range", "0.5", "2", "--color-jitter", "0.3",
        "--copy-paste", "striped square,gridded disk"]) == 0  # fmt: skip
    (plain_data, *_, plain), (pasted_data, *_, augmented) = calls
    assert plain_data.paste is None and pasted_data.paste == ClassPaste((2, 1))

    def settings(crop):
        return crop.crop_size, crop.scale_range, crop.hflip, crop.jitter and crop.jitter.brightness

    assert settings(plain) == settings(training_transform(TrainConfig()))
    assert settings(augmented) == ((30, 40), (0.5, 2.0), True, pytest.approx((0.7, 1.3)))
    tiny = ["--crops", "1", "--crop-size", "256x256", "--scale-range", "0.1", "0.1"]  # a few pixels of photo
    assert main(["data", "show", str(data), *tiny, "--out", str(tmp_path / "tiny.png")]) == 0
    corner = Image.open(tmp_path / "tiny.png").convert("RGB").getpixel((2, 2))
    assert corner == tuple(round(255 * mean) for mean in IMAGENET_MEAN), "padded in the mean colour, as in training"


@pytest.mark.parametrize(
    "options, message",
    [
        (["--crops", "2", "--color-jitter", "2"], "--color-jitter must be at least 0 and at most 1, got 2.0"),
        (["--crops", "2", "--scale-range", "2", "1"], "0 < low <= high <= 16.0, got (2.0, 1.0)"),
        (["--crops", "2", "--scale-range", "1", "100"], "0 < low <= high <= 16.0, got (1.0, 100.0)"),
        (
            ["--color-jitter", "0.2"],
            "--color-jitter is for --crops N only, and without it data show draws whole photos: add --crops N or leave "
            "it out",
        ),
        (["--index", "3", "--seed", "1"], "--index, --seed are for --crops N only, and without it data show"),
        (["--copy-paste", "pole"], "--copy-paste is for --crops N only, and without it data show draws whole"),
        (["--crops", "2", "--n", "3"], "--n counts whole photos and --crops N crops of one photo: give one"),
    ],
)
def test_data_show_refuses_what_training_would_refuse_and_options_it_would_ignore(options, message, tmp_path, capsys):
    assert main(["data", "show", str(tmp_path / "absent"), "--out", str(tmp_path / "p.png"), *options]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "p.png").exists()


@pytest.mark.parametrize("index", ["-1", "28"])
def test_data_show_names_a_photo_index_outside_the_split(trained_run, index, tmp_path, capsys):
    data, _ = trained_run
    assert main(["data", "show", str(data), "--crops", "1", "--index", index, "--out", str(tmp_path / "p.png")]) == 2
    assert f"photo index {index} is outside the split (0..23)" in capsys.readouterr().err


def test_data_show_replaces_its_own_picture_but_not_a_users_file(trained_run, tmp_path, capsys):
    data, _ = trained_run
    argv = ["data", "show", str(data), "--n", "1", "--out", str(tmp_path / "preview.jpg")]
    assert main(argv) == 0 and main(argv) == 0
    (tmp_path / "notes.png").write_text("mine")
    assert main([*argv[:-1], str(tmp_path / "notes.png")]) == 2
    assert "notes.png: a file that pixelwise did not write is where an output goes" in capsys.readouterr().err
    assert (tmp_path / "notes.png").read_text() == "mine"
    assert main([*argv[:-1], str(tmp_path / "notes.png"), "--overwrite"]) == 0
    assert Image.open(tmp_path / "notes.png").format == "PNG"
    for name in ("p.gif", "p.tif", "p.jpe"):
        assert main([*argv[:-1], str(tmp_path / name)]) == 0 and main([*argv[:-1], str(tmp_path / name)]) == 0, name
    assert main([*argv[:-1], str(tmp_path / "p.bmp")]) == 0 and main([*argv[:-1], str(tmp_path / "p.bmp")]) == 2
    assert "p.bmp: a .bmp file (no room for its mark) is where an output goes" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--crop-size", "big"], "expected HxW"),
        (["train", "--copy-paste", " "], "empty argument after --copy-paste"),
        (["train", "--epochs", "0"], "must be at least 1"),
        (["train", "--model", "unet++"], "invalid choice"),
        (["train", "--loss", "bce"], "invalid choice"),
        (["train", "--precision", "fp16"], "invalid choice"),
        (["train", "--decode-on", "gpu"], "invalid choice"),
        (["train", "--workers", "-1"], "--workers: must be in 0..256, got -1"),
        (["eval", "--checkpoint", "c.pt", "--data", "x", "--workers", "-1"], "--workers: must be in 0..256, got -1"),
        (["data", "synth", "--out", "x", "--num-val", "two"], "expected a whole number, got 'two'"),
        (["eval", "--data", "x"], "required: --checkpoint"),
        (["frobnicate"], "invalid choice"),
        (["--bogus"], "unrecognized option --bogus before the command"),
        (["train", "--lr", "1_0"], "--lr: expected a number, got '1_0'"),
        (["train", "--ema-decay", "0.99x"], "--ema-decay: expected a number, got '0.99x'"),
        (["train", "--epochs", "\u0663"], "--epochs: expected a whole number"),
        (["train", "--crop-size", "\u0661x\u0661"], "expected HxW"),
        (["--bogus", "train"], "unrecognized option --bogus before the command"),
        (["train", "--seed", "99999999999999999999999"], "--seed: must be in 0..9223372036854775807"),
        (["data", "show", "x", "--out", "preview"], "'preview' does not end in a picture extension"),
        (["data", "show", "x", "--out", "preview.xyz"], "'preview.xyz' does not end in a picture extension"),
        (["data", "show", "x", "--out", "p.png/"], "--out: 'p.png/' names a folder (it ends in /); name the file"),
        (["export", "--checkpoint", "c.pt", "--out", "m.onnx/"], "'m.onnx/' names a folder (it ends in /)"),
        (["data", "show", "x", "--out", "p.png", "--crop-size", "100000x100000"], "sides must be at most 2048"),
        (["data", "--bogus"], "unrecognized option --bogus before the data command"),
        (["data", "show", "x", "--out", "p.png", "--crops", "1000000"], "--crops: must be in 1..64"),
        (["data", "synth", "--out", "x", "--max-size", "100000"], "--max-size: must be in 1..8192"),
        (["train", "--resume", ""], "empty argument after --resume (an unset shell variable?)"),
        (["train", "--resume="], "empty value in --resume="),
        (["predict", "--checkpoint", "c.pt", "a.jpg", " "], "empty argument after a.jpg"),
    ],
)
def test_bad_arguments_give_one_line_and_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_settings_are_named_as_flags_and_quoted_text_paths_and_other_words_are_left_alone():
    settings = ["ema_decay", "decode_on", "color_jitter", "copy_paste", "crop_size", "data", "out"]
    assert settings_as_flags("ema_decay must be below 1; crop size must be two whole numbers", settings) == (
        "--ema-decay must be below 1; --crop-size must be two whole numbers"
    )
    assert settings_as_flags("color_jitter 0.2 needs decode_on='workers'; give color_jitter=0", settings) == (
        "--color-jitter 0.2 needs --decode-on='workers'; give --color-jitter=0"
    )
    untouched = [
        "copy_paste: unknown class 'ema_decay'; the data's classes are background, decode_on",
        "crop_size/x.png: cannot decode image",
        "world_size must be 1",  # a setting that is not this command's flag
        "data must be text, got 'out=1'",
    ]
    assert [settings_as_flags(line, settings) for line in untouched] == [
        "--copy-paste: unknown class 'ema_decay'; the data's classes are background, decode_on",
        *untouched[1:3],
        "--data must be text, got 'out=1'",
    ]
    assert settings_as_flags("ema_decay must be below 1", []) == "ema_decay must be below 1", "no flags: as it is"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--data", "/nonexistent/data"], "/nonexistent/data: no such dataset folder"),
        (["train", "--data", "voc2012", "--root", "/nonexistent"], "no VOC2012 tree here; download it (2 GB)"),
        (["eval", "--checkpoint", "/nonexistent.pt", "--data", "synthetic"], "/nonexistent.pt: checkpoint not found"),
        (["train", "--resume", "/nonexistent-run"], "/nonexistent-run: no such run directory to resume"),
        (["train", "--resume", "/proc/version"], "/proc/version: a file; --resume takes the run's folder"),
        (["train", "--resume", "/nonexistent-run", "--model", "fcn32s"],
            "--resume continues the run with its own settings: --model cannot change"),
        (["train", "--resume", "/nonexistent-run", "--deterministic", "--crop-size", "64x64"],
            "--crop-size cannot change"),
        (["data", "synth", "--out", "/tmp/x", "--classes", "40"], "num_classes must be in 2..21"),
        (["train", "--resume", "/nonexistent-run", "--deterministic", "--device", "cpu", "--lr", "0.1"],
            "/nonexistent-run: no such run directory to resume"),
        (["train", "--model", "unet", "--momentum", "0.5"], "--momentum is SGD's, and this run trains with adamw"),
        (["train", "--optimizer", "adamw", "--momentum", "0"], "--momentum is SGD's, and this run trains with adamw"),
        (["train", "--device", "meta", "--data", "/nonexistent"],
            "device 'meta' cannot run pixelwise; use auto, cpu, cuda or cuda:N"),
        (["train", "--device", "mps", "--data", "/nonexistent"], "device mps requested but MPS is not available"),
        (["train", "--device", "tpu", "--data", "/nonexistent"], "unknown device 'tpu'"),
        (["train", "--color-jitter", "nan", "--data", "/nonexistent"],
            "--color-jitter must be at least 0 and at most 1, got nan"),
        (["train", "--copy-paste", "pole", "--decode-on", "device", "--data", "/nonexistent"],
            "--copy-paste ['pole'] needs --decode-on='workers'"),
        (["train", "--resume", "/nonexistent-run", "--copy-paste", "pole"], "--copy-paste cannot change"),
        (["train", "--resume", "/nonexistent-run", "--ema-decay", "0.9"], "--ema-decay cannot change"),
        (["train", "--ema-decay", "1", "--data", "/nonexistent"],
            "--ema-decay must be at least 0 and below 1, got 1.0"),
        (["train", "--scale-range", "1", "inf"],
            "--scale-range must be two numbers with 0 < low <= high <= 16.0, got (1.0, inf)"),
        (["predict", "--checkpoint", "/nonexistent.pt", "a.jpg", "--out", "o", "--keep", "person"],
            "--keep chooses the classes that --blur-background keeps sharp"),
    ],
)
def test_bad_files_give_one_line_and_exit_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_unwritable_files_of_other_commands_are_one_line(trained_run, tmp_path, capsys):
    data, _ = trained_run
    (tmp_path / "file").write_text("")
    assert main(["data", "show", str(data), "--n", "2", "--out", str(tmp_path / "file" / "preview.png")]) == 2
    assert main(["data", "synth", "--out", str(tmp_path / "file" / "synth"), "--num-train", "1", "--num-val", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(f"{tmp_path}/file: a file where a folder goes" in line for line in err)


def test_unwritable_output_fails_before_training(trained_run, tmp_path, capsys):
    data, _ = trained_run
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["train", "--data", str(data), "--out", str(blocker / "run"), *TINY_TRAIN]) == 2
    assert "cannot write the run directory" in capsys.readouterr().err


def test_predict_names_outputs_by_folder_not_by_the_order_inputs_were_found(trained_run, tmp_path, capsys):
    _, run = trained_run
    images = tmp_path / "imgs"
    for folder, shade in (("a", 40), ("c", 200)):
        (images / folder).mkdir(parents=True)
        Image.new("RGB", (30, 20), (shade, shade, shade)).save(images / folder / "x.jpg")
    Image.new("RGB", (30, 20)).save(images / "c" / "x.png")  # a second photo named x in one folder
    outputs = {}
    for order in ([str(images / "**" / "*.jpg"), str(images / "c" / "x.png")], [str(images / "c" / "x.png"),
        str(images / "**" / "*.jpg")]):
        out = images / "c"  # the outputs go into one of the input folders
        assert main(["predict", "--checkpoint", str(run / "best.pt"), *order, "--out", str(out), "--device",
            "cpu"]) == 0
        outputs[tuple(order)] = sorted(str(path.relative_to(out)) for path in out.rglob("*_mask.png"))
    first, second = outputs.values()
    assert first == second == ["a/x_mask.png", "c/x.jpg_mask.png", "c/x.png_mask.png"]
    assert "skipping" in capsys.readouterr().out, "the second run found the first run's overlays under --out"


def test_predict_keeps_a_comma_separated_list_and_never_swallows_a_photo(trained_run, tmp_path):
    _, run = trained_run
    Image.new("RGB", (40, 30)).save(tmp_path / "photo.jpg")
    argv = ["predict", "--checkpoint", str(run / "best.pt"), "--blur-background", "--keep",
        "gridded disk,striped square", str(tmp_path / "photo.jpg"), "--out", str(tmp_path / "out")]
    assert main(argv) == 0
    assert (tmp_path / "out" / "photo_blur.jpg").is_file()


def test_eval_json_is_strict_json_when_metrics_are_undefined(trained_run, tmp_path, capsys):
    data, run = trained_run
    unlabelled = shutil.copytree(data, tmp_path / "data")
    for label in (unlabelled / "VOCdevkit" / "VOC2012" / "SegmentationClass").glob("*.png"):
        Image.fromarray(np.full(Image.open(label).size[::-1], 255, dtype=np.uint8)).save(label)
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(run / "best.pt"), "--data", str(unlabelled), "--json", "--workers",
        "0"]) == 0

    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")

    result = json.loads(capsys.readouterr().out, parse_constant=refuse)
    assert result["miou"] is None and result["pixel_accuracy"] is None and set(result["iou"].values()) == {None}


def test_a_zero_given_on_the_command_line_is_kept_not_replaced_by_the_default():
    from pixelwise.cli import _train_config, build_parser

    zeros = ["--warmup-epochs", "0", "--weight-decay", "0", "--momentum", "0", "--save-every-steps", "0", "--workers",
        "0", "--seed", "0"]
    config, resume = _train_config(build_parser().parse_args(["train", *zeros]))
    assert not resume
    assert (config.warmup_epochs, config.weight_decay, config.momentum, config.save_every_steps,
        config.workers) == (0, 0, 0, 0, 0)


def test_output_names_never_coincide_and_follow_the_names_given(tmp_path):
    from pixelwise.photo_files import output_names

    folder = tmp_path / "t"
    folder.mkdir()
    for name in ("x.jpg", "x.png", "x.jpg.png", "y.png"):
        Image.new("RGB", (4, 4)).save(folder / name)
    (folder / "link.jpg").symlink_to(folder / "y.png")
    paths = sorted(folder.iterdir())
    names = output_names(paths)
    assert sorted(map(str, names.values())) == ["link", "x.jpg", "x.jpg.png", "x.png", "y"]
    assert output_names(paths[::-1]) == names, "the order of the inputs does not matter"
    found, _ = expand_inputs([str(folder), str(folder / "y.png")])
    assert sorted(path.name for path in found) == ["link.jpg", "x.jpg", "x.jpg.png", "x.png",
        "y.png"], "a link is its own input; a file named twice is one"


def test_keep_names_a_class_whose_name_holds_a_comma():
    from pixelwise.cli import _keep_mask

    mask = np.array([[0, 1, 2]], dtype=np.uint8)
    names = ("background", "a,x", "b")
    assert _keep_mask(mask, names, "a,x").tolist() == [[False, True, False]]
    assert _keep_mask(mask, names, "background, b").tolist() == [[True, False, True]]
    with pytest.raises(PixelwiseError, match="^--keep: unknown class 'c'; the model knows background, a,x, b$"):
        _keep_mask(mask, names, "c")


def test_a_picture_format_pillow_cannot_write_this_in_is_one_line(trained_run, tmp_path, capsys):
    data, _ = trained_run
    assert main(["data", "show", str(data), "--n", "1", "--out", str(tmp_path / "preview.blp")]) == 2
    err = capsys.readouterr().err
    assert "preview.blp: cannot write this picture" in err and len(err.strip().splitlines()) == 1


def test_predict_replaces_a_link_at_an_output_name_instead_of_writing_through_it(trained_run, tmp_path):
    _, run = trained_run
    victim = tmp_path / "victim.txt"
    victim.write_text("mine")
    out = tmp_path / "out"
    out.mkdir()
    (out / "p_overlay.jpg").symlink_to(victim)
    Image.new("RGB", (40, 30)).save(tmp_path / "p.jpg")
    argv = ["predict", "--checkpoint", str(run / "best.pt"), str(tmp_path / "p.jpg"), "--out", str(out)]
    assert main(argv) == 2, "a link the user made is left alone unless told"
    assert main([*argv, "--overwrite"]) == 0
    assert victim.read_text() == "mine" and not (out / "p_overlay.jpg").is_symlink()


def test_keep_refuses_an_empty_or_ambiguous_list():
    from pixelwise.cli import _keep_mask

    mask = np.zeros((1, 1), dtype=np.uint8)
    with pytest.raises(PixelwiseError, match="expected class names separated by commas, got ''"):
        _keep_mask(mask, ("background", "a"), "")
    with pytest.raises(PixelwiseError, match="names one class and also the classes a, x"):
        _keep_mask(mask, ("background", "a", "x", "a,x"), "a,x")


def test_a_reader_that_stops_early_gets_no_error_message():
    environment = {name: value for name, value in os.environ.items() if name != "PYTHONUNBUFFERED"}
    command = subprocess.Popen(
        [sys.executable, "-m", "pixelwise", "models", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=environment,
    )  # fmt: skip
    command.stdout.close()  # before the command writes: its first write meets a closed pipe
    _, err = command.communicate(timeout=120)
    assert command.returncode == 1 and err == b""


def test_predict_leaves_files_it_did_not_write_alone_unless_told(trained_run, tmp_path, capsys):
    _, run = trained_run
    Image.new("RGB", (40, 30)).save(tmp_path / "cat.jpg")
    Image.new("L", (40, 30), 7).save(tmp_path / "cat_mask.png")  # the user's ground truth beside the photo
    argv = ["predict", "--checkpoint", str(run / "best.pt"), str(tmp_path), "--out", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path}/cat_mask.png: a file that pixelwise did not write is where an output goes" in err
    assert len(err.strip().splitlines()) == 1
    assert sorted(path.name for path in tmp_path.iterdir()) == ["cat.jpg", "cat_mask.png"], "nothing written"
    assert np.asarray(Image.open(tmp_path / "cat_mask.png")).max() == 7
    assert main([*argv, "--overwrite"]) == 0 and main(argv) == 0, "its own outputs are replaced without --overwrite"
    assert Image.open(tmp_path / "cat_mask.png").mode == "P"


def test_predict_refuses_a_folder_at_an_output_name_before_any_work(trained_run, tmp_path, capsys):
    _, run = trained_run
    for name in ("a", "b"):
        Image.new("RGB", (40, 30)).save(tmp_path / f"{name}.jpg")
    (tmp_path / "out" / "b_overlay.jpg").mkdir(parents=True)
    assert main(["predict", "--checkpoint", str(run / "best.pt"), str(tmp_path / "a.jpg"), str(tmp_path / "b.jpg"),
        "--out", str(tmp_path / "out"), "--overwrite"]) == 2
    assert f"{tmp_path}/out/b_overlay.jpg: a folder is where an output goes" in capsys.readouterr().err
    assert [path.name for path in (tmp_path / "out").iterdir()] == ["b_overlay.jpg"]
    (tmp_path / "sub").mkdir()
    Image.new("RGB", (40, 30)).save(tmp_path / "sub" / "c.jpg")
    (tmp_path / "out2").mkdir()
    (tmp_path / "out2" / "sub").write_text("")  # where c.jpg's outputs need a folder
    assert main(["predict", "--checkpoint", str(run / "best.pt"), str(tmp_path / "a.jpg"), str(tmp_path / "sub"),
        "--out", str(tmp_path / "out2")]) == 2
    assert f"{tmp_path}/out2/sub: a file where a folder goes" in capsys.readouterr().err
    assert [path.name for path in (tmp_path / "out2").iterdir()] == ["sub"], "a.jpg's outputs not written either"

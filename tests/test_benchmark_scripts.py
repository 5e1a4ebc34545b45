"""The benchmark scripts refuse bad input in one line, as the commands do."""

import argparse
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.parametrize(
    "script, arguments, message",
    [
        ("fine_tune.py", ["--checkpoint", "missing.pt", "--camvid", "."], "fine_tune.py: error: .: CamVid not found"),
        ("inference_modes.py", ["--checkpoint", "missing.pt", "--camvid", "."], "error: .: CamVid not found"),
        ("ensemble.py", ["--checkpoints", "a.pt", "--camvid", "."], "error: give at least two checkpoints"),
        ("ensemble.py", ["--checkpoints", "a.pt", "sub/../a.pt", "b.pt"], "error: give at least two checkpoints"),
        ("ensemble.py", ["--checkpoints", "a.pt", "b.pt", "--camvid", "."], "ensemble.py: error: .: CamVid not found"),
        ("camvid_models.py", ["--models", "fpn", "--camvid", "."], "camvid_models.py: error: .: CamVid not found"),
        ("run_epochs.py", ["nowhere"], "run_epochs.py: error: nowhere/metrics.csv: not found"),
        ("run_epochs.py", ["a", "b", "sub/../a"], "run_epochs.py: error: a run folder is given twice"),
    ],
)
def test_a_refusal_is_one_line_not_a_traceback(tmp_path, script, arguments, message):
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *arguments], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 1 and done.stderr.strip().splitlines() == [done.stderr.strip()], done.stderr
    assert message in done.stderr


def class_table(folder: Path, names: list[str]) -> Path:
    """`folder` made a folder dataset's skeleton: classes.csv naming `names`, empty images/ and labels/."""
    for part in ("images", "labels"):
        (folder / part).mkdir(parents=True)
    rows = "".join(f"{index},{name},{index},{index},{index}\n" for index, name in enumerate(names))
    (folder / "classes.csv").write_text("index,name,r,g,b\n" + rows)
    return folder


BAD_SETTINGS = [
    (["--weight-decay", "5"], "weight_decay must be at least 0 and at most 1, got 5.0"),
    (["--color-jitter", "nan"], "color_jitter must be at least 0 and at most 1, got nan"),
    (["--copy-paste", "pole,signs"], "copy_paste: unknown class 'signs'; the data's classes are pole, sign"),
    (["--copy-paste", ""], "copy_paste: expected class names separated by commas, got ''"),
    (["--ema-decay", "1"], "ema_decay must be at least 0 and below 1, got 1.0"),
]


@pytest.mark.parametrize(
    "option, message",
    [
        *BAD_SETTINGS,
        (["--models", "fpn", "lraspp", "--encoder", "resnet34"],
            "camvid_models.py: error: model lraspp has no encoder 'resnet34'; choose one of mobilenet_v3_large"),
    ],
)  # fmt: skip
def test_camvid_models_refuses_a_bad_setting_before_making_its_folder(tmp_path, option, message):
    camvid = class_table(tmp_path / "camvid", ["pole", "sign"])
    command = [sys.executable, str(BENCHMARKS / "camvid_models.py"), "--models", "fpn", "--camvid", str(camvid),
               "--out", str(tmp_path / "out"), *option]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert message in done.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("option, message", BAD_SETTINGS)
def test_fine_tune_refuses_a_bad_setting_before_measuring_its_start(monkeypatch, tmp_path, option, message):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import fine_tune
    from common import run_script

    monkeypatch.setattr(fine_tune, "checkpoint_model", lambda path: ("fpn", "resnet18"))
    monkeypatch.setattr(fine_tune, "val_metrics", lambda *args: pytest.fail("measured the start"))
    monkeypatch.setattr(sys, "argv", ["fine_tune.py", "--checkpoint", str(tmp_path / "start.pt"), "--camvid",
        str(class_table(tmp_path / "camvid", ["pole", "sign"])), "--out", str(tmp_path / "out"), *option])  # fmt: skip
    with pytest.raises(SystemExit) as stop:
        run_script(fine_tune.main)
    assert message in str(stop.value.code)
    assert not (tmp_path / "out").exists()


def test_class_errors_labels_tell_checkpoints_of_same_named_runs_apart(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    from class_errors import distinct_labels

    paths = [tmp_path / "a" / "run" / "last.pt", tmp_path / "b" / "run" / "last.pt", tmp_path / "c" / "best.pt"]
    expected = ["a/run/last.pt", "b/run/last.pt", f"{tmp_path.name}/c/best.pt"]  # one depth for all
    assert distinct_labels([str(path) for path in paths]) == expected
    assert distinct_labels([str(paths[2])]) == ["c/best.pt"]


def test_camvid_models_keys_a_run_on_another_encoder_apart(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    from camvid_models import model_key

    assert model_key("fpn", None) == model_key("fpn", "resnet18") == "fpn"  # the default keeps the old key
    assert model_key("fpn", "resnet34") == "fpn-resnet34"


def test_a_jittered_decayed_pasted_or_averaged_run_is_keyed_apart_and_gets_its_settings(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    from common import add_camvid_run_arguments, run_variant

    parser = argparse.ArgumentParser()
    add_camvid_run_arguments(parser, "out", "runs")
    camvid = class_table(tmp_path / "camvid", ["pole", "sign", "traffic light"])
    variant = lambda *argv: run_variant(parser.parse_args(argv), camvid)  # noqa: E731
    assert variant() == ("", {"color_jitter": 0.0}), "runs without them keep their old keys and the recipe's decay"
    assert variant("--color-jitter", "0.25") == ("-jitter0.25", {"color_jitter": 0.25})
    assert variant("--weight-decay", "0.05", "--color-jitter", "0.4") == (
        "-jitter0.4-wd0.05", {"color_jitter": 0.4, "weight_decay": 0.05})  # fmt: skip
    assert variant("--weight-decay", "0") == ("-wd0", {"color_jitter": 0.0, "weight_decay": 0.0})
    assert variant("--copy-paste", "pole,sign") == (
        "-paste-pole-sign", {"color_jitter": 0.0, "copy_paste": ("pole", "sign")})  # fmt: skip
    assert variant("--copy-paste", "sign, pole") == variant("--copy-paste", "pole,sign"), "one set, one run"
    assert variant("--copy-paste", "traffic light")[0] == "-paste-traffic_light", "one word in a run's folder name"
    assert variant("--ema-decay", "0.99", "--weight-decay", "0.05") == (
        "-wd0.05-ema0.99", {"color_jitter": 0.0, "weight_decay": 0.05, "ema_decay": 0.99})  # fmt: skip


def test_camvid_models_trains_a_variant_once_and_a_changed_one_again(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import camvid_models
    from pixelwise.config import TrainConfig

    (tmp_path / "camvid").mkdir()
    (tmp_path / "camvid" / "classes.csv").write_text("name,r,g,b\n")
    decayed = camvid_models.recipe(TrainConfig(model="fpn", weight_decay=0.05))
    done = {"epochs": 60, "recipe": decayed, "iou": {}, "miou": 0.5}
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "results.json").write_text(json.dumps({"fpn-wd0.05": done}))
    trained = []
    monkeypatch.setattr(camvid_models, "train_and_measure", lambda config, camvid, key: trained.append(key) or done)
    for name in ("keep_freed_memory", "print_iou_table", "epoch_summary", "result_line", "print"):
        monkeypatch.setattr(camvid_models, name, lambda *args, **kwargs: "", raising=False)
    monkeypatch.setattr(camvid_models, "miou_figure", lambda results: SimpleNamespace(savefig=lambda path: None))
    argv = ["camvid_models.py", "--models", "fpn", "--epochs", "60", "--camvid", str(tmp_path / "camvid"), "--out",
            str(tmp_path / "out")]  # fmt: skip
    for decay in ("0.05", "0.01"):
        monkeypatch.setattr(sys, "argv", [*argv, "--weight-decay", decay])
        camvid_models.main()
    assert trained == ["fpn-wd0.01"], "the finished run with 0.05 is not trained again"


def test_camvid_models_figure_labels_clear_of_each_other_other_points_and_the_frame(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    from camvid_models import CLEARANCE, miou_figure

    points = {  # the 60-epoch runs: two pairs close together, one label long at the right edge
        "segformer": (56.2, 0.660), "fpn": (47.2, 0.626), "fcn8s": (22.5, 0.597), "unet": (48.6, 0.647),
        "deeplabv3plus": (58.3, 0.636), "fcn32s": (22.4, 0.541), "fpn-resnet34": (66.0, 0.638),
        "lraspp": (47.0, 0.594), "fpn-jitter0.4": (47.3, 0.630),
    }  # fmt: skip
    figure = miou_figure({name: {"minutes": x, "miou": y} for name, (x, y) in points.items()})
    axes = figure.axes[0]
    renderer, frame = figure.canvas.get_renderer(), axes.get_window_extent()
    labels = {text.get_text(): text.get_window_extent(renderer) for text in axes.texts}
    assert sorted(labels) == sorted(points), "one label per point"
    for name, box in labels.items():
        assert frame.contains(box.x0, box.y0) and frame.contains(box.x1, box.y1), f"{name} is cut off"
        assert not any(box.overlaps(other) for label, other in labels.items() if label != name), name
        neighbours = [axes.transData.transform(point) for label, point in points.items() if label != name]
        assert not any(box.padded(CLEARANCE).contains(*marker) for marker in neighbours), f"{name} reads as another's"


def test_ensemble_averages_the_members_probabilities_and_refuses_other_classes(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import torch
    from common import untrained_segmenter
    from ensemble import ensemble

    from pixelwise.errors import PixelwiseError

    first, second = untrained_segmenter("fcn8s", 3).eval(), untrained_segmenter("fpn", 3).eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        expected = (first(x).softmax(dim=1) + second(x).softmax(dim=1)) / 2
        averaged = ensemble([first, second]).network(x).softmax(dim=1)
    assert torch.allclose(averaged, expected, atol=1e-5) and not torch.allclose(averaged, first(x).softmax(dim=1))
    with pytest.raises(PixelwiseError, match="different classes"):
        ensemble([first, untrained_segmenter("fpn", 4)])
    second.mean = (0.5, 0.5, 0.5)
    with pytest.raises(PixelwiseError, match="normalise their input differently"):
        ensemble([first, second])


def test_result_line_keys_are_identifiers_whatever_the_run_keys_hold(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    from common import result_line

    line = result_line(**{"fpn-wd0.05_miou": 0.62149, "ce+dice-whole-ema0.99_miou": 0.6641, "note": "x.y"})
    assert line == "RESULT fpn_wd0_05_miou=0.6215 ce_dice_whole_ema0_99_miou=0.6641 note=x.y"


def test_inference_modes_averages_each_mode_over_the_checkpoints(monkeypatch, tmp_path, capsys):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import inference_modes
    from common import run_script

    def fake_model(path):
        model = SimpleNamespace(model_name="fpn", model_record={"encoder": "resnet18"}, pole=float(path[-4]) / 10)
        model.set_inference = lambda **settings: setattr(model, "tta", settings["tta"])
        model.for_inference = lambda: model
        return model

    def fake_row(model, camvid, precision):  # a pole of 0.1 or 0.3 (by checkpoint), 0.1 more with flip
        pole = model.pole + (0.1 if model.tta == "flip" else 0.0)
        return {"miou": 0.5 + pole, "pixel_accuracy": 0.9, "pole": pole, "sign": 0.2}, "row"

    monkeypatch.setattr(inference_modes, "load_model", fake_model)
    monkeypatch.setattr(inference_modes, "val_row", fake_row)
    camvid = class_table(tmp_path / "camvid", ["pole", "sign"])
    monkeypatch.setattr(sys, "argv", ["inference_modes.py", "--checkpoint", "a1.pt", "b3.pt", "--camvid", str(camvid)])
    run_script(inference_modes.main)
    printed = capsys.readouterr().out.splitlines()
    means = {line[:24].strip(): line[24:].split() for line in printed[printed.index("mean of 2 checkpoints") + 1 :]}
    assert means["plain"] == ["0.700", "0.900", "0.200", "0.200"]
    assert means["flip"] == ["0.800", "0.900", "0.300", "0.200"]
    assert printed[-1].startswith("RESULT plain=0.7 flip=0.8 ms=0.7 ")


def test_inference_modes_refuses_a_bad_checkpoint_before_scoring_any(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import inference_modes
    from common import run_script

    from pixelwise.errors import CheckpointError

    def load(path):
        if path == "bad.pt":
            raise CheckpointError(f"{path}: not a pixelwise checkpoint")
        return SimpleNamespace(for_inference=lambda: None)

    monkeypatch.setattr(inference_modes, "load_model", load)
    monkeypatch.setattr(inference_modes, "checkpoint_modes", lambda *args: pytest.fail("scored a checkpoint"))
    camvid = class_table(tmp_path / "camvid", ["pole", "sign"])
    arguments = ["--checkpoint", "good.pt", "bad.pt", "--camvid", str(camvid)]
    monkeypatch.setattr(sys, "argv", ["inference_modes.py", *arguments])
    with pytest.raises(SystemExit) as stop:
        run_script(inference_modes.main)
    assert stop.value.code == "inference_modes.py: error: bad.pt: not a pixelwise checkpoint"


def write_metrics(run: Path, rows: list[dict]) -> Path:
    """A run folder whose metrics.csv holds `rows` (the columns training writes that the summary reads)."""
    run.mkdir()
    lines = ["epoch,miou,iou_pole,iou_sign,seconds"] + [
        f"{epoch},{row['miou']},{row['pole']},{row.get('sign', 0.3)},{row.get('seconds', 60)}"
        for epoch, row in enumerate(rows, 1)
    ]
    (run / "metrics.csv").write_text("\n".join(lines) + "\n")
    return run


def test_run_epochs_summarises_each_run_and_averages_their_last_epochs(monkeypatch, tmp_path, capsys):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import run_epochs

    first = write_metrics(tmp_path / "seed0", [{"miou": 0.5 + epoch / 100, "pole": epoch / 100} for epoch in range(7)])
    second = write_metrics(tmp_path / "seed1", [{"miou": 0.7, "pole": 0.2, "seconds": 120}] * 3)
    monkeypatch.setattr(sys, "argv", ["run_epochs.py", str(first), str(second)])
    run_epochs.main()
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == (  # the last five of seven epochs: 0.52 to 0.56; best the last
        f"{first}: val mIoU 0.540 as the mean of its last 5 epochs (mIoU 0.520 to 0.560, pole 0.020 to 0.060, "
        "sign 0.300 to 0.300), best 0.560 at epoch 7 of 7; 7.0 minutes of training (the epochs' seconds, "
        "without validation)"
    )
    assert f"{second}: val mIoU 0.700 as the mean of its last 3 epochs" in printed[1]
    assert printed[2] == "mean of 2 runs' last epochs: mIoU 0.630, pole 0.130, sign 0.300; 6.5 minutes of training"
    assert printed[3] == "RESULT miou=0.63 iou_pole=0.13 iou_sign=0.3 training_minutes=6.5"


def test_run_epochs_refuses_a_file_that_is_not_a_runs_metrics(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import run_epochs
    from common import run_script

    good = write_metrics(tmp_path / "good", [{"miou": 0.5, "pole": 0.1}])
    broken = write_metrics(tmp_path / "broken", [{"miou": 0.5, "pole": 0.1}, {"miou": "nan%", "pole": 0.1}])
    other = tmp_path / "other"
    other.mkdir()
    (other / "metrics.csv").write_text("step,loss\n1,0.5\n")
    unread = "not a metrics.csv of finished epochs with their mIoU and seconds"
    for run, message in ((broken, "line 3: could not convert string to float: 'nan%'"), (other, unread)):
        monkeypatch.setattr(sys, "argv", ["run_epochs.py", str(good), str(run)])
        with pytest.raises(SystemExit) as stop:
            run_script(run_epochs.main)
        assert stop.value.code == f"run_epochs.py: error: {run / 'metrics.csv'}: {message}"
    assert run_epochs.epoch_summary("other", other / "metrics.csv").startswith("other: ")

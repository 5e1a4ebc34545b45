"""Interrupted, diverging, disk-full and bad-sample runs: each a named outcome."""

import csv
import errno
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

import pixelwise.checkpoint
import pixelwise.files
import pixelwise.engine
from pixelwise import TrainConfig, train
from pixelwise.checkpoint import load_checkpoint
from pixelwise.cli import main
from pixelwise.errors import TrainingError

TINY = ["--epochs", "3", "--batch-size", "4", "--crop-size", "64x64", "--lr", "0.01", "--warmup-epochs", "0",
    "--model", "fcn32s", "--quiet", "--device", "cpu", "--seed", "5"]
TIME_COLUMNS = {"seconds", "images_per_second"}


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    """24 train and 4 val synthetic images, 3 classes."""
    out = tmp_path_factory.mktemp("tiny")
    assert main(["data", "synth", "--out", str(out), "--num-train", "24", "--num-val", "4", "--classes", "3",
        "--min-size", "40", "--max-size", "72"]) == 0
    return out / "VOCdevkit" / "VOC2012"


def metrics_without_times(run_dir):
    """metrics.csv rows without the wall-clock columns."""
    with open(run_dir / "metrics.csv") as handle:
        return [{key: value for key, value in row.items() if key not in TIME_COLUMNS} for row in csv.DictReader(handle)]


def cli(*args):
    """Run the CLI in a child process (as a user would), returning the Popen."""
    return subprocess.Popen([sys.executable, "-m", "pixelwise", *args], stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)


@pytest.mark.parametrize("averaged", [False, True], ids=["trained", "averaged"])
def test_killed_run_resumes_to_the_same_weights_and_metrics(tiny_data, tmp_path, assert_same_weights, averaged):
    reference = tmp_path / "reference"
    augment = ("--color-jitter", "0.3", "--copy-paste", "gridded disk")  # their draws depend on (seed, epoch, sample)
    augment += ("--ema-decay", "0.9") if averaged else ()  # and the weights' average on every step so far
    assert cli("train", "--data", str(tiny_data), "--out", str(reference), "--workers", "0",
        *augment, *TINY).wait(timeout=300) == 0

    interrupted = tmp_path / "interrupted"
    process = cli("train", "--data", str(tiny_data), "--out", str(interrupted), "--workers", "2",
        "--save-every-steps", "2", *augment, *TINY)
    last, saves, deadline = interrupted / "last.pt", 0, time.monotonic() + 300
    seen = None
    while saves < 4 and process.poll() is None and time.monotonic() < deadline:
        stamp = last.stat().st_mtime_ns if last.exists() else None
        if stamp != seen and stamp is not None:
            seen, saves = stamp, saves + 1
        time.sleep(0.005)
    assert process.poll() is None, "the run ended before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    state = load_checkpoint(last)
    assert state["progress"] is not None, "killed after a mid-epoch checkpoint"
    assert state["epoch"] == 2 and 0 < state["progress"]["steps"] < 6

    resumed = cli("train", "--resume", str(interrupted), "--quiet")
    output = resumed.communicate(timeout=300)[0]
    assert resumed.returncode == 0, output
    assert "resuming" in output and "in epoch 2 after step" in output
    assert metrics_without_times(interrupted) == metrics_without_times(reference)
    assert_same_weights(reference / "last.pt", interrupted / "last.pt")


@pytest.mark.parametrize("decode_on", ["workers", "device"])
def test_deterministic_runs_are_identical(tiny_data, tmp_path, assert_same_weights, decode_on):
    for name in ("a", "b"):
        assert main(["train", "--data", str(tiny_data), "--out", str(tmp_path / name), "--workers", "0",
            "--deterministic", "--decode-on", decode_on, *TINY[:1], "2", *TINY[2:]]) == 0
    assert metrics_without_times(tmp_path / "a") == metrics_without_times(tmp_path / "b")
    assert_same_weights(tmp_path / "a" / "last.pt", tmp_path / "b" / "last.pt")


@pytest.fixture
def data_with_a_broken_photo(tiny_data, tmp_path):
    """A copy of the tiny tree whose training photo 000001.jpg is cut off in its pixel data (its header reads)."""
    root = shutil.copytree(tiny_data, tmp_path / "VOC2012")
    photo = root / "JPEGImages" / "000001.jpg"
    data = photo.read_bytes()
    photo.write_bytes(data[: data.index(b"\xff\xda") + 30])  # 30 bytes into the scan
    return root


@pytest.fixture
def data_with_a_broken_label(tiny_data, tmp_path):
    """A copy of the tiny tree whose training label 000002.png is cut off after its header."""
    root = shutil.copytree(tiny_data, tmp_path / "VOC2012")
    label = root / "SegmentationClass" / "000002.png"
    label.write_bytes(label.read_bytes()[:100])
    return root


def test_a_broken_label_stops_the_run_or_is_skipped_also_by_the_class_weights(data_with_a_broken_label, tmp_path,
    capsys):
    """The class weights read every label before training; the bad-sample policy applies there too."""
    run = ["train", "--data", str(data_with_a_broken_label), "--workers", "0", "--class-weighting",
        "sqrt-median-frequency", *TINY]
    assert main([*run, "--out", str(tmp_path / "stopped")]) == 2
    err = capsys.readouterr().err
    assert "000002.png" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "stopped").exists(), "stopped before the run directory was written"
    assert main([*run, "--out", str(tmp_path / "skipped"), "--on-bad-sample", "skip"]) == 0
    out = capsys.readouterr().out
    assert out.count("skipped: ") == 1 and "000002.png" in out and "skipped 1 bad sample(s), trained on 20" in out


@pytest.mark.parametrize("decode_on", ["workers", "device"])
def test_bad_sample_stops_the_run_by_default(data_with_a_broken_photo, tmp_path, capsys, decode_on):
    code = main(["train", "--data", str(data_with_a_broken_photo), "--out", str(tmp_path / "run"), "--workers", "2",
        "--decode-on", decode_on, *TINY])
    err = capsys.readouterr().err
    assert code == 2
    assert "000001.jpg: cannot decode image" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("decode_on", ["workers", "device"])
def test_skip_logs_each_bad_file_once_and_counts_it(data_with_a_broken_photo, tmp_path, capsys, decode_on):
    code = main(["train", "--data", str(data_with_a_broken_photo), "--out", str(tmp_path / "run"), "--workers", "0",
        "--on-bad-sample", "skip", "--decode-on", decode_on, *TINY])
    out = capsys.readouterr().out
    assert code == 0
    assert out.count("skipped: ") == 1 and "000001.jpg: cannot decode image" in out
    assert out.count("skipped 1 bad sample(s), trained on 20") == 3, "23 good samples make 5 batches of 4"
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    assert [row["skipped"] for row in rows] == ["1", "1", "1"] and [row["images"] for row in rows] == ["20", "20", "20"]


def test_diverging_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(tiny_data, tmp_path, monkeypatch):
    calls = {"count": 0, "nan_at": 9}
    real_build_criterion = pixelwise.training.build_criterion

    def criterion_that_diverges(name, class_weights=None):
        real_loss = real_build_criterion(name, class_weights)

        def loss(*args):
            calls["count"] += 1
            value = real_loss(*args)
            return value * float("nan") if calls["count"] == calls["nan_at"] else value

        return loss

    monkeypatch.setattr(pixelwise.training, "build_criterion", criterion_that_diverges)
    config = TrainConfig(data=str(tiny_data), out=str(tmp_path / "run"), epochs=3, batch_size=4, crop_size=(64, 64),
        workers=0, model="fcn32s", save_every_steps=0)
    with pytest.raises(TrainingError,
        match=r"epoch 2: loss became nan at step 3; the last good checkpoint is .*last\.pt"):
        train(config, progress=False)
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    assert state["epoch"] == 1 and state["progress"] is None
    assert all(torch.isfinite(tensor).all() for tensor in state["state_dict"].values() if tensor.is_floating_point())
    calls.update(count=0, nan_at=3)  # in the first epoch, before anything is saved
    config.out = str(tmp_path / "fresh")
    with pytest.raises(TrainingError,
        match=r"^epoch 1: loss became nan at step 3; no checkpoint was written before it$"):
        train(config, progress=False)
    calls.update(count=0, nan_at=3)
    # the first run's checkpoints are deleted before training, never named as this run's
    config.out = str(tmp_path / "run")
    with pytest.raises(TrainingError,
        match=r"^epoch 1: loss became nan at step 3; no checkpoint was written before it$"):
        train(config, overwrite=True, progress=False)
    assert not any((tmp_path / "run" / name).exists() for name in ("last.pt", "best.pt", "metrics.csv"))


def test_disk_full_while_saving_fails_clearly_and_keeps_the_previous_checkpoint(tiny_data, tmp_path, monkeypatch):
    saves = {"count": 0}
    real_save = torch.save

    def save_until_full(obj, f, *args, **kwargs):
        saves["count"] += 1
        if saves["count"] > 2:  # epoch 1's last.pt and best.pt fit, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(pixelwise.checkpoint.torch, "save", save_until_full)
    config = TrainConfig(data=str(tiny_data), out=str(tmp_path / "run"), epochs=2, batch_size=4, crop_size=(64, 64),
        workers=0, model="fcn32s", save_every_steps=0)
    with pytest.raises(TrainingError,
        match=r"last\.pt: cannot write checkpoint \(No space left on device\); the previous file is intact"):
        train(config, progress=False)
    monkeypatch.setattr(pixelwise.checkpoint.torch, "save", real_save)
    assert load_checkpoint(tmp_path / "run" / "last.pt")["epoch"] == 1
    assert [p.name for p in (tmp_path / "run").iterdir() if p.name.endswith(".tmp")] == []


def test_a_file_size_limit_while_saving_is_one_line_and_keeps_the_previous_checkpoint(tiny_data, tmp_path):
    """A real write failure from the OS (RLIMIT_FSIZE stands in for a full disk), not a mocked one."""
    run = tmp_path / "run"
    assert main(["train", "--data", str(tiny_data), "--out", str(run), "--workers", "0", "--save-every-steps", "0",
        *TINY[:1], "1", *TINY[2:]]) == 0
    before = (run / "last.pt").read_bytes()
    limited = (
        "import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({len(before) // 2}, {len(before) // 2})); "
        "from pixelwise.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    result = subprocess.run([sys.executable, "-c", limited, "train", "--resume", str(run), "--epochs", "2",
        "--quiet"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    expected = f"pixelwise: error: {run / 'last.pt'}: cannot write checkpoint (File too large); "
    expected += "the previous file is intact"
    assert result.stderr.strip().splitlines() == [expected]
    assert (run / "last.pt").read_bytes() == before
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]


def test_ctrl_c_while_saving_says_interrupted_and_keeps_the_previous_checkpoint(tiny_data, tmp_path, monkeypatch,
    capsys):
    run = tmp_path / "run"
    one_epoch = ["--data", str(tiny_data), "--out", str(run), "--workers", "0", "--save-every-steps", "0", *TINY[:1],
        "1", *TINY[2:]]
    assert main(["train", *one_epoch]) == 0
    before = (run / "last.pt").read_bytes()

    real_write = pixelwise.files.os.write

    def interrupted(handle, data):
        if len(data) > 100_000:  # a checkpoint, not config.json
            raise KeyboardInterrupt
        return real_write(handle, data)

    monkeypatch.setattr(pixelwise.files.os, "write", interrupted)
    assert main(["train", "--resume", str(run), "--epochs", "2", "--quiet"]) == 130
    assert capsys.readouterr().err.strip() == "pixelwise: interrupted"
    assert (run / "last.pt").read_bytes() == before


def test_resume_continues_from_another_directory_on_another_device_with_a_logged_learning_rate(tiny_data, tmp_path,
    monkeypatch, capsys):
    shutil.copytree(tiny_data, tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    first = ["train", "--data", "data", "--out", "run", "--workers", "0", "--save-every-steps", "0", "--schedule",
        "constant", *TINY[:1], "1", *TINY[2:]]
    assert main(first) == 0
    last = tmp_path / "run" / "last.pt"
    state = load_checkpoint(last, for_resume=True)
    assert state["config"]["data"] == str(tmp_path / "data"), "the data folder is saved as an absolute path"
    pixelwise.checkpoint.save_checkpoint({**state, "config": {**state["config"], "device": "cuda"}},
        last)  # as if trained on a GPU
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    if not torch.cuda.is_available():
        assert main(["train", "--resume", "../run", "--epochs", "2", "--quiet"]) == 2
        assert "CUDA is not available" in capsys.readouterr().err
    capsys.readouterr()
    assert main(["train", "--resume", "../run", "--epochs", "2", "--device", "cpu", "--lr", "0.001", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "resume changes device: cuda -> cpu" in out and "resume changes lr: 0.01 -> 0.001" in out
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    assert [float(row["lr"]) for row in rows] == [0.01, 0.001], "the new rate applies from the resumed step on"
    assert load_checkpoint(last, for_resume=True)["config"]["lr"] == 0.001


def test_resume_refuses_a_changed_class_table_in_one_line(tmp_path, capsys):
    root = tmp_path / "data"
    assert main(["data", "synth", "--out", str(root), "--num-train", "8", "--num-val", "2", "--classes", "3",
        "--min-size", "40", "--max-size", "60"]) == 0
    voc = root / "VOCdevkit" / "VOC2012"
    run = tmp_path / "run"
    assert main(["train", "--data", str(voc), "--out", str(run), "--workers", "0", *TINY[:1], "1", *TINY[2:]]) == 0
    table = voc / "classes.csv"
    rows = table.read_text().splitlines()
    table.write_text("\n".join([*rows[:-1], ",".join(rows[-1].split(",")[:2] + ["9", "9", "9", "0"])]) + "\n")
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--epochs", "2", "--quiet"]) == 0
    assert "resume changes the colours of striped square" in capsys.readouterr().out
    with open(table, "a") as appended:
        appended.write("3,extra,8,8,8,0\n")
    assert main(["train", "--resume", str(run), "--epochs", "3", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "the data now has background, gridded disk, striped square, extra" in err
    assert len(err.strip().splitlines()) == 1


def test_a_batch_that_cannot_fit_in_memory_is_refused_before_the_run_starts(tiny_data, tmp_path, capsys):
    assert main(["train", "--data", str(tiny_data), "--out", str(tmp_path / "run"), *TINY, "--crop-size",
        "60000x60000"]) == 2
    err = capsys.readouterr().err
    assert "a batch of 4 crops of 60000x60000 needs at least" in err and "use a smaller crop size or batch size" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "run").exists()


def test_a_folder_of_a_users_own_files_is_never_a_run_directory(tiny_data, tmp_path, capsys):
    notes, settings, lookalike = tmp_path / "notes", tmp_path / "settings", tmp_path / "lookalike"
    for folder in (notes, settings, lookalike):
        folder.mkdir()
    (notes / "notes.txt").write_text("mine")
    (settings / "config.json").write_text('{"my": "settings"}')  # named like a run's files, but not pixelwise's
    (settings / "metrics.csv").write_text("mine")
    (lookalike / "config.json").write_text('{"data": "x", "model": "fcn8s", "out": "z"}')
    (lookalike / "metrics.csv").write_text("mine")
    for folder in (notes, settings, lookalike):
        assert main(["train", "--data", str(tiny_data), "--out", str(folder), *TINY]) == 2
        assert "holds files that are not a pixelwise run" in capsys.readouterr().err
    assert (settings / "config.json").read_text() == '{"my": "settings"}'
    assert (settings / "metrics.csv").read_text() == "mine"
    with pytest.raises(TrainingError, match="not a pixelwise run"):
        train(TrainConfig(data=str(tiny_data), out=str(settings)), overwrite=True, progress=False)


@pytest.fixture(scope="module")
def finished_run(tiny_data, tmp_path_factory):
    """A one-epoch run's folder (its last.pt is the resume state to tamper with)."""
    run = tmp_path_factory.mktemp("finished") / "run"
    assert main(["train", "--data", str(tiny_data), "--out", str(run), "--workers", "0", *TINY[:1], "1",
        *TINY[2:]]) == 0
    return run


def _momentum_of_wrong_shape(state):
    buffers = state["optimizer"]["state"]
    first = next(iter(buffers))
    return {**state["optimizer"], "state": {**buffers, first: {"momentum_buffer": torch.zeros(3)}}}


def _first_group(state, **changes):
    groups = state["optimizer"]["param_groups"]
    return {"optimizer": {**state["optimizer"], "param_groups": [{**groups[0], **changes}, *groups[1:]]}}


def _integer_weight(state):
    weights = dict(state["state_dict"])
    weights["score32.weight"] = weights["score32.weight"].long()
    return {"state_dict": weights}


INTERRUPTED = {"epoch": 2, "progress": {"steps": 1, "loss_sum": 0.5, "images": 4, "seconds": 1.0, "skipped": []}}
OPTIMISER = "its optimiser or schedule state is not sgd's"
# What each tampering does to last.pt, and what the one-line refusal says.
TAMPERED_RESUME_STATE = {
    "history": (lambda state: {"history": [{}]}, "field 'history'"),
    "history-columns": (lambda state: {"history": [{"epoch": 1}]}, "field 'history'"),
    "best": (lambda state: {"best": {"miou": 0.9, "epoch": 50}}, "field 'best'"),
    "best-not-the-history's": (lambda state: {"best": {"miou": 0.99, "epoch": 1}}, "field 'best'"),
    "progress-loss": (lambda state: {**INTERRUPTED, "progress": {**INTERRUPTED["progress"], "loss_sum": "x"}},
        "field 'progress'"),
    "progress-images": (lambda state: {**INTERRUPTED, "progress": {**INTERRUPTED["progress"], "images": None}},
        "field 'progress'"),
    "progress-steps": (lambda state: {**INTERRUPTED, "progress": {**INTERRUPTED["progress"], "steps": -5}},
        "field 'progress'"),
    "progress-past-the-epoch": (lambda state: {**INTERRUPTED, "progress": {**INTERRUPTED["progress"], "steps": 50}},
        "field 'progress' says 50 steps"),
    "progress-seconds": (lambda state: {**INTERRUPTED, "progress": {**INTERRUPTED["progress"], "seconds": -5.0}},
        "field 'progress'"),
    "scheduler": (lambda state: {"scheduler": {**state["scheduler"], "last_epoch": "x"}}, "field 'scheduler'"),
    "scheduler-rates": (lambda state: {"scheduler": {**state["scheduler"], "base_lrs": []}},
        "schedule base rates [] for 1 parameter group"),
    "optimizer": (lambda state: _first_group(state, lr="x"), "field 'optimizer'"),
    "optimizer-maximize": (lambda state: _first_group(state, maximize=True), OPTIMISER),
    "optimizer-dampening": (lambda state: _first_group(state, dampening=1e300), OPTIMISER),
    "optimizer-rate": (lambda state: _first_group(state, lr=1e300), OPTIMISER),
    "optimizer-shape": (lambda state: {"optimizer": _momentum_of_wrong_shape(state)}, OPTIMISER),
    "optimizer-buffers": (lambda state: {"optimizer": {**state["optimizer"],
        "state": {key: {} for key in state["optimizer"]["state"]}}}, OPTIMISER),
    "weights-integer": (_integer_weight, "weights do not fit fcn32s (score32.weight is torch.int64"),
    "config-empty": (lambda state: {"config": {}}, "field 'config'"),
    "config-data": (lambda state: {"config": {**state["config"], "data": 5}}, "field 'config'"),
    "config-batch": (lambda state: {"config": {**state["config"], "batch_size": 10**20}}, "field 'config'"),
    "config-scale": (lambda state: {"config": {**state["config"], "scale_range": [1e300, 1e300]}}, "field 'config'"),
}


@pytest.mark.parametrize("field", TAMPERED_RESUME_STATE)
def test_a_tampered_resume_state_is_one_line_naming_the_field(finished_run, tmp_path, capsys, field):
    run = shutil.copytree(finished_run, tmp_path / "run")
    state = load_checkpoint(run / "last.pt", for_resume=True)
    tamper, message = TAMPERED_RESUME_STATE[field]
    pixelwise.checkpoint.save_checkpoint({**state, **tamper(state)}, run / "last.pt")
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--epochs", "3", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "last.pt: " in err and message in err, err


def test_a_batch_of_one_tiny_crop_is_refused_before_the_run_starts(tiny_data, tmp_path, capsys):
    """BatchNorm cannot normalise one 1x1 feature map; found by tracing the step, not after the run folder exists."""
    assert main(["train", "--data", str(tiny_data), "--out", str(tmp_path / "run"), *TINY, "--batch-size", "1",
        "--crop-size", "32x32"]) == 2
    err = capsys.readouterr().err
    assert "a batch of 1 crops of 32x32 cannot be trained on" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()

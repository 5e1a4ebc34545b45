"""Training under torchrun: two gloo processes on tiny synthetic data, against one process."""

import csv
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import pixelwise.training
from pixelwise.checkpoint import load_checkpoint
from pixelwise.cli import main
from pixelwise.config import TrainConfig
from pixelwise.data.loading import EpochBatches
from pixelwise.distributed import Ranks, join_process_group, launched_ranks, rank_share, talking_to_other_ranks
from pixelwise.errors import TrainingError
from pixelwise.serve.launch import free_port

WORKER = Path(__file__).with_name("distributed_worker.py")
_spec = importlib.util.spec_from_file_location("distributed_worker", WORKER)
worker = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(worker)
TIME_COLUMNS = {"seconds", "images_per_second"}
# Six short epochs on two classes, for a model whose BatchNorm is frozen (distributed_worker.py): without statistics
# of each rank's share, two ranks compute what one process does, to rounding, so their runs can be compared.
RECIPE = ["--epochs", "6", "--batch-size", "8", "--crop-size", "32x32", "--lr", "0.03", "--warmup-epochs", "0",
    "--model", "fcn8s", "--quiet", "--device", "cpu", "--seed", "5", "--workers", "0", "--deterministic"]
AVERAGED = ["--ema-decay", "0.9"]  # the ranks validate and save the weights' moving average, and resume it
TWO_RANK_SAVES = ["--save-every-steps", "4"]  # 6 steps an epoch: a mid-epoch checkpoint to resume from
SHORT = ["--batch-size", "4", "--crop-size", "48x48", "--lr", "0.01", "--warmup-epochs", "0", "--model", "fcn32s",
    "--quiet", "--device", "cpu", "--seed", "5", "--workers", "0", "--deterministic"]


def torchrun(*arguments: str) -> subprocess.Popen:
    """`torchrun --nproc-per-node 2 ARGUMENTS` on the loopback interface, one thread per process."""
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
        "--master-port", str(free_port()), *arguments]
    environment = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment)


def finished(process: subprocess.Popen, timeout: float = 300) -> tuple[int, str, str]:
    """The exit code, stdout and stderr of a process, killed if it runs past `timeout` seconds."""
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
    return process.returncode, out, err


def pixelwise_errors(stderr: str) -> list[str]:
    """The lines pixelwise printed to stderr (not torchrun's own report)."""
    return [line for line in stderr.splitlines() if line.startswith("pixelwise: ")]


def metrics_without_times(run_dir: Path) -> list[dict]:
    """metrics.csv rows without the wall-clock columns."""
    with open(run_dir / "metrics.csv") as handle:
        return [{key: value for key, value in row.items() if key not in TIME_COLUMNS} for row in csv.DictReader(handle)]


def synthetic_photos(out: Path, train: int, val: int, classes: int, sizes: tuple[int, int]) -> Path:
    """A synthetic VOC-layout dataset written by `pixelwise data synth`; its VOC2012 folder."""
    assert main(["data", "synth", "--out", str(out), "--num-train", str(train), "--num-val", str(val), "--classes",
        str(classes), "--min-size", str(sizes[0]), "--max-size", str(sizes[1])]) == 0
    return out / "VOCdevkit" / "VOC2012"


@pytest.fixture(scope="module")
def small_photos(tmp_path_factory) -> Path:
    """48 train and 7 val synthetic photos of 32 to 40 pixels, 2 classes (7: not a multiple of 2 ranks)."""
    return synthetic_photos(tmp_path_factory.mktemp("small"), 48, 7, 2, (32, 40))


@pytest.fixture(scope="module")
def two_rank_run(small_photos, tmp_path_factory) -> tuple[Path, str, dict]:
    """One torchrun of 2 processes: the worker's steps report, then RECIPE (saving mid-epoch too) with BatchNorm
    frozen. The run directory, the run's output and the report."""
    scratch = tmp_path_factory.mktemp("ranks")
    code, out, err = finished(torchrun(str(WORKER), "steps-then-train", str(scratch / "report.json"), "--data",
        str(small_photos), "--out", str(scratch / "run"), *RECIPE, *TWO_RANK_SAVES))
    assert code == 0, err[-3000:]
    return scratch / "run", out, json.loads((scratch / "report.json").read_text())


@pytest.fixture
def frozen_batch_norm(monkeypatch):
    """Models built for training in this process have their BatchNorm frozen, as in the worker's runs."""
    real_build_model = pixelwise.training.build_model
    monkeypatch.setattr(pixelwise.training, "build_model",
        lambda *args, **kwargs: worker.without_batch_statistics(real_build_model(*args, **kwargs)))


def test_each_rank_takes_its_share_of_the_global_batch_in_the_same_order():
    alone = EpochBatches(23, 6, seed=4)
    ranks = [EpochBatches(23, 6, seed=4, rank=rank, world_size=3) for rank in range(3)]
    for sampler in (alone, *ranks):
        sampler.set_epoch(2, start_step=1)
    for batch, *shares in zip(alone, *ranks, strict=True):
        assert sorted(key for share in shares for key in share) == sorted(batch) and all(len(s) == 2 for s in shares)
    assert len(ranks[0]) == len(alone) == 2, "23 samples make 3 batches of 6; the first was trained on"


@pytest.mark.parametrize("size, world_size", [(7, 2), (5, 3), (2, 3), (6, 2)])
def test_evaluation_shares_count_every_photo_once(size, world_size):
    shares = [list(rank_share(list(range(size)), Ranks(rank, world_size))) for rank in range(world_size)]
    assert sorted(index for share in shares for index in share) == list(range(size))


@pytest.mark.parametrize("environment, message", [
    ({"WORLD_SIZE": "two"}, "WORLD_SIZE='two' is not a whole number"),
    ({"WORLD_SIZE": "2", "RANK": "2", "MASTER_ADDR": "h", "MASTER_PORT": "1"}, "RANK=2 and WORLD_SIZE=2 do not name"),
    ({"WORLD_SIZE": "2", "RANK": "0"}, "MASTER_ADDR is not: start distributed runs with torchrun"),
])  # fmt: skip
def test_a_broken_launch_environment_is_one_clear_error(environment, message):
    with pytest.raises(TrainingError, match=message):
        launched_ranks(environment)
    assert launched_ranks({}).world_size == 1


def test_a_lost_process_is_one_error_and_other_errors_pass_through():
    gloo = "[../third_party/gloo/transport/tcp/pair.cc:561] Connection closed by peer [127.0.0.1]:910. Check the logs"
    cause = r"\(Connection closed by peer \[127.0.0.1\]:910\)$"  # gloo's source file and advice left out
    with pytest.raises(TrainingError, match=r"^lost contact with another process .* killed " + cause):
        with talking_to_other_ranks(Ranks(0, 2)):
            raise RuntimeError(gloo)
    for ranks, error in ((Ranks(0, 2), "mat1 and mat2 shapes cannot be multiplied"), (Ranks(), gloo)):
        with pytest.raises(RuntimeError, match=re.escape(error[:20])):
            with talking_to_other_ranks(ranks):
                raise RuntimeError(error)


def test_a_process_group_without_a_cpu_backend_is_refused(monkeypatch):
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_backend", lambda: "nccl")
    with pytest.raises(TrainingError, match="nccl backend alone.*backend='cpu:gloo,cuda:nccl'"):
        join_process_group()


def test_a_run_too_small_for_its_processes_is_refused():
    tiny = TrainConfig(batch_size=4, world_size=2, model="deeplabv3plus", device="cpu")
    with pytest.raises(TrainingError, match="3 training image.* each of the 2 processes 2 per step"):
        pixelwise.training._network(tiny, 2, 3, None, None, torch.device("cpu"))


def test_the_global_batch_must_split_evenly_and_feed_every_process():
    with pytest.raises(TrainingError, match="6 does not split evenly over 4 processes .* multiple of 4, or run in a "
        "number of processes that divides 6"):  # a new run can change either; a resumed one only the processes
        TrainConfig(batch_size=6, world_size=4)
    with pytest.raises(TrainingError, match=r"deeplabv3plus trains on at least 2 .* each process.*\(1 per process\)"):
        TrainConfig(model="deeplabv3plus", batch_size=4, world_size=4)
    assert TrainConfig(batch_size=8, world_size=4).world_size == 4


@pytest.fixture
def launched_by_torchrun(monkeypatch):
    """The environment torchrun gives process `rank` of 2 (call with the rank)."""

    def launch(rank: int) -> None:
        environment = {"WORLD_SIZE": "2", "RANK": str(rank), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1"}
        for name, value in environment.items():
            monkeypatch.setenv(name, value)

    return launch


def test_commands_other_than_train_refuse_torchrun_in_one_line_from_rank_0(launched_by_torchrun, capsys, tmp_path):
    launched_by_torchrun(0)
    assert main(["data", "synth", "--out", str(tmp_path / "synth")]) == 2
    assert capsys.readouterr().err == ("pixelwise: error: pixelwise data runs in one process, but torchrun started 2: "
        "only pixelwise train runs distributed\n")
    launched_by_torchrun(1)
    with pytest.raises(SystemExit) as stopped:
        main(["models"])
    assert stopped.value.code == 2 and capsys.readouterr().err == ""
    assert not (tmp_path / "synth").exists()


def test_one_step_on_two_ranks_is_one_step_of_one_process_and_every_model_trains(two_rank_run):
    report = two_rank_run[2]
    assert report["losses"] == pytest.approx(report["one_process_losses"], abs=1e-5)
    assert report["largest_weight_difference"] < 1e-5
    assert len(set(report["rank_weight_digests"])) == 1, "DDP keeps the ranks' weights equal"
    for model, trained in report["models"].items():
        assert all(torch.isfinite(torch.tensor(trained["losses"]))), model
        assert len(set(trained["rank_weight_digests"])) == 1, model
    assert report["shared_statistics"] == [[[1.5], [3.5]]] * 2, "both models' BatchNorm statistics, averaged"
    assert report["val_photos"] == 7
    api_run = report["api_run"]  # pixelwise.train under torchrun, then again (the CLI) in the same processes
    assert len(set(api_run["rank_results"])) == 1, "every rank returns the same result"
    assert json.loads((Path(api_run["run_dir"]) / "config.json").read_text())["world_size"] == 2
    assert report["sharded_iou"] == report["whole_iou"]
    assert report["sharded_pixel_accuracy"] == report["whole_pixel_accuracy"]


def test_a_two_rank_run_is_one_run_that_records_its_world_size(two_rank_run):
    run_dir, out, _ = two_rank_run
    assert out.count("best val mIoU") == 1 and out.count("epoch 6/6") == 1, "rank 0 alone logs"
    assert "in 2 processes" in out and "each process's 4 images" in out
    assert json.loads((run_dir / "config.json").read_text())["world_size"] == 2
    assert load_checkpoint(run_dir / "last.pt")["config"]["world_size"] == 2
    assert sorted(path.name for path in run_dir.iterdir()) == ["best.pt", "config.json", "curves.png", "last.pt",
        "metrics.csv"]
    assert len(metrics_without_times(run_dir)) == 6


def test_two_ranks_reach_the_miou_of_one_process(two_rank_run, small_photos, tmp_path, frozen_batch_norm):
    run_dir, _, _ = two_rank_run
    assert main(["train", "--data", str(small_photos), "--out", str(tmp_path / "one"), *RECIPE]) == 0
    one, two = metrics_without_times(tmp_path / "one"), metrics_without_times(run_dir)
    assert float(one[-1]["loss"]) < 0.7 * float(one[0]["loss"]), "the recipe learns"
    assert abs(float(one[-1]["miou"]) - float(two[-1]["miou"])) <= 0.02, (one[-1]["miou"], two[-1]["miou"])
    # each rank averages over its own labelled pixels (docs/distributed.md): close to one process's mean, not equal
    assert float(one[-1]["loss"]) == pytest.approx(float(two[-1]["loss"]), rel=0.05)


def rank_pids(launcher: subprocess.Popen) -> dict[int, int]:
    """The worker processes torchrun started: rank -> pid."""
    pids = {}
    for child in Path(f"/proc/{launcher.pid}/task/{launcher.pid}/children").read_text().split():
        environment = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
        rank = next(entry for entry in environment if entry.startswith(b"RANK="))
        pids[int(rank.split(b"=")[1])] = int(child)
    return pids


@pytest.fixture(scope="module")
def tiny_photos(tmp_path_factory) -> Path:
    """24 train and 5 val synthetic photos of 40 to 72 pixels, 3 classes."""
    return synthetic_photos(tmp_path_factory.mktemp("tiny"), 24, 5, 3, (40, 72))


@pytest.mark.parametrize("averaged", [False, True], ids=["trained", "averaged"])
def test_a_killed_rank_stops_the_run_and_a_resume_ends_as_the_uninterrupted_run(two_rank_run, small_photos, tmp_path,
        assert_same_weights, averaged):  # fmt: skip
    reference, interrupted = two_rank_run[0], tmp_path / "interrupted"
    run = [str(WORKER), "frozen-batch-norm", "--data", str(small_photos), *RECIPE, *TWO_RANK_SAVES]
    if averaged:  # its uninterrupted run first
        run, reference = run + AVERAGED, tmp_path / "reference"
        code, _, err = finished(torchrun(*run, "--out", str(reference)))
        assert code == 0, err[-3000:]
    launcher = torchrun(*run, "--out", str(interrupted))
    last, saves, seen, deadline = interrupted / "last.pt", 0, None, time.monotonic() + 200
    while saves < 3 and launcher.poll() is None and time.monotonic() < deadline:
        stamp = last.stat().st_mtime_ns if last.exists() else None
        if stamp is not None and stamp != seen:
            seen, saves = stamp, saves + 1
        time.sleep(0.005)
    assert launcher.poll() is None, "the run ended before it could be killed"
    os.kill(rank_pids(launcher)[1], signal.SIGKILL)
    code, _, err = finished(launcher, timeout=120)
    assert code != 0 and "local_rank: 1" in err, err[-3000:]
    assert len(pixelwise_errors(err)) == 1 and err.count("Traceback") == 1, err[-3000:]  # and torchrun's report
    state = load_checkpoint(last)  # the last good checkpoint is whole
    assert state["config"]["world_size"] == 2 and state["epoch"] >= 2

    code, out, err = finished(torchrun(str(WORKER), "frozen-batch-norm", "--resume", str(interrupted), "--quiet"))
    assert code == 0, err[-3000:]
    assert "resuming" in out
    assert metrics_without_times(interrupted) == metrics_without_times(reference)
    assert_same_weights(reference / "last.pt", interrupted / "last.pt")


def test_a_two_rank_run_resumes_in_one_process_and_says_so(two_rank_run, tmp_path, capsys, frozen_batch_norm):
    run_dir = shutil.copytree(two_rank_run[0], tmp_path / "run")
    assert main(["train", "--resume", str(run_dir), "--epochs", "7"]) == 0
    out = capsys.readouterr().out
    assert "resume changes world size: 2 -> 1" in out and "epoch 7/7" in out
    assert json.loads((run_dir / "config.json").read_text())["world_size"] == 1
    assert len(metrics_without_times(run_dir)) == 7


@pytest.mark.parametrize("scenario, cause", [
    ("nan", r"loss became nan at step 3"),
    ("bad-sample", r"\S+/\d+\.jpg: cannot decode image \(cut off on this rank\)"),
])  # fmt: skip
def test_a_failure_on_one_rank_stops_every_rank_in_one_line_and_keeps_the_checkpoint(scenario, cause, tiny_photos,
    tmp_path):
    run_dir = tmp_path / "run"
    code, _, err = finished(torchrun(str(WORKER), scenario, "1", "--data", str(tiny_photos), "--out", str(run_dir),
        "--epochs", "2", "--save-every-steps", "0", *SHORT))
    assert code != 0
    lines = pixelwise_errors(err)
    assert len(lines) == 1, err[-3000:]
    assert re.fullmatch(rf"pixelwise: error: epoch 2: rank 1: {cause}; the last good checkpoint is .*last\.pt",
        lines[0]), lines[0]
    state = load_checkpoint(run_dir / "last.pt")
    assert state["epoch"] == 1 and state["progress"] is None and state["config"]["world_size"] == 2

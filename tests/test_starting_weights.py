"""`train --init-from`: a new run that starts from a checkpoint's weights, and what it refuses."""

import json
import os
import shutil

import pytest
import torch

import pixelwise
from pixelwise.cli import main
from pixelwise.config import TrainConfig
from pixelwise.errors import TrainingError

TINY = ["--epochs", "1", "--batch-size", "4", "--crop-size", "32x32", "--workers", "0", "--quiet", "--device", "cpu"]


def synth(folder, classes: int) -> None:
    """A tiny synthetic dataset with `classes` classes."""
    sizes = ["--num-train", "8", "--num-val", "3", "--min-size", "40", "--max-size", "72"]
    assert main(["data", "synth", "--out", str(folder), "--classes", str(classes), *sizes]) == 0


@pytest.fixture(scope="module")
def start(tmp_path_factory):
    """An FPN trained one epoch (seed 1) on a 3-class synthetic dataset: (data, its last.pt)."""
    base = tmp_path_factory.mktemp("fine_tune")
    synth(base / "data", 3)
    argv = ["train", "--data", str(base / "data"), "--out", str(base / "run"), "--model", "fpn", "--seed", "1"]
    assert main([*argv, *TINY]) == 0
    return base / "data", base / "run" / "last.pt"


def parameters(checkpoint) -> dict[str, torch.Tensor]:
    """The trainable tensors of a checkpoint's network (BatchNorm's running statistics left out)."""
    return {key: value.detach() for key, value in pixelwise.load_model(checkpoint).network.named_parameters()}


def largest_difference(first: dict, second: dict) -> float:
    """The largest absolute difference between two networks' parameters, key by key."""
    assert first.keys() == second.keys()
    return max(float((first[key] - second[key]).abs().max()) for key in first)


def test_a_run_starts_from_the_checkpoints_weights_and_model(start, tmp_path, capsys):
    data, checkpoint = start
    # A learning rate of 1e-12 leaves the weights where they start: the checkpoint's, or random ones.
    common = ["train", "--data", str(data), "--lr", "1e-12", "--loss", "lovasz", *TINY]
    assert main([*common, "--out", str(tmp_path / "tuned"), "--init-from", str(checkpoint)]) == 0
    assert f"starting from the weights of {checkpoint} (fpn on resnet18, epoch 1)" in capsys.readouterr().out
    assert main([*common, "--out", str(tmp_path / "scratch"), "--model", "fpn"]) == 0
    trained = parameters(checkpoint)
    assert largest_difference(parameters(tmp_path / "tuned" / "last.pt"), trained) < 1e-6
    assert largest_difference(parameters(tmp_path / "scratch" / "last.pt"), trained) > 1e-2, "random start differs"
    config = json.loads((tmp_path / "tuned" / "config.json").read_text())
    assert (config["model"], config["encoder"], config["loss"], config["lr"]) == ("fpn", "resnet18", "lovasz", 1e-12)
    assert config["init_from"] == str(checkpoint.resolve()) and config["optimizer"] == "adamw", "fpn's recipe"


def test_a_fine_tuned_run_resumes_after_its_starting_checkpoint_moved(start, tmp_path):
    data, checkpoint = start
    (tmp_path / "a").mkdir()
    shutil.copy(checkpoint, tmp_path / "a" / "start.pt")
    run = tmp_path / "run"
    assert main(["train", "--data", str(data), "--out", str(run), "--init-from", str(tmp_path / "a" / "start.pt"),
                 *TINY]) == 0  # fmt: skip
    (tmp_path / "a").rename(tmp_path / "b")
    (tmp_path / "a").symlink_to(tmp_path / "b")  # the path it was given still leads to it, by another way
    assert main(["train", "--resume", str(run), "--epochs", "2", "--quiet"]) == 0
    (tmp_path / "a").unlink()
    assert main(["train", "--resume", str(run), "--epochs", "3", "--quiet"]) == 0, "gone: not read again"
    assert [row["epoch"] for row in torch.load(run / "last.pt", weights_only=True)["history"]] == [1, 2, 3]


def test_a_path_through_a_link_and_up_reads_the_file_it_leads_to(start, tmp_path):
    data, checkpoint = start
    (tmp_path / "elsewhere" / "inner").mkdir(parents=True)
    shutil.copy(checkpoint, tmp_path / "elsewhere" / "start.pt")
    (tmp_path / "here").mkdir()
    (tmp_path / "here" / "start.pt").write_text("not this one")
    (tmp_path / "here" / "link").symlink_to(tmp_path / "elsewhere" / "inner")
    given = tmp_path / "here" / "link" / ".." / "start.pt"  # elsewhere/start.pt, as the shell opens it
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "run"), "--init-from", str(given), *TINY]) == 0
    assert json.loads((tmp_path / "run" / "config.json").read_text())["init_from"] == str(given)


def test_the_log_says_where_in_its_run_a_checkpoint_was_saved(start, tmp_path, capsys):
    data, checkpoint = start
    payload = torch.load(checkpoint, weights_only=True)
    payload["progress"] = {"steps": 1}  # as last.pt is saved every --save-every-steps steps
    torch.save(payload, tmp_path / "mid.pt")
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "run"), "--init-from", str(tmp_path / "mid.pt"),
                 *TINY]) == 0  # fmt: skip
    assert "mid.pt (fpn on resnet18, in epoch 1)" in capsys.readouterr().out


def test_bad_starting_points_give_one_line_before_anything_is_written(start, tmp_path, capsys):
    data, checkpoint = start
    synth(tmp_path / "four", 4)
    (tmp_path / "notes.pt").write_text("not a checkpoint")
    torch.save({"conv1.weight": torch.zeros(3)}, tmp_path / "weights.pth")
    payload = torch.load(checkpoint, weights_only=True)
    payload["normalization"] = {"mean": [0.5] * 3, "std": [0.5] * 3}
    torch.save(payload, tmp_path / "other_mean.pt")
    payload = torch.load(checkpoint, weights_only=True)
    payload["state_dict"] = {key: value for key, value in payload["state_dict"].items() if "decoder" not in key}
    torch.save(payload, tmp_path / "other_model.pt")  # its record says fpn, its weights lack fpn's decoder
    (tmp_path / "model.onnx").write_bytes(b"")
    os.mkfifo(tmp_path / "pipe.pt")
    base = ["train", "--data", str(data), *TINY, "--init-from"]
    cases = [
        ([str(tmp_path / "missing.pt")], "missing.pt: checkpoint not found"),
        ([str(tmp_path)], f"{tmp_path}: a folder, not a checkpoint"),
        ([str(tmp_path / "notes.pt")], "notes.pt: not a loadable checkpoint"),
        ([str(tmp_path / "pipe.pt")], "pipe.pt: not a regular file, not a checkpoint"),
        ([str(tmp_path / "weights.pth")], "weights.pth: not a pixelwise checkpoint"),
        ([str(checkpoint), "--model", "unet"], "holds fpn on resnet18, and this run trains unet on resnet18"),
        ([str(checkpoint), "--encoder", "resnet34"], "holds fpn on resnet18, and this run trains fpn on resnet34"),
        ([str(checkpoint), "--encoder-weights", "imagenet"], "--encoder-weights must be none when the run starts"),
        ([str(tmp_path / "model.onnx")], "model.onnx: an exported model; a run starts from the .pt checkpoint"),
        ([str(tmp_path / "other_model.pt")], "other_model.pt: weights do not fit fpn (missing ["),
        (
            [str(checkpoint), "--data", str(tmp_path / "four")],
            "trained on other classes than the data's (3 classes there, 4 here): a run that starts from a checkpoint",
        ),
        ([str(tmp_path / "other_mean.pt")], "normalised with mean [0.5, 0.5, 0.5] and std [0.5, 0.5, 0.5]; training"),
    ]
    for options, message in cases:
        assert main([*base, *options, "--out", str(tmp_path / "run")]) == 2, options
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "run").exists(), "nothing written before the refusal"
    assert main(["train", "--resume", str(checkpoint.parent), "--init-from", str(checkpoint)]) == 2
    assert "--init-from starts a new run from a checkpoint, and --resume continues a run" in capsys.readouterr().err


def test_a_run_may_not_replace_the_checkpoint_it_starts_from(start, tmp_path):
    data, checkpoint = start
    shutil.copytree(checkpoint.parent, tmp_path / "run")
    config = TrainConfig(data=str(data), out=str(tmp_path / "run"), init_from=str(tmp_path / "run" / "last.pt"),
                         model="fpn", epochs=1, batch_size=4, crop_size=(32, 32), workers=0)  # fmt: skip
    with pytest.raises(TrainingError, match="the checkpoint to start from is in the run's own folder"):
        pixelwise.train(config, overwrite=True, progress=False)
    assert (tmp_path / "run" / "last.pt").read_bytes() == checkpoint.read_bytes()


@pytest.mark.parametrize(
    "value, message",
    [
        (5, "init_from must be text or None, got 5"),
        ("", "init_from must be a checkpoint's path or None, got ''"),
        (" ", "init_from must be a checkpoint's path or None, got ' '"),
        ("a\x00.pt", "init_from must not hold a NUL character"),
    ],
)
def test_the_library_refuses_a_starting_point_that_is_not_a_path(value, message):
    with pytest.raises(TrainingError, match=message):
        TrainConfig(init_from=value)

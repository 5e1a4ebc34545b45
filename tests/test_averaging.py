"""--ema-decay: the weights' moving average is what a run validates and saves, and what its last.pt resumes."""

import shutil

import pytest
import torch
from torch import nn

import pixelwise.training
from pixelwise.averaging import weight_average
from pixelwise.checkpoint import load_checkpoint, save_checkpoint
from pixelwise.cli import main
from pixelwise.config import TrainConfig
from pixelwise.starting_weights import starting_weights
from pixelwise.training import train

WATCHED = "network.score32.weight"  # a trained weight of fcn32s (the Segmenter's name for it)
WATCHED_BUFFER = "network.stem.1.running_mean"  # and a BatchNorm statistic


def test_no_decay_keeps_no_average():
    assert weight_average(nn.Linear(2, 2), 0.0) is None


def test_the_average_moves_one_minus_the_decay_of_the_way_weights_and_batchnorm_statistics_alike():
    trained = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))
    average = weight_average(trained, 0.75)
    first = {key: value.clone() for key, value in trained.state_dict().items()}
    average.update_parameters(trained)  # the first step is copied
    with torch.no_grad():
        trained[0].weight.add_(1.0)
    trained(torch.randn(2, 3, 5, 5))  # moves the running statistics
    average.update_parameters(trained)
    averaged, now = average.module.state_dict(), trained.state_dict()
    for key in ("0.weight", "0.bias", "1.weight", "1.running_mean", "1.running_var"):
        assert torch.allclose(averaged[key], 0.75 * first[key] + 0.25 * now[key]), key
    assert not torch.allclose(averaged["1.running_mean"], now["1.running_mean"]), "the statistic was averaged"


def test_a_run_validates_and_saves_the_average_of_its_steps(synthetic_voc, tmp_path, monkeypatch):
    steps, validated = [], []
    real_update, real_evaluate = torch.optim.swa_utils.AveragedModel.update_parameters, pixelwise.training.evaluate

    def recording_update(self, model):
        steps.append({key: model.state_dict()[key].clone() for key in (WATCHED, WATCHED_BUFFER)})
        real_update(self, model)

    def recording_evaluate(model, *args, **kwargs):
        validated.append({key: model.state_dict()[key].clone() for key in (WATCHED, WATCHED_BUFFER)})
        return real_evaluate(model, *args, **kwargs)

    monkeypatch.setattr(torch.optim.swa_utils.AveragedModel, "update_parameters", recording_update)
    monkeypatch.setattr(pixelwise.training, "evaluate", recording_evaluate)
    config = TrainConfig(data=str(synthetic_voc), out=str(tmp_path / "run"), epochs=1, batch_size=4,
        crop_size=(32, 32), workers=0, model="fcn32s", ema_decay=0.5)  # fmt: skip
    logged = []
    train(config, progress=False, log=logged.append)
    assert "validating and saving a moving average of the weights (decay 0.5: about the last 2 steps)" in logged
    saved = load_checkpoint(tmp_path / "run" / "last.pt", for_resume=True)
    assert len(steps) == 3, "one update per step of 12 photos in batches of 4"
    for key in (WATCHED, WATCHED_BUFFER):
        expected = steps[0][key]
        for step in steps[1:]:
            expected = 0.5 * expected + 0.5 * step[key]
        name = key.removeprefix("network.")
        assert torch.allclose(saved["state_dict"][name], expected), key
        assert torch.equal(validated[-1][key], saved["state_dict"][name]), "the model validated is the one saved"
        assert torch.equal(saved["trained_state_dict"][name], steps[-1][key]), "the trained weights kept to resume"
        assert not torch.equal(saved["state_dict"][name], saved["trained_state_dict"][name])
    best = load_checkpoint(tmp_path / "run" / "best.pt")  # of the one epoch, the last
    assert best["state_dict"]["score32.weight"].equal(saved["state_dict"]["score32.weight"]), "best.pt's the average"
    assert "trained_state_dict" not in best, "best.pt is a model to predict with"
    assert (saved["format_version"], best["format_version"]) == (3, 1), "releases before 3 refuse last.pt alone"
    start = starting_weights(tmp_path / "run" / "last.pt", "fcn32s", "resnet18").network.state_dict()
    assert start["score32.weight"].equal(saved["state_dict"]["score32.weight"]), "--init-from starts from the average"


@pytest.fixture(scope="module")
def averaged_run(synthetic_voc, tmp_path_factory):
    """A one-epoch fcn32s run with --ema-decay (its last.pt is the resume state to tamper with)."""
    run = tmp_path_factory.mktemp("averaged") / "run"
    assert main(["train", "--data", str(synthetic_voc), "--out", str(run), "--epochs", "1", "--batch-size", "4",
        "--crop-size", "32x32", "--workers", "0", "--model", "fcn32s", "--ema-decay", "0.9", "--quiet"]) == 0
    return run


@pytest.mark.parametrize(
    "tamper, message",
    [
        (lambda state: {key: value for key, value in state.items() if key != "trained_state_dict"},
            "it lacks trained_state_dict, which a run with ema_decay keeps to resume"),
        (lambda state: {**state, "config": {**state["config"], "ema_decay": 0.0}},
            "it holds trained_state_dict, which only a run with ema_decay keeps"),
        (lambda state: {**state, "trained_state_dict": {**state["trained_state_dict"],
            "score32.bias": torch.full((4,), float("nan"))}}, "field 'trained_state_dict' should be absent, or a dict"),
        (lambda state: {**state, "trained_state_dict": {**state["trained_state_dict"],
            "score32.weight": torch.zeros(1)}}, "weights do not fit fcn32s (score32.weight is torch.float32 (1,)"),
    ],
)  # fmt: skip
def test_a_damaged_average_is_refused_at_resume_in_one_line(averaged_run, tmp_path, capsys, tamper, message):
    run = shutil.copytree(averaged_run, tmp_path / "run")
    save_checkpoint(tamper(load_checkpoint(run / "last.pt", for_resume=True)), run / "last.pt")
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--epochs", "2", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "last.pt: " in err and message in err, err

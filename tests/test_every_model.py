"""Every registered model through pixelwise's whole pipeline: train, resume exactly, evaluate, predict any size."""

import numpy as np
import pytest
import torch

from pixelwise.checkpoint import load_checkpoint, save_checkpoint
from pixelwise.config import TrainConfig
from pixelwise.models import MODELS
from pixelwise.predict import load_model
from pixelwise.resume import resume_config
from pixelwise.training import evaluate_split, train


def tiny_config(data, out, name: str, **changes) -> TrainConfig:
    """Two short epochs in bf16, deterministic kernels, a constant rate: one epoch then one more is the same run."""
    settings = dict(
        data=str(data), out=str(out), model=name, epochs=2, batch_size=4, crop_size=(32, 32), workers=0,
        warmup_epochs=0, schedule="constant", precision="bf16", deterministic=True, save_every_steps=2, seed=4,
    )  # fmt: skip
    return TrainConfig(**{**settings, **changes})


def without_times(history: list[dict]) -> list[dict]:
    return [
        {key: value for key, value in row.items() if key not in ("seconds", "images_per_second")} for row in history
    ]


@pytest.mark.parametrize("name", list(MODELS))
def test_every_model_trains_resumes_exactly_evaluates_and_predicts(synthetic_voc, tmp_path, name):
    whole = train(tiny_config(synthetic_voc, tmp_path / "whole", name), progress=False)
    train(tiny_config(synthetic_voc, tmp_path / "parts", name, epochs=1), progress=False)
    parts = train(resume_config(tmp_path / "parts", epochs=2), resume=True, progress=False)
    assert without_times(parts.history) == without_times(whole.history)
    saved, resumed = (
        load_checkpoint(run / "last.pt")["state_dict"] for run in (tmp_path / "whole", tmp_path / "parts")
    )
    assert all(torch.equal(saved[key], resumed[key]) for key in saved), "bit for bit the uninterrupted run"

    checkpoint = load_checkpoint(tmp_path / "whole" / "best.pt")
    assert checkpoint["model"] == {"name": name, "num_classes": 4, "encoder": MODELS[name].default_encoder}
    assert checkpoint["format_version"] == (1 if name.startswith("fcn") else 2), "the first release refuses as newer"
    model = load_model(tmp_path / "whole" / "best.pt")
    photo = np.random.default_rng(0).integers(0, 255, size=(97, 131, 3), dtype=np.uint8)
    assert model.predict(photo).shape == (97, 131)
    assert model.predict(photo[:5, :7]).shape == (5, 7)
    metrics = evaluate_split(model.for_inference(), synthetic_voc, "val")
    assert metrics.miou == pytest.approx(whole.best_miou, abs=1e-6), "eval measures what training measured"


def test_a_run_saved_before_encoders_and_losses_existed_loads_and_resumes(synthetic_voc, tmp_path):
    """Rewrite a run's checkpoint as the previous release wrote it: no encoder, no loss, `backbone_weights`."""
    train(tiny_config(synthetic_voc, tmp_path / "run", "fcn32s", epochs=1, precision="fp32"), progress=False)
    path = tmp_path / "run" / "last.pt"
    payload = load_checkpoint(path, for_resume=True)
    payload["model"] = {"name": "fcn32s", "num_classes": 4}
    config = payload["config"]
    config["backbone_weights"] = config.pop("encoder_weights")
    del config["encoder"], config["loss"]
    save_checkpoint({key: value for key, value in payload.items() if key not in ("format", "format_version")}, path)
    assert load_model(path).model_record == {"name": "fcn32s", "num_classes": 4, "encoder": "resnet18"}
    resumed = train(resume_config(tmp_path / "run", epochs=2), resume=True, progress=False)
    assert len(resumed.history) == 2
    assert load_checkpoint(path)["config"]["encoder"] == "resnet18"

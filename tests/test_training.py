import json

import numpy as np
import pytest
import torch

import pixelwise.training
from pixelwise.config import TrainConfig
from pixelwise.data.statistics import median_frequency_weights
from pixelwise.data.check import check_dataset
from pixelwise.data.class_paste import ClassPaste
from pixelwise.training import train


@pytest.mark.parametrize("weighting, power", [("none", None), ("median-frequency", 1.0), ("sqrt-median-frequency",
    0.5)])
def test_class_weighting_reaches_the_loss(synthetic_voc, tmp_path, monkeypatch, weighting, power):
    used = []
    real_build_criterion = pixelwise.training.build_criterion

    def recording(name, class_weights=None):
        used.append(class_weights)
        return real_build_criterion(name, class_weights)

    monkeypatch.setattr(pixelwise.training, "build_criterion", recording)
    config = TrainConfig(data=str(synthetic_voc), out=str(tmp_path / "run"), epochs=1, batch_size=4, crop_size=(32,
        32), workers=0, model="fcn32s", class_weighting=weighting)
    train(config, progress=False)
    if power is None:
        assert used == [None], "plain cross-entropy"
        return
    counts = check_dataset(synthetic_voc, splits=["train"]).split("train")
    full = median_frequency_weights(counts.class_pixels, counts.pixels_where_present)
    assert torch.allclose(used[0], full**power)
    assert (used[0][0] < 1) and (used[0].max() > 1), "background loses weight, some object class gains"


def test_color_jitter_and_copy_paste_reach_the_training_samples_and_config_json(synthetic_voc, tmp_path, monkeypatch):
    made, drawn_from = [], []
    real_train_transforms = pixelwise.training.train_transforms
    real_training_samples = pixelwise.training.training_samples

    def recording(*args, **kwargs):
        made.append(real_train_transforms(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(pixelwise.training, "train_transforms", recording)
    monkeypatch.setattr(pixelwise.training, "training_samples",
        lambda dataset, *args, **kwargs: drawn_from.append(dataset) or real_training_samples(dataset, *args, **kwargs))
    config = TrainConfig(data=str(synthetic_voc), out=str(tmp_path / "run"), epochs=1, batch_size=4,
        crop_size=(32, 32), workers=0, model="fcn32s", color_jitter=0.3, copy_paste=["striped square"])  # fmt: skip
    train(config, progress=False)
    assert len(made) == 1 and made[0].jitter is not None, "one transform, the training split's"
    assert made[0].jitter.brightness == made[0].jitter.contrast == made[0].jitter.saturation == (0.7, 1.3)
    assert [dataset.paste for dataset in drawn_from] == [ClassPaste((2,))], "class 2 of the synthetic classes"
    saved = TrainConfig.from_dict(json.loads((tmp_path / "run" / "config.json").read_text()))
    assert (saved.color_jitter, saved.copy_paste) == (0.3, ("striped square",))


def test_library_calls_given_the_wrong_kind_of_thing_say_what_they_expected(tmp_path):
    import pixelwise

    with pytest.raises(TypeError, match="^expected a pixelwise.TrainConfig, got dict$"):
        pixelwise.train({"data": "synthetic"})
    for call in (lambda: pixelwise.predict("best.pt", np.zeros((4, 4, 3), np.uint8)),
                 lambda: pixelwise.evaluate(tmp_path / "best.pt", "synthetic")):  # fmt: skip
        with pytest.raises(TypeError, match="got (str|PosixPath); load it first with pixelwise.load_model"):
            call()

import pytest
import torch

import pixelwise.training
from pixelwise.config import TrainConfig
from pixelwise.data.statistics import median_frequency_weights
from pixelwise.data.check import check_dataset
from pixelwise.training import train


@pytest.mark.parametrize("weighting, power", [("none", None), ("median-frequency", 1.0), ("sqrt-median-frequency",
    0.5)])
def test_class_weighting_reaches_the_loss(synthetic_voc, tmp_path, monkeypatch, weighting, power):
    used = []
    real_train_one_epoch = pixelwise.training.train_one_epoch

    def recording(*args, class_weights=None, **kwargs):
        used.append(class_weights)
        return real_train_one_epoch(*args, class_weights=class_weights, **kwargs)

    monkeypatch.setattr(pixelwise.training, "train_one_epoch", recording)
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

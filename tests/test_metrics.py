import math

import pytest
import torch
from torchmetrics.classification import MulticlassJaccardIndex

from pixelwise.metrics import ConfusionMatrix


def test_hand_computed_matrix():
    target = torch.tensor([[0, 0, 1, 1], [2, 2, 255, 0]])
    prediction = torch.tensor([[0, 1, 1, 1], [2, 0, 2, 0]])
    confusion = ConfusionMatrix(num_classes=4)
    confusion.update(prediction, target)
    assert confusion.matrix.tolist() == [[2, 1, 0, 0], [0, 2, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]]
    metrics = confusion.compute()
    assert metrics.pixel_accuracy == pytest.approx(5 / 7)
    assert metrics.iou[:3] == pytest.approx((2 / 4, 2 / 3, 1 / 2))
    assert math.isnan(metrics.iou[3]), "class absent from prediction and truth is NaN, not 0"
    assert metrics.miou == pytest.approx((2 / 4 + 2 / 3 + 1 / 2) / 3)
    assert metrics.mean_class_accuracy == pytest.approx((2 / 3 + 1 + 1 / 2) / 3)
    assert metrics.fwiou == pytest.approx(3 / 7 * 2 / 4 + 2 / 7 * 2 / 3 + 2 / 7 * 1 / 2)


def test_predicted_but_absent_class_counts_as_zero_iou():
    confusion = ConfusionMatrix(num_classes=2)
    confusion.update(torch.tensor([0, 1]), torch.tensor([0, 0]))
    assert confusion.compute().iou == (0.5, 0.0)


def test_accumulates_over_batches_not_averaging_batch_ious():
    confusion = ConfusionMatrix(num_classes=2)
    confusion.update(torch.tensor([0, 0, 0, 0]), torch.tensor([0, 0, 0, 1]))
    confusion.update(torch.tensor([1]), torch.tensor([1]))
    # Whole split: class 0 IoU 3/4, class 1 IoU 1/2. Averaging per-batch mIoUs would give 0.6875.
    assert confusion.compute().miou == pytest.approx((3 / 4 + 1 / 2) / 2)


def test_matches_torchmetrics_on_random_data():
    generator = torch.Generator().manual_seed(0)
    reference = MulticlassJaccardIndex(num_classes=5, ignore_index=255, average=None)
    confusion = ConfusionMatrix(num_classes=5)
    for _ in range(4):
        target = torch.randint(0, 5, (3, 17, 23), generator=generator)
        target[torch.rand(target.shape, generator=generator) < 0.1] = 255
        prediction = torch.randint(0, 5, target.shape, generator=generator)
        reference.update(prediction, target)
        confusion.update(prediction, target)
    assert torch.allclose(torch.tensor(confusion.compute().iou, dtype=torch.float32), reference.compute(), atol=1e-6)


def test_bad_inputs_are_refused():
    confusion = ConfusionMatrix(num_classes=3)
    with pytest.raises(ValueError, match="shape"):
        confusion.update(torch.zeros(2, 2), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="0..2 or 255"):
        confusion.update(torch.zeros(2), torch.tensor([0, 7]))

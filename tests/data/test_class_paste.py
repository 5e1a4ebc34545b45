"""Class copy-paste: which pixels move, from which photo, how often, and how training and data show get it."""

import pytest
import torch

from pixelwise.data.class_paste import PASTE_PROBABILITY, ClassPaste, class_paste
from pixelwise.data.dataset import SegmentationDataset
from pixelwise.data.labels import IGNORE_INDEX
from pixelwise.data.loading import SeededSamples
from pixelwise.data.voc import VOCSegmentation
from pixelwise.errors import DatasetError


def test_the_chosen_classes_pixels_move_at_their_place_and_nothing_else_does():
    image, mask = torch.zeros(3, 2, 3, dtype=torch.uint8), torch.zeros(2, 3, dtype=torch.uint8)
    donor_image = torch.arange(1, 19, dtype=torch.uint8).view(3, 2, 3)
    donor_mask = torch.tensor([[2, 1, IGNORE_INDEX], [3, 2, 0]], dtype=torch.uint8)
    pasted_image, pasted_mask = ClassPaste((2, 3)).paste(image, mask, donor_image, donor_mask)
    chosen = torch.tensor([[True, False, False], [True, True, False]])
    assert torch.equal(pasted_mask, torch.where(chosen, donor_mask, 0))
    assert torch.equal(pasted_image, torch.where(chosen, donor_image, 0)), "every channel of those pixels"


def test_a_donor_of_another_size_is_resized_to_the_photo():
    image, mask = torch.zeros(3, 4, 6, dtype=torch.uint8), torch.zeros(4, 6, dtype=torch.uint8)
    donor_mask = torch.zeros(8, 12, dtype=torch.uint8)
    donor_mask[:, 6:] = 5  # the right half
    donor_image = torch.full((3, 8, 12), 200, dtype=torch.uint8)
    pasted_image, pasted_mask = ClassPaste((5,)).paste(image, mask, donor_image, donor_mask)
    assert pasted_mask.shape == (4, 6) and pasted_image.shape == (3, 4, 6)
    assert (pasted_mask[:, 3:] == 5).all() and (pasted_mask[:, :3] == 0).all()
    assert (pasted_image[:, :, 3:] == 200).all() and (pasted_image[:, :, :3] == 0).all()


def test_the_donor_is_another_photo_drawn_from_all_others_as_often_as_the_probability_says():
    torch.manual_seed(0)
    always, halves = ClassPaste((1,), probability=1.0), ClassPaste((1,))
    assert {always.donor(2, 5) for _ in range(200)} == {0, 1, 3, 4}
    draws = [halves.donor(0, 5) for _ in range(2000)]
    assert sum(draw is not None for draw in draws) / len(draws) == pytest.approx(PASTE_PROBABILITY, abs=0.04)
    assert always.donor(0, 1) is None, "a split of one photo has no other to paste from"


def test_class_names_become_indices_and_a_stranger_is_named_with_the_classes():
    names = ("sky", "pole", "road", "sign")
    assert class_paste(["sign", "pole"], names) == ClassPaste((3, 1))
    assert class_paste([], names) is None
    with pytest.raises(DatasetError, match="^copy_paste names 'signs', which is not a class of this data; its "
                       "classes: sky, pole, road, sign$"):  # fmt: skip
        class_paste(["pole", "signs"], names)


def test_training_samples_take_the_pasted_pixels_and_the_same_key_gives_the_same_sample(synthetic_voc):
    plain = VOCSegmentation(synthetic_voc, "train")
    pasted = SegmentationDataset(plain.samples, plain.classes, paste=ClassPaste((1, 2, 3), probability=1.0))
    samples = SeededSamples(pasted, seed=5)
    image, mask = samples[(1, 0)]
    original_image, original_mask = plain.load(0)
    changed, chosen = mask != original_mask, torch.isin(mask, torch.tensor([1, 2, 3], dtype=torch.uint8))
    assert changed.any(), "some object pixels came from another photo"
    assert chosen[changed].all(), "only pixels of the chosen classes"
    assert torch.equal(image[:, ~chosen], original_image[:, ~chosen]), "the rest of the photo is its own"
    again = samples[(1, 0)]
    assert torch.equal(again[0], image) and torch.equal(again[1], mask)

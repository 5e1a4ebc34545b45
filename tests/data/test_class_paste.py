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


def test_a_donor_of_another_size_is_scaled_to_cover_the_photo_keeping_its_shape_and_centred():
    image, mask = torch.zeros(3, 4, 6, dtype=torch.uint8), torch.zeros(4, 6, dtype=torch.uint8)
    donor_mask = torch.zeros(6, 6, dtype=torch.uint8)
    donor_mask[:, 3] = 5  # an upright line one pixel wide, just right of the centre
    donor_image = torch.full((3, 6, 6), 200, dtype=torch.uint8)
    pasted_image, pasted_mask = ClassPaste((5,)).paste(image, mask, donor_image, donor_mask)
    assert pasted_mask.shape == (4, 6) and pasted_image.shape == (3, 4, 6)
    assert torch.equal(pasted_mask, torch.where(torch.arange(6) == 3, 5, 0).to(torch.uint8).expand(4, 6)), (
        "scaled by 1, its middle 4 rows cut: the line stays one pixel wide and in its column"
    )
    assert (pasted_image[:, :, 3] == 200).all() and (pasted_image[:, :, :3] == 0).all()
    wide = torch.zeros(2, 3, dtype=torch.uint8)
    wide[:, 1] = 5
    _, from_small = ClassPaste((5,)).paste(image, mask, torch.zeros(3, 2, 3, dtype=torch.uint8), wide)
    assert torch.equal(from_small[:, 2:4], torch.full((4, 2), 5, dtype=torch.uint8)), "scaled by 2, its width too"
    assert (from_small[:, :2] == 0).all() and (from_small[:, 4:] == 0).all()


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
    with pytest.raises(DatasetError, match="^copy_paste: unknown class 'signs'; the data's classes are sky, pole, "
                       "road, sign$"):  # fmt: skip
        class_paste(["pole", "signs"], names)


def test_training_samples_take_the_lenders_pixels_and_the_same_key_gives_the_same_sample(synthetic_voc):
    plain = VOCSegmentation(synthetic_voc, "train")
    paste = ClassPaste((1, 2, 3), probability=1.0)
    pasted = SegmentationDataset(plain.samples, plain.classes, paste=paste)
    changed = 0
    for seed in range(5):
        torch.manual_seed(seed)
        lender = paste.donor(0, len(plain))
        torch.manual_seed(seed)
        image, mask = pasted.load_for_training(0)
        expected_image, expected_mask = paste.paste(*plain.load(0), *plain.load(lender))
        assert torch.equal(image, expected_image) and torch.equal(mask, expected_mask), f"seed {seed}"
        changed += not torch.equal(mask, plain.load(0)[1])
    assert changed, "some lender's objects are there"
    samples = SeededSamples(pasted, seed=5)
    first, again = samples[(1, 0)], samples[(1, 0)]
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])


def test_a_lender_that_fails_to_load_lends_nothing_and_the_photo_is_kept(synthetic_voc, tmp_path):
    plain = VOCSegmentation(synthetic_voc, "train")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    samples = [plain.samples[0], (plain.samples[1][0], broken)]
    pasted = SegmentationDataset(samples, plain.classes, paste=ClassPaste((1, 2, 3), probability=1.0))
    image, mask = pasted.load_for_training(0)
    assert torch.equal(image, plain.load(0)[0]) and torch.equal(mask, plain.load(0)[1])
    with pytest.raises(DatasetError, match="broken.png"):
        pasted.load_for_training(1)

"""Class copy-paste: which pixels move, from which photo, how often, and how training and data show get it."""

import pytest
import torch

from pixelwise.data.class_paste import PASTE_PROBABILITY, ClassPaste, class_paste
from pixelwise.data.dataset import SegmentationDataset
from pixelwise.data.labels import IGNORE_INDEX
from pixelwise.data.loading import SeededSamples
from pixelwise.data.voc import VOCSegmentation
from pixelwise.errors import DatasetError, SettingsError


def test_the_chosen_classes_pixels_move_at_their_place_and_nothing_else_does():
    image, mask = torch.zeros(3, 2, 3, dtype=torch.uint8), torch.zeros(2, 3, dtype=torch.uint8)
    lender_image = torch.arange(1, 19, dtype=torch.uint8).view(3, 2, 3)
    lender_mask = torch.tensor([[2, 1, IGNORE_INDEX], [3, 2, 0]], dtype=torch.uint8)
    pasted_image, pasted_mask = ClassPaste((2, 3)).paste(image, mask, lender_image, lender_mask)
    chosen = torch.tensor([[True, False, False], [True, True, False]])
    assert torch.equal(pasted_mask, torch.where(chosen, lender_mask, 0))
    assert torch.equal(pasted_image, torch.where(chosen, lender_image, 0)), "every channel of those pixels"


def test_a_lender_of_another_shape_is_scaled_to_cover_the_photo_and_its_centre_cut_from_image_and_mask_alike():
    image, mask = torch.zeros(3, 4, 6, dtype=torch.uint8), torch.zeros(4, 6, dtype=torch.uint8)
    wide_mask = torch.zeros(4, 12, dtype=torch.uint8)
    wide_mask[:, [2, 3, 8, 9]] = 5
    wide_image = torch.arange(12, dtype=torch.uint8).expand(3, 4, 12) + 100  # each column its own value
    pasted_image, pasted_mask = ClassPaste((5,)).paste(image, mask, wide_image, wide_mask)
    assert pasted_mask.shape == (4, 6) and pasted_image.shape == (3, 4, 6)
    kept = torch.tensor([5, 0, 0, 0, 0, 5], dtype=torch.uint8).expand(4, 6)
    assert torch.equal(pasted_mask, kept), "not stretched: columns 3 to 8 of the 12 kept, at scale 1"
    assert torch.equal(pasted_image[:, :, [0, 5]], torch.tensor([103, 108], dtype=torch.uint8).expand(3, 4, 2))
    tall_mask = torch.zeros(6, 6, dtype=torch.uint8)
    tall_mask[1] = 5
    _, from_tall = ClassPaste((5,)).paste(image, mask, torch.zeros(3, 6, 6, dtype=torch.uint8), tall_mask)
    assert torch.equal(from_tall[0], torch.full((6,), 5, dtype=torch.uint8)) and not from_tall[1:].any(), (
        "rows 1 to 4 of the 6 kept: its row 1 is the photo's row 0"
    )
    small_mask = torch.zeros(2, 3, dtype=torch.uint8)
    small_mask[:, 1] = 5
    _, from_small = ClassPaste((5,)).paste(image, mask, torch.zeros(3, 2, 3, dtype=torch.uint8), small_mask)
    assert torch.equal(from_small[:, 2:4], torch.full((4, 2), 5, dtype=torch.uint8)), "scaled by 2"
    assert not from_small[:, :2].any() and not from_small[:, 4:].any()


def test_the_lender_is_another_photo_drawn_from_all_others_as_often_as_the_probability_says():
    torch.manual_seed(0)
    always, halves = ClassPaste((1,), probability=1.0), ClassPaste((1,))
    assert {always.lender(2, 5) for _ in range(200)} == {0, 1, 3, 4}
    draws = [halves.lender(0, 5) for _ in range(2000)]
    assert sum(draw is not None for draw in draws) / len(draws) == pytest.approx(PASTE_PROBABILITY, abs=0.04)
    assert always.lender(0, 1) is None, "a split of one photo has no other to paste from"


def test_class_names_become_indices_read_as_predict_keep_reads_them_and_a_stranger_is_named_with_the_classes():
    names = ("sky", "pole", "road", "sign")
    assert class_paste(["sign", "pole"], names) == class_paste(["sign, pole"], names) == ClassPaste((3, 1))
    assert class_paste([], names) is None
    assert class_paste(["cars, vans"], ("sky", "cars, vans")) == ClassPaste((1,)), "a name may hold a comma"
    with pytest.raises(SettingsError, match="^copy_paste: unknown class 'signs'; the data's classes are sky, pole, "
                       "road, sign$"):  # fmt: skip
        class_paste(["pole,signs"], names)
    with pytest.raises(SettingsError, match="^copy_paste: names 'pole' twice$"):
        class_paste(["pole,sign", "pole"], names)
    with pytest.raises(SettingsError, match="^copy_paste: expected class names separated by commas, got 'pole,'$"):
        class_paste(["pole,"], names)


def test_training_samples_take_the_lenders_pixels_and_the_same_key_gives_the_same_sample(synthetic_voc):
    plain = VOCSegmentation(synthetic_voc, "train")
    paste = ClassPaste((1, 2, 3), probability=1.0)
    pasted = SegmentationDataset(plain.samples, plain.classes, paste=paste)
    changed = 0
    for seed in range(5):
        torch.manual_seed(seed)
        lender = paste.lender(0, len(plain))
        torch.manual_seed(seed)
        image, mask = pasted[0]
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
    image, mask = pasted[0]
    assert torch.equal(image, plain.load(0)[0]) and torch.equal(mask, plain.load(0)[1])
    with pytest.raises(DatasetError, match="broken.png"):
        pasted[1]

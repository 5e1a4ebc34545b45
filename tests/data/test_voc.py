import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import tv_tensors

from pixelwise.data.voc import VOCSegmentation, find_voc_root
from pixelwise.errors import DatasetError


@pytest.fixture
def voc_copy(synthetic_voc, tmp_path):
    """A writable copy of the synthetic VOC2012 folder, for tests that break it."""
    return shutil.copytree(synthetic_voc, tmp_path / "VOCdevkit" / "VOC2012")


def test_find_voc_root_accepts_three_spellings(synthetic_voc):
    for spelling in (synthetic_voc, synthetic_voc.parent, synthetic_voc.parent.parent):
        assert find_voc_root(spelling) == synthetic_voc


def test_find_voc_root_rejects_other_folders(tmp_path):
    with pytest.raises(DatasetError, match="not a VOC tree"):
        find_voc_root(tmp_path)


def test_dataset_reads_pairs_lazily_with_classes_from_csv(synthetic_voc):
    dataset = VOCSegmentation(synthetic_voc.parent.parent, split="train")
    assert len(dataset) == 12
    assert dataset.class_names[0] == "background" and len(dataset.class_names) == 4
    assert len(dataset.palette) == 4
    assert all(isinstance(path, type(synthetic_voc)) for pair in dataset.samples for path in pair)
    image, mask = dataset[0]
    assert isinstance(image, tv_tensors.Image) and image.dtype == torch.uint8 and image.shape[0] == 3
    assert isinstance(mask, tv_tensors.Mask) and mask.dtype == torch.uint8
    assert mask.shape == image.shape[1:]
    assert set(mask.unique().tolist()) <= {0, 1, 2, 3, 255}
    assert (mask == 255).any(), "object boundaries are ignored"


def test_dataset_without_classes_csv_uses_the_21_voc_classes(voc_copy):
    (voc_copy / "classes.csv").unlink()
    assert len(VOCSegmentation(voc_copy, split="val").class_names) == 21


def test_transforms_are_called_on_the_pair(synthetic_voc):
    calls = []

    def record(image, mask):
        calls.append((image.shape[1:], mask.shape))
        return image, mask

    VOCSegmentation(synthetic_voc, split="val", transforms=record)[1]
    assert calls and calls[0][0] == calls[0][1]


def test_missing_split_lists_available_ones(synthetic_voc):
    with pytest.raises(DatasetError, match=r"test\.txt: split file not found \(available: train, trainval, val\)"):
        VOCSegmentation(synthetic_voc, split="test")


@pytest.mark.parametrize("bad_name", ["../../etc/passwd", "/etc/passwd", "sub/000001", "..\\x"])
def test_split_names_cannot_escape_the_tree(voc_copy, bad_name):
    (voc_copy / "ImageSets" / "Segmentation" / "train.txt").write_text(f"000000\n{bad_name}\n")
    with pytest.raises(DatasetError, match=r"train\.txt:2: name .* escapes the dataset folder"):
        VOCSegmentation(voc_copy, split="train")


def test_empty_split_is_an_error(voc_copy):
    (voc_copy / "ImageSets" / "Segmentation" / "train.txt").write_text("\n\n")
    with pytest.raises(DatasetError, match="split is empty"):
        VOCSegmentation(voc_copy, split="train")


def test_missing_image_is_named_at_construction(voc_copy):
    (voc_copy / "JPEGImages" / "000003.jpg").unlink()
    with pytest.raises(DatasetError, match=r"000003\.jpg: file listed by .*train\.txt is missing"):
        VOCSegmentation(voc_copy, split="train")


def test_label_of_another_size_is_named(voc_copy):
    label = voc_copy / "SegmentationClass" / "000000.png"
    Image.open(label).resize((7, 5)).save(label)
    dataset = VOCSegmentation(voc_copy, split="train")
    with pytest.raises(DatasetError, match=r"000000\.png: 7x5 label for a \d+x\d+ image"):
        dataset[0]


def test_truncated_image_is_named(voc_copy):
    photo = voc_copy / "JPEGImages" / "000001.jpg"
    photo.write_bytes(photo.read_bytes()[:200])
    with pytest.raises(DatasetError, match=r"000001\.jpg: cannot decode image"):
        VOCSegmentation(voc_copy, split="train")[1]


def test_rgb_colour_labels_in_a_voc_tree_decode_like_palette_ones(voc_copy):
    label = voc_copy / "SegmentationClass" / "000002.png"
    palette_mask = VOCSegmentation(voc_copy, split="train")[2][1]
    Image.open(label).convert("RGB").save(label)
    assert Image.open(label).mode == "RGB"
    rgb_mask = VOCSegmentation(voc_copy, split="train")[2][1]
    assert torch.equal(palette_mask, rgb_mask)
    assert np.isin(rgb_mask.unique().numpy(), [0, 1, 2, 3, 255]).all()

import numpy as np
import pytest
from PIL import Image

from pixelwise.data.folder import FolderSegmentation
from pixelwise.errors import DatasetError


def make_folder_tree(root, sizes=((20, 16), (24, 18)), split="train"):
    """A tiny folder-layout dataset: 2 classes, value 9 = void."""
    (root / "images" / split).mkdir(parents=True)
    (root / "labels" / split).mkdir(parents=True)
    (root / "classes.csv").write_text(
        "index,name,r,g,b,ignore\n0,ground,10,10,10,0\n1,thing,200,0,0,0\n9,void,0,0,0,1\n"
    )
    for number, (width, height) in enumerate(sizes):
        Image.new("RGB", (width, height), (number * 40, 80, 120)).save(root / "images" / split / f"{number}.jpg")
        label = np.zeros((height, width), dtype=np.uint8)
        label[: height // 2] = 1
        label[0, 0] = 9
        Image.fromarray(label, mode="L").save(root / "labels" / split / f"{number}.png")
    return root


def test_folder_dataset_maps_void_to_ignore(tmp_path):
    dataset = FolderSegmentation(make_folder_tree(tmp_path), split="train")
    assert len(dataset) == 2 and dataset.class_names == ("ground", "thing")
    image, mask = dataset[0]
    assert image.shape == (3, 16, 20) and mask.shape == (16, 20)
    assert mask[0, 0] == 255 and mask[1, 0] == 1 and mask[-1, -1] == 0


def test_folder_dataset_errors_name_the_problem(tmp_path):
    with pytest.raises(DatasetError, match="not a folder dataset"):
        FolderSegmentation(tmp_path)
    root = make_folder_tree(tmp_path)
    with pytest.raises(DatasetError, match=r"split not found \(available: train\)"):
        FolderSegmentation(root, split="val")
    (root / "labels" / "train" / "1.png").unlink()
    with pytest.raises(DatasetError, match=r"labels/train/1\.png: file listed by .* is missing$"):
        FolderSegmentation(root)
    Image.new("L", (24, 18)).save(root / "labels" / "train" / "1.jpg")
    with pytest.raises(
        DatasetError, match=r"labels/train/1\.png: file listed by .* is missing; found 1\.jpg, not 1\.png$"
    ):
        FolderSegmentation(root)


def test_folder_dataset_refuses_values_outside_the_table(tmp_path):
    root = make_folder_tree(tmp_path)
    Image.fromarray(np.full((16, 20), 4, dtype=np.uint8), mode="L").save(root / "labels" / "train" / "0.png")
    with pytest.raises(
        DatasetError, match=r"0\.png: label values 4 \(320 px\) are neither a class \(0, 1\) nor ignored \(9, 255\)"
    ):
        FolderSegmentation(root)[0]


def test_camvid_reads_with_eleven_classes_and_void_ignored(camvid_root):
    train = FolderSegmentation(camvid_root, split="train")
    val = FolderSegmentation(camvid_root, split="val")
    assert (len(train), len(val)) == (367, 101)
    assert len(train.class_names) == 11 and "void" not in train.class_names
    assert train.class_names[:4] == ("sky", "building", "pole", "road")
    image, mask = val[0]
    assert image.shape == (3, 360, 480) and mask.shape == (360, 480)
    values = set(mask.unique().tolist())
    assert values <= set(range(11)) | {255}
    raw = np.asarray(Image.open(val.samples[0][1]))
    assert ((raw == 11) == (mask.numpy() == 255)).all(), "void (11) and only void becomes 255"


def test_a_photo_that_is_a_broken_link_is_named_as_one(tmp_path):
    from pixelwise.data.check import check_dataset

    root = make_folder_tree(tmp_path)
    (root / "images" / "train" / "1.jpg").unlink()
    (root / "images" / "train" / "1.jpg").symlink_to(tmp_path / "nowhere.jpg")
    with pytest.raises(DatasetError, match=rf"images/train/1\.jpg: broken link \(to {tmp_path}/nowhere\.jpg\)$"):
        FolderSegmentation(root, split="train")
    problems = "\n".join(check_dataset(root).problems)
    assert f"images/train/1.jpg: broken link (to {tmp_path}/nowhere.jpg)" in problems
    assert "label without an image" not in problems

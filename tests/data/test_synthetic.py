import numpy as np
import pytest
from PIL import Image

from pixelwise.data.synthetic import MAX_CLASSES, make_synthetic_voc, object_style, render_sample
from pixelwise.data.voc import VOCSegmentation
from pixelwise.errors import DatasetError


def test_same_seed_writes_identical_files(tmp_path):
    first = make_synthetic_voc(tmp_path / "a", num_train=3, num_val=1, seed=7)
    second = make_synthetic_voc(tmp_path / "b", num_train=3, num_val=1, seed=7)
    other = make_synthetic_voc(tmp_path / "c", num_train=3, num_val=1, seed=8)
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert len(files) == 4 * 2 + 3 + 1
    assert all((first / f).read_bytes() == (second / f).read_bytes() for f in files)
    assert (first / "JPEGImages" / "000000.jpg").read_bytes() != (other / "JPEGImages" / "000000.jpg").read_bytes()


def test_a_smaller_second_tree_in_the_same_place_leaves_no_earlier_sample(tmp_path):
    make_synthetic_voc(tmp_path, num_train=4, num_val=2, size_range=(16, 16))
    root = make_synthetic_voc(tmp_path, num_train=2, num_val=1, size_range=(16, 16))
    for folder in ("JPEGImages", "SegmentationClass"):
        assert sorted(path.stem for path in (root / folder).iterdir()) == ["000000", "000001", "000002"]


def test_tree_is_voc_format_with_palette_labels_and_sizes_in_range(tmp_path):
    root = make_synthetic_voc(tmp_path, num_train=8, num_val=2, num_classes=6, size_range=(30, 60), seed=1)
    label = Image.open(root / "SegmentationClass" / "000000.png")
    assert label.mode == "P"
    dataset = VOCSegmentation(root, split="trainval")
    assert len(dataset) == 10 and len(dataset.class_names) == 6
    for image_path, _ in dataset.samples:
        width, height = Image.open(image_path).size
        assert 30 <= width <= 60 and 30 <= height <= 60


def test_every_object_class_has_its_own_shape_and_texture():
    styles = [object_style(c) for c in range(1, MAX_CLASSES)]
    assert len(set(styles)) == MAX_CLASSES - 1


def test_objects_are_outlined_with_ignore():
    _, labels = render_sample(80, 100, num_classes=5, rng=np.random.default_rng(0))
    objects = labels[(labels != 0) & (labels != 255)]
    assert objects.size > 0 and (labels == 255).any()
    # Every object pixel next to background is separated from it by the ignore band.
    inner = labels[1:-1, 1:-1]
    for dy, dx in ((0, 1), (1, 0)):
        neighbour = labels[1 + dy : labels.shape[0] - 1 + dy, 1 + dx : labels.shape[1] - 1 + dx]
        assert not ((inner == 0) & (neighbour != 0) & (neighbour != 255)).any()


def test_classes_are_not_separable_by_colour_alone():
    """A nearest-mean-colour classifier on object pixels stays close to chance."""
    pixels, classes = [], []
    for index in range(40):
        photo, labels = render_sample(64, 64, num_classes=5, rng=np.random.default_rng([11, index]))
        keep = (labels != 0) & (labels != 255)
        pixels.append(photo[keep].astype(np.float64))
        classes.append(labels[keep])
    pixels, classes = np.concatenate(pixels), np.concatenate(classes)
    means = np.stack([pixels[classes == c].mean(axis=0) for c in range(1, 5)])
    nearest = np.argmin(((pixels[:, None, :] - means[None]) ** 2).sum(-1), axis=1) + 1
    assert (nearest == classes).mean() < 0.4  # chance is 0.25 for 4 object classes


@pytest.mark.parametrize("kwargs", [{"num_classes": 1}, {"num_classes": 22}, {"size_range": (50, 20)},
    {"num_train": 0}])
def test_bad_arguments_are_refused(tmp_path, kwargs):
    with pytest.raises(ValueError):
        make_synthetic_voc(tmp_path, **kwargs)


def test_an_earlier_synthetic_tree_is_replaced_but_another_voc_tree_is_refused(tmp_path):
    root = make_synthetic_voc(tmp_path, num_train=3, num_val=1, num_classes=3, size_range=(16, 24))
    again = make_synthetic_voc(tmp_path, num_train=2, num_val=1, num_classes=4, size_range=(16, 24))
    assert again == root and len(VOCSegmentation(root, "train")) == 2 and len(VOCSegmentation(root,
        "train").class_names) == 4
    (root / "classes.csv").unlink()  # now it reads as VOC 2012 itself: its own split files must survive
    split_file = root / "ImageSets" / "Segmentation" / "train.txt"
    before = split_file.read_text()
    with pytest.raises(DatasetError, match="holds files that pixelwise data synth did not write"):
        make_synthetic_voc(tmp_path, num_train=5, num_val=1)
    assert split_file.read_text() == before
    own = tmp_path / "own" / "VOCdevkit" / "VOC2012" / "JPEGImages"  # a user's photos, no split files yet
    own.mkdir(parents=True)
    (own / "000000.jpg").write_bytes(b"precious")
    with pytest.raises(DatasetError, match="holds files that pixelwise data synth did not write"):
        make_synthetic_voc(tmp_path / "own", num_train=2, num_val=1)
    assert (own / "000000.jpg").read_bytes() == b"precious"

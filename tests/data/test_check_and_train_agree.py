"""One validation for `data check` and `train`: what check calls a problem stops training, or is skipped and counted."""

import csv
import json

import numpy as np
import pytest
from PIL import Image

from pixelwise.cli import main

CLASSES = "index,name,r,g,b,ignore\n0,ground,0,0,0,0\n1,thing,255,0,0,0\n"
TRAIN = ["--epochs", "1", "--batch-size", "2", "--crop-size", "32x32", "--workers", "0", "--model", "fcn32s",
    "--quiet", "--device", "cpu"]


def good_label(seed: int) -> np.ndarray:
    """A 48x64 label with both classes and a band of ignored pixels."""
    label = np.zeros((48, 64), dtype=np.uint8)
    label[10 + seed % 5 : 30, 20:50] = 1
    label[:, :2] = 255
    return label


def write_pair(root, split: str, name: str, label: np.ndarray | Image.Image) -> None:
    """A noise photo and its label (an array is saved as a grayscale PNG)."""
    for kind in ("images", "labels"):
        (root / kind / split).mkdir(parents=True, exist_ok=True)
    photo = np.random.default_rng(len(name)).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    Image.fromarray(photo).save(root / "images" / split / f"{name}.jpg")
    image = Image.fromarray(label, mode="L") if isinstance(label, np.ndarray) else label
    image.save(root / "labels" / split / f"{name}.png")


@pytest.fixture
def folder(tmp_path):
    """A clean folder dataset: 6 train and 2 val pairs, 2 classes."""
    root = tmp_path / "data"
    for index in range(6):
        write_pair(root, "train", f"t{index}", good_label(index))
    for index in range(2):
        write_pair(root, "val", f"v{index}", good_label(index))
    (root / "classes.csv").write_text(CLASSES)
    return root


def colours(*rgb) -> Image.Image:
    """An RGB label whose rows cycle through the given colours."""
    array = np.zeros((48, 64, 3), dtype=np.uint8)
    for row in range(48):
        array[row] = rgb[row % len(rgb)]
    return Image.fromarray(array)


def all_ignored(root, split):
    for path in (root / "labels" / split).glob("*.png"):
        Image.fromarray(np.full((48, 64), 255, dtype=np.uint8), mode="L").save(path)


def background_only(root, split):
    for path in (root / "labels" / split).glob("*.png"):
        Image.fromarray(np.zeros((48, 64), dtype=np.uint8), mode="L").save(path)


def unknown_rgb_colours(root, split):
    for path in (root / "labels" / split).glob("*.png"):
        colours((1, 1, 1), (2, 2, 2)).save(path)


def semi_transparent(root, split):
    rgba = np.zeros((48, 64, 4), dtype=np.uint8)
    rgba[..., 3] = 128
    Image.fromarray(rgba, mode="RGBA").save(root / "labels" / split / f"{split[0]}0.png")


def value_outside_table(root, split):
    label = good_label(0)
    label[0, 5] = 7
    Image.fromarray(label, mode="L").save(root / "labels" / split / f"{split[0]}1.png")


def size_mismatch(root, split):
    Image.fromarray(good_label(0)[:20], mode="L").save(root / "labels" / split / f"{split[0]}0.png")


def truncated_photo(root, split):
    photo = root / "images" / split / f"{split[0]}1.jpg"
    photo.write_bytes(photo.read_bytes()[:400])


def missing_split(root, split):
    for kind in ("images", "labels"):
        for path in (root / kind / split).iterdir():
            path.unlink()
        (root / kind / split).rmdir()


def lone_label(root, split):
    (root / "images" / split / f"{split[0]}0.jpg").unlink()


def lone_image(root, split):
    (root / "labels" / split / f"{split[0]}0.png").unlink()


# (how the data breaks, the split it breaks, what the messages say, whether skipping leaves something to train on)
BROKEN = [
    (all_ignored, "train", "no labelled pixel in split 'train'", False),
    (all_ignored, "val", "no labelled pixel in split 'val'", False),
    (background_only, "train", "only class 'ground' is labelled in split 'train'", False),
    (unknown_rgb_colours, "train", "colours (1, 1, 1)", False),
    (semi_transparent, "train", "semi-transparent label pixels", True),
    (value_outside_table, "val", "label values 7 (1 px) are neither a class", True),
    (size_mismatch, "train", "64x20 label for a 64x48 image", True),
    (truncated_photo, "train", "t1.jpg: cannot decode image", True),
    (truncated_photo, "val", "v1.jpg: cannot decode image", True),
    (missing_split, "val", "(available: train)", False),
    (lone_label, "train", "t0.png: label without an image", True),
    (lone_image, "val", "v0.jpg: image without a label", True),
]


@pytest.mark.parametrize("breaks, split, message, trainable", BROKEN, ids=[f"{b.__name__}-{s}" for b, s, *_ in BROKEN])
def test_what_data_check_calls_a_problem_stops_training_or_is_skipped(folder, tmp_path, capsys, breaks, split,
    message, trainable):
    breaks(folder, split)
    assert main(["data", "check", str(folder)]) == 1
    assert message in capsys.readouterr().out
    run = tmp_path / "run"
    assert main(["train", "--data", str(folder), "--out", str(run), *TRAIN]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not run.exists(), "stopped before the run directory was written: no epoch of work is lost"
    code = main(["train", "--data", str(folder), "--out", str(run), *TRAIN, "--on-bad-sample", "skip"])
    out, err = capsys.readouterr()
    if not trainable:
        assert code == 2 and len(err.strip().splitlines()) == 1 and not run.exists()
        return
    assert code == 0, err
    assert "skipped: " in out and message in out
    row = next(csv.DictReader(open(run / "metrics.csv")))
    counted = row["val_skipped"] if split == "val" else row["skipped"]
    assert counted == "1", f"the left-out {split} file is counted in metrics.csv"
    said = "val left out 1 bad photo(s)" if split == "val" else "skipped 1 bad sample(s)"
    assert said in out, "and said in the epoch line"


def test_a_clean_folder_is_clean_for_both(folder, tmp_path, capsys):
    assert main(["data", "check", str(folder)]) == 0
    assert main(["train", "--data", str(folder), "--out", str(tmp_path / "run"), *TRAIN]) == 0
    row = next(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    assert (row["skipped"], row["val_skipped"], row["images"]) == ("0", "0", "6")


def test_transparent_rgba_label_pixels_are_unlabelled(folder, capsys):
    rgba = np.zeros((48, 64, 4), dtype=np.uint8)
    rgba[:, :20] = (255, 0, 0, 255)  # thing, opaque
    rgba[:, 20:40] = (0, 0, 0, 255)  # ground, opaque
    rgba[:, 40:] = (0, 0, 0, 0)  # transparent black: unlabelled, not 'ground'
    for path in (folder / "labels" / "train").glob("*.png"):
        Image.fromarray(rgba, mode="RGBA").save(path)
    assert main(["data", "check", str(folder), "--json"]) == 0
    train = json.loads(capsys.readouterr().out)["splits"]["train"]
    assert train["class_pixels"] == {"ground": 6 * 48 * 20, "thing": 6 * 48 * 20}
    assert train["ignored_share"] == pytest.approx(24 / 64)


def test_palette_labels_whose_colours_disagree_with_the_table_are_a_warning(folder, capsys):
    for index, path in enumerate(sorted((folder / "labels" / "train").glob("*.png"))):
        label = Image.fromarray(good_label(index), mode="P")
        label.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)  # value 1 drawn green; the table says red
        label.save(path)
    assert main(["data", "check", str(folder)]) == 0, "a warning, not a problem: the values decide the class"
    out = capsys.readouterr().out
    assert "warning: 6 palette label(s) of split 'train' colour their values unlike the class table" in out
    assert "value 1 (thing) is (0, 255, 0) in" in out and "(255, 0, 0) in the class table" in out


def test_a_malformed_class_table_is_one_line_and_exit_2(folder, capsys):
    (folder / "classes.csv").write_text("index,name,r,g,b\n0,ground,0,0,0\n1,ground,255,0,0\n")
    assert main(["data", "check", str(folder)]) == 2
    err = capsys.readouterr().err
    assert "classes.csv:3: name 'ground' repeats line 2" in err and len(err.strip().splitlines()) == 1


def test_two_photos_of_one_stem_and_unusable_split_names_are_problems(folder, tmp_path, capsys):
    Image.new("RGB", (64,
        48)).save(folder / "images" / "train" / "t0.png")  # beside t0.jpg: which one does t0.png label?
    assert main(["data", "check", str(folder)]) == 1
    out = capsys.readouterr().out
    assert "t0.jpg: another photo of split 'train' has the stem 't0'" in out and "t0.png: another photo" in out
    assert main(["data", "synth", "--out", str(tmp_path / "voc"), "--num-train", "2", "--num-val", "1", "--classes",
        "3", "--min-size", "40", "--max-size", "60"]) == 0
    split = tmp_path / "voc" / "VOCdevkit" / "VOC2012" / "ImageSets" / "Segmentation" / "train.txt"
    split.write_bytes("\ufeff000000\r\n".encode() + b"x" * 300 + b"\nbad\x00name\n000001\n")
    assert main(["data", "check", str(split.parents[2]), "--split", "train"]) == 1
    out = capsys.readouterr().out
    assert out.count("is not a file name") == 2
    assert "2 usable samples" in out, "the byte-order mark is not part of 000000"

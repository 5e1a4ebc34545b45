"""The bad-input corpus: every kind of broken or unusual file, generated here, and its outcome."""

import io
import shutil
import warnings

import numpy as np
import pytest
from PIL import Image

from pixelwise.cli import main
from pixelwise.data.check import check_dataset
from pixelwise.data.io import read_image, read_label_array, to_rgb
from pixelwise.data.voc import VOCSegmentation
from pixelwise.errors import DatasetError


def jpeg_bytes(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", **options)
    return buffer.getvalue()


# ------------------------------------------------------------ photos that are valid and converted


def test_grayscale_rgba_and_cmyk_photos_become_rgb(tmp_path):
    Image.new("L", (8, 6), 100).save(tmp_path / "gray.png")
    Image.new("RGBA", (8, 6), (10, 20, 30, 0)).save(tmp_path / "rgba.png")
    (tmp_path / "cmyk.jpg").write_bytes(jpeg_bytes(Image.new("CMYK", (8, 6), (0, 255, 255, 0))))
    for name in ("gray.png", "rgba.png", "cmyk.jpg"):
        photo = read_image(tmp_path / name)
        assert photo.mode == "RGB" and photo.size == (8, 6), name
    assert read_image(tmp_path / "cmyk.jpg").getpixel((4, 3))[0] > 200, "CMYK red stays red"


def test_sixteen_bit_grayscale_photo_keeps_its_tones_and_32_bit_is_refused(tmp_path):
    tones = np.array([[0, 256 * 100, 65535]], dtype=np.uint16)
    Image.fromarray(tones).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode == "I;16"
    assert np.asarray(read_image(tmp_path / "deep.png"))[0, :, 0].tolist() == [0, 100, 255]
    Image.fromarray(np.zeros((2, 3), dtype=np.float32)).save(tmp_path / "float.tif")
    with pytest.raises(DatasetError, match=r"float\.tif: photo mode 'F' \(32-bit pixels\) is not supported"):
        read_image(tmp_path / "float.tif")


def test_pictures_without_pixels_or_with_unconvertible_modes_are_named():
    with pytest.raises(DatasetError, match=r"^given: an image without pixels \(0x5\)$"):
        to_rgb(Image.new("RGB", (0, 5)), "given")
    with pytest.raises(DatasetError, match=r"^given: photo mode 'La' cannot be converted to RGB"):
        to_rgb(Image.new("LA", (2, 2)).convert("La"), "given")


def test_a_palette_with_transparency_converts_without_a_warning():
    picture = Image.new("P", (2, 1))
    picture.putpalette([10, 20, 30, 200, 0, 0] + [0] * 762)
    picture.putpixel((1, 0), 1)
    picture.info["transparency"] = bytes([0, 255] + [255] * 254)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.asarray(to_rgb(picture, "given")).tolist() == [[[10, 20, 30], [200, 0, 0]]]


def test_exif_rotated_photo_is_turned_upright(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    (tmp_path / "rotated.jpg").write_bytes(jpeg_bytes(Image.new("RGB", (40, 20)), exif=exif))
    assert read_image(tmp_path / "rotated.jpg").size == (20, 40)


# ------------------------------------------------------------ files that are errors naming the file


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("empty.jpg", b"", r"empty file \(0 bytes\), not an image"),
        ("text.jpg", b"this is not an image\n", "cannot decode image"),
        ("truncated.jpg", jpeg_bytes(Image.new("RGB", (64, 64), (200, 10, 10)))[:300], "cannot decode image"),
    ],
)
def test_undecodable_photos_are_named(tmp_path, name, content, message):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(DatasetError, match=f"{name}: {message}"):
        read_image(tmp_path / name)


def test_truncated_png_label_is_named(tmp_path):
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 3, (64, 64), dtype=np.uint8), mode="L").save(buffer,
        format="PNG")
    (tmp_path / "cut.png").write_bytes(buffer.getvalue()[:120])
    with pytest.raises(DatasetError, match=r"cut\.png: cannot decode image"):
        read_label_array(tmp_path / "cut.png")


def test_decompression_bomb_is_refused(tmp_path, monkeypatch):
    Image.new("RGB", (100, 100)).save(tmp_path / "huge.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 100x100 is then over twice the limit
    with pytest.raises(DatasetError, match=r"huge\.png: refused, image too large"):
        read_image(tmp_path / "huge.png")


def test_sixteen_bit_label_is_refused(tmp_path):
    Image.fromarray(np.zeros((4, 4), dtype=np.uint16)).save(tmp_path / "deep.png")
    with pytest.raises(DatasetError, match=r"deep\.png: label mode 'I;16' is not supported"):
        read_label_array(tmp_path / "deep.png")


# ------------------------------------------------------------ a broken VOC tree: dataset errors and data check


@pytest.fixture
def broken_voc(synthetic_voc, tmp_path):
    """A copy of the synthetic tree with one problem per sample 000000..000004 of train."""
    root = shutil.copytree(synthetic_voc, tmp_path / "VOC2012")
    (root / "JPEGImages" / "000000.jpg").write_bytes(b"")
    label = root / "SegmentationClass" / "000001.png"
    Image.open(label).resize((5, 5)).save(label)
    values = np.array(Image.open(root / "SegmentationClass" / "000002.png"))
    values[0, :3] = 17
    Image.fromarray(values, mode="L").save(root / "SegmentationClass" / "000002.png")
    (root / "JPEGImages" / "000003.jpg").rename(root / "JPEGImages" / "000003.jpeg")
    split = root / "ImageSets" / "Segmentation" / "train.txt"
    split.write_text(split.read_text() + "../../outside\n000004\n")
    (root / "ImageSets" / "Segmentation" / "empty.txt").write_text("\n")
    return root


def test_dataset_construction_names_the_first_unusable_line(broken_voc):
    with pytest.raises(DatasetError, match=r"train\.txt:13: name '\.\./\.\./outside' escapes the dataset folder"):
        VOCSegmentation(broken_voc, "train")
    with pytest.raises(DatasetError, match="split is empty"):
        VOCSegmentation(broken_voc, "empty")


def test_data_check_reports_every_problem(broken_voc):
    report = check_dataset(broken_voc, crop_size=(60, 60))
    train = next(split for split in report.splits if split.name == "train")
    problems = "\n".join(train.problems)
    assert "000000.jpg: empty file (0 bytes), not an image" in problems
    assert "000001.png: 5x5 label for a" in problems
    assert "000002.png: label values 17 (3 px) are neither a class (0..3) nor ignored (255)" in problems
    assert "000003.jpg: image listed by" in problems and "is missing; found 000003.jpeg, not 000003.jpg" in problems
    assert "escapes the dataset folder" in problems and "'000004' is listed twice" in problems
    assert len(train.problems) == 6
    assert train.samples == 12 - 4, "the other samples are still counted"
    assert train.smaller_than_crop, "synthetic images of 40..90 px include some below 60x60"
    assert sum(train.class_pixels) > 0 and train.ignored_pixels > 0
    empty = next(split for split in report.splits if split.name == "empty")
    empty_split = broken_voc / "ImageSets" / "Segmentation" / "empty.txt"
    assert empty.fatal == [f"{empty_split}: split is empty"] and not empty.problems


def test_data_check_cli_exit_codes(broken_voc, synthetic_voc, capsys):
    assert main(["data", "check", str(synthetic_voc)]) == 0
    assert "clean" in capsys.readouterr().out
    assert main(["data", "check", str(broken_voc), "--split", "train", "--json"]) == 1
    import json

    result = json.loads(capsys.readouterr().out)
    assert result["clean"] is False and len(result["splits"]["train"]["problems"]) == 6
    assert main(["data", "check", str(broken_voc), "--split", "nope"]) == 2
    assert "no split 'nope'" in capsys.readouterr().err


def test_data_check_on_a_folder_dataset_pairs_images_and_labels(tmp_path):
    root = tmp_path / "folder"
    for kind in ("images", "labels"):
        (root / kind / "train").mkdir(parents=True)
    (root / "classes.csv").write_text("index,name,r,g,b,ignore\n0,ground,0,0,0,0\n1,thing,255,0,0,0\n2,void,9,9,9,1\n")
    Image.new("RGB", (10, 8)).save(root / "images" / "train" / "a.jpg")
    Image.new("RGB", (10, 8)).save(root / "images" / "train" / "lonely.jpg")
    Image.new("RGB", (10, 8)).save(root / "images" / "train" / "lossy.jpg")
    Image.new("L", (10, 8)).save(root / "labels" / "train" / "lossy.jpg")
    Image.fromarray(np.full((8, 10), 1, dtype=np.uint8), mode="L").save(root / "labels" / "train" / "a.png")
    Image.fromarray(np.zeros((8, 10), dtype=np.uint8), mode="L").save(root / "labels" / "train" / "orphan.png")
    rgb = np.zeros((8, 10, 3), dtype=np.uint8)
    rgb[0, 0] = (1, 2, 3)
    Image.new("RGB", (10, 8)).save(root / "images" / "train" / "colour.jpg")
    Image.fromarray(rgb).save(root / "labels" / "train" / "colour.png")
    report = check_dataset(root)
    problems = "\n".join(report.problems)
    assert "lonely.jpg: image without a label\n" in problems + "\n"
    assert "lossy.jpg: image without a label; found lossy.jpg, not lossy.png" in problems
    assert "orphan.png: label without an image" in problems
    assert "colour.png: colours (1, 2, 3) (1 px) are not in the class map" in problems
    assert report.split("train").samples == 1, "only a.png decodes"
    assert "images/val: split not found (available: train)" in problems, "training would need a val split"


def test_photos_between_pillows_limit_and_twice_it_decode_without_its_warning(tmp_path, monkeypatch):
    import warnings

    Image.new("RGB", (40, 40)).save(tmp_path / "large.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 1,600 pixels: over the limit, under twice it
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert read_image(tmp_path / "large.png").size == (40, 40)
    assert not caught


def test_the_overlay_legend_shows_whole_names_even_for_a_tiny_photo():
    from PIL import ImageFont

    from pixelwise.visualize import overlay

    name = "gridded disk"
    for width in (80, 1):
        picture = overlay(Image.new("RGB", (width, width)), np.ones((width, width), dtype=np.uint8), ("background",
            name), ((0, 0, 0), (255, 0, 0)))
        needed = ImageFont.load_default().getlength(name) + 14 + 6
        assert picture.width >= needed, f"the legend of a {width}-pixel photo is cut"
        strip = np.asarray(picture)[width:]
        assert (strip < 100).any(axis=(0, 2)).nonzero()[0].max() > 40, "text is drawn past the photo's width"

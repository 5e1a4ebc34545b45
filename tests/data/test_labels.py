import numpy as np
import pytest
from PIL import Image

from pixelwise.data.io import read_label_array
from pixelwise.data.labels import (
    IGNORE_INDEX,
    VOC_BOUNDARY_COLOR,
    VOC_CLASSES,
    VOC_COLORMAP,
    label2image,
    palette_png,
    read_classes_csv,
    rgb_to_index,
    unknown_colors,
    voc_class_table,
)
from pixelwise.errors import DatasetError


def test_voc_tables_have_21_entries_in_seed_order():
    assert len(VOC_CLASSES) == len(VOC_COLORMAP) == 21
    assert VOC_CLASSES[1] == "aeroplane" and VOC_COLORMAP[1] == (128, 0, 0)
    assert VOC_CLASSES[20] == "tv/monitor" and VOC_COLORMAP[20] == (0, 64, 128)


def test_rgb_to_index_maps_every_colour_and_ignores_unknown_ones():
    rng = np.random.default_rng(0)
    classes = rng.integers(0, 21, size=(7, 9))
    rgb = np.asarray(VOC_COLORMAP, dtype=np.uint8)[classes]
    rgb[0, 0] = VOC_BOUNDARY_COLOR
    rgb[1, 1] = (1, 2, 3)
    decoded = rgb_to_index(rgb, VOC_COLORMAP)
    expected = classes.copy()
    expected[0, 0] = expected[1, 1] = IGNORE_INDEX
    assert decoded.dtype == np.uint8
    assert np.array_equal(decoded, expected)


def test_label2image_inverts_rgb_to_index_and_colours_ignore():
    mask = np.array([[0, 1, 255], [20, 15, 7]], dtype=np.uint8)
    rgb = label2image(mask, VOC_COLORMAP)
    assert tuple(rgb[0, 2]) == VOC_BOUNDARY_COLOR
    assert tuple(rgb[1, 1]) == VOC_COLORMAP[15]
    assert np.array_equal(rgb_to_index(rgb, VOC_COLORMAP), mask)


def test_unknown_colors_counts_pixels():
    rgb = np.zeros((2, 3, 3), dtype=np.uint8)
    rgb[0, :2] = (9, 9, 9)
    assert unknown_colors(rgb, VOC_COLORMAP) == {(9, 9, 9): 2}


def test_palette_png_stores_indices_and_reads_back(tmp_path):
    mask = np.array([[0, 3], [255, 20]], dtype=np.uint8)
    palette_png(mask, VOC_COLORMAP).save(tmp_path / "m.png")
    assert Image.open(tmp_path / "m.png").mode == "P"
    assert np.array_equal(read_label_array(tmp_path / "m.png"), mask)


def test_class_table_decodes_palette_values_and_refuses_unknown_values(tmp_path):
    table = voc_class_table()
    assert np.array_equal(table.decode(np.array([[0, 20, 255]], dtype=np.uint8), "x.png"), [[0, 20, 255]])
    with pytest.raises(DatasetError,
        match=r"x\.png: label values 21 \(1 px\), 100 \(1 px\) are neither a class \(0\.\.20\) nor ignored \(255\)"):
        table.decode(np.array([[0, 21, 100]], dtype=np.uint8), "x.png")


def test_read_classes_csv_with_ignore_column_and_gaps(tmp_path):
    path = tmp_path / "classes.csv"
    path.write_text("index,name,r,g,b,ignore\n0,sky,1,2,3,0\n5,road,4,5,6,0\n7,void,0,0,0,1\n")
    table = read_classes_csv(path)
    assert table.class_names == ("sky", "road")
    assert table.palette == ((1, 2, 3), (4, 5, 6))
    raw = np.array([[0, 5, 7, 255]], dtype=np.uint8)
    assert np.array_equal(table.decode(raw, "l.png"), [[0, 1, 255, 255]])
    with pytest.raises(DatasetError, match="label values 3"):
        table.decode(np.array([[3]], dtype=np.uint8), "l.png")
    rgb = np.array([[[1, 2, 3], [0, 0, 0]]], dtype=np.uint8)
    assert np.array_equal(table.decode(rgb, "l.png"), [[0, 255]])


def test_the_ignore_value_itself_may_name_the_ignored_colour(tmp_path):
    path = tmp_path / "classes.csv"
    path.write_text("index,name,r,g,b,ignore\n0,background,0,0,0,0\n1,cat,64,0,0,0\n255,boundary,224,224,192,1\n")
    table = read_classes_csv(path)
    assert table.class_names == ("background", "cat")
    rgb = np.array([[[0, 0, 0], [64, 0, 0], [224, 224, 192]]], dtype=np.uint8)
    assert np.array_equal(table.decode(rgb, "l.png"), [[0, 1, 255]])
    assert np.array_equal(table.decode(np.array([[0, 1, 255]], dtype=np.uint8), "l.png"), [[0, 1, 255]])


def test_a_spreadsheet_csv_with_bom_spaces_and_crlf_reads(tmp_path):
    path = tmp_path / "classes.csv"
    text = "index, name, r, g, b, ignore\r\n0, sky , 1, 2, 3, 0\r\n\r\n1, road, 4, 5, 6, 0\r\n"
    path.write_bytes(text.encode("utf-8-sig"))
    table = read_classes_csv(path)
    assert table.class_names == ("sky", "road") and table.palette == ((1, 2, 3), (4, 5, 6))
    spreadsheets = (
        "Index;Name;R;G;B\n0;sky;1;2;3\n1;road;4;5;6\n",
        "INDEX\tName\tr\tg\tb\n0\tsky\t1\t2\t3\n1\troad\t4\t5\t6\n",
        "sep=;\nindex;name;r;g;b\n0;sky;1;2;3\n1;road;4;5;6\n",
        "\n\n\"index\", \"name\", r, g, b\n0, \"sky\", 1, 2, 3,\n1, road, 4, 5, 6,\n",
    )
    for text in spreadsheets:
        path.write_text(text)
        assert read_classes_csv(path).class_names == ("sky", "road"), text


@pytest.mark.parametrize(
    "text, message",
    [
        ("name,r,g,b\nsky,1,2,3\n", "the header line lacks column index"),
        ("index,name,r,g,b\n0,sky,1,2,x\n", r"classes\.csv:2: index, r, g, b and ignore must be integers"),
        ("index,name,r,g,b\n0,sky,1,2,300\n", r"classes\.csv:2: colour \(1, 2, 300\) must be three values in 0\.\.255"),
        ("index,name,r,g,b,ignore\n0,sky,1,2,3,0\n255,edge,4,5,6,0\n",
            r"classes\.csv:3: index 255 must be in 0\.\.254 \(255 only on a row with ignore=1\)"),
        ("index,name,r,g,b\n-1,sky,1,2,3\n", r"index -1 must be in 0\.\.254"),
        ("index,name,r,g,b\n0,sky,1,2,3\n0,road,4,5,6\n", r"classes\.csv:3: label value 0 repeats line 2"),
        ("index,name,r,g,b\n0,road,1,2,3\n1,sky,4,5,6\n2,road,7,8,9\n", r"classes\.csv:4: name 'road' repeats line 2"),
        ("index,name,r,g,b,ignore\n0,sky,1,2,3,0\n1,road,1,2,3,0\n",
            r"classes\.csv:3: colour \(1, 2, 3\) repeats line 2"),
        ("index,name,r,g,b,ignore\n0,sky,1,2,3,0\n9,void,1,2,3,1\n",
            r"classes\.csv:3: colour \(1, 2, 3\) repeats line 2"),
        ("index,name,r,g,b,ignore\n0,sky,1,2,3,2\n", r"classes\.csv:2: ignore must be 0 or 1, got 2"),
        ("index,name,r,g,b\n0,sky,1,2\n", r"classes\.csv:2: index, r, g, b and ignore must be integers"),
        ("index,name,r,g,b\n1_0,sky,1,2,3\n", r"classes\.csv:2: index, r, g, b and ignore must be integers"),
        ("index,name,r,g,b\n\u0661,sky,1,2,3\n", r"classes\.csv:2: index, r, g, b and ignore must be integers"),
        ("index,name,r,g,b\n0,sky,1,2,3,4\n", r"classes\.csv:2: 6 fields for a header of 5 columns"),
        ("index,name,r,g,b,b\n0,sky,1,2,3,4\n", r"classes\.csv: the header names column 'b' twice"),
        ('index,name,r,g,b\n0,"s\x00ky",1,2,3\n', r"classes\.csv:2: class name 's\\x00ky' holds a control character"),
        ("index,name,r,g,b\n0,,1,2,3\n", "empty class name"),
        ("index,name,r,g,b,ignore\n0,void,1,2,3,1\n", "at least one class"),
        ("", "needs a header"),
        ("0,sky,1,2,3\n1,road,4,5,6\n", r"lacks column index, name, r, g, b .*; its first line reads '0,sky,1,2,3'$"),
        ("# my classes\nindex,name,r,g,b\n0,sky,1,2,3\n", r"its first line reads '# my classes'$"),
        ("index,name,r,g\n0,sky,1,2\n", r"the header line lacks column b \(it needs"),
        ("index,name,r,g,b\n\n", r"classes\.csv: a header but no class rows under it$"),
    ],
)
def test_read_classes_csv_rejects_bad_tables(tmp_path, text, message):
    path = tmp_path / "classes.csv"
    path.write_text(text)
    with pytest.raises(DatasetError, match=message):
        read_classes_csv(path)


def test_a_table_whose_lines_end_in_cr_alone_reads(tmp_path):
    (tmp_path / "classes.csv").write_bytes(b"index,name,r,g,b\r0,sky,1,2,3\r1,road,4,5,6\r")
    assert read_classes_csv(tmp_path / "classes.csv").class_names == ("sky", "road")


def test_read_label_array_rejects_16_bit_labels(tmp_path):
    Image.fromarray(np.zeros((4, 4), dtype=np.uint16)).save(tmp_path / "deep.png")
    with pytest.raises(DatasetError, match=r"deep\.png: label mode 'I;16'"):
        read_label_array(tmp_path / "deep.png")


def test_voc_samples_decode_with_expected_classes(voc_samples_root):
    table = voc_class_table()
    sheep = table.decode(read_label_array(voc_samples_root / "targets" / "23.png"), "23.png")
    assert VOC_CLASSES.index("sheep") in np.unique(sheep)
    seen = set()
    for target in sorted((voc_samples_root / "targets").glob("*.png")):
        rgb = read_label_array(target)
        assert rgb.ndim == 3
        boundary = np.all(rgb == VOC_BOUNDARY_COLOR, axis=-1)
        decoded = table.decode(rgb, target)
        assert boundary.any(), f"{target.name} has no boundary pixels"
        assert (decoded[boundary] == IGNORE_INDEX).all()
        assert (decoded[~boundary] < 21).all(), f"{target.name} has colours outside the VOC map"
        seen |= set(np.unique(decoded).tolist()) - {IGNORE_INDEX}
    expected = {"background", "aeroplane", "bicycle", "bird", "bottle", "bus", "car", "cow", "horse", "motorbike",
        "person", "sheep"}
    assert {VOC_CLASSES[i] for i in seen} == expected

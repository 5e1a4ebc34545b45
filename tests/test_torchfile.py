import re
import zipfile

import pytest
import torch

from pixelwise.errors import ModelError
from pixelwise.torchfile import load_weights_only


def test_tensors_and_plain_values_load(tmp_path):
    torch.save({"weight": torch.arange(3.0), "name": "x"}, tmp_path / "ok.pt")
    loaded = load_weights_only(tmp_path / "ok.pt", "weights file", ModelError)
    assert torch.equal(loaded["weight"], torch.arange(3.0)) and loaded["name"] == "x"


def damaged_pickle(path):
    """A real torch.save archive whose pickle has been overwritten."""
    torch.save({"weight": torch.zeros(2)}, path.with_suffix(".ok"))
    with zipfile.ZipFile(path.with_suffix(".ok")) as source, zipfile.ZipFile(path, "w") as target:
        for name in source.namelist():
            target.writestr(name, b"nonsense" if name.endswith("data.pkl") else source.read(name))


@pytest.mark.parametrize(
    "write, reason",
    [
        (lambda path: None, "weights file not found"),
        (
            lambda path: path.write_bytes(b"\xff\xd8\xff\xe0 a photo"),
            r"not a loadable weights file \(not a PyTorch archive: truncated, or another kind of file\)",
        ),
        (damaged_pickle, r"not a loadable weights file \(damaged, or objects other than tensors"),
    ],
)
def test_unloadable_files_give_one_line_naming_the_file(tmp_path, write, reason):
    path = tmp_path / "w.pth"
    write(path)
    with pytest.raises(ModelError, match=rf"^{re.escape(str(tmp_path))}/w\.pth: {reason}") as raised:
        load_weights_only(path, "weights file", ModelError)
    assert "\n" not in str(raised.value) and "\x1b" not in str(raised.value)


def test_flipped_bytes_in_the_weights_are_refused_naming_the_part(tmp_path):
    path = tmp_path / "w.pt"
    torch.save({"weight": torch.arange(4096.0)}, path)
    data = bytearray(path.read_bytes())
    start = data.index(torch.arange(4096.0).numpy().tobytes()[:64]) + 1000
    data[start : start + 8] = bytes(255 - byte for byte in data[start : start + 8])
    path.write_bytes(bytes(data))
    with pytest.raises(ModelError, match=r"w\.pt: damaged weights file \(its part \S+/data/0 fails its checksum\)$"):
        load_weights_only(path, "weights file", ModelError)


def test_a_folder_is_named_as_one_with_the_checkpoint_inside(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(ModelError, match=r"run: a folder, not a checkpoint$"):
        load_weights_only(run, "checkpoint", ModelError)
    torch.save({}, run / "last.pt")
    with pytest.raises(ModelError, match=rf"run: a folder, not a checkpoint \(did you mean {run}/last\.pt\?\)$"):
        load_weights_only(run, "checkpoint", ModelError)


def test_an_archive_saved_without_checksums_still_loads(tmp_path):
    from torch.utils.serialization import config

    with config.patch({"save.compute_crc32": False}):
        torch.save({"weight": torch.arange(3.0)}, tmp_path / "plain.pt")
    assert all(member.CRC == 0 for member in zipfile.ZipFile(tmp_path / "plain.pt").infolist())
    loaded = load_weights_only(tmp_path / "plain.pt", "weights file", ModelError)
    assert torch.equal(loaded["weight"], torch.arange(3.0))


def test_a_damaged_part_header_is_one_line(tmp_path):
    path = tmp_path / "w.pt"
    torch.save({"weight": torch.zeros(2)}, path)
    data = bytearray(path.read_bytes())
    data[data.index(b"PK\x01\x02") + 8] |= 1  # the first part's "encrypted" flag, in the central directory
    path.write_bytes(bytes(data))
    with pytest.raises(ModelError, match=r"w\.pt: damaged weights file \(.*encrypted") as raised:
        load_weights_only(path, "weights file", ModelError)
    assert "\n" not in str(raised.value)

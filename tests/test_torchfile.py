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

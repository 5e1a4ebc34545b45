"""The README's Python example runs as written."""

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_python_example_runs_as_written(tmp_path):
    text = README.read_text(encoding="utf-8")
    section = text.split("## Python", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert len(code.strip().splitlines()) <= 12
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert re.search(r"val mIoU \d\.\d{3}, pixel accuracy \d\.\d{3}", result.stdout)
    assert "(" in result.stdout.splitlines()[-1] and "background" in result.stdout
    assert (tmp_path / "runs" / "py" / "best.pt").is_file()


def test_onnx_runtime_example_runs_as_written(tmp_path):
    """The export section's snippet, on a file `export_onnx` wrote and a photo: it needs no pixelwise."""
    import numpy as np
    from PIL import Image

    from pixelwise.export import export_onnx
    from pixelwise.models import build_model
    from pixelwise.segmenter import Segmenter

    section = README.read_text(encoding="utf-8").split("## Export and serve", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    network = build_model("fcn32s", num_classes=2)
    export_onnx(Segmenter(network, model_name="fcn32s", class_names=("a", "b"), palette=((0, 0, 0), (9, 9, 9))),
                tmp_path / "camvid.onnx")  # fmt: skip
    Image.fromarray(np.zeros((37, 53, 3), np.uint8)).save(tmp_path / "street.jpg")
    checks = "\nassert names == ['a', 'b'] and classes.shape == (37, 53), (names, classes.shape)"
    result = subprocess.run(
        [sys.executable, "-I", "-c", code + checks], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-2000:]

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

"""The benchmark scripts refuse bad input in one line, as the commands do."""

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.parametrize(
    "script, arguments, message",
    [
        ("fine_tune.py", ["--checkpoint", "missing.pt", "--camvid", "."], "fine_tune.py: error: .: CamVid not found"),
        ("inference_modes.py", ["--checkpoint", "missing.pt", "--camvid", "."], "error: .: CamVid not found"),
    ],
)
def test_a_refusal_is_one_line_not_a_traceback(tmp_path, script, arguments, message):
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *arguments], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 1 and done.stderr.strip().splitlines() == [done.stderr.strip()], done.stderr
    assert message in done.stderr

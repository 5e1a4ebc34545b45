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


def test_class_errors_labels_tell_checkpoints_of_same_named_runs_apart(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    from class_errors import distinct_labels

    paths = [tmp_path / "a" / "run" / "last.pt", tmp_path / "b" / "run" / "last.pt", tmp_path / "c" / "best.pt"]
    expected = ["a/run/last.pt", "b/run/last.pt", f"{tmp_path.name}/c/best.pt"]  # one depth for all
    assert distinct_labels([str(path) for path in paths]) == expected
    assert distinct_labels([str(paths[2])]) == ["c/best.pt"]

"""The suite's settings delete a passed test's temporary folder and keep one session's, so runs do not fill a disk."""

import os
import subprocess
import sys
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"

TWO_TESTS = '''
def test_passes(tmp_path):
    (tmp_path / "weights.bin").write_bytes(bytes(1000))


def test_fails(tmp_path):
    (tmp_path / "weights.bin").write_bytes(bytes(1000))
    assert False
'''


def _run_session(suite: Path, temp_root: Path, *options: str) -> str:
    """Run pytest with the project's settings on `suite`, its temporary folders under `temp_root`; its output."""
    environment = {key: value for key, value in os.environ.items() if key != "PYTEST_ADDOPTS"}
    environment["PYTEST_DEBUG_TEMPROOT"] = str(temp_root)
    command = [sys.executable, "-m", "pytest", "-c", str(PYPROJECT), "-p", "no:cacheprovider", str(suite), *options]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=environment).stdout


def _kept_folders(temp_root: Path) -> list[str]:
    """'pytest-0/test_fails0' for each test folder the sessions under `temp_root` left, links left out."""
    return sorted(
        f"{session.name}/{folder.name}"
        for session in temp_root.glob("pytest-of-*/pytest-[0-9]*")
        for folder in session.iterdir()
        if not folder.is_symlink()
    )


def test_only_failed_tests_folders_are_kept_and_only_the_last_sessions(tmp_path):
    suite, temp_root = tmp_path / "suite", tmp_path / "temp"
    suite.mkdir(), temp_root.mkdir()
    (suite / "test_two.py").write_text(TWO_TESTS, encoding="utf-8")
    assert "1 failed, 1 passed" in _run_session(suite, temp_root)
    assert _kept_folders(temp_root) == ["pytest-0/test_fails0"]
    assert "1 passed, 1 deselected" in _run_session(suite, temp_root, "-k", "passes")
    assert _kept_folders(temp_root) == ["pytest-0/test_fails0"], "a passing session leaves no folder of its own"
    assert "1 failed, 1 passed" in _run_session(suite, temp_root)
    assert _kept_folders(temp_root) == ["pytest-1/test_fails0"], "one session's folders at most"

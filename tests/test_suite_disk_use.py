"""The suite's own settings delete a passed test's temporary folder, so repeated runs do not fill the disk."""

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


def test_a_passed_tests_folder_is_deleted_and_a_failed_ones_kept(tmp_path):
    (tmp_path / "suite").mkdir()
    (tmp_path / "suite" / "test_two.py").write_text(TWO_TESTS, encoding="utf-8")
    basetemp = tmp_path / "basetemp"
    command = [sys.executable, "-m", "pytest", "-c", str(PYPROJECT), "-p", "no:cacheprovider",
               f"--basetemp={basetemp}", str(tmp_path / "suite")]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert "1 failed, 1 passed" in result.stdout, result.stdout[-2000:]
    folders = sorted(path.name for path in basetemp.iterdir() if not path.is_symlink())
    assert folders == ["test_fails0"]
    assert (basetemp / "test_fails0" / "weights.bin").is_file()

import json
from pathlib import Path

from PIL import Image

from pixelwise import demo
from pixelwise.cli import main

SMALL_DATA = {**demo.DEMO_DATA, "num_train": 12, "num_val": 3, "size_range": (48, 64)}
SMALL_RECIPE = {**demo.DEMO_RECIPE, "batch_size": 4, "crop_size": (32, 32), "workers": 0}


def test_demo_writes_its_report_and_runs_again_into_the_same_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(demo, "DEMO_DATA", SMALL_DATA)
    monkeypatch.setattr(demo, "DEMO_RECIPE", SMALL_RECIPE)
    monkeypatch.chdir(tmp_path)
    out = Path("demo")  # as make demo gives it
    assert main(["demo", "--out", str(out), "--epochs", "1", "--quiet"]) == 0
    report = out / "report"
    summary = json.loads((report / "metrics.json").read_text())
    assert summary["epochs"] == 1 and 0.0 <= summary["val"]["miou"] <= 1.0
    overlays = sorted((report / "overlays").glob("*.png"))
    assert len(overlays) == SMALL_DATA["num_val"]
    assert Image.open(report / "predictions.png").height > Image.open(overlays[0]).height
    first = (out / "run" / "last.pt").stat().st_mtime_ns
    config = json.loads((out / "run" / "config.json").read_text())
    assert config["data"] == str(tmp_path / "demo" / "data")
    (out / "run" / "config.json").write_text(json.dumps({**config, "data": "demo/data"}))  # as earlier releases did
    assert main(["demo", "--out", str(out), "--epochs", "1", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert f"replacing the earlier run in {out / 'run'}" in printed
    assert "writing the synthetic dataset" not in printed.split("replacing")[1], "the data is reused, not written again"
    assert (out / "run" / "last.pt").stat().st_mtime_ns != first


def test_demo_leaves_a_run_it_did_not_make_in_its_folder_and_says_so(tmp_path, capsys):
    run = tmp_path / "demo" / "run"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"data": str(tmp_path / "elsewhere")}))
    (run / "last.pt").write_bytes(b"the user's own run")
    assert main(["demo", "--out", str(tmp_path / "demo"), "--epochs", "1", "--quiet"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"pixelwise: error: {run}: holds a run that did not train on the demo's data")
    assert "\n" not in error
    assert (run / "last.pt").read_bytes() == b"the user's own run"
    assert not (tmp_path / "demo" / "data").exists(), "refused before anything was written"


def test_demo_into_a_file_or_beside_one_is_one_line_before_anything_is_written(tmp_path, capsys):
    (tmp_path / "file").write_text("the user's")
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "report").write_text("where the report goes")
    for out, blocking in ((tmp_path / "file", tmp_path / "file"), (tmp_path / "demo", tmp_path / "demo" / "report")):
        assert main(["demo", "--out", str(out), "--epochs", "1"]) == 2
        printed, err = capsys.readouterr()
        assert err.strip() == f"pixelwise: error: {blocking}: a file where a folder goes; give another folder"
        assert printed == ""
    assert (tmp_path / "file").read_text() == "the user's"
    assert [path.name for path in (tmp_path / "demo").iterdir()] == ["report"], "no data written, no run started"

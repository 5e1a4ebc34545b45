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
        ("ensemble.py", ["--checkpoints", "a.pt", "--camvid", "."], "error: give at least two checkpoints"),
        ("ensemble.py", ["--checkpoints", "a.pt", "sub/../a.pt", "b.pt"], "error: give at least two checkpoints"),
        ("ensemble.py", ["--checkpoints", "a.pt", "b.pt", "--camvid", "."], "ensemble.py: error: .: CamVid not found"),
        (
            "camvid_models.py",
            ["--models", "fpn", "lraspp", "--encoder", "resnet34", "--camvid", "."],
            "camvid_models.py: error: model lraspp has no encoder 'resnet34'; choose one of mobilenet_v3_large",
        ),
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


def test_camvid_models_keys_a_run_on_another_encoder_apart(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    from camvid_models import model_key

    assert model_key("fpn", None) == model_key("fpn", "resnet18") == "fpn"  # the default keeps the old key
    assert model_key("fpn", "resnet34") == "fpn-resnet34"


def test_camvid_models_figure_puts_a_label_below_when_a_close_point_takes_the_space_above(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    from camvid_models import label_offsets

    points = [(58.3, 0.636), (66.0, 0.638), (22.5, 0.597), (47.3, 0.628), (47.2, 0.626), (62.0, 0.56)]
    above, below = (4, 4), (4, -12)  # the last point is close in x only
    assert label_offsets(points) == [below, above, above, above, below, above]
    assert label_offsets([(10.0, 0.5), (12.0, 0.5), (40.0, 0.7)]) == [above, below, above], "level: the right one"


def test_ensemble_averages_the_members_probabilities_and_refuses_other_classes(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import torch
    from common import untrained_segmenter
    from ensemble import ensemble

    from pixelwise.errors import PixelwiseError

    first, second = untrained_segmenter("fcn8s", 3).eval(), untrained_segmenter("fpn", 3).eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        expected = (first(x).softmax(dim=1) + second(x).softmax(dim=1)) / 2
        averaged = ensemble([first, second]).network(x).softmax(dim=1)
    assert torch.allclose(averaged, expected, atol=1e-5) and not torch.allclose(averaged, first(x).softmax(dim=1))
    with pytest.raises(PixelwiseError, match="different classes"):
        ensemble([first, untrained_segmenter("fpn", 4)])
    second.mean = (0.5, 0.5, 0.5)
    with pytest.raises(PixelwiseError, match="normalise their input differently"):
        ensemble([first, second])

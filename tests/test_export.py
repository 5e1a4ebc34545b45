"""ONNX export of every model, run by ONNX Runtime: the same masks as torch, self-describing, refused cleanly."""

import json

import numpy as np
import onnx
import pytest
import torch
from PIL import Image

from pixelwise.cli import main
from pixelwise.errors import CheckpointError, ModelError
from pixelwise.export import CLASSES_OUTPUT, INPUT_NAME, LOGITS_OUTPUT, export_onnx, written_by_export
from pixelwise.models import MODELS, build_model
from pixelwise.onnx_model import load_onnx
from pixelwise.predict import load_model
from pixelwise.segmenter import Segmenter
from pixelwise.training import evaluate_split

SIZES = [(64, 96), (97, 131), (21, 13)]  # a multiple of 32; neither side one; smaller than every output stride
CLASS_NAMES = ("background", "road", "person", "sign", "pole")
PALETTE = ((0, 0, 0), (128, 64, 128), (192, 128, 128), (192, 128, 0), (192, 192, 128))


def random_segmenter(name: str, seed: int = 0) -> Segmenter:
    """An untrained `name` whose BatchNorm statistics are not the identity, so folding them is tested too."""
    torch.manual_seed(seed)
    network = build_model(name, num_classes=len(CLASS_NAMES))
    for module in network.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 2.0)
    return Segmenter(network, model_name=name, class_names=CLASS_NAMES, palette=PALETTE).eval()


def torch_logits(segmenter: Segmenter, photos: np.ndarray) -> np.ndarray:
    """The Segmenter's logits (N, C, H, W) for uint8 photos (N, H, W, 3), normalised as it normalises."""
    mean, std = (torch.tensor(values)[:, None, None] for values in (segmenter.mean, segmenter.std))
    with torch.inference_mode():
        return segmenter((torch.from_numpy(photos).permute(0, 3, 1, 2) / 255 - mean) / std).numpy()


@pytest.fixture(scope="module")
def fcn32s_onnx(tmp_path_factory):
    """One untrained FCN-32s exported with logits, shared by the tests that only read it."""
    path = tmp_path_factory.mktemp("export") / "model.onnx"
    export_onnx(random_segmenter("fcn32s"), path, logits=True)
    return path


@pytest.mark.parametrize("name", list(MODELS))
def test_every_model_exports_and_onnx_runtime_agrees_with_torch_at_three_sizes(tmp_path, name):
    segmenter = random_segmenter(name)
    export_onnx(segmenter, tmp_path / "model.onnx", logits=True)
    exported, reference = load_onnx(tmp_path / "model.onnx"), segmenter.for_inference()
    photos = np.random.default_rng(1)
    for height, width in SIZES:
        batch = photos.integers(0, 256, size=(2, height, width, 3), dtype=np.uint8)
        masks, logits = exported.session.run([CLASSES_OUTPUT, LOGITS_OUTPUT], {INPUT_NAME: batch})
        assert masks.shape == (2, height, width) and masks.dtype == np.uint8
        agreement = (masks == reference.segment_photos(batch)).mean()
        assert agreement >= 0.999, f"{name} at {height}x{width}: {agreement:.5f} of pixels agree"
        expected = torch_logits(segmenter, batch)  # masks of an untrained model may be of one class: logits too
        assert np.abs(logits - expected).max() <= 1e-3 * max(1.0, np.abs(expected).max())


def test_the_file_describes_itself_and_can_output_logits(fcn32s_onnx):
    segmenter = random_segmenter("fcn32s")  # the same seed as the exported one
    model = onnx.load(fcn32s_onnx)
    metadata = {entry.key: entry.value for entry in model.metadata_props}
    assert json.loads(metadata["class_names"]) == list(CLASS_NAMES)
    assert json.loads(metadata["palette"]) == [list(color) for color in PALETTE]
    assert json.loads(metadata["model"]) == {"name": "fcn32s", "num_classes": 5, "encoder": "resnet18"}
    assert "uint8" in metadata["description"] and "logits" in metadata["description"]
    graph_input = model.graph.input[0]
    assert graph_input.name == INPUT_NAME
    assert graph_input.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    dims = graph_input.type.tensor_type.shape.dim
    assert [bool(dim.dim_param) for dim in dims] == [True, True, True, False], "batch, height, width are dynamic"

    exported = load_onnx(fcn32s_onnx)
    photo = np.random.default_rng(2).integers(0, 256, size=(1, 40, 56, 3), dtype=np.uint8)
    classes, logits = exported.session.run([CLASSES_OUTPUT, LOGITS_OUTPUT], {INPUT_NAME: photo})
    assert logits.shape == (1, 5, 40, 56) and logits.dtype == np.float32
    assert np.array_equal(logits.argmax(axis=1), classes)
    assert np.allclose(logits, torch_logits(segmenter, photo), atol=1e-3), "the graph normalises as the Segmenter"


def test_cli_export_then_eval_and_predict_with_the_onnx_file(synthetic_voc, tmp_path, capsys):
    main(["train", "--data", str(synthetic_voc), "--epochs", "1", "--batch-size", "4", "--crop-size", "48x48",
          "--out", str(tmp_path / "run"), "--quiet", "--workers", "0"])  # fmt: skip
    checkpoint, onnx_file = tmp_path / "run" / "best.pt", tmp_path / "model.onnx"
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(onnx_file)]) == 0
    assert f"-> {onnx_file}" in capsys.readouterr().out
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(onnx_file)]) == 0, "its own export"
    assert written_by_export(onnx_file) and f"-> {onnx_file}" in capsys.readouterr().out
    theirs, link = tmp_path / "theirs.onnx", tmp_path / "link.onnx"
    theirs.write_bytes(b"a user's work")
    link.symlink_to(tmp_path / "nowhere.onnx")
    for target, what in ((theirs, "a file that pixelwise did not write"), (link, "a link that pixelwise did not")):
        assert main(["export", "--checkpoint", str(checkpoint), "--out", str(target)]) == 2
        err = capsys.readouterr().err
        assert f"{target}: {what}" in err and "--overwrite replaces it" in err and len(err.splitlines()) == 1
    assert theirs.read_bytes() == b"a user's work" and link.is_symlink()
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(theirs), "--overwrite"]) == 0
    assert written_by_export(theirs) and f"-> {theirs}" in capsys.readouterr().out

    torch_metrics = evaluate_split(load_model(checkpoint).for_inference(), synthetic_voc, "val")
    onnx_metrics = evaluate_split(load_onnx(onnx_file), synthetic_voc, "val")
    assert onnx_metrics.miou == pytest.approx(torch_metrics.miou, abs=1e-3)
    assert main(["eval", "--checkpoint", str(onnx_file), "--data", str(synthetic_voc), "--json", "--workers", "0"]) == 0
    assert json.loads(capsys.readouterr().out)["miou"] == pytest.approx(onnx_metrics.miou)

    photo = sorted(synthetic_voc.rglob("*.jpg"))[0]
    for source, out in ((checkpoint, "torch"), (onnx_file, "onnx")):
        assert main(["predict", "--checkpoint", str(source), str(photo), "--out", str(tmp_path / out)]) == 0
    masks = [np.asarray(Image.open(tmp_path / out / f"{photo.stem}_mask.png")) for out in ("torch", "onnx")]
    assert (masks[0] == masks[1]).mean() >= 0.999


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--tta", "flip"], "--tta, --tta-scales, --sliding-window and --overlap need the .pt checkpoint"),
        (["--sliding-window", "64x64"], "--sliding-window and --overlap need the .pt checkpoint"),
        (["--tta-scales", "1.25"], "--sliding-window and --overlap need the .pt checkpoint"),
        (["--overlap", "0.5"], "--sliding-window and --overlap need the .pt checkpoint"),
        (["--precision", "bf16"], "runs in fp32, not bf16"),
        (["--device", "cuda"], "runs on the CPU (ONNX Runtime)"),
    ],
)
def test_options_an_exported_model_cannot_honour_are_refused(fcn32s_onnx, tmp_path, capsys, arguments, message):
    code = main(["predict", "--checkpoint", str(fcn32s_onnx), "x.jpg", "--out", str(tmp_path), *arguments])
    assert code == 2 and message in capsys.readouterr().err


def test_files_that_are_not_pixelwise_exports_are_refused_in_one_line(tmp_path):
    (tmp_path / "garbage.onnx").write_bytes(b"not a protobuf at all")
    with pytest.raises(CheckpointError, match="garbage.onnx: not an ONNX model"):
        load_onnx(tmp_path / "garbage.onnx")
    with pytest.raises(CheckpointError, match="absent.onnx: file not found"):
        load_onnx(tmp_path / "absent.onnx")
    photos = onnx.helper.make_tensor_value_info(INPUT_NAME, onnx.TensorProto.UINT8, ["n", "h", "w", 3])
    for output in ("out", CLASSES_OUTPUT):
        node = onnx.helper.make_node("Identity", [INPUT_NAME], [output])
        out = onnx.helper.make_tensor_value_info(output, onnx.TensorProto.UINT8, ["n", "h", "w", 3])
        foreign = onnx.helper.make_model(onnx.helper.make_graph([node], "foreign", [photos], [out]))
        onnx.save(foreign, tmp_path / "foreign.onnx")
        if output == "out":
            with pytest.raises(CheckpointError, match="expected a uint8 output named 'classes'"):
                load_onnx(tmp_path / "foreign.onnx")
    with pytest.raises(CheckpointError, match="foreign.onnx: no readable 'class_names'"):
        load_onnx(tmp_path / "foreign.onnx")
    entry = foreign.metadata_props.add()
    entry.key, entry.value = "class_names", json.dumps(["a", "b"])
    entry = foreign.metadata_props.add()
    entry.key, entry.value = "palette", json.dumps([[0, 0, 0]])
    onnx.save(foreign, tmp_path / "foreign.onnx")
    with pytest.raises(CheckpointError, match="class names and palette do not match"):
        load_onnx(tmp_path / "foreign.onnx")
    foreign.metadata_props[1].value = json.dumps([[0, 0, 0], [1, 1, 1]])
    entry = foreign.metadata_props.add()
    entry.key, entry.value = "model", json.dumps(["not", "a", "record"])
    onnx.save(foreign, tmp_path / "foreign.onnx")
    with pytest.raises(CheckpointError, match="'model' is not a model record"):
        load_onnx(tmp_path / "foreign.onnx")


def test_cli_export_refuses_bad_targets(fcn32s_onnx, tmp_path, capsys):
    assert main(["export", "--checkpoint", str(fcn32s_onnx), "--out", str(tmp_path / "b.onnx")]) == 2
    assert "already an exported model" in capsys.readouterr().err
    assert main(["export", "--checkpoint", "x.pt", "--out", str(tmp_path / "model.txt")]) == 2
    assert "name the file NAME.onnx" in capsys.readouterr().err
    assert main(["export", "--checkpoint", "x.pt", "--out", str(tmp_path / "absent" / "m.onnx")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "file").write_text("")
    assert main(["export", "--checkpoint", "x.pt", "--out", str(tmp_path / "file" / "m.onnx")]) == 2
    assert f"{tmp_path}/file is a file" in capsys.readouterr().err
    with pytest.raises(ModelError, match="fp32, not bf16"):
        load_onnx(fcn32s_onnx).predict(np.zeros((8, 8, 3), np.uint8), precision="bf16")


import numpy as np
import pytest
from PIL import Image
import torch

from pixelwise.checkpoint import load_checkpoint, save_checkpoint
from pixelwise.errors import CheckpointError
from pixelwise.models import build_model
from pixelwise.predict import Segmenter, load_model


def tiny_payload(model):
    """A complete checkpoint payload around `model` (3 classes)."""
    return {
        "model": {"name": "fcn32s", "num_classes": 3},
        "state_dict": model.state_dict(),
        "class_names": ["background", "a", "b"],
        "palette": [[0, 0, 0], [128, 0, 0], [0, 128, 0]],
        "ignore_index": 255,
        "normalization": {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
    }


def test_round_trip_predicts_exactly_what_the_saved_model_did(tmp_path):
    torch.manual_seed(0)
    network = build_model("fcn32s", num_classes=3)
    for parameter in network.score32.parameters():
        parameter.data.normal_()
    saved = Segmenter(network, model_name="fcn32s", class_names=("background", "a", "b"), palette=((0, 0, 0), (128, 0,
        0), (0, 128, 0))).eval()
    save_checkpoint(tiny_payload(network), tmp_path / "model.pt")
    loaded = load_model(tmp_path / "model.pt")
    photo = np.random.default_rng(0).integers(0, 255, size=(45, 70, 3), dtype=np.uint8)
    expected = saved.predict(photo)
    assert expected.shape == (45, 70) and len(np.unique(expected)) > 1
    assert np.array_equal(loaded.predict(photo), expected)
    assert loaded.class_names == ("background", "a", "b") and loaded.palette[1] == (128, 0, 0)
    assert loaded.network.stem[0].weight.is_contiguous(memory_format=torch.channels_last) and not loaded.training


def test_interrupted_save_leaves_the_previous_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint({**tiny_payload(build_model("fcn32s", num_classes=3)), "epoch": 1}, path)
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise KeyboardInterrupt  # the process is stopped in the middle of writing

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({"epoch": 2}, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"], "no temporary file is left behind"
    assert load_checkpoint(path)["epoch"] == 1


def test_truncated_checkpoint_is_refused(tmp_path):
    path = tmp_path / "model.pt"
    save_checkpoint(tiny_payload(build_model("fcn32s", num_classes=3)), path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=r"model\.pt: not a loadable checkpoint \(not a PyTorch archive"):
        load_model(path)


def test_pickled_callable_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "ran"

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "evil.pt"
    torch.save({"format": "pixelwise-checkpoint", "payload": Exploit()}, path)
    with pytest.raises(CheckpointError,
        match=r"evil\.pt: not a loadable checkpoint \(it holds Python code \(\S*open\), refused without running it\)$"):
        load_checkpoint(path)
    assert not marker.exists()


@pytest.mark.parametrize("content, message", [({"a": 1}, "not a pixelwise checkpoint"),
    ({"format": "pixelwise-checkpoint"}, "lacks")])
def test_foreign_or_incomplete_files_are_refused(tmp_path, content, message):
    torch.save(content, tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")


def test_weights_that_do_not_fit_the_model_are_refused(tmp_path):
    payload = tiny_payload(build_model("fcn32s", num_classes=3))
    payload["model"]["name"] = "fcn8s"
    save_checkpoint(payload, tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match="weights do not fit fcn8s"):
        load_model(tmp_path / "x.pt")


def segmenter_with_random_head() -> Segmenter:
    """An untrained 3-class FCN-32s with a random scoring layer, so predictions vary across a photo."""
    torch.manual_seed(0)
    network = build_model("fcn32s", num_classes=3)
    for parameter in network.score32.parameters():
        parameter.data.normal_()
    return Segmenter(network, model_name="fcn32s", class_names=("a", "b", "c"), palette=((0, 0, 0),) * 3).eval()


def test_bf16_prediction_runs_the_network_in_bfloat16_and_agrees_with_fp32():
    model = segmenter_with_random_head()
    seen = []
    model.network.stem[0].register_forward_hook(lambda module, inputs, output: seen.append(output.dtype))
    photo = np.random.default_rng(2).integers(0, 255, size=(60, 80, 3), dtype=np.uint8)
    full, half = model.predict(photo), model.predict(photo, precision="bf16")
    assert seen == [torch.float32, torch.bfloat16]
    assert half.shape == full.shape and half.dtype == np.uint8
    assert (half == full).mean() > 0.95, "bfloat16 changes only pixels near a tie"
    with pytest.raises(ValueError, match="precision must be one of fp32, bf16"):
        model.predict(photo, precision="fp16")


def test_the_inference_copy_predicts_the_same_masks_and_leaves_the_model_trainable():
    model = segmenter_with_random_head()
    for norm in (module for module in model.modules() if isinstance(module, torch.nn.BatchNorm2d)):
        norm.running_var.uniform_(0.5, 2.0)
        norm.bias.data.normal_(0, 0.5)
    fast = model.for_inference()
    photo = np.random.default_rng(3).integers(0, 255, size=(61, 83, 3), dtype=np.uint8)
    expected = model.predict(photo)
    assert len(np.unique(expected)) > 1
    assert (fast.predict(photo) == expected).mean() > 0.999, "folding changes the logits by rounding only"
    assert (fast.model_name, fast.class_names, fast.palette, fast.mean, fast.std) == (model.model_name,
        model.class_names, model.palette, model.mean, model.std)
    assert not any(isinstance(module, torch.nn.BatchNorm2d) for module in fast.modules())
    assert fast.network.stem[0].weight.is_contiguous(memory_format=torch.channels_last) and not fast.training
    assert sum(isinstance(module, torch.nn.BatchNorm2d) for module in model.modules()) == 20


def test_large_photos_are_segmented_smaller_and_the_mask_resized_back():
    model = segmenter_with_random_head()
    photo = np.random.default_rng(1).integers(0, 255, size=(90, 130, 3), dtype=np.uint8)
    capped = model.predict(photo, max_side=64)
    assert capped.shape == (90, 130) and capped.dtype == np.uint8
    small = np.asarray(Image.fromarray(photo).resize((64, 44), Image.BILINEAR))
    expected = np.asarray(Image.fromarray(model.predict(small, max_side=None)).resize((130, 90), Image.NEAREST))
    assert np.array_equal(capped, expected)
    assert model.predict(photo, max_side=None).shape == (90, 130)
    assert np.array_equal(model.predict(photo, max_side=np.int64(64)), capped), "numpy numbers are numbers"
    for bad in (0, -64, float("nan")):
        with pytest.raises(ValueError, match=f"max_side must be at least 1, or None for full resolution, got {bad}"):
            model.predict(photo, max_side=bad)
    for bad in ("64", True):
        with pytest.raises(TypeError, match=f"max_side must be a number of pixels, or None .* got {bad!r}"):
            model.predict(photo, max_side=bad)


@pytest.mark.parametrize(
    "array, error, message",
    [
        (np.zeros((6, 8, 3), np.float32), TypeError, r"got float32 \(6, 8, 3\) \(scale floats in \[0, 1\] by 255"),
        (np.zeros((6, 8, 5), np.uint8), TypeError,
            r"shape \(H, W\), \(H, W, 3\) or \(H, W, 4\), got uint8 \(6, 8, 5\)$"),
        (np.zeros((3, 6, 8), np.uint8), TypeError, r"got uint8 \(3, 6, 8\)$"),
        (np.zeros((0, 8, 3), np.uint8), ValueError, r"an image with pixels, got an array of shape \(0, 8, 3\)"),
    ],
)
def test_arrays_that_are_not_uint8_photos_are_one_clear_error(array, error, message):
    with pytest.raises(error, match=message):
        segmenter_with_random_head().predict(array)


def test_a_sixteen_bit_pil_image_is_segmented_as_its_8_bit_tones():
    model = segmenter_with_random_head()
    gray = np.random.default_rng(5).integers(0, 255, size=(60, 80), dtype=np.uint8)
    deep = Image.fromarray(gray.astype(np.uint16) * 256 + 255)  # mode I;16, same tones
    assert deep.mode == "I;16"
    expected = model.predict(gray)
    assert not np.array_equal(model.predict(np.full_like(gray, 255)), expected), "clipped to white would show"
    assert np.array_equal(model.predict(deep), expected)


def test_grayscale_and_rgba_arrays_are_segmented_at_their_size():
    model = segmenter_with_random_head()
    gray = np.random.default_rng(4).integers(0, 255, size=(20, 30), dtype=np.uint8)
    assert model.predict(gray).shape == (20, 30)
    assert np.array_equal(model.predict(np.dstack([gray] * 3 + [np.full_like(gray, 255)])),
        model.predict(np.dstack([gray] * 3)))


@pytest.mark.parametrize(
    "change, field",
    [
        ({"class_names": 5}, "class_names"),
        ({"class_names": ["a", "a", "b"]}, "class_names"),
        ({"model": "fcn8s"}, "model"),
        ({"model": {"name": "unet++", "num_classes": 3}}, "model"),
        ({"model": {"name": "fcn32s", "num_classes": 3, "encoder": "mit_b0"}}, "model"),
        ({"model": {"name": "fcn32s", "num_classes": 3, "variant": "16s"}}, "model"),
        ({"model": {"name": "fcn32s", "num_classes": 4}}, "model"),
        ({"normalization": {}}, "normalization"),
        ({"normalization": {"mean": [0, 0, 0], "std": [1, 0, 1]}}, "normalization"),
        ({"palette": [[0, 0], [128, 0, 0], [0, 128, 0]]}, "palette"),
        ({"palette": [[0, 0, 0], [128, 0, 0]]}, "palette"),
        ({"palette": [[0, 0, 0], [128, 0, 0], [0, 128, 999]]}, "palette"),
        ({"format_version": "1"}, "format_version"),
        ({"ignore_index": 0}, "ignore_index"),
        ({"state_dict": [1, 2]}, "state_dict"),
        ({"state_dict": {"score32.weight": torch.full((3, 512, 1, 1), float("nan"))}}, "state_dict"),
        ({"state_dict": {"score32.weight": torch.zeros(3, 512, 1, 1, dtype=torch.complex64)}}, "state_dict"),
        ({"class_names": [f"c{i}" for i in range(300)]}, "class_names"),
        ({"normalization": {"mean": [0.5] * 3, "std": [1e-320] * 3}}, "normalization"),
        ({"normalization": {"mean": [1e308] * 3, "std": [0.2] * 3}}, "normalization"),
    ],
)
def test_a_tampered_but_well_formed_checkpoint_names_the_field(tmp_path, capsys, change, field):
    from pixelwise.cli import main

    path = tmp_path / "tampered.pt"
    save_checkpoint({**tiny_payload(build_model("fcn32s", num_classes=3)), **change}, path)
    with pytest.raises(CheckpointError, match=rf"tampered\.pt: damaged checkpoint: field '{field}' should be "):
        load_model(path)
    Image.new("RGB", (20, 10)).save(tmp_path / "a.jpg")
    assert main(["predict", "--checkpoint", str(path), str(tmp_path / "a.jpg"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and f"field '{field}'" in err


def test_a_checkpoint_without_training_state_cannot_be_resumed(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(tiny_payload(build_model("fcn32s", num_classes=3)), path)
    with pytest.raises(CheckpointError,
        match=r"last\.pt: checkpoint lacks config, epoch, history, best, optimizer, scheduler"):
        load_checkpoint(path, for_resume=True)


@pytest.mark.parametrize("failure", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_a_failure_inside_torch_zip_writer_surfaces_as_itself(monkeypatch, failure):
    """torch's zip writer turns a failing write into RuntimeError('unexpected pos'); the real cause comes back."""
    import io

    import pixelwise.checkpoint

    class FullAfterAFewWrites(io.BytesIO):
        writes = 0

        def write(self, data):
            self.writes += 1
            if self.writes > 3:
                raise failure
            return super().write(data)

    monkeypatch.setattr(pixelwise.checkpoint.io, "BytesIO", FullAfterAFewWrites)
    with pytest.raises(type(failure)):
        pixelwise.checkpoint.serialize({"weights": torch.zeros(100_000)})


def test_checkpoints_follow_the_umask_like_the_other_run_files(tmp_path):
    import os

    previous = os.umask(0o027)
    try:
        save_checkpoint(tiny_payload(build_model("fcn32s", num_classes=3)), tmp_path / "model.pt")
        (tmp_path / "other.txt").write_text("")
    finally:
        os.umask(previous)
    assert (tmp_path / "model.pt").stat().st_mode & 0o777 == (tmp_path / "other.txt").stat().st_mode & 0o777 == 0o640


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal where CUDA is absent")
def test_loading_onto_a_missing_device_is_one_clear_error(tmp_path):
    from pixelwise.errors import DeviceError

    save_checkpoint(tiny_payload(build_model("fcn32s", num_classes=3)), tmp_path / "model.pt")
    for device, message in (("cuda", "CUDA is not available"), ("meta", "cannot run pixelwise"), ("nonsense",
        "unknown device")):
        with pytest.raises(DeviceError, match=message):
            load_model(tmp_path / "model.pt", device)

"""Every registered model, through the same checks: any input size, gradients, folding, bf16, encoder weights."""

import hashlib
import http.server
import threading

import pytest
import torch
from torchvision.models import mobilenet_v3_large, resnet18

from pixelwise.errors import ModelError
from pixelwise.models import MODELS, build_model, fold_batch_norms
from pixelwise.models import encoders as encoder_weights
from pixelwise.segmenter import Segmenter

ALL = list(MODELS)
SIZES = ((97, 131), (5, 7), (64, 64))  # odd, smaller than every output stride, a multiple of 32


@pytest.mark.parametrize("name", ALL)
def test_every_model_takes_any_size_and_trains(name):
    torch.manual_seed(0)
    model = build_model(name, num_classes=3)
    for height, width in SIZES:
        logits = model(torch.randn(2, 3, height, width))
        assert logits.shape == (2, 3, height, width) and torch.isfinite(logits).all()
    torch.nn.functional.cross_entropy(logits, torch.randint(0, 3, (2, 64, 64))).backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(bool(g.abs().sum() > 0) for g in grads) > 0.9 * len(grads), "gradient reaches the layers"


@pytest.mark.parametrize("name", ALL)
def test_segment_is_the_argmax_of_the_logits(name):
    torch.manual_seed(0)
    network = build_model(name, num_classes=4).eval()
    segmenter = Segmenter(network, model_name=name, class_names=("a", "b", "c", "d"), palette=((0, 0, 0),) * 4)
    images = torch.randn(1, 3, 37, 53)
    with torch.no_grad():
        assert torch.equal(segmenter.segment(images), network(images).argmax(dim=1))


def randomize_batch_norms(model: torch.nn.Module) -> None:
    """Running statistics and affine parameters far from their defaults, so folding them is visible."""
    for norm in (module for module in model.modules() if isinstance(module, torch.nn.BatchNorm2d)):
        norm.running_mean.normal_(0, 0.5)
        norm.running_var.uniform_(0.5, 2.0)
        norm.weight.data.uniform_(0.5, 1.5)
        norm.bias.data.normal_(0, 0.5)


@pytest.mark.parametrize("name", ALL)
def test_folding_batch_norms_keeps_the_logits_and_leaves_the_original_alone(name):
    torch.manual_seed(0)
    model = build_model(name, num_classes=3)
    randomize_batch_norms(model)
    norms = sum(isinstance(module, torch.nn.BatchNorm2d) for module in model.modules())
    folded = fold_batch_norms(model)
    left = sum(isinstance(module, torch.nn.BatchNorm2d) for module in folded.modules())
    assert left < norms / 4 and not folded.training, "most norms folded (a few follow no conv)"
    assert sum(isinstance(module, torch.nn.BatchNorm2d) for module in model.modules()) == norms and model.training
    images = torch.randn(2, 3, 45, 70)
    with torch.no_grad():
        expected = model.eval()(images)
        assert torch.allclose(folded(images), expected, atol=1e-3 * expected.abs().max())


@pytest.mark.parametrize("name", ALL)
def test_every_model_runs_under_bf16_autocast(name):
    torch.manual_seed(0)
    model = build_model(name, num_classes=3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(torch.randn(2, 3, 40, 56))
    assert logits.shape == (2, 3, 40, 56) and torch.isfinite(logits.float()).all()


def classifier_weights(encoder: str) -> tuple[dict, str]:
    """A classifier state dict for `encoder` as a user would have saved it, and one of its tensor names."""
    if encoder == "mobilenet_v3_large":
        return mobilenet_v3_large().state_dict(), "features.4.block.0.0.weight"
    if encoder.startswith("mit_"):
        import segmentation_models_pytorch as smp

        return smp.encoders.get_encoder(encoder, weights=None).state_dict(), "patch_embed1.proj.weight"
    return resnet18().state_dict(), "layer3.0.conv1.weight"


def encoder_tensor(model: torch.nn.Module, key: str) -> torch.Tensor:
    """The model's copy of a classifier tensor, found by name suffix."""
    suffix = key.removeprefix("features.")
    return next(value for name, value in model.state_dict().items() if name.endswith(suffix) and "decoder" not in name)


@pytest.mark.parametrize("name", ALL)
def test_encoder_weights_from_a_file_the_test_saved(tmp_path, name):
    encoder = MODELS[name].default_encoder
    torch.manual_seed(1)
    state, key = classifier_weights(encoder)
    torch.save(state, tmp_path / "encoder.pth")
    model = build_model(name, num_classes=3, encoder_weights=tmp_path / "encoder.pth")
    assert torch.equal(encoder_tensor(model, key), state[key])
    state[key] = state[key][:1]
    torch.save(state, tmp_path / "wrong.pth")
    with pytest.raises(ModelError, match=rf"wrong\.pth: not {encoder} weights \(.*{key.removeprefix('features.')}"):
        build_model(name, num_classes=3, encoder_weights=tmp_path / "wrong.pth")


def test_imagenet_weights_download_through_torch_hub(tmp_path, monkeypatch):
    """The real download path, from a server on 127.0.0.1 standing in for download.pytorch.org."""
    torch.manual_seed(2)
    state = resnet18().state_dict()
    raw = tmp_path / "raw.pth"
    torch.save(state, raw)
    digest = hashlib.sha256(raw.read_bytes()).hexdigest()
    served = tmp_path / "served"
    served.mkdir()
    raw.rename(served / f"resnet18-{digest[:8]}.pth")  # torch.hub checks the hash prefix in the name
    handler = lambda *args: http.server.SimpleHTTPRequestHandler(*args, directory=str(served))  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/resnet18-{digest[:8]}.pth"
        monkeypatch.setitem(encoder_weights.IMAGENET_URLS, "resnet18", url)
        monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
        model = build_model("unet", num_classes=3, encoder_weights="imagenet")
    finally:
        server.shutdown()
        server.server_close()
    assert torch.equal(model.network.encoder.layer3[0].conv1.weight, state["layer3.0.conv1.weight"])
    assert (tmp_path / "torch" / "hub" / "checkpoints" / f"resnet18-{digest[:8]}.pth").is_file(), "cached for next time"


def test_imagenet_weights_offline_name_what_to_download_and_where(tmp_path, monkeypatch):
    monkeypatch.setitem(encoder_weights.IMAGENET_URLS, "resnet34", "http://127.0.0.1:9/resnet34-b627a593.pth")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(ModelError) as caught:
        build_model("fpn", num_classes=3, encoder="resnet34", encoder_weights="imagenet")
    message = str(caught.value)
    assert "\n" not in message and message.startswith("could not get ImageNet resnet34 weights (")
    assert (
        f"download http://127.0.0.1:9/resnet34-b627a593.pth into {tmp_path / 'torch' / 'hub' / 'checkpoints'}"
        in message
    )


def test_lraspp_batch_norms_track_a_short_from_scratch_run():
    model = build_model("lraspp", num_classes=3)
    momenta = {module.momentum for module in model.modules() if isinstance(module, torch.nn.BatchNorm2d)}
    assert momenta == {0.1}, "torchvision's 0.01 leaves eval-mode statistics hundreds of steps behind"

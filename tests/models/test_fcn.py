import pytest
import torch
from torchvision.models import resnet18

from pixelwise.models.fcn import with_torch_upsampling
from pixelwise.errors import ModelError
from pixelwise.models import build_model, fcn_resnet18

FCNS = ["fcn32s", "fcn8s"]
from pixelwise.models.fcn import BlockConvTranspose2d, bilinear_upsampler


@pytest.mark.parametrize("name", FCNS)
def test_segment_is_the_argmax_of_the_logits_at_any_size(name):
    torch.manual_seed(0)
    model = build_model(name, num_classes=5).eval()
    for parameter in model.parameters():
        parameter.data.normal_(0, 0.1)  # FCN-8s's skip scores start at zero; make every path count
    reference = with_torch_upsampling(build_model(name, num_classes=5)).eval()
    reference.load_state_dict(model.state_dict())
    with torch.no_grad():
        for height, width in ((64, 64), (37, 53), (33, 97)):
            images = torch.randn(2, 3, height, width)
            classes = model.segment(images)
            assert classes.shape == (2, height, width) and len(classes.unique()) > 1
            assert torch.equal(classes, model(images).argmax(dim=1))
            assert torch.equal(reference.segment(images), reference(images).argmax(dim=1))
            assert (
                classes == reference(images).argmax(dim=1)
            ).float().mean() > 0.99, "same classes as torch's transposed convolution"


@pytest.mark.parametrize("encoder, channels", [("resnet18", 512), ("resnet34", 512), ("resnet50", 2048)])
def test_fcn8s_scores_each_resnet_at_its_own_width(encoder, channels):
    model = build_model("fcn8s", num_classes=3, encoder=encoder)
    assert (model.score32.in_channels, model.score16.in_channels, model.score8.in_channels) == (
        channels,
        channels // 2,
        channels // 4,
    )
    assert model(torch.randn(1, 3, 40, 50)).shape == (1, 3, 40, 50)


def test_seed_fcn32s_layout():
    model = fcn_resnet18(num_classes=21)
    up = model.upsample32
    assert (up.kernel_size, up.stride, up.padding) == ((64, 64), (32, 32), (16, 16))
    assert not hasattr(model, "fc") and not hasattr(model, "avgpool")
    features = model.layer4(model.layer3(model.layer2(model.layer1(model.stem(torch.rand(1, 3, 320, 480))))))
    assert features.shape == (1, 512, 10, 15), "the seed's printed backbone output"


def test_upsampler_starts_as_bilinear_interpolation():
    model = fcn_resnet18(num_classes=2).eval()
    scores = torch.rand(1, 2, 4, 6)
    upsampled = model.upsample32(scores)
    reference = torch.nn.functional.interpolate(scores, scale_factor=32, mode="bilinear", align_corners=False)
    assert (upsampled - reference)[..., 32:-32, 32:-32].abs().max() < 1e-5


def test_fcn8s_skips_start_at_zero_so_it_begins_as_a_coarse_fcn():
    model = build_model("fcn8s", num_classes=4)
    assert model.score16.weight.abs().sum() == 0 and model.score8.weight.abs().sum() == 0
    for skip in (model.score16, model.score8):
        skip.weight.data.normal_()
    model.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        first = model(x)
        model.score8.weight.data.zero_()
        assert not torch.allclose(first, model(x)), "the stride-8 skip contributes to the output"


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(ModelError, match="choose one of fcn32s, fcn8s, unet"):
        build_model("unet++", num_classes=3)
    with pytest.raises(ModelError, match="model fcn8s has no encoder 'mit_b0'; choose one of resnet18, resnet34"):
        build_model("fcn8s", num_classes=3, encoder="mit_b0")
    with pytest.raises(ModelError, match="choose one of 32s, 8s"):
        fcn_resnet18(num_classes=3, variant="16s")


def test_backbone_weights_from_a_local_file(tmp_path):
    reference = resnet18()
    torch.save(reference.state_dict(), tmp_path / "resnet18.pth")
    model = fcn_resnet18(num_classes=3, backbone_weights=tmp_path / "resnet18.pth")
    assert torch.equal(model.stem[0].weight, reference.conv1.weight)
    assert torch.equal(model.layer4[1].conv2.weight, reference.layer4[1].conv2.weight)


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "not found"),
        ({"conv1.weight": torch.zeros(1)}, "not resnet18 weights"),
        ([1, 2], "expected a resnet18 state dict"),
    ],
)
def test_bad_backbone_weight_files_are_refused(tmp_path, content, message):
    path = tmp_path / "weights.pth"
    if content is not None:
        torch.save(content, path)
    with pytest.raises(ModelError, match=message):
        fcn_resnet18(num_classes=3, backbone_weights=path)


@pytest.mark.parametrize("name", ["fcn32s", "fcn8s"])
def test_gemm_upsamplers_equal_torch_transposed_convolution(name):
    torch.manual_seed(0)
    model = build_model(name, num_classes=5)
    upsamplers = [module for module in model.modules() if isinstance(module, BlockConvTranspose2d)]
    assert len(upsamplers) == (1 if name == "fcn32s" else 3)
    for upsampler in upsamplers:
        upsampler.weight.data.normal_()
    x = torch.randn(2, 3, 70, 90)
    ours = model(x)
    ours.square().mean().backward()
    our_grads = [upsampler.weight.grad.clone() for upsampler in upsamplers]
    model.zero_grad()
    scores = torch.randn(1, 5, 3, 4)
    assert not upsamplers[0](scores).is_contiguous(), "the GEMM path returns a channels-last view"
    reference = with_torch_upsampling(model)(x)
    assert upsamplers[0](scores).is_contiguous(), "torch's own kernel now"
    reference.square().mean().backward()
    torch.testing.assert_close(ours, reference, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(our_grads, [upsampler.weight.grad for upsampler in upsamplers], atol=1e-4, rtol=1e-3)


def test_gemm_upsampler_runs_on_cpu_only_unless_switched_off(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("GEMM path taken")

    monkeypatch.setattr("pixelwise.models.fcn.conv_transpose2d_by_phases", refuse)
    upsampler = bilinear_upsampler(5, 32)
    assert upsampler(torch.zeros(1, 5, 3, 4, device="meta")).shape == (1, 5, 96, 128), "torch's kernel off CPU"
    with pytest.raises(AssertionError, match="GEMM path taken"):
        upsampler(torch.zeros(1, 5, 3, 4))
    monkeypatch.setattr("pixelwise.models.fcn.phase_blocks", refuse)
    with pytest.raises(AssertionError, match="GEMM path taken"):
        upsampler.argmax_channels(torch.zeros(1, 5, 3, 4), 90, 120)
    upsampler.by_phases = False
    assert upsampler(torch.zeros(1, 5, 3, 4)).shape == (1, 5, 96, 128), "switched off: torch's kernel on CPU too"
    assert upsampler.argmax_channels(torch.zeros(1, 5, 3, 4), 90, 120).shape == (1, 90, 120)

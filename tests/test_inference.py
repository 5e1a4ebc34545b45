"""Test-time augmentation and sliding windows against computations written out by hand."""

import pytest
import torch
import torch.nn.functional as F

from pixelwise.inference import MS_SCALES, InferenceMode, averaged_probabilities, window_logits
from pixelwise.models import build_model
from pixelwise.segmenter import Segmenter


def pixelwise_network() -> torch.nn.Module:
    """A 1x1 convolution: each pixel's logits depend on that pixel alone, so windows cannot change them."""
    torch.manual_seed(0)
    return torch.nn.Conv2d(3, 4, kernel_size=1)


def position_network(x: torch.Tensor) -> torch.Tensor:
    """Logits that depend on the column, so a flip or a window changes them visibly."""
    columns = torch.arange(x.shape[-1], dtype=torch.float32).expand(x.shape[0], 1, *x.shape[-2:])
    return torch.cat([columns / 10, x[:, :1], -columns / 10], dim=1)  # (N, 3, H, W)


@pytest.mark.parametrize("window, overlap", [((8, 8), 1 / 3), ((5, 7), 0.5), ((40, 40), 0.0), ((1, 1), 0.0)])
def test_windows_cover_every_pixel_and_a_pixelwise_network_gives_the_same_logits(window, overlap):
    network = pixelwise_network()
    x = torch.randn(2, 3, 23, 31)
    with torch.no_grad():
        assert torch.allclose(window_logits(network, x, window, overlap), network(x), atol=1e-6)


def test_overlapping_windows_average_their_logits():
    calls = []

    def logits(x):
        calls.append(tuple(x.shape[-2:]))
        return torch.ones(1, 1, *x.shape[-2:])

    averaged = window_logits(logits, torch.zeros(1, 3, 10, 12), (10, 8), 0.5)
    assert calls == [(10, 8), (10, 8)], "columns 0-7 and 4-11: the last window flush with the edge"
    assert torch.equal(averaged, torch.ones(1, 1, 10, 12))


def test_flip_averages_the_photo_and_its_mirror_image():
    x = torch.randn(1, 3, 6, 9)
    expected = (position_network(x).softmax(1) + position_network(x.flip(-1)).flip(-1).softmax(1)) / 2
    assert torch.allclose(averaged_probabilities(position_network, x, InferenceMode(tta="flip")), expected)


@pytest.mark.parametrize("scales", [MS_SCALES, (1.5,), (0.5, 2.0)])
def test_multi_scale_averages_the_scales_resized_back(scales):
    x = torch.randn(1, 3, 12, 16)
    expected = 0
    for scale in scales:
        scaled = F.interpolate(x, size=(round(12 * scale), round(16 * scale)), mode="bilinear", align_corners=False)
        expected = expected + F.interpolate(
            position_network(scaled).softmax(1), size=(12, 16), mode="bilinear", align_corners=False
        )
    result = averaged_probabilities(position_network, x, InferenceMode(tta="ms", scales=scales))
    assert torch.allclose(result, expected / len(scales), atol=1e-6)


def test_multi_scale_with_flip_averages_every_scale_and_its_mirror_image():
    x, scales = torch.randn(1, 3, 12, 16), (0.5, 1.5)
    expected = 0
    for scale in scales:
        scaled = F.interpolate(x, size=(round(12 * scale), round(16 * scale)), mode="bilinear", align_corners=False)
        for view in (position_network(scaled), position_network(scaled.flip(-1)).flip(-1)):
            expected = expected + F.interpolate(view.softmax(1), size=(12, 16), mode="bilinear", align_corners=False)
    result = averaged_probabilities(position_network, x, InferenceMode(tta="ms+flip", scales=scales))
    assert torch.allclose(result, expected / 4, atol=1e-6)


def test_segmenter_segments_in_its_inference_mode():
    torch.manual_seed(0)
    network = build_model("fpn", num_classes=3).eval()
    segmenter = Segmenter(network, model_name="fpn", class_names=("a", "b", "c"), palette=((0, 0, 0),) * 3)
    x = torch.randn(1, 3, 70, 90)
    with torch.no_grad():
        plain = segmenter.segment(x)
        windowed = segmenter.set_inference(window=(64, 64)).segment(x)
        expected = window_logits(network, x, (64, 64), 1 / 3).argmax(1)
        assert torch.equal(windowed, expected) and windowed.shape == plain.shape == (1, 70, 90)
        flipped = segmenter.set_inference(tta="flip", window=None).segment(x)
        assert torch.equal(flipped, averaged_probabilities(network, x, InferenceMode(tta="flip")).argmax(1))
        assert segmenter.for_inference().inference == InferenceMode(tta="flip"), "the copy keeps the mode"
        segmenter.set_inference(tta="ms", scales=(1.25,)).set_inference(tta="flip")
        assert torch.equal(segmenter.segment(x), flipped), "scales set for ms leave flip unchanged"


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"tta": "rotate"}, "tta must be one of none, flip, ms"),
        ({"window": (0, 5)}, "window must be two whole numbers .height, width. of at least 32"),
        ({"window": (16, 64)}, "of at least 32, got \\(16, 64\\)"),
        ({"window": (64,)}, "window must be two whole numbers"),
        ({"window": 64}, "window must be two whole numbers .* got 64$"),
        ({"overlap": 0.95}, "overlap must be between 0 and 0.9"),
        ({"overlap": float("nan")}, "overlap must be between 0 and 0.9"),
        ({"tta": "ms", "scales": ()}, "scales must be a tuple of 1 to 8 numbers, got \\(\\)"),
        ({"scales": (1.0, 2.5)}, "scales must be between 0.25 and 2, got 2.5$"),
        ({"scales": (True,)}, "between 0.25 and 2, got True$"),
        ({"scales": [1.0]}, "a tuple of 1 to 8 numbers, got \\[1.0\\]"),
        ({"scales": (float("nan"),)}, "between 0.25 and 2, got nan"),
        ({"scales": tuple(0.25 * n for n in range(1, 10))}, "a tuple of 1 to 8 numbers"),
        ({"scales": (1, 1.5, 1.0)}, "scales must differ .a repeat costs a pass and changes nothing., got \\(1, 1.5"),
    ],
)
def test_impossible_modes_are_refused(settings, message):
    with pytest.raises(ValueError, match=message):
        InferenceMode(**settings)

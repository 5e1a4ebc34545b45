import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pixelwise.ops import (
    bilinear_kernel,
    conv_matrix,
    conv_transpose2d,
    conv_transpose2d_by_phases,
    trans_conv,
    transposed_output_size,
)

SEED_X = torch.tensor([[0.0, 1.0], [2.0, 3.0]])


def test_trans_conv_reproduces_seed_output():
    expected = torch.tensor([[0.0, 0.0, 1.0], [0.0, 4.0, 6.0], [4.0, 12.0, 9.0]])
    assert torch.equal(trans_conv(SEED_X, SEED_X), expected)


@pytest.mark.parametrize(
    "stride, padding, expected",
    [
        (1, 0, [[0, 0, 1], [0, 4, 6], [4, 12, 9]]),
        (1, 1, [[4]]),
        (2, 0, [[0, 0, 0, 1], [0, 0, 2, 3], [0, 2, 0, 3], [4, 6, 6, 9]]),
    ],
)
def test_seed_printed_tensors(stride, padding, expected):
    x, k = SEED_X.reshape(1, 1, 2, 2), SEED_X.reshape(1, 1, 2, 2)
    expected = torch.tensor(expected, dtype=torch.float32).reshape(1, 1, *torch.tensor(expected).shape)
    layer = nn.ConvTranspose2d(1, 1, kernel_size=2, stride=stride, padding=padding, bias=False)
    layer.weight.data = k
    assert torch.equal(layer(x).detach(), expected)
    assert torch.equal(conv_transpose2d(x, k, stride=stride, padding=padding), expected)


def test_conv_transpose2d_matches_torch_on_random_shapes():
    generator = torch.Generator().manual_seed(0)
    checked = 0
    for _ in range(80):
        batch, c_in, c_out = (int(v) for v in torch.randint(1, 4, (3,), generator=generator))
        height, width = (int(v) for v in torch.randint(1, 7, (2,), generator=generator))
        k_h, k_w = (int(v) for v in torch.randint(1, 6, (2,), generator=generator))
        stride = int(torch.randint(1, 5, (1,), generator=generator))
        padding = int(torch.randint(0, min(k_h, k_w), (1,), generator=generator))
        if (
            min(
                transposed_output_size(height, k_h, stride, padding),
                transposed_output_size(width, k_w, stride, padding),
            )
            < 1
        ):
            continue  # torch refuses empty outputs; so does ours (tested below)
        x = torch.randn(batch, c_in, height, width, generator=generator)
        w = torch.randn(c_in, c_out, k_h, k_w, generator=generator)
        ours = conv_transpose2d(x, w, stride=stride, padding=padding)
        reference = F.conv_transpose2d(x, w, stride=stride, padding=padding)
        torch.testing.assert_close(ours, reference, atol=1e-5, rtol=0)
        checked += 1
    assert checked > 40


def test_conv_transpose2d_gradients_match_torch():
    x = torch.randn(2, 3, 4, 5, requires_grad=True)
    w = torch.randn(3, 2, 3, 4, requires_grad=True)
    conv_transpose2d(x, w, stride=2, padding=1).square().sum().backward()
    ours = (x.grad.clone(), w.grad.clone())
    x.grad = w.grad = None
    F.conv_transpose2d(x, w, stride=2, padding=1).square().sum().backward()
    assert torch.allclose(ours[0], x.grad, atol=1e-4)
    assert torch.allclose(ours[1], w.grad, atol=1e-4)


def test_conv_transpose2d_rejects_bad_arguments():
    with pytest.raises(ValueError, match="input channels"):
        conv_transpose2d(torch.zeros(1, 2, 3, 3), torch.zeros(3, 1, 2, 2))
    with pytest.raises(ValueError, match="padding"):
        conv_transpose2d(torch.zeros(1, 1, 3, 3), torch.zeros(1, 1, 2, 2), padding=2)
    with pytest.raises(ValueError, match="empty output"):
        conv_transpose2d(torch.zeros(1, 1, 1, 1), torch.zeros(1, 1, 2, 2), padding=1)


@pytest.mark.parametrize("stride", [1, 2, 3, 8, 32])
@pytest.mark.parametrize("taps", [1, 2, 3])
def test_conv_transpose2d_by_phases_matches_torch(stride, taps):
    generator = torch.Generator().manual_seed(stride * 10 + taps)
    kernel = taps * stride
    for padding in sorted({0, 1, stride // 2, kernel - 1}):
        for height, width in ((1, 1), (3, 5), (6, 2)):
            if (
                min(
                    transposed_output_size(height, kernel, stride, padding),
                    transposed_output_size(width, kernel, stride, padding),
                )
                < 1
            ):
                continue
            x = torch.randn(2, 3, height, width, generator=generator, dtype=torch.float64)
            w = torch.randn(3, 4, kernel, kernel, generator=generator, dtype=torch.float64)
            reference = F.conv_transpose2d(x, w, stride=stride, padding=padding)
            torch.testing.assert_close(
                conv_transpose2d_by_phases(x, w, stride=stride, padding=padding), reference, atol=1e-10, rtol=0
            )


def test_conv_transpose2d_by_phases_gradients_match_torch():
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 2, 8, 8, dtype=torch.float64, requires_grad=True)
    conv_transpose2d_by_phases(x, w, stride=4, padding=2).square().sum().backward()
    ours = (x.grad.clone(), w.grad.clone())
    x.grad = w.grad = None
    F.conv_transpose2d(x, w, stride=4, padding=2).square().sum().backward()
    torch.testing.assert_close(ours, (x.grad, w.grad))


def test_conv_transpose2d_by_phases_needs_kernel_multiple_of_stride():
    with pytest.raises(ValueError, match="multiple of stride"):
        conv_transpose2d_by_phases(torch.zeros(1, 1, 3, 3), torch.zeros(1, 1, 3, 3), stride=2)
    with pytest.raises(ValueError, match="square"):
        conv_transpose2d_by_phases(torch.zeros(1, 1, 3, 3), torch.zeros(1, 1, 4, 2), stride=2)


@pytest.mark.parametrize(
    "n, k, s, p", [(2, 2, 1, 0), (2, 2, 1, 1), (2, 2, 2, 0), (10, 64, 32, 16), (7, 4, 2, 1), (5, 3, 3, 2)]
)
def test_transposed_output_size_matches_layer(n, k, s, p):
    layer = nn.ConvTranspose2d(1, 1, kernel_size=k, stride=s, padding=p)
    assert layer(torch.zeros(1, 1, n, n)).shape[-1] == transposed_output_size(n, k, s, p)


def test_transposed_output_size_doubles_when_k_is_2p_plus_s():
    assert transposed_output_size(10, k=4, s=2, p=1) == 20
    assert transposed_output_size(10, k=64, s=32, p=16) == 320


def test_conv_matrix_is_convolution_and_its_transpose_is_transposed_convolution():
    kernel = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    X = torch.arange(9.0).reshape(3, 3)
    V = conv_matrix(kernel, (3, 3))
    assert V.shape == (4, 9)
    conv = F.conv2d(X.reshape(1, 1, 3, 3), kernel.reshape(1, 1, 2, 2))
    assert torch.equal((V @ X.reshape(-1)).reshape(2, 2), conv[0, 0])
    Y = torch.tensor([[1.0, -2.0], [0.5, 3.0]])
    transposed = F.conv_transpose2d(Y.reshape(1, 1, 2, 2), kernel.reshape(1, 1, 2, 2))
    assert torch.equal((V.T @ Y.reshape(-1)).reshape(3, 3), transposed[0, 0])
    assert torch.equal((V.T @ Y.reshape(-1)).reshape(3, 3), trans_conv(Y, kernel))


def test_conv_matrix_rejects_kernel_larger_than_input():
    with pytest.raises(ValueError, match="larger"):
        conv_matrix(torch.ones(3, 3), (2, 5))


def test_bilinear_kernel_doubles_like_interpolate_away_from_border():
    layer = nn.ConvTranspose2d(3, 3, kernel_size=4, padding=1, stride=2, bias=False)
    layer.weight.data.copy_(bilinear_kernel(3, 3, 4))
    x = torch.rand(2, 3, 9, 13)
    ours = layer(x).detach()
    reference = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    assert ours.shape == (2, 3, 18, 26)
    assert (ours - reference)[..., 1:-1, 1:-1].abs().max() < 1e-5


def test_bilinear_kernel_keeps_channels_apart_and_rejects_mixed_counts():
    weight = bilinear_kernel(2, 2, 3)
    assert torch.equal(weight[0, 1], torch.zeros(3, 3))
    assert torch.allclose(weight[0, 0], torch.tensor([[0.25, 0.5, 0.25], [0.5, 1.0, 0.5], [0.25, 0.5, 0.25]]))
    with pytest.raises(ValueError, match="must equal"):
        bilinear_kernel(3, 2, 4)

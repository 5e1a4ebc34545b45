"""The math the seed teaches: transposed convolution and the bilinear kernel."""

from __future__ import annotations

import torch
from torch.nn import functional as F


def trans_conv(X: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """Naive single-channel transposed convolution: each input pixel stamps a scaled kernel."""
    kernel_h, kernel_w = K.shape
    Y = torch.zeros(X.shape[0] + kernel_h - 1, X.shape[1] + kernel_w - 1, dtype=X.dtype)
    for row in range(X.shape[0]):
        for col in range(X.shape[1]):
            Y[row : row + kernel_h, col : col + kernel_w] += X[row, col] * K
    return Y


def transposed_output_size(n: int, k: int, s: int = 1, p: int = 0) -> int:
    """Output length of a transposed convolution: n' = s*n + k - 2p - s."""
    return s * n + k - 2 * p - s


def conv_transpose2d(x: torch.Tensor, weight: torch.Tensor, *, stride: int = 1, padding: int = 0) -> torch.Tensor:
    """Batched multi-channel transposed convolution, equal to torch's `conv_transpose2d`.

    Args:
        x: input of shape (N, C_in, H, W).
        weight: kernel of shape (C_in, C_out, kH, kW), torch's layout for transposed convolution.

    The loop runs over kernel positions, never over pixels: for kernel offset (i, j) every input
    pixel adds its channel mix into the output at (i + stride*row, j + stride*col).
    """
    batch, in_channels, height, width = x.shape
    weight_in, out_channels, kernel_h, kernel_w = weight.shape
    if weight_in != in_channels:
        raise ValueError(f"weight has {weight_in} input channels, input has {in_channels}")
    if not 0 <= padding < min(kernel_h, kernel_w):
        raise ValueError(f"padding must be in [0, kernel size - 1], got {padding}")
    full_h = transposed_output_size(height, kernel_h, stride)
    full_w = transposed_output_size(width, kernel_w, stride)
    if min(full_h, full_w) - 2 * padding < 1:
        raise ValueError(f"padding {padding} leaves an empty output for a {height}x{width} input")
    out = x.new_zeros(batch, out_channels, full_h, full_w)
    span_h, span_w = stride * (height - 1) + 1, stride * (width - 1) + 1
    for i in range(kernel_h):
        for j in range(kernel_w):
            # (N, C_in, H, W) x (C_in, C_out) -> (N, C_out, H, W)
            contribution = torch.einsum("nchw,co->nohw", x, weight[:, :, i, j])
            out[:, :, i : i + span_h : stride, j : j + span_w : stride] += contribution
    # Padding of a transposed convolution removes rows and columns from the output.
    return out[:, :, padding : full_h - padding, padding : full_w - padding]


def conv_transpose2d_by_phases(x: torch.Tensor, weight: torch.Tensor, *, stride: int, padding: int = 0) -> torch.Tensor:
    """Transposed convolution whose kernel is a multiple of its stride, as one matrix multiply.

    With kernel size k = m * stride, output row stride*q + r (before cropping `padding`) only
    receives input rows q - m + 1 .. q, through kernel rows r, stride + r, ... So every
    stride x stride output block is a linear map of an m x m input window: one GEMM of the
    unfolded, (m - 1)-zero-padded input with the kernel rearranged to
    (C_in * m * m, stride * stride * C_out) (`phase_blocks`), then a copy that interleaves the
    blocks (`interleave_blocks`). oneDNN's scatter of overlapping 64x64 patches (FCN-32s) ran
    at a small fraction of the GEMM rate on the CPU, forward and backward.
    Equal to `F.conv_transpose2d(x, weight, stride=stride, padding=padding)`; the result is a
    channels-last view.
    """
    blocks = phase_blocks(x, weight, stride=stride)
    out_h, out_w = (transposed_output_size(n, weight.shape[-1], stride, padding) for n in x.shape[-2:])
    return interleave_blocks(blocks, top=padding, left=padding, height=out_h, width=out_w).permute(0, 3, 1, 2)


def phase_blocks(x: torch.Tensor, weight: torch.Tensor, *, stride: int) -> torch.Tensor:
    """The output of an unpadded transposed convolution as (N, blocks_h, blocks_w, stride, stride, C_out) blocks.

    See `conv_transpose2d_by_phases`; block (q, q') holds output rows stride*q .. stride*q + stride - 1
    and the matching columns, channels last.
    """
    in_channels, out_channels, kernel_h, kernel_w = weight.shape
    if kernel_h != kernel_w or kernel_h % stride:
        raise ValueError(
            f"kernel {kernel_h}x{kernel_w} is not square with a side that is a multiple of stride {stride}"
        )
    taps = kernel_h // stride
    batch, _, height, width = x.shape
    blocks_h, blocks_w = height + taps - 1, width + taps - 1
    windows = F.unfold(F.pad(x, [taps - 1] * 4), taps)  # (N, C_in * m * m, blocks_h * blocks_w)
    # weight[c, o, stride * (m - 1 - i) + r, ...] -> kernel[(c, i, j), (r, r', o)]
    kernel = weight.reshape(in_channels, out_channels, taps, stride, taps, stride).flip(2, 4)
    kernel = kernel.permute(0, 2, 4, 3, 5, 1).reshape(in_channels * taps * taps, stride * stride * out_channels)
    blocks = windows.transpose(1, 2) @ kernel  # (N, blocks_h * blocks_w, stride * stride * C_out)
    return blocks.view(batch, blocks_h, blocks_w, stride, stride, out_channels)


def interleave_blocks(blocks: torch.Tensor, *, top: int, left: int, height: int, width: int) -> torch.Tensor:
    """(N, blocks_h, blocks_w, s, s, ...) blocks -> the (N, height, width, ...) window at (top, left) of their image."""
    batch, blocks_h, blocks_w, stride = blocks.shape[:4]
    rest = blocks.shape[5:]
    image = blocks.transpose(2, 3).reshape(batch, blocks_h * stride, blocks_w * stride, *rest)
    return image[:, top : top + height, left : left + width]


def conv_matrix(kernel: torch.Tensor, input_shape: tuple[int, int]) -> torch.Tensor:
    """The matrix V with conv(X) == V @ vec(X) for a stride-1, unpadded 2-D convolution.

    Its transpose maps vec(Y) back to the input shape: that product is the transposed convolution.
    """
    kernel_h, kernel_w = kernel.shape
    height, width = input_shape
    out_h, out_w = height - kernel_h + 1, width - kernel_w + 1
    if out_h < 1 or out_w < 1:
        raise ValueError(f"kernel {tuple(kernel.shape)} is larger than input {input_shape}")
    out_rows, out_cols = torch.meshgrid(torch.arange(out_h), torch.arange(out_w), indexing="ij")
    k_rows, k_cols = torch.meshgrid(torch.arange(kernel_h), torch.arange(kernel_w), indexing="ij")
    # (out_h*out_w, 1) row of V paired with (1, kH*kW) kernel offsets.
    matrix_rows = (out_rows * out_w + out_cols).reshape(-1, 1)
    input_index = (out_rows.reshape(-1, 1) + k_rows.reshape(1, -1)) * width + (
        out_cols.reshape(-1, 1) + k_cols.reshape(1, -1)
    )
    V = torch.zeros(out_h * out_w, height * width, dtype=kernel.dtype)
    V[matrix_rows.expand_as(input_index), input_index] = kernel.reshape(1, -1).expand_as(input_index)
    return V


def bilinear_kernel(in_channels: int, out_channels: int, kernel_size: int) -> torch.Tensor:
    """Weights (C_in, C_out, k, k) making a ConvTranspose2d a per-channel bilinear upsampler."""
    if in_channels != out_channels:
        raise ValueError(
            f"a bilinear upsampler maps each channel to itself: in_channels ({in_channels}) "
            f"must equal out_channels ({out_channels})"
        )
    factor = (kernel_size + 1) // 2
    center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    ramp = 1 - (torch.arange(kernel_size, dtype=torch.float32) - center).abs() / factor
    tent = ramp.reshape(-1, 1) * ramp.reshape(1, -1)  # (k, k), separable
    weight = torch.zeros(in_channels, out_channels, kernel_size, kernel_size)
    channels = torch.arange(in_channels)
    weight[channels, channels] = tent
    return weight

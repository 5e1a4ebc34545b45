"""Ways to turn a network's logits into class indices at test time: plain, flipped, multi-scale, window by window."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from pixelwise.numbers import is_finite_number

TTA_MODES = ("none", "flip", "ms", "ms+flip")
MULTI_SCALE_MODES = ("ms", "ms+flip")  # the modes that pass the photo at each of their scales
FLIP_MODES = ("flip", "ms+flip")  # the modes that add the mirror image of each pass
MS_SCALES = (0.75, 1.0, 1.25, 1.5)  # the photo's size times each; mmsegmentation's usual range, trimmed for CPUs
SCALE_RANGE = (0.25, 2.0)  # larger photos multiply the memory of one pass by the scale's square
MAX_SCALES = 8  # each scale is a pass over the photo
DEFAULT_OVERLAP = 1 / 3
MAX_OVERLAP = 0.9  # beyond it windows step by a few pixels: thousands of passes for one photo
MIN_WINDOW_SIDE = 32  # the largest output stride: smaller windows are padded up to it anyway
Logits = Callable[[torch.Tensor], torch.Tensor]


def scales_problem(scales: object) -> str | None:
    """Why `scales` cannot be ms's sizes: 1 to MAX_SCALES different numbers within SCALE_RANGE; None if they can."""
    low, high = SCALE_RANGE
    if not isinstance(scales, tuple) or not 1 <= len(scales) <= MAX_SCALES:
        return f"scales must be a tuple of 1 to {MAX_SCALES} numbers, got {scales!r}"
    wrong = next((scale for scale in scales if not (is_finite_number(scale) and low <= scale <= high)), None)
    if wrong is not None:
        return f"scales must be between {low:g} and {high:g}, got {wrong!r}"
    if len(set(scales)) < len(scales):
        return f"scales must differ (a repeat costs a pass and changes nothing), got {scales!r}"
    return None


@dataclass(frozen=True)
class InferenceMode:
    """Test-time augmentation (`tta`: none, flip, ms or ms+flip) and an optional sliding window (height, width).

    "flip" averages the softmax of the photo and its mirror image; "ms" averages it over `scales`
    (MS_SCALES unless given; one scale is a single pass at that size); "ms+flip" over every scale
    and its mirror image, as mmsegmentation's usual test-time augmentation. Other modes leave
    `scales` unused.
    With `window`, a photo larger than it is segmented window by window, windows overlapping by
    `overlap` of their side, and logits averaged where they overlap.
    """

    tta: str = "none"
    window: tuple[int, int] | None = None
    overlap: float = DEFAULT_OVERLAP
    scales: tuple[float, ...] = MS_SCALES

    def __post_init__(self) -> None:
        if self.tta not in TTA_MODES:
            raise ValueError(f"tta must be one of {', '.join(TTA_MODES)}, got {self.tta!r}")
        problem = scales_problem(self.scales)
        if problem:
            raise ValueError(problem)
        if self.window is not None and not (
            isinstance(self.window, (tuple, list))
            and len(self.window) == 2
            and all(isinstance(side, int) and side >= MIN_WINDOW_SIDE for side in self.window)
        ):
            raise ValueError(
                f"window must be two whole numbers (height, width) of at least {MIN_WINDOW_SIDE}, got {self.window!r}"
            )
        if not 0 <= self.overlap <= MAX_OVERLAP:
            raise ValueError(f"overlap must be between 0 and {MAX_OVERLAP}, got {self.overlap!r}")

    @property
    def plain(self) -> bool:
        """One pass over the whole photo: the argmax of the logits, nothing averaged."""
        return self.tta == "none" and self.window is None


def _starts(length: int, window: int, overlap: float) -> list[int]:
    """Window offsets along one side: `window` apart less the overlap, the last flush with the end."""
    if length <= window:
        return [0]
    step = max(1, int(window * (1 - overlap)))
    starts = list(range(0, length - window + 1, step))
    return starts if starts[-1] == length - window else [*starts, length - window]


def window_logits(logits: Logits, x: torch.Tensor, window: tuple[int, int], overlap: float) -> torch.Tensor:
    """`logits(x)` computed one window at a time, averaged where windows overlap; (N, C, H, W)."""
    height, width = x.shape[-2:]
    total, counts = None, torch.zeros((1, 1, height, width), device=x.device)
    for top in _starts(height, window[0], overlap):
        for left in _starts(width, window[1], overlap):
            rows, columns = slice(top, top + window[0]), slice(left, left + window[1])
            part = logits(x[..., rows, columns]).float()  # (N, C, h, w)
            if total is None:
                total = x.new_zeros((x.shape[0], part.shape[1], height, width), dtype=torch.float32)
            total[..., rows, columns] += part
            counts[..., rows, columns] += 1
    return total / counts


def averaged_probabilities(logits: Logits, x: torch.Tensor, mode: InferenceMode) -> torch.Tensor:
    """Softmax probabilities (N, C, H, W) averaged over the views `mode` asks for."""
    height, width = x.shape[-2:]

    def run(view: torch.Tensor) -> torch.Tensor:
        return window_logits(logits, view, mode.window, mode.overlap) if mode.window else logits(view).float()

    scales = mode.scales if mode.tta in MULTI_SCALE_MODES else (1.0,)
    flips = (False, True) if mode.tta in FLIP_MODES else (False,)
    total = None
    for scale in scales:
        size = (max(1, round(height * scale)), max(1, round(width * scale)))
        scaled = x if scale == 1.0 else F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        for flip in flips:
            view = run(scaled.flip(-1)).flip(-1) if flip else run(scaled)
            probabilities = view.softmax(dim=1)
            if scale != 1.0:
                probabilities = F.interpolate(probabilities, size=(height, width), mode="bilinear", align_corners=False)
            total = probabilities if total is None else total + probabilities
    return total / (len(scales) * len(flips))

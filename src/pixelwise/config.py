"""Training configuration: one dataclass with the default recipe, saved with every run."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

from pixelwise.errors import TrainingError

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("poly", "cosine", "constant")
BAD_SAMPLE_POLICIES = ("error", "skip")
CLASS_WEIGHTINGS = ("none", "median-frequency")
PRECISIONS = ("fp32", "bf16")
DECODE_PLACES = ("workers", "device")


@dataclass
class TrainConfig:
    """Everything that decides a training run; see docs/training.md for why these defaults."""

    data: str = "synthetic"
    root: str | None = None
    download: bool = False
    train_split: str = "train"
    val_split: str = "val"
    out: str = "runs/latest"
    model: str = "fcn8s"
    backbone_weights: str = "none"
    epochs: int = 30
    batch_size: int = 8
    crop_size: tuple[int, int] = (256, 320)
    scale_range: tuple[float, float] = (0.75, 1.5)
    optimizer: str = "sgd"
    lr: float = 0.02
    momentum: float = 0.9
    weight_decay: float = 1e-4
    class_weighting: str = "none"
    schedule: str = "poly"
    warmup_epochs: float = 1.0
    workers: int = 2
    seed: int = 0
    deterministic: bool = False
    device: str = "auto"
    precision: str = "fp32"
    decode_on: str = "workers"
    on_bad_sample: str = "error"
    save_every_steps: int = 100

    def __post_init__(self) -> None:
        self.crop_size = tuple(self.crop_size)
        self.scale_range = tuple(self.scale_range)
        self.validate()

    def validate(self) -> None:
        """Raise TrainingError on values no run could use."""
        problems = []
        if self.optimizer not in OPTIMIZERS:
            problems.append(f"optimizer must be one of {', '.join(OPTIMIZERS)}")
        if self.class_weighting not in CLASS_WEIGHTINGS:
            problems.append(f"class_weighting must be one of {', '.join(CLASS_WEIGHTINGS)}")
        if self.on_bad_sample not in BAD_SAMPLE_POLICIES:
            problems.append(f"on_bad_sample must be one of {', '.join(BAD_SAMPLE_POLICIES)}")
        if self.save_every_steps < 0:
            problems.append("save_every_steps must be 0 (epoch ends only) or positive")
        if self.precision not in PRECISIONS:
            problems.append(f"precision must be one of {', '.join(PRECISIONS)}")
        if self.decode_on not in DECODE_PLACES:
            problems.append(f"decode_on must be one of {', '.join(DECODE_PLACES)}")
        if self.schedule not in SCHEDULES:
            problems.append(f"schedule must be one of {', '.join(SCHEDULES)}")
        if self.epochs < 1 or self.batch_size < 1:
            problems.append("epochs and batch size must be at least 1")
        if len(self.crop_size) != 2 or min(self.crop_size) < 1:
            problems.append(f"crop size must be two positive numbers, got {self.crop_size}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            problems.append(f"lr must be a positive number, got {self.lr}")
        if not 0 <= self.momentum < 1:
            problems.append(f"momentum must be at least 0 and below 1, got {self.momentum}")
        for name, value in (("weight_decay", self.weight_decay), ("warmup_epochs", self.warmup_epochs), ("workers", self.workers)):
            if not (value >= 0 and math.isfinite(value)):
                problems.append(f"{name} must be a non-negative number, got {value}")
        if not 0 < self.scale_range[0] <= self.scale_range[1]:
            problems.append(f"scale range must satisfy 0 < low <= high, got {self.scale_range}")
        if problems:
            raise TrainingError("; ".join(problems))

    def to_dict(self) -> dict:
        """Plain JSON-able dict (tuples become lists)."""
        return {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """Inverse of `to_dict`; unknown keys (from other versions) are dropped."""
        known = {field.name for field in fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in known})

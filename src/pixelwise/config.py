"""Training configuration: one dataclass with every setting of a run, saved with it."""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, fields

from pixelwise.errors import ModelError, SettingsError, TrainingError
from pixelwise.losses import LOSSES
from pixelwise.models import DEFAULT_MODEL, LEGACY_ENCODER, MODELS, model_spec, resolve_encoder

SCHEDULES = ("poly", "cosine", "constant")
BAD_SAMPLE_POLICIES = ("error", "skip")
CLASS_WEIGHTING_POWERS = {
    "median-frequency": 1.0,
    "sqrt-median-frequency": 0.5,
}  # exponent of the median-frequency weights
CLASS_WEIGHTINGS = ("none", *CLASS_WEIGHTING_POWERS)
LEARNING_RATES = {"sgd": 0.02, "adamw": 1e-3}  # each optimiser's peak rate unless `lr` is given
OPTIMIZERS = tuple(LEARNING_RATES)
PRECISIONS = ("fp32", "bf16", "auto")  # auto: bf16 where the device has bfloat16 units
DECODE_PLACES = ("workers", "device")
CHOICES = {
    "model": tuple(MODELS), "optimizer": OPTIMIZERS, "class_weighting": CLASS_WEIGHTINGS, "schedule": SCHEDULES,
    "precision": PRECISIONS, "decode_on": DECODE_PLACES, "on_bad_sample": BAD_SAMPLE_POLICIES, "loss": LOSSES,
}  # fmt: skip
# A config saved before a setting existed trained as this value does, not as today's default.
BEFORE_THE_SETTING = {"class_weighting": "none", "loss": "ce", "encoder": LEGACY_ENCODER, "optimizer": "sgd"}
FILLED_IN = ("optimizer", "lr", "loss")  # None means the model's (or the optimiser's) in a new config
RENAMED = {"backbone_weights": "encoder_weights"}  # a saved config's old name -> today's
MAX_SEED = 2**63 - 1
MAX_WORKERS = 256
MAX_CROP_SIDE = 65_536
MAX_SCALE = 16.0
# (lowest, highest) of each number: past them no run is meaningful, and some overflow deep in torch.
BOUNDS = {
    "epochs": (1, 100_000), "batch_size": (1, 65_536), "workers": (0, MAX_WORKERS), "seed": (0, MAX_SEED),
    "save_every_steps": (0, 10**9), "lr": (0, 10), "momentum": (0, 1), "weight_decay": (0, 1),
    "warmup_epochs": (0, 10_000), "world_size": (1, 1_000_000), "color_jitter": (0, 1), "ema_decay": (0, 1),
}  # fmt: skip
ABOVE_LOWEST, BELOW_HIGHEST = ("lr",), ("momentum", "ema_decay")  # bounds that are excluded
SAVED_KEYS = frozenset({"data", "model", "out", "epochs", "batch_size", "crop_size", "lr", "seed"})
"""Settings every saved config has held since the first release: a dict without them is not a run's config."""
TEXTS = ("data", "train_split", "val_split", "out", "encoder_weights", "device")
PATHS = ("data", "root", "out", "encoder_weights", "init_from")  # a Path is taken as its text, Path("none") too
WHOLE_NUMBERS = ("epochs", "batch_size", "workers", "seed", "save_every_steps", "world_size")
REAL_NUMBERS = ("lr", "momentum", "weight_decay", "warmup_epochs", "color_jitter", "ema_decay")


def _out_of_bounds(name: str, value: float) -> str | None:
    """'lr must be above 0 and at most 10, got 0.0' when `value` is outside BOUNDS[name] (NaN always is)."""
    low, high = BOUNDS[name]
    above = low < value if name in ABOVE_LOWEST else low <= value
    below = value < high if name in BELOW_HIGHEST else value <= high
    if above and below:
        return None
    lowest = f"above {low}" if name in ABOVE_LOWEST else f"at least {low}"
    highest = f"below {high}" if name in BELOW_HIGHEST else f"at most {high}"
    return f"{name} must be {lowest} and {highest}, got {value!r}"


def _as_tuple(value) -> tuple:
    """A list or tuple as a tuple; a single value as a 1-tuple, which validate then refuses."""
    return tuple(value) if isinstance(value, (list, tuple)) else (value,)


@dataclass
class TrainConfig:
    """Everything that decides a training run; see docs/training.md for why these defaults."""

    data: str = "synthetic"
    root: str | None = None
    download: bool = False
    train_split: str = "train"
    val_split: str = "val"
    out: str = "runs/latest"
    model: str = DEFAULT_MODEL
    encoder: str | None = None  # the model's default encoder
    encoder_weights: str = "none"
    init_from: str | None = None  # a checkpoint whose network weights the run starts from (fine-tuning)
    loss: str | None = None  # the model's (pixelwise.models.ModelSpec)
    epochs: int = 30
    batch_size: int = 8
    crop_size: tuple[int, int] = (256, 320)
    scale_range: tuple[float, float] = (0.75, 1.5)
    color_jitter: float = 0.0  # brightness, contrast and saturation each scaled by up to 1 +- this; 0: none
    copy_paste: tuple[str, ...] = ()  # classes (or comma lists of them) pasted from another training photo
    optimizer: str | None = None  # the model's
    lr: float | None = None  # the optimiser's, LEARNING_RATES
    momentum: float = 0.9
    weight_decay: float = 1e-4
    class_weighting: str = "sqrt-median-frequency"
    schedule: str = "poly"
    warmup_epochs: float = 1.0
    ema_decay: float = 0.0  # validate and save a moving average of the weights (pixelwise.averaging); 0: off
    workers: int = 2
    seed: int = 0
    deterministic: bool = False
    device: str = "auto"
    precision: str = "fp32"
    decode_on: str = "workers"
    on_bad_sample: str = "error"
    save_every_steps: int = 100
    sync_bn: bool = True  # SyncBatchNorm when a run has several processes on CUDA GPUs
    world_size: int = 1  # recorded, not chosen: train() sets it to the number of processes torchrun started

    def __post_init__(self) -> None:
        self.crop_size, self.scale_range = _as_tuple(self.crop_size), _as_tuple(self.scale_range)
        self.copy_paste = _as_tuple(self.copy_paste)
        for name in PATHS:
            if isinstance(getattr(self, name), os.PathLike):
                setattr(self, name, os.fspath(getattr(self, name)))
        for name in REAL_NUMBERS:
            if isinstance(getattr(self, name), float) and getattr(self, name) == 0:
                setattr(self, name, 0.0)  # not -0.0, which config.json would keep
        self._fill_in_the_recipe()
        self.validate()

    def _fill_in_the_recipe(self) -> None:
        """Optimiser and loss not given: the model's; learning rate not given: the optimiser's."""
        spec = MODELS[self.model if self.model in tuple(MODELS) else DEFAULT_MODEL]  # validate names a wrong one
        if self.optimizer is None:
            self.optimizer = spec.optimizer
        if self.loss is None:
            self.loss = spec.loss
        if self.lr is None:
            self.lr = LEARNING_RATES[self.optimizer if self.optimizer in OPTIMIZERS else spec.optimizer]

    def validate(self) -> None:
        """Raise SettingsError on values no run could use, naming each setting and its value."""
        problems = [
            f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}"
            for name, allowed in CHOICES.items()
            if getattr(self, name) not in allowed
        ]
        problems += [
            f"{name} must be {kind}, got {getattr(self, name)!r}"
            for names, types, kind in ((WHOLE_NUMBERS, int, "a whole number"), (REAL_NUMBERS, (int, float), "a number"))
            for name in names
            if isinstance(getattr(self, name), bool) or not isinstance(getattr(self, name), types)
        ]
        if problems:  # the range checks below assume the right types
            raise SettingsError("; ".join(problems))
        if self.encoder is not None:
            try:
                resolve_encoder(self.model, self.encoder)
            except ModelError as error:
                problems.append(str(error))
        problems += self._batch_problems()
        problems += [problem for name in BOUNDS if (problem := _out_of_bounds(name, getattr(self, name)))]
        if len(self.crop_size) != 2 or not all(
            isinstance(side, int) and 1 <= side <= MAX_CROP_SIDE for side in self.crop_size
        ):
            problems.append(f"crop size must be two whole numbers in 1..{MAX_CROP_SIDE}, got {self.crop_size}")
        finite_pair = len(self.scale_range) == 2 and all(
            isinstance(v, (int, float)) and math.isfinite(v) for v in self.scale_range
        )
        if not (finite_pair and 0 < self.scale_range[0] <= self.scale_range[1] <= MAX_SCALE):
            problems.append(
                f"scale range must be two numbers with 0 < low <= high <= {MAX_SCALE}, got {self.scale_range}"
            )
        problems += [
            f"{name} must be text, got {getattr(self, name)!r}"
            for name in TEXTS
            if not isinstance(getattr(self, name), str)
        ]
        problems += [
            f"{name} must be text or None, got {getattr(self, name)!r}"
            for name in ("root", "init_from")
            if getattr(self, name) is not None and not isinstance(getattr(self, name), str)
        ]
        problems += [
            f"{name} must not hold a NUL character, got {getattr(self, name)!r}"
            for name in PATHS
            if isinstance(getattr(self, name), str) and "\x00" in getattr(self, name)
        ]  # no file name can, and pathlib would raise a bare ValueError
        if isinstance(self.init_from, str) and not self.init_from.strip():
            problems.append(f"init_from must be a checkpoint's path or None, got {self.init_from!r}")
        problems += self._copy_paste_problems()
        problems += [
            f"{name} {self.to_dict()[name]!r} needs decode_on='workers': it runs where the CPU cuts the crop, and "
            f"decode_on='device' cuts it on the device; give {name}={empty!r} or decode_on='workers'"
            for name, empty in (("color_jitter", 0), ("copy_paste", []))
            if getattr(self, name) and self.decode_on == "device"
        ]
        if self.init_from is not None and self.encoder_weights != "none":
            problems.append(
                f"encoder weights must be none when the run starts from a checkpoint, whose weights replace them, "
                f"got {self.encoder_weights!r}"
            )
        problems += [
            f"{name} must be true or false, got {getattr(self, name)!r}"
            for name in ("download", "deterministic", "sync_bn")
            if not isinstance(getattr(self, name), bool)
        ]
        if problems:
            raise SettingsError("; ".join(problems))

    def _copy_paste_problems(self) -> list[str]:
        """Why copy_paste is not a list of texts naming classes (the data then checks the names: class_paste)."""
        if not all(isinstance(entry, str) and entry.strip() for entry in self.copy_paste):
            return [f"copy_paste must be class names, got {list(self.copy_paste)!r}"]
        return []

    def _batch_problems(self) -> list[str]:
        """Why the global batch cannot be split over the run's processes, or is too small for the model."""
        if self.world_size < 1 or self.batch_size < 1:
            return []  # the bounds check names these
        if self.batch_size % self.world_size:
            return [
                f"batch size {self.batch_size} does not split evenly over {self.world_size} processes (it is the "
                f"global batch): give a multiple of {self.world_size}, or run in a number of processes that divides "
                f"{self.batch_size}"
            ]
        min_batch, per_process = model_spec(self.model).min_batch, self.batch_size // self.world_size
        if per_process >= min_batch:
            return []
        share = f" in each process, got a batch size of {self.batch_size} ({per_process} per process)"
        return [
            f"{self.model} trains on at least {min_batch} images per step (BatchNorm on a pooled 1x1 map)"
            + (share if self.world_size > 1 else f", got a batch size of {self.batch_size}")
        ]

    def to_dict(self) -> dict:
        """Plain JSON-able dict (tuples become lists)."""
        return {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """Inverse of `to_dict`; unknown keys (other versions) are dropped, missing ones mean what they did then."""
        known = {field.name for field in fields(cls)}
        renamed = {RENAMED.get(key, key): value for key, value in values.items()}
        unset = [name for name in FILLED_IN if name in renamed and renamed[name] is None]
        if unset:  # a saved config holds the values its run used
            raise TrainingError(f"{unset[0]} must be set in a saved config, got None")
        return cls(**{**BEFORE_THE_SETTING, **{key: value for key, value in renamed.items() if key in known}})

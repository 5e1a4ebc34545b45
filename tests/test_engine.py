import json
import math

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader
from torchvision.transforms import v2

from pixelwise.config import LEARNING_RATES, TrainConfig
from pixelwise.data.folder import FolderSegmentation
from pixelwise.data.loading import train_loader, training_samples
from pixelwise.data.transforms import train_transforms
from pixelwise.data.voc import VOCSegmentation
from pixelwise.engine import evaluate, train_one_epoch
from pixelwise.losses import build_criterion, cross_entropy as segmentation_loss
from pixelwise.errors import TrainingError
from pixelwise.models import MODELS, build_model
from pixelwise.schedule import build_optimizer, build_scheduler, lr_factor


def test_loss_ignores_255_and_is_zero_not_nan_when_all_ignored():
    logits = torch.randn(1, 3, 2, 2)
    target = torch.tensor([[[0, 255], [2, 255]]])
    expected = torch.nn.functional.cross_entropy(logits[..., [0, 1], [0, 0]], target[..., [0, 1], [0, 0]])
    assert torch.allclose(segmentation_loss(logits, target), expected)
    assert segmentation_loss(logits, torch.full((1, 2, 2), 255)).item() == 0.0


@pytest.mark.parametrize("schedule", ["poly", "cosine", "constant"])
def test_schedules_warm_up_then_decay(schedule):
    factors = [lr_factor(step, 100, 10, schedule) for step in range(101)]
    assert factors[0] == pytest.approx(0.1) and factors[10] == pytest.approx(1.0)
    assert all(a <= b for a, b in zip(factors[:10], factors[1:11]))
    assert factors[100] == pytest.approx(1.0 if schedule == "constant" else 0.0)


def test_scheduler_steps_per_iteration():
    model = torch.nn.Linear(2, 2)
    config = TrainConfig(lr=0.1, epochs=2, warmup_epochs=0, schedule="poly")
    optimizer = build_optimizer(config, model)
    scheduler = build_scheduler(optimizer, config, steps_per_epoch=5)
    for _ in range(5):
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5**0.9)


def test_a_config_saved_before_class_weighting_existed_resumes_unweighted():
    saved = TrainConfig(class_weighting="none").to_dict()
    del saved["class_weighting"]
    assert TrainConfig.from_dict(saved).class_weighting == "none"
    del saved["color_jitter"]
    assert TrainConfig.from_dict(saved).color_jitter == 0, "no run saved before the setting jittered its colours"
    assert TrainConfig.from_dict(TrainConfig().to_dict()) == TrainConfig(), "a current config round-trips"


def test_a_recipe_not_given_is_the_models_and_a_rate_not_given_the_optimisers():
    assert (TrainConfig().optimizer, TrainConfig().lr, TrainConfig().loss) == ("sgd", 0.02, "ce")
    for name, spec in MODELS.items():
        config = TrainConfig(model=name)
        assert (config.optimizer, config.lr, config.loss) == (spec.optimizer, LEARNING_RATES[spec.optimizer], spec.loss)
    assert (TrainConfig(model="unet").optimizer, TrainConfig(model="unet").lr) == ("adamw", 1e-3)
    given = TrainConfig(model="unet", optimizer="sgd", loss="focal")
    assert (given.optimizer, given.lr, given.loss) == ("sgd", 0.02, "focal"), "the rate follows the optimiser given"
    assert TrainConfig(model="segformer", lr=0.005).lr == 0.005
    saved = TrainConfig(model="fpn", optimizer="sgd", lr=0.05, loss="ce").to_dict()
    assert (TrainConfig.from_dict(saved).optimizer, TrainConfig.from_dict(saved).loss) == ("sgd", "ce")
    del saved["optimizer"]
    assert TrainConfig.from_dict(saved).optimizer == "sgd", "every run saved without one trained with SGD"
    with pytest.raises(TrainingError, match="lr must be set in a saved config, got None"):
        TrainConfig.from_dict({**saved, "lr": None})


def test_config_rejects_impossible_values():
    with pytest.raises(TrainingError, match="optimizer must be one of sgd, adamw"):
        TrainConfig(optimizer="rmsprop")
    with pytest.raises(TrainingError, match="scale range"):
        TrainConfig(scale_range=(2.0, 1.0))
    with pytest.raises(TrainingError, match="precision must be one of fp32, bf16, auto"):
        TrainConfig(precision="fp16")
    with pytest.raises(TrainingError, match="decode_on must be one of workers, device"):
        TrainConfig(decode_on="gpu")


@pytest.mark.parametrize(
    "values, message",
    [
        ({"lr": float("nan")}, "lr must be above 0 and at most 10, got nan"),
        ({"lr": 0.0}, "lr must be above 0 and at most 10, got 0.0"),
        ({"lr": 1e308}, "lr must be above 0 and at most 10, got 1e\\+308"),
        ({"momentum": 2.0}, "momentum must be at least 0 and below 1, got 2.0"),
        ({"batch_size": 10**20}, "batch_size must be at least 1 and at most 65536, got 100000000000000000000"),
        ({"data": 5}, "data must be text, got 5"),
        ({"weight_decay": -1e-4}, "weight_decay must be at least 0 and at most 1, got -0.0001"),
        ({"warmup_epochs": float("inf")}, "warmup_epochs must be at least 0 and at most 10000, got inf"),
        ({"workers": -1}, "workers must be at least 0 and at most 256, got -1"),
        ({"epochs": 2.5}, "epochs must be a whole number, got 2.5"),
        ({"batch_size": "8"}, "batch_size must be a whole number, got '8'"),
        ({"crop_size": (128.0, 96)}, r"crop size must be two whole numbers in 1..65536, got \(128.0, 96\)"),
        ({"scale_range": (0.5,)}, r"scale range must be two numbers with 0 < low <= high <= 16.0, got \(0.5,\)"),
        (
            {"scale_range": (1, 1e300)},
            r"scale range must be two numbers with 0 < low <= high <= 16.0, got \(1, 1e\+300\)",
        ),
        (
            {"model": "unet++"},
            r"model must be one of fcn32s, fcn8s, unet, fpn, deeplabv3plus, segformer, lraspp, got 'unet\+\+'",
        ),
        (
            {"model": "fcn8s", "encoder": "mit_b0"},
            "model fcn8s has no encoder 'mit_b0'; choose one of resnet18, resnet34, resnet50",
        ),
        (
            {"model": "deeplabv3plus", "batch_size": 1},
            r"deeplabv3plus trains on at least 2 images per step \(BatchNorm on a pooled 1x1 map\), got a batch "
            "size of 1",
        ),
        ({"loss": "bce"}, r"loss must be one of ce, dice, focal, lovasz, ce\+dice, ohem, ohem\+dice, got 'bce'"),
        ({"lr": "0.1"}, "lr must be a number, got '0.1'"),
        ({"crop_size": 128}, r"crop size must be two whole numbers in 1..65536, got \(128,\)"),
        ({"color_jitter": 1.5}, "color_jitter must be at least 0 and at most 1, got 1.5"),
        ({"color_jitter": -0.1}, "color_jitter must be at least 0 and at most 1, got -0.1"),
        ({"color_jitter": "0.4"}, "color_jitter must be a number, got '0.4'"),
        (
            {"color_jitter": 0.4, "decode_on": "device"},
            "color_jitter 0.4 needs decode_on='workers': it runs where the CPU cuts the crop, and "
            "decode_on='device' cuts it on the device; give color_jitter=0 or decode_on='workers'",
        ),
        (
            {"copy_paste": ["pole"], "decode_on": "device"},
            r"copy_paste \['pole'\] needs decode_on='workers': it runs where the CPU cuts the crop, and "
            r"decode_on='device' cuts it on the device; give copy_paste=\[\] or decode_on='workers'",
        ),
        ({"copy_paste": ["pole", ""]}, r"copy_paste must be class names, got \['pole', ''\]"),
        ({"copy_paste": [3]}, r"copy_paste must be class names, got \[3\]"),
        ({"ema_decay": 1.0}, "ema_decay must be at least 0 and below 1, got 1.0"),
        ({"ema_decay": -0.5}, "ema_decay must be at least 0 and below 1, got -0.5"),
        ({"ema_decay": float("nan")}, "ema_decay must be at least 0 and below 1, got nan"),
        ({"ema_decay": "0.99"}, "ema_decay must be a number, got '0.99'"),
    ],
)
def test_config_names_the_setting_and_the_value_it_refuses(values, message):
    with pytest.raises(TrainingError, match=f"^{message}$"):
        TrainConfig(**values)


def test_config_takes_paths_as_their_text(tmp_path):
    config = TrainConfig(data=tmp_path / "data", root=tmp_path, out=tmp_path / "run", init_from=tmp_path / "a.pt")
    assert (config.data, config.root, config.out, config.init_from) == (
        f"{tmp_path}/data", str(tmp_path), f"{tmp_path}/run", f"{tmp_path}/a.pt"
    )
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_config_keeps_a_negative_zero_as_zero():
    config = TrainConfig(ema_decay=-0.0, color_jitter=-0.0, weight_decay=-0.0)
    assert '"ema_decay": 0.0' in json.dumps(config.to_dict())
    assert all(math.copysign(1, getattr(config, name)) == 1 for name in ("ema_decay", "color_jitter", "weight_decay"))


class _BytesPath:
    """A path object whose file-system form is bytes."""

    def __fspath__(self) -> bytes:
        return b"/data"


def test_config_refuses_a_path_that_is_not_text():
    with pytest.raises(TrainingError, match="data must be text, got b'/data'"):
        TrainConfig(data=_BytesPath())


@pytest.mark.parametrize("precision, forward_dtype", [("fp32", torch.float32), ("bf16", torch.bfloat16)])
def test_precision_sets_the_forward_dtype_and_keeps_float32_weights(precision, forward_dtype):
    torch.manual_seed(0)
    model = build_model("fcn32s", num_classes=3)
    seen = []
    model.stem[0].register_forward_hook(lambda module, inputs, output: seen.append(output.dtype))
    before = model.score32.weight.detach().clone()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    batch = (torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8), torch.randint(0, 3, (2, 32, 32)))
    progress = train_one_epoch(
        model, build_criterion("ce"), [batch], optimizer, None, torch.device("cpu"), precision=precision
    )
    assert seen == [forward_dtype]
    assert model.score32.weight.dtype == torch.float32 and not torch.equal(model.score32.weight, before)
    assert progress.steps == 1 and progress.loss > 0


def test_non_finite_loss_stops_with_the_step():
    model = build_model("fcn32s", num_classes=2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    good = (torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8), torch.zeros(2, 32, 32, dtype=torch.long))
    bad = (torch.full((2, 3, 32, 32), float("nan")), torch.zeros(2, 32, 32, dtype=torch.long))
    with pytest.raises(TrainingError, match="loss became nan at step 2"):
        train_one_epoch(model, build_criterion("ce"), [good, bad], optimizer, None, torch.device("cpu"))
    with pytest.raises(TrainingError, match="loss became nan at step 1"):
        train_one_epoch(model, build_criterion("ce"), [bad], optimizer, None, torch.device("cpu"))
    assert all(torch.isfinite(parameter).all() for parameter in model.parameters()), "checked before the optimiser step"
    assert len(optimizer.state) > 0 and all(
        torch.isfinite(state["momentum_buffer"]).all() for state in optimizer.state.values()
    )


def test_short_training_on_camvid_beats_the_majority_class(camvid_root):
    """Two epochs at 160x120 on real street photos: pixel accuracy above always guessing one class."""
    torch.manual_seed(0)
    size = [120, 160]
    shrink = v2.Resize(size, antialias=True)  # masks are resized with nearest neighbour
    train_set = FolderSegmentation(
        camvid_root, "train", v2.Compose([shrink, train_transforms((96, 128), scale_range=(0.8, 1.25))])
    )
    val_set = FolderSegmentation(camvid_root, "val", shrink)
    model = build_model("fcn32s", num_classes=11).to(memory_format=torch.channels_last)
    config = TrainConfig(epochs=2, lr=0.02, warmup_epochs=0.2)
    loader = DataLoader(train_set, batch_size=8, shuffle=True, drop_last=True, num_workers=2)
    optimizer = build_optimizer(config, model)
    scheduler = build_scheduler(optimizer, config, len(loader))
    for _ in range(config.epochs):
        train_one_epoch(model, build_criterion("ce"), loader, optimizer, scheduler, torch.device("cpu"))
    metrics = evaluate(model, DataLoader(val_set, batch_size=4, num_workers=2), 11, torch.device("cpu"))
    counts = torch.zeros(11)
    for _, mask in DataLoader(val_set, batch_size=8):
        counts += torch.bincount(mask[mask != 255], minlength=11)[:11]
    majority = float(counts.max() / counts.sum())
    assert metrics.pixel_accuracy > majority + 0.05, (metrics.pixel_accuracy, majority)


def test_class_weighted_loss_is_a_weighted_mean_over_labelled_pixels():
    logits = torch.randn(1, 3, 2, 3)
    target = torch.tensor([[[0, 1, 2], [2, 255, 0]]])
    weights = torch.tensor([1.0, 2.0, 0.5])
    per_pixel = torch.nn.functional.cross_entropy(logits, target, ignore_index=255, reduction="none")
    valid = target != 255
    expected = (per_pixel[valid] * weights[target[valid]]).sum() / weights[target[valid]].sum()
    assert torch.allclose(segmentation_loss(logits, target, weights), expected)
    assert torch.allclose(
        segmentation_loss(logits, target, weights),
        torch.nn.functional.cross_entropy(logits, target, weight=weights, ignore_index=255),
    )


def test_median_frequency_weights_lift_rare_classes_and_data_check_counts_their_pixels(synthetic_voc):
    from pixelwise.data.check import check_dataset
    from pixelwise.data.statistics import median_frequency_weights
    from pixelwise.data.voc import VOCSegmentation

    dataset = VOCSegmentation(synthetic_voc, "train")
    masks = [dataset.load(index)[1].numpy() for index in range(len(dataset))]
    per_image = np.stack([np.bincount(mask[mask != 255], minlength=4) for mask in masks])  # (images, classes)
    pixels = per_image.sum(axis=0)
    where_present = (per_image.sum(axis=1, keepdims=True) * (per_image > 0)).sum(axis=0)
    report = check_dataset(synthetic_voc, splits=["train"]).split("train")
    assert report.class_pixels == pixels.tolist() and report.pixels_where_present == where_present.tolist()
    assert (pixels <= where_present).all() and pixels[0] == pixels.max(), "background is the most frequent class"
    weights = median_frequency_weights(pixels, where_present)
    frequency = pixels / where_present
    assert torch.allclose(
        weights, torch.tensor(float(sorted(frequency)[1] + sorted(frequency)[2]) / 2 / frequency, dtype=torch.float32)
    )
    assert weights[0] == weights.min()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: checks that nothing waits for queued GPU work")
@pytest.mark.parametrize("decode_on", ["workers", "device"])
def test_training_steps_never_wait_for_all_queued_gpu_work(synthetic_voc, decode_on):
    """Batch preparation, the weighted loss, its check and the optimiser step queue work without a stream sync."""
    cuda = torch.device("cuda")
    dataset = VOCSegmentation(synthetic_voc, "train", train_transforms((64, 96)))
    loader = train_loader(training_samples(dataset, 0, decode_on=decode_on), batch_size=4, pin_memory=True)
    batches = [batch for batch, _ in zip(loader, range(3))]
    model = build_model("fcn32s", num_classes=len(dataset.class_names)).to(cuda).to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    weights = torch.rand(len(dataset.class_names), device=cuda)
    train_one_epoch(model, build_criterion("ce", weights), batches[:1], optimizer, None, cuda)  # set-up may sync
    torch.cuda.set_sync_debug_mode("error")  # an implicit stream or device synchronisation raises
    try:
        progress = train_one_epoch(model, build_criterion("ce", weights), batches[1:], optimizer, None, cuda)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert progress.steps == 2 and progress.images == 8 and progress.loss > 0


@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_is_bf16_exactly_where_the_device_has_bfloat16_units(monkeypatch, native):
    from pixelwise import engine

    monkeypatch.setattr(engine, "bf16_is_native", lambda device: native)
    with engine.autocast(torch.device("cpu"), "auto"):
        result = torch.nn.Linear(4, 4)(torch.randn(2, 4))
    assert result.dtype == (torch.bfloat16 if native else torch.float32)


def test_the_cpu_flags_decide_whether_bf16_is_native(monkeypatch, tmp_path):
    from pixelwise import device

    for flags, expected in (("fpu avx512f avx512_bf16 sse", True), ("fpu amx_bf16", True), ("fpu avx512f", False)):
        cpuinfo = tmp_path / "cpuinfo"
        cpuinfo.write_text(f"processor : 0\nflags : {flags}\n")
        monkeypatch.setattr(device, "Path", lambda _: cpuinfo)
        device._cpu_has_bf16_units.cache_clear()
        assert device.bf16_is_native(torch.device("cpu")) is expected
    device._cpu_has_bf16_units.cache_clear()


def test_bf16_is_warned_of_exactly_where_it_would_be_emulated(monkeypatch):
    from pixelwise import device

    cpu = torch.device("cpu")
    for native in (True, False):
        monkeypatch.setattr(device, "_cpu_has_bf16_units", lambda: native)
        for precision in ("fp32", "auto", "bf16"):
            warning = device.emulated_bf16_warning(cpu, precision)
            assert (warning is not None) == (precision == "bf16" and not native), (native, precision)
    assert "this CPU has no bfloat16 units (AVX-512 BF16 or AMX)" in device.emulated_bf16_warning(cpu, "bf16")
    monkeypatch.setattr(device, "bf16_is_native", lambda _: False)  # a GPU below compute capability 8.0
    gpu = device.emulated_bf16_warning(torch.device("cuda"), "bf16")
    assert gpu.startswith("this GPU has no bfloat16 units (compute capability 8.0 or later)"), gpu

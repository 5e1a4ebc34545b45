import numpy as np
import pytest
import torch
from PIL import Image

from pixelwise.data.class_paste import ClassPaste
from pixelwise.data.device_crops import OUTSIDE, DeviceCrops, PlannedPhotos, decode_jpegs
from pixelwise.data.folder import FolderSegmentation
from pixelwise.data.io import read_bytes, read_photo_header
from pixelwise.data.loading import SeededSamples, train_loader
from pixelwise.data.transforms import IMAGENET_MEAN, IMAGENET_STD, train_transforms
from pixelwise.data.voc import VOCSegmentation
from pixelwise.engine import prepare_batch
from pixelwise.errors import DatasetError

CPU = torch.device("cpu")
NORMALIZATION = (IMAGENET_MEAN, IMAGENET_STD)


def first_batches(dataset, crop_size, scale_range, *, batch_size=6):
    """The first training batch made in the workers and on the device, from the same seed, prepared."""
    transforms = train_transforms(crop_size, scale_range=scale_range)
    dataset.transforms = transforms
    in_workers = SeededSamples(dataset, seed=5)
    on_device = SeededSamples(DeviceCrops(dataset, transforms), seed=5)
    return [
        prepare_batch(*next(iter(train_loader(samples, batch_size=batch_size)))[:2], CPU, NORMALIZATION)
        for samples in (in_workers, on_device)
    ]


def test_device_crops_are_the_worker_crops_when_photos_are_enlarged(synthetic_voc):
    # Photos of 40 to 90 pixels into 64x96 crops: padded and unpadded samples, mixed sizes in a batch.
    (images, masks, _), (device_images, device_masks, dropped) = first_batches(
        VOCSegmentation(synthetic_voc), (64, 96), (1.0, 1.5)
    )
    assert dropped == [] and device_images.shape == images.shape == (6, 3, 64, 96)
    assert torch.equal(device_masks, masks)
    levels = (device_images - images).abs() * torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255
    assert levels.max() <= 1.01  # the same pixels, rounded differently (uint8 in the workers)
    padding = device_images.abs().amax(dim=1) == 0
    assert padding.any() and (masks[padding] == 255).all()  # the mean colour where the photo does not reach
    assert device_images.is_contiguous(memory_format=torch.channels_last)


def test_shrunk_device_crops_keep_the_masks_and_differ_only_by_antialiasing(synthetic_voc):
    (images, masks, _), (device_images, device_masks, _) = first_batches(
        VOCSegmentation(synthetic_voc), (48, 48), (0.6, 0.9)
    )
    assert torch.equal(device_masks, masks)
    levels = (device_images - images).abs() * torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255
    assert 0 < levels.mean() < 4


def test_flipped_crops_sample_columns_right_to_left(synthetic_voc):
    crops = DeviceCrops(VOCSegmentation(synthetic_voc), train_transforms((32, 32), scale_range=(1.0, 1.0)))
    samples = [SeededSamples(crops, seed=seed)[(1, 0)] for seed in range(12)]

    def steps(coordinates):
        inside = coordinates[coordinates != OUTSIDE]
        return inside[1:] - inside[:-1]

    flipped = sum(bool((steps(sample.cols) < 0).all()) for sample in samples)
    unflipped = sum(bool((steps(sample.cols) > 0).all()) for sample in samples)
    assert flipped > 0 and unflipped > 0 and flipped + unflipped == len(samples)
    assert all((steps(sample.rows) > 0).all() for sample in samples)  # rows never flip


def make_photo_tree(root):
    """A folder dataset with a plain JPEG, a PNG photo and a JPEG that EXIF says to rotate."""
    (root / "images" / "train").mkdir(parents=True)
    (root / "labels" / "train").mkdir(parents=True)
    (root / "classes.csv").write_text("index,name,r,g,b,ignore\n0,left,10,10,10,0\n1,right,200,0,0,0\n")
    photo = np.zeros((20, 30, 3), dtype=np.uint8)
    photo[:, 15:] = (250, 120, 10)
    Image.fromarray(photo).save(root / "images" / "train" / "a_plain.jpg", quality=95)
    Image.fromarray(photo).save(root / "images" / "train" / "b_photo.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: upright is the stored photo turned 90 degrees clockwise
    Image.fromarray(np.ascontiguousarray(np.rot90(photo))).save(
        root / "images" / "train" / "c_rotated.jpg", quality=95, exif=exif
    )
    label = np.zeros((20, 30), dtype=np.uint8)
    label[:, 15:] = 1
    for stem in ("a_plain", "b_photo", "c_rotated"):
        Image.fromarray(label).save(root / "labels" / "train" / f"{stem}.png")
    return root


def test_only_plain_jpegs_are_left_for_the_device_to_decode(tmp_path):
    dataset = FolderSegmentation(make_photo_tree(tmp_path))
    photos = [dataset.load_for_device(index) for index in range(3)]
    assert [photo.dim() for photo, _, _ in photos] == [1, 3, 3]  # bytes, then pixels decoded in the worker
    for index, (photo, size, mask) in enumerate(photos):
        image, expected_mask = dataset.load(index)
        assert size == (20, 30) and torch.equal(mask, expected_mask)
        if photo.dim() == 3:
            assert torch.equal(photo, image.as_subclass(torch.Tensor))


def test_photo_headers_come_from_the_bytes_already_read(tmp_path):
    root = make_photo_tree(tmp_path)
    headers = {}
    for path in sorted((root / "images" / "train").iterdir()):
        data = read_bytes(path)
        assert torch.equal(data, torch.tensor(list(path.read_bytes()), dtype=torch.uint8))
        path.unlink()  # the header is parsed from `data`, not read again
        headers[path.stem] = read_photo_header(path, data)
    assert [(h.width, h.height, h.plain_jpeg) for h in headers.values()] == [
        (30, 20, True),
        (30, 20, False),
        (20, 30, False),
    ]
    with pytest.raises(DatasetError, match=r"notes\.jpg: cannot decode image"):
        read_photo_header(tmp_path / "notes.jpg", torch.tensor(list(b"not a photo"), dtype=torch.uint8))
    with pytest.raises(DatasetError, match=r"gone\.jpg: file not found"):
        read_bytes(tmp_path / "gone.jpg")


def test_device_crops_of_every_photo_kind_line_up_with_their_masks(tmp_path):
    dataset = FolderSegmentation(make_photo_tree(tmp_path))
    _, (images, masks, _) = first_batches(dataset, (20, 30), (1.0, 1.0), batch_size=3)
    red = images[:, 0] > 0  # the orange right half, after normalisation
    assert torch.equal(red, masks == 1)


def corrupt_after_header(path):
    """Cut a JPEG off early in its scan data: the header still reads, the pixels do not."""
    data = path.read_bytes()
    path.write_bytes(data[: data.index(b"\xff\xda") + 30])


def test_a_photo_the_device_cannot_decode_is_named_or_skipped(tmp_path):
    dataset = FolderSegmentation(make_photo_tree(tmp_path))
    corrupt_after_header(tmp_path / "images" / "train" / "a_plain.jpg")
    crops = SeededSamples(DeviceCrops(dataset, train_transforms((20, 30))), seed=0)
    batch = PlannedPhotos.collate([crops[(1, index)] for index in range(3)])
    masks = torch.zeros(3, 20, 30, dtype=torch.uint8)
    with pytest.raises(DatasetError, match=r"a_plain\.jpg: cannot decode image"):
        batch.render(masks, CPU, NORMALIZATION)
    batch.skip_bad = True
    images, kept_masks, dropped = batch.render(masks, CPU, NORMALIZATION)
    assert images.shape[0] == kept_masks.shape[0] == 2
    assert len(dropped) == 1 and "a_plain.jpg: cannot decode image" in dropped[0]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: nvJPEG decodes on the GPU only")
def test_decoding_on_cuda_leaves_memory_that_queued_kernels_read_alone(synthetic_voc):
    device = torch.device("cuda")
    photos = [read_bytes(path) for path, _ in VOCSegmentation(synthetic_voc).samples[:8]]
    for _ in range(10):
        blocks = [torch.full((4096,), float(number), device=device) for number in range(64)]
        torch.cuda.synchronize()
        torch.cuda._sleep(20_000_000)  # keep the training stream busy while the blocks are freed
        sums = [block.sum() for block in blocks]
        del blocks  # free on the training stream, still to be read by the queued sums
        decode_jpegs(photos, device)
        assert [total.item() for total in sums] == [4096.0 * number for number in range(64)]


def test_device_crops_refuse_a_colour_jittered_crop(synthetic_voc):
    with pytest.raises(ValueError, match="crops made on the device cannot be colour-jittered"):
        DeviceCrops(VOCSegmentation(synthetic_voc), train_transforms((32, 32), color_jitter=0.2))


def test_device_crops_refuse_a_dataset_that_pastes_classes(synthetic_voc):
    dataset = VOCSegmentation(synthetic_voc)
    dataset.paste = ClassPaste((1,))
    with pytest.raises(ValueError, match="photos decoded on the device cannot take pasted classes"):
        DeviceCrops(dataset, train_transforms((32, 32)))

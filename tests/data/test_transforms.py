import pytest
import torch
from torchvision import tv_tensors

from pixelwise.data.transforms import IMAGENET_MEAN, IMAGENET_STD, RandomScale, normalize_batch, train_transforms


def pair(height, width):
    """An image whose pixel values encode their column, and a mask equal to column % 5."""
    columns = torch.arange(width).expand(height, width)
    image = tv_tensors.Image((columns % 256).to(torch.uint8).expand(3, height, width).clone())
    return image, tv_tensors.Mask((columns % 5).to(torch.uint8))


def test_training_crop_keeps_image_and_mask_aligned():
    torch.manual_seed(0)
    transform = train_transforms((32, 48), scale_range=(1.0, 1.0))
    flipped = 0
    for _ in range(10):
        image, mask = transform(*pair(60, 90))
        assert image.shape == (3, 32, 48) and mask.shape == (32, 48)
        assert image.dtype == torch.uint8 and mask.dtype == torch.uint8, "workers hand over compact batches"
        assert torch.equal(image[0].long() % 5, mask.long()), "flip and crop moved image and mask together"
        flipped += int(image[0, 0, 0] > image[0, 0, -1])
    assert 0 < flipped < 10, "horizontal flips happen, not always"


def test_small_images_are_padded_not_dropped():
    torch.manual_seed(1)
    image, mask = train_transforms((64, 64), scale_range=(1.0, 1.0), hflip=False)(*pair(20, 30))
    assert image.shape == (3, 64, 64)
    padded = mask == 255
    assert padded.sum() == 64 * 64 - 20 * 30
    normalized = normalize_batch(image.unsqueeze(0))[0]
    assert normalized[:, padded].abs().max() < 0.02, "padding is the mean colour: ~0 after normalisation"


def test_random_scale_resizes_masks_with_nearest_neighbour():
    torch.manual_seed(2)
    image, mask = RandomScale((0.5, 2.0))(*pair(40, 50))
    assert image.shape[1:] == mask.shape and mask.shape != (40, 50)
    assert set(mask.unique().tolist()) <= set(range(5)), "no interpolated label values"
    with pytest.raises(ValueError):
        RandomScale((2.0, 1.0))


def test_normalize_batch_standardises_per_channel():
    images = torch.randint(0, 256, (2, 3, 5, 7), dtype=torch.uint8)
    expected = (images.float() / 255 - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    assert torch.allclose(normalize_batch(images), expected, atol=1e-6)

import pytest
import torch
from torchvision import tv_tensors

from pixelwise.data.transforms import IMAGENET_MEAN, IMAGENET_STD, RandomScale, eval_transforms, train_transforms


def pair(height, width):
    """An image whose pixel values encode their column, and a mask equal to column % 5."""
    columns = torch.arange(width).expand(height, width)
    image = tv_tensors.Image((columns % 256).to(torch.uint8).expand(3, height, width).clone())
    return image, tv_tensors.Mask(columns % 5)


def test_training_crop_keeps_image_and_mask_aligned():
    torch.manual_seed(0)
    transform = train_transforms((32, 48), scale_range=(1.0, 1.0))
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    for _ in range(10):
        image, mask = transform(*pair(60, 90))
        assert image.shape == (3, 32, 48) and mask.shape == (32, 48)
        assert image.dtype == torch.float32 and mask.dtype == torch.int64
        column = torch.round((image * std + mean)[0] * 255).long()
        assert torch.equal(column % 5, mask), "flip and crop moved image and mask together"


def test_small_images_are_padded_not_dropped():
    torch.manual_seed(1)
    image, mask = train_transforms((64, 64), scale_range=(1.0, 1.0), hflip=False)(*pair(20, 30))
    assert image.shape == (3, 64, 64)
    padded = mask == 255
    assert padded.sum() == 64 * 64 - 20 * 30
    assert image[:, padded].abs().max() < 0.02, "padding is the mean colour: ~0 after normalisation"


def test_random_scale_resizes_masks_with_nearest_neighbour():
    torch.manual_seed(2)
    image, mask = RandomScale((0.5, 2.0))(*pair(40, 50))
    assert image.shape[1:] == mask.shape and mask.shape != (40, 50)
    assert set(mask.unique().tolist()) <= set(range(5)), "no interpolated label values"
    with pytest.raises(ValueError):
        RandomScale((2.0, 1.0))


def test_eval_transform_only_normalises():
    image, mask = pair(37, 53)
    out_image, out_mask = eval_transforms()(image, mask)
    assert out_image.shape == (3, 37, 53) and torch.equal(out_mask, mask)
    expected = (image.float() / 255 - torch.tensor(IMAGENET_MEAN).view(3, 1, 1)) / torch.tensor(IMAGENET_STD).view(3, 1, 1)
    assert torch.allclose(out_image, expected, atol=1e-6)

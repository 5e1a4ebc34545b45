import pytest
import torch
from torchvision import tv_tensors

from pixelwise.data.transforms import IMAGENET_MEAN, IMAGENET_STD, RandomScaleCrop, normalize_batch, train_transforms


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


def test_color_jitter_changes_the_photo_alone_and_only_where_it_is():
    photo = tv_tensors.Image(torch.randint(30, 220, (3, 20, 30), dtype=torch.uint8))
    mask = tv_tensors.Mask(torch.randint(0, 5, (20, 30), dtype=torch.uint8))
    plain = RandomScaleCrop((64, 64), (1.0, 1.0), hflip=False)
    jittered = RandomScaleCrop((64, 64), (1.0, 1.0), hflip=False, color_jitter=0.4)
    assert (jittered.jitter.brightness, jittered.jitter.contrast, jittered.jitter.saturation) == ((0.6, 1.4),) * 3
    assert jittered.jitter.hue is None, "no hue shift, as timm's --color-jitter"
    brightness_ratios = set()
    for seed in range(5):
        torch.manual_seed(seed)
        image, cut = plain(photo, mask)
        torch.manual_seed(seed)
        changed, same_cut = jittered(photo, mask)
        assert torch.equal(cut, same_cut), "the crop's draws come first: the jittered crop is the same crop"
        padded = cut == 255
        assert torch.equal(changed[:, padded], image[:, padded]), "the padding stays the mean colour"
        torch.manual_seed(seed)
        assert torch.equal(jittered(photo, mask)[0], changed), "the jitter is drawn from the seeded generator"
        inside = ~padded
        ratio = changed[:, inside].float().mean() / image[:, inside].float().mean()
        brightness_ratios.add(round(ratio.item(), 3))
    assert len(brightness_ratios) == 5 and brightness_ratios != {1.0}, "each crop draws its own factors"
    with pytest.raises(ValueError, match="color jitter must be 0 to 1, got 1.5"):
        RandomScaleCrop((64, 64), color_jitter=1.5)


def test_color_jitter_is_the_same_whatever_the_number_of_threads():
    photo = tv_tensors.Image(torch.randint(120, 256, (3, 360, 480), dtype=torch.uint8))  # sums past float32's 2**24
    mask = tv_tensors.Mask(torch.zeros(360, 480, dtype=torch.uint8))
    jittered = RandomScaleCrop((360, 480), (1.0, 1.0), color_jitter=0.4)
    threads, crops = torch.get_num_threads(), []
    try:
        for count in (1, 4):  # workers load with one thread, the main process (workers=0) with several
            torch.set_num_threads(count)
            torch.manual_seed(0)
            crops.append(jittered(photo, mask)[0])
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(*crops)


def stripes(height, width, stripe=6):
    """An image of vertical stripes (value 40 * stripe number) and the mask of stripe numbers."""
    numbers = (torch.arange(width) // stripe).expand(height, width)
    return tv_tensors.Image((numbers * 40).to(torch.uint8).expand(3, height, width).clone()), tv_tensors.Mask(
        numbers.to(torch.uint8)
    )


def test_scaled_crops_keep_image_and_mask_aligned():
    torch.manual_seed(2)
    transform = RandomScaleCrop((48, 64), (0.6, 1.6))
    for _ in range(20):
        image, mask = transform(*stripes(60, 42))
        assert image.shape == (3, 48, 64) and mask.shape == (48, 64)
        inside = mask != 255
        assert set(mask[inside].unique().tolist()) <= set(range(7)), "nearest neighbour: no interpolated labels"
        agree = (image[0][inside].float() / 40).round() == mask[inside]
        assert agree.float().mean() > 0.9, "image and mask were scaled, cropped and flipped together"


@pytest.mark.parametrize("factor", [0.5, 2.0])
def test_random_scale_resizes_by_the_drawn_factor(factor):
    image, mask = RandomScaleCrop((40, 40), (factor, factor))(*pair(10, 12))
    assert int((mask != 255).sum()) == round(10 * factor) * round(12 * factor)
    with pytest.raises(ValueError, match="scale range"):
        RandomScaleCrop((40, 40), (2.0, 1.0))


def test_small_photos_land_at_random_places_in_the_crop():
    torch.manual_seed(3)
    transform = train_transforms((64, 64), scale_range=(1.0, 1.0))
    corners = {tuple((transform(*pair(20, 30))[1] != 255).nonzero()[0].tolist()) for _ in range(10)}
    assert len(corners) > 5, "the photo's top-left corner moves within the padded crop"


def test_normalize_batch_standardises_per_channel():
    images = torch.randint(0, 256, (2, 3, 5, 7), dtype=torch.uint8)
    expected = (images.float() / 255 - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(
        1, 3, 1, 1
    )
    assert torch.allclose(normalize_batch(images), expected, atol=1e-6)

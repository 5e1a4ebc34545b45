"""Every loss leaves ignored pixels out, and each equals a computation by hand on a tiny example."""

import pytest
import torch

from pixelwise.losses import LOSSES, OHEM_MIN_KEPT, OHEM_THRESHOLD, build_criterion

WEIGHTS = torch.tensor([1.0, 2.0, 0.5])


def example() -> tuple[torch.Tensor, torch.Tensor]:
    """Logits for 3 classes on a 1x2x4 picture, and its labels with two ignored pixels."""
    torch.manual_seed(0)
    logits = torch.randn(1, 3, 2, 4)
    target = torch.tensor([[[0, 1, 2, 255], [2, 2, 255, 0]]])
    return logits, target


@pytest.mark.parametrize("name", LOSSES)
def test_ignored_pixels_change_neither_the_value_nor_the_gradient(name):
    logits, target = example()
    criterion = build_criterion(name, WEIGHTS)
    first = logits.clone().requires_grad_()
    value = criterion(first, target)
    value.backward()
    changed = logits.clone()
    changed[..., target[0] == 255] = torch.tensor([9.0, -7.0, 3.0]).unsqueeze(1)
    changed.requires_grad_()
    again = criterion(changed, target)
    again.backward()
    assert torch.isfinite(value) and value > 0
    assert torch.allclose(value, again)
    ignored = (target == 255).unsqueeze(1).expand_as(logits)
    assert first.grad[ignored].abs().max() == 0 and changed.grad[ignored].abs().max() == 0
    assert torch.allclose(first.grad, changed.grad)


def labelled(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The labelled pixels' probabilities (P, C) and labels (P,)."""
    keep = target[0] != 255
    return logits[0].softmax(dim=0)[:, keep].T, target[0][keep]


def test_dice_is_one_minus_the_weighted_mean_soft_dice_of_the_classes_present():
    logits, target = example()
    probabilities, labels = labelled(logits, target)
    one_hot = torch.nn.functional.one_hot(labels, 3).float()
    dice = 2 * (probabilities * one_hot).sum(0) / (probabilities.sum(0) + one_hot.sum(0))
    expected = ((1 - dice) * WEIGHTS).sum() / WEIGHTS.sum()  # every class is present here
    assert torch.allclose(build_criterion("dice", WEIGHTS)(logits, target), expected, atol=1e-6)
    cross_entropy = torch.nn.functional.cross_entropy(logits, target, weight=WEIGHTS, ignore_index=255)
    assert torch.allclose(build_criterion("ce+dice", WEIGHTS)(logits, target), cross_entropy + expected, atol=1e-6)


def test_focal_is_the_weighted_mean_of_one_versus_rest_focal_terms():
    logits, target = example()
    keep = target[0] != 255
    scores, labels = logits[0][:, keep], target[0][keep]  # (C, P), (P,)
    terms = []
    for index in range(3):
        is_class = (labels == index).float()
        p = torch.sigmoid(scores[index])
        p_true = torch.where(is_class == 1, p, 1 - p)
        terms.append((-((1 - p_true) ** 2) * torch.log(p_true)).mean())
    expected = (torch.stack(terms) * WEIGHTS).sum() / WEIGHTS.sum()
    assert torch.allclose(build_criterion("focal", WEIGHTS)(logits, target), expected, atol=1e-6)


def lovasz_by_hand(errors: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Lovasz extension of the Jaccard loss (Berman et al. 2018, eq. 8) for one class, written out."""
    order = errors.argsort(descending=True)
    errors, truth = errors[order], truth[order]
    jaccard = []
    for k in range(1, len(errors) + 1):
        intersection = truth.sum() - truth[:k].sum()
        union = truth.sum() + (1 - truth[:k]).sum()
        jaccard.append(1 - intersection / union)
    jaccard = torch.stack(jaccard)
    gradient = torch.cat([jaccard[:1], jaccard[1:] - jaccard[:-1]])
    return (errors * gradient).sum()


def test_lovasz_is_the_mean_over_present_classes_of_the_lovasz_extension():
    logits, target = example()
    probabilities, labels = labelled(logits, target)
    losses = []
    for index in range(3):
        truth = (labels == index).float()
        if truth.sum() > 0:
            losses.append(lovasz_by_hand((truth - probabilities[:, index]).abs(), truth))
    assert torch.allclose(build_criterion("lovasz")(logits, target), torch.stack(losses).mean(), atol=1e-6)


def weighted_cross_entropy_of(logits: torch.Tensor, target: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
    """Class-weighted mean cross-entropy of the pixels `chosen` (a boolean mask like `target`), by hand."""
    log_probabilities = logits[0].log_softmax(dim=0)[:, chosen[0]].T  # (P, C)
    labels = target[0][chosen[0]]
    weights = WEIGHTS[labels]
    return -(weights * log_probabilities[torch.arange(len(labels)), labels]).sum() / weights.sum()


def test_ohem_is_weighted_cross_entropy_over_the_pixels_at_most_the_threshold():
    logits, target = example()
    logits[0, 0, 0, 0] += 5  # two labelled pixels made easy: their true class's logit well above the rest
    logits[0, 2, 1, 0] += 5
    probabilities, labels = labelled(logits, target)
    true_probability = torch.zeros(target.shape)
    true_probability[target != 255] = probabilities[torch.arange(len(labels)), labels]
    hard = (target != 255) & (true_probability <= OHEM_THRESHOLD)
    assert 0 < hard.sum() < (target != 255).sum()  # the example has easy pixels to leave out
    expected = weighted_cross_entropy_of(logits, target, hard)
    assert torch.allclose(build_criterion("ohem", WEIGHTS)(logits, target), expected, atol=1e-6)


def test_ohem_keeps_the_hardest_share_when_every_pixel_is_easy():
    torch.manual_seed(1)
    target = torch.randint(0, 3, (1, 20, 20))
    logits = torch.nn.functional.one_hot(target, 3).permute(0, 3, 1, 2).float() * 4 + torch.rand(1, 3, 20, 20)
    logits.requires_grad_()
    true_probability = logits.detach().softmax(dim=1).gather(1, target.unsqueeze(1)).squeeze(1)
    assert true_probability.min() > OHEM_THRESHOLD
    kept = round(target.numel() * OHEM_MIN_KEPT)
    hardest = true_probability <= true_probability.flatten().kthvalue(kept).values
    assert hardest.sum() == kept
    loss = build_criterion("ohem", WEIGHTS)(logits, target)
    assert torch.allclose(loss, weighted_cross_entropy_of(logits.detach(), target, hardest), atol=1e-6)
    loss.backward()
    assert logits.grad[(~hardest).unsqueeze(1).expand_as(logits)].abs().max() == 0


def test_ohem_takes_its_share_of_the_labelled_pixels_only():
    torch.manual_seed(2)
    target = torch.randint(1, 3, (1, 20, 20))
    target[0, :15] = 255  # three quarters ignored; where ignored, class 0's probability is lowest of all
    logits = torch.nn.functional.one_hot(target.clamp(max=2), 3).permute(0, 3, 1, 2).float() * 4
    logits = logits + torch.rand(1, 3, 20, 20)
    logits[:, 0, :15] = -9.0
    true_probability = logits.softmax(dim=1).gather(1, target.clamp(max=2).unsqueeze(1)).squeeze(1)
    labelled_probability = true_probability[target != 255]
    assert labelled_probability.min() > OHEM_THRESHOLD  # every labelled pixel is easy: the share decides
    kept = round(labelled_probability.numel() * OHEM_MIN_KEPT)
    hardest = (target != 255) & (true_probability <= labelled_probability.sort().values[kept - 1])
    assert hardest.sum() == kept
    expected = weighted_cross_entropy_of(logits, target, hardest)
    assert torch.allclose(build_criterion("ohem", WEIGHTS)(logits, target), expected, atol=1e-6)


def test_ohem_plus_dice_is_their_sum():
    logits, target = example()
    logits[0, 0, 0, 0] += 5  # an easy pixel, so ohem differs from ce
    ohem, dice = build_criterion("ohem", WEIGHTS), build_criterion("dice", WEIGHTS)
    assert not torch.allclose(ohem(logits, target), build_criterion("ce", WEIGHTS)(logits, target))
    both = build_criterion("ohem+dice", WEIGHTS)(logits, target)
    assert torch.allclose(both, ohem(logits, target) + dice(logits, target))


def test_unknown_loss_names_the_choices():
    choices = "ce, dice, focal, lovasz, ce\\+dice, ohem, ohem\\+dice"
    with pytest.raises(ValueError, match=f"loss must be one of {choices}, got 'bce'"):
        build_criterion("bce")


@pytest.mark.parametrize("name", LOSSES)
def test_a_batch_without_labelled_pixels_gives_zero_not_nan(name):
    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    loss = build_criterion(name, None if name == "lovasz" else WEIGHTS)(logits, torch.full((2, 4, 4), 255))
    loss.backward()
    assert loss.item() == 0 and logits.grad.abs().max() == 0

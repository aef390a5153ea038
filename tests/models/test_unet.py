"""U-Net shape and Opacus validity; the segmentation loss is per sample, so DP-SGD clips the right thing."""

from __future__ import annotations

import pytest
import torch
from opacus.validators import ModuleValidator
from opacus.validators.errors import UnsupportedModuleError
from torch import nn
from torch.func import functional_call, grad, vmap

from feddp_eval.models.loss import SegmentationLoss, segmentation_loss, soft_dice_loss
from feddp_eval.models.unet import UNet, count_parameters


def _batch(b: int, size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(b, 3, size, size, generator=generator)
    masks = (torch.rand(b, 1, size, size, generator=generator) < 0.3).float()
    return images, masks


def _tiny(seed: int = 0) -> UNet:
    torch.manual_seed(seed)
    return UNet(depth=1, width=4, groups=2)


@pytest.mark.parametrize("size", [16, 32])
@pytest.mark.parametrize("depth", [1, 2])
def test_output_shape(size: int, depth: int) -> None:
    model = UNet(depth=depth, width=4, groups=2)
    images, _ = _batch(2, size)
    out = model(images)
    assert out.shape == (2, 1, size, size)
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("kwargs", [{"depth": 0}, {"width": 0}, {"groups": 0}])
def test_bad_shape_arguments_raise(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError, match=">= 1"):
        UNet(**kwargs)


@pytest.mark.parametrize("depth", [1, 2])
def test_opacus_validator_accepts_the_model(depth: int) -> None:
    assert ModuleValidator.validate(UNet(depth=depth, width=8, groups=8), strict=True) == []


def test_opacus_validator_would_reject_batch_norm() -> None:
    # The validator check above has teeth: the same call on a BatchNorm model raises.
    with pytest.raises(UnsupportedModuleError):
        ModuleValidator.validate(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)), strict=True)


def test_no_batch_norm_and_no_inplace_modules() -> None:
    model = UNet(depth=2, width=16)
    modules = list(model.modules())
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in modules)
    assert not any(getattr(m, "inplace", False) for m in modules)
    assert any(isinstance(m, nn.GroupNorm) for m in modules)


def test_group_norm_uses_the_largest_group_count_that_divides_the_channels() -> None:
    norms = [m for m in UNet(depth=2, width=4, groups=8).modules() if isinstance(m, nn.GroupNorm)]
    # channels 4, 8, 16 down; 8, 4 up; two norms per block
    assert [(m.num_channels, m.num_groups) for m in norms] == [
        (4, 4),
        (4, 4),
        (8, 8),
        (8, 8),
        (16, 8),
        (16, 8),
        (8, 8),
        (8, 8),
        (4, 4),
        (4, 4),
    ]


def test_parameter_count_golden() -> None:
    assert count_parameters(UNet(depth=2, width=16)) == 118913


def test_count_parameters_skips_frozen() -> None:
    model = _tiny()
    total = count_parameters(model)
    model.head.weight.requires_grad_(False)
    assert count_parameters(model) == total - model.head.weight.numel()


# --------------------------------------------------------------------------- loss


def _reference_loss(logits: torch.Tensor, masks: torch.Tensor, dice_weight: float) -> torch.Tensor:
    """BCE (pixel mean) + w * (1 - soft Dice with eps = 1), per sample, written out in float64."""
    z, y = logits.double().flatten(1), masks.double().flatten(1)
    p = torch.sigmoid(z)
    bce = -(y * torch.log(p) + (1 - y) * torch.log1p(-p)).mean(1)
    soft_dice = (2 * (p * y).sum(1) + 1.0) / (p.sum(1) + y.sum(1) + 1.0)
    return bce + dice_weight * (1 - soft_dice)


@pytest.mark.parametrize("dice_weight", [0.0, 0.5, 1.0])
def test_loss_matches_reference(dice_weight: float) -> None:
    _, masks = _batch(4, 16, seed=1)
    logits = torch.randn(4, 1, 16, 16, generator=torch.Generator().manual_seed(2)) * 2
    got = segmentation_loss(logits, masks, dice_weight=dice_weight, reduction="none")
    torch.testing.assert_close(
        got.double(), _reference_loss(logits, masks, dice_weight), rtol=1e-5, atol=1e-6
    )


def test_loss_is_per_sample_and_reductions_agree() -> None:
    _, masks = _batch(3, 16, seed=3)
    logits = torch.randn(3, 1, 16, 16, generator=torch.Generator().manual_seed(4))
    per_sample = segmentation_loss(logits, masks, reduction="none")
    assert per_sample.shape == (3,)
    for i in range(3):
        alone = segmentation_loss(logits[i : i + 1], masks[i : i + 1])
        torch.testing.assert_close(per_sample[i], alone)
    torch.testing.assert_close(segmentation_loss(logits, masks), per_sample.mean())
    torch.testing.assert_close(segmentation_loss(logits, masks, reduction="sum"), per_sample.sum())


def test_loss_module_honours_reduction() -> None:
    _, masks = _batch(3, 16, seed=5)
    logits = torch.randn(3, 1, 16, 16, generator=torch.Generator().manual_seed(6))
    per_sample = segmentation_loss(logits, masks, dice_weight=0.5, reduction="none")
    module = SegmentationLoss(dice_weight=0.5, reduction="none")
    torch.testing.assert_close(module(logits, masks), per_sample)
    module.reduction = "sum"  # Opacus' ghost clipping switches it after construction
    torch.testing.assert_close(module(logits, masks), per_sample.sum())
    torch.testing.assert_close(SegmentationLoss(dice_weight=0.5)(logits, masks), per_sample.mean())


def test_soft_dice_loss_extremes() -> None:
    _, masks = _batch(2, 16, seed=7)
    agree = 30.0 * (2 * masks - 1)
    assert soft_dice_loss(agree, masks) == pytest.approx([0.0, 0.0], abs=1e-6)
    # Opposite: overlap 0, so the loss is 1 - eps / (H * W + eps) = 1 - 1/257.
    assert soft_dice_loss(-agree, masks) == pytest.approx([1 - 1 / 257] * 2, abs=1e-6)
    # Empty mask predicted empty: eps makes it a perfect score, not 0/0.
    empty = torch.zeros(1, 1, 16, 16)
    assert soft_dice_loss(torch.full_like(empty, -30.0), empty) == pytest.approx([0.0], abs=1e-6)


# --------------------------------------------------------------------------- per-sample gradients


def _single_sample_grads(
    model: nn.Module, images: torch.Tensor, masks: torch.Tensor
) -> list[dict[str, torch.Tensor]]:
    grads = []
    for i in range(len(images)):
        model.zero_grad(set_to_none=True)
        segmentation_loss(model(images[i : i + 1]), masks[i : i + 1]).backward()
        grads.append({n: p.grad.detach().clone() for n, p in model.named_parameters()})
    return grads


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[n] - b[n]).abs().max()) for n in a)


def test_vmap_per_sample_gradients_equal_single_sample_backward() -> None:
    model = _tiny(seed=0)
    images, masks = _batch(3, 16, seed=8)
    params = {n: p.detach() for n, p in model.named_parameters()}

    def loss_of_one(params: dict[str, torch.Tensor], image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        logits = functional_call(model, params, (image.unsqueeze(0),))
        return segmentation_loss(logits, mask.unsqueeze(0))

    per_sample = vmap(grad(loss_of_one), in_dims=(None, 0, 0))(params, images, masks)
    expected = _single_sample_grads(model, images, masks)
    for i in range(3):
        assert _max_diff({n: g[i] for n, g in per_sample.items()}, expected[i]) < 1e-5
    # Samples differ, so their gradients do too (the comparison is not vacuous).
    assert _max_diff(expected[0], expected[1]) > 1e-4


def test_sample_gradient_inside_a_batch_does_not_depend_on_the_others() -> None:
    model = _tiny(seed=1)
    images, masks = _batch(3, 16, seed=9)
    params = list(model.parameters())
    names = [n for n, _ in model.named_parameters()]
    expected = _single_sample_grads(model, images, masks)

    # One batched forward pass, then the gradient of each sample's own loss.
    losses = segmentation_loss(model(images), masks, reduction="none")
    for i in range(3):
        g = torch.autograd.grad(losses[i], params, retain_graph=True)
        assert _max_diff(dict(zip(names, g, strict=True)), expected[i]) < 1e-5

    # Replacing the other samples leaves sample 0's gradient unchanged.
    other_images, other_masks = _batch(3, 16, seed=10)
    other_images[0], other_masks[0] = images[0], masks[0]
    loss0 = segmentation_loss(model(other_images), other_masks, reduction="none")[0]
    g = torch.autograd.grad(loss0, params)
    assert _max_diff(dict(zip(names, g, strict=True)), expected[0]) < 1e-5

    # And the "sum" loss's gradient is the sum of the per-sample ones.
    model.zero_grad(set_to_none=True)
    segmentation_loss(model(images), masks, reduction="sum").backward()
    summed = {n: sum(e[n] for e in expected) for n in names}
    assert _max_diff({n: p.grad for n, p in model.named_parameters()}, summed) < 1e-5


def test_batch_norm_would_couple_samples() -> None:
    # Negative control: the same check fails for a BatchNorm model, so it can detect coupling.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 1, 1))
    images, masks = _batch(3, 16, seed=11)
    params = list(model.parameters())
    loss0 = segmentation_loss(model(images), masks, reduction="none")[0]
    batched = torch.autograd.grad(loss0, params)
    images[1:] = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(12))
    loss0 = segmentation_loss(model(images), masks, reduction="none")[0]
    changed = torch.autograd.grad(loss0, params)
    assert max(float((a - b).abs().max()) for a, b in zip(batched, changed, strict=True)) > 1e-4

"""Book-keeping DP-SGD (``grad_sample_mode = "bk"``): the same step as Opacus' ``hooks`` and ``ew`` modes,
clipping active or not, noise included, empty batches, exact per-layer records, unsupported layers refused."""

from __future__ import annotations

from typing import cast

import numeric_cases
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from defenses.book_keeping import RULES, BookKeepingDPOptimizer, BookKeepingModule, GhostRule
from feddp_eval.models.loss import segmentation_loss

BATCH, TILE = numeric_cases.BK_BATCH, numeric_cases.BK_TILE
_data, _model, _update, _relative = (
    numeric_cases.bk_data,
    numeric_cases.bk_model,
    numeric_cases.bk_update,
    numeric_cases.relative,
)


def _per_sample_norms() -> Tensor:
    model, (images, masks) = _model(), _data()
    norms = []
    for i in range(BATCH):
        model.zero_grad(set_to_none=True)
        segmentation_loss(model(images[i : i + 1]), masks[i : i + 1]).backward()
        norms.append(torch.cat([cast(Tensor, p.grad).flatten() for p in model.parameters()]).norm())
    return torch.stack(norms)


@pytest.mark.numeric
def test_bk_step_equals_the_ew_step_with_and_without_noise() -> None:
    """Every sample clipped and no clipping, σ = 0 and σ > 0: bk's step is ew's within float rounding, and
    Opacus' own hooks and ew stay within theirs (bounds and spreads: tests/numeric_cases.py). Heavy
    clipping sums unit-length directions that partly cancel, so float32 rounding shows most there."""
    numeric_cases.check("bk-step", numeric_cases.bk_step(0))


@pytest.mark.parametrize("regime", list(numeric_cases.BK_REGIMES))
def test_bk_step_is_not_vacuous(regime: str) -> None:
    """The noise moves the update by far more than any tolerance above, and clipping really clips."""
    clip, noise = numeric_cases.BK_REGIMES[regime]
    norms = _per_sample_norms()
    assert bool((norms > clip).all()) if clip < 1 else bool((norms < clip).all())
    clean = _update("bk", clip=clip, noise=0.0)
    assert _relative(_update("bk", clip=clip, noise=noise), clean) > 0.1
    if clip < 1:
        assert _relative(clean, _update("bk", clip=1e6, noise=0.0)) > 0.5


def test_bk_empty_batch_is_noise_only_as_in_opacus() -> None:
    bk, hooks = (
        _update("bk", clip=1.0, noise=1.0, empty=True),
        _update("hooks", clip=1.0, noise=1.0, empty=True),
    )
    assert _relative(bk, hooks) == 0.0
    assert all(float(t.abs().max()) > 0 for t in bk)


# --------------------------------------------------------------------------- per-layer records


def _reference(layer: nn.Module, x: Tensor, g: Tensor) -> dict[str, Tensor]:
    """Per-sample parameter gradients of Σ_i ⟨layer(x_i), g_i⟩, one sample at a time."""
    grads: dict[str, list[Tensor]] = {n: [] for n, _ in layer.named_parameters()}
    for i in range(len(x)):
        layer.zero_grad(set_to_none=True)
        (layer(x[i : i + 1]) * g[i : i + 1]).sum().backward()
        for n, p in layer.named_parameters():
            grads[n].append(cast(Tensor, p.grad).clone())
    return {n: torch.stack(v) for n, v in grads.items()}


LAYERS = {
    "conv": (lambda: nn.Conv2d(4, 6, 3, padding=1), (3, 4, 6, 6)),
    "conv-strided-dilated": (lambda: nn.Conv2d(4, 6, 3, stride=2, padding=2, dilation=2), (3, 4, 7, 7)),
    "conv-grouped": (lambda: nn.Conv2d(4, 6, 3, padding=1, groups=2), (3, 4, 6, 6)),
    "conv-1x1": (lambda: nn.Conv2d(4, 1, 1), (3, 4, 6, 6)),
    "linear": (lambda: nn.Linear(5, 7), (3, 5)),
    "linear-sequence": (lambda: nn.Linear(5, 7), (3, 4, 5)),
    "group-norm": (lambda: nn.GroupNorm(2, 4), (3, 4, 5, 5)),
}


# Ghost norms of grouped convolutions are refused (tested below), so that pair is not in the grid.
CASES = [
    (name, ghost)
    for name in LAYERS
    for ghost in ("never", "always")
    if (name, ghost) != ("conv-grouped", "always")
]


@pytest.mark.parametrize(("name", "ghost"), CASES)
def test_records_give_the_per_sample_norms_and_clipped_sums(name: str, ghost: GhostRule) -> None:
    torch.manual_seed(0)
    build, shape = LAYERS[name]
    layer = build()
    x = torch.randn(shape)
    g = torch.randn(layer(x).shape)
    want = _reference(layer, x, g)
    records = RULES[type(layer)](layer, x, g, ghost)
    assert records.keys() == want.keys()
    factors = torch.tensor([0.3, 1.0, 0.05])
    for n, record in records.items():
        sq_norms = want[n].flatten(1).pow(2).sum(1)
        torch.testing.assert_close(record.sq_norms, sq_norms, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(record.weighted_sum(factors), torch.einsum("i,i...", factors, want[n]))


def test_grouped_conv_ghost_and_unsupported_layers_fail_loudly() -> None:
    layer = nn.Conv2d(4, 6, 3, padding=1, groups=2)
    with pytest.raises(ValueError, match="grouped Conv2d"):
        RULES[nn.Conv2d](layer, torch.randn(2, 4, 5, 5), torch.randn(2, 6, 5, 5), "always")
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ConvTranspose2d(4, 4, 2, stride=2))
    with pytest.raises(ValueError, match=r"'1' \(ConvTranspose2d\)"):
        BookKeepingModule(model)
    # Frozen parameters of an unsupported layer are fine: nothing to privatise there.
    model[1].requires_grad_(False)
    BookKeepingModule(model)._close()


def test_group_norm_record_uses_the_layers_normalisation() -> None:
    layer = nn.GroupNorm(2, 4, eps=0.5)
    x, g = torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 3)
    record = RULES[nn.GroupNorm](layer, x, g, "auto")["weight"]
    want = (g * F.group_norm(x, 2, eps=0.5)).sum((2, 3))
    torch.testing.assert_close(record.weighted_sum(torch.ones(2)), want.sum(0))


# --------------------------------------------------------------------------- the real training path


@pytest.mark.numeric
def test_a_bk_run_trains_like_a_hooks_run() -> None:
    """Poisson sampling, noise, several steps and rounds: the saved model is the hooks run's."""
    numeric_cases.check("bk-run", numeric_cases.bk_run(0))


def test_ghost_norms_through_the_optimizer_give_the_materialised_step() -> None:
    """The whole U-Net with every Conv2d on ghost norms: the same clipped, noised step as materialising."""
    images, masks = _data()
    updates = {}
    for ghost in ("never", "always"):
        model = _model()
        before = [p.detach().clone() for p in model.parameters()]
        wrapped = BookKeepingModule(model, ghost=cast(GhostRule, ghost))
        optimizer = BookKeepingDPOptimizer(
            torch.optim.SGD(model.parameters(), lr=1.0),
            module=wrapped,
            noise_multiplier=0.01,
            max_grad_norm=1e-3,
            expected_batch_size=BATCH,
            loss_reduction="mean",
            generator=torch.Generator().manual_seed(3),
        )
        optimizer.zero_grad(set_to_none=True)
        segmentation_loss(wrapped(images), masks).backward()
        optimizer.step()
        wrapped._close()
        updates[ghost] = [p.detach() - b for p, b in zip(model.parameters(), before, strict=True)]
    # Heavy clipping is ill-conditioned in float32: Opacus' own ew and hooks differ by ~1e-5 here.
    floor = _relative(_update("ew", clip=1e-3, noise=0.01), _update("hooks", clip=1e-3, noise=0.01))
    assert _relative(updates["always"], updates["never"]) <= max(1e-6, 10 * floor)

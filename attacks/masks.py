"""The segmentation analogue of iDLG's label trick: a client's foreground fraction from one bias.

Derivation. The U-Net ends in a 1×1 convolution whose bias ``b`` is added to
every pixel's logit ``z_p``. For one tile with P pixels, mask ``y`` and
predictions ``s_p = σ(z_p)``, the pixel-mean BCE has

    ∂BCE/∂b = Σ_p ∂BCE/∂z_p = (1/P) Σ_p (s_p − y_p) = s̄ − f,

the mean predicted probability minus the tile's foreground fraction ``f``. For a
batch of B tiles with the batch-mean loss, the bias gradient is the batch mean
of ``s̄_i − f_i``. After one SGD step of learning rate ``lr`` the captured bias
update is ``Δb = −lr · mean_i(s̄_i − f_i)``, so

    mean_i f_i = mean_i s̄_i + Δb / lr.

The server knows ``lr`` and the global weights; ``s̄`` needs the images, so the
estimate uses the current reconstruction (or, before there is one, the site's
public mean tile). It is **exact** when (a) the loss is BCE only (``dice_weight
= 0``), (b) the round is one local step of SGD (momentum is irrelevant on a
first step), and (c) ``s̄`` is evaluated on the true tiles. It does not hold
exactly with the soft-Dice term (its bias derivative depends on the per-pixel
overlap, not only on ``f``), with several local steps or Adam (the bias moves
between steps; Adam normalises the gradient away), or under DP noise or
clipping (the bias coordinate is noised and rescaled).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.func import functional_call

from attacks.threat_model import ServerView
from feddp_eval.models.unet import UNet

HEAD_BIAS = "head.bias"


@dataclass(frozen=True)
class FractionEstimate:
    """Estimated mean foreground fraction of the tiles in a client's (first) local step."""

    value: float
    exact: bool
    caveat: str


def fraction_from_bias(bias_update: float, *, lr: float, mean_probability: float) -> float:
    """``mean f = mean s̄ + Δb / lr`` (one SGD step on a BCE loss), clipped to [0, 1]."""
    return min(1.0, max(0.0, mean_probability + bias_update / lr))


@torch.no_grad()
def mean_probability(view: ServerView, images: Tensor) -> float:
    """Mean σ(logit) of the global model over ``images`` (N, 3, H, W)."""
    model = UNet.from_config(view.model)
    logits = functional_call(model, view.global_weights, (images.float(),))
    return float(torch.sigmoid(logits).mean())


def estimate_foreground_fraction(view: ServerView, images: Tensor | None = None) -> FractionEstimate | None:
    """Foreground fraction implied by the captured head-bias update, or ``None`` without what it needs.

    Args:
        view: The server's view of the client round.
        images: (N, 3, H, W) tiles to evaluate ``s̄`` on (the true ones make the estimate exact
            in the exact case); default: the public mean tile.
    """
    if HEAD_BIAS not in view.update:
        return None
    recipe = view.recipe
    first = list(recipe.batches[0]) if recipe.batches else []
    if images is None and (view.prior is None or not first):
        return None
    if images is None:
        prior = view.prior.float()  # type: ignore[union-attr]
        prior = prior[:, None, None] if prior.ndim == 1 else prior
        evaluated = prior.expand(len(first), 3, view.tile_size, view.tile_size)
    else:
        evaluated = images[first]
    value = fraction_from_bias(
        float(view.update[HEAD_BIAS].reshape(-1)[0]),
        lr=recipe.lr,
        mean_probability=mean_probability(view, evaluated),
    )
    problems = []
    if images is None:
        problems.append("s̄ is taken on the public mean tile, not the true tiles")
    if recipe.dice_weight:
        problems.append("the soft-Dice term adds an overlap-dependent bias gradient")
    if recipe.steps != 1:
        problems.append(f"{recipe.steps} local steps move the bias between gradients")
    if recipe.optimizer != "sgd":
        problems.append(f"{recipe.optimizer} rescales the gradient")
    return FractionEstimate(value, exact=not problems, caveat="; ".join(problems) or "exact")

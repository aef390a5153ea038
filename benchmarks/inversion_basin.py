"""Does the honest server's inversion come back to the truth from near it? (a script, not a test)

The diagnosis of issue #22: an optimisation attack that ends below the attacker's prior is weak
either because its objective's minimum is not the truth (regulariser bias, blind directions) or
because its optimiser does not reach that minimum. This script tells the two apart. On the default
scenario's data (site 3 of the embedded generator at experiment seed 0, 64 px tiles, the U-Net
freshly initialised as in round 1, one local SGD step of lr 0.05, masks known) it starts the
inversion from

* the truth plus Gaussian noise at 40, 30 and 25 dB PSNR, and
* the painted-mask guess (the attacker's prior without the update),

for one tile and for four, with the regularisers (TV and the mean-colour penalty) on and off, and
reports where each run ends: PSNR against the truth and the objective, beside the objective *at the
truth* (``obj@truth``). Reading a row:

* end PSNR below the start while ``end obj < obj@truth``: the objective prefers a wrong image
  (its minimum is not the truth: fix the objective or the regulariser);
* end PSNR below the start while ``end obj > obj@truth``: the optimiser lost its way (fix the
  optimiser);
* end PSNR above the start: the basin holds from there.

Two more views of the same question:

* ``--ranking``: the objective (regularisers off, free pixels) at images of known distance from the
  truth: the truth plus invisible noise (60–30 dB), the painted guess plus the truth's own
  low-frequency correction (the guess's error averaged over 2/8/16 px blocks), the guess, uniform
  noise. An objective that measures closeness ranks them by PSNR.
* ``--detail truth,guess``: how well an image far from the truth can match the update: a fixed
  coarse field (the truth's, an oracle, or the guess's, blurred by ``--sigma`` px) plus free detail
  started from the guess's, searched as in ``--coarse``; its end objective beside the truth plus
  noise (``--ranking``) says whether the objective can tell the truth from a nearby wrong image.
* ``--coarse``: a coarse-to-fine search from the painted guess, optimising only a correction at
  1/16, then 1/8 ... of the resolution (48 unknowns per tile at 1/16), with Adam and, optionally, a
  softplus surrogate of the ReLU annealed from β = 5 to 1000 (``--smooth 5``; 0 = the ReLU itself).
  It keeps, per stage, the iterate of lowest true (ReLU) objective.

Why a descent fails, from the objective's shape at the truth:

* ``--spectrum 64``: the Gauss–Newton matrix G = JᵀJ of one tile's update over its central N×N px
  (:func:`update_jacobian_gram`, ~7 min and ~10 GB for all 64² px): how many directions the update
  sees, how well, and the linearised ceiling of an attack that fixed exactly those.
* ``--jumps``: the objective's smooth part (what a gradient sees) against the objective itself for
  moves of 120 to 40 dB from the truth (:func:`smooth_and_actual`, seconds): where the second is far
  larger, activations that switch make the update jump.
* ``--rank``: why R-GAP (Zhu & Blaschko 2021), the analytic layer-by-layer inversion, cannot
  start on this network: each convolution's gradient equations against its input's unknowns
  (:func:`rgap_counts`), last layer first.

Things tried for issue #22 after the diagnosis:

* ``--langevin 0,0.01,0.03``: the main table once per size of Langevin-style noise on the iterate
  (Hatamizadeh et al. 2023; :class:`LangevinInversion`).
* ``--learned-prior``: the painted-mask guess against a stronger guess from the same public tiles,
  a mask-conditioned linear filter (:func:`learned_prior`): how much better the attacker's best
  guess without the update could be.
* ``--lifted``: a search for the activation pattern that reads no truth (:func:`lifted_search`): every
  ReLU gate a variable beside the image, tied to the image's own pre-activations by a penalty that
  grows until they agree.
* ``--subspace 4,8,32``: an attacker with public data: the inversion searched inside a linear prior
  learned from the site's public tiles (:func:`residual_basis`, :func:`subspace_search`), beside the
  best image that prior can represent.

The masks-unknown target (mask Dice ≥ 0.8), from the same angle:

* ``--mask-fit``: the masks alone fitted to the update (Adam on per-pixel logits, relative L2)
  under images of known distance from the truth: the truth itself, the truth plus noise at 40 to
  20 dB, and the tiles' own mean colour (an oracle flat image). Its mask Dice is what an attacker
  that already held an image that close could read from the update (:func:`mask_fit`).

``--weights RUN/captures/round-NNNN/global.safetensors`` asks every view the same question at a
later round's global weights (a trained model) instead of the round-1 initialisation; the update is
replayed from them on the same tiles.

Only this benchmark reads the truth (to build the start and to score); the attack does not.

Usage: ``OMP_NUM_THREADS=1 python benchmarks/inversion_basin.py [--iterations 150] [--refine 150]
[--methods old,new] [--tiles 1,4] [--ranking] [--coarse --smooth 5 --objective cosine]
[--weights RUN/captures/round-0010/global.safetensors] [--langevin 0,0.01] [--learned-prior]
[--spectrum 64] [--jumps] [--mask-fit] [--rank] [--lifted] [--subspace 4,8,32 --nuisance 0,512]``
"""

from __future__ import annotations

import argparse
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cache, partial
from itertools import product
from pathlib import Path
from typing import Any, cast

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import Tensor, nn
from torch.func import functional_call

from attacks import ATTACKS, ServerView
from attacks.inverting_gradients import InvertingGradients
from attacks.simulate import LocalRecipe, flatten, simulate_update
from attacks.view import simulated_view
from feddp_eval.config import DataConfig, ModelConfig
from feddp_eval.data.synthetic import synthetic_sites
from feddp_eval.data.tissue import SENSOR_NOISE
from feddp_eval.data.types import Site
from feddp_eval.metrics.privacy import mask_painted_prior, score_reconstruction
from feddp_eval.models.unet import UNet
from feddp_eval.rundir.check import check_tensor_file, expected_shapes
from feddp_eval.seeding import derive_seed
from feddp_eval.workflows.train import public_statistics

LR = 0.05  # the default scenario's local learning rate; its momentum is void on a first step
# The two objective/optimiser pairs compared: today's default (cosine, signed Adam) and the strong
# default of issue #22 (relative L2 on the update, signed Adam, then L-BFGS with a line search).
METHODS: dict[str, dict[str, Any]] = {
    "old": {"objective": "cosine", "lr": 0.03, "tv_weight": 0.3},
    "new": {"objective": "l2", "per_layer": True, "lr": 0.01, "tv_weight": 0.02},
    # L-BFGS alone (one Adam step of 1e-4, then the refinement): does a line-search method converge?
    "lbfgs": {"objective": "l2", "per_layer": True, "refine_float64": True, "iterations": 1, "lr": 1e-4},
}
REGULARISERS: dict[str, dict[str, Any]] = {
    "on": {},
    "off": {"tv_weight": 0.0, "colour_weight": 0.0, "refine_tv_weight": 0.0},
}


@dataclass(frozen=True)
class Scenario:
    """The attacked client's tiles (truth), the server's view and the painted-mask guess."""

    images: Tensor  # (N, 3, 64, 64)
    masks: Tensor  # (N, 1, 64, 64)
    view: ServerView
    painted: Tensor  # (N, 3, 64, 64)


@cache
def attacked_site(n_tiles: int, seed: int = 0, sensor_noise: float = SENSOR_NOISE) -> Site:
    """Site 3 of the default synthetic data (experiment seed ``seed``) with ``n_tiles`` training tiles,
    built once per argument set (the views below only read it). ``sensor_noise`` other than the
    default renders the same tiles with that much sensor noise (0: none)."""
    data = DataConfig(train_tiles=(48, 32, 24, n_tiles))
    if data.source != "synthetic":  # pragma: no cover - a changed default
        raise SystemExit("the basin benchmark expects the default synthetic data")
    return synthetic_sites(
        data.sites,
        data.train_tiles,
        data.test_tiles,
        tile_size=data.tile_size,
        seed=derive_seed(seed, "data"),
        difficulty=data.difficulty,
        sensor_noise=sensor_noise,
    )[3]


def painted_guess(masks: Tensor, public: dict[str, Any]) -> Tensor:
    """``masks`` painted in the site's public nuclei and background colours (``public_statistics``)."""
    return mask_painted_prior(
        masks, torch.tensor(public["foreground_rgb"]), torch.tensor(public["background_rgb"])
    )


def default_scenario(
    n_tiles: int,
    seed: int = 0,
    weights: Path | None = None,
    activation: str = "relu",
    sensor_noise: float = SENSOR_NOISE,
) -> Scenario:
    """Site 3 of the default synthetic data with ``n_tiles`` training tiles, attacked in round 1, or,
    given ``weights`` (a captured round's ``global.safetensors``), at those global weights: the update
    is then replayed from them on the same tiles, exactly as the client computed it. ``activation``
    is the U-Net's (``[model] activation``); ``sensor_noise`` the data's (see :func:`attacked_site`;
    the painted guess's public colours then come from tiles with that noise too)."""
    site = attacked_site(n_tiles, seed, sensor_noise)
    public = public_statistics(site)
    images, masks = site.train.images, site.train.masks
    painted = painted_guess(masks, public)
    recipe = LocalRecipe(batches=(tuple(range(n_tiles)),), lr=LR, momentum=0.9)
    view = simulated_view(
        ModelConfig(activation=activation),  # type: ignore[arg-type]
        images,
        masks,
        recipe,
        prior=painted,
        foreground_prior=public["foreground_fraction"],
        seed=derive_seed(seed, "model-init"),  # the global weights of round 1
    )
    if weights is not None:
        view = _at_weights(view, weights, images)
    return Scenario(images, masks, view, painted)


def _at_weights(view: ServerView, path: Path, images: Tensor) -> ServerView:
    """``view`` with its global weights read from ``path`` and the update of ``images`` replayed from
    them."""
    check_tensor_file(path, expected_shapes(view.model), what="the global weights")
    global_weights = load_file(path)
    model = UNet.from_config(view.model)
    update = simulate_update(model, global_weights, images, known_masks(view), view.recipe)
    return replace(view, global_weights=global_weights, update={k: v.detach() for k, v in update.items()})


def known_masks(view: ServerView) -> Tensor:
    """The view's masks: every scenario here attacks with the masks known."""
    if view.masks is None:
        raise ValueError("the basin benchmark attacks with the masks known")
    return view.masks


def inverting_gradients(**settings: Any) -> InvertingGradients:
    """The registered Inverting Gradients attack with ``settings``."""
    attack = ATTACKS.create("inverting-gradients", **settings)
    assert isinstance(attack, InvertingGradients)
    return attack


def noisy(images: Tensor, db: float, seed: int) -> Tensor:
    """``images`` plus Gaussian noise whose MSE is 10^(-db/10), clamped to [0, 1]."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(images.shape, generator=generator) * 10 ** (-db / 20)
    return (images + noise).clamp(0, 1)


def psnr(images: Tensor, truth: Tensor) -> float:
    return float(score_reconstruction(images, truth).psnr)


class LangevinInversion(InvertingGradients):
    """Inverting Gradients with Gaussian noise added to the image variables after every step, its
    standard deviation ``sigma`` times the step size's decay (lr / initial lr): the Langevin-style
    iterate noise of Hatamizadeh et al. 2023, meant to shake the search out of poor local minima.
    ``sigma`` is in the image model's own units (pixels for ``pixels``, stain-space for ``stain``)."""

    def __init__(self, sigma: float, seed: int = 7, **settings: Any) -> None:
        super().__init__(**settings)
        self.sigma, self.generator = sigma, torch.Generator().manual_seed(seed)

    def step(self, optimizer, closure):  # type: ignore[no-untyped-def]
        values = super().step(optimizer, closure)
        scale = self.sigma * optimizer.param_groups[0]["lr"] / self.config.lr
        with torch.no_grad():
            for p in optimizer.param_groups[0]["params"]:
                p.add_(torch.randn(p.shape, generator=self.generator).to(p) * scale)
        return values


def run_case(
    scenario: Scenario, start: Tensor, settings: dict[str, Any], langevin: float = 0.0
) -> dict[str, float]:
    """One inversion from ``start``; its end PSNR, end objective, objective at the truth, seconds.
    ``langevin`` > 0 adds :class:`LangevinInversion`'s iterate noise of that size."""
    if langevin:
        attack: InvertingGradients = LangevinInversion(langevin, **settings)
    else:
        attack = inverting_gradients(**settings)
    # The refinement's objective (its TV weight may differ) is what the returned objective is in.
    at_truth = attack.objective_at(scenario.view, scenario.images, refining=bool(settings.get("refine")))
    began = time.perf_counter()
    recon = attack.reconstruct(scenario.view, start=start)
    return {
        "end_psnr": psnr(recon.images, scenario.images),
        "end_objective": recon.objective,
        "objective_at_truth": at_truth,
        "seconds": time.perf_counter() - began,
    }


def segment_profile(scenario: Scenario, settings: dict[str, Any]) -> list[tuple[float, float, float]]:
    """(t, PSNR, objective) on the straight line from the painted guess (t = 0) to the truth (t = 1),
    free pixels, no regulariser: the shape of the objective's basin around the truth. A smooth
    objective grows like the squared distance (×100 per 20 dB); one with ReLU kinks like the distance
    (×10 per 20 dB)."""
    attack = inverting_gradients(**{**settings, **REGULARISERS["off"], "image": "pixels"})
    rows = []
    for t in (0.0, 0.5, 0.8, 0.9, 0.95, 0.99, 0.999):
        images = scenario.painted + t * (scenario.images - scenario.painted)
        rows.append((t, psnr(images, scenario.images), attack.objective_at(scenario.view, images)))
    return rows


def noise_floor(n_tiles: int, gains: tuple[float, ...] = (3.0, 10.0)) -> dict[str, float]:
    """Where the data's sensor noise puts a ceiling on the attack's PSNR, for ``n_tiles`` tiles.

    ``noise_free`` is the PSNR against the truth of the same tiles rendered without their sensor
    noise: what an attack that rebuilt everything but the noise would score. ``structure +g`` is how
    close (PSNR against that noise-free rendering) such an attack must come to beat the painted guess
    by ``g`` dB, its error and the noise adding up in the MSE (``inf``: not even an exact noise-free
    rebuild does; the noise itself must then be rebuilt)."""
    tiles, noise_free_tiles = attacked_site(n_tiles).train, attacked_site(n_tiles, sensor_noise=0.0).train
    if not torch.equal(tiles.masks, noise_free_tiles.masks):
        raise AssertionError("the noise-free rendering must hold the same tiles")
    truth, clean = tiles.images, noise_free_tiles.images
    painted = painted_guess(tiles.masks, public_statistics(attacked_site(n_tiles)))
    noise_free, guess = psnr(clean, truth), psnr(painted, truth)
    row = {"noise_free": noise_free, "guess": guess, "guess_vs_noise_free": psnr(painted, clean)}
    for gain in gains:
        room = 10 ** (-(guess + gain) / 10) - 10 ** (-noise_free / 10)
        row[f"structure +{gain:g}"] = -10 * math.log10(room) if room > 0 else math.inf
    return row


def learned_prior(n_tiles: int, radius: int, ridge: float = 1.0, seed: int = 0) -> Tensor:
    """A stronger guess from the same public knowledge as the painted one: each pixel's colour as a
    linear function (ridge regression, per channel) of the mask in the (2·radius + 1)² window around
    it, fitted on the site's held-out tiles (those :func:`public_statistics` already publishes), then
    applied to the attacked tiles' masks. ``radius = 0`` is the painted guess up to the fit."""
    site = attacked_site(n_tiles, seed)

    def features(masks: Tensor) -> Tensor:
        k = 2 * radius + 1
        window = F.unfold(F.pad(masks, (radius,) * 4, mode="replicate"), k)  # (N, k², H·W)
        window = torch.cat([window, torch.ones_like(window[:, :1])], dim=1)
        return window.transpose(1, 2).reshape(-1, k * k + 1).double()

    x = features(site.test.masks)
    y = site.test.images.permute(0, 2, 3, 1).reshape(-1, 3).double()
    weights = torch.linalg.solve(x.T @ x + ridge * torch.eye(x.shape[1], dtype=x.dtype), x.T @ y)
    n, _, h, w = site.train.images.shape
    guess = (features(site.train.masks) @ weights).float().reshape(n, h, w, 3).permute(0, 3, 1, 2)
    return guess.clamp(0, 1).contiguous()


def to_patches(images: Tensor, patch: int) -> Tensor:
    """(N, 3, H, W) → (N · H·W/patch², 3 · patch²): non-overlapping ``patch`` × ``patch`` blocks."""
    return F.unfold(images, patch, stride=patch).transpose(1, 2).reshape(-1, images.shape[1] * patch * patch)


def from_patches(patches: Tensor, shape: torch.Size, patch: int) -> Tensor:
    """The inverse of :func:`to_patches` for images of ``shape``."""
    n, c, h, w = shape
    blocks = patches.reshape(n, -1, c * patch * patch).transpose(1, 2)
    return F.fold(blocks, (h, w), patch, stride=patch)


def residual_basis(images: Tensor, guesses: Tensor, patch: int = 8) -> tuple[Tensor, Tensor, Tensor]:
    """A linear prior from public tiles: the principal components of their residuals from their own
    painted guesses, in ``patch`` × ``patch`` blocks. Returns the mean residual block (D,), the public
    residuals' s.d. along each component (D,, descending) and the components as rows (D, D),
    D = 3 · patch², all float64."""
    residuals = to_patches(images - guesses, patch).double()
    mean = residuals.mean(dim=0)
    _, values, components = torch.linalg.svd(residuals - mean, full_matrices=False)
    return mean, values / math.sqrt(max(1, residuals.shape[0] - 1)), components


def subspace_search(
    scenario: Scenario,
    basis: tuple[Tensor, Tensor, Tensor],
    k: int,
    iterations: int,
    *,
    lr: float = 0.01,
    patch: int = 8,
    nuisance: int = 0,
    seed: int = 0,
) -> dict[str, float]:
    """Inverting the update inside the public prior's subspace: each tile is its painted guess plus,
    per ``patch`` block, the mean public residual and a combination of the top ``k`` components
    (``k`` unknowns per block), searched by Adam on the update's relative L2 per layer through the
    network, from the combination 0. Beside it, the same subspace's best image (an oracle: the
    truth's residual projected on it) and the objective there: where the search ends at a lower
    objective than that image, the objective prefers a wrong image even inside the prior.

    ``nuisance`` > 0 makes the objective ignore what the prior cannot represent: that many random
    textures are drawn from the components the prior leaves out (each block's coefficients Gaussian
    with the public residuals' own spread), their effect on the update taken at the start image
    (forward-mode derivatives, in the objective's per-layer scaling), and the mismatch's part in
    their span projected out before it is measured. ``seconds`` counts those derivatives too."""
    mean, spread, components = basis
    top = components[:k]
    shape = scenario.images.shape
    update_of = _replay(scenario.view, torch.float32)
    names = list(scenario.view.update)
    target = flatten(scenario.view.update, names)
    scales = _row_scales(scenario.view.update, names, "l2")  # ‖scales ⊙ Δ‖² is the per-layer L2

    def image(combination: Tensor) -> Tensor:
        residual = from_patches((mean + combination @ top).float(), shape, patch)
        return (scenario.painted + residual).clamp(0, 1)

    began = time.perf_counter()
    n_blocks = to_patches(scenario.painted, patch).shape[0]
    start = image(torch.zeros(n_blocks, k, dtype=torch.float64))
    ignored = torch.zeros(target.numel(), 0)
    if nuisance:
        generator = torch.Generator().manual_seed(seed)
        left_out, moves = spread[k:].float(), []
        for _ in range(nuisance):
            coefficients = torch.randn(n_blocks, len(left_out), generator=generator) * left_out
            texture = from_patches(coefficients @ components[k:].float(), shape, patch)
            move = torch.func.jvp(update_of, (start,), (texture,))[1]
            moves.append(move.detach() * scales)
        ignored = torch.linalg.qr(torch.stack(moves, dim=1))[0]  # orthonormal columns

    def objective(images: Tensor) -> Tensor:
        mismatch = (update_of(images) - target) * scales
        return (mismatch - ignored @ (ignored.T @ mismatch)).pow(2).sum()

    truth_residual = to_patches(scenario.images - scenario.painted, patch).double()
    best_image = image((truth_residual - mean) @ top.T)
    z = torch.zeros(n_blocks, k, dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.Adam([z], lr=lr)
    with torch.no_grad():
        kept = (float(objective(start)), start)
    for _ in range(iterations):
        optimiser.zero_grad()
        candidate = image(z)
        value = objective(candidate)
        value.backward()
        if float(value.detach()) < kept[0]:
            kept = (float(value.detach()), candidate.detach())
        optimiser.step()
    with torch.no_grad():
        return {
            "k": k,
            "nuisance": nuisance,
            "unknowns": z.numel(),
            "best_psnr": psnr(best_image, scenario.images),
            "best_objective": float(objective(best_image)),
            "start_psnr": psnr(start, scenario.images),
            "start_objective": float(objective(start)),
            "end_psnr": psnr(kept[1], scenario.images),
            "end_objective": kept[0],
            "seconds": time.perf_counter() - began,
        }


def low_frequency(images: Tensor, block: int) -> Tensor:
    """``images`` averaged over ``block``-px blocks and bilinearly upsampled back."""
    return F.interpolate(F.avg_pool2d(images, block), scale_factor=block, mode="bilinear")


def ranking_images(scenario: Scenario) -> list[tuple[str, Tensor]]:
    """Images of known distance from the truth, nearest first (the truth is read to build them)."""
    truth, painted = scenario.images, scenario.painted
    rows = [(f"truth + noise {db} dB", noisy(truth, db, seed=db)) for db in (60, 50, 40, 30)]
    for block in (2, 8, 16):
        corrected = (painted + low_frequency(truth - painted, block)).clamp(0, 1)
        rows.append((f"guess + true correction /{block}", corrected))
    # The truth with only its intensity changed: the first convolution feeds GroupNorm, which removes
    # each group's mean and scale, so the update barely sees a brightness or contrast change.
    for c in (0.95, 1.05):
        rows.append((f"truth × {c:g} (brightness)", (truth * c).clamp(0, 1)))
    mean = truth.mean(dim=(2, 3), keepdim=True)
    for c in (0.8, 1.2):
        rows.append((f"truth, contrast × {c:g} about its mean", (mean + c * (truth - mean)).clamp(0, 1)))
    # The ceiling of an attack that recovers every fine detail and keeps the guess's coarse field: the
    # guess's error above 8 px (a Gaussian of σ = 8 px) with the truth's detail below it.
    detail = truth - blur(truth, 8)
    rows.append(("guess's coarse field + true detail (σ 8 px)", (blur(painted, 8) + detail).clamp(0, 1)))
    rows.append(("painted guess", painted))
    rows.append(("uniform noise", torch.rand(truth.shape, generator=torch.Generator().manual_seed(1))))
    return rows


def affine_fit(images: Tensor, truth: Tensor) -> Tensor:
    """``images`` with each tile's channels mapped by the least-squares ``a·x + b`` onto ``truth``'s (an
    oracle): what an image would score if only its per-channel brightness and contrast were wrong."""
    x, y = images.flatten(2), truth.flatten(2)
    xc, yc = x - x.mean(-1, keepdim=True), y - y.mean(-1, keepdim=True)
    a = (xc * yc).sum(-1, keepdim=True) / xc.pow(2).sum(-1, keepdim=True).clamp_min(1e-12)
    return (a * xc + y.mean(-1, keepdim=True)).view_as(images).clamp(0, 1)


def mask_fit(scenario: Scenario, images: Tensor, iterations: int, lr: float = 0.1) -> dict[str, float]:
    """Fit the masks alone to the update with ``images`` held fixed: per-pixel logits from 0 (every
    pixel 0.5), Adam at ``lr`` on the update's squared L2 distance relative to its norm (smooth in the
    masks: the loss is BCE + soft Dice of the sigmoid), the iterate of lowest objective kept. Returns
    the mask Dice of that fit thresholded at 0.5, its objective, and the objective of the true masks
    under the same images (lower than the fit's: the fit stopped short; higher: at these images the
    update prefers other masks)."""
    view = scenario.view
    model = UNet.from_config(view.model)
    names = list(view.update)
    weights = {k: v.detach() for k, v in view.global_weights.items()}
    target = flatten(view.update, names).detach()
    norm = target.pow(2).sum()
    images = images.detach()

    def objective(masks: Tensor) -> Tensor:
        update = flatten(simulate_update(model, weights, images, masks, view.recipe), names)
        return (update - target).pow(2).sum() / norm

    logits = torch.zeros_like(scenario.masks, requires_grad=True)
    optimiser = torch.optim.Adam([logits], lr=lr)
    best, fitted = math.inf, scenario.masks
    for _ in range(iterations):
        optimiser.zero_grad()
        masks = torch.sigmoid(logits)
        value = objective(masks)
        value.backward()
        if float(value.detach()) < best:
            best, fitted = float(value.detach()), masks.detach()
        optimiser.step()
    binary, truth = (fitted > 0.5).float(), scenario.masks
    dice = 2 * (binary * truth).sum() / (binary.sum() + truth.sum()).clamp_min(1)
    with torch.no_grad():
        at_true = float(objective(truth))
    return {"dice": float(dice), "objective": best, "objective_at_true_masks": at_true}


def blur(images: Tensor, sigma: float) -> Tensor:
    """A separable Gaussian blur of standard deviation ``sigma`` px (reflected at the border)."""
    radius = int(3 * sigma)
    taps = torch.exp(-((torch.arange(-radius, radius + 1, dtype=images.dtype) / sigma) ** 2) / 2)
    taps = taps / taps.sum()
    channels = images.shape[1]
    across = taps.view(1, 1, 1, -1).repeat(channels, 1, 1, 1)
    images = F.conv2d(F.pad(images, (radius, radius, 0, 0), mode="reflect"), across, groups=channels)
    down = taps.view(1, 1, -1, 1).repeat(channels, 1, 1, 1)
    return F.conv2d(F.pad(images, (0, 0, radius, radius), mode="reflect"), down, groups=channels)


class SmoothReLU(nn.Module):
    """ReLU, or softplus(βx)/β while ``beta`` is set (shared by every instance): a surrogate whose
    update varies smoothly with the image, annealed towards the ReLU as β grows."""

    beta: float | None = None

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(x) if SmoothReLU.beta is None else F.softplus(x, beta=SmoothReLU.beta)


def _smoothable(model: nn.Module) -> nn.Module:
    for name, child in model.named_children():
        if isinstance(child, nn.ReLU):
            setattr(model, name, SmoothReLU())
        else:
            _smoothable(child)
    return model


def update_distance(view: ServerView, objective: str) -> Callable[[Tensor], Tensor]:
    """The objective of the searches below: the distance of the update ``images`` would give (through a
    copy of the model whose ReLUs :class:`SmoothReLU` can smooth) from the captured one, ``cosine`` or
    the relative squared L2 per layer (``l2``)."""
    model = _smoothable(UNet.from_config(view.model))
    names = list(view.update)
    weights = {k: v.detach() for k, v in view.global_weights.items()}
    masks = known_masks(view)
    target = flatten(view.update, names)
    blocks = _blocks(view.update, names, target)

    def distance(images: Tensor) -> Tensor:
        update = flatten(simulate_update(model, weights, images, masks, view.recipe), names)
        if objective == "cosine":
            return 1 - F.cosine_similarity(update, target, dim=0)
        return per_layer_l2(update, blocks)

    return distance


def _blocks(update: dict[str, Tensor], names: list[str], target: Tensor) -> list[tuple[Tensor, slice]]:
    """Each parameter tensor's slice of the flat ``target``, with the slice that selects it."""
    return [(target[i:j], slice(i, j)) for i, j in _spans(update, names)]


def per_layer_l2(update: Tensor, blocks: list[tuple[Tensor, slice]]) -> Tensor:
    """The relative squared L2 distance of a flat ``update`` from the target, averaged over parameter
    tensors (``blocks`` from :func:`_blocks`)."""
    return cast(Tensor, sum(((update[s] - t).pow(2).sum() / t.pow(2).sum()) for t, s in blocks)) / len(blocks)


def annealed_step(
    optimiser: torch.optim.Optimizer,
    distance: Callable[[Tensor], Tensor],
    image: Callable[[Tensor], Tensor],
    z: Tensor,
    i: int,
    iterations: int,
    *,
    lr: float,
    smooth: float,
) -> None:
    """Step ``i`` of ``iterations`` on ``distance(image(z))``: the surrogate's β at its point from
    ``smooth`` to 1000 (0: the ReLU), the step size cosine-decayed from ``lr``."""
    SmoothReLU.beta = smooth * (1000 / smooth) ** (i / iterations) if smooth else None
    for group in optimiser.param_groups:
        group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * i / iterations))
    optimiser.zero_grad()
    distance(image(z)).backward()
    optimiser.step()


def coarse_search(
    scenario: Scenario, *, stages: tuple[int, ...], smooth: float, objective: str, iterations: int, lr: float
) -> list[dict[str, float]]:
    """Coarse-to-fine from the painted guess: per stage, Adam (cosine-decayed step) on a correction at
    1/``block`` of the resolution, the surrogate annealed from β = ``smooth`` to 1000 (0: ReLU);
    each stage keeps its iterate (or start) of lowest ReLU objective and hands it to the next."""
    distance = update_distance(scenario.view, objective)
    correction, rows, began = torch.zeros_like(scenario.painted), [], time.perf_counter()
    for block in stages:
        z = F.avg_pool2d(correction, block).requires_grad_(True)

        def image(z: Tensor, block: int = block) -> Tensor:
            return (scenario.painted + F.interpolate(z, scale_factor=block, mode="bilinear")).clamp(0, 1)

        optimiser = torch.optim.Adam([z], lr=lr)
        with torch.no_grad():  # the stage's start competes too: a stage never ends worse than it began
            best = (float(distance(image(z))), z.detach().clone())
        for i in range(iterations):
            annealed_step(optimiser, distance, image, z, i, iterations, lr=lr, smooth=smooth)
            if (i + 1) % 20 == 0 or i + 1 == iterations:
                SmoothReLU.beta = None
                with torch.no_grad():
                    value = float(distance(image(z)))
                if value < best[0]:
                    best = (value, z.detach().clone())
        with torch.no_grad():
            correction = image(best[1]) - scenario.painted
        rows.append(
            {
                "block": block,
                "objective": best[0],
                "psnr": psnr(scenario.painted + correction, scenario.images),
                "affine_psnr": psnr(affine_fit(image(best[1]), scenario.images), scenario.images),
                "seconds": time.perf_counter() - began,
            }
        )
    SmoothReLU.beta = None
    return rows


def detail_search(
    scenario: Scenario, *, coarse_from: str, sigma: float, smooth: float, iterations: int, lr: float
) -> dict[str, float]:
    """How well can an image far from the truth match the update? The image is a fixed coarse field
    (the Gaussian blur of σ px of the truth, an oracle no attacker has, or of the guess) plus free
    detail, started from the guess's detail; Adam (cosine-decayed step) on the cosine objective, the
    ReLU smoothed as in :func:`coarse_search`. Reports the end's PSNR against the truth, its (ReLU)
    objective, and how far it moved from its start (PSNR of end against start)."""
    distance = update_distance(scenario.view, "cosine")
    coarse = blur(scenario.images if coarse_from == "truth" else scenario.painted, sigma)

    def image(z: Tensor) -> Tensor:
        return (coarse + z - blur(z, sigma)).clamp(0, 1)

    z = scenario.painted.clone().requires_grad_(True)
    start = image(z).detach()
    optimiser, began = torch.optim.Adam([z], lr=lr), time.perf_counter()
    for i in range(iterations):
        annealed_step(optimiser, distance, image, z, i, iterations, lr=lr, smooth=smooth)
    SmoothReLU.beta = None
    with torch.no_grad():
        end = image(z)
        return {
            "start_psnr": psnr(start, scenario.images),
            "start_objective": float(distance(start)),
            "end_psnr": psnr(end, scenario.images),
            "end_objective": float(distance(end)),
            "moved_psnr": psnr(end, start),
            "seconds": time.perf_counter() - began,
        }


@dataclass
class Pattern:
    """The activation pattern of one forward pass: every ReLU's gate (1 where its input is > 0) and
    every max-pool's winners, in call order. ``record`` takes them from a pass; ``replay`` makes later
    passes use them whatever their input (each ReLU then multiplies by its recorded gate, each pool
    reads its recorded winners): the update becomes a smooth function of the image. ``lift`` makes each
    ReLU multiply by a given soft gate in ``taken`` (variables of :func:`lifted_search`) and keeps its
    input; the pools then take their own winners."""

    mode: str | None = None  # None: the plain ReLU and max-pool
    taken: list[Tensor] = field(default_factory=list)
    at: int = 0
    inputs: list[Tensor] = field(default_factory=list)  # each ReLU's input, in "record" and "lift"

    def next(self) -> Tensor:
        self.at += 1
        return self.taken[self.at - 1]

    def record(self, model: nn.Module, weights: dict[str, Tensor], images: Tensor) -> list[Tensor]:
        """Take the pattern (and each ReLU's input) of one plain pass of ``model`` (patterned with this
        pattern) at ``weights`` on ``images``; returns the gates and winners, in call order."""
        self.mode, self.taken, self.inputs = "record", [], []
        try:
            with torch.no_grad():
                functional_call(model, weights, (images.detach(),))
        finally:
            self.mode = None
        return self.taken

    def relu_gates(self) -> list[Tensor]:
        """The recorded ReLU gates alone (the pools' winners are indices)."""
        return [t for t in self.taken if t.is_floating_point()]


class _PatternLayer(nn.Module):
    """A layer that records its choices into, or replays them from, a shared :class:`Pattern`."""

    def __init__(self, pattern: Pattern) -> None:
        super().__init__()
        self.pattern = pattern


class PatternReLU(_PatternLayer):
    """ReLU as ``x * gate``: the gate recorded from this pass, or replayed from the pattern."""

    def forward(self, x: Tensor) -> Tensor:
        if self.pattern.mode == "record":
            gate = (x > 0).to(x.dtype)
            self.pattern.taken.append(gate)
            self.pattern.inputs.append(x)
            return x * gate
        if self.pattern.mode == "lift":
            self.pattern.inputs.append(x)
        return x * self.pattern.next() if self.pattern.mode in ("replay", "lift") else F.relu(x)


class PatternPool(_PatternLayer):
    """2×2 max-pool whose winners are recorded from this pass, or replayed from the pattern."""

    def forward(self, x: Tensor) -> Tensor:
        if self.pattern.mode == "record":
            out, winners = F.max_pool2d(x, 2, return_indices=True)
            self.pattern.taken.append(winners)
            return out
        if self.pattern.mode == "replay":  # ("lift": the pool's own winners, as the plain pool)
            winners = self.pattern.next()
            return x.flatten(2).gather(2, winners.flatten(2)).view(winners.shape)
        return F.max_pool2d(x, 2)


def _patterned(model: nn.Module, pattern: Pattern) -> nn.Module:
    for name, child in model.named_children():
        if isinstance(child, nn.ReLU):
            setattr(model, name, PatternReLU(pattern))
        elif isinstance(child, nn.MaxPool2d):
            if child.kernel_size != 2 or child.stride != 2:
                raise ValueError("only the U-Net's 2×2 max-pool is patterned")
            setattr(model, name, PatternPool(pattern))
        else:
            _patterned(child, pattern)
    return model


def pattern_search(
    scenario: Scenario,
    pattern_of: Tensor | None,
    iterations: int,
    chunk: int = 20,
    swap: tuple[Tensor, frozenset[int]] | None = None,
) -> list[dict[str, float]]:
    """L-BFGS (strong-Wolfe line search, float64, free pixels, no regulariser) from the painted guess on
    the update's relative L2 per layer with the activation pattern frozen at ``pattern_of``'s (the
    truth's is the oracle an activation-pattern search would have to find), or, with ``None``, at the
    iterate's own, taken again every ``chunk`` iterations (what an attacker holds). Per ``chunk``:
    the iterations so far, the PSNR, the frozen objective, the true (ReLU) objective, and the share
    of gates and winners that differ from the truth's at the pattern used. ``swap = (image, slots)``
    takes the pattern tensors at those call-order slots (0 = the first ReLU) from ``image``'s pattern
    instead: which layers' gates must be right."""
    view, dtype = scenario.view, torch.float64
    pattern = Pattern()
    model = _patterned(UNet.from_config(view.model).to(dtype), pattern)
    names = list(view.update)
    weights = {k: v.detach().to(dtype) for k, v in view.global_weights.items()}
    masks = known_masks(view).to(dtype)
    blocks = _blocks(view.update, names, flatten(view.update, names).to(dtype))

    def distance(images: Tensor, mode: str | None) -> Tensor:
        pattern.mode, pattern.at = mode, 0
        try:
            update = flatten(simulate_update(model, weights, images, masks, view.recipe), names)
        finally:
            pattern.mode = None
        return per_layer_l2(update, blocks)

    def taken(images: Tensor) -> list[Tensor]:
        return pattern.record(model, weights, images.to(dtype))

    truth_pattern = taken(scenario.images)
    x = scenario.painted.to(dtype).clone().requires_grad_(True)

    def lbfgs() -> torch.optim.LBFGS:
        return torch.optim.LBFGS([x], lr=1, max_iter=chunk, history_size=50, line_search_fn="strong_wolfe")

    optimiser = lbfgs()

    def closure() -> Tensor:
        optimiser.zero_grad()
        value = distance(x, "replay")
        value.backward()
        return value

    rows, began = [], time.perf_counter()
    for done in range(chunk, iterations + 1, chunk):
        if pattern_of is None or done == chunk:  # a new pattern: a new objective, a fresh curvature memory
            pattern.taken = taken(x if pattern_of is None else pattern_of)
            if swap is not None:
                used, other = pattern.taken, taken(swap[0])
                pattern.taken = [other[k] if k in swap[1] else t for k, t in enumerate(used)]
            optimiser = lbfgs()
            wrong = sum(int((a != b).sum()) for a, b in zip(pattern.taken, truth_pattern, strict=True))
            share = wrong / sum(t.numel() for t in truth_pattern)
        optimiser.step(closure)
        with torch.no_grad():
            frozen, relu = float(distance(x, "replay")), float(distance(x, None))
        rows.append(
            {
                "iterations": done,
                "psnr": psnr(x.detach().float(), scenario.images),
                "ssim": float(score_reconstruction(x.detach().float(), scenario.images).ssim),
                "frozen_objective": frozen,
                "objective": relu,
                "pattern_wrong": share,
                "seconds": time.perf_counter() - began,
            }
        )
    return rows


def lifted_search(
    scenario: Scenario,
    iterations: int,
    *,
    lr_image: float = 0.003,
    lr_gates: float = 0.05,
    penalty: tuple[float, float] = (1e-3, 10.0),
    sharpness: float = 4.0,
    every: int = 50,
) -> list[dict[str, float]]:
    """A search for the activation pattern that reads no truth: every ReLU gate becomes a variable.

    The ReLUs of the attacker's copy multiply by soft gates ``sigmoid(θ)`` instead of their own, so the
    update is a smooth function of the image *and* the gates, and Adam moves both (free pixels, lr
    ``lr_image``; logits, lr ``lr_gates``) to fit the update's relative L2 per layer. A penalty ties the
    gates to the image's own pre-activations s (per layer, in units of their s.d. σ at the start):
    ``mean(relu(−s/σ)·g + relu(s/σ)·(1 − g))``, zero only where every gate is the image's own pattern;
    its weight grows geometrically from ``penalty[0]`` to ``penalty[1]``, so early on the gates may
    leave the image's pattern where the update asks and at the end they must agree with it (a penalty
    method for the constraint "the pattern is the image's"). Gates start at the painted guess's
    pre-activations, ``θ = clamp(sharpness · s/σ, ±6)``; max-pools take the iterate's own winners.
    Every ``every`` iterations: the PSNR and SSIM of the image; the share of ReLU gates that differ
    from the truth's pattern, of the variables (on the wrong side of ½, ``gates_wrong``) and of the
    image's own pattern (``own_wrong``); the fit, the penalty, and the true (ReLU) objective at the
    image."""
    view = scenario.view
    pattern = Pattern()
    model = _patterned(UNet.from_config(view.model), pattern)
    names = list(view.update)
    weights = {k: v.detach() for k, v in view.global_weights.items()}
    masks = known_masks(view)
    blocks = _blocks(view.update, names, flatten(view.update, names))

    def recorded(images: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """The ReLU gates and the ReLU inputs of a plain pass, in call order."""
        pattern.record(model, weights, images)
        return pattern.relu_gates(), pattern.inputs

    def share_wrong(gates: list[Tensor], reference: list[Tensor]) -> float:
        wrong = sum(int(((g > 0.5).to(r.dtype) != r).sum()) for g, r in zip(gates, reference, strict=True))
        return wrong / sum(r.numel() for r in reference)

    def update_distance(images: Tensor, gates: list[Tensor] | None) -> tuple[Tensor, list[Tensor]]:
        pattern.mode = "lift" if gates else None
        pattern.taken, pattern.at, pattern.inputs = gates or [], 0, []
        try:
            update = flatten(simulate_update(model, weights, images, masks, view.recipe), names)
        finally:
            pattern.mode = None
        return per_layer_l2(update, blocks), pattern.inputs

    truth_gates, _ = recorded(scenario.images)
    _, start = recorded(scenario.painted)
    scales = [float(t.std()) for t in start]
    logits = [(sharpness * t / s).clamp(-6, 6).requires_grad_() for t, s in zip(start, scales, strict=True)]
    x = scenario.painted.clone().requires_grad_(True)
    optimiser = torch.optim.Adam([{"params": [x], "lr": lr_image}, {"params": logits, "lr": lr_gates}])
    rows, began = [], time.perf_counter()
    for iteration in range(1, iterations + 1):
        weight = penalty[0] * (penalty[1] / penalty[0]) ** ((iteration - 1) / max(1, iterations - 1))
        gates = [torch.sigmoid(t) for t in logits]
        optimiser.zero_grad()
        fit, inputs = update_distance(x, gates)
        agree = [
            (F.relu(-s / c) * g + F.relu(s / c) * (1 - g)).mean()
            for s, g, c in zip(inputs, gates, scales, strict=True)
        ]
        disagreement = torch.stack(agree).mean()
        (fit + weight * disagreement).backward()
        optimiser.step()
        with torch.no_grad():
            x.clamp_(0, 1)
        if iteration % every == 0 or iteration == iterations:
            with torch.no_grad():
                own, _ = recorded(x)
                relu_objective, _ = update_distance(x, None)
            image = x.detach()
            rows.append(
                {
                    "iterations": iteration,
                    "penalty_weight": weight,
                    "psnr": psnr(image, scenario.images),
                    "ssim": float(score_reconstruction(image, scenario.images).ssim),
                    "gates_wrong": share_wrong([g.detach() for g in gates], truth_gates),
                    "own_wrong": share_wrong(own, truth_gates),
                    "fit": float(fit.detach()),
                    "disagreement": float(disagreement.detach()),
                    "objective": float(relu_objective),
                    "seconds": time.perf_counter() - began,
                }
            )
    return rows


def unsure_gates(scenario: Scenario, margins: tuple[float, ...]) -> list[dict[str, float]]:
    """Whether the painted guess's wrong ReLU gates are the ones it is unsure of: per margin m, the
    share of all gates whose pre-activation at the guess lies within m of 0 (in units of its layer's
    s.d.), and the share of the guess's wrong gates (against the truth's pattern) among them. A search
    that let only those gates move would have to hold nearly all the wrong ones with fewer free gates
    than the update has numbers."""
    pattern = Pattern()
    model = _patterned(UNet.from_config(scenario.view.model), pattern)
    weights = {k: v.detach() for k, v in scenario.view.global_weights.items()}

    pattern.record(model, weights, scenario.images)
    truth = pattern.relu_gates()
    pattern.record(model, weights, scenario.painted)
    guess, inputs = pattern.relu_gates(), pattern.inputs
    closeness = torch.cat([(s / s.std()).abs().flatten() for s in inputs])
    wrong = torch.cat([(a != g).flatten() for a, g in zip(truth, guess, strict=True)])
    if not wrong.any():
        raise ValueError("the guess's pattern is the truth's: no wrong gates to place")
    rows = []
    for m in margins:
        unsure = closeness < m
        rows.append(
            {
                "margin": m,
                "count": int(unsure.sum()),
                "gates": int(unsure.sum()) / unsure.numel(),
                "wrong_held": int(wrong[unsure].sum()) / int(wrong.sum()),
                "wrong": int(wrong.sum()) / wrong.numel(),
            }
        )
    return rows


def _replay(view: ServerView, dtype: torch.dtype) -> Callable[[Tensor], Tensor]:
    """The flat update (in ``view.update``'s name order) that candidate tiles would give, replayed
    from ``view``'s global weights and recipe with its masks, in ``dtype``."""
    model = UNet.from_config(view.model).to(dtype)
    names = list(view.update)
    weights = {k: v.detach().to(dtype) for k, v in view.global_weights.items()}
    masks = known_masks(view).to(dtype)

    def update_of(images: Tensor) -> Tensor:
        return flatten(simulate_update(model, weights, images, masks, view.recipe), names)

    return update_of


def _row_scales(update: dict[str, Tensor], names: list[str], objective: str) -> Tensor:
    """Per-coordinate scales that make ``‖scales ⊙ Δ‖²`` the objective's second-order part for an
    update change Δ: 1 / √(2‖u‖²) for ``cosine`` (after projecting out u's direction), and
    1 / √(L · max(‖u_l‖², floor)) per parameter tensor l for the per-layer relative ``l2`` (the
    attack's floor, 10⁻⁶ of the mean squared norm per tensor)."""
    target = flatten(update, names)
    if objective == "cosine":
        return torch.full_like(target, 1.0 / (math.sqrt(2.0) * float(target.norm())))
    spans = _spans(update, names)
    floor = float(target.pow(2).sum()) * 1e-6 / len(spans)
    rows = torch.empty_like(target)
    for i, j in spans:
        rows[i:j] = 1.0 / math.sqrt(len(spans) * max(float(target[i:j].pow(2).sum()), floor))
    return rows


def smooth_and_actual(
    view: ServerView, truth: Tensor, direction: Tensor, sizes: list[float], objective: str
) -> list[tuple[float, float]]:
    """For moves ``size · direction`` from the truth, the objective's smooth second-order part
    ``‖J d‖²`` (a forward-mode derivative, scaled as :func:`update_jacobian_gram`'s G, so it equals
    ``dᵀ G d``) and the objective itself, both in float64 against the truth's own float64 update (so
    float32 rounding plays no part). On a smooth network the two agree for small moves. Where the
    objective is much larger, activations that switch (a ReLU's sign, a max-pool's winner) make the
    update jump, and a gradient, which sees only the smooth part, cannot see it."""
    from torch.func import jvp

    names = list(view.update)
    update_of = _replay(view, torch.float64)
    truth = truth.double()
    at_truth = update_of(truth)
    rows = _row_scales(view.update, names, objective).double()
    unit = at_truth / at_truth.norm()
    out = []
    for size in sizes:
        move = direction.double() * size
        change = jvp(update_of, (truth,), (move,))[1]
        if objective == "cosine":
            change = change - (change @ unit) * unit
            actual = float(1 - F.cosine_similarity(update_of(truth + move), at_truth, dim=0))
        else:
            actual = float((rows * (update_of(truth + move) - at_truth)).pow(2).sum())
        out.append((float((rows * change).pow(2).sum()), actual))
    return out


def update_jacobian_gram(
    view: ServerView, truth: Tensor, *, region: int, objective: str, chunk: int = 64
) -> tuple[Tensor, Tensor]:
    """The Gauss–Newton matrix ``G = JᵀJ`` of ``objective`` at the truth, over the central
    ``region``² px of the tile's pixels (every other pixel held at the truth), and those pixels'
    flat indices into ``truth``.

    ``J`` is the derivative of the update (one tile, ``view``'s recipe and weights) with respect to
    those pixels, its rows scaled so that ``dᵀ G d`` is the objective's second-order change for a
    move ``d``: per-layer relative L2 (``l2``: each parameter tensor's rows over its captured
    update's norm, as the attack's ``per_layer`` L2 with its floor) or 1 − cosine (``cosine``: the
    captured update's own direction projected out, over √2 its norm). The objective is 0 at the
    truth, so G is its Hessian there, up to the ReLUs' kinks (a move that flips an activation jumps).
    Columns come from forward-mode derivatives (``torch.func.jvp``) through the simulated update,
    ``chunk`` at a time; G is summed in float64.
    """
    from torch.func import jvp, vmap

    names = list(view.update)
    replay = _replay(view, torch.float32)
    target = flatten(view.update, names)
    rows = _row_scales(view.update, names, objective)
    direction = target / target.norm()
    h, w = truth.shape[-2:]
    top, left = (h - region) // 2, (w - region) // 2
    inside = torch.zeros_like(truth)
    inside[..., top : top + region, left : left + region] = 1.0
    outside = truth * (1 - inside)
    pads = (left, w - left - region, top, h - top - region)
    start = truth[..., top : top + region, left : left + region].contiguous()

    def update_of(patch: Tensor) -> Tensor:
        return replay(outside + F.pad(patch, pads))

    def column(tangent: Tensor) -> Tensor:
        return jvp(update_of, (start,), (tangent,))[1]

    n = start.numel()
    jacobian = torch.empty(n, target.numel())
    for i in range(0, n, chunk):
        basis = torch.zeros(min(chunk, n - i), n)
        basis[:, i : i + chunk].fill_diagonal_(1.0)
        cols = vmap(column)(basis.view(-1, *start.shape))
        if objective == "cosine":
            cols = cols - (cols @ direction)[:, None] * direction
        jacobian[i : i + chunk] = cols * rows
    gram = torch.zeros(n, n, dtype=torch.float64)
    for i in range(0, jacobian.shape[1], 8192):
        block = jacobian[:, i : i + 8192].double()
        gram += block @ block.T
    index = torch.arange(truth.numel()).view_as(truth)[..., top : top + region, left : left + region]
    return gram, index.reshape(-1)


def spectrum_rows(scenario: Scenario, gram: Tensor, index: Tensor) -> list[tuple[str, str]]:
    """What the update can see of the tile, read off ``gram`` (:func:`update_jacobian_gram`).

    For a level ε of the objective, a direction (an eigenvector of G, eigenvalue λ) is *seen* when
    moving the whole guess's error ‖e‖ along it raises the objective above ε (λ‖e‖² > ε). The
    linearised ceiling keeps the guess's error in the unseen directions and removes it from the seen
    ones: the PSNR an attack would reach if it fixed exactly what the update sees at that level,
    and nothing else, with the objective a quadratic (the ReLUs' jumps are not in it: see
    :func:`smooth_and_actual`)."""
    values, vectors = torch.linalg.eigh(gram)
    values = values.clamp_min(0.0)
    error = (scenario.images - scenario.painted).reshape(-1)[index].double()
    coefficients = vectors.T @ error
    size = error.numel()
    total = float(error.pow(2).sum())

    def db(squared: float) -> str:
        return f"{10 * math.log10(size / max(squared, 1e-30)):.1f}"

    top = float(values[-1])
    rows = [
        ("unknowns (pixels × channels)", str(size)),
        ("largest singular value √λ", f"{math.sqrt(top):.3g}"),
    ]
    for ratio in (1e-1, 1e-2, 1e-3, 1e-4, 1e-6):
        rows.append(
            (f"singular values above {ratio:g} × the largest", str(int((values > top * ratio**2).sum())))
        )
    rows.append(("painted guess's PSNR over the region", db(total)))
    for level in (1e-1, 1e-2, 1e-3, 1e-4, 1e-6):
        seen = values * total > level
        unseen = float(coefficients[~seen].pow(2).sum())
        rows.append(
            (f"ceiling at ε = {level:g}: seen directions / PSNR dB", f"{int(seen.sum())} / {db(unseen)}")
        )
    return rows


def _spans(update: dict[str, Tensor], names: list[str]) -> list[tuple[int, int]]:
    """(start, end) of each parameter in the flattened update."""
    spans, start = [], 0
    for name in names:
        spans.append((start, start + update[name].numel()))
        start += update[name].numel()
    return spans


def rgap_counts(model: nn.Module, images: Tensor) -> list[dict[str, Any]]:
    """R-GAP's count per convolution (Zhu & Blaschko 2021), last layer first, as its recursion runs.

    R-GAP rebuilds a layer's input from that layer's weight gradient, which is linear in the input once
    the gradient at the layer's output is known, and it starts at the last layer, where that gradient
    follows from the label. A layer can be solved so only when its gradient gives at least as many
    equations (``out × in × k² + out`` with the bias) as its input has unknowns (``N × in × H × W``),
    before the forward pass's own constraints from the layer above (at most ``N × out × H' × W'``,
    fewer behind a ReLU; listed separately). Rows: the layer, its gradient equations, the upper bound of
    those forward constraints, its input's unknowns. A plain count on shapes: no update is simulated.
    """
    rows: list[dict[str, Any]] = []

    def count(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
            conv = cast(nn.Conv2d, module)
            weight = conv.weight
            rows.append(
                {
                    "layer": name,
                    "weight": tuple(weight.shape),
                    "equations": weight.numel() + (conv.bias.numel() if conv.bias is not None else 0),
                    "forward": output.numel(),
                    "unknowns": inputs[0].numel(),
                }
            )

        return hook

    hooks = [
        m.register_forward_hook(count(name)) for name, m in model.named_modules() if isinstance(m, nn.Conv2d)
    ]
    try:
        with torch.no_grad():
            model(images)
    finally:
        for h in hooks:
            h.remove()
    return rows[::-1]


def table_header(*columns: str) -> None:
    """Print a Markdown table's header row and its separator."""
    print(f"| {' | '.join(columns)} |\n|{'---|' * len(columns)}")


def _load() -> list[str]:
    with open("/proc/loadavg") as f:
        return f.read().split()[:3]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=150, help="signed-Adam iterations")
    parser.add_argument("--refine", type=int, default=150, help="L-BFGS iterations of the new method")
    parser.add_argument("--methods", default="old,new")
    parser.add_argument("--tiles", default="1,4")
    parser.add_argument("--image", default="stain", help="image model of every method")
    parser.add_argument("--regs", default="on,off")
    parser.add_argument("--segment", action="store_true", help="only the painted→truth line profile")
    parser.add_argument("--starts", default="40,30,25,painted")
    parser.add_argument("--ranking", action="store_true", help="only the objective at known distances")
    parser.add_argument("--coarse", action="store_true", help="only the coarse-to-fine search")
    parser.add_argument("--detail", default="", help="only the detail search, coarse field of: truth,guess")
    parser.add_argument("--sigma", type=float, default=8.0, help="--detail: blur of the coarse field, px")
    parser.add_argument("--smooth", type=float, default=5.0, help="--coarse: first softplus β (0 = ReLU)")
    parser.add_argument(
        "--objective", default="l2", help="--coarse, --spectrum, --jumps: l2 (relative, per layer) or cosine"
    )
    parser.add_argument("--stages", default="16,8,4,2,1", help="--coarse: block sizes, coarse first")
    parser.add_argument("--lr", type=float, default=0.02, help="--coarse: Adam step on the correction")
    parser.add_argument(
        "--langevin",
        default="0",
        help="main table: iterate noise sizes to try (comma-separated; 0 = none), see LangevinInversion",
    )
    parser.add_argument(
        "--spectrum",
        type=int,
        default=0,
        help="only the update's Jacobian spectrum over the central N×N px of one tile (64 = all of it)",
    )
    parser.add_argument(
        "--activation",
        default="relu",
        choices=["relu", "gelu"],
        help="the U-Net's activation ([model] activation): gelu shows the same views on a smooth network",
    )
    parser.add_argument(
        "--jumps",
        action="store_true",
        help="only the objective's smooth part against the objective itself for moves of 120–40 dB",
    )
    parser.add_argument(
        "--learned-prior",
        action="store_true",
        help="only the painted guess against a mask-conditioned linear guess learned from public tiles",
    )
    parser.add_argument(
        "--mask-fit",
        action="store_true",
        help="only the masks fitted to the update under images of known distance from the truth",
    )
    parser.add_argument(
        "--pattern",
        default="",
        help="only L-BFGS with the activation pattern frozen at the pattern of: truth (the oracle), 40/30/25 "
        "(the truth plus that much noise), painted, iterate (its own, taken again every 20 iterations)",
    )
    parser.add_argument(
        "--lifted",
        action="store_true",
        help="only the lifted pattern search: ReLU gates as variables, tied to the image by a rising penalty",
    )
    parser.add_argument(
        "--subspace",
        default="",
        help="only the search inside a linear prior from public tiles: k components per 8 px block (4,8,32)",
    )
    parser.add_argument(
        "--nuisance",
        default="0",
        help="--subspace: random left-out textures whose effect on the update the objective ignores (0,512)",
    )
    parser.add_argument(
        "--swap-slots",
        default="",
        help="--pattern: groups of pattern slots (call order, 0 = the first ReLU; '/' between groups, ',' "
        "within), each run taking those slots from the painted guess's pattern, e.g. 0,1/2/3,4",
    )
    parser.add_argument(
        "--rank",
        action="store_true",
        help="only R-GAP's count: each convolution's gradient equations against its input's unknowns",
    )
    parser.add_argument(
        "--sensor-noise",
        type=float,
        default=SENSOR_NOISE,
        help="s.d. of the data's sensor noise (0 = the same tiles without it); every view uses that data",
    )
    parser.add_argument(
        "--noise-floor",
        action="store_true",
        help="only the PSNR of the tiles' noise-free rendering: what an attack that rebuilds everything "
        "but the sensor noise scores, beside the painted guess and the targets",
    )
    parser.add_argument(
        "--weights",
        type=Path,
        default=None,
        help="global weights of a captured round (RUN/captures/round-NNNN/global.safetensors) to attack at, "
        "instead of the round-1 initialisation",
    )
    args = parser.parse_args()
    scenario_of = partial(
        default_scenario, weights=args.weights, activation=args.activation, sensor_noise=args.sensor_noise
    )
    print(
        f"threads {torch.get_num_threads()} (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}); "
        f"load {_load()}"
    )
    if args.rank:
        table_header(
            "tiles", "layer (R-GAP's order)", "weight", "gradient equations", "forward constraints ≤",
            "input unknowns", "equations / unknowns",
        )  # fmt: skip
        for n in (int(t) for t in args.tiles.split(",")):
            scenario = scenario_of(n)
            model = UNet.from_config(ModelConfig(activation=args.activation))
            rows = rgap_counts(model, scenario.images)
            for r in rows:
                cells = [r["layer"], "×".join(map(str, r["weight"])), f"{r['equations']:,}"]
                cells += [f"{r['forward']:,}", f"{r['unknowns']:,}", f"{r['equations'] / r['unknowns']:.3g}"]
                print(f"| {n} | {' | '.join(cells)} |", flush=True)
            total, pixels = sum(p.numel() for p in model.parameters()), scenario.images.numel()
            whole = f"{total:,} | | {pixels:,} (the tiles) | {total / pixels:.3g}"
            print(f"| {n} | the whole update | | {whole} |")
        return
    if args.spectrum:
        scenario = scenario_of(1)
        began = time.perf_counter()
        gram, index = update_jacobian_gram(
            scenario.view, scenario.images, region=args.spectrum, objective=args.objective
        )
        print(f"G over {args.spectrum}² px, objective {args.objective}: {time.perf_counter() - began:.0f} s")
        print("| what | value |\n|---|---|")
        for label, value in spectrum_rows(scenario, gram, index):
            print(f"| {label} | {value} |", flush=True)
        return
    if args.jumps:
        # One random direction, scaled: a smooth objective grows ×100 per 20 dB, a jump-ruled one ×10.
        print("| tiles | objective | move dB | smooth part ‖J d‖² | objective | ratio |")
        print("|---|---|---|---|---|---|")
        for n in (int(t) for t in args.tiles.split(",")):
            scenario = scenario_of(n)
            direction = torch.randn(scenario.images.shape, generator=torch.Generator().manual_seed(0))
            dbs = [120.0, 100.0, 80.0, 60.0, 40.0]
            sizes = [10 ** (-db / 20) for db in dbs]
            pairs = smooth_and_actual(scenario.view, scenario.images, direction, sizes, args.objective)
            for db, (smooth, actual) in zip(dbs, pairs, strict=True):
                print(
                    f"| {n} | {args.objective} | {db:g} | {smooth:.3g} | {actual:.3g} | "
                    f"{actual / smooth:.3g} |",
                    flush=True,
                )
        return
    if args.mask_fit:
        print("| tiles | image | image dB | mask Dice | objective | at the true masks | s |")
        print("|---|---|---|---|---|---|---|")
        for n in (int(t) for t in args.tiles.split(",")):
            scenario = scenario_of(n)
            truth = scenario.images
            mean = truth.mean(dim=(0, 2, 3), keepdim=True).expand_as(truth)
            held = [("truth", truth)]
            held += [(f"truth + noise {db} dB", noisy(truth, db, seed=db)) for db in (40, 30, 25, 20)]
            held.append(("the tiles' mean colour", mean))
            for label, start in held:
                began = time.perf_counter()
                r = mask_fit(scenario, start, args.iterations)
                db = psnr(start, truth)
                print(
                    f"| {n} | {label} | {'∞' if math.isinf(db) else f'{db:.1f}'} | {r['dice']:.3f} | "
                    f"{r['objective']:.3g} | {r['objective_at_true_masks']:.3g} | "
                    f"{time.perf_counter() - began:.0f} |",
                    flush=True,
                )
        return
    if args.pattern:
        groups: list[frozenset[int] | None] = [
            frozenset(int(k) for k in g.split(",")) for g in args.swap_slots.split("/") if g
        ]
        print("| tiles | pattern of | wrong | iterations | dB | SSIM | frozen obj | objective | s |")
        print("|---|---|---|---|---|---|---|---|---|")
        for n in (int(t) for t in args.tiles.split(",")):
            scenario = scenario_of(n)
            sources: dict[str, Tensor | None] = {"truth": scenario.images, "painted": scenario.painted}
            for source in args.pattern.split(","):
                if source == "iterate":
                    image = None
                elif source in sources:
                    image = sources[source]
                else:
                    image = noisy(scenario.images, float(source), seed=int(source))
                for group in groups or [None]:
                    swap = None if group is None else (scenario.painted, group)
                    label = source if group is None else f"{source}, slots {sorted(group)} the guess's"
                    rows = pattern_search(scenario, image, args.iterations, swap=swap)
                    for r in rows[max(1, len(rows) // 5) - 1 :: max(1, len(rows) // 5)]:
                        cells = [
                            f"{r['pattern_wrong']:.2%}",
                            str(r["iterations"]),
                            f"{r['psnr']:.2f}",
                            f"{r['ssim']:.3f}",
                        ]
                        cells += [
                            f"{r['frozen_objective']:.3g}",
                            f"{r['objective']:.3g}",
                            f"{r['seconds']:.0f}",
                        ]
                        print(f"| {n} | {label} | {' | '.join(cells)} |", flush=True)
        return
    if args.subspace:
        table_header(
            "tiles", "k per block", "nuisance textures", "unknowns", "prior's best image dB (oracle)",
            "its objective", "start dB", "start objective", "search dB (lowest objective)", "its objective",
            "s",
        )  # fmt: skip
        for n in (int(t) for t in args.tiles.split(",")):
            scenario = scenario_of(n)
            site = attacked_site(n, sensor_noise=args.sensor_noise)  # its held-out tiles are public
            guesses = painted_guess(site.test.masks, public_statistics(site))
            basis = residual_basis(site.test.images, guesses)
            for k, m in product(
                (int(v) for v in args.subspace.split(",")), (int(v) for v in args.nuisance.split(","))
            ):
                r = subspace_search(scenario, basis, k, args.iterations, nuisance=m)
                cells = [
                    str(k),
                    str(m),
                    f"{r['unknowns']:,}",
                    f"{r['best_psnr']:.2f}",
                    f"{r['best_objective']:.3g}",
                ]
                cells += [f"{r['start_psnr']:.2f}", f"{r['start_objective']:.3g}", f"{r['end_psnr']:.2f}"]
                cells += [f"{r['end_objective']:.3g}", f"{r['seconds']:.0f}"]
                print(f"| {n} | {' | '.join(cells)} |", flush=True)
        return
    if args.lifted:
        table_header(
            "tiles", "iterations", "penalty weight", "dB", "SSIM", "gates wrong", "image's own wrong", "fit",
            "disagreement", "ReLU objective", "s",
        )  # fmt: skip
        for n in (int(t) for t in args.tiles.split(",")):
            scenario = scenario_of(n)
            for u in unsure_gates(scenario, (0.1, 0.3, 0.5, 1.0)):
                print(
                    f"unsure gates, |s/σ| < {u['margin']:g} at the guess: {u['count']:,} "
                    f"({u['gates']:.1%} of all), holding {u['wrong_held']:.1%} of its wrong ones "
                    f"({u['wrong']:.2%} of all gates)"
                )
            at_guess = score_reconstruction(scenario.painted, scenario.images)
            guess_cells = f"{float(at_guess.psnr):.2f} | {float(at_guess.ssim):.3f}"
            print(f"| {n} | 0 (painted guess) | | {guess_cells} | | | | | | |")
            for r in lifted_search(scenario, args.iterations, every=max(1, args.iterations // 8)):
                cells = [
                    str(r["iterations"]),
                    f"{r['penalty_weight']:.3g}",
                    f"{r['psnr']:.2f}",
                    f"{r['ssim']:.3f}",
                ]
                cells += [f"{r['gates_wrong']:.2%}", f"{r['own_wrong']:.2%}", f"{r['fit']:.3g}"]
                cells += [f"{r['disagreement']:.3g}", f"{r['objective']:.3g}", f"{r['seconds']:.0f}"]
                print(f"| {n} | {' | '.join(cells)} |", flush=True)
        return
    if args.noise_floor:
        table_header(
            "tiles", "noise-free rendering dB", "painted guess dB", "guess vs noise-free dB", "target",
            "structure needed dB",
        )  # fmt: skip
        for n in (int(t) for t in args.tiles.split(",")):
            row = noise_floor(n)
            for gain in (3, 10):
                need = row[f"structure +{gain}"]
                cells = [f"{row[k]:.2f}" for k in ("noise_free", "guess", "guess_vs_noise_free")]
                cells += [
                    f"+{gain} dB = {row['guess'] + gain:.2f}",
                    "∞" if math.isinf(need) else f"{need:.1f}",
                ]
                print(f"| {n} | {' | '.join(cells)} |", flush=True)
        return
    if args.learned_prior:
        print("| tiles | window px | ridge | learned dB | learned SSIM | painted dB | painted SSIM |")
        print("|---|---|---|---|---|---|---|")
        for n in (int(t) for t in args.tiles.split(",")):
            scenario = default_scenario(n)
            painted = score_reconstruction(scenario.painted, scenario.images)
            for radius in (0, 2, 4, 7):
                for ridge in (0.01, 100.0):
                    learned = score_reconstruction(learned_prior(n, radius, ridge), scenario.images)
                    scores = (learned.psnr, learned.ssim, painted.psnr, painted.ssim)
                    print(
                        f"| {n} | {2 * radius + 1} | {ridge:g} | "
                        + " | ".join(f"{float(v):.{2 if i % 2 == 0 else 3}f}" for i, v in enumerate(scores))
                        + " |",
                        flush=True,
                    )
        return
    if args.ranking:
        print("| tiles | image | PSNR dB | cosine | relative L2 per layer |\n|---|---|---|---|---|")
        for n in (int(t) for t in args.tiles.split(",")):
            scenario = scenario_of(n)
            free = {**REGULARISERS["off"], "image": "pixels"}
            judges = [inverting_gradients(**{**METHODS[m], **free}) for m in ("old", "new")]
            for label, images in ranking_images(scenario):
                values = " | ".join(f"{j.objective_at(scenario.view, images):.3g}" for j in judges)
                print(f"| {n} | {label} | {psnr(images, scenario.images):.1f} | {values} |", flush=True)
        return
    if args.detail:
        print(
            "| tiles | coarse field of | smooth β0 | start dB | start obj | end dB | end obj | moved dB | s |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        for n in (int(t) for t in args.tiles.split(",")):
            scenario = scenario_of(n)
            for source in args.detail.split(","):
                r = detail_search(
                    scenario,
                    coarse_from=source,
                    sigma=args.sigma,
                    smooth=args.smooth,
                    iterations=args.iterations,
                    lr=args.lr,
                )
                cells = [f"{r['start_psnr']:.1f}", f"{r['start_objective']:.3g}", f"{r['end_psnr']:.1f}"]
                cells += [f"{r['end_objective']:.3g}", f"{r['moved_psnr']:.1f}", f"{r['seconds']:.0f}"]
                print(f"| {n} | {source} | {args.smooth:g} | {' | '.join(cells)} |", flush=True)
        return
    if args.coarse:
        columns = ("tiles", "objective", "smooth β0", "block", "end obj (ReLU)", "end dB", "oracle affine dB")
        print("| " + " | ".join((*columns, "guess dB", "s")) + " |")
        print("|---|---|---|---|---|---|---|---|---|")
        for n in (int(t) for t in args.tiles.split(",")):
            scenario = scenario_of(n)
            stages = tuple(int(b) for b in args.stages.split(","))
            guess = psnr(scenario.painted, scenario.images)
            rows = coarse_search(
                scenario,
                stages=stages,
                smooth=args.smooth,
                objective=args.objective,
                iterations=args.iterations,
                lr=args.lr,
            )
            for r in rows:
                print(
                    f"| {n} | {args.objective} | {args.smooth:g} | 1/{r['block']} | {r['objective']:.3g} | "
                    f"{r['psnr']:.1f} | {r['affine_psnr']:.1f} | {guess:.1f} | {r['seconds']:.0f} |",
                    flush=True,
                )
        return
    if args.segment:
        print("| tiles | method | t | PSNR dB | objective |\n|---|---|---|---|---|")
        for n in (int(t) for t in args.tiles.split(",")):
            scenario = scenario_of(n)
            for method in args.methods.split(","):
                for along, at_db, at_objective in segment_profile(scenario, METHODS[method]):
                    print(f"| {n} | {method} | {along:g} | {at_db:.1f} | {at_objective:.3g} |", flush=True)
        return
    header = "| tiles | method | reg | Langevin σ | start | start dB | end dB | end obj | obj@truth | s |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for n in (int(t) for t in args.tiles.split(",")):
        scenario = scenario_of(n)
        wanted = args.starts.split(",")
        starts = [
            (f"truth+noise {db} dB", noisy(scenario.images, float(db), seed=int(db)))
            for db in wanted
            if db != "painted"
        ]
        if "painted" in wanted:
            starts.append(("painted guess", scenario.painted))
        for method in args.methods.split(","):
            for reg in args.regs.split(","):
                reg_settings = REGULARISERS[reg]
                settings = {
                    "iterations": args.iterations,
                    "image": args.image,
                    **METHODS[method],
                    **({"refine": args.refine} if method == "lbfgs" else {}),
                    **reg_settings,
                }
                for (label, start), sigma in product(starts, (float(v) for v in args.langevin.split(","))):
                    r = run_case(scenario, start, settings, langevin=sigma)
                    print(
                        f"| {n} | {method} | {reg} | {sigma:g} | {label} | "
                        f"{psnr(start, scenario.images):.1f} | "
                        f"{r['end_psnr']:.1f} | {r['end_objective']:.3g} | {r['objective_at_truth']:.3g} | "
                        f"{r['seconds']:.0f} |",
                        flush=True,
                    )
    print(f"load {_load()}")


if __name__ == "__main__":
    main()

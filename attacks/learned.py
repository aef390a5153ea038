"""Learned inversion (after Wu et al. 2023, "Learning to Invert"): an honest server with public tiles.

The gradient attacks descend the update's distance and, through a ReLU U-Net, end at or below the
painted-mask guess even on one tile (``benchmarks/RESULTS.md``, "The activation pattern is the whole
obstacle"). This attack descends nothing. The server simulates the client's round, with the same
global weights and local recipe, on public tiles it may legitimately hold, one tile per round, and
fits the map from such an update to its tile; then it applies the map to the captured update.

* **The guess without the update, from the same public tiles** (:func:`fit_window_ridge`): each
  pixel's colour as a linear function of the mask in the (2r + 1)² window around it. With public
  tiles of the site's look it beats the painted guess, and it is then the bar this attack must clear
  (the attack table prints the margin over it); where it does not, the painted guess is the bar.
* **The map**: kernel ridge regression from the update (each parameter tensor divided by its RMS
  over the public updates, a linear kernel) to the tile's residual over that guess. The ridge is
  picked on held-back public tiles (``validation``), never on the attacked one.

It maps a one-tile update to that tile: one attacked tile, one round. With the masks unknown a second
map, from the same updates to the public tiles' masks, gives the mask (:func:`fit_mask_map`), and the
image map reads the residual over the public tiles' mean image, its own guess then. The public tiles
come with the view (:attr:`~attacks.threat_model.ServerView.public_tiles`): on the embedded synthetic
data the attack workflow draws them from the generator with the attacked site's stain at a seed of
their own (granting the stain makes the stronger attacker); from a folder the server holds
(``public_data``), it draws them from that folder, and the attack first moves their colours to the
site's published ones (``match_colours``). Its leakage is read against the stronger of its own
guess and the view's prior (the painted-mask guess; the mean colour with the masks unknown), both of
which it holds. When the client's defense noises its update, the server releases every simulated
update the same way, from the defense's published settings (``ServerView.release``: the defense
plugin's ``release_simulated``), and fits the map on those.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.func import vmap

from attacks.base import ATTACKS, Attack, AttackConfig, RunOptions
from attacks.simulate import LocalRecipe, Params, flatten, simulate_update
from attacks.threat_model import Reconstruction, ServerView
from feddp_eval.errors import ConfigError
from feddp_eval.models.unet import UNet
from feddp_eval.plugins import KnownLeak

RIDGES = (1e-3, 1e-2, 1e-1, 1.0, 10.0)  # relative to the kernel's mean diagonal


@dataclass(frozen=True)
class LearnedInversionConfig(AttackConfig):
    """Learned inversion settings (``iterations``, ``restarts`` and the image settings do not apply).

    Attributes:
        public_tiles: Public tiles the map is fitted on (each a simulated one-tile round). More fit a
            better map, slowly (RESULTS.md: +0.24 dB over the learned guess on held-out tiles per
            doubling, from 1,000 to 8,000) at ~30 ms and 0.5 MB each, and the fit grows as their square.
        validation: Further public tiles that pick the ridge (never the attacked tile).
        radius: Mask window (px) of the guess learned from the same public tiles.
        public_data: A folder of ``images/`` + ``masks/`` pairs the server holds (a public dataset,
            none of them a client's tile), cut into tiles as ``--data`` is; the attack draws
            ``public_tiles + validation`` of them. Empty: the embedded generator with the attacked
            site's stain, on synthetic data only. Needed to attack a folder's (``--data``) sites.
        match_colours: Move the public tiles' colours, one affine map per channel, so that their mean
            nuclei and background colours become the site's published ones (the painted guess's; with
            the masks unknown, a shift to the site's mean colour):
            ``auto`` does it for a ``public_data`` folder, whose look is not the site's, and not for
            the generator's tiles, drawn with the site's stain.
    """

    public_tiles: int = 2000
    validation: int = 200
    radius: int = 7
    public_data: str = ""
    match_colours: Literal["auto", "on", "off"] = "auto"

    def __post_init__(self) -> None:
        super().__post_init__()
        problems = []
        if self.public_tiles < 2:
            problems.append(f"`public_tiles` must be >= 2, but got {self.public_tiles}")
        if self.validation < 1:
            problems.append(f"`validation` must be >= 1 tile, but got {self.validation}")
        if self.radius < 0:
            problems.append(f"`radius` must be >= 0 px, but got {self.radius}")
        if self.match_colours not in ("auto", "on", "off"):
            problems.append(f"`match_colours` must be auto, on or off, but got {self.match_colours!r}")
        if problems:
            raise ConfigError(problems)


def one_tile_updates(
    model: UNet,
    weights: Params,
    recipe: LocalRecipe,
    images: Tensor,
    masks: Tensor,
    *,
    chunk: int = 32,
    progress: Callable[[int, int], None] | None = None,
) -> Tensor:
    """(N, P): the flat update a one-tile client following ``recipe`` would send for each tile."""
    if {slot for batch in recipe.batches for slot in batch} - {0}:
        raise ValueError("a one-tile update's recipe uses slot 0 alone")
    names = list(weights)

    def update(x: Tensor, m: Tensor) -> Tensor:
        return flatten(simulate_update(model, weights, x[None], m[None], recipe), names)

    out = torch.empty(len(images), sum(w.numel() for w in weights.values()), dtype=images.dtype)
    with torch.no_grad():
        for done in range(0, len(images), chunk):
            end = min(done + chunk, len(images))
            out[done:end] = vmap(update)(images[done:end], masks[done:end]).cpu()
            if progress:
                progress(end, len(images))
    return out


def tensor_scales(updates: Tensor, sizes: list[int], chunk: int = 64) -> Tensor:
    """(P,): each parameter tensor's RMS over ``updates``, repeated over its entries, so that every
    tensor weighs alike in the kernel whatever its gradient's scale. Squares are summed in float64,
    ``chunk`` updates at a time (a float64 copy of every update at once would double the attack's
    peak memory)."""
    squares = torch.zeros(len(sizes), dtype=torch.float64)
    for rows in updates.split(chunk):
        squares += torch.stack([b.double().pow(2).sum() for b in rows.split(sizes, dim=1)])
    rms = (squares / (len(updates) * torch.tensor(sizes, dtype=torch.float64))).sqrt() + 1e-30
    return torch.cat([torch.full((s,), float(r)) for r, s in zip(rms, sizes, strict=True)])


def mean_colours(images: Tensor, masks: Tensor) -> tuple[Tensor, Tensor]:
    """(3,) mean colour inside ``masks`` (the nuclei) and (3,) outside (the background), over all of
    ``images``."""
    inside = (masks > 0.5).expand_as(images).transpose(0, 1).reshape(3, -1)
    pixels = images.transpose(0, 1).reshape(3, -1)
    return (
        (pixels * inside).sum(1) / inside.sum(1).clamp_min(1),
        (pixels * ~inside).sum(1) / (~inside).sum(1).clamp_min(1),
    )


def match_colours(images: Tensor, masks: Tensor, nuclei: Tensor, background: Tensor) -> Tensor:
    """``images`` with each channel moved by one affine map, so that their mean nuclei and background
    colours (:func:`mean_colours`) become ``nuclei`` and ``background``; clamped to [0, 1]. A channel
    whose nuclei and background are alike (within 10⁻³) is only shifted."""
    own_nuclei, own_background = mean_colours(images, masks)
    gap = own_nuclei - own_background
    usable = gap.abs() > 1e-3
    one = torch.ones_like(gap)
    scale = torch.where(usable, (nuclei - background) / torch.where(usable, gap, one), one)
    shift = background - scale * own_background
    return (images * scale[:, None, None] + shift[:, None, None]).clamp(0, 1)


def window_features(masks: Tensor, radius: int) -> Tensor:
    """(N, (2r+1)² + 1, H·W): each pixel's mask window (replicate-padded) and a constant, in the
    masks' dtype."""
    k = 2 * radius + 1
    window = F.unfold(F.pad(masks, (radius,) * 4, mode="replicate"), k)  # (N, k², H·W)
    return torch.cat([window, torch.ones_like(window[:, :1])], dim=1)


def fit_window_ridge(
    images: Tensor, masks: Tensor, radius: int, ridge: float = 1.0, chunk: int = 16
) -> Tensor:
    """((2r+1)² + 1, 3): the per-channel ridge regression of a pixel's colour on its mask window.

    Each chunk's sums are taken in float32 (on 0/1 masks the Gram matrix's are integers below 2²⁴,
    exact) and added up in float64."""
    width = (2 * radius + 1) ** 2 + 1
    gram, cross = torch.zeros(width, width, dtype=torch.float64), torch.zeros(width, 3, dtype=torch.float64)
    for i in range(0, len(images), chunk):
        x = window_features(masks[i : i + chunk].float(), radius)  # (n, width, H·W)
        y = images[i : i + chunk].float().flatten(2).transpose(1, 2)  # (n, H·W, 3)
        gram += torch.bmm(x, x.transpose(1, 2)).sum(0).double()
        cross += torch.bmm(x, y).sum(0).double()
    return torch.linalg.solve(gram + ridge * torch.eye(width, dtype=gram.dtype), cross)


def apply_window_ridge(masks: Tensor, weights: Tensor, radius: int) -> Tensor:
    """(N, 3, H, W): the fitted colours of ``masks``, clamped to [0, 1]: each pixel's window times
    the weights, as one convolution."""
    k = 2 * radius + 1
    kernel = weights[:-1].T.reshape(3, 1, k, k).float()
    padded = F.pad(masks.float(), (radius,) * 4, mode="replicate")
    return (F.conv2d(padded, kernel) + weights[-1].float()[:, None, None]).clamp(0, 1)


def kernel_ridge(gram: Tensor, targets: Tensor, ridge: float) -> Tensor:
    """Dual weights α of ``(K + ridge · mean(diag K) · I) α = targets`` (float64)."""
    n = gram.shape[0]
    scale = ridge * float(gram.diagonal().mean())
    return torch.linalg.solve(gram + scale * torch.eye(n, dtype=gram.dtype), targets)


def invert(cross: Tensor, base: Tensor, alpha: Tensor, mean: Tensor) -> Tensor:
    """``base`` plus the residual the map predicts from the kernel rows ``cross``, in [0, 1]."""
    predicted = (cross @ alpha + mean).float().reshape(base.shape)
    return (base + predicted).clamp(0, 1)


def mse(images: Tensor, truth: Tensor) -> float:
    return float((images.double() - truth.double()).pow(2).mean())


# The textbook-leak yardstick (docs/guides/honest-server.md), measured 2026-12-07 on AMD EPYC, 2 cores:
# `feddp-eval attack -c one-tile.toml --attack learned-inversion --noise 1.1` (one-tile.toml: `[data]
# train_tiles = [48, 32, 24, 1]`), the undefended arm. Its own guess from the same public tiles scored
# 23.79 dB / 0.589 (+1.00 dB over it); dp-sgd σ = 1.1 held it at that guess (−0.04 dB). RESULTS.md,
# "As an attack".
KNOWN_LEAK = KnownLeak(
    recipe="default",
    psnr=24.79,
    guess_psnr=23.51,
    ssim=0.580,
    guess_ssim=0.558,
    command="feddp-eval attack -c one-tile.toml --attack learned-inversion --noise 1.1",
    # The shared settings (iterations, image, …) do not act on a fitted map; the map's own do
    # (public_data "": the generator's tiles with the site's stain, whose colours "auto" leaves).
    settings={
        **asdict(AttackConfig()),
        "public_tiles": 2000,
        "validation": 200,
        "radius": 7,
        "public_data": "",
        "match_colours": "auto",
    },
)


@ATTACKS.register("learned-inversion")
class LearnedInversion(Attack):
    """Kernel ridge from simulated one-tile updates on public tiles to their tiles, applied to the
    captured update; judged against the guess learned from the same public tiles."""

    summary = "after Wu et al. 2023: a map from update to tile, fitted on the server's public tiles"
    Config = LearnedInversionConfig
    config: LearnedInversionConfig
    known_leak = KNOWN_LEAK

    def public_tiles_wanted(self) -> int:
        return self.config.public_tiles + self.config.validation

    def public_source(self) -> str:
        return self.config.public_data

    def public_description(self) -> str:
        moved = " (their colours moved to the site's published ones)" if self.matches_colours() else ""
        return super().public_description() + moved

    def matches_colours(self) -> bool:
        """Whether the public tiles' colours are moved to the site's (``match_colours``)."""
        match = self.config.match_colours
        return match == "on" or (match == "auto" and bool(self.config.public_data))

    def run(self, view: ServerView, options: RunOptions) -> Reconstruction:
        """Fit the map on ``view.public_tiles`` and apply it to ``view.update``; with the masks
        unknown, a second map from the same updates to the public tiles' masks gives the mask.

        Nothing is iterated: the observer has nothing to act on; the seed draws the noise of a
        modelled DP release; progress counts the simulated public rounds.
        """
        started = time.perf_counter()
        cfg, public, wanted = self.config, view.public_tiles, self.public_tiles_wanted()
        masks = _check_view(view, wanted, colours=self.matches_colours())
        assert public is not None  # _check_view refused otherwise
        n = cfg.public_tiles
        fit, held = slice(0, n), slice(n, wanted)
        images, public_masks = public.images[:wanted], public.masks[:wanted]
        if self.matches_colours():
            assert view.prior is not None  # _check_view refused otherwise
            given = None if masks is None else masks.cpu()
            images = site_colours(images, public_masks, view.prior.cpu(), given)
        model = UNet.from_config(view.model).to(options.device)
        weights = {k: v.to(options.device) for k, v in view.global_weights.items()}
        names = list(weights)
        progress = options.progress
        report = (lambda done, total: progress(done, total, math.nan)) if progress else None
        updates = one_tile_updates(
            model, weights, view.recipe, images.to(options.device), public_masks.to(options.device),
            progress=report,
        )  # fmt: skip
        if view.release is not None:  # learn from updates released as the client's were
            updates = view.release(updates, view.recipe, torch.Generator().manual_seed(options.seed))
        scales = tensor_scales(updates[fit], [weights[k].numel() for k in names])
        features = updates.div_(scales)  # in place: the raw updates are not read again
        captured = flatten({k: v.cpu() for k, v in view.update.items()}, names)[None] / scales
        kernel = Kernel(
            gram=(features[fit] @ features[fit].T).double(),
            held=(features[held] @ features[fit].T).double(),
            captured=(captured @ features[fit].T).double(),
        )
        details: dict[str, Any] = {"public_tiles": n}
        if masks is None:  # the mask first, from the update alone; the image's guess is the public mean
            mask, details["mask_ridge"], details["mask_threshold"] = fit_mask_map(kernel, public_masks, n)
            guess_public = images[fit].mean(0, keepdim=True).expand_as(images)
            guess = guess_public[:1]
        else:  # the guess from the public tiles' colours around each mask pixel
            mask = masks.cpu().float()
            window = fit_window_ridge(images[fit], public_masks[fit], cfg.radius)
            guess_public = apply_window_ridge(public_masks, window, cfg.radius)
            guess = apply_window_ridge(mask, window, cfg.radius)
        rebuilt, error, details["ridge"] = fit_image_map(kernel, images, guess_public, guess, n)
        return Reconstruction(
            images=rebuilt,
            masks=mask,
            objective=error,  # the held-back public tiles' MSE, which picked the ridge
            restart_objectives=[error],
            iterations=0,
            seconds=time.perf_counter() - started,
            stopped="fitted",
            details=details,
            guess=guess,
        )


@dataclass(frozen=True)
class Kernel:
    """Linear-kernel rows (float64) between the scaled updates: the fit tiles' Gram matrix, the
    held-back tiles' rows and the captured update's row."""

    gram: Tensor
    held: Tensor
    captured: Tensor


def fit_image_map(
    kernel: Kernel, images: Tensor, guess_public: Tensor, guess: Tensor, n: int
) -> tuple[Tensor, float, float]:
    """The captured tile rebuilt as ``guess`` plus the residual a kernel ridge map predicts from its
    update, the map fitted on the first ``n`` public tiles' residuals over their guesses
    (``guess_public``) and its ridge picked on the rest's MSE; with that MSE and ridge."""
    residual = (images[:n] - guess_public[:n]).reshape(n, -1).double()
    mean = residual.mean(0)
    residual -= mean
    best: tuple[float, float, Tensor] | None = None  # held-back MSE, ridge, dual weights
    for ridge in RIDGES:
        alpha = kernel_ridge(kernel.gram, residual, ridge)
        error = mse(invert(kernel.held, guess_public[n:], alpha, mean), images[n:])
        if best is None or error < best[0]:
            best = (error, ridge, alpha)
    assert best is not None
    error, ridge, alpha = best
    return invert(kernel.captured, guess, alpha, mean), error, ridge


MASK_THRESHOLDS = tuple(t / 20 for t in range(2, 13))  # 0.10, 0.15, …, 0.60


def fit_mask_map(kernel: Kernel, masks: Tensor, n: int) -> tuple[Tensor, float, float]:
    """(R, 1, H, W): the mask of each captured update (a row of ``kernel.captured``) as a kernel ridge
    map from the update predicts it, fitted on the first ``n`` public masks; the ridge and the
    threshold on the prediction are the pair of highest mean Dice on the rest. Returned shifted so
    that the threshold falls at 0.5 (the scoring's), clamped to [0, 1]; with the ridge and the
    threshold."""
    flat = masks.reshape(len(masks), -1).double()
    truth = flat[n:] > 0.5
    mean = flat[:n].mean(0)
    best: tuple[float, float, float, Tensor] | None = None  # held-back Dice, ridge, threshold, α
    for ridge in RIDGES:
        alpha = kernel_ridge(kernel.gram, flat[:n] - mean, ridge)
        predicted = kernel.held @ alpha + mean
        for threshold in MASK_THRESHOLDS:
            score = float(dice_per_tile(predicted > threshold, truth).mean())
            if best is None or score > best[0]:
                best = (score, ridge, threshold, alpha)
    assert best is not None
    _, ridge, threshold, alpha = best
    predicted = (kernel.captured @ alpha + mean - threshold + 0.5).clamp(0, 1)
    return predicted.float().reshape(-1, *masks.shape[1:]), ridge, threshold


def dice_per_tile(predicted: Tensor, truth: Tensor) -> Tensor:
    """(N,): each row's Dice of two boolean (N, pixels) masks; 1 where both are empty (as
    :func:`feddp_eval.metrics.privacy.mask_dice`)."""
    both = (predicted & truth).sum(1).double()
    total = (predicted.sum(1) + truth.sum(1)).double()
    return torch.where(total > 0, 2 * both / total.clamp_min(1), torch.ones_like(total))


def site_colours(images: Tensor, public_masks: Tensor, prior: Tensor, masks: Tensor | None) -> Tensor:
    """The public tiles moved to the site's published colours, which the view's prior holds: with the
    masks known, the painted guess's nuclei and background colours (:func:`match_colours`); without
    them, the site's mean colour, each channel shifted to it."""
    if masks is not None:
        return match_colours(images, public_masks, *mean_colours(prior, masks))
    colour = prior.reshape(-1, 3, *prior.shape[-2:]).transpose(0, 1).reshape(3, -1).mean(1)
    shift = colour - images.transpose(0, 1).reshape(3, -1).mean(1)
    return (images + shift[:, None, None]).clamp(0, 1)


def _check_view(view: ServerView, wanted: int, *, colours: bool = False) -> Tensor | None:
    """The view's masks (``None``: unknown), after refusing a view this attack cannot read, with what
    to do instead."""
    problems = []
    if len(view.observed) != 1 or view.n_images != 1:
        problems.append(
            f"it maps a one-tile update to that tile, and this one holds {view.n_images} tile(s) over "
            f"{len(view.observed)} round(s): attack a site with one training tile (`[data] train_tiles`), "
            "or one tile per round (`--batch-size 1 --local-steps 1`), one round at a time"
        )
    if colours and (view.prior is None or (view.masks is not None and view.prior.dim() != 4)):
        problems.append(
            "matching the public tiles' colours needs the site's published colours (the prior guess "
            "in the view: the painted masks, or the mean colour with the masks unknown); set "
            '`match_colours = "off"`'
        )
    if view.public_tiles is None:
        problems.append(
            "it needs public tiles: the embedded generator's with the site's stain (synthetic data), "
            "or a folder the server holds (`--attack-option public_data=DIR`)"
        )
    elif len(view.public_tiles) < wanted:
        problems.append(f"it needs {wanted} public tiles, but the view holds {len(view.public_tiles)}")
    elif view.public_tiles.images.shape[-1] != view.tile_size:
        problems.append("the public tiles' size differs from the attacked tiles'")
    if problems:
        raise ConfigError(["learned-inversion cannot attack this update: " + p for p in problems])
    return view.masks

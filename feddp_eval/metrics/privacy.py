"""How well a gradient-inversion attack reconstructed a client's tiles.

One definition each (DESIGN.md, "Metric definitions"): images clamped to
[0, 1]; reconstructions matched to true tiles by optimal assignment
(Hungarian, on per-pair MSE) before scoring; PSNR (over several tiles: of the
pooled MSE) and SSIM with
``data_range = 1`` (scikit-image); LPIPS with the named backbone
(:class:`~feddp_eval.metrics.perceptual.LPIPSMetric`); Dice of the binarised
reconstructed mask against the true mask
(:func:`feddp_eval.metrics.utility.dice`).

Pure functions on tensors; :func:`score_reconstruction` composes them into a
:class:`ReconstructionScores`, and :func:`prior_baseline` scores the best guess
an attacker can make without the update, so leakage is read against it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from torch import Tensor

from feddp_eval import schema
from feddp_eval.metrics.utility import confusion_counts, dice

if TYPE_CHECKING:
    from feddp_eval.metrics.perceptual import LPIPSMetric

PRIVACY_METRICS = {name: schema.column(name) for name in ("psnr", "ssim", "lpips", "mask_dice")}
"""Reconstruction metrics, as the results schema defines them. ``higher_is_better`` is from the
attacker's view: a "better" value means the reconstruction is closer to the private tile, i.e. more
leakage (worse for the defense). LPIPS is a distance: lower = more similar.
PSNR is +inf for an exact reconstruction (and never below 0 for images in [0, 1]); over several tiles it is
the PSNR of their pooled MSE (:func:`pooled_psnr`)."""

SSIM_MAX_WINDOW = 7
MASK_THRESHOLD = 0.5


# --------------------------------------------------------------------------- single pairs


def _as_chw(image: Tensor | np.ndarray, name: str) -> np.ndarray:
    array = (
        image.detach().cpu().double().numpy() if isinstance(image, Tensor) else np.asarray(image, np.float64)
    )
    if array.ndim != 3 or array.shape[0] != 3:
        raise ValueError(f"{name} must be one (3, H, W) image, got shape {array.shape}")
    return array


def _validate_pair(x: Tensor | np.ndarray, y: Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = _as_chw(x, "x"), _as_chw(y, "y")
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} and {b.shape}")
    return a, b


def psnr(x: Tensor | np.ndarray, y: Tensor | np.ndarray) -> float:
    """PSNR in dB of two (3, H, W) images in [0, 1], ``data_range = 1``.

    Symmetric in x and y. Identical images give ``math.inf`` (MSE = 0); means
    over pairs that include one are inf as well.
    """
    a, b = _validate_pair(x, y)
    if np.array_equal(a, b):
        return math.inf
    return float(peak_signal_noise_ratio(a, b, data_range=1.0))


def pooled_psnr(psnr_values: Sequence[float]) -> float:
    """PSNR of the mean squared error over several tiles, from their per-tile PSNRs (``data_range = 1``).

    The headline PSNR of a set of tiles: ``-10 log10(mean_i MSE_i)``, never the mean of per-tile dB,
    in which one exact tile (``inf``, or 60+ dB) would speak for every tile that was not read. It is
    ``inf`` only when every tile is exact, and never above the worst tile's PSNR + 10 log10(n).
    """
    if not psnr_values:
        raise ValueError("pooled_psnr needs at least one per-tile PSNR")
    mse = np.mean([0.0 if math.isinf(v) else 10.0 ** (-v / 10.0) for v in psnr_values])
    return math.inf if mse == 0.0 else float(-10.0 * np.log10(mse))


def ssim_window(height: int, width: int) -> int:
    """skimage's default 7 px window, or the largest odd size that fits a smaller tile (at least 3)."""
    side = min(height, width, SSIM_MAX_WINDOW)
    if side < 3:
        raise ValueError(f"SSIM needs tiles of at least 3 x 3 pixels, got {height} x {width}")
    return side if side % 2 == 1 else side - 1


def ssim(x: Tensor | np.ndarray, y: Tensor | np.ndarray) -> float:
    """Mean SSIM of two (3, H, W) images in [0, 1]: scikit-image, ``data_range = 1``, channels averaged.

    Uniform 7 x 7 window (scikit-image's default), or :func:`ssim_window` for tiles under 7 px.
    """
    a, b = _validate_pair(x, y)
    window = ssim_window(a.shape[1], a.shape[2])
    return float(structural_similarity(a, b, channel_axis=0, data_range=1.0, win_size=window))


def mask_dice(recon_mask: Tensor, true_mask: Tensor, threshold: float = MASK_THRESHOLD) -> float:
    """Dice of ``recon_mask > threshold`` against ``true_mask > threshold``; 1 when both are empty."""
    return dice(confusion_counts(recon_mask.float() > threshold, true_mask.float() > threshold))


# --------------------------------------------------------------------------- matching


def _validate_batch(images: Tensor, name: str, channels: int = 3) -> Tensor:
    if not isinstance(images, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(images).__name__}")
    if images.dim() != 4 or images.shape[1] != channels:
        raise ValueError(f"{name} must have shape (N, {channels}, H, W), got {tuple(images.shape)}")
    if images.shape[0] == 0:
        raise ValueError(f"{name} is empty")
    if torch.isnan(images).any():
        raise ValueError(f"{name} contains NaN; replace or drop diverged reconstructions before scoring")
    return images


def _pairwise_mse(recon: Tensor, truth: Tensor) -> np.ndarray:
    r = recon.detach().cpu().double().flatten(1)
    t = truth.detach().cpu().double().flatten(1)
    return np.stack([((t - row) ** 2).mean(dim=1).numpy() for row in r])


def match_reconstructions(recon: Tensor, truth: Tensor) -> tuple[list[int], list[int]]:
    """Optimal one-to-one assignment of reconstructions to true tiles.

    ``recon`` is (R, 3, H, W), ``truth`` (T, 3, H, W). Minimises the summed
    per-pair MSE with :func:`scipy.optimize.linear_sum_assignment`; PSNR is a
    decreasing function of MSE, so each pair's ranking is its PSNR ranking
    (maximising the *summed* PSNR, Σ -log MSE, could pick another assignment
    when errors differ by orders of magnitude). Returns ``(recon_idx,
    truth_idx)`` of ``min(R, T)`` pairs, sorted by truth index; with R != T the
    surplus reconstructions (or unreached tiles) are left out.
    """
    _validate_batch(recon, "recon")
    _validate_batch(truth, "truth")
    if recon.shape[1:] != truth.shape[1:]:
        raise ValueError(
            f"reconstructions {tuple(recon.shape[1:])} and tiles {tuple(truth.shape[1:])} differ"
        )
    rows, cols = linear_sum_assignment(_pairwise_mse(recon, truth))
    order = np.argsort(cols, kind="stable")
    return [int(rows[i]) for i in order], [int(cols[i]) for i in order]


# --------------------------------------------------------------------------- scores


@dataclass(frozen=True)
class ReconstructionScores:
    """Per-pair scores of matched (reconstruction, true tile) pairs and their means.

    ``recon_index[i]`` was matched to ``truth_index[i]`` (sorted by truth index).
    ``lpips`` is None when no LPIPS metric was given or its weights are missing
    (``lpips_missing_reason`` says which); ``mask_dice`` is None without masks.
    ``psnr`` is the PSNR of the pooled MSE (:func:`pooled_psnr`), inf only when every pair is an exact
    copy; ``psnr_median`` is the median of the per-pair PSNRs; ``share_30db`` / ``share_40db`` are the
    shares of pairs at or above 30 / 40 dB.
    """

    recon_index: tuple[int, ...]
    truth_index: tuple[int, ...]
    psnr_per_pair: tuple[float, ...]
    ssim_per_pair: tuple[float, ...]
    lpips_per_pair: tuple[float, ...] | None
    mask_dice_per_pair: tuple[float, ...] | None
    psnr: float
    ssim: float
    lpips: float | None
    mask_dice: float | None
    psnr_median: float
    share_30db: float
    share_40db: float
    lpips_missing_reason: str | None
    lpips_net: str | None
    n_recon: int
    n_true: int

    @property
    def n_pairs(self) -> int:
        return len(self.truth_index)

    def means(self) -> dict[str, float | None]:
        """``{name: mean}`` for every metric in :data:`PRIVACY_METRICS`."""
        return {name: getattr(self, name) for name in PRIVACY_METRICS}

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (tuples as lists; inf stays a float)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values))


def _share_at_least(values: Sequence[float], db: float) -> float:
    return sum(1 for v in values if v >= db) / len(values)


def score_reconstruction(
    recon_images: Tensor,
    true_images: Tensor,
    *,
    recon_masks: Tensor | None = None,
    true_masks: Tensor | None = None,
    lpips: LPIPSMetric | None = None,
) -> ReconstructionScores:
    """Clamp to [0, 1], match (:func:`match_reconstructions`), then score each pair.

    ``recon_images`` (R, 3, H, W) and ``true_images`` (T, 3, H, W) are
    de-normalised images; values outside [0, 1] are clamped, NaN is refused.
    ``recon_masks`` (R, 1, H, W) are foreground probabilities, ``true_masks``
    (T, 1, H, W) binary; both or neither. Masks follow the image matching and
    are binarised at 0.5 before Dice. ``lpips`` is scored when given and
    available; otherwise every other metric is still returned.
    """
    recon = _validate_batch(recon_images, "recon_images").detach().cpu().float().clamp(0.0, 1.0)
    truth = _validate_batch(true_images, "true_images").detach().cpu().float().clamp(0.0, 1.0)
    _validate_masks(recon_masks, true_masks, recon=recon, truth=truth)

    recon_idx, truth_idx = match_reconstructions(recon, truth)
    pairs = list(zip(recon_idx, truth_idx, strict=True))
    psnr_values = tuple(psnr(recon[r], truth[t]) for r, t in pairs)
    ssim_values = tuple(ssim(recon[r], truth[t]) for r, t in pairs)
    lpips_values, lpips_reason = _lpips_scores(lpips, recon[recon_idx], truth[truth_idx])

    dice_values: tuple[float, ...] | None = None
    if recon_masks is not None and true_masks is not None:
        r_masks = recon_masks.detach().cpu().float().clamp(0.0, 1.0)
        t_masks = true_masks.detach().cpu().float()
        dice_values = tuple(mask_dice(r_masks[r], t_masks[t]) for r, t in pairs)

    return ReconstructionScores(
        recon_index=tuple(recon_idx),
        truth_index=tuple(truth_idx),
        psnr_per_pair=psnr_values,
        ssim_per_pair=ssim_values,
        lpips_per_pair=lpips_values,
        mask_dice_per_pair=dice_values,
        psnr=pooled_psnr(psnr_values),
        ssim=_mean(ssim_values),
        lpips=None if lpips_values is None else _mean(lpips_values),
        mask_dice=None if dice_values is None else _mean(dice_values),
        psnr_median=float(np.median(psnr_values)),
        share_30db=_share_at_least(psnr_values, 30.0),
        share_40db=_share_at_least(psnr_values, 40.0),
        lpips_missing_reason=lpips_reason,
        lpips_net=None if lpips is None else lpips.net,
        n_recon=int(recon.shape[0]),
        n_true=int(truth.shape[0]),
    )


def _validate_masks(
    recon_masks: Tensor | None, true_masks: Tensor | None, *, recon: Tensor, truth: Tensor
) -> None:
    """Both masks or neither, each (N, 1, H, W) fitting its images."""
    if (recon_masks is None) != (true_masks is None):
        raise ValueError("give both recon_masks and true_masks, or neither")
    if recon_masks is not None and true_masks is not None:
        _validate_batch(recon_masks, "recon_masks", channels=1)
        _validate_batch(true_masks, "true_masks", channels=1)
        for masks, images, name in ((recon_masks, recon, "recon_masks"), (true_masks, truth, "true_masks")):
            if masks.shape[0] != images.shape[0] or masks.shape[2:] != images.shape[2:]:
                raise ValueError(f"{name} {tuple(masks.shape)} does not fit its images {tuple(images.shape)}")


def _lpips_scores(
    lpips: LPIPSMetric | None, recon: Tensor, truth: Tensor
) -> tuple[tuple[float, ...] | None, str | None]:
    """LPIPS of each matched pair (``recon[i]`` with ``truth[i]``), or ``None`` and why not."""
    if lpips is None:
        return None, "LPIPS not requested (score_reconstruction(lpips=None))"
    if not lpips.available:
        return None, lpips.missing_reason or f"LPIPS ({lpips.net}) unavailable"
    return tuple(float(v) for v in lpips(recon, truth)), None


def prior_baseline(
    mean_tile: Tensor,
    true_images: Tensor,
    true_masks: Tensor | None = None,
    *,
    prior_mask: Tensor | None = None,
    foreground_fraction: float = 0.0,
    lpips: LPIPSMetric | None = None,
) -> ReconstructionScores:
    """Scores of the best guess without the update: the prior, repeated for every true tile.

    The image guess is ``mean_tile`` (3, H, W), e.g. the mean of public tiles.
    The mask guess is ``prior_mask`` (1, H, W), a foreground probability map,
    when given; otherwise the constant ``foreground_fraction > 0.5`` (the
    per-pixel majority class). With the default 0.0 — and for any fraction
    <= 0.5, i.e. for most histopathology masks — that is all background, whose
    Dice is 0 on every tile with foreground and 1 on empty ones.
    """
    truth = _validate_batch(true_images, "true_images")
    if mean_tile.dim() != 3 or tuple(mean_tile.shape) != tuple(truth.shape[1:]):
        raise ValueError(f"mean_tile must have shape {tuple(truth.shape[1:])}, got {tuple(mean_tile.shape)}")
    n = truth.shape[0]
    guesses = mean_tile.detach().cpu().float().unsqueeze(0).expand(n, -1, -1, -1).contiguous()
    recon_masks = None
    if true_masks is not None:
        mask_shape = (1, *truth.shape[2:])
        if prior_mask is None:
            if not 0.0 <= foreground_fraction <= 1.0:
                raise ValueError(f"foreground_fraction must be in [0, 1], got {foreground_fraction}")
            prior_mask = torch.full(mask_shape, float(foreground_fraction))
        elif tuple(prior_mask.shape) != mask_shape:
            raise ValueError(f"prior_mask must have shape {mask_shape}, got {tuple(prior_mask.shape)}")
        recon_masks = prior_mask.detach().cpu().float().unsqueeze(0).expand(n, -1, -1, -1).contiguous()
    return score_reconstruction(guesses, truth, recon_masks=recon_masks, true_masks=true_masks, lpips=lpips)


def all_nucleus_dice(true_masks: Tensor) -> float:
    """Mask Dice of marking every pixel nucleus, mean over the tiles: 2p / (1 + p) for a tile whose
    foreground share is p (0 for an empty tile).

    No mask guessed without the update can expect a higher Dice: a mask of k pixels placed blind
    expects 2pk / (k + pN), which rises with k. So a masks-unknown attack's mask Dice leaks only
    above this; :func:`prior_baseline`'s mask (the per-pixel majority, all background on most tiles)
    is the guess that maximises pixel accuracy, not Dice.
    """
    masks = _validate_batch(true_masks, "true_masks", channels=1)
    return _mean(tuple(mask_dice(torch.ones_like(m), m) for m in masks))


def mask_painted_prior(masks: Tensor, foreground_rgb: Tensor, background_rgb: Tensor) -> Tensor:
    """The best public guess of tiles whose masks are known: class colours painted into each mask.

    Args:
        masks: (N, 1, H, W) masks in [0, 1].
        foreground_rgb: (3,) public mean colour of nuclei pixels.
        background_rgb: (3,) public mean colour of the other pixels.

    Returns:
        (N, 3, H, W) in [0, 1]. When the attacker is handed the masks, this is what it knows
        before it looks at the update, so leakage is measured against it.
    """
    fg = foreground_rgb.float().reshape(1, 3, 1, 1)
    bg = background_rgb.float().reshape(1, 3, 1, 1)
    return (masks * fg + (1 - masks) * bg).clamp(0.0, 1.0)

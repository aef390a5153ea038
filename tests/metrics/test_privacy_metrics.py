"""Reconstruction metrics: PSNR / SSIM against hand-computed values, matching, masks, the prior baseline."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from feddp_eval.metrics.privacy import (
    PRIVACY_METRICS,
    ReconstructionScores,
    all_nucleus_dice,
    mask_dice,
    match_reconstructions,
    pooled_psnr,
    prior_baseline,
    psnr,
    score_reconstruction,
    ssim,
    ssim_window,
)

C1, C2 = 0.01**2, 0.03**2  # SSIM constants for data_range = 1


def _images(n: int, size: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.rand((n, 3, size, size), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _constant(value: float, size: int = 8) -> torch.Tensor:
    return torch.full((3, size, size), value, dtype=torch.float64)


def _global_ssim(x: np.ndarray, y: np.ndarray) -> float:
    """SSIM of Wang et al. over the whole tile (sample covariance), averaged over channels."""
    values = []
    for a, b in zip(x, y, strict=True):
        a, b = a.ravel(), b.ravel()
        mx, my = a.mean(), b.mean()
        vx, vy = a.var(ddof=1), b.var(ddof=1)
        cxy = ((a - mx) * (b - my)).sum() / (a.size - 1)
        values.append((2 * mx * my + C1) * (2 * cxy + C2) / ((mx**2 + my**2 + C1) * (vx + vy + C2)))
    return float(np.mean(values))


# --------------------------------------------------------------------------- metadata


def test_metadata_is_from_the_attackers_view() -> None:
    assert set(PRIVACY_METRICS) == {"psnr", "ssim", "lpips", "mask_dice"}
    assert all(name == info.name for name, info in PRIVACY_METRICS.items())
    assert PRIVACY_METRICS["psnr"].higher_is_better and PRIVACY_METRICS["ssim"].higher_is_better
    assert PRIVACY_METRICS["mask_dice"].higher_is_better
    assert not PRIVACY_METRICS["lpips"].higher_is_better
    assert PRIVACY_METRICS["psnr"].upper == math.inf and PRIVACY_METRICS["ssim"].lower == -1.0


# --------------------------------------------------------------------------- PSNR


@pytest.mark.parametrize(
    ("a", "b", "expected"), [(0.5, 0.6, 20.0), (0.0, 1.0, 0.0), (0.2, 0.21, 40.0), (0.3, 0.2, 20.0)]
)
def test_psnr_of_constant_images(a: float, b: float, expected: float) -> None:
    assert psnr(_constant(a), _constant(b)) == pytest.approx(expected, abs=1e-9)


def test_psnr_of_known_noise() -> None:
    x = 0.1 + 0.8 * _images(1, size=16)[0]
    signs = torch.where(torch.rand(x.shape, generator=torch.Generator().manual_seed(1)) < 0.5, -1.0, 1.0)
    y = x + 0.01 * signs.double()  # MSE exactly 1e-4
    assert psnr(x, y) == pytest.approx(40.0, abs=1e-9)
    assert psnr(y, x) == psnr(x, y)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), size=st.integers(3, 12))
def test_psnr_matches_the_formula(seed: int, size: int) -> None:
    x, y = _images(2, size=size, seed=seed)
    mse = float(((x - y) ** 2).mean())
    assert psnr(x, y) == pytest.approx(10 * math.log10(1.0 / mse), rel=1e-12)


def test_psnr_of_identical_images_is_inf() -> None:
    x = _images(1)[0]
    assert psnr(x, x.clone()) == math.inf
    assert psnr(x.numpy(), x.numpy()) == math.inf


def test_pair_shapes_are_checked() -> None:
    with pytest.raises(ValueError, match="differ in shape"):
        psnr(_constant(0.5, 8), _constant(0.5, 9))
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        ssim(torch.zeros(1, 8, 8), torch.zeros(1, 8, 8))


# --------------------------------------------------------------------------- SSIM


def test_ssim_of_identical_images_is_one() -> None:
    x = _images(1, size=16)[0]
    assert ssim(x, x.clone()) == pytest.approx(1.0, abs=1e-12)
    assert ssim(_constant(0.3), _constant(0.3)) == pytest.approx(1.0, abs=1e-12)


def test_ssim_of_constant_images() -> None:
    # Zero variance: SSIM = (2ab + C1) / (a² + b² + C1).
    expected = (2 * 0.5 * 0.6 + C1) / (0.5**2 + 0.6**2 + C1)
    assert ssim(_constant(0.5, 16), _constant(0.6, 16)) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("size", [7, 5, 3])
def test_ssim_on_a_tile_the_size_of_its_window_is_the_global_formula(size: int) -> None:
    # With the window as large as the tile, scikit-image keeps only the centre value: whole-tile statistics.
    x, y = _images(2, size=size, seed=size)
    y = 0.7 * x + 0.3 * y
    assert ssim(x, y) == pytest.approx(_global_ssim(x.numpy(), y.numpy()), abs=1e-10)


@pytest.mark.parametrize(
    ("h", "w", "window"), [(64, 64, 7), (7, 7, 7), (8, 6, 5), (6, 6, 5), (5, 9, 5), (4, 4, 3), (3, 30, 3)]
)
def test_ssim_window_fits_small_tiles(h: int, w: int, window: int) -> None:
    assert ssim_window(h, w) == window
    x = torch.rand((3, h, w), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert -1.0 <= ssim(x, x.flip(-1)) <= 1.0


def test_ssim_refuses_tiles_under_three_pixels() -> None:
    with pytest.raises(ValueError, match="at least 3"):
        ssim(_constant(0.5, 2), _constant(0.5, 2))


# --------------------------------------------------------------------------- matching


def test_matching_is_the_identity_on_an_aligned_batch() -> None:
    truth = _images(6)
    recon = truth + 0.01 * _images(6, seed=9)
    assert match_reconstructions(recon, truth) == (list(range(6)), list(range(6)))


@settings(max_examples=30, deadline=None)
@given(
    permutation=st.integers(1, 7).flatmap(lambda n: st.permutations(list(range(n)))), seed=st.integers(0, 999)
)
def test_matching_undoes_a_permutation(permutation: list[int], seed: int) -> None:
    truth = _images(len(permutation), seed=seed)
    recon = truth[permutation] + 0.02 * (_images(len(permutation), seed=seed + 1) - 0.5)
    recon_idx, truth_idx = match_reconstructions(recon, truth)
    assert truth_idx == sorted(truth_idx) == list(range(len(permutation)))
    assert [permutation[r] for r in recon_idx] == truth_idx


def test_matching_with_more_reconstructions_than_tiles() -> None:
    truth = _images(3, seed=1)
    distractors = _images(2, seed=2)
    recon = torch.cat([distractors[:1], truth[2:3], truth[0:1], distractors[1:], truth[1:2]])
    assert match_reconstructions(recon, truth) == ([2, 4, 1], [0, 1, 2])


def test_matching_with_fewer_reconstructions_than_tiles() -> None:
    truth = _images(4, seed=3)
    recon = truth[[3, 1]] + 0.01
    assert match_reconstructions(recon, truth) == ([1, 0], [1, 3])
    scores = score_reconstruction(recon, truth)
    assert (scores.n_recon, scores.n_true, scores.n_pairs) == (2, 4, 2)
    assert len(scores.psnr_per_pair) == len(scores.ssim_per_pair) == 2


def test_matching_minimises_the_summed_mse_not_greedily() -> None:
    # costs: r0-t0 0, r0-t1 0.09, r1-t0 0.16, r1-t1 0.49. Greedy takes r0-t0 first (sum 0.49);
    # the optimum is r0-t1 + r1-t0 (sum 0.25).
    recon = torch.stack([_constant(0.5), _constant(0.9)])
    truth = torch.stack([_constant(0.5), _constant(0.2)])
    assert match_reconstructions(recon, truth) == ([1, 0], [0, 1])


def test_matching_checks_shapes() -> None:
    with pytest.raises(ValueError, match="differ"):
        match_reconstructions(_images(2, size=8), _images(2, size=9))
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        match_reconstructions(_images(2)[0], _images(2))
    with pytest.raises(ValueError, match="empty"):
        match_reconstructions(_images(2)[:0], _images(2))


# --------------------------------------------------------------------------- score_reconstruction


def test_scores_clamp_both_sides_to_the_unit_range() -> None:
    truth = torch.stack([torch.ones(3, 8, 8), torch.zeros(3, 8, 8), torch.full((3, 8, 8), 1.3)])
    recon = torch.stack([torch.full((3, 8, 8), 1.5), torch.full((3, 8, 8), -2.0), torch.ones(3, 8, 8)])
    scores = score_reconstruction(recon, truth)
    assert scores.psnr_per_pair == (math.inf, math.inf, math.inf)
    assert scores.psnr == math.inf
    assert scores.ssim == pytest.approx(1.0)
    # Clamped before matching too: 1.5 and 1.3 both become 1, tile 0 and tile 2 tie; any optimum scores inf.


def test_scores_refuse_nan() -> None:
    recon = _images(2)
    recon[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        score_reconstruction(recon, _images(2))


def test_scores_follow_the_matching() -> None:
    truth = _images(4, seed=5)
    permutation = [2, 0, 3, 1]
    recon = truth[permutation] + 0.05 * (_images(4, seed=6) - 0.5)
    scores = score_reconstruction(recon, truth)
    assert scores.truth_index == (0, 1, 2, 3)
    for r, t, value in zip(scores.recon_index, scores.truth_index, scores.psnr_per_pair, strict=True):
        assert permutation[r] == t
        assert value == pytest.approx(psnr(recon[r].clamp(0, 1), truth[t]), rel=1e-6)
    # The headline PSNR is that of the pooled MSE: computed here from the matched pairs directly.
    pairs = zip(scores.recon_index, scores.truth_index, strict=True)
    errors = [float(((recon[r].float().clamp(0, 1) - truth[t].float()) ** 2).mean()) for r, t in pairs]
    pooled_mse = np.mean(errors)
    assert scores.psnr == pytest.approx(10 * math.log10(1.0 / pooled_mse), rel=1e-6)
    assert scores.psnr_median == pytest.approx(float(np.median(scores.psnr_per_pair)))


def test_exact_tiles_cannot_speak_for_the_rest() -> None:
    """Issue #21's case: 8 of 12 tiles read exactly, 4 at the prior's 17 dB. The mean of per-tile dB
    would be dominated by the exact tiles; the pooled PSNR stays within 10·log10(12/4) of the 4."""
    per_tile = [math.inf] * 8 + [17.0] * 4
    pooled = pooled_psnr(per_tile)
    assert pooled == pytest.approx(17.0 + 10 * math.log10(12 / 4), rel=1e-12)
    assert pooled_psnr([math.inf, math.inf]) == math.inf
    assert pooled_psnr([20.0]) == pytest.approx(20.0, rel=1e-12)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(min_value=1.0, max_value=90.0), min_size=1, max_size=12))
def test_pooled_psnr_lies_between_the_worst_tile_and_the_mean_of_db(values: list[float]) -> None:
    pooled = pooled_psnr(values)
    # Jensen: -log is convex, so the PSNR of the mean MSE is at most the mean of per-tile PSNRs.
    assert min(values) - 1e-9 <= pooled <= float(np.mean(values)) + 1e-9
    assert pooled <= min(values) + 10 * math.log10(len(values)) + 1e-9


def test_shares_of_recovered_tiles() -> None:
    truth = _images(4, seed=7)
    recon = truth.clone()
    recon[1] += 0.001  # 60 dB
    recon[2] += 0.02  # ~34 dB
    recon[3] = 0.5  # far
    scores = score_reconstruction(recon, truth)
    assert (scores.share_30db, scores.share_40db) == (0.75, 0.5)
    assert scores.ssim == pytest.approx(np.mean(scores.ssim_per_pair))
    assert scores.lpips is None and scores.lpips_per_pair is None
    assert "not requested" in (scores.lpips_missing_reason or "")
    assert scores.mask_dice is None and scores.mask_dice_per_pair is None


def test_to_dict_is_json_ready() -> None:
    truth = _images(2)
    scores = score_reconstruction(
        truth.clone(),
        truth,
        recon_masks=torch.ones(2, 1, 8, 8),
        true_masks=torch.ones(2, 1, 8, 8, dtype=torch.bool),
    )
    as_dict = scores.to_dict()
    assert as_dict["recon_index"] == [0, 1] and as_dict["psnr"] == math.inf and as_dict["mask_dice"] == 1.0
    assert json.loads(json.dumps(as_dict))["psnr_per_pair"] == [math.inf, math.inf]
    assert set(scores.means()) == set(PRIVACY_METRICS)
    with pytest.raises(AttributeError):
        scores.psnr = 0.0  # type: ignore[misc]
    assert isinstance(scores, ReconstructionScores)


# --------------------------------------------------------------------------- masks


def test_mask_dice_binarises_probabilities_at_one_half() -> None:
    truth = torch.zeros(1, 8, 8)
    truth[:, :4, :] = 1  # top half: 32 px
    recon = torch.full((1, 8, 8), 0.4)
    recon[:, :4, :4] = 0.7  # top-left quadrant: 16 px, all inside the truth
    assert mask_dice(recon, truth) == pytest.approx(2 * 16 / (2 * 16 + 0 + 16))
    assert mask_dice(torch.full((1, 8, 8), 0.5), truth) == 0.0  # 0.5 is not foreground
    assert mask_dice(torch.zeros(1, 8, 8), torch.zeros(1, 8, 8)) == 1.0  # both empty
    assert mask_dice(torch.ones(1, 8, 8), torch.zeros(1, 8, 8)) == 0.0


def test_masks_follow_the_image_matching() -> None:
    truth = _images(3, seed=7)
    true_masks = torch.zeros(3, 1, 8, 8, dtype=torch.bool)
    true_masks[0, :, :2] = True
    true_masks[1, :, :, :5] = True
    permutation = [1, 2, 0]
    recon_masks = 0.2 + 0.6 * true_masks[permutation].float()  # probabilities 0.2 / 0.8
    scores = score_reconstruction(truth[permutation], truth, recon_masks=recon_masks, true_masks=true_masks)
    assert scores.mask_dice_per_pair == (1.0, 1.0, 1.0)  # tile 2 is empty in both: 1
    shuffled = score_reconstruction(
        truth[permutation], truth, recon_masks=recon_masks[[2, 0, 1]], true_masks=true_masks
    )
    assert shuffled.mask_dice is not None and shuffled.mask_dice < 1.0


def test_masks_come_in_pairs_and_fit_their_images() -> None:
    truth = _images(2)
    with pytest.raises(ValueError, match="both"):
        score_reconstruction(truth, truth, recon_masks=torch.ones(2, 1, 8, 8))
    with pytest.raises(ValueError, match="does not fit"):
        score_reconstruction(
            truth, truth, recon_masks=torch.ones(2, 1, 8, 8), true_masks=torch.ones(3, 1, 8, 8)
        )
    with pytest.raises(ValueError, match=r"\(N, 1, H, W\)"):
        score_reconstruction(truth, truth, recon_masks=torch.ones(2, 8, 8), true_masks=torch.ones(2, 8, 8))


# --------------------------------------------------------------------------- prior baseline


def _masks() -> torch.Tensor:
    masks = torch.zeros(3, 1, 8, 8, dtype=torch.bool)
    masks[0, :, :3] = True
    masks[1, :, 2:6, 2:6] = True  # tile 2 stays empty
    return masks


def test_prior_baseline_repeats_the_mean_tile_and_guesses_background() -> None:
    truth = _images(3, seed=11)
    mean_tile = truth.mean(dim=0)
    scores = prior_baseline(mean_tile, truth, _masks())
    assert scores.truth_index == (0, 1, 2)
    assert scores.psnr_per_pair == pytest.approx([psnr(mean_tile, t) for t in truth])
    assert scores.ssim_per_pair == pytest.approx([ssim(mean_tile, t) for t in truth])
    assert scores.mask_dice_per_pair == (0.0, 0.0, 1.0)  # all background: 0 where there is foreground
    assert prior_baseline(mean_tile, truth, _masks(), foreground_fraction=0.5).mask_dice_per_pair == (
        0.0,
        0.0,
        1.0,
    )


def test_prior_baseline_with_a_majority_foreground_or_a_prior_mask() -> None:
    truth = _images(3, seed=12)
    mean_tile = torch.full((3, 8, 8), 0.5)
    all_foreground = prior_baseline(mean_tile, truth, _masks(), foreground_fraction=0.8)
    assert all_foreground.mask_dice_per_pair == pytest.approx(
        [2 * 24 / (2 * 24 + 40), 2 * 16 / (2 * 16 + 48), 0.0]
    )
    prior_mask = torch.full((1, 8, 8), 0.1)
    prior_mask[:, :3] = 0.9  # the first tile's mask
    scores = prior_baseline(mean_tile, truth, _masks(), prior_mask=prior_mask)
    assert scores.mask_dice_per_pair is not None and scores.mask_dice_per_pair[0] == 1.0


def test_prior_baseline_without_masks_and_shape_checks() -> None:
    truth = _images(2)
    scores = prior_baseline(truth[0], truth)
    assert scores.mask_dice is None and scores.psnr_per_pair[0] == math.inf
    with pytest.raises(ValueError, match="mean_tile"):
        prior_baseline(torch.zeros(3, 4, 4), truth)
    with pytest.raises(ValueError, match="prior_mask"):
        prior_baseline(truth[0], truth, _masks()[:2], prior_mask=torch.zeros(1, 4, 4))
    with pytest.raises(ValueError, match="foreground_fraction"):
        prior_baseline(truth[0], truth, _masks()[:2], foreground_fraction=1.5)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**16), share=st.floats(0.01, 0.99), tiles=st.integers(1, 4))
def test_all_nucleus_dice_is_two_p_over_one_plus_p(seed: int, share: float, tiles: int) -> None:
    """The all-nucleus mask scores 2p / (1 + p) on a tile whose nucleus share is p (0 when empty),
    the mean over the tiles."""
    g = torch.Generator().manual_seed(seed)
    masks = (torch.rand((tiles, 1, 8, 8), generator=g) < share).float()
    p = masks.double().mean(dim=(1, 2, 3))
    expected = float(torch.where(p > 0, 2 * p / (1 + p), torch.zeros_like(p)).mean())
    assert all_nucleus_dice(masks) == pytest.approx(expected, abs=1e-12)


def test_all_nucleus_dice_beats_the_expected_dice_of_every_blind_mask_size() -> None:
    """2pk / (k + pN), the expected Dice of k pixels placed at random, rises with k to 2p / (1 + p):
    the mean over 200 random placements stays below the all-nucleus mask's Dice at every size."""
    g = torch.Generator().manual_seed(0)
    truth = (torch.rand((1, 1, 16, 16), generator=g) < 0.3).float()
    best = all_nucleus_dice(truth)
    for k in (16, 64, 128, 200):
        draws = []
        for _ in range(200):
            guess = torch.zeros(256)
            guess[torch.randperm(256, generator=g)[:k]] = 1
            draws.append(mask_dice(guess.reshape(1, 16, 16), truth[0]))
        assert float(np.mean(draws)) < best

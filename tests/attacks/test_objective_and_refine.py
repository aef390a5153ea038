"""The relative-L2 objective has the truth as its minimum; the L-BFGS refinement descends on a smooth model.

These are the pieces issue #22 added to the honest server's attack; the basin benchmark
(``benchmarks/inversion_basin.py``) measures them on the default ReLU U-Net.
"""

from __future__ import annotations

import pytest
import torch

from attacks import ATTACKS
from attacks.inverting_gradients import cosine_distance, relative_l2
from attacks.simulate import LocalRecipe
from feddp_eval.metrics.privacy import psnr

ONE_STEP = LocalRecipe(batches=((0,),), lr=0.05)
NO_PRIOR_TERMS = {"image": "pixels", "objective": "l2", "tv_weight": 0.0, "colour_weight": 0.0}


def test_relative_l2_is_zero_at_the_target_and_scale_aware() -> None:
    target = torch.tensor([3.0, 4.0])  # ‖t‖² = 25
    assert relative_l2(target, target) == 0.0
    assert relative_l2(torch.tensor([3.0, 5.0]), target) == pytest.approx(1 / 25)
    # twice the update in the same direction: the cosine cannot tell, L2 can
    assert cosine_distance(2 * target, target) == pytest.approx(0.0, abs=1e-7)
    assert relative_l2(2 * target, target) == pytest.approx(1.0)
    # a (near) zero target is weighed against the floor, not against its own rounding noise
    assert relative_l2(torch.tensor([1e-3]), torch.tensor([0.0]), 1e-2) == pytest.approx(1e-4)


def test_the_objective_is_zero_at_the_truth_and_positive_near_it(one_tile, make_view) -> None:
    tiles, prior = one_tile
    view = make_view(tiles, ONE_STEP, prior=prior)
    attack = ATTACKS.create("inverting-gradients", **NO_PRIOR_TERMS, per_layer=True)
    # The attack simulates under vmap and the view without: the two differ by float rounding
    # only (measured ~1e-13 here), far below any real mismatch (30 dB noise: ~1e-2).
    assert attack.objective_at(view, tiles.images) < 1e-9
    noise = torch.randn(tiles.images.shape, generator=torch.Generator().manual_seed(0))
    assert attack.objective_at(view, (tiles.images + 0.03 * noise).clamp(0, 1)) > 1e-4


def test_a_start_from_the_truth_is_kept(one_tile, make_view) -> None:
    tiles, prior = one_tile
    view = make_view(tiles, ONE_STEP, prior=prior)
    recon = ATTACKS.create("inverting-gradients", **NO_PRIOR_TERMS, iterations=3).reconstruct(
        view, start=tiles.images
    )
    # The first iterate is the start and has the lowest objective: keep-the-best returns it.
    torch.testing.assert_close(recon.images, tiles.images, rtol=0, atol=0)
    assert recon.objective < 1e-9


@pytest.mark.parametrize("seed", [0, 3])
def test_lbfgs_refinement_climbs_from_30_db_on_a_smooth_unet(one_tile, make_view, seed: int) -> None:
    tiles, prior = one_tile
    view = make_view(tiles, ONE_STEP, prior=prior)
    noise = torch.randn(tiles.images.shape, generator=torch.Generator().manual_seed(seed))
    start = (tiles.images + 10 ** (-30 / 20) * noise).clamp(0, 1)
    settings = {**NO_PRIOR_TERMS, "iterations": 1, "lr": 1e-4}
    refined = ATTACKS.create("inverting-gradients", **settings, refine=60, refine_float64=True)
    recon = refined.reconstruct(view, seed=seed, start=start)
    gain = psnr(tiles.images[0], recon.images[0]) - psnr(tiles.images[0], start[0])
    # Gain over the 30 dB start, seeds 0–4 × OMP_NUM_THREADS 1, 2 (identical to 0.01 dB across thread
    # counts; OMP_NUM_THREADS=4 gives torch 2 threads on the 2-core machine, seed 0 again +1.53):
    # +1.53, +1.54, +1.38, +1.99, +1.40 dB (min +1.38). Signed Adam, same budget and start: +0.02 to
    # +0.70 dB. The bar sits below the refinement's minimum and above Adam's maximum.
    assert gain > 1.0
    assert recon.objective < 2e-3  # measured 5.7e-4 to 1.6e-3 (start: ~1e-2)

"""benchmarks/learned_inversion.py's pieces: the kernel ridge, the mask-window guess, the one-tile updates."""

from __future__ import annotations

import sys
from types import ModuleType

import pytest
import torch
from scripts import BENCHMARKS, load_benchmark

from attacks.simulate import LocalRecipe, flatten, simulate_update
from attacks.view import simulated_view
from feddp_eval.config import ModelConfig
from feddp_eval.data.synthetic import synthesize_tiles
from feddp_eval.metrics.privacy import mask_painted_prior

TINY = ModelConfig(depth=1, width=4, groups=2)


@pytest.fixture(scope="module")
def script() -> ModuleType:
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))  # it imports inversion_basin as the scripts do when run
    return load_benchmark("learned_inversion.py")


def test_kernel_ridge_with_a_linear_kernel_recovers_a_linear_map(script: ModuleType) -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(200, 12, generator=generator, dtype=torch.float64)
    weights = torch.randn(12, 5, generator=generator, dtype=torch.float64)
    alpha = script.kernel_ridge(x @ x.T, x @ weights, 1e-9)
    new = torch.randn(7, 12, generator=generator, dtype=torch.float64)
    torch.testing.assert_close((new @ x.T) @ alpha, new @ weights, rtol=1e-5, atol=1e-6)


def test_the_window_guess_of_radius_0_is_the_painted_guess_of_exactly_painted_tiles(
    script: ModuleType,
) -> None:
    """Tiles that are their masks painted in two colours: the per-pixel fit gives those colours back."""
    masks = synthesize_tiles(6, tile_size=16, seed=2).masks
    foreground, background = torch.tensor([0.3, 0.1, 0.5]), torch.tensor([0.9, 0.7, 0.8])
    painted = mask_painted_prior(masks, foreground, background)
    weights = script.fit_window_ridge(painted, masks, radius=0, ridge=1e-9)
    guess = script.apply_window_ridge(masks, weights, radius=0, chunk=4)
    torch.testing.assert_close(guess, painted, rtol=0, atol=1e-6)


def test_one_tile_updates_are_each_tiles_own_round(script: ModuleType) -> None:
    tiles = synthesize_tiles(5, tile_size=16, seed=3)
    recipe = LocalRecipe(batches=((0,),), lr=0.05, momentum=0.9)
    view = simulated_view(TINY, tiles.images[:1], tiles.masks[:1], recipe, seed=1)
    scenario = script.Scenario(tiles.images[:1], tiles.masks[:1], view, tiles.images[:1])
    updates = script.one_tile_updates(scenario, tiles.images, tiles.masks, chunk=2)
    names = list(view.global_weights)
    from feddp_eval.models.unet import UNet

    model = UNet.from_config(TINY)
    # vmap against one call per tile: float order only (measured: at most 9.7e-7 of the largest entry,
    # every entry within 1e-7 absolute, at 1, 2 and 4 threads)
    for i in range(5):
        one = flatten(
            simulate_update(
                model, view.global_weights, tiles.images[i : i + 1], tiles.masks[i : i + 1], recipe
            ),
            names,
        )
        torch.testing.assert_close(updates[i], one.detach(), rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(updates[0], flatten(view.update, names), rtol=1e-4, atol=1e-7)


def test_tensor_scales_give_every_tensor_unit_rms(script: ModuleType) -> None:
    updates = torch.cat([torch.randn(30, 4) * 1e-3, torch.randn(30, 6) * 10.0], dim=1)
    scaled = updates / script.tensor_scales(updates, [4, 6])
    for block in scaled.split([4, 6], dim=1):
        assert float(block.pow(2).mean().sqrt()) == pytest.approx(1.0, rel=1e-6)


def test_dp_release_clips_each_gradient_and_adds_noise_of_its_scale(script: ModuleType) -> None:
    lr = 0.05
    gradients = torch.cat([torch.full((1, 4000), 0.1), torch.full((1, 4000), 1e-4)])  # norms 6.3, 0.0063
    clipped = script.dp_release(-lr * gradients.clone(), lr=lr, clip=1.0, noise=0.0, seed=0) / -lr
    assert float(clipped[0].norm()) == pytest.approx(1.0, rel=1e-5)  # scaled down to the clip
    torch.testing.assert_close(clipped[1], gradients[1])  # under the clip: unchanged
    noisy = script.dp_release(torch.zeros(3, 4000), lr=lr, clip=2.0, noise=1.1, seed=0) / -lr
    assert float(noisy.std()) == pytest.approx(2.2, rel=0.03)  # σ·C per coordinate (12,000 draws)

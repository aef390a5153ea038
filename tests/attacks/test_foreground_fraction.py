"""The head-bias foreground-fraction estimate: exact for one SGD step on a BCE loss, flagged otherwise."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attacks.masks import estimate_foreground_fraction, fraction_from_bias
from attacks.simulate import LocalRecipe
from feddp_eval.data.synthetic import synthesize_tiles


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 10_000), batch=st.integers(1, 3))
def test_exact_for_one_sgd_step_on_bce(seed: int, batch: int, make_view) -> None:
    tiles = synthesize_tiles(batch, tile_size=16, seed=seed)
    recipe = LocalRecipe(batches=(tuple(range(batch)),), lr=0.05, momentum=0.9, dice_weight=0.0)
    view = make_view(tiles, recipe, seed=seed)
    estimate = estimate_foreground_fraction(view, images=tiles.images)
    assert estimate is not None and estimate.exact
    assert estimate.value == pytest.approx(float(tiles.masks.mean()), abs=1e-5)


def test_not_exact_with_dice_term_and_says_why(make_view) -> None:
    tiles = synthesize_tiles(1, tile_size=16, seed=1)
    view = make_view(tiles, LocalRecipe(batches=((0,),), lr=0.05, dice_weight=1.0))
    estimate = estimate_foreground_fraction(view, images=tiles.images)
    assert estimate is not None and not estimate.exact and "soft-Dice" in estimate.caveat
    multi = make_view(tiles, LocalRecipe(batches=((0,), (0,)), lr=0.05, dice_weight=0.0))
    caveat = estimate_foreground_fraction(multi, images=tiles.images).caveat  # type: ignore[union-attr]
    assert "2 local steps" in caveat


def test_fraction_from_bias_formula_and_clipping() -> None:
    assert fraction_from_bias(-0.01, lr=0.1, mean_probability=0.5) == pytest.approx(0.4)
    assert fraction_from_bias(1.0, lr=0.1, mean_probability=0.5) == 1.0
    assert fraction_from_bias(-1.0, lr=0.1, mean_probability=0.5) == 0.0

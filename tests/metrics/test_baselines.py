"""Tests of the hematoxylin-Otsu baseline: scikit-image's threshold, and tiles whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.filters import threshold_otsu

from feddp_eval.data.stain import REFERENCE_STAIN
from feddp_eval.data.types import Site, TileSet
from feddp_eval.metrics.baselines import otsu_counts, otsu_segment, otsu_site_scores, otsu_threshold
from feddp_eval.metrics.utility import ConfusionCounts


@pytest.mark.parametrize("seed", range(6))
def test_threshold_equals_scikit_image(seed: int) -> None:
    rng = np.random.default_rng(seed)
    values = rng.gamma(2.0, 1.0, (24, 24)) + (rng.random((24, 24)) < 0.2) * rng.uniform(1, 5)
    assert otsu_threshold(values) == pytest.approx(threshold_otsu(values), abs=1e-12)


def test_threshold_equals_scikit_image_on_fixed_values() -> None:
    values = np.array([0.0, 0.1, 0.2, 0.1, 2.0, 2.1, 1.9, -0.3, 0.05, 2.2])
    assert otsu_threshold(values) == pytest.approx(threshold_otsu(values), abs=1e-12)
    assert 0.2 < otsu_threshold(values) < 1.9
    # As floats: scikit-image gives integer images one bin per integer value instead.
    grey_levels = np.array([[0, 0, 1, 1], [5, 6, 6, 7], [0, 1, 7, 7]], dtype=np.float64)
    assert otsu_threshold(grey_levels) == pytest.approx(threshold_otsu(grey_levels), abs=1e-12)


def test_threshold_of_equal_values_is_that_value() -> None:
    assert otsu_threshold(np.full((4, 4), 0.3)) == 0.3
    with pytest.raises(ValueError, match="non-empty array of finite numbers"):
        otsu_threshold(np.array([]))
    with pytest.raises(ValueError, match="non-empty array of finite numbers"):
        otsu_threshold(np.array([0.0, np.nan]))


def _paint(hematoxylin: np.ndarray) -> torch.Tensor:
    """RGB (1, 3, H, W) of a tile with this hematoxylin and a constant eosin, standard stain, no noise."""
    h = np.asarray(REFERENCE_STAIN.hematoxylin)[:, None, None]
    e = np.asarray(REFERENCE_STAIN.eosin)[:, None, None]
    od = hematoxylin[None] * h + 0.4 * e + REFERENCE_STAIN.background
    return torch.from_numpy(np.exp(-od))[None].float()


def _tiles(hematoxylin: np.ndarray, mask: np.ndarray) -> TileSet:
    return TileSet(_paint(hematoxylin), torch.from_numpy(mask[None, None].astype(np.float32)))


def test_two_levels_are_separated_exactly() -> None:
    mask = np.zeros((16, 16), dtype=bool)
    mask[3:9, 4:12] = True
    tiles = _tiles(np.where(mask, 1.2, 0.1), mask)
    assert torch.equal(otsu_segment(tiles.images), tiles.masks.bool())
    assert otsu_counts(tiles) == ConfusionCounts(tp=48, fp=0, fn=0, tn=208)


def test_a_dark_lookalike_is_a_false_positive() -> None:
    mask = np.zeros((16, 16), dtype=bool)
    mask[0:10, 0:10] = True  # 100 nucleus pixels
    lookalike = np.zeros_like(mask)
    lookalike[12:16, 0:12] = True  # 48 pixels as dark, but not nuclei
    tiles = _tiles(np.where(mask | lookalike, 1.5, 0.1), mask)
    counts = otsu_counts(tiles)
    assert counts == ConfusionCounts(tp=100, fp=48, fn=0, tn=108)
    scores = otsu_site_scores([Site("s", train=tiles, test=tiles)])
    assert scores["s"]["dice"] == pytest.approx(200 / 248)
    assert scores["s"]["jaccard"] == pytest.approx(100 / 148)
    assert scores["pooled"] == scores["s"]


def test_a_blank_tile_predicts_nothing_and_scores_perfectly_against_an_empty_mask() -> None:
    tiles = _tiles(np.full((8, 8), 0.2), np.zeros((8, 8), dtype=bool))
    assert not otsu_segment(tiles.images).any()
    scores = otsu_site_scores([Site("blank", train=tiles, test=tiles)])["blank"]
    assert scores == {"dice": 1.0, "jaccard": 1.0, "accuracy": 1.0}


def test_thresholds_are_chosen_per_tile_and_sites_are_pooled() -> None:
    mask = np.zeros((8, 8), dtype=bool)
    mask[2:5, 2:6] = True
    faint = _tiles(np.where(mask, 0.5, 0.05), mask)  # would fall below a dark tile's threshold
    dark = _tiles(np.where(mask, 2.5, 0.8), mask)
    both = TileSet(torch.cat([faint.images, dark.images]), torch.cat([faint.masks, dark.masks]))
    assert torch.equal(otsu_segment(both.images), both.masks.bool())
    scores = otsu_site_scores([Site("a", train=faint, test=faint), Site("b", train=dark, test=dark)])
    assert set(scores) == {"a", "b", "pooled"}
    assert scores["pooled"]["dice"] == 1.0

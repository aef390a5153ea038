"""Tests of `difficulty = "hard"`: easy output unchanged, hard masks exact, look-alikes outside them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from feddp_eval.config import DataConfig, ExperimentConfig, from_dict, validate
from feddp_eval.data.hard import PIGMENT, HardTissue, draw_hard_tissue
from feddp_eval.data.sites import build_sites
from feddp_eval.data.stain import REFERENCE_STAIN
from feddp_eval.data.synthetic import site_stain, synthesize_tiles, synthetic_sites
from feddp_eval.data.tissue import stamp
from feddp_eval.errors import ConfigError
from feddp_eval.metrics.baselines import otsu_site_scores


def test_easy_tiles_are_those_of_the_generator_before_hard_existed() -> None:
    # Golden numbers from the generator before the split into modules and the hard model (9d3796d).
    # Float32 pixels: the sums moved by 7.5e-11 and 1.3e-9 relative between the dependency versions of
    # then and of 2026-12 (numpy 2.4.6, scipy 1.17.1: 8551.278777487576 and 435.56332744657993), the same
    # on AVX-512 and AVX2 kernels. 1e-7 (float32's resolution) sits 75x outside that and still catches any
    # change to what the generator draws.
    tiles = synthesize_tiles(4, stain=site_stain(1, 3), tile_size=32, seed=11)
    assert tiles.images.double().sum().item() == pytest.approx(8551.278776846826, rel=1e-7)
    assert tiles.images[2, 1].double().sum().item() == pytest.approx(435.56332686543465, rel=1e-7)
    assert int(tiles.masks.sum()) == 629
    tiles = synthesize_tiles(3, tile_size=16, seed=0)
    assert tiles.images.double().sum().item() == pytest.approx(1654.6717313975096, rel=1e-9)
    assert int(tiles.masks.sum()) == 147


def test_easy_is_the_default_difficulty() -> None:
    default = synthesize_tiles(3, tile_size=16, seed=5)
    easy = synthesize_tiles(3, tile_size=16, seed=5, difficulty="easy")
    assert torch.equal(default.images, easy.images) and torch.equal(default.masks, easy.masks)
    assert DataConfig().difficulty == "easy"


def test_hard_tiles_are_deterministic_per_seed_and_differ_from_easy() -> None:
    first = synthesize_tiles(4, tile_size=32, seed=3, difficulty="hard")
    second = synthesize_tiles(4, tile_size=32, seed=3, difficulty="hard")
    other = synthesize_tiles(4, tile_size=32, seed=4, difficulty="hard")
    easy = synthesize_tiles(4, tile_size=32, seed=3)
    assert torch.equal(first.images, second.images) and torch.equal(first.masks, second.masks)
    assert not torch.equal(first.images, other.images)
    assert not torch.equal(first.images, easy.images)


@pytest.mark.parametrize("tile_size", [8, 16, 32])
def test_hard_shapes_ranges_and_binary_masks(tile_size: int) -> None:
    tiles = synthesize_tiles(12, tile_size=tile_size, seed=1, difficulty="hard")
    assert tiles.images.shape == (12, 3, tile_size, tile_size)
    assert tiles.masks.shape == (12, 1, tile_size, tile_size)
    assert tiles.images.dtype == tiles.masks.dtype == torch.float32
    assert tiles.images.min() >= 0.0 and tiles.images.max() <= 1.0
    assert set(tiles.masks.unique().tolist()) == {0.0, 1.0}


def _layers(n: int = 48, size: int = 32, seed: int = 0) -> HardTissue:
    return draw_hard_tissue(np.random.default_rng(seed), (n, size, size))


def test_mask_is_exactly_the_support_of_the_nuclei() -> None:
    layers = _layers()
    np.testing.assert_array_equal(layers.mask, layers.nuclei > 0)
    assert layers.mask.dtype == bool
    # Everything else is hematoxylin too: the nuclei and look-alikes sit on a non-negative haze.
    assert np.all(layers.hematoxylin - layers.nuclei - layers.lookalikes >= -1e-12)


def test_lookalikes_and_pigment_are_dark_and_outside_the_mask() -> None:
    layers = _layers()
    outside = ~layers.mask
    # Dark look-alikes (debris, mucin) and pigment cover many unmasked pixels.
    assert (layers.lookalikes[outside] > 0.5).sum() > 100
    assert (layers.pigment[outside] > 0.5).sum() > 50
    # As dark as nuclei in the hematoxylin channel of the standard deconvolution.
    pigment_in_h = np.asarray(PIGMENT) @ np.linalg.inv(REFERENCE_STAIN.basis())[:, 0]
    assert pigment_in_h > 0.9
    typical_nucleus = np.median(layers.nuclei[layers.mask])
    assert (layers.lookalikes[outside] > typical_nucleus).sum() > 50


def test_nuclei_include_pale_and_hyperchromatic_ones() -> None:
    layers = _layers(n=64)
    nuclear = layers.nuclei[layers.mask]
    assert np.mean(nuclear < 0.2) > 0.05  # pale interiors, at the level of the haze
    assert np.mean(nuclear > 2.0) > 0.01  # hyperchromatic


def test_overlapping_nuclei_add_up() -> None:
    params = {
        "tile": np.array([0, 0]),
        "centre": np.array([[8.0, 7.0], [8.0, 10.0]]),
        "axes": np.array([[3.0, 3.0], [3.0, 3.0]]),
        "angle": np.zeros(2),
        "wobble": np.zeros((2, 3), dtype=np.complex64),
        "intensity": np.array([1.0, 0.5]),
        "rim": np.zeros(2),
    }
    added = stamp((1, 16, 16), params, half=4, add=True)
    kept = stamp((1, 16, 16), params, half=4, add=False)
    assert added[0, 8, 8] == pytest.approx(1.5) and kept[0, 8, 8] == pytest.approx(1.0)
    assert added[0, 8, 5] == pytest.approx(1.0) and added[0, 8, 12] == pytest.approx(0.5)
    np.testing.assert_array_equal(added > 0, kept > 0)


def test_hard_defeats_the_hematoxylin_threshold() -> None:
    scores = {
        difficulty: otsu_site_scores(
            synthetic_sites(2, 0, 24, tile_size=32, seed=2, difficulty=difficulty)  # type: ignore[arg-type]
        )["pooled"]["dice"]
        for difficulty in ("easy", "hard")
    }
    assert scores["easy"] > 0.75
    assert scores["hard"] < 0.65
    assert scores["easy"] - scores["hard"] > 0.15


def test_hard_sites_record_their_difficulty_and_keep_their_stains() -> None:
    hard = synthetic_sites(2, 3, 2, tile_size=16, seed=4, difficulty="hard")
    easy = synthetic_sites(2, 3, 2, tile_size=16, seed=4)
    assert [site.info for site in hard] == [{**site.info, "difficulty": "hard"} for site in easy]
    assert "difficulty" not in easy[0].info


def test_build_sites_passes_the_configured_difficulty() -> None:
    data = DataConfig(sites=1, train_tiles=2, test_tiles=1, tile_size=16, difficulty="hard")
    (site,) = build_sites(data, seed=0)
    (expected,) = synthetic_sites(1, 2, 1, tile_size=16, seed=0, difficulty="hard")
    assert site.info["difficulty"] == "hard"
    assert torch.equal(site.train.images, expected.train.images)


def test_unknown_difficulty_is_an_error_listing_the_choices() -> None:
    with pytest.raises(ConfigError, match=r"`difficulty` must be one of 'easy', 'hard', but got 'medium'"):
        synthesize_tiles(1, tile_size=16, difficulty="medium")  # type: ignore[arg-type]
    with pytest.raises(
        ConfigError, match=r"`data.difficulty` must be one of 'easy', 'hard', but got 'medium'"
    ):
        validate(from_dict(ExperimentConfig, {"data": {"difficulty": "medium"}}))


def test_hard_difficulty_needs_synthetic_tiles() -> None:
    config = from_dict(ExperimentConfig, {"data": {"difficulty": "hard", "source": "some/folder"}})
    with pytest.raises(ConfigError, match=r"applies to synthetic tiles only"):
        validate(config)
    assert validate(from_dict(ExperimentConfig, {"data": {"difficulty": "hard"}})).data.difficulty == "hard"


def test_stain_varies_between_tiles_of_one_site_around_the_site_stain() -> None:
    from feddp_eval.data.hard import _tile_stains  # the within-site drift, not observable per pixel

    stain = site_stain(2, seed=1)
    hematoxylin, eosin = _tile_stains(np.random.default_rng(0), 64, stain)
    for vectors, site_vector in ((hematoxylin, stain.hematoxylin), (eosin, stain.eosin)):
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0)
        cosine = vectors @ np.asarray(site_vector)
        assert cosine.min() > 0.95  # still this site's stain
        assert cosine.max() - cosine.min() > 0.005 and np.unique(vectors, axis=0).shape[0] == 64

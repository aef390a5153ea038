"""Every registered attack, tiny model, two iterations: shapes, range, finiteness, repr, determinism."""

from __future__ import annotations

import pytest
import torch

from attacks import ATTACKS
from attacks.base import AttackerKnowledge
from attacks.simulate import LocalRecipe
from feddp_eval.data.synthetic import synthesize_tiles
from feddp_eval.errors import ConfigError

HONEST = [name for name in ATTACKS.names() if ATTACKS.get(name).threat == "honest-but-curious server"]


def test_the_malicious_attacks_are_the_ones_expected() -> None:
    # A malicious attack needs its own training run; it is tested in test_imprint.py.
    assert sorted(set(ATTACKS.names()) - set(HONEST)) == ["imprint"]


@pytest.mark.parametrize("name", HONEST)
@pytest.mark.parametrize("mask", ["known", "unknown"])
@pytest.mark.parametrize("image", ["pixels", "stain"])
def test_every_attack_honours_the_contract(name: str, mask: str, image: str, make_view) -> None:
    tiles = synthesize_tiles(2, tile_size=16, seed=5)
    view = make_view(
        tiles, LocalRecipe(batches=((0, 1),), lr=0.05), mask=mask, prior=tiles.images.mean(dim=(0, 2, 3))
    )
    attack = ATTACKS.create(name, iterations=2, restarts=2, image=image)
    first = attack.reconstruct(view, seed=7)
    again = attack.reconstruct(view, seed=7)
    assert first.images.shape == (2, 3, 16, 16) and first.masks.shape == (2, 1, 16, 16)
    assert torch.isfinite(first.images).all() and torch.isfinite(first.masks).all()
    assert float(first.images.min()) >= 0.0 and float(first.images.max()) <= 1.0
    assert float(first.masks.min()) >= 0.0 and float(first.masks.max()) <= 1.0
    assert len(first.restart_objectives) == 2 and first.objective == min(first.restart_objectives)
    assert first.iterations == 2 and first.stopped == "budget"
    if mask == "known":
        torch.testing.assert_close(first.masks, tiles.masks)
    torch.testing.assert_close(first.images, again.images, rtol=0, atol=0)
    assert type(attack).__name__ in repr(attack) and "iterations=2" in repr(attack)


def test_unknown_attack_and_settings_are_errors() -> None:
    with pytest.raises(ConfigError, match="known attacks: dlg, imprint, inverting-gradients"):
        ATTACKS.get("nope")
    with pytest.raises(ConfigError, match="unknown inverting-gradients settings"):
        ATTACKS.create("inverting-gradients", iterationz=3)
    with pytest.raises(ConfigError, match="`iterations` must be >= 1"):
        ATTACKS.create("dlg", iterations=0)
    with pytest.raises(ConfigError, match="`mask` must be 'known' or 'unknown'"):
        AttackerKnowledge(mask="maybe")  # type: ignore[arg-type]


def test_time_budget_stops_the_loop(make_view) -> None:
    tiles = synthesize_tiles(1, tile_size=16, seed=5)
    view = make_view(tiles, LocalRecipe(batches=((0,),), lr=0.05))
    recon = ATTACKS.create("inverting-gradients", iterations=10_000, time_budget=0.2).reconstruct(view)
    assert recon.stopped == "time" and recon.iterations < 10_000


def test_stain_tied_unknown_masks_follow_haematoxylin(make_view) -> None:
    tiles = synthesize_tiles(2, tile_size=16, seed=5)
    view = make_view(
        tiles, LocalRecipe(batches=((0, 1),), lr=0.05), mask="unknown", prior=tiles.images.mean(dim=(0, 2, 3))
    )
    recon = ATTACKS.create("inverting-gradients", iterations=3, mask_model="stain").reconstruct(view, seed=0)
    assert recon.masks.shape == (2, 1, 16, 16)
    assert float(recon.masks.min()) >= 0.0 and float(recon.masks.max()) <= 1.0
    assert float(recon.masks.std()) > 0  # tied to the (varying) haematoxylin, not a constant

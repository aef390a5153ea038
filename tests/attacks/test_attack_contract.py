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
# Attacks that learn from public tiles (tests/attacks/test_learned.py) map one tile's update to it,
# with nothing iterated or random: the contract below is that of the optimising attacks.
OPTIMISING = [name for name in HONEST if not ATTACKS.create(name).public_tiles_wanted()]


def test_the_malicious_attacks_are_the_ones_expected() -> None:
    # A malicious attack needs its own training run; it is tested in test_imprint.py.
    assert sorted(set(ATTACKS.names()) - set(HONEST)) == ["imprint"]


def test_the_optimising_attacks_are_the_ones_expected() -> None:
    assert sorted(set(HONEST) - set(OPTIMISING)) == ["learned-inversion"]


@pytest.mark.parametrize("name", OPTIMISING)
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
    with pytest.raises(
        ConfigError, match="known attacks: dlg, imprint, inverting-gradients, learned-inversion"
    ):
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


def test_the_plateau_rule_reads_the_objective_only_and_waits_for_three_eighths() -> None:
    """`plateau`: checked every 25 iterations from 3/8 of the budget, never at the budget itself;
    stops when the best objective fell by no more than that fraction over the last 100 iterations."""
    attack = ATTACKS.create("inverting-gradients", iterations=400, plateau=0.01)
    flat = [(1, 2.0)] + [(25 * k, 1.0) for k in range(1, 16)]
    falling = [(1, 2.0)] + [(25 * k, 1.0 - 0.01 * k) for k in range(1, 16)]
    stop = attack._stop
    assert stop(125, flat[:6], 1.0, start=float("inf")) is None  # before 3/8 of 400 = 150
    assert stop(150, flat[:7], 1.0, start=float("inf")) == "plateau"
    assert stop(160, flat[:7], 1.0, start=float("inf")) is None  # not a checkpoint
    # 0.98 → 0.94 over the last 100 iterations, a 4% fall: still descending, no stop
    assert stop(150, falling[:7], falling[6][1], start=float("inf")) is None
    assert stop(400, flat, 1.0, start=float("inf")) is None  # the budget ends it, as "budget"
    never = ATTACKS.create("inverting-gradients", iterations=400)
    assert never.config.plateau == 0 and never._stop(150, flat[:7], 1.0, start=float("inf")) is None
    with pytest.raises(ConfigError, match="`plateau` must be in"):
        ATTACKS.create("inverting-gradients", plateau=1.0)


def test_an_inversion_that_plateaus_stops_and_says_so(make_view) -> None:
    tiles = synthesize_tiles(1, tile_size=16, seed=5)
    view = make_view(tiles, LocalRecipe(batches=((0,),), lr=0.05))
    # plateau 0.999: any 100 iterations that lower the objective by less than 99.9% count as flat
    recon = ATTACKS.create("inverting-gradients", iterations=400, plateau=0.999).reconstruct(view)
    assert (recon.stopped, recon.iterations) == ("plateau", 150)
    full = ATTACKS.create("inverting-gradients", iterations=400).reconstruct(view)
    assert (full.stopped, full.iterations) == ("budget", 400)

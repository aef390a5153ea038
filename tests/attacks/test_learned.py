"""The learned inversion: its pieces (kernel ridge, the mask-window guess, tensor scales), its
contract on a one-tile view, and what it refuses."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import Tensor

from attacks import ATTACKS
from attacks.learned import (
    MASK_THRESHOLDS,
    RIDGES,
    apply_window_ridge,
    dice_per_tile,
    fit_window_ridge,
    kernel_ridge,
    match_colours,
    mean_colours,
    one_tile_updates,
    site_colours,
    tensor_scales,
)
from attacks.simulate import LocalRecipe, flatten, simulate_update
from attacks.threat_model import ServerView
from attacks.view import simulated_view
from feddp_eval.config import ModelConfig
from feddp_eval.data.synthetic import synthesize_tiles
from feddp_eval.data.types import TileSet
from feddp_eval.errors import ConfigError
from feddp_eval.metrics.privacy import all_nucleus_dice, mask_dice, mask_painted_prior
from feddp_eval.models.unet import UNet
from tests.tile_folders import write_tile_folder

RELU = ModelConfig(depth=1, width=4, groups=2)
ONE_STEP = LocalRecipe(batches=((0,),), lr=0.05, momentum=0.9)


def test_kernel_ridge_with_a_linear_kernel_recovers_a_linear_map() -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(200, 12, generator=generator, dtype=torch.float64)
    weights = torch.randn(12, 5, generator=generator, dtype=torch.float64)
    alpha = kernel_ridge(x @ x.T, x @ weights, 1e-9)
    new = torch.randn(7, 12, generator=generator, dtype=torch.float64)
    torch.testing.assert_close((new @ x.T) @ alpha, new @ weights, rtol=1e-5, atol=1e-6)


def test_the_window_guess_of_radius_0_is_the_painted_guess_of_exactly_painted_tiles() -> None:
    """Tiles that are their masks painted in two colours: the per-pixel fit gives those colours back."""
    masks = synthesize_tiles(6, tile_size=16, seed=2).masks
    foreground, background = torch.tensor([0.3, 0.1, 0.5]), torch.tensor([0.9, 0.7, 0.8])
    painted = mask_painted_prior(masks, foreground, background)
    weights = fit_window_ridge(painted, masks, radius=0, ridge=1e-9)
    guess = apply_window_ridge(masks, weights, radius=0)
    torch.testing.assert_close(guess, painted, rtol=0, atol=1e-6)


@pytest.mark.parametrize("chunk", [1, 7, 64])
def test_tensor_scales_give_every_tensor_unit_rms(chunk: int) -> None:
    """Whatever the chunks the squares are summed in (30 updates: 30, 5 and 1 chunks)."""
    updates = torch.cat([torch.randn(30, 4) * 1e-3, torch.randn(30, 6) * 10.0], dim=1)
    scaled = updates / tensor_scales(updates, [4, 6], chunk=chunk)
    for block in scaled.split([4, 6], dim=1):
        assert float(block.pow(2).mean().sqrt()) == pytest.approx(1.0, rel=1e-6)


def test_one_tile_updates_are_each_tiles_own_round() -> None:
    tiles = synthesize_tiles(5, tile_size=16, seed=3)
    torch.manual_seed(1)
    model = UNet.from_config(RELU)
    weights = {k: v.detach() for k, v in model.named_parameters()}
    updates = one_tile_updates(model, weights, ONE_STEP, tiles.images, tiles.masks, chunk=2)
    # vmap against one call per tile: float order only (measured: at most 9.7e-7 of the largest entry,
    # every entry within 1e-7 absolute, at 1, 2 and 4 threads)
    for i in range(5):
        one = simulate_update(model, weights, tiles.images[i : i + 1], tiles.masks[i : i + 1], ONE_STEP)
        torch.testing.assert_close(updates[i], flatten(one, list(weights)).detach(), rtol=1e-4, atol=1e-7)
    with pytest.raises(ValueError, match="slot 0 alone"):
        one_tile_updates(model, weights, LocalRecipe(batches=((0, 1),), lr=0.05), tiles.images, tiles.masks)


def _view(n_tiles: int = 1, public: int = 160, masks_known: bool = True) -> tuple[ServerView, TileSet]:
    """One client round of ``n_tiles`` synthetic tiles through the tiny ReLU U-Net, and public tiles of
    the same stain (the generator's default) at another seed."""
    from attacks import AttackerKnowledge

    tiles = synthesize_tiles(n_tiles, tile_size=16, seed=11)
    recipe = LocalRecipe(batches=(tuple(range(n_tiles)),), lr=0.05, momentum=0.9)
    view = simulated_view(
        RELU,
        tiles.images,
        tiles.masks,
        recipe,
        knowledge=AttackerKnowledge(mask="known" if masks_known else "unknown"),
    )
    return ServerView(
        **{**view.__dict__, "public_tiles": synthesize_tiles(public, tile_size=16, seed=12)}
    ), tiles


def test_a_one_tile_update_gives_a_tile_its_guess_and_the_ridge_it_picked() -> None:
    view, tiles = _view()
    attack = ATTACKS.create("learned-inversion", public_tiles=120, validation=40)
    recon = attack.reconstruct(view)
    again = attack.reconstruct(view)
    assert recon.images.shape == (1, 3, 16, 16) and recon.guess is not None
    assert float(recon.images.min()) >= 0.0 and float(recon.images.max()) <= 1.0
    torch.testing.assert_close(recon.masks, tiles.masks)
    torch.testing.assert_close(recon.images, again.images, rtol=0, atol=0)  # nothing random
    assert recon.stopped == "fitted" and recon.iterations == 0
    assert recon.details == {"public_tiles": 120, "ridge": recon.details["ridge"]}
    # the guess is the window ridge fitted on the same 120 public tiles, applied to the true mask
    public = view.public_tiles
    assert public is not None
    window = fit_window_ridge(public.images[:120], public.masks[:120], radius=7)
    torch.testing.assert_close(recon.guess, apply_window_ridge(tiles.masks, window, radius=7))
    assert attack.public_tiles_wanted() == 160


def test_the_map_reads_the_update_not_only_the_mask() -> None:
    """The same mask under another tile's update: the guess is the same, the reconstruction is not."""
    view, tiles = _view()
    other = synthesize_tiles(1, tile_size=16, seed=13)
    model = UNet.from_config(RELU)
    update = simulate_update(model, view.global_weights, other.images, tiles.masks, view.recipe)
    attack = ATTACKS.create("learned-inversion", public_tiles=120, validation=40)
    first, second = (
        attack.reconstruct(view),
        attack.reconstruct(ServerView(**{**view.__dict__, "update": update})),
    )
    assert first.guess is not None and second.guess is not None
    torch.testing.assert_close(first.guess, second.guess, rtol=0, atol=0)
    assert float((first.images - second.images).abs().max()) > 1e-3


def test_on_its_own_public_tiles_the_map_is_never_worse_than_its_guess() -> None:
    """Kernel ridge at a training point predicts ``y − λ(K + λI)⁻¹y``, whose error is no larger than
    ``y``'s over the training set; the fitted residuals are centred and the box clamp only brings a
    pixel closer to the truth. So attacking each fitted public tile's own update in turn, the pooled
    error is at most the guess's, whatever the ridge: a check that the captured update is read
    exactly as the public ones (flattening, scaling, kernel rows)."""
    public = synthesize_tiles(40, tile_size=16, seed=12)
    attack = ATTACKS.create("learned-inversion", public_tiles=30, validation=10)
    rebuilt, guessed = [], []
    for j in range(30):
        tile = public.subset([j])
        view = simulated_view(RELU, tile.images, tile.masks, ONE_STEP)
        recon = attack.reconstruct(ServerView(**{**view.__dict__, "public_tiles": public}))
        assert recon.guess is not None
        rebuilt.append(float((recon.images - tile.images).pow(2).sum()))
        guessed.append(float((recon.guess - tile.images).pow(2).sum()))
    # measured: 0.937 of the guess's squared error (ridge 10 picked) at 1, 2 and 4 threads (spread 2e-9)
    assert sum(rebuilt) < sum(guessed)


def test_masks_unknown_the_map_gives_the_mask_and_the_image_over_the_public_mean() -> None:
    """With the masks unknown the guess without the update is the fitted public tiles' mean image, and
    a second map gives the mask, shifted so that its picked threshold falls at the scoring's 0.5."""
    view, _ = _view(masks_known=False)
    assert view.masks is None
    attack = ATTACKS.create("learned-inversion", public_tiles=120, validation=40)
    recon = attack.reconstruct(view)
    again = attack.reconstruct(view)
    assert recon.images.shape == (1, 3, 16, 16) and recon.masks.shape == (1, 1, 16, 16)
    assert float(recon.masks.min()) >= 0.0 and float(recon.masks.max()) <= 1.0
    torch.testing.assert_close(recon.masks, again.masks, rtol=0, atol=0)  # nothing random
    details = recon.details
    assert set(details) == {"public_tiles", "ridge", "mask_ridge", "mask_threshold"}
    assert details["mask_ridge"] in RIDGES and details["mask_threshold"] in MASK_THRESHOLDS
    public = view.public_tiles
    assert public is not None and recon.guess is not None
    torch.testing.assert_close(recon.guess, public.images[:120].mean(0, keepdim=True))


def test_masks_unknown_the_update_gives_masks_above_the_blind_bar_and_images_above_the_guess() -> None:
    """Twenty fresh tiles, each a one-tile round attacked with the masks unknown: the maps' masks
    beat the Dice of marking every pixel nucleus (the best blind mask), and the images beat the
    public mean image."""
    public = synthesize_tiles(160, tile_size=16, seed=12)
    fresh = synthesize_tiles(20, tile_size=16, seed=13)
    attack = ATTACKS.create("learned-inversion", public_tiles=120, validation=40)
    dice, flat, rebuilt, guessed = [], [], 0.0, 0.0
    for j in range(20):
        tile = fresh.subset([j])
        view = _view_of(tile, public, masks_known=False)
        recon = attack.reconstruct(view)
        assert recon.guess is not None
        dice.append(mask_dice(recon.masks, tile.masks))
        flat.append(all_nucleus_dice(tile.masks))
        rebuilt += float((recon.images - tile.images).pow(2).sum())
        guessed += float((recon.guess - tile.images).pow(2).sum())
    # measured: mean Dice 0.485 against 0.234 for every pixel nucleus; the images' squared error 0.679
    # of the guess's (the same at 1, 2 and 4 threads and on AVX2 kernels: Dice to the last digit, the
    # ratio within 4e-9). Fresh tiles of seeds 14–16 instead: Dice 0.25–0.34 above the bar, ratio 0.68–0.76.
    assert sum(dice) / 20 > sum(flat) / 20 + 0.15
    assert rebuilt < 0.85 * guessed


def test_the_mask_maps_dice_is_the_scorings() -> None:
    masks = synthesize_tiles(8, tile_size=16, seed=4).masks
    generator = torch.Generator().manual_seed(0)
    guesses = torch.rand(masks.shape, generator=generator) < 0.3
    guesses[0] = False  # an empty guess of a tile that has nuclei: 0
    ours = dice_per_tile(guesses.flatten(1), masks.flatten(1) > 0.5)
    reference = [mask_dice(g.float(), m) for g, m in zip(guesses, masks, strict=True)]
    torch.testing.assert_close(ours, torch.tensor(reference, dtype=torch.float64), rtol=0, atol=1e-12)
    empty = torch.zeros(2, 16 * 16, dtype=torch.bool)
    torch.testing.assert_close(dice_per_tile(empty, empty), torch.ones(2, dtype=torch.float64))


def _view_of(tile: TileSet, public: TileSet, *, masks_known: bool) -> ServerView:
    from attacks import AttackerKnowledge

    mask = "known" if masks_known else "unknown"
    view = simulated_view(RELU, tile.images, tile.masks, ONE_STEP, knowledge=AttackerKnowledge(mask=mask))
    return ServerView(**{**view.__dict__, "public_tiles": public})


@pytest.mark.parametrize(
    ("view_args", "message"),
    [
        ({"n_tiles": 2}, "one-tile update"),
        ({"public": 100}, "needs 160 public tiles"),
    ],
)
def test_views_it_cannot_read_are_refused_with_the_way_out(view_args: dict, message: str) -> None:
    view, _ = _view(**view_args)
    with pytest.raises(ConfigError, match=message):
        ATTACKS.create("learned-inversion", public_tiles=120, validation=40).reconstruct(view)
    without = ServerView(**{**_view()[0].__dict__, "public_tiles": None})
    with pytest.raises(ConfigError, match="public_data=DIR"):
        ATTACKS.create("learned-inversion").reconstruct(without)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ConfigError, match="`public_tiles` must be >= 2"):
        ATTACKS.create("learned-inversion", public_tiles=1)
    with pytest.raises(ConfigError, match="`validation` must be >= 1"):
        ATTACKS.create("learned-inversion", validation=0)
    with pytest.raises(ConfigError, match="`radius` must be >= 0"):
        ATTACKS.create("learned-inversion", radius=-1)


def test_the_workflows_public_tiles_have_the_sites_stain_and_none_of_its_tiles() -> None:
    from types import SimpleNamespace

    from feddp_eval.data.stain import StainProfile
    from feddp_eval.data.synthetic import synthetic_sites
    from feddp_eval.seeding import derive_seed
    from feddp_eval.workflows.attack_run import public_tiles

    site = synthetic_sites(2, [5, 3], 2, tile_size=16, seed=4)[1]
    target = SimpleNamespace(info=site.info, site=1)
    config = SimpleNamespace(seed=9, data=SimpleNamespace(tile_size=16))  # what public_tiles reads
    learned = ATTACKS.create("learned-inversion", public_tiles=30, validation=10)
    public = public_tiles(config, target, learned)  # type: ignore[arg-type]
    stain = StainProfile(**site.info["stain"])  # type: ignore[arg-type]
    expected = synthesize_tiles(40, stain=stain, tile_size=16, seed=derive_seed(9, "public-tiles", 1))
    torch.testing.assert_close(public.images, expected.images, rtol=0, atol=0)
    for tile in (*site.train.images, *site.test.images):
        assert float((public.images - tile).abs().flatten(1).max(1).values.min()) > 0.05
    assert public_tiles(config, target, ATTACKS.create("inverting-gradients")) is None  # type: ignore[arg-type]
    assert public_tiles(config, SimpleNamespace(info={"source": "folder"}, site=1), learned) is None  # type: ignore[arg-type]


def test_a_public_folder_gives_a_seeded_draw_of_its_own_tiles(tmp_path: Path) -> None:
    """Six 32 px images cut into 24 tiles of 16 px: the draw is 10 of exactly those tiles, the same for
    the same seed and site, another for another site; asking for more than the folder holds says how
    many it holds and what to do."""
    from types import SimpleNamespace

    from feddp_eval.data.folder import load_tiles
    from feddp_eval.workflows.attack_run import public_folder_tiles

    write_tile_folder(tmp_path / "public", synthesize_tiles(6, tile_size=32, seed=5))
    every = load_tiles(tmp_path / "public", tile_size=16)
    assert every.images.shape == (24, 3, 16, 16) and every.masks.shape == (24, 1, 16, 16)
    config = SimpleNamespace(seed=9, data=SimpleNamespace(tile_size=16, tile_mode="crop"))
    drawn = public_folder_tiles(config, str(tmp_path / "public"), 10, site=1)  # type: ignore[arg-type]
    flat = every.images.flatten(1)
    found = [int((flat == tile.flatten()).all(1).nonzero()) for tile in drawn.images]
    assert len(set(found)) == 10  # ten different tiles of the folder, each once
    torch.testing.assert_close(drawn.masks, every.masks[found], rtol=0, atol=0)
    again = public_folder_tiles(config, str(tmp_path / "public"), 10, site=1)  # type: ignore[arg-type]
    torch.testing.assert_close(again.images, drawn.images, rtol=0, atol=0)
    other = public_folder_tiles(config, str(tmp_path / "public"), 10, site=0)  # type: ignore[arg-type]
    assert not torch.equal(other.images, drawn.images)
    with pytest.raises(ConfigError, match=r"cuts into 24 tiles of 16 px \(crop\).*learns from 25"):
        public_folder_tiles(config, str(tmp_path / "public"), 25, site=1)  # type: ignore[arg-type]


def test_the_preflight_reads_a_folder_runs_public_tiles_and_refuses_what_cannot_serve(tmp_path: Path) -> None:
    """Before any training: a folder run without public tiles says how to give them; a public folder
    that overlaps the clients' data, is missing or is too small is refused; one tile per round is
    asked for, since a folder's site sizes are only read at training."""
    from feddp_eval.config import from_dict, validate
    from feddp_eval.config.sections import ExperimentConfig
    from feddp_eval.workflows.attack import public_problem

    write_tile_folder(tmp_path / "clients", synthesize_tiles(4, tile_size=16, seed=1))
    write_tile_folder(tmp_path / "public", synthesize_tiles(8, tile_size=16, seed=2))

    def problem(public_data: str | None, *, one_tile: bool = True) -> str | None:
        attack: dict[str, object] = {"name": "learned-inversion"}
        if public_data is not None:
            options = {"public_tiles": 6, "validation": 2, "public_data": public_data}
            attack["options"] = {"learned-inversion": options}
        train = {"batch_size": 1, "local_steps": 1} if one_tile else {}
        data = {"source": str(tmp_path / "clients"), "tile_size": 16}
        config = {"data": data, "train": train, "attack": attack}
        return public_problem(validate(from_dict(ExperimentConfig, config)))

    assert "--attack-option public_data=DIR" in (problem(None) or "")
    for inside in ("clients", "clients/images", "."):  # the data folder, a part of it, a folder holding it
        assert "overlaps the clients' data folder" in (problem(str(tmp_path / inside)) or "")
    assert "does not exist" in (problem(str(tmp_path / "nowhere")) or "")
    write_tile_folder(tmp_path / "small", synthesize_tiles(3, tile_size=16, seed=3))
    assert "cuts into 3 tiles" in (problem(str(tmp_path / "small")) or "")
    assert "--batch-size 1 --local-steps 1" in (problem(str(tmp_path / "public"), one_tile=False) or "")
    assert problem(str(tmp_path / "public")) is None


@pytest.mark.parametrize(
    ("own_noise", "kind"),
    [(0.05, "own-guess"), (0.2, "painted-mask")],
    ids=["own-stronger", "painted-stronger"],
)
def test_leakage_is_read_against_the_stronger_of_the_own_and_the_painted_guess(
    own_noise: float, kind: str
) -> None:
    """A learned attacker holds the painted-mask guess too: public tiles of another look can give it a
    guess of its own below the painted one, and then the painted one is the bar."""
    from feddp_eval.metrics.privacy import score_reconstruction
    from feddp_eval.workflows.rows import scores_columns

    generator = torch.Generator().manual_seed(0)
    truth = torch.rand(3, 3, 16, 16, generator=generator)

    def near(sd: float) -> Tensor:
        return truth + sd * torch.randn(truth.shape, generator=generator)

    scores, painted, mean, own = (score_reconstruction(near(sd), truth) for sd in (0.02, 0.1, 0.3, own_noise))
    columns = scores_columns(scores, mean, painted, mask_scored=False, own_guess=own)
    bar = own if kind == "own-guess" else painted
    assert columns["prior_kind"] == kind
    assert columns["margin_psnr"] == pytest.approx(scores.psnr - bar.psnr)
    assert columns["own_guess_psnr"] == pytest.approx(own.psnr)  # the own guess is reported either way


@pytest.mark.parametrize(
    ("own_noise", "kind"), [(0.05, "own-guess"), (0.5, "mean-colour")], ids=["own-stronger", "mean-stronger"]
)
def test_masks_unknown_leakage_is_read_against_the_stronger_of_the_own_and_the_mean_colour_guess(
    own_noise: float, kind: str
) -> None:
    from feddp_eval.metrics.privacy import score_reconstruction
    from feddp_eval.workflows.rows import scores_columns

    generator = torch.Generator().manual_seed(0)
    truth = torch.rand(3, 3, 16, 16, generator=generator)

    def near(sd: float) -> Tensor:
        return truth + sd * torch.randn(truth.shape, generator=generator)

    scores, mean, own = (score_reconstruction(near(sd), truth) for sd in (0.02, 0.3, own_noise))
    columns = scores_columns(scores, mean, None, mask_scored=True, own_guess=own)
    bar = own if kind == "own-guess" else mean
    assert columns["prior_kind"] == kind
    assert columns["margin_psnr"] == pytest.approx(scores.psnr - bar.psnr)


def test_masks_unknown_public_colours_are_shifted_to_the_sites_mean_colour() -> None:
    """Without the masks the view's prior holds only the site's mean colour: each channel of the public
    tiles is shifted so that their mean is it (no pixel clamps here)."""
    tiles = synthesize_tiles(6, tile_size=16, seed=2)
    dull = 0.4 + 0.2 * tiles.images
    colour = torch.tensor([0.62, 0.48, 0.66])
    prior = colour[:, None, None].expand(3, 16, 16)
    moved = site_colours(dull, tiles.masks, prior, None)
    assert float(moved.min()) > 0 and float(moved.max()) < 1
    torch.testing.assert_close(moved.mean((0, 2, 3)), colour, rtol=0, atol=1e-6)
    centred = [x - x.mean((0, 2, 3), keepdim=True) for x in (moved, dull)]
    torch.testing.assert_close(*centred)  # a shift: the contrast is the tiles' own


def test_public_colours_are_moved_to_the_sites_published_ones() -> None:
    """The painted guess's mean colours are the published ones it was painted with; tiles of another
    look, moved by one affine map per channel, take them as their mean nuclei and background colours
    (no pixel clamps here); a channel whose nuclei and background are alike is only shifted."""
    tiles = synthesize_tiles(6, tile_size=16, seed=2)
    nuclei, background = torch.tensor([0.45, 0.25, 0.55]), torch.tensor([0.85, 0.75, 0.80])
    painted = mask_painted_prior(tiles.masks, nuclei, background)
    for got, want in zip(mean_colours(painted, tiles.masks), (nuclei, background), strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    generator = torch.Generator().manual_seed(0)
    other = mask_painted_prior(
        tiles.masks, torch.tensor([0.40, 0.30, 0.50]), torch.tensor([0.80, 0.70, 0.85])
    )
    other = other + 0.03 * torch.randn(other.shape, generator=generator)
    moved = match_colours(other, tiles.masks, nuclei, background)
    assert float(moved.min()) > 0 and float(moved.max()) < 1  # nothing clamped: the means are exact
    for got, want in zip(mean_colours(moved, tiles.masks), (nuclei, background), strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    flat = other.clone()
    flat[:, 1] = 0.5  # nuclei and background alike in green
    shifted = match_colours(flat, tiles.masks, nuclei, background)
    torch.testing.assert_close(shifted[:, 1], torch.full_like(shifted[:, 1], 0.75), rtol=0, atol=1e-6)


def test_colours_are_matched_for_a_public_folder_and_not_for_the_generators_tiles() -> None:
    auto = ATTACKS.create("learned-inversion")
    folder = ATTACKS.create("learned-inversion", public_data="/somewhere")
    kept = ATTACKS.create("learned-inversion", public_data="/somewhere", match_colours="off")
    forced = ATTACKS.create("learned-inversion", match_colours="on")
    assert [a.matches_colours() for a in (auto, folder, kept, forced)] == [False, True, False, True]
    assert "colours moved to the site's published ones" in folder.public_description()
    assert "synthetic generator" in auto.public_description()
    with pytest.raises(ConfigError, match="must be auto, on or off"):
        ATTACKS.create("learned-inversion", match_colours="sometimes")


def test_public_tiles_whose_updates_cannot_fit_in_memory_are_refused_before_training(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The updates alone (tiles × parameters × 4 bytes) against the memory available: refused with
    the numbers and how many would fit; where they fit, or the memory cannot be read, not refused."""
    from feddp_eval.config import from_dict, validate
    from feddp_eval.config.sections import ExperimentConfig
    from feddp_eval.models.unet import count_parameters
    from feddp_eval.workflows import attack as workflow

    config = validate(
        from_dict(
            ExperimentConfig,
            {
                "model": {"depth": 1, "width": 4, "groups": 2},
                "data": {"train_tiles": [6, 1], "sites": 2},
                "attack": {"name": "learned-inversion"},
            },
        )
    )
    numbers = count_parameters(UNet.from_config(RELU))
    need = 2200 * numbers * 4  # the default 2,000 + 200 public tiles
    monkeypatch.setattr(workflow, "available_memory", lambda: need - 1)
    problem = workflow.public_problem(config) or ""
    assert f"2,200 × {numbers:,} float32 numbers" in problem and "public_tiles=N" in problem
    assert f"about {(need - 1) // (numbers * 4):,} at most" in problem
    monkeypatch.setattr(workflow, "available_memory", lambda: need)
    assert workflow.public_problem(config) is None
    monkeypatch.setattr(workflow, "available_memory", lambda: None)
    assert workflow.public_problem(config) is None


def test_the_preflight_knows_how_many_tiles_poisson_sampling_draws_before_training(
    tmp_path: Path, tiny_config
) -> None:  # type: ignore[no-untyped-def]
    """dp-sgd at batch 1 on synthetic data: a round whose Poisson draw at the attacked site is not one
    tile is refused before training with the rounds that draw one; the training run's captured batches
    are the preflight's replay, round by round."""
    from feddp_eval.config import with_overrides
    from feddp_eval.federated.capture import list_captures
    from feddp_eval.pipeline import run_train
    from feddp_eval.workflows.attack import poisson_draw_problem

    settings = {"train.batch_size": 1, "train.local_steps": 1, "train.rounds": 6}
    settings |= {"defense.name": "dp-sgd", "defense.noise": 1.1, "attack.name": "learned-inversion"}
    config = with_overrides(tiny_config, settings)  # the attacked site: site 1, 3 tiles (rate 1/3)
    run = run_train(config, run_dir=tmp_path / "run").run_dir
    drawn = {c.round: sum(map(len, c.metadata["batches"])) for c in list_captures(run) if c.site_index == 1}
    assert sorted(drawn) == [1, 2, 3, 4, 5, 6] and {n == 1 for n in drawn.values()} == {True, False}
    ones = [r for r, n in drawn.items() if n == 1]
    for round_index, count in drawn.items():
        problem = poisson_draw_problem(with_overrides(config, {"attack.target_round": round_index}))
        if count == 1:
            assert problem is None
        else:
            assert problem is not None and f"draws {count} tiles at site 1 in round {round_index}" in problem
            assert f"`--target-round` {', '.join(map(str, ones))}" in problem
    undefended = with_overrides(config, {"defense.name": "none", "defense.noise": 0.0})
    assert all(
        poisson_draw_problem(with_overrides(undefended, {"attack.target_round": r})) is None for r in drawn
    )

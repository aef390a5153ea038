"""The malicious server's imprint block and the imprint attack: exact tiles, blends, DP, training."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from attacks import ATTACKS, AttackerKnowledge, ServerView
from attacks.imprint import THREAT, Imprint, ImprintServer, read_slots, slot_ratios
from attacks.imprint.block import (
    ENCODER_BIAS,
    ENCODER_WEIGHT,
    brightness_thresholds,
    build_imprinted,
    slot_of,
    strip_imprint,
)
from attacks.simulate import LocalRecipe
from feddp_eval.config import ExperimentConfig, ModelConfig, TrainConfig, config_hash, from_dict, validate
from feddp_eval.data.synthetic import synthesize_tiles
from feddp_eval.data.types import Site, TileSet
from feddp_eval.federated.loop import run_fedavg
from feddp_eval.metrics.privacy import psnr
from feddp_eval.models.loss import segmentation_loss
from feddp_eval.models.unet import UNet

MODEL = ModelConfig(depth=1, width=4, groups=2)
SIZE = 16


def _unet(seed: int = 0) -> UNet:
    torch.manual_seed(seed)
    return UNet(depth=MODEL.depth, width=MODEL.width, groups=MODEL.groups)


def _released(
    tiles: TileSet, thresholds: list[float], *, steps: int = 1, lr: float = 0.05, gain: float = 1.0
) -> dict:
    """Train the imprinted tiny U-Net for ``steps`` SGD steps on ``tiles``; the update ``local − sent``."""
    model = build_imprinted(
        _unet(),
        (3, SIZE, SIZE),
        thresholds,
        scale=1e-3,
        gain=gain,
        generator=torch.Generator().manual_seed(0),
    )
    sent = {k: v.detach().clone() for k, v in model.named_parameters()}
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    for _ in range(steps):
        optimizer.zero_grad()
        segmentation_loss(model(tiles.images), tiles.masks).backward()
        optimizer.step()
    return {k: v.detach() - sent[k] for k, v in model.named_parameters()}


def _view(update: dict, n: int, prior: torch.Tensor | None = None) -> ServerView:
    return ServerView(
        update=update,
        global_weights={},
        model=MODEL,
        recipe=LocalRecipe(batches=(tuple(range(n)),), lr=0.05),
        n_images=n,
        tile_size=SIZE,
        masks=None,
        knowledge=AttackerKnowledge(mask="unknown"),
        prior=prior,
    )


def _spread_thresholds(tiles: TileSet, bins: int = 32) -> list[float]:
    b = tiles.images.mean(dim=(1, 2, 3))
    return brightness_thresholds(float(b.mean()), float(b.std()), bins)


def test_a_tile_alone_in_its_bin_comes_back_exactly() -> None:
    tiles = synthesize_tiles(1, tile_size=SIZE, seed=4)
    update = _released(tiles, brightness_thresholds(0.7, 0.05, 16))
    recon = Imprint().reconstruct(_view(update, 1))
    assert psnr(recon.images[0], tiles.images[0]) >= 60.0
    assert recon.stopped == "analytic" and recon.details["tiles_read"] == 1


def test_four_tiles_in_four_bins_all_come_back() -> None:
    tiles = synthesize_tiles(4, tile_size=SIZE, seed=2)
    thresholds = _spread_thresholds(tiles, bins=64)
    slots = [slot_of(float(b), thresholds) for b in tiles.images.mean(dim=(1, 2, 3))]
    assert len(set(slots)) == 4  # the scenario: every tile alone
    recon = Imprint().reconstruct(_view(_released(tiles, thresholds), 4))
    best = [max(psnr(r, t) for r in recon.images) for t in tiles.images]
    assert min(best) >= 60.0


def test_two_tiles_in_one_bin_give_their_gradient_weighted_blend() -> None:
    tiles = synthesize_tiles(2, tile_size=SIZE, seed=8)
    low = float(tiles.images.mean(dim=(1, 2, 3)).min())
    thresholds = [0.0, low - 0.01, 2.0]  # both tiles between thresholds 1 and 2: slot 1
    model = build_imprinted(
        _unet(), (3, SIZE, SIZE), thresholds, scale=1e-3, generator=torch.Generator().manual_seed(0)
    )
    # a_t: each tile's upstream gradient at its bins, from its own term of the batch-mean loss.
    weights = []
    for t in range(2):
        model.zero_grad()
        segmentation_loss(model(tiles.images[t : t + 1]), tiles.masks[t : t + 1]).backward()
        weights.append(float(model.imprint.encoder.bias.grad[1]) / 2)
    expected = (weights[0] * tiles.images[0] + weights[1] * tiles.images[1]) / sum(weights)
    model.zero_grad()
    segmentation_loss(model(tiles.images), tiles.masks).backward()
    ratios, evidence = slot_ratios(model.imprint.encoder.weight.grad, model.imprint.encoder.bias.grad)
    torch.testing.assert_close(ratios[1].view(3, SIZE, SIZE), expected, rtol=0, atol=1e-4)
    assert psnr(ratios[1].view(3, SIZE, SIZE).clamp(0, 1), tiles.images[0]) < 40
    assert float(evidence[0]) == 0.0 and float(evidence[2]) == 0.0  # the other slots hold nothing


def test_gain_makes_the_bins_louder_without_changing_the_tile() -> None:
    tiles = synthesize_tiles(1, tile_size=SIZE, seed=4)
    thresholds = brightness_thresholds(0.7, 0.05, 16)
    quiet, loud = (_released(tiles, thresholds, gain=g) for g in (1.0, 100.0))
    _, evidence_quiet = slot_ratios(quiet[ENCODER_WEIGHT], quiet[ENCODER_BIAS])
    ratios, evidence_loud = slot_ratios(loud[ENCODER_WEIGHT], loud[ENCODER_BIAS])
    slot = slot_of(float(tiles.images.mean()), thresholds)
    assert float(evidence_loud[slot] / evidence_quiet[slot]) == pytest.approx(100.0, rel=1e-3)
    assert psnr(ratios[slot].view(3, SIZE, SIZE).clamp(0, 1), tiles.images[0]) >= 60.0


@pytest.mark.parametrize(("gain", "floor"), [(1.0, 20.0), (1e4, 60.0)])
def test_several_local_steps_keep_the_first_steps_tiles(gain: float, floor: float) -> None:
    """Three SGD steps with momentum: the plain block smears a tile that drifts between bins; a loud one
    moves the bins' inputs so far after the first step that later steps leave the slot differences alone."""
    tiles = synthesize_tiles(4, tile_size=SIZE, seed=2)
    update = _released(tiles, _spread_thresholds(tiles, bins=64), steps=3, gain=gain)
    recon = Imprint().reconstruct(_view(update, 4))
    best = [max(psnr(r, t) for r in recon.images) for t in tiles.images]
    assert min(best) >= floor, best


def test_noise_that_drowns_the_bins_gives_back_the_public_guess() -> None:
    tiles = synthesize_tiles(2, tile_size=SIZE, seed=2)
    update = _released(tiles, _spread_thresholds(tiles))
    generator = torch.Generator().manual_seed(1)
    noisy = {k: v + 1e-2 * torch.randn(v.shape, generator=generator) for k, v in update.items()}
    prior = tiles.images.mean(dim=(0, 2, 3))
    recon = Imprint().reconstruct(_view(noisy, 2, prior=prior))
    assert recon.details["tiles_read"] == 0
    torch.testing.assert_close(recon.images, prior[None, :, None, None].expand(2, 3, SIZE, SIZE))


def test_slot_reading_estimates_the_noise_from_the_empty_slots() -> None:
    generator = torch.Generator().manual_seed(0)
    bias = torch.randn(2000, generator=generator).cumsum(0)  # slot evidence: N(0, 1) differences
    weights = torch.randn(2000, 3, generator=generator)
    slots = read_slots(weights, bias, threshold=4.0)
    assert slots.noise == pytest.approx(1.0, rel=0.1)
    assert len(slots.found) <= 2  # 4σ: almost no pure-noise slot passes


def test_an_honest_update_is_refused_with_a_clear_error() -> None:
    with pytest.raises(Exception, match="holds no imprint block"):
        Imprint().reconstruct(_view({"head.bias": torch.zeros(1)}, 1))


def test_threat_model_text_of_each_attack() -> None:
    assert (
        ATTACKS.get("imprint").threat == THREAT == "malicious server: modifies the model it sends (one round)"
    )
    for name in ("dlg", "inverting-gradients"):
        assert ATTACKS.get(name).threat == "honest-but-curious server"


def _sites(n_train: tuple[int, ...] = (6, 3), seed: int = 3) -> list[Site]:
    sites = []
    for i, n in enumerate(n_train):
        train = synthesize_tiles(n, tile_size=SIZE, seed=seed + 10 * i)
        test = synthesize_tiles(4, tile_size=SIZE, seed=seed + 10 * i + 5)
        sites.append(Site(f"site-{i}", train, test))
    return sites


def test_the_imprinted_round_still_trains_and_segments() -> None:
    """One FedAvg round with and without the imprint sent to the smallest site: Dice within 0.02."""
    train = TrainConfig(rounds=1, batch_size=4, lr=0.05)
    dice = {}
    for label, server in (("honest", None), ("imprint", ImprintServer(site=-1, round=1, bins=16))):
        result = run_fedavg(_sites(), _unet(), train, seed=0, device=torch.device("cpu"), malicious=server)
        dice[label] = result.rounds[-1].pooled["dice"]
    assert abs(dice["honest"] - dice["imprint"]) <= 0.02, dice


def test_the_server_aggregates_only_the_unet_part() -> None:
    update = {"imprint.encoder.weight": torch.ones(2, 3), "body.head.bias": torch.ones(1)}
    assert strip_imprint(update).keys() == {"head.bias"}
    assert ENCODER_WEIGHT == "imprint.encoder.weight" and ENCODER_BIAS == "imprint.encoder.bias"


def test_an_imprint_attack_trains_its_own_run_and_honest_hashes_do_not_move() -> None:
    base = validate(from_dict(ExperimentConfig, {}))
    imprint = dataclasses.replace(base, attack=dataclasses.replace(base.attack, name="imprint"))
    dlg = dataclasses.replace(base, attack=dataclasses.replace(base.attack, name="dlg"))
    assert config_hash(dlg) == config_hash(base) != config_hash(imprint)
    moved = dataclasses.replace(imprint, attack=dataclasses.replace(imprint.attack, target_round=2))
    assert config_hash(moved) != config_hash(imprint)  # a different round is a different run


def test_imprint_needs_one_round_not_all() -> None:
    from feddp_eval.errors import ConfigError

    with pytest.raises(ConfigError, match="modifies the model the server sends in one round"):
        validate(from_dict(ExperimentConfig, {"attack": {"name": "imprint", "target_round": "all"}}))


def test_shrinkage_keeps_a_clean_read_and_pulls_a_noisy_one_to_the_guess() -> None:
    from attacks.imprint import shrink

    generator = torch.Generator().manual_seed(0)
    tile, guess = torch.rand(300, generator=generator), torch.full((300,), 0.5)
    assert torch.equal(shrink(tile, guess, torch.tensor(1.0), 0.0), tile)  # no noise: exact
    noisy = tile + 10.0 * torch.randn(300, generator=generator)  # pixel noise 10 ≫ the tile's spread
    pulled = shrink(noisy, guess, torch.tensor(1.0), 10.0)
    assert float((pulled - guess).abs().max()) < float((noisy - guess).abs().max()) / 5
    moderate = tile + 0.05 * torch.randn(300, generator=generator)
    kept = shrink(moderate, guess, torch.tensor(1.0), 0.05)
    assert float((kept - tile).pow(2).mean()) < float((moderate - tile).pow(2).mean())

"""An attacker with public data and a learned inverter (a script, not a test; issue #22).

The gradient attacks of ``inversion_basin.py`` descend the update's distance and, through the ReLU
U-Net, end at or below the painted-mask guess even on one tile. A learned inverter ("Learning to
Invert", Wu et al. 2023) does not descend anything: the server simulates the client's round on
tiles it may hold, learns the map from a round's update to the tile, and applies it to the captured
update.

Here, on the textbook leak (the default scenario's site 3 with one training tile, the U-Net at its
round-1 initialisation or at ``--weights``, one local SGD step, masks known):

* **Public tiles**: the embedded generator, which the server runs as well as anyone, drawn with the
  attacked site's stain at another seed (a server without the stain would first estimate it from
  the site's public tiles; granting it is the stronger attacker). They are split into a training
  set (``--train``, nested sizes), validation tiles that pick the ridge, and test tiles that score.
* **The guess without the update, from the same public tiles**: each pixel's colour as a linear
  function of the mask in the (2r + 1)² window around it, fitted on the training tiles
  (``--radius``; :func:`fit_window_ridge`). It is never worse than the painted guess by much and is
  the bar the inverter must clear: what public data gives without the update.
* **The inverter**: kernel ridge regression from the update (each parameter tensor divided by its
  RMS over the public updates, a linear kernel) to the tile's residual over that guess; the ridge
  is picked on the validation tiles, never on the attacked one.

Only the scoring reads the attacked tile. Rows: per training-set size, the held-out test tiles'
pooled PSNR and the attacked tile's PSNR / SSIM for the painted guess, the public guess and the
inverter.

``--masks-unknown``: the attacker holds no mask. A second map from the same updates gives the mask
(its ridge and threshold picked on the validation tiles by Dice; :func:`attacks.learned.fit_mask_map`),
and the image map's guess is the public tiles' mean image. Rows: the test tiles' mean mask Dice and
the attacked tile's, beside marking every pixel nucleus (the best blind mask); the images' PSNR
beside the site's mean colour (the prior) and the public mean image.

Usage: ``OMP_NUM_THREADS=2 python benchmarks/learned_inversion.py [--train 1000,2000,4000]
[--validation 200] [--test 200] [--radius 7] [--weights RUN/captures/round-0010/global.safetensors]
[--masks-unknown]``
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from inversion_basin import Scenario, attacked_site, default_scenario, painted_guess, psnr
from torch import Tensor

from attacks import learned
from attacks.learned import (
    RIDGES,
    Kernel,
    apply_window_ridge,
    dice_per_tile,
    fit_image_map,
    fit_mask_map,
    fit_window_ridge,
    invert,
    kernel_ridge,
    tensor_scales,
)
from attacks.simulate import flatten
from defenses.base import SimulatedRelease
from defenses.dp_sgd import DPSGD
from feddp_eval.data.stain import StainProfile
from feddp_eval.data.synthetic import synthesize_tiles
from feddp_eval.data.types import TileSet
from feddp_eval.metrics.privacy import all_nucleus_dice, mask_dice, score_reconstruction
from feddp_eval.models.unet import UNet
from feddp_eval.seeding import derive_seed
from feddp_eval.workflows.train import public_statistics


def public_tiles(scenario_seed: int, n: int) -> TileSet:
    """``n`` tiles of the embedded generator with the attacked site's stain, at a seed of their own."""
    site = attacked_site(1, scenario_seed)
    stain = StainProfile(**site.info["stain"])  # type: ignore[arg-type]
    size = site.train.images.shape[-1]
    return synthesize_tiles(n, stain=stain, tile_size=size, seed=derive_seed(scenario_seed, "public-tiles"))


def one_tile_updates(scenario: Scenario, images: Tensor, masks: Tensor) -> Tensor:
    """(N, P): the flat update a one-tile client would send for each tile, through the scenario's
    global weights and recipe (the captured round's)."""
    view = scenario.view
    if view.n_images != 1:
        raise ValueError("the learned inverter maps one tile's update to that tile")
    model = UNet.from_config(view.model)
    return learned.one_tile_updates(model, view.global_weights, view.recipe, images, masks)


@dataclass(frozen=True)
class Row:
    train: int
    ridge: float
    test: tuple[float, float, float]  # painted, public guess, inverter: pooled dB on the test tiles
    tile: tuple[tuple[float, float], ...]  # (dB, SSIM) of the same three on the attacked tile


def measure(
    scenario: Scenario, sizes: list[int], validation: int, test: int, radius: int, dp_noise: float = 0.0
) -> list[Row]:
    """One row per training-set size (nested: the first ``n`` public tiles). With ``dp_noise`` σ > 0
    every update, the captured one and the public ones, is DP-SGD's release of one tile's step (clip 1,
    :meth:`defenses.dp_sgd.DPSGD.release_simulated`): the attacker knows σ and the clip and trains on released
    updates."""
    largest = max(sizes)
    public = public_tiles(0, largest + validation + test)
    val = slice(largest, largest + validation)
    tst = slice(largest + validation, None)
    updates = one_tile_updates(scenario, public.images, public.masks)
    names = list(scenario.view.global_weights)
    target = flatten(scenario.view.update, names)[None].clone()
    if dp_noise > 0:  # a batch of one tile: the expected batch size is 1
        dp = {"clip": 1.0, "noise_multiplier": dp_noise, "batch_size": 1, "n_samples": 1}
        recipe = scenario.view.recipe
        for released, seed in ((updates, "public-noise"), (target, "client-noise")):
            generator = torch.Generator().manual_seed(derive_seed(0, seed))
            DPSGD.release_simulated(released, SimulatedRelease(dp, recipe, generator))
    scales = tensor_scales(updates[:largest], [scenario.view.global_weights[k].numel() for k in names])
    features = updates.div_(scales)  # in place: the raw updates are not read again
    train_features = features[:largest]
    gram = (train_features @ train_features.T).double()
    cross_val = (features[val] @ train_features.T).double()
    cross_test = (features[tst] @ train_features.T).double()
    cross_tile = ((target / scales) @ train_features.T).double()
    painted_public = painted_guess(public.masks, public_statistics(attacked_site(1, 0)))
    rows = []
    for n in sizes:
        weights = fit_window_ridge(public.images[:n], public.masks[:n], radius)
        guess = apply_window_ridge(public.masks, weights, radius)
        residual = (public.images[:n] - guess[:n]).reshape(n, -1).double()
        mean = residual.mean(0)

        alphas = {r: kernel_ridge(gram[:n, :n], residual - mean, r) for r in RIDGES}
        truth_val = public.images[val]
        on_validation = {
            r: psnr(invert(cross_val[:, :n], guess[val], a, mean), truth_val) for r, a in alphas.items()
        }
        ridge = max(on_validation, key=on_validation.__getitem__)
        tile_guess = apply_window_ridge(scenario.masks, weights, radius)
        tile_inverted = invert(cross_tile[:, :n], tile_guess, alphas[ridge], mean)
        truth = public.images[tst]
        test_row = (
            psnr(painted_public[tst], truth),
            psnr(guess[tst], truth),
            psnr(invert(cross_test[:, :n], guess[tst], alphas[ridge], mean), truth),
        )
        scores = [
            score_reconstruction(x, scenario.images) for x in (scenario.painted, tile_guess, tile_inverted)
        ]
        rows.append(Row(n, ridge, test_row, tuple((float(s.psnr), float(s.ssim)) for s in scores)))
    return rows


@dataclass(frozen=True)
class MaskRow:
    train: int
    dice: tuple[float, float, float, float]  # test tiles: flat, map; attacked tile: flat, map
    psnr: tuple[float, float, float, float, float, float]  # test then tile: mean colour, public mean, map


def measure_unknown(scenario: Scenario, sizes: list[int], validation: int, test: int) -> list[MaskRow]:
    """Masks unknown: one row per training-set size, with the attack's own maps (validation tiles
    pick both ridges and the mask threshold; test tiles score)."""
    largest = max(sizes)
    public = public_tiles(0, largest + validation + test)
    names = list(scenario.view.global_weights)
    updates = one_tile_updates(scenario, public.images, public.masks)
    target = flatten(scenario.view.update, names)[None].clone()
    scales = tensor_scales(updates[:largest], [scenario.view.global_weights[k].numel() for k in names])
    features = updates.div_(scales)
    tst = slice(largest + validation, None)
    colour = torch.tensor(public_statistics(attacked_site(1, 0))["mean_rgb"])[None, :, None, None]
    everything = torch.cat([public.images[tst], scenario.images])  # the test tiles, then the attacked one
    truth_masks = torch.cat([public.masks[tst], scenario.masks])
    flat = [all_nucleus_dice(m[None]) for m in truth_masks]
    rows = []
    for n in sizes:
        # the first n tiles fit, the validation tiles pick, as the attack's own split would
        keep = torch.cat([torch.arange(n), torch.arange(largest, largest + validation)])
        fit = features[:n]
        kernel = Kernel(
            gram=(fit @ fit.T).double(),
            held=(features[largest : largest + validation] @ fit.T).double(),
            captured=(torch.cat([features[tst], target / scales]) @ fit.T).double(),
        )
        images, masks = public.images[keep], public.masks[keep]
        mean_image = images[:n].mean(0, keepdim=True)
        predicted, _, _ = fit_mask_map(kernel, masks, n)
        guesses = mean_image.expand(test + 1, -1, -1, -1)
        rebuilt, _, _ = fit_image_map(kernel, images, mean_image.expand_as(images), guesses, n)
        dice = dice_per_tile(predicted.flatten(1) > 0.5, truth_masks.flatten(1) > 0.5)
        assert abs(float(dice[-1]) - mask_dice(predicted[-1:], scenario.masks)) < 1e-9
        t = slice(0, test)
        scores = []
        for tiles in (t, slice(test, None)):
            truth = everything[tiles]
            scores += [psnr(colour.expand_as(truth), truth), psnr(mean_image.expand_as(truth), truth)]
            scores.append(psnr(rebuilt[tiles], truth))
        rows.append(
            MaskRow(
                n,
                (sum(flat[:test]) / test, float(dice[t].mean()), flat[-1], float(dice[-1])),
                tuple(scores),  # type: ignore[arg-type]
            )
        )
    return rows


def print_unknown(rows: list[MaskRow]) -> None:
    print(
        "| public tiles | test tiles: mask Dice, every pixel nucleus / map | dB: mean colour / public "
        "mean / map | attacked tile: mask Dice, every pixel nucleus / map | dB: mean colour / public "
        "mean / map |"
    )
    print("|---|---|---|---|---|")
    for r in rows:
        d, p = r.dice, r.psnr
        print(
            f"| {r.train:,} | {d[0]:.3f} / {d[1]:.3f} | {p[0]:.2f} / {p[1]:.2f} / {p[2]:.2f} "
            f"| {d[2]:.3f} / {d[3]:.3f} | {p[3]:.2f} / {p[4]:.2f} / {p[5]:.2f} |",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--train", default="1000,2000,4000", help="training-set sizes (nested)")
    parser.add_argument("--validation", type=int, default=200, help="public tiles that pick the ridge")
    parser.add_argument("--test", type=int, default=200, help="public tiles that score")
    parser.add_argument("--radius", type=int, default=7, help="mask window of the public guess, px")
    parser.add_argument("--weights", type=Path, default=None, help="a captured round's global weights")
    parser.add_argument("--dp-noise", type=float, default=0.0, help="σ of DP-SGD on every update (clip 1)")
    parser.add_argument("--masks-unknown", action="store_true", help="the attacker holds no mask")
    args = parser.parse_args()
    sizes = sorted(int(n) for n in args.train.split(","))
    began = time.perf_counter()
    scenario = default_scenario(1, weights=args.weights)
    if args.masks_unknown:
        if args.dp_noise:
            parser.error("--masks-unknown measures the undefended update")
        unknown = measure_unknown(scenario, sizes, args.validation, args.test)
        print(f"threads {torch.get_num_threads()}; {time.perf_counter() - began:.0f} s; masks unknown")
        print_unknown(unknown)
        return
    rows = measure(scenario, sizes, args.validation, args.test, args.radius, args.dp_noise)
    print(
        f"threads {torch.get_num_threads()} (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}); "
        f"{time.perf_counter() - began:.0f} s; weights: {args.weights or 'round-1 initialisation'}; "
        f"DP-SGD σ: {args.dp_noise or 'none'}"
    )
    print(
        "| public tiles | ridge | test tiles: painted / public guess / inverter dB | attacked tile: "
        "painted | public guess | inverter (dB / SSIM) | inverter over the public guess |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        (p, g, i), tile = r.test, r.tile
        cells = [f"{r.train:,}", f"{r.ridge:g}", f"{p:.2f} / {g:.2f} / {i:.2f}"]
        cells += [f"{db:.2f} / {ssim:.3f}" for db, ssim in tile]
        cells.append(f"{i - g:+.2f} dB (test), {tile[2][0] - tile[1][0]:+.2f} dB (tile)")
        print("| " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()

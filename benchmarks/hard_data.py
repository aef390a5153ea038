"""Is the hard synthetic task hard for a threshold and learnable for the U-Net? (a script, not a test)

For each difficulty (``easy``, ``hard``) it builds 4 synthetic sites exactly as a
run does (``synthetic_sites``, one stain per site), then reports on the pooled
held-out tiles of all sites

1. the hematoxylin-Otsu baseline (``feddp_eval.metrics.baselines``: standard H&E
   deconvolution, Otsu per tile);
2. the default U-Net (``ModelConfig()``) trained centrally on the pooled training
   tiles of all sites with the project's loss (BCE + soft Dice,
   ``TrainConfig().dice_weight``), Adam with a cosine learning-rate decay, random
   flips and quarter turns.

Issue #13's acceptance: on hard data, Otsu Dice <= 0.65 and U-Net Dice >= 0.85.

Usage: ``OMP_NUM_THREADS=1 python benchmarks/hard_data.py [--train-tiles 128] [--test-tiles 32]
[--steps 1500] [--batch-size 16] [--lr 0.002] [--seed 0] [--difficulty easy hard] [--json]``
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from typing import get_args

import torch
from torch import Tensor

from feddp_eval.config import Difficulty, ModelConfig, TrainConfig
from feddp_eval.data.synthetic import synthetic_sites
from feddp_eval.data.types import Site, TileSet
from feddp_eval.metrics.baselines import otsu_site_scores
from feddp_eval.metrics.utility import binarise, confusion_counts, pooled, utility_scores
from feddp_eval.models.loss import segmentation_loss
from feddp_eval.models.unet import UNet

N_SITES = 4
DIFFICULTIES: tuple[Difficulty, ...] = get_args(Difficulty)


def pooled_train(sites: list[Site]) -> TileSet:
    """All sites' training tiles in one set (central training)."""
    return TileSet(
        torch.cat([site.train.images for site in sites]), torch.cat([site.train.masks for site in sites])
    )


def augment(images: Tensor, masks: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """One random dihedral transform (flip, quarter turns) per batch: free variety for a tiny set."""
    turns = int(torch.randint(4, (1,), generator=generator))
    flip = bool(torch.randint(2, (1,), generator=generator))
    images, masks = torch.rot90(images, turns, (2, 3)), torch.rot90(masks, turns, (2, 3))
    if flip:
        images, masks = images.flip(3), masks.flip(3)
    return images, masks


def train_central(tiles: TileSet, *, steps: int, batch_size: int, lr: float, seed: int) -> UNet:
    """The default U-Net, trained on ``tiles`` for ``steps`` Adam steps (cosine decay to 0)."""
    torch.manual_seed(seed)
    model = UNet(**dataclasses.asdict(ModelConfig()))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps))
    )
    generator = torch.Generator().manual_seed(seed)
    dice_weight = TrainConfig().dice_weight
    model.train()
    for _ in range(steps):
        index = torch.randint(len(tiles), (batch_size,), generator=generator)
        images, masks = augment(tiles.images[index], tiles.masks[index], generator)
        loss = segmentation_loss(model(images), masks, dice_weight=dice_weight)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    return model.eval()


@torch.no_grad()
def unet_scores(model: UNet, sites: list[Site]) -> dict[str, float]:
    """Dice, Jaccard, accuracy of the binarised prediction, pooled over the sites' held-out tiles."""
    counts = [confusion_counts(binarise(model(site.test.images)), site.test.masks > 0.5) for site in sites]
    return utility_scores(pooled(counts))


def measure(difficulty: Difficulty, args: argparse.Namespace) -> dict[str, object]:
    start = time.perf_counter()
    sites = synthetic_sites(
        N_SITES,
        args.train_tiles,
        args.test_tiles,
        tile_size=args.tile_size,
        seed=args.seed,
        difficulty=difficulty,
    )
    generated = time.perf_counter()
    otsu = otsu_site_scores(sites)["pooled"]
    model = train_central(
        pooled_train(sites), steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed
    )
    trained = time.perf_counter()
    return {
        "difficulty": difficulty,
        "otsu": otsu,
        "unet": unet_scores(model, sites),
        "generate_s": round(generated - start, 1),
        "train_s": round(trained - generated, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-tiles", type=int, default=128, help="training tiles per site")
    parser.add_argument("--test-tiles", type=int, default=32, help="held-out tiles per site")
    parser.add_argument("--tile-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--difficulty", nargs="+", default=DIFFICULTIES, choices=DIFFICULTIES)
    parser.add_argument("--json", action="store_true", help="one JSON object per difficulty")
    args = parser.parse_args()
    print(
        f"{N_SITES} sites x ({args.train_tiles} train + {args.test_tiles} test) tiles, {args.tile_size} px; "
        f"U-Net {ModelConfig()}, {args.steps} Adam steps of {args.batch_size}, lr {args.lr}, "
        f"seed {args.seed}, {torch.get_num_threads()} thread(s)"
    )
    for difficulty in DIFFICULTIES:
        if difficulty not in args.difficulty:
            continue
        row = measure(difficulty, args)
        if args.json:
            print(json.dumps(row))
            continue
        otsu, unet = row["otsu"], row["unet"]
        assert isinstance(otsu, dict) and isinstance(unet, dict)
        print(
            f"{difficulty:>4}: Otsu Dice {otsu['dice']:.3f} (Jaccard {otsu['jaccard']:.3f}, acc "
            f"{otsu['accuracy']:.3f}) | U-Net Dice {unet['dice']:.3f} (Jaccard {unet['jaccard']:.3f}, "
            f"acc {unet['accuracy']:.3f}) | generate {row['generate_s']} s, train {row['train_s']} s"
        )


if __name__ == "__main__":
    main()

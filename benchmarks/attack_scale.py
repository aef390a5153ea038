"""The attack's cost model: seconds per Inverting-Gradients iteration against tiles, local steps and
model size (a script, not a test).

A user sizing ``--budget thorough`` (4,000 iterations × 2 restarts) on their own update needs
seconds per iteration for *their* update: how many tiles the client trained on, how many local
steps it took, how wide the U-Net is. This script measures that grid on the default attack
(``inverting-gradients``, stain prior, masks known, one restart) with synthetic 64 px tiles:

- tiles N ∈ {1, 4, 16} (``--tiles``), each local step on a batch of at most 8 tiles, the split a
  client with ``batch_size = 8`` makes, so K = ⌈N / 8⌉ steps per epoch;
- epochs E ∈ {1, 3} (``--epochs``): K = E·⌈N / 8⌉ local steps in all;
- U-Net width w ∈ {8, 16, 32} at the default depth 2 (``--widths``; 16 is the default model).

Each point: the per-iteration cost as (t[long] − t[short]) / (long − short), so set-up cancels,
beside a local training step on the same batch (forward, backward, SGD step), timed just before
it, and the per-iteration cost divided by (tiles × steps / batch), i.e. per tile-step.

Usage: ``python benchmarks/attack_scale.py [--threads 2] [--long 12] [--short 4] [--json]``
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time
from dataclasses import asdict, dataclass

import torch

from attacks import ATTACKS, ServerView
from attacks.simulate import LocalRecipe
from attacks.view import simulated_view
from feddp_eval.config import ModelConfig
from feddp_eval.data.synthetic import synthesize_tiles
from feddp_eval.models.loss import segmentation_loss
from feddp_eval.models.unet import UNet, count_parameters

TILE, BATCH, LR, MOMENTUM = 64, 8, 0.05, 0.9


@dataclass
class Point:
    tiles: int
    epochs: int
    steps: int
    width: int
    parameters: int
    train_step_ms: float  # one local step on a batch of min(tiles, 8)
    iteration_s: float
    per_tile_step_ms: float  # iteration_s / Σ over steps of the batch's tiles
    iteration_in_train_steps: float


def view_for(tiles: int, epochs: int, width: int, seed: int = 0) -> tuple[ServerView, UNet]:
    data = synthesize_tiles(tiles + 4, tile_size=TILE, seed=seed)
    client = data.subset(list(range(tiles)))
    batches = tuple(
        tuple(range(start, min(start + BATCH, tiles)))
        for _ in range(epochs)
        for start in range(0, tiles, BATCH)
    )
    recipe = LocalRecipe(batches=batches, lr=LR, momentum=MOMENTUM)
    model = ModelConfig(width=width)
    prior = data.images[tiles:].mean(dim=(0, 2, 3))
    view = simulated_view(model, client.images, client.masks, recipe, prior=prior, seed=seed)
    net = UNet.from_config(model)
    net.load_state_dict(view.global_weights)
    return view, net


def train_step_ms(net: UNet, tiles: int, steps: int = 5) -> float:
    data = synthesize_tiles(min(tiles, BATCH), tile_size=TILE, seed=1)
    optimizer = torch.optim.SGD(net.parameters(), lr=LR, momentum=MOMENTUM)
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        segmentation_loss(net(data.images), data.masks).backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:]) * 1e3


def attack_seconds(view: ServerView, iterations: int) -> float:
    attack = ATTACKS.create("inverting-gradients", iterations=iterations)
    start = time.perf_counter()
    attack.reconstruct(view, seed=0, device=torch.device("cpu"))
    return time.perf_counter() - start


def measure(tiles: int, epochs: int, width: int, long: int, short: int) -> Point:
    view, net = view_for(tiles, epochs, width)
    unit = train_step_ms(net, tiles)
    per = (attack_seconds(view, long) - attack_seconds(view, short)) / (long - short)
    tile_steps = sum(len(b) for b in view.recipe.batches)
    return Point(
        tiles=tiles,
        epochs=epochs,
        steps=view.recipe.steps,
        width=width,
        parameters=count_parameters(net),
        train_step_ms=unit,
        iteration_s=per,
        per_tile_step_ms=per / tile_steps * 1e3,
        iteration_in_train_steps=per * 1e3 / unit,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tiles", default="1,4,16")
    parser.add_argument("--epochs", default="1,3")
    parser.add_argument("--widths", default="8,16,32")
    parser.add_argument("--long", type=int, default=12)
    parser.add_argument("--short", type=int, default=4)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tiles = [int(t) for t in args.tiles.split(",")]
    epochs = [int(e) for e in args.epochs.split(",")]
    widths = [int(w) for w in args.widths.split(",")]
    # The default width over every (tiles, epochs); the other widths at 4 tiles, 1 epoch.
    grid = [(n, e, 16) for n in tiles for e in epochs] + [(4, 1, w) for w in widths if w != 16]
    load = os.getloadavg()[0]
    points = []
    for n, e, w in grid:
        points.append(measure(n, e, w, args.long, args.short))
        print(f"  measured {n} tiles, {e} epoch(s), width {w}", flush=True)
    if args.json:
        print(json.dumps([asdict(p) for p in points], indent=2))
        return
    print(
        f"\ntorch {torch.__version__}, {args.threads} threads on {os.cpu_count()} CPUs, load average "
        f"{load:.1f} at start, {os.getloadavg()[0]:.1f} at end; IG (stain prior, masks known, 1 restart), "
        f"{TILE} px, batches of {BATCH}, SGD momentum {MOMENTUM}; (t[{args.long}] − t[{args.short}]) / "
        f"{args.long - args.short} iterations"
    )
    print(
        "\n| tiles | epochs | local steps | U-Net width (parameters) | training step ms | s / iteration "
        "| ms per tile-step | iteration in training steps | 4,000 iterations |"
    )
    print("|---:|---:|---:|---|---:|---:|---:|---:|---:|")
    for p in points:
        budget = 4000 * p.iteration_s
        print(
            f"| {p.tiles} | {p.epochs} | {p.steps} | {p.width} ({p.parameters:,}) | {p.train_step_ms:.0f} | "
            f"{p.iteration_s:.3f} | {p.per_tile_step_ms:.1f} | {p.iteration_in_train_steps:.1f} | "
            f"{_duration(budget)} |"
        )


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    minutes = seconds / 60
    return f"{minutes:.0f} min" if minutes < 90 else f"{minutes / 60:.1f} h"


if __name__ == "__main__":
    main()

"""What one gradient-inversion iteration costs, in local training steps (a script, not a test).

On the default model (``UNet()``), 64×64 tiles and the default attack scenario (4 tiles,
one local SGD step, momentum 0.9, lr 0.05, known masks), it times, in this one process
and interleaved so that drift hits every case alike:

1. the unit: one local training step (forward, loss, backward, SGD step) on the same 4 tiles;
2. one iteration of ``inverting-gradients`` (stain prior, the default, and free pixels) and of
   ``dlg``, through the shared loop :meth:`attacks.base.Attack.reconstruct`. Each case runs
   ``reconstruct`` for ``--long`` and ``--short`` iterations back to back; the per-iteration
   cost is the difference divided by the difference in iterations, so that set-up (building
   the model, initial images, the optimiser) cancels. The median of the per-iteration gaps
   seen by the loop's ``progress`` callback is printed alongside as a cross-check;
3. the same for a K-step client (K = 1, 2, 4): the recipe runs K local steps, *each on all
   4 tiles* (``batches = ((0, 1, 2, 3),) * K``), so it is the costliest split of K steps;
4. R restarts (R = 1, 2, 4), which the loop optimises as one ``vmap`` batch, relative to one.

The cores may be shared with other work, so every ratio is taken against a median of
``--steps`` training steps timed just before the item it divides, and the process' CPU
time / wall time ("busy") is printed per item; medians over ``--repeats``.

As a reference it also times the bare inverting-gradients objective of one restart without
``vmap`` (simulated update, cosine + TV, backward through the simulated gradient): the floor
the loop's bookkeeping and ``vmap`` sit on. DLG's closure evaluations per iteration are counted
(L-BFGS may call its closure more than once per step).

Usage: ``python benchmarks/attack_cost.py [--repeats 3] [--long 25] [--short 5] [--steps 7] [--threads 2]``
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from _harness import sync
from torch import Tensor

from attacks import ATTACKS, ServerView
from attacks.inversion import GradientInversion
from attacks.inverting_gradients import total_variation
from attacks.simulate import LocalRecipe, flatten, simulate_update
from attacks.view import simulated_view
from feddp_eval.config import ModelConfig
from feddp_eval.data.synthetic import synthesize_tiles
from feddp_eval.models.loss import segmentation_loss
from feddp_eval.models.unet import UNet, count_parameters

TILE, N_TILES, LR, MOMENTUM = 64, 4, 0.05, 0.9
BATCH = tuple(range(N_TILES))
STEPS_K = (1, 2, 4)
RESTARTS = (1, 2, 4)
IG_TARGET = 2.5  # the target: an IG iteration costs at most this many training steps
RESTART_TARGET = 0.75  # "well under R×": read here as R restarts costing at most 0.75·R× one


@dataclass(frozen=True)
class Case:
    label: str
    attack: str
    steps: int = 1  # K local steps in the recipe
    restarts: int = 1
    overrides: dict[str, Any] = field(default_factory=dict)


CASES = (
    Case("IG iteration, image=stain (default)", "inverting-gradients"),
    Case("IG iteration, image=pixels", "inverting-gradients", overrides={"image": "pixels"}),
    Case("DLG iteration (L-BFGS, pixels)", "dlg"),
    *(Case(f"IG iteration, K={k} local steps", "inverting-gradients", steps=k) for k in STEPS_K if k > 1),
    *(Case(f"IG iteration, R={r} restarts", "inverting-gradients", restarts=r) for r in RESTARTS if r > 1),
)


@dataclass
class Scenario:
    device: torch.device
    images: Tensor  # (4, 3, 64, 64), the client's true tiles (only the training step sees them)
    masks: Tensor
    views: dict[int, ServerView]  # by K


def recipe(steps: int) -> LocalRecipe:
    return LocalRecipe(batches=(BATCH,) * steps, lr=LR, momentum=MOMENTUM)


def make_scenario(device: str, seed: int = 0) -> Scenario:
    tiles = synthesize_tiles(2 * N_TILES, tile_size=TILE, seed=seed)
    client = tiles.subset(list(BATCH))
    prior = tiles.images[N_TILES:].mean(dim=(0, 2, 3))  # public mean colour of other tiles of the site
    views = {
        k: simulated_view(ModelConfig(), client.images, client.masks, recipe(k), prior=prior, seed=seed)
        for k in STEPS_K
    }
    dev = torch.device(device)
    return Scenario(dev, client.images.to(dev), client.masks.to(dev), views)


# --------------------------------------------------------------------------- the unit and the reference


def train_stepper(s: Scenario) -> Callable[[], None]:
    torch.manual_seed(0)
    model = UNet().to(s.device)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        segmentation_loss(model(s.images), s.masks).backward()
        optimizer.step()

    return step


def objective_stepper(s: Scenario) -> Callable[[], None]:
    """One restart's IG objective and its gradient, without vmap, the loop or the optimiser."""
    view = s.views[1]
    model = UNet().to(s.device)
    params = {k: v.to(s.device) for k, v in view.global_weights.items()}
    names = list(params)
    target = flatten({k: v.to(s.device) for k, v in view.update.items()}, names)
    x = torch.rand(N_TILES, 3, TILE, TILE, generator=torch.Generator().manual_seed(1)).to(s.device)
    x.requires_grad_()
    masks = s.masks

    def step() -> None:
        x.grad = None
        simulated = flatten(simulate_update(model, params, x, masks, view.recipe), names)
        value = 1.0 - F.cosine_similarity(simulated, target, dim=0, eps=1e-12) + 0.3 * total_variation(x)
        value.backward()

    return step


def time_calls(fn: Callable[[], None], device: torch.device, n: int) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        sync(device)
        out.append(time.perf_counter() - start)
    return out


# --------------------------------------------------------------------------- attack runs


@dataclass
class Run:
    seconds: float
    iterations: int
    stopped: str
    evaluations: int  # closure calls
    gaps: list[float]  # seconds between consecutive progress callbacks


def run_attack(case: Case, s: Scenario, iterations: int) -> Run:
    attack = ATTACKS.create(case.attack, iterations=iterations, restarts=case.restarts, **case.overrides)
    assert isinstance(attack, GradientInversion)  # every case here is an optimisation attack
    evaluations = [0]
    inner = attack.step

    def counted_step(optimizer: torch.optim.Optimizer, closure: Callable[[], Tensor]) -> Tensor:
        def counted() -> Tensor:
            evaluations[0] += 1
            return closure()

        return inner(optimizer, counted)

    attack.step = counted_step  # type: ignore[method-assign]
    stamps: list[float] = []
    start = time.perf_counter()
    result = attack.reconstruct(
        s.views[case.steps],
        seed=0,
        device=s.device,
        progress=lambda i, n, best: stamps.append(time.perf_counter()),
    )
    seconds = time.perf_counter() - start
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    return Run(seconds, result.iterations, result.stopped, evaluations[0], gaps)


@dataclass
class Measured:
    """Medians over repeats; each ratio is taken against training steps timed just before the pair."""

    seconds: float  # per iteration, by the long − short difference
    ratio: float  # the same, in local training steps
    in_loop: float  # median gap between progress callbacks of the long run
    in_loop_ratio: float
    evaluations: float  # closure evaluations per iteration
    busy: float  # process CPU time / wall time over the pair (≈ threads when the cores are ours)
    stopped: set[str]


def measure(
    s: Scenario, *, repeats: int, long: int, short: int, steps: int, warmup: int
) -> tuple[float, Measured, dict[str, Measured]]:
    """The training step (median), the no-vmap reference and every case, interleaved.

    The cores may be shared: before each timed item a fresh median of ``steps`` training steps
    is taken, and the item's ratio is computed against that local unit.
    """
    train, reference = train_stepper(s), objective_stepper(s)
    for _ in range(warmup):
        train()
        reference()
    for case in CASES:
        run_attack(case, s, short)
    sync(s.device)
    units: list[float] = []
    rows: dict[str, list[tuple[float, float, float, float, float, float]]] = {}
    stopped: dict[str, set[str]] = {c.label: set() for c in CASES}
    for repeat in range(repeats):
        unit = statistics.median(time_calls(train, s.device, steps))
        units.append(unit)
        cpu = time.process_time()
        wall = time.perf_counter()
        ref = statistics.median(time_calls(reference, s.device, steps))
        busy = (time.process_time() - cpu) / (time.perf_counter() - wall)
        rows.setdefault("reference", []).append((ref, ref / unit, ref, ref / unit, 1.0, busy))
        for case in CASES:
            unit = statistics.median(time_calls(train, s.device, steps))
            units.append(unit)
            cpu, wall = time.process_time(), time.perf_counter()
            a, b = run_attack(case, s, short), run_attack(case, s, long)
            busy = (time.process_time() - cpu) / (time.perf_counter() - wall)
            per = (
                (b.seconds - a.seconds) / (b.iterations - a.iterations)
                if b.iterations > a.iterations
                else float("nan")
            )
            gap = statistics.median(b.gaps)
            rows.setdefault(case.label, []).append(
                (per, per / unit, gap, gap / unit, b.evaluations / b.iterations, busy)
            )
            stopped[case.label] |= {a.stopped, b.stopped}
        print(f"  repeat {repeat + 1}/{repeats} done", flush=True)

    def summary(key: str, why: set[str]) -> Measured:
        seconds, ratio, in_loop, in_loop_ratio, evaluations, busy = (
            statistics.median(column) for column in zip(*rows[key], strict=True)
        )
        return Measured(seconds, ratio, in_loop, in_loop_ratio, evaluations, busy, why)

    measured = {c.label: summary(c.label, stopped[c.label]) for c in CASES}
    return statistics.median(units), summary("reference", set()), measured


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="long/short pairs per case")
    parser.add_argument("--long", type=int, default=25, help="iterations of the long run")
    parser.add_argument("--short", type=int, default=5, help="iterations of the short run")
    parser.add_argument("--steps", type=int, default=7, help="training steps per local unit measurement")
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    if args.long <= args.short:
        parser.error("--long must exceed --short")

    torch.set_num_threads(args.threads)
    s = make_scenario(args.device)
    load = os.getloadavg()[0]
    print(
        f"torch {torch.__version__}, device {args.device}, torch.set_num_threads({args.threads}) "
        f"on {os.cpu_count()} CPUs (load average {load:.1f} at start); UNet() {count_parameters(UNet())} "
        f"parameters, {N_TILES} tiles of {TILE}×{TILE}, SGD lr {LR} momentum {MOMENTUM}, masks known"
    )
    print(
        f"per-iteration cost = (t[{args.long} it] − t[{args.short} it]) / {args.long - args.short}; "
        f"in-loop = median gap between progress callbacks; ×train against {args.steps} training steps "
        f"timed just before each pair; medians over {args.repeats} repeats"
    )
    train, reference, m = measure(
        s, repeats=args.repeats, long=args.long, short=args.short, steps=args.steps, warmup=args.warmup
    )
    print(
        f"load average {os.getloadavg()[0]:.1f} at end; busy = process CPU time / wall time "
        f"(≈ {args.threads} when the cores are ours)"
    )

    print(
        f"\n{'what':42s} {'ms':>7s} {'×train':>7s} {'in-loop ms':>11s} {'×train':>7s} {'evals/it':>9s} "
        f"{'busy':>5s}  stopped"
    )
    print(f"{'training step (fwd, bwd, SGD step), 4 tiles':42s} {train * 1e3:7.1f} {1.0:7.2f}")
    for label, got in [
        ("IG objective + backward, no vmap (ref.)", reference),
        *((c.label, m[c.label]) for c in CASES),
    ]:
        print(
            f"{label:42s} {got.seconds * 1e3:7.1f} {got.ratio:7.2f} {got.in_loop * 1e3:11.1f} "
            f"{got.in_loop_ratio:7.2f} {got.evaluations:9.2f} {got.busy:5.2f}  "
            + ",".join(sorted(got.stopped))
        )

    one = m[CASES[0].label]
    print("\nK local steps (each on all 4 tiles) relative to K = 1 (by difference; by in-loop median):")
    for k in STEPS_K:
        got = one if k == 1 else m[f"IG iteration, K={k} local steps"]
        print(
            f"  K={k}: {got.ratio / one.ratio:5.2f}×; {got.in_loop_ratio / one.in_loop_ratio:5.2f}× K=1   "
            f"({got.ratio / k:4.2f}; {got.in_loop_ratio / k:4.2f} training steps per local step)"
        )
    print(
        f"\nR restarts relative to one restart (one vmap batch; target: well under R×, "
        f"read here as ≤ {RESTART_TARGET}·R) (by difference; by in-loop median):"
    )
    for r in RESTARTS:
        got = one if r == 1 else m[f"IG iteration, R={r} restarts"]
        by_diff, by_loop = got.ratio / one.ratio, got.in_loop_ratio / one.in_loop_ratio
        verdict = "" if r == 1 else ("  met" if max(by_diff, by_loop) <= RESTART_TARGET * r else "  NOT met")
        print(
            f"  R={r}: {by_diff:5.2f}×; {by_loop:5.2f}× one restart   "
            f"({by_diff / r:4.2f}; {by_loop / r:4.2f} per restart){verdict}"
        )

    print("\ntargets:")
    for case in CASES[:2]:
        got = m[case.label]
        worst = max(got.ratio, got.in_loop_ratio)
        print(
            f"  {case.label}: {got.ratio:.2f}× (in-loop {got.in_loop_ratio:.2f}×) a training step "
            f"(target ≤ {IG_TARGET}×): {'met' if worst <= IG_TARGET else 'NOT met'}"
        )


if __name__ == "__main__":
    main()

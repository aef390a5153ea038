"""The grid of a privacy–utility sweep: the ``[sweep]`` table, its validation, and its loading.

A sweep crosses defenses × noise levels × seeds × local batch sizes × local steps × attacks × target
sites; :mod:`.points` turns the
grid into points, :mod:`.folder` owns the sweep folder, :mod:`.executors` runs the points. Nothing
here imports torch.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from feddp_eval.config import ExperimentConfig, from_dict, read_toml, validate
from feddp_eval.config.fields import ceiling
from feddp_eval.errors import ConfigError

MAX_SEEDS = 10_000
ExecutorName = Literal["process", "ray"]
EXECUTORS: tuple[str, ...] = get_args(ExecutorName)
"""How a sweep's points are run: ``process`` (a pool of ``--jobs`` processes on this machine, the
default) or ``ray`` (Ray tasks, on a local Ray or a cluster's, :mod:`.executors.ray_tasks`)."""

# Two to three decades below the textbook σ = 1.1: that is where leakage collapses (REFERENCES.md).
DEFAULT_NOISES: tuple[float, ...] = (0.0, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.1, 2.0)


@dataclass(frozen=True)
class SweepSpec:
    """The grid of a sweep (the ``[sweep]`` table of an experiment TOML).

    Attributes:
        noises: Noise multipliers σ; 0 is the undefended reference and is always added.
        defenses: Defenses swept over ``noises`` (dp-sgd, local-dp, central-dp).
        attacks: Attacks run on every training run's target update.
        seeds: How many seeds: the experiment seed, seed + 1, ...
        targets: Site indices whose update is attacked (-1: the smallest site).
        batch_sizes: Local batch sizes (``train.batch_size``) to train at; empty: the experiment's.
        local_steps: Local optimizer steps per round (``train.local_steps``; 0: ``train.local_epochs``
            passes) to train at; empty: the experiment's. Each (batch size, local steps) pair is a
            training run of its own; crossing them maps where the honest server stops leaking.
        attack_seeds: Attack only the first this many seeds (``None``: every seed). The later seeds
            train for utility alone: one row per setting and target, under the first honest-server
            attack's name, with every attack cell empty and ``stopped = "utility only"``. Utility
            needs seeds to resolve a fraction of a percent; an attack reads one update.
        executor: ``process`` (the default) or ``ray``; how the points run, never what they compute.
        address: With ``executor = "ray"``: a running Ray cluster's ``HOST:PORT`` or ``auto``
            (``None``: start a local Ray for this sweep).
    """

    noises: tuple[float, ...] = DEFAULT_NOISES
    defenses: tuple[str, ...] = ("dp-sgd",)
    attacks: tuple[str, ...] = ("inverting-gradients",)
    seeds: int = 1
    targets: tuple[int, ...] = (-1,)
    batch_sizes: tuple[int, ...] = ()
    local_steps: tuple[int, ...] = ()
    attack_seeds: int | None = None
    executor: ExecutorName = "process"
    address: str | None = None

    def seed_list(self, base_seed: int) -> list[int]:
        return [base_seed + i for i in range(self.seeds)]


def validate_spec(
    spec: SweepSpec, *, defenses: Sequence[str], attacks: Sequence[str], noise_defenses: Sequence[str]
) -> SweepSpec:
    """Check the grid against the registered ``defenses`` and ``attacks`` (``noise_defenses``: those with
    a noise multiplier σ to sweep); one error lists every problem. Noises come back sorted and
    de-duplicated, with the undefended 0 added."""
    problems: list[str] = []
    if not spec.noises:
        problems.append("`sweep.noises` is empty; give at least one noise level")
    bad = [n for n in spec.noises if not (math.isfinite(n) and n >= 0)]
    if bad:
        problems.append(f"`sweep.noises` must be finite and >= 0, but got {bad}")
    if not spec.defenses:
        problems.append("`sweep.defenses` is empty")
    for name in spec.defenses:
        if name not in defenses:
            problems.append(f"unknown defense {name!r} in `sweep.defenses`; known: {', '.join(defenses)}")
        elif name not in noise_defenses:
            problems.append(
                f"`sweep.defenses` lists {name!r}, which has no noise multiplier to sweep; "
                f"use {', '.join(noise_defenses)} (the undefended reference is always included)"
            )
    for name in spec.attacks:
        if name not in attacks:
            problems.append(f"unknown attack {name!r} in `sweep.attacks`; known: {', '.join(attacks)}")
    if not spec.attacks:
        problems.append("`sweep.attacks` is empty")
    if not 1 <= spec.seeds <= MAX_SEEDS:
        problems.append(f"`sweep.seeds` must be in 1..{MAX_SEEDS}, but got {spec.seeds}")
    if spec.attack_seeds is not None and not 1 <= spec.attack_seeds <= spec.seeds:
        problems.append(
            f"`sweep.attack_seeds` must be in 1..{spec.seeds} (`sweep.seeds`), but got {spec.attack_seeds}"
        )
    loudest = ceiling(ExperimentConfig, "defense.noise")
    too_loud = [n for n in spec.noises if math.isfinite(n) and n > loudest]
    if too_loud:
        problems.append(f"`sweep.noises` must be at most {loudest:g}, but got {too_loud}")
    if any(t > ceiling(ExperimentConfig, "attack.target_site") for t in spec.targets):
        problems.append(f"`sweep.targets` must be site indices or -1 (smallest site), but got {spec.targets}")
    if not spec.targets or any(t < -1 for t in spec.targets):
        problems.append(f"`sweep.targets` must be site indices or -1 (smallest site), but got {spec.targets}")
    problems += _training_axis_problems(spec)
    if spec.executor not in EXECUTORS:
        problems.append(f"`sweep.executor` must be one of {', '.join(EXECUTORS)}, but got {spec.executor!r}")
    if spec.address is not None and spec.executor != "ray":
        problems.append(
            f'`sweep.address` ({spec.address!r}) needs `sweep.executor = "ray"` (--executor ray); '
            "the process pool runs on this machine"
        )
    if problems:
        raise ConfigError(problems)
    noises = tuple(sorted({float(n) for n in spec.noises} | {0.0}))
    return dataclasses.replace(
        spec,
        noises=noises,
        defenses=tuple(dict.fromkeys(spec.defenses)),
        attacks=tuple(dict.fromkeys(spec.attacks)),
        targets=tuple(dict.fromkeys(spec.targets)),
        batch_sizes=tuple(dict.fromkeys(spec.batch_sizes)),
        local_steps=tuple(dict.fromkeys(spec.local_steps)),
    )


def _training_axis_problems(spec: SweepSpec) -> list[str]:
    """The batch sizes and local step counts a run cannot use (``train.*``'s own bounds)."""
    problems = []
    axes = (
        ("batch_sizes", spec.batch_sizes, "train.batch_size", 1),
        ("local_steps", spec.local_steps, "train.local_steps", 0),
    )
    for name, values, field, low in axes:
        limit = ceiling(ExperimentConfig, field)
        bad = [v for v in values if not low <= v <= limit]
        if bad:
            zero = " (0: `train.local_epochs` passes)" if low == 0 else ""
            problems.append(f"`sweep.{name}` must be in {low}..{limit}{zero}, but got {bad}")
    return problems


def load_sweep_config(path: str | Path) -> tuple[ExperimentConfig, SweepSpec]:
    """An experiment TOML with an optional ``[sweep]`` table; every problem is reported at once."""
    raw = read_toml(path)
    sweep_raw = raw.pop("sweep", {})
    problems: list[str] = []
    config = spec = None
    try:
        config = validate(from_dict(ExperimentConfig, raw))
    except ConfigError as exc:
        problems += exc.problems
    try:
        spec = from_dict(SweepSpec, sweep_raw, where="sweep")
    except ConfigError as exc:
        problems += exc.problems
    if problems or config is None or spec is None:
        raise ConfigError(problems, source=str(path))
    return config, spec

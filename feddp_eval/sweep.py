"""Privacy–utility sweeps: the grid, its points, and the tidy results table.

A sweep crosses defenses × noise levels × seeds × attacks × target sites. Each
combination is a *point*, keyed by the hash of its resolved config (training and
attack settings together). The undefended reference (``none``, σ = 0) is always
part of the grid: utility changes and leakage are read against it.

On disk (``DIR`` is the sweep folder)::

    sweep.json                 the grid, the base config, the planned points, the command line
    runs/<hash12>/             one training run per (defense, noise, seed), reused by config hash
    points/<key>/row.json      a finished point's results row; its presence means "done"
    results.csv                the tidy table: one row per finished point, in grid order, with the
                               columns of :func:`feddp_eval.schema.result_columns`
    runtime.csv                per finished point: wall-clock seconds. Kept apart so that
                               results.csv is byte-identical whether or not the sweep was
                               interrupted (at a fixed thread count: --jobs N gives each worker
                               cores / N threads, and the thread count changes float sums).

Nothing here imports torch; :func:`feddp_eval.pipeline.run_sweep` does the work.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from feddp_eval import schema
from feddp_eval.config import (
    MODEL_MODIFICATIONS,
    ExperimentConfig,
    config_hash,
    from_dict,
    read_toml,
    to_dict,
    validate,
)
from feddp_eval.errors import ConfigError, RunDirError
from feddp_eval.safety import INT_LIMITS, MAX_NOISE

SWEEP_FILE = "sweep.json"
RESULTS_FILE = "results.csv"
RUNTIME_FILE = "runtime.csv"
FORMAT = 1
MAX_SEEDS = 10_000
UTILITY_ONLY = "utility only"
"""``stopped`` of a row trained for utility and not attacked (a seed beyond ``sweep.attack_seeds``)."""

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
        attack_seeds: Attack only the first this many seeds (``None``: every seed). The later seeds
            train for utility alone: one row per setting and target, under the first honest-server
            attack's name, with every attack cell empty and ``stopped = "utility only"``. Utility
            needs seeds to resolve a fraction of a percent; an attack reads one update.
    """

    noises: tuple[float, ...] = DEFAULT_NOISES
    defenses: tuple[str, ...] = ("dp-sgd",)
    attacks: tuple[str, ...] = ("inverting-gradients",)
    seeds: int = 1
    targets: tuple[int, ...] = (-1,)
    attack_seeds: int | None = None

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
    too_loud = [n for n in spec.noises if math.isfinite(n) and n > MAX_NOISE]
    if too_loud:
        problems.append(f"`sweep.noises` must be at most {MAX_NOISE:g}, but got {too_loud}")
    if any(t > INT_LIMITS["attack.target_site"] for t in spec.targets):
        problems.append(f"`sweep.targets` must be site indices or -1 (smallest site), but got {spec.targets}")
    if not spec.targets or any(t < -1 for t in spec.targets):
        problems.append(f"`sweep.targets` must be site indices or -1 (smallest site), but got {spec.targets}")
    if problems:
        raise ConfigError(problems)
    noises = tuple(sorted({float(n) for n in spec.noises} | {0.0}))
    return dataclasses.replace(
        spec,
        noises=noises,
        defenses=tuple(dict.fromkeys(spec.defenses)),
        attacks=tuple(dict.fromkeys(spec.attacks)),
        targets=tuple(dict.fromkeys(spec.targets)),
    )


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


# --------------------------------------------------------------------------- points


@dataclass(frozen=True)
class SweepPoint:
    """One (defense, noise, seed, attack, target) combination; ``utility_only``: trained, not attacked
    (a seed beyond ``sweep.attack_seeds``)."""

    key: str
    config: ExperimentConfig
    utility_only: bool = False

    @property
    def train_hash(self) -> str:
        return config_hash(self.config)

    @property
    def run_dir(self) -> str:
        """The training run's folder, relative to the sweep folder."""
        return f"runs/{self.train_hash[:12]}"

    @property
    def setting(self) -> str:
        """``none`` or ``dp-sgd σ=0.01``."""
        return schema.setting_label(self.config.defense.name, self.config.defense.noise)

    @property
    def label(self) -> str:
        a = self.config.attack
        what = UTILITY_ONLY if self.utility_only else a.name
        return f"{self.setting} seed {self.config.seed} ({what}, site {a.target_site})"

    def describe(self) -> dict[str, Any]:
        d, a = self.config.defense, self.config.attack
        return {
            "key": self.key,
            "config_hash": self.train_hash,
            "defense": d.name,
            "noise": d.noise,
            "seed": self.config.seed,
            "attack": a.name,
            "utility_only": self.utility_only,
            "target_site": a.target_site,
            "run_dir": self.run_dir,
        }


def point_key(config: ExperimentConfig, *, utility_only: bool = False) -> str:
    """A point's key: its config hash with the attack (a utility-only point's differs from the attacked
    point of the same config, so raising ``attack_seeds`` later attacks it instead of reusing it)."""
    digest = config_hash(config, include_attack=True)
    return hashlib.sha256(f"utility:{digest}".encode()).hexdigest()[:12] if utility_only else digest[:12]


def plan(base: ExperimentConfig, spec: SweepSpec) -> list[SweepPoint]:
    """Every point of a validated grid: the undefended reference first, then each defense by
    ascending noise; within a setting, seeds, then attacks, then targets. Seeds beyond
    ``spec.attack_seeds`` get one utility-only point per target, under the first honest-server
    attack (the first attack when every one is a malicious server's)."""
    settings = [("none", 0.0)] + [(d, n) for d in spec.defenses for n in spec.noises if n > 0]
    honest = [a for a in spec.attacks if a not in MODEL_MODIFICATIONS] or list(spec.attacks)
    points = []
    for defense, noise in settings:
        for index, seed in enumerate(spec.seed_list(base.seed)):
            utility_only = spec.attack_seeds is not None and index >= spec.attack_seeds
            for attack in honest[:1] if utility_only else spec.attacks:
                for target in spec.targets:
                    config = _point_config(base, defense, noise, seed, attack, target)
                    key = point_key(config, utility_only=utility_only)
                    points.append(SweepPoint(key, config, utility_only))
    return points


def _point_config(
    base: ExperimentConfig, defense: str, noise: float, seed: int, attack: str, target: int
) -> ExperimentConfig:
    return validate(
        dataclasses.replace(
            base,
            seed=seed,
            defense=dataclasses.replace(
                base.defense,
                name=defense,
                noise=noise,
                target_epsilon=None,
                # The undefended reference has no server-side defense either.
                server=None if defense == "none" else base.defense.server,
            ),
            attack=dataclasses.replace(base.attack, name=attack, target_site=target),
        )
    )


def group_by_run(points: Sequence[SweepPoint]) -> list[list[SweepPoint]]:
    """Points that share a training run, in plan order: the unit of work one process takes."""
    groups: dict[str, list[SweepPoint]] = {}
    for point in points:
        groups.setdefault(point.train_hash, []).append(point)
    return list(groups.values())


# --------------------------------------------------------------------------- the folder


def sweep_manifest(
    base: ExperimentConfig, spec: SweepSpec, points: Sequence[SweepPoint], command: Sequence[str]
) -> dict[str, Any]:
    from datetime import UTC, datetime

    from feddp_eval import __version__

    return {
        "format": FORMAT,
        "feddp_eval": __version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": list(command),
        "grid": {
            "defenses": list(spec.defenses),
            "noises": list(spec.noises),
            "attacks": list(spec.attacks),
            "seeds": spec.seed_list(base.seed),
            "targets": list(spec.targets),
            "attack_seeds": spec.attack_seeds,
        },
        "base_config": to_dict(base),
        "points": [p.describe() for p in points],
    }


def check_sweep_dir(out: Path) -> None:
    """Refuse a non-empty folder that is not a sweep: a sweep never writes over someone else's files."""
    if out.exists() and not out.is_dir():
        raise RunDirError(f"{out} is a file; --out must be a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / SWEEP_FILE).exists():
        raise RunDirError(f"{out} is not empty and holds no sweep ({SWEEP_FILE}); choose another --out")


def point_dir(out: Path, key: str) -> Path:
    return out / "points" / key


def finished_rows(out: Path, points: Iterable[SweepPoint]) -> dict[str, dict[str, Any]]:
    """Rows of the points already finished in ``out``."""
    from feddp_eval.io import read_json
    from feddp_eval.runcheck import row_problem

    done = {}
    for point in points:
        path = point_dir(out, point.key) / "row.json"
        if path.is_file():
            row = read_json(path)
            problem = row_problem(row, point.key)
            if problem:
                raise RunDirError(f"{path} {problem}; delete it and rerun the sweep to recompute that point")
            done[point.key] = row
    return done


def write_tables(out: Path, points: Sequence[SweepPoint]) -> int:
    """Rebuild ``results.csv`` and ``runtime.csv`` from the finished points, in plan order."""
    from feddp_eval.io import write_csv

    done = finished_rows(out, points)
    rows = [done[p.key] for p in points if p.key in done]
    for name, header in ((RESULTS_FILE, schema.result_columns()), (RUNTIME_FILE, schema.runtime_columns())):
        write_csv(out / name, [schema.pick(r, header) for r in rows], header)
    return len(rows)


def stage_seconds(rows: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """Where a sweep's time went, from its finished rows: ``training`` (each training run counted once,
    however many points share it), ``attacks`` (every point's attack), and their ``total``."""
    runs: dict[str, float] = {}
    attacks = 0.0
    for row in rows:
        if row.get("train_seconds") is not None:
            runs[str(row.get("run_dir"))] = float(row["train_seconds"])
        attacks += float(row.get("seconds") or 0.0)
    training = sum(runs.values())
    return {"training": training, "attacks": attacks, "total": training + attacks}

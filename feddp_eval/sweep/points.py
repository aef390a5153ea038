"""A sweep's points: one (defense, noise, seed, batch size, local steps, attack, target) each, keyed
by config hash.

Points that share a training run form a *group*, the unit an executor schedules. Nothing here imports
torch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from feddp_eval import schema
from feddp_eval.config import ExperimentConfig, config_hash, validate
from feddp_eval.plugins import defense_card, modifies_model
from feddp_eval.rundir.names import attack_key, short
from feddp_eval.sweep.grid import SweepSpec

UTILITY_ONLY = "utility only"
"""``stopped`` of a row trained for utility and not attacked (a seed beyond ``sweep.attack_seeds``)."""

TRAINING_AXES: dict[str, Callable[[ExperimentConfig], int]] = {
    "batch_size": lambda config: config.train.batch_size,
    "local_steps": lambda config: config.train.local_steps,
}
"""The training settings a sweep may vary (``sweep.batch_sizes``, ``sweep.local_steps``), by their
results column (:func:`feddp_eval.schema.swept_columns`): how to read each off a point's config."""


@dataclass(frozen=True)
class SweepPoint:
    """One (defense, noise, seed, batch size, local steps, attack, target) combination;
    ``utility_only``: trained, not attacked (a seed beyond ``sweep.attack_seeds``); ``swept``: the
    :data:`TRAINING_AXES` its grid varies (named in its label, and columns of ``results.csv``)."""

    key: str
    config: ExperimentConfig
    utility_only: bool = False
    swept: tuple[str, ...] = ()

    @property
    def train_hash(self) -> str:
        return config_hash(self.config)

    @property
    def run_dir(self) -> str:
        """The training run's folder, relative to the sweep folder."""
        return f"runs/{short(self.train_hash)}"

    @property
    def setting(self) -> str:
        """``none`` or ``dp-sgd σ=0.01``."""
        return schema.setting_label(self.config.defense.name, self.config.defense.noise)

    @property
    def run_label(self) -> str:
        """Its training run in words: ``dp-sgd σ=0.01 seed 0``, with the training axes its grid varies
        (``, batch size 4, local steps 3``)."""
        axes = "".join(f", {name.replace('_', ' ')} {value}" for name, value in self.training().items())
        return f"{self.setting} seed {self.config.seed}{axes}"

    @property
    def label(self) -> str:
        a = self.config.attack
        what = UTILITY_ONLY if self.utility_only else a.name
        return f"{self.run_label} ({what}, site {a.target_site})"

    def training(self, *, every: bool = False) -> dict[str, int]:
        """The training settings its grid varies (``every``: all of :data:`TRAINING_AXES`), by column."""
        return {
            name: read(self.config) for name, read in TRAINING_AXES.items() if every or name in self.swept
        }

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
            **self.training(every=True),
            "run_dir": self.run_dir,
        }


def point_key(config: ExperimentConfig, *, utility_only: bool = False) -> str:
    """A point's key: its config hash with the attack (a utility-only point's differs from the attacked
    point of the same config, so raising ``attack_seeds`` later attacks it instead of reusing it)."""
    if not utility_only:
        return attack_key(config)
    digest = config_hash(config, include_attack=True)
    return short(hashlib.sha256(f"utility:{digest}".encode()).hexdigest())


def plan(base: ExperimentConfig, spec: SweepSpec) -> list[SweepPoint]:
    """Every point of a validated grid: the undefended reference first, then each defense by
    ascending noise; within a setting, seeds, then batch sizes, then local steps, then attacks, then
    targets. Seeds beyond ``spec.attack_seeds`` get one utility-only point per training setting and
    target, under the first honest-server attack (the first attack when every one is a malicious
    server's). A grid without batch sizes or local steps trains at the base config's."""
    settings = [("none", 0.0)] + [(d, n) for d in spec.defenses for n in spec.noises if n > 0]
    honest = [a for a in spec.attacks if not modifies_model(a)] or list(spec.attacks)
    trainings = [
        dataclasses.replace(base.train, batch_size=batch, local_steps=steps)
        for batch, steps in itertools.product(
            spec.batch_sizes or (base.train.batch_size,), spec.local_steps or (base.train.local_steps,)
        )
    ]
    swept = swept_axes(spec)
    points = []
    for defense, noise in settings:
        for index, seed in enumerate(spec.seed_list(base.seed)):
            utility_only = spec.attack_seeds is not None and index >= spec.attack_seeds
            for train, attack in itertools.product(trainings, honest[:1] if utility_only else spec.attacks):
                for target in spec.targets:
                    config = _point_config(
                        dataclasses.replace(base, train=train), defense, noise, seed, attack, target
                    )
                    key = point_key(config, utility_only=utility_only)
                    points.append(SweepPoint(key, config, utility_only, swept))
    return points


def swept_axes(spec: SweepSpec) -> tuple[str, ...]:
    """The :data:`TRAINING_AXES` the grid gives more than one value."""
    values = {"batch_size": spec.batch_sizes, "local_steps": spec.local_steps}
    return tuple(name for name in TRAINING_AXES if len(set(values[name])) > 1)


def _point_config(
    base: ExperimentConfig, defense: str, noise: float, seed: int, attack: str, target: int
) -> ExperimentConfig:
    """``base`` (its training settings already the point's) with the point's defense, seed and attack."""
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


def _per_sample(defense: str) -> bool:
    """Whether ``defense`` protects each sample (as it declares): it clips every sample's gradient,
    which makes its training the slow kind."""
    card = defense_card(defense)
    return card is not None and card.granularity == "sample-level"


def longest_first(groups: list[list[SweepPoint]]) -> list[list[SweepPoint]]:
    """The groups in the order workers should take them: the likely longest first, so that no worker is
    left with a long group while the other idles at the end. An optimisation attack costs more than its
    training run, and it runs longer the less noise the update carries: it stops on a plateau of its
    objective, which keeps falling on a clean update (the default sweep, AMD EPYC: 450 iterations
    undefended, 400–425 at σ ≤ 0.003, 200–275 at σ ≥ 0.01). So: more inversions first, among groups
    with inversions less noise first, then sample-level DP (its training costs 1.2–2× a plain run's).
    Ties keep plan order. (The order of work changes no result: rows are written per point and tabled
    in plan order.)"""

    def cost(group: list[SweepPoint]) -> tuple[int, float, int]:
        inversions = sum(1 for p in group if not p.utility_only and not modifies_model(p.config.attack.name))
        defense = group[0].config.defense
        return (inversions, -defense.noise if inversions else 0.0, int(_per_sample(defense.name)))

    return sorted(groups, key=cost, reverse=True)

"""A sweep's points: one (defense, noise, seed, attack, target) each, keyed by config hash.

Points that share a training run form a *group*, the unit an executor schedules. Nothing here imports
torch.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from feddp_eval import schema
from feddp_eval.config import MODEL_MODIFICATIONS, ExperimentConfig, config_hash, validate
from feddp_eval.sweep.grid import SweepSpec

UTILITY_ONLY = "utility only"
"""``stopped`` of a row trained for utility and not attacked (a seed beyond ``sweep.attack_seeds``)."""


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


def longest_first(groups: list[list[SweepPoint]]) -> list[list[SweepPoint]]:
    """The groups in the order workers should take them: the likely longest first, so that no worker is
    left with a long group while the other idles at the end. An optimisation attack costs more than its
    training run; sample-level DP-SGD trains at about twice a plain run's cost. Ties keep plan order.
    (The order of work changes no result: rows are written per point and tabled in plan order.)"""

    def cost(group: list[SweepPoint]) -> tuple[int, int]:
        inversions = sum(
            1 for p in group if not p.utility_only and p.config.attack.name not in MODEL_MODIFICATIONS
        )
        return (inversions, int(group[0].config.defense.name == "dp-sgd"))

    return sorted(groups, key=cost, reverse=True)

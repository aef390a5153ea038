"""``feddp-eval attack``: train (or reuse) the defended run and the undefended reference, attack both."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from feddp_eval import schema
from feddp_eval.config import ExperimentConfig, config_hash, reference_config
from feddp_eval.errors import ConfigError
from feddp_eval.io import write_json
from feddp_eval.workflows.attack_run import attack_run
from feddp_eval.workflows.train import run_train


@dataclass(frozen=True)
class AttackResult:
    """Outcome of :func:`run_attack`: one row per arm, and where everything was written."""

    out_dir: Path
    rows: list[dict[str, Any]]
    scenario: dict[str, Any]
    grid: Path | None

    def to_json(self) -> dict[str, Any]:
        return {"run_dir": str(self.out_dir), "scenario": self.scenario, "rows": self.rows}


def run_attack(
    config: ExperimentConfig,
    *,
    out: str | Path = "runs",
    reference: bool = True,
    on_stage: Callable[[str], None] | None = None,
    on_iteration: Callable[[int, int, float], None] | None = None,
) -> AttackResult:
    """Train (or reuse) the defended run and the undefended reference, attack the same client round in both.

    Args:
        config: The defended experiment; ``config.attack`` picks the attack, target and knowledge.
        out: Folder holding the training runs (``<out>/<config hash>``) and the attack results.
        reference: Also train and attack the undefended arm.
        on_stage: Called with a short description when a stage starts.
        on_iteration: Attack progress: (iteration, total, best objective).
    """
    from feddp_eval.metrics.perceptual import LPIPSMetric

    preflight_attack(config)
    out = Path(out)
    lpips = LPIPSMetric(config.attack.lpips_net)  # loads backbone weights once for every arm
    arms = ([reference_config(config)] if reference and config.defense.name != "none" else []) + [config]
    results_dir = out / f"attack-{config_hash(config, include_attack=True)[:12]}"
    outcomes = []
    for arm in arms:
        label = schema.setting_label(arm.defense.name, arm.defense.noise)
        if on_stage:
            on_stage(f"training [{label}]")
        trained = run_train(arm, run_dir=out / config_hash(arm)[:12])
        if on_stage:
            on_stage(f"attacking [{label}]")
        outcomes.append(attack_run(arm, trained, lpips, on_iteration=on_iteration))
    rows, scenario = [o.row for o in outcomes], outcomes[-1].scenario
    write_json(results_dir / "results.json", {"scenario": scenario, "rows": rows})
    from feddp_eval.viz import save_comparison_grid

    panels = [("prior", outcomes[-1].guess)]
    panels += [(schema.setting_label(o.row["defense"], o.row["noise"]), o.reconstruction) for o in outcomes]
    grid = save_comparison_grid(results_dir / "reconstructions.png", outcomes[-1].truth, panels)
    return AttackResult(results_dir, rows, scenario, grid)


def preflight_attack(config: ExperimentConfig) -> None:
    """Refuse an unknown attack or a target site the run will not have, before any training."""
    from attacks import ATTACKS
    from feddp_eval.federated.loop import sampling_problem
    from feddp_eval.safety import target_problem

    ATTACKS.get(config.attack.name)  # an unknown name is a ConfigError listing the known ones
    if (problem := target_problem(config) or sampling_problem(config)) is not None:
        raise ConfigError(problem)

"""``feddp-eval check``: run (or read) a baseline's scenario and hold its rows to the baseline's bounds."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from feddp_eval.config import ExperimentConfig, with_overrides
from feddp_eval.errors import ConfigError
from feddp_eval.workflows.attack import run_attack


@dataclass(frozen=True)
class CheckResult:
    """Outcome of :func:`run_check`: every bound's verdict, and the rows they were checked on."""

    verdicts: list[Any]
    rows: list[dict[str, Any]]
    source: str

    @property
    def passed(self) -> bool:
        return all(v.passed for v in self.verdicts)

    def to_json(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "source": self.source,
            "checks": [
                {
                    "arm": v.bound.arm,
                    "metric": v.bound.metric,
                    "kind": v.bound.kind,
                    "bound": v.bound.value,
                    "tolerance": v.bound.tolerance,
                    "value": v.value,
                    "margin": v.margin,
                    "passed": v.passed,
                    "message": v.message,
                }
                for v in self.verdicts
            ],
        }


def scenario_config(baseline: Any) -> ExperimentConfig:
    """The experiment a baseline pins (seed included), validated."""
    import attacks  # noqa: F401  (installs the check of [attack.<name>] tables that validate runs)
    from feddp_eval.config import from_dict, validate

    try:
        return validate(from_dict(ExperimentConfig, baseline.scenario))
    except ConfigError as exc:
        raise ConfigError([f"scenario: {p}" for p in exc.problems], source=str(baseline.path)) from None


def run_check(
    baseline_path: str | Path,
    *,
    results: str | Path | None = None,
    out: str | Path = "runs",
    on_stage: Callable[[str], None] | None = None,
    on_iteration: Callable[[int, int, float], None] | None = None,
) -> CheckResult:
    """Compare a scenario's leakage and utility with the bounds of a baseline file; a scenario trained
    with the audit on is also held to ε̂ ≤ ε on every arm with a claimed ε (no bound needed).

    Args:
        baseline_path: The baseline TOML (see :mod:`feddp_eval.gate`).
        results: An attack ``results.json`` (or the folder holding it) to check instead of running.
        out: Where a fresh run of the scenario is written (training runs are reused by hash).
        on_stage: Stage callback, as for :func:`run_attack`.
        on_iteration: Attack progress callback, as for :func:`run_attack`.
    """
    from feddp_eval.errors import RunDirError
    from feddp_eval.gate import arm_attack, audit_verdicts, evaluate, load_baseline, require_verdicts
    from feddp_eval.io import read_json
    from feddp_eval.rundir.check import result_rows
    from feddp_eval.rundir.names import RESULTS

    baseline = load_baseline(baseline_path)
    scenario = scenario_config(baseline)  # an invalid scenario is an error with --results too
    check_arms(baseline)
    if results is not None:
        path = Path(results)
        path = path / RESULTS if path.is_dir() else path
        if not path.is_file():
            raise RunDirError(f"{path} does not exist; pass an attack results.json or the folder holding it")
        rows = result_rows(read_json(path), path)
        verdicts = evaluate(baseline.bounds, rows) + audit_verdicts(rows)
        require_verdicts(verdicts, rows, source=str(path))
        return CheckResult(verdicts, rows, str(path))
    # The scenario's own attack, then every other attack an arm names (each on its own runs).
    attacks = [scenario.attack.name]
    attacks += sorted({a for b in baseline.bounds if (a := arm_attack(b.arm)) and a not in attacks})
    rows, sources = [], []
    for name in attacks:
        config = with_overrides(scenario, {"attack.name": name})
        attacked = run_attack(config, out=out, on_stage=on_stage, on_iteration=on_iteration)
        rows += attacked.row_dicts()
        sources.append(str(attacked.out_dir))
    verdicts = evaluate(baseline.bounds, rows, attack=scenario.attack.name)
    verdicts += audit_verdicts(rows, attack=scenario.attack.name)
    require_verdicts(verdicts, rows, source=", ".join(sources))
    return CheckResult(verdicts, rows, ", ".join(sources))


def check_arms(baseline: Any) -> None:
    """Refuse a baseline whose arms name an unknown defense or attack (exit 2, before any run)."""
    from attacks import ATTACKS
    from defenses import DEFENSES
    from feddp_eval.gate import arm_problems

    problems = arm_problems(
        [b.arm for b in baseline.bounds], defenses=DEFENSES.names(), attacks=ATTACKS.names()
    )
    if problems:
        raise ConfigError(problems, source=str(baseline.path))


def write_baseline_file(
    path: str | Path,
    scenario: str | Path,
    *,
    out: str | Path = "runs",
    margins: dict[str, float],
    threads: tuple[int, ...] = (),
    seeds: int = 1,
    on_stage: Callable[[str], None] | None = None,
    on_iteration: Callable[[int, int, float], None] | None = None,
) -> list[str]:
    """Run a scenario once per (seed, thread count) and write a baseline whose bounds sit outside the
    spread of those runs (:func:`feddp_eval.gate.write_baseline`). Returns the runs' result folders.

    Args:
        path: The baseline TOML to write (atomically).
        scenario: The experiment TOML the baseline pins; it must name a defense.
        out: Where the runs go (a run per seed and thread count: runs at other thread counts are separate
            folders, ``<out>/threads-<n>``, because a training run is reused by its config hash alone).
        margins: The least distance of a bound from the worst run, per metric (psnr, ssim, lpips, dice).
        threads: Thread counts to repeat at; empty: this process's own.
        seeds: Runs at the scenario's seed and the ``seeds - 1`` after it.
        on_stage: Stage callback, as for :func:`run_attack`.
        on_iteration: Attack progress callback, as for :func:`run_attack`.
    """
    import os

    import torch

    from feddp_eval.config import load_config
    from feddp_eval.gate import require_verdicts, write_baseline
    from feddp_eval.io import atomic_write_text

    bad = {k: v for k, v in margins.items() if not (v == v and abs(v) != float("inf") and v >= 0)}
    if bad:
        raise ConfigError(f"--margin and --margin-psnr must be finite numbers >= 0, but got {bad}")
    if seeds < 1 or any(t < 1 for t in threads):
        raise ConfigError(f"--repeat-seeds must be >= 1 and thread counts >= 1, but got {seeds}, {threads}")
    experiment = load_config(scenario)
    if experiment.defense.name == "none":
        raise ConfigError(f"scenario {scenario} has no defense; set [defense] so there is a defended arm")
    own = torch.get_num_threads()
    repeats, labels, sources = [], [], []
    try:
        for count in threads or (own,):
            torch.set_num_threads(count)
            for i in range(seeds):
                config = with_overrides(experiment, {"seed": experiment.seed + i})
                where = Path(out) / f"threads-{count}" if threads else Path(out)
                result = run_attack(config, out=where, on_stage=on_stage, on_iteration=on_iteration)
                # No bound from an attack that did not run.
                require_verdicts([], result.row_dicts(), source=str(result.out_dir))
                repeats.append(result.row_dicts())
                labels.append(f"seed {config.seed}, {count} thread(s)")
                sources.append(str(result.out_dir))
    finally:
        torch.set_num_threads(own)
    relative = Path(os.path.relpath(Path(scenario).resolve(), Path(path).resolve().parent))
    text = write_baseline(repeats, scenario=relative.as_posix(), margins=margins, labels=labels)
    atomic_write_text(path, text)
    return sources

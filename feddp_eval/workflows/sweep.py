"""``feddp-eval sweep``: train → capture → attack → score every point of a privacy–utility grid; resumable."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from feddp_eval.config import ExperimentConfig
from feddp_eval.errors import ConfigError
from feddp_eval.io import write_json
from feddp_eval.sweep import stage_seconds
from feddp_eval.workflows.attack import preflight_attack
from feddp_eval.workflows.attack_run import attack_run, utility_row
from feddp_eval.workflows.sweep_workers import run_parallel
from feddp_eval.workflows.train import run_train


@dataclass(frozen=True)
class SweepResult:
    """Outcome of :func:`run_sweep`: the finished rows (grid order) and what is still missing."""

    out_dir: Path
    rows: list[dict[str, Any]]
    missing: list[str]
    computed: int

    @property
    def results(self) -> Path:
        from feddp_eval.sweep import RESULTS_FILE

        return self.out_dir / RESULTS_FILE

    def to_json(self) -> dict[str, Any]:
        return {
            "sweep_dir": str(self.out_dir),
            "results": str(self.results),
            "points": len(self.rows) + len(self.missing),
            "finished": len(self.rows),
            "computed": self.computed,
            "missing": self.missing,
            "seconds": stage_seconds(self.rows),
            "rows": self.rows,
        }


def run_sweep(
    config: ExperimentConfig,
    spec: Any,
    *,
    out: str | Path = "runs/sweep",
    jobs: int = 1,
    command: list[str] | None = None,
    on_start: Callable[[int, int], None] | None = None,
    on_stage: Callable[[str], None] | None = None,
    on_point: Callable[[str], None] | None = None,
) -> SweepResult:
    """Train → capture → attack → score every point of a privacy–utility grid; resumable.

    Points are keyed by config hash: a finished point (``points/<key>/row.json``) is never
    recomputed, so an interrupted sweep (Ctrl-C, kill -9, power loss) picks up where it stopped
    and ends with the same ``results.csv``. Points sharing a training run train it once.

    Args:
        config: The base experiment (its seed is the first seed; its defense is replaced per point).
        spec: A :class:`~feddp_eval.sweep.SweepSpec`.
        out: The sweep folder.
        jobs: Worker processes; each takes one training run and its attacks at a time.
        command: The command line recorded in ``sweep.json`` (default ``sys.argv``).
        on_start: Called once with (points already finished, points in the grid).
        on_stage: Called with a short description whenever a point enters a stage.
        on_point: Called with a point's label when it finishes.
    """
    import sys

    from attacks import ATTACKS
    from defenses import DEFENSES, noise_defenses
    from feddp_eval.runcheck import discard_new_sweep
    from feddp_eval.safety import planned_sites
    from feddp_eval.sweep import SWEEP_FILE, check_sweep_dir, plan, sweep_manifest, validate_spec

    spec = validate_spec(
        spec, defenses=DEFENSES.names(), attacks=ATTACKS.names(), noise_defenses=noise_defenses()
    )
    sites = planned_sites(config.data)  # synthetic, or a folder's site count: known before training
    if sites is not None and any(t >= sites for t in spec.targets):
        raise ConfigError(
            f"`sweep.targets` {list(spec.targets)} names a site beyond the {sites} "
            f"{'synthetic ' if config.data.source == 'synthetic' else ''}sites "
            f"(0..{sites - 1}; -1 = the smallest)"
        )
    points = plan(config, spec)
    for point in points:  # an unknown attack or a site left out of the target round: before training
        preflight_attack(point.config)
    out = Path(out)
    check_sweep_dir(out)
    # A sweep folder this call creates is removed when it fails before any point finished, so no
    # empty sweep is left behind looking like a result.
    with discard_new_sweep(out):
        write_json(out / SWEEP_FILE, sweep_manifest(config, spec, points, command or sys.argv))
        return _run_points(out, config, points, jobs, on_start, on_stage, on_point)


def _run_points(
    out: Path,
    config: ExperimentConfig,
    points: list[Any],
    jobs: int,
    on_start: Callable[[int, int], None] | None,
    on_stage: Callable[[str], None] | None,
    on_point: Callable[[str], None] | None,
) -> SweepResult:
    """Compute the sweep's unfinished points (grouped by training run), serially or in ``jobs``
    processes, rebuilding the tables after each; the finished rows in grid order."""
    from feddp_eval.sweep import finished_rows, group_by_run, write_tables

    done = finished_rows(out, points)
    todo = [[p for p in group if p.key not in done] for group in group_by_run(points)]
    todo = [group for group in todo if group]
    write_tables(out, points)
    if on_start:
        on_start(len(done), len(points))
    labels = {p.key: p.label for p in points}
    computed = 0

    def finished(key: str) -> None:
        nonlocal computed
        computed += 1
        write_tables(out, points)
        if on_point:
            on_point(labels[key])

    if jobs <= 1 or len(todo) <= 1:
        from feddp_eval.metrics.perceptual import LPIPSMetric

        lpips = LPIPSMetric(config.attack.lpips_net)
        for group in todo:
            for key in sweep_group(out, group, lpips, on_stage):
                finished(key)
    else:
        run_parallel(out, longest_first(todo), jobs, on_stage, finished, sweep_group)
    rows = finished_rows(out, points)
    return SweepResult(
        out,
        [rows[p.key] for p in points if p.key in rows],
        [p.label for p in points if p.key not in rows],
        computed,
    )


def longest_first(groups: list[list[Any]]) -> list[list[Any]]:
    """The groups in the order workers should take them: the likely longest first, so that no worker is
    left with a long group while the other idles at the end. An optimisation attack costs more than its
    training run; sample-level DP-SGD trains at about twice a plain run's cost. Ties keep plan order.
    (The order of work changes no result: rows are written per point and tabled in plan order.)"""
    from feddp_eval.config import MODEL_MODIFICATIONS

    def cost(group: list[Any]) -> tuple[int, int]:
        inversions = sum(
            1 for p in group if not p.utility_only and p.config.attack.name not in MODEL_MODIFICATIONS
        )
        return (inversions, int(group[0].config.defense.name == "dp-sgd"))

    return sorted(groups, key=cost, reverse=True)


def sweep_group(
    out: Path, group: list[Any], lpips: Any, on_stage: Callable[[str], None] | None
) -> Iterator[str]:
    """Train (or reuse) one run and attack it for every point in ``group``; yields finished keys."""
    import os

    from feddp_eval.sweep import point_dir

    first = group[0]
    if on_stage:
        on_stage(f"training {first.setting} seed {first.config.seed}")
    trained = run_train(first.config, run_dir=out / first.run_dir)
    for point in group:
        a = point.config.attack
        if point.utility_only:  # a seed beyond `sweep.attack_seeds`: its utility, no attack
            row = utility_row(point.config, trained)
        else:
            if on_stage:
                on_stage(f"attacking {point.label}")
            outcome = attack_run(point.config, trained, lpips)
            row, scenario = outcome.row, outcome.scenario
            row.update(
                target_site=scenario["site_index"],  # -1 resolved to the site actually attacked
                mask=scenario["mask"],
                tiles=Path(os.path.relpath(row["tiles"], out)).as_posix(),
            )
        row.update(
            key=point.key,
            config_hash=point.train_hash,
            seed=point.config.seed,
            target_round=a.target_round,
            train_seconds=trained.summary["seconds"],
            run_dir=first.run_dir,
        )
        write_json(point_dir(out, point.key) / "row.json", row)  # the "done" marker, written last
        yield point.key

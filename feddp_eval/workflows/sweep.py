"""``feddp-eval sweep``: train → capture → attack → score every point of a privacy–utility grid; resumable."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from feddp_eval.config import ExperimentConfig
from feddp_eval.errors import ConfigError
from feddp_eval.io import write_json
from feddp_eval.rundir.summary import TrainSummary
from feddp_eval.sweep import longest_first, stage_seconds
from feddp_eval.sweep.executors import PointWork
from feddp_eval.workflows.attack import preflight_attack
from feddp_eval.workflows.attack_run import attack_run, utility_row
from feddp_eval.workflows.train import TrainResult, run_train

__all__ = ["WORK", "SweepResult", "finish_point", "longest_first", "run_sweep", "train_point"]


@dataclass(frozen=True)
class SweepResult:
    """Outcome of :func:`run_sweep`: the finished rows (grid order) and what is still missing."""

    out_dir: Path
    rows: list[dict[str, Any]]
    missing: list[str]
    computed: int
    unplanned: int = 0  # finished points in the folder that this grid does not name (kept, not read)

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
            "unplanned": self.unplanned,
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
    recomputed, so an interrupted sweep (Ctrl-C, kill -9, power loss, a cluster node lost) picks up
    where it stopped and ends with the same ``results.csv``. Points sharing a training run train it
    once. ``spec.executor`` picks how the points run (a process pool, or Ray tasks on a local Ray or
    the cluster at ``spec.address``); it changes no result.

    Args:
        config: The base experiment (its seed is the first seed; its defense is replaced per point).
        spec: A :class:`~feddp_eval.sweep.SweepSpec`.
        out: The sweep folder.
        jobs: Workers; each takes one training run and its attacks at a time (with ``spec.executor =
            "ray"``: the local Ray's size; each task computes with the threads a ``--jobs`` worker would).
        command: The command line recorded in ``sweep.json`` (default ``sys.argv``).
        on_start: Called once with (points already finished, points in the grid).
        on_stage: Called with a short description whenever a point enters a stage.
        on_point: Called with a point's label when it finishes.
    """
    import sys

    from attacks import ATTACKS
    from defenses import DEFENSES, noise_defenses
    from feddp_eval.data.sites import planned_sites
    from feddp_eval.rundir.check import discard_new_sweep
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
        return _run_points(out, spec, points, jobs, on_start, on_stage, on_point)


def _run_points(
    out: Path,
    spec: Any,
    points: list[Any],
    jobs: int,
    on_start: Callable[[int, int], None] | None,
    on_stage: Callable[[str], None] | None,
    on_point: Callable[[str], None] | None,
) -> SweepResult:
    """Compute the sweep's unfinished points (grouped by training run) with ``spec.executor``,
    rebuilding the tables after each; the finished rows in grid order."""
    from feddp_eval.sweep import finished_rows, group_by_run, unplanned_points, write_tables

    done = finished_rows(out, points)
    unplanned = unplanned_points(out, points)
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

    if spec.executor == "ray":  # Ray is imported on this path alone
        from feddp_eval.sweep.executors.ray_tasks import run_ray

        run_ray(
            out,
            longest_first(todo),
            jobs=jobs,
            address=spec.address,
            work=WORK,
            on_stage=on_stage,
            finished=finished,
        )
    else:
        from feddp_eval.sweep.executors.pool import run_pool

        run_pool(out, todo, jobs=jobs, work=WORK, on_stage=on_stage, finished=finished)
    rows = finished_rows(out, points)
    return SweepResult(
        out,
        [rows[p.key] for p in points if p.key in rows],
        [p.label for p in points if p.key not in rows],
        computed,
        unplanned,
    )


def train_point(root: Path, point: Any) -> TrainSummary:
    """Train (or reuse) ``point``'s run in ``root / point.run_dir``; its summary."""
    return run_train(point.config, run_dir=root / point.run_dir).summary


def finish_point(root: Path, point: Any, summary: TrainSummary, lpips: Any) -> dict[str, Any]:
    """``point``'s results row (as ``row.json`` holds it) from its trained run in ``root / point.run_dir``:
    the attack (its files written under the run) and its scores, or a utility-only seed's row; paths
    relative to ``root``."""
    import os

    trained = TrainResult(root / point.run_dir, summary, reused=True)
    a = point.config.attack
    if point.utility_only:  # a seed beyond `sweep.attack_seeds`: its utility, no attack
        row = utility_row(point.config, trained)
    else:
        outcome = attack_run(point.config, trained, lpips)
        scenario = outcome.scenario
        row = outcome.row.with_cells(
            target_site=scenario["site_index"],  # -1 resolved to the site actually attacked
            mask=scenario["mask"],
            tiles=Path(os.path.relpath(str(outcome.row.tiles), root)).as_posix(),
        )
    return row.with_cells(
        key=point.key,
        config_hash=point.train_hash,
        seed=point.config.seed,
        target_round=a.target_round,
        **point.training(every=True),  # in every row; a results.csv column when the grid varies it
        train_seconds=summary.seconds,
        run_dir=point.run_dir,
    ).as_dict()


def lpips_metric(net: str) -> Any:
    """The LPIPS scorer with backbone ``net`` (a worker builds it once)."""
    from feddp_eval.metrics.perceptual import LPIPSMetric

    return LPIPSMetric(net)


WORK = PointWork(train=train_point, finish=finish_point, lpips=lpips_metric)
"""The sweep's point function, as every executor runs it."""

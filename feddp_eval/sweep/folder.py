"""The sweep folder: its manifest, the finished points' rows, the tables rebuilt from them, and the
atomic writing of files a remote worker sent back.

On disk (``DIR`` is the sweep folder)::

    sweep.json                 the grid, the base config, the planned points, the command line
    runs/<hash12>/             one training run per (defense, noise, seed), reused by config hash
    points/<key>/row.json      a finished point's results row; its presence means "done"
    results.csv                the tidy table: one row per finished point, in grid order, with the
                               columns of :func:`feddp_eval.schema.result_columns` (the training
                               settings the grid varies among them, e.g. batch_size)
    runtime.csv                per finished point: wall-clock seconds. Kept apart so that
                               results.csv is byte-identical whether or not the sweep was
                               interrupted, and whichever executor ran it (at a fixed thread count:
                               the thread count changes float sums).

Nothing here imports torch.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from feddp_eval import schema
from feddp_eval.config import ExperimentConfig, to_dict
from feddp_eval.errors import RunDirError
from feddp_eval.io import is_atomic_leftover
from feddp_eval.sweep.grid import SweepSpec
from feddp_eval.sweep.points import SweepPoint

SWEEP_FILE = "sweep.json"
RESULTS_FILE = "results.csv"
RUNTIME_FILE = "runtime.csv"
FORMAT = 1


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
            "batch_sizes": list(spec.batch_sizes),
            "local_steps": list(spec.local_steps),
            "attack_seeds": spec.attack_seeds,
        },
        "base_config": to_dict(base),
        "points": [p.describe() for p in points],
    }


def check_sweep_dir(out: Path) -> None:
    """Refuse a non-empty folder that is not a sweep: a sweep never writes over someone else's files."""
    if out.exists() and not out.is_dir():
        raise RunDirError(f"{out} is a file; --out must be a folder")
    started = out.is_dir() and any(not is_atomic_leftover(entry) for entry in out.iterdir())
    if started and not (out / SWEEP_FILE).exists():
        raise RunDirError(f"{out} is not empty and holds no sweep ({SWEEP_FILE}); choose another --out")
    if (out / SWEEP_FILE).exists():
        _check_ours(out / SWEEP_FILE)


def _check_ours(path: Path) -> None:
    """A ``sweep.json`` feddp-eval wrote (its format and version keys), not someone else's file of that
    name: a sweep would write over it."""
    from feddp_eval.io import read_json

    try:
        manifest = read_json(path)
    except RunDirError as exc:
        raise RunDirError(
            f"{exc}; it is not a sweep feddp-eval wrote, so it is left alone: choose another --out"
        ) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or "feddp_eval" not in manifest:
        raise RunDirError(
            f"{path} was not written by this feddp-eval's sweep (no `feddp_eval` key and format {FORMAT}); "
            "it is left alone: choose another --out"
        )


POINTS_DIR = "points"
ROW_FILE = "row.json"  # a finished point's results row; its presence means "done"


def point_dir(out: Path, key: str) -> Path:
    return out / POINTS_DIR / key


def finished_rows(out: Path, points: Iterable[SweepPoint]) -> dict[str, dict[str, Any]]:
    """Rows of the points already finished in ``out``."""
    from feddp_eval.io import read_json
    from feddp_eval.rundir.check import row_problem

    done = {}
    for point in points:
        path = point_dir(out, point.key) / ROW_FILE
        if path.is_file():
            row = read_json(path)
            problem = row_problem(row, point.key)
            if problem:
                raise RunDirError(f"{path} {problem}; delete it and rerun the sweep to recompute that point")
            done[point.key] = row
    return done


def unplanned_points(out: Path, points: Iterable[SweepPoint]) -> int:
    """How many finished points in ``out`` this grid does not name: another grid's, or points computed
    before a setting that changes results changed their key (``attack.plateau`` in issue #23 changed
    every honest-server attack's). They are kept and never read; their training runs are reused
    wherever the training hash still matches."""
    planned = {point.key for point in points}
    folder = out / POINTS_DIR
    if not folder.is_dir():
        return 0
    return sum(1 for d in folder.iterdir() if d.name not in planned and (d / ROW_FILE).is_file())


def write_tables(out: Path, points: Sequence[SweepPoint]) -> int:
    """Rebuild ``results.csv`` and ``runtime.csv`` from the finished points, in plan order; results.csv
    has a column for each training setting the grid varies (``SweepPoint.swept``)."""
    from feddp_eval.io import write_csv

    done = finished_rows(out, points)
    rows = [done[p.key] for p in points if p.key in done]
    results = schema.result_columns(points[0].swept if points else ())
    for name, header in ((RESULTS_FILE, results), (RUNTIME_FILE, schema.runtime_columns())):
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


# --------------------------------------------------------------------------- files sent back by a worker

Files = dict[str, bytes]
"""A folder's files by POSIX path relative to it: what a Ray task returns instead of writing (its node
shares no filesystem with the driver)."""


def read_files(folder: Path, *, skip: Iterable[str] = ()) -> Files:
    """Every file under ``folder`` (but those whose relative path is in ``skip``), by relative path."""
    skipped = set(skip)
    found: Files = {}
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder).as_posix()
        if path.is_file() and relative not in skipped:
            found[relative] = path.read_bytes()
    return found


def write_files(folder: Path, files: Mapping[str, bytes]) -> None:
    """Write ``files`` under ``folder``, each atomically (a temporary file, then a rename), refusing a
    path that would leave the folder. Existing files of the same name are replaced."""
    for relative, data in files.items():
        parts = PurePosixPath(relative).parts
        if not parts or PurePosixPath(relative).is_absolute() or ".." in parts:
            raise RunDirError(f"a worker sent back the file {relative!r}, outside its folder; refused")
        target = folder.joinpath(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as stream:
                stream.write(data)
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


def write_run(folder: Path, files: Mapping[str, bytes]) -> None:
    """A training run a worker sent back, written in a hidden sibling folder and renamed into place at
    once: the run folder either holds the whole run or does not exist (an interrupted write leaves only
    the hidden folder, which the next write replaces)."""
    staging = folder.with_name(f".{folder.name}.incoming")
    shutil.rmtree(staging, ignore_errors=True)
    write_files(staging, files)
    if folder.exists():  # a half-written run of an older version, or one trained by hand meanwhile
        shutil.rmtree(folder)
    os.replace(staging, folder)

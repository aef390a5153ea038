"""Load what a sweep or an attack wrote into one typed :class:`ResultsSet`; reads files only.

Two layouts are understood:

- a sweep directory: ``sweep.json`` (the expected points) and ``results.csv`` (one row per finished
  point; ``run_dir`` and ``tiles`` relative to the directory);
- an attack results directory: ``results.json`` with a ``scenario`` and its ``rows`` (paths absolute
  or relative to the current directory).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from feddp_eval import schema
from feddp_eval.errors import RunDirError
from feddp_eval.io import read_csv_table, read_json
from feddp_eval.rundir.names import MANIFEST, METRICS, RESULTS
from feddp_eval.schema import setting_label
from feddp_eval.sweep import FORMAT as SWEEP_FORMAT
from feddp_eval.sweep import UTILITY_ONLY

REQUIRED_COLUMNS = ("defense", "noise", "dice", "psnr", "prior_psnr")


@dataclass(frozen=True)
class ResultsSet:
    """Every result row found, the points that were expected, and what is missing.

    Attributes:
        source: The directory read.
        kind: ``"sweep"`` (sweep.json + results.csv) or ``"attack"`` (results.json).
        rows: One dict per finished point with the results.csv columns, typed (floats, ints,
            strings, ``None`` for an empty cell), plus ``run_path`` and ``tiles_path``: the
            resolved :class:`~pathlib.Path` of ``run_dir`` and ``tiles`` (or ``None``).
        points: The expected points (sweep.json ``points``; for attack results, one per row).
        missing: One line per expected-but-missing point or file.
        meta: sweep.json without ``points``, or ``{"scenario": ...}`` for attack results.
    """

    source: Path
    kind: Literal["sweep", "attack"]
    rows: list[dict[str, Any]]
    points: list[dict[str, Any]]
    missing: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)


def row_columns() -> tuple[str, ...]:
    """What a row may hold: the sweep's results.csv columns (the swept settings too, empty when the
    sweep did not vary them) plus its runtime.csv ones (merged by key)."""
    results = schema.result_columns(schema.swept_columns())
    return (*results, *(c for c in schema.runtime_columns() if c not in results))


def point_label(point: dict[str, Any]) -> str:
    """``"dp-sgd σ=0.01 seed 1 (inverting-gradients, site -1)"`` for a point or a row."""
    seed = point.get("seed")
    where = f"site {point['target_site']}" if point.get("target_site") is not None else "site ?"
    attack = point.get("attack") or "attack ?"
    if point.get("utility_only") or point.get("stopped") == UTILITY_ONLY:
        attack = UTILITY_ONLY
    text = setting_label(str(point.get("defense")), _float_or_none(point.get("noise")))
    if seed is not None:
        text += f" seed {seed}"
    return f"{text} ({attack}, {where})"


def load_results(source: str | Path) -> ResultsSet:
    """Read a sweep directory or an attack results directory.

    Args:
        source: A sweep directory (holds ``sweep.json``) or an attack results directory (holds
            ``results.json``), or either file itself.

    Raises:
        RunDirError: The directory is neither, a file in it is malformed, or no result row exists.
    """
    root = Path(source)
    if root.is_file() and root.name in ("sweep.json", RESULTS):
        root = root.parent
    if not root.is_dir():
        raise RunDirError(
            f"{root} does not exist or is not a directory; pass a sweep or attack results folder"
        )
    if (root / "sweep.json").is_file():
        results = _load_sweep(root)
    elif (root / RESULTS).is_file():
        results = _load_attack(root)
    else:
        raise RunDirError(f"{root} holds neither a sweep (sweep.json) nor attack results (results.json)")
    if not results.rows:
        names = "; ".join(results.missing[:5]) + (" …" if len(results.missing) > 5 else "")
        raise RunDirError(
            f"{root} has no result rows yet (missing: {names or 'every point'}); finish the sweep first"
        )
    return results


# --------------------------------------------------------------------------- sweep directories


def _load_sweep(root: Path) -> ResultsSet:
    sweep = read_json(root / "sweep.json")
    if not isinstance(sweep, dict) or sweep.get("format") != SWEEP_FORMAT:
        found = sweep.get("format") if isinstance(sweep, dict) else type(sweep).__name__
        raise RunDirError(
            f"{root / 'sweep.json'} has format {found!r}, but this feddp-eval reads format {SWEEP_FORMAT}; "
            "re-run the sweep with this version"
        )
    raw_points = sweep.get("points", [])
    if not isinstance(raw_points, list) or not all(isinstance(p, dict) for p in raw_points):
        raise RunDirError(f"{root / 'sweep.json'} has no list of `points`; re-run the sweep")
    points = [_typed(dict(p), where=f"{root / 'sweep.json'}: point {i}") for i, p in enumerate(raw_points)]
    rows = _read_results_csv(root / "results.csv")
    rows += _finished_point_rows(root, points, {row.get("key") for row in rows})
    _merge_runtime(rows, root / "runtime.csv")
    _fill_training(rows, points)
    for row in rows:
        row["run_path"] = _resolve(row.get("run_dir"), root)
        row["tiles_path"] = _resolve(row.get("tiles"), root)
    found = {row.get("key") for row in rows}
    missing = [f"{point_label(p)}: not finished" for p in points if p.get("key") not in found]
    if not (root / "results.csv").exists() and not rows:
        missing.insert(0, f"{root / 'results.csv'} does not exist yet")
    missing += _missing_files(rows) + _not_run(rows)
    meta = {k: v for k, v in sweep.items() if k != "points"}
    return ResultsSet(root, "sweep", rows, points, missing, meta)


def _read_results_csv(path: Path) -> list[dict[str, Any]]:
    """Typed rows of ``results.csv``; the last row of a key wins (a resumed sweep may append again)."""
    if not path.exists():
        return []
    header, raw = read_csv_table(path)
    absent = [c for c in REQUIRED_COLUMNS if c not in header]
    if raw and absent:
        raise RunDirError(
            f"{path} lacks the column(s) {', '.join(absent)}; re-run the sweep with this version"
        )
    by_key: dict[str, dict[str, Any]] = {}
    for i, cells in enumerate(raw):
        if not cells.get("defense") or None in cells:  # None: a cell beyond the header
            raise RunDirError(
                f"{path}: line {i + 2} is not a results row (no defense, or more cells than columns); "
                "delete results.csv and rerun the sweep to rebuild it"
            )
        row = _typed({c: (cells.get(c) or None) for c in row_columns()}, where=f"{path}: line {i + 2}")
        by_key[str(row.get("key") or f"row-{i}")] = row
    return list(by_key.values())


def _finished_point_rows(root: Path, points: list[dict[str, Any]], known: set[Any]) -> list[dict[str, Any]]:
    """Rows of points that finished (``points/<key>/row.json``) after results.csv was last rebuilt."""
    rows = []
    for point in points:
        path = root / "points" / str(point.get("key")) / "row.json"
        if point.get("key") not in known and path.is_file():
            raw = read_json(path)
            if not isinstance(raw, dict) or not isinstance(raw.get("defense"), str):
                raise RunDirError(f"{path} is not a results row; delete it and rerun the sweep")
            rows.append(_typed({c: raw.get(c) for c in row_columns()}, where=str(path)))
    return rows


def _merge_runtime(rows: list[dict[str, Any]], path: Path) -> None:
    """Timings may live apart from the results (``runtime.csv``: key, train_seconds, seconds, objective)
    so that results.csv stays identical between reruns; fill the empty cells from there."""
    if not path.is_file():
        return
    _, raw = read_csv_table(path)
    timing = {
        cells.get("key"): _typed({k: v or None for k, v in cells.items()}, where=f"{path}: line {i + 2}")
        for i, cells in enumerate(raw)
    }
    for row in rows:
        for name, value in timing.get(row.get("key"), {}).items():
            if name != "key" and row.get(name) is None:
                row[name] = value


def _fill_training(rows: list[dict[str, Any]], points: list[dict[str, Any]]) -> None:
    """The training settings a sweep did not vary (no results.csv column) from its planned points, so
    every row of a sweep over batch sizes also says its local steps; sweeps that predate them stay empty."""
    planned = {point.get("key"): point for point in points}
    for row in rows:
        point = planned.get(row.get("key"), {})
        for name in schema.swept_columns():
            if row.get(name) is None:
                row[name] = point.get(name)


# --------------------------------------------------------------------------- attack results


def _load_attack(root: Path) -> ResultsSet:
    payload = read_json(root / RESULTS)
    if not isinstance(payload, dict) or not isinstance(payload.get("rows"), list):
        raise RunDirError(f"{root / 'results.json'} holds no `rows` list; re-run `feddp-eval attack`")
    scenario = payload.get("scenario") or {}
    rows = []
    for i, raw in enumerate(payload["rows"]):
        if not isinstance(raw, dict) or not isinstance(raw.get("defense"), str):
            raise RunDirError(f"{root / 'results.json'}: row {i} is not a results row; re-run the attack")
        row = _typed({c: raw.get(c) for c in row_columns()}, where=f"{root / 'results.json'}: row {i}")
        row["key"] = row["key"] or f"row-{i}"
        row["target_site"] = _first(row["target_site"], scenario.get("site_index"))
        row["target_round"] = _first(row["target_round"], scenario.get("round"))
        row["mask"] = _first(row["mask"], scenario.get("mask"))
        row["run_path"] = _resolve(row.get("run_dir"), Path.cwd(), root, root.parent)
        row["tiles_path"] = _resolve(row.get("tiles"), Path.cwd(), root, root.parent)
        _fill_from_manifest(row)
        rows.append(row)
    points = [
        {k: row.get(k) for k in ("key", "defense", "noise", "seed", "attack", "target_site")} for row in rows
    ]
    missing = _missing_files(rows) + _not_run(rows)
    return ResultsSet(root, "attack", rows, points, missing, {"scenario": scenario})


def _fill_from_manifest(row: dict[str, Any]) -> None:
    """Attack rows carry no seed or config hash; the run's manifest knows both."""
    run = row.get("run_path")
    if run is None or not (run / MANIFEST).is_file():
        return
    manifest = read_json(run / MANIFEST)
    if isinstance(manifest, dict):
        row["seed"] = _first(row.get("seed"), manifest.get("seed"))
        row["config_hash"] = _first(row.get("config_hash"), manifest.get("config_hash"))


# --------------------------------------------------------------------------- helpers


def _missing_files(rows: list[dict[str, Any]]) -> list[str]:
    """One line per row whose reconstruction tiles or training-run files are absent."""
    notes = []
    for row in rows:
        tiles, run = row.get("tiles_path"), row.get("run_path")
        if row.get("stopped") != UTILITY_ONLY:  # a utility-only seed has no tiles to show
            notes += _tiles_note(row, tiles)
        if run is None or not (run / METRICS).is_file():
            notes.append(f"{point_label(row)}: training metrics {row.get('run_dir')}/{METRICS} missing")
    return notes


def _tiles_note(row: dict[str, Any], tiles: Path | None) -> list[str]:
    """Why an attacked row's gallery cell is skipped, if it is."""
    if tiles is None:
        return [f"{point_label(row)}: no reconstruction tiles file recorded (gallery cell skipped)"]
    if not tiles.is_file():
        return [f"{point_label(row)}: tiles file {row.get('tiles')} is missing (gallery cell skipped)"]
    return []


def _not_run(rows: list[dict[str, Any]]) -> list[str]:
    """One line per row whose attack could not run: its leakage cells are empty, not the prior's."""
    from feddp_eval.schema import not_run_reason

    return [
        f"{point_label(row)}: attack not run ({reason}); its leakage cells are empty"
        for row in rows
        if (reason := not_run_reason(row)) is not None
    ]


def _resolve(value: Any, *bases: Path) -> Path | None:
    """``value`` as given when absolute, else under the first base where it exists (else the first base)."""
    if value in (None, ""):
        return None
    path = Path(str(value))
    if path.is_absolute():
        return path
    for base in bases:
        if (base / path).exists():
            return base / path
    return bases[0] / path


def _typed(row: dict[str, Any], *, where: str) -> dict[str, Any]:
    """Coerce the known numeric columns; empty strings become ``None``.

    Raises:
        RunDirError: A numeric cell holds something else (``where`` names the file and row): a
            corrupted cell is refused, never rendered as "not measured".
    """
    out = dict(row)
    floats, integers = schema.typed_columns("float"), schema.typed_columns("int")
    rounds = schema.typed_columns("round")  # a round number, or "all": every round inverted jointly
    for name, value in row.items():
        if value == "" or value is None:
            out[name] = None
        elif name in rounds and value == "all":
            out[name] = "all"
        elif name in floats or name in integers or name in rounds:
            number = _float_or_none(value)
            integer = name in integers or name in rounds
            if number is None or (integer and not number.is_integer()):
                raise RunDirError(
                    f"{where}: `{name}` is {value!r}, not a number; the results file is corrupted: "
                    "rerun the command that wrote it"
                )
            out[name] = int(number) if integer else number
    return out


def _float_or_none(value: Any) -> float | None:
    if value is None or value == "" or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _first(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)

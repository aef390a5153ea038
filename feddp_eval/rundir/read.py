"""What one training run wrote, read without torch: per-round metrics, manifest, summary, tiles (the
report reads a run through these)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from feddp_eval.errors import RunDirError
from feddp_eval.io import read_csv_table, read_json
from feddp_eval.rundir.names import MANIFEST, METRICS, SUMMARY

TILE_ARRAYS = ("true_images", "true_masks", "images", "masks", "prior_images")


@dataclass(frozen=True)
class RunFiles:
    """The readable parts of a run directory; absent files give empty values.

    Attributes:
        metrics: ``metrics.csv`` rows as dicts: ``round`` (int), ``site`` (str), ``dice``… (float).
        manifest: ``manifest.json`` (empty when absent).
        summary: ``summary.json`` (empty when absent).
    """

    path: Path | None
    metrics: list[dict[str, Any]] = field(default_factory=list)
    manifest: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)

    def sites(self) -> list[str]:
        """Site names in the order metrics.csv lists them, ``pooled`` last."""
        names = list(dict.fromkeys(str(r["site"]) for r in self.metrics))
        return [n for n in names if n != "pooled"] + (["pooled"] if "pooled" in names else [])


@lru_cache(maxsize=256)
def read_run(path: Path | None) -> RunFiles:
    """Read a run directory's metrics, manifest and summary (cached: pages share them)."""
    if path is None or not path.is_dir():
        return RunFiles(path)
    metrics = []
    if (path / METRICS).is_file():
        _, raw = read_csv_table(path / METRICS)
        metrics = [_metrics_row(cells, path / METRICS, i + 2) for i, cells in enumerate(raw)]
    manifest = _json_dict(path / MANIFEST)
    summary = _json_dict(path / SUMMARY)
    return RunFiles(path, metrics, manifest, summary)


def _metrics_row(cells: dict[str, Any], path: Path, line: int) -> dict[str, Any]:
    """One typed metrics.csv row; a malformed one is a :class:`RunDirError` naming the file and line."""
    try:
        row: dict[str, Any] = {"round": int(float(cells["round"])), "site": str(cells["site"])}
        for name in ("n_tiles", "dice", "jaccard", "accuracy"):
            row[name] = float(cells[name]) if cells.get(name) else None
    except (KeyError, TypeError, ValueError, OverflowError):
        raise RunDirError(
            f"{path}: line {line} is not a metrics row (round, site, n_tiles, dice, jaccard, accuracy); "
            "retrain the run to rewrite it"
        ) from None
    return row


def _json_dict(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    value = read_json(path)
    return value if isinstance(value, dict) else {}


def read_tiles(path: Path | None) -> dict[str, np.ndarray] | None:
    """The tiles file's float arrays, or ``None`` when absent or unreadable.

    Returns:
        ``true_images``/``images``/``prior_images``: (N, 3, H, W); ``true_masks``/``masks``: (N, 1, H, W).
    """
    if path is None or not path.is_file():
        return None
    from safetensors.numpy import load_file

    try:
        arrays = load_file(str(path))
    except Exception:  # a truncated or foreign file: skip its gallery cell, the report notes it
        return None
    return {k: np.asarray(v, dtype=np.float32) for k, v in arrays.items() if k in TILE_ARRAYS}

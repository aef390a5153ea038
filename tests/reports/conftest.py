"""Synthetic-but-valid results directories with known numbers, written as the sweep and attack write them."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import save_file

import defenses as _defense_plugins  # noqa: F401  # files each defense's card (colour, order, sentence) reports read
from reports.results import row_columns

# ------------------------------------------------------------------ reports fixtures (tests/reports only)

# The columns the brief first described: everything in one file (the loader accepts both layouts).
COLUMNS = row_columns()
SITES = ("site-0", "site-1")
ROUNDS = 3


def known_numbers(defense: str, noise: float, seed: int) -> dict[str, Any]:
    """The metrics of one point, as closed-form numbers the tests recompute.

    dp-sgd leaks only at σ = 0.01 (PSNR gap 10/(1+100σ) dB: 5.0, 0.91, 0.099); local-dp leaks at every
    noise (gap ≥ 2 dB); the undefended run leaks by 8 + seed dB.
    """
    prior = 14.0 + 0.25 * seed
    if defense == "none":
        gap, dice, epsilon = 8.0 + seed, 0.80 + 0.02 * seed, None
    elif defense == "dp-sgd":
        gap, dice, epsilon = 10.0 / (1 + 100 * noise), 0.80 + 0.02 * seed - 0.05 * noise, 2.0 / noise
    else:
        gap, dice, epsilon = 2.0 + 1.0 / (1 + noise), 0.78 + 0.01 * seed - 0.1 * noise, 5.0 / noise
    return {
        "dice": dice,
        "jaccard": dice / (2 - dice),
        "accuracy": 0.9 + 0.01 * seed - 0.01 * noise,
        "psnr": prior + gap,
        "ssim": 0.2 + 0.05 * gap,
        "lpips": 0.6 - 0.03 * gap,
        "prior_psnr": prior,
        "prior_ssim": 0.2,
        "prior_lpips": 0.6,
        "mask_prior_psnr": prior + 0.5,
        "mask_prior_ssim": 0.25,
        "mask_prior_lpips": 0.55,
        "epsilon": epsilon,
        "delta": None if defense == "none" else 1e-5,
        "granularity": None if defense == "none" else ("sample" if defense == "dp-sgd" else "client"),
        "accountant": None if defense == "none" else "rdp",
    }


@dataclass
class SyntheticSweep:
    """A written sweep directory and the rows it holds (typed, before CSV)."""

    root: Path
    points: list[dict[str, Any]]
    rows: list[dict[str, Any]] = field(default_factory=list)

    def rows_of(self, defense: str, noise: float) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["defense"] == defense and r["noise"] == noise]

    def rewrite_results(self, keep: Callable[[dict[str, Any]], bool]) -> None:
        """Rewrite results.csv with only the rows ``keep`` accepts (an interrupted sweep)."""
        self.rows = [r for r in self.rows if keep(r)]
        _write_results(self.root / "results.csv", self.rows)


def _cell(value: Any) -> str:
    return "" if value is None else repr(value) if isinstance(value, float) else str(value)


def _write_results(path: Path, rows: list[dict[str, Any]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(COLUMNS)
        for row in rows:
            writer.writerow([_cell(row.get(c)) for c in COLUMNS])


def write_tiles(path: Path, seed: int, noise: float, n: int = 3, size: int = 16) -> None:
    rng = np.random.default_rng(seed)
    truth = rng.random((n, 3, size, size), dtype=np.float32)
    masks = (rng.random((n, 1, size, size)) > 0.6).astype(np.float32)
    blur = min(1.0, noise * 5)
    recon = ((1 - blur) * truth + blur * rng.random(truth.shape)).astype(np.float32)
    prior = np.broadcast_to(truth.mean(axis=(0, 2, 3), keepdims=True), truth.shape).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(
        {
            "true_images": truth,
            "true_masks": masks,
            "images": recon,
            "masks": masks,
            "prior_images": prior.copy(),
        },
        str(path),
    )


def write_run(run: Path, *, seed: int, dice: float, config_hash: str) -> None:
    """metrics.csv (rounds 1..3, two sites + pooled), manifest.json and summary.json of one run."""
    run.mkdir(parents=True, exist_ok=True)
    lines = ["round,site,n_tiles,dice,jaccard,accuracy"]
    for rnd in range(1, ROUNDS + 1):
        for i, site in enumerate((*SITES, "pooled")):
            value = dice * rnd / ROUNDS - 0.01 * i
            lines.append(f"{rnd},{site},4,{value!r},{value / 2!r},0.9")
    (run / "metrics.csv").write_text("\n".join(lines) + "\n")
    manifest = {
        "feddp_eval": "0.1.0",
        "status": "complete",
        "config_hash": config_hash,
        "seed": seed,
        "device": "cpu",
        "started": "2026-11-26T23:00:00+00:00",
        "finished": "2026-11-26T23:01:00+00:00",
        "seconds": 60.0,
        "command": ["feddp-eval", "sweep", "--noise", "0,0.01,0.1,1", "--out", "sweep out"],
        "python": "3.11.9",
        "platform": "Linux-x86_64",
        "packages": {"torch": "2.14.1", "numpy": "2.4.0"},
        "git_revision": "cabcb4b",
    }
    (run / "manifest.json").write_text(json.dumps(manifest))
    sites = {s: {"dice": dice, "jaccard": dice / 2, "accuracy": 0.9} for s in SITES}
    (run / "summary.json").write_text(json.dumps({"sites": sites, "rounds": ROUNDS, "privacy": {}}))


def build_sweep(
    root: Path,
    *,
    defenses: tuple[str, ...] = ("dp-sgd", "local-dp"),
    noises: tuple[float, ...] = (0.01, 0.1, 1.0),
    seeds: tuple[int, ...] = (0, 1),
) -> SyntheticSweep:
    """Write sweep.json, results.csv, tiles and run files for none + defenses × noises × seeds."""
    settings = [("none", 0.0)] + [(d, n) for d in defenses for n in noises]
    sweep = SyntheticSweep(root, [])
    for index, ((defense, noise), seed) in enumerate((s, seed) for s in settings for seed in seeds):
        key = f"{index:04d}abcdef01"
        config_hash = f"{index:02d}" * 32
        run_dir = f"runs/{key}"
        point = {
            "key": key,
            "config_hash": config_hash,
            "defense": defense,
            "noise": noise,
            "seed": seed,
            "attack": "inverting-gradients",
            "target_site": -1,
            "run_dir": run_dir,
        }
        sweep.points.append(point)
        numbers = known_numbers(defense, noise, seed)
        tiles = f"{run_dir}/attacks/tiles.safetensors"
        row = {
            **point,
            **numbers,
            "target_site": 1,
            "target_round": 1,
            "mask": "known",
            "iterations": 200,
            "stopped": "budget",
            "objective": 0.125,
            "seconds": 1.5,
            "train_seconds": 3.0,
            "tiles": tiles,
        }
        sweep.rows.append(row)
        write_tiles(root / tiles, seed, noise)
        write_run(root / run_dir, seed=seed, dice=numbers["dice"], config_hash=config_hash)
    (root / "sweep.json").write_text(json.dumps(_sweep_manifest(defenses, noises, seeds, sweep.points)))
    _write_results(root / "results.csv", sweep.rows)
    return sweep


def _sweep_manifest(
    defenses: tuple[str, ...], noises: tuple[float, ...], seeds: tuple[int, ...], points: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "format": 1,
        "feddp_eval": "0.1.0",
        "created": "2026-11-26T23:00:00+00:00",
        "command": ["feddp-eval", "sweep", "--noise", "0,0.01,0.1,1", "--out", "sweep out"],
        "grid": {
            "defenses": list(defenses),
            "noises": [0.0, *noises],
            "attacks": ["inverting-gradients"],
            "seeds": list(seeds),
            "targets": [-1],
        },
        "base_config": {"seed": 0, "data": {"sites": 2}},
        "points": points,
    }


@pytest.fixture
def synthetic_sweep(tmp_path: Path) -> SyntheticSweep:
    """none + {dp-sgd, local-dp} × σ {0.01, 0.1, 1} × seeds {0, 1}: 14 finished points."""
    return build_sweep(tmp_path / "sweep")


@pytest.fixture
def sweep_factory(tmp_path: Path) -> Callable[..., SyntheticSweep]:
    """Build a sweep with other defenses/noises/seeds: ``sweep_factory(noises=(0.003, 0.01, 0.03))``."""
    return lambda **kw: build_sweep(tmp_path / "custom-sweep", **kw)


@pytest.fixture
def attack_results(tmp_path: Path) -> Path:
    """A ``feddp-eval attack`` results directory: none and dp-sgd σ=1.1, absolute paths."""
    out = tmp_path / "runs"
    rows = []
    for index, (defense, noise) in enumerate((("none", 0.0), ("dp-sgd", 1.1))):
        run = out / f"run{index}"
        numbers = known_numbers(defense, noise, 0)
        write_run(run, seed=7, dice=numbers["dice"], config_hash=f"{index}f" * 32)
        write_tiles(run / "tiles.safetensors", 0, noise)
        rows.append(
            {
                "defense": defense,
                "noise": noise,
                **numbers,
                "attack": "inverting-gradients",
                "iterations": 100,
                "stopped": "budget",
                "objective": 0.5,
                "lpips_missing": None,
                "seconds": 2.0,
                "run_dir": str(run),
                "tiles": str(run / "tiles.safetensors"),
            }
        )
        for name in ("mask_prior_psnr", "mask_prior_ssim", "mask_prior_lpips"):
            rows[-1][name] = None  # mask unknown: no mask-painted prior, mask Dice scored
        rows[-1]["prior_mask_dice"] = 0.5
        rows[-1]["mask_dice"] = 0.9 - 0.2 * noise
    scenario = {
        "site": "site-1",
        "site_index": 1,
        "round": 2,
        "tiles": 3,
        "local_steps": 2,
        "batch_size": 4,
        "mask": "unknown",
        "threat": "honest-but-curious server",
    }
    results = out / "attack-0123456789ab"
    results.mkdir(parents=True)
    (results / "results.json").write_text(json.dumps({"scenario": scenario, "rows": rows}))
    return results


@dataclass(frozen=True)
class BuiltReport:
    """A report built once per module from the standard synthetic sweep."""

    sweep: SyntheticSweep
    result: Any  # reports.ReportResult
    text: str  # every page's extracted text, whitespace collapsed to single spaces
    page_texts: list[str]


def pdf_text(path: Path) -> list[str]:
    from pypdf import PdfReader

    return [" ".join((page.extract_text() or "").split()) for page in PdfReader(path).pages]


@pytest.fixture(scope="module")
def built_report(tmp_path_factory: pytest.TempPathFactory) -> BuiltReport:
    from reports import build_report

    root = tmp_path_factory.mktemp("built")
    sweep = build_sweep(root / "sweep")
    result = build_report(sweep.root, root / "out" / "report.pdf")
    pages = pdf_text(result.pdf)
    return BuiltReport(sweep, result, " ".join(pages), pages)


@pytest.fixture
def extract_pdf_text() -> Callable[[Path], list[str]]:
    """Each page's text with whitespace collapsed (pypdf)."""
    return pdf_text

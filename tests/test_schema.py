"""The results schema: one definition per column, read by every output.

The last test adds a column the way a contributor would (one schema entry; the row carries its
value) and follows it into results.csv, the gate and the report's tables.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from feddp_eval import schema
from feddp_eval.config import ExperimentConfig, validate
from feddp_eval.gate import evaluate, load_baseline
from feddp_eval.io import read_csv, write_json
from feddp_eval.metrics.privacy import PRIVACY_METRICS
from feddp_eval.metrics.utility import UTILITY_METRICS
from feddp_eval.schema import mark_not_run
from feddp_eval.sweep import SweepSpec, plan, point_dir, write_tables
from reports.summary import leakage_columns, summarize, table


def test_names_are_unique_and_every_gate_metric_has_a_direction() -> None:
    names = [c.name for c in schema.COLUMNS]
    assert len(names) == len(set(names))
    for name in schema.gate_metrics():
        c = schema.column(name)
        assert (
            c.kind in ("utility", "comparison", "leakage", "privacy")
            and c.tolerance is not None
            and c.tolerance >= 0
        )
    assert {c.name for c in schema.columns(kind=["utility"])} == set(UTILITY_METRICS)
    assert set(PRIVACY_METRICS) <= set(schema.attack_metrics())


def test_directions_are_read_from_the_attackers_side_for_leakage() -> None:
    assert schema.column("psnr").higher_is_better and schema.column("psnr").arrow == " ↑"
    assert not schema.column("lpips").higher_is_better and schema.column("lpips").arrow == " ↓"
    assert schema.column("dice").higher_is_better and schema.column("dice").arrow == ""


def test_formatting_and_the_one_epsilon_formatter() -> None:
    assert schema.column("psnr").format(21.234) == "21.2"
    assert schema.column("margin_psnr").format(0.26) == "+0.3"
    assert schema.column("ssim").format(None) == schema.MISSING
    assert schema.format_epsilon(None) == schema.format_epsilon(float("inf")) == "∞"
    assert schema.format_epsilon(0.004567) == "4.57e-03"
    assert schema.privacy_text(2.5, 1e-5, "sample-level", "rdp") == "ε = 2.5, δ = 1e-05, sample-level, rdp"
    assert schema.privacy_text(None, None, "none") == "ε = ∞, no formal guarantee"
    assert (
        schema.setting_label("none", 0.0) == "none"
        and schema.setting_label("dp-sgd", 0.01) == "dp-sgd σ=0.01"
    )


def test_results_csv_keeps_its_published_column_order() -> None:
    header = schema.result_columns()
    assert header[:9] == (
        "key",
        "config_hash",
        "seed",
        "defense",
        "noise",
        "epsilon",
        "delta",
        "granularity",
        "accountant",
    )
    assert header[-2:] == ("run_dir", "tiles") and "seconds" not in header
    assert schema.runtime_columns() == ("key", "train_seconds", "seconds")


def test_an_attack_that_did_not_run_blanks_every_leakage_column() -> None:
    row = {name: 1.0 for name in schema.attack_metrics()} | {"dice": 0.8, "stopped": "converged"}
    blank = mark_not_run(row, "non-finite update")
    assert all(blank[name] is None for name in schema.attack_metrics()) and blank["dice"] == 0.8


def _row(key: str, defense: str, noise: float, value: float) -> dict[str, object]:
    return {
        "key": key,
        "defense": defense,
        "noise": noise,
        "attack": "inverting-gradients",
        "dice": 0.8,
        "psnr": 20.0,
        "prior_psnr": 18.0,
        "margin_psnr": 2.0,
        "ssim": 0.5,
        "epsilon": None if defense == "none" else 3.0,
        "leak_score": value,
    }


def test_a_new_schema_entry_reaches_results_csv_the_gate_and_the_report(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    added = schema.Column(
        "leak_score",
        "leakage",
        "leak score",
        direction="leaks-more",
        decimals=2,
        tolerance=0.1,
        summary=True,
        table="leakage",
    )
    monkeypatch.setattr(schema, "COLUMNS", (*schema.COLUMNS, added))
    base = validate(ExperimentConfig())
    points = plan(base, dataclasses.replace(SweepSpec(), noises=(0.0, 1.0), attacks=("inverting-gradients",)))
    rows = [
        _row(p.key, p.config.defense.name, p.config.defense.noise, 0.25 + i) for i, p in enumerate(points)
    ]
    for point, row in zip(points, rows, strict=True):
        write_json(point_dir(tmp_path, point.key) / "row.json", row)
    write_tables(tmp_path, points)
    written = read_csv(tmp_path / "results.csv")
    assert [float(r["leak_score"]) for r in written] == [0.25, 1.25]

    baseline = tmp_path / "baseline.toml"
    baseline.write_text("scenario = {}\n[arms.dp-sgd]\nleak_score_max = 1.0\n", encoding="utf-8")
    (verdict,) = evaluate(load_baseline(baseline).bounds, rows)
    assert verdict.value == 1.25 and not verdict.passed  # 1.25 > 1.0 + the schema's tolerance 0.1

    import defenses  # noqa: F401  # the summary orders the defenses as each declares, as the report's does

    headers, cells = table(summarize(rows), leakage_columns())
    column = headers.index("leak score")
    assert [c[column] for c in cells] == ["0.25", "1.25"]

"""`sweep.attack_seeds`: utility from every seed, attacks from the first few."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import pytest
from typer.testing import CliRunner

from feddp_eval.cli import app
from feddp_eval.config import ExperimentConfig, to_toml
from feddp_eval.errors import ConfigError
from feddp_eval.sweep import SweepSpec, group_by_run, plan, point_key, validate_spec
from reports.results import load_results
from reports.summary import summarize

runner = CliRunner()
ATTACKS = ("inverting-gradients", "dlg", "imprint")


def _valid(spec: SweepSpec) -> SweepSpec:
    return validate_spec(spec, defenses=("none", "dp-sgd"), attacks=ATTACKS, noise_defenses=("dp-sgd",))


def test_later_seeds_get_one_utility_point_under_the_first_honest_attack(
    tiny_config: ExperimentConfig,
) -> None:
    spec = _valid(
        SweepSpec(noises=(1.0,), attacks=("imprint", "inverting-gradients"), seeds=3, attack_seeds=1)
    )
    points = plan(tiny_config, spec)
    # 2 settings × (seed 3: both attacks + seeds 4, 5: one utility point each)
    assert len(points) == 2 * (2 + 2)
    attacked = [p for p in points if not p.utility_only]
    utility = [p for p in points if p.utility_only]
    assert {p.config.seed for p in attacked} == {3} and {p.config.seed for p in utility} == {4, 5}
    assert {p.config.attack.name for p in utility} == {"inverting-gradients"}  # honest, not imprint
    assert all(len(g) == 1 for g in group_by_run(utility))  # each trains its own honest run
    # A utility point's key differs from the attacked point of the same config: raising
    # attack_seeds later attacks that seed instead of reusing its utility-only row.
    everything = plan(tiny_config, dataclasses.replace(spec, attack_seeds=None))
    same = next(p for p in everything if p.config == utility[0].config)
    assert same.key != utility[0].key and same.run_dir == utility[0].run_dir
    assert utility[0].key == point_key(utility[0].config, utility_only=True)


def test_attack_seeds_must_be_within_seeds() -> None:
    for bad in (0, 4):
        with pytest.raises(ConfigError, match="attack_seeds"):
            _valid(SweepSpec(seeds=3, attack_seeds=bad))


def test_utility_rows_count_for_dice_and_not_for_leakage(
    tmp_path: Path, tiny_config: ExperimentConfig
) -> None:
    one_round = dataclasses.replace(
        tiny_config,
        train=dataclasses.replace(tiny_config.train, rounds=1),
        attack=dataclasses.replace(tiny_config.attack, iterations=3),
    )
    config = tmp_path / "sweep.toml"
    config.write_text(to_toml(one_round))
    args = ["sweep", "-c", str(config), "--noise", "1.1", "--seeds", "2", "--attack-seeds", "1", "--quiet"]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "sw")])
    assert result.exit_code == 0, result.output
    with open(tmp_path / "sw" / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 4
    utility = [r for r in rows if r["stopped"] == "utility only"]
    assert [int(r["seed"]) for r in utility] == [one_round.seed + 1] * 2
    for row in utility:
        assert row["attack"] == "inverting-gradients" and row["threat"] == "honest"
        assert row["psnr"] == row["prior_psnr"] == row["margin_psnr"] == ""  # nothing of an attack's
        assert float(row["dice"]) > 0 and row["target_site"] == rows[0]["target_site"]
    typed = load_results(tmp_path / "sw").rows  # as the report reads them
    defended = next(s for s in summarize(typed) if s.defense != "none")
    assert defended.stats["dice"].n == 2 and defended.stats["psnr"].n == 1
    assert defended.dice_change is not None and defended.dice_change.seeds == 2  # paired over both seeds


def test_workers_take_the_longest_groups_first(tiny_config: ExperimentConfig) -> None:
    import defenses  # noqa: F401  # the order reads each defense's declared granularity, as run_sweep's does
    from feddp_eval.workflows.sweep import longest_first

    spec = _valid(
        SweepSpec(noises=(1.0,), attacks=("inverting-gradients", "imprint"), seeds=2, attack_seeds=1)
    )
    groups = group_by_run(plan(tiny_config, spec))
    ordered = longest_first(groups)
    assert sorted(map(id, ordered)) == sorted(map(id, groups))  # the same work, reordered
    described = [(g[0].config.defense.name, g[0].config.attack.name, g[0].utility_only) for g in ordered]
    # inversions first (the clean update's first: its inversion runs longest before its plateau), then
    # DP-SGD's training runs, then the rest in plan order
    assert described == [
        ("none", "inverting-gradients", False),
        ("dp-sgd", "inverting-gradients", False),
        ("dp-sgd", "imprint", False),
        ("dp-sgd", "inverting-gradients", True),
        ("none", "imprint", False),
        ("none", "inverting-gradients", True),
    ]


def test_the_report_reads_utility_rows_without_calling_them_missing(
    tmp_path: Path, tiny_config: ExperimentConfig
) -> None:
    config = tmp_path / "sweep.toml"
    config.write_text(
        to_toml(
            dataclasses.replace(tiny_config, attack=dataclasses.replace(tiny_config.attack, iterations=3))
        )
    )
    args = ["sweep", "-c", str(config), "--noise", "1.1", "--seeds", "2", "--attack-seeds", "1", "--quiet"]
    assert runner.invoke(app, [*args, "--out", str(tmp_path / "sw")]).exit_code == 0
    report = runner.invoke(app, ["report", str(tmp_path / "sw"), "-o", str(tmp_path / "r.pdf")])
    assert report.exit_code == 0, report.output
    assert (
        "missing" not in report.output
        and "seed 4 (utility only" in (tmp_path / "r.md").read_text()
        and (tmp_path / "r.pdf").stat().st_size > 10_000
    )

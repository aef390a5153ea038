"""`sweep.batch_sizes` and `sweep.local_steps`: training settings as sweep axes, and their columns."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from feddp_eval import schema
from feddp_eval.cli import app
from feddp_eval.config import ExperimentConfig, to_toml
from feddp_eval.errors import ConfigError
from feddp_eval.sweep import (
    TRAINING_AXES,
    SweepSpec,
    group_by_run,
    load_sweep_config,
    plan,
    swept_axes,
    validate_spec,
)

runner = CliRunner()


def _valid(spec: SweepSpec) -> SweepSpec:
    return validate_spec(
        spec, defenses=("none", "dp-sgd"), attacks=("inverting-gradients",), noise_defenses=("dp-sgd",)
    )


def test_batch_sizes_and_local_steps_multiply_the_training_runs(tiny_config: ExperimentConfig) -> None:
    spec = _valid(SweepSpec(noises=(1.1,), batch_sizes=(1, 4, 1), local_steps=(1, 3), targets=(-1, 0)))
    assert spec.batch_sizes == (1, 4) and spec.local_steps == (1, 3)  # de-duplicated, order kept
    points = plan(tiny_config, spec)
    # 2 settings × 1 seed × (2 batch sizes × 2 step counts) × 1 attack × 2 targets
    assert len(points) == 2 * 4 * 2 and len({p.key for p in points}) == len(points)
    first = [
        (p.config.train.batch_size, p.config.train.local_steps, p.config.attack.target_site) for p in points
    ]
    assert first[:8] == [
        (1, 1, -1),
        (1, 1, 0),
        (1, 3, -1),
        (1, 3, 0),
        (4, 1, -1),
        (4, 1, 0),
        (4, 3, -1),
        (4, 3, 0),
    ]
    assert first[8:] == first[:8] and {p.config.defense.name for p in points[8:]} == {"dp-sgd"}
    groups = group_by_run(points)
    assert len(groups) == 2 * 4 and all(len(g) == 2 for g in groups)  # targets share a run; axes do not
    # The axes change nothing else of the config.
    other = dataclasses.replace(points[6].config.train, batch_size=4, local_steps=3)
    assert points[6].config.train == other and other.rounds == tiny_config.train.rounds
    assert points[6].swept == ("batch_size", "local_steps")
    assert "batch size 4, local steps 3" in points[6].label
    # The training run's own label (the pool's and the Ray workers' progress) names the axes too.
    seed = points[6].config.seed
    assert points[6].run_label == f"none seed {seed}, batch size 4, local steps 3"
    assert points[6].describe()["batch_size"] == 4 and points[6].describe()["local_steps"] == 3


def test_a_grid_without_the_axes_trains_the_base_config(tiny_config: ExperimentConfig) -> None:
    spec = _valid(SweepSpec(noises=(1.1,)))
    plain = plan(tiny_config, spec)
    assert {p.config.train for p in plain} == {tiny_config.train}
    assert all(p.swept == () for p in plain) and "batch size" not in plain[0].label
    # Naming the base's own values is the same grid: the same keys, so nothing is recomputed.
    named = dataclasses.replace(
        spec, batch_sizes=(tiny_config.train.batch_size,), local_steps=(tiny_config.train.local_steps,)
    )
    assert [p.key for p in plan(tiny_config, named)] == [p.key for p in plain]
    # One value is a setting, not an axis: it trains there, and no column is added for it.
    one = plan(tiny_config, dataclasses.replace(spec, batch_sizes=(2,)))
    assert {p.config.train.batch_size for p in one} == {2} and swept_axes(
        dataclasses.replace(spec, batch_sizes=(2,))
    ) == ()


def test_the_swept_columns_join_results_csv_only_when_varied() -> None:
    assert tuple(TRAINING_AXES) == schema.swept_columns() == ("batch_size", "local_steps")
    plain = schema.result_columns()
    assert not set(schema.swept_columns()) & set(plain)
    with_batch = schema.result_columns(["batch_size"])
    assert [c for c in with_batch if c not in plain] == ["batch_size"]
    assert with_batch.index("batch_size") == with_batch.index("target_round") + 1


def test_bad_batch_sizes_and_local_steps_are_listed_together() -> None:
    with pytest.raises(ConfigError) as raised:
        _valid(SweepSpec(batch_sizes=(0, 4), local_steps=(-1, 2)))
    text = str(raised.value)
    assert "`sweep.batch_sizes` must be in 1..1000000, but got [0]" in text
    assert "`sweep.local_steps` must be in 0..10000000" in text and "[-1]" in text


def test_the_sweep_table_takes_the_axes(tmp_path: Path, tiny_config: ExperimentConfig) -> None:
    path = tmp_path / "exp.toml"
    path.write_text(to_toml(tiny_config) + "\n[sweep]\nbatch_sizes = [1, 4]\nlocal_steps = [1, 3]\n")
    _, spec = load_sweep_config(path)
    assert spec == SweepSpec(batch_sizes=(1, 4), local_steps=(1, 3))
    path.write_text(to_toml(tiny_config) + "\n[sweep]\nbatch_sizes = 4\n")
    with pytest.raises(ConfigError, match=r"`sweep\.batch_sizes`"):
        load_sweep_config(path)


def test_the_cli_parses_batch_size_and_local_steps(
    tmp_path: Path, tiny_toml: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import feddp_eval.pipeline
    from feddp_eval.workflows.sweep import SweepResult

    seen: dict[str, Any] = {}

    def fake_sweep(config: ExperimentConfig, spec: SweepSpec, **kw: Any) -> SweepResult:
        seen.update(config=config, spec=spec)
        return SweepResult(Path(kw["out"]), [], [], 0)

    monkeypatch.setattr(feddp_eval.pipeline, "run_sweep", fake_sweep)
    args = ["sweep", "-c", str(tiny_toml), "--out", str(tmp_path / "sw"), "--json"]
    result = runner.invoke(app, [*args, "--batch-size", "1,4", "--local-steps", "1,3"])
    assert result.exit_code == 0, result.output
    assert (seen["spec"].batch_sizes, seen["spec"].local_steps) == ((1, 4), (1, 3))
    assert seen["config"].train.batch_size == 4  # the base stays the config's; the grid varies it

    bad = runner.invoke(app, [*args, "--batch-size", "1,four"])
    assert bad.exit_code == 2 and "--batch-size takes a comma-separated list of ints" in bad.output


def test_a_sweep_over_batch_sizes_rows_carry_them(tmp_path: Path, tiny_config: ExperimentConfig) -> None:
    tiny = dataclasses.replace(
        tiny_config,
        train=dataclasses.replace(tiny_config.train, rounds=1),
        attack=dataclasses.replace(tiny_config.attack, iterations=3),
    )
    config = tmp_path / "sweep.toml"
    config.write_text(to_toml(tiny))
    out = tmp_path / "sw"
    args = ["sweep", "-c", str(config), "--noise", "0", "--batch-size", "1,3", "--quiet", "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    with open(out / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == schema.result_columns(["batch_size"])  # local_steps was not varied
    assert [(r["defense"], r["batch_size"]) for r in rows] == [("none", "1"), ("none", "3")]
    assert rows[0]["run_dir"] != rows[1]["run_dir"]  # each batch size trained its own run
    for row in rows:
        train = json.loads((out / "points" / row["key"] / "row.json").read_text())
        assert train["local_steps"] == tiny.train.local_steps  # every row holds both settings
        run = (out / row["run_dir"] / "config.toml").read_text()
        assert f"batch_size = {row['batch_size']}" in run
    report = runner.invoke(app, ["report", str(out), "-o", str(tmp_path / "r.pdf"), "--json"])
    assert report.exit_code == 0, report.output
    assert json.loads(report.stdout)["pages"].count("Honest-server frontier") == 1


def test_the_sweep_table_keeps_batch_sizes_apart() -> None:
    from types import SimpleNamespace

    from rich.console import Console

    from feddp_eval.cli.render import sweep_tables

    def row(defense: str, batch: int, dice: float) -> dict[str, Any]:
        noise = 0.0 if defense == "none" else 1.1
        setting = {"attack": "inverting-gradients", "threat": "honest", "defense": defense, "noise": noise}
        return setting | {"batch_size": batch, "local_steps": 0, "dice": dice, "psnr": 20.0, "seed": 3}

    rows = [row("none", 1, 0.8), row("none", 4, 0.5), row("dp-sgd", 1, 0.4), row("dp-sgd", 4, 0.5)]
    (table,) = sweep_tables(SimpleNamespace(rows=rows))
    assert [c.header for c in table.columns][:4] == ["defense", "σ", "batch", "ε"]  # local steps not varied
    console = Console(width=200, record=True)
    console.print(table)
    lines = [line.split("│") for line in console.export_text().splitlines() if "│" in line]
    cells = {(c[1].strip(), c[3].strip()): (c[5].strip(), c[-2].strip()) for c in lines[1:]}
    # Dice and ΔDice per batch size, each against the undefended run of its own batch size
    assert cells[("dp-sgd", "1")][0] == "0.400" and cells[("dp-sgd", "1")][1].startswith("-50.0%")
    assert cells[("dp-sgd", "4")][0] == "0.500" and cells[("dp-sgd", "4")][1].startswith("+0.0%")

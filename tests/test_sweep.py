"""`feddp-eval sweep`: the grid, resuming after kill -9, parallel workers, and bad input."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from feddp_eval.cli import app
from feddp_eval.config import ExperimentConfig, to_toml
from feddp_eval.errors import ConfigError
from feddp_eval.schema import result_columns
from feddp_eval.sweep import (
    SweepSpec,
    group_by_run,
    load_sweep_config,
    plan,
    validate_spec,
)

runner = CliRunner()
DEFENSES = ("none", "dp-sgd", "local-dp", "central-dp", "prune")
ATTACKS = ("inverting-gradients", "dlg")
NOISY = ("dp-sgd", "local-dp", "central-dp")


def _valid(spec: SweepSpec) -> SweepSpec:
    return validate_spec(spec, defenses=DEFENSES, attacks=ATTACKS, noise_defenses=NOISY)


def test_plan_covers_the_grid_with_the_reference_first(tiny_config: ExperimentConfig) -> None:
    spec = _valid(
        SweepSpec(noises=(1.1, 0.01, 0.01), defenses=("dp-sgd", "local-dp"), seeds=2, targets=(-1, 0))
    )
    assert spec.noises == (0.0, 0.01, 1.1)  # sorted, de-duplicated, undefended reference added
    points = plan(tiny_config, spec)
    # (none + 2 defenses × 2 noises) settings × 2 seeds × 1 attack × 2 targets
    assert len(points) == 5 * 2 * 2
    assert len({p.key for p in points}) == len(points)
    assert [(p.config.defense.name, p.config.defense.noise) for p in points[:4]] == [("none", 0.0)] * 4
    assert [p.config.seed for p in points[:4]] == [3, 3, 4, 4]
    assert [p.config.attack.target_site for p in points[:4]] == [-1, 0, -1, 0]
    groups = group_by_run(points)
    assert len(groups) == 10 and all(len(g) == 2 for g in groups)  # targets share a training run
    assert all(len({p.run_dir for p in g}) == 1 for g in groups)


def test_point_keys_change_with_attack_settings_but_runs_are_shared(tiny_config: ExperimentConfig) -> None:
    spec = _valid(SweepSpec(noises=(0.0,)))
    longer = dataclasses.replace(tiny_config, attack=dataclasses.replace(tiny_config.attack, iterations=7))
    (a,), (b,) = plan(tiny_config, spec), plan(longer, spec)
    assert a.key != b.key and a.run_dir == b.run_dir


def test_bad_grid_lists_every_problem() -> None:
    with pytest.raises(ConfigError) as raised:
        _valid(SweepSpec(noises=(-1.0,), defenses=("prune", "foo"), attacks=("bar",), seeds=0, targets=(-2,)))
    text = str(raised.value)
    for piece in ("-1.0", "'prune'", "no noise multiplier", "'foo'", "'bar'", "`sweep.seeds`", "-2"):
        assert piece in text


def test_sweep_table_in_toml(tmp_path: Path, tiny_config: ExperimentConfig) -> None:
    path = tmp_path / "exp.toml"
    path.write_text(
        to_toml(tiny_config) + '\n[sweep]\nnoises = [0.1, 2]\ndefenses = ["local-dp"]\nseeds = 2\n'
    )
    config, spec = load_sweep_config(path)
    assert config == tiny_config
    assert spec == SweepSpec(noises=(0.1, 2.0), defenses=("local-dp",), seeds=2)
    path.write_text(to_toml(tiny_config) + "\n[sweep]\nnoise = [0.1]\nseeds = 'two'\n")
    with pytest.raises(ConfigError) as raised:
        load_sweep_config(path)
    assert "`sweep.noise`" in str(raised.value) and "`sweep.seeds`" in str(raised.value)


def test_the_executor_is_a_sweep_setting(tmp_path: Path, tiny_config: ExperimentConfig) -> None:
    path = tmp_path / "exp.toml"
    path.write_text(to_toml(tiny_config) + '\n[sweep]\nexecutor = "ray"\naddress = "auto"\n')
    _, spec = load_sweep_config(path)
    assert (spec.executor, spec.address) == ("ray", "auto")
    assert _valid(spec).executor == "ray"
    path.write_text(to_toml(tiny_config) + '\n[sweep]\nexecutor = "slurm"\n')
    with pytest.raises(ConfigError, match=r"`sweep\.executor`"):
        load_sweep_config(path)
    with pytest.raises(ConfigError, match=r"needs `sweep\.executor"):
        _valid(SweepSpec(address="10.0.0.1:6379"))  # the process pool has no cluster to join


# --------------------------------------------------------------------------- end to end

SWEEP_ARGS = ["--noise", "0.01,1.1", "--iterations", "40"]


def _cli(config: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "feddp_eval.cli", "sweep", "-c", str(config), "--out", str(out), *extra]


def _env() -> dict[str, str]:
    # One thread everywhere: float reductions then run in one order in every process.
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _cells(path: Path) -> list[tuple[str, str, str]]:
    """(key, column, value) of every cell: a failing comparison then names the cells that differ."""
    with open(path, newline="") as handle:
        return [(row["key"], k, v) for row in csv.DictReader(handle) for k, v in row.items()]


@pytest.fixture
def sweep_toml(tmp_path: Path, tiny_config: ExperimentConfig) -> Path:
    one_round = dataclasses.replace(tiny_config, train=dataclasses.replace(tiny_config.train, rounds=1))
    path = tmp_path / "sweep.toml"
    path.write_text(to_toml(one_round))
    return path


def test_killed_sweep_resumes_to_the_same_results_and_jobs_do_not_change_them(
    tmp_path: Path, sweep_toml: Path
) -> None:
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    done = subprocess.run(
        [*_cli(sweep_toml, whole, *SWEEP_ARGS, "--quiet")], env=_env(), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr

    finished_before = _kill_after_the_first_point(sweep_toml, killed)
    assert 1 <= finished_before < 3, "the kill must land mid-sweep for this test to mean anything"

    resumed = subprocess.run(
        [*_cli(sweep_toml, killed, *SWEEP_ARGS, "--json")],
        env=_env(),
        capture_output=True,
        text=True,
    )
    assert resumed.returncode == 0, resumed.stderr
    report = json.loads(resumed.stdout)
    assert report["computed"] == 3 - finished_before and report["missing"] == []
    assert _cells(killed / "results.csv") == _cells(whole / "results.csv")
    assert (killed / "results.csv").read_bytes() == (whole / "results.csv").read_bytes()

    again = subprocess.run(
        [*_cli(sweep_toml, killed, *SWEEP_ARGS, "--json")], env=_env(), capture_output=True, text=True
    )
    assert json.loads(again.stdout)["computed"] == 0  # nothing is ever recomputed
    assert (killed / "results.csv").read_bytes() == (whole / "results.csv").read_bytes()

    parallel = subprocess.run(
        [*_cli(sweep_toml, tmp_path / "parallel", *SWEEP_ARGS, "--jobs", "2", "--quiet")],
        env=_env(),
        capture_output=True,
        text=True,
    )
    assert parallel.returncode == 0, parallel.stderr
    assert _cells(tmp_path / "parallel" / "results.csv") == _cells(whole / "results.csv")

    _check_the_table(whole)


def _kill_after_the_first_point(sweep_toml: Path, out: Path) -> int:
    """Start the sweep, SIGKILL it once a point has finished (no clean-up: a power cut); points done."""
    process = subprocess.Popen(
        [*_cli(sweep_toml, out, *SWEEP_ARGS, "--quiet")],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while not list((out / "points").glob("*/row.json")) and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    return len(list((out / "points").glob("*/row.json")))


def _check_the_table(whole: Path) -> None:
    """The finished sweep's results.csv: the schema's header, the grid's rows, files that exist."""
    with open(whole / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == result_columns()
    assert [(r["defense"], float(r["noise"])) for r in rows] == [
        ("none", 0.0),
        ("dp-sgd", 0.01),
        ("dp-sgd", 1.1),
    ]
    assert rows[0]["epsilon"] == "" and float(rows[1]["epsilon"]) > float(rows[2]["epsilon"]) > 0
    for row in rows:
        assert (whole / row["tiles"]).is_file() and (whole / row["run_dir"] / "metrics.csv").is_file()
        assert int(row["target_site"]) == 1  # the smallest of the tiny sites (3 tiles)
    manifest = json.loads((whole / "sweep.json").read_text())
    assert [p["key"] for p in manifest["points"]] == [r["key"] for r in rows]
    assert manifest["grid"]["noises"] == [0.0, 0.01, 1.1]


def _training_sweep(config: Path, out: Path, jobs: str) -> subprocess.Popen[str]:
    """A long sweep in a process group of its own (as in a terminal; its workers share the group and
    nothing else does), returned once a training run has started (in a worker, with --jobs 2)."""
    long = ["--noise", "0.01,1.1", "--iterations", "5000", "--jobs", jobs, "--quiet"]
    process = subprocess.Popen(
        _cli(config, out, *long),
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while not list((out / "runs").glob("*/config.toml")) and time.monotonic() < deadline:
        time.sleep(0.01)
    return process


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_ctrl_c_stops_every_process_and_says_how_to_resume(
    tmp_path: Path, sweep_toml: Path, jobs: str
) -> None:
    process = _training_sweep(sweep_toml, tmp_path / "sweep", jobs)
    os.killpg(process.pid, signal.SIGINT)  # Ctrl-C reaches the whole foreground group
    started = time.monotonic()
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130
    assert time.monotonic() - started < 20, "workers must stop with the sweep, not finish their points"
    assert "interrupted" in stderr and "run the same command again to resume" in stderr


def test_sweep_refuses_a_folder_that_is_not_a_sweep(tmp_path: Path, sweep_toml: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    result = runner.invoke(app, ["sweep", "-c", str(sweep_toml), "--out", str(tmp_path), "--quiet"])
    assert result.exit_code == 2
    assert "holds no sweep" in result.output
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_a_sweep_killed_while_writing_sweep_json_is_taken_as_unstarted(tmp_path: Path) -> None:
    from feddp_eval.errors import RunDirError
    from feddp_eval.sweep.folder import check_sweep_dir

    (tmp_path / ".sweep.json.q8z1.tmp").write_text("{")
    check_sweep_dir(tmp_path)  # only a killed write's leftover: nothing of anyone's to protect
    (tmp_path / ".notes.tmp.txt").write_text("mine")
    with pytest.raises(RunDirError, match="holds no sweep"):
        check_sweep_dir(tmp_path)


def test_sweep_flags_are_checked(tmp_path: Path, sweep_toml: Path) -> None:
    result = runner.invoke(
        app, ["sweep", "-c", str(sweep_toml), "--noise", "0.1,abc", "--out", str(tmp_path)]
    )
    assert result.exit_code == 2 and "--noise" in result.output
    result = runner.invoke(
        app, ["sweep", "-c", str(sweep_toml), "--defense", "prune", "--out", str(tmp_path)]
    )
    assert result.exit_code == 2 and "no noise multiplier" in result.output
    targets = ["sweep", "-c", str(sweep_toml), "--targets", "0,5", "--out", str(tmp_path)]
    result = runner.invoke(app, targets)
    assert result.exit_code == 2 and "beyond the 2 synthetic sites" in result.output
    assert not (tmp_path / "runs").exists()  # refused before anything was trained


def test_the_readme_example_sweep_config_loads() -> None:
    config, spec = load_sweep_config(Path(__file__).parent.parent / "docs" / "sweep-example.toml")
    assert config.attack.init == "uniform" and config.train.rounds == 3
    assert spec.defenses == ("dp-sgd", "local-dp") and spec.noises == (0.001, 0.01, 0.1, 1.1)


def test_sweep_help_names_the_toml_table_and_the_report() -> None:
    result = runner.invoke(app, ["sweep", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "[sweep] table" in result.output and "feddp-eval report" in result.output


def test_imprint_points_train_their_own_runs_and_get_their_own_table(
    tmp_path: Path, tiny_config: ExperimentConfig
) -> None:
    spec = validate_spec(
        SweepSpec(noises=(0.0, 1.1), attacks=("inverting-gradients", "imprint")),
        defenses=DEFENSES,
        attacks=(*ATTACKS, "imprint"),
        noise_defenses=NOISY,
    )
    points = plan(tiny_config, spec)
    honest = {p.run_dir for p in points if p.config.attack.name == "inverting-gradients"}
    malicious = {p.run_dir for p in points if p.config.attack.name == "imprint"}
    assert len(honest) == len(malicious) == 2 and not honest & malicious
    assert len(group_by_run(points)) == 4

    config = tmp_path / "sweep.toml"
    config.write_text(
        to_toml(
            dataclasses.replace(tiny_config, attack=dataclasses.replace(tiny_config.attack, iterations=3))
        )
    )
    args = ["sweep", "-c", str(config), "--attack", "inverting-gradients,imprint", "--noise", "1.1"]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "sw")], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "inverting-gradients (honest server)" in result.output
    assert "imprint (malicious server)" in result.output
    assert result.output.index("(honest server)") < result.output.index("(malicious server)")
    with open(tmp_path / "sw" / "results.csv") as handle:
        rows = list(csv.DictReader(handle))
    threats = {(r["attack"], r["defense"]): r["threat"] for r in rows}
    assert (
        threats[("imprint", "none")] == "malicious" and threats[("inverting-gradients", "none")] == "honest"
    )
    imprint_none = next(r for r in rows if r["attack"] == "imprint" and r["defense"] == "none")
    assert int(imprint_none["tiles_exact"]) == int(imprint_none["tiles_read"]) >= 2


def test_a_multi_round_sweep_records_the_rounds_and_reports(
    tmp_path: Path, tiny_config: ExperimentConfig
) -> None:
    config = tmp_path / "sweep.toml"
    attack = dataclasses.replace(tiny_config.attack, iterations=3)
    config.write_text(to_toml(dataclasses.replace(tiny_config, attack=attack)))
    args = ["sweep", "-c", str(config), "--noise", "1.1", "--target-round", "all", "--quiet"]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "sw")])
    assert result.exit_code == 0, result.output
    with open(tmp_path / "sw" / "results.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert {r["target_round"] for r in rows} == {"all"}
    assert {r["rounds_used"] for r in rows} == {str(tiny_config.train.rounds)}
    report = runner.invoke(app, ["report", str(tmp_path / "sw"), "-o", str(tmp_path / "r.pdf")])
    assert report.exit_code == 0, report.output
    assert (tmp_path / "r.pdf").stat().st_size > 10_000


def test_stage_seconds_count_a_shared_training_run_once() -> None:
    from feddp_eval.sweep import stage_seconds

    rows = [
        {"run_dir": "runs/a", "train_seconds": 10.0, "seconds": 2.0},
        {"run_dir": "runs/a", "train_seconds": 10.0, "seconds": 3.0},  # a second attack on run a
        {"run_dir": "runs/b", "train_seconds": 4.5, "seconds": 1.0},
        {"run_dir": "runs/c", "train_seconds": None, "seconds": None},  # timing not recorded
    ]
    assert stage_seconds(rows) == {"training": 14.5, "attacks": 6.0, "total": 20.5}


def test_sigterm_to_the_sweep_alone_stops_its_workers_too(tmp_path: Path, sweep_toml: Path) -> None:
    process = _training_sweep(sweep_toml, tmp_path / "sweep", "2")
    process.terminate()  # SIGTERM to the sweep process only, as `kill PID` sends it
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130 and "run the same command again to resume" in stderr
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            os.killpg(process.pid, 0)  # is any process of the sweep's group still alive?
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.killpg(process.pid, signal.SIGKILL)
    pytest.fail("a worker outlived the sweep it belonged to")


def test_points_re_keyed_by_a_changed_attack_setting_are_counted_and_training_is_reused(
    tmp_path: Path, tiny_config: ExperimentConfig
) -> None:
    """A sweep folder from before a setting changed its attacks' keys (as `attack.plateau` did in
    issue #23): the old points stay, unread and counted; the attacks recompute on the same runs."""
    from feddp_eval.pipeline import run_sweep

    def config(plateau: float) -> ExperimentConfig:
        attack = dataclasses.replace(tiny_config.attack, iterations=10, plateau=plateau)
        train = dataclasses.replace(tiny_config.train, rounds=1)
        return dataclasses.replace(tiny_config, train=train, attack=attack)

    out, spec = tmp_path / "sweep", SweepSpec(noises=(0.0,))
    first = run_sweep(config(0.0), spec, out=out, command=["test"])
    assert (first.computed, first.unplanned) == (1, 0)
    again = run_sweep(config(0.0), spec, out=out, command=["test"])
    assert (again.computed, again.unplanned) == (0, 0)
    moved = run_sweep(config(0.01), spec, out=out, command=["test"])
    assert (moved.computed, moved.unplanned) == (1, 1)
    assert moved.rows[0]["run_dir"] == first.rows[0]["run_dir"]  # the same training run, reused
    assert len(list((out / "runs").iterdir())) == 1
    assert moved.to_json()["unplanned"] == 1

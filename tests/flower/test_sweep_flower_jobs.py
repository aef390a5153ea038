"""``feddp-eval sweep --engine flower --jobs 2``: two worker processes, each running Flower's simulation
(a Ray of its own) at once, give the rows the local engine gives. The local sweep runs here, in-process
with ``--jobs 1`` and as many torch threads as each of the two workers has (``tests/test_sweep.py``
shows that jobs do not change a sweep's rows), which saves it two worker processes' start."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from typer.testing import CliRunner

from feddp_eval.cli import app
from feddp_eval.config import ExperimentConfig, to_toml, with_overrides
from feddp_eval.sweep.executors import task_threads

ROOT = Path(__file__).parents[2]
# Cells that name the run (its config hash holds the engine) rather than measure it.
NAMING = {"key", "config_hash", "run_dir", "tiles"}


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return [{k: v for k, v in row.items() if k not in NAMING} for row in csv.DictReader(handle)]


def test_a_flower_sweep_in_two_processes_gives_the_local_engines_rows(
    tmp_path: Path, tiny_config: ExperimentConfig
) -> None:
    config = tmp_path / "sweep.toml"
    config.write_text(to_toml(with_overrides(tiny_config, {"train.rounds": 1})))
    env = {
        **os.environ,
        "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "OMP_NUM_THREADS": "1",
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    outs = {engine: tmp_path / engine for engine in ("flower", "local")}
    args = ["sweep", "-c", str(config), "--noise", "0.01", "--iterations", "10", "--json"]
    command = [sys.executable, "-m", "feddp_eval.cli", *args, "--engine", "flower", "--jobs", "2"]
    done = subprocess.run(
        [*command, "--out", str(outs["flower"])], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout)["computed"] == 2
    torch.set_num_threads(task_threads(2))  # the conftest puts the test's own count back afterwards
    ran = CliRunner().invoke(app, [*args, "--engine", "local", "--jobs", "1", "--out", str(outs["local"])])
    assert ran.exit_code == 0, ran.output[-3000:]
    assert json.loads(ran.stdout)["computed"] == 2
    flower, local = _rows(outs["flower"] / "results.csv"), _rows(outs["local"] / "results.csv")
    assert [r["defense"] for r in flower] == ["none", "dp-sgd"]
    assert flower == local  # every measured cell, to the last printed digit

"""Acceptance: the same seed and config give the same run on the ``local`` and ``flower`` engines.

Tolerance: none. Clients send float64 local weights, so the server's ``received − sent`` is the
released float32 update bit for bit, and the server then aggregates exactly as ``local`` does (same
sampling, same order, same seeded noise): captures, metrics, ε and the final model are
byte-identical. Only the wall-clock column of clients.csv differs.
"""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

import pytest

from feddp_eval.config import (
    DefenseConfig,
    ExperimentConfig,
    load_config,
    validate,
    with_overrides,
)
from feddp_eval.federated.capture import list_captures
from feddp_eval.io import read_json
from feddp_eval.pipeline import run_attack, run_train
from feddp_eval.rundir.names import run_key

RUN_FILES = ("metrics.csv", "privacy.json", "model.safetensors", "sites.json")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """dp-sgd on the clients and central-dp at the server, 2 rounds, trained by both engines."""
    import importlib.util

    from feddp_eval.config import from_dict

    # The suite's tiny config (16 px tiles, 2 sites), read without putting tests/ on sys.path.
    spec = importlib.util.spec_from_file_location(
        "_suite_conftest", Path(__file__).parents[1] / "conftest.py"
    )
    assert spec is not None and spec.loader is not None
    suite = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(suite)
    tiny = suite.TINY

    base = with_overrides(validate(from_dict(ExperimentConfig, tiny)), {"defense.name": "dp-sgd"})
    server = DefenseConfig(name="central-dp", noise=0.6, clip=0.05)
    local = validate(replace(base, defense=replace(base.defense, noise=0.5, server=server)))
    out = tmp_path_factory.mktemp("engines")
    dirs = {}
    for engine in ("local", "flower"):
        config = with_overrides(local, {"train.engine": engine})
        dirs[engine] = run_train(config, run_dir=out / run_key(config)).run_dir
    return dirs


def test_captures_ground_truth_and_results_are_byte_identical(runs: dict[str, Path]) -> None:
    files = sorted(
        p.relative_to(runs["local"]) for p in (runs["local"] / "captures").rglob("*") if p.is_file()
    )
    files += sorted(p.relative_to(runs["local"]) for p in (runs["local"] / "ground_truth").glob("*"))
    assert len(files) == 2 * (1 + 2 * 2) + 2  # per round: global + (update, metadata) per site
    for name in [*files, *RUN_FILES]:
        assert (runs["flower"] / name).read_bytes() == (runs["local"] / name).read_bytes(), name


def test_same_batches_epsilon_and_dice(runs: dict[str, Path]) -> None:
    local, flower = (list_captures(runs[e]) for e in ("local", "flower"))
    assert [c.metadata["batches"] for c in flower] == [c.metadata["batches"] for c in local]
    privacy = read_json(runs["flower"] / "privacy.json")
    assert privacy == read_json(runs["local"] / "privacy.json")
    assert privacy["epsilon"] > 0 and privacy["server"]["epsilon"] > 0
    # The accountant lived with each client across both rounds: 2 rounds of local steps, not 1.
    steps = {r["client_id"]: r["steps"] for r in privacy["per_client"]}
    assert steps == {0: 2 * 2, 1: 2 * 1}
    summaries = [read_json(runs[e] / "summary.json") for e in ("local", "flower")]
    assert summaries[0]["dice"] == summaries[1]["dice"]


def test_clients_csv_differs_only_in_wall_time(runs: dict[str, Path]) -> None:
    def rows(engine: str) -> list[dict[str, str]]:
        with open(runs[engine] / "clients.csv", newline="") as f:
            return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(f)]

    assert rows("flower") == rows("local") and len(rows("local")) == 4


def test_the_attack_reads_the_flower_run_as_it_reads_the_local_one(runs: dict[str, Path]) -> None:
    rows = {}
    for engine, run_dir in runs.items():
        trained = load_config(run_dir / "config.toml")  # the attack reuses the finished run in run_dir
        attack = with_overrides(trained, {"attack.iterations": 3, "attack.restarts": 1})
        result = run_attack(attack, out=run_dir.parent, reference=False)
        cells = result.rows[0].as_dict().items()
        rows[engine] = {k: v for k, v in cells if k not in ("run_dir", "tiles", "seconds")}
    assert rows["flower"] == rows["local"]

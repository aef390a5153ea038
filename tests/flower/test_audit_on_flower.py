"""The one-run audit plants its canaries through the client side of the defense, so a Flower run
audits exactly as a local one: the same canaries, the same guesses, the same ε̂."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from feddp_eval.audit import audit_run
from feddp_eval.config import ExperimentConfig, from_dict, validate, with_overrides
from feddp_eval.io import read_json
from feddp_eval.pipeline import run_train
from feddp_eval.rundir.names import run_key


def _tiny() -> ExperimentConfig:
    spec = importlib.util.spec_from_file_location(
        "_suite_conftest", Path(__file__).parents[1] / "conftest.py"
    )
    assert spec is not None and spec.loader is not None
    suite = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(suite)
    return validate(from_dict(ExperimentConfig, suite.TINY))


def test_an_audited_flower_run_audits_as_the_local_one(tmp_path: Path) -> None:
    base = with_overrides(
        _tiny(),
        {"defense.name": "dp-sgd", "defense.noise": 1.0, "train.audit": True, "train.audit_canaries": 50},
    )
    runs = {}
    for engine in ("local", "flower"):
        config = with_overrides(base, {"train.engine": engine})
        runs[engine] = run_train(config, run_dir=tmp_path / run_key(config)).run_dir
    local, flower = (read_json(runs[e] / "privacy.json") for e in ("local", "flower"))
    assert flower == local and local["audit"]["guesses"] > 0
    assert audit_run(runs["flower"]).to_dict() == audit_run(runs["local"]).to_dict()
    assert (runs["flower"] / "captures" / "round-0001" / "site-0.safetensors").read_bytes() == (
        runs["local"] / "captures" / "round-0001" / "site-0.safetensors"
    ).read_bytes()

"""Every registered defense, one tiny round through the real pipeline: the contract a new plugin must meet.

The list of defenses is computed from the registry, so a new plugin is tested the moment it exists.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from defenses import DEFENSES, build_defense
from feddp_eval.config import ExperimentConfig, with_overrides
from feddp_eval.federated.capture import list_captures
from feddp_eval.io import read_json
from feddp_eval.pipeline import run_train

GRANULARITIES = {"sample-level", "client-level", "none"}


def _formal(name: str) -> bool:
    """Whether the defense claims a formal (ε, δ) guarantee, hence takes a noise multiplier."""
    return DEFENSES.get(name).granularity in ("sample-level", "client-level")


def _settings(name: str) -> dict[str, Any]:
    return {"defense.name": name, "defense.noise": 0.5 if _formal(name) else 0.0, "train.rounds": 1}


def test_the_registry_holds_the_documented_defenses() -> None:
    assert {"none", "dp-sgd", "local-dp", "central-dp", "prune"} <= set(DEFENSES.names())


@pytest.mark.parametrize("name", DEFENSES.names())
def test_one_tiny_round_meets_the_contract(name: str, tmp_path: Path, tiny_config: ExperimentConfig) -> None:
    config = with_overrides(tiny_config, _settings(name))
    result = run_train(config, run_dir=tmp_path / "run")
    run = result.run_dir

    # Captured updates: one per client, every parameter, right shapes, all finite.
    shapes = {k: v.shape for k, v in load_file(str(run / "model.safetensors")).items()}
    captures = list_captures(run)
    assert [(c.round, c.site_index) for c in captures] == [(1, 0), (1, 1)]
    for capture in captures:
        update = capture.load_update()
        assert {k: v.shape for k, v in update.items()} == shapes
        assert all(bool(torch.isfinite(v).all()) for v in update.values())
        assert capture.metadata["defense"]["name"] == name
        json.dumps(capture.metadata["defense"])  # describe() is JSON-serialisable

    # Privacy record: labelled, δ beside every ε.
    privacy = read_json(run / "privacy.json")
    assert privacy["per_client"], "a defense must report one record per protected unit"
    for record in privacy["per_client"]:
        assert isinstance(record["mechanism"], str) and record["mechanism"]
        assert record["granularity"] in GRANULARITIES
        if record["epsilon"] is not None:
            assert record["delta"] is not None and 0 < record["delta"] < 1
            assert record["accountant"] in ("rdp", "prv")
            assert record["granularity"] != "none"
    if _formal(name):
        assert privacy["granularity"] == DEFENSES.get(name).granularity
        assert privacy["epsilon"] is not None and math.isfinite(privacy["epsilon"]) and privacy["epsilon"] > 0
        assert privacy["delta"] == config.defense.delta
    else:
        assert privacy["epsilon"] is None and privacy["granularity"] == "none"
    assert result.summary.epsilon == privacy["epsilon"] and result.summary.delta == privacy["delta"]

    defense = build_defense(config.defense)
    assert type(defense).__name__ in repr(defense)
    assert defense.name == name and DEFENSES.get(name).summary


@pytest.mark.parametrize("name", [n for n in DEFENSES.names() if not _formal(n)])
def test_defenses_without_an_accountant_refuse_noise(name: str, tiny_config: ExperimentConfig) -> None:
    from feddp_eval.errors import ConfigError

    with pytest.raises(ConfigError, match="noise"):
        build_defense(with_overrides(tiny_config, {"defense.name": name, "defense.noise": 1.0}).defense)


@pytest.mark.parametrize("name", DEFENSES.names())
def test_each_side_is_built_apart_and_its_state_is_json(name: str, tiny_config: ExperimentConfig) -> None:
    from feddp_eval.federated.aggregation import FedAvg
    from feddp_eval.federated.hooks import ClientPlan

    config = with_overrides(tiny_config, _settings(name))
    defense = build_defense(config.defense)
    assert DEFENSES.get(name).side in ("client", "server")
    plans = [ClientPlan(i, 6, 4, 2, 1, 1.0) for i in range(2)]
    defense.setup(torch.nn.Linear(1, 1), plans)
    client, aggregator = defense.client(plans[1]), defense.wrap(FedAvg())
    assert client.plan == plans[1]
    for side in (client, aggregator):
        state = json.loads(json.dumps(side.state_dict()))
        side.load_state_dict(state)
        assert json.loads(json.dumps(side.state_dict())) == state


def test_the_sweepable_defenses_are_the_gaussian_mechanisms_of_the_registry() -> None:
    from defenses import noise_defenses

    assert noise_defenses() == ["central-dp", "dp-sgd", "local-dp"]

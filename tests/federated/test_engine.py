"""The engine seam: ``[train] engine`` picks the loop, and ``local`` gives the numbers it always gave."""

from __future__ import annotations

from pathlib import Path

import pytest

from feddp_eval.config import ExperimentConfig, load_config, with_overrides
from feddp_eval.errors import ConfigError
from feddp_eval.federated.capture import list_captures
from feddp_eval.federated.engine import ENGINES, LocalEngine, build_engine
from feddp_eval.io import read_json
from feddp_eval.pipeline import run_train

# Measured on the loop before the engine seam existed (commit 9d3796d), tiny config of conftest.py:
# final pooled Dice, ε, and the L1 norm of every captured update (round 1 site 0, 1, round 2 site 0, 1).
GOLDEN = {
    "none": (0.16296296296296298, None, [0.716721889, 0.276805666, 0.766856702, 0.246163113]),
    "dp-sgd": (0.17118402282453637, 22.904836657992906, [3.954448572, 2.444047508, 3.814572693, 2.330533877]),
    "central-dp": (
        0.16332378223495703,
        16.51287594668254,
        [0.716721889, 0.276805666, 0.741534859, 0.271910273],
    ),
}
SETTINGS = {
    "none": {},
    "dp-sgd": {"defense.name": "dp-sgd", "defense.noise": 0.5},
    "central-dp": {"defense.name": "central-dp", "defense.noise": 0.5, "defense.clip": 0.01},
}


def test_local_is_the_default_engine_and_registered() -> None:
    assert ExperimentConfig().train.engine == "local"
    assert {"local", "flower"} <= set(ENGINES.names())
    assert isinstance(build_engine("local"), LocalEngine)


def test_an_unknown_engine_is_a_config_error_naming_the_known_ones(
    tmp_path: Path, tiny_config: ExperimentConfig
) -> None:
    with pytest.raises(ConfigError, match=r"train\.engine.*'local'.*'bogus'"):
        with_overrides(tiny_config, {"train.engine": "bogus"})
    path = tmp_path / "bogus.toml"
    path.write_text('[train]\nengine = "bogus"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "'local'" in str(info.value) and "'bogus'" in str(info.value)
    with pytest.raises(ConfigError, match="unknown engine 'bogus'; known engines: flower, local"):
        build_engine("bogus")


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_the_local_engine_reproduces_the_numbers_of_the_loop_before_the_seam(
    name: str, tmp_path: Path, tiny_config: ExperimentConfig
) -> None:
    dice, epsilon, norms = GOLDEN[name]
    result = run_train(with_overrides(tiny_config, SETTINGS[name]), run_dir=tmp_path / "run")
    got = [
        float(sum(v.double().abs().sum() for v in c.load_update().values()))
        for c in list_captures(result.run_dir)
    ]
    assert got == pytest.approx(norms, rel=1e-6)
    assert result.summary.dice == pytest.approx(dice, rel=1e-6)
    privacy = read_json(result.run_dir / "privacy.json")
    assert privacy["epsilon"] == (None if epsilon is None else pytest.approx(epsilon, rel=1e-9))
    assert "server" not in privacy  # one side only: the summary keeps its earlier form


def test_the_new_settings_are_left_out_of_the_hash_at_their_defaults(tiny_config: ExperimentConfig) -> None:
    from feddp_eval.config import config_hash, from_dict, to_dict, validate

    raw = to_dict(tiny_config)
    assert raw["train"]["engine"] == "local" and raw["defense"]["server"] is None
    # The hash this config had before `engine` and `defense.server` existed: earlier run
    # directories keep their hash, so they are still found and reused.
    config = validate(from_dict(ExperimentConfig, {"seed": 3, "train": {"rounds": 2}}))
    assert config_hash(config) == "3bab9c0b19e2e66fb1abc56f4d3f6c8a88ab06d9be6513cf9edada4b4f513de7"

"""Configuration: TOML loading, every problem reported at once, overrides, round trip, hash."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from feddp_eval.config import (
    UNSET,
    DataConfig,
    DefenseConfig,
    ExperimentConfig,
    ModelConfig,
    TrainConfig,
    config_hash,
    from_dict,
    given,
    load_config,
    to_toml,
    validate,
    with_overrides,
)
from feddp_eval.errors import ConfigError, FeddpError


def _write(tmp_path: Path, text: str, name: str = "exp.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_are_valid() -> None:
    config = ExperimentConfig()
    assert validate(config) is config
    assert config.data.train_tiles == (48, 32, 24, 4)
    assert config.defense.target_epsilon is None


def test_load_config_reads_nested_sections(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
seed = 7
device = "cpu"

[data]
sites = 2
train_tiles = [5, 3]
tile_size = 32

[model]
depth = 1
width = 4

[train]
rounds = 3
optimizer = "sgd"
lr = 1          # an integer where a float is expected is accepted

[defense]
name = "dp-sgd"
noise = 1.1
target_epsilon = 8
""",
    )
    config = load_config(path)
    assert config == ExperimentConfig(
        seed=7,
        device="cpu",
        data=DataConfig(sites=2, train_tiles=(5, 3), tile_size=32),
        model=ModelConfig(depth=1, width=4),
        train=TrainConfig(rounds=3, optimizer="sgd", lr=1.0),
        defense=DefenseConfig(name="dp-sgd", noise=1.1, target_epsilon=8.0),
    )
    assert isinstance(config.data.train_tiles, tuple)
    assert isinstance(config.train.lr, float)
    assert isinstance(config.defense.target_epsilon, float)


def test_every_unknown_key_and_bad_type_is_reported_at_once(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
seed = "zero"
colour = "blue"

[train]
rounds = 2
epochs = 3
""",
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    problems = info.value.problems
    assert len(problems) == 3, problems
    assert any("unknown key `colour`" in p for p in problems)
    assert any("unknown key `train.epochs`" in p for p in problems)
    assert any("`seed` must be an integer" in p and "'zero'" in p for p in problems)
    # The unknown-key message lists what is allowed there.
    [epochs] = [p for p in problems if "train.epochs" in p]
    assert "local_epochs" in epochs and "rounds" in epochs
    assert info.value.source == str(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, FeddpError) and info.value.exit_code == 2


def test_bad_literal_names_the_choices(tmp_path: Path) -> None:
    path = _write(tmp_path, '[train]\noptimizer = "rmsprop"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    [problem] = info.value.problems
    assert "`train.optimizer`" in problem
    assert "'sgd'" in problem and "'adam'" in problem and "'rmsprop'" in problem


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ({"seed": True}, "`seed` must be an integer"),  # a bool is not an int
        ({"train": {"lr": "fast"}}, "`train.lr` must be a number"),
        ({"train": 3}, "`train` must be a table"),
        (
            {"data": {"train_tiles": [4, "x"]}},
            "`data.train_tiles` must be an integer or a list of an integer",
        ),
        ({"defense": {"target_epsilon": "big"}}, "`defense.target_epsilon` must be a number"),
        ({"capture": 1}, "`capture` must be true or false"),
    ],
)
def test_bad_types_are_reported(raw: dict, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        from_dict(ExperimentConfig, raw)
    assert any(needle in p for p in info.value.problems), info.value.problems


def test_validate_reports_every_range_problem_together() -> None:
    config = ExperimentConfig(train=TrainConfig(rounds=0, lr=-1.0))
    with pytest.raises(ConfigError) as info:
        validate(config)
    problems = info.value.problems
    assert len(problems) == 2, problems
    assert "`train.rounds` must be >= 1, but got 0" in problems
    assert "`train.lr` must be in (0, 10] (SGD on this loss diverges long before), but got -1.0" in problems
    assert "2 problems" in str(info.value)


def test_validate_checks_cross_field_constraints() -> None:
    config = ExperimentConfig(
        data=DataConfig(sites=3, train_tiles=(4, 4), tile_size=18), model=ModelConfig(depth=2)
    )
    with pytest.raises(ConfigError) as info:
        validate(config)
    problems = info.value.problems
    assert len(problems) == 2, problems
    assert any("lists 2 sites but `data.sites` is 3" in p for p in problems)
    assert any("divisible by 2**model.depth (4)" in p for p in problems)


def test_load_config_runs_validation(tmp_path: Path) -> None:
    path = _write(tmp_path, "[train]\nrounds = 0\nlr = -1\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert len(info.value.problems) == 2
    assert info.value.source == str(path)


def test_with_overrides_applies_dotted_keys_and_skips_unset() -> None:
    original = ExperimentConfig()
    before = to_toml(original)
    updated = with_overrides(
        original,
        {
            "train.rounds": 3,
            "defense.noise": 1.1,
            "seed": 7,
            "train.lr": UNSET,
            "data.train_tiles": (1, 2, 3, 4),
        },
    )
    assert updated == dataclasses.replace(
        original,
        seed=7,
        data=dataclasses.replace(original.data, train_tiles=(1, 2, 3, 4)),
        train=dataclasses.replace(original.train, rounds=3),
        defense=dataclasses.replace(original.defense, noise=1.1),
    )
    assert updated.train.lr == original.train.lr
    # The original is untouched.
    assert original == ExperimentConfig()
    assert to_toml(original) == before


def test_with_overrides_with_nothing_is_identity() -> None:
    config = ExperimentConfig(seed=5)
    assert with_overrides(config, {}) == config
    assert with_overrides(config, {"seed": UNSET, "train.rounds": UNSET}) == config
    assert with_overrides(config, given({"seed": None, "train.rounds": None})) == config


def test_none_is_a_value_unset_is_not() -> None:
    """``None`` clears an optional field (the calibration target); on a required one it is an error."""
    calibrated = with_overrides(ExperimentConfig(), {"defense.name": "dp-sgd", "defense.target_epsilon": 3.0})
    assert with_overrides(calibrated, {"defense.target_epsilon": None}).defense.target_epsilon is None
    assert with_overrides(calibrated, {"defense.target_epsilon": UNSET}).defense.target_epsilon == 3.0
    with pytest.raises(ConfigError, match=r"train\.lr"):
        with_overrides(ExperimentConfig(), {"train.lr": None})


@pytest.mark.parametrize("key", ["train.nope", "nope", "nope.rounds", "seed.x", "train.rounds.x"])
def test_with_overrides_rejects_unknown_keys(key: str) -> None:
    with pytest.raises(ConfigError) as info:
        with_overrides(ExperimentConfig(), {key: 1})
    assert key in str(info.value)


def test_with_overrides_validates_types_and_ranges() -> None:
    with pytest.raises(ConfigError, match=r"`train\.rounds` must be >= 1"):
        with_overrides(ExperimentConfig(), {"train.rounds": 0})
    with pytest.raises(ConfigError, match=r"`train\.optimizer` must be one of"):
        with_overrides(ExperimentConfig(), {"train.optimizer": "rmsprop"})


@pytest.mark.parametrize(
    "config",
    [
        ExperimentConfig(),
        ExperimentConfig(
            seed=11,
            device="cuda",
            capture=False,
            data=DataConfig(source="/tmp/tiles dir", sites=2, train_tiles=(3, 1), tile_mode="resize"),
            train=TrainConfig(lr=1e-4, momentum=0.0, optimizer="sgd", local_steps=5),
            defense=DefenseConfig(name="dp-sgd", noise=0.5, delta=1e-7, target_epsilon=3.5, accountant="prv"),
        ),
        ExperimentConfig(data=DataConfig(train_tiles=9)),
    ],
)
def test_to_toml_round_trips(tmp_path: Path, config: ExperimentConfig) -> None:
    text = to_toml(config)
    if config.defense.target_epsilon is None:
        assert "target_epsilon" not in text
    loaded = load_config(_write(tmp_path, text))
    assert loaded == config
    assert type(loaded.data.train_tiles) is type(config.data.train_tiles)
    assert to_toml(loaded) == text


def test_config_hash_is_stable_and_tracks_numbers_not_device() -> None:
    base = ExperimentConfig()
    digest = config_hash(base)
    assert len(digest) == 64 and int(digest, 16) >= 0
    assert config_hash(ExperimentConfig()) == digest
    assert config_hash(with_overrides(base, {})) == digest

    assert config_hash(with_overrides(base, {"train.lr": 0.02})) != digest
    assert config_hash(with_overrides(base, {"defense.noise": 1e-6})) != digest
    assert config_hash(with_overrides(base, {"seed": 1})) != digest
    assert config_hash(with_overrides(base, {"data.train_tiles": (48, 32, 24, 5)})) != digest

    for device in ("cpu", "cuda", "auto"):
        assert config_hash(dataclasses.replace(base, device=device)) == digest


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "exp.toml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value)
    assert "does not exist" in str(info.value)


def test_invalid_toml_names_the_path(tmp_path: Path) -> None:
    path = _write(tmp_path, "[train\nrounds = = 3\n", name="broken.toml")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value)
    assert "not valid TOML" in str(info.value)

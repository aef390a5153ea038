"""Each setting is declared once (issue #26 item 3): its range, ceiling and hash rule in the field's
metadata, its help in its section's docstring, and the validation pass, the command-line options and
the configuration reference all read them from there."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from feddp_eval.cli import app
from feddp_eval.cli.options import SettingOption, setting_overrides
from feddp_eval.cli.sweep_check import sweep
from feddp_eval.cli.train_attack import attack, train
from feddp_eval.config import ExperimentConfig, Range, setting_help, validate
from feddp_eval.config.fields import attribute_help, ceiling, section_of, settings
from feddp_eval.errors import ConfigError


@pytest.mark.parametrize(
    ("bounds", "text"),
    [
        (Range(ge=1), ">= 1"),
        (Range(gt=0), "> 0"),
        (Range(gt=0, lt=1), "in (0, 1)"),
        (Range(gt=0, le=10), "in (0, 10]"),
        (Range(ge=0, lt=1), "in [0, 1)"),
        (Range(ge=1, le=50), "in [1, 50]"),
        (Range(le=3), "<= 3"),
    ],
)
def test_a_range_writes_itself_as_the_error_says_it(bounds: Range, text: str) -> None:
    assert bounds.text() == text


@given(value=st.floats(allow_nan=True, allow_infinity=True), low=st.floats(-10, 10), high=st.floats(-10, 10))
def test_a_range_holds_exactly_what_its_comparisons_say(value: float, low: float, high: float) -> None:
    assert Range(ge=low, lt=high).holds(value) == (low <= value < high)
    assert Range(gt=low, le=high).holds(value) == (low < value <= high)


def test_the_error_names_the_setting_its_range_its_note_and_the_value() -> None:
    config = ExperimentConfig()
    bad = dataclasses.replace(config, train=dataclasses.replace(config.train, lr=20.0, local_steps=-1))
    with pytest.raises(ConfigError) as raised:
        validate(bad)
    assert "`train.local_steps` must be >= 0 (0 = use epochs), but got -1" in str(raised.value)
    assert "`train.lr` must be in (0, 10] (SGD on this loss diverges long before), but got 20.0" in str(
        raised.value
    )


def _outside(bounds: Range, kind: type) -> float:
    """A value just outside ``bounds``, of the setting's type."""
    step = 1 if kind is int else 1e-3
    if bounds.ge is not None:
        return bounds.ge - step
    if bounds.gt is not None:
        return bounds.gt
    return (bounds.le + step) if bounds.le is not None else bounds.lt  # type: ignore[operator,return-value]


DECLARED = [(key, f) for key, f, _ in settings(ExperimentConfig()) if "range" in f.metadata]


@pytest.mark.parametrize(("key", "declared"), DECLARED, ids=[key for key, _ in DECLARED])
def test_validation_refuses_each_declared_range(key: str, declared: dataclasses.Field[object]) -> None:
    """Every declared range is enforced: a value just outside it is refused, naming the setting."""
    default = ExperimentConfig()
    *path, name = key.split(".")
    current = default
    for part in path:
        current = getattr(current, part)
    kind = int if isinstance(getattr(current, name), int) or name in ("iterations", "restarts") else float
    value = _outside(declared.metadata["range"], kind)
    value = kind(value)

    def replaced(obj: object, parts: list[str]) -> object:
        if not parts:
            return dataclasses.replace(obj, **{name: value})  # type: ignore[type-var]
        return dataclasses.replace(obj, **{parts[0]: replaced(getattr(obj, parts[0]), parts[1:])})  # type: ignore[type-var]

    with pytest.raises(ConfigError, match=f"`{key}` must be"):
        validate(replaced(default, path))  # type: ignore[arg-type]


def test_every_integer_ceiling_is_declared_where_the_old_table_had_it() -> None:
    """The ceilings that ``safety.INT_LIMITS`` listed are now each setting's own ``most``."""
    assert ceiling(ExperimentConfig, "train.batch_size") == 1_000_000
    assert ceiling(ExperimentConfig, "attack.target_site") == 1023
    assert ceiling(ExperimentConfig, "defense.noise") == 1e6
    with pytest.raises(KeyError):
        ceiling(ExperimentConfig, "train.lr")


def test_every_setting_has_its_help_in_its_section_docstring() -> None:
    """No setting goes undocumented: each field has an ``Attributes:`` entry (the help of its option
    and of its row in the configuration reference)."""
    missing = [
        key
        for key, f, _ in settings(ExperimentConfig())
        if not attribute_help(section_of(ExperimentConfig, key)[0]).get(f.name)
    ]
    assert missing == []


def test_setting_help_reads_the_docstring_as_the_command_line_shows_it() -> None:
    assert setting_help(ExperimentConfig, "train.rounds") == "Federated rounds."
    assert setting_help(ExperimentConfig, "train.optimizer") == "`sgd` (with `momentum`) or `adam`."


def _setting_options(command: typing.Callable[..., object]) -> dict[str, str]:
    hints = typing.get_type_hints(command, include_extras=True)
    return {
        name: option.key
        for name, hint in hints.items()
        for option in getattr(hint, "__metadata__", ())
        if isinstance(option, SettingOption)
    }


@pytest.mark.parametrize("command", [train, attack, sweep])
def test_each_setting_option_names_a_real_setting_with_its_docstring_help(
    command: typing.Callable[..., object],
) -> None:
    for key in _setting_options(command).values():
        cls, name = section_of(ExperimentConfig, key)
        assert attribute_help(cls)[name]


def test_setting_overrides_map_given_options_by_their_declared_keys() -> None:
    given: dict[str, object] = dict.fromkeys(typing.get_type_hints(train))
    given |= {"rounds": 3, "data": Path("slides"), "lr": 0.1}
    overrides = setting_overrides(train, given)
    assert overrides["train.rounds"] == 3
    assert overrides["train.lr"] == 0.1
    assert overrides["data.source"] == "slides"
    assert overrides["train.batch_size"] is None  # not given: left to the file
    # Options with a meaning of their own (the defense flags, the output folder) are not settings.
    assert not {"defense.name", "defense.noise", "out"} & set(overrides)


def test_a_flag_sets_its_setting_end_to_end() -> None:
    """``--rounds`` and ``--seeds`` land on ``train.rounds`` and ``attack.utility_seeds``: refused with
    the setting's own range."""
    result = CliRunner().invoke(app, ["attack", "--rounds", "0", "--seeds", "0", "--quiet"])
    assert result.exit_code == 2
    assert "`train.rounds` must be >= 1" in result.output
    assert "`attack.utility_seeds` must be in [1, 50] (training seeds per arm)" in result.output


def test_a_command_resolves_its_config_once_so_a_flag_can_fix_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file, the flags, the attack options and the defense arm are applied first and validated
    once: a flag overrides a file value even when the file's value alone is refused, and a problem is
    attributed to the file, or to the file with the flags."""
    import feddp_eval.config
    import feddp_eval.config.derive
    from feddp_eval.cli.app import experiment
    from feddp_eval.config import apply_defense, validate

    toml = tmp_path / "bad.toml"
    toml.write_text("[train]\nrounds = 0\n", encoding="utf-8")
    calls: list[int] = []

    def counted(config: ExperimentConfig) -> ExperimentConfig:
        calls.append(1)
        return validate(config)

    monkeypatch.setattr(feddp_eval.config, "validate", counted)
    monkeypatch.setattr(feddp_eval.config.derive, "validate", counted)
    chosen = experiment(
        toml,
        {"train.rounds": 2, "train.lr": None},
        options={"tv_weight": 0.1},
        arm=lambda c: apply_defense(c, noise=1.1, check=False),
        arm_flags=(1.1,),
    )
    assert (chosen.train.rounds, chosen.defense.name, chosen.defense.noise) == (2, "dp-sgd", 1.1)
    assert chosen.attack.options == {"inverting-gradients": {"tv_weight": 0.1}}
    assert len(calls) == 1
    with pytest.raises(ConfigError, match=r"bad\.toml with the flags given: 2 problems"):
        experiment(toml, {"train.lr": 20.0})
    with pytest.raises(ConfigError, match=r"bad\.toml: `train\.rounds` must be >= 1"):
        experiment(toml, {"train.lr": None})


def test_grad_sample_mode_moves_only_the_hash_of_the_defense_it_acts_in() -> None:
    """``bk`` became dp-sgd's default (issue #23) without moving any other run's hash: elsewhere the
    hash holds ``ew``, the value every hash was first published with. The golden hashes are the
    published ones of `feddp-eval attack --noise 1.1`'s two arms (dp-sgd under ``ew``)."""
    import attacks  # noqa: F401  (the hash reads the attack cards)
    from feddp_eval.config import ExperimentConfig, config_hash, with_overrides

    base = ExperimentConfig()
    assert base.defense.grad_sample_mode == "bk"
    assert config_hash(base)[:12] == "f3cbd45b0d40"
    dp = with_overrides(base, {"defense.name": "dp-sgd", "defense.noise": 1.1})
    dp_ew = with_overrides(dp, {"defense.grad_sample_mode": "ew"})
    assert config_hash(dp_ew)[:12] == "2f09ce78b8d3"
    assert config_hash(dp) != config_hash(dp_ew)
    for name in ("none", "local-dp", "central-dp"):
        arm = with_overrides(base, {"defense.name": name, "defense.noise": 1.1 if name != "none" else 0.0})
        hashes = {
            config_hash(with_overrides(arm, {"defense.grad_sample_mode": mode}))
            for mode in ("ew", "hooks", "functorch", "bk")
        }
        assert len(hashes) == 1, name

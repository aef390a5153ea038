"""Config derivation: the defense flags' one rule, the reference arm, and [attack.<name>] tables."""

from __future__ import annotations

from pathlib import Path

import pytest

import attacks  # noqa: F401  (the attack plugins check the [attack.<name>] tables validate reads)
from feddp_eval.config import (
    ATTACK_DEFAULT_NOISE,
    ExperimentConfig,
    apply_defense,
    config_hash,
    defended_config,
    load_config,
    reference_config,
    to_toml,
    validate,
    with_attack_options,
    with_overrides,
)
from feddp_eval.errors import ConfigError
from feddp_eval.pipeline import attack_settings

BASE = validate(ExperimentConfig())


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ({}, ("none", 0.0)),
        ({"noise": 0.5}, ("dp-sgd", 0.5)),  # σ > 0 with no defense anywhere means dp-sgd
        ({"noise": 0.0}, ("none", 0.0)),  # σ = 0 is no defense
        ({"defense": "local-dp", "noise": 0.2}, ("local-dp", 0.2)),
        ({"target_epsilon": 4.0}, ("dp-sgd", 0.0)),  # the target calibrates σ at training time
    ],
)
def test_the_defense_flags_have_one_meaning(flags: dict[str, object], expected: tuple[str, float]) -> None:
    chosen = apply_defense(BASE, **flags)  # type: ignore[arg-type]
    assert (chosen.defense.name, chosen.defense.noise) == expected


def test_a_configured_defense_stays_and_takes_the_noise() -> None:
    central = with_overrides(BASE, {"defense.name": "central-dp"})
    assert apply_defense(central, noise=0.3).defense.name == "central-dp"
    # `attack` compares against σ = 1.1 only when nothing about the defense was said anywhere.
    assert defended_config(BASE, noise=None, defense=None).defense.noise == ATTACK_DEFAULT_NOISE
    assert defended_config(central, noise=None, defense=None).defense.noise == 0.0


def test_the_reference_arm_clears_the_calibration_target(tmp_path: Path) -> None:
    path = tmp_path / "exp.toml"
    path.write_text('[defense]\nname = "dp-sgd"\ntarget_epsilon = 5.0\n', encoding="utf-8")
    calibrated = defended_config(load_config(path), noise=None, defense=None)
    assert calibrated.defense.target_epsilon == 5.0 and calibrated.defense.noise == 0.0
    reference = reference_config(calibrated)
    assert (reference.defense.name, reference.defense.noise, reference.defense.target_epsilon) == (
        "none",
        0.0,
        None,
    )


def test_attack_tables_reach_the_attack_and_the_point_hash(tmp_path: Path) -> None:
    path = tmp_path / "exp.toml"
    path.write_text(
        "[attack]\niterations = 7\n\n[attack.inverting-gradients]\ntv_weight = 0.05\n", encoding="utf-8"
    )
    config = load_config(path)
    assert config.attack.options == {"inverting-gradients": {"tv_weight": 0.05}}
    settings = attack_settings(config.attack)
    assert settings["tv_weight"] == 0.05 and settings["iterations"] == 7
    # The table round-trips through TOML, changes the attack's hash and not the training run's.
    again = tmp_path / "again.toml"
    again.write_text(to_toml(config), encoding="utf-8")
    assert load_config(again) == config
    assert config_hash(config) == config_hash(BASE)
    plain = with_overrides(config, {"attack.options": {}})
    assert config_hash(config, include_attack=True) != config_hash(plain, include_attack=True)


def test_an_empty_attack_table_keeps_every_published_hash() -> None:
    # The default config's attack hash, unchanged by an empty [attack.<name>] table. It was 389176d50645
    # until `attack.plateau` (issue #23) made the default inversion stop on a plateau: a changed result
    # gets a changed hash, so attacks recompute while every training hash (below) stays published.
    assert config_hash(BASE, include_attack=True).startswith("ef991ad88311")
    assert config_hash(BASE).startswith("f3cbd45b0d40")


def test_attack_tables_are_checked_against_the_attacks_own_config(tmp_path: Path) -> None:
    path = tmp_path / "exp.toml"
    path.write_text(
        "[attack.inverting-gradients]\ntv_wieght = 0.1\niterations = 3\n\n[attack.dlg]\nlr = -1.0\n\n"
        "[attack.nope]\nx = 1\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    text = "\n".join(info.value.problems)
    assert "unknown inverting-gradients settings ['tv_wieght']" in text and "tv_weight" in text
    assert "`attack.inverting-gradients.iterations`: set `attack.iterations` in [attack] instead" in text
    assert "`lr` and `scale` must be > 0" in text
    assert "`[attack.nope]` names no attack" in text and "inverting-gradients" in text


def test_attack_options_from_the_command_line_are_checked_like_the_table() -> None:
    chosen = with_attack_options(BASE, {"tv_weight": 0.2, "per_layer": True})
    assert chosen.attack.options["inverting-gradients"] == {"tv_weight": 0.2, "per_layer": True}
    with pytest.raises(ConfigError, match="must be true or false"):
        with_attack_options(BASE, {"per_layer": "yes"})


def test_attack_tables_are_refused_not_skipped_when_no_attack_plugin_is_loaded() -> None:
    """The config layer never imports a plugin: without `attacks` loaded, a table it cannot check is
    a problem that says how to fix it, never a silent pass (a fresh process: here `attacks` is loaded)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from feddp_eval.config import AttackSettings, ExperimentConfig, validate\n"
        "from feddp_eval.errors import ConfigError\n"
        "try:\n"
        "    validate(ExperimentConfig(attack=AttackSettings(options={'dlg': {'lr': 0.5}})))\n"
        "except ConfigError as exc:\n"
        "    print(exc.problems[0]); sys.exit(3)\n"
        "assert 'attacks' not in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 3, done.stdout + done.stderr
    assert "[attack.dlg]" in done.stdout and "`import attacks`" in done.stdout
    assert validate_with_plugins_loaded() == []


def validate_with_plugins_loaded() -> list[str]:
    """Here `attacks` is loaded (top of this file): the same table passes its attack's own check."""
    from feddp_eval.config import AttackSettings
    from feddp_eval.config.validation import attack_option_problems

    return attack_option_problems(AttackSettings(options={"dlg": {"lr": 0.5}}))

"""Attack budgets as named presets, explicit settings winning over them, and the multi-round options."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from feddp_eval.cli import app
from feddp_eval.config import AttackSettings, ExperimentConfig, load_config, with_overrides
from feddp_eval.errors import ConfigError

runner = CliRunner()


def test_no_budget_is_todays_default() -> None:
    assert AttackSettings().schedule == (500, 1)


@pytest.mark.parametrize(
    ("budget", "expected"), [("quick", (500, 1)), ("standard", (2000, 1)), ("thorough", (4000, 2))]
)
def test_budget_presets(budget: str, expected: tuple[int, int]) -> None:
    config = with_overrides(ExperimentConfig(), {"attack.budget": budget})
    assert config.attack.schedule == expected


def test_explicit_iterations_and_restarts_win_over_the_budget() -> None:
    def schedule(**overrides: object) -> tuple[int, int]:
        config = with_overrides(ExperimentConfig(), {f"attack.{k}": v for k, v in overrides.items()})
        return config.attack.schedule

    assert schedule(budget="thorough", iterations=30) == (30, 2)
    assert schedule(budget="thorough", restarts=1) == (4000, 1)
    assert schedule(budget="standard", iterations=500) == (500, 1)


def test_budget_and_all_rounds_from_toml(tmp_path: Path) -> None:
    path = tmp_path / "exp.toml"
    path.write_text('[attack]\nbudget = "standard"\ntarget_round = "all"\nrounds_used = 3\n')
    attack = load_config(path).attack
    assert attack.schedule == (2000, 1) and attack.multi_round and attack.rounds_used == 3


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"attack.budget": "huge"}, "`attack.budget` must be one of 'quick', 'standard', 'thorough'"),
        (
            {"attack.target_round": "every"},
            "`attack.target_round` must be a round number or 'all', but got 'every'",
        ),
        ({"attack.target_round": 2, "attack.rounds_used": 3}, "needs `attack.target_round = 'all'`"),
        ({"attack.target_round": "all", "attack.rounds_used": -1}, "`attack.rounds_used` must be >= 0"),
        ({"attack.iterations": 0}, "`attack.iterations` must be >= 1 (or empty: the budget's), but got 0"),
        ({"attack.convergence_every": -5}, "`attack.convergence_every` must be >= 0"),
    ],
)
def test_bad_attack_settings_say_what_and_how(overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        with_overrides(ExperimentConfig(), overrides)
    assert any(message in problem for problem in info.value.problems), info.value.problems


def test_cli_budget_target_round_all_and_explicit_iterations(tmp_path: Path, tiny_toml: Path) -> None:
    args = ["attack", "--config", str(tiny_toml), "--no-reference", "--noise", "0", "--defense", "none"]
    args += ["--budget", "thorough", "--iterations", "3", "--target-round", "all", "--rounds-used", "2"]
    result = runner.invoke(app, [*args, "--out", str(tmp_path), "--json", "--quiet"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    (row,) = report["rows"]
    assert row["iterations"] == 3 and row["restarts"] == 2 and row["rounds_used"] == 2
    assert report["scenario"]["round"] == "all" and report["scenario"]["rounds"] == [1, 2]
    assert "inverts them jointly" in report["scenario"]["threat"]


def test_cli_refuses_a_round_that_is_not_a_number(tmp_path: Path, tiny_toml: Path) -> None:
    args = ["attack", "--config", str(tiny_toml), "--target-round", "last", "--out", str(tmp_path)]
    result = runner.invoke(app, args)
    assert result.exit_code != 0
    assert "--target-round takes a round number or 'all', but got 'last'" in result.output


def test_attack_settings_from_budget_recipe_and_explicit_choices() -> None:
    from attacks import ATTACKS
    from feddp_eval.pipeline import attack_settings

    def settings(**overrides: object) -> dict:
        config = with_overrides(ExperimentConfig(), {f"attack.{k}": v for k, v in overrides.items()})
        return attack_settings(config.attack)

    assert settings() == {"iterations": 500, "restarts": 1, "time_budget": None, "plateau": 0.01}  # default
    paper = settings(recipe="paper", budget="standard")
    assert paper == {
        "iterations": 2000,
        "restarts": 1,
        "time_budget": None,
        "image": "pixels",
        "init": "uniform",
        "lr": 0.1,
        "colour_weight": 0.0,
        "plateau": 0.0,
    }
    attack = ATTACKS.create("inverting-gradients", **settings(recipe="paper", init="prior"))
    assert (attack.config.image, attack.config.init, attack.config.lr) == ("pixels", "prior", 0.1)
    with pytest.raises(ConfigError, match="exists for inverting-gradients only, but the attack is 'dlg'"):
        settings(recipe="paper", name="dlg")

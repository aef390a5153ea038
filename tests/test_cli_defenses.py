"""`feddp-eval train` defense flags and `feddp-eval list defenses`, through typer's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from defenses import DEFENSES
from feddp_eval.cli import app
from feddp_eval.io import read_json

runner = CliRunner()


def _train(tiny_toml: Path, out: Path, *flags: str, json_output: bool = True) -> Result:
    args = ["train", "--config", str(tiny_toml), "--out", str(out), *flags]
    if json_output:
        args += ["--json", "--quiet"]
    return runner.invoke(app, args)


def _summary(result: Result) -> dict[str, Any]:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_noise_without_a_defense_means_dp_sgd_and_the_epsilon_is_printed_with_delta(
    tmp_path: Path, tiny_toml: Path
) -> None:
    result = _train(tiny_toml, tmp_path / "run", "--noise", "1.1", json_output=False)
    assert result.exit_code == 0, result.output
    summary = read_json(tmp_path / "run" / "summary.json")
    assert summary["defense"]["name"] == "dp-sgd" and summary["defense"]["noise_multiplier"] == 1.1
    assert summary["privacy"]["mechanism"].startswith("dp-sgd") and summary["granularity"] == "sample-level"
    # The human summary never shows ε without δ, granularity and accountant.
    assert "defense: dp-sgd" in result.stdout
    assert f"ε = {summary['epsilon']:.3g}, δ = 1e-05, sample-level, rdp" in result.stdout


def test_defense_none_with_noise_is_refused_with_the_reason(tmp_path: Path, tiny_toml: Path) -> None:
    out = tmp_path / "run"
    result = _train(tiny_toml, out, "--defense", "none", "--noise", "1")
    assert result.exit_code == 2, result.output
    assert "'none' adds no noise" in result.stderr and "noise=1.0" in result.stderr
    assert "dp-sgd" in result.stderr  # ...and how to fix it
    assert "Traceback" not in result.output
    assert not out.exists()  # refused before anything was written


def test_target_epsilon_with_prune_is_refused_with_the_reason(tmp_path: Path, tiny_toml: Path) -> None:
    result = _train(tiny_toml, tmp_path / "run", "--defense", "prune", "--target-epsilon", "5")
    assert result.exit_code == 2, result.output
    assert "no accountant" in result.stderr
    assert "Traceback" not in result.output


def test_noise_and_target_epsilon_together_are_refused(tmp_path: Path, tiny_toml: Path) -> None:
    flags = ("--defense", "dp-sgd", "--noise", "1", "--target-epsilon", "5")
    result = _train(tiny_toml, tmp_path / "run", *flags)
    assert result.exit_code == 2, result.output
    assert "not both" in result.stderr


@pytest.mark.filterwarnings("ignore:Optimal order is the largest alpha")
def test_target_epsilon_calibrates_and_records_the_noise(tmp_path: Path, tiny_toml: Path) -> None:
    summary = _summary(_train(tiny_toml, tmp_path / "run", "--defense", "dp-sgd", "--target-epsilon", "5"))
    sigma = summary["privacy"]["noise_multiplier"]
    assert sigma > 0 and summary["defense"]["noise_multiplier"] == sigma
    assert summary["defense"]["target_epsilon"] == 5.0
    # The whole planned run stays within the target, and not far below it (Opacus' tolerance is 0.01).
    assert 5.0 - 0.05 <= summary["epsilon"] <= 5.0 + 1e-9
    assert summary["delta"] == 1e-5
    per_client = read_json(tmp_path / "run" / "privacy.json")["per_client"]
    assert all(r["noise_multiplier"] == sigma and r["epsilon"] <= 5.0 for r in per_client)


@pytest.mark.filterwarnings("ignore:Optimal order is the largest alpha")
def test_target_epsilon_without_a_defense_also_means_dp_sgd(tmp_path: Path, tiny_toml: Path) -> None:
    summary = _summary(_train(tiny_toml, tmp_path / "run", "--target-epsilon", "20", "--rounds", "1"))
    assert summary["defense"]["name"] == "dp-sgd" and summary["epsilon"] <= 20.0


def test_delta_at_least_one_over_n_puts_a_warning_in_the_summary(tmp_path: Path, tiny_toml: Path) -> None:
    # The smallest tiny site holds 3 tiles: δ = 0.5 >= 1/3.
    weak = _summary(_train(tiny_toml, tmp_path / "weak", "--noise", "1", "--delta", "0.5", "--rounds", "1"))
    assert len(weak["warnings"]) == 1
    assert "delta 0.5 >= 1/3" in weak["warnings"][0] and weak["delta"] == 0.5
    fine = _summary(_train(tiny_toml, tmp_path / "fine", "--noise", "1", "--rounds", "1"))
    assert fine["warnings"] == []


def test_list_defenses_prints_every_registered_name(tmp_path: Path) -> None:
    result = runner.invoke(app, ["list", "defenses"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert [line.split()[0] for line in lines] == DEFENSES.names()
    central = next(line for line in lines if line.startswith("central-dp"))
    assert "NOT against the server" in central


def test_train_help_says_central_dp_does_not_protect_against_the_server() -> None:
    result = runner.invoke(app, ["train", "--help"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.replace("│", " ").split())  # rich wraps help text inside a panel
    assert (
        "central-dp protects the aggregate and the final model, NOT the updates the server receives"
    ) in text

"""The audit from the command line and through the results: `audit RUN_DIR`, the --audit flags, ε̂ in
results.csv and the report, and `check` failing a run whose noise was silently lost."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from feddp_eval.cli import app
from feddp_eval.config import ExperimentConfig, to_toml, with_overrides
from feddp_eval.gate import audit_verdicts, load_baseline
from feddp_eval.schema import gate_metrics, result_columns

runner = CliRunner()
AUDIT_FLAGS = ["--audit", "--audit-canaries", "100"]


def _train(tiny_toml: Path, out: Path, *flags: str) -> Any:
    return runner.invoke(app, ["train", "--config", str(tiny_toml), "--out", str(out), "--quiet", *flags])


def test_audit_prints_the_bound_beside_epsilon_and_json(tmp_path: Path, tiny_toml: Path) -> None:
    run = tmp_path / "run"
    trained = _train(tiny_toml, run, *AUDIT_FLAGS, "--noise", "2")
    assert trained.exit_code == 0, trained.output
    shown = runner.invoke(app, ["audit", str(run)])
    assert shown.exit_code == 0, shown.output
    assert shown.output.startswith("ε̂ = ") and "m = " in shown.output and "≤ ε = " in shown.output
    record = json.loads(runner.invoke(app, ["audit", str(run), "--json"]).output)
    stored = json.loads((run / "privacy.json").read_text())["audit"]
    assert record == stored and record["canaries_total"] == 100
    assert 0 <= record["epsilon_lower_bound"] <= record["epsilon"] and record["violated"] is False


def test_audit_of_a_run_without_the_audit_is_one_red_line_and_exit_2(tmp_path: Path, tiny_toml: Path) -> None:
    run = tmp_path / "run"
    assert _train(tiny_toml, run).exit_code == 0
    shown = runner.invoke(app, ["audit", str(run)])
    assert shown.exit_code == 2
    assert shown.output.count("\n") == 1 and "train.audit = true" in shown.output


def test_a_silent_noise_bug_fails_check_with_the_audit_message(
    tmp_path: Path, tiny_config: ExperimentConfig, silent_dp_sgd: str
) -> None:
    """No baseline key asks for it: an audited arm whose ε̂ exceeds its ε fails the gate (exit 1)."""
    scenario = with_overrides(
        tiny_config,
        {
            "defense.name": silent_dp_sgd,
            "defense.noise": 5.0,
            "data.train_tiles": (16, 16),
            "train.rounds": 3,
            "train.audit": True,
            "train.audit_canaries": 200,
            "attack.iterations": 2,
        },
    )
    (tmp_path / "scenario.toml").write_text(to_toml(scenario))
    baseline = tmp_path / "baseline.toml"
    baseline.write_text(f'scenario = "scenario.toml"\n[arms.{silent_dp_sgd}]\ndice_min = 0.0\n')
    args = ["check", "--baseline", str(baseline), "--out", str(tmp_path / "runs"), "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    assert f"regression: arm {silent_dp_sgd}: audit ε̂ = " in result.stderr and "a DP bug" in result.stderr
    check = json.loads(result.stdout)
    failed = [c for c in check["checks"] if not c["passed"]]
    assert [(c["arm"], c["metric"], c["kind"]) for c in failed] == [
        (silent_dp_sgd, "epsilon_lower_bound", "max")
    ]
    assert failed[0]["value"] > failed[0]["bound"]  # ε̂ > the headline ε: a bug no seed explains


def test_audit_verdicts_hold_every_audited_arm_and_skip_the_rest() -> None:
    rows = [
        {"defense": "none", "epsilon": None, "epsilon_lower_bound": 3.1, "audit_violated": 0},
        {"defense": "dp-sgd", "epsilon": 4.0, "epsilon_lower_bound": 0.2, "audit_violated": 0},
        {"defense": "local-dp", "epsilon": 2.0, "epsilon_lower_bound": 1.7, "audit_violated": 1},
        {"defense": "prune", "epsilon": None, "epsilon_lower_bound": None, "audit_violated": None},
    ]
    verdicts = audit_verdicts(rows)
    assert [(v.bound.arm, v.passed) for v in verdicts] == [("dp-sgd", True), ("local-dp", False)]
    assert verdicts[1].value == 1.7 and verdicts[1].bound.value == 2.0  # ε̂ ≤ headline ε, yet a site's is less
    assert "ε̂ = 1.7 exceeds the accountant's ε (ε = 2 at most)" in verdicts[1].message
    assert audit_verdicts([{**rows[1], "epsilon_lower_bound": None}]) == []


def test_a_baseline_can_bound_the_audit_like_any_metric(tmp_path: Path) -> None:
    assert "epsilon_lower_bound" in gate_metrics()
    path = tmp_path / "baseline.toml"
    path.write_text("scenario = { seed = 0 }\n[arms.none]\nepsilon_lower_bound_min = 1.0\n")
    (bound,) = load_baseline(path).bounds
    assert (bound.metric, bound.kind, bound.value, bound.tolerance) == (
        "epsilon_lower_bound",
        "min",
        1.0,
        0.0,
    )


def test_an_audited_sweep_writes_the_bound_into_results_csv(tmp_path: Path, tiny_toml: Path) -> None:
    out = tmp_path / "sweep"
    args = ["sweep", "--config", str(tiny_toml), "--noise", "3", "--iterations", "2", "--out", str(out)]
    done = runner.invoke(app, [*args, *AUDIT_FLAGS, "--quiet"])
    assert done.exit_code == 0, done.output
    with open(out / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == result_columns()
    assert [(r["defense"], r["audit_canaries"], r["audit_violated"]) for r in rows] == [
        ("none", "100", "0"),
        ("dp-sgd", "100", "0"),
    ]
    for row in rows:
        assert int(row["audit_correct"]) <= int(row["audit_guesses"]) <= 100
    assert 0 <= float(rows[1]["epsilon_lower_bound"]) <= float(rows[1]["epsilon"])
    assert float(rows[0]["epsilon_lower_bound"]) >= 0 and rows[0]["epsilon"] == ""


@pytest.mark.parametrize("command", ["train", "attack", "sweep"])
def test_every_training_command_has_the_audit_flags(command: str) -> None:
    shown = runner.invoke(app, [command, "--help"], terminal_width=200)
    assert "--audit" in shown.output and "--no-audit" in shown.output and "--audit-canaries" in shown.output


def test_the_report_draws_epsilon_beside_the_audit_bound() -> None:
    """With audited rows the first curves page gains a panel: ε and ε̂ of each defense against σ, the
    undefended ε̂ as a line; without them, no such panel."""
    import defenses  # noqa: F401  # the curves draw each defense in the colour it declares
    from reports.curves import curve_pages
    from reports.summary import summarize

    def row(noise: float, epsilon: float | None, bound: float | None) -> dict[str, Any]:
        defense = "none" if noise == 0 else "dp-sgd"
        return {
            "attack": "dlg",
            "defense": defense,
            "noise": noise,
            "seed": 0,
            "target_site": 1,
            "epsilon": epsilon,
            "epsilon_lower_bound": bound,
            "dice": 0.8,
            "psnr": 15.0,
        }

    rows = [row(0.0, None, 3.2), row(0.5, 40.0, 1.1), row(2.0, 2.5, 0.05)]
    (page, *_) = curve_pages(summarize(rows), rows)
    panel = next(ax for ax in page.axes if ax.get_title() == "ε vs the audit's ε̂")
    lines = {line.get_label(): line for line in panel.get_lines()}
    assert list(lines["dp-sgd ε̂ (audit)"].get_ydata()) == [1.1, 0.05]
    assert list(lines["dp-sgd ε (accountant)"].get_ydata()) == [40.0, 2.5]
    assert lines["no defense ε̂ (ε = ∞)"].get_ydata()[0] == 3.2
    plain = [{**r, "epsilon_lower_bound": None} for r in rows]
    (page, *_) = curve_pages(summarize(plain), plain)
    assert all("ε̂" not in ax.get_title() for ax in page.axes)


def test_a_results_file_with_a_malformed_audit_flag_is_refused(tmp_path: Path) -> None:
    from feddp_eval.errors import RunDirError
    from feddp_eval.rundir.check import result_rows

    row = {"defense": "dp-sgd", "epsilon": 2.0, "epsilon_lower_bound": 0.1, "audit_violated": "no"}
    with pytest.raises(RunDirError, match="audit_violated = 'no', not 0 or 1"):
        result_rows({"rows": [row]}, tmp_path / "results.json")
    assert result_rows({"rows": [{**row, "audit_violated": 0}]}, tmp_path / "results.json")

"""`feddp-eval check`: bounds, exit codes, messages and JUnit XML, on fixed results files."""

from __future__ import annotations

import json
from pathlib import Path
from xml.etree import ElementTree

import pytest
from typer.testing import CliRunner

from feddp_eval.cli import app
from feddp_eval.errors import ConfigError
from feddp_eval.gate import evaluate, load_baseline, write_baseline

runner = CliRunner()
ROWS = [
    {
        "defense": "none",
        "psnr": 19.4,
        "ssim": 0.51,
        "lpips": 0.17,
        "mask_dice": None,
        "epsilon": None,
        "dice": 0.73,
        "jaccard": 0.58,
        "accuracy": 0.9,
    },
    {
        "defense": "dp-sgd",
        "psnr": 16.7,
        "ssim": 0.16,
        "lpips": 0.44,
        "mask_dice": None,
        "epsilon": 4.48,
        "dice": 0.69,
        "jaccard": 0.53,
        "accuracy": 0.89,
    },
]
BASELINE = """scenario = "scenario.toml"

[arms.none]
psnr_min = 18.4
dice_min = 0.68

[arms.dp-sgd]
psnr_max = 17.7
ssim_max = { value = 0.21, tolerance = 0.0 }
lpips_min = 0.39
epsilon_max = 4.5
dice_min = 0.64
"""


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "scenario.toml").write_text('seed = 0\n[defense]\nname = "dp-sgd"\nnoise = 1.1\n')
    baseline = tmp_path / "baseline.toml"
    baseline.write_text(BASELINE)
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"rows": ROWS}))
    return baseline, results


def test_passing_baseline_exits_0_and_junit_has_one_case_per_bound(
    files: tuple[Path, Path], tmp_path: Path
) -> None:
    baseline, results = files
    junit = tmp_path / "report.xml"
    result = runner.invoke(
        app, ["check", "--baseline", str(baseline), "--results", str(results), "--junit", str(junit)]
    )
    assert result.exit_code == 0, result.output
    assert "pass" in result.output and "FAIL" not in result.output
    suite = ElementTree.parse(junit).getroot()
    cases = suite.findall("testcase")
    assert suite.get("tests") == "7" and suite.get("failures") == "0" and len(cases) == 7
    assert {c.get("name") for c in cases} >= {"none.psnr_min", "dp-sgd.epsilon_max", "dp-sgd.ssim_max"}


def test_bound_below_the_measured_value_exits_1_naming_arm_metric_bound_value(
    files: tuple[Path, Path], tmp_path: Path
) -> None:
    baseline, results = files
    baseline.write_text(BASELINE.replace("psnr_max = 17.7", "psnr_max = 15.0"))
    junit = tmp_path / "report.xml"
    result = runner.invoke(
        app,
        ["check", "--baseline", str(baseline), "--results", str(results), "--junit", str(junit), "--json"],
    )
    assert result.exit_code == 1
    assert "arm dp-sgd: psnr = 16.7 breaks psnr <= 15" in result.output
    report = json.loads(result.stdout)
    failed = [c for c in report["checks"] if not c["passed"]]
    assert [(c["arm"], c["metric"], c["bound"], c["value"]) for c in failed] == [
        ("dp-sgd", "psnr", 15.0, 16.7)
    ]
    suite = ElementTree.parse(junit).getroot()
    assert suite.get("failures") == "1"
    assert suite.find("testcase[@name='dp-sgd.psnr_max']/failure") is not None


def test_tolerance_widens_a_bound(files: tuple[Path, Path]) -> None:
    baseline, _ = files
    bounds = load_baseline(baseline).bounds
    psnr = next(b for b in bounds if b.name == "dp-sgd.psnr_max")
    assert psnr.tolerance == 0.3  # the default for PSNR
    rows = [dict(ROWS[0]), {**ROWS[1], "psnr": 17.9}]
    assert next(v for v in evaluate(bounds, rows) if v.bound is psnr).passed  # 17.9 <= 17.7 + 0.3
    rows[1]["psnr"] = 18.1
    assert not next(v for v in evaluate(bounds, rows) if v.bound is psnr).passed


def test_malformed_baseline_exits_2_with_the_line(files: tuple[Path, Path]) -> None:
    baseline, results = files
    baseline.write_text(BASELINE.replace("dice_min = 0.68", "dice_min = = 0.68"))
    result = runner.invoke(app, ["check", "--baseline", str(baseline), "--results", str(results)])
    assert result.exit_code == 2
    assert "not valid TOML" in result.output and "line 5" in result.output


def test_unknown_keys_and_metrics_are_errors_listed_together(files: tuple[Path, Path]) -> None:
    baseline, _ = files
    baseline.write_text("colour = 1\n" + BASELINE + "[arms.prune]\npsnr_maxx = 3\nfoo_min = 1\n")
    with pytest.raises(ConfigError) as info:
        load_baseline(baseline)
    problems = info.value.problems
    assert len(problems) == 3 and any("`colour`" in p for p in problems)
    assert any("arms.prune.psnr_maxx" in p for p in problems) and any(
        "arms.prune.foo_min" in p for p in problems
    )


def test_missing_arm_fails_the_bound(files: tuple[Path, Path]) -> None:
    baseline, _ = files
    verdicts = evaluate(load_baseline(baseline).bounds, ROWS[:1])
    assert not all(v.passed for v in verdicts)
    assert any("no result row for this arm" in v.message for v in verdicts if v.bound.arm == "dp-sgd")


def test_written_baseline_reads_back_and_passes_on_its_own_rows(tmp_path: Path) -> None:
    (tmp_path / "scenario.toml").write_text("seed = 0\n")
    text = write_baseline(
        [ROWS], scenario="scenario.toml", margins={"psnr": 1.0, "ssim": 0.05, "lpips": 0.05, "dice": 0.05}
    )
    path = tmp_path / "baseline.toml"
    path.write_text(text)
    baseline = load_baseline(path)
    assert baseline.scenario == {"seed": 0}
    names = {b.name for b in baseline.bounds}
    assert {"none.psnr_min", "dp-sgd.psnr_max", "dp-sgd.lpips_min", "dp-sgd.epsilon_max"} <= names
    assert all(v.passed for v in evaluate(baseline.bounds, ROWS))
    worse = [dict(ROWS[0]), {**ROWS[1], "psnr": ROWS[1]["psnr"] + 2.0}]
    assert not all(v.passed for v in evaluate(baseline.bounds, worse))


def test_written_baseline_sits_outside_the_spread_of_its_repeats(tmp_path: Path) -> None:
    """Three repeats (say three thread counts): each bound sits beyond the worst of them by the larger of
    the margin and their spread, so every repeat passes and the spread is written beside the bound."""
    (tmp_path / "scenario.toml").write_text("seed = 0\n")
    shifts = (0.0, -1.5, 0.4)  # undefended PSNR over the repeats: a 1.9 dB spread, above the 1 dB margin
    repeats = [[{**ROWS[0], "psnr": ROWS[0]["psnr"] + d}, ROWS[1]] for d in shifts]
    margins = {"psnr": 1.0, "ssim": 0.05, "lpips": 0.05, "dice": 0.05}
    path = tmp_path / "baseline.toml"
    path.write_text(
        write_baseline(repeats, scenario="scenario.toml", margins=margins, labels=["a", "b", "c"])
    )
    bounds = {b.name: b for b in load_baseline(path).bounds}
    worst = ROWS[0]["psnr"] - 1.5
    assert bounds["none.psnr_min"].value == pytest.approx(worst - 1.9, abs=1e-4)
    assert bounds["dp-sgd.psnr_max"].value == pytest.approx(ROWS[1]["psnr"] + 1.0, abs=1e-4)  # no spread
    assert all(v.passed for rows in repeats for v in evaluate(list(bounds.values()), rows))
    assert "# 3 run(s):" in path.read_text() and "3 runs (a; b; c)" in path.read_text()


def test_check_without_baseline_is_a_usage_error() -> None:
    result = runner.invoke(app, ["check"])
    assert result.exit_code == 2 and "--baseline" in result.output


def test_attack_named_arms_check_that_attacks_row() -> None:
    rows = [
        {**ROWS[0], "attack": "inverting-gradients"},
        {**ROWS[1], "attack": "inverting-gradients"},
        {**ROWS[0], "attack": "imprint", "psnr": 140.0, "tiles_exact": 4, "margin_psnr": 123.0},
        {**ROWS[1], "attack": "imprint", "psnr": 17.0, "tiles_exact": 0, "margin_psnr": 0.0},
    ]
    from feddp_eval.gate import Bound, arm_attack

    bounds = [
        Bound("none", "psnr", "max", 20.0, 0.0),  # the scenario's own attack, not imprint's 140 dB
        Bound("imprint/none", "tiles_exact", "min", 3.0, 0.0),
        Bound("imprint/dp-sgd", "margin_psnr", "max", 1.0, 0.0),
        Bound("imprint/dp-sgd", "psnr", "max", 16.0, 0.0),  # fails: 17.0
    ]
    verdicts = evaluate(bounds, rows, attack="inverting-gradients")
    assert [v.passed for v in verdicts] == [True, True, True, False]
    assert [v.value for v in verdicts] == [19.4, 4.0, 0.0, 17.0]
    assert arm_attack("imprint/dp-sgd") == "imprint" and arm_attack("dp-sgd") is None


def test_lost_noise_fails_the_imprint_arm(tmp_path: Path, tiny_config) -> None:  # type: ignore[no-untyped-def]
    """A dp-sgd arm whose noise is (nearly) gone lets the malicious server read the tiles: exit 1."""
    from feddp_eval.config import to_toml, with_overrides

    lost = with_overrides(tiny_config, {"defense.name": "dp-sgd", "defense.noise": 1e-6, "train.rounds": 1})
    (tmp_path / "scenario.toml").write_text(to_toml(lost))
    baseline = tmp_path / "baseline.toml"
    baseline.write_text(
        'scenario = "scenario.toml"\n[arms."imprint/none"]\ntiles_exact_min = 2\n'
        '[arms."imprint/dp-sgd"]\nmargin_psnr_max = 1.0\n'
    )
    args = ["check", "--baseline", str(baseline), "--out", str(tmp_path / "runs"), "--quiet"]
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    assert "arm imprint/dp-sgd: margin_psnr" in result.output and "breaks" in result.output

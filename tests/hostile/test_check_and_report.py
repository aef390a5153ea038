"""Hostile inputs to `check` and `report`: no verdict without evidence, corrupted results refused
(issue #16)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.hostile.helpers import _copy, assert_refused, invoke

# --------------------------------------------------------------------------- check


def _baseline(tmp_path: Path, attacked: dict[str, Path], arms: str, scenario: str | None = None) -> Path:
    path = tmp_path / "baseline.toml"
    path.write_text(f'scenario = "{scenario or attacked["toml"]}"\n{arms}')
    return path


def _results(attacked: dict[str, Path], tmp_path: Path) -> Path:
    _copy(attacked, tmp_path)
    return tmp_path / attacked["results"] / "results.json"


def test_check_passes_on_the_real_results(attacked: dict[str, Path], tmp_path: Path) -> None:
    baseline = _baseline(tmp_path, attacked, "[arms.dp-sgd]\npsnr_max = 99\n")
    outcome = invoke(["check", "--baseline", baseline, "--results", _results(attacked, tmp_path), "-q"])
    assert outcome.code == 0, outcome.stderr


CHECK_CASES: dict[str, tuple[str, Callable[[Path], object] | None, str]] = {
    "unknown-arm": ("[arms.dp-sgdd]\npsnr_max = 99\n", None, "dp-sgdd"),
    "unknown-attack-arm": ('[arms."nope/dp-sgd"]\npsnr_max = 99\n', None, "nope/dp-sgd"),
    "arm-absent-from-results": ("[arms.local-dp]\npsnr_max = 99\n", None, "no result row"),
    "results-garbage": ("[arms.dp-sgd]\npsnr_max = 99\n", lambda p: p.write_text("{{{"), "results.json"),
    "results-no-rows": (
        "[arms.dp-sgd]\npsnr_max = 99\n",
        lambda p: p.write_text('{"rows": 3}'),
        "results.json",
    ),
    "results-string-metric": (
        "[arms.dp-sgd]\npsnr_max = 99\n",
        lambda p: p.write_text(json.dumps({"rows": [{"defense": "dp-sgd", "psnr": "12 dB"}]})),
        "psnr",
    ),
    "results-nan-metric": (
        "[arms.dp-sgd]\npsnr_max = 99\n",
        lambda p: p.write_text('{"rows": [{"defense": "dp-sgd", "psnr": NaN}]}'),
        "NaN",
    ),
    "results-binary": (
        "[arms.dp-sgd]\npsnr_max = 99\n",
        lambda p: p.write_bytes(b"\xff\x00\xfe"),
        "results.json",
    ),
}


@pytest.mark.parametrize("case", sorted(CHECK_CASES))
def test_check_exits_2_when_no_verdict_is_possible(
    case: str, attacked: dict[str, Path], tmp_path: Path
) -> None:
    arms, corrupt, needle = CHECK_CASES[case]
    results = _results(attacked, tmp_path)
    if corrupt:
        corrupt(results)
    baseline = _baseline(tmp_path, attacked, arms)
    assert_refused(invoke(["check", "--baseline", baseline, "--results", results, "-q"]), needle)


def test_check_invalid_scenario_with_results_exits_2(attacked: dict[str, Path], tmp_path: Path) -> None:
    scenario = tmp_path / "bad.toml"
    scenario.write_text("[train]\nrounds = -3\n")
    baseline = _baseline(tmp_path, attacked, "[arms.dp-sgd]\npsnr_max = 99\n", scenario=str(scenario))
    outcome = invoke(["check", "--baseline", baseline, "--results", _results(attacked, tmp_path), "-q"])
    assert_refused(outcome, "train.rounds")


@pytest.mark.parametrize("kind", ["binary", "directory"])
def test_check_unreadable_baseline_exits_2(kind: str, tmp_path: Path) -> None:
    path = tmp_path / "baseline.toml"
    if kind == "binary":
        path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff")
    else:
        path.mkdir()
    assert_refused(invoke(["check", "--baseline", path]), str(path))


def test_check_unwritable_junit_exits_2(attacked: dict[str, Path], tmp_path: Path) -> None:
    baseline = _baseline(tmp_path, attacked, "[arms.dp-sgd]\npsnr_max = 99\n")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    outcome = invoke(
        [
            "check",
            "--baseline",
            baseline,
            "--results",
            _results(attacked, tmp_path),
            "--junit",
            blocker / "j.xml",
            "-q",
        ]
    )
    assert_refused(outcome, "j.xml")


@pytest.mark.parametrize("margin", ["nan", "inf", "-1"])
def test_write_baseline_refuses_a_hostile_margin(margin: str, tiny_toml: Path, tmp_path: Path) -> None:
    out = tmp_path / "runs"
    args = ["check", "--write-baseline", tmp_path / "b.toml", "--scenario", tiny_toml, "--out", out]
    assert_refused(invoke([*args, "--margin-psnr", margin, "-q"]), "--margin")
    assert not out.exists() and not (tmp_path / "b.toml").exists()


def test_check_regression_still_exits_1(attacked: dict[str, Path], tmp_path: Path) -> None:
    baseline = _baseline(tmp_path, attacked, "[arms.dp-sgd]\npsnr_max = 0.5\n")
    outcome = invoke(["check", "--baseline", baseline, "--results", _results(attacked, tmp_path), "-q"])
    assert outcome.code == 1 and "regression: arm dp-sgd: psnr" in outcome.stderr, outcome.stderr


# --------------------------------------------------------------------------- report


def _csv_edit(results: Path, edit: Callable[[list[str]], list[str]]) -> None:
    lines = results.read_text().splitlines()
    results.write_text("\n".join(edit(lines)) + "\n")


def _garbage_metrics(results_dir: Path) -> None:
    payload = json.loads((results_dir / "results.json").read_text())
    run = Path(payload["rows"][0]["run_dir"])
    (run / "metrics.csv").write_text("round,site,dice\nx,y,z\n")


def _corrupt_psnr(results_dir: Path) -> None:
    payload = json.loads((results_dir / "results.json").read_text())
    payload["rows"][0]["psnr"] = "x"
    (results_dir / "results.json").write_text(json.dumps(payload))


REPORT_CASES: dict[str, tuple[Callable[[Path], object], str]] = {
    "results-json-garbage": (lambda d: (d / "results.json").write_text("nope"), "results.json"),
    "results-json-row-not-object": (lambda d: (d / "results.json").write_text('{"rows": [1, 2]}'), "row 0"),
    "results-json-corrupted-psnr": (_corrupt_psnr, "psnr"),
    "metrics-csv-garbage": (_garbage_metrics, "metrics.csv"),
}


@pytest.mark.parametrize("case", sorted(REPORT_CASES))
def test_report_refuses_corrupted_results(case: str, attacked: dict[str, Path], tmp_path: Path) -> None:
    corrupt, needle = REPORT_CASES[case]
    out, _ = _copy(attacked, tmp_path)
    results = tmp_path / attacked["results"] / "results.json"
    results.write_text(results.read_text().replace(str(attacked["out"]), str(out)))  # rows → the copy
    corrupt(results.parent)
    pdf = tmp_path / "report.pdf"
    assert_refused(invoke(["report", results.parent, "-o", pdf, "-q"]), needle)
    assert not pdf.exists()


def test_report_onto_a_folder_is_refused_in_one_line(attacked: dict[str, Path], tmp_path: Path) -> None:
    _copy(attacked, tmp_path)
    folder = tmp_path / "taken.pdf"
    folder.mkdir()
    assert_refused(invoke(["report", tmp_path / attacked["results"], "-o", folder, "-q"]), "taken.pdf")
    assert folder.is_dir() and not list(folder.iterdir())


def test_report_to_unwritable_output_is_refused(attacked: dict[str, Path], tmp_path: Path) -> None:
    _copy(attacked, tmp_path)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    outcome = invoke(["report", tmp_path / attacked["results"], "-o", blocker / "report.pdf", "-q"])
    assert_refused(outcome, "report.pdf")

"""The report reads a run's JSON files through feddp_eval.io.read_json: one refusal naming the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from feddp_eval.errors import RunDirError
from feddp_eval.rundir.read import read_run


def _run(tmp_path: Path, manifest: str) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    (run / "manifest.json").write_text(manifest, encoding="utf-8")
    (run / "summary.json").write_text('{"dice": 0.5}', encoding="utf-8")
    return run


def test_a_run_is_read(tmp_path: Path) -> None:
    files = read_run(_run(tmp_path, '{"seed": 3}'))
    assert (files.manifest, files.summary, files.metrics) == ({"seed": 3}, {"dice": 0.5}, [])


@pytest.mark.parametrize(
    ("manifest", "reason"),
    [
        ("{not json", r"Expecting property name"),
        ("[" * 100_000, r"maximum recursion depth"),  # once a RecursionError out of the report
    ],
)
def test_a_malformed_manifest_is_one_refusal_naming_it(tmp_path: Path, manifest: str, reason: str) -> None:
    with pytest.raises(RunDirError, match=rf"manifest\.json cannot be read as JSON \({reason}"):
        read_run(_run(tmp_path, manifest))

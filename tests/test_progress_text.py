"""Stage lines reach the terminal as written: a label such as ``[dp-sgd σ=1.1]`` is plain text, not a
rich markup tag that would vanish (it did in `feddp-eval attack`'s stage lines before issue #23's work)."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from feddp_eval.cli import render


def test_attack_stage_lines_keep_their_bracketed_labels(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    monkeypatch.setattr(
        "rich.console.Console", lambda **_: Console(file=out, width=120, force_terminal=False)
    )
    with render.attack_progress(quiet=False) as (on_stage, _):
        assert on_stage is not None
        on_stage("waiting for the worker to train [dp-sgd σ=1.1]")
    assert "[dp-sgd σ=1.1]" in out.getvalue()


def test_sweep_stage_lines_keep_their_bracketed_labels(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    monkeypatch.setattr(
        "rich.console.Console", lambda **_: Console(file=out, width=160, force_terminal=False)
    )
    with render.sweep_progress(quiet=False) as hooks:
        hooks["on_start"](0, 2)
        hooks["on_point"]("[none] seed 0")
    assert "done: [none] seed 0" in out.getvalue()

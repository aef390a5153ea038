"""``feddp-eval audit``: the one-run privacy audit of a finished run, from its captures."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from feddp_eval.cli.app import emit_json, user_errors
from feddp_eval.cli.options import JsonOpt


def audit(
    run_dir: Annotated[
        Path, typer.Argument(help="A training run directory trained with --audit ([train] audit = true).")
    ],
    confidence: Annotated[
        float, typer.Option(min=0.5, max=0.999999, help="Confidence at which ε̂ is a lower bound on ε.")
    ] = 0.95,
    json_output: JsonOpt = False,
) -> None:
    """Audit a run: ε̂, a lower bound on the ε of the code that ran, beside its accountant's ε.

    Scores the run's canaries from what the server captured, guesses which were trained on, and turns
    the correct guesses into ε̂ (Steinke, Nasr and Jagielski 2023). ε̂ > ε means the code does not do
    what its accountant assumes (a DP bug); ε̂ far below ε is the usual case: one run with m canaries
    certifies at most about ln m.
    """
    with user_errors():
        from feddp_eval.audit import audit_run

        result = audit_run(run_dir, confidence=confidence)
    if json_output:
        emit_json(result.to_dict())
    else:
        typer.echo(result.describe())

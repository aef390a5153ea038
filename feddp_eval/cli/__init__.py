"""The ``feddp-eval`` command line: typer wiring only.

Heavy imports (torch, the pipeline) happen inside commands so ``--help`` is instant. A
:class:`~feddp_eval.errors.FeddpError` becomes one red line on stderr and its exit code;
anything else is a bug and keeps its traceback.

- :mod:`~feddp_eval.cli.app`: the application and what commands share;
- :mod:`~feddp_eval.cli.options`: options used by several commands, defined once;
- :mod:`~feddp_eval.cli.train_attack`, :mod:`~feddp_eval.cli.sweep_check`,
  :mod:`~feddp_eval.cli.audit`: the commands;
- :mod:`~feddp_eval.cli.render`, :mod:`~feddp_eval.cli.attack_table`: what they print.
"""

from __future__ import annotations

from pathlib import Path

import typer

from feddp_eval.cli.app import app, list_app
from feddp_eval.cli.audit import audit
from feddp_eval.cli.sweep_check import check, report, sweep
from feddp_eval.cli.train_attack import attack, train

for _command in (train, attack, sweep, report, check, audit):  # the order --help lists them in
    app.command()(_command)

__all__ = ["app", "main"]


@list_app.command("attacks")
def list_attacks() -> None:
    """The registered attacks, one line each."""
    from attacks import ATTACKS

    for name in ATTACKS.names():
        attack = ATTACKS.get(name)
        typer.echo(f"{name:20s} {attack.summary}\n{'':20s} threat: {attack.threat}")


@list_app.command("defenses")
def list_defenses() -> None:
    """The registered defenses, one line each."""
    from defenses import DEFENSES

    for name in DEFENSES.names():
        typer.echo(f"{name:12s} {DEFENSES.get(name).summary}")


@list_app.command("formats")
def list_formats() -> None:
    """The registered dataset formats (--data-format), with their site_by choices (default first)."""
    from feddp_eval.data.formats import FORMATS

    for name in FORMATS.names():
        fmt = FORMATS.get(name)
        choices = f"site_by: {', '.join(fmt.site_by)}" if fmt.site_by else "site_by: (its layout)"
        typer.echo(f"{name:10s} {fmt.summary}\n{'':10s} {choices}")


def main() -> None:  # pragma: no cover - console-script entry point
    import warnings

    default = warnings.showwarning

    def one_line(message, category, filename, lineno, file=None, line=None):  # type: ignore[no-untyped-def]
        """The toolkit's own warnings (data conversions, empty masks) as one yellow line."""
        if issubclass(category, UserWarning) and filename.startswith(_PACKAGE_ROOT):
            typer.secho(f"warning: {message}", fg=typer.colors.YELLOW, err=True)
        else:
            default(message, category, filename, lineno, file, line)

    warnings.showwarning = one_line
    app()


_PACKAGE_ROOT = str(Path(__file__).resolve().parents[1]) + "/"  # feddp_eval/

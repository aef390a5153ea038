"""The typer application and what every command shares: user errors, JSON output, config building."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer

from feddp_eval.errors import FeddpError

app = typer.Typer(
    name="feddp-eval",
    help="Measure how much private data leaks from federated histopathology segmentation, "
    "and how much differential privacy stops it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
list_app = typer.Typer(help="List the registered plugins.", no_args_is_help=True)
app.add_typer(list_app, name="list")


def fail(message: str, code: int) -> typer.Exit:
    """One red line on stderr; the exit to raise with ``code``."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn user mistakes into one red line and the error's exit code."""
    try:
        yield
    except FeddpError as exc:
        raise fail(str(exc), exc.exit_code) from None
    except OSError as exc:  # the machine, not the code: a full disk, a read-only or vanished folder
        where = f"{exc.filename}: " if exc.filename else ""
        raise fail(f"{where}{exc.strerror or exc}; check that location and try again", 2) from None
    except KeyboardInterrupt:
        raise fail("interrupted", 130) from None


def emit_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=True, default=str) + "\n")


def experiment(
    config: Path | None,
    overrides: Mapping[str, Any],
    *,
    options: Mapping[str, Any] | None = None,
    arm: Callable[[Any], Any] | None = None,
    arm_flags: tuple[Any, ...] = (),
) -> Any:
    """The command's config, resolved once: the file (or the defaults), the flags (``None``: not
    given), the attack's own ``options`` (``--attack-option``) and the ``arm`` (the defense flags
    ``arm_flags``, applied unvalidated), then one validation listing every problem; a problem is
    attributed to the file, or to the file and the flags when flags were given."""
    import attacks  # noqa: F401  (installs the check of [attack.<name>] tables that validate runs)
    from feddp_eval.config import (
        ExperimentConfig,
        given,
        load_config,
        validate,
        with_attack_options,
        with_overrides,
    )
    from feddp_eval.errors import ConfigError

    flags = given(overrides)
    base = load_config(config, check=False) if config else ExperimentConfig()
    chosen = with_attack_options(with_overrides(base, flags, check=False), options or {}, check=False)
    chosen = arm(chosen) if arm is not None else chosen
    try:
        return validate(chosen)
    except ConfigError as exc:
        flagged = any(v is not None for v in [*overrides.values(), *arm_flags]) or bool(options)
        source = None if config is None else f"{config} with the flags given" if flagged else str(config)
        raise ConfigError(exc.problems, source=source) from None


def parse_round(text: str | None) -> int | str | None:
    """``--target-round``: a round number or ``all``; anything else is a config error."""
    from feddp_eval.errors import ConfigError

    if text is None or text == "all":
        return text
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"--target-round takes a round number or 'all', but got {text!r}") from None


def numbers(text: str | None, kind: type, option: str) -> tuple[Any, ...] | None:
    """``"0,0.01,1.1"`` → ``(0.0, 0.01, 1.1)``; a bad item is a config error naming the option."""
    from feddp_eval.errors import ConfigError

    if text is None:
        return None
    items = [item.strip() for item in text.split(",") if item.strip()]
    try:
        return tuple(kind(item) for item in items)
    except ValueError:
        raise ConfigError(
            f"{option} takes a comma-separated list of {kind.__name__}s, but got {text!r}"
        ) from None


def names(text: str | None) -> tuple[str, ...] | None:
    return None if text is None else tuple(item.strip() for item in text.split(",") if item.strip())


def attack_options(items: list[str] | None) -> dict[str, Any]:
    """``--attack-option tv_weight=0.1`` (repeatable) → ``{"tv_weight": 0.1}``; values are read as TOML
    (numbers, true/false, quoted strings), a bare word as a string."""
    import tomllib

    from feddp_eval.errors import ConfigError

    options: dict[str, Any] = {}
    for item in items or []:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--attack-option takes KEY=VALUE (e.g. tv_weight=0.1), but got {item!r}")
        try:
            value = tomllib.loads(f"v = {text.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            value = text.strip()
        options[key.strip()] = value
    return options

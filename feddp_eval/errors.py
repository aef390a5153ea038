"""Errors that users can cause and the CLI turns into one line and an exit code.

Every error says what was wrong, the value received, and how to fix it. Tests
check the structured fields (``exit_code``) rather than the prose.
"""

from __future__ import annotations


class FeddpError(ValueError):
    """Base class for every error a user can cause; the CLI prints it without a traceback."""

    exit_code: int = 2


class ConfigError(FeddpError):
    """A configuration file or flag is invalid. Holds every problem found, not just the first."""

    def __init__(self, problems: list[str] | str, *, source: str | None = None) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.source = source
        where = f"{source}: " if source else ""
        if len(self.problems) == 1:
            message = where + self.problems[0]
        else:
            message = (
                where + f"{len(self.problems)} problems:\n" + "\n".join(f"  - {p}" for p in self.problems)
            )
        super().__init__(message)


class DataError(FeddpError):
    """Input data (an image folder, a tile) cannot be used; names the file and the fix."""


class RunDirError(FeddpError):
    """A run directory is missing, incomplete, or written by an incompatible version."""


class NonFiniteError(FeddpError):
    """A model or a released update holds NaN or inf: nothing computed from it is a result."""


class OutputError(FeddpError):
    """An output location cannot be written (read-only, a directory in the way, disk full)."""


class NoVerdictError(FeddpError):
    """The leakage gate cannot judge a bound (an attack did not run, an arm has no row): exit 2."""


class MissingResourceError(FeddpError):
    """Something that cannot be fetched on this machine (model weights) is absent."""

    exit_code = 3

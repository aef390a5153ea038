"""Readers that turn a malformed results file into one clear :class:`RunDirError`."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from feddp_eval.errors import RunDirError
from feddp_eval.io import regular_file


def read_json_file(path: Path) -> Any:
    """Parse a JSON file; a malformed one is a :class:`RunDirError` naming it."""
    regular_file(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunDirError(
            f"{path} cannot be read as JSON ({exc}); re-run the command that wrote it"
        ) from None


def read_csv_file(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """The header and the rows of a CSV file (cells as strings)."""
    regular_file(path)
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            rows = list(reader)
            return list(reader.fieldnames or []), rows
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise RunDirError(f"{path} cannot be read as CSV ({exc}); re-run the command that wrote it") from None

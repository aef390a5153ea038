"""The CSV reader of the report: a malformed file becomes one clear :class:`RunDirError`.

JSON files are read with :func:`feddp_eval.io.read_json`, which refuses a malformed one the same way.
"""

from __future__ import annotations

import csv
from pathlib import Path

from feddp_eval.errors import RunDirError
from feddp_eval.io import regular_file


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

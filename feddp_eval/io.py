"""Atomic file writes and safetensors I/O. Nothing here (or anywhere) unpickles.

Importing this module does not import torch (``feddp-eval report`` reads results with it and
stays fast); the tensor helpers import it when called.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import Tensor


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, value: Any) -> None:
    """Pretty, key-sorted JSON, written atomically."""
    atomic_write_text(path, json.dumps(value, indent=2, sort_keys=True, allow_nan=True) + "\n")


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_csv(path: str | Path, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> None:
    """CSV with a fixed column order; floats as ``repr`` (round-trips exactly), ``None`` as an empty cell."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: repr(v) if isinstance(v, float) else v for k, v in row.items()})
    atomic_write_text(path, buffer.getvalue())


def save_tensors(
    path: str | Path, tensors: Mapping[str, Tensor], metadata: Mapping[str, str] | None = None
) -> None:
    """Write tensors as safetensors (moved to CPU, made contiguous), atomically."""
    from safetensors.torch import save as _st_save

    payload = {name: t.detach().cpu().contiguous() for name, t in tensors.items()}
    atomic_write_bytes(path, _st_save(payload, metadata=dict(metadata) if metadata else None))


def load_tensors(path: str | Path) -> dict[str, Tensor]:
    """Read a safetensors file into CPU tensors, in sorted name order.

    The parser hands names back in an order that changes from process to process; whoever
    iterates the result (flattening an update, summing per-layer terms) would then add floats in
    another order and get last-bit-different numbers in every process.
    """
    from safetensors.torch import load as _st_load

    return dict(sorted(_st_load(Path(path).read_bytes()).items()))


def read_csv(path: str | Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))

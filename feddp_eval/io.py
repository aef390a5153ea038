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
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import Tensor


def _umask() -> int:
    """The process umask (reading it means setting it; it is put back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, then rename it into place.

    The file gets the permissions any new file gets (0666 less the umask): ``mkstemp`` would
    leave it 0600, unreadable to the rest of a shared project folder.

    Raises:
        OutputError: The folder cannot be created or written (read-only, a file in the way, disk
            full); nothing is left at ``path`` or beside it.
    """
    from feddp_eval.errors import OutputError

    path = Path(path)
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), 0o666 & ~_umask())
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        reason = exc.strerror or type(exc).__name__
        raise OutputError(
            f"cannot write {path} ({reason}); choose a writable location with free space"
        ) from None
    except BaseException:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise


def is_atomic_leftover(path: Path) -> bool:
    """A temporary file :func:`atomic_write_bytes` left behind when its process was killed mid-write."""
    return path.is_file() and path.name.startswith(".") and path.name.endswith(".tmp")


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, value: Any) -> None:
    """Pretty, key-sorted JSON, written atomically."""
    atomic_write_text(path, json.dumps(value, indent=2, sort_keys=True, allow_nan=True) + "\n")


def read_json(path: str | Path) -> Any:
    """Parse a JSON file.

    Raises:
        RunDirError: The file is missing, unreadable, not UTF-8 or not JSON; the message names it.
    """
    from feddp_eval.errors import RunDirError

    path = regular_file(Path(path))
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunDirError(f"{path} does not exist; re-run the command that writes it") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else _first_line(exc)
        raise RunDirError(
            f"{path} cannot be read as JSON ({reason}); re-run the command that wrote it"
        ) from None


MAX_READ_BYTES = 1 << 30  # no run file is near 1 GiB; a larger one is not ours


def regular_file(path: Path) -> Path:
    """``path`` when it is a regular file of a sane size (a device such as /dev/zero never ends).

    Raises:
        RunDirError: ``path`` is missing, a folder, a device, or over :data:`MAX_READ_BYTES`.
    """
    import stat

    from feddp_eval.errors import RunDirError

    with _readable(path):
        info = path.stat()
    if not stat.S_ISREG(info.st_mode):
        raise RunDirError(f"{path} is not a regular file (a folder or a device); refusing to read it")
    if info.st_size > MAX_READ_BYTES:
        raise RunDirError(f"{path} is {info.st_size} bytes, too large to be a run file; refusing to read it")
    return path


@contextmanager
def _readable(path: Path) -> Iterator[None]:
    """A missing or unreadable run file becomes a RunDirError naming it."""
    from feddp_eval.errors import RunDirError

    try:
        yield
    except FileNotFoundError:
        raise RunDirError(f"{path} does not exist; re-run the command that writes it") from None
    except OSError as exc:
        raise RunDirError(f"{path} cannot be read ({exc.strerror or exc}); check the file") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


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

    from feddp_eval.errors import RunDirError

    path = regular_file(Path(path))
    with _readable(path):
        data = path.read_bytes()
    try:
        return dict(sorted(_st_load(data).items()))
    except Exception as exc:  # the parser's own error type (SafetensorError) or a dtype it refuses
        raise RunDirError(
            f"{path} is not a readable safetensors file ({_first_line(exc)}); re-run the command that "
            "wrote it"
        ) from None


def read_csv(path: str | Path) -> list[dict[str, str]]:
    """The rows of a CSV file (cells as strings).

    Raises:
        RunDirError: The file is missing, unreadable, not UTF-8 or not CSV; the message names it.
    """
    return read_csv_table(path)[1]


def read_csv_table(path: str | Path) -> tuple[list[str], list[dict[str, str]]]:
    """The header and the rows of a CSV file (cells as strings); refused as :func:`read_csv`."""
    from feddp_eval.errors import RunDirError

    regular_file(Path(path))
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            rows = list(reader)
            return list(reader.fieldnames or []), rows
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else _first_line(exc)
        raise RunDirError(
            f"{path} cannot be read as CSV ({reason}); re-run the command that wrote it"
        ) from None

"""Run-directory files checked before they are trusted: one refusal naming the file each.

Every file a stage reads from a run is checked first: JSON metadata for its keys and types,
file names for staying inside the run (no ``..``, no absolute path, no symlink out, no device),
tensor files for their dtype, names, shapes and size against the model (from the safetensors
header, before any data is read). Each refusal is a :class:`~feddp_eval.errors.RunDirError`
naming the file, what is wrong and the fix. A run or sweep that fails part-way is removed when
nothing in it finished, so no half-written folder is mistaken for a result.

Nothing here imports torch at module level.
"""

from __future__ import annotations

import json
import math
import shutil
import stat
import struct
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeGuard

from feddp_eval.errors import RunDirError
from feddp_eval.rundir.names import MANIFEST, SITES
from feddp_eval.rundir.summary import REQUIRED

if TYPE_CHECKING:
    from feddp_eval.config import ModelConfig

MAX_HEADER_BYTES = 100 * 2**20  # a safetensors header larger than this is not ours


# --------------------------------------------------------------------------- files inside a run


def inside(folder: Path, name: Any, *, what: str, source: Path, root: Path | None = None) -> Path:
    """The regular file ``folder / name``, refused unless it stays inside ``root``.

    Args:
        folder: The folder ``name`` is relative to.
        root: The run directory the file must be in (default: ``folder``).
        name: The file name as a run file gives it.
        what: The field that named it (``"update_file"``).
        source: The file that named it, for the message.

    Raises:
        RunDirError: ``name`` is not a plain relative name, resolves outside ``root`` (``..``, an
            absolute path, a symlink out), or is not a regular file (a device, a folder, missing).
    """
    if not isinstance(name, str) or not name or "\x00" in name:
        raise RunDirError(f"{source}: `{what}` must be a file name, but got {name!r}; re-capture the run")
    root = folder if root is None else root
    path = folder / name
    real_root = root.resolve()
    try:
        real = path.resolve(strict=True)
    except (FileNotFoundError, RuntimeError, OSError):
        raise RunDirError(
            f"{source}: `{what}` {name!r} does not exist in {folder}; re-capture the run"
        ) from None
    if Path(name).is_absolute() or not real.is_relative_to(real_root):
        raise RunDirError(
            f"{source}: `{what}` {name!r} points outside the run directory ({real}); refusing to read it"
        )
    if not stat.S_ISREG(real.stat().st_mode):
        raise RunDirError(f"{source}: `{what}` {name!r} is not a regular file; refusing to read it")
    return real


def safetensors_shapes(
    path: Path, *, max_bytes: int, dtypes: Sequence[str] = ("F32", "F64", "F16", "BF16")
) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes from a safetensors header, read before any tensor data.

    Args:
        path: The file.
        max_bytes: Largest file size that the caller's model can explain.

    Raises:
        RunDirError: The file is larger than ``max_bytes``, truncated, or its header is not a
            safetensors header.
    """
    size = path.stat().st_size
    if size > max_bytes:
        raise RunDirError(
            f"{path} is {size} bytes, more than the {max_bytes} the model explains; refusing to read it"
        )
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
            if len(head) < 8:
                raise ValueError("shorter than a header")
            (length,) = struct.unpack("<Q", head)
            if length > min(MAX_HEADER_BYTES, size - 8):
                raise ValueError(f"header length {length} exceeds the file")
            header = json.loads(handle.read(length))
        if not isinstance(header, dict):
            raise ValueError("header is not a table")
        shapes: dict[str, tuple[int, ...]] = {}
        for name, entry in header.items():
            if name == "__metadata__":
                continue
            shape, offsets = entry["shape"], entry["data_offsets"]
            if entry["dtype"] not in dtypes or offsets[1] > size - 8 - length:
                raise ValueError(f"tensor {name!r} has dtype {entry['dtype']} or lies past the end")
            shapes[name] = tuple(int(s) for s in shape)
    except (ValueError, KeyError, TypeError, IndexError, UnicodeDecodeError, struct.error) as exc:
        raise RunDirError(
            f"{path} is not a valid safetensors file ({exc}); re-run the command that wrote it"
        ) from None
    return shapes


def expected_shapes(model: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Names and shapes of the tensors a captured update (or the weights sent) must hold: the U-Net's
    parameters. A malicious server's modified model holds others, which its attack knows (the imprint
    attack's ``imprinted_shapes``)."""
    from feddp_eval.models.unet import UNet

    net = UNet(depth=model.depth, width=model.width, groups=model.groups, activation=model.activation)
    return {name: tuple(p.shape) for name, p in net.named_parameters()}


def check_tensor_file(path: Path, expected: Mapping[str, tuple[int, ...]], *, what: str) -> None:
    """Refuse a tensor file whose size, names or shapes do not fit ``expected`` (before reading data).

    Raises:
        RunDirError: Naming the file and the first mismatch.
    """
    numel = sum(math.prod(shape) for shape in expected.values())
    shapes = safetensors_shapes(path, max_bytes=8 * numel + 2**20, dtypes=("F32",))  # as captured
    missing = sorted(set(expected) - set(shapes))
    extra = sorted(set(shapes) - set(expected))
    if missing or extra:
        detail = f"missing {missing[:3]}" if missing else f"unexpected {extra[:3]}"
        raise RunDirError(
            f"{path}: {what} does not fit the model ({detail}); was it written for another config?"
        )
    for name, shape in expected.items():
        if shapes[name] != tuple(shape):
            raise RunDirError(
                f"{path}: {what} tensor `{name}` has shape {list(shapes[name])}, but the model needs "
                f"{list(shape)}; was it written for another config?"
            )


# --------------------------------------------------------------------------- run JSON files


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


# What a client could have used: outside these, a capture's metadata describes no training that ran, and
# an attack simulating it would return numbers about nothing. The learning rate's cap is
# `train.lr`'s own (config validation); the counts' caps are far beyond any site, round or local epoch.
CAPTURE_LIMITS: dict[str, float] = {
    "lr": 10.0,
    "round": 1_000_000,
    "local_steps": 100_000,
    "batch_size": 1_000_000,
    "n_samples": 10_000_000,
}


def capture_problems(metadata: Any) -> list[str]:
    """What is wrong with a capture's metadata (keys, types, physical ranges); empty when it can be used."""
    if not isinstance(metadata, dict):
        return [f"must be a JSON object, but holds {type(metadata).__name__}"]
    problems = []
    for key in ("round", "site_index", "batch_size", "local_steps", "n_samples"):
        least = 0 if key == "site_index" else 1
        if not _is_int(metadata.get(key)) or metadata[key] < least:
            problems.append(f"`{key}` must be an integer >= {least}, but got {metadata.get(key)!r}")
    for key in ("update_file", "global_file"):
        if not isinstance(metadata.get(key), str):
            problems.append(f"`{key}` must be a file name, but got {metadata.get(key)!r}")
    batches = metadata.get("batches")
    if (
        not isinstance(batches, list)
        or not batches
        # a Poisson-sampled step may draw no tile at all (DP-SGD still takes it): [] is a valid batch
        or not all(isinstance(b, list) and all(_is_int(i) and i >= 0 for i in b) for b in batches)
    ):
        problems.append(
            f"`batches` must be a non-empty list of lists of tile indices, but got {batches!r:.80}"
        )
    if not _is_number(metadata.get("lr")):
        problems.append(f"`lr` must be a finite number, but got {metadata.get('lr')!r}")
    problems += _physical_problems(metadata)
    if metadata.get("optimizer") not in ("sgd", "adam"):
        problems.append(f"`optimizer` must be 'sgd' or 'adam', but got {metadata.get('optimizer')!r}")
    if metadata.get("momentum") is not None and not _is_number(metadata.get("momentum")):
        problems.append(f"`momentum` must be a number or null, but got {metadata.get('momentum')!r}")
    loss = metadata.get("loss")
    if not isinstance(loss, dict) or not _is_number(loss.get("dice_weight")):
        problems.append(f"`loss.dice_weight` must be a finite number, but got {loss!r:.80}")
    model = metadata.get("model")
    if model is not None and (
        not isinstance(model, dict)
        or not _is_int(model.get("bins"))
        or model["bins"] < 1
        or not isinstance(model.get("thresholds", []), list)
        or not all(_is_number(t) for t in model.get("thresholds", []))
    ):
        problems.append(f"`model` must describe the imprint block (bins, thresholds), but got {model!r:.80}")
    return problems


def _physical_problems(metadata: dict[str, Any]) -> list[str]:
    """Values of the right type that no client could have trained with (:data:`CAPTURE_LIMITS`)."""
    problems = []
    for key, cap in CAPTURE_LIMITS.items():
        value = metadata.get(key)
        if _is_number(value) and not (0 < value <= cap):
            problems.append(f"`{key}` = {value!r} is outside what a client could have used (0, {cap:g}]")
    batches, steps, n = metadata.get("batches"), metadata.get("local_steps"), metadata.get("n_samples")
    if isinstance(batches, list) and _is_int(steps) and len(batches) != steps:
        problems.append(f"`local_steps` = {steps} but `batches` lists {len(batches)} steps")
    if isinstance(batches, list) and _is_int(n):
        indices = [i for b in batches if isinstance(b, list) for i in b if _is_int(i)]
        if indices and max(indices) >= n:
            problems.append(f"`batches` index {max(indices)} is out of range for `n_samples` = {n}")
    momentum = metadata.get("momentum")
    if _is_number(momentum) and not 0 <= momentum < 1:
        problems.append(f"`momentum` = {momentum!r} is outside [0, 1)")
    loss = metadata.get("loss")
    if isinstance(loss, dict) and _is_number(loss.get("dice_weight")) and loss["dice_weight"] < 0:
        problems.append(f"`loss.dice_weight` = {loss['dice_weight']!r} must be >= 0")
    return problems


def read_sites(run_dir: Path) -> list[dict[str, Any]]:
    """A run's ``sites.json``, checked: one entry per site with its index, tile counts and public colours.

    Raises:
        RunDirError: Naming the file and the first entry that is malformed.
    """
    from feddp_eval.io import read_json

    path = run_dir / SITES
    sites = read_json(path)
    if not isinstance(sites, list) or not sites:
        raise RunDirError(f"{path} must list the run's sites, but holds {str(sites)[:80]!r}; retrain the run")
    for position, site in enumerate(sites):
        problem = _site_problem(site, position)
        if problem:
            raise RunDirError(f"{path}: site entry {position} {problem}; retrain the run")
    return sites


def _site_problem(site: Any, position: int) -> str | None:
    if not isinstance(site, dict):
        return f"must be an object, but got {site!r:.60}"
    if site.get("index") != position or not _is_int(site.get("index")):
        return f"has `index` {site.get('index')!r}, expected {position}"
    if not _is_int(site.get("train_tiles")) or site["train_tiles"] < 1:
        return f"has `train_tiles` {site.get('train_tiles')!r}, expected an integer >= 1"
    if not isinstance(site.get("name"), str):
        return f"has `name` {site.get('name')!r}, expected a string"
    public = site.get("public")
    if not isinstance(public, dict):
        return f"has no `public` statistics table (got {public!r:.60})"
    for key in ("mean_rgb", "foreground_rgb", "background_rgb"):
        value = public.get(key)
        if not isinstance(value, list) or len(value) != 3 or not all(_is_number(v) for v in value):
            return f"has `public.{key}` {value!r:.60}, expected three finite numbers"
    fraction = public.get("foreground_fraction")
    if not _is_number(fraction) or not isinstance(fraction, int | float) or not 0 <= fraction <= 1:
        return f"has `public.foreground_fraction` {fraction!r}, expected a number in [0, 1]"
    return None


def summary_problem(summary: Any) -> str | None:
    """What is wrong with a run's ``summary.json`` (``None``: usable)."""
    if not isinstance(summary, dict):
        return f"must be a JSON object, but holds {str(summary)[:60]!r}"
    for key in ("dice", "jaccard", "accuracy"):
        if not _is_number(summary.get(key)):
            return f"has `{key}` {summary.get(key)!r}, expected a finite number"
    if not isinstance(summary.get("privacy"), dict):
        return f"has `privacy` {summary.get('privacy')!r:.60}, expected an object"
    eps = summary.get("epsilon")
    if eps is not None and not (isinstance(eps, int | float) and not isinstance(eps, bool) and eps >= 0):
        return f"has `epsilon` {eps!r}, expected a number >= 0 or null"
    if missing := [k for k in REQUIRED if k not in summary]:
        return f"lacks {', '.join(f'`{k}`' for k in missing)}"
    return None


def result_rows(payload: Any, path: Path) -> list[dict[str, Any]]:
    """The rows of an attack ``results.json``, checked: each an object with a defense name and
    numeric (or null) metrics.

    Raises:
        RunDirError: Naming the file and the first malformed row.
    """
    rows = payload.get("rows") if isinstance(payload, dict) else None
    if not isinstance(rows, list) or not rows:
        raise RunDirError(f"{path} holds no `rows` list of results; re-run `feddp-eval attack`")
    from feddp_eval.schema import gate_metrics

    for i, row in enumerate(rows):
        if not isinstance(row, dict) or not isinstance(row.get("defense"), str):
            raise RunDirError(
                f"{path}: row {i} is not a results row with a `defense` name; re-run the attack"
            )
        for metric in gate_metrics():
            value = row.get(metric)
            if value is not None and (not isinstance(value, int | float) or isinstance(value, bool)):
                raise RunDirError(
                    f"{path}: row {i} has {metric} = {value!r}, not a number; re-run the attack"
                )
        if row.get("audit_violated") not in (None, 0, 1):  # the gate fails an arm on 1
            raise RunDirError(
                f"{path}: row {i} has audit_violated = {row['audit_violated']!r}, not 0 or 1; "
                "re-run the attack"
            )
    return rows


# --------------------------------------------------------------------------- nothing half-written


@contextmanager
def discard_unfinished(run_dir: Path, *, config_hash: str) -> Iterator[None]:
    """Remove ``run_dir`` when the block fails and leaves an unfinished run of this config there.

    Removed: a run whose manifest carries ``config_hash`` and does not say ``complete`` (what the
    next run of this config would delete anyway), or an empty folder the block created. Anything
    else (another config's run, a user's files) is left alone.

    Args:
        run_dir: The run directory the block writes.
        config_hash: The full config hash of the run being written.
    """
    existed = run_dir.exists()
    try:
        yield
    except BaseException:
        if run_dir.is_dir() and _ours_unfinished(run_dir, config_hash, existed=existed):
            shutil.rmtree(run_dir, ignore_errors=True)
        raise


def _ours_unfinished(run_dir: Path, config_hash: str, *, existed: bool) -> bool:
    try:
        if not any(run_dir.iterdir()):
            return not existed
        manifest = json.loads((run_dir / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (
        isinstance(manifest, dict)
        and manifest.get("config_hash") == config_hash
        and manifest.get("status") != "complete"
    )


def row_problem(row: Any, key: str) -> str | None:
    """What is wrong with a sweep point's ``row.json`` (``None``: usable)."""
    if not isinstance(row, dict):
        return f"must be a JSON object, but holds {str(row)[:60]!r}"
    if row.get("key") != key:
        return f"has `key` {row.get('key')!r}, expected {key!r}"
    if not isinstance(row.get("defense"), str) or not isinstance(row.get("attack"), str):
        return "has no `defense` and `attack` names"
    for name in ("noise", "dice", "psnr", "ssim", "epsilon", "prior_psnr", "margin_psnr"):
        value = row.get(name)
        if value is not None and (not isinstance(value, int | float) or isinstance(value, bool)):
            return f"has `{name}` {value!r}, expected a number or null"
    return None


@contextmanager
def discard_new_sweep(out: Path) -> Iterator[None]:
    """Remove the sweep folder ``out`` when the block fails, if the block created it and nothing in
    it finished: no point and no training run (a sweep with either resumes from it, so it is kept)."""
    created = not out.exists()
    try:
        yield
    except BaseException:
        if created and out.is_dir() and not _anything_finished(out):
            shutil.rmtree(out, ignore_errors=True)
        raise


def _anything_finished(out: Path) -> bool:
    if any((out / "points").glob("*/row.json")):
        return True
    for manifest in (out / "runs").glob(f"*/{MANIFEST}"):
        try:
            if json.loads(manifest.read_text(encoding="utf-8")).get("status") == "complete":
                return True
        except (OSError, ValueError, AttributeError):
            continue
    return False

"""What feddp-eval refuses before it computes anything: impossible settings, hostile run files.

Settings: every number of an experiment must be finite and within a range that can run (a
``clip`` of ``inf`` turns every DP update into ±inf; a ``noise`` of 1e300 overflows the
accountant). Run directories: every file a stage reads is checked before it is trusted: JSON
metadata for its keys and types, file names for staying inside the run (no ``..``, no symlink
out, no device file), tensor files for their names and shapes against the model (read from the
safetensors header, before the data), and tensors for finiteness. Each refusal is one
:class:`~feddp_eval.errors.FeddpError` naming the file or the setting, what is wrong, and the fix.

Nothing here imports torch at module level.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import stat
import struct
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from feddp_eval.errors import NonFiniteError, RunDirError

if TYPE_CHECKING:
    from torch import Tensor

    from feddp_eval.config import ExperimentConfig, ModelConfig

# Largest values that still describe a run this toolkit can finish (and its accountant can
# account): far beyond any real experiment, far below where arithmetic overflows.
INT_LIMITS: dict[str, int] = {
    "seed": 2**62,
    "data.sites": 1024,
    "data.train_tiles": 1_000_000,
    "data.test_tiles": 1_000_000,
    "data.tile_size": 4096,
    "model.depth": 10,
    "model.width": 4096,
    "model.groups": 4096,
    "train.rounds": 1_000_000,
    "train.local_epochs": 100_000,
    "train.local_steps": 10_000_000,
    "train.batch_size": 1_000_000,
    "attack.iterations": 100_000_000,
    "attack.restarts": 4096,
    "attack.target_site": 1023,
    "attack.target_round": 1_000_000,
    "attack.imprint_bins": 1_000_000,
}
MAX_NOISE = 1e6  # σ: beyond this every update is noise; the accountant overflows near 1e150
MAX_TARGET_EPSILON = 1e6
MAX_HEADER_BYTES = 100 * 2**20  # a safetensors header larger than this is not ours


# --------------------------------------------------------------------------- settings


def setting_problems(config: ExperimentConfig) -> list[str]:
    """Every number of ``config`` that is not finite or out of the range a run can use.

    Returns:
        One message per offending setting, naming it, its value and the allowed range.
    """
    problems: list[str] = []
    for name, value in _numbers(config):
        if isinstance(value, float) and not math.isfinite(value):
            problems.append(f"`{name}` must be a finite number, but got {value}")
        elif isinstance(value, int) and not isinstance(value, bool):
            limit = INT_LIMITS.get(name)
            if limit is not None and abs(value) > limit:
                problems.append(f"`{name}` must be at most {limit}, but got {value}")
    d = config.defense
    if math.isfinite(d.noise) and d.noise > MAX_NOISE:
        problems.append(
            f"`defense.noise` must be at most {MAX_NOISE:g} (beyond it every update is pure noise), "
            f"but got {d.noise:g}"
        )
    if math.isfinite(d.noise) and math.isfinite(d.clip) and not math.isfinite(d.noise * d.clip):
        problems.append(f"`defense.noise` × `defense.clip` overflows ({d.noise:g} × {d.clip:g}); lower them")
    eps = d.target_epsilon
    if eps is not None and math.isfinite(eps) and eps > MAX_TARGET_EPSILON:
        problems.append(
            f"`defense.target_epsilon` must be at most {MAX_TARGET_EPSILON:g} (no privacy is left "
            f"above it; use defense `none`), but got {eps:g}"
        )
    return problems


def _numbers(config: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted name, value) of every number in a config dataclass; list items share their field's name."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        name = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            yield from _numbers(value, f"{name}.")
        elif isinstance(value, tuple | list):
            yield from ((name, v) for v in value if isinstance(v, int | float))
        elif isinstance(value, int | float):
            yield name, value


def merge_problems(first: Sequence[str], rest: Sequence[str]) -> list[str]:
    """``first`` then every problem of ``rest`` about a setting ``first`` does not already name."""
    named = {p.split("`")[1] for p in first if p.count("`") >= 2}
    return [*first, *(p for p in rest if p.count("`") < 2 or p.split("`")[1] not in named)]


# --------------------------------------------------------------------------- finiteness


def require_finite(tensors: Mapping[str, Tensor], *, what: str, fix: str) -> None:
    """Refuse a set of tensors holding NaN or inf.

    Args:
        tensors: Named tensors (weights or an update).
        what: Where they come from, for the message (``"the update site 1 released in round 2"``).
        fix: What the user can do about it.

    Raises:
        NonFiniteError: Naming ``what``, the first non-finite tensor and how many values are bad.
    """
    import torch

    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise NonFiniteError(f"{what} is not finite ({bad} NaN/inf values in `{name}`); {fix}")


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


def expected_shapes(
    model: ModelConfig, *, tile_size: int, imprint: Mapping[str, Any] | None = None
) -> dict[str, tuple[int, ...]]:
    """Names and shapes of the tensors a captured update (or the weights sent) must hold.

    An honest server's are the U-Net's parameters; a malicious server's imprinted model adds an
    ``imprint.`` block of ``imprint["bins"]`` bins and prefixes the U-Net's with ``body.``.
    """
    from feddp_eval.models.unet import UNet

    net = UNet(depth=model.depth, width=model.width, groups=model.groups, activation=model.activation)
    shapes = {name: tuple(p.shape) for name, p in net.named_parameters()}
    if imprint is None:
        return shapes
    bins, features = int(imprint.get("bins", 0)), 3 * tile_size * tile_size
    return {
        **{f"body.{name}": shape for name, shape in shapes.items()},
        "imprint.encoder.weight": (bins, features),
        "imprint.encoder.bias": (bins,),
        "imprint.decoder.weight": (features, bins),
    }


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


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def capture_problems(metadata: Any) -> list[str]:
    """What is wrong with a capture's metadata (keys, types, ranges); empty when it can be used."""
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
        or not all(isinstance(b, list) and b and all(_is_int(i) and i >= 0 for i in b) for b in batches)
    ):
        problems.append(
            f"`batches` must be a non-empty list of lists of tile indices, but got {batches!r:.80}"
        )
    if not _is_number(metadata.get("lr")):
        problems.append(f"`lr` must be a finite number, but got {metadata.get('lr')!r}")
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


def read_sites(run_dir: Path) -> list[dict[str, Any]]:
    """A run's ``sites.json``, checked: one entry per site with its index, tile counts and public colours.

    Raises:
        RunDirError: Naming the file and the first entry that is malformed.
    """
    from feddp_eval.io import read_json

    path = run_dir / "sites.json"
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
    from feddp_eval.gate import METRICS

    for i, row in enumerate(rows):
        if not isinstance(row, dict) or not isinstance(row.get("defense"), str):
            raise RunDirError(
                f"{path}: row {i} is not a results row with a `defense` name; re-run the attack"
            )
        for metric in METRICS:
            value = row.get(metric)
            if value is not None and (not isinstance(value, int | float) or isinstance(value, bool)):
                raise RunDirError(
                    f"{path}: row {i} has {metric} = {value!r}, not a number; re-run the attack"
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
        manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (
        isinstance(manifest, dict)
        and manifest.get("config_hash") == config_hash
        and manifest.get("status") != "complete"
    )


def writable_dir(path: Path, *, what: str) -> None:
    """Refuse an output folder that exists as a file, or whose nearest existing parent is read-only.

    Raises:
        OutputError: Naming ``path`` and the fix.
    """
    from feddp_eval.errors import OutputError

    if path.exists() and not path.is_dir():
        raise OutputError(f"{what} {path} is a file, not a folder; choose another location")
    probe = path
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise OutputError(
            f"{what} {path} cannot be written ({probe} is not writable); choose another location"
        )


# --------------------------------------------------------------------------- attacks that could not run

NOT_RUN = "not run"
# What an attack measures; absent (None) when it could not run, so no prior's number stands in.
ATTACK_METRICS = (
    "psnr",
    "ssim",
    "lpips",
    "mask_dice",
    "margin_psnr",
    "margin_ssim",
    "tiles_beating_prior",
    "tiles_exact",
    "tiles_read",
    "objective",
)


def unusable_view(view: Any) -> str | None:
    """Why a server view cannot be attacked (a non-finite update or weight), or ``None``."""
    try:
        require_finite(view.update, what="the captured update", fix="")
        require_finite(view.global_weights, what="the weights the server sent", fix="")
    except NonFiniteError as exc:
        return str(exc).split(";")[0]
    return None


def failed_reconstruction(stopped: str, objective: float, restart_objectives: Sequence[float]) -> str | None:
    """Why a reconstruction is no result: its loop stopped on a non-finite objective before any
    finite one (its images are still the starting guess), else ``None``."""
    finite = math.isfinite(objective) or any(math.isfinite(o) for o in restart_objectives)
    if stopped == "non-finite" and not finite:
        return "the attack objective was not finite from the first iteration"
    return None


def mark_not_run(row: dict[str, Any], reason: str) -> dict[str, Any]:
    """``row`` with every attack metric absent and ``stopped`` saying why the attack did not run."""
    return {**row, **{k: None for k in ATTACK_METRICS if k in row}, "stopped": f"{NOT_RUN}: {reason}"}


def not_run_reason(row: Mapping[str, Any]) -> str | None:
    """Why the attack of a results row could not run, or ``None`` when it ran."""
    stopped = row.get("stopped")
    if isinstance(stopped, str) and stopped.startswith(NOT_RUN):
        return stopped[len(NOT_RUN) :].lstrip(": ") or "unknown reason"
    return None


# --------------------------------------------------------------------------- the gate


def arm_problems(arms: Sequence[str], *, defenses: Sequence[str], attacks: Sequence[str]) -> list[str]:
    """Arms of a baseline that name no registered defense (``dp-sgd``) or attack (``imprint/dp-sgd``)."""
    problems = []
    for arm in dict.fromkeys(arms):
        attack, _, defense = arm.rpartition("/")
        if defense not in defenses:
            problems.append(f"arm `{arm}` names no defense; known defenses: {', '.join(defenses)}")
        elif attack and attack not in attacks:
            problems.append(f"arm `{arm}` names no attack; known attacks: {', '.join(attacks)}")
    return problems


def require_verdicts(verdicts: Sequence[Any], rows: Sequence[Mapping[str, Any]], *, source: str) -> None:
    """Refuse to pass or fail a gate when a bound has nothing to judge: an attack that could not run,
    an arm absent from the results, or a metric they do not hold.

    Raises:
        NoVerdictError: Naming the first such bound and why (exit 2, not 1: this is no regression).
    """
    from feddp_eval.errors import NoVerdictError

    for row in rows:
        reason = not_run_reason(row)
        if reason is not None:
            arm = f"{row.get('attack')}/{row.get('defense')}"
            raise NoVerdictError(f"{source}: the attack of arm {arm} could not run ({reason}); no verdict")
    for verdict in verdicts:
        if verdict.value is not None and math.isnan(verdict.value):
            raise NoVerdictError(
                f"{source}: arm {verdict.bound.arm} has {verdict.bound.metric} = NaN, which no bound can "
                "judge; re-run the attack"
            )
        if verdict.value is None:
            raise NoVerdictError(
                f"{source}: no verdict on {verdict.message}; fix the baseline or the results"
            )


# --------------------------------------------------------------------------- fail fast


def planned_sites(data: Any) -> int | None:
    """How many sites a run of ``data`` will have, known without loading a tile (``None``: unknown)."""
    if data.source == "synthetic":
        return int(data.sites)
    root = Path(data.source)
    if not root.is_dir():
        return None
    if (root / "images").is_dir() or (root / "masks").is_dir():
        return int(data.sites)
    try:
        return sum(
            1
            for p in root.iterdir()
            if p.is_dir()
            and not p.name.startswith(".")
            and ((p / "images").is_dir() or (p / "masks").is_dir())
        )
    except OSError:
        return None


def target_problem(config: ExperimentConfig) -> str | None:
    """Why ``attack.target_site`` cannot name a site of this run (checked before any training)."""
    n = planned_sites(config.data)
    site = config.attack.target_site
    if n is not None and n > 0 and site >= n:
        return f"`attack.target_site` is {site} but the run has {n} sites (0..{n - 1}; -1 = the smallest)"
    return None


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
    """Remove the sweep folder ``out`` when the block fails, if the block created it and no point
    finished in it (a resumable sweep with finished points is always kept)."""
    created = not out.exists()
    try:
        yield
    except BaseException:
        if created and out.is_dir() and not any((out / "points").glob("*/row.json")):
            shutil.rmtree(out, ignore_errors=True)
        raise


def sampling_problem(config: ExperimentConfig) -> str | None:
    """Why the target site takes no part in the target round (client sampling is seeded, so this
    is known before training), or ``None`` (also when the target cannot be resolved yet)."""
    t, a, d = config.train, config.attack, config.data
    if t.client_fraction >= 1:
        return None
    n, site = planned_sites(d), a.target_site
    if site < 0 and d.source == "synthetic":
        counts = list(d.train_tiles) if isinstance(d.train_tiles, tuple) else [d.train_tiles] * d.sites
        site = min(range(len(counts)), key=lambda i: (counts[i], i))
    if n is None or not 0 <= site < n:
        return None
    from feddp_eval.federated.loop import sample_clients
    from feddp_eval.seeding import generator

    chosen = sample_clients(n, t.client_fraction, generator(config.seed, "clients", a.target_round))
    if site in chosen:
        return None
    return (
        f"site {site} takes no part in round {a.target_round} (`train.client_fraction` = "
        f"{t.client_fraction:g} samples sites {chosen}); pick another `attack.target_round` or "
        "`attack.target_site`"
    )

"""Run directories: what a run wrote, whether it finished, and its manifest."""

from __future__ import annotations

import platform
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from feddp_eval import __version__
from feddp_eval.config import ExperimentConfig, config_hash, to_toml
from feddp_eval.errors import OutputError, RunDirError
from feddp_eval.io import atomic_write_text, is_atomic_leftover, read_json, write_json
from feddp_eval.rundir.check import summary_problem
from feddp_eval.rundir.names import CONFIG, MANIFEST, SUMMARY, run_key, short
from feddp_eval.rundir.summary import TrainSummary

_PACKAGES = ("torch", "numpy", "opacus", "scipy", "scikit-image", "safetensors")


def default_run_dir(config: ExperimentConfig, root: str | Path = "runs") -> Path:
    """``runs/<first 12 hex digits of the config hash>``."""
    return Path(root) / run_key(config)


def finished_summary(run_dir: Path, config: ExperimentConfig) -> TrainSummary | None:
    """The summary of a finished run of exactly this config in ``run_dir``, else ``None``.

    Raises:
        RunDirError: ``run_dir`` holds something else (another config, or not a run at all).
    """
    if not _holds_anything(run_dir):
        return None
    if not (run_dir / CONFIG).exists():
        raise RunDirError(f"{run_dir} is not empty and holds no feddp-eval run; choose another --out")
    manifest = read_json(run_dir / MANIFEST) if (run_dir / MANIFEST).exists() else {}
    if not isinstance(manifest, dict) or not isinstance(manifest.get("config_hash", ""), str):
        raise RunDirError(
            f"{run_dir / MANIFEST} is not a run manifest; pass --force to retrain, or choose another --out"
        )
    wanted = config_hash(config)
    if manifest.get("config_hash") not in (None, wanted):
        raise RunDirError(
            f"{run_dir} holds a run of another config (hash {short(manifest['config_hash'])}, this one "
            f"{short(wanted)}); choose another --out, or pass --force to replace it"
        )
    if manifest.get("status") == "complete" and (run_dir / SUMMARY).exists():
        summary = read_json(run_dir / SUMMARY)
        if (problem := summary_problem(summary)) is not None:
            raise RunDirError(
                f"{run_dir / SUMMARY} {problem}; retrain it (`feddp-eval train --force --out {run_dir}`) "
                "or delete the folder"
            )
        return TrainSummary.from_json(summary)
    return None


def prepare_run_dir(run_dir: Path, config: ExperimentConfig, *, force: bool = False) -> None:
    """Empty ``run_dir`` of an unfinished (or, with ``force``, any) earlier run and write the config."""
    if run_dir.is_dir() and (force or (run_dir / CONFIG).exists() or not _holds_anything(run_dir)):
        if not (run_dir / CONFIG).exists() and _holds_anything(run_dir):
            raise RunDirError(f"{run_dir} is not empty and holds no feddp-eval run; refusing to delete it")
        shutil.rmtree(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(
            f"cannot create run directory {run_dir} ({exc.strerror or exc}); choose a writable --out"
        ) from None
    atomic_write_text(run_dir / CONFIG, to_toml(config))


def _holds_anything(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds more than the temporary files of a write that a kill interrupted.

    A sweep or train killed while it wrote the run's first file (``config.toml``) leaves only such a
    file; the folder is then an unstarted run, not a stranger's folder.
    """
    return run_dir.is_dir() and any(not is_atomic_leftover(entry) for entry in run_dir.iterdir())


def write_manifest(
    run_dir: Path,
    config: ExperimentConfig,
    *,
    device: str,
    started: float,
    status: str,
    extra: dict[str, Any] | None = None,
) -> None:
    """Seed, versions, git revision, config hash, times and device of a run."""
    finished = time.time()
    write_json(
        run_dir / MANIFEST,
        {
            "feddp_eval": __version__,
            "status": status,
            "config_hash": config_hash(config),
            "seed": config.seed,
            "device": device,
            "started": _iso(started),
            "finished": _iso(finished),
            "seconds": round(finished - started, 3),
            "command": sys.argv,
            "python": platform.python_version(),
            "platform": platform.platform(),
            "packages": {name: _version(name) for name in _PACKAGES},
            "git_revision": _git_revision(),
            **(extra or {}),
        },
    )


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _git_revision() -> str | None:
    source = Path(__file__).resolve().parents[2]  # the checkout holding feddp_eval/
    try:
        out = subprocess.run(
            ["git", "-C", str(source), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None

"""What every hostile-input test shares: invoking the CLI and the shape of a refusal."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from typer.testing import CliRunner

from feddp_eval.cli import app

runner = CliRunner()


@dataclass(frozen=True)
class Outcome:
    code: int
    stdout: str
    stderr: str
    exception: BaseException | None


def invoke(args: list[str | Path]) -> Outcome:
    result = runner.invoke(app, [str(a) for a in args])
    stderr = result.stderr if hasattr(result, "stderr") else result.output
    return Outcome(result.exit_code, result.stdout, stderr, result.exception)


def assert_refused(outcome: Outcome, needle: str, *, code: int = 2) -> None:
    """Exit ``code``, one error line naming ``needle``, and no traceback."""
    shown = f"exit {outcome.code}\nstdout: {outcome.stdout}\nstderr: {outcome.stderr}"
    assert outcome.exception is None or isinstance(outcome.exception, SystemExit), (
        f"{shown}\nexception: {outcome.exception!r}"
    )
    assert outcome.code == code, shown
    assert "Traceback" not in outcome.stdout + outcome.stderr, shown
    lines = [line for line in outcome.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), shown
    assert needle in lines[0], shown


def _copy(attacked: dict[str, Path], tmp_path: Path) -> tuple[Path, Path]:
    """A private copy of the attacked runs: (out folder, run directory)."""
    out = tmp_path / "runs"
    shutil.copytree(attacked["out"], out, symlinks=True)
    return out, tmp_path / attacked["run"]


def _attack_again(attacked: dict[str, Path], out: Path) -> Outcome:
    return invoke(["attack", "--config", attacked["toml"], "--no-reference", "--out", out, "--quiet"])


def _folder(tmp_path: Path, sizes: list[int]) -> Path:
    from PIL import Image

    root = tmp_path / "data"
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True)
    for i, size in enumerate(sizes):
        Image.new("RGB", (size, size), (200, 100, 150)).save(root / "images" / f"t{i}.png")
        Image.new("L", (size, size), 1).save(root / "masks" / f"t{i}.png")
    return root

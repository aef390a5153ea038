"""Hostile inputs, run directories: a damaged capture, ground truth or link is refused by name (issue #16)."""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from feddp_eval.io import load_tensors, save_tensors
from tests.hostile.helpers import _attack_again, _copy, assert_refused, invoke

CAPTURE = "captures/round-0001"


def _meta(run: Path) -> Path:
    return run / CAPTURE / "site-1.json"


def _edit_meta(run: Path, **changes: object) -> None:
    path = _meta(run)
    meta = json.loads(path.read_text())
    meta.update(changes)
    path.write_text(json.dumps(meta))


def _edit_tensors(path: Path, edit: Callable[[dict[str, torch.Tensor]], object]) -> None:
    tensors = load_tensors(path)
    edit(tensors)
    save_tensors(path, tensors)


def _first_param(t: dict[str, torch.Tensor]) -> str:
    return sorted(t)[0]


# Each corrupts a copy of a finished run; `attack` reuses the run and must refuse the file by name.
def _truncate(run: Path) -> None:
    path = run / CAPTURE / "site-1.safetensors"
    path.write_bytes(path.read_bytes()[:100])


def _garbage(run: Path) -> None:
    (run / CAPTURE / "site-1.safetensors").write_bytes(b"\x00\xff garbage " * 50)


def _drop_tensor(run: Path) -> None:
    _edit_tensors(run / CAPTURE / "site-1.safetensors", lambda t: t.pop(_first_param(t)))


def _wrong_shape(run: Path) -> None:
    def edit(t: dict[str, torch.Tensor]) -> None:
        name = _first_param(t)
        t[name] = torch.zeros(t[name].numel() + 1)

    _edit_tensors(run / CAPTURE / "site-1.safetensors", edit)


def _oversized(run: Path) -> None:
    path = run / CAPTURE / "site-1.safetensors"
    with open(path, "ab") as handle:
        handle.write(b"\x00" * (3 * 2**20))


def _pickle_payload(run: Path) -> None:
    import pickle

    (run / CAPTURE / "site-1.safetensors").write_bytes(pickle.dumps({"x": 1}))


def _symlink_out(run: Path) -> None:
    outside = run.parent.parent / "outside.safetensors"
    shutil.copy(run / CAPTURE / "site-1.safetensors", outside)
    (run / CAPTURE / "site-1.safetensors").unlink()
    (run / CAPTURE / "site-1.safetensors").symlink_to(outside)


def _ground_truth_gone(run: Path) -> None:
    (run / "ground_truth/site-1.safetensors").unlink()


def _ground_truth_shape(run: Path) -> None:
    save_tensors(run / "ground_truth/site-1.safetensors", {"images": torch.zeros(3, 3, 8, 8)})


def _ground_truth_oversized(run: Path) -> None:
    with open(run / "ground_truth/site-1.safetensors", "ab") as handle:
        handle.write(b"\x00" * (2 * 2**20))


def _ground_truth_nan(run: Path) -> None:
    def edit(t: dict[str, torch.Tensor]) -> None:
        t["images"].view(-1)[0] = math.nan

    _edit_tensors(run / "ground_truth/site-1.safetensors", edit)


def _half_update(run: Path) -> None:
    def edit(t: dict[str, torch.Tensor]) -> None:
        for name in t:
            t[name] = t[name].half()

    _edit_tensors(run / CAPTURE / "site-1.safetensors", edit)


def _swap_for_link(path: Path, target: str | None = None) -> None:
    """Replace ``path`` by a symlink to ``target`` (default: a copy of it outside the run)."""
    if target is None:
        outside = path.parents[3] / f"outside-{path.name}"
        shutil.copy(path, outside)
        target = str(outside)
    path.unlink()
    path.symlink_to(target)


RUN_CORRUPTIONS: dict[str, tuple[Callable[[Path], object], str]] = {
    "update-truncated": (_truncate, "site-1.safetensors"),
    "update-garbage": (_garbage, "site-1.safetensors"),
    "update-missing-tensor": (_drop_tensor, "site-1.safetensors"),
    "update-wrong-shape": (_wrong_shape, "site-1.safetensors"),
    "update-oversized": (_oversized, "site-1.safetensors"),
    "update-is-a-pickle": (_pickle_payload, "site-1.safetensors"),
    "update-symlink-out": (_symlink_out, "outside the run directory"),
    "meta-not-json": (lambda r: _meta(r).write_text("{not json"), "site-1.json"),
    "meta-binary": (lambda r: _meta(r).write_bytes(b"\xff\xfe\x00"), "site-1.json"),
    "meta-a-list": (lambda r: _meta(r).write_text("[1, 2]"), "site-1.json"),
    "meta-batches-mistyped": (lambda r: _edit_meta(r, batches="all"), "batches"),
    "meta-round-mistyped": (lambda r: _edit_meta(r, round="one"), "round"),
    "meta-lr-nan": (
        lambda r: _meta(r).write_text(_meta(r).read_text().replace('"lr": 0.01', '"lr": NaN')),
        "lr",
    ),
    "meta-batch-index-out-of-range": (lambda r: _edit_meta(r, batches=[[0, 999]]), "out of range"),
    "meta-update-file-dotdot": (
        lambda r: _edit_meta(r, update_file="../../../../etc/hostname"),
        "update_file",
    ),
    "meta-update-file-absolute": (lambda r: _edit_meta(r, update_file="/etc/hostname"), "update_file"),
    "meta-global-file-device": (lambda r: _edit_meta(r, global_file="/dev/zero"), "global_file"),
    "meta-global-file-missing": (lambda r: _edit_meta(r, global_file="nope.safetensors"), "global_file"),
    "meta-update-file-a-folder": (lambda r: _edit_meta(r, update_file="."), "update_file"),
    "ground-truth-missing": (_ground_truth_gone, "ground_truth/site-1.safetensors"),
    "ground-truth-wrong-shape": (_ground_truth_shape, "ground_truth/site-1.safetensors"),
    "ground-truth-oversized": (_ground_truth_oversized, "ground_truth/site-1.safetensors"),
    "ground-truth-nan": (_ground_truth_nan, "NaN or inf pixels"),
    "ground-truth-symlink-out": (lambda r: _swap_for_link(r / "ground_truth/site-1.safetensors"), "outside"),
    "sites-a-device": (lambda r: _swap_for_link(r / "sites.json", "/dev/zero"), "sites.json"),
    "summary-a-device": (lambda r: _swap_for_link(r / "summary.json", "/dev/zero"), "summary.json"),
    "meta-a-device": (lambda r: _swap_for_link(_meta(r), "/dev/zero"), "site-1.json"),
    "update-float16": (_half_update, "site-1.safetensors"),
    "meta-batch-size-zero": (lambda r: _edit_meta(r, batch_size=0), "batch_size"),
    # Values of the right type that no client could have trained with (issue #21).
    "meta-lr-impossible": (lambda r: _edit_meta(r, lr=1e30), "`lr` = 1e+30 is outside"),
    "meta-lr-negative": (lambda r: _edit_meta(r, lr=-0.01), "`lr` = -0.01 is outside"),
    "meta-steps-not-the-batches": (lambda r: _edit_meta(r, local_steps=50), "`local_steps` = 50 but"),
    "meta-samples-absurd": (lambda r: _edit_meta(r, n_samples=10**12), "`n_samples` = 1000000000000"),
    "meta-momentum-one": (lambda r: _edit_meta(r, momentum=1.5), "`momentum` = 1.5 is outside"),
    "meta-round-absurd": (lambda r: _edit_meta(r, round=10**9), "`round` = 1000000000 is outside"),
    "captures-gone": (lambda r: shutil.rmtree(r / "captures"), "captures"),
    "sites-not-json": (lambda r: (r / "sites.json").write_text("]"), "sites.json"),
    "sites-mistyped": (lambda r: (r / "sites.json").write_text('[{"index": 0}]'), "sites.json"),
    "summary-garbage": (lambda r: (r / "summary.json").write_text('{"dice": "high"}'), "summary.json"),
    "manifest-a-list": (lambda r: (r / "manifest.json").write_text("[]"), "manifest.json"),
}


@pytest.mark.parametrize("case", sorted(RUN_CORRUPTIONS))
def test_corrupt_run_directory_is_refused_by_name(
    case: str, attacked: dict[str, Path], tmp_path: Path
) -> None:
    corrupt, needle = RUN_CORRUPTIONS[case]
    out, run = _copy(attacked, tmp_path)
    corrupt(run)
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    assert_refused(_attack_again(attacked, out), needle)
    assert (run / "summary.json").exists()  # a finished run is never deleted for a bad capture
    after = sorted(p.relative_to(out) for p in out.rglob("*") if "attacks" not in p.parts)
    assert set(after) <= set(before)


@pytest.mark.parametrize(
    ("case", "edit", "where"),
    [
        ("update-nan", "update", math.nan),
        ("update-inf", "update", math.inf),
        ("global-inf", "global", math.inf),
    ],
)
def test_non_finite_capture_is_not_scored(
    case: str, edit: str, where: float, attacked: dict[str, Path], tmp_path: Path
) -> None:
    """A NaN/inf update or weight: the attack says it did not run; no PSNR of the prior stands in."""
    out, run = _copy(attacked, tmp_path)
    name = "site-1.safetensors" if edit == "update" else "global.safetensors"

    def poison(t: dict[str, torch.Tensor]) -> None:
        t[_first_param(t)].view(-1)[0] = where

    _edit_tensors(run / CAPTURE / name, poison)
    result = invoke(
        ["attack", "--config", attacked["toml"], "--no-reference", "--out", out, "--json", "--quiet"]
    )
    assert result.code == 0 and "Traceback" not in result.stderr, result.stderr
    [row] = json.loads(result.stdout)["rows"]
    assert row["stopped"].startswith("not run: ") and "not finite" in row["stopped"]
    assert row["psnr"] is None and row["ssim"] is None and row["margin_psnr"] is None
    assert row["tiles_beating_prior"] is None and row["prior_psnr"] is not None
    table = invoke(["attack", "--config", attacked["toml"], "--no-reference", "--out", out])
    assert "attack not run on dp-sgd" in table.stdout
    # check refuses to judge it (exit 2), the report lists it
    baseline = tmp_path / "baseline.toml"
    baseline.write_text(f'scenario = "{attacked["toml"]}"\n[arms.dp-sgd]\npsnr_max = 30\n')
    results = json.loads(result.stdout)["run_dir"]
    assert_refused(invoke(["check", "--baseline", baseline, "--results", results]), "could not run")
    report = invoke(["report", results, "-o", tmp_path / "r.pdf", "--json"])
    assert report.code == 0, report.stderr
    assert any("attack not run" in m for m in json.loads(report.stdout)["missing"])

"""Unit tests of the refusal helpers: settings ranges, not-run rows, arms, files inside a run."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch

from feddp_eval.config import ExperimentConfig, validate
from feddp_eval.config.validation import merge_problems, setting_problems
from feddp_eval.errors import NonFiniteError, RunDirError
from feddp_eval.federated.finite import require_finite
from feddp_eval.gate import arm_problems
from feddp_eval.io import save_tensors
from feddp_eval.rundir.check import capture_problems, inside, safetensors_shapes
from feddp_eval.schema import mark_not_run, not_run_reason
from feddp_eval.workflows.attack_run import failed_reconstruction


def test_defaults_have_no_setting_problem() -> None:
    assert setting_problems(validate(ExperimentConfig())) == []


def test_setting_problems_name_each_setting_and_value() -> None:
    config = ExperimentConfig()
    hostile = dataclasses.replace(
        config,
        defense=dataclasses.replace(config.defense, clip=math.inf, noise=2e6),
        train=dataclasses.replace(config.train, rounds=10**9),
    )
    assert setting_problems(hostile) == [
        "`train.rounds` must be at most 1000000, but got 1000000000",
        "`defense.noise` must be at most 1e+06 (beyond it every update is pure noise), but got 2e+06",
        "`defense.clip` must be a finite number, but got inf",
    ]


def test_merge_problems_keeps_one_message_per_setting() -> None:
    merged = merge_problems(["`a.b` must be finite"], ["`a.b` must be > 0", "`c` must be >= 1"])
    assert merged == ["`a.b` must be finite", "`c` must be >= 1"]


def test_require_finite_counts_the_bad_values() -> None:
    with pytest.raises(NonFiniteError, match=r"round 2 is not finite \(2 NaN/inf values in `w`\)"):
        require_finite({"w": torch.tensor([1.0, math.nan, math.inf])}, what="round 2", fix="fix it")
    require_finite({"w": torch.ones(3), "steps": torch.tensor([1])}, what="ok", fix="")


def test_not_run_rows_lose_every_attack_metric_but_keep_the_prior() -> None:
    row = {"psnr": 14.2, "ssim": 0.3, "prior_psnr": 13.9, "margin_psnr": 0.3, "stopped": "budget"}
    marked = mark_not_run(row, "the captured update is not finite")
    assert marked == {
        "psnr": None,
        "ssim": None,
        "prior_psnr": 13.9,
        "margin_psnr": None,
        "stopped": "not run: the captured update is not finite",
    }
    assert not_run_reason(marked) == "the captured update is not finite"
    assert not_run_reason(row) is None and not_run_reason({}) is None


def test_failed_reconstruction_only_when_no_objective_was_ever_finite() -> None:
    assert failed_reconstruction("non-finite", math.nan, [math.nan, math.inf]) is not None
    assert failed_reconstruction("non-finite", 0.4, [0.4, math.nan]) is None  # kept its best iterate
    assert failed_reconstruction("analytic", math.nan, []) is None  # imprint has no objective


def test_arm_problems_name_unknown_defenses_and_attacks() -> None:
    problems = arm_problems(
        ["none", "dp-sgd", "dp-sgdd", "imprint/dp-sgd", "nope/none"],
        defenses=["none", "dp-sgd"],
        attacks=["imprint", "dlg"],
    )
    assert len(problems) == 2
    assert problems[0].startswith("arm `dp-sgdd` names no defense")
    assert problems[1].startswith("arm `nope/none` names no attack")


def test_inside_accepts_a_sibling_and_refuses_escapes(tmp_path: Path) -> None:
    run = tmp_path / "run"
    folder = run / "captures" / "round-0001"
    folder.mkdir(parents=True)
    (folder / "site-1-global.safetensors").write_bytes(b"x")
    (tmp_path / "secret").write_bytes(b"x")
    source = folder / "site-1.json"
    found = inside(folder, "site-1-global.safetensors", what="global_file", source=source, root=run)
    assert found == (folder / "site-1-global.safetensors").resolve()
    for name in ("../../../secret", str(tmp_path / "secret"), "", None, "missing"):
        with pytest.raises(RunDirError, match="global_file"):
            inside(folder, name, what="global_file", source=source, root=run)
    (folder / "link").symlink_to(tmp_path / "secret")
    with pytest.raises(RunDirError, match="outside the run directory"):
        inside(folder, "link", what="global_file", source=source, root=run)


def test_safetensors_shapes_reads_the_header_only(tmp_path: Path) -> None:
    path = tmp_path / "t.safetensors"
    save_tensors(path, {"a": torch.zeros(2, 3), "b": torch.zeros(4)})
    assert safetensors_shapes(path, max_bytes=10_000) == {"a": (2, 3), "b": (4,)}
    with pytest.raises(RunDirError, match="more than the 10 the model explains"):
        safetensors_shapes(path, max_bytes=10)
    with pytest.raises(RunDirError, match="dtype F32"):
        safetensors_shapes(path, max_bytes=10_000, dtypes=("F16",))


def test_capture_problems_lists_every_bad_field() -> None:
    problems = capture_problems({"round": "1", "batches": [[0, -1]], "optimizer": "rmsprop"})
    joined = "\n".join(problems)
    for field in ("`round`", "`site_index`", "`batches`", "`optimizer`", "`lr`", "`update_file`"):
        assert field in joined
    assert capture_problems([1]) == ["must be a JSON object, but holds list"]

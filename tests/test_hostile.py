"""Hostile inputs: each gives exit 2 (or a clearly flagged result), one line naming the file or the
setting, no traceback, and nothing half-written left behind (issue #16)."""

from __future__ import annotations

import json
import math
import os
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from feddp_eval.cli import app
from feddp_eval.config import ExperimentConfig, config_hash, to_toml, with_overrides
from feddp_eval.io import load_tensors, save_tensors

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


# --------------------------------------------------------------------------- shared runs


@pytest.fixture(scope="module")
def attacked(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> dict[str, Path]:
    """One finished tiny dp-sgd run attacked once: the run, its results and the config, to copy."""
    from feddp_eval.config import from_dict, validate
    from feddp_eval.pipeline import run_attack
    from tests.conftest import TINY

    root = tmp_path_factory.mktemp("attacked")
    config = with_overrides(
        validate(from_dict(ExperimentConfig, TINY)),
        {
            "train.rounds": 1,
            "attack.iterations": 2,
            "attack.target_site": 1,
            "defense.name": "dp-sgd",
            "defense.noise": 1.1,
        },
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    result = run_attack(config, out=root / "runs", reference=False)
    torch.set_num_threads(threads)
    toml = root / "exp.toml"
    toml.write_text(to_toml(config))
    return {
        "out": root / "runs",
        "run": Path(f"runs/{config_hash(config)[:12]}"),
        "results": Path("runs") / result.out_dir.name,
        "toml": toml,
    }


def _copy(attacked: dict[str, Path], tmp_path: Path) -> tuple[Path, Path]:
    """A private copy of the attacked runs: (out folder, run directory)."""
    out = tmp_path / "runs"
    shutil.copytree(attacked["out"], out, symlinks=True)
    return out, tmp_path / attacked["run"]


def _attack_again(attacked: dict[str, Path], out: Path) -> Outcome:
    return invoke(["attack", "--config", attacked["toml"], "--no-reference", "--out", out, "--quiet"])


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


# --------------------------------------------------------------------------- settings


SETTINGS: dict[str, tuple[list[str], str]] = {
    "clip-inf": (["--noise", "1.1", "--clip", "inf"], "defense.clip"),
    "target-epsilon-inf": (["--target-epsilon", "inf"], "defense.target_epsilon"),
    "target-epsilon-negative": (["--target-epsilon", "-1"], "defense.target_epsilon"),
    "target-epsilon-unreachable": (["--target-epsilon", "1e-300"], "target_epsilon"),
    "noise-times-clip-overflows": (["--noise", "1e6", "--clip", "1e305"], "defense.noise"),
    "local-dp-noise-overflows-float32": (
        ["--defense", "local-dp", "--noise", "1", "--clip", "1e300"],
        "not finite",
    ),
    "noise-1e300": (["--noise", "1e300"], "defense.noise"),
    "noise-nan": (["--noise", "nan"], "defense.noise"),
    "lr-inf": (["--lr", "inf"], "train.lr"),
    "lr-nan": (["--lr", "nan"], "train.lr"),
    "delta-nan": (["--noise", "1", "--delta", "nan"], "defense.delta"),
    "client-fraction-nan": (["--client-fraction", "nan"], "train.client_fraction"),
    "prune-ratio-inf": (["--defense", "prune", "--prune-ratio", "inf"], "defense.prune_ratio"),
    "rounds-huge": (["--rounds", str(10**12)], "train.rounds"),
    "tile-size-huge": (["--tile-size", str(2**40)], "data.tile_size"),
    "batch-size-zero": (["--batch-size", "0"], "train.batch_size"),
    "unknown-defense": (["--defense", "nope"], "nope"),
    "data-folder-missing": (["--data", "/nonexistent/folder"], "data.source"),
}


@pytest.mark.parametrize("case", sorted(SETTINGS))
def test_impossible_setting_is_refused_before_training(case: str, tiny_toml: Path, tmp_path: Path) -> None:
    flags, needle = SETTINGS[case]
    out = tmp_path / "run"
    assert_refused(invoke(["train", "--config", tiny_toml, "--out", out, "--quiet", *flags]), needle)
    assert not out.exists()


TOML_VALUES: dict[str, tuple[str, str, str]] = {
    "momentum-inf": ("train", "momentum = inf", "train.momentum"),
    "dice-weight-nan": ("train", "dice_weight = nan", "train.dice_weight"),
    "time-budget-inf": ("attack", "time_budget = inf", "attack.time_budget"),
    "imprint-gain-nan": ("attack", "imprint_gain = nan", "attack.imprint_gain"),
    "depth-huge": ("model", "depth = 1000000000000000", "model.depth"),
    "train-tiles-huge": ("data", "train_tiles = 9000000000000", "data.train_tiles"),
    "seed-huge": ("", "seed = 9000000000000000000", "seed"),
}


@pytest.mark.parametrize("case", sorted(TOML_VALUES))
def test_hostile_toml_value_is_refused(case: str, tiny_toml: Path, tmp_path: Path) -> None:
    section, line, needle = TOML_VALUES[case]
    text = tiny_toml.read_text()
    key = line.split(" = ")[0]
    lines = [ln for ln in text.splitlines() if not (ln.startswith(f"{key} = "))]
    if section:
        at = lines.index(f"[{section}]") + 1
        lines.insert(at, line)
    else:
        lines.insert(0, line)
    path = tmp_path / "hostile.toml"
    path.write_text("\n".join(lines) + "\n")
    out = tmp_path / "run"
    assert_refused(invoke(["train", "--config", path, "--out", out, "--quiet"]), needle)
    assert not out.exists()


def test_binary_config_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "exp.toml"
    path.write_bytes(b"\xff\xfe\x00\x01 binary")
    assert_refused(invoke(["train", "--config", path, "--out", tmp_path / "run", "-q"]), str(path))
    assert not (tmp_path / "run").exists()


def test_non_finite_training_stops_naming_round_and_site(tiny_toml: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    outcome = invoke(["train", "--config", tiny_toml, "--lr", "1e30", "--out", out, "--quiet"])
    assert_refused(outcome, "round 1")
    assert "site 0" in outcome.stderr and "not finite" in outcome.stderr
    assert not out.exists()  # never reported as a result


def test_unknown_attack_is_refused_before_training(tiny_toml: Path, tmp_path: Path) -> None:
    out = tmp_path / "runs"
    assert_refused(invoke(["attack", "--config", tiny_toml, "--attack", "nope", "--out", out, "-q"]), "nope")
    assert not out.exists()


def test_target_site_out_of_range_is_refused_before_training(tiny_toml: Path, tmp_path: Path) -> None:
    out = tmp_path / "runs"
    outcome = invoke(["attack", "--config", tiny_toml, "--target-site", "7", "--out", out, "-q"])
    assert_refused(outcome, "attack.target_site")
    assert not out.exists()


def test_target_site_not_sampled_in_the_target_round_is_refused_before_training(
    tiny_toml: Path, tmp_path: Path
) -> None:
    from feddp_eval.federated.loop import sample_clients
    from feddp_eval.seeding import generator

    chosen = sample_clients(2, 0.5, generator(3, "clients", 1))  # tiny: seed 3, two sites
    absent = 1 - chosen[0]
    out = tmp_path / "runs"
    flags = ["--target-site", str(absent), "--target-round", "1", "--out", out, "-q"]
    toml = tmp_path / "half.toml"
    toml.write_text(tiny_toml.read_text().replace("client_fraction = 1.0", "client_fraction = 0.5"))
    assert_refused(invoke(["attack", "--config", toml, *flags]), f"site {absent} takes no part in round 1")
    assert not out.exists()


# --------------------------------------------------------------------------- data folders


def _folder(tmp_path: Path, sizes: list[int]) -> Path:
    from PIL import Image

    root = tmp_path / "data"
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True)
    for i, size in enumerate(sizes):
        Image.new("RGB", (size, size), (200, 100, 150)).save(root / "images" / f"t{i}.png")
        Image.new("L", (size, size), 1).save(root / "masks" / f"t{i}.png")
    return root


def test_one_pixel_image_is_refused_by_name(tiny_toml: Path, tmp_path: Path) -> None:
    data = _folder(tmp_path, [32, 32, 1, 32])
    out = tmp_path / "run"
    outcome = invoke(["train", "-c", tiny_toml, "--data", data, "--sites", "1", "--out", out, "-q"])
    assert_refused(outcome, "t2.png")
    assert "1x1" in outcome.stderr and not out.exists()


def test_garbage_image_is_refused_by_name(tiny_toml: Path, tmp_path: Path) -> None:
    data = _folder(tmp_path, [32, 32, 32])
    (data / "images" / "t1.png").write_bytes(b"not a png at all")
    out = tmp_path / "run"
    assert_refused(
        invoke(["train", "-c", tiny_toml, "--data", data, "--sites", "1", "--out", out, "-q"]), "t1.png"
    )
    assert not out.exists()


# --------------------------------------------------------------------------- output locations


def test_output_under_a_file_is_refused_and_leaves_nothing(tiny_toml: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    outcome = invoke(["train", "--config", tiny_toml, "--out", blocker / "run", "--quiet"])
    assert_refused(outcome, "file")
    assert blocker.read_text() == "x"


def test_read_only_output_is_refused_and_leaves_nothing(
    tiny_toml: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A folder the user may not write to (simulated: tests and CI run as root, who writes anywhere)."""
    locked = tmp_path / "locked"
    locked.mkdir()
    real_mkdir = Path.mkdir

    def mkdir(self: Path, *args: object, **kwargs: object) -> None:
        if locked in self.parents:
            raise PermissionError(13, "Permission denied", str(self))
        real_mkdir(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "mkdir", mkdir)
    assert_refused(invoke(["train", "--config", tiny_toml, "--out", locked / "run", "-q"]), "locked")
    assert not (locked / "run").exists()


def test_full_disk_mid_run_leaves_no_run(
    tiny_toml: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC part-way through writing the run: one line, and the half-written run is removed."""
    import errno

    import feddp_eval.io as io_module

    real, calls = os.fsync, {"n": 0}

    def fsync(fd: int) -> None:
        calls["n"] += 1
        if calls["n"] > 6:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(fd)

    monkeypatch.setattr(io_module.os, "fsync", fsync)
    out = tmp_path / "run"
    assert_refused(invoke(["train", "--config", tiny_toml, "--out", out, "--quiet"]), "No space left")
    assert not out.exists()


def test_files_follow_the_umask(tiny_toml: Path, tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        outcome = invoke(["train", "--config", tiny_toml, "--rounds", "1", "--out", tmp_path / "run", "-q"])
        assert outcome.code == 0, outcome.stderr
        modes = {stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "run").rglob("*") if p.is_file()}
        assert modes == {0o644}
        os.umask(0o077)
        (tmp_path / "run" / "summary.json").unlink()
        from feddp_eval.io import write_json

        write_json(tmp_path / "run" / "summary.json", {})
        assert stat.S_IMODE((tmp_path / "run" / "summary.json").stat().st_mode) == 0o600
    finally:
        os.umask(old)


# --------------------------------------------------------------------------- check


def _baseline(tmp_path: Path, attacked: dict[str, Path], arms: str, scenario: str | None = None) -> Path:
    path = tmp_path / "baseline.toml"
    path.write_text(f'scenario = "{scenario or attacked["toml"]}"\n{arms}')
    return path


def _results(attacked: dict[str, Path], tmp_path: Path) -> Path:
    _copy(attacked, tmp_path)
    return tmp_path / attacked["results"] / "results.json"


def test_check_passes_on_the_real_results(attacked: dict[str, Path], tmp_path: Path) -> None:
    baseline = _baseline(tmp_path, attacked, "[arms.dp-sgd]\npsnr_max = 99\n")
    outcome = invoke(["check", "--baseline", baseline, "--results", _results(attacked, tmp_path), "-q"])
    assert outcome.code == 0, outcome.stderr


CHECK_CASES: dict[str, tuple[str, Callable[[Path], object] | None, str]] = {
    "unknown-arm": ("[arms.dp-sgdd]\npsnr_max = 99\n", None, "dp-sgdd"),
    "unknown-attack-arm": ('[arms."nope/dp-sgd"]\npsnr_max = 99\n', None, "nope/dp-sgd"),
    "arm-absent-from-results": ("[arms.local-dp]\npsnr_max = 99\n", None, "no result row"),
    "results-garbage": ("[arms.dp-sgd]\npsnr_max = 99\n", lambda p: p.write_text("{{{"), "results.json"),
    "results-no-rows": (
        "[arms.dp-sgd]\npsnr_max = 99\n",
        lambda p: p.write_text('{"rows": 3}'),
        "results.json",
    ),
    "results-string-metric": (
        "[arms.dp-sgd]\npsnr_max = 99\n",
        lambda p: p.write_text(json.dumps({"rows": [{"defense": "dp-sgd", "psnr": "12 dB"}]})),
        "psnr",
    ),
    "results-nan-metric": (
        "[arms.dp-sgd]\npsnr_max = 99\n",
        lambda p: p.write_text('{"rows": [{"defense": "dp-sgd", "psnr": NaN}]}'),
        "NaN",
    ),
    "results-binary": (
        "[arms.dp-sgd]\npsnr_max = 99\n",
        lambda p: p.write_bytes(b"\xff\x00\xfe"),
        "results.json",
    ),
}


@pytest.mark.parametrize("case", sorted(CHECK_CASES))
def test_check_exits_2_when_no_verdict_is_possible(
    case: str, attacked: dict[str, Path], tmp_path: Path
) -> None:
    arms, corrupt, needle = CHECK_CASES[case]
    results = _results(attacked, tmp_path)
    if corrupt:
        corrupt(results)
    baseline = _baseline(tmp_path, attacked, arms)
    assert_refused(invoke(["check", "--baseline", baseline, "--results", results, "-q"]), needle)


def test_check_invalid_scenario_with_results_exits_2(attacked: dict[str, Path], tmp_path: Path) -> None:
    scenario = tmp_path / "bad.toml"
    scenario.write_text("[train]\nrounds = -3\n")
    baseline = _baseline(tmp_path, attacked, "[arms.dp-sgd]\npsnr_max = 99\n", scenario=str(scenario))
    outcome = invoke(["check", "--baseline", baseline, "--results", _results(attacked, tmp_path), "-q"])
    assert_refused(outcome, "train.rounds")


@pytest.mark.parametrize("kind", ["binary", "directory"])
def test_check_unreadable_baseline_exits_2(kind: str, tmp_path: Path) -> None:
    path = tmp_path / "baseline.toml"
    if kind == "binary":
        path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff")
    else:
        path.mkdir()
    assert_refused(invoke(["check", "--baseline", path]), str(path))


def test_check_unwritable_junit_exits_2(attacked: dict[str, Path], tmp_path: Path) -> None:
    baseline = _baseline(tmp_path, attacked, "[arms.dp-sgd]\npsnr_max = 99\n")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    outcome = invoke(
        [
            "check",
            "--baseline",
            baseline,
            "--results",
            _results(attacked, tmp_path),
            "--junit",
            blocker / "j.xml",
            "-q",
        ]
    )
    assert_refused(outcome, "j.xml")


@pytest.mark.parametrize("margin", ["nan", "inf", "-1"])
def test_write_baseline_refuses_a_hostile_margin(margin: str, tiny_toml: Path, tmp_path: Path) -> None:
    out = tmp_path / "runs"
    args = ["check", "--write-baseline", tmp_path / "b.toml", "--scenario", tiny_toml, "--out", out]
    assert_refused(invoke([*args, "--margin-psnr", margin, "-q"]), "--margin")
    assert not out.exists() and not (tmp_path / "b.toml").exists()


def test_check_regression_still_exits_1(attacked: dict[str, Path], tmp_path: Path) -> None:
    baseline = _baseline(tmp_path, attacked, "[arms.dp-sgd]\npsnr_max = 0.5\n")
    outcome = invoke(["check", "--baseline", baseline, "--results", _results(attacked, tmp_path), "-q"])
    assert outcome.code == 1 and "regression: arm dp-sgd: psnr" in outcome.stderr, outcome.stderr


# --------------------------------------------------------------------------- report


def _csv_edit(results: Path, edit: Callable[[list[str]], list[str]]) -> None:
    lines = results.read_text().splitlines()
    results.write_text("\n".join(edit(lines)) + "\n")


def _garbage_metrics(results_dir: Path) -> None:
    payload = json.loads((results_dir / "results.json").read_text())
    run = Path(payload["rows"][0]["run_dir"])
    (run / "metrics.csv").write_text("round,site,dice\nx,y,z\n")


def _corrupt_psnr(results_dir: Path) -> None:
    payload = json.loads((results_dir / "results.json").read_text())
    payload["rows"][0]["psnr"] = "x"
    (results_dir / "results.json").write_text(json.dumps(payload))


REPORT_CASES: dict[str, tuple[Callable[[Path], object], str]] = {
    "results-json-garbage": (lambda d: (d / "results.json").write_text("nope"), "results.json"),
    "results-json-row-not-object": (lambda d: (d / "results.json").write_text('{"rows": [1, 2]}'), "row 0"),
    "results-json-corrupted-psnr": (_corrupt_psnr, "psnr"),
    "metrics-csv-garbage": (_garbage_metrics, "metrics.csv"),
}


@pytest.mark.parametrize("case", sorted(REPORT_CASES))
def test_report_refuses_corrupted_results(case: str, attacked: dict[str, Path], tmp_path: Path) -> None:
    corrupt, needle = REPORT_CASES[case]
    out, _ = _copy(attacked, tmp_path)
    results = tmp_path / attacked["results"] / "results.json"
    results.write_text(results.read_text().replace(str(attacked["out"]), str(out)))  # rows → the copy
    corrupt(results.parent)
    pdf = tmp_path / "report.pdf"
    assert_refused(invoke(["report", results.parent, "-o", pdf, "-q"]), needle)
    assert not pdf.exists()


def test_report_onto_a_folder_is_refused_in_one_line(attacked: dict[str, Path], tmp_path: Path) -> None:
    _copy(attacked, tmp_path)
    folder = tmp_path / "taken.pdf"
    folder.mkdir()
    assert_refused(invoke(["report", tmp_path / attacked["results"], "-o", folder, "-q"]), "taken.pdf")
    assert folder.is_dir() and not list(folder.iterdir())


def test_report_to_unwritable_output_is_refused(attacked: dict[str, Path], tmp_path: Path) -> None:
    _copy(attacked, tmp_path)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    outcome = invoke(["report", tmp_path / attacked["results"], "-o", blocker / "report.pdf", "-q"])
    assert_refused(outcome, "report.pdf")


# --------------------------------------------------------------------------- sweep resume


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A finished one-point sweep (the undefended reference only) and its TOML."""
    from feddp_eval.config import from_dict, validate
    from tests.conftest import TINY

    root = tmp_path_factory.mktemp("swept")
    config = with_overrides(
        validate(from_dict(ExperimentConfig, TINY)), {"train.rounds": 1, "attack.iterations": 2}
    )
    toml = root / "exp.toml"
    toml.write_text(to_toml(config) + "\n[sweep]\nnoises = [0.0]\n")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    outcome = invoke(["sweep", "--config", toml, "--out", root / "sweep", "--quiet"])
    torch.set_num_threads(threads)
    assert outcome.code == 0, outcome.stderr
    return toml, root / "sweep"


SWEEP_CASES: dict[str, tuple[Callable[[Path], object], str]] = {
    "row-json-garbage": (lambda p: p.write_text("{"), "row.json"),
    "row-json-wrong-key": (
        lambda p: p.write_text('{"key": "other", "defense": "none", "attack": "x"}'),
        "row.json",
    ),
    "row-json-mistyped": (
        lambda p: p.write_text(json.dumps({**json.loads(p.read_text()), "psnr": "high"})),
        "row.json",
    ),
}


@pytest.mark.parametrize("case", sorted(SWEEP_CASES))
def test_sweep_resume_refuses_a_corrupt_point(case: str, swept: tuple[Path, Path], tmp_path: Path) -> None:
    toml, sweep = swept
    copy = tmp_path / "sweep"
    shutil.copytree(sweep, copy)
    corrupt, needle = SWEEP_CASES[case]
    [row] = list(copy.glob("points/*/row.json"))
    corrupt(row)
    assert_refused(invoke(["sweep", "--config", toml, "--out", copy, "--quiet"]), needle)


def test_report_refuses_a_corrupted_results_csv_cell(swept: tuple[Path, Path], tmp_path: Path) -> None:
    _, sweep = swept
    copy = tmp_path / "sweep"
    shutil.copytree(sweep, copy)
    header, row = (copy / "results.csv").read_text().splitlines()[:2]
    cells = row.split(",")
    cells[header.split(",").index("psnr")] = "garbage"
    (copy / "results.csv").write_text(f"{header}\n{','.join(cells)}\n")
    assert_refused(invoke(["report", copy, "-o", tmp_path / "r.pdf", "-q"]), "results.csv: line 2")


def test_report_refuses_a_phantom_results_csv_row(swept: tuple[Path, Path], tmp_path: Path) -> None:
    _, sweep = swept
    copy = tmp_path / "sweep"
    shutil.copytree(sweep, copy)
    with open(copy / "results.csv", "a") as handle:
        handle.write("junk,,,\n")
    assert_refused(invoke(["report", copy, "-o", tmp_path / "r.pdf", "-q"]), "results.csv: line 3")


def test_sweep_into_a_file_is_refused(swept: tuple[Path, Path], tmp_path: Path) -> None:
    toml, _ = swept
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert_refused(invoke(["sweep", "--config", toml, "--out", blocker, "-q"]), str(blocker))


def test_failed_sweep_leaves_no_folder(tiny_toml: Path, tmp_path: Path) -> None:
    """Training the first point fails (a 1-px image): the sweep folder this call made is removed."""
    data = _folder(tmp_path, [32, 32, 1, 32])
    toml = tmp_path / "exp.toml"
    text = tiny_toml.read_text().replace('source = "synthetic"', f'source = "{data}"')
    toml.write_text(text.replace("sites = 2", "sites = 1").replace("train_tiles = [6, 3]", "train_tiles = 6"))
    out = tmp_path / "sweep"
    assert_refused(invoke(["sweep", "--config", toml, "--out", out, "--noise", "0", "-q"]), "t2.png")
    assert not out.exists()

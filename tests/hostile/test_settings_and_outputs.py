"""Hostile inputs, settings, data folders and output locations: refused before training, nothing
left behind (issue #16)."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest

from tests.hostile.helpers import _folder, assert_refused, invoke

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
    # Issue #21: a σ whose noise float32 cannot hold would carry an ε (5.5e61 at σ = 1e-30) for nothing.
    "noise-numerically-zero": (["--noise", "1e-30"], "numerically zero"),
    "noise-times-clip-numerically-zero": (["--noise", "1e-4", "--clip", "1e-4"], "numerically zero"),
    "lr-no-client-uses": (["--lr", "1e6"], "train.lr` must be in (0, 10]"),
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
    # A learning rate no client could use is refused up front now (train.lr <= 10); a Dice weight of
    # 1e38 still makes the very first update overflow.
    diverging = tmp_path / "diverging.toml"
    diverging.write_text(re.sub(r"(?m)^dice_weight = .*$", "dice_weight = 1e38", tiny_toml.read_text()))
    out = tmp_path / "run"
    outcome = invoke(["train", "--config", diverging, "--out", out, "--quiet"])
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


def test_images_too_small_for_the_tile_are_refused_by_name(tiny_toml: Path, tmp_path: Path) -> None:
    """Issue #21: 3 px images scaled up to 16 px tiles used to train silently and report a Dice."""
    data = _folder(tmp_path, [32, 3, 32, 32])
    out = tmp_path / "run"
    outcome = invoke(["train", "-c", tiny_toml, "--data", data, "--sites", "1", "--out", out, "-q"])
    assert_refused(outcome, "t1.png is 3x3 px: a 16 px tile would magnify it 5.33x (at most 2x)")
    assert not out.exists()


def test_grey_and_16_bit_images_train_with_a_warning_naming_the_conversion(
    tiny_toml: Path, tmp_path: Path
) -> None:
    import numpy as np
    from PIL import Image

    data = _folder(tmp_path, [32, 32, 32, 32])
    Image.new("L", (32, 32), 120).save(data / "images" / "t0.png")
    Image.fromarray(np.full((32, 32), 40000, dtype=np.uint16)).save(data / "images" / "t1.png")
    with pytest.warns(UserWarning) as caught:
        outcome = invoke(
            ["train", "-c", tiny_toml, "--data", data, "--sites", "1", "--out", tmp_path / "r", "-q"]
        )
    assert outcome.code == 0, outcome
    said = [str(w.message) for w in caught]
    assert any(
        f"2 image(s) under {data} are grey: read as RGB by repeating its one channel" in s for s in said
    )
    assert any(
        f"1 image(s) under {data} is 16-bit: read as RGB in [0, 1] by dividing by 65535" in s for s in said
    )


@pytest.mark.parametrize(
    "content", ['{"format": 1, "points": []}', '{"my": "notes"}', "[1, 2]", "not json"], ids=str
)
def test_a_foreign_sweep_json_is_never_overwritten(tiny_toml: Path, tmp_path: Path, content: str) -> None:
    """Issue #21: a sweep.json feddp-eval did not write (another tool's, a hand-made one) is refused."""
    out = tmp_path / "theirs"
    out.mkdir()
    (out / "sweep.json").write_text(content)
    outcome = invoke(["sweep", "-c", tiny_toml, "--out", out, "--noise", "0.5", "--iterations", "2", "-q"])
    assert_refused(outcome, "choose another --out")
    assert (out / "sweep.json").read_text() == content and sorted(p.name for p in out.iterdir()) == [
        "sweep.json"
    ]

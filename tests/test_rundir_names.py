"""The names of a run directory: one key per config, the same wherever a run is looked for."""

from __future__ import annotations

from pathlib import Path

from feddp_eval.config import ExperimentConfig, validate, with_overrides
from feddp_eval.rundir.names import KEY_LENGTH, attack_dir_name, attack_key, run_key, short
from feddp_eval.rundir.prepare import default_run_dir
from feddp_eval.sweep.points import SweepPoint, point_key

BASE = validate(ExperimentConfig())


def test_keys_are_the_published_hashes_shortened() -> None:
    # the full hashes are pinned in tests/test_config_derive.py; finished runs are found by these names
    assert run_key(BASE) == "f3cbd45b0d40"
    assert attack_key(BASE) == "ef991ad88311"
    assert attack_dir_name(BASE) == "attack-ef991ad88311"
    assert short("0123456789abcdef") == "0123456789ab" and KEY_LENGTH == 12


def test_the_attack_key_tracks_the_attack_and_the_run_key_does_not() -> None:
    other = with_overrides(BASE, {"attack.iterations": 7})
    assert run_key(other) == run_key(BASE)
    assert attack_key(other) != attack_key(BASE)


def test_train_and_sweep_name_a_run_by_the_same_key(tmp_path: Path) -> None:
    assert default_run_dir(BASE, tmp_path) == tmp_path / "f3cbd45b0d40"
    assert SweepPoint(point_key(BASE), BASE).run_dir == "runs/f3cbd45b0d40"
    assert point_key(BASE) == attack_key(BASE)
    assert point_key(BASE, utility_only=True) not in (attack_key(BASE), run_key(BASE))
    assert len(point_key(BASE, utility_only=True)) == KEY_LENGTH

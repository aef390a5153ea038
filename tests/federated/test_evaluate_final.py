"""``train.evaluate = "final"``: the last round's evaluation only, the same weights and final numbers."""

from __future__ import annotations

from pathlib import Path

from feddp_eval.config import ExperimentConfig, config_hash, with_overrides
from feddp_eval.io import read_csv
from feddp_eval.workflows.train import run_train


def test_final_only_evaluation_ends_at_the_same_weights_and_numbers(
    tmp_path: Path, tiny_config: ExperimentConfig
) -> None:
    every = with_overrides(tiny_config, {"train.rounds": 3})
    final = with_overrides(every, {"train.evaluate": "final"})
    assert config_hash(with_overrides(every, {"train.evaluate": "every-round"})) == config_hash(every)
    assert config_hash(final) != config_hash(every)  # a run that holds less is not found as the other
    a = run_train(every, run_dir=tmp_path / "every")
    b = run_train(final, run_dir=tmp_path / "final")
    assert (a.run_dir / "model.safetensors").read_bytes() == (b.run_dir / "model.safetensors").read_bytes()
    assert a.summary.dice == b.summary.dice and a.summary.sites == b.summary.sites
    assert {r["round"] for r in read_csv(a.run_dir / "metrics.csv")} == {"1", "2", "3"}
    assert {r["round"] for r in read_csv(b.run_dir / "metrics.csv")} == {"3"}
    # The captures do not depend on it either.
    first = "captures/round-0002/site-1.safetensors"
    assert (a.run_dir / first).read_bytes() == (b.run_dir / first).read_bytes()

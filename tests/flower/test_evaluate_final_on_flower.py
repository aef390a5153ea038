"""``train.evaluate = "final"`` on Flower: one evaluation round trip, at the end; the local engine's run."""

from __future__ import annotations

from pathlib import Path

from feddp_eval.config import ExperimentConfig, with_overrides
from feddp_eval.io import read_csv
from feddp_eval.workflows.train import run_train


def test_flower_evaluates_only_the_last_round(tmp_path: Path, tiny_config: ExperimentConfig) -> None:
    # dp-sgd: the nodes' privacy records travel with the evaluation, now sent once.
    overrides = {"train.evaluate": "final", "capture": False, "defense.name": "dp-sgd", "defense.noise": 1.0}
    final = with_overrides(tiny_config, overrides)
    local = run_train(final, run_dir=tmp_path / "local")
    flower = run_train(with_overrides(final, {"train.engine": "flower"}), run_dir=tmp_path / "flower")
    assert {r["round"] for r in read_csv(flower.run_dir / "metrics.csv")} == {str(final.train.rounds)}
    assert flower.summary.dice == local.summary.dice
    assert flower.summary.epsilon is not None and flower.summary.epsilon == local.summary.epsilon

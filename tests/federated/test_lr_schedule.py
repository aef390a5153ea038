"""`train.lr_schedule = "cosine"`: each round's local rate, in training and in the capture metadata."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest

from feddp_eval.config import ExperimentConfig, TrainConfig, config_hash
from feddp_eval.federated.capture import list_captures
from feddp_eval.federated.client import round_train
from feddp_eval.workflows.train import run_train


def test_constant_is_the_default_and_keeps_the_config_hash(tiny_config: ExperimentConfig) -> None:
    assert TrainConfig().lr_schedule == "constant"
    assert round_train(tiny_config.train, 3) is tiny_config.train
    explicit = dataclasses.replace(
        tiny_config, train=dataclasses.replace(tiny_config.train, lr_schedule="constant")
    )
    cosine = dataclasses.replace(
        tiny_config, train=dataclasses.replace(tiny_config.train, lr_schedule="cosine")
    )
    assert config_hash(explicit) == config_hash(tiny_config) != config_hash(cosine)


@pytest.mark.parametrize(("rounds", "expected"), [(4, [0.1, 0.0853553, 0.05, 0.0146447]), (1, [0.1])])
def test_cosine_rates(rounds: int, expected: list[float]) -> None:
    train = TrainConfig(rounds=rounds, lr=0.1, lr_schedule="cosine")
    rates = [round_train(train, r).lr for r in range(1, rounds + 1)]
    assert rates == pytest.approx(expected, abs=1e-7)
    assert all(rate > 0 for rate in rates)  # no round releases a zero update
    assert rates == sorted(rates, reverse=True)


def test_a_cosine_run_trains_and_captures_each_rounds_rate(
    tmp_path: Path, tiny_config: ExperimentConfig
) -> None:
    train = dataclasses.replace(tiny_config.train, rounds=3, lr_schedule="cosine")
    config = dataclasses.replace(tiny_config, train=train)
    run = run_train(config, run_dir=tmp_path / "cosine").run_dir
    lrs = {c.round: c.metadata["lr"] for c in list_captures(run)}
    assert lrs == {
        r: pytest.approx(train.lr * 0.5 * (1 + math.cos(math.pi * (r - 1) / 3))) for r in (1, 2, 3)
    }
    constant = run_train(tiny_config, run_dir=tmp_path / "constant").run_dir
    assert {c.metadata["lr"] for c in list_captures(constant)} == {tiny_config.train.lr}

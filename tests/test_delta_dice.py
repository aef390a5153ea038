"""`feddp-eval attack` reads utility over paired seeds: ΔDice with its 95% interval, never one run alone."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from feddp_eval.config import ExperimentConfig, from_dict, reference_config, to_dict, validate
from feddp_eval.errors import ConfigError
from feddp_eval.io import read_csv, read_json
from feddp_eval.rundir.names import run_key
from feddp_eval.workflows.attack import delta_dice_cells, run_attack, seed_run_config


def _reference_interval(defended: list[float], reference: list[float]) -> tuple[float, float, float]:
    """The paired t interval of the relative difference, written out from scipy's t quantile."""
    relative = np.asarray(defended) / np.asarray(reference) - 1
    half = stats.t.ppf(0.975, len(relative) - 1) * relative.std(ddof=1) / math.sqrt(len(relative))
    return float(relative.mean()), float(relative.mean() - half), float(relative.mean() + half)


def test_delta_dice_cells_are_the_paired_t_interval() -> None:
    reference, defended = [0.80, 0.84, 0.78], [0.75, 0.80, 0.74]
    none, dp = delta_dice_cells([reference, defended])
    assert none["delta_dice"] is None and none["dice_mean"] == pytest.approx(np.mean(reference))
    mean, low, high = _reference_interval(defended, reference)
    assert (dp["delta_dice"], dp["delta_dice_low"], dp["delta_dice_high"]) == pytest.approx((mean, low, high))
    assert dp["delta_dice_verdict"] == "lower" and dp["utility_seeds"] == 3


def test_one_seed_cannot_tell() -> None:
    _, dp = delta_dice_cells([[0.8], [0.9]])
    assert dp["delta_dice"] == pytest.approx(0.125)
    assert (dp["delta_dice_low"], dp["delta_dice_high"], dp["delta_dice_verdict"]) == (
        None,
        None,
        "cannot tell",
    )


def test_utility_seeds_is_validated(tiny_config: ExperimentConfig) -> None:
    raw = copy.deepcopy(to_dict(tiny_config))
    raw["attack"]["utility_seeds"] = 0
    with pytest.raises(ConfigError, match="utility_seeds"):
        validate(from_dict(ExperimentConfig, raw))


def test_attack_trains_paired_seeds_and_reads_their_dice(
    tmp_path: Path, tiny_config: ExperimentConfig
) -> None:
    raw = copy.deepcopy(to_dict(tiny_config))
    raw["attack"] = {"iterations": 2, "utility_seeds": 3}
    raw["defense"] = {"name": "dp-sgd", "noise": 1.1}
    config = validate(from_dict(ExperimentConfig, raw))
    result = run_attack(config, out=tmp_path)
    dice = []
    for arm in (reference_config(config), config):
        runs = [arm] + [seed_run_config(arm, arm.seed + i) for i in (1, 2)]
        dice.append([read_json(tmp_path / run_key(r) / "summary.json")["dice"] for r in runs])
        # The seed runs keep only what Dice needs: no captures, the last round's evaluation.
        for run in runs[1:]:
            assert not (tmp_path / run_key(run) / "captures").exists()
            rounds = {row["round"] for row in read_csv(tmp_path / run_key(run) / "metrics.csv")}
            assert rounds == {str(arm.train.rounds)}
    none, dp = result.rows
    assert [none.utility_seeds, dp.utility_seeds] == [3, 3]
    assert none.dice == dice[0][0] and dp.dice == dice[1][0]  # the attacked run is the first seed's
    assert dp.dice_mean == pytest.approx(np.mean(dice[1]))
    mean, low, high = _reference_interval(dice[1], dice[0])
    assert (dp.delta_dice, dp.delta_dice_low, dp.delta_dice_high) == pytest.approx((mean, low, high))


def test_where_a_run_is_trained_or_attacked_changes_no_number(
    tmp_path: Path, tiny_config: ExperimentConfig
) -> None:
    """The headline splits its work between this process and a worker (the defended arm trained and
    attacked there; queued seed runs taken back here): each side computes with one thread, so every
    run's weights and the worker's attack row are the bits a 1-thread run in this process gives."""
    import torch

    from feddp_eval.metrics.perceptual import LPIPSMetric
    from feddp_eval.workflows.attack_run import attack_run
    from feddp_eval.workflows.train import run_train

    raw = copy.deepcopy(to_dict(tiny_config))
    raw["attack"] = {"iterations": 30, "utility_seeds": 3}
    raw["defense"] = {"name": "dp-sgd", "noise": 1.1}
    config = validate(from_dict(ExperimentConfig, raw))
    _, dp = run_attack(config, out=tmp_path / "split").rows

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for arm in (reference_config(config), config):
            for seed in (arm.seed, arm.seed + 2):
                # The seed run (evaluated once, no captures) ends at the ordinary run's weights, bit for bit.
                run = validate(from_dict(ExperimentConfig, to_dict(arm) | {"seed": seed}))
                seed_run = run if seed == arm.seed else seed_run_config(arm, seed)
                ordinary = run_train(run, run_dir=tmp_path / "here" / run_key(run))
                split = tmp_path / "split" / run_key(seed_run)
                assert (ordinary.run_dir / "model.safetensors").read_bytes() == (
                    split / "model.safetensors"
                ).read_bytes()
                assert ordinary.summary.dice == read_json(split / "summary.json")["dice"]
        trained = run_train(config, run_dir=tmp_path / "here" / run_key(config))
        row = attack_run(config, trained, LPIPSMetric(config.attack.lpips_net)).row
    finally:
        torch.set_num_threads(threads)
    assert dp.psnr is not None and dp.objective is not None
    assert (row.psnr, row.ssim, row.objective, row.iterations) == (
        dp.psnr,
        dp.ssim,
        dp.objective,
        dp.iterations,
    )


def test_this_process_takes_back_the_seed_runs_no_worker_has_started(
    tmp_path: Path, tiny_config: ExperimentConfig
) -> None:
    """Seed runs wait in this process's queue until a worker is free; the worker is busy training and
    attacking the defended arm, so a free moment here trains the queued runs, last first, and each
    seed's Dice is its run's, whoever trained it."""
    from feddp_eval.workflows.attack import UtilitySeeds

    raw = copy.deepcopy(to_dict(tiny_config))
    raw["attack"] = {"iterations": 200, "utility_seeds": 3}
    raw["defense"] = {"name": "dp-sgd", "noise": 1.1}
    config = validate(from_dict(ExperimentConfig, raw))
    arms = [reference_config(config), config]
    stages: list[str] = []
    with UtilitySeeds(arms, 3, tmp_path) as utility:
        assert utility.attacks_ahead(1) and not utility.attacks_ahead(0)
        # Called at once: the one worker is still starting on the defended arm, so every queued seed
        # run is still here to take; the last queued (the defended arm's seed 5) goes first. The
        # worker takes the queue's head once its arm is done, so how many train here is a race.
        utility.train_queued_here(stages.append)
        outcome = utility.outcome(1)
        dice = utility.dice([0.0, 0.0])
    assert stages[0] == "training seed 5 of [dp-sgd σ=1.1] here, for ΔDice"
    assert 1 <= len(stages) <= 4 and utility.pending == 0
    assert outcome.row.defense == "dp-sgd" and outcome.row.psnr is not None
    for arm, values in zip(arms, dice, strict=True):
        for i, value in enumerate(values[1:], start=1):
            run = seed_run_config(arm, arm.seed + i)
            assert value == read_json(tmp_path / run_key(run) / "summary.json")["dice"]

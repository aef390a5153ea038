"""FedDP's −0.55% read off a sweep: the σ where each mechanism costs that much, ε and leakage there."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from reports import load_results
from reports.feddp import FEDDP_DICE_CHANGE_PCT, claim_readings, claim_sentences
from reports.summary import summarize
from tests.reports.conftest import build_sweep


def test_the_crossing_is_interpolated_in_log_sigma_between_the_bracketing_settings(tmp_path: Path) -> None:
    build_sweep(tmp_path)  # dp-sgd Dice = none's − 0.05σ: ΔDice = −0.05σ / 0.81 per cent of 100
    summaries = summarize(load_results(tmp_path).rows)
    dp = next(r for r in claim_readings(summaries) if r.defense == "dp-sgd")
    assert dp.below is not None and dp.at is not None
    assert (dp.below.noise, dp.at.noise) == (0.01, 0.1)
    low, high = -100 * 0.05 * 0.01 / 0.81, -100 * 0.05 * 0.1 / 0.81
    share = (FEDDP_DICE_CHANGE_PCT - low) / (high - low)
    assert dp.sigma == pytest.approx(math.exp(math.log(0.01) + share * math.log(10)), rel=1e-9)
    # local-dp already costs more at its smallest σ: no interpolation, and the report says so.
    local = next(r for r in claim_readings(summaries) if r.defense == "local-dp")
    assert local.sigma is None and local.below is None and local.at is not None and local.at.noise == 0.01
    text = " ".join(claim_sentences(summaries))
    assert "dp-sgd costs that much at σ ≈ 0.0757 (between the tested σ = 0.01 and 0.1)" in text
    assert "At σ = 0.1 (ε = 20, δ = 1e-05, sample-level, rdp; Dice -0.6% (lower, 2 seeds))" in text
    assert "the honest server's inverting-gradients rebuilt no more than the guess" in text
    assert "local-dp costs that much already at the smallest tested σ = 0.01" in text


def test_a_mechanism_that_never_costs_that_much_is_named_with_its_largest_sigma() -> None:
    rows: list[dict[str, Any]] = []
    for seed in (0, 1, 2):
        rows.append({"defense": "none", "noise": 0.0, "seed": seed, "dice": 0.80 + 0.01 * seed, "psnr": 20.0})
        rows.append(
            {
                "defense": "dp-sgd",
                "noise": 1.0,
                "seed": seed,
                "dice": 0.799 + 0.01 * seed,
                "psnr": 15.0,
                "prior_psnr": 15.0,
                "epsilon": 3.0,
                "delta": 1e-5,
                "granularity": "sample-level",
            }
        )
    (reading,) = claim_readings(summarize(rows))
    assert reading.at is None and reading.sigma is None and reading.below is not None
    (sentence,) = claim_sentences(summarize(rows))
    assert sentence.startswith("FedDP's −0.55% Dice: dp-sgd never costs that much at the tested σ")
    assert "σ = 1 (ε = 3, δ = 1e-05, sample-level)" in sentence


def test_a_crossing_within_seed_noise_names_the_first_sigma_whose_cost_is_outside_it() -> None:
    noise_by_seed = {0: +0.02, 1: -0.03, 2: -0.01}  # σ = 0.1: mean −0.7%, but the seeds disagree
    rows: list[dict[str, Any]] = []
    for seed in (0, 1, 2):
        base = 0.80 + 0.01 * seed
        rows.append({"defense": "none", "noise": 0.0, "seed": seed, "dice": base, "psnr": 20.0})
        for sigma, dice in ((0.1, base * (1 + noise_by_seed[seed])), (1.0, base * (0.96 + 0.001 * seed))):
            rows.append(
                {
                    "defense": "dp-sgd",
                    "noise": sigma,
                    "seed": seed,
                    "dice": dice,
                    "psnr": 15.0,
                    "prior_psnr": 15.0,
                    "epsilon": 30.0 / sigma,
                    "delta": 1e-5,
                    "granularity": "sample-level",
                }
            )
    (reading,) = claim_readings(summarize(rows))
    assert reading.at is not None and reading.at.noise == 0.1
    assert reading.resolved is not None and reading.resolved.noise == 1.0
    (sentence,) = claim_sentences(summarize(rows))
    assert "already at the smallest tested σ = 0.1" in sentence and "(within seed noise, 3 seeds)" in sentence
    assert "The first tested σ whose cost is outside seed noise is σ = 1 (ε = 30" in sentence
    assert "(lower, 3 seeds)" in sentence

"""Tests of the paired seed-noise check: scipy's paired t test, hand-computed intervals, one seed."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from feddp_eval.metrics.significance import paired_relative_delta


def test_matches_scipy_paired_t_test_on_relative_differences() -> None:
    defended = [0.801, 0.823, 0.792, 0.815, 0.808]
    reference = [0.843, 0.831, 0.822, 0.851, 0.829]
    delta = paired_relative_delta(defended, reference)
    ratio = np.array(defended) / np.array(reference)
    expected = stats.ttest_rel(ratio, np.ones(5))
    interval = expected.confidence_interval(0.95)
    assert delta.seeds == 5
    assert delta.mean == pytest.approx(float(np.mean(ratio - 1)), abs=1e-15)
    assert delta.p_value == pytest.approx(expected.pvalue, rel=1e-12)
    assert (delta.low, delta.high) == (pytest.approx(interval.low), pytest.approx(interval.high))
    assert delta.verdict == "lower" and delta.distinguishable


def test_hand_computed_interval_that_holds_zero() -> None:
    # Relative differences -1%, -2%, -3%: mean -2%, sd 1%, t(0.975, 2) = 4.302652729911275.
    delta = paired_relative_delta([0.99, 0.98, 0.97], [1.0, 1.0, 1.0])
    half_width = 4.302652729911275 * 0.01 / math.sqrt(3)
    assert delta.mean == pytest.approx(-0.02)
    assert delta.low == pytest.approx(-0.02 - half_width)
    assert delta.high == pytest.approx(-0.02 + half_width)
    assert delta.verdict == "within noise" and not delta.distinguishable
    assert delta.label() == "-2.00% [-4.48%, +0.48%] within noise"


def test_a_lower_confidence_narrows_the_interval() -> None:
    wide = paired_relative_delta([0.99, 0.98, 0.97], [1.0, 1.0, 1.0], confidence=0.95)
    narrow = paired_relative_delta([0.99, 0.98, 0.97], [1.0, 1.0, 1.0], confidence=0.5)
    assert narrow.low is not None and wide.low is not None and narrow.low > wide.low
    assert narrow.confidence == 0.5


def test_an_improvement_is_higher() -> None:
    delta = paired_relative_delta([0.88, 0.90, 0.89, 0.91], [0.80, 0.81, 0.80, 0.82])
    assert delta.verdict == "higher" and delta.low is not None and delta.low > 0


def test_one_seed_cannot_tell() -> None:
    delta = paired_relative_delta([0.5], [1.0])
    assert delta.seeds == 1
    assert delta.mean == pytest.approx(-0.5)  # the observed difference, but no interval around it
    assert delta.low is None and delta.high is None and delta.p_value is None
    assert delta.verdict == "cannot tell" and not delta.distinguishable
    assert delta.label() == "-50.00% (1 seed: cannot tell)"


def test_identical_differences_on_every_seed() -> None:
    same = paired_relative_delta([0.8, 0.8], [0.8, 0.8])
    assert (same.mean, same.low, same.high, same.p_value, same.verdict) == (
        0.0,
        0.0,
        0.0,
        1.0,
        "within noise",
    )
    shifted = paired_relative_delta([0.5, 0.25], [1.0, 0.5])
    assert (shifted.low, shifted.high, shifted.verdict) == (-0.5, -0.5, "lower")


@pytest.mark.parametrize(
    ("defended", "reference", "message"),
    [
        ([0.8, 0.9], [0.8], "one value per seed"),
        ([], [], "one value per seed"),
        ([0.8, 0.9], [0.8, 0.0], "non-zero reference"),
        ([0.8, float("nan")], [0.8, 0.9], "must be finite"),
    ],
)
def test_bad_inputs_say_what_to_fix(defended: list[float], reference: list[float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        paired_relative_delta(defended, reference)


def test_confidence_must_be_a_probability() -> None:
    with pytest.raises(ValueError, match=r"`confidence` must be in \(0, 1\), but got 1.5"):
        paired_relative_delta([0.8, 0.9], [0.8, 0.9], confidence=1.5)

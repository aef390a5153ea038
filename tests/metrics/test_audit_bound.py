"""The one-run audit's ε lower bound: closed forms, monotonicity, and coverage by simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from feddp_eval.metrics.audit import audit, audit_grid, epsilon_lower_bound, guess_counts, p_value


@pytest.mark.parametrize("r", [10, 20, 50])
def test_perfect_guesses_without_delta_match_the_closed_form(r: int) -> None:
    # δ = 0: P[all r correct] = q^r = 0.05  ⇒  q = 0.05^(1/r), ε = log(q / (1 − q)).
    q = 0.05 ** (1 / r)
    expected = math.log(q / (1 - q))
    assert epsilon_lower_bound(r, r, r, delta=0.0) == pytest.approx(expected, abs=2e-4)


def test_p_value_without_delta_is_the_binomial_tail() -> None:
    q = 1 / (1 + math.exp(-0.7))
    assert p_value(100, 40, 28, epsilon=0.7, delta=0.0) == pytest.approx(stats.binom.sf(27, 40, q))


def test_delta_only_weakens_the_bound_and_more_correct_only_strengthens_it() -> None:
    bounds = [epsilon_lower_bound(200, 100, v, delta=1e-5) for v in (60, 70, 80, 90, 100)]
    assert bounds == sorted(bounds) and bounds[0] < bounds[-1]
    assert epsilon_lower_bound(200, 100, 90, delta=1e-2) < epsilon_lower_bound(200, 100, 90, delta=0.0)


def test_chance_level_guessing_bounds_nothing() -> None:
    assert epsilon_lower_bound(100, 100, 50, delta=1e-5) == 0.0
    assert epsilon_lower_bound(100, 100, 40, delta=1e-5) == 0.0


def test_the_bound_covers_the_true_epsilon_of_randomized_response() -> None:
    """Guesses right with probability e^ε/(1+e^ε) (the worst case an ε-DP run allows): ε̂ ≤ ε in
    at least 95% of seeded trials."""
    rng = np.random.default_rng(0)
    true_eps, r, trials = 1.0, 60, 300
    q = 1 / (1 + math.exp(-true_eps))
    bounds = [epsilon_lower_bound(r, r, int(rng.binomial(r, q)), delta=0.0) for _ in range(trials)]
    assert np.mean([b <= true_eps for b in bounds]) >= 0.95
    assert np.mean(bounds) > 0.1  # and it is not vacuous


def test_audit_guesses_top_in_and_bottom_out() -> None:
    scores = [0.9, 0.8, 0.1, 0.2, 0.5, 0.6]
    members = [True, True, False, False, True, False]
    result = audit(scores, members, guesses=4, delta=0.0)
    assert (result.guesses, result.correct, result.canaries) == (4, 4, 6)
    assert result.epsilon == pytest.approx(epsilon_lower_bound(6, 4, 4, delta=0.0))
    with pytest.raises(ValueError, match="even"):
        audit(scores, members, guesses=3, delta=0.0)


def test_the_guess_grid_is_fixed_even_and_within_m() -> None:
    assert guess_counts(1000) == [124, 250, 500, 900]
    assert guess_counts(7) == [2, 4, 6]
    assert all(r % 2 == 0 and 2 <= r <= m for m in range(2, 60) for r in guess_counts(m))


def test_the_grid_pays_for_its_tries_with_confidence() -> None:
    scores = list(range(100))
    members = [i >= 50 for i in range(100)]  # perfectly separated
    one = audit(scores, members, guesses=100, delta=1e-5)
    grid = audit_grid(scores, members, counts=[26, 50, 100], delta=1e-5)
    alone = audit(scores, members, guesses=100, delta=1e-5, confidence=1 - 0.05 / 3)
    assert grid.guesses == 100 and grid.confidence == 0.95
    assert grid.epsilon == pytest.approx(alone.epsilon) and grid.epsilon < one.epsilon
    assert audit_grid(scores, members, counts=[100], delta=1e-5) == one


def test_the_grid_bound_covers_the_true_epsilon_of_randomized_response() -> None:
    """Every canary guessed from an ε-DP randomized-response score: the grid's maximum still stays
    at or below ε in at least 95% of seeded trials."""
    rng = np.random.default_rng(1)
    true_eps, m, trials = 1.0, 200, 200
    q = 1 / (1 + math.exp(-true_eps))
    held = []
    for _ in range(trials):
        members = rng.random(m) < 0.5
        right = rng.random(m) < q  # each score points the right way with probability q
        scores = np.where(members == right, 1.0, -1.0) + 1e-3 * rng.random(m)
        result = audit_grid(scores.tolist(), members.tolist(), counts=guess_counts(m), delta=0.0)
        held.append(result.epsilon <= true_eps)
    assert np.mean(held) >= 0.95

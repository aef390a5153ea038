"""The project's accounting path (`defenses.accounting`) against Opacus' reference values.

Reference values: Opacus' own test suite (tests/accountants_test.py) and
`get_noise_multiplier(ε=8, δ=1e-5, q=0.04, epochs=90)`; see REFERENCES.md.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from defenses.accounting import calibrate_noise, epsilon
from feddp_eval.errors import ConfigError

DELTA = 1e-5


def test_rdp_golden_value() -> None:
    # Reference value: Opacus tests/accountants_test.py, σ=1.5, q=0.04, 2250 steps, δ=1e-5.
    got = epsilon([(1.5, 0.04, 2250)], delta=DELTA, accountant="rdp")
    assert got == pytest.approx(7.32911117143, abs=5e-8)
    assert round(epsilon([(1.5, 0.04, 2250)], delta=DELTA), 7) == round(7.32911117143, 7)


def test_prv_golden_value() -> None:
    # Reference value: Opacus tests/accountants_test.py, PRV, σ=1.5, q=0.04, 2249 steps, δ=1e-5.
    assert epsilon([(1.5, 0.04, 2249)], delta=DELTA, accountant="prv") == pytest.approx(
        6.777395712150674, rel=1e-6
    )


def test_history_phases_compose_like_one_phase() -> None:
    one = epsilon([(1.5, 0.04, 2250)], delta=DELTA)
    split = epsilon([(1.5, 0.04, 1000), (1.5, 0.04, 1250)], delta=DELTA)
    assert split == pytest.approx(one, rel=1e-12)
    # More steps, or a phase with less noise, can only cost more.
    assert epsilon([(1.5, 0.04, 2251)], delta=DELTA) > one
    assert epsilon([(1.5, 0.04, 2250), (3.0, 0.04, 10)], delta=DELTA) > one


def test_degenerate_histories() -> None:
    assert epsilon([], delta=DELTA) == 0.0
    assert epsilon([(1.0, 0.5, 0)], delta=DELTA) == 0.0
    assert epsilon([(0.0, 0.5, 3)], delta=DELTA) == math.inf
    assert epsilon([(1.0, 0.5, 3), (0.0, 0.5, 1)], delta=DELTA, accountant="prv") == math.inf


@pytest.mark.filterwarnings("ignore:Optimal order is the largest alpha")
def test_calibrated_noise_matches_opacus_reference() -> None:
    # Reference values: get_noise_multiplier(ε=8, δ=1e-5, q=0.04, epochs=90): rdp 1.416, prv 1.34765625.
    steps = int(90 / 0.04)
    assert calibrate_noise(8, delta=DELTA, sample_rate=0.04, steps=steps, accountant="rdp") == pytest.approx(
        1.416, abs=5e-4
    )
    assert calibrate_noise(8, delta=DELTA, sample_rate=0.04, steps=steps, accountant="prv") == pytest.approx(
        1.34765625, rel=1e-9
    )


@pytest.mark.filterwarnings("ignore:Optimal order is the largest alpha")
def test_unreachable_target_is_a_config_error_that_says_how_to_fix_it() -> None:
    with pytest.raises(ConfigError, match="cannot be reached") as info:
        calibrate_noise(1e-7, delta=DELTA, sample_rate=1.0, steps=1)
    assert "raise it or train for fewer steps" in str(info.value)
    assert info.value.exit_code == 2


@pytest.mark.filterwarnings("ignore:Optimal order is the largest alpha")
@settings(max_examples=8, deadline=None)
@given(
    target=st.floats(0.3, 20.0),
    # Opacus' RDP of the subsampled Gaussian takes ~1 s per calibration at q >= 0.2; keep the test quick.
    sample_rate=st.one_of(st.floats(0.001, 0.1), st.just(1.0)),
    steps=st.integers(1, 5000),
    delta=st.sampled_from([1e-3, 1e-5, 1e-7]),
)
def test_calibrated_noise_never_overshoots_its_target(
    target: float, sample_rate: float, steps: int, delta: float
) -> None:
    sigma = calibrate_noise(target, delta=delta, sample_rate=sample_rate, steps=steps)
    assert sigma > 0
    spent = epsilon([(sigma, sample_rate, steps)], delta=delta)
    assert spent <= target
    # ...and is not needlessly large: within Opacus' calibration tolerance (0.01 in ε) of the target.
    assert spent >= target - 0.01 - 1e-9


def test_tiny_noise_gives_opacus_bound_without_its_warning() -> None:
    import warnings

    from opacus.accountants import RDPAccountant

    reference = RDPAccountant()
    reference.history = [(0.01, 0.1, 100)]
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        expected = reference.get_epsilon(delta=1e-5)
    assert any("smallest alpha" in str(w.message) for w in seen)  # Opacus does warn here
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert epsilon([(0.01, 0.1, 100)], delta=1e-5) == expected > 1e3

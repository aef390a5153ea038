"""Utility metrics against scikit-learn, with the empty-mask cases written out."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import accuracy_score, f1_score, jaccard_score

from feddp_eval.metrics.utility import (
    UTILITY_METRICS,
    ConfusionCounts,
    binarise,
    confusion_counts,
    dice,
    jaccard,
    pixel_accuracy,
    pooled,
    utility_scores,
)

probabilities = st.one_of(st.sampled_from([0.0, 1.0]), st.floats(min_value=0.0, max_value=1.0))
shapes = st.tuples(st.integers(1, 2), st.just(1), st.integers(1, 16), st.integers(1, 16))


def _mask(shape: tuple[int, ...], p: float, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    # torch.rand is in [0, 1): p = 0 gives an empty mask, p = 1 a full one.
    return torch.rand(shape, generator=generator) < p


def _sklearn(prediction: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    y_pred = prediction.flatten().numpy().astype(int)
    y_true = target.flatten().numpy().astype(int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {
            "dice": f1_score(y_true, y_pred, zero_division=1.0),
            "jaccard": jaccard_score(y_true, y_pred, zero_division=1.0),
            "accuracy": accuracy_score(y_true, y_pred),
        }


@settings(max_examples=150, deadline=None)
@given(shape=shapes, p_pred=probabilities, p_true=probabilities, seed=st.integers(0, 2**31 - 1))
def test_scores_match_sklearn(shape: tuple[int, ...], p_pred: float, p_true: float, seed: int) -> None:
    prediction, target = _mask(shape, p_pred, seed), _mask(shape, p_true, seed + 1)
    scores = utility_scores(confusion_counts(prediction, target))
    assert scores == pytest.approx(_sklearn(prediction, target), abs=1e-12)


@pytest.mark.parametrize(
    ("prediction", "target", "expected"),
    [
        # both empty: perfect agreement
        ([0, 0, 0, 0], [0, 0, 0, 0], {"dice": 1.0, "jaccard": 1.0, "accuracy": 1.0}),
        # prediction empty, target not
        ([0, 0, 0, 0], [1, 1, 0, 0], {"dice": 0.0, "jaccard": 0.0, "accuracy": 0.5}),
        # target empty, prediction not
        ([0, 1, 1, 1], [0, 0, 0, 0], {"dice": 0.0, "jaccard": 0.0, "accuracy": 0.25}),
        # one of each cell: tp = fp = fn = tn = 1
        ([1, 1, 0, 0], [1, 0, 1, 0], {"dice": 0.5, "jaccard": 1 / 3, "accuracy": 0.5}),
        # both full
        ([1, 1, 1, 1], [1, 1, 1, 1], {"dice": 1.0, "jaccard": 1.0, "accuracy": 1.0}),
    ],
)
def test_golden_cases(prediction: list[int], target: list[int], expected: dict[str, float]) -> None:
    p = torch.tensor(prediction, dtype=torch.bool).reshape(1, 1, 2, 2)
    t = torch.tensor(target, dtype=torch.bool).reshape(1, 1, 2, 2)
    assert utility_scores(confusion_counts(p, t)) == pytest.approx(expected)
    assert _sklearn(p, t) == pytest.approx(expected)


def test_confusion_counts_accepts_float_01_masks() -> None:
    p = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    t = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    assert confusion_counts(p, t) == ConfusionCounts(tp=1, fp=1, fn=1, tn=1)
    assert confusion_counts(p, t).total == 4


def test_shape_mismatch_raises() -> None:
    with pytest.raises(ValueError, match=r"\(1, 4\).*\(4,\)"):
        confusion_counts(torch.zeros(1, 4, dtype=torch.bool), torch.zeros(4, dtype=torch.bool))


def test_metrics_of_counts_directly() -> None:
    c = ConfusionCounts(tp=6, fp=2, fn=4, tn=8)
    assert dice(c) == pytest.approx(12 / 18)
    assert jaccard(c) == pytest.approx(6 / 12)
    assert pixel_accuracy(c) == pytest.approx(14 / 20)
    with pytest.raises(ValueError, match="zero pixels"):
        pixel_accuracy(ConfusionCounts())


@settings(max_examples=60, deadline=None)
@given(
    parts=st.lists(st.tuples(shapes, probabilities, probabilities), min_size=1, max_size=4),
    seed=st.integers(0, 2**31 - 1),
)
def test_pooled_counts_equal_counts_of_the_concatenation(
    parts: list[tuple[tuple[int, ...], float, float]], seed: int
) -> None:
    predictions, targets = [], []
    for i, (shape, p_pred, p_true) in enumerate(parts):
        predictions.append(_mask(shape, p_pred, seed + 2 * i).flatten())
        targets.append(_mask(shape, p_true, seed + 2 * i + 1).flatten())
    per_part = [confusion_counts(p, t) for p, t in zip(predictions, targets, strict=True)]
    whole = confusion_counts(torch.cat(predictions), torch.cat(targets))
    assert pooled(per_part) == whole
    assert pooled(iter(per_part)) == whole  # any iterable, consumed once
    assert utility_scores(pooled(per_part)) == pytest.approx(
        _sklearn(torch.cat(predictions), torch.cat(targets)), abs=1e-12
    )


def test_pooled_of_nothing_is_zero_counts() -> None:
    assert pooled([]) == ConfusionCounts(0, 0, 0, 0)


def test_binarise_thresholds_sigmoid_at_one_half() -> None:
    logits = torch.tensor([-5.0, -1e-3, 0.0, 1e-3, 5.0])
    assert binarise(logits).tolist() == [False, False, False, True, True]
    assert binarise(logits).dtype == torch.bool

    x = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(0)) * 4
    assert torch.equal(binarise(x), x > 0)
    # Another threshold moves the cut to the logit of that threshold.
    cut = float(np.log(0.9 / 0.1))
    away = (x - cut).abs() > 1e-4
    assert torch.equal(binarise(x, threshold=0.9)[away], (x > cut)[away])


def test_metric_metadata() -> None:
    assert set(UTILITY_METRICS) == set(utility_scores(ConfusionCounts(tp=1)))
    for info in UTILITY_METRICS.values():
        assert info.higher_is_better
        assert (info.lower, info.upper) == (0.0, 1.0)

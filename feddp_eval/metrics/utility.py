"""Utility of a segmentation: Dice, Jaccard (IoU) and pixel accuracy of binarised predictions.

Pure functions on confusion counts, so per-site and pooled scores use one
definition: pooling adds the counts of every held-out pixel, then divides.
When prediction and truth are both empty, Dice and Jaccard are 1 (perfect
agreement), as scikit-learn's ``zero_division=1.0``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import Tensor

from feddp_eval import schema

UTILITY_METRICS = {name: schema.column(name) for name in ("dice", "jaccard", "accuracy")}
"""Utility metrics, as the results schema defines them (direction, range, label)."""


@dataclass(frozen=True)
class ConfusionCounts:
    """Pixel counts of a binary segmentation."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    def __add__(self, other: ConfusionCounts) -> ConfusionCounts:
        return ConfusionCounts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn, self.tn + other.tn)

    @property
    def total(self) -> int:
        return self.tp + self.fp + self.fn + self.tn


def confusion_counts(prediction: Tensor, target: Tensor) -> ConfusionCounts:
    """Counts for boolean (or {0, 1}) tensors of the same shape."""
    if prediction.shape != target.shape:
        raise ValueError(f"prediction {tuple(prediction.shape)} and target {tuple(target.shape)} differ")
    p, t = prediction.bool(), target.bool()
    tp = int((p & t).sum())
    fp = int((p & ~t).sum())
    fn = int((~p & t).sum())
    return ConfusionCounts(tp=tp, fp=fp, fn=fn, tn=p.numel() - tp - fp - fn)


def dice(c: ConfusionCounts) -> float:
    """2·TP / (2·TP + FP + FN); 1 when both are empty."""
    denominator = 2 * c.tp + c.fp + c.fn
    return 1.0 if denominator == 0 else 2 * c.tp / denominator


def jaccard(c: ConfusionCounts) -> float:
    """TP / (TP + FP + FN); 1 when both are empty."""
    denominator = c.tp + c.fp + c.fn
    return 1.0 if denominator == 0 else c.tp / denominator


def pixel_accuracy(c: ConfusionCounts) -> float:
    """(TP + TN) / all pixels."""
    if c.total == 0:
        raise ValueError("pixel accuracy of zero pixels is undefined")
    return (c.tp + c.tn) / c.total


def utility_scores(c: ConfusionCounts) -> dict[str, float]:
    """``{"dice", "jaccard", "accuracy"}`` of one set of counts."""
    return {"dice": dice(c), "jaccard": jaccard(c), "accuracy": pixel_accuracy(c)}


def pooled(counts: Iterable[ConfusionCounts]) -> ConfusionCounts:
    """Sum of counts (micro-average over sites)."""
    total = ConfusionCounts()
    for c in counts:
        total = total + c
    return total


def binarise(logits: Tensor, threshold: float = 0.5) -> Tensor:
    """Foreground where sigmoid(logits) > threshold."""
    return torch.sigmoid(logits) > threshold

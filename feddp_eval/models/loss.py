"""Segmentation loss: binary cross-entropy plus soft Dice, computed per sample.

Per-sample matters: DP-SGD clips each sample's gradient, which is only that
sample's gradient if the loss of the batch is a mean of per-sample losses. A
soft Dice pooled over the batch couples samples and gives wrong per-sample
gradients without any error.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

Reduction = Literal["mean", "sum", "none"]


def soft_dice_loss(logits: Tensor, masks: Tensor, *, eps: float = 1.0) -> Tensor:
    """1 − soft Dice of each sample: (B,) for logits and masks of shape (B, 1, H, W)."""
    probs = torch.sigmoid(logits).flatten(1)
    target = masks.flatten(1)
    overlap = (probs * target).sum(1)
    total = probs.sum(1) + target.sum(1)
    return 1.0 - (2.0 * overlap + eps) / (total + eps)


def segmentation_loss(
    logits: Tensor, masks: Tensor, *, dice_weight: float = 1.0, reduction: Reduction = "mean"
) -> Tensor:
    """BCE (pixel mean per sample) + ``dice_weight`` × soft Dice loss, per sample then reduced.

    Args:
        logits: (B, 1, H, W) raw model outputs.
        masks: (B, 1, H, W) float targets in {0, 1}.
        dice_weight: Weight of the soft Dice term.
        reduction: ``mean`` or ``sum`` over the batch, or ``none`` for the (B,) vector.
    """
    bce = F.binary_cross_entropy_with_logits(logits, masks, reduction="none").flatten(1).mean(1)
    per_sample = bce + dice_weight * soft_dice_loss(logits, masks) if dice_weight else bce
    if reduction == "none":
        return per_sample
    return per_sample.sum() if reduction == "sum" else per_sample.mean()


class SegmentationLoss(torch.nn.Module):
    """Module form of :func:`segmentation_loss` honouring ``reduction`` (Opacus' ghost clipping sets it)."""

    def __init__(self, dice_weight: float = 1.0, reduction: Reduction = "mean") -> None:
        super().__init__()
        self.dice_weight = dice_weight
        self.reduction: Reduction = reduction

    def forward(self, logits: Tensor, masks: Tensor) -> Tensor:
        return segmentation_loss(logits, masks, dice_weight=self.dice_weight, reduction=self.reduction)

"""A training run refuses NaN and inf: a non-finite update or model stops it, naming where.

Nothing here imports torch at module level.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from feddp_eval.errors import NonFiniteError

if TYPE_CHECKING:
    from torch import Tensor


def require_finite(tensors: Mapping[str, Tensor], *, what: str, fix: str) -> None:
    """Refuse a set of tensors holding NaN or inf.

    Args:
        tensors: Named tensors (weights or an update).
        what: Where they come from, for the message (``"the update site 1 released in round 2"``).
        fix: What the user can do about it.

    Raises:
        NonFiniteError: Naming ``what``, the first non-finite tensor and how many values are bad.
    """
    import torch

    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise NonFiniteError(f"{what} is not finite ({bad} NaN/inf values in `{name}`); {fix}")

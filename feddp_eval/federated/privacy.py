"""The privacy record every defense side reports: ε always with its δ, granularity and accountant.

Its own module so that both the client side (:mod:`~feddp_eval.federated.hooks`) and the server
side (:mod:`~feddp_eval.federated.aggregation`) can name it without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PrivacyRecord:
    """A privacy guarantee, always with its δ, granularity, mechanism and accountant.

    ``epsilon`` is ``None`` when the mechanism has no formal guarantee.
    """

    client_id: int | None
    mechanism: str
    granularity: str  # "sample-level", "client-level" or "none"
    epsilon: float | None
    delta: float | None
    accountant: str | None
    noise_multiplier: float | None = None
    clip: float | None = None
    sample_rate: float | None = None
    steps: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

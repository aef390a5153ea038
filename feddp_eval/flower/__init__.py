"""Flower integration: the ``flower`` engine, and a capturing strategy for your own ServerApp.

``from feddp_eval.flower import CapturingStrategy`` wraps any Flower strategy and records what the
server receives in the capture format ``feddp-eval attack`` reads. This package needs ``flwr`` (the
``flower`` extra); nothing else in feddp-eval imports it until a run picks ``engine = "flower"``.
Names load on first use, so a deployed node's handshake (:mod:`.protocol`) imports no torch.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

# Before flwr is first imported (it reads these once): no usage telemetry, no update check, so a run
# reaches no network beyond its own SuperLink. Set them to 1 / 0 yourself to opt back in.
os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ.setdefault("FLWR_DISABLE_UPDATE_CHECK", "1")

if TYPE_CHECKING:
    from feddp_eval.flower.capturing import CapturingStrategy, capture_record

__all__ = ["CapturingStrategy", "capture_record"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from feddp_eval.flower import capturing

        return getattr(capturing, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

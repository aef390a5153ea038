"""Flower integration: the ``flower`` engine, and a capturing strategy for your own ServerApp.

``from feddp_eval.flower import CapturingStrategy`` wraps any Flower strategy and records what the
server receives in the capture format ``feddp-eval attack`` reads. Importing this package imports
``flwr`` (the ``flower`` extra); nothing else in feddp-eval does until a run picks
``engine = "flower"``.
"""

from feddp_eval.flower.capturing import CapturingStrategy, capture_record

__all__ = ["CapturingStrategy", "capture_record"]

"""Defense plugins: the :class:`Defense` base class and the ``DEFENSES`` registry.

A defense is a :class:`~feddp_eval.federated.hooks.TrainingHooks` with a name,
built from the ``[defense]`` section of the experiment config. It overrides the
hooks it needs (client-side training, the released update, aggregation) and
reports its privacy spend with :meth:`privacy_records`.
"""

from __future__ import annotations

from typing import Any, ClassVar

from feddp_eval.config import DefenseConfig
from feddp_eval.federated.hooks import TrainingHooks
from feddp_eval.registry import Registry


class Defense(TrainingHooks):
    """Base of every registered defense.

    Attributes:
        summary: One line for ``feddp-eval list defenses``.
        protects_against_server: Whether the server that captures updates is kept out.
    """

    name: ClassVar[str]
    summary: ClassVar[str] = ""
    protects_against_server: ClassVar[bool] = True

    def __init__(self, config: DefenseConfig) -> None:
        self.config = config

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v!r}" for k, v in self.describe().items() if k != "name")
        return f"{type(self).__name__}({settings})"


DEFENSES: Registry[Defense] = Registry("defense")


def build_defense(config: DefenseConfig) -> Defense:
    """The registered defense named ``config.name``, validated and ready to hook into training."""
    import defenses  # noqa: F401  (registers the built-in defenses)

    return DEFENSES.create(config.name, config)

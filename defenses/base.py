"""Defense plugins: the :class:`Defense` base class and the ``DEFENSES`` registry.

A defense is a :class:`~feddp_eval.federated.hooks.TrainingHooks` with a name,
built from the ``[defense]`` section of the experiment config. It overrides the
hooks it needs (client-side training, the released update, aggregation) and
reports its privacy spend with :meth:`privacy_records`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from torch import nn

from feddp_eval.config import DefenseConfig
from feddp_eval.errors import ConfigError
from feddp_eval.federated.hooks import ClientPlan, PrivacyRecord, TrainingHooks
from feddp_eval.registry import Registry


class Defense(TrainingHooks):
    """Base of every registered defense.

    Attributes:
        summary: One line for ``feddp-eval list defenses``.
        protects_against_server: Whether the server that captures updates is kept out.
        granularity: What one unit of protection is: ``sample-level``, ``client-level`` or ``none``.
        notes: Warnings about the guarantee found while setting up (shown to the user).
    """

    name: ClassVar[str]
    summary: ClassVar[str] = ""
    protects_against_server: ClassVar[bool] = True
    granularity: ClassVar[str] = "none"

    def __init__(self, config: DefenseConfig) -> None:
        self.config = config
        self.plans: list[ClientPlan] = []
        self.notes: list[str] = []

    def setup(self, model: nn.Module, plans: Sequence[ClientPlan]) -> None:
        self.plans = list(plans)
        self.notes = self._delta_notes()

    def _delta_notes(self) -> list[str]:
        """δ should be well below 1/n for the protected unit, or "(ε, δ)" permits leaking a whole unit."""
        if self.granularity == "sample-level":
            units = min(p.n_samples for p in self.plans)
            unit = "tiles on the smallest site"
        elif self.granularity == "client-level":
            units, unit = len(self.plans), "clients"
        else:
            return []
        if self.config.delta >= 1 / units:
            return [
                f"delta {self.config.delta:g} >= 1/{units} ({unit}): a guarantee this weak allows "
                f"releasing a whole protected unit; use delta < {1 / units:.2g}"
            ]
        return []

    def privacy_records(self) -> list[PrivacyRecord]:
        """No formal guarantee: one record per client saying so."""
        return [
            PrivacyRecord(
                client_id=p.client_id,
                mechanism=self.name,
                granularity="none",
                epsilon=None,
                delta=None,
                accountant=None,
            )
            for p in self.plans
        ]

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v!r}" for k, v in self.describe().items() if k != "name")
        return f"{type(self).__name__}({settings})"


class GaussianDefense(Defense):
    """A defense adding Gaussian noise of multiplier σ (``noise``, or calibrated from ``target_epsilon``)."""

    def __init__(self, config: DefenseConfig) -> None:
        super().__init__(config)
        if config.target_epsilon is not None and config.noise > 0:
            raise ConfigError(
                f"give either `noise` ({config.noise}) or `target_epsilon` ({config.target_epsilon}) "
                f"for {self.name}, not both: the target calibrates the noise"
            )
        self.noise_multiplier = config.noise

    def record(
        self,
        client_id: int | None,
        mechanism: str,
        *,
        sample_rate: float,
        steps: int,
        history: Sequence[tuple[float, float, int]] | None = None,
    ) -> PrivacyRecord:
        """This defense's guarantee after ``steps`` compositions at ``sample_rate`` (or a history)."""
        from defenses.accounting import epsilon

        history = history if history is not None else [(self.noise_multiplier, sample_rate, steps)]
        return PrivacyRecord(
            client_id=client_id,
            mechanism=mechanism,
            granularity=self.granularity,
            epsilon=epsilon(history, delta=self.config.delta, accountant=self.config.accountant),
            delta=self.config.delta,
            accountant=self.config.accountant,
            noise_multiplier=self.noise_multiplier,
            clip=self.config.clip,
            sample_rate=sample_rate,
            steps=steps,
        )

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "noise_multiplier": self.noise_multiplier,
            "clip": self.config.clip,
            "delta": self.config.delta,
            "accountant": self.config.accountant,
            "target_epsilon": self.config.target_epsilon,
        }


DEFENSES: Registry[Defense] = Registry("defense")


def build_defense(config: DefenseConfig) -> Defense:
    """The registered defense named ``config.name``, validated and ready to hook into training."""
    import defenses  # noqa: F401  (registers the built-in defenses)

    return DEFENSES.create(config.name, config)

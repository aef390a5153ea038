"""Defense plugins: the :class:`Defense` base class and the ``DEFENSES`` registry.

A defense is a :class:`~feddp_eval.federated.hooks.TrainingHooks` with a name, built from the
``[defense]`` section of the experiment config. It acts on one side:

- client side (``side = "client"``): :meth:`Defense.client` builds each client's
  :class:`~feddp_eval.federated.hooks.ClientDefense` (local training, the released update, a
  per-client accountant);
- server side (``side = "server"``): :meth:`Defense.wrap` wraps the server's aggregator.

Defenses compose: a client-side defense in ``[defense]`` and a server-side one in
``[defense.server]``, each with its own settings::

    [defense]
    name = "dp-sgd"
    noise = 1.1
    clip = 1.0

    [defense.server]
    name = "central-dp"
    noise = 1.0
    clip = 0.05

Every earlier form (one ``[defense]`` naming any registered defense) means what it did. A composed
run reports the clients' guarantee (the one that holds against the server) as its headline and the
server's beside it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol

import torch
from torch import Tensor, nn

from feddp_eval.config import DefenseConfig
from feddp_eval.errors import ConfigError
from feddp_eval.federated.hooks import ClientDefense, ClientPlan, PrivacyRecord, TrainingHooks
from feddp_eval.plugins import DefenseCard, file_defense
from feddp_eval.registry import Registry

History = list[tuple[float, float, int]]


@dataclass(frozen=True)
class SimulatedRelease:
    """What :meth:`Defense.release_simulated` reads: the defense's published settings (the capture's
    record, ``describe()``, with the round's ``batch_size`` and ``n_samples``), the local training
    it releases, and the generator of its noise."""

    published: Mapping[str, Any]
    recipe: SimulatedRound
    generator: torch.Generator


class SimulatedRound(Protocol):
    """What :meth:`Defense.release_simulated` reads of the local training it releases."""

    @property
    def lr(self) -> float: ...

    @property
    def optimizer(self) -> str: ...

    @property
    def steps(self) -> int: ...


class Defense(TrainingHooks):
    """Base of every registered defense.

    Attributes:
        summary: One line for ``feddp-eval list defenses``.
        side: ``client`` (trains or releases on the clients) or ``server`` (wraps aggregation).
        protects_against_server: Whether the server that captures updates is kept out.
        granularity: What one unit of protection is: ``sample-level``, ``client-level`` or ``none``.
        protects: The report's sentence: what the defense does and whom it protects (empty: the
            report calls it a custom defense).
        caveat: What the report's verdict adds after this defense's sentence, beginning after its
            name (``"noises only the aggregate, ..."``); empty for nothing.
        colour: Its colour on the report's figures (``None``: a spare Okabe–Ito colour, by name).
        marker: Its matplotlib marker on the report's figures (``None``: the spare marker).
        report_order: Its place in the report's tables and figures (``None``: after every ordered
            defense, alphabetically).
        notes: Warnings about the guarantee found while setting up (shown to the user).
    """

    name: ClassVar[str]
    summary: ClassVar[str] = ""
    side: ClassVar[Literal["client", "server"]] = "client"
    protects_against_server: ClassVar[bool] = True
    granularity: ClassVar[str] = "none"
    protects: ClassVar[str] = ""
    caveat: ClassVar[str] = ""
    colour: ClassVar[str | None] = None
    marker: ClassVar[str | None] = None
    report_order: ClassVar[int | None] = None

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

    def client(self, plan: ClientPlan) -> ClientDefense:
        """A client releasing its raw update, reporting that it has no formal guarantee."""
        return UnaccountedClient(plan, mechanism=self.name)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}

    @classmethod
    def release_simulated(cls, updates: Tensor, release: SimulatedRelease) -> Tensor:
        """``updates`` (N, P), one-tile client rounds as trained (flat ``local − global``), as this
        defense would have released them, in place: for an attacker that learns from rounds it
        simulates (``attacks/learned.py``), from the settings the defense published in the capture
        (``release.published``: a DP mechanism's σ and C are public). A server-side defense acts
        after the server has seen each update, so its clients' updates reach the server as trained;
        a client-side defense says how it releases one, or this refuses."""
        if cls.side == "server":
            return updates
        raise ConfigError(
            f"defense {cls.name!r} does not say how it releases a simulated update; an attack that "
            "learns from simulated rounds cannot read its captures"
        )

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v!r}" for k, v in self.describe().items() if k != "name")
        return f"{type(self).__name__}({settings})"


class UnaccountedClient(ClientDefense):
    """A client side with no accountant: its record says there is no formal guarantee."""

    def __init__(self, plan: ClientPlan, *, mechanism: str) -> None:
        super().__init__(plan)
        self.mechanism = mechanism

    def privacy_record(self) -> PrivacyRecord:
        return PrivacyRecord(
            client_id=self.plan.client_id,
            mechanism=self.mechanism,
            granularity="none",
            epsilon=None,
            delta=None,
            accountant=None,
        )


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

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "noise_multiplier": self.noise_multiplier,
            "clip": self.config.clip,
            "delta": self.config.delta,
            "accountant": self.config.accountant,
            "target_epsilon": self.config.target_epsilon,
        }


def gaussian_record(
    config: DefenseConfig,
    *,
    client_id: int | None,
    mechanism: str,
    granularity: str,
    noise_multiplier: float,
    history: History,
    sample_rate: float,
) -> PrivacyRecord:
    """The guarantee of a composition of (subsampled) Gaussian mechanisms ``history`` at ``config.delta``.

    ``noise_multiplier`` and ``sample_rate`` label the record; ε comes from ``history`` alone.
    """
    from defenses.accounting import epsilon

    return PrivacyRecord(
        client_id=client_id,
        mechanism=mechanism,
        granularity=granularity,
        epsilon=epsilon(history, delta=config.delta, accountant=config.accountant),
        delta=config.delta,
        accountant=config.accountant,
        noise_multiplier=noise_multiplier,
        clip=config.clip,
        sample_rate=sample_rate,
        steps=sum(k for _, _, k in history),
    )


def card(cls: type[Defense]) -> DefenseCard:
    """What a registered defense declares, as the core and the report read it."""
    return DefenseCard(
        name=cls.name,
        side=cls.side,
        granularity=cls.granularity,
        protects_against_server=cls.protects_against_server,
        protects=cls.protects,
        caveat=cls.caveat,
        colour=cls.colour,
        marker=cls.marker,
        order=cls.report_order,
    )


# Each defense files its card as it registers: the report and the sweep read it from the core.
DEFENSES: Registry[Defense] = Registry("defense", on_register=lambda cls: file_defense(card(cls)))


def names_on(side: str) -> list[str]:
    """Registered defenses acting on ``side`` (``client`` or ``server``)."""
    return [n for n in DEFENSES.names() if DEFENSES.get(n).side == side]

"""A client-side defense and a server-side one run together (``[defense]`` + ``[defense.server]``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from defenses.base import Defense, names_on
from feddp_eval.errors import ConfigError
from feddp_eval.federated.aggregation import Aggregator
from feddp_eval.federated.hooks import ClientDefense, ClientPlan


class ComposedDefense(Defense):
    """``on_clients`` trains and releases on every client; ``on_server`` wraps the aggregation.

    The guarantee against the server is the client side's; ``granularity`` and
    ``protects_against_server`` are therefore the client side's too.
    """

    def __init__(self, on_clients: Defense, on_server: Defense) -> None:
        super().__init__(on_clients.config)
        self.on_clients, self.on_server = on_clients, on_server
        self.name = f"{on_clients.name}+{on_server.name}"  # type: ignore[misc]  # per instance, not registered
        self.granularity = on_clients.granularity  # type: ignore[misc]
        self.protects_against_server = on_clients.protects_against_server  # type: ignore[misc]
        self.poisson_sampling = on_clients.poisson_sampling

    def setup(self, model: nn.Module, plans: Sequence[ClientPlan]) -> None:
        self.plans = list(plans)
        self.on_clients.setup(model, plans)
        self.on_server.setup(model, plans)
        self.notes = [*self.on_clients.notes, *self.on_server.notes]

    def client(self, plan: ClientPlan) -> ClientDefense:
        return self.on_clients.client(plan)

    def wrap(self, inner: Aggregator) -> Aggregator:
        return self.on_server.wrap(self.on_clients.wrap(inner))

    def describe(self) -> dict[str, Any]:
        return {**self.on_clients.describe(), "server": self.on_server.describe()}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.on_clients!r}, {self.on_server!r})"


def compose(on_clients: Defense, on_server: Defense) -> ComposedDefense:
    """The two defenses together; each must act on its own side."""
    problems = []
    if on_clients.side != "client":
        problems.append(
            f"`defense.name` {on_clients.name!r} acts at the server; with a `[defense.server]` table, "
            f"name a client-side defense there ({', '.join(names_on('client'))})"
        )
    if on_server.side != "server":
        problems.append(
            f"`defense.server.name` must be a server-side defense ({', '.join(names_on('server'))}), "
            f"but got {on_server.name!r}"
        )
    if on_server.config.server is not None:
        problems.append("`defense.server` cannot hold another `server` table; compose two defenses at most")
    if problems:
        raise ConfigError(problems)
    return ComposedDefense(on_clients, on_server)

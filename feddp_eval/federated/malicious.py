"""A malicious server: for one client in one round it sends a modified model instead of the global one.

The honest loop sends every sampled client the global U-Net. A malicious server
(threat model "malicious server: modifies the model it sends (one round)") may
send a target client something else; the client cannot tell and trains it with
its own loss, optimizer and defense, then releases the update as usual. The
server keeps that update whole in its capture (that is the leak), and feeds only
the global model's part to aggregation, so the federation trains on as before.

The round loop knows only :class:`ModelModification`; the attack that needs a modified model builds
it (``attacks.base.Attack.model_modification``) and declares it on its card (:mod:`feddp_eval.plugins`),
so that the modification enters the training run's config hash.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch
from torch import Tensor, nn

from feddp_eval.data.types import Site


class ModelModification(Protocol):
    """What a malicious server does to the model it sends, as :func:`~feddp_eval.federated.loop.train_job`
    runs it."""

    def applies(self, round_index: int, site_index: int, sites: list[Site]) -> bool:
        """Whether site ``site_index`` gets the modified model in round ``round_index`` (rounds from 1)."""
        ...

    def model_for(self, body: nn.Module, site: Site, generator: torch.Generator) -> nn.Module:
        """The model sent to ``site`` instead of ``body`` (the global model; its weights are kept)."""
        ...

    def describe(self, site: Site) -> dict[str, Any]:
        """What the server sent ``site``, as plain JSON for the capture's metadata (``model``)."""
        ...

    def server_part(self, update: dict[str, Tensor]) -> dict[str, Tensor]:
        """The global model's part of the modified model's update, under its own names (what is
        aggregated)."""
        ...


def public_brightness(site: Site) -> tuple[float, float]:
    """Mean and standard deviation of the mean brightness of a site's held-out (public) tiles."""
    brightness = site.test.images.mean(dim=(1, 2, 3))
    std = float(brightness.std()) if len(brightness) > 1 else 0.05
    return float(brightness.mean()), std

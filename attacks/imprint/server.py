"""The imprint attack's malicious server: for one client in one round it sends the imprinted model.

The honest loop sends every sampled client the global U-Net. This server (threat model "malicious
server: modifies the model it sends (one round)") sends its target client the U-Net behind an imprint
block (:mod:`attacks.imprint.block`); the client cannot tell and trains it with its own loss,
optimizer and defense, then releases the update as usual. The server keeps that update whole in its
capture (that is the leak), and feeds only the U-Net's part to aggregation, so the federation trains
on as before. It is the :class:`~feddp_eval.federated.malicious.ModelModification` the round loop runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from attacks.imprint.block import brightness_thresholds, build_imprinted, strip_imprint
from feddp_eval.data.types import Site
from feddp_eval.federated.malicious import public_brightness

MODIFICATION = "imprint"  # the modification's name: in the config hash and the capture metadata


@dataclass(frozen=True)
class ImprintServer:
    """Sends site ``site`` in round ``round`` the U-Net behind an imprint block of ``bins`` bins.

    Attributes:
        site: Target site index (-1: the site with the fewest training tiles).
        round: The round in which the modified model is sent.
        bins: Number of brightness bins of the imprint block.
        scale: Decoder entry size (how much the bins perturb the tile the U-Net sees).
        gain: How loud the bins are in the update (see :func:`~attacks.imprint.block.build_imprinted`).
        spread: Widening of the public brightness spread when placing the thresholds.
    """

    site: int
    round: int
    bins: int = 128
    scale: float = 1e-3
    gain: float = 1e4
    spread: float = 1.5

    def target(self, sites: list[Site]) -> int:
        """The target site index, with -1 resolved to the smallest site (ties: the lowest index)."""
        if self.site >= 0:
            return self.site
        return min(range(len(sites)), key=lambda i: (len(sites[i].train), i))

    def applies(self, round_index: int, site_index: int, sites: list[Site]) -> bool:
        return round_index == self.round and site_index == self.target(sites)

    def thresholds(self, site: Site) -> list[float]:
        """The bins' brightness thresholds, from the site's public statistics."""
        mean, std = public_brightness(site)
        return brightness_thresholds(mean, std, self.bins, spread=self.spread)

    def model_for(self, body: nn.Module, site: Site, generator: torch.Generator) -> nn.Module:
        """The imprinted model sent to the target site."""
        shape = tuple(site.train.images.shape[1:])
        return build_imprinted(
            body, shape, self.thresholds(site), scale=self.scale, gain=self.gain, generator=generator
        )

    def describe(self, site: Site) -> dict[str, Any]:
        """What the server sent the site, for the capture metadata (the server knows what it built)."""
        return {
            "modification": MODIFICATION,
            "statistic": "mean brightness",
            "bins": self.bins,
            "scale": self.scale,
            "gain": self.gain,
            "thresholds": self.thresholds(site),  # in brightness units, as the slots are read
        }

    def server_part(self, update: dict[str, Tensor]) -> dict[str, Tensor]:
        """The U-Net's part of the update, which goes into aggregation."""
        return strip_imprint(update)

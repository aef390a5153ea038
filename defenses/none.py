"""The undefended reference arm."""

from __future__ import annotations

from defenses.base import DEFENSES, Defense


@DEFENSES.register("none")
class NoDefense(Defense):
    """Plain FedAvg: raw updates, no noise, no formal guarantee."""

    summary = "no defense: raw updates reach the server (the reference arm)"
    protects_against_server = False

"""Dirac canaries for the one-run audit: their design, their secret membership, and where both are kept.

A canary is a gradient (or update) vector of L2 norm ``C`` — the defense's clip — on one
coordinate of one parameter, with a random sign, owned by one client. Each canary is a member
(injected into training) independently with probability ½. The design (owner, coordinate, sign,
norm) is what an auditor knows, like a paper's published canary set; the membership is the
secret the audit guesses, and it is stored apart with the ground truth, which attacks never read.

Run-directory layout::

    audit/canaries.json                      the design, the level, δ and the accountant's ε
    ground_truth/audit-membership.json       which canaries were injected (scoring only)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from feddp_eval.errors import ConfigError, RunDirError
from feddp_eval.io import read_json, write_json
from feddp_eval.seeding import generator

DESIGN_FILE = Path("audit") / "canaries.json"
MEMBERSHIP_FILE = Path("ground_truth") / "audit-membership.json"

# Where a canary enters, by the defense's unit of protection (see :func:`canary_level`).
GRADIENT = "gradient"  # a sample: added to a local step's summed, clipped gradient before the noise
UPDATE = "update"  # a piece of a client's data: added to the client's raw update before its release
NOT_APPLICABLE = "not-applicable"


@dataclass(frozen=True)
class Canary:
    """One Dirac canary: ``sign · norm`` at flat ``index`` of parameter ``parameter`` of ``client``."""

    client: int
    parameter: str
    index: int
    sign: int  # +1 or -1

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def canary_level(hooks: Any) -> tuple[str, str]:
    """Where canaries enter under ``hooks`` (a defense or plain hooks), and why.

    - ``sample-level`` mechanisms (DP-SGD) and defenses without a guarantee: a canary is a
      sample, so its gradient joins each local step it is Poisson-sampled into.
    - ``client-level`` mechanisms the server cannot see past (local DP): a canary is part of
      a client's data, so it joins the client's raw update each round, before clip and noise;
      a client-level guarantee covers any part of a client's data.
    - client-level mechanisms applied by the server (central DP): the server sees the updates
      before its own noise, so an audit from its view says nothing about that mechanism.
    """
    granularity = getattr(hooks, "granularity", "none")
    if granularity == "client-level" and not getattr(hooks, "protects_against_server", True):
        return NOT_APPLICABLE, (
            f"{getattr(hooks, 'name', 'this defense')} adds its noise after the server has received the "
            "updates, so the server's view (the captures) cannot audit it"
        )
    if granularity == "client-level":
        return (
            UPDATE,
            "client-level mechanism: one canary is part of a client's update, before clip and noise",
        )
    return GRADIENT, "sample-level: one canary is a sample whose clipped gradient is a Dirac vector of norm C"


def draw_canaries(model: nn.Module, *, count: int, clients: int, seed: int) -> list[Canary]:
    """``count`` canaries on distinct coordinates of ``model``'s trainable parameters, dealt to clients
    in turn, with random signs, all from ``seed`` (the audit's public seed)."""
    named = [(name, p.numel()) for name, p in model.named_parameters() if p.requires_grad]
    total = sum(n for _, n in named)
    if not 2 <= count <= total:
        raise ConfigError(
            f"`train.audit_canaries` must be in [2, {total}] (the model's weights; one canary each), "
            f"but got {count}"
        )
    gen = generator(seed, "audit", "canaries")
    flat = torch.randperm(total, generator=gen)[:count].tolist()
    signs = torch.where(torch.rand(count, generator=gen) < 0.5, -1, 1).tolist()
    offsets = torch.tensor([0] + [n for _, n in named]).cumsum(0)
    canaries = []
    for i, (coordinate, sign) in enumerate(zip(flat, signs, strict=True)):
        layer = int(torch.searchsorted(offsets, coordinate, right=True)) - 1
        name = named[layer][0]
        canaries.append(Canary(i % clients, name, coordinate - int(offsets[layer]), int(sign)))
    return canaries


def draw_membership(count: int, *, seed: int) -> list[bool]:
    """Each canary in with probability ½, independently (the audit's secret seed)."""
    return (torch.rand(count, generator=generator(seed, "audit", "membership")) < 0.5).tolist()


def write_design(run_dir: str | Path, design: dict[str, Any], members: Sequence[bool]) -> None:
    """Record the canary design (public) and, apart, their membership (scoring only)."""
    write_json(Path(run_dir) / DESIGN_FILE, design)
    write_json(Path(run_dir) / MEMBERSHIP_FILE, {"members": [bool(x) for x in members]})


def read_design(run_dir: str | Path) -> tuple[dict[str, Any], list[Canary]]:
    """The recorded design and its canaries.

    Raises:
        RunDirError: The run was not trained with the audit on, or the file is malformed.
    """
    path = Path(run_dir) / DESIGN_FILE
    if not path.exists():
        raise RunDirError(f"{path} does not exist; train the run with the audit on (`train.audit = true`)")
    design = read_json(path)
    try:
        canaries = [
            Canary(int(c["client"]), str(c["parameter"]), int(c["index"]), int(c["sign"]))
            for c in design["canary_list"]
        ]
    except (KeyError, TypeError, ValueError) as exc:
        raise RunDirError(f"{path} is malformed ({exc!r}); retrain the run with the audit on") from None
    if len(canaries) != int(design.get("canaries", -1)):
        raise RunDirError(f"{path} lists {len(canaries)} canaries but declares {design.get('canaries')}")
    return design, canaries


def read_membership(run_dir: str | Path, count: int) -> list[bool]:
    """The recorded membership of ``count`` canaries (scoring only)."""
    path = Path(run_dir) / MEMBERSHIP_FILE
    members = read_json(path).get("members") if path.exists() else None
    if not isinstance(members, list) or len(members) != count:
        raise RunDirError(f"{path} must list the membership of {count} canaries; retrain with the audit on")
    return [bool(x) for x in members]

"""Every random draw flows from the experiment seed through named, derived seeds.

``derive_seed(seed, "schedule", round, site)`` gives the same number whatever
ran before it, so adding a site or a stage never shifts another stage's draws.
"""

from __future__ import annotations

import hashlib

import torch


def derive_seed(seed: int, *keys: object) -> int:
    """A 63-bit seed determined by ``seed`` and the ``keys`` path (stable across runs and platforms)."""
    blob = repr((int(seed), *keys)).encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:8], "little") >> 1


def generator(seed: int, *keys: object) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with ``derive_seed(seed, *keys)``."""
    return torch.Generator().manual_seed(derive_seed(seed, *keys))

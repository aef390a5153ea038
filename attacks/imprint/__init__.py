"""The imprint attack (Fowl et al. 2022) of a malicious server, with everything it plants.

- :mod:`.block`: the imprint block the server puts in front of the U-Net, and its parameters' names;
- :mod:`.server`: the server that sends one client that model in one round (the round loop's
  :class:`~feddp_eval.federated.malicious.ModelModification`);
- :mod:`.attack`: the registered ``Imprint`` attack, which reads the tiles out of that client's update.
"""

from attacks.imprint.attack import (
    THREAT,
    Imprint,
    ImprintConfig,
    SlotEvidence,
    read_slots,
    shrink,
    slot_ratios,
)
from attacks.imprint.block import (
    ImprintBlock,
    ImprintedModel,
    brightness_thresholds,
    build_imprinted,
    imprinted_shapes,
    slot_of,
    strip_imprint,
)
from attacks.imprint.server import ImprintServer

__all__ = [
    "THREAT",
    "Imprint",
    "ImprintBlock",
    "ImprintConfig",
    "ImprintServer",
    "ImprintedModel",
    "SlotEvidence",
    "brightness_thresholds",
    "build_imprinted",
    "imprinted_shapes",
    "read_slots",
    "shrink",
    "slot_of",
    "slot_ratios",
    "strip_imprint",
]

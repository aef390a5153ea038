"""The message keys of this toolkit's Flower apps, and the handshake: torch-free, so a node answers
"which site do you serve?" without loading a model.

A node's site is its ``partition-id`` node config (set by the Simulation Runtime, or by
``flower-supernode --node-config 'partition-id=<site index>'``).
"""

from __future__ import annotations

from flwr.app import Context, Message, MetricRecord, RecordDict

ARRAYS = "arrays"  # Flower's default ArrayRecord key (FedAvg's ``arrayrecord_key``)
CONFIG = "config"  # Flower's default ConfigRecord key
METRICS = "metrics"
CAPTURE = "feddp-capture"  # ConfigRecord a client attaches for the capturing server
STATE = "feddp-client"  # ConfigRecord in a client's Context.state: its defense's accountant
PRIVACY = "feddp-privacy"  # ConfigRecord: a client's PrivacyRecord as JSON
ROW = "feddp-row"  # ConfigRecord: a client's clients.csv row as JSON
JSON_FIELD = "json"
SITE_INDEX = "site-index"
NUM_EXAMPLES = "num-examples"  # Flower's default weighting key
PARTITION_ID = "partition-id"


def integer(value: object, *, what: str) -> int:
    """``value`` (a record scalar) as an int; anything else is refused, naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
        raise ValueError(f"`{what}` must be an integer, but got {value!r}")
    return int(value)


def site_index(context: Context) -> int:
    """The site a node serves: its ``partition-id`` node config."""
    if PARTITION_ID not in context.node_config:
        raise ValueError(
            f"this SuperNode has no `{PARTITION_ID}` in its node config ({dict(context.node_config)}); "
            f"start it with --node-config '{PARTITION_ID}=<site index>'"
        )
    return integer(context.node_config[PARTITION_ID], what=PARTITION_ID)


def handshake(msg: Message, context: Context) -> Message:
    """The reply to the server's query message: the site this node serves."""
    metrics = MetricRecord({SITE_INDEX: site_index(context)})
    return Message(content=RecordDict({METRICS: metrics}), reply_to=msg)

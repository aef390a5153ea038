"""Tensors and JSON in and out of Flower records, and the keys this toolkit's messages use.

A client of the ``flower`` engine sends its local weights as float64 (``WIRE_DTYPE``): the sum of
a float32 global weight and a float32 released update is exact in float64, so the server's
``received − sent``, rounded to float32, recovers the released update bit for bit (a coordinate
below about 2⁻²⁹ of its weight may differ in its last float32 bit; see :mod:`.capturing`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, MetricRecord, RecordDict
from torch import Tensor

from feddp_eval.flower.protocol import JSON_FIELD

WIRE_DTYPE = torch.float64


def to_record(tensors: Mapping[str, Tensor], *, dtype: torch.dtype | None = None) -> ArrayRecord:
    """An ArrayRecord of ``tensors`` (on CPU, cast to ``dtype`` when given), in their order."""
    return ArrayRecord(
        {
            name: Array(np.ascontiguousarray(t.detach().to("cpu", dtype or t.dtype).numpy()))
            for name, t in tensors.items()
        }
    )


def from_record(record: ArrayRecord) -> dict[str, Tensor]:
    """The tensors of an ArrayRecord (CPU, their own dtype), by name."""
    return {name: torch.from_numpy(np.array(array.numpy(), copy=True)) for name, array in record.items()}


def difference(received: ArrayRecord, sent: ArrayRecord) -> dict[str, Tensor]:
    """``received − sent`` per parameter, computed in float64 and returned in ``sent``'s dtypes.

    Raises:
        ValueError: The two records name different parameters or shapes.
    """
    got, base = from_record(received), from_record(sent)
    if list(got) != list(base) or any(got[n].shape != base[n].shape for n in base):
        raise ValueError(
            f"a reply's arrays {[(n, tuple(t.shape)) for n, t in got.items()]!r:.200} do not match the "
            f"arrays sent {[(n, tuple(t.shape)) for n, t in base.items()]!r:.200}; send back the model's "
            "parameters under the names and shapes received"
        )
    return {n: (got[n].double() - base[n].double()).to(base[n].dtype) for n in base}


def json_record(value: Any) -> ConfigRecord:
    """A ConfigRecord carrying ``value`` as one JSON string (nested metadata does not fit a record)."""
    return ConfigRecord({JSON_FIELD: json.dumps(value)})


def read_json_record(content: RecordDict, key: str) -> Any:
    """The JSON value a :func:`json_record` under ``key`` carries, or ``None`` without one."""
    if key not in content.config_records:
        return None
    return json.loads(str(content.config_records[key][JSON_FIELD]))


def metric_record(values: Mapping[str, int | float]) -> MetricRecord:
    """A MetricRecord of scalar ``values``."""
    typed: dict[str, int | float | list[int] | list[float]] = dict(values)
    return MetricRecord(typed)

"""Flower tests: skipped without the ``flower`` extra; every test leaves no Ray and no child process."""

from __future__ import annotations

import importlib.util
import os
import signal
import time
from collections.abc import Iterator

import pytest
from processes import children

# No network beyond 127.0.0.1: Flower's usage telemetry and update check off, for this process and
# every process a test starts (set before any test module imports flwr, which reads them once).
os.environ["FLWR_TELEMETRY_ENABLED"] = "0"
os.environ["FLWR_DISABLE_UPDATE_CHECK"] = "1"

if importlib.util.find_spec("flwr") is None or importlib.util.find_spec("ray") is None:
    collect_ignore_glob = ["test_*.py"]  # without the flower extra: tests/test_flower_extra.py skips, visibly


@pytest.fixture(autouse=True)
def _no_ray_left_behind() -> Iterator[None]:
    """Shut Ray down after each test and wait (bounded) for every process it started to exit."""
    before = children()
    yield
    import ray

    if ray.is_initialized():
        ray.shutdown()
    deadline = time.monotonic() + 20
    while (left := children() - before) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in left:  # our own children only, by id
        os.kill(pid, signal.SIGKILL)
    assert not left, f"processes still running after the test: {sorted(left)}"

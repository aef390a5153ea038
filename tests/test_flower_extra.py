"""The Flower tests in tests/flower/ need the ``flower`` extra; without it they are not collected, and
this test says so in the run's summary (a visible skip, never a silent one)."""

from __future__ import annotations

import pytest


def test_the_flower_extra_is_installed_at_its_pinned_version() -> None:
    flwr = pytest.importorskip(
        "flwr",
        reason="the flower extra is missing, so tests/flower/ was not collected: pip install -e '.[dev]'",
    )
    pytest.importorskip("ray", reason="flwr[simulation] is missing Ray, so tests/flower/ was not collected")
    from importlib.metadata import version

    assert version("flwr") == "1.42.0", flwr.__file__  # the pin in pyproject.toml's flower extra

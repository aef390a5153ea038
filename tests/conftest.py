"""Tiny fixtures shared by the test suite: 16 px tiles, a 4-channel U-Net, two rounds."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

import attacks  # noqa: F401  # files each attack's card: config hashes and checks read them, as in the CLI
from feddp_eval.config import ExperimentConfig, from_dict, validate

TESTS = Path(__file__).parent

SLOW_FIRST = (
    "flower/test_sweep_ray.py",  # 128 s
    "test_sweep.py",  # 109 s
    "flower/test_deployment.py",  # 91 s
    "flower/test_cli_and_imports.py",  # 74 s
    "flower/test_audit_on_flower.py",  # 55 s
    "flower/test_sweep_flower_jobs.py",  # 46 s (84 s before its local half ran in-process)
    "attacks/test_multiround.py",  # 44 s
    "attacks/test_recovery.py",  # 40 s
    "flower/test_engine_equivalence.py",  # 30 s
    "reports/test_build_report.py",  # 22 s
    "test_delta_dice.py",  # 25 s on a 2-core AMD EPYC: the headline's worker and seed runs, twice
    "flower/test_readme_example.py",  # 20 s
)
"""The suite's slowest files, slowest first (seconds of one xdist worker on a 2-core Intel Xeon,
``--durations``, 2026-12-06). ``pytest -n 2 --dist loadfile --no-loadscope-reorder`` hands whole files
to the workers in collection order, so putting these first lets the many short files fill the end of
both workers' queues; xdist's own reordering (by test count) left the one-test Flower files to run
last, one worker busy and the other idle. A stale list costs time only, never a result."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Move ``SLOW_FIRST``'s files to the front, in its order; every file's tests keep their order."""
    rank = {name: i for i, name in enumerate(SLOW_FIRST)}

    def key(item: pytest.Item) -> int:
        path = Path(item.path)
        name = path.relative_to(TESTS).as_posix() if path.is_relative_to(TESTS) else ""
        return rank.get(name, len(rank))

    items.sort(key=key)


TINY = {
    "seed": 3,
    "device": "cpu",
    "data": {"sites": 2, "train_tiles": [6, 3], "test_tiles": 2, "tile_size": 16},
    "model": {"depth": 1, "width": 4, "groups": 2},
    "train": {"rounds": 2, "batch_size": 4, "lr": 0.01},
    # One training seed per arm: the suite tests the attack, not the utility interval
    # (tests/test_delta_dice.py runs paired seeds).
    "attack": {"utility_seeds": 1},
}


@pytest.fixture
def tiny_config() -> ExperimentConfig:
    """A config that trains in well under a second."""
    return validate(from_dict(ExperimentConfig, TINY))


@pytest.fixture
def tiny_toml(tmp_path: Path, tiny_config: ExperimentConfig) -> Path:
    from feddp_eval.config import to_toml

    path = tmp_path / "tiny.toml"
    path.write_text(to_toml(tiny_config))
    return path


TEST_THREADS = int(os.environ.get("FEDDP_TEST_THREADS", "1"))
"""Threads each test computes with. Tiny 16 px models gain nothing from threads, and on a busy 2-core
machine the OpenMP hand-off makes every small op slow, so the default is 1; CI runs the ``numeric`` tests
again at 2 threads on AVX2 kernels (``.ci/run``), so a threshold inside the float-order spread fails here
too, not only on another CPU (see ``benchmarks/spread.py``)."""


@pytest.fixture(autouse=True)
def _test_threads() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(TEST_THREADS)
    yield
    torch.set_num_threads(threads)

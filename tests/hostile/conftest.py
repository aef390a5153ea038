"""The run every hostile-input test copies and damages: trained and attacked once per package."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from feddp_eval.config import ExperimentConfig, to_toml, with_overrides
from feddp_eval.rundir.names import run_key


@pytest.fixture(scope="package")
def attacked(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> dict[str, Path]:
    """One finished tiny dp-sgd run attacked once: the run, its results and the config, to copy."""
    from feddp_eval.config import from_dict, validate
    from feddp_eval.pipeline import run_attack
    from tests.conftest import TINY

    root = tmp_path_factory.mktemp("attacked")
    config = with_overrides(
        validate(from_dict(ExperimentConfig, TINY)),
        {
            "train.rounds": 1,
            "attack.iterations": 2,
            "attack.target_site": 1,
            "defense.name": "dp-sgd",
            "defense.noise": 1.1,
        },
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    result = run_attack(config, out=root / "runs", reference=False)
    torch.set_num_threads(threads)
    toml = root / "exp.toml"
    toml.write_text(to_toml(config))
    return {
        "out": root / "runs",
        "run": Path("runs") / run_key(config),
        "results": Path("runs") / result.out_dir.name,
        "toml": toml,
    }

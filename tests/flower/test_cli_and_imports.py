"""``--engine flower`` on the command line; Flower stays unimported by ``--help`` and the local engine."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from feddp_eval.cli import app
from feddp_eval.config import ExperimentConfig, with_overrides
from feddp_eval.errors import ConfigError
from feddp_eval.io import read_json
from feddp_eval.pipeline import run_train


def test_help_and_a_local_run_do_not_import_flower(tmp_path: Path, tiny_toml: Path) -> None:
    code = (
        "import sys; from typer.testing import CliRunner; from feddp_eval.cli import app; "
        "r = CliRunner().invoke(app, ['--help']); assert r.exit_code == 0, r.output; "
        "r = CliRunner().invoke(app, ['train', '--help']); assert r.exit_code == 0, r.output; "
        "assert '--engine' in r.output; "
        f"r = CliRunner().invoke(app, ['train', '-c', {str(tiny_toml)!r}, '--out', {str(tmp_path / 'r')!r}, "
        "'--quiet']); assert r.exit_code == 0, r.output; "
        "from feddp_eval.federated.engine import ENGINES; assert 'flower' in ENGINES.names(); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('flwr', 'ray')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_engine_flag_trains_on_flower(tmp_path: Path, tiny_toml: Path) -> None:
    args = [
        "train",
        "-c",
        str(tiny_toml),
        "--engine",
        "flower",
        "--rounds",
        "1",
        "--out",
        str(tmp_path / "run"),
    ]
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    manifest = read_json(tmp_path / "run" / "manifest.json")
    assert "flower" in (tmp_path / "run" / "config.toml").read_text()
    assert manifest["status"] == "complete"
    assert sorted(p.name for p in (tmp_path / "run" / "captures" / "round-0001").iterdir()) == [
        "global.safetensors",
        "site-0.json",
        "site-0.safetensors",
        "site-1.json",
        "site-1.safetensors",
    ]


def test_an_imprint_run_on_flower_is_refused_with_the_fix(
    tmp_path: Path, tiny_config: ExperimentConfig
) -> None:
    config = with_overrides(tiny_config, {"attack.name": "imprint", "train.engine": "flower"})
    with pytest.raises(ConfigError, match='engine = "local"'):
        run_train(config, run_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()  # nothing half-written is left behind


def test_check_gates_leakage_on_a_flower_run(tmp_path: Path, tiny_config: ExperimentConfig) -> None:
    from feddp_eval.config import to_toml

    scenario = with_overrides(
        tiny_config, {"train.engine": "flower", "attack.iterations": 3, "attack.restarts": 1}
    )
    (tmp_path / "scenario.toml").write_text(to_toml(scenario))
    (tmp_path / "baseline.toml").write_text(
        'scenario = "scenario.toml"\n\n[arms.none]\npsnr_min = 1.0\ndice_min = 0.0\n'
    )
    args = ["check", "--baseline", str(tmp_path / "baseline.toml"), "--out", str(tmp_path / "out"), "--quiet"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    trained = [p for p in (tmp_path / "out").iterdir() if (p / "config.toml").exists()]
    assert len(trained) == 1 and 'engine = "flower"' in (trained[0] / "config.toml").read_text()

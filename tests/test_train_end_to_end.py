"""`feddp-eval train` end to end on tiny settings: run directory, determinism, capture, CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from feddp_eval.cli import app
from feddp_eval.config import ExperimentConfig, config_hash, load_config, with_overrides
from feddp_eval.errors import RunDirError
from feddp_eval.federated.capture import list_captures, load_ground_truth
from feddp_eval.io import read_csv
from feddp_eval.pipeline import run_train
from feddp_eval.rundir.summary import TrainSummary

runner = CliRunner()


def test_two_rounds_write_a_complete_run_directory(tmp_path: Path, tiny_config: ExperimentConfig) -> None:
    result = run_train(tiny_config, run_dir=tmp_path / "run")
    run = result.run_dir
    for name in (
        "config.toml",
        "manifest.json",
        "metrics.csv",
        "clients.csv",
        "model.safetensors",
        "summary.json",
        "sites.json",
        "privacy.json",
    ):
        assert (run / name).is_file(), name
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    assert manifest["config_hash"] == config_hash(tiny_config)
    assert manifest["seed"] == 3 and manifest["device"] == "cpu"
    assert manifest["packages"]["torch"] == torch.__version__.split("+")[0]
    assert load_config(run / "config.toml") == tiny_config
    # summary.json is the typed summary's JSON, and reads back as the summary returned.
    text = json.dumps(result.summary.to_json(), indent=2, sort_keys=True, allow_nan=True) + "\n"
    assert (run / "summary.json").read_text(encoding="utf-8") == text
    assert TrainSummary.from_json(json.loads(text)) == result.summary

    rows = read_csv(run / "metrics.csv")
    assert [(r["round"], r["site"]) for r in rows] == [
        (str(r), s) for r in (1, 2) for s in ("site-0", "site-1", "pooled")
    ]
    final = rows[-1]
    assert float(final["dice"]) == pytest.approx(result.summary.dice)
    assert 0.0 <= result.summary.dice <= 1.0

    # The no-model reference beside it: haematoxylin-Otsu on the same held-out tiles.
    from feddp_eval.data.sites import build_sites
    from feddp_eval.metrics.baselines import otsu_site_scores
    from feddp_eval.seeding import derive_seed

    sites = build_sites(tiny_config.data, seed=derive_seed(tiny_config.seed, "data"))
    reference = result.summary.reference
    assert reference["name"] == "hematoxylin-otsu"
    assert reference["sites"] == otsu_site_scores(sites)


def test_captures_are_exact_updates_loadable_with_safetensors_alone(
    tmp_path: Path, tiny_config: ExperimentConfig
) -> None:
    run = run_train(tiny_config, run_dir=tmp_path / "run").run_dir
    captures = list_captures(run)
    assert [(c.round, c.site_index) for c in captures] == [(1, 0), (1, 1), (2, 0), (2, 1)]
    # No defense, full participation: the next global model = global + sample-weighted mean update.
    round1 = [c for c in captures if c.round == 1]
    g1 = load_file(str(round1[0].folder / "global.safetensors"))
    g2 = load_file(str(captures[2].folder / "global.safetensors"))
    weights = [c.metadata["n_samples"] for c in round1]
    updates = [load_file(str(c.folder / c.metadata["update_file"])) for c in round1]
    for name in g1:
        mean = sum(u[name] * w for u, w in zip(updates, weights, strict=True)) / sum(weights)
        torch.testing.assert_close(g2[name], g1[name] + mean, rtol=0, atol=1e-6)

    meta = captures[1].metadata
    assert meta["n_samples"] == 3 and meta["batch_size"] == 4 and meta["local_steps"] == 1
    assert meta["defense"] == {"name": "none"} and meta["optimizer"] == "sgd"
    assert sorted(meta["batches"][0]) == [0, 1, 2]
    truth = load_ground_truth(run, captures[1])
    assert truth.images.shape == (3, 3, 16, 16) and set(truth.masks.unique().tolist()) <= {0.0, 1.0}
    assert not any("ground" in p.name for p in (run / "captures").rglob("*"))


def test_same_seed_gives_identical_metrics_csv(tmp_path: Path, tiny_config: ExperimentConfig) -> None:
    a = run_train(tiny_config, run_dir=tmp_path / "a").run_dir
    b = run_train(tiny_config, run_dir=tmp_path / "b").run_dir
    assert (a / "metrics.csv").read_bytes() == (b / "metrics.csv").read_bytes()
    other = run_train(with_overrides(tiny_config, {"seed": 4}), run_dir=tmp_path / "c").run_dir
    assert (a / "metrics.csv").read_bytes() != (other / "metrics.csv").read_bytes()


def test_finished_run_is_reused_and_other_config_is_refused(
    tmp_path: Path, tiny_config: ExperimentConfig
) -> None:
    first = run_train(tiny_config, run_dir=tmp_path / "run")
    again = run_train(tiny_config, run_dir=tmp_path / "run")
    assert again.reused and again.summary == first.summary
    with pytest.raises(RunDirError, match="another config"):
        run_train(with_overrides(tiny_config, {"train.rounds": 1}), run_dir=tmp_path / "run")
    forced = run_train(with_overrides(tiny_config, {"train.rounds": 1}), run_dir=tmp_path / "run", force=True)
    assert not forced.reused and forced.summary.rounds == 1


def test_refuses_to_write_into_a_foreign_folder(tmp_path: Path, tiny_config: ExperimentConfig) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    with pytest.raises(RunDirError, match="holds no feddp-eval run"):
        run_train(tiny_config, run_dir=tmp_path / "mine", force=True)
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"


def test_a_run_killed_while_writing_its_config_is_started_afresh(
    tmp_path: Path, tiny_config: ExperimentConfig
) -> None:
    """SIGKILL between the temporary file and its rename leaves only ``.config.toml.<x>.tmp``.

    That folder is an unstarted run, not a stranger's: it is cleared and trained (CI once caught a
    killed sweep refusing its own folder this way).
    """
    killed = tmp_path / "run"
    killed.mkdir()
    (killed / ".config.toml.k3v9x.tmp").write_text("half a config")
    result = run_train(tiny_config, run_dir=killed)
    assert not result.reused and sorted(p.name for p in killed.iterdir() if p.name.startswith(".")) == []
    assert (killed / "config.toml").exists()


def test_cli_json_carries_the_pooled_final_scores(tmp_path: Path, tiny_toml: Path) -> None:
    out = tmp_path / "run"
    result = runner.invoke(
        app, ["train", "--config", str(tiny_toml), "--rounds", "1", "--out", str(out), "--json", "--quiet"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert {"dice", "jaccard", "accuracy", "run_dir"} <= summary.keys()
    assert summary["run_dir"] == str(out) and summary["rounds"] == 1
    last = read_csv(out / "metrics.csv")[-1]
    assert last["site"] == "pooled" and float(last["dice"]) == summary["dice"]


def test_cli_user_errors_are_one_line_with_exit_code_2(tmp_path: Path, tiny_toml: Path) -> None:
    result = runner.invoke(
        app, ["train", "--config", str(tiny_toml), "--rounds", "0", "--out", str(tmp_path)]
    )
    assert result.exit_code == 2, result.output
    assert "`train.rounds` must be >= 1, but got 0" in result.output
    assert "Traceback" not in result.output
    bad = tmp_path / "bad.toml"
    bad.write_text("[train]\nrounds = 2\nroundz = 3\n")
    result = runner.invoke(app, ["train", "--config", str(bad)])
    assert result.exit_code == 2 and "unknown key `train.roundz`" in result.output


def test_help_does_not_import_torch() -> None:
    code = (
        "import sys; from typer.testing import CliRunner; from feddp_eval.cli import app; "
        "r = CliRunner().invoke(app, ['--help']); assert r.exit_code == 0, r.output; "
        "r = CliRunner().invoke(app, ['train', '--help']); assert r.exit_code == 0, r.output; "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"

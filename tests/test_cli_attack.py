"""`feddp-eval attack` end to end on tiny settings: both arms, the table's contents, JSON rows, the grid."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from feddp_eval.cli import app

runner = CliRunner()
ROW_KEYS = {
    "defense",
    "noise",
    "epsilon",
    "delta",
    "granularity",
    "dice",
    "jaccard",
    "accuracy",
    "psnr",
    "ssim",
    "lpips",
    "mask_dice",
    "prior_psnr",
    "prior_ssim",
    "attack",
    "iterations",
    "seconds",
}


def test_attack_json_has_one_row_per_arm(tmp_path: Path, tiny_toml: Path) -> None:
    args = [
        "attack",
        "--noise",
        "1.1",
        "--config",
        str(tiny_toml),
        "--iterations",
        "3",
        "--rounds",
        "1",
        "--out",
        str(tmp_path),
        "--json",
        "--quiet",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    rows = report["rows"]
    assert [r["defense"] for r in rows] == ["none", "dp-sgd"]
    for row in rows:
        assert row.keys() >= ROW_KEYS
        assert row["iterations"] == 3 and row["attack"] == "inverting-gradients"
        assert row["mask_dice"] is None  # the mask was given: nothing to score
    assert rows[0]["epsilon"] is None and rows[1]["granularity"] == "sample-level"
    assert rows[1]["epsilon"] > 0 and rows[1]["delta"] == 1e-5
    assert rows[0]["prior_psnr"] == rows[1]["prior_psnr"]  # same target, same prior
    assert report["scenario"]["site"] == "site-1" and report["scenario"]["mask"] == "known"
    out = Path(report["run_dir"])
    assert (out / "reconstructions.png").is_file() and (out / "results.json").is_file()
    # Reusing both training runs: a second attack trains nothing and gives the same rows.
    again = json.loads(runner.invoke(app, args).stdout)

    def timeless(table: list[dict]) -> list[dict]:  # the objective may move in its 8th digit across calls
        return [{k: v for k, v in r.items() if k not in ("seconds", "objective")} for r in table]

    assert timeless(again["rows"]) == timeless(rows)
    assert [r["objective"] for r in again["rows"]] == pytest.approx([r["objective"] for r in rows], rel=1e-5)


def test_attack_table_names_the_threat_and_prints_epsilon_with_delta(tmp_path: Path, tiny_toml: Path) -> None:
    result = runner.invoke(
        app,
        [
            "attack",
            "--config",
            str(tiny_toml),
            "--iterations",
            "2",
            "--rounds",
            "1",
            "--out",
            str(tmp_path),
            "--mask",
            "unknown",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "honest-but-curious server" in result.output
    assert "δ = 1e-05, sample-level, rdp" in result.output
    assert "mean colour" in result.output and "PSNR dB" in result.output
    # Masks unknown: the Dice-optimal blind mask (every pixel nucleus) is printed beside the attack's.
    assert "marking every pixel nucleus scores" in " ".join(result.output.split())


def test_attack_rejects_a_round_that_was_not_trained(tmp_path: Path, tiny_toml: Path) -> None:
    result = runner.invoke(
        app, ["attack", "--config", str(tiny_toml), "--target-round", "5", "--out", str(tmp_path)]
    )
    assert result.exit_code == 2 and "after the last round" in result.output


def test_list_attacks() -> None:
    result = runner.invoke(app, ["list", "attacks"])
    assert result.exit_code == 0
    assert "dlg" in result.output and "inverting-gradients" in result.output
    assert "threat: malicious server: modifies the model it sends (one round)" in result.output
    assert result.output.count("threat: honest-but-curious server") == 3
    assert "learned-inversion" in result.output


def test_imprint_reads_every_tile_undefended_and_nothing_through_dp_sgd(
    tmp_path: Path, tiny_toml: Path
) -> None:
    args = ["attack", "--attack", "imprint", "--noise", "1.1", "--config", str(tiny_toml), "--rounds", "1"]
    result = runner.invoke(app, [*args, "--out", str(tmp_path), "--json", "--quiet"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    none, dp = report["rows"]
    assert report["scenario"]["threat"].startswith(
        "malicious server: modifies the model it sends (one round)"
    )
    assert none["threat"] == dp["threat"] == "malicious" and none["prior_kind"] == "mean-colour"
    tiles = report["scenario"]["tiles"]
    assert none["tiles_alone"] == none["tiles_read"] == none["tiles_exact"] == tiles
    assert none["psnr"] >= 60 and none["margin_psnr"] > 30 and none["mask_dice"] is None
    # σ = 1.1 drowns every bin: the attacker is left with its public guess, exactly.
    assert dp["tiles_read"] == 0 and dp["psnr"] == pytest.approx(dp["prior_psnr"], abs=1e-9)
    assert dp["margin_psnr"] == pytest.approx(0.0, abs=1e-9) and dp["tiles_beating_prior"] == 0
    assert dp["epsilon"] is not None


def test_imprint_table_names_what_it_read_and_the_prior(tmp_path: Path, tiny_toml: Path) -> None:
    args = ["attack", "--attack", "imprint", "--noise", "1.1", "--config", str(tiny_toml), "--rounds", "1"]
    result = runner.invoke(app, [*args, "--out", str(tmp_path)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "tiles read" in result.output and "vs prior dB" in result.output
    assert "mean-colour prior" in result.output and "Imprint recovers no mask" in result.output


def test_central_dp_does_not_stop_the_malicious_server(tmp_path: Path, tiny_toml: Path) -> None:
    """central-dp noises only the aggregate: the server's own view of the update is raw."""
    args = ["attack", "--attack", "imprint", "--defense", "central-dp", "--noise", "1.1"]
    args += ["--config", str(tiny_toml), "--rounds", "1", "--no-reference"]
    result = runner.invoke(app, [*args, "--out", str(tmp_path), "--json", "--quiet"])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)["rows"]
    assert row["defense"] == "central-dp" and row["tiles_exact"] == row["tiles_read"] >= 2


def test_the_reference_arm_works_when_the_experiment_calibrates_epsilon(tiny_config) -> None:  # type: ignore[no-untyped-def]
    """A TOML with `[defense] target_epsilon` used to make the undefended arm keep the target and fail."""
    import dataclasses

    from feddp_eval.pipeline import reference_config

    calibrated = dataclasses.replace(
        tiny_config, defense=dataclasses.replace(tiny_config.defense, name="dp-sgd", target_epsilon=8.0)
    )
    reference = reference_config(calibrated)
    assert (reference.defense.name, reference.defense.noise, reference.defense.target_epsilon) == (
        "none",
        0.0,
        None,
    )
    assert reference.train == calibrated.train and reference.attack == calibrated.attack


def test_attack_takes_a_real_data_folder(tmp_path: Path, tiny_toml: Path) -> None:
    """`--data DIR` on attack as on train: the tiles come from the folder, per-site sub-folders here."""
    from PIL import Image, ImageDraw

    for site, shade in (("lab-a", 60), ("lab-b", 160)):
        for k in range(4):
            folder = tmp_path / "data" / site
            (folder / "images").mkdir(parents=True, exist_ok=True)
            (folder / "masks").mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (16, 16), (shade + 10 * k, 90, 200)).save(folder / "images" / f"t{k}.png")
            mask = Image.new("L", (16, 16), 0)
            ImageDraw.Draw(mask).rectangle((2, 2, 8 + k, 8), fill=255)
            mask.save(folder / "masks" / f"t{k}.png")
    args = ["attack", "--config", str(tiny_toml), "--data", str(tmp_path / "data"), "--rounds", "1"]
    args += ["--attack", "imprint", "--defense", "none", "--no-reference", "--out", str(tmp_path / "runs")]
    result = runner.invoke(app, [*args, "--json", "--quiet"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["scenario"]["site"] in ("lab-a", "lab-b")
    (row,) = report["rows"]
    assert row["tiles_exact"] == row["tiles_read"] == report["scenario"]["tiles"]


def test_arms_that_drew_different_batches_keep_their_own_tiles(tmp_path: Path, tiny_config) -> None:  # type: ignore[no-untyped-def]
    """DP-SGD's Poisson sampling draws its own batch of the attacked site: the scenario, the table's
    counts and the grid follow each arm's tiles (seed 7: the reference trains on 1 tile, dp-sgd drew 2)."""
    from dataclasses import replace

    from safetensors.torch import load_file

    from feddp_eval.config import to_toml

    config = replace(tiny_config, seed=7, train=replace(tiny_config.train, batch_size=1, local_steps=1))
    toml = tmp_path / "one.toml"
    toml.write_text(to_toml(config))
    args = ["attack", "--noise", "1.1", "-c", str(toml), "--iterations", "2", "--rounds", "1"]
    args += ["--out", str(tmp_path / "runs")]
    result = runner.invoke(app, [*args, "--json", "--quiet"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    drawn = [len(load_file(row["tiles"])["true_images"]) for row in report["rows"]]
    assert report["scenario"]["tiles_by_arm"] == drawn == [1, 2]
    assert report["scenario"]["tiles"] == 1  # the reference arm's
    assert "paired_batches" not in report["scenario"]
    table = runner.invoke(app, args)
    assert table.exit_code == 0, table.output
    text = " ".join(table.output.split())
    assert "1 tile (dp-sgd σ=1.1: 2, Poisson-sampled)" in text
    own = report["rows"][1]  # its own painted guess, not the reference's, beside the table
    psnr, ssim = own["mask_prior_psnr"], own["mask_prior_ssim"]
    own_prior = f"its own painted-mask prior scores {psnr:.1f} dB / SSIM {ssim:.3f}"
    assert "dp-sgd σ=1.1 attacked other tiles: the prior columns score none's;" in text and own_prior in text


def test_an_empty_poisson_batch_is_refused_with_the_way_out(tmp_path: Path, tiny_config) -> None:  # type: ignore[no-untyped-def]
    """Seed 6: the attacked client's dp-sgd round drew no tile; the attack says so, not a stack trace."""
    from dataclasses import replace

    from feddp_eval.config import to_toml

    config = replace(tiny_config, seed=6, train=replace(tiny_config.train, batch_size=1, local_steps=1))
    toml = tmp_path / "one.toml"
    toml.write_text(to_toml(config))
    args = ["attack", "--noise", "1.1", "-c", str(toml), "--iterations", "2", "--rounds", "1"]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "runs"), "--quiet"])
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "trained on no tile in round 1" in text and "--target-round" in text


def test_attack_takes_the_local_batch_and_steps(tmp_path: Path, tiny_toml: Path) -> None:
    """`--batch-size 1 --local-steps 1`: the textbook one-tile, one-step update, without a TOML file."""
    args = ["attack", "-c", str(tiny_toml), "--defense", "none", "--iterations", "2", "--rounds", "1"]
    args += ["--batch-size", "1", "--local-steps", "1", "--out", str(tmp_path), "--json", "--quiet"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    scenario = json.loads(result.stdout)["scenario"]
    assert (scenario["batch_size"], scenario["local_steps"], scenario["tiles"]) == (1, 1, 1)


def test_paired_batches_attack_the_same_tiles_in_both_arms(tmp_path: Path, tiny_config) -> None:  # type: ignore[no-untyped-def]
    """`--paired-batches`: the reference Poisson-samples from the same seeded draws as dp-sgd, so on
    seed 7 (unpaired: reference 1 tile, dp-sgd 2) both arms train every client on the same batches in
    every round and attack the same two tiles; the table has no 'attacked other tiles' line."""
    from dataclasses import replace

    from safetensors.torch import load_file

    from feddp_eval.config import to_toml

    config = replace(tiny_config, seed=7, train=replace(tiny_config.train, batch_size=1, local_steps=1))
    toml = tmp_path / "one.toml"
    toml.write_text(to_toml(config))
    args = ["attack", "--noise", "1.1", "-c", str(toml), "--iterations", "2", "--rounds", "2"]
    args += ["--paired-batches", "--seeds", "1", "--out", str(tmp_path / "runs")]
    result = runner.invoke(app, [*args, "--json", "--quiet"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["scenario"]["tiles_by_arm"] == [2, 2]
    reference, defended = (load_file(row["tiles"]) for row in report["rows"])
    assert reference["true_images"].equal(defended["true_images"])
    runs = [Path(row["run_dir"]) for row in report["rows"]]
    for capture in sorted((runs[0] / "captures").glob("round-*/site-*.json")):
        ours = json.loads(capture.read_text())
        theirs = json.loads((runs[1] / capture.relative_to(runs[0])).read_text())
        assert ours["poisson_sampling"] is True and ours["batches"] == theirs["batches"]
    assert len(list((runs[0] / "captures").glob("round-*/site-*.json"))) == 4  # 2 rounds x 2 sites
    table = runner.invoke(app, args)
    assert table.exit_code == 0, table.output
    text = " ".join(table.output.split())
    assert "round 1: 2 tiles, 1 local step(s)" in text  # one count in the title: the same tiles
    assert "attacked other tiles" not in text and report["scenario"]["paired_batches"] is True
    assert "paired batches: the undefended arm Poisson-sampled" in text


def test_paired_batches_leave_a_reference_that_already_draws_alike_unchanged(tiny_config) -> None:  # type: ignore[no-untyped-def]
    """Pairing changes the reference only where the defended arm Poisson-samples: unpaired, or
    against a defense that draws shuffled passes as the reference does, its config (and hash) is
    the plain undefended arm's."""
    from dataclasses import replace

    from feddp_eval.config import defended_config, reference_config
    from feddp_eval.rundir.names import run_key
    from feddp_eval.workflows.attack import reference_arm

    def arm(defense: str, paired: bool):  # type: ignore[no-untyped-def]
        config = defended_config(tiny_config, noise=1.1, defense=defense)
        return replace(config, attack=replace(config.attack, paired_batches=paired))

    plain = run_key(reference_config(arm("dp-sgd", False)))
    assert run_key(reference_arm(arm("dp-sgd", False))) == plain
    assert run_key(reference_arm(arm("local-dp", True))) == plain
    paired = reference_arm(arm("dp-sgd", True))
    assert paired.train.sampling == "poisson" and run_key(paired) != plain


def test_learned_inversion_reads_a_one_tile_update_against_its_own_guess(tmp_path: Path, tiny_config) -> None:  # type: ignore[no-untyped-def]
    """Both arms of a one-tile site: fitted maps, each scored against the guess learned from the same
    public tiles, which the table, results.json and scores.json all carry; the threat says what the
    server holds."""
    from feddp_eval.config import to_toml, with_overrides

    config = tmp_path / "one-tile.toml"
    config.write_text(to_toml(with_overrides(tiny_config, {"data.train_tiles": [6, 1]})))
    args = ["attack", "-c", str(config), "--attack", "learned-inversion", "--rounds", "1", "--noise", "1.1"]
    args += ["--attack-option", "public_tiles=60", "--attack-option", "validation=20"]
    args += ["--out", str(tmp_path / "runs")]
    result = runner.invoke(app, [*args, "--json", "--quiet"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    rows, scenario = report["rows"], report["scenario"]
    assert [(r["stopped"], r["iterations"]) for r in rows] == [("fitted", 0), ("fitted", 0)]
    assert scenario["tiles_by_arm"] == [1, 1]
    guesses = [(r["own_guess_psnr"], r["own_guess_ssim"]) for r in rows]
    assert guesses[0] == guesses[1] and guesses[0][0] > 0  # the same tile and public tiles: one guess
    for row in rows:  # leakage is read against the attack's own guess, the best this attacker holds
        assert row["prior_kind"] == "own-guess"
        assert row["margin_psnr"] == pytest.approx(row["psnr"] - row["own_guess_psnr"])
    assert "holds 80 public tiles of the site's look" in scenario["threat"]
    scores = sorted(Path(report["run_dir"]).parent.glob("*/attacks/learned-inversion-*/scores.json"))
    assert len(scores) == 2  # one per arm
    for path in scores:
        assert json.loads(path.read_text())["own_guess"]["psnr"] == pytest.approx(guesses[0][0])
    table = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert table.exit_code == 0, table.output
    assert table.output.count("learned-inversion's own guess without the update") == 2
    assert "fitted" in table.output and "vs prior: PSNR minus the attack's own guess's" in table.output


def test_learned_inversion_attacks_a_folder_with_public_tiles_of_its_own(
    tmp_path: Path, tiny_toml: Path
) -> None:
    """`--data DIR` with a public folder of the server's own (`public_data`): the site trains one tile a
    round, the map is fitted on tiles drawn from that folder, and the threat names it."""
    from feddp_eval.data.synthetic import synthesize_tiles
    from tests.tile_folders import write_tile_folder

    for i, site in enumerate(("lab-a", "lab-b")):
        write_tile_folder(tmp_path / "data" / site, synthesize_tiles(3, tile_size=16, seed=i))
    write_tile_folder(tmp_path / "public", synthesize_tiles(20, tile_size=32, seed=7))  # 80 tiles of 16 px
    args = ["attack", "-c", str(tiny_toml), "--data", str(tmp_path / "data"), "--attack", "learned-inversion"]
    args += ["--attack-option", "public_tiles=60", "--attack-option", "validation=20"]
    args += ["--attack-option", f"public_data={tmp_path / 'public'}"]
    args += ["--batch-size", "1", "--local-steps", "1"]
    args += ["--rounds", "1", "--defense", "none", "--no-reference", "--out", str(tmp_path / "runs")]
    result = runner.invoke(app, [*args, "--json", "--quiet"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    (row,) = report["rows"]
    assert (row["stopped"], row["prior_kind"], report["scenario"]["tiles"]) == ("fitted", "own-guess", 1)
    assert row["margin_psnr"] == pytest.approx(row["psnr"] - row["own_guess_psnr"])
    threat = report["scenario"]["threat"]
    assert f"holds 80 public tiles from {tmp_path / 'public'} (their colours moved to the site's" in threat


def test_learned_inversion_refuses_a_site_of_several_tiles_before_training(
    tmp_path: Path, tiny_toml: Path
) -> None:
    args = [
        "attack",
        "-c",
        str(tiny_toml),
        "--attack",
        "learned-inversion",
        "--rounds",
        "1",
        "--defense",
        "none",
    ]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "runs"), "--quiet"])
    assert result.exit_code == 2, result.output
    assert "trains on 3 tiles a round" in result.output and "--batch-size 1 --local-steps 1" in result.output
    assert not (tmp_path / "runs").exists()  # nothing trained


def test_learned_inversion_with_the_masks_unknown_rebuilds_the_mask_too(tmp_path: Path, tiny_config) -> None:  # type: ignore[no-untyped-def]
    """`--mask unknown`: the map gives the mask, scored against the blind all-nucleus bar; the image is
    read against the stronger of the attack's own guess and the mean-colour prior, as the table says."""
    from feddp_eval.config import to_toml, with_overrides

    config = tmp_path / "one-tile.toml"
    config.write_text(to_toml(with_overrides(tiny_config, {"data.train_tiles": [6, 1]})))
    args = ["attack", "-c", str(config), "--attack", "learned-inversion", "--mask", "unknown"]
    args += ["--attack-option", "public_tiles=60", "--attack-option", "validation=20"]
    args += ["--rounds", "1", "--defense", "none", "--no-reference", "--out", str(tmp_path / "runs")]
    result = runner.invoke(app, [*args, "--json", "--quiet"])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)["rows"]
    assert row["stopped"] == "fitted" and row["mask_prior_psnr"] is None
    assert row["mask_dice"] is not None and row["flat_mask_dice"] is not None
    bar = max(row["own_guess_psnr"], row["prior_psnr"])
    assert row["prior_kind"] == ("own-guess" if bar == row["own_guess_psnr"] else "mean-colour")
    assert row["margin_psnr"] == pytest.approx(row["psnr"] - bar)
    table = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert table.exit_code == 0, table.output
    assert "the attack's own guess's or the mean-colour prior's, the stronger" in table.output
    assert "marking every pixel nucleus scores" in table.output

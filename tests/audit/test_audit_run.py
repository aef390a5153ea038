"""The one-run audit end to end: canaries enter where the guarantee says, ε̂ separates a leaky run,
a private run and a run whose noise was silently lost."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import pytest
import torch

from defenses import build_defense
from feddp_eval.audit import AuditedHooks, audit_run, canary_level, enable_audit, finish_audit
from feddp_eval.audit.canaries import DESIGN_FILE, MEMBERSHIP_FILE, NOT_APPLICABLE, read_design
from feddp_eval.config import (
    DefenseConfig,
    ExperimentConfig,
    TrainConfig,
    config_hash,
    from_dict,
    validate,
    with_overrides,
)
from feddp_eval.data.sites import build_sites
from feddp_eval.errors import ConfigError, RunDirError
from feddp_eval.federated.capture import CaptureWriter, list_captures
from feddp_eval.federated.hooks import ClientPlan, TrainingHooks
from feddp_eval.federated.loop import run_fedavg
from feddp_eval.io import read_json
from feddp_eval.models.unet import UNet
from feddp_eval.pipeline import run_train

# Two sites of 16 tiles of 16 px, a 4-channel U-Net, 3 rounds: under a second per run.
AUDITED = {
    "seed": 0,
    "device": "cpu",
    "data": {"sites": 2, "train_tiles": [16, 16], "test_tiles": 2, "tile_size": 16},
    "model": {"depth": 1, "width": 4, "groups": 2},
    "train": {"rounds": 3, "batch_size": 4, "audit": True, "audit_canaries": 200},
}


def _config(**defense: Any) -> ExperimentConfig:
    return validate(from_dict(ExperimentConfig, {**AUDITED, "defense": defense}))


def test_an_undefended_run_is_audited_well_above_zero(tmp_path: Path) -> None:
    run = run_train(_config(name="none"), run_dir=tmp_path / "run")
    audit = read_json(run.run_dir / "privacy.json")["audit"]
    assert audit["level"] == "gradient" and audit["canaries"] == 200
    assert audit["epsilon_lower_bound"] > 1.5  # seeds 0-5 gave 1.98-2.71 (seed 0: 97 of 100)
    assert audit["correct"] >= 0.9 * audit["guesses"]
    assert audit["epsilon"] is None and not audit["violated"]


def test_strong_dp_sgd_is_audited_near_zero_and_never_above_its_epsilon(tmp_path: Path) -> None:
    audit = audit_run(run_train(_config(name="dp-sgd", noise=5.0), run_dir=tmp_path / "run").run_dir)
    assert audit.epsilon is not None and audit.epsilon < 1.0  # σ = 5: ε ≈ 0.75 at δ = 1e-5
    assert audit.epsilon_lower_bound is not None and audit.epsilon_lower_bound <= min(0.3, audit.epsilon)
    assert not audit.violated and "≤ ε" in audit.describe()


def test_a_silently_lost_noise_call_is_caught(tmp_path: Path, silent_dp_sgd: str) -> None:
    run = run_train(_config(name=silent_dp_sgd, noise=5.0), run_dir=tmp_path / "run")
    privacy = read_json(run.run_dir / "privacy.json")
    assert privacy["epsilon"] < 1.0  # what the buggy code claims
    assert privacy["audit"]["epsilon_lower_bound"] > 1.5 > privacy["epsilon"]
    assert privacy["audit"]["violated"] is True
    assert "DP bug" in audit_run(run.run_dir).describe()


def test_the_audit_does_not_claim_to_audit_server_side_noise(tmp_path: Path) -> None:
    audit = audit_run(run_train(_config(name="central-dp", noise=1.0), run_dir=tmp_path / "run").run_dir)
    assert audit.level == NOT_APPLICABLE and audit.result is None and audit.epsilon_lower_bound is None
    assert not audit.violated and "not applicable" in audit.describe()


def test_membership_is_kept_with_the_ground_truth_not_in_what_the_server_sees(tmp_path: Path) -> None:
    run_dir = run_train(_config(name="none"), run_dir=tmp_path / "run").run_dir
    design, canaries = read_design(run_dir)
    assert "members" not in str(design) and len(canaries) == 200
    assert len(read_json(run_dir / MEMBERSHIP_FILE)["members"]) == 200
    assert MEMBERSHIP_FILE.parts[0] == "ground_truth" and DESIGN_FILE.parts[0] == "audit"
    assert all("audit" not in str(c.metadata) for c in list_captures(run_dir))


def test_a_run_without_the_audit_says_how_to_get_one(tmp_path: Path) -> None:
    run_dir = run_train(
        validate(from_dict(ExperimentConfig, {**AUDITED, "train": {"rounds": 1}})), run_dir=tmp_path / "run"
    ).run_dir
    assert "audit" not in read_json(run_dir / "privacy.json")
    with pytest.raises(RunDirError, match=r"train\.audit = true"):
        audit_run(run_dir)


def test_turning_the_audit_off_keeps_old_config_hashes() -> None:
    """Off, the audit's fields stay out of the hash (m too, whatever it is: it changes nothing then);
    on, both are in it."""
    base = validate(from_dict(ExperimentConfig, {**AUDITED, "train": {"rounds": 3}}))
    # The published hash of this config before the audit existed (tests/federated/test_engine.py).
    old = validate(from_dict(ExperimentConfig, {"seed": 3, "train": {"rounds": 2, "audit_canaries": 7}}))
    assert config_hash(old) == "3bab9c0b19e2e66fb1abc56f4d3f6c8a88ab06d9be6513cf9edada4b4f513de7"
    assert config_hash(base) == config_hash(with_overrides(base, {"train.audit_canaries": 7}))
    audited = with_overrides(base, {"train.audit": True})
    assert config_hash(base) != config_hash(audited)
    assert config_hash(audited) != config_hash(with_overrides(audited, {"train.audit_canaries": 7}))


def test_an_audit_without_captures_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="capture"):
        validate(from_dict(ExperimentConfig, {**AUDITED, "capture": False}))


# --------------------------------------------------------------------------- where canaries enter


def _one_step(hooks: TrainingHooks, capture_dir: Path, *, lr: float = 0.1) -> dict[str, torch.Tensor]:
    """One round of one local SGD step (no momentum) on one site of 4 tiles, batch 4: the released update."""
    config = _config(name="none")
    train = with_overrides(
        config, {"train.rounds": 1, "train.local_steps": 1, "train.momentum": 0.0, "train.lr": lr}
    ).train
    sites = build_sites(with_overrides(config, {"data.sites": 1, "data.train_tiles": [4]}).data, seed=1)
    torch.manual_seed(0)
    model = UNet(depth=1, width=4, groups=2)
    run_fedavg(
        sites,
        model,
        train,
        seed=0,
        device=torch.device("cpu"),
        hooks=hooks,
        capture=CaptureWriter(capture_dir),
    )
    return list_captures(capture_dir)[0].load_update()


@pytest.mark.parametrize("mode", ["ew", "bk"])
@pytest.mark.parametrize("noise", [0.0, 0.7])
def test_a_gradient_canary_joins_dp_sgd_before_the_noise_at_norm_c(
    tmp_path: Path, noise: float, mode: str
) -> None:
    """The site has 4 tiles and batch 4, so q = 1 and every member canary is in the step. The DP noise
    draws are the same with and without canaries, so the updates differ by −lr · sign · C / B at each
    member canary's coordinate and nowhere else."""
    clip, lr = 0.5, 0.1
    defense = DefenseConfig(name="dp-sgd", noise=noise, clip=clip, grad_sample_mode=cast(Any, mode))
    plain = _one_step(build_defense(defense), tmp_path / "plain", lr=lr)
    hooks = AuditedHooks(build_defense(defense), canaries=10, seed=3)
    audited = _one_step(hooks, tmp_path / "audited", lr=lr)
    expected = {name: torch.zeros_like(t) for name, t in plain.items()}
    for canary, member in zip(hooks.canaries, hooks.members, strict=True):
        if member:
            expected[canary.parameter].view(-1)[canary.index] = -lr * canary.sign * clip / 4
    assert 0 < sum(hooks.members) < 10
    for name in plain:
        torch.testing.assert_close(audited[name] - plain[name], expected[name], atol=1e-6, rtol=0)


def test_an_update_canary_joins_local_dp_before_clip_and_noise(tmp_path: Path) -> None:
    """With a clip no update reaches, the released updates differ by exactly sign · C at members."""
    defense = DefenseConfig(name="local-dp", noise=0.3, clip=1e3)
    plain = _one_step(build_defense(defense), tmp_path / "plain")
    hooks = AuditedHooks(build_defense(defense), canaries=10, seed=3, norm=2.0)
    audited = _one_step(hooks, tmp_path / "audited")
    assert hooks.level == "update"
    for canary, member in zip(hooks.canaries, hooks.members, strict=True):
        after, before = audited[canary.parameter].view(-1), plain[canary.parameter].view(-1)
        difference = after[canary.index] - before[canary.index]
        assert float(difference) == pytest.approx(canary.sign * 2.0 if member else 0.0, abs=1e-4)


def test_canary_levels_follow_the_guarantee() -> None:
    level = {
        name: canary_level(build_defense(DefenseConfig(name=name)))[0]
        for name in ("none", "dp-sgd", "local-dp", "central-dp", "prune")
    }
    assert level == {
        "none": "gradient",
        "dp-sgd": "gradient",
        "local-dp": "update",
        "central-dp": NOT_APPLICABLE,
        "prune": "gradient",
    }
    assert canary_level(TrainingHooks())[0] == "gradient"


def test_the_wrapper_is_transparent_when_the_audit_is_off(tmp_path: Path) -> None:
    defense = build_defense(DefenseConfig(name="dp-sgd", noise=1.0))
    assert enable_audit(defense, TrainConfig(), seed=0) is defense
    assert finish_audit(tmp_path, defense, {}) is None
    wrapped = AuditedHooks(defense, canaries=4, seed=0)
    assert wrapped.name == "dp-sgd" and wrapped.poisson_sampling and wrapped.describe() == defense.describe()


def test_sites_with_different_epsilons_are_each_held_to_their_own(tmp_path: Path, silent_dp_sgd: str) -> None:
    """Under DP-SGD a smaller site has a larger ε; each site's canaries are audited against its own ε
    (the headline ε is the largest), so a silent bug shows at the site with the smallest claim."""
    raw = {**AUDITED, "data": {**AUDITED["data"], "train_tiles": [16, 4]}}  # type: ignore[dict-item]
    config = validate(from_dict(ExperimentConfig, {**raw, "defense": {"name": silent_dp_sgd, "noise": 5.0}}))
    audit = audit_run(run_train(config, run_dir=tmp_path / "run").run_dir)
    assert [g.clients for g in audit.groups] == [(0,), (1,)]
    assert audit.groups[0].epsilon is not None and audit.groups[0].epsilon < audit.groups[1].epsilon  # type: ignore[operator]
    assert audit.epsilon == audit.groups[1].epsilon
    assert sum(g.result.canaries for g in audit.groups) == 200
    assert all(g.result.confidence == 0.95 for g in audit.groups) and audit.violated
    first = audit.to_dict()["groups"][0]
    assert first["clients"] == [0] and first["violated"] is True
    assert (first["epsilon"], first["epsilon_lower_bound"]) == (
        audit.groups[0].epsilon,
        audit.groups[0].result.epsilon,
    )


def test_a_run_whose_poisson_steps_drew_no_tile_is_still_read(tmp_path: Path) -> None:
    """DP-SGD takes a step (noise only) when Poisson sampling draws nobody; its capture is valid."""
    config = validate(
        from_dict(ExperimentConfig, {**AUDITED, "seed": 1, "defense": {"name": "dp-sgd", "noise": 5.0}})
    )
    run_dir = run_train(config, run_dir=tmp_path / "run").run_dir
    assert any([] in c.metadata["batches"] for c in list_captures(run_dir))
    assert audit_run(run_dir).epsilon_lower_bound is not None


def test_where_the_audit_does_not_apply_it_changes_nothing(tmp_path: Path) -> None:
    defense = DefenseConfig(name="central-dp", noise=0.5)
    plain = _one_step(build_defense(defense), tmp_path / "plain")
    hooks = AuditedHooks(build_defense(defense), canaries=10, seed=3)
    audited = _one_step(hooks, tmp_path / "audited")
    assert hooks.canaries == [] and all(torch.equal(plain[n], audited[n]) for n in plain)


def test_more_canaries_than_weights_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"train\.audit_canaries` must be in \[2, "):
        AuditedHooks(TrainingHooks(), canaries=10**7, seed=0).setup(UNet(depth=1, width=4, groups=2), [])


def test_composed_defenses_are_audited_on_their_client_side(tmp_path: Path) -> None:
    """DP-SGD with central DP on top: canaries enter DP-SGD's steps; the server side is wrapped as is."""
    config = _config(name="dp-sgd", noise=5.0, server={"name": "central-dp", "noise": 1.0})
    run_dir = run_train(config, run_dir=tmp_path / "run").run_dir
    audit = audit_run(run_dir)
    assert audit.level == "gradient" and audit.granularity == "sample-level"
    assert audit.epsilon_lower_bound is not None and not audit.violated
    assert "server" in read_json(run_dir / "privacy.json")


def test_an_audited_client_keeps_its_rounds_and_accountant_across_a_restore() -> None:
    """An engine that rebuilds clients (one per round, elsewhere) restores the audit's round count with
    the inner accountant, so the canaries' sampling does not repeat and ε keeps accumulating."""
    hooks = AuditedHooks(build_defense(DefenseConfig(name="dp-sgd", noise=1.0)), canaries=10, seed=0)
    model = UNet(depth=1, width=4, groups=2)
    plan = ClientPlan(0, n_samples=8, batch_size=4, steps_per_round=2, rounds=3, participation=1.0)
    hooks.setup(model, [plan])
    first = hooks.client(plan)
    first.rounds = 2
    first.inner.history = [(1.0, 0.5, 4)]  # type: ignore[attr-defined]  # DPSGDClient's accountant
    again = hooks.client(plan)
    again.load_state_dict(json.loads(json.dumps(first.state_dict())))
    assert again.rounds == 2 and again.state_dict() == first.state_dict()
    assert again.privacy_record() == first.privacy_record()

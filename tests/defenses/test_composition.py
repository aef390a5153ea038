"""Client and server sides apart: per-client accountants that save and restore, central DP as a
wrapper of an inner aggregator, and dp-sgd on the clients composed with central DP at the server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from defenses import build_defense
from defenses.central_dp import CentralDP
from defenses.update_ops import add_gaussian, clip_update
from feddp_eval.config import DefenseConfig, ExperimentConfig, load_config, to_toml, with_overrides
from feddp_eval.data.synthetic import synthesize_tiles
from feddp_eval.errors import ConfigError
from feddp_eval.federated.aggregation import FedAvg, fedavg
from feddp_eval.federated.capture import list_captures
from feddp_eval.federated.client import client_round
from feddp_eval.federated.hooks import ClientDefense, ClientPlan
from feddp_eval.io import read_json
from feddp_eval.models.unet import UNet
from feddp_eval.pipeline import run_train

TRAIN_SETTINGS = {"train.rounds": 3, "train.local_steps": 2}
PLAN = ClientPlan(0, 5, 2, 2, 3, 1.0)


def _json(state: dict[str, Any]) -> dict[str, Any]:
    """``state`` as it comes back from a JSON file."""
    return json.loads(json.dumps(state))


def _rounds(
    client: ClientDefense, tiny_config: ExperimentConfig, rounds: range
) -> list[dict[str, torch.Tensor]]:
    """``client``'s released updates in ``rounds``, each from the same global weights."""
    tiles = synthesize_tiles(PLAN.n_samples, tile_size=16, seed=1)
    train = with_overrides(tiny_config, TRAIN_SETTINGS).train
    updates = []
    for r in rounds:
        torch.manual_seed(0)
        model = UNet(depth=1, width=4, groups=2)
        answer = client_round(
            model, tiles, train, defense=client, device=torch.device("cpu"), seed=5, round_index=r
        )
        updates.append(answer.update)
    return updates


@pytest.mark.parametrize(
    "settings",
    [
        {"name": "dp-sgd", "noise": 0.8},
        {"name": "dp-sgd", "noise": 0.8, "poisson_sampling": False},
        {"name": "local-dp", "noise": 0.8, "clip": 0.1},
    ],
)
def test_a_restored_client_accountant_keeps_accumulating_as_if_never_stopped(
    settings: dict[str, Any], tiny_config: ExperimentConfig
) -> None:
    defense = build_defense(DefenseConfig(**settings))
    defense.setup(torch.nn.Linear(1, 1), [PLAN])
    straight = defense.client(PLAN)
    straight_updates = _rounds(straight, tiny_config, range(1, 4))

    first = defense.client(PLAN)
    updates = _rounds(first, tiny_config, range(1, 2))
    resumed = defense.client(PLAN)  # e.g. a Flower ClientApp started afresh for round 2
    resumed.load_state_dict(_json(first.state_dict()))
    assert resumed.privacy_record() == first.privacy_record()
    updates += _rounds(resumed, tiny_config, range(2, 4))

    before, after = straight.privacy_record(), resumed.privacy_record()
    assert before is not None and after is not None
    assert after.epsilon == before.epsilon and after.steps == before.steps > 0
    assert after == before and _json(resumed.state_dict()) == _json(straight.state_dict())
    for a, b in zip(updates, straight_updates, strict=True):
        assert all(torch.equal(a[n], b[n]) for n in a)


@pytest.mark.parametrize(("sigma", "clip", "m"), [(1.0, 0.5, 3), (0.0, 10.0, 2)])
def test_central_dp_wrapping_fedavg_equals_clip_average_and_noise(sigma: float, clip: float, m: int) -> None:
    defense = CentralDP(DefenseConfig(name="central-dp", noise=sigma, clip=clip))
    defense.setup(torch.nn.Linear(1, 1), [ClientPlan(i, 10, 4, 3, 2, 1.0) for i in range(m)])
    aggregator = defense.wrap(FedAvg())
    generator = torch.Generator().manual_seed(0)
    updates = [
        {"w": torch.randn(7, 3, generator=generator), "b": torch.randn(5, generator=generator)}
        for _ in range(m)
    ]
    got = aggregator.aggregate(updates, [1.0, 5.0, 9.0][:m], torch.Generator().manual_seed(3))
    # What the server-side defense computed before it became a wrapper.
    average = fedavg([clip_update(u, clip) for u in updates], [1.0] * m)
    expected = add_gaussian(average, sigma * clip / m, torch.Generator().manual_seed(3))
    assert all(torch.equal(got[n], expected[n]) for n in expected)

    restored = defense.wrap(FedAvg())
    restored.load_state_dict(_json(aggregator.state_dict()))
    aggregator.aggregate(updates, [1.0] * m, torch.Generator())
    restored.aggregate(updates, [1.0] * m, torch.Generator())
    assert restored.privacy_records() == aggregator.privacy_records()
    assert aggregator.privacy_records()[0].steps == 2


def test_dp_sgd_on_clients_with_central_dp_at_the_server_reports_both(
    tmp_path: Path, tiny_config: ExperimentConfig
) -> None:
    client_side = {"defense.name": "dp-sgd", "defense.noise": 0.7}
    server_side = DefenseConfig(name="central-dp", noise=0.6, clip=0.05)
    path = tmp_path / "composed.toml"
    path.write_text(to_toml(with_overrides(tiny_config, client_side)) + to_toml_server(server_side))
    composed = load_config(path)
    assert composed.defense.server == server_side
    assert load_config(_rewrite(tmp_path, composed)) == composed  # to_toml writes [defense.server]

    both = run_train(composed, run_dir=tmp_path / "both")
    alone = run_train(with_overrides(tiny_config, client_side), run_dir=tmp_path / "dp-sgd")
    central = with_overrides(
        tiny_config, {"defense.name": "central-dp", "defense.noise": 0.6, "defense.clip": 0.05}
    )
    server_alone = run_train(central, run_dir=tmp_path / "central")

    privacy = read_json(both.run_dir / "privacy.json")
    headline = read_json(alone.run_dir / "privacy.json")
    # Against the server, only the clients' DP-SGD holds: it is the headline, per client.
    assert privacy["granularity"] == "sample-level" and privacy["epsilon"] == headline["epsilon"]
    assert privacy["per_client"] == headline["per_client"]
    assert both.summary.epsilon == headline["epsilon"]
    # The server's guarantee for whoever sees the aggregate is recorded beside it.
    assert privacy["server"]["granularity"] == "client-level"
    assert privacy["server"]["epsilon"] == read_json(server_alone.run_dir / "privacy.json")["epsilon"]
    assert privacy["server"]["mechanism"] == "dp-fedavg (server-side Gaussian)"

    # Round 1: the server captured exactly the dp-sgd clients' releases; then the noised
    # aggregate moved the model elsewhere.
    for a, b in zip(list_captures(both.run_dir)[:2], list_captures(alone.run_dir)[:2], strict=True):
        assert all(torch.equal(a.load_update()[n], b.load_update()[n]) for n in a.load_update())
        assert a.metadata["defense"]["server"]["name"] == "central-dp"
    model, plain = (load_file(str(r.run_dir / "model.safetensors")) for r in (both, alone))
    assert any(not torch.equal(model[k], plain[k]) for k in model)


def to_toml_server(config: DefenseConfig) -> str:
    return "\n[defense.server]\n" + "".join(
        f"{k} = {json.dumps(v)}\n"
        for k, v in {"name": config.name, "noise": config.noise, "clip": config.clip}.items()
    )


def _rewrite(tmp_path: Path, config: ExperimentConfig) -> Path:
    path = tmp_path / "rewritten.toml"
    path.write_text(to_toml(config))
    return path


@pytest.mark.parametrize(
    ("client", "server", "needle"),
    [
        ("dp-sgd", "local-dp", "`defense.server.name` must be a server-side defense (central-dp)"),
        ("central-dp", "central-dp", "acts at the server"),
    ],
)
def test_each_defense_must_be_on_its_own_side(client: str, server: str, needle: str) -> None:
    noise = {"noise": 1.0}
    with pytest.raises(ConfigError) as info:
        build_defense(DefenseConfig(name=client, **noise, server=DefenseConfig(name=server, **noise)))
    assert needle in str(info.value)


def test_the_server_table_is_validated_like_the_defense(
    tiny_config: ExperimentConfig, tmp_path: Path
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        to_toml(tiny_config)
        + '\n[defense.server]\nname = "central-dp"\nclip = -1.0\ndelta = 2.0\nnoise = 1e7\n'
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert any("`defense.server.clip` must be > 0" in p for p in info.value.problems)
    assert any("`defense.server.delta` must be in (0, 1)" in p for p in info.value.problems)
    assert any("`defense.server.noise` must be at most" in p for p in info.value.problems)

"""DP-SGD through the real training path: recorded ε, one accountant per run, degenerate equivalence,
and the per-sample gradients Opacus clips."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal, cast

import pytest
import torch
from opacus.accountants import RDPAccountant
from opacus.accountants.analysis.rdp import compute_rdp, get_privacy_spent
from safetensors.torch import load_file

from defenses.dp_sgd import DPSGD
from feddp_eval.config import DefenseConfig, ExperimentConfig, TrainConfig, from_dict, to_dict, validate
from feddp_eval.federated.capture import list_captures
from feddp_eval.federated.client import steps_per_round
from feddp_eval.federated.hooks import ClientPlan
from feddp_eval.io import read_csv, read_json
from feddp_eval.models.loss import segmentation_loss
from feddp_eval.models.unet import UNet
from feddp_eval.pipeline import run_train

Mode = Literal["ew", "hooks", "functorch"]
MODES: tuple[Mode, ...] = ("ew", "hooks", "functorch")


def _config(tiny: dict[str, Any], **sections: dict[str, Any]) -> ExperimentConfig:
    raw = copy.deepcopy(tiny)
    for section, values in sections.items():
        raw.setdefault(section, {}).update(values)
    return validate(from_dict(ExperimentConfig, raw))


@pytest.fixture
def tiny(tiny_config: ExperimentConfig) -> dict[str, Any]:
    """conftest's TINY config as a plain dict (6 and 3 training tiles, batch 4, two rounds)."""
    return to_dict(tiny_config)


# --------------------------------------------------------------------------- accounting of a real run


def test_recorded_epsilon_is_what_opacus_computes_from_the_recorded_parameters(
    tmp_path: Path, tiny: dict[str, Any]
) -> None:
    config = _config(tiny, defense={"name": "dp-sgd", "noise": 1.0})
    result = run_train(config, run_dir=tmp_path / "run")
    privacy = read_json(result.run_dir / "privacy.json")
    records = privacy["per_client"]
    sizes = [6, 3]
    assert [r["client_id"] for r in records] == [0, 1]

    local_steps = {
        (int(row["round"]), row["site"]): int(row["local_steps"])
        for row in read_csv(result.run_dir / "clients.csv")
    }
    for record, n in zip(records, sizes, strict=True):
        assert record["granularity"] == "sample-level" and record["accountant"] == "rdp"
        assert record["noise_multiplier"] == 1.0 and record["clip"] == 1.0 and record["delta"] == 1e-5
        assert record["sample_rate"] == min(1.0, 4 / n)
        # One accountant for the whole run: every local step of both rounds is counted.
        per_round = steps_per_round(n, config.train)
        assert local_steps[(1, f"site-{record['client_id']}")] == per_round
        assert record["steps"] == config.train.rounds * per_round == 2 * per_round
        rdp = compute_rdp(
            q=record["sample_rate"],
            noise_multiplier=record["noise_multiplier"],
            steps=record["steps"],
            orders=RDPAccountant.DEFAULT_ALPHAS,
        )
        expected, _ = get_privacy_spent(orders=RDPAccountant.DEFAULT_ALPHAS, rdp=rdp, delta=record["delta"])
        assert record["epsilon"] == pytest.approx(float(expected), rel=1e-12)
        # A fresh engine per round (Flower's example) would have reported one round's ε only.
        one_round = compute_rdp(
            q=record["sample_rate"],
            noise_multiplier=1.0,
            steps=per_round,
            orders=RDPAccountant.DEFAULT_ALPHAS,
        )
        assert (
            record["epsilon"]
            > get_privacy_spent(orders=RDPAccountant.DEFAULT_ALPHAS, rdp=one_round, delta=1e-5)[0]
        )

    assert privacy["epsilon"] == max(r["epsilon"] for r in records)
    assert result.summary.epsilon == privacy["epsilon"] and result.summary.delta == 1e-5
    assert result.summary.granularity == "sample-level"
    # Poisson sampling is on by default (the accountant assumes it), and the captures say so.
    assert all(c.metadata["poisson_sampling"] for c in list_captures(result.run_dir))


# --------------------------------------------------------------------------- degenerate equivalence


_REFERENCE: dict[tuple[int, ...], dict[str, torch.Tensor]] = {}


def _weights(config: ExperimentConfig, run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run_train(config, run_dir=run_dir).run_dir / "model.safetensors"))


@pytest.mark.parametrize(
    ("train_tiles", "mode"),
    [((8, 4), mode) for mode in MODES]
    # A site smaller than one batch: every step sends all 3 tiles, and the mean divides by 3, not 4.
    + [((8, 4), "bk")]
    + [((8, 3), "ew")],
)
def test_zero_noise_huge_clip_no_poisson_trains_exactly_like_none(
    tmp_path: Path, tiny: dict[str, Any], train_tiles: tuple[int, ...], mode: str
) -> None:
    data = {"train_tiles": list(train_tiles)}
    if train_tiles not in _REFERENCE:
        _REFERENCE[train_tiles] = _weights(_config(tiny, data=data), tmp_path / "none")
    plain = _REFERENCE[train_tiles]
    dp_config = _config(
        tiny,
        data=data,
        defense={
            "name": "dp-sgd",
            "noise": 0.0,
            "clip": 1e6,
            "poisson_sampling": False,
            "grad_sample_mode": mode,
        },
    )
    private = _weights(dp_config, tmp_path / mode)
    assert private.keys() == plain.keys()
    assert max(float((private[k] - plain[k]).abs().max()) for k in plain) <= 1e-6
    # Training did move the weights, so the comparison is not vacuous.
    initial = dict(UNet(depth=1, width=4, groups=2).named_parameters())
    assert max(float((plain[k] - initial[k].detach()).abs().max()) for k in plain) > 1e-3
    # Zero noise voids the guarantee, and the record says so.
    summary = read_json(tmp_path / mode / "summary.json")
    assert summary["epsilon"] == float("inf") and summary["delta"] == 1e-5


# --------------------------------------------------------------------------- per-sample gradients


def _one_at_a_time(
    model: torch.nn.Module, images: torch.Tensor, masks: torch.Tensor
) -> dict[str, torch.Tensor]:
    grads: dict[str, list[torch.Tensor]] = {n: [] for n, _ in model.named_parameters()}
    for i in range(len(images)):
        model.zero_grad(set_to_none=True)
        segmentation_loss(model(images[i : i + 1]), masks[i : i + 1]).backward()
        for n, p in model.named_parameters():
            grads[n].append(cast(torch.Tensor, p.grad).detach().clone())
    return {n: torch.stack(g) for n, g in grads.items()}


@pytest.mark.parametrize("mode", MODES)
def test_opacus_per_sample_gradients_equal_a_one_sample_loop(mode: Mode) -> None:
    torch.manual_seed(0)
    model = UNet(depth=1, width=4, groups=2)
    reference_model = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(1)
    images = torch.rand(5, 3, 16, 16, generator=generator)
    masks = (torch.rand(5, 1, 16, 16, generator=generator) < 0.3).float()
    expected = _one_at_a_time(reference_model, images, masks)

    # The per-sample gradients the defense's own wrapping hands to Opacus' optimizer.
    defense = DPSGD(DefenseConfig(name="dp-sgd", noise=1.0, grad_sample_mode=mode))
    plan = ClientPlan(0, 5, 5, 1, 1, 1.0)
    defense.setup(model, [plan])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    client = defense.client(plan)
    with client.local_training(model, optimizer, torch.Generator().manual_seed(2)) as (private, _):
        segmentation_loss(private(images), masks).backward()
        got = {n: cast(Any, p).grad_sample.detach().clone() for n, p in model.named_parameters()}

    assert got.keys() == expected.keys()
    for name in expected:
        assert got[name].shape == (5, *dict(model.named_parameters())[name].shape)
        error = float((got[name] - expected[name]).norm() / expected[name].norm())
        assert error < 1e-4, (name, error)
    # The samples' gradients differ, so matching them one by one is a real check.
    conv = expected["down.0.0.weight"]
    assert float((conv[0] - conv[1]).norm()) > 1e-3 * float(conv[0].norm())
    # Leaving the context cleans up: no stale per-sample gradients for the next round.
    assert all(getattr(p, "grad_sample", None) is None for p in model.parameters())


def test_steps_per_round_is_what_the_schedule_uses() -> None:
    # The accounting test above relies on this: ceil(n / batch) steps per epoch.
    train = TrainConfig(batch_size=4)
    assert [steps_per_round(n, train) for n in (6, 3, 8, 4)] == [2, 1, 2, 1]

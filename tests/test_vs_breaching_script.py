"""benchmarks/vs_breaching.py without breaching: the install hint, and the inputs it would hand breaching."""

from __future__ import annotations

import dataclasses
import sys
from types import ModuleType

import pytest
import torch
from scripts import load_benchmark

from attacks.simulate import LocalRecipe
from feddp_eval.models.loss import segmentation_loss
from feddp_eval.models.unet import UNet


@pytest.fixture(scope="module")
def script() -> ModuleType:
    return load_benchmark("vs_breaching.py")


@pytest.fixture(scope="module")
def scenario(script: ModuleType):  # type: ignore[no-untyped-def]
    return script.make_scenario(0)


def test_missing_breaching_prints_the_install_and_exits_0(
    script: ModuleType, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "breaching", None)  # import breaching now raises ImportError
    assert script.main(["--iterations", "5"]) == 0
    out = capsys.readouterr().out
    assert "breaching is not importable here, so nothing was measured" in out
    assert "pip install -e '.[anchors]'" in out
    assert "breaching==0.1.2" in out
    assert "|" not in out  # no table: nothing was measured


def test_gradient_handed_to_breaching_is_minus_update_over_lr(script: ModuleType, scenario) -> None:  # type: ignore[no-untyped-def]
    view = scenario.view
    payload, shared = script.breaching_inputs(view)
    net = UNet.from_config(view.model)
    names = [name for name, _ in net.named_parameters()]
    assert len(shared["gradients"]) == len(names) == len(payload["parameters"])
    for name, gradient, weight, param in zip(
        names, shared["gradients"], payload["parameters"], net.parameters(), strict=True
    ):
        assert gradient.shape == weight.shape == param.shape, name
        torch.testing.assert_close(gradient, -view.update[name] / view.recipe.lr, rtol=0, atol=0)
        assert torch.equal(weight, view.global_weights[name])

    # ... and equals the gradient of our loss at the true tiles, which breaching's objective recomputes.
    with torch.no_grad():
        for param, weight in zip(net.parameters(), payload["parameters"], strict=True):
            param.copy_(weight)
    labels = shared["metadata"]["labels"]
    true = torch.autograd.grad(segmentation_loss(net(scenario.images), labels), list(net.parameters()))
    flat = torch.cat([g.flatten() for g in shared["gradients"]])
    torch.testing.assert_close(flat, torch.cat([g.flatten() for g in true]), rtol=1e-3, atol=2e-6)
    assert torch.equal(labels, scenario.masks)
    assert shared["metadata"]["num_data_points"] == 4 and shared["metadata"]["local_hyperparams"] is None
    assert tuple(payload["metadata"].shape) == (3, 64, 64) and payload["metadata"].modality == "vision"


def test_breaching_inputs_refuse_a_multi_step_recipe(script: ModuleType, scenario) -> None:  # type: ignore[no-untyped-def]
    two_steps = LocalRecipe(batches=((0, 1, 2, 3),) * 2, lr=0.05)
    with pytest.raises(ValueError, match="one SGD step"):
        script.breaching_inputs(dataclasses.replace(scenario.view, recipe=two_steps))


def test_time_to_quality_reads_the_first_snapshot_at_the_bar(script: ModuleType) -> None:
    ours = [(1.0, 15.0), (2.0, 17.0), (3.0, 18.0), (4.0, 18.5)]
    theirs = [(2.0, 12.0), (6.0, 16.0), (10.0, 17.5), (12.0, 17.9)]
    assert script.time_to(ours, 17.9) == 3.0 and script.time_to(theirs, 17.9) == 12.0
    assert script.time_to(ours, 19.0) is None
    assert script.psnr_at(theirs, 4.0) == 12.0 and script.psnr_at(ours, 0.5) is None
    text, raw = script.quality_table({"ours": ours, "breaching": theirs}, {"ours": "a", "breaching": "b"})
    assert raw["target_psnr"] == 17.9 and raw["speedup_to_target"] == 4.0
    assert raw["ours"] == {"seconds_to_target": 3.0, "psnr_at_ours_end": 18.5, "psnr_at_breaching_end": 18.5}
    assert raw["breaching"]["psnr_at_ours_end"] == 12.0 and "4.00× faster (target ≥ 3×)" in text
    _, never = script.quality_table({"ours": ours[:2], "breaching": theirs}, {"ours": "a", "breaching": "b"})
    assert never["speedup_to_target"] is None

"""Multi-step FedAvg inversion: the functional replay of local training, and its K = 1 case."""

from __future__ import annotations

import torch

from attacks import ATTACKS
from attacks.simulate import LocalRecipe, simulate_update
from feddp_eval.config import TrainConfig
from feddp_eval.data.synthetic import synthesize_tiles
from feddp_eval.federated.client import train_client
from feddp_eval.federated.hooks import ClientDefense, ClientPlan
from feddp_eval.models.loss import segmentation_loss
from feddp_eval.models.unet import UNet


def _net() -> UNet:
    torch.manual_seed(0)
    return UNet(depth=1, width=4, groups=2)


def test_simulated_local_training_equals_the_real_client_sgd_momentum_and_adam() -> None:
    tiles = synthesize_tiles(5, tile_size=16, seed=2)
    batches = [[0, 3], [1, 4, 2], [3]]
    for optimizer in ("sgd", "adam"):
        net = _net()
        start = {k: v.detach().clone() for k, v in net.named_parameters()}
        train = TrainConfig(optimizer=optimizer, lr=0.05, momentum=0.9, batch_size=3)
        real = train_client(
            net,
            tiles,
            train,
            batches=batches,
            defense=ClientDefense(ClientPlan(0, 5, 3, len(batches), 1, 1.0)),
            device=torch.device("cpu"),
            generator=torch.Generator(),
        ).update
        recipe = LocalRecipe(batches=tuple(map(tuple, batches)), lr=0.05, optimizer=optimizer, momentum=0.9)
        simulated = simulate_update(_net(), start, tiles.images, tiles.masks, recipe)
        for name in real:
            torch.testing.assert_close(simulated[name], real[name], rtol=1e-4, atol=2e-6)


def test_one_sgd_step_is_minus_lr_times_the_gradient() -> None:
    tiles = synthesize_tiles(3, tile_size=16, seed=2)
    net = _net()
    loss = segmentation_loss(net(tiles.images), tiles.masks)
    grads = torch.autograd.grad(loss, list(net.parameters()))
    params = {k: v.detach() for k, v in net.named_parameters()}
    update = simulate_update(
        net, params, tiles.images, tiles.masks, LocalRecipe(batches=((0, 1, 2),), lr=0.1, momentum=0.9)
    )
    for (name, _), g in zip(net.named_parameters(), grads, strict=True):
        torch.testing.assert_close(update[name], -0.1 * g, rtol=1e-5, atol=1e-7)


def test_k1_multistep_attack_equals_the_single_gradient_attack(make_view) -> None:
    """Matching a one-step update (any lr) = matching the gradient itself (cosine is scale-free)."""
    tiles = synthesize_tiles(1, tile_size=16, seed=3)
    step = make_view(tiles, LocalRecipe(batches=((0,),), lr=0.05, momentum=0.9))
    gradient_view = make_view(tiles, LocalRecipe(batches=((0,),), lr=1.0))
    gradient = {k: -v for k, v in gradient_view.update.items()}  # the plain gradient
    as_gradient = type(step)(
        **{**step.__dict__, "update": gradient, "recipe": LocalRecipe(batches=((0,),), lr=-1.0)}
    )
    attack = ATTACKS.create("inverting-gradients", iterations=15, image="pixels", init="uniform")
    a = attack.reconstruct(step, seed=1)
    b = attack.reconstruct(as_gradient, seed=1)
    torch.testing.assert_close(a.images, b.images, rtol=0, atol=1e-5)


def test_attack_replays_several_local_steps(make_view) -> None:
    tiles = synthesize_tiles(2, tile_size=16, seed=4)
    recipe = LocalRecipe(batches=((0,), (1,), (0, 1)), lr=0.05, momentum=0.9)
    view = make_view(tiles, recipe)
    recon = ATTACKS.create("inverting-gradients", iterations=30).reconstruct(view, seed=0)
    assert recon.images.shape == (2, 3, 16, 16)
    assert recon.history[0][1] >= recon.objective

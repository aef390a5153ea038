"""Both attack families really invert a gradient step: one 16 px tile on a tiny smooth U-Net.

Through ReLU the parameter gradient jumps at every activation kink, and on a model this
small that defeats both optimisers (see attacks/images.py); GELU keeps the oracle check
about the attack machinery, not about the landscape.
"""

from __future__ import annotations

import numeric_cases
import pytest
import torch

from attacks import ATTACKS
from attacks.simulate import LocalRecipe

ONE_STEP = LocalRecipe(batches=((0,),), lr=0.05)


@pytest.mark.numeric
@pytest.mark.parametrize("case", ["ig-one-tile", "dlg-one-tile"])
def test_attack_recovers_one_tile(case: str) -> None:
    """Each attack family beats its bound (set outside the spread over seeds, threads and CPUs:
    tests/numeric_cases.py), and the guess alone does not."""
    values = numeric_cases.CASES[case](0)
    numeric_cases.check(case, values)
    assert values["prior_psnr"] < numeric_cases.BOUNDS[f"{case}.psnr"].value


def test_same_seed_same_reconstruction(one_tile, make_view) -> None:
    tiles, prior = one_tile
    view = make_view(tiles, ONE_STEP, prior=prior)
    attack = ATTACKS.create("inverting-gradients", iterations=20)
    a, b = attack.reconstruct(view, seed=4), attack.reconstruct(view, seed=4)
    torch.testing.assert_close(a.images, b.images, rtol=0, atol=0)
    assert a.objective == b.objective

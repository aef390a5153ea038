"""LPIPS (Zhang et al. 2018) with an ImageNet trunk found offline, or not at all.

``LPIPSMetric(net)`` builds ``lpips.LPIPS(net=net, pnet_rand=True)`` — which
allocates a randomly initialised trunk without touching the network and loads
lpips' own v0.1 linear calibration layers from the lpips package — and then
overwrites every trunk conv with ImageNet weights from
:func:`feddp_eval.metrics.lpips_weights.load_trunk`. If those weights cannot be
found, ``available`` is False, ``missing_reason`` says why in one line, and
calling the metric raises :class:`~feddp_eval.errors.MissingResourceError`:
LPIPS is never computed with a random trunk.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import Tensor

from feddp_eval.errors import MissingResourceError
from feddp_eval.metrics.lpips_weights import BACKBONES, TrunkWeights, load_trunk

# Smallest square input whose every trunk stage has a non-empty output.
# AlexNet: conv 11/4 pad 2 then two 3/2 max-pools; VGG-16: four 2/2 max-pools before the last stage.
MIN_SIZE = {"alex": 31, "vgg": 16}


class LPIPSMetric:
    """Learned perceptual distance between images in [0, 1]; lower means more similar.

    Images are ``(3, H, W)`` or ``(N, 3, H, W)`` in [0, 1] and are mapped to
    [-1, 1] (lpips' ``normalize=True``). Tiles smaller than the trunk accepts
    (:data:`MIN_SIZE`: 31 px for AlexNet, 16 px for VGG) are upsampled
    bilinearly, both images alike, to that size.
    """

    def __init__(self, net: str = "alex", *, device: str | torch.device = "cpu") -> None:
        if net not in BACKBONES:
            raise ValueError(f"LPIPS backbone {net!r} is not supported; choose one of {sorted(BACKBONES)}")
        self.net = net
        self.device = torch.device(device)
        self.missing_reason: str | None = None
        self.source: str | None = None
        self._model: torch.nn.Module | None = None
        try:
            trunk = load_trunk(net)
        except MissingResourceError as error:
            self.missing_reason = str(error)
            return
        self._model = _build(trunk).to(self.device)
        self.source = f"{trunk.source}: {trunk.path}"

    @property
    def available(self) -> bool:
        return self._model is not None

    @property
    def model(self) -> torch.nn.Module:
        """The underlying ``lpips.LPIPS`` module (ImageNet trunk loaded); raises when unavailable."""
        if self._model is None:
            raise MissingResourceError(self.missing_reason or f"LPIPS ({self.net}) is unavailable")
        return self._model

    def __repr__(self) -> str:
        state = f"source={self.source!r}" if self.available else f"missing_reason={self.missing_reason!r}"
        return f"LPIPSMetric(net={self.net!r}, {state})"

    @torch.inference_mode()
    def __call__(self, x: Tensor, y: Tensor, *, batch_size: int = 32) -> Tensor:
        """Per-pair LPIPS, shape ``(N,)`` (a 0-d tensor for single images), on the CPU."""
        model = self.model
        if x.shape != y.shape:
            raise ValueError(f"LPIPS needs images of one shape, got {tuple(x.shape)} and {tuple(y.shape)}")
        single = x.dim() == 3
        if single:
            x, y = x.unsqueeze(0), y.unsqueeze(0)
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"LPIPS takes (3, H, W) or (N, 3, H, W) images, got {tuple(x.shape)}")
        out = []
        for start in range(0, x.shape[0], batch_size):
            a = self._prepare(x[start : start + batch_size])
            b = self._prepare(y[start : start + batch_size])
            out.append(model(a, b, normalize=True).flatten().float().cpu())
        values = torch.cat(out) if out else torch.zeros(0)
        return values[0] if single else values

    def _prepare(self, images: Tensor) -> Tensor:
        images = images.to(self.device, torch.float32)
        size = MIN_SIZE[self.net]
        h, w = images.shape[-2:]
        if h < size or w < size:
            images = F.interpolate(
                images, size=(max(h, size), max(w, size)), mode="bilinear", align_corners=False
            )
        return images


def _build(trunk: TrunkWeights) -> torch.nn.Module:
    import lpips

    with warnings.catch_warnings():
        # torchvision's notice that lpips still passes pretrained=False.
        warnings.simplefilter("ignore", UserWarning)
        model = lpips.LPIPS(net=trunk.net, pnet_rand=True, verbose=False)
    # lpips names trunk convs slice<k>.<torchvision features index>.
    mapped = {}
    for name in model.net.state_dict():
        index_and_param = name.split(".", 1)[1]
        mapped[name] = trunk.state[f"features.{index_and_param}"]
    used = {f"features.{name.split('.', 1)[1]}" for name in mapped}
    if used != set(trunk.state):
        raise RuntimeError(f"lpips' {trunk.net} trunk does not use {sorted(set(trunk.state) - used)}")
    model.net.load_state_dict(mapped, strict=True)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model

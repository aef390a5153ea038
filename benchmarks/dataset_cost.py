"""What a run on a real dataset costs, per source image and per tile (a script, not a test).

docs/datasets.md turns these into hours for PanNuke and MoNuSeg: reading is paid once per training
run, training per tile-step, evaluation per held-out tile per round. The script measures, on the
device given:

- **read**: seconds per source image of each format, at the authors' sizes, through the format's
  own loader (split, read, tile into 64 px crops or resized tiles): a PanNuke fold of 256 px tiles
  (float64 arrays as downloaded), MoNuSeg 1000 x 1000 TIFFs with 700 nucleus polygons each (the
  training set's mean: 21,623 nuclei in 30 images), CoNSeP 1000 x 1000 PNGs with ``.mat`` labels
  (Lizard reads through the same ``.mat`` path);
- **train**: milliseconds per tile of one local SGD step (BCE + soft Dice) at 64 px, batch 16, the
  default U-Net, median of ``--steps`` steps after 3 warm-up steps;
- **evaluate**: milliseconds per tile of the forward pass used for held-out Dice, batch 64.

Usage: ``python benchmarks/dataset_cost.py [--device cpu] [--threads 2] [--steps 20] [--no-read] [--json]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from typing import cast

import numpy as np

IMAGES = 8  # source images per format read (PanNuke: tiles of one fold)
POLYGONS = 700


def write_pannuke(root: Path, n: int, rng: np.random.Generator) -> None:
    images = rng.uniform(0, 255, (n, 256, 256, 3))
    masks = np.zeros((n, 256, 256, 6))
    masks[:, 40:60, 40:60, 0] = 1
    masks[..., 5] = masks[..., :5].sum(axis=3) == 0
    for name, array, sub in (("images", images, "images"), ("masks", masks, "masks")):
        folder = root / "Fold 1" / sub / "fold1"
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / f"{name}.npy", array)
    np.save(root / "Fold 1" / "images" / "fold1" / "types.npy", np.array(["Breast", "Colon"] * (n // 2)))


def _nuclei(rng: np.random.Generator) -> list[np.ndarray]:
    """POLYGONS 12-gons of radius 5..9 px inside a 1000 px image."""
    centres = rng.uniform(12, 988, (POLYGONS, 2))
    angles = np.linspace(0, 2 * np.pi, 12, endpoint=False)
    return [
        c + r * np.stack([np.cos(angles), np.sin(angles)], 1)
        for c, r in zip(centres, rng.uniform(5, 9, POLYGONS), strict=True)
    ]


def write_monuseg(root: Path, n: int, rng: np.random.Generator) -> None:
    import tifffile

    (root / "Tissue Images").mkdir(parents=True)
    (root / "Annotations").mkdir(parents=True)
    for k in range(n):
        name = f"TCGA-A{k % 2}-{1000 + k}-01Z-00-DX1"
        tifffile.imwrite(
            root / "Tissue Images" / f"{name}.tif", rng.integers(0, 255, (1000, 1000, 3), np.uint8)
        )
        regions = "".join(
            f'<Region Id="{i}"><Attributes/><Vertices>'
            + "".join(f'<Vertex X="{x:.3f}" Y="{y:.3f}" Z="0"/>' for x, y in poly)
            + "</Vertices></Region>"
            for i, poly in enumerate(_nuclei(rng), start=1)
        )
        xml = f'<Annotations><Annotation Id="1"><Regions>{regions}</Regions></Annotation></Annotations>'
        (root / "Annotations" / f"{name}.xml").write_text(xml)


def write_consep(root: Path, n: int, rng: np.random.Generator) -> None:
    from PIL import Image
    from scipy.io import savemat
    from skimage.draw import polygon

    for sub in ("Images", "Labels"):
        (root / "Train" / sub).mkdir(parents=True)
    for k in range(n):
        rgba = rng.integers(0, 255, (1000, 1000, 4), np.uint8)
        rgba[..., 3] = 255
        Image.fromarray(rgba, "RGBA").save(root / "Train" / "Images" / f"train_{k}.png")
        inst = np.zeros((1000, 1000))
        for i, poly in enumerate(_nuclei(rng), start=1):
            rr, cc = polygon(poly[:, 1], poly[:, 0], inst.shape)
            inst[rr, cc] = i
        savemat(
            root / "Train" / "Labels" / f"train_{k}.mat", {"inst_map": inst, "type_map": (inst > 0) * 1.0}
        )


def read_seconds(fmt: str, root: Path, mode: str) -> float:
    from feddp_eval.data.formats import LoadOptions, get_format

    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sites = get_format(fmt).load(root, LoadOptions(tile_size=64, mode=mode, site_by=None, n_sites=1))
    seconds = time.perf_counter() - start
    return seconds / sum(len(cast(list[str], s.info["images"])) for s in sites)


def step_costs(device: str, steps: int) -> tuple[float, float]:
    """(ms per tile of a training step at batch 16, ms per tile of evaluation at batch 64)."""
    import torch

    from feddp_eval.config import ModelConfig
    from feddp_eval.models.loss import segmentation_loss
    from feddp_eval.models.unet import UNet

    torch.manual_seed(0)
    model = UNet.from_config(ModelConfig()).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    images = torch.rand(16, 3, 64, 64, device=device)
    masks = (torch.rand(16, 1, 64, 64, device=device) > 0.8).float()

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    times = []
    for i in range(steps + 3):
        sync()
        start = time.perf_counter()
        optimizer.zero_grad()
        segmentation_loss(model(images), masks).backward()
        optimizer.step()
        sync()
        if i >= 3:
            times.append(time.perf_counter() - start)
    batch = torch.rand(64, 3, 64, 64, device=device)
    evals = []
    with torch.no_grad():
        for i in range(steps + 3):
            sync()
            start = time.perf_counter()
            (model(batch) > 0).float().sum().item()
            sync()
            if i >= 3:
                evals.append(time.perf_counter() - start)
    return statistics.median(times) * 1000 / 16, statistics.median(evals) * 1000 / 64


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--no-read", action="store_true", help="Measure training and evaluation only.")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    result: dict[str, object] = {
        "device": args.device,
        "threads": args.threads,
        "loadavg": Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else None,
    }
    with tempfile.TemporaryDirectory() as tmp:
        formats = (
            ()
            if args.no_read
            else (("pannuke", write_pannuke), ("monuseg", write_monuseg), ("consep", write_consep))
        )
        for fmt, writer in formats:
            root = Path(tmp) / fmt
            root.mkdir()
            writer(root, IMAGES, rng)
            for mode in ("crop", "resize"):
                result[f"read_s_per_image_{fmt}_{mode}"] = round(read_seconds(fmt, root, mode), 4)
    train_ms, eval_ms = step_costs(args.device, args.steps)
    result["train_ms_per_tile"] = round(train_ms, 3)
    result["eval_ms_per_tile"] = round(eval_ms, 3)
    print(json.dumps(result, indent=None if args.json else 2))


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    main()

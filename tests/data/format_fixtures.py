"""Tiny datasets written in each format exactly as its authors ship it (layout, file types, array
shapes and keys), with known nuclei, for the format tests and the docs/datasets.md commands.

Each writer returns the expected foreground pixel count per source image (by stem), computed from
the drawn shapes independently of the loaders.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.io import savemat

SIDE = 32  # px: every fixture image is SIDE x SIDE; 16 px tiles make 4 crops of each


def ramp() -> np.ndarray:
    """Blue 100 + 3x + 2y (100..255): crops of one image differ (as real tissue does), while red
    stays the image's own colour, so a crop tells which image it came from."""
    y, x = np.mgrid[0:SIDE, 0:SIDE]
    return 100 + 3 * x + 2 * y


def coloured(red: int, green: int) -> np.ndarray:
    """(SIDE, SIDE, 3) uint8: one red and green per image, the blue ramp."""
    pixels = np.empty((SIDE, SIDE, 3), dtype=np.uint8)
    pixels[..., 0], pixels[..., 1], pixels[..., 2] = red, green, ramp()
    return pixels


# --------------------------------------------------------------------------- PanNuke

PANNUKE_TISSUES = {1: ["Breast", "Colon", "Breast", "Colon"], 2: ["Breast", "Colon", "Colon"]}


def pannuke_square(g: int) -> int:
    """Side of the first nucleus of the ``g``-th tile over all folds."""
    return 4 + 2 * (g % 3)


def write_pannuke(root: Path, tissues: dict[int, list[str]] = PANNUKE_TISSUES) -> dict[str, int]:
    """PanNuke folds as downloaded: ``Fold k/images/foldk/{images,types}.npy`` and
    ``Fold k/masks/foldk/masks.npy``; float64 RGB in 0..255, float64 (N, H, W, 6) instance maps."""
    expected, g = {}, 0
    for fold, names in tissues.items():
        n = len(names)
        images = np.zeros((n, SIDE, SIDE, 3), dtype=np.float64)
        masks = np.zeros((n, SIDE, SIDE, 6), dtype=np.float64)
        for i in range(n):
            images[i] = coloured(10 + 30 * g, 100)
            s = pannuke_square(g)
            masks[i, 2 : 2 + s, 2 : 2 + s, g % 5] = 1  # nucleus 1 of class g % 5
            masks[i, 20:22, 20:22, (g + 1) % 5] = 2  # nucleus 2 of the next class
            masks[i, :, :, 5] = (masks[i, :, :, :5].sum(axis=2) == 0).astype(np.float64)  # background
            expected[f"fold{fold}-{i:05d}"] = s * s + 4
            g += 1
        image_dir = root / f"Fold {fold}" / "images" / f"fold{fold}"
        mask_dir = root / f"Fold {fold}" / "masks" / f"fold{fold}"
        image_dir.mkdir(parents=True)
        mask_dir.mkdir(parents=True)
        np.save(image_dir / "images.npy", images)
        np.save(image_dir / "types.npy", np.array(names))
        np.save(mask_dir / "masks.npy", masks)
    return expected


# --------------------------------------------------------------------------- MoNuSeg

# name → (TSS, organ in the challenge inventory)
MONUSEG_IMAGES = (
    "TCGA-A7-A13E-01Z-00-DX1",  # A7, breast
    "TCGA-A7-A13F-01Z-00-DX1",  # A7, breast
    "TCGA-AR-A1AK-01Z-00-DX1",  # AR (one image), breast
    "TCGA-G9-6336-01Z-00-DX1",  # G9, prostate
    "TCGA-G9-6348-01Z-00-DX1",  # G9, prostate
    "TCGA-18-5592-01Z-00-DX1",  # 18 (one image), "liver" (one image)
)


def rectangle(x0: float, y0: float, x1: float, y1: float) -> list[tuple[float, float]]:
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]


def aperio_xml(regions: list[list[tuple[float, float]]]) -> str:
    """An Aperio ImageScope annotation file as MoNuSeg ships it: one Region per nucleus."""
    body = []
    for number, vertices in enumerate(regions, start=1):
        points = "".join(f'<Vertex X="{x}" Y="{y}" Z="0"/>\n' for x, y in vertices)
        body.append(
            f'<Region Id="{number}" Type="0" Zoom="0.5" Selected="0" ImageLocation="" Length="40.0" '
            f'Area="100.0" Text="" NegativeROA="0" InputRegionId="0" Analyze="1" DisplayId="{number}">\n'
            f"<Attributes/>\n<Vertices>\n{points}</Vertices>\n</Region>\n"
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<Annotations MicronsPerPixel="0.252000">\n'
        '<Annotation Id="1" Name="" ReadOnly="0" NameReadOnly="0" LineColorReadOnly="0" Incremental="0" '
        'Type="4" LineColor="65280" Visible="1" Selected="1" MarkupImagePath="" MacroName="">\n'
        '<Attributes>\n<Attribute Name="Description" Id="0" Value=""/>\n</Attributes>\n<Regions>\n'
        '<RegionAttributeHeaders>\n<AttributeHeader Id="9999" Name="Region" ColumnWidth="-1"/>\n'
        "</RegionAttributeHeaders>\n"
        + "".join(body)
        + "</Regions>\n<Plots/>\n</Annotation>\n</Annotations>\n"
    )


def write_monuseg(root: Path, names: tuple[str, ...] = MONUSEG_IMAGES) -> dict[str, int]:
    """MoNuSeg training data as downloaded: ``MoNuSeg 2018 Training Data/Tissue Images/*.tif`` and
    ``.../Annotations/*.xml``. Polygon edges sit on half pixels, so which pixel centres are inside
    is unambiguous: an (a x b) rectangle fills exactly a*b pixels."""
    import tifffile

    base = root / "MoNuSeg 2018 Training Data"
    (base / "Tissue Images").mkdir(parents=True)
    (base / "Annotations").mkdir(parents=True)
    expected = {}
    for k, name in enumerate(names):
        pixels = coloured(40 + 25 * k, 90)
        tifffile.imwrite(base / "Tissue Images" / f"{name}.tif", pixels, photometric="rgb")
        regions = [
            rectangle(3.5, 3.5, 11.5, 9.5),  # 8 x 6
            rectangle(15.5, 15.5, 17.5 + k, 19.5),  # (2 + k) x 4
            [(25.0, 25.0), (27.0, 27.0)],  # two vertices: no area, ignored
        ]
        count = 48 + (2 + k) * 4
        if k == 0:
            regions.append(rectangle(-4.5, 20.5, 3.5, 24.5))  # half outside: clipped to 4 x 4
            count += 16
        (base / "Annotations" / f"{name}.xml").write_text(aperio_xml(regions))
        expected[name] = count
    return expected


# --------------------------------------------------------------------------- CoNSeP and Lizard


def nuclei(k: int) -> np.ndarray:
    """An instance map: nucleus 1 a (3 + k) square, nucleus 2 a 2 x 2 square."""
    inst = np.zeros((SIDE, SIDE), dtype=np.float64)
    inst[4 : 7 + k, 4 : 7 + k] = 1
    inst[20:22, 20:22] = 2
    return inst


def nuclei_count(k: int) -> int:
    return (3 + k) ** 2 + 4


CONSEP_SPLITS = {"Train": 4, "Test": 2}


def write_consep(root: Path, splits: dict[str, int] = CONSEP_SPLITS) -> dict[str, int]:
    """CoNSeP as downloaded: ``CoNSeP/<Split>/Images/<split>_<i>.png`` (RGBA) and
    ``CoNSeP/<Split>/Labels/<split>_<i>.mat`` with inst_map, type_map, inst_type, inst_centroid."""
    expected, k = {}, 0
    for split, n in splits.items():
        images, labels = root / "CoNSeP" / split / "Images", root / "CoNSeP" / split / "Labels"
        images.mkdir(parents=True)
        labels.mkdir(parents=True)
        for i in range(1, n + 1):
            stem = f"{split.lower()}_{i}"
            rgba = np.dstack([coloured(30 + 20 * k, 80), np.full((SIDE, SIDE), 255, np.uint8)])
            Image.fromarray(rgba, "RGBA").save(images / f"{stem}.png")
            inst = nuclei(k)
            savemat(
                labels / f"{stem}.mat",
                {
                    "inst_map": inst,
                    "type_map": (inst > 0) * 2.0,
                    "inst_type": np.array([[2.0], [2.0]]),
                    "inst_centroid": np.array([[5.0, 5.0], [20.5, 20.5]]),
                },
            )
            expected[stem] = nuclei_count(k)
            k += 1
    return expected


LIZARD_ROWS = (  # Filename, Source, Split; the image archive it ships in
    ("consep_1", "consep", 1, 1),
    ("consep_2", "consep", 2, 1),
    ("crag_1", "crag", 2, 2),
    ("glas_1", "glas", 1, 2),
    ("glas_2", "glas", 3, 2),
)


def write_lizard(root: Path, rows: tuple[tuple[str, str, int, int], ...] = LIZARD_ROWS) -> dict[str, int]:
    """Lizard as downloaded: ``lizard_images{1,2}/Lizard_Images{1,2}/*.png``,
    ``lizard_labels/Lizard_Labels/Labels/*.mat`` (inst_map int32, id, class, bbox, centroid) and
    ``lizard_labels/Lizard_Labels/info.csv``."""
    labels = root / "lizard_labels" / "Lizard_Labels"
    (labels / "Labels").mkdir(parents=True)
    expected = {}
    for k, (name, _, _, archive) in enumerate(rows):
        images = root / f"lizard_images{archive}" / f"Lizard_Images{archive}"
        images.mkdir(parents=True, exist_ok=True)
        Image.fromarray(coloured(20 + 25 * k, 70), "RGB").save(images / f"{name}.png")
        savemat(
            labels / "Labels" / f"{name}.mat",
            {
                "inst_map": nuclei(k).astype(np.int32),
                "id": np.array([[1], [2]]),
                "class": np.array([[2], [3]]),
                "bbox": np.array([[4, 7 + k, 4, 7 + k], [20, 22, 20, 22]]),
                "centroid": np.array([[5.0, 5.0], [20.5, 20.5]]),
            },
        )
        expected[name] = nuclei_count(k)
    with (labels / "info.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Filename", "Source", "Split"])
        writer.writerows((name, source, split) for name, source, split, _ in rows)
    return expected


# --------------------------------------------------------------------------- whole-slide regions

WSI_SIDE = 64  # level 0; levels 1 and 2 are 32 and 16 px


def write_wsi(root: Path, sites: tuple[str, ...] = ("lab-a", "lab-b")) -> dict[str, int]:
    """Pyramidal tiled TIFF regions (levels 64, 32, 16 px as sub-IFDs, as tifffile and OpenSlide
    write them) in ``<site>/regions/``, with level-0 masks in ``<site>/masks/``. Region k's mask is
    rows 8..23 x cols 8..(15 + 4k) at level 0; returns its foreground at level 1 (every second row
    and column from 0: 8 rows x (4 + 2k) columns)."""
    import tifffile

    expected, k = {}, 0
    for site in sites:
        (root / site / "regions").mkdir(parents=True)
        (root / site / "masks").mkdir(parents=True)
        for _ in range(2):
            y, x = np.mgrid[0:WSI_SIDE, 0:WSI_SIDE]
            pixels = np.stack([np.full_like(x, 30 + 40 * k), 60 + x, 60 + 2 * y], axis=2).astype(np.uint8)
            path = root / site / "regions" / f"region-{k}.tif"
            with tifffile.TiffWriter(path) as tif:
                tif.write(pixels, subifds=2, photometric="rgb", tile=(16, 16))
                tif.write(pixels[::2, ::2], subfiletype=1, photometric="rgb", tile=(16, 16))
                tif.write(pixels[::4, ::4], subfiletype=1, photometric="rgb", tile=(16, 16))
            mask = np.zeros((WSI_SIDE, WSI_SIDE), dtype=np.uint8)
            mask[8:24, 8 : 16 + 4 * k] = 255
            Image.fromarray(mask).save(root / site / "masks" / f"region-{k}.png")
            expected[f"region-{k}"] = 8 * (4 + 2 * k)
            k += 1
    return expected


def write_v73_mat(path: Path) -> None:
    """A MATLAB v7.3 file's opening as MATLAB writes it: a 128-byte text header with version 0x0200,
    padded to 512 bytes, then an HDF5 superblock signature (the file is HDF5 inside)."""
    text = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."
    header = text.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02IM"
    path.write_bytes(header.ljust(512, b"\x00") + b"\x89HDF\r\n\x1a\n" + b"\x00" * 512)


WRITERS = {
    "pannuke": write_pannuke,
    "monuseg": write_monuseg,
    "consep": write_consep,
    "lizard": write_lizard,
    "wsi": write_wsi,
}

# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""Miniature replicas of the benchmark datasets' public layouts: a few tiny images, masks and label files each.

The replicas have each release's folder names, file names, extensions, mask naming and label files, with a handful
of 32 x 32 noise images whose anomalous ones carry a bright square that the mask marks. They exist to test the
loaders and to run the benchmark end to end offline (``examples/benchmark_paper.py --make_replicas DIR``); their
metrics mean nothing.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["REPLICA_FOLDERS", "write_replica", "write_replicas"]

SIZE = 32

REPLICA_FOLDERS: dict[str, str] = {
    "mvtec": "mvtec_anomaly_detection",
    "visa": "VisA_20220922",
    "elpv": "elpv-dataset",
    "sdd": "KolektorSDD",
    "aitex": "AITEX",
    "btad": "BTech_Dataset_transformed",
    "dagm": "DAGM_KaggleUpload",
    "dtd": "DTD-Synthetic",
    "mpdd": "MPDD",
    "brainmri": "BrainMRI",
    "headct": "HeadCT",
    "lag": "LAG",
    "br35h": "Br35H",
    "colondb": "CVC-ColonDB",
    "clinicdb": "CVC-ClinicDB",
    "kvasir": "Kvasir-SEG",
    "endo": "EndoTect_2020_Segmentation_Test_Dataset",
    "isic": "ISIC",
    "tn3k": "tn3k",
    "mvtec_ad2": "mvtec_ad_2",
    "mvtec_loco": "mvtec_loco_anomaly_detection",
}
"""The folder each replica is written to under the data root (a usual name of the dataset's download)."""


class _Writer:
    """Writes seeded tiny images and square masks; every anomalous image has a bright square where its mask is."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def square(self) -> tuple[slice, slice]:
        top, left = (int(v) for v in self.rng.integers(2, SIZE - 12, size=2))
        return slice(top, top + 8), slice(left, left + 8)

    def image(self, path: Path, region: tuple[slice, slice] | None = None, grey: bool = False) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        array = self.rng.integers(60, 140, size=(SIZE, SIZE, 3), dtype=np.uint8)
        if region is not None:
            array[region] = 250
        picture = Image.fromarray(array)
        picture = picture.convert("L") if grey else picture
        picture.save(path, format=_format(path))
        return path

    def mask(self, path: Path, region: tuple[slice, slice] | None) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        array = np.zeros((SIZE, SIZE), np.uint8)
        if region is not None:
            array[region] = 255
        Image.fromarray(array).save(path, format=_format(path))
        return path

    def pair(self, image: Path, mask: Path, grey: bool = False) -> None:
        region = self.square()
        self.image(image, region, grey)
        self.mask(mask, region)


def _format(path: Path) -> str:
    return {".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF"}.get(
        path.suffix.lower(), "PNG"
    )


def _mvtec_like(
    w: _Writer, root: Path, classes: dict[str, str], normal: str = "good", mask_name: str = "{stem}_mask.png"
) -> None:
    for class_name, defect in classes.items():
        folder = root / class_name
        w.image(folder / "train" / normal / "000.png")
        for stem in ("000", "001"):
            w.image(folder / "test" / normal / f"{stem}.png")
            w.pair(
                folder / "test" / defect / f"{stem}.png", folder / "ground_truth" / defect / mask_name.format(stem=stem)
            )


def _mvtec(w: _Writer, root: Path) -> None:
    _mvtec_like(w, root, {"bottle": "broken_large", "carpet": "hole"})
    (root / "license.txt").write_text("replica\n")


def _visa(w: _Writer, root: Path) -> None:
    lines = ["object,split,label,image,mask"]
    for class_name in ("candle", "pcb1"):
        base = f"{class_name}/Data"
        for index in range(3):
            image = f"{base}/Images/Normal/{index:04d}.JPG"
            w.image(root / image)
            lines.append(f"{class_name},{'train' if index == 2 else 'test'},normal,{image},")
        for index in range(2):
            image, mask = f"{base}/Images/Anomaly/{index:03d}.JPG", f"{base}/Masks/Anomaly/{index:03d}.png"
            w.pair(root / image, root / mask)
            lines.append(f"{class_name},test,anomaly,{image},{mask}")
    (root / "split_csv").mkdir(parents=True, exist_ok=True)
    (root / "split_csv" / "1cls.csv").write_text("\n".join(lines) + "\n")


def _elpv(w: _Writer, root: Path) -> None:
    cells = [(0.0, "mono"), (1.0, "mono"), (0.3333333333333333, "mono"), (0.0, "mono")]
    cells += [(0.0, "poly"), (0.6666666666666666, "poly"), (1.0, "poly"), (0.0, "poly")]
    lines = []
    for index, (probability, kind) in enumerate(cells, start=1):
        name = f"images/cell{index:04d}.png"
        w.image(root / name, w.square() if probability > 0 else None, grey=True)
        lines.append(f"{name:>24}  {probability!r:<18}  {kind}")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")


def _sdd(w: _Writer, root: Path) -> None:
    defective = {("kos01", 1), ("kos02", 2)}
    for folder in ("kos01", "kos02"):
        for part in range(3):
            region = w.square() if (folder, part) in defective else None
            w.image(root / folder / f"Part{part}.jpg", region, grey=True)
            w.mask(root / folder / f"Part{part}_label.bmp", region)


def _aitex(w: _Writer, root: Path) -> None:
    w.image(root / "NODefect_images" / "2311694-2040n7u" / "0001_000_00.png", grey=True)
    w.image(root / "NODefect_images" / "2311694-2040n7u" / "0002_000_00.png", grey=True)
    w.image(root / "NODefect_images" / "2306894-210033u" / "0003_000_01.png", grey=True)
    for name in ("0001_002_00", "0002_006_01"):
        w.pair(root / "Defect_images" / f"{name}.png", root / "Mask_images" / f"{name}_mask.png", grey=True)


def _btad(w: _Writer, root: Path) -> None:
    for product, image_ext, mask_ext in (("01", ".bmp", ".png"), ("03", ".bmp", ".bmp")):
        folder = root / product
        w.image(folder / "train" / "ok" / f"0000{image_ext}")
        for stem in ("0000", "0001"):
            w.image(folder / "test" / "ok" / f"{stem}{image_ext}")
            w.pair(folder / "test" / "ko" / f"{stem}{image_ext}", folder / "ground_truth" / "ko" / f"{stem}{mask_ext}")


def _dagm(w: _Writer, root: Path) -> None:
    for class_name, splits in (
        ("Class1", {"Test": (2, 4), "Train": (1, 2)}),
        ("Class2", {"Test": (1, 2), "Train": (1, 2)}),
    ):
        for split, (defective_count, total) in splits.items():
            folder = root / class_name / split
            lines = ["1"]
            for index in range(1, total + 1):
                stem = f"{index:04d}"
                if index <= defective_count:
                    w.pair(folder / f"{stem}.PNG", folder / "Label" / f"{stem}_label.PNG", grey=True)
                    lines.append(f"{index}\t1\t{stem}.PNG\t0\t{stem}_label.PNG")
                else:
                    w.image(folder / f"{stem}.PNG", grey=True)
                    lines.append(f"{index}\t0\t{stem}.PNG\t0\t")
            (folder / "Label").mkdir(parents=True, exist_ok=True)
            (folder / "Label" / "Labels.txt").write_text("\n".join(lines) + "\n")


def _dtd(w: _Writer, root: Path) -> None:
    _mvtec_like(w, root, {"Blotchy_099": "bad", "Woven_001": "bad"})


def _mpdd(w: _Writer, root: Path) -> None:
    _mvtec_like(w, root, {"bracket_black": "hole", "metal_plate": "scratches"})


def _brainmri(w: _Writer, root: Path) -> None:
    base = root / "brain_tumor_dataset"
    for name in ("Y1.jpg", "Y2.JPG", "Y3.png"):
        w.image(base / "yes" / name, w.square(), grey=True)
    for name in ("no 1.jpg", "N2.JPG", "3 no.jpeg"):
        w.image(base / "no" / name, grey=True)


def _headct(w: _Writer, root: Path) -> None:
    labels = [1, 1, 1, 0, 0, 0]
    for image_id, label in enumerate(labels):
        w.image(root / "head_ct" / "head_ct" / f"{image_id:03d}.png", w.square() if label else None, grey=True)
    text = "id, hemorrhage\n" + "".join(f"{image_id},{label}\n" for image_id, label in enumerate(labels))
    (root / "labels.csv").write_text(text)


def _lag(w: _Writer, root: Path) -> None:
    for index in range(3):
        w.image(root / "non_glaucoma" / "image" / f"{index}.jpg")
        w.image(root / "non_glaucoma" / "attention_map" / f"{index}.jpg", grey=True)
    for index in range(2):
        w.image(root / "suspicious_glaucoma" / "image" / f"{index}.jpg", w.square())


def _br35h(w: _Writer, root: Path) -> None:
    for index in range(2):
        w.image(root / "yes" / f"y{index}.jpg", w.square(), grey=True)
    for index in range(3):
        w.image(root / "no" / f"no{index}.jpg", grey=True)
    w.image(root / "pred" / "pred0.jpg", grey=True)


def _images_masks(image_dir: str, mask_dir: str, names: Sequence[str], mask_suffix: str = "") -> Callable:
    def write(w: _Writer, root: Path) -> None:
        for name in names:
            stem, ext = os.path.splitext(name)
            mask_ext = ".png" if mask_suffix else ext
            w.pair(root / image_dir / name, root / mask_dir / f"{stem}{mask_suffix}{mask_ext}")

    return write


def _tn3k(w: _Writer, root: Path) -> None:
    _images_masks("test-image", "test-mask", ("0000.jpg", "0001.jpg", "0002.jpg"))(w, root)
    _images_masks("trainval-image", "trainval-mask", ("0000.jpg", "0001.jpg"))(w, root)


def _mvtec_ad2(w: _Writer, root: Path) -> None:
    folder = root / "can"
    w.image(folder / "train" / "good" / "000_regular.png")
    w.image(folder / "validation" / "good" / "000_regular.png")
    w.image(folder / "test_public" / "good" / "000_regular.png")
    w.image(folder / "test_public" / "good" / "001_overexposed.png")
    for stem in ("000_regular", "001_shift_1"):
        w.pair(
            folder / "test_public" / "bad" / f"{stem}.png",
            folder / "test_public" / "ground_truth" / "bad" / f"{stem}_mask.png",
        )
    w.image(folder / "test_private" / "000_regular.png")


def _mvtec_loco(w: _Writer, root: Path) -> None:
    folder = root / "breakfast_box"
    w.image(folder / "train" / "good" / "000.png")
    w.image(folder / "validation" / "good" / "000.png")
    w.image(folder / "test" / "good" / "000.png")
    w.image(folder / "test" / "good" / "001.png")
    w.pair(
        folder / "test" / "structural_anomalies" / "000.png",
        folder / "ground_truth" / "structural_anomalies" / "000" / "000.png",
    )
    first, second = w.square(), w.square()
    image = folder / "test" / "logical_anomalies" / "000.png"
    w.image(image, first)
    painted = np.asarray(Image.open(image)).copy()
    painted[second] = 250  # a logical anomaly with two parts: both marked, each by its own mask file
    Image.fromarray(painted).save(image)
    w.mask(folder / "ground_truth" / "logical_anomalies" / "000" / "000.png", first)
    w.mask(folder / "ground_truth" / "logical_anomalies" / "000" / "001.png", second)


_WRITERS: dict[str, Callable[[_Writer, Path], None]] = {
    "mvtec": _mvtec,
    "visa": _visa,
    "elpv": _elpv,
    "sdd": _sdd,
    "aitex": _aitex,
    "btad": _btad,
    "dagm": _dagm,
    "dtd": _dtd,
    "mpdd": _mpdd,
    "brainmri": _brainmri,
    "headct": _headct,
    "lag": _lag,
    "br35h": _br35h,
    "colondb": _images_masks("images", "masks", ("1.png", "2.png", "3.png")),
    "clinicdb": _images_masks("Original", "Ground Truth", ("1.tif", "2.tif")),
    "kvasir": _images_masks("images", "masks", ("cju0qkwl35piu0993l0dewei2.jpg", "cju0qoxqj9q6s0835b43399p4.jpg")),
    "endo": _images_masks("images", "masks", ("0a1b2c.jpg", "1d2e3f.jpg")),
    "isic": _images_masks(
        "ISBI2016_ISIC_Part1_Test_Data",
        "ISBI2016_ISIC_Part1_Test_GroundTruth",
        ("ISIC_0000003.jpg", "ISIC_0000012.jpg"),
        "_Segmentation",
    ),
    "tn3k": _tn3k,
    "mvtec_ad2": _mvtec_ad2,
    "mvtec_loco": _mvtec_loco,
}


def write_replica(name: str, data_root: str | os.PathLike, seed: int = 0) -> Path:
    """Write the miniature replica of one dataset under ``data_root/<its usual folder name>``.

    Args:
        name: A dataset key of :data:`~faprompt_hf.data.paper_datasets.PAPER_DATASETS` or ``EXTRA_DATASETS``.
        data_root: The folder to write into (created if missing).
        seed: Seed of the noise images and the defect squares.

    Returns:
        The dataset folder written.

    Raises:
        ValueError: Unknown dataset key.
    """
    if name not in _WRITERS:
        raise ValueError(f"No replica for {name!r}; known: {', '.join(_WRITERS)}.")
    folder = Path(data_root) / REPLICA_FOLDERS[name]
    folder.mkdir(parents=True, exist_ok=True)
    _WRITERS[name](_Writer(seed + sorted(_WRITERS).index(name)), folder)
    return folder


def write_replicas(data_root: str | os.PathLike, names: Sequence[str] | None = None, seed: int = 0) -> dict[str, Path]:
    """Write the replicas of several datasets (default: every one) under ``data_root``.

    Args:
        data_root: The folder to write into.
        names: Dataset keys (default: all, the paper's 19 and the extra ones).
        seed: Seed of the images.

    Returns:
        ``{key: folder}``.
    """
    return {name: write_replica(name, data_root, seed) for name in (names or list(_WRITERS))}

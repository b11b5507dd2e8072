# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""Loaders for the 19 datasets of the FAPrompt paper (and MVTec AD 2, MVTec LOCO AD), each in its public layout.

Every loader reads the folder tree of the dataset as its owners publish it (their file names, mask naming and label
files) and returns the package's one schema, :data:`~faprompt_hf.data.ANOMALY_FEATURES`. Datasets that only have
image-level labels (ELPV, BrainMRI, HeadCT, LAG, Br35H) get ``mask=None`` on every row; the segmentation sets whose
images are all anomalous (CVC-ColonDB, CVC-ClinicDB, Kvasir, Endo, ISIC, TN3K) only support pixel-level metrics.

Layout problems are reported, never guessed around: a folder or file the release does not have is a
:class:`DatasetLayoutError` naming the first unexpected path and what was expected there; an anomalous image without
its mask is a ``FileNotFoundError`` naming the mask path expected; a label file value outside the release's values is
a ``ValueError`` naming the file, the line and the value. ``docs/data.md`` describes each layout.

Registry: :data:`PAPER_DATASETS` (the paper's 19, in its table order) and :data:`EXTRA_DATASETS`, keyed by the
names :func:`load_paper_dataset` and ``load_dataset_by_format`` accept.
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from datasets import Dataset
from PIL import Image
from transformers.utils import logging

from .loaders import (
    _existing_root,
    _images_in,
    _row,
    _subfolders,
    _visible_entries,
    load_mvtec_ad,
    load_visa,
    write_meta_json,
)
from .schema import NORMAL_DEFECT_TYPE, _build_dataset

logger = logging.get_logger(__name__)

__all__ = [
    "EXTRA_DATASETS",
    "PAPER_DATASETS",
    "DatasetLayoutError",
    "DatasetSpec",
    "all_dataset_specs",
    "find_paper_datasets",
    "get_dataset_spec",
    "load_aitex",
    "load_br35h",
    "load_brain_mri",
    "load_btad",
    "load_cvc_clinicdb",
    "load_cvc_colondb",
    "load_dagm",
    "load_dtd_synthetic",
    "load_elpv",
    "load_endo",
    "load_headct",
    "load_isic",
    "load_kolektorsdd",
    "load_kvasir",
    "load_lag",
    "load_mpdd",
    "load_mvtec_ad2",
    "load_mvtec_loco",
    "load_paper_dataset",
    "load_tn3k",
    "normalize_folder_name",
    "write_paper_meta_json",
]


class DatasetLayoutError(ValueError):
    """A dataset folder whose layout differs from the published release's.

    The message names the first unexpected path (or the missing one) and what the release has there.
    """


def _layout_error(dataset: str, found: Path | str, expected: str) -> DatasetLayoutError:
    return DatasetLayoutError(
        f"{dataset}: unexpected {str(found)!r}; expected {expected}. Restore the layout of the official release "
        f"(docs/data.md, '{dataset}'), or move the extra entry out of the dataset folder."
    )


def _missing_error(dataset: str, missing: Path, expected: str, root: Path) -> DatasetLayoutError:
    present = [entry.name for entry in _visible_entries(root)] if root.is_dir() else []
    return DatasetLayoutError(
        f"{dataset}: {str(missing)!r} not found; expected {expected}. {str(root)!r} holds "
        f"{present[:12] if present else 'nothing'}. Point the path at the dataset's root folder (docs/data.md, "
        f"'{dataset}')."
    )


# ----------------------------------------------------------------------------------------------------------------
# Shared helpers
# ----------------------------------------------------------------------------------------------------------------


def _check_split(dataset: str, split: str, splits: Sequence[str]) -> None:
    if split not in splits:
        raise ValueError(
            f"{dataset} has the split(s) {list(splits)}, got {split!r}"
            + (
                "; the release has no train/test split, the paper evaluates on every image."
                if splits == ("test",)
                else "."
            )
        )


def _filter_classes(rows: list[dict[str, Any]], classes: Sequence[str] | None, dataset: str) -> list[dict[str, Any]]:
    if classes is None:
        return rows
    classes = [classes] if isinstance(classes, str) else list(classes)
    available = sorted({row["class_name"] for row in rows})
    unknown = [name for name in classes if name not in available]
    if unknown:
        raise ValueError(f"{dataset}: classes {unknown} not found; available: {available}.")
    return [row for row in rows if row["class_name"] in classes]


def _finish(
    rows: list[dict[str, Any]], classes: Sequence[str] | None, dataset: str, root: Path, verify: bool
) -> Dataset:
    rows = _filter_classes(rows, classes, dataset)
    if not rows:
        raise ValueError(f"{dataset}: no images found under {str(root)!r}.")
    logger.info("Loaded %d %s images from %s", len(rows), dataset, root)
    return _build_dataset(rows, verify=verify)


def _only_dirs(folder: Path, allowed: Sequence[str], dataset: str, expected: str) -> None:
    """Raise on the first sub-folder of ``folder`` whose name is not in ``allowed``."""
    for entry in _subfolders(folder):
        if entry.name not in allowed:
            raise _layout_error(dataset, entry, expected)


def _no_stray_images(folder: Path, dataset: str, expected: str) -> None:
    stray = _images_in(folder)
    if stray:
        raise _layout_error(dataset, stray[0], expected)


def _image_stems(folder: Path, dataset: str) -> dict[str, Path]:
    """Image files of ``folder`` by stem; two files with one stem are an error."""
    stems: dict[str, Path] = {}
    for path in _images_in(folder):
        if path.stem in stems:
            raise ValueError(f"{dataset}: {str(stems[path.stem])!r} and {str(path)!r} share a name; keep only one.")
        stems[path.stem] = path
    return stems


def _mask_for(masks: dict[str, Path], stem: str, suffixes: Sequence[str], dataset: str) -> Path | None:
    found = [masks[stem + suffix] for suffix in suffixes if stem + suffix in masks]
    if len(found) > 1:
        raise ValueError(f"{dataset}: ambiguous masks {[str(path) for path in found]} for image {stem!r}; keep one.")
    return found[0] if found else None


def _no_mask_error(dataset: str, image: Path, expected: Path) -> FileNotFoundError:
    return FileNotFoundError(
        f"{dataset}: no mask for anomalous image {str(image)!r}: expected {str(expected)!r}. Restore the mask from "
        "the release."
    )


def _mask_is_empty(path: Path) -> bool:
    with Image.open(path) as image:
        return not np.asarray(image.convert("L")).any()


def _descend(root: Path, has_layout: Callable[[Path], bool]) -> Path:
    """``root``, or its only sub-folder when the layout sits one level deeper (archives often add a folder)."""
    if has_layout(root):
        return root
    children = _subfolders(root)
    if len(children) == 1 and has_layout(children[0]):
        return children[0]
    return root


# ----------------------------------------------------------------------------------------------------------------
# MVTec-AD-like trees: MPDD, BTAD, DTD-Synthetic, MVTec AD 2
# ----------------------------------------------------------------------------------------------------------------


def _load_mvtec_like(
    root: str | os.PathLike,
    split: str,
    classes: Sequence[str] | None,
    verify: bool,
    *,
    dataset: str,
    normal: str = NORMAL_DEFECT_TYPE,
    split_dirs: dict[str, str] | None = None,
    class_children: Sequence[str] = ("train", "test", "ground_truth"),
    mask_suffixes: Sequence[str] = ("_mask",),
    defect_names: Sequence[str] | None = None,
    ground_truth_in_split: bool = False,
) -> Dataset:
    """Read ``root/<class>/<split>/<normal|defect>/<image>`` with masks in ``<class>/ground_truth/<defect>/``.

    Every folder is checked: a class folder holds only ``class_children``; a split folder only defect folders (only
    ``defect_names`` when given); the ground-truth folder only folders of the split's defects.
    """
    split_dirs = split_dirs or {"train": "train", "test": "test"}
    _check_split(dataset, split, tuple(split_dirs))
    root = _existing_root(root, dataset)
    class_folders = _subfolders(root)
    if not class_folders:
        raise _missing_error(dataset, root / "<class>", f"class folders holding {split_dirs[split]}/", root)
    rows: list[dict[str, Any]] = []
    for class_folder in class_folders:
        expected_children = f"only {list(class_children)} in a class folder"
        _only_dirs(class_folder, class_children, dataset, expected_children)
        split_folder = class_folder / split_dirs[split]
        if not split_folder.is_dir():
            raise _missing_error(dataset, split_folder, f"{expected_children}", class_folder)
        _no_stray_images(split_folder, dataset, f"images inside {normal}/ or <defect>/ folders of {split_folder}")
        gt_root = (split_folder if ground_truth_in_split else class_folder) / "ground_truth"
        defect_folders = [entry for entry in _subfolders(split_folder) if entry.name != "ground_truth"]
        for defect_folder in defect_folders:
            if defect_names is not None and defect_folder.name not in defect_names:
                raise _layout_error(dataset, defect_folder, f"only {list(defect_names)} in {split_folder}")
        if gt_root.is_dir() and (split == "test" or ground_truth_in_split):
            known = sorted(entry.name for entry in defect_folders)
            for gt_folder in _subfolders(gt_root):
                if gt_folder.name not in known:
                    raise _layout_error(
                        dataset, gt_folder, f"one ground-truth folder per defect folder of {split_folder} ({known})"
                    )
        class_rows: list[dict[str, Any]] = []
        for defect_folder in defect_folders:
            defect = defect_folder.name
            is_normal = defect == normal
            masks = {} if is_normal else _image_stems(gt_root / defect, dataset) if (gt_root / defect).is_dir() else {}
            for image in _images_in(defect_folder):
                if is_normal:
                    class_rows.append(_row(image, None, 0, class_folder.name, NORMAL_DEFECT_TYPE))
                    continue
                mask = _mask_for(masks, image.stem, mask_suffixes, dataset)
                if mask is None:
                    raise _no_mask_error(dataset, image, gt_root / defect / f"{image.stem}{mask_suffixes[0]}.png")
                class_rows.append(_row(image, mask, 1, class_folder.name, defect))
        if not class_rows:
            raise ValueError(f"{dataset}: {str(split_folder)!r} contains no images.")
        rows.extend(class_rows)
    return _finish(rows, classes, dataset, root, verify)


def load_mpdd(
    root: str | os.PathLike, split: str = "test", classes: Sequence[str] | None = None, verify: bool = False
) -> Dataset:
    """MPDD (Jezek et al. 2021, github.com/stepanje/MPDD): MVTec AD's layout, 6 metal-part classes.

    Layout: ``root/<class>/{train,test}/good/*.png``, ``root/<class>/test/<defect>/*.png``,
    ``root/<class>/ground_truth/<defect>/<stem>_mask.png``.

    Args:
        root: The MPDD folder (``bracket_black/``, ``bracket_brown/``, ...).
        split: ``"test"`` (the zero-shot benchmark) or ``"train"`` (normal images only).
        classes: Class folders to keep (default: all).
        verify: Decode every image and mask now.

    Returns:
        A dataset in :data:`~faprompt_hf.data.ANOMALY_FEATURES`.

    Raises:
        DatasetLayoutError: A folder the release does not have (named, with what is expected there).
        FileNotFoundError: An anomalous image without its mask.
    """
    return _load_mvtec_like(root, split, classes, verify, dataset="MPDD")


def load_btad(
    root: str | os.PathLike, split: str = "test", classes: Sequence[str] | None = None, verify: bool = False
) -> Dataset:
    """BTAD (beanTech, Mishra et al. 2021), the ``BTech_Dataset_transformed`` folder of ``btad.zip``.

    Layout: ``root/{01,02,03}/train/ok/*``, ``root/<class>/test/{ok,ko}/*`` and ``root/<class>/ground_truth/ko/*``;
    a mask has its image's stem (``0000.bmp`` -> ``0000.png``; product 03's masks are ``.bmp``). ``ok`` is normal,
    ``ko`` anomalous (``defect_type`` ``"ko"``).

    Args:
        root: The ``BTech_Dataset_transformed`` folder.
        split: ``"test"`` or ``"train"``.
        classes: ``"01"``, ``"02"``, ``"03"`` (default: all).
        verify: Decode every image and mask now.

    Returns:
        A dataset in :data:`~faprompt_hf.data.ANOMALY_FEATURES`.

    Raises:
        DatasetLayoutError: A folder other than ``ok``/``ko`` in a split, or other unexpected folders.
        FileNotFoundError: A ``ko`` image without its mask.
    """
    return _load_mvtec_like(
        root,
        split,
        classes,
        verify,
        dataset="BTAD",
        normal="ok",
        mask_suffixes=("", "_mask"),
        defect_names=("ok", "ko"),
    )


def load_dtd_synthetic(
    root: str | os.PathLike, split: str = "test", classes: Sequence[str] | None = None, verify: bool = False
) -> Dataset:
    """DTD-Synthetic (Aota et al., WACV 2023): 12 DTD textures with synthetic defects, in MVTec AD's layout.

    Layout: ``root/<Texture_NNN>/{train,test}/good/*.png``, ``root/<class>/test/bad/*.png`` and
    ``root/<class>/ground_truth/bad/<stem>_mask.png`` (a mask named ``<stem>.png`` is accepted too).

    Args:
        root: The DTD-Synthetic folder (``Blotchy_099/``, ``Fibrous_183/``, ...).
        split: ``"test"`` or ``"train"``.
        classes: Texture folders to keep (default: all).
        verify: Decode every image and mask now.

    Returns:
        A dataset in :data:`~faprompt_hf.data.ANOMALY_FEATURES`.

    Raises:
        DatasetLayoutError: An unexpected folder (named).
        FileNotFoundError: A ``bad`` image without its mask.
    """
    return _load_mvtec_like(root, split, classes, verify, dataset="DTD-Synthetic", mask_suffixes=("_mask", ""))


def load_mvtec_ad2(
    root: str | os.PathLike, split: str = "test", classes: Sequence[str] | None = None, verify: bool = False
) -> Dataset:
    """MVTec AD 2 (2025): the public test set ``test_public`` (the private test sets have no ground truth).

    Layout: ``root/<class>/train/good/*.png``, ``root/<class>/validation/good/*.png``,
    ``root/<class>/test_public/{good,bad}/*.png`` and ``root/<class>/test_public/ground_truth/bad/<stem>_mask.png``;
    ``test_private/`` and ``test_private_mixed/`` are allowed and ignored.

    Args:
        root: The MVTec AD 2 folder (``can/``, ``fabric/``, ``fruit_jelly/``, ...).
        split: ``"test"`` (``test_public``), ``"train"`` or ``"validation"``.
        classes: Class folders to keep (default: all).
        verify: Decode every image and mask now.

    Returns:
        A dataset in :data:`~faprompt_hf.data.ANOMALY_FEATURES`.

    Raises:
        DatasetLayoutError: An unexpected folder (named).
        FileNotFoundError: A ``bad`` image without its mask.
    """
    return _load_mvtec_like(
        root,
        split,
        classes,
        verify,
        dataset="MVTec AD 2",
        split_dirs={"test": "test_public", "train": "train", "validation": "validation"},
        class_children=("train", "validation", "test_public", "test_private", "test_private_mixed"),
        defect_names=("good", "bad"),
        ground_truth_in_split=True,
    )


def load_mvtec_loco(
    root: str | os.PathLike, split: str = "test", classes: Sequence[str] | None = None, verify: bool = False
) -> Dataset:
    """MVTec LOCO AD (2022): logical and structural anomalies, one mask *folder* per anomalous image.

    Layout: ``root/<class>/{train,validation}/good/*.png``,
    ``root/<class>/test/{good,logical_anomalies,structural_anomalies}/NNN.png`` and
    ``root/<class>/ground_truth/<defect>/NNN/000.png`` (``001.png``, ... when the image has several defects; their
    values are defect ids, any value > 0 is anomalous). An image with one mask file uses it directly; one with several
    gets their union, kept in memory as PNG bytes (``write_meta_json`` refuses such rows: they are no single file).

    Args:
        root: The ``mvtec_loco_anomaly_detection`` folder (``breakfast_box/``, ``juice_bottle/``, ...).
        split: ``"test"``, ``"train"`` or ``"validation"``.
        classes: Class folders to keep (default: all).
        verify: Decode every image and mask now.

    Returns:
        A dataset in :data:`~faprompt_hf.data.ANOMALY_FEATURES`.

    Raises:
        DatasetLayoutError: An unexpected folder (named).
        FileNotFoundError: An anomalous image whose mask folder is missing or empty.
    """
    dataset = "MVTec LOCO AD"
    _check_split(dataset, split, ("test", "train", "validation"))
    root = _existing_root(root, dataset)
    defects = ("good", "logical_anomalies", "structural_anomalies")
    rows: list[dict[str, Any]] = []
    for class_folder in _subfolders(root):
        _only_dirs(
            class_folder,
            ("train", "validation", "test", "ground_truth"),
            dataset,
            "only train/, validation/, test/ and ground_truth/ in a class folder",
        )
        split_folder = class_folder / split
        if not split_folder.is_dir():
            raise _missing_error(dataset, split_folder, "train/, validation/, test/ and ground_truth/", class_folder)
        _only_dirs(split_folder, defects, dataset, f"only {list(defects)} in {split_folder}")
        for defect_folder in _subfolders(split_folder):
            defect = defect_folder.name
            for image in _images_in(defect_folder):
                if defect == NORMAL_DEFECT_TYPE:
                    rows.append(_row(image, None, 0, class_folder.name, NORMAL_DEFECT_TYPE))
                    continue
                mask_folder = class_folder / "ground_truth" / defect / image.stem
                masks = _images_in(mask_folder) if mask_folder.is_dir() else []
                if not masks:
                    raise _no_mask_error(dataset, image, mask_folder / "000.png")
                row = _row(image, masks[0], 1, class_folder.name, defect)
                if len(masks) > 1:
                    union = None
                    for path in masks:
                        with Image.open(path) as opened:
                            marked = np.asarray(opened.convert("L")) > 0
                        union = marked if union is None else union | marked
                    buffer = io.BytesIO()
                    Image.fromarray(union.astype(np.uint8) * 255).save(buffer, format="PNG")
                    row["mask"] = {"bytes": buffer.getvalue(), "path": None}
                rows.append(row)
    return _finish(rows, classes, dataset, root, verify)


# ----------------------------------------------------------------------------------------------------------------
# Industrial sets with their own layouts: ELPV, KolektorSDD, AITEX, DAGM
# ----------------------------------------------------------------------------------------------------------------

_ELPV_PROBABILITIES = (0.0, 1 / 3, 2 / 3, 1.0)
_ELPV_TYPES = ("mono", "poly")


def load_elpv(
    root: str | os.PathLike, split: str = "test", classes: Sequence[str] | None = None, verify: bool = False
) -> Dataset:
    """ELPV (Buerhop-Lutz et al. / Deitsch et al., github.com/zae-bayern/elpv-dataset): solar-cell EL images.

    Layout: ``root/labels.csv`` and ``root/images/cell0001.png ...``. ``labels.csv`` has no header; each line holds
    the image path (relative to ``root``), the defect probability (0, 1/3, 2/3 or 1, as the annotators' confidence)
    and the wafer type (``mono`` or ``poly``), separated by white space. A cell is anomalous when its probability is
    above 0; ``class_name`` is the wafer type and ``defect_type`` ``"defect_p33"``, ``"defect_p67"`` or
    ``"defect_p100"``. Image-level labels only (``mask=None``).

    Args:
        root: The ``elpv-dataset`` folder (the one holding ``labels.csv``).
        split: ``"test"`` (every cell; the release has no split).
        classes: ``"mono"``, ``"poly"`` (default: both).
        verify: Decode every image now.

    Returns:
        A dataset in :data:`~faprompt_hf.data.ANOMALY_FEATURES`.

    Raises:
        ValueError: A line with a probability or type outside the release's values, or too few fields (names the
            file, line and value).
        FileNotFoundError: ``labels.csv`` or an image it lists is missing.
    """
    dataset = "ELPV"
    _check_split(dataset, split, ("test",))
    root = _descend(_existing_root(root, dataset), lambda folder: (folder / "labels.csv").is_file())
    labels_file = root / "labels.csv"
    if not labels_file.is_file():
        raise _missing_error(dataset, labels_file, "labels.csv beside the images/ folder", root)
    rows: list[dict[str, Any]] = []
    for number, line in enumerate(labels_file.read_text(encoding="utf-8").splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        where = f"{labels_file}:{number}"
        if len(fields) != 3:
            raise ValueError(f"{where}: expected 3 fields (image path, defect probability, type), got {line!r}.")
        written, probability_text, cell_type = fields
        try:
            probability = float(probability_text)
        except ValueError:
            probability = float("nan")
        matches = [value for value in _ELPV_PROBABILITIES if abs(value - probability) < 1e-3]
        if not matches:
            raise ValueError(
                f"{where}: unknown label value {probability_text!r}; ELPV's defect probabilities are 0, 1/3, 2/3 and 1 "
                "(0.3333333333333333, 0.6666666666666666). Fix the line."
            )
        if cell_type not in _ELPV_TYPES:
            raise ValueError(f"{where}: unknown cell type {cell_type!r}; expected one of {list(_ELPV_TYPES)}.")
        image = root / written
        if not image.is_file():
            raise FileNotFoundError(f"{where}: image {str(image)!r} not found; restore it or remove the line.")
        label = int(matches[0] > 0)
        defect = NORMAL_DEFECT_TYPE if label == 0 else f"defect_p{round(matches[0] * 100)}"
        rows.append(_row(image, None, label, cell_type, defect))
    return _finish(rows, classes, dataset, root, verify)


_KOS_FOLDER = re.compile(r"^kos\d{2}$")
_KOS_IMAGE = re.compile(r"^Part\d+$")


def load_kolektorsdd(
    root: str | os.PathLike, split: str = "test", classes: Sequence[str] | None = None, verify: bool = False
) -> Dataset:
    """KolektorSDD (Tabernik et al. 2019, vicos.si/resources/kolektorsdd), the "SDD" of the paper.

    Layout: ``root/kos01 ... kos50/Part0.jpg ... Part7.jpg`` with ``PartN_label.bmp`` beside each image. An image is
    anomalous when its label mask marks a pixel (the release labels images only through their masks), so the masks
    are read once at load time. One class, ``"electrical_commutator"``; ``defect_type`` ``"crack"``.

    Args:
        root: The ``KolektorSDD`` folder.
        split: ``"test"`` (every image; the release has no split).
        classes: ``["electrical_commutator"]`` or None.
        verify: Decode every image and mask now.

    Returns:
        A dataset in :data:`~faprompt_hf.data.ANOMALY_FEATURES`.

    Raises:
        DatasetLayoutError: A folder other than ``kosNN``, or a file other than ``PartN.jpg``/``PartN_label.bmp``.
        FileNotFoundError: An image without its ``_label.bmp``.
    """
    dataset = "KolektorSDD"
    _check_split(dataset, split, ("test",))
    root = _descend(
        _existing_root(root, dataset), lambda folder: any(_KOS_FOLDER.match(e.name) for e in _subfolders(folder))
    )
    folders = _subfolders(root)
    if not folders:
        raise _missing_error(dataset, root / "kos01", "folders kos01 ... kos50", root)
    rows: list[dict[str, Any]] = []
    for folder in folders:
        if not _KOS_FOLDER.match(folder.name):
            raise _layout_error(dataset, folder, "only folders kos01 ... kos50")
        files = _image_stems(folder, dataset)
        for stem, image in files.items():
            if stem.endswith("_label"):
                if stem[: -len("_label")] not in files:
                    raise _layout_error(dataset, image, f"an image {stem[: -len('_label')]}.jpg beside each label")
                continue
            if not _KOS_IMAGE.match(stem):
                raise _layout_error(dataset, image, "only PartN.jpg images and PartN_label.bmp masks")
            mask = files.get(f"{stem}_label")
            if mask is None:
                raise _no_mask_error(dataset, image, folder / f"{stem}_label.bmp")
            anomalous = not _mask_is_empty(mask)
            rows.append(
                _row(
                    image,
                    mask if anomalous else None,
                    int(anomalous),
                    "electrical_commutator",
                    "crack" if anomalous else NORMAL_DEFECT_TYPE,
                )
            )
    return _finish(rows, classes, dataset, root, verify)


_AITEX_NAME = re.compile(r"^(\d{4})_(\d{3})_(\d{2})$")
_AITEX_FOLDERS = ("Defect_images", "Mask_images", "NODefect_images")


def load_aitex(
    root: str | os.PathLike, split: str = "test", classes: Sequence[str] | None = None, verify: bool = False
) -> Dataset:
    """AITEX Fabric Image Database (aitex.es/afid): 7 fabrics, 4096 x 256 images.

    Layout: ``root/Defect_images/nnnn_ddd_ff.png`` (image number, defect code, fabric code),
    ``root/Mask_images/nnnn_ddd_ff_mask.png`` and ``root/NODefect_images/<fabric folder>/nnnn_000_ff.png``.
    ``class_name`` is ``"fabric_ff"`` (from the file name), ``defect_type`` ``"defect_ddd"``.

    Args:
        root: The AITEX folder (holding the three folders above).
        split: ``"test"`` (every image; the release has no split).
        classes: ``"fabric_00"`` ... ``"fabric_06"`` (default: all).
        verify: Decode every image and mask now.

    Returns:
        A dataset in :data:`~faprompt_hf.data.ANOMALY_FEATURES`.

    Raises:
        DatasetLayoutError: A folder other than the three, or an image not named ``nnnn_ddd_ff``.
        FileNotFoundError: A defect image without ``<name>_mask.png``.
    """
    dataset = "AITEX"
    _check_split(dataset, split, ("test",))
    root = _descend(_existing_root(root, dataset), lambda folder: (folder / "Defect_images").is_dir())
    _only_dirs(root, _AITEX_FOLDERS, dataset, f"only {list(_AITEX_FOLDERS)}")
    for name in _AITEX_FOLDERS:
        if not (root / name).is_dir():
            raise _missing_error(dataset, root / name, f"the folders {list(_AITEX_FOLDERS)}", root)

    def parse(image: Path) -> re.Match:
        match = _AITEX_NAME.match(image.stem)
        if match is None:
            raise _layout_error(dataset, image, "images named nnnn_ddd_ff.png (number, defect code, fabric code)")
        return match

    rows: list[dict[str, Any]] = []
    normal_folders = [root / "NODefect_images", *_subfolders(root / "NODefect_images")]
    for folder in normal_folders:
        for image in _images_in(folder):
            match = parse(image)
            rows.append(_row(image, None, 0, f"fabric_{match.group(3)}", NORMAL_DEFECT_TYPE))
    masks = _image_stems(root / "Mask_images", dataset)
    _no_stray_images(root, dataset, "images inside Defect_images/, Mask_images/ and NODefect_images/")
    for image in _images_in(root / "Defect_images"):
        match = parse(image)
        mask = masks.get(f"{image.stem}_mask")
        if mask is None:
            raise _no_mask_error(dataset, image, root / "Mask_images" / f"{image.stem}_mask.png")
        rows.append(_row(image, mask, 1, f"fabric_{match.group(3)}", f"defect_{match.group(2)}"))
    rows.sort(key=lambda row: (row["class_name"], row["label"], row["path"]))
    return _finish(rows, classes, dataset, root, verify)


_DAGM_CLASS = re.compile(r"^Class\d+$")


def load_dagm(
    root: str | os.PathLike, split: str = "test", classes: Sequence[str] | None = None, verify: bool = False
) -> Dataset:
    """DAGM 2007 (Wieler and Hahn; the Kaggle upload ``dagm-2007-competition-dataset-optical-inspection``).

    Layout: ``root/Class1 ... Class10/{Train,Test}/NNNN.PNG`` with ``Label/Labels.txt`` and ``Label/NNNN_label.PNG``
    in each split folder. ``Labels.txt`` starts with a line holding ``1`` and then has one line per image: index,
    defective flag (0 or 1), image file, 0, and the label file for defective images. Without ``Labels.txt`` an image
    is defective when ``Label/<stem>_label.PNG`` exists. The masks are the release's coarse ellipses.

    Args:
        root: The DAGM folder (holding ``Class1/`` ...).
        split: ``"test"`` (``Test/``) or ``"train"`` (``Train/``).
        classes: ``"Class1"`` ... ``"Class10"`` (default: all).
        verify: Decode every image and mask now.

    Returns:
        A dataset in :data:`~faprompt_hf.data.ANOMALY_FEATURES` (``defect_type`` ``"anomaly"``).

    Raises:
        DatasetLayoutError: A folder other than ``ClassN`` (or ``Train``/``Test``/``Label``).
        ValueError: A ``Labels.txt`` line with a flag other than 0/1 (names the file, line and value).
        FileNotFoundError: A defective image without its label file, or a listed image that is missing.
    """
    dataset = "DAGM"
    _check_split(dataset, split, ("test", "train"))
    root = _descend(
        _existing_root(root, dataset), lambda folder: any(_DAGM_CLASS.match(e.name) for e in _subfolders(folder))
    )
    folders = _subfolders(root)
    if not folders:
        raise _missing_error(dataset, root / "Class1", "folders Class1 ... Class10", root)
    split_name = {"test": "Test", "train": "Train"}[split]
    rows: list[dict[str, Any]] = []
    for class_folder in folders:
        if not _DAGM_CLASS.match(class_folder.name):
            raise _layout_error(dataset, class_folder, "only folders Class1 ... Class10")
        _only_dirs(class_folder, ("Train", "Test"), dataset, "only Train/ and Test/ in a class folder")
        split_folder = class_folder / split_name
        if not split_folder.is_dir():
            raise _missing_error(dataset, split_folder, "Train/ and Test/", class_folder)
        _only_dirs(split_folder, ("Label",), dataset, f"only the Label/ folder beside the images of {split_folder}")
        label_folder = split_folder / "Label"
        images = _image_stems(split_folder, dataset)
        masks = _image_stems(label_folder, dataset) if label_folder.is_dir() else {}
        flags = _read_dagm_labels(label_folder / "Labels.txt", split_folder, dataset)
        if flags is None:
            flags = {stem: (int(f"{stem}_label" in masks), None) for stem in images}
        for stem, image in sorted(images.items()):
            if stem not in flags:
                raise _layout_error(dataset, image, f"an entry for every image in {label_folder / 'Labels.txt'}")
        for stem, (flag, label_name) in sorted(flags.items()):
            if stem not in images:
                raise FileNotFoundError(
                    f"{dataset}: {label_folder / 'Labels.txt'} lists {stem!r}, not found in {split_folder}."
                )
            image = images[stem]
            if flag == 0:
                rows.append(_row(image, None, 0, class_folder.name, NORMAL_DEFECT_TYPE))
                continue
            mask = label_folder / label_name if label_name else masks.get(f"{stem}_label")
            if mask is None or not mask.is_file():
                raise _no_mask_error(dataset, image, mask if mask is not None else label_folder / f"{stem}_label.PNG")
            rows.append(_row(image, mask, 1, class_folder.name, "anomaly"))
    return _finish(rows, classes, dataset, root, verify)


def _read_dagm_labels(path: Path, split_folder: Path, dataset: str) -> dict[str, tuple[int, str | None]] | None:
    """``{image stem: (flag, label file or None)}`` from a DAGM ``Labels.txt``, or None when there is none."""
    if not path.is_file():
        return None
    flags: dict[str, tuple[int, str | None]] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        fields = line.split()
        if not fields or (number == 1 and len(fields) == 1):
            continue
        where = f"{path}:{number}"
        if len(fields) < 3:
            raise ValueError(f"{where}: expected index, flag, image file[, 0, label file], got {line!r}.")
        flag = fields[1]
        if flag not in ("0", "1"):
            raise ValueError(f"{where}: unknown label value {flag!r}; DAGM's flags are 0 (normal) and 1 (defective).")
        label_name = fields[4] if len(fields) >= 5 and fields[4] != "0" else None
        flags[Path(fields[2]).stem] = (int(flag), label_name)
    return flags


# ----------------------------------------------------------------------------------------------------------------
# Medical, image-level: BrainMRI, Br35H, HeadCT, LAG
# ----------------------------------------------------------------------------------------------------------------


def _load_yes_no(
    root: Path, dataset: str, class_name: str, allowed_extra: Sequence[str], classes: Sequence[str] | None, verify: bool
) -> Dataset:
    root = _descend(root, lambda folder: (folder / "yes").is_dir() and (folder / "no").is_dir())
    for name in ("yes", "no"):
        if not (root / name).is_dir():
            raise _missing_error(dataset, root / name, "the folders yes/ (tumour) and no/ (normal)", root)
    _only_dirs(root, ("yes", "no", *allowed_extra), dataset, f"only the folders {['yes', 'no', *allowed_extra]}")
    rows = [_row(image, None, 0, class_name, NORMAL_DEFECT_TYPE) for image in _images_in(root / "no")]
    rows += [_row(image, None, 1, class_name, "tumor") for image in _images_in(root / "yes")]
    return _finish(rows, classes, dataset, root, verify)


def load_brain_mri(
    root: str | os.PathLike, split: str = "test", classes: Sequence[str] | None = None, verify: bool = False
) -> Dataset:
    """BrainMRI (Kaggle ``navoneel/brain-mri-images-for-brain-tumor-detection``): image-level labels.

    Layout: ``root/brain_tumor_dataset/{yes,no}/*`` (``Y1.jpg``, ``N1.JPG``, ``no 10.jpg``, mixed extensions and
    cases), or ``root/{yes,no}/`` directly. ``yes`` is anomalous (``defect_type`` ``"tumor"``); one class,
    ``"brain"``; ``mask=None``.

    Args:
        root: The download folder.
        split: ``"test"`` (every image).
        classes: ``["brain"]`` or None.
        verify: Decode every image now.

    Returns:
        A dataset in :data:`~faprompt_hf.data.ANOMALY_FEATURES`.

    Raises:
        DatasetLayoutError: ``yes/`` or ``no/`` missing, or another folder beside them.
    """
    _check_split("BrainMRI", split, ("test",))
    root_path = _existing_root(root, "BrainMRI")
    if (root_path / "brain_tumor_dataset").is_dir():
        root_path = root_path / "brain_tumor_dataset"
    return _load_yes_no(root_path, "BrainMRI", "brain", (), classes, verify)


def load_br35h(
    root: str | os.PathLike, split: str = "test", classes: Sequence[str] | None = None, verify: bool = False
) -> Dataset:
    """Br35H (Kaggle ``ahmedhamada0/brain-tumor-detection``): image-level labels.

    Layout: ``root/yes/y0.jpg ...``, ``root/no/no0.jpg ...``; the unlabelled ``root/pred/`` is allowed and ignored.
    One class, ``"brain"``; ``mask=None``.

    Args:
        root: The download folder.
        split: ``"test"`` (every labelled image).
        classes: ``["brain"]`` or None.
        verify: Decode every image now.

    Returns:
        A dataset in :data:`~faprompt_hf.data.ANOMALY_FEATURES`.

    Raises:
        DatasetLayoutError: ``yes/`` or ``no/`` missing, or another folder than ``pred/`` beside them.
    """
    _check_split("Br35H", split, ("test",))
    return _load_yes_no(_existing_root(root, "Br35H"), "Br35H", "brain", ("pred",), classes, verify)


def load_headct(
    root: str | os.PathLike, split: str = "test", classes: Sequence[str] | None = None, verify: bool = False
) -> Dataset:
    """HeadCT (Kaggle ``felipekitamura/head-ct-hemorrhage``): 200 CT slices, image-level labels.

    Layout: ``root/labels.csv`` (columns ``id`` and ``hemorrhage``, 0 or 1) and ``root/head_ct/000.png ... 199.png``
    (the archive nests a second ``head_ct/`` folder; both work). Image ``NNN.png`` has id ``NNN``. One class,
    ``"brain"``; ``defect_type`` ``"hemorrhage"``; ``mask=None``.

    Args:
        root: The download folder (holding ``labels.csv``).
        split: ``"test"`` (every image).
        classes: ``["brain"]`` or None.
        verify: Decode every image now.

    Returns:
        A dataset in :data:`~faprompt_hf.data.ANOMALY_FEATURES`.

    Raises:
        ValueError: A ``hemorrhage`` value other than 0/1 (names the file, line and value), an image without a row.
        FileNotFoundError: ``labels.csv``, or an image it lists, is missing.
    """
    dataset = "HeadCT"
    _check_split(dataset, split, ("test",))
    root = _descend(_existing_root(root, dataset), lambda folder: (folder / "labels.csv").is_file())
    labels_file = root / "labels.csv"
    if not labels_file.is_file():
        raise _missing_error(dataset, labels_file, "labels.csv beside the head_ct/ folder", root)
    image_folder = root / "head_ct"
    if (image_folder / "head_ct").is_dir():
        image_folder = image_folder / "head_ct"
    if not image_folder.is_dir():
        raise _missing_error(dataset, image_folder, "labels.csv and the head_ct/ image folder", root)
    _only_dirs(root, ("head_ct",), dataset, "only labels.csv and the head_ct/ folder")
    images: dict[int, Path] = {}
    for image in _images_in(image_folder):
        if not image.stem.isdigit():
            raise _layout_error(dataset, image, "images named by their id, 000.png ... 199.png")
        images[int(image.stem)] = image
    with open(labels_file, encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle)
        header = [name.strip().lower() for name in next(reader, [])]
        if "id" not in header or "hemorrhage" not in header:
            raise ValueError(f"{labels_file}:1: expected the columns id and hemorrhage, got {header}.")
        id_column, label_column = header.index("id"), header.index("hemorrhage")
        rows: list[dict[str, Any]] = []
        seen: set[int] = set()
        for number, record in enumerate(reader, start=2):
            if not record or not "".join(record).strip():
                continue
            where = f"{labels_file}:{number}"
            if len(record) != len(header):
                raise ValueError(f"{where}: expected {len(header)} fields, got {len(record)}.")
            value = record[label_column].strip()
            if value not in ("0", "1"):
                raise ValueError(f"{where}: unknown label value {value!r}; hemorrhage must be 0 or 1. Fix the line.")
            try:
                image_id = int(record[id_column].strip())
            except ValueError:
                raise ValueError(f"{where}: id {record[id_column]!r} is not an integer.") from None
            if image_id not in images:
                raise FileNotFoundError(f"{where}: no image {image_id:03d}.png in {str(image_folder)!r}.")
            seen.add(image_id)
            label = int(value)
            rows.append(_row(images[image_id], None, label, "brain", "hemorrhage" if label else NORMAL_DEFECT_TYPE))
    unlabelled = sorted(set(images) - seen)
    if unlabelled:
        raise ValueError(f"{dataset}: image {str(images[unlabelled[0]])!r} has no row in {str(labels_file)!r}.")
    return _finish(rows, classes, dataset, root, verify)


_LAG_FOLDERS = {"non_glaucoma": 0, "suspicious_glaucoma": 1}


def load_lag(
    root: str | os.PathLike, split: str = "test", classes: Sequence[str] | None = None, verify: bool = False
) -> Dataset:
    """LAG (Li et al., CVPR 2019, github.com/smilell/AG-CNN): fundus images, glaucoma vs. not, image-level.

    The owners distribute LAG on request (``LAG_database_part_1``) and do not document its tree publicly; this
    loader reads the layout of that archive: ``root/non_glaucoma/image/*.jpg`` and
    ``root/suspicious_glaucoma/image/*.jpg`` (images directly in the two folders work too); the ophthalmologists'
    ``attention_map/`` folders are gaze maps, not anomaly masks, and are ignored. One class, ``"fundus"``;
    ``defect_type`` ``"glaucoma"``; ``mask=None``.

    Args:
        root: The LAG folder.
        split: ``"test"`` (every image).
        classes: ``["fundus"]`` or None.
        verify: Decode every image now.

    Returns:
        A dataset in :data:`~faprompt_hf.data.ANOMALY_FEATURES`.

    Raises:
        DatasetLayoutError: A missing or unknown folder (named).
    """
    dataset = "LAG"
    _check_split(dataset, split, ("test",))
    root = _descend(_existing_root(root, dataset), lambda folder: (folder / "non_glaucoma").is_dir())
    _only_dirs(root, tuple(_LAG_FOLDERS), dataset, f"only the folders {list(_LAG_FOLDERS)}")
    rows: list[dict[str, Any]] = []
    for name, label in _LAG_FOLDERS.items():
        folder = root / name
        if not folder.is_dir():
            raise _missing_error(dataset, folder, f"the folders {list(_LAG_FOLDERS)}", root)
        _only_dirs(folder, ("image", "attention_map"), dataset, f"only image/ and attention_map/ in {folder}")
        image_folder = folder / "image" if (folder / "image").is_dir() else folder
        rows += [
            _row(image, None, label, "fundus", "glaucoma" if label else NORMAL_DEFECT_TYPE)
            for image in _images_in(image_folder)
        ]
    return _finish(rows, classes, dataset, root, verify)


# ----------------------------------------------------------------------------------------------------------------
# Medical, segmentation (every image anomalous): polyps, Endo, ISIC, TN3K
# ----------------------------------------------------------------------------------------------------------------


def _load_segmentation(
    root: Path,
    dataset: str,
    image_dir: str,
    mask_dir: str,
    class_name: str,
    defect_type: str,
    mask_suffixes: Sequence[str],
    allowed_dirs: Sequence[str],
    classes: Sequence[str] | None,
    verify: bool,
) -> Dataset:
    for name in (image_dir, mask_dir):
        if not (root / name).is_dir():
            raise _missing_error(dataset, root / name, f"{image_dir}/ and {mask_dir}/", root)
    _only_dirs(root, allowed_dirs, dataset, f"only the folders {list(allowed_dirs)}")
    masks = _image_stems(root / mask_dir, dataset)
    rows = []
    for image in _images_in(root / image_dir):
        mask = _mask_for(masks, image.stem, mask_suffixes, dataset)
        if mask is None:
            raise _no_mask_error(dataset, image, root / mask_dir / f"{image.stem}{mask_suffixes[0]}{image.suffix}")
        rows.append(_row(image, mask, 1, class_name, defect_type))
    return _finish(rows, classes, dataset, root, verify)


def _images_masks_loader(dataset: str, class_name: str, defect_type: str) -> Callable[..., Dataset]:
    def load(
        root: str | os.PathLike, split: str = "test", classes: Sequence[str] | None = None, verify: bool = False
    ) -> Dataset:
        _check_split(dataset, split, ("test",))
        folder = _descend(_existing_root(root, dataset), lambda path: (path / "images").is_dir())
        return _load_segmentation(
            folder, dataset, "images", "masks", class_name, defect_type, ("",), ("images", "masks"), classes, verify
        )

    return load


_load_colondb = _images_masks_loader("CVC-ColonDB", "colon", "polyp")
_load_kvasir = _images_masks_loader("Kvasir", "colon", "polyp")
_load_endo = _images_masks_loader("Endo", "colon", "polyp")


def load_cvc_colondb(
    root: str | os.PathLike, split: str = "test", classes: Sequence[str] | None = None, verify: bool = False
) -> Dataset:
    """CVC-ColonDB (Bernal et al. 2012), as in the polyp test collection the paper links (figshare 21221579).

    Layout: ``root/images/N.png`` and ``root/masks/N.png`` (same file names). Every image shows a polyp: one class
    ``"colon"``, ``defect_type`` ``"polyp"``; pixel-level metrics only (no normal image).

    Args:
        root: The ``CVC-ColonDB`` folder.
        split: ``"test"``.
        classes: ``["colon"]`` or None.
        verify: Decode every image and mask now.

    Returns:
        A dataset in :data:`~faprompt_hf.data.ANOMALY_FEATURES`.

    Raises:
        DatasetLayoutError: ``images/`` or ``masks/`` missing, or another folder beside them.
        FileNotFoundError: An image without its mask.
    """
    return _load_colondb(root, split, classes, verify)


def load_cvc_clinicdb(
    root: str | os.PathLike, split: str = "test", classes: Sequence[str] | None = None, verify: bool = False
) -> Dataset:
    """CVC-ClinicDB (Bernal et al. 2015), in the owners' tree or in the polyp test collection the paper links.

    Layout: ``root/Original/N.tif`` with ``root/Ground Truth/N.tif`` (the owners' release; a ``PNG/`` or ``TIF/``
    folder holding these two is accepted), or ``root/images/N.png`` with ``root/masks/N.png``. One class ``"colon"``,
    ``defect_type`` ``"polyp"``; pixel-level metrics only.

    Args:
        root: The ``CVC-ClinicDB`` folder.
        split: ``"test"``.
        classes: ``["colon"]`` or None.
        verify: Decode every image and mask now.

    Returns:
        A dataset in :data:`~faprompt_hf.data.ANOMALY_FEATURES`.

    Raises:
        DatasetLayoutError: Neither pair of folders, or another folder beside them.
        FileNotFoundError: An image without its mask.
    """
    dataset = "CVC-ClinicDB"
    _check_split(dataset, split, ("test",))
    folder = _existing_root(root, dataset)
    for nested in ("PNG", "TIF"):
        if (folder / nested / "Original").is_dir():
            folder = folder / nested
            break
    if (folder / "Original").is_dir():
        return _load_segmentation(
            folder,
            dataset,
            "Original",
            "Ground Truth",
            "colon",
            "polyp",
            ("",),
            ("Original", "Ground Truth"),
            classes,
            verify,
        )
    folder = _descend(folder, lambda path: (path / "images").is_dir() or (path / "Original").is_dir())
    return _load_segmentation(
        folder, dataset, "images", "masks", "colon", "polyp", ("",), ("images", "masks"), classes, verify
    )


def load_kvasir(
    root: str | os.PathLike, split: str = "test", classes: Sequence[str] | None = None, verify: bool = False
) -> Dataset:
    """Kvasir-SEG (Jha et al. 2020): polyp images with their segmentation masks.

    Layout: ``root/images/<id>.jpg`` with ``root/masks/<id>.jpg`` (the owners' release; the polyp test collection the
    paper links has the same tree with ``.png``). ``kavsir_bboxes.json`` beside them is ignored.
    One class ``"colon"``, ``defect_type`` ``"polyp"``; pixel-level metrics only.

    Args:
        root: The ``Kvasir-SEG`` (or ``Kvasir``) folder.
        split: ``"test"``.
        classes: ``["colon"]`` or None.
        verify: Decode every image and mask now.

    Returns:
        A dataset in :data:`~faprompt_hf.data.ANOMALY_FEATURES`.

    Raises:
        DatasetLayoutError: ``images/`` or ``masks/`` missing, or another folder beside them.
        FileNotFoundError: An image without its mask.
    """
    return _load_kvasir(root, split, classes, verify)


def load_endo(
    root: str | os.PathLike, split: str = "test", classes: Sequence[str] | None = None, verify: bool = False
) -> Dataset:
    """Endo: the EndoTect 2020 segmentation test set (``EndoTect_2020_Segmentation_Test_Dataset``).

    Layout, as the paper links it: ``root/images/<id>.jpg`` with ``root/masks/<id>.jpg``. One class ``"colon"``,
    ``defect_type`` ``"polyp"``; pixel-level metrics only.

    Args:
        root: The dataset folder.
        split: ``"test"``.
        classes: ``["colon"]`` or None.
        verify: Decode every image and mask now.

    Returns:
        A dataset in :data:`~faprompt_hf.data.ANOMALY_FEATURES`.

    Raises:
        DatasetLayoutError: ``images/`` or ``masks/`` missing, or another folder beside them.
        FileNotFoundError: An image without its mask.
    """
    return _load_endo(root, split, classes, verify)


def load_isic(
    root: str | os.PathLike, split: str = "test", classes: Sequence[str] | None = None, verify: bool = False
) -> Dataset:
    """ISIC 2016, part 1 (lesion segmentation; ISBI 2016 challenge), as the owners publish it.

    Layout: ``root/ISBI2016_ISIC_Part1_Test_Data/ISIC_NNNNNNN.jpg`` with
    ``root/ISBI2016_ISIC_Part1_Test_GroundTruth/ISIC_NNNNNNN_Segmentation.png`` (``split="train"``: the
    ``..._Training_Data`` and ``..._Training_GroundTruth`` folders). One class ``"skin"``, ``defect_type``
    ``"lesion"``; pixel-level metrics only.

    Args:
        root: The folder holding the ISBI2016 folders.
        split: ``"test"`` or ``"train"``.
        classes: ``["skin"]`` or None.
        verify: Decode every image and mask now.

    Returns:
        A dataset in :data:`~faprompt_hf.data.ANOMALY_FEATURES`.

    Raises:
        DatasetLayoutError: The split's two folders missing, or an unknown folder beside them.
        FileNotFoundError: An image without its ``_Segmentation.png``.
    """
    dataset = "ISIC"
    _check_split(dataset, split, ("test", "train"))
    part = {"test": "Test", "train": "Training"}[split]
    folder = _descend(_existing_root(root, dataset), lambda path: (path / f"ISBI2016_ISIC_Part1_{part}_Data").is_dir())
    allowed = tuple(
        f"ISBI2016_ISIC_Part1_{name}_{kind}" for name in ("Test", "Training") for kind in ("Data", "GroundTruth")
    )
    return _load_segmentation(
        folder,
        dataset,
        f"ISBI2016_ISIC_Part1_{part}_Data",
        f"ISBI2016_ISIC_Part1_{part}_GroundTruth",
        "skin",
        "lesion",
        ("_Segmentation",),
        allowed,
        classes,
        verify,
    )


def load_tn3k(
    root: str | os.PathLike, split: str = "test", classes: Sequence[str] | None = None, verify: bool = False
) -> Dataset:
    """TN3K (Gong et al. 2021, github.com/haifangong/TRFE-Net-for-thyroid-nodule-segmentation): thyroid ultrasound.

    Layout: ``root/test-image/NNNN.jpg`` with ``root/test-mask/NNNN.jpg`` (``split="train"``: ``trainval-image/`` and
    ``trainval-mask/``; the release's ``tn3k-trainval-fold*.json`` files are ignored). One class ``"thyroid"``,
    ``defect_type`` ``"nodule"``; pixel-level metrics only.

    Args:
        root: The ``tn3k`` folder.
        split: ``"test"`` or ``"train"``.
        classes: ``["thyroid"]`` or None.
        verify: Decode every image and mask now.

    Returns:
        A dataset in :data:`~faprompt_hf.data.ANOMALY_FEATURES`.

    Raises:
        DatasetLayoutError: The split's folders missing, or an unknown folder beside them.
        FileNotFoundError: An image without its mask.
    """
    dataset = "TN3K"
    _check_split(dataset, split, ("test", "train"))
    part = {"test": "test", "train": "trainval"}[split]
    folder = _descend(_existing_root(root, dataset), lambda path: (path / f"{part}-image").is_dir())
    allowed = ("test-image", "test-mask", "trainval-image", "trainval-mask")
    return _load_segmentation(
        folder, dataset, f"{part}-image", f"{part}-mask", "thyroid", "nodule", ("",), allowed, classes, verify
    )


# ----------------------------------------------------------------------------------------------------------------
# Registry
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset of the benchmark.

    Attributes:
        key: The name used by ``--datasets``, ``load_paper_dataset`` and ``--dataset_format``.
        title: The name in the paper's tables.
        domain: ``"industrial"`` or ``"medical"`` (``"extra"`` for those beyond the paper).
        loader: ``loader(root, split="test", classes=None, verify=False) -> Dataset``.
        folder_names: Usual names of its folder (compared by :func:`normalize_folder_name`).
        image_metrics: Whether image AUROC/AP are defined (the set has normal and anomalous images).
        pixel_metrics: Whether pixel AUROC/AUPRO are defined (the set has masks).
        release: Which release and split the loader expects.
        splits: The splits the loader accepts.
    """

    key: str
    title: str
    domain: str
    loader: Callable[..., Dataset]
    folder_names: tuple[str, ...]
    image_metrics: bool
    pixel_metrics: bool
    release: str
    splits: tuple[str, ...] = ("test",)


def _visa(
    root: str | os.PathLike, split: str = "test", classes: Sequence[str] | None = None, verify: bool = False
) -> Dataset:
    return load_visa(root, split=split, classes=classes, verify=verify)


def _spec(key, title, domain, loader, names, image, pixel, release, splits=("test",)) -> DatasetSpec:  # noqa: ANN001
    return DatasetSpec(key, title, domain, loader, tuple(names), image, pixel, release, tuple(splits))


PAPER_DATASETS: dict[str, DatasetSpec] = {
    spec.key: spec
    for spec in (
        _spec(
            "mvtec",
            "MVTec AD",
            "industrial",
            load_mvtec_ad,
            ("mvtec", "mvtecad", "mvtec_anomaly_detection"),
            True,
            True,
            "MVTec AD (mvtec_anomaly_detection.tar.xz), test split",
            ("test", "train"),
        ),
        _spec(
            "visa",
            "VisA",
            "industrial",
            _visa,
            ("visa", "visa_20220922", "visa_pytorch"),
            True,
            True,
            "VisA_20220922.tar with split_csv/1cls.csv, test split",
            ("test", "train"),
        ),
        _spec(
            "elpv",
            "ELPV",
            "industrial",
            load_elpv,
            ("elpv", "elpv_dataset", "elpvdataset"),
            True,
            False,
            "zae-bayern/elpv-dataset (labels.csv, images/), every cell",
        ),
        _spec(
            "sdd",
            "SDD",
            "industrial",
            load_kolektorsdd,
            ("sdd", "kolektorsdd", "kolektor_sdd", "ksdd", "kolektor"),
            True,
            True,
            "KolektorSDD (kos01-kos50), every image",
        ),
        _spec(
            "aitex",
            "AITEX",
            "industrial",
            load_aitex,
            ("aitex", "aitex_fabric_image_database", "afid"),
            True,
            True,
            "AITEX Fabric Image Database (Defect_images, Mask_images, NODefect_images), every image",
        ),
        _spec(
            "btad",
            "BTAD",
            "industrial",
            load_btad,
            ("btad", "btech_dataset_transformed", "btech"),
            True,
            True,
            "btad.zip / BTech_Dataset_transformed, test split",
            ("test", "train"),
        ),
        _spec(
            "dagm",
            "DAGM",
            "industrial",
            load_dagm,
            ("dagm", "dagm2007", "dagm_kaggleupload", "dagm_2007"),
            True,
            True,
            "DAGM 2007 (Kaggle upload; Class1-Class10), Test folders",
            ("test", "train"),
        ),
        _spec(
            "dtd",
            "DTD-Synthetic",
            "industrial",
            load_dtd_synthetic,
            ("dtd_synthetic", "dtd", "dtdsynthetic"),
            True,
            True,
            "DTD-Synthetic (12 textures, MVTec AD layout), test split",
            ("test", "train"),
        ),
        _spec(
            "mpdd",
            "MPDD",
            "industrial",
            load_mpdd,
            ("mpdd",),
            True,
            True,
            "MPDD (stepanje/MPDD), test split",
            ("test", "train"),
        ),
        _spec(
            "brainmri",
            "BrainMRI",
            "medical",
            load_brain_mri,
            ("brainmri", "brain_mri", "brain_tumor_dataset"),
            True,
            False,
            "Kaggle brain-mri-images-for-brain-tumor-detection (yes/, no/), every image",
        ),
        _spec(
            "headct",
            "HeadCT",
            "medical",
            load_headct,
            ("headct", "head_ct", "head_ct_hemorrhage"),
            True,
            False,
            "Kaggle head-ct-hemorrhage (labels.csv, head_ct/), every image",
        ),
        _spec(
            "lag",
            "LAG",
            "medical",
            load_lag,
            ("lag", "lag_database", "lag_database_part_1"),
            True,
            False,
            "LAG_database_part_1 (on request from the owners), every image",
        ),
        _spec(
            "br35h",
            "Br35H",
            "medical",
            load_br35h,
            ("br35h", "br35", "brain_tumor_detection"),
            True,
            False,
            "Kaggle brain-tumor-detection (yes/, no/), every labelled image",
        ),
        _spec(
            "colondb",
            "CVC-ColonDB",
            "medical",
            load_cvc_colondb,
            ("cvc_colondb", "colondb"),
            False,
            True,
            "polyp test collection (figshare 21221579), CVC-ColonDB/images + masks",
        ),
        _spec(
            "clinicdb",
            "CVC-ClinicDB",
            "medical",
            load_cvc_clinicdb,
            ("cvc_clinicdb", "clinicdb"),
            False,
            True,
            "CVC-ClinicDB (Original + Ground Truth) or the polyp test collection's images + masks",
        ),
        _spec(
            "kvasir",
            "Kvasir",
            "medical",
            load_kvasir,
            ("kvasir", "kvasir_seg"),
            False,
            True,
            "Kvasir-SEG (images, masks)",
        ),
        _spec(
            "endo",
            "Endo",
            "medical",
            load_endo,
            ("endo", "endotect", "endotect_2020_segmentation_test_dataset"),
            False,
            True,
            "EndoTect 2020 segmentation test set (images, masks)",
        ),
        _spec(
            "isic",
            "ISIC",
            "medical",
            load_isic,
            ("isic", "isic2016", "isbi", "isbi2016"),
            False,
            True,
            "ISIC 2016 part 1 (ISBI2016_ISIC_Part1_Test_Data + _Test_GroundTruth), test split",
            ("test", "train"),
        ),
        _spec(
            "tn3k",
            "TN3K",
            "medical",
            load_tn3k,
            ("tn3k",),
            False,
            True,
            "TN3K (test-image, test-mask), test split",
            ("test", "train"),
        ),
    )
}
"""The paper's 19 datasets, in its table order: 9 industrial, then 10 medical."""

EXTRA_DATASETS: dict[str, DatasetSpec] = {
    spec.key: spec
    for spec in (
        _spec(
            "mvtec_ad2",
            "MVTec AD 2",
            "extra",
            load_mvtec_ad2,
            ("mvtec_ad2", "mvtecad2", "mvtec_ad_2"),
            True,
            True,
            "MVTec AD 2, test_public",
            ("test", "train", "validation"),
        ),
        _spec(
            "mvtec_loco",
            "MVTec LOCO AD",
            "extra",
            load_mvtec_loco,
            ("mvtec_loco", "mvtec_loco_anomaly_detection", "mvtecloco"),
            True,
            True,
            "MVTec LOCO AD, test split",
            ("test", "train", "validation"),
        ),
    )
}
"""Datasets beyond the paper whose layouts are documented by their owners."""


def all_dataset_specs() -> dict[str, DatasetSpec]:
    """The paper's datasets, then the extra ones, by key."""
    return {**PAPER_DATASETS, **EXTRA_DATASETS}


def get_dataset_spec(name: str) -> DatasetSpec:
    """The spec of a dataset by key, title or usual folder name (case and separators ignored).

    Raises:
        ValueError: Unknown name (the message lists the known keys).
    """
    wanted = normalize_folder_name(name)
    for spec in all_dataset_specs().values():
        if wanted in {normalize_folder_name(text) for text in (spec.key, spec.title, *spec.folder_names)}:
            return spec
    raise ValueError(f"Unknown dataset {name!r}; known: {', '.join(all_dataset_specs())}.")


def load_paper_dataset(
    name: str,
    root: str | os.PathLike,
    split: str = "test",
    classes: Sequence[str] | None = None,
    verify: bool = False,
) -> Dataset:
    """Load one of :data:`PAPER_DATASETS` / :data:`EXTRA_DATASETS` by name from its folder.

    Args:
        name: A key (``"btad"``), title (``"CVC-ClinicDB"``) or usual folder name.
        root: The dataset folder.
        split: A split of that dataset (see ``DatasetSpec.splits``; most medical sets only have ``"test"``).
        classes: Classes to keep (default: all).
        verify: Decode every image and mask now.

    Returns:
        A dataset in :data:`~faprompt_hf.data.ANOMALY_FEATURES`.
    """
    spec = get_dataset_spec(name)
    return spec.loader(root, split=split, classes=classes, verify=verify)


def normalize_folder_name(name: str) -> str:
    """A folder name in lower case without separators or a trailing ``anomaly_detection``.

    ``BrainMRI_anomaly_detection``, ``brain-mri`` and ``BRAINMRI`` all give ``brainmri``.

    Args:
        name: A folder or dataset name.

    Returns:
        The normalised name.
    """
    text = re.sub(r"[^a-z0-9]", "", name.lower())
    for suffix in ("anomalydetection",):
        if text.endswith(suffix) and len(text) > len(suffix):
            text = text[: -len(suffix)]
    return text


@dataclass
class FoundDatasets:
    """What :func:`find_paper_datasets` found under a data root.

    Attributes:
        found: ``{key: folder}`` of recognised datasets, in the paper's order.
        unrecognised: Folders under the root that match no dataset name.
        looked_for: ``{key: usual folder names}`` of every dataset searched for.
    """

    found: dict[str, Path]
    unrecognised: list[Path]
    looked_for: dict[str, tuple[str, ...]]


def find_paper_datasets(
    data_root: str | os.PathLike,
    names: Sequence[str] | None = None,
    paths: dict[str, str | os.PathLike] | None = None,
    include_extra: bool = False,
) -> FoundDatasets:
    """Find which benchmark datasets are present under ``data_root`` by their usual folder names.

    Folder names are compared case-insensitively and without separators (``MVTec-AD``, ``mvtec_ad`` and ``MVTECAD``
    are one name; a trailing ``_anomaly_detection`` is ignored).

    Args:
        data_root: The folder holding the dataset folders.
        names: Datasets to look for (keys, titles or folder names; default: the paper's 19, and the extra ones with
            ``include_extra``).
        paths: Explicit ``{dataset: folder}`` for datasets stored under other names or elsewhere (relative folders are
            taken under ``data_root``).
        include_extra: Also look for :data:`EXTRA_DATASETS` when ``names`` is None.

    Returns:
        A :class:`FoundDatasets`.

    Raises:
        FileNotFoundError: ``data_root`` does not exist, or an explicit path does not.
        ValueError: Two folders match one dataset (both named), or an unknown dataset name.
    """
    root = _existing_root(data_root, "Benchmark data")
    specs = all_dataset_specs() if include_extra or names else dict(PAPER_DATASETS)
    if names:
        specs = {spec.key: spec for spec in (get_dataset_spec(name) for name in names)}
    explicit = {get_dataset_spec(name).key: Path(path) for name, path in (paths or {}).items()}
    found: dict[str, Path] = {}
    matched: set[Path] = set()
    by_name = {
        normalize_folder_name(text): spec.key
        for spec in all_dataset_specs().values()
        for text in (spec.key, spec.title, *spec.folder_names)
    }
    candidates: dict[str, list[Path]] = {}
    for folder in _subfolders(root):
        key = by_name.get(normalize_folder_name(folder.name))
        if key is not None:
            candidates.setdefault(key, []).append(folder)
    for key, spec in specs.items():
        if key in explicit:
            folder = explicit[key] if explicit[key].is_absolute() else root / explicit[key]
            if not folder.is_dir():
                raise FileNotFoundError(f"The folder given for {spec.title}, {str(folder)!r}, does not exist.")
            found[key] = folder
            matched.add(folder)
            continue
        folders = candidates.get(key, [])
        if len(folders) > 1:
            raise ValueError(
                f"Several folders under {str(root)!r} look like {spec.title}: {[str(f) for f in folders]}; keep one or "
                f"choose with --datasets {key}=FOLDER."
            )
        if folders:
            found[key] = folders[0]
    matched |= {folder for folders in candidates.values() for folder in folders}
    unrecognised = [folder for folder in _subfolders(root) if folder not in matched]
    return FoundDatasets(found, unrecognised, {key: spec.folder_names for key, spec in specs.items()})


def write_paper_meta_json(
    name: str, root: str | os.PathLike, meta_path: str | os.PathLike | None = None, splits: Sequence[str] | None = None
) -> Path:
    """Write the released code's ``meta.json`` for one benchmark dataset (every split its loader has).

    The file indexes the images and masks with paths relative to ``root`` (see
    :func:`~faprompt_hf.data.write_meta_json`), so the released FAPrompt / AnomalyCLIP code can read the dataset with
    ``--data_path root``. Splits the dataset does not have are written empty. Image-level datasets get ``mask_path``
    ``""`` for their anomalous images (the released code's convention for such sets).

    Args:
        name: A dataset key, title or folder name.
        root: The dataset folder.
        meta_path: The output file (default: ``root/meta.json``).
        splits: The splits to write (default: ``test``, and ``train`` when the dataset has one on disk).

    Returns:
        The written file.
    """
    spec = get_dataset_spec(name)
    written = None
    for split in splits or ("test", "train"):
        if split not in spec.splits:
            if splits:
                raise ValueError(f"{spec.title} has the split(s) {list(spec.splits)}, not {split!r}.")
            continue
        try:
            dataset = spec.loader(root, split=split)
        except (DatasetLayoutError, FileNotFoundError) as error:
            if splits or split == "test":
                raise
            logger.info("%s: no %s split written (%s).", spec.title, split, error)
            continue
        written = write_meta_json(dataset, root, split=split, meta_path=meta_path)
    if written is None:
        raise ValueError(f"{spec.title}: nothing written; it has the split(s) {list(spec.splits)}.")
    return written

# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""Loaders for anomaly detection datasets on disk, all returning :data:`~faprompt_hf.data.ANOMALY_FEATURES`.

Every loader stores file paths (images are decoded only when a row is read), checks at load time what is cheap
(folders exist, classes are non-empty, every anomalous image has a mask file, index files reference existing
files) and raises errors that name the offending file. ``verify=True`` also decodes every image and mask at load
time (see :func:`~faprompt_hf.data.verify_dataset`).

Path rules, the same in every loader:

* A path read from an index file (``meta.json``, the VisA csv) must stay inside the dataset root once normalised:
  ``../x.png`` or an absolute path elsewhere is refused unless the caller passes ``allow_outside_root=True``. The
  check is on the written path; symbolic links under the root are followed (the folder's owner made them).
* A dangling symbolic link (one whose target does not exist) is an error naming the link and its target, whether
  a loader meets it while walking a folder or an index file names it; it is never skipped.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from datasets import Dataset
from datasets import Image as ImageFeature
from transformers.utils import logging

from ..file_utils import atomic_write
from .schema import IMAGE_EXTENSIONS, NORMAL_DEFECT_TYPE, _build_dataset, _defect_type_for, _parse_label

logger = logging.get_logger(__name__)

__all__ = ["load_folder", "load_meta_json", "load_mvtec_ad", "load_visa", "write_meta_json"]

_VISA_COLUMNS = ("object", "split", "label", "image", "mask")
_META_SPLITS = ("train", "test")


# ----------------------------------------------------------------------------------------------------------------
# Shared helpers
# ----------------------------------------------------------------------------------------------------------------


def _existing_root(root: str | os.PathLike, what: str) -> Path:
    """Return ``root`` as an absolute path, or raise FileNotFoundError naming it."""
    path = Path(os.path.abspath(os.fspath(root)))
    if not path.is_dir():
        raise FileNotFoundError(f"{what} root folder not found: {str(path)!r}.")
    return path


def _dangling_link_error(path: Path, where: str | None = None) -> FileNotFoundError:
    """The error for a symbolic link whose target does not exist."""
    prefix = f"{where}: " if where else ""
    return FileNotFoundError(
        f"{prefix}{str(path)!r} is a symbolic link to {os.readlink(path)!r}, which does not exist; fix the link or "
        "remove it."
    )


def _visible_entries(folder: Path) -> list[Path]:
    """Non-hidden entries of ``folder``, sorted by name.

    Raises:
        FileNotFoundError: An entry is a dangling symbolic link (named, with its target).
    """
    entries = sorted(entry for entry in folder.iterdir() if not entry.name.startswith("."))
    for entry in entries:
        if entry.is_symlink() and not entry.exists():
            raise _dangling_link_error(entry)
    return entries


def _subfolders(folder: Path) -> list[Path]:
    return [entry for entry in _visible_entries(folder) if entry.is_dir()]


def _images_in(folder: Path) -> list[Path]:
    """Image files directly in ``folder`` (by extension, hidden files skipped), sorted by name."""
    return [entry for entry in _visible_entries(folder) if entry.is_file() and entry.suffix.lower() in IMAGE_EXTENSIONS]


def _mask_files(folder: Path) -> dict[str, Path]:
    """Map each image-file stem in ``folder`` to its path (empty if the folder does not exist).

    Raises:
        ValueError: Two files share a stem (e.g. ``000_mask.png`` and ``000_mask.bmp``), so the match is ambiguous.
    """
    if not folder.is_dir():
        return {}
    index: dict[str, Path] = {}
    for path in _images_in(folder):
        if path.stem in index:
            raise ValueError(f"Ambiguous masks {str(index[path.stem])!r} and {str(path)!r}: keep only one.")
        index[path.stem] = path
    return index


def _find_mask(masks: dict[str, Path], stem: str, suffixes: Sequence[str]) -> Path | None:
    """The mask named ``<stem><suffix>`` for one of ``suffixes``, or None.

    Raises:
        ValueError: Masks exist under several of the names (e.g. ``b.png`` and ``b_mask.png``).
    """
    found = [masks[stem + suffix] for suffix in suffixes if stem + suffix in masks]
    if len(found) > 1:
        raise ValueError(f"Ambiguous masks {[str(path) for path in found]} for image stem {stem!r}: keep only one.")
    return found[0] if found else None


def _select_classes(root: Path, classes: Sequence[str] | None, candidates: list[Path], what: str) -> list[Path]:
    """Pick class folders: all ``candidates`` when ``classes`` is None, else ``root/<class>`` for each class."""
    if classes is None:
        if not candidates:
            raise FileNotFoundError(f"No {what} class folders found under {str(root)!r}.")
        return candidates
    if isinstance(classes, str):
        classes = [classes]
    folders = [root / name for name in classes]
    for folder in folders:
        if not folder.is_dir():
            raise FileNotFoundError(f"Class folder not found: {str(folder)!r}.")
    return folders


def _row(image: Path, mask: Path | None, label: int, class_name: str, defect_type: str) -> dict[str, Any]:
    return {
        "image": str(image),
        "mask": None if mask is None else str(mask),
        "label": label,
        "class_name": class_name,
        "defect_type": defect_type,
        "path": str(image),
    }


def _indexed_file(root: Path, written: str, where: str, field: str, allow_outside_root: bool) -> Path:
    """The file an index entry names: ``written`` (relative to ``root``, or absolute), checked.

    Args:
        root: The dataset root (absolute).
        written: The path as the index file writes it.
        where: The index file and entry (``meta.json [test][bottle][3]``, ``1cls.csv:12``), for messages.
        field: The entry's field (``img_path``, ``mask``, ...), for messages.
        allow_outside_root: Accept a path that leaves ``root``.

    Returns:
        The normalised absolute path.

    Raises:
        ValueError: The path leaves ``root`` and ``allow_outside_root`` is False.
        FileNotFoundError: No file there, or a dangling symbolic link.
    """
    path = Path(os.path.normpath(root / written))
    if not allow_outside_root and os.path.commonpath([root, path]) != str(root):
        raise ValueError(
            f"{where}: {field} {written!r} leads to {str(path)!r}, outside the dataset root {str(root)!r}. Move the "
            "file under the root, or pass allow_outside_root=True if you trust this index file."
        )
    if path.is_symlink() and not path.exists():
        raise _dangling_link_error(path, f"{where}: {field}")
    if not path.is_file():
        raise FileNotFoundError(f"{where}: {field} file not found: {str(path)!r}; fix the path or restore the file.")
    return path


# ----------------------------------------------------------------------------------------------------------------
# MVTec AD
# ----------------------------------------------------------------------------------------------------------------


def load_mvtec_ad(
    root: str | os.PathLike, split: str = "test", classes: Sequence[str] | None = None, verify: bool = False
) -> Dataset:
    """Load MVTec AD (or any dataset in its layout, e.g. from :func:`~faprompt_hf.data.write_synthetic_mvtec`).

    Layout: ``root/<class>/{train,test}/good/*`` (normal), ``root/<class>/test/<defect>/*`` (anomalous) and
    ``root/<class>/ground_truth/<defect>/<stem>_mask.png``. Masks are matched to images by file name
    (``<stem>`` + ``"_mask"``), never by sort order.

    Args:
        root: The dataset folder.
        split: ``"train"`` or ``"test"``.
        classes: Class folder names to load (default: every folder under ``root`` with a ``<split>/`` folder).
        verify: Decode every image and mask now and check mask sizes.

    Returns:
        A dataset in :data:`~faprompt_hf.data.ANOMALY_FEATURES`, ordered by class, defect folder and file name.

    Raises:
        FileNotFoundError: Missing root, class folder or ``<split>/`` folder, or an anomalous image without mask
            (the message names the image and the expected mask path).
        ValueError: A bad split, or a class folder without images.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}.")
    root = _existing_root(root, "MVTec AD")
    candidates = [folder for folder in _subfolders(root) if (folder / split).is_dir()]
    rows: list[dict[str, Any]] = []
    for class_folder in _select_classes(root, classes, candidates, "MVTec AD"):
        split_folder = class_folder / split
        if not split_folder.is_dir():
            raise FileNotFoundError(f"MVTec AD class folder {str(class_folder)!r} has no {split!r} folder.")
        class_rows: list[dict[str, Any]] = []
        for defect_folder in _subfolders(split_folder):
            defect = defect_folder.name
            masks = {} if defect == NORMAL_DEFECT_TYPE else _mask_files(class_folder / "ground_truth" / defect)
            for image in _images_in(defect_folder):
                if defect == NORMAL_DEFECT_TYPE:
                    class_rows.append(_row(image, None, 0, class_folder.name, defect))
                    continue
                mask = _find_mask(masks, image.stem, ("_mask",))
                if mask is None:
                    expected = class_folder / "ground_truth" / defect / f"{image.stem}_mask.png"
                    raise FileNotFoundError(f"No mask for anomalous image {str(image)!r}: expected {str(expected)!r}.")
                class_rows.append(_row(image, mask, 1, class_folder.name, defect))
        if not class_rows:
            raise ValueError(f"MVTec AD class folder {str(split_folder)!r} contains no images.")
        rows.extend(class_rows)
    logger.info("Loaded %d MVTec AD %s images from %s", len(rows), split, root)
    return _build_dataset(rows, verify=verify)


# ----------------------------------------------------------------------------------------------------------------
# VisA
# ----------------------------------------------------------------------------------------------------------------


def load_visa(
    root: str | os.PathLike,
    split: str = "test",
    classes: Sequence[str] | None = None,
    split_csv: str | os.PathLike | None = None,
    verify: bool = False,
    allow_outside_root: bool = False,
) -> Dataset:
    """Load VisA from its split file (``split_csv/1cls.csv`` of the official release).

    The csv has the columns ``object,split,label,image,mask``; ``label`` is ``normal`` or ``anomaly`` and paths are
    relative to ``root``. VisA masks are not 0/255 (often 0/1): they are kept as they are, and binarised (> 0) when
    the processor reads them. VisA has no defect names, so ``defect_type`` is ``"anomaly"`` for anomalous images.

    Args:
        root: The VisA folder (holding ``candle/``, ``capsules/``, ... and ``split_csv/``).
        split: A value of the csv's ``split`` column, ``"train"`` or ``"test"``.
        classes: Values of the ``object`` column to keep (default: all).
        split_csv: The csv file (default: ``root/split_csv/1cls.csv``).
        verify: Decode every image and mask now and check mask sizes.
        allow_outside_root: Accept csv paths that leave ``root`` (``../x.png``, absolute paths elsewhere); by
            default they are an error.

    Returns:
        A dataset in :data:`~faprompt_hf.data.ANOMALY_FEATURES`, in csv order.

    Raises:
        FileNotFoundError: Missing root, csv, or a file a csv row references (the message names the csv line), a
            dangling symbolic link, or an anomalous row without mask.
        ValueError: Missing csv columns, a row with too few or too many fields, a csv that is not UTF-8 text, an
            empty image path, a path leaving ``root``, an unknown label, split or class (each names the csv line).
    """
    root = _existing_root(root, "VisA")
    csv_path = Path(split_csv) if split_csv is not None else root / "split_csv" / "1cls.csv"
    if not csv_path.is_file():
        raise FileNotFoundError(f"VisA split file not found: {str(csv_path)!r} (columns {','.join(_VISA_COLUMNS)}).")
    records = _read_visa_csv(csv_path)
    splits = sorted({record["split"] for _, record in records})
    if split not in splits:
        raise ValueError(f"No rows with split {split!r} in {str(csv_path)!r}; its splits are {splits}.")
    records = [(line, record) for line, record in records if record["split"] == split]
    available = sorted({record["object"] for _, record in records})
    if classes is not None:
        classes = [classes] if isinstance(classes, str) else list(classes)
        unknown = [name for name in classes if name not in available]
        if unknown:
            raise ValueError(f"Classes {unknown} not in {str(csv_path)!r} ({split}); available: {available}.")
        records = [(line, record) for line, record in records if record["object"] in classes]
    rows = []
    for line, record in records:
        where = f"{csv_path}:{line}"
        label = _parse_label(record["label"], where)
        if not record["image"].strip():
            raise ValueError(f"{where}: the 'image' field is empty; give the image path relative to {str(root)!r}.")
        image = _indexed_file(root, record["image"].strip(), where, "image", allow_outside_root)
        mask_path = record["mask"].strip()
        mask = _indexed_file(root, mask_path, where, "mask", allow_outside_root) if mask_path else None
        if label == 1 and mask is None:
            raise FileNotFoundError(f"{where}: anomalous image {str(image)!r} has no mask in the 'mask' column.")
        rows.append(_row(image, mask, label, record["object"], _defect_type_for(label, None, where)))
    logger.info("Loaded %d VisA %s images from %s", len(rows), split, root)
    return _build_dataset(rows, verify=verify)


def _read_visa_csv(csv_path: Path) -> list[tuple[int, dict[str, str]]]:
    """Read a VisA split file into ``(line number, record)`` pairs, checking its encoding and every row's width.

    Raises:
        ValueError: The file is not UTF-8 text, is not valid csv, lacks a column, or a row has too few or too many
            fields (the message names the file and line).
    """
    data = csv_path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise ValueError(
            f"{csv_path}:{line}: VisA split file is not UTF-8 text (byte {data[error.start]:#04x} at offset "
            f"{error.start}); re-save it as UTF-8."
        ) from error
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        fieldnames = reader.fieldnames or []
        missing = [column for column in _VISA_COLUMNS if column not in fieldnames]
        if missing:
            raise ValueError(f"VisA split file {str(csv_path)!r} lacks the columns {missing}.")
        records = []
        for record in reader:
            line = reader.line_num
            if None in record or any(record[column] is None for column in fieldnames):
                count = len(record.get(None) or []) + sum(record[column] is not None for column in fieldnames)
                raise ValueError(
                    f"{csv_path}:{line}: the row has {count} fields but the header has {len(fieldnames)} "
                    f"({','.join(fieldnames)}); fix the row (quote fields that contain commas)."
                )
            records.append((line, record))
    except csv.Error as error:
        raise ValueError(f"{csv_path}:{reader.line_num}: not valid csv: {error}.") from error
    return records


# ----------------------------------------------------------------------------------------------------------------
# meta.json (AnomalyCLIP / FAPrompt)
# ----------------------------------------------------------------------------------------------------------------


def _read_meta(meta_path: Path) -> dict[str, Any]:
    try:
        with open(meta_path, encoding="utf-8") as handle:
            meta = json.load(handle)
    except json.JSONDecodeError as error:
        raise ValueError(f"{str(meta_path)!r} is not valid JSON: {error}") from error
    except UnicodeDecodeError as error:
        raise ValueError(f"{str(meta_path)!r} is not UTF-8 text ({error}); re-save it as UTF-8 JSON.") from error
    if not isinstance(meta, dict):
        raise ValueError(f"{str(meta_path)!r} must hold an object with 'train' and 'test' keys.")
    return meta


_META_STRING_FIELDS = ("img_path", "mask_path", "cls_name", "specie_name")


def _meta_string(item: dict[str, Any], field: str, where: str) -> str:
    """A string field of a meta.json item (``""`` when absent or null), or an error naming the item and field."""
    value = item.get(field)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(
            f"{where}: {field!r} must be a string, got {type(value).__name__} {value!r}; write it as a string such "
            f"as {_META_EXAMPLES[field]!r}."
        )
    return value.strip() if field in ("cls_name", "specie_name") else value


_META_EXAMPLES = {
    "img_path": "bottle/test/broken_large/000.png",
    "mask_path": "bottle/ground_truth/broken_large/000_mask.png",
    "cls_name": "bottle",
    "specie_name": "broken_large",
}


def load_meta_json(
    root: str | os.PathLike,
    split: str = "test",
    classes: Sequence[str] | None = None,
    meta_path: str | os.PathLike | None = None,
    require_masks: bool = True,
    verify: bool = False,
    allow_outside_root: bool = False,
) -> Dataset:
    """Load a dataset indexed by an AnomalyCLIP/FAPrompt ``meta.json``.

    The file holds ``{"train": {cls: [item, ...]}, "test": {cls: [item, ...]}}`` with items
    ``{"img_path", "mask_path", "cls_name", "specie_name", "anomaly"}``; paths are relative to ``root`` (absolute
    paths under ``root`` also work), ``mask_path`` is ``""`` (or absent or null) for normal images and
    ``specie_name`` is the defect type. ``img_path`` must be a non-empty string; ``mask_path``, ``cls_name`` and
    ``specie_name`` strings (or absent or null); ``anomaly`` 0/1 (see the labels of ``load_hub_dataset``).

    Args:
        root: The folder the paths are relative to.
        split: ``"train"`` or ``"test"`` (any key of the file).
        classes: Class keys to keep (default: all).
        meta_path: The index file (default: ``root/meta.json``).
        require_masks: When False, anomalous items with ``mask_path == ""`` are kept with ``mask=None``
            (image-level datasets); by default they are an error.
        verify: Decode every image and mask now and check mask sizes.
        allow_outside_root: Accept paths that leave ``root`` (``../x.png``, absolute paths elsewhere, as
            :func:`write_meta_json` writes for files outside its root); by default they are an error.

    Returns:
        A dataset in :data:`~faprompt_hf.data.ANOMALY_FEATURES`, in file order.

    Raises:
        FileNotFoundError: Missing root, index file, or a referenced file, a dangling symbolic link, or a missing
            mask (names the item).
        ValueError: Invalid JSON, an unknown split or class, a bad item, field type or label, a path leaving
            ``root``. Item errors name the file, split, class, item index and field.
    """
    root = _existing_root(root, "meta.json dataset")
    meta_path = Path(meta_path) if meta_path is not None else root / "meta.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"meta.json not found: {str(meta_path)!r}.")
    meta = _read_meta(meta_path)
    if not isinstance(meta.get(split), dict):
        raise ValueError(f"{str(meta_path)!r} has no {split!r} object; its keys are {sorted(meta)}.")
    by_class: dict[str, Any] = meta[split]
    if classes is not None:
        classes = [classes] if isinstance(classes, str) else list(classes)
        unknown = [name for name in classes if name not in by_class]
        if unknown:
            raise ValueError(f"Classes {unknown} not in {str(meta_path)!r} ({split}); available: {sorted(by_class)}.")
        by_class = {name: by_class[name] for name in classes}
    rows = []
    for class_key, items in by_class.items():
        if not isinstance(items, list) or not items:
            raise ValueError(f"{meta_path} [{split}][{class_key}] must be a non-empty list of items.")
        for position, item in enumerate(items):
            where = f"{meta_path} [{split}][{class_key}][{position}]"
            if not isinstance(item, dict) or "img_path" not in item or "anomaly" not in item:
                raise ValueError(f"{where} must be an object with at least 'img_path' and 'anomaly'.")
            fields = {field: _meta_string(item, field, where) for field in _META_STRING_FIELDS}
            if not fields["img_path"]:
                raise ValueError(f"{where}: 'img_path' is empty; give the image path relative to {str(root)!r}.")
            label = _parse_label(item["anomaly"], f"{where} 'anomaly'")
            image = _indexed_file(root, fields["img_path"], where, "img_path", allow_outside_root)
            mask_path = fields["mask_path"]
            mask = _indexed_file(root, mask_path, where, "mask_path", allow_outside_root) if mask_path else None
            if label == 1 and mask is None and require_masks:
                raise FileNotFoundError(
                    f"{where}: anomalous image {str(image)!r} has an empty 'mask_path'; give its mask, or pass "
                    "require_masks=False for image-level labels only."
                )
            defect_type = _defect_type_for(label, fields["specie_name"], where)
            rows.append(_row(image, mask, label, fields["cls_name"] or class_key, defect_type))
    logger.info("Loaded %d %s images from %s", len(rows), split, meta_path)
    return _build_dataset(rows, verify=verify)


def _relative(path: str, root: Path) -> str:
    """``path`` relative to ``root`` (POSIX separators) when it lies under it, else the absolute path."""
    absolute = Path(os.path.abspath(path))
    try:
        return absolute.relative_to(root).as_posix()
    except ValueError:
        return str(absolute)


def write_meta_json(
    dataset: Dataset, root: str | os.PathLike, split: str = "test", meta_path: str | os.PathLike | None = None
) -> Path:
    """Write a dataset's rows as the ``split`` of an AnomalyCLIP/FAPrompt ``meta.json``.

    Paths under ``root`` are written relative to it, others absolute (loading such a file then needs
    ``load_meta_json(..., allow_outside_root=True)``; a warning says so). An existing file keeps its other splits,
    so calling this once with the train and once with the test dataset gives a complete file; both ``"train"`` and
    ``"test"`` keys are always present. The file is written to a temporary name and renamed
    (:func:`~faprompt_hf.file_utils.atomic_write`): a failure (full disk, size limit, a killed process) leaves the
    previous file intact.

    Args:
        dataset: Rows in :data:`~faprompt_hf.data.ANOMALY_FEATURES` whose ``path`` and mask are files on disk (as
            from the folder loaders; for in-memory synthetic data use ``write_synthetic_mvtec`` first).
        root: The folder paths are made relative to.
        split: The key to write.
        meta_path: The output file (default: ``root/meta.json``).

    Returns:
        The written file.

    Raises:
        ValueError: A row's image or mask is not a file on disk (the message names the row), or the existing file
            is not a valid meta.json (it is left as it is).
        OSError: Writing failed; the previous file is intact.
    """
    root = Path(os.path.abspath(os.fspath(root)))
    meta_path = Path(meta_path) if meta_path is not None else root / "meta.json"
    try:
        meta = _read_meta(meta_path) if meta_path.is_file() else {}
    except ValueError as error:
        raise ValueError(
            f"{error} write_meta_json keeps the other splits of an existing file, so it does not overwrite this "
            "one: fix it, or remove it to start a new file."
        ) from error
    outside = 0
    columns = dataset.select_columns(["mask", "label", "class_name", "defect_type", "path"])
    columns = columns.cast_column("mask", ImageFeature(decode=False))
    by_class: dict[str, list[dict[str, Any]]] = {}
    for row in columns:
        image_path = row["path"]
        if not image_path or not os.path.isfile(image_path):
            raise ValueError(f"Row {image_path!r} is not an image file on disk; meta.json can only index files.")
        mask_path = (row["mask"] or {}).get("path") or ""
        if row["mask"] is not None and not os.path.isfile(mask_path):
            raise ValueError(f"The mask of row {image_path!r} is not a file on disk ({mask_path or 'embedded bytes'}).")
        img_path, mask_path = _relative(image_path, root), _relative(mask_path, root) if mask_path else ""
        outside += os.path.isabs(img_path) or os.path.isabs(mask_path)
        by_class.setdefault(row["class_name"], []).append(
            {
                "img_path": img_path,
                "mask_path": mask_path,
                "cls_name": row["class_name"],
                "specie_name": row["defect_type"],
                "anomaly": int(row["label"]),
            }
        )
    meta[split] = by_class
    for name in _META_SPLITS:
        meta.setdefault(name, {})
    if outside:
        logger.warning(
            "%d rows of %s have files outside %s, written as absolute paths: load it with "
            "load_meta_json(..., allow_outside_root=True).",
            outside,
            meta_path,
            root,
        )
    with atomic_write(meta_path) as handle:
        json.dump(meta, handle, indent=4)
    logger.info("Wrote %d %s items to %s", sum(len(items) for items in by_class.values()), split, meta_path)
    return meta_path


# ----------------------------------------------------------------------------------------------------------------
# Hand-made folders
# ----------------------------------------------------------------------------------------------------------------


def load_folder(
    root: str | os.PathLike,
    classes: Sequence[str] | None = None,
    masks_dir: str | os.PathLike | None = None,
    normal_name: str = NORMAL_DEFECT_TYPE,
    masks_name: str = "masks",
    require_masks: bool = True,
    verify: bool = False,
) -> Dataset:
    """Load a hand-made folder tree.

    Layout (``<stem>`` is the image file name without extension; any extension in
    :data:`~faprompt_hf.data.IMAGE_EXTENSIONS`)::

        root/<class>/good/<stem>.png                       normal images
        root/<class>/<defect>/<stem>.png                   anomalous images, one folder per defect type
        root/<class>/masks/<defect>/<stem>.png             their masks, named <stem>.png or <stem>_mask.png
        masks_dir/<class>/<defect>/<stem>[_mask].png       (instead, when masks_dir is given)

    Every other folder directly under ``root/<class>/`` is a defect type.

    Args:
        root: The dataset folder.
        classes: Class folder names to load (default: every folder under ``root``).
        masks_dir: A separate masks tree (default: ``root/<class>/<masks_name>``).
        normal_name: Name of the normal-image folder.
        masks_name: Name of the per-class masks folder.
        require_masks: When False, anomalous images without a mask are kept with ``mask=None`` (image-level
            labels; pixel metrics skip them, see ``mask_valid`` of the collator); by default they are an error.
        verify: Decode every image and mask now and check mask sizes.

    Returns:
        A dataset in :data:`~faprompt_hf.data.ANOMALY_FEATURES`, ordered by class, folder and file name.

    Raises:
        FileNotFoundError: Missing root or class folder, or an anomalous image without mask (names the image and
            the expected mask paths).
        ValueError: A class folder with no images, or with images directly inside it.
    """
    root = _existing_root(root, "Image folder dataset")
    masks_root = _existing_root(masks_dir, "Masks") if masks_dir is not None else None
    rows: list[dict[str, Any]] = []
    without_mask = 0
    for class_folder in _select_classes(root, classes, _subfolders(root), "image folder"):
        stray = _images_in(class_folder)
        if stray:
            raise ValueError(
                f"Images directly in class folder {str(class_folder)!r} (e.g. {stray[0].name!r}): put normal images "
                f"in {normal_name}/ and anomalous ones in <defect>/ folders."
            )
        mask_folder = masks_root / class_folder.name if masks_root is not None else class_folder / masks_name
        class_rows: list[dict[str, Any]] = []
        for defect_folder in _subfolders(class_folder):
            defect = defect_folder.name
            if masks_root is None and defect == masks_name:
                continue
            masks = {} if defect == normal_name else _mask_files(mask_folder / defect)
            for image in _images_in(defect_folder):
                if defect == normal_name:
                    class_rows.append(_row(image, None, 0, class_folder.name, NORMAL_DEFECT_TYPE))
                    continue
                mask = _find_mask(masks, image.stem, ("", "_mask"))
                if mask is None and require_masks:
                    expected = mask_folder / defect / f"{image.stem}[_mask].png"
                    raise FileNotFoundError(
                        f"No mask for anomalous image {str(image)!r}: expected {str(expected)!r}. Pass "
                        "require_masks=False for image-level labels only."
                    )
                without_mask += mask is None
                class_rows.append(_row(image, mask, 1, class_folder.name, _defect_type_for(1, defect, str(image))))
        if not class_rows:
            raise ValueError(f"Class folder {str(class_folder)!r} contains no images in its sub-folders.")
        rows.extend(class_rows)
    if without_mask:
        logger.warning("%d anomalous images in %s have no mask (image-level labels only).", without_mask, root)
    logger.info("Loaded %d images from %s", len(rows), root)
    return _build_dataset(rows, verify=verify)

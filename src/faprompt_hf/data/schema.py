# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""The one schema every FAPrompt dataset loader returns, its builder, and row-level decoding and checks."""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np
from datasets import ClassLabel, Dataset, Features, IterableDataset, Value
from datasets import Image as ImageFeature
from datasets.utils.file_utils import xopen
from PIL import Image
from transformers.utils import logging

from ..image_utils import load_image, to_mask_array, to_rgb_image
from ..validation import label_error, normal_mask_error

logger = logging.get_logger(__name__)

__all__ = [
    "ANOMALY_FEATURES",
    "IMAGE_EXTENSIONS",
    "LABEL_NAMES",
    "NORMAL_DEFECT_TYPE",
    "decode_image_value",
    "defer_decoding",
    "verify_dataset",
]

LABEL_NAMES: tuple[str, str] = ("normal", "anomalous")
"""Names of the ``label`` values 0 and 1."""

NORMAL_DEFECT_TYPE = "good"
"""The ``defect_type`` of every normal image."""

ANOMALY_FEATURES = Features(
    {
        "image": ImageFeature(),
        "mask": ImageFeature(),
        "label": ClassLabel(names=list(LABEL_NAMES)),
        "class_name": Value("string"),
        "defect_type": Value("string"),
        "path": Value("string"),
    }
)
"""Schema of every loader's output.

* ``image``: the image (stored as its file path and decoded lazily, or as encoded bytes).
* ``mask``: the ground-truth mask, any value > 0 is anomalous; ``None`` for normal images (and for anomalous
  images of datasets that only have image-level labels, see :func:`~faprompt_hf.data.load_folder`).
* ``label``: 0 normal, 1 anomalous.
* ``class_name``: the object or texture category, e.g. ``"bottle"``.
* ``defect_type``: ``"good"`` for normal images, else the defect name (``"anomaly"`` when the dataset has none).
* ``path``: the image's source path, or a reference such as ``"user/dataset[test][12]"``.
"""


class _DecodeNamingTheFile:
    """``decode_example`` of the schema's Image features: ``datasets``' own decoding, with errors naming the file.

    Set on the ``image`` and ``mask`` feature *instances* of :data:`ANOMALY_FEATURES` (not on the ``datasets.Image``
    class, so other datasets are untouched). It travels with the features through ``select``, ``filter``,
    ``shuffle``, ``map``, ``cast_column``, ``concatenate_datasets`` and ``to_iterable_dataset``; a dataset reloaded
    with ``load_from_disk`` has plain ``datasets.Image`` features again.
    """

    def __init__(self, feature: ImageFeature) -> None:
        self.feature = feature

    def __call__(self, value: Any, token_per_repo_id: Mapping[str, Any] | None = None) -> Any:
        try:
            return ImageFeature.decode_example(self.feature, value, token_per_repo_id)
        except Exception as error:
            raise _decoding_error(value, error) from error


def _decoding_error(value: Any, error: Exception) -> Exception:
    """The error to raise when the stored image ``value`` cannot be decoded: it names the file and the fix."""
    path = value.get("path") if isinstance(value, Mapping) else value if isinstance(value, str) else None
    data = value.get("bytes") if isinstance(value, Mapping) else None
    if isinstance(error, FileNotFoundError) and path:
        return FileNotFoundError(f"Image file not found: {path!r}. Restore the file or remove its row.")
    what = repr(path) if path else f"embedded image bytes ({len(data or b'')} bytes)"
    return ValueError(
        f"Cannot decode the image file {what}: {error}. Replace the file with a readable image, or find every bad "
        "file at once with faprompt_hf.data.verify_dataset(dataset)."
    )


for _column in ("image", "mask"):
    ANOMALY_FEATURES[_column].decode_example = _DecodeNamingTheFile(ANOMALY_FEATURES[_column])
del _column

IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
"""File extensions (case-insensitive) the folder loaders treat as images."""

_NORMAL_WORDS = frozenset({"0", "normal", "good", "ok", "false", "negative"})
_ANOMALOUS_WORDS = frozenset({"1", "anomaly", "anomalous", "abnormal", "defect", "defective", "bad", "ng", "true"})

DatasetT = TypeVar("DatasetT", Dataset, IterableDataset)


def _build_dataset(rows: Sequence[Mapping[str, Any]], verify: bool = False) -> Dataset:
    """Build a dataset in :data:`ANOMALY_FEATURES` from row dicts; the single place loaders construct datasets.

    Image and mask values that are file path strings are stored as paths (decoded only when a row is read); PIL
    images are encoded to PNG bytes.

    Args:
        rows: Dicts with every key of :data:`ANOMALY_FEATURES` (``mask`` may be ``None``).
        verify: Decode every image and mask now and check them (see :func:`verify_dataset`).

    Returns:
        The dataset.
    """
    if not rows:
        raise ValueError("No images found to build a dataset from.")
    columns = {name: [row[name] for row in rows] for name in ANOMALY_FEATURES}
    dataset = Dataset.from_dict(columns, features=ANOMALY_FEATURES)
    if verify:
        verify_dataset(dataset)
    return dataset


def _parse_label(value: Any, where: str, names: Sequence[str] | None = None) -> int:
    """Turn a label in any common spelling into 0 (normal) or 1 (anomalous).

    Args:
        value: An int/bool 0/1, a float equal to 0 or 1 (as parquet/pandas often store labels), a numpy scalar, or
            a word such as ``"normal"``, ``"good"``, ``"anomaly"``.
        where: The row or file, for the error message.
        names: Class names when ``value`` indexes a ``ClassLabel`` (its name is parsed instead of the index).

    Returns:
        0 or 1.

    Raises:
        ValueError: The value is not recognisably normal or anomalous (the message names ``where``).
    """
    if names is not None and isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        if not 0 <= int(value) < len(names):
            raise ValueError(f"Label index {value} of {where} is outside the class names {list(names)}.")
        value = names[int(value)]
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, (int, np.integer)) and int(value) in (0, 1):
        return int(value)
    if isinstance(value, (float, np.floating)) and value in (0.0, 1.0):
        return int(value)
    if isinstance(value, str) and value.strip().lower() in _NORMAL_WORDS | _ANOMALOUS_WORDS:
        return int(value.strip().lower() in _ANOMALOUS_WORDS)
    raise ValueError(label_error(value, where))


def _defect_type_for(label: int, defect_type: str | None, where: str) -> str:
    """Check a row's ``defect_type`` against its label and fill it when missing.

    Returns:
        ``"good"`` for normal rows, the given defect type (or ``"anomaly"`` when empty) for anomalous rows.

    Raises:
        ValueError: A normal row with a defect type other than ``"good"``, or an anomalous row marked ``"good"``.
    """
    defect_type = (defect_type or "").strip()
    if label == 0:
        if defect_type not in ("", NORMAL_DEFECT_TYPE):
            raise ValueError(f"{where} is labelled normal but has defect type {defect_type!r}; fix the label.")
        return NORMAL_DEFECT_TYPE
    if defect_type == NORMAL_DEFECT_TYPE:
        raise ValueError(f"{where} is labelled anomalous but has defect type 'good'; fix the label.")
    return defect_type or "anomaly"


def _is_missing(value: Any) -> bool:
    """True for a mask value that means "no mask": ``None``, ``""`` or an Image dict with neither path nor bytes."""
    if value is None or (isinstance(value, str) and not value):
        return True
    return isinstance(value, Mapping) and not value.get("path") and not value.get("bytes")


def decode_image_value(value: Any, source: str) -> Image.Image | np.ndarray:
    """Decode one stored ``image`` or ``mask`` value, naming ``source`` in any error.

    Args:
        value: A PIL image or array (returned as is), a file path, encoded image bytes, or a ``datasets.Image``
            storage dict ``{"bytes": ..., "path": ...}`` as seen with ``Image(decode=False)``.
        source: The row's ``path``, used in error messages.

    Returns:
        The decoded PIL image or the array. EXIF orientation is ignored, as in the original FAPrompt evaluation
        (``Image.open`` then ``convert("RGB")``) and in :func:`~faprompt_hf.image_utils.load_image`, so the
        pixels (and the mask alignment) are those stored in the file.

    Raises:
        ValueError: The value cannot be decoded (the message names ``source`` and the file).
        FileNotFoundError: The referenced file does not exist.
    """
    if isinstance(value, (Image.Image, np.ndarray)) or hasattr(value, "__array__"):
        return value
    if isinstance(value, (str, os.PathLike)):
        value = {"path": os.fspath(value), "bytes": None}
    if isinstance(value, (bytes, bytearray)):
        value = {"path": None, "bytes": bytes(value)}
    if not isinstance(value, Mapping) or (value.get("bytes") is None and not value.get("path")):
        raise ValueError(f"Row {source!r} holds {type(value).__name__} where an image was expected.")
    path, data = value.get("path"), value.get("bytes")
    try:
        if data is None and os.path.exists(path):
            return load_image(path)
        if data is None:  # a remote reference such as hf://... (read without EXIF handling), or a missing file
            with xopen(path, "rb") as file:
                data = file.read()
        with Image.open(io.BytesIO(data)) as opened:
            opened.load()
            image = opened.copy()
    except FileNotFoundError as error:
        raise FileNotFoundError(
            f"Image file of row {source!r} not found: {path!r}. Restore the file or remove its row."
        ) from error
    except Exception as error:
        raise ValueError(
            f"Cannot decode the image of row {source!r} ({path or 'embedded bytes'}): {error}. Replace the file with "
            "a readable image, or find every bad file at once with faprompt_hf.data.verify_dataset(dataset)."
        ) from error
    return image


def defer_decoding(dataset: DatasetT) -> DatasetT:
    """Keep ``image`` and ``mask`` undecoded (``{"bytes", "path"}`` dicts) when rows are read.

    Reading a row then costs no decoding; :class:`~faprompt_hf.data.FAPromptCollator` decodes the values itself and
    names the row's ``path`` when a file is missing or corrupt (``datasets`` would raise without the row).

    Args:
        dataset: A ``Dataset`` or ``IterableDataset`` with ``image`` (and optionally ``mask``) Image columns.

    Returns:
        The same dataset with the Image columns cast to ``Image(decode=False)`` (a schema change, no data copy).
    """
    for column in ("image", "mask"):
        feature = (dataset.features or {}).get(column)
        if isinstance(feature, ImageFeature) and feature.decode:
            dataset = dataset.cast_column(column, ImageFeature(decode=False))
    return dataset


def _check_mask(
    mask: np.ndarray, image_size: tuple[int, int], label: int, source: str, resize_ok: bool = False
) -> None:
    """Check a binarised mask against its image's size and its row's label; shared by the collator and verification.

    Args:
        mask: The boolean (H, W) mask.
        image_size: The image's ``(width, height)``, as PIL's ``Image.size``.
        label: The row's label, 0 or 1.
        source: The row's path, for the error messages.
        resize_ok: Accept a mask whose size differs from the image (it will be resized by the processor).

    Raises:
        ValueError: The mask's size differs from the image's (unless ``resize_ok``), or a normal row's mask marks
            anomalous pixels.
    """
    width, height = image_size
    if mask.shape != (height, width) and not resize_ok:
        raise ValueError(
            f"The mask of {source!r} is {mask.shape[1]}x{mask.shape[0]} but the image is {width}x{height} "
            "(width x height); fix the mask, or pass resize_mismatched_masks=True to FAPromptCollator or "
            "with_processor_transform to resize it."
        )
    if label == 0 and mask.any():
        raise ValueError(normal_mask_error(repr(source), int(mask.sum())))


def _check_row(row: Mapping[str, Any], index: int) -> None:
    """Decode one row's image and mask and check them against each other and the label.

    Raises:
        ValueError: Undecodable image or mask, mask size differing from the image size, normal image with a
            non-empty mask, or label not 0/1. Every message names the row's path.
    """
    source = row.get("path") or f"row {index}"
    label = row.get("label")
    if label not in (0, 1):
        raise ValueError(f"Row {source!r} has label {label!r}; expected 0 (normal) or 1 (anomalous).")
    label = int(label)
    image = to_rgb_image(decode_image_value(row["image"], source), source)
    if _is_missing(row.get("mask")):
        if label == 1:
            logger.warning("Anomalous image %s has no mask: pixel-level metrics will skip it.", source)
        return
    mask = to_mask_array(decode_image_value(row["mask"], source), f"mask of {source}")
    _check_mask(mask, image.size, label, source)
    if label == 1 and not mask.any():
        logger.warning("The mask of anomalous image %s is empty.", source)


def verify_dataset(dataset: Dataset | IterableDataset | Iterable[Mapping[str, Any]]) -> None:
    """Decode every image and mask and check them, so bad files fail now rather than during training.

    Checks, per row: the image decodes (any mode is accepted, see ``to_rgb_image``), the mask (if any) decodes and
    has the image's size, a normal image's mask is empty, and the label is 0 or 1. Anomalous images without a mask
    or with an empty mask are logged as warnings.

    Args:
        dataset: A dataset in :data:`ANOMALY_FEATURES` (or any iterable of such rows).

    Raises:
        ValueError: The first bad row; the message names its path.
        FileNotFoundError: A referenced file does not exist.
    """
    rows = defer_decoding(dataset) if isinstance(dataset, (Dataset, IterableDataset)) else dataset
    count = 0
    for index, row in enumerate(rows):
        _check_row(row, index)
        count += 1
    logger.info("Verified %d rows.", count)

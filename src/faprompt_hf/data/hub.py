# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""Bring a Hub or local ``datasets`` dataset into :data:`~faprompt_hf.data.ANOMALY_FEATURES`."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

import pyarrow.compute as pc
from datasets import ClassLabel, Dataset, DatasetDict, IterableDataset, Value, load_dataset, load_from_disk
from datasets import Image as ImageFeature
from transformers.utils import logging

from ..image_utils import to_mask_array
from .schema import (
    ANOMALY_FEATURES,
    NORMAL_DEFECT_TYPE,
    _defect_type_for,
    _is_missing,
    _parse_label,
    decode_image_value,
    verify_dataset,
)

logger = logging.get_logger(__name__)

__all__ = ["load_hub_dataset"]

_SOURCE_PREFIX = "__faprompt_source__"

_BATCH_ROWS = 1000
"""Rows read at a time when deriving the small columns of a non-streaming dataset."""


def _open(name_or_path: str, split: str, streaming: bool, load_kwargs: dict[str, Any]) -> Dataset | IterableDataset:
    """Open a ``save_to_disk`` folder with ``load_from_disk``, anything else with ``load_dataset``."""
    is_saved = os.path.isdir(name_or_path) and any(
        os.path.isfile(os.path.join(name_or_path, marker)) for marker in ("dataset_dict.json", "state.json")
    )
    if not is_saved:
        dataset = load_dataset(name_or_path, split=split, streaming=streaming, **load_kwargs)
        if not isinstance(dataset, (Dataset, IterableDataset)):
            raise ValueError(f"load_dataset({name_or_path!r}, split={split!r}) did not return one split.")
        return dataset
    if load_kwargs:
        raise ValueError(
            f"{name_or_path!r} is a save_to_disk folder; the load_dataset options {sorted(load_kwargs)} "
            "do not apply to it."
        )
    dataset = load_from_disk(name_or_path)
    if isinstance(dataset, DatasetDict):
        if split not in dataset:
            raise ValueError(f"Split {split!r} not in {name_or_path!r}; its splits are {sorted(dataset)}.")
        dataset = dataset[split]
    return dataset.to_iterable_dataset() if streaming else dataset


def _resolve_mapping(columns: Sequence[str], column_mapping: Mapping[str, str] | None, name: str) -> dict[str, str]:
    """Map our column names to the dataset's, checking both sides.

    Explicit entries win; every other schema column that the dataset has under the same name (and that is not
    already the source of an explicit entry) maps to itself.
    """
    mapping = dict(column_mapping or {})
    unknown = [ours for ours in mapping if ours not in ANOMALY_FEATURES]
    if unknown:
        raise ValueError(f"column_mapping keys {unknown} are not schema columns {list(ANOMALY_FEATURES)}.")
    absent = {ours: theirs for ours, theirs in mapping.items() if theirs not in columns}
    if absent:
        raise ValueError(f"column_mapping {absent} names columns that {name!r} lacks; its columns are {list(columns)}.")
    used = set(mapping.values())
    for ours in ANOMALY_FEATURES:
        if ours not in mapping and ours in columns and ours not in used:
            mapping[ours] = ours
    if "image" not in mapping:
        raise ValueError(
            f"{name!r} has no 'image' column (columns: {list(columns)}); pass column_mapping={{'image': '<column>'}}."
        )
    return mapping


def _strings(values: list[Any] | None, feature: Any, column: str, rows: Sequence[str]) -> list[str | None] | None:
    """Values of a text column (``class_name``, ``defect_type``, ``path``), turning ``ClassLabel`` indices into names.

    Args:
        values: The column's values for a batch, or None when the dataset has no such column.
        feature: The column's feature.
        column: The dataset's column name, for messages.
        rows: The rows' references, for messages.

    Raises:
        ValueError: A value that is not a string (a list, a number, ...): the message names the row and column.
    """
    if values is None:
        return None
    if isinstance(feature, ClassLabel):
        return [None if value is None else feature.int2str(int(value)) for value in values]
    for value, row in zip(values, rows, strict=True):
        if value is not None and not isinstance(value, str):
            raise ValueError(
                f"Row {row!r}: column {column!r} holds {type(value).__name__} {value!r} where a string is expected; "
                f"make it a string column, or a ClassLabel for integer ids (dataset.cast_column({column!r}, "
                "ClassLabel(names=[...])))."
            )
    return list(values)


def _normalise_batch(
    batch: dict[str, list[Any]],
    indices: list[int],
    mapping: dict[str, str],
    features: Mapping[str, Any],
    reference: str,
    class_name: str,
    encode_masks: bool = True,
) -> dict[str, list[Any]]:
    """Compute the schema's ``mask``, ``label``, ``class_name``, ``defect_type`` and ``path`` for a batch.

    Args:
        batch: The dataset's own columns (``{prefix}{name}``) for the source columns named in ``mapping`` except
            the image, with masks undecoded. The mask column may be left out when it is neither encoded here nor
            needed to derive labels.
        indices: The rows' indices in the dataset (for the default ``path``).
        mapping: Our column name -> the dataset's.
        features: The dataset's features.
        reference: ``"<name_or_path>[<split>]"``, for default paths and messages.
        class_name: The default ``class_name``.
        encode_masks: Return ``mask`` (encoded for ``datasets.Image``); ``False`` when the caller keeps the
            dataset's own mask column.

    Returns:
        The schema columns for the batch (``mask`` only with ``encode_masks``).
    """

    def column(ours: str) -> list[Any] | None:
        key = _SOURCE_PREFIX + mapping[ours] if ours in mapping else None
        return batch[key] if key in batch else None

    def feature(ours: str) -> Any:
        return features.get(mapping[ours]) if ours in mapping else None

    references = [f"{reference}[{index}]" for index in indices]
    paths = _strings(column("path"), feature("path"), mapping.get("path", ""), references) or [None] * len(indices)
    paths = [path or default for path, default in zip(paths, references, strict=True)]
    masks = [None if _is_missing(mask) else mask for mask in (column("mask") or [None] * len(indices))]
    defects = _strings(column("defect_type"), feature("defect_type"), mapping.get("defect_type", ""), paths)
    if "label" in mapping:
        names = feature("label").names if isinstance(feature("label"), ClassLabel) else None
        labels = [
            _parse_label(value, f"row {path!r}", names) for value, path in zip(column("label"), paths, strict=True)
        ]
    elif defects is not None:
        for defect, path in zip(defects, paths, strict=True):
            if not defect:
                raise ValueError(f"Row {path!r} has no defect_type to derive its label from.")
        labels = [int(defect.strip() != NORMAL_DEFECT_TYPE) for defect in defects]
    elif "mask" in mapping:
        if column("mask") is None:
            raise RuntimeError("The mask column is needed to derive labels but was not read.")
        labels = [
            0 if mask is None else int(to_mask_array(decode_image_value(mask, path), f"mask of {path}").any())
            for mask, path in zip(masks, paths, strict=True)
        ]
    else:
        raise ValueError(
            f"{reference} has no label, defect_type or mask column to derive labels from; name one in column_mapping."
        )
    defects = defects or [None] * len(indices)
    columns = {
        "label": labels,
        "class_name": _strings(column("class_name"), feature("class_name"), mapping.get("class_name", ""), paths)
        or [class_name] * len(indices),
        "defect_type": [
            _defect_type_for(label, defect, f"Row {path!r}")
            for label, defect, path in zip(labels, defects, paths, strict=True)
        ],
        "path": paths,
    }
    if encode_masks:
        columns["mask"] = [None if mask is None else ImageFeature().encode_example(mask) for mask in masks]
    return columns


def _is_keepable_mask_column(dataset: Dataset, column: str) -> bool:
    """Whether ``column`` can serve as the schema's ``mask`` column as it is (renamed and cast, not rewritten).

    That is the case for a ``datasets.Image`` column whose rows are either null ("no mask") or hold bytes or a
    non-empty path. Only the arrow validity bitmaps and the ``path`` strings are read, never the image bytes.

    Args:
        dataset: The source dataset.
        column: Its mask column.

    Returns:
        True when the column can be kept.
    """
    if not isinstance(dataset.features.get(column), ImageFeature):
        return False
    for table in dataset.select_columns([column]).with_format("arrow").iter(batch_size=_BATCH_ROWS):
        values = table.column(column)
        no_bytes = pc.is_null(pc.struct_field(values, "bytes"))
        no_path = pc.fill_null(pc.equal(pc.struct_field(values, "path"), ""), True)
        if pc.any(pc.and_(pc.is_valid(values), pc.and_(no_bytes, no_path))).as_py():
            return False  # an empty but non-null entry: it must become null, so the column is rewritten
    return True


def _check_image_column(features: Mapping[str, Any], mapping: Mapping[str, str], name: str) -> None:
    """Refuse an image (or mask) column of numbers: ``Image()`` cannot read it (Arrow's cast error would not say so).

    Raises:
        ValueError: Names the dataset, the column, its type and what an image column holds.
    """
    for ours in ("image", "mask"):
        column = mapping.get(ours)
        feature = features.get(column) if column is not None else None
        if isinstance(feature, Value) and feature.dtype not in ("string", "large_string", "binary", "large_binary"):
            raise ValueError(
                f"{name!r}: the {ours} column {column!r} holds {feature.dtype} values, not images. An image column "
                "holds images (datasets.Image), file paths (strings) or encoded bytes; if another column holds the "
                f"images, name it with column_mapping={{'{ours}': '<column>'}}."
            )


def load_hub_dataset(
    name_or_path: str | os.PathLike,
    split: str = "test",
    column_mapping: Mapping[str, str] | None = None,
    class_name: str = "object",
    streaming: bool = False,
    verify: bool = False,
    **load_kwargs: Any,
) -> Dataset | IterableDataset:
    """Load a dataset with ``datasets`` and bring it into :data:`~faprompt_hf.data.ANOMALY_FEATURES`.

    ``name_or_path`` may be a Hub id, a local folder of data files (parquet, imagefolder, ...), a builder name with
    ``data_files``/``data_dir`` in ``load_kwargs`` (``"parquet"``, ``"imagefolder"``), or a folder written by
    ``save_to_disk`` (opened with ``load_from_disk``). Columns are derived as follows:

    * ``image`` is required; ``mask`` is optional (empty strings and nulls mean "no mask").
    * ``label`` is read as 0/1, True/False or a word (``normal``/``good``, ``anomaly``/``anomalous``/``defect``;
      ``ClassLabel`` columns by their names). When missing it is ``defect_type != "good"``, else whether the
      mask has any pixel > 0 (this decodes the masks).
    * ``defect_type`` defaults to ``"good"``/``"anomaly"`` by label, ``class_name`` to ``class_name``, ``path`` to
      ``"<name_or_path>[<split>][<index>]"``.
    * Other columns are dropped. Image data is not decoded or copied: the image column, and a mask column that is
      a ``datasets.Image`` column, are kept as they are (renamed, cast to ``Image()``); a mask column of path strings
      becomes a column of paths. Only a mask column of another kind (raw bytes, ...) or an ``Image`` mask column
      with empty non-null entries is re-encoded, which copies it into memory. Non-streaming: the small columns are
      derived in batches and added with ``add_column``; streaming: a lazy ``map``.

    Args:
        name_or_path: What to load (see above).
        split: The split to load.
        column_mapping: Our column name -> the dataset's column name, e.g. ``{"image": "img", "label": "is_bad"}``;
            schema columns present under their own name need no entry.
        class_name: ``class_name`` of every row when the dataset has no such column.
        streaming: Return an ``IterableDataset`` (nothing is downloaded or read up front).
        verify: Decode every image and mask now and check them (not with ``streaming``).
        **load_kwargs: Passed to ``datasets.load_dataset`` (``data_files``, ``data_dir``, ``revision``, ...).

    Returns:
        A ``Dataset`` (or ``IterableDataset`` when ``streaming``) in :data:`~faprompt_hf.data.ANOMALY_FEATURES`.

    Raises:
        ValueError: Bad ``column_mapping``, no image column, an unreadable label, a label that contradicts the
            defect type, or no way to derive labels (messages name the row).
    """
    if verify and streaming:
        raise ValueError("verify=True needs streaming=False; call verify_dataset() on the stream yourself.")
    name = os.fspath(name_or_path)
    dataset = _open(name, split, streaming, load_kwargs)
    features = dataset.features or {}
    mapping = _resolve_mapping(dataset.column_names or list(features), column_mapping, name)
    _check_image_column(features, mapping, name)
    normalise = partial(
        _normalise_batch, mapping=mapping, features=features, reference=f"{name}[{split}]", class_name=class_name
    )
    if isinstance(dataset, IterableDataset):
        return _normalise_stream(dataset, mapping, normalise)
    images = _normalise_table(dataset, mapping, normalise)
    logger.info("Loaded %d rows of %s[%s]", len(images), name, split)
    if verify:
        verify_dataset(images)
    return images


def _normalise_stream(
    dataset: IterableDataset, mapping: dict[str, str], normalise: Callable[..., dict]
) -> IterableDataset:
    """A streamed dataset in the schema: its columns renamed, then normalised batch by batch as it is read."""
    sources = sorted({theirs for ours, theirs in mapping.items() if ours != "image"})
    renamed = dataset.select_columns(sorted({mapping["image"], *sources}))
    if mapping["image"] != "image":
        renamed = renamed.rename_column(mapping["image"], "image")
    renamed = renamed.rename_columns({theirs: _SOURCE_PREFIX + theirs for theirs in sources})
    for column, feature in (renamed.features or {}).items():
        if isinstance(feature, ImageFeature):
            renamed = renamed.cast_column(column, ImageFeature(decode=False))
    normalised = renamed.map(
        normalise,
        batched=True,
        with_indices=True,
        remove_columns=[_SOURCE_PREFIX + theirs for theirs in sources],
    )
    return normalised.cast(ANOMALY_FEATURES)


def _normalise_table(dataset: Dataset, mapping: dict[str, str], normalise: Callable[..., dict]) -> Dataset:
    """A map-style dataset in the schema, without decoding the images.

    The small columns are normalised in batches; the image (and a mask column that can be kept as it is) is cast in
    place.
    """
    mask_source = mapping.get("mask")
    keep_mask = (
        mask_source is not None and mask_source != mapping["image"] and _is_keepable_mask_column(dataset, mask_source)
    )
    # the mask values are read only when they are re-encoded or needed to derive the labels
    read_mask = mask_source is not None and (not keep_mask or not {"label", "defect_type"} & set(mapping))
    small_sources = sorted(
        {theirs for ours, theirs in mapping.items() if ours not in ("image", "mask")}
        | ({mask_source} if read_mask else set())
    )
    small = dataset.select_columns(small_sources).rename_columns(
        {theirs: _SOURCE_PREFIX + theirs for theirs in small_sources}
    )
    for column, feature in small.features.items():
        if isinstance(feature, ImageFeature):
            small = small.cast_column(column, ImageFeature(decode=False))
    columns: dict[str, list[Any]] = {}
    for start in range(0, max(len(dataset), 1), _BATCH_ROWS):
        stop = min(start + _BATCH_ROWS, len(dataset))
        batch = small[start:stop] if small_sources else {}
        part = normalise(batch, list(range(start, stop)), encode_masks=not keep_mask)
        for column, values in part.items():
            columns.setdefault(column, []).extend(values)
    kept = {mapping["image"]: "image", **({mask_source: "mask"} if keep_mask else {})}
    images = dataset.select_columns(list(kept))
    renames = {theirs: ours for theirs, ours in kept.items() if theirs != ours}
    if renames:
        images = images.rename_columns(renames)
    for column in kept.values():
        images = images.cast_column(column, ANOMALY_FEATURES[column])
    for column in ("mask", "label", "class_name", "defect_type", "path"):
        if column not in kept.values():
            images = images.add_column(column, columns[column], feature=ANOMALY_FEATURES[column])
    return images

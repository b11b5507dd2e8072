# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""Turning dataset rows into model batches with the FAPrompt processor, lazily and with errors naming the row.

Two ways to batch a dataset in :data:`~faprompt_hf.data.ANOMALY_FEATURES`:

* ``DataLoader(defer_decoding(dataset), batch_size=8, collate_fn=FAPromptCollator(processor))`` for a ``Dataset``
  or an ``IterableDataset`` (``dataset.to_iterable_dataset(num_shards=...)``, or ``streaming=True`` loaders).
* ``DataLoader(with_processor_transform(dataset, processor), batch_size=8)``: rows come out already processed (one
  processor call per batch, through ``Dataset.__getitems__``), with the default ``collate_fn``.

Both decode images in the worker processes, only when a row is read; both work with ``accelerate`` (which shards
map-style datasets by sampler; use ``datasets.distributed.split_dataset_by_node`` for an ``IterableDataset``).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from datasets import Dataset

from ..image_utils import to_mask_array, to_rgb_image
from .schema import _check_mask, _is_missing, _parse_label, decode_image_value, defer_decoding

__all__ = ["FAPromptCollator", "with_processor_transform"]


class FAPromptCollator:
    """Process a list of dataset rows into a batch of tensors.

    Each row is a mapping with ``image`` (PIL image, array, file path or undecoded ``{"bytes", "path"}`` dict),
    optional ``mask`` (same kinds, or ``None``), ``label`` (0/1 or a label word) and optionally ``class_name``,
    ``defect_type`` and ``path``. Images of any mode are converted by ``to_rgb_image`` (16-bit scaled by 255/65535,
    palette, grayscale, RGBA and CMYK converted); masks are binarised (> 0) by ``to_mask_array``.

    Errors name the row's ``path``: an image or mask that cannot be decoded, a mask whose size differs from its
    image (unless ``resize_mismatched_masks``), a normal row whose mask marks anomalous pixels, an unreadable label.

    Args:
        processor: A callable such as ``FAPromptImageProcessor`` or ``FAPromptProcessor``, called as
            ``processor(images=[PIL RGB, ...], masks=[bool (H, W) array or None, ...], return_tensors="pt")`` and
            returning ``pixel_values`` (B, 3, S, S) and ``masks`` (B, S, S).
        resize_mismatched_masks: Resize masks whose size differs from their image (passed on to the processor)
            instead of raising.

    Example:
        ```python
        collator = FAPromptCollator(FAPromptImageProcessor(size=518))
        loader = DataLoader(defer_decoding(load_mvtec_ad(root)), batch_size=8, collate_fn=collator, num_workers=2)
        ```
    """

    def __init__(self, processor: Any, resize_mismatched_masks: bool = False) -> None:
        self.processor = processor
        self.resize_mismatched_masks = resize_mismatched_masks

    def __call__(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Decode, check and process a batch of rows.

        Args:
            rows: B dataset rows.

        Returns:
            ``pixel_values`` float (B, 3, S, S), ``masks`` float (B, S, S) in {0, 1} (all zero for rows without
            mask), ``labels`` long (B,), ``mask_valid`` bool (B,) (False for anomalous rows without a mask, whose
            all-zero mask is not ground truth, and, with a warning naming the row, for anomalous rows whose mask
            marks no pixel or whose marked pixels vanish when resized to S), and the lists ``class_names``,
            ``defect_types`` and ``paths``.

        Raises:
            ValueError: An empty batch, or a bad row (the message names the row's path).
            FileNotFoundError: A row's file is missing.
        """
        if not rows:
            raise ValueError("FAPromptCollator got an empty batch.")
        images, masks, labels, valid, paths = [], [], [], [], []
        for index, row in enumerate(rows):
            source = str(row.get("path") or f"batch row {index}")
            if "image" not in row or "label" not in row:
                raise ValueError(f"Row {source!r} lacks 'image' or 'label'; its keys are {sorted(row)}.")
            image = to_rgb_image(decode_image_value(row["image"], source), source)
            mask = None
            if not _is_missing(row.get("mask")):
                mask = to_mask_array(decode_image_value(row["mask"], source), f"mask of {source}")
            label = _parse_label(row["label"], f"row {source!r}")
            if mask is not None:
                _check_mask(mask, image.size, label, source, resize_ok=self.resize_mismatched_masks)
                if label == 1 and not mask.any():
                    warnings.warn(
                        f"Row {source!r} is labelled anomalous but its mask marks no pixel: it is not ground truth, "
                        "so the row is marked mask_valid=False (training refuses it). Give its real mask, or drop "
                        "the row.",
                        UserWarning,
                        stacklevel=2,
                    )
                    mask = None
            images.append(image)
            masks.append(mask)
            labels.append(label)
            valid.append(mask is not None or label == 0)
            paths.append(source)
        options = {"resize_mismatched_masks": True} if self.resize_mismatched_masks else {}
        try:
            features = self.processor(images=images, masks=masks, return_tensors="pt", **options)
        except ValueError as error:
            raise ValueError(f"The processor rejected the batch {paths}: {error}") from error
        for index, (label, mask) in enumerate(zip(labels, masks, strict=True)):
            if label == 1 and mask is not None and not bool(features["masks"][index].any()):
                size = tuple(features["masks"].shape[-2:])
                warnings.warn(
                    f"Row {paths[index]!r}: its mask's {int(mask.sum())} anomalous pixel(s) vanish when the mask is "
                    f"resized from {mask.shape[1]}x{mask.shape[0]} to {size[1]}x{size[0]}: the row is marked "
                    "mask_valid=False (training refuses it). Train at a larger image_size, or drop the row.",
                    UserWarning,
                    stacklevel=2,
                )
                valid[index] = False
        return {
            "pixel_values": features["pixel_values"],
            "masks": features["masks"],
            "labels": torch.tensor(labels, dtype=torch.long),
            "mask_valid": torch.tensor(valid, dtype=torch.bool),
            "class_names": [str(row.get("class_name", "")) for row in rows],
            "defect_types": [str(row.get("defect_type", "")) for row in rows],
            "paths": paths,
        }


class _BatchTransform:
    """A ``Dataset.with_transform`` function: turns a column batch into rows and runs the collator on them."""

    def __init__(self, collator: FAPromptCollator) -> None:
        self.collator = collator

    def __call__(self, batch: dict[str, list[Any]]) -> dict[str, Any]:
        size = len(next(iter(batch.values())))
        return self.collator([{name: values[index] for name, values in batch.items()} for index in range(size)])


def with_processor_transform(dataset: Dataset, processor: Any, resize_mismatched_masks: bool = False) -> Dataset:
    """Make a dataset whose rows come out processed, decoding lazily in ``__getitem__``.

    ``dataset[i]`` gives ``pixel_values`` (3, S, S), ``masks`` (S, S), ``labels`` (), ``mask_valid`` (), and the
    strings ``class_names``, ``defect_types``, ``paths`` of that row; a ``DataLoader`` with the default
    ``collate_fn`` stacks them into the :class:`FAPromptCollator` batch. Errors name the row's path.

    Args:
        dataset: A ``Dataset`` in :data:`~faprompt_hf.data.ANOMALY_FEATURES`.
        processor: See :class:`FAPromptCollator`.
        resize_mismatched_masks: See :class:`FAPromptCollator`.

    Returns:
        A new view of the dataset (``with_transform``; the original is unchanged).
    """
    return defer_decoding(dataset).with_transform(_BatchTransform(FAPromptCollator(processor, resize_mismatched_masks)))

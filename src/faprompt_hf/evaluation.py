# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""Zero-shot evaluation of an [`FAPromptModel`] on a dataset, one process or many (``accelerate``).

The default protocol is the one of the released FAPrompt evaluation (method §7), which produced the published
table: images resized to the model's ``image_size`` (518) with bicubic filtering, anomaly maps smoothed with the
model's ``gaussian_sigma`` (10), metrics computed per class and then averaged over classes, image AP step-wise (as
scikit-learn), pixel AUROC over all pixels of a class, and AUPRO with FPR limit 0.3 in the ``"original"`` definition
(200 thresholds, min-max rescaled FPRs; see :mod:`faprompt_hf.metrics`). ``aupro="exact"`` gives the MVTec AD
definition instead.

Memory: the pixel metrics of a class need all its maps and masks at once. Maps are kept as float32 and masks as bool
at the evaluation resolution S (5 bytes per pixel, 1,341,620 bytes per image at 518 px), only on the main process, and
only until the last image of their class has been scored (images are visited class by class): memory follows the
largest class, not the dataset. ``pixel_metrics_size`` pools maps (mean) and masks (max) down to a smaller side
before they are kept, for very large classes.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from datasets import Dataset, IterableDataset
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers.utils import logging

from .data import FAPromptCollator, defer_decoding
from .data.dispatch import DATASET_FORMATS
from .file_utils import atomic_write
from .image_processing_faprompt import FAPromptImageProcessor
from .metrics import (
    AUPRO_FPR_LIMIT,
    AUPRO_ORIGINAL_THRESHOLDS,
    MEAN_KEY,
    MIN_POOLED_SIDE,
    PIXEL_METRIC_KEYS,
    TABLE_KEYS,
    check_class_names,
    compute_per_class_metrics,
    format_metrics_table,
    mean_over_classes,
)
from .modeling_faprompt import FAPromptModel, check_gaussian_sigma
from .processing_faprompt import FAPromptProcessor
from .visualization import comparison_grid

if TYPE_CHECKING:
    from accelerate import Accelerator

logger = logging.get_logger(__name__)

__all__ = [
    "DATASET_FORMATS",
    "DEFAULT_AUPRO",
    "EvaluationResult",
    "evaluate_model",
    "load_evaluation_model",
    "pixel_bytes_per_image",
    "save_heatmaps",
]

DEFAULT_AUPRO: Literal["original"] = "original"
"""AUPRO definition of the default protocol: the released evaluation's (200 thresholds, rescaled FPRs)."""

# DATASET_FORMATS (from faprompt_hf.data.dispatch) and AUPRO_FPR_LIMIT / AUPRO_ORIGINAL_THRESHOLDS (from
# faprompt_hf.metrics, where they are defined) stay importable from this module.


def pixel_bytes_per_image(size: int) -> int:
    """Bytes the pixel metrics keep per image: a float32 map and a bool mask of ``size`` x ``size``.

    Args:
        size: Side of the maps kept (the evaluation size, or ``pixel_metrics_size``).

    Returns:
        ``5 * size * size`` (1,341,620 at 518 px, 327,680 at 256 px).
    """
    return 5 * size * size


# ----------------------------------------------------------------------------------------------------------------------
# Results
# ----------------------------------------------------------------------------------------------------------------------


def _json_number(value: float) -> float | None:
    """NaN and infinities become ``None`` (JSON ``null``) so the file stays standard JSON."""
    return float(value) if math.isfinite(value) else None


@dataclass
class EvaluationResult:
    """Metrics of one evaluation, with the per-image scores they were computed from.

    Attributes:
        metrics: ``{class: {metric: value}}`` in dataset order, then ``"mean"``: the mean over classes of each metric
            (NaN skipped; F1 thresholds are per class and not averaged). Values are fractions in [0, 1].
        table: The metrics as a markdown table (percentages), classes then the mean row.
        protocol: How the numbers were computed: ``image_size``, ``gaussian_sigma``, ``aupro``, ``aupro_fpr_limit``,
            ``aupro_thresholds``, ``pixel_metrics_size``, ``pixel_metrics_missing`` (``{class: why}`` for the classes
            evaluated image-level only because no anomalous image of theirs has a mask), ``aggregation``,
            ``num_images``, ``num_classes``.
        image_scores: Image anomaly scores in dataset order (N,), float32.
        labels: Image labels in dataset order (N,), 0 normal and 1 anomalous.
        class_names: Class of each image (N,).
        paths: Source path of each image (N,).
        heatmaps: ``{dataset index: anomaly map}`` for the images chosen by ``heatmaps_per_class``; float32 maps at the
            resolution the pixel metrics used (S x S, or ``pixel_metrics_size``).
    """

    metrics: dict[str, dict[str, float]]
    table: str
    protocol: dict[str, Any]
    image_scores: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    paths: list[str]
    heatmaps: dict[int, np.ndarray] = field(default_factory=dict)

    @property
    def metric_keys(self) -> list[str]:
        """Metric names present in any row, in table order (table metrics first, then F1 thresholds)."""
        present = dict.fromkeys(key for row in self.metrics.values() for key in row)
        ordered = [key for key in TABLE_KEYS if key in present]
        return ordered + [key for key in present if key not in ordered]

    def to_dict(self) -> dict[str, Any]:
        """The protocol and the metrics as standard-JSON data (NaN becomes ``None``)."""
        return {
            "protocol": dict(self.protocol),
            "metrics": {
                name: {key: _json_number(value) for key, value in row.items()} for name, row in self.metrics.items()
            },
        }

    def save(self, output_dir: str | os.PathLike, extra: Mapping[str, Any] | None = None) -> dict[str, Path]:
        """Write ``metrics.json``, ``metrics.csv``, ``metrics.md`` and ``image_scores.csv`` into ``output_dir``.

        Each file is written to a temporary name and renamed (:func:`~faprompt_hf.file_utils.atomic_write`), so a
        failure (full disk, file-size limit, a killed process) leaves the previous version of that file intact.

        Args:
            output_dir: Folder to write to (created if missing).
            extra: Additional JSON-serialisable run information (model, dataset, ...) stored under ``"run"`` in
                ``metrics.json``.

        Returns:
            ``{"json": path, "csv": path, "markdown": path, "scores": path}``.

        Raises:
            OSError: Writing failed (the message names the file; the previous version is intact).
        """
        paths = write_metrics_json(output_dir, self.to_dict(), extra)
        keys = self.metric_keys
        with atomic_write(paths["csv"]) as handle:
            writer = csv.writer(handle)
            writer.writerow(["class", *keys])
            for name, row in self.metrics.items():
                writer.writerow([name, *(repr(float(row.get(key, math.nan))) for key in keys)])
        with atomic_write(paths["markdown"]) as handle:
            handle.write(self.table + "\n")
        with atomic_write(paths["scores"]) as handle:
            writer = csv.writer(handle)
            writer.writerow(["index", "path", "class_name", "label", "score"])
            for index, (path, name, label, score) in enumerate(
                zip(self.paths, self.class_names, self.labels.tolist(), self.image_scores.tolist(), strict=True)
            ):
                writer.writerow([index, path, name, label, repr(float(score))])
        return paths


# ----------------------------------------------------------------------------------------------------------------------
# Streaming per-class accumulation (main process only)
# ----------------------------------------------------------------------------------------------------------------------


class _ClassAccumulator:
    """Collects scores, maps and masks per class and computes a class's metrics as soon as it is complete.

    Maps are kept in dataset order within each class whatever order they arrive in, so the metrics do not depend on
    the number of processes or the batch size.
    """

    def __init__(
        self,
        class_names: Sequence[str],
        labels: Sequence[int],
        aupro: str,
        pixel_metrics: bool,
        heatmap_indices: set[int],
    ) -> None:
        self.class_list = list(dict.fromkeys(class_names))
        ids = {name: position for position, name in enumerate(self.class_list)}
        self.class_of = np.asarray([ids[name] for name in class_names], dtype=np.int64)
        self.remaining = np.bincount(self.class_of, minlength=len(self.class_list))
        self.aupro = aupro
        self.pixel_metrics = pixel_metrics
        self.heatmap_indices = heatmap_indices
        self.scores = np.full(len(class_names), np.nan, dtype=np.float32)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.seen = np.zeros(len(class_names), dtype=bool)
        self.pixel_items: dict[int, list[tuple[int, np.ndarray, np.ndarray]]] = {}
        self.results: dict[int, dict[str, float]] = {}
        self.heatmaps: dict[int, np.ndarray] = {}
        self.pixel_notes: dict[str, str] = {}

    def add(
        self,
        indices: np.ndarray,
        scores: np.ndarray,
        maps: np.ndarray | None,
        masks: np.ndarray | None,
        valid: np.ndarray,
    ) -> None:
        """Add one gathered batch: dataset indices, scores and mask validity (B,); maps and masks (B, P, P)."""
        for row, index in enumerate(indices.tolist()):
            if self.seen[index]:
                raise RuntimeError(f"Image {index} was scored twice; the data loader must visit each image once.")
            self.seen[index] = True
            self.scores[index] = scores[row]
            if maps is not None and index in self.heatmap_indices:
                self.heatmaps[index] = maps[row].copy()
            class_id = int(self.class_of[index])
            if self.pixel_metrics and valid[row]:
                self.pixel_items.setdefault(class_id, []).append((index, maps[row].copy(), masks[row].astype(bool)))
            self.remaining[class_id] -= 1
            if self.remaining[class_id] == 0:
                self._finish(class_id)

    def _finish(self, class_id: int) -> None:
        """Compute the metrics of a complete class and free its maps."""
        name = self.class_list[class_id]
        members = np.flatnonzero(self.class_of == class_id)
        names = [name] * len(members)
        scores, labels = self.scores[members], self.labels[members]
        items = sorted(self.pixel_items.pop(class_id, []), key=lambda item: item[0])
        pixel_indices = np.asarray([item[0] for item in items], dtype=np.int64)
        has_pixel_truth = bool(items) and bool(self.labels[pixel_indices].any())
        if self.pixel_metrics and not has_pixel_truth and labels.any():
            self.pixel_notes[name] = "no anomalous image of this class has a mask (image-level labels only)"
            logger.warning("Class %r: no anomalous image has a mask, so its pixel metrics are skipped.", name)
        if not has_pixel_truth:
            self.results[class_id] = compute_per_class_metrics(names, scores, labels, aupro=self.aupro)[name]
            return
        maps = np.stack([item[1] for item in items])
        masks = np.stack([item[2] for item in items])
        del items
        if len(pixel_indices) == len(members):  # every image has pixel ground truth: one call
            self.results[class_id] = compute_per_class_metrics(names, scores, labels, maps, masks, self.aupro)[name]
            return
        result = compute_per_class_metrics(names, scores, labels, aupro=self.aupro)[name]
        pixel = compute_per_class_metrics(
            [name] * len(pixel_indices), self.scores[pixel_indices], self.labels[pixel_indices], maps, masks, self.aupro
        )[name]
        result.update({key: pixel[key] for key in PIXEL_METRIC_KEYS if key in pixel})
        self.results[class_id] = result

    def metrics(self) -> dict[str, dict[str, float]]:
        """Per-class metrics in dataset order, then the mean row."""
        missing = int(self.remaining.sum())
        if missing:
            raise RuntimeError(f"{missing} images were never scored; every image of the dataset must be visited.")
        per_class = {self.class_list[class_id]: self.results[class_id] for class_id in range(len(self.class_list))}
        per_class[MEAN_KEY] = mean_over_classes(per_class)
        return per_class


# ----------------------------------------------------------------------------------------------------------------------
# Data loading
# ----------------------------------------------------------------------------------------------------------------------


class _IndexedRows(torch.utils.data.Dataset):
    """Rows of a ``datasets.Dataset`` in a given order, with their dataset index; images stay undecoded."""

    def __init__(self, dataset: Dataset, order: Sequence[int]) -> None:
        self.dataset = defer_decoding(dataset)
        self.order = [int(index) for index in order]

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, position: int) -> tuple[int, dict[str, Any]]:
        index = self.order[position]
        return index, self.dataset[index]


class _IndexedCollator:
    """[`FAPromptCollator`] that also returns the dataset indices of the batch (``indices``, long (B,))."""

    def __init__(self, collator: FAPromptCollator) -> None:
        self.collator = collator

    def __call__(self, items: Sequence[tuple[int, Mapping[str, Any]]]) -> dict[str, Any]:
        batch = self.collator([row for _, row in items])
        batch["indices"] = torch.tensor([index for index, _ in items], dtype=torch.long)
        return batch


def _heatmap_indices(class_names: Sequence[str], labels: Sequence[int], per_class: int) -> set[int]:
    """The first ``per_class`` images of each class in dataset order, anomalous images first."""
    chosen: set[int] = set()
    if per_class <= 0:
        return chosen
    for name in dict.fromkeys(class_names):
        members = [index for index, other in enumerate(class_names) if other == name]
        ordered = [i for i in members if labels[i] == 1] + [i for i in members if labels[i] != 1]
        chosen.update(ordered[:per_class])
    return chosen


def _pool_pixels(maps: torch.Tensor, masks: torch.Tensor, size: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Down-sample maps (B, S, S) by mean pooling and masks (B, S, S) by max pooling to (B, size, size).

    This is ``pixel_metrics_size``: pooling *to a side*, per batch, on the model's device and before the outputs are
    gathered, so that neither the gathered tensors nor the per-class buffers hold full-resolution maps. Any side in
    [2, S] works (adaptive windows, which overlap by a pixel when ``size`` does not divide S). It is distinct from
    ``downsample`` of :func:`~faprompt_hf.metrics.compute_anomaly_metrics`, which pools numpy arrays that are already
    in memory *by an integer factor* (edges padded), and cannot bound what is gathered and kept here.
    """
    if size is None or size == maps.shape[-1]:
        return maps, masks
    pooled_maps = F.adaptive_avg_pool2d(maps[:, None], size)[:, 0]
    pooled_masks = F.adaptive_max_pool2d(masks[:, None].float(), size)[:, 0]
    return pooled_maps, pooled_masks


# ----------------------------------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------------------------------


def evaluate_model(
    model: FAPromptModel,
    dataset: Dataset,
    processor: FAPromptImageProcessor | FAPromptProcessor | None = None,
    *,
    batch_size: int = 8,
    aupro: Literal["exact", "original"] = DEFAULT_AUPRO,
    accelerator: Accelerator | None = None,
    pixel_metrics: bool = True,
    pixel_metrics_size: int | None = None,
    image_size: int | None = None,
    gaussian_sigma: float | None = None,
    num_workers: int = 0,
    resize_mismatched_masks: bool = False,
    heatmaps_per_class: int = 0,
    show_progress: bool = False,
    sigma: float | None = None,
    normal_reference_class: str | None = None,
) -> EvaluationResult:
    """Score every image of ``dataset`` and compute the per-class and mean anomaly-detection metrics.

    With an ``accelerator``, the data loader is sharded over its processes (``accelerator.prepare``) and the outputs
    are gathered with ``gather_for_metrics``; the main process computes the metrics and every process returns the same
    result. The model is moved to ``accelerator.device`` but not wrapped. Without one, everything runs in this process
    on the model's device.

    Args:
        model: The model (its ``image_size`` and ``gaussian_sigma`` set the default protocol).
        dataset: A map-style dataset in :data:`~faprompt_hf.data.ANOMALY_FEATURES` (any of the loaders' outputs).
        processor: An ``FAPromptImageProcessor`` or ``FAPromptProcessor`` (normalisation and filters); default: a new
            ``FAPromptImageProcessor``. Its size is replaced by the evaluation size.
        batch_size: Images per forward pass (per process).
        aupro: ``"original"`` (default; the released evaluation, 200 thresholds) or ``"exact"`` (MVTec AD).
        accelerator: An ``accelerate.Accelerator`` to shard the data over processes, or None.
        pixel_metrics: Compute pixel AUROC, AP, F1-max and AUPRO (needs the masks); False keeps no maps at all.
        pixel_metrics_size: Pool maps (mean) and masks (max) to this side before they are kept, to bound memory on very
            large classes (an approximation; None keeps the evaluation resolution, as the original protocol does).
            An integer in [2, S] (:data:`~faprompt_hf.metrics.MIN_POOLED_SIDE` to the evaluation size).
        image_size: Evaluation side S in pixels (default: ``model.config.image_size``, 518 for the released models);
            must be a multiple of the patch size.
        gaussian_sigma: Gaussian smoothing of the maps in pixels (default: ``model.config.gaussian_sigma``, 10),
            passed to ``forward`` (the model's config is not changed).
        num_workers: Data-loader worker processes that decode images.
        resize_mismatched_masks: Resize masks whose size differs from their image instead of raising.
        heatmaps_per_class: Keep the maps of this many images per class (anomalous first) in ``result.heatmaps``.
        show_progress: Show a progress bar on the main process.
        sigma: An alias of ``gaussian_sigma`` (earlier releases' name).
        normal_reference_class: The class of the model's normal-reference bank to compare every image with (passed
            to ``forward``; needed only when the bank holds several classes). Few-shot evaluation
            (:func:`faprompt_hf.few_shot.evaluate_few_shot`) sets one bank per class and evaluates each class with
            its own; without a bank the evaluation is zero-shot.

    Returns:
        An [`EvaluationResult`].

    Raises:
        TypeError: ``dataset`` is not a map-style ``datasets.Dataset``.
        ValueError: Bad sizes or options, or a bad row (the message names its path), e.g. an undecodable image or
            a normal image whose mask marks anomalous pixels.
    """
    if sigma is not None and gaussian_sigma is not None and sigma != gaussian_sigma:
        raise ValueError(f"Give gaussian_sigma or its alias sigma, not both ({gaussian_sigma!r} and {sigma!r}).")
    size, kept_size, sigma_used = _check_evaluation_arguments(
        model, dataset, aupro, batch_size, image_size, pixel_metrics_size, gaussian_sigma if sigma is None else sigma
    )
    class_names = [str(name) for name in dataset["class_name"]]
    if not class_names:
        raise ValueError("The dataset is empty.")
    check_class_names(class_names)  # before any inference: a class named "mean" would only fail once scored
    dataset_labels = [int(label) for label in dataset["label"]]
    heatmap_indices = _heatmap_indices(class_names, dataset_labels, heatmaps_per_class)

    loader, class_ids = _evaluation_loader(
        model, dataset, processor, class_names, size, batch_size, num_workers, resize_mismatched_masks
    )
    if accelerator is not None:
        model.to(accelerator.device)
        loader = accelerator.prepare(loader)
    is_main = accelerator is None or accelerator.is_main_process
    if is_main and pixel_metrics:
        largest = int(np.bincount(class_ids).max())
        logger.info(
            "Pixel metrics keep %d bytes per image (%d px); the largest class (%d images) needs %.1f MB.",
            pixel_bytes_per_image(kept_size),
            kept_size,
            largest,
            largest * pixel_bytes_per_image(kept_size) / 1e6,
        )
    accumulator = (
        _ClassAccumulator(class_names, dataset_labels, aupro, pixel_metrics, heatmap_indices) if is_main else None
    )
    keep_maps = pixel_metrics or bool(heatmap_indices)
    _score_batches(
        model,
        loader,
        accumulator,
        accelerator,
        sigma_used,
        keep_maps,
        pixel_metrics_size,
        show_progress and is_main,
        normal_reference_class,
    )
    data = _share_results(accumulator, accelerator)
    protocol = {
        "image_size": size,
        "gaussian_sigma": sigma_used,
        "aupro": aupro,
        "aupro_fpr_limit": AUPRO_FPR_LIMIT,
        "aupro_thresholds": AUPRO_ORIGINAL_THRESHOLDS if aupro == "original" else "all",
        "pixel_metrics": pixel_metrics,
        "pixel_metrics_size": pixel_metrics_size,
        "pixel_metrics_missing": data["pixel_notes"],
        "aggregation": "per class, then the mean over classes",
        "num_images": len(class_names),
        "num_classes": len(dict.fromkeys(class_names)),
    }
    return EvaluationResult(
        metrics=data["metrics"],
        table=format_metrics_table(data["metrics"]),
        protocol=protocol,
        image_scores=data["scores"],
        labels=data["labels"],
        class_names=class_names,
        paths=[str(path) for path in dataset["path"]],
        heatmaps=data["heatmaps"],
    )


def _check_evaluation_arguments(
    model: FAPromptModel,
    dataset: Dataset,
    aupro: str,
    batch_size: int,
    image_size: int | None,
    pixel_metrics_size: int | None,
    sigma: float | None,
) -> tuple[int, int, float]:
    """Check :func:`evaluate_model`'s options; returns the evaluation side, the kept map side and the sigma."""
    if isinstance(dataset, IterableDataset) or not isinstance(dataset, Dataset):
        raise TypeError(
            f"evaluate_model needs a map-style datasets.Dataset, got {type(dataset).__name__}; load hub datasets "
            "with streaming=False."
        )
    if aupro not in ("exact", "original"):
        raise ValueError(f"aupro must be 'exact' or 'original', got {aupro!r}.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    size, _ = model.config.check_input_size(model.config.image_size if image_size is None else image_size)
    if pixel_metrics_size is not None and (
        isinstance(pixel_metrics_size, bool)
        or int(pixel_metrics_size) != pixel_metrics_size
        or not MIN_POOLED_SIDE <= pixel_metrics_size <= size
    ):
        raise ValueError(
            f"pixel_metrics_size must be an integer in [{MIN_POOLED_SIDE}, {size}] (at most the evaluation size; "
            f"maps pooled to fewer than {MIN_POOLED_SIDE} pixels per side make the pixel metrics meaningless), got "
            f"{pixel_metrics_size!r}; leave it unset to keep the full resolution."
        )
    sigma_used = model.config.gaussian_sigma if sigma is None else check_gaussian_sigma(sigma)
    return size, pixel_metrics_size or size, float(sigma_used)


def _evaluation_loader(
    model: FAPromptModel,
    dataset: Dataset,
    processor: FAPromptImageProcessor | FAPromptProcessor | None,
    class_names: list[str],
    size: int,
    batch_size: int,
    num_workers: int,
    resize_mismatched_masks: bool,
) -> tuple[DataLoader, np.ndarray]:
    """The data loader and each row's class id (N,).

    The loader visits the images class by class (stable), so that each class completes, and frees its maps, before
    the next.
    """
    image_processor = getattr(processor, "image_processor", processor)
    if image_processor is None:
        image_processor = FAPromptImageProcessor.from_model_config(model.config, size)
    collator = _IndexedCollator(
        FAPromptCollator(partial(image_processor.preprocess, size=size), resize_mismatched_masks)
    )
    first_seen = {name: position for position, name in enumerate(dict.fromkeys(class_names))}
    class_ids = np.asarray([first_seen[name] for name in class_names], dtype=np.int64)
    class_order = np.argsort(class_ids, kind="stable")
    loader = DataLoader(
        _IndexedRows(dataset, class_order), batch_size=batch_size, num_workers=num_workers, collate_fn=collator
    )
    return loader, class_ids


def _score_batches(
    model: FAPromptModel,
    loader: DataLoader,
    accumulator: _ClassAccumulator | None,
    accelerator: Accelerator | None,
    sigma: float,
    keep_maps: bool,
    pixel_metrics_size: int | None,
    show_progress: bool,
    normal_reference_class: str | None = None,
) -> None:
    """Run the model over the loader (maps smoothed with ``sigma``) and feed the gathered outputs to the accumulator.

    The accumulator is the main process's; the other processes pass None. ``normal_reference_class`` goes to
    ``forward`` (the class of the normal-reference bank to compare with).
    """
    autocast = accelerator.autocast if accelerator is not None else contextlib.nullcontext
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        for batch in tqdm(loader, desc="Evaluating", disable=not show_progress):
            with torch.no_grad(), autocast():
                pixel_values = batch["pixel_values"].to(device=device, dtype=model.dtype)
                outputs = model(
                    pixel_values=pixel_values, gaussian_sigma=sigma, normal_reference_class=normal_reference_class
                )
            gathered = {
                "indices": batch["indices"].to(device),
                "scores": outputs.image_scores.float(),
                "valid": batch["mask_valid"].to(device=device, dtype=torch.uint8),
            }
            if keep_maps:
                maps, masks = _pool_pixels(outputs.anomaly_maps.float(), batch["masks"].to(device), pixel_metrics_size)
                gathered["maps"] = maps
                gathered["masks"] = (masks > 0.5).to(torch.uint8)
            if accelerator is not None:
                gathered = accelerator.gather_for_metrics(gathered)
            if accumulator is not None:
                arrays = {key: value.cpu().numpy() for key, value in gathered.items()}
                accumulator.add(
                    arrays["indices"],
                    arrays["scores"],
                    arrays.get("maps"),
                    arrays.get("masks"),
                    arrays["valid"].astype(bool),
                )
    finally:
        model.train(was_training)


def _share_results(accumulator: _ClassAccumulator | None, accelerator: Accelerator | None) -> dict[str, Any]:
    """The main process's metrics, scores, labels and heatmaps, broadcast to every process."""
    payload: list[Any] = [None]
    if accumulator is not None:
        payload = [
            {
                "metrics": accumulator.metrics(),
                "scores": accumulator.scores,
                "labels": accumulator.labels,
                "heatmaps": accumulator.heatmaps,
                "pixel_notes": accumulator.pixel_notes,
            }
        ]
    if accelerator is not None and accelerator.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        payload = broadcast_object_list(payload, from_process=0)
    return payload[0]


# ----------------------------------------------------------------------------------------------------------------------
# Loading models and datasets by name (used by examples/evaluate.py)
# ----------------------------------------------------------------------------------------------------------------------


def load_evaluation_model(
    model: str | os.PathLike | None = None,
    original_checkpoint: str | os.PathLike | None = None,
    clip: str | os.PathLike | None = None,
    **kwargs: Any,
) -> tuple[FAPromptModel, FAPromptImageProcessor]:
    """Load a model and its image processor, from a transformers checkpoint or an original ``epoch_N.pth``.

    Args:
        model: A hub id or local directory written by ``save_pretrained``.
        original_checkpoint: Instead, an original FAPrompt checkpoint, converted with
            :func:`~faprompt_hf.convert_original_checkpoint`.
        clip: The CLIP the original checkpoint was trained on (an OpenAI-format state-dict file, a transformers CLIP id
            or directory); needed with ``original_checkpoint``. With ``model``, for a compact checkpoint: the CLIP to
            use instead of the one its config names (e.g. a local copy of a CLIP it was trained on from a folder).
        **kwargs: Passed to ``FAPromptModel.from_pretrained`` (``revision``, ``dtype``, ...) or, with
            ``original_checkpoint``, as config overrides to the conversion.

    Returns:
        ``(model, image_processor)``: the model in eval mode and the checkpoint's image processor (a default
        ``FAPromptImageProcessor`` when the checkpoint has none). Normal references saved with the model are set
        aside with a warning: the evaluation protocol is zero-shot, and few-shot evaluation
        (:func:`~faprompt_hf.few_shot.evaluate_few_shot`, ``--k_shot``) draws its own from the dataset.

    Raises:
        ValueError: Neither or both of ``model`` and ``original_checkpoint``, or ``original_checkpoint`` without
            ``clip``.
    """
    if (model is None) == (original_checkpoint is None):
        raise ValueError("Give exactly one of model (hub id or directory) and original_checkpoint (epoch_N.pth).")
    if original_checkpoint is not None:
        if clip is None:
            raise ValueError("original_checkpoint needs clip: the CLIP weights it was trained on.")
        from .convert_original import convert_original_checkpoint

        loaded = convert_original_checkpoint(original_checkpoint, clip, **kwargs)
        return loaded.eval(), FAPromptImageProcessor.from_model_config(loaded.config)
    if clip is not None:
        kwargs["clip"] = os.fspath(clip)
    loaded = FAPromptModel.from_pretrained(model, **kwargs)
    try:
        image_processor = FAPromptImageProcessor.from_pretrained(model)
    except OSError:
        logger.info("%s has no image processor; using the default one.", model)
        image_processor = FAPromptImageProcessor.from_model_config(loaded.config)
    if loaded.normal_reference_classes:
        logger.warning(
            "%s holds normal references of %s; they are set aside: evaluation is zero-shot, and --k_shot K draws its "
            "references from the dataset (docs/few_shot.md).",
            model,
            loaded.normal_reference_classes,
        )
        loaded.clear_normal_references()
    return loaded.eval(), image_processor


# ----------------------------------------------------------------------------------------------------------------------
# Heatmaps
# ----------------------------------------------------------------------------------------------------------------------


def _file_name(name: str) -> str:
    """A class name made safe as a file name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "class"


def write_metrics_json(
    output_dir: str | os.PathLike, payload: dict[str, Any], extra: Mapping[str, Any] | None = None
) -> dict[str, Path]:
    """Create ``output_dir``, write ``metrics.json`` (``payload``, with ``extra`` under ``"run"``) atomically.

    The one layout of an evaluation's output folder, zero-shot (:meth:`EvaluationResult.save`) and few-shot alike.

    Returns:
        The paths of every file of the layout: ``{"json", "csv", "markdown", "scores"}`` (the others are the
        caller's to write).
    """
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": output / "metrics.json",
        "csv": output / "metrics.csv",
        "markdown": output / "metrics.md",
        "scores": output / "image_scores.csv",
    }
    if extra:
        payload = {**payload, "run": dict(extra)}
    with atomic_write(paths["json"]) as handle:
        handle.write(json.dumps(payload, indent=2) + "\n")
    return paths


def save_heatmaps(
    result: EvaluationResult, dataset: Dataset, output_dir: str | os.PathLike, tile_size: int = 224
) -> list[Path]:
    """Write one comparison grid per class (image | anomaly-map overlay | ground truth) for ``result.heatmaps``.

    The overlays of a class share one colour scale (the min and max over its shown maps), so rows can be compared.

    Args:
        result: An evaluation run with ``heatmaps_per_class > 0``.
        dataset: The dataset it was run on (the images and masks are read from it).
        output_dir: Folder for ``<class>.png`` (created if missing).
        tile_size: Side of each tile in pixels.

    Returns:
        The written files, in class order. Each is written to a temporary name and renamed
        (:func:`~faprompt_hf.file_utils.atomic_write`): a failure leaves the previous version intact.

    Raises:
        OSError: Writing failed (the message names the file).
    """
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    by_class: dict[str, list[int]] = {}
    for index in sorted(result.heatmaps):
        by_class.setdefault(result.class_names[index], []).append(index)
    written = []
    for name, indices in by_class.items():
        images, masks, titles = [], [], []
        for index in indices:
            row = dataset[index]
            images.append(row["image"])
            masks.append(np.zeros((1, 1), dtype=np.uint8) if row["mask"] is None else row["mask"])
            titles.append(
                f"{row['defect_type']} {Path(result.paths[index]).name}: score {float(result.image_scores[index]):.3f}"
            )
        maps = [result.heatmaps[index] for index in indices]
        low = float(min(anomaly_map.min() for anomaly_map in maps))
        high = float(max(anomaly_map.max() for anomaly_map in maps))
        grid = comparison_grid(
            images, maps, masks, titles=titles, tile_size=tile_size, normalize=(low, high) if high > low else False
        )
        path = output / f"{_file_name(name)}.png"
        with atomic_write(path, "wb") as handle:
            grid.save(handle, format="PNG")
        written.append(path)
    return written

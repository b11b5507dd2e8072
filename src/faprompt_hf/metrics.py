# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""Image- and pixel-level anomaly-detection metrics: AUROC, AP, F1-max and AUPRO.

Every threshold metric is read from one ranking of the scores: the normal (label 0) scores are sorted once, the
anomalous (label 1) scores are sorted once, and every quantity at a threshold ``t`` (how many normal scores are
``>= t``, how many are ``== t``) is found with :func:`numpy.searchsorted`. Tied scores are grouped into one threshold,
exactly as scikit-learn does, so :func:`auroc` and :func:`average_precision` equal
``sklearn.metrics.roc_auc_score`` and ``sklearn.metrics.average_precision_score`` (to floating-point rounding).

AUPRO (area under the per-region-overlap curve) comes in two definitions, chosen with ``method``:

* ``"exact"``: the MVTec AD definition. The PRO/FPR curve over every distinct threshold, integrated with the trapezoid
  rule up to ``fpr_limit`` (the end point interpolated), divided by ``fpr_limit``.
* ``"original"``: the evaluation released with FAPrompt and AnomalyCLIP. The maps are binarised at ``num_thresholds``
  evenly spaced thresholds ``np.arange(min, max, (max - min) / num_thresholds)`` (``min``/``max`` over all maps; a map
  value counts as anomalous when it is strictly above the threshold), the points with FPR ``< fpr_limit`` are kept,
  their FPRs are min-max rescaled to [0, 1], and the trapezoid area under (rescaled FPR, PRO) is reported.

In both, PRO at a threshold is the mean over all ground-truth regions of all images (8-connected components of the
masks) of the fraction of the region above the threshold, and FPR is the fraction of all normal pixels above it.

A metric that is undefined for its input (no anomalous or no normal samples) is reported as ``float("nan")`` with a
:class:`UserWarning` naming it, never as an exception.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Union

import numpy as np
from scipy import ndimage

if TYPE_CHECKING:
    import torch

ArrayLike = Union[np.ndarray, "torch.Tensor", Sequence[float]]
AuproMethod = Literal["exact", "original"]

IMAGE_METRIC_KEYS: tuple[str, ...] = ("image_auroc", "image_ap", "image_f1_max", "image_f1_threshold")
PIXEL_METRIC_KEYS: tuple[str, ...] = (
    "pixel_auroc",
    "pixel_ap",
    "pixel_f1_max",
    "pixel_f1_threshold",
    "pixel_aupro",
)
TABLE_KEYS: tuple[str, ...] = (
    "image_auroc",
    "image_ap",
    "image_f1_max",
    "pixel_auroc",
    "pixel_ap",
    "pixel_f1_max",
    "pixel_aupro",
)
MEAN_KEY = "mean"

AUPRO_FPR_LIMIT = 0.3
"""False-positive rate up to which AUPRO is integrated (both definitions; the reference protocol's value)."""

AUPRO_ORIGINAL_THRESHOLDS = 200
"""Number of evenly spaced thresholds of the ``"original"`` AUPRO definition (the released evaluation's)."""

MIN_POOLED_SIDE = 2
"""Fewest pixels per side that pooled maps keep (``downsample``, ``pixel_metrics_size``): pooling a map to one
pixel makes every pixel metric an image metric and AUPRO meaningless."""

__all__ = [
    "AUPRO_FPR_LIMIT",
    "AUPRO_ORIGINAL_THRESHOLDS",
    "IMAGE_METRIC_KEYS",
    "MEAN_KEY",
    "MIN_POOLED_SIDE",
    "PIXEL_METRIC_KEYS",
    "TABLE_KEYS",
    "aupro",
    "auroc",
    "average_precision",
    "check_class_names",
    "compute_anomaly_metrics",
    "compute_per_class_metrics",
    "f1_max",
    "format_metrics_table",
    "max_downsample",
    "mean_over_classes",
    "precision_recall_curve",
    "roc_curve",
]

_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


# ----------------------------------------------------------------------------------------------------------------------
# Input conversion and validation
# ----------------------------------------------------------------------------------------------------------------------


def _to_numpy(value: Any, name: str) -> np.ndarray:
    """Turn a numpy array, torch tensor or nested sequence into a numpy array (tensors are detached, moved to CPU)."""
    if value is None:
        raise ValueError(f"{name} is None; give an array or tensor.")
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        tensor = value.detach().cpu()
        if tensor.is_floating_point() and tensor.element_size() < 4:
            tensor = tensor.float()  # numpy has no bfloat16; float16 is upcast like numpy inputs below
        return tensor.numpy()
    return np.asarray(value)


def _as_scores(value: Any, name: str, ndim: int) -> np.ndarray:
    """Validate real-valued scores of a given rank; keep float32/float64, upcast everything else."""
    array = _to_numpy(value, name)
    if array.ndim == 4 and ndim == 3 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != ndim:
        expected = "(N,)" if ndim == 1 else "(N, H, W)"
        raise ValueError(f"{name} must have shape {expected}; got shape {array.shape}.")
    if not (
        array.dtype == np.bool_ or np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)
    ):
        raise ValueError(f"{name} must hold real numbers; got dtype {array.dtype} (shape {array.shape}).")
    if array.dtype not in (np.float32, np.float64):
        array = array.astype(np.float32 if array.dtype == np.float16 else np.float64)
    finite = np.isfinite(array)
    if not finite.all():
        bad = int(array.size - np.count_nonzero(finite))
        raise ValueError(
            f"{name} (shape {array.shape}) contains {bad} NaN or infinite value(s); scores must be finite."
        )
    return array


def _as_binary(value: Any, name: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Validate labels or masks whose values are all 0 or 1 (or bool) and return them as a bool array."""
    array = _to_numpy(value, name)
    if shape is not None and len(shape) == 3 and array.ndim == 4 and array.shape[1] == 1:
        array = array[:, 0]
    if shape is not None and array.shape != shape:
        raise ValueError(f"{name} must have shape {shape} to match the scores; got shape {array.shape}.")
    if array.dtype == np.bool_:
        return array
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise ValueError(f"{name} must hold 0/1 values; got dtype {array.dtype} (shape {array.shape}).")
    positive = array == 1
    if not np.logical_or(positive, array == 0).all():
        others = np.unique(array[~np.logical_or(positive, array == 0)])[:5]
        raise ValueError(
            f"{name} (shape {array.shape}) must hold only 0 (normal) and 1 (anomalous); found other values such as "
            f"{others.tolist()}. Binarise it first (e.g. mask > 0)."
        )
    return positive


def _validate_image_inputs(
    scores: ArrayLike, labels: ArrayLike, names: tuple[str, str]
) -> tuple[np.ndarray, np.ndarray]:
    """Check one-dimensional scores and 0/1 labels of the same length."""
    score_array = _as_scores(scores, names[0], ndim=1)
    label_array = _to_numpy(labels, names[1])
    if label_array.shape != score_array.shape:
        raise ValueError(
            f"{names[0]} has shape {score_array.shape} but {names[1]} has shape {label_array.shape}; "
            "give one label per score."
        )
    return score_array, _as_binary(label_array, names[1])


def _validate_pixel_inputs(anomaly_maps: ArrayLike, masks: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Check (N, H, W) finite maps and (N, H, W) binary masks of the same shape (a singleton channel is dropped)."""
    map_array = _as_scores(anomaly_maps, "anomaly_maps", ndim=3)
    return map_array, _as_binary(masks, "masks", shape=map_array.shape)


def _pool(anomaly_maps: np.ndarray, masks: np.ndarray, factor: int) -> tuple[np.ndarray, np.ndarray]:
    """Average-pool maps and max-pool masks by ``factor`` (edges padded: maps by replication, masks with 0).

    Args:
        anomaly_maps: Maps of shape (N, H, W).
        masks: Boolean masks of shape (N, H, W).
        factor: Pooling window and stride.

    Returns:
        Maps and masks of shape (N, ceil(H / factor), ceil(W / factor)).
    """
    n, height, width = anomaly_maps.shape
    pad = ((0, 0), (0, -height % factor), (0, -width % factor))
    if pad[1][1] or pad[2][1]:
        anomaly_maps = np.pad(anomaly_maps, pad, mode="edge")
        masks = np.pad(masks, pad, mode="constant")
    out_height, out_width = anomaly_maps.shape[1] // factor, anomaly_maps.shape[2] // factor
    map_blocks = anomaly_maps.reshape(n, out_height, factor, out_width, factor)
    mask_blocks = masks.reshape(n, out_height, factor, out_width, factor)
    # One strided add per window offset: several times faster than a reduction over the two window axes.
    pooled_maps = np.zeros((n, out_height, out_width))
    pooled_masks = np.zeros((n, out_height, out_width), dtype=bool)
    for row in range(factor):
        for col in range(factor):
            pooled_maps += map_blocks[:, :, row, :, col]
            pooled_masks |= mask_blocks[:, :, row, :, col]
    return (pooled_maps / factor**2).astype(anomaly_maps.dtype), pooled_masks


def _undefined(metric: str, reason: str, context: str) -> float:
    """Warn that ``metric`` is undefined for this input and return NaN."""
    warnings.warn(f"{metric} is undefined{context}: {reason}; reporting nan.", UserWarning, stacklevel=4)
    return float("nan")


# ----------------------------------------------------------------------------------------------------------------------
# The ranking every threshold metric is read from
# ----------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Ranking:
    """Scores split by label and ranked; every threshold metric is read from it without sorting again.

    Attributes:
        negatives: Scores of the normal samples, ascending, shape (n,).
        values: Distinct scores of the anomalous samples, descending, shape (k,).
        counts: Number of anomalous samples at each of ``values``, int64, shape (k,).
        weights: Summed weights of the anomalous samples at each of ``values`` (float64, shape (k,)), or ``None``.
        below: Number of normal scores strictly below each of ``values``, int64, shape (k,).
        equal: Number of normal scores equal to each of ``values``, int64, shape (k,).
    """

    negatives: np.ndarray
    values: np.ndarray
    counts: np.ndarray
    weights: np.ndarray | None
    below: np.ndarray
    equal: np.ndarray

    @property
    def n_negative(self) -> int:
        """Number of normal samples."""
        return int(self.negatives.size)

    @property
    def n_positive(self) -> int:
        """Number of anomalous samples."""
        return int(self.counts.sum())

    def true_positives(self) -> np.ndarray:
        """Anomalous samples scoring ``>=`` each of ``values``, int64, shape (k,)."""
        return np.cumsum(self.counts)

    def false_positives(self) -> np.ndarray:
        """Normal samples scoring ``>=`` each of ``values``, int64, shape (k,)."""
        return self.n_negative - self.below


def _rank(scores: np.ndarray, positive: np.ndarray, positive_weights: np.ndarray | None = None) -> _Ranking:
    """Split scores by label and rank them.

    Args:
        scores: Scores of shape (M,).
        positive: Boolean labels of shape (M,), True for anomalous.
        positive_weights: Optional weights of the anomalous samples, in the order of ``scores[positive]``, shape (P,).

    Returns:
        The ranking (see :class:`_Ranking`).
    """
    negatives = np.sort(scores[~positive])
    anomalous = scores[positive]
    if positive_weights is None:
        ordered = np.sort(anomalous)[::-1]
        ordered_weights = None
    else:
        order = np.argsort(anomalous)[::-1]
        ordered = anomalous[order]
        ordered_weights = positive_weights[order]
    starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1]))) if ordered.size else np.zeros(0, int)
    values = ordered[starts]
    counts = np.diff(np.append(starts, ordered.size)).astype(np.int64)
    weights = None
    if ordered_weights is not None:
        weights = np.add.reduceat(ordered_weights, starts) if starts.size else np.zeros(0)
    below = np.searchsorted(negatives, values, side="left").astype(np.int64)
    equal = np.searchsorted(negatives, values, side="right").astype(np.int64) - below
    return _Ranking(negatives, values, counts, weights, below, equal)


def _auroc(ranking: _Ranking, name: str, context: str) -> float:
    """Area under the ROC curve (ties count one half), from a ranking."""
    n_pos, n_neg = ranking.n_positive, ranking.n_negative
    if n_pos == 0 or n_neg == 0:
        return _undefined(name, "it needs both anomalous and normal samples", context)
    # Mann-Whitney U statistic, doubled so it stays an exact integer: pairs ranked right count 2, ties count 1.
    doubled_u = int(np.dot(ranking.counts, 2 * ranking.below + ranking.equal))
    return doubled_u / (2 * n_pos * n_neg)


def _average_precision(ranking: _Ranking, name: str, context: str) -> float:
    """Step-wise average precision (scikit-learn's definition), from a ranking."""
    n_pos = ranking.n_positive
    if n_pos == 0:
        return _undefined(name, "it needs anomalous samples", context)
    true_pos = ranking.true_positives()
    precision = true_pos / (true_pos + ranking.false_positives())
    return float(np.dot(ranking.counts, precision) / n_pos)


def _f1_max(ranking: _Ranking, name: str, context: str) -> tuple[float, float]:
    """Best F1 over all thresholds and the threshold reaching it, from a ranking."""
    n_pos = ranking.n_positive
    if n_pos == 0:
        return _undefined(name, "it needs anomalous samples", context), float("nan")
    # Lowering the threshold past normal samples only adds false positives, so the best F1 sits at a positive score.
    true_pos = ranking.true_positives()
    f1 = 2 * true_pos / (true_pos + ranking.false_positives() + n_pos)
    best = int(np.argmax(f1))
    return float(f1[best]), float(ranking.values[best])


def _staircase(ranking: _Ranking, heights_after: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Corner points of a curve (x = FPR) whose height jumps only at the anomalous scores.

    At each distinct anomalous score ``v`` the curve goes from (FPR(> v), height before v) to (FPR(>= v), height after
    v); between two anomalous scores only the FPR moves, so these corners, with (0, 0) and (1, last height), carry
    the same trapezoid area as the curve over every distinct threshold.

    Args:
        ranking: A ranking with at least one normal and one anomalous sample.
        heights_after: Curve height once each of ``ranking.values`` is included, shape (k,).

    Returns:
        x (non-decreasing) and y, each of shape (2k + 2,).
    """
    n_neg = ranking.n_negative
    fpr_at_or_above = (n_neg - ranking.below) / n_neg
    fpr_above = (n_neg - ranking.below - ranking.equal) / n_neg
    heights_before = np.concatenate(([0.0], heights_after[:-1]))
    x = np.concatenate(([0.0], np.column_stack((fpr_above, fpr_at_or_above)).ravel(), [1.0]))
    y = np.concatenate(([0.0], np.column_stack((heights_before, heights_after)).ravel(), [heights_after[-1]]))
    return x, y


def _trapezoid(y: np.ndarray, x: np.ndarray) -> float:
    """Trapezoid-rule area under (x, y) (``np.trapezoid``, which numpy < 2 lacks), both of shape (M,)."""
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1])) / 2)


def _area_up_to(x: np.ndarray, y: np.ndarray, x_max: float) -> float:
    """Trapezoid area under (x, y) for x in [0, x_max], interpolating y linearly at x_max.

    Args:
        x: Non-decreasing abscissae starting at 0 and ending at or beyond ``x_max``, shape (M,).
        y: Ordinates, shape (M,).
        x_max: Upper integration limit.

    Returns:
        The area.
    """
    end = int(np.searchsorted(x, x_max, side="right"))
    area = _trapezoid(y[:end], x[:end])
    if end < x.size and x[end - 1] < x_max:
        step = (x_max - x[end - 1]) / (x[end] - x[end - 1])
        y_at_limit = y[end - 1] + step * (y[end] - y[end - 1])
        area += (x_max - x[end - 1]) * (y[end - 1] + y_at_limit) / 2
    return float(area)


# ----------------------------------------------------------------------------------------------------------------------
# AUPRO
# ----------------------------------------------------------------------------------------------------------------------


def _region_weights(masks: np.ndarray) -> np.ndarray:
    """Weight of each anomalous pixel: 1 / (area of its 8-connected region * number of regions in all masks).

    A weighted count of the anomalous pixels above a threshold is then the mean over regions of the fraction of the
    region above it (the per-region overlap).

    Args:
        masks: Boolean masks of shape (N, H, W).

    Returns:
        Weights in the order of ``masks[masks]`` (image by image, row-major), float64, shape (P,).
    """
    region_ids = []
    offset = 0
    for mask in masks:
        labels, n_regions = ndimage.label(mask, structure=_EIGHT_CONNECTED)
        if n_regions:
            region_ids.append(labels[mask].astype(np.int64) + (offset - 1))
            offset += n_regions
    if not offset:
        return np.zeros(0)
    ids = np.concatenate(region_ids)
    areas = np.bincount(ids, minlength=offset)
    return 1.0 / (areas[ids] * float(offset))


def _floor_to_dtype(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Round thresholds ``t`` down into ``dtype``, so that ``x > floor(t)`` iff ``x > t`` for any ``x`` of ``dtype``."""
    cast = values.astype(dtype)
    above = cast > values
    cast[above] = np.nextafter(cast[above], np.array(-np.inf, dtype=dtype))
    return cast


def _aupro_original(ranking: _Ranking, fpr_limit: float, num_thresholds: int, name: str, context: str) -> float:
    """AUPRO as released with FAPrompt/AnomalyCLIP (fixed thresholds, FPRs rescaled to [0, 1]), from a ranking."""
    lowest = min(ranking.negatives[0], ranking.values[-1])
    highest = max(ranking.negatives[-1], ranking.values[0])
    if not highest > lowest:
        return _undefined(name, "all anomaly-map values are equal", context)
    # np.arange, as the original: num_thresholds values, or one more when rounding leaves the last short of `highest`.
    thresholds = np.arange(lowest, highest, (highest - lowest) / num_thresholds)
    cut = _floor_to_dtype(thresholds, ranking.negatives.dtype)
    false_pos = ranking.n_negative - np.searchsorted(ranking.negatives, cut, side="right")
    n_values_above = ranking.values.size - np.searchsorted(ranking.values[::-1], cut, side="right")
    pro = np.concatenate(([0.0], np.cumsum(ranking.weights)))[n_values_above]
    fpr = false_pos / ranking.n_negative
    kept = fpr < fpr_limit
    fpr, pro = fpr[kept][::-1], pro[kept][::-1]
    if fpr.size < 2 or fpr[-1] == fpr[0]:
        return _undefined(name, f"fewer than two distinct FPR values below fpr_limit={fpr_limit}", context)
    rescaled = (fpr - fpr[0]) / (fpr[-1] - fpr[0])
    return _trapezoid(pro, rescaled)


def _aupro_exact(ranking: _Ranking, fpr_limit: float) -> float:
    """AUPRO as defined for MVTec AD (every distinct threshold, area up to ``fpr_limit`` / ``fpr_limit``)."""
    x, y = _staircase(ranking, np.cumsum(ranking.weights))
    return _area_up_to(x, y, fpr_limit) / fpr_limit


def _aupro_from_ranking(
    ranking: _Ranking, fpr_limit: float, method: str, num_thresholds: int, name: str, context: str
) -> float:
    """Dispatch to one AUPRO definition after checking that it is defined."""
    if ranking.n_positive == 0:
        return _undefined(name, "the masks have no anomalous pixel", context)
    if ranking.n_negative == 0:
        return _undefined(name, "the masks have no normal pixel", context)
    if method == "exact":
        return _aupro_exact(ranking, fpr_limit)
    return _aupro_original(ranking, fpr_limit, num_thresholds, name, context)


def _check_aupro_options(fpr_limit: float, method: str, num_thresholds: int) -> None:
    """Reject unknown AUPRO definitions and out-of-range options."""
    if method not in ("exact", "original"):
        raise ValueError(f"aupro method must be 'exact' or 'original'; got {method!r}.")
    if not 0 < fpr_limit <= 1:
        raise ValueError(f"fpr_limit must lie in (0, 1]; got {fpr_limit!r}.")
    if int(num_thresholds) != num_thresholds or num_thresholds < 2:
        raise ValueError(f"num_thresholds must be an integer >= 2; got {num_thresholds!r}.")


# ----------------------------------------------------------------------------------------------------------------------
# Public building blocks
# ----------------------------------------------------------------------------------------------------------------------


def auroc(scores: ArrayLike, labels: ArrayLike) -> float:
    """Area under the ROC curve, equal to ``sklearn.metrics.roc_auc_score``.

    Args:
        scores: Anomaly scores, higher is more anomalous, shape (N,).
        labels: Ground truth in {0, 1} (1 = anomalous), shape (N,).

    Returns:
        The AUROC in [0, 1], or NaN (with a UserWarning) when either class is absent.

    Raises:
        ValueError: Shapes differ, labels are not 0/1, or scores are not finite.
    """
    score_array, label_array = _validate_image_inputs(scores, labels, ("scores", "labels"))
    return _auroc(_rank(score_array, label_array), "auroc", "")


def average_precision(scores: ArrayLike, labels: ArrayLike) -> float:
    """Step-wise average precision, equal to ``sklearn.metrics.average_precision_score``.

    ``AP = sum_k (R_k - R_{k-1}) P_k`` over the distinct thresholds, without interpolation.

    Args:
        scores: Anomaly scores, higher is more anomalous, shape (N,).
        labels: Ground truth in {0, 1} (1 = anomalous), shape (N,).

    Returns:
        The AP in [0, 1] (1.0 when every sample is anomalous), or NaN (with a UserWarning) without anomalous samples.

    Raises:
        ValueError: Shapes differ, labels are not 0/1, or scores are not finite.
    """
    score_array, label_array = _validate_image_inputs(scores, labels, ("scores", "labels"))
    return _average_precision(_rank(score_array, label_array), "average_precision", "")


def f1_max(scores: ArrayLike, labels: ArrayLike) -> tuple[float, float]:
    """Best F1 score over all thresholds (the maximum over scikit-learn's precision-recall curve).

    Args:
        scores: Anomaly scores, higher is more anomalous, shape (N,).
        labels: Ground truth in {0, 1} (1 = anomalous), shape (N,).

    Returns:
        ``(f1, threshold)``: the best F1 and the highest threshold reaching it, predicting ``score >= threshold``
        as anomalous; ``(nan, nan)`` (with a UserWarning) without anomalous samples.

    Raises:
        ValueError: Shapes differ, labels are not 0/1, or scores are not finite.
    """
    score_array, label_array = _validate_image_inputs(scores, labels, ("scores", "labels"))
    return _f1_max(_rank(score_array, label_array), "f1_max", "")


def roc_curve(scores: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Corner points of the ROC curve (enough to draw it; their trapezoid area is :func:`auroc`).

    Args:
        scores: Anomaly scores, higher is more anomalous, shape (N,).
        labels: Ground truth in {0, 1} (1 = anomalous), shape (N,).

    Returns:
        ``(fpr, tpr)``, each of shape (2K + 2,) for K distinct anomalous scores, from (0, 0) to (1, 1).

    Raises:
        ValueError: Invalid inputs, or one of the two classes is absent (the curve is undefined).
    """
    score_array, label_array = _validate_image_inputs(scores, labels, ("scores", "labels"))
    ranking = _rank(score_array, label_array)
    if ranking.n_positive == 0 or ranking.n_negative == 0:
        raise ValueError("roc_curve needs both anomalous (1) and normal (0) labels.")
    return _staircase(ranking, ranking.true_positives() / ranking.n_positive)


def precision_recall_curve(scores: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Precision-recall points at each distinct anomalous score, as scikit-learn draws them.

    Args:
        scores: Anomaly scores, higher is more anomalous, shape (N,).
        labels: Ground truth in {0, 1} (1 = anomalous), shape (N,).

    Returns:
        ``(precision, recall)``, each of shape (K + 1,) for K distinct anomalous scores, recall increasing from the
        point (recall 0, precision 1); ``sum(diff(recall) * precision[1:])`` is :func:`average_precision`.

    Raises:
        ValueError: Invalid inputs, or there is no anomalous label.
    """
    score_array, label_array = _validate_image_inputs(scores, labels, ("scores", "labels"))
    ranking = _rank(score_array, label_array)
    if ranking.n_positive == 0:
        raise ValueError("precision_recall_curve needs at least one anomalous (1) label.")
    true_pos = ranking.true_positives()
    precision = true_pos / (true_pos + ranking.false_positives())
    return np.concatenate(([1.0], precision)), np.concatenate(([0.0], true_pos / ranking.n_positive))


def aupro(
    anomaly_maps: ArrayLike,
    masks: ArrayLike,
    fpr_limit: float = AUPRO_FPR_LIMIT,
    method: AuproMethod = "exact",
    num_thresholds: int = AUPRO_ORIGINAL_THRESHOLDS,
) -> float:
    """Area under the per-region-overlap (PRO) curve up to ``fpr_limit``.

    Regions are the 8-connected components of each mask. See the module docstring for the two definitions.

    Args:
        anomaly_maps: Anomaly maps of shape (N, H, W) (or (N, 1, H, W)).
        masks: Ground-truth masks in {0, 1} of the same shape.
        fpr_limit: Largest false-positive rate integrated over.
        method: ``"exact"`` (MVTec AD: every threshold, area / ``fpr_limit``) or ``"original"`` (FAPrompt's
            released code: ``num_thresholds`` thresholds, FPRs below ``fpr_limit`` rescaled to [0, 1]).
        num_thresholds: Number of thresholds of ``"original"`` (ignored by ``"exact"``).

    Returns:
        The AUPRO in [0, 1], or NaN (with a UserWarning) when the masks hold no anomalous or no normal pixel.

    Raises:
        ValueError: Shapes differ, masks are not 0/1, maps are not finite, or an option is out of range.
    """
    _check_aupro_options(fpr_limit, method, num_thresholds)
    maps, mask_array = _validate_pixel_inputs(anomaly_maps, masks)
    ranking = _rank(maps.ravel(), mask_array.ravel(), _region_weights(mask_array))
    return _aupro_from_ranking(ranking, fpr_limit, method, num_thresholds, "aupro", "")


# ----------------------------------------------------------------------------------------------------------------------
# All metrics at once
# ----------------------------------------------------------------------------------------------------------------------


def _compute_validated(
    scores: np.ndarray,
    labels: np.ndarray,
    maps: np.ndarray | None,
    masks: np.ndarray | None,
    method: str,
    context: str,
) -> dict[str, float]:
    """All metrics for validated inputs; ``context`` is added to warnings (e.g. " for class 'bottle'")."""
    results: dict[str, float] = {}
    ranking = _rank(scores, labels)
    results["image_auroc"] = _auroc(ranking, "image_auroc", context)
    results["image_ap"] = _average_precision(ranking, "image_ap", context)
    results["image_f1_max"], results["image_f1_threshold"] = _f1_max(ranking, "image_f1_max", context)
    if maps is None or masks is None:
        return results
    ranking = _rank(maps.ravel(), masks.ravel(), _region_weights(masks))
    results["pixel_auroc"] = _auroc(ranking, "pixel_auroc", context)
    results["pixel_ap"] = _average_precision(ranking, "pixel_ap", context)
    results["pixel_f1_max"], results["pixel_f1_threshold"] = _f1_max(ranking, "pixel_f1_max", context)
    results["pixel_aupro"] = _aupro_from_ranking(
        ranking, AUPRO_FPR_LIMIT, method, AUPRO_ORIGINAL_THRESHOLDS, "pixel_aupro", context
    )
    return results


def _validate_all(
    image_scores: ArrayLike,
    image_labels: ArrayLike,
    anomaly_maps: ArrayLike | None,
    masks: ArrayLike | None,
    aupro: str,
    downsample: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Validate the inputs of :func:`compute_anomaly_metrics` and pool the pixel data when asked."""
    _check_aupro_options(AUPRO_FPR_LIMIT, aupro, AUPRO_ORIGINAL_THRESHOLDS)
    if isinstance(downsample, bool) or int(downsample) != downsample or downsample < 1:
        raise ValueError(f"downsample must be an integer >= 1; got {downsample!r}.")
    scores, labels = _validate_image_inputs(image_scores, image_labels, ("image_scores", "image_labels"))
    if (anomaly_maps is None) != (masks is None):
        given, missing = ("anomaly_maps", "masks") if masks is None else ("masks", "anomaly_maps")
        raise ValueError(f"{given} was given without {missing}; pixel metrics need both (or neither).")
    if anomaly_maps is None:
        return scores, labels, None, None
    maps, mask_array = _validate_pixel_inputs(anomaly_maps, masks)
    if maps.shape[0] != scores.shape[0]:
        raise ValueError(
            f"anomaly_maps has shape {maps.shape} but image_scores has shape {scores.shape}; give one map per image."
        )
    _check_masks_agree_with_labels(mask_array, labels)
    if downsample > 1:
        limit = max_downsample(maps.shape[1:])
        if downsample > limit:
            raise ValueError(
                f"downsample={downsample} is too large for maps of {maps.shape[1]}x{maps.shape[2]} pixels: the pooled "
                f"maps must keep at least {MIN_POOLED_SIDE} pixels per side, so downsample must be at most {limit} "
                "(1 keeps the maps as they are)."
            )
        maps, mask_array = _pool(maps, mask_array, int(downsample))
    return scores, labels, maps, mask_array


def max_downsample(map_shape: Sequence[int]) -> int:
    """The largest ``downsample`` that keeps at least :data:`MIN_POOLED_SIDE` pixels on each side of the maps.

    Args:
        map_shape: ``(H, W)`` of the maps.

    Returns:
        The largest ``d`` with ``ceil(min(H, W) / d) >= MIN_POOLED_SIDE`` (``min(H, W) - 1`` for the default of 2),
        at least 1.
    """
    side = int(min(map_shape))
    return max(1, math.ceil(side / (MIN_POOLED_SIDE - 1)) - 1)


def _check_masks_agree_with_labels(masks: np.ndarray, labels: np.ndarray) -> None:
    """Refuse masks that mark anomalous pixels on images labelled normal (label 0).

    Args:
        masks: Boolean masks (N, H, W).
        labels: Boolean image labels (N,), True for anomalous.

    Warns:
        UserWarning: Some anomalous images have empty masks (they add normal pixels only).

    Raises:
        ValueError: Some normal images have marked pixels; the message gives their indices and pixel counts.
    """
    marked = masks.sum(axis=tuple(range(1, masks.ndim)))  # (a reshape to (N, -1) fails for N = 0)
    empty = np.flatnonzero(labels & (marked == 0))
    if empty.size:
        shown = ", ".join(f"image {int(i)}" for i in empty[:5]) + (", ..." if empty.size > 5 else "")
        warnings.warn(
            f"{empty.size} image(s) labelled anomalous have an empty mask ({shown}): their pixels count as normal "
            "pixels in the pixel metrics. Give their masks, or drop them from the pixel metrics if the dataset has "
            "image-level labels only.",
            UserWarning,
            stacklevel=4,
        )
    bad = np.flatnonzero(~labels & (marked > 0))
    if bad.size:
        shown = ", ".join(f"image {int(i)} ({int(marked[i])} px)" for i in bad[:5])
        raise ValueError(
            f"{bad.size} image(s) labelled normal (0) have masks marking anomalous pixels: {shown}"
            f"{', ...' if bad.size > 5 else ''}. A normal image's mask must be empty: fix the label (1 for anomalous) "
            "or clear the mask."
        )


def compute_anomaly_metrics(
    image_scores: ArrayLike,
    image_labels: ArrayLike,
    anomaly_maps: ArrayLike | None = None,
    masks: ArrayLike | None = None,
    aupro: AuproMethod = "exact",
    downsample: int = 1,
) -> dict[str, float]:
    """Image-level and (when maps and masks are given) pixel-level anomaly-detection metrics.

    Args:
        image_scores: Image anomaly scores, shape (N,).
        image_labels: Image labels in {0, 1} (1 = anomalous), shape (N,).
        anomaly_maps: Optional pixel anomaly maps, shape (N, H, W) (or (N, 1, H, W)), float.
        masks: Optional ground-truth masks in {0, 1}, same shape as ``anomaly_maps``. Give both or neither. The
            mask of an image labelled normal must be empty (no pixel 1).
        aupro: AUPRO definition, ``"exact"`` (MVTec AD) or ``"original"`` (FAPrompt's released evaluation).
        downsample: Pool maps (mean) and masks (max) by this factor before the pixel metrics; an approximation for
            very large sets, 1 (the default) is exact. At most :func:`max_downsample` of the maps' ``(H, W)``, so
            that pooled maps keep :data:`MIN_POOLED_SIDE` pixels per side.

    Returns:
        ``image_auroc``, ``image_ap``, ``image_f1_max``, ``image_f1_threshold`` and, with maps and masks,
        ``pixel_auroc``, ``pixel_ap``, ``pixel_f1_max``, ``pixel_f1_threshold``, ``pixel_aupro`` (FPR limit 0.3,
        200 thresholds for ``"original"``). Undefined metrics are NaN, with a UserWarning.

    Raises:
        ValueError: Mismatched shapes, labels or masks not in {0, 1}, non-finite scores or maps, a normal image
            whose mask marks anomalous pixels, ``downsample`` too large for the maps, bad options.
    """
    scores, labels, maps, mask_array = _validate_all(image_scores, image_labels, anomaly_maps, masks, aupro, downsample)
    return _compute_validated(scores, labels, maps, mask_array, aupro, "")


def check_class_names(class_names: Sequence[str] | np.ndarray) -> None:
    """Refuse class names that per-class results cannot hold: ``"mean"`` is the key of the mean row.

    Cheap enough to call before any work (:func:`~faprompt_hf.evaluation.evaluate_model` calls it right after
    reading the dataset's class names, before inference).

    Args:
        class_names: Class of each image (or the distinct classes).

    Raises:
        ValueError: A class is named ``"mean"``.
    """
    if any(str(name) == MEAN_KEY for name in class_names):
        raise ValueError(
            f"A class is named {MEAN_KEY!r}, which is reserved for the mean row of the per-class metrics; rename "
            "that class (e.g. with dataset.map on the 'class_name' column) before computing per-class metrics."
        )


def mean_over_classes(per_class: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Mean of each metric over classes, the ``"mean"`` row of per-class results.

    Args:
        per_class: ``{class: {metric: value}}`` (without a ``"mean"`` entry).

    Returns:
        ``{metric: mean}`` over the classes that have the metric, NaN skipped (NaN when no class has a finite value).
        F1 thresholds (keys ending in ``"threshold"``) are per class and not averaged.
    """
    keys = [key for key in dict.fromkeys(k for row in per_class.values() for k in row) if not key.endswith("threshold")]
    mean: dict[str, float] = {}
    for key in keys:
        values = [row[key] for row in per_class.values() if key in row and not math.isnan(row[key])]
        mean[key] = float(np.mean(values)) if values else float("nan")
    return mean


def compute_per_class_metrics(
    class_names: Sequence[str] | np.ndarray,
    image_scores: ArrayLike,
    image_labels: ArrayLike,
    anomaly_maps: ArrayLike | None = None,
    masks: ArrayLike | None = None,
    aupro: AuproMethod = "exact",
    downsample: int = 1,
) -> dict[str, dict[str, float]]:
    """:func:`compute_anomaly_metrics` for each class, plus their mean.

    Args:
        class_names: Class of each image, shape (N,).
        image_scores: Image anomaly scores, shape (N,).
        image_labels: Image labels in {0, 1}, shape (N,).
        anomaly_maps: Optional anomaly maps, shape (N, H, W).
        masks: Optional masks in {0, 1}, shape (N, H, W).
        aupro: AUPRO definition, ``"exact"`` or ``"original"``.
        downsample: Pooling factor for the pixel metrics (see :func:`compute_anomaly_metrics`).

    Returns:
        ``{class: metrics}`` in order of first appearance, then ``"mean"``: the mean over classes of each metric,
        skipping NaN (F1 thresholds are per class and not averaged). A metric undefined for a class is NaN, with a
        UserWarning naming the metric and the class.

    Raises:
        ValueError: Invalid inputs (see :func:`compute_anomaly_metrics`), ``class_names`` of the wrong length, or a
            class named ``"mean"``.
    """
    scores, labels, maps, mask_array = _validate_all(image_scores, image_labels, anomaly_maps, masks, aupro, downsample)
    names = np.asarray([str(name) for name in class_names])
    if names.shape != scores.shape:
        raise ValueError(f"class_names has shape {names.shape} but image_scores has shape {scores.shape}.")
    check_class_names(names.tolist())
    per_class: dict[str, dict[str, float]] = {}
    for name in dict.fromkeys(names.tolist()):
        index = np.flatnonzero(names == name)
        per_class[name] = _compute_validated(
            scores[index],
            labels[index],
            None if maps is None else maps[index],
            None if mask_array is None else mask_array[index],
            aupro,
            f" for class {name!r}",
        )
    if not per_class:  # no images: the mean row is every metric as NaN, each with its warning (as for one class)
        per_class[MEAN_KEY] = _compute_validated(scores, labels, maps, mask_array, aupro, " (no images)")
        return per_class
    per_class[MEAN_KEY] = mean_over_classes(per_class)
    return per_class


def format_metrics_table(
    per_class: Mapping[str, Mapping[str, float]], keys: Sequence[str] | None = None, percent: bool = True
) -> str:
    """Render per-class metrics as a markdown table, classes then a mean row; NaN or missing shows as ``n/a``.

    Args:
        per_class: ``{class: {metric: value}}``, as returned by :func:`compute_per_class_metrics`. When it has no
            ``"mean"`` entry, the mean over classes (skipping NaN) is added.
        keys: Metric columns, in order. Defaults to those of :data:`TABLE_KEYS` present in any row.
        percent: Show metrics as percentages with one decimal (F1 thresholds are never scaled); otherwise 4 decimals.

    Returns:
        The markdown table, one line per row, without a trailing newline.
    """
    rows = {name: row for name, row in per_class.items() if name != MEAN_KEY}
    rows[MEAN_KEY] = dict(per_class[MEAN_KEY]) if MEAN_KEY in per_class else mean_over_classes(rows)
    if keys is None:
        keys = [key for key in TABLE_KEYS if any(key in row for row in rows.values())]

    def cell(row: Mapping[str, float], key: str) -> str:
        value = row.get(key, float("nan"))
        if value is None or math.isnan(value):
            return "n/a"
        if key.endswith("threshold"):
            return f"{value:.4g}"
        return f"{100 * value:.1f}" if percent else f"{value:.4f}"

    lines = ["| class | " + " | ".join(keys) + " |", "|---|" + "---:|" * len(keys)]
    lines += ["| " + " | ".join([name, *(cell(row, key) for key in keys)]) + " |" for name, row in rows.items()]
    return "\n".join(lines)

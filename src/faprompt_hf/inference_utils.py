# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""The steps around the model that need no PyTorch, shared by the PyTorch pipeline and the ONNX runtime.

Pre-processing: an RGB image is resized with a PIL filter (bicubic by default, aspect ratio not kept), scaled to
[0, 1] and normalised with CLIP's mean and std (:func:`normalize_image`). Post-processing: the model's anomaly map is
resized (bilinear) back to the image's size, compared with the thresholds and drawn over the image
(:func:`detection_result`). :class:`~faprompt_hf.FAPromptImageProcessor`,
:class:`~faprompt_hf.FAPromptAnomalyDetectionPipeline` and :class:`~faprompt_hf.onnx.ONNXAnomalyDetector` all call
these functions, so the two runtimes give the same results. Only numpy and Pillow are imported.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from .overlay import Normalization, overlay_heatmap

ANOMALY_DETECTION_TASK = "anomaly-detection"
"""The pipeline task the package registers, and that a saved folder's ``custom_pipelines`` names."""

__all__ = [
    "ANOMALY_DETECTION_TASK",
    "DEFAULT_PIXEL_THRESHOLD",
    "DEFAULT_THRESHOLD",
    "OPENAI_CLIP_MEAN",
    "OPENAI_CLIP_STD",
    "RESAMPLE_FILTERS",
    "THRESHOLD_RANGE",
    "check_threshold",
    "detection_result",
    "normalize_image",
    "resize_anomaly_map",
    "resolve_threshold",
]

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
"""CLIP's per-channel normalisation mean (RGB, on [0, 1] values)."""

OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
"""CLIP's per-channel normalisation standard deviation."""

RESAMPLE_FILTERS = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
    "lanczos": Image.Resampling.LANCZOS,
}
"""PIL filters by the names the image processor's ``resample`` accepts."""

DEFAULT_THRESHOLD = 0.5
"""Image-score threshold used when neither an argument nor a calibrated threshold gives one (uncalibrated)."""

DEFAULT_PIXEL_THRESHOLD = 0.5
"""Anomaly-map threshold of the returned ``mask`` when no ``pixel_threshold`` is given."""


def normalize_image(
    image: Image.Image,
    size: tuple[int, int],
    resample: str = "bicubic",
    image_mean: Sequence[float] = OPENAI_CLIP_MEAN,
    image_std: Sequence[float] = OPENAI_CLIP_STD,
) -> np.ndarray:
    """Resize an RGB image and normalise it for the model.

    Args:
        image: An RGB PIL image (see :func:`faprompt_hf.image_utils.to_rgb_image` for other inputs).
        size: Output (height, width) in pixels.
        resample: A name from :data:`RESAMPLE_FILTERS`.
        image_mean: Per-channel mean subtracted after scaling to [0, 1].
        image_std: Per-channel standard deviation divided by.

    Returns:
        Normalised float32 pixels (3, height, width).
    """
    if resample not in RESAMPLE_FILTERS:
        raise ValueError(f"resample must be one of {sorted(RESAMPLE_FILTERS)}, got {resample!r}.")
    resized = image.resize((size[1], size[0]), RESAMPLE_FILTERS[resample])
    array = np.asarray(resized, dtype=np.float32) / 255.0
    array = (array - np.asarray(image_mean, np.float32)) / np.asarray(image_std, np.float32)
    return array.transpose(2, 0, 1)


def _linear_taps(out_size: int, in_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weights of 1-D linear resizing with ``align_corners=False`` (PyTorch's convention)."""
    source = np.maximum((np.arange(out_size, dtype=np.float64) + 0.5) * (in_size / out_size) - 0.5, 0.0)
    lower = np.minimum(np.floor(source).astype(np.int64), in_size - 1)
    upper = np.minimum(lower + 1, in_size - 1)
    return lower, upper, (source - lower).astype(np.float32)


def resize_anomaly_map(anomaly_map: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize one anomaly map with bilinear interpolation, as ``F.interpolate(mode="bilinear")`` does.

    Args:
        anomaly_map: A map (h, w).
        size: Output (height, width).

    Returns:
        The float32 map (height, width); the map itself (as float32) when it already has that size.
    """
    anomaly_map = np.asarray(anomaly_map, dtype=np.float32)
    height, width = int(size[0]), int(size[1])
    if anomaly_map.shape == (height, width):
        return anomaly_map
    lower, upper, weight = _linear_taps(height, anomaly_map.shape[0])
    rows = anomaly_map[lower] * (1 - weight)[:, None] + anomaly_map[upper] * weight[:, None]
    lower, upper, weight = _linear_taps(width, anomaly_map.shape[1])
    return (rows[:, lower] * (1 - weight) + rows[:, upper] * weight).astype(np.float32, copy=False)


THRESHOLD_RANGE = (0.0, 1.0)
"""The one rule for a threshold, image or pixel: a finite number in [0, 1], the range of image scores and anomaly
maps. The config's ``anomaly_threshold``, the pipeline's, the ONNX runtime's, the app's and the scripts' thresholds
all follow it (0 flags everything, 1 practically nothing)."""


def check_threshold(value: Any, name: str) -> float:
    """A threshold that follows :data:`THRESHOLD_RANGE`, or a ValueError naming the argument.

    Args:
        value: The value given.
        name: The argument's name, for the message.

    Returns:
        ``float(value)``.
    """
    low, high = THRESHOLD_RANGE
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise ValueError(f"{name} must be a number in [{low:g}, {high:g}], got {value!r} ({type(value).__name__}).")
    if not math.isfinite(float(value)) or not low <= float(value) <= high:
        raise ValueError(
            f"{name} must be finite and lie in [{low:g}, {high:g}] (image scores and anomaly maps do), got {value!r}."
        )
    return float(value)


def resolve_threshold(
    threshold: float | None, calibrated: float | None, warn_uncalibrated: bool = True
) -> tuple[float, bool]:
    """The image-score threshold: the argument, else the calibrated one, else :data:`DEFAULT_THRESHOLD`.

    Args:
        threshold: The caller's threshold, or None.
        calibrated: The model's calibrated ``anomaly_threshold``, or None.
        warn_uncalibrated: Warn when falling back to the default (callers warn once: pass False after a warning).

    Returns:
        ``(threshold, warned)``: the threshold, and whether this call warned.
    """
    if threshold is not None:
        return threshold, False
    if calibrated is not None:
        return float(calibrated), False
    if warn_uncalibrated:
        warnings.warn(
            f"No threshold given and the model has no calibrated anomaly_threshold: is_anomalous uses the "
            f"uncalibrated default {DEFAULT_THRESHOLD}. Calibrate it with faprompt_hf.calibrate_threshold "
            "(known-normal images) or threshold_from_f1 (labelled scores), or pass threshold=...",
            UserWarning,
            stacklevel=3,
        )
    return DEFAULT_THRESHOLD, warn_uncalibrated


def detection_result(
    score: float,
    anomaly_map: np.ndarray,
    image: Image.Image,
    threshold: float,
    pixel_threshold: float = DEFAULT_PIXEL_THRESHOLD,
    return_overlay: bool = True,
    overlay_alpha: float = 0.5,
    overlay_normalize: Normalization = True,
) -> dict[str, Any]:
    """One image's result dict, from the model's score and map.

    Args:
        score: The image anomaly score.
        anomaly_map: The smoothed map at the model's input size (S_h, S_w).
        image: The RGB image that was scored, at its original size (its size is the output maps' size).
        threshold: Image-score threshold of ``is_anomalous`` (see :func:`resolve_threshold`).
        pixel_threshold: Anomaly-map threshold of ``mask``.
        return_overlay: Draw the overlay (else ``overlay`` is None).
        overlay_alpha: Heatmap weight of the overlay, in [0, 1].
        overlay_normalize: Map scaling of the overlay (see :func:`faprompt_hf.visualization.overlay_heatmap`).

    Returns:
        ``score`` (float), ``is_anomalous`` (bool, ``score >= threshold``), ``anomaly_map`` (float32 (H, W) at the
        image's size), ``mask`` (bool (H, W), ``anomaly_map >= pixel_threshold``) and ``overlay`` (RGB PIL image or
        None).
    """
    score = float(score)
    resized = resize_anomaly_map(anomaly_map, (image.height, image.width))
    overlay = None
    if return_overlay:
        overlay = overlay_heatmap(image, resized, alpha=overlay_alpha, normalize=overlay_normalize)
    return {
        "score": score,
        "is_anomalous": bool(score >= threshold),
        "anomaly_map": resized,
        "mask": resized >= pixel_threshold,
        "overlay": overlay,
    }

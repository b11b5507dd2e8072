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
    "check_overlay_options",
    "check_pixel_array",
    "check_processor_settings",
    "check_threshold",
    "detection_result",
    "normalize_image",
    "normalize_pixels",
    "resize_anomaly_map",
    "resize_image",
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


def resize_image(image: Image.Image, size: tuple[int, int], resample: str = "bicubic") -> np.ndarray:
    """Resize an RGB image to the model's input size: the first half of :func:`normalize_image`.

    Args:
        image: An RGB PIL image.
        size: Output (height, width) in pixels.
        resample: A name from :data:`RESAMPLE_FILTERS`.

    Returns:
        The resized uint8 pixels (height, width, 3).
    """
    if resample not in RESAMPLE_FILTERS:
        raise ValueError(f"resample must be one of {sorted(RESAMPLE_FILTERS)}, got {resample!r}.")
    return np.asarray(image.resize((size[1], size[0]), RESAMPLE_FILTERS[resample]), dtype=np.uint8)


def normalize_pixels(
    pixels: np.ndarray,
    image_mean: Sequence[float] = OPENAI_CLIP_MEAN,
    image_std: Sequence[float] = OPENAI_CLIP_STD,
) -> np.ndarray:
    """Scale resized uint8 pixels to [0, 1] and normalise them: the second half of :func:`normalize_image`.

    The same float32 operations in the same order as :func:`normalize_image`, so a batch normalised here is
    bit-for-bit the stack of the images normalised one by one.

    Args:
        pixels: uint8 pixels (height, width, 3), or a batch (batch, height, width, 3).
        image_mean: Per-channel mean subtracted after scaling to [0, 1].
        image_std: Per-channel standard deviation divided by.

    Returns:
        Normalised float32 pixels, channels first: (3, height, width) or (batch, 3, height, width), contiguous.
    """
    array = np.ascontiguousarray(np.moveaxis(np.asarray(pixels), -1, -3), dtype=np.float32)  # channels first
    np.divide(array, np.float32(255.0), out=array)
    np.subtract(array, np.asarray(image_mean, np.float32)[:, None, None], out=array)
    np.divide(array, np.asarray(image_std, np.float32)[:, None, None], out=array)
    return array


def normalize_image(
    image: Image.Image,
    size: tuple[int, int],
    resample: str = "bicubic",
    image_mean: Sequence[float] = OPENAI_CLIP_MEAN,
    image_std: Sequence[float] = OPENAI_CLIP_STD,
) -> np.ndarray:
    """Resize an RGB image and normalise it for the model (:func:`resize_image`, then :func:`normalize_pixels`).

    Args:
        image: An RGB PIL image (see :func:`faprompt_hf.image_utils.to_rgb_image` for other inputs).
        size: Output (height, width) in pixels.
        resample: A name from :data:`RESAMPLE_FILTERS`.
        image_mean: Per-channel mean subtracted after scaling to [0, 1].
        image_std: Per-channel standard deviation divided by.

    Returns:
        Normalised float32 pixels (3, height, width).
    """
    return normalize_pixels(resize_image(image, size, resample), image_mean, image_std)


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


def check_overlay_options(alpha: Any, normalize: Any) -> tuple[float, bool | tuple[float, float]]:
    """The overlay options: ``alpha`` a number in [0, 1], ``normalize`` True, False or a finite (vmin, vmax).

    Args:
        alpha: ``overlay_alpha``.
        normalize: ``overlay_normalize``.

    Returns:
        ``(float(alpha), normalize)`` with a range as a tuple of floats.

    Raises:
        ValueError: Names the argument, the value and what it may be.
    """
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.floating, np.integer)):
        raise ValueError(f"overlay_alpha must be a number in [0, 1], got {alpha!r} ({type(alpha).__name__}).")
    if not math.isfinite(float(alpha)) or not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"overlay_alpha must be finite and lie in [0, 1] (the heatmap's weight), got {alpha!r}.")
    if isinstance(normalize, (bool, np.bool_)):
        return float(alpha), bool(normalize)
    rule = (
        "overlay_normalize must be True (each map scaled by its own min and max), False (maps taken as in [0, 1]) or "
        "a (vmin, vmax) pair of finite numbers with vmax > vmin"
    )
    if not isinstance(normalize, (tuple, list)) or len(normalize) != 2:
        raise ValueError(f"{rule}, got {normalize!r} ({type(normalize).__name__}).")
    if not all(
        not isinstance(bound, bool) and isinstance(bound, (int, float, np.floating, np.integer)) for bound in normalize
    ):
        raise ValueError(f"{rule}, got {normalize!r}.")
    low, high = (float(bound) for bound in normalize)
    if not (math.isfinite(low) and math.isfinite(high) and high > low):
        raise ValueError(f"{rule}, got {normalize!r}.")
    return float(alpha), (low, high)


def check_pixel_array(pixel_values: Any, size: tuple[int, int] | None = None, name: str = "pixel_values") -> np.ndarray:
    """The model's input rules for a numpy batch (the ONNX runtime's ``run``), as ``forward`` applies them to tensors.

    A float array (B, 3, H, W) with B >= 1, H and W the exported ``size`` when given, and only finite values. Integer
    (raw 0..255) pixels, NaN and inf are refused, as :func:`faprompt_hf.validation.check_model_inputs` refuses them.

    Args:
        pixel_values: The batch.
        size: The required (H, W), or None for any.
        name: The argument's name, for the message.

    Returns:
        A C-contiguous float32 copy (or view) of the batch.

    Raises:
        TypeError: Not a numpy array (a string, a list, a tensor).
        ValueError: Names the shape, dtype or values at fault and the fix.
    """
    rule = "normalised float images (B, 3, H, W), channels first, as preprocess() returns them (stacked)"
    if not isinstance(pixel_values, np.ndarray):
        raise TypeError(f"{name} must be a numpy array of {rule}; got {type(pixel_values).__name__}.")
    shape = tuple(pixel_values.shape)
    expected = "(B, 3, H, W)" if size is None else f"(B, 3, {size[0]}, {size[1]}) (the exported size)"
    if pixel_values.ndim != 4:
        fix = "; add the batch dimension with pixel_values[None]" if pixel_values.ndim == 3 else ""
        raise ValueError(f"{name} must have shape {expected}, got {shape}: {rule}{fix}.")
    if shape[0] == 0:
        raise ValueError(f"{name} has shape {shape}, a batch of 0 images: give at least one image.")
    if shape[1] != 3:
        fix = "this looks channels-last (B, H, W, 3): use pixel_values.transpose(0, 3, 1, 2)" if shape[3] == 3 else rule
        raise ValueError(f"{name} must have shape {expected}, got {shape}: {fix}.")
    if shape[2] == 0 or shape[3] == 0 or (size is not None and tuple(shape[2:]) != tuple(size)):
        raise ValueError(f"{name} must have shape {expected}, got {shape}: prepare images with preprocess().")
    if not np.issubdtype(pixel_values.dtype, np.floating):
        raise ValueError(
            f"{name} has dtype {pixel_values.dtype}: {rule}; raw integer pixels would be read as normalised values, "
            "so prepare the images with preprocess()."
        )
    pixel_values = np.ascontiguousarray(pixel_values, dtype=np.float32)
    if not np.isfinite(pixel_values).all():
        raise ValueError(
            f"{name} (shape {shape}) contains NaN or inf: every score would be NaN. Check the images and the "
            "normalisation (preprocess() never produces them)."
        )
    return pixel_values


def check_processor_settings(settings: Any, source: str) -> tuple[tuple[int, int], str, list[float], list[float]]:
    """An image processor's saved settings (``preprocessor_config.json``), read without PyTorch by its rules.

    Args:
        settings: The parsed JSON.
        source: The file, for the message.

    Returns:
        ``((height, width), resample, image_mean, image_std)``.

    Raises:
        ValueError: Names the file, the field and what it must be.
    """
    if not isinstance(settings, dict):
        raise ValueError(f"{source} must hold a JSON object, got {type(settings).__name__}: export the model again.")
    size = settings.get("size")
    if not (
        isinstance(size, dict)
        and set(size) >= {"height", "width"}
        and all(
            isinstance(size[key], int) and not isinstance(size[key], bool) and size[key] > 0
            for key in ("height", "width")
        )
    ):
        raise ValueError(
            f'{source}: size must be {{"height": H, "width": W}} of positive ints, got {size!r}: export the model '
            "again."
        )
    resample = settings.get("resample", "bicubic")
    if resample not in RESAMPLE_FILTERS:
        raise ValueError(f"{source}: resample must be one of {sorted(RESAMPLE_FILTERS)}, got {resample!r}.")
    values = {}
    for key in ("image_mean", "image_std"):
        value = settings.get(key)
        if not (
            isinstance(value, (list, tuple))
            and len(value) == 3
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)
        ):
            raise ValueError(
                f"{source}: {key} must be 3 finite numbers (one per RGB channel), got {value!r}: export the model "
                "again."
            )
        values[key] = [float(v) for v in value]
    if any(v <= 0 for v in values["image_std"]):
        raise ValueError(f"{source}: image_std must be > 0 per channel, got {values['image_std']}.")
    return (size["height"], size["width"]), str(resample), values["image_mean"], values["image_std"]


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

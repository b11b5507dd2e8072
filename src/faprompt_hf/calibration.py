# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""Threshold calibration: the image-score threshold that decides ``is_anomalous``.

Two ways, both storing the threshold in ``model.config.anomaly_threshold`` (kept by ``save_pretrained``, used by the
pipeline, the ONNX runtime and the app): a quantile of the scores of known-normal images
(:func:`calibrate_threshold`), or the F1-maximising threshold on labelled scores (:func:`threshold_from_f1`).
Thresholds follow one rule (:data:`faprompt_hf.inference_utils.THRESHOLD_RANGE`: a finite number in [0, 1]).

Models and pipelines are recognised by ``config.model_type``, so those loaded as remote code work too; this module
imports neither the model nor the pipeline.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from transformers.utils import logging

from .configuration_faprompt import FAPromptConfig
from .image_processing_faprompt import FAPromptImageProcessor
from .image_utils import ImageInput
from .metrics import ArrayLike, f1_max

__all__ = ["calibrate_threshold", "threshold_from_f1"]

logger = logging.get_logger(__name__)


def _model_of(model_or_pipeline: Any) -> torch.nn.Module:
    """The model of a pipeline, or the model itself.

    Checked by ``config.model_type`` rather than by class, so that models and pipelines loaded as remote code
    (``trust_remote_code=True``, whose classes live in ``transformers_modules``) are accepted too.
    """
    model = getattr(model_or_pipeline, "model", model_or_pipeline)  # a pipeline holds its model
    if getattr(getattr(model, "config", None), "model_type", None) == FAPromptConfig.model_type:
        return model
    raise TypeError(
        f"Expected an FAPromptModel or FAPromptAnomalyDetectionPipeline, got {type(model_or_pipeline).__name__}."
    )


def calibrate_threshold(
    model_or_pipeline: Any,
    normal_images: Sequence[ImageInput],
    quantile: float = 0.99,
    batch_size: int = 8,
    image_processor: FAPromptImageProcessor | None = None,
    store: bool = True,
    normal_reference_class: str | None = None,
) -> float:
    """Calibrate the image-score threshold on known-normal images and store it in ``model.config.anomaly_threshold``.

    The threshold is the ``quantile`` of the normal images' scores (linear interpolation), so about
    ``1 - quantile`` of similar normal images would be flagged. Stored in the config, it is used by the pipeline
    and kept by ``save_pretrained``.

    Args:
        model_or_pipeline: An ``FAPromptModel`` or an ``FAPromptAnomalyDetectionPipeline``.
        normal_images: Images known to be normal (paths, PIL images, arrays or tensors; a ``datasets`` image column
            works too).
        quantile: Quantile of the normal scores, in (0, 1].
        batch_size: Images per forward pass.
        image_processor: Processor for a bare model (default: the pipeline's, or ``FAPromptImageProcessor`` at
            ``config.image_size``).
        store: Write the threshold into ``model.config.anomaly_threshold``.
        normal_reference_class: With normal references in the model (``docs/few_shot.md``), the class to score
            against (needed when the bank holds several): the threshold is then one for the fused scores.

    Returns:
        The threshold.

    Raises:
        ValueError: No images, a quantile outside (0, 1], or an input that is not an image (named in the message).
    """
    if not 0.0 < quantile <= 1.0:
        raise ValueError(f"quantile must lie in (0, 1], got {quantile!r}.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    model = _model_of(model_or_pipeline)
    if image_processor is None:
        image_processor = getattr(model_or_pipeline, "image_processor", None) or (
            FAPromptImageProcessor.from_model_config(model.config)
        )
    images = list(normal_images)
    if not images:
        raise ValueError("calibrate_threshold needs at least one normal image.")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    scores = []
    try:
        with torch.no_grad():
            for start in range(0, len(images), batch_size):
                pixel_values = image_processor(images=images[start : start + batch_size], return_tensors="pt")[
                    "pixel_values"
                ]
                outputs = model(
                    pixel_values=pixel_values.to(device=device, dtype=model.dtype),
                    normal_reference_class=normal_reference_class,
                )
                scores.append(outputs.image_scores.float().cpu())
    finally:
        model.train(was_training)
    threshold = float(np.quantile(torch.cat(scores).numpy(), quantile))
    if store:
        model.config.anomaly_threshold = threshold
    logger.info("Calibrated threshold %.6g (quantile %.3g of %d normal images).", threshold, quantile, len(images))
    return threshold


def threshold_from_f1(
    scores: ArrayLike,
    labels: ArrayLike,
    model_or_pipeline: Any = None,
) -> float:
    """The image-score threshold with the best F1 on labelled scores (e.g. an evaluation's ``image_scores``).

    Args:
        scores: Image anomaly scores (N,).
        labels: Labels in {0, 1} (N,), 1 anomalous; both classes should be present.
        model_or_pipeline: When given, the threshold is stored in its ``model.config.anomaly_threshold``.

    Returns:
        The highest threshold reaching the maximal F1 (predicting ``score >= threshold`` as anomalous).

    Raises:
        ValueError: Invalid inputs, or no anomalous label (F1 is undefined).
    """
    best_f1, threshold = f1_max(scores, labels)
    if math.isnan(threshold):
        raise ValueError("threshold_from_f1 needs at least one anomalous (label 1) score.")
    if model_or_pipeline is not None:
        _model_of(model_or_pipeline).config.anomaly_threshold = float(threshold)
    logger.info("F1-max threshold %.6g (F1 %.4f).", threshold, best_f1)
    return float(threshold)

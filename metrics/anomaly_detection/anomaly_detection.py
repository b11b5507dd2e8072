# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""FAPrompt anomaly-detection metrics as a Hugging Face ``evaluate`` module.

Load it offline from a checkout::

    metric = evaluate.load("metrics/anomaly_detection")  # image-level metrics
    metric = evaluate.load("metrics/anomaly_detection", "pixel")  # image- and pixel-level metrics

Every metric is computed by :func:`faprompt_hf.metrics.compute_anomaly_metrics`.
"""

from __future__ import annotations

import datasets
import evaluate
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from faprompt_hf.metrics import compute_anomaly_metrics

_DESCRIPTION = """\
Zero-shot anomaly-detection metrics as reported by FAPrompt: image-level AUROC, AP and F1-max from one anomaly score
per image, and, with the "pixel" configuration, pixel-level AUROC, AP, F1-max and AUPRO (FPR limit 0.3) from one
anomaly map and one ground-truth mask per image. AUROC and AP equal scikit-learn's roc_auc_score and
average_precision_score. AUPRO has two definitions: "exact" (MVTec AD, the default) and "original" (the evaluation
released with FAPrompt/AnomalyCLIP). A metric that is undefined (no anomalous or no normal sample) is nan, with a
warning.
"""

_KWARGS_DESCRIPTION = """
Args:
    image_scores: Image anomaly scores, one float per image (stored as float64).
    image_labels: Image labels, 0 (normal) or 1 (anomalous), one per image.
    anomaly_maps: ("pixel" configuration only) One 2-D anomaly map (H, W) per image, all of the same shape
        (stored as float32). A batch may be a numpy array or tensor of shape (B, H, W) or a list of (H, W) arrays;
        whole arrays are written to Arrow at once, never pixel by pixel.
    masks: ("pixel" configuration only) One 2-D ground-truth mask (H, W) of 0/1 values per image, same shape as
        the maps (stored as uint8).
    aupro: AUPRO definition, "exact" (default) or "original" (keyword of compute only).
    downsample: Pool maps (mean) and masks (max) by this integer factor before the pixel metrics (default 1,
        exact; larger values approximate; keyword of compute only).

Returns:
    image_auroc, image_ap, image_f1_max, image_f1_threshold and, for "pixel", pixel_auroc, pixel_ap, pixel_f1_max,
    pixel_f1_threshold, pixel_aupro.

Examples:
    >>> import evaluate
    >>> metric = evaluate.load("metrics/anomaly_detection")
    >>> metric.compute(image_scores=[0.1, 0.4, 0.35, 0.8], image_labels=[0, 0, 1, 1])["image_auroc"]
    0.75
"""

_CITATION = """\
@inproceedings{zhu2025faprompt,
  title={Fine-grained Abnormality Prompt Learning for Zero-shot Anomaly Detection},
  author={Zhu, Jiawen and Ong, Yew-Soon and Shen, Chunhua and Pang, Guansong},
  booktitle={Proceedings of the IEEE/CVF International Conference on Computer Vision (ICCV)},
  year={2025}
}
"""

_CONFIGS = ("default", "image", "pixel")


def _to_numpy(column: pa.ChunkedArray, name: str) -> np.ndarray:
    """Convert a stored column to numpy without going through Python objects.

    Args:
        column: A column of scalars (N,) or of 2-D lists (N, H, W), as Arrow stores them.
        name: The input name, for error messages.

    Returns:
        An array of shape (N,) or (N, H, W), in the stored dtype.

    Raises:
        ValueError: The 2-D entries do not all have the same shape.
    """
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if not pa.types.is_list(array.type):
        return array.to_numpy(zero_copy_only=False)
    rows = array.flatten()
    heights = pc.unique(pc.list_value_length(array)).to_pylist()
    widths = pc.unique(pc.list_value_length(rows)).to_pylist()
    if len(heights) > 1 or len(widths) > 1:
        raise ValueError(f"All {name} must have the same (H, W) shape; got heights {heights} and widths {widths}.")
    height = heights[0] if heights else 0
    width = widths[0] if widths else 0
    return rows.flatten().to_numpy(zero_copy_only=False).reshape(len(array), height, width)


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class AnomalyDetection(evaluate.Metric):
    """Image- and pixel-level anomaly-detection metrics (configurations "default"/"image" and "pixel")."""

    def _info(self) -> evaluate.MetricInfo:
        """Describe the inputs of the chosen configuration."""
        if self.config_name not in _CONFIGS:
            raise ValueError(f"Unknown configuration {self.config_name!r}; choose one of {list(_CONFIGS)}.")
        features = {"image_scores": datasets.Value("float64"), "image_labels": datasets.Value("int8")}
        if self.config_name == "pixel":
            features["anomaly_maps"] = datasets.List(datasets.List(datasets.Value("float32")))
            features["masks"] = datasets.List(datasets.List(datasets.Value("uint8")))
        info = evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(features),
            reference_urls=["https://github.com/mala-lab/FAPrompt", "https://www.mvtec.com/company/research/datasets"],
        )
        # Hand the stored columns to _compute as Arrow arrays. Python objects would cost seconds per million pixels,
        # and the "numpy" format casts float64 scores to float32. MetricInfo only accepts a format for flat Value
        # features, so it is set after construction; _compute converts the columns itself.
        info.format = "arrow"
        return info

    def _compute(
        self,
        image_scores: pa.ChunkedArray,
        image_labels: pa.ChunkedArray,
        anomaly_maps: pa.ChunkedArray | None = None,
        masks: pa.ChunkedArray | None = None,
        aupro: str = "exact",
        downsample: int = 1,
    ) -> dict[str, float]:
        """Compute the metrics from the stored inputs.

        Args:
            image_scores: Stored scores, N float64 values.
            image_labels: Stored labels, N int8 values.
            anomaly_maps: Stored maps, N lists of H lists of W float32 values (``None`` for "image").
            masks: Stored masks, N lists of H lists of W uint8 values (``None`` for "image").
            aupro: AUPRO definition, ``"exact"`` or ``"original"``.
            downsample: Pooling factor of the pixel metrics.

        Returns:
            The metrics of :func:`faprompt_hf.metrics.compute_anomaly_metrics`.

        Raises:
            ValueError: Maps or masks of different shapes across images, or any invalid input.
        """
        return compute_anomaly_metrics(
            _to_numpy(image_scores, "image_scores"),
            _to_numpy(image_labels, "image_labels"),
            None if anomaly_maps is None else _to_numpy(anomaly_maps, "anomaly_maps"),
            None if masks is None else _to_numpy(masks, "masks"),
            aupro=aupro,
            downsample=downsample,
        )

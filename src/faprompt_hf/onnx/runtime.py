# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""Run an exported FAPrompt graph with onnxruntime: no PyTorch, no transformers.

:class:`ONNXAnomalyDetector` reads a folder written by :func:`faprompt_hf.export_onnx` (or ``faprompt-hf export``) and
gives the same results as the ``"anomaly-detection"`` pipeline: both call the pre- and post-processing of
:mod:`faprompt_hf.inference_utils`. Only numpy, Pillow and onnxruntime are imported.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..image_utils import ImageInput, to_rgb_image
from ..inference_utils import (
    DEFAULT_PIXEL_THRESHOLD,
    check_threshold,
    detection_result,
    normalize_image,
    resolve_threshold,
)
from ..overlay import Normalization

__all__ = [
    "INPUT_NAME",
    "ONNXAnomalyDetector",
    "ONNX_CONFIG_NAME",
    "ONNX_FILE_NAME",
    "ONNX_INSTALL_HINT",
    "OUTPUT_NAMES",
    "PREPROCESSOR_CONFIG_NAME",
]

ONNX_FILE_NAME = "model.onnx"
"""The graph's file name in an export folder (large graphs keep their weights beside it in ``model.onnx.data``)."""

ONNX_CONFIG_NAME = "onnx_config.json"
"""Sizes, input and output names, opset and the calibrated ``anomaly_threshold`` of an export."""

PREPROCESSOR_CONFIG_NAME = "preprocessor_config.json"
"""The image processor's settings (transformers' file name, so ``FAPromptImageProcessor.from_pretrained`` reads it)."""

INPUT_NAME = "pixel_values"
OUTPUT_NAMES = ("image_scores", "anomaly_maps")

ONNX_INSTALL_HINT = 'pip install "faprompt-hf[onnx]" (or: pip install onnx onnxruntime onnxscript)'

_OPTIMIZATION_LEVELS = ("disable", "basic", "extended", "layout", "all")


def _read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``, or an error that names the file and the fix."""
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: this is not a complete ONNX export folder. Export one with "
            "`faprompt-hf export --model MODEL --output DIR` or faprompt_hf.export_onnx(model, DIR)."
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"Cannot read {path} ({error}): export the model again.") from error
    if not isinstance(data, dict):
        raise ValueError(f"{path} does not hold a JSON object: export the model again.")
    return data


class ONNXAnomalyDetector:
    """Zero-shot anomaly detection with an exported FAPrompt graph on onnxruntime.

    Takes what the ``"anomaly-detection"`` pipeline takes (an image path, a PIL image of any mode, a numpy array
    (H, W), (H, W, C) or (C, H, W) of uint8, uint16 or float in [0, 1], or a list of them) and returns the same dicts:
    ``score``, ``is_anomalous``, ``anomaly_map`` (float32 (H, W) at the image's size), ``mask`` and ``overlay``.
    The threshold is the call's ``threshold``, else the model's calibrated ``anomaly_threshold`` saved at export, else
    0.5 with a one-time warning.

    Args:
        directory: A folder written by :func:`faprompt_hf.export_onnx` (``model.onnx``, ``onnx_config.json``,
            ``preprocessor_config.json``).
        providers: onnxruntime execution providers (default ``["CPUExecutionProvider"]``).
        intra_op_num_threads: Threads per operator (default: onnxruntime's, the number of physical cores).
        graph_optimization_level: ``"disable"``, ``"basic"``, ``"extended"``, ``"layout"`` or ``"all"`` (default).
        session_options: An ``onnxruntime.SessionOptions`` used as is (the two arguments above are then ignored).
        onnx_file: The graph's file name in ``directory`` (default ``model.onnx``; e.g. an optimised copy).

    Example:
        ```python
        from faprompt_hf.onnx import ONNXAnomalyDetector

        detector = ONNXAnomalyDetector("faprompt-onnx")
        result = detector("part.png")
        result["score"], result["is_anomalous"], result["anomaly_map"].shape
        ```
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        providers: Sequence[str] | None = None,
        intra_op_num_threads: int | None = None,
        graph_optimization_level: str = "all",
        session_options: Any = None,
        onnx_file: str | None = None,
    ) -> None:
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise FileNotFoundError(
                f"ONNX export folder not found: {os.fspath(directory)!r}. Export one with "
                "`faprompt-hf export --model MODEL --output DIR` or faprompt_hf.export_onnx(model, DIR)."
            )
        self.config = _read_json(self.directory / ONNX_CONFIG_NAME)
        onnx_path = self.directory / (onnx_file or self.config.get("onnx_file", ONNX_FILE_NAME))
        if not onnx_path.is_file():
            raise FileNotFoundError(
                f"No ONNX graph at {onnx_path}. Export one with `faprompt-hf export --model MODEL --output "
                f"{self.directory}` or faprompt_hf.export_onnx(model, {os.fspath(self.directory)!r})."
            )
        processor = _read_json(self.directory / PREPROCESSOR_CONFIG_NAME)
        try:
            self.image_size = (int(processor["size"]["height"]), int(processor["size"]["width"]))
            self.resample = str(processor.get("resample", "bicubic"))
            self.image_mean = [float(value) for value in processor["image_mean"]]
            self.image_std = [float(value) for value in processor["image_std"]]
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(
                f"{self.directory / PREPROCESSOR_CONFIG_NAME} lacks a valid size, image_mean or image_std ({error!r}): "
                "export the model again."
            ) from error
        if list(self.image_size) != list(self.config.get("image_size", self.image_size)):
            raise ValueError(
                f"{self.directory}: the processor's size {self.image_size} differs from the graph's "
                f"{self.config['image_size']}: export the model again."
            )
        threshold = self.config.get("anomaly_threshold")
        self.threshold = None if threshold is None else check_threshold(threshold, "anomaly_threshold")
        self.input_name = self.config.get("input_name", INPUT_NAME)
        self.output_names = list(self.config.get("output_names", OUTPUT_NAMES))
        self.session = self._session(
            onnx_path, providers, intra_op_num_threads, graph_optimization_level, session_options
        )
        self._warned_uncalibrated = False

    @staticmethod
    def _session(
        onnx_path: Path,
        providers: Sequence[str] | None,
        intra_op_num_threads: int | None,
        graph_optimization_level: str,
        session_options: Any,
    ) -> Any:
        """An onnxruntime session on the graph."""
        try:
            import onnxruntime
        except ImportError as error:
            raise ImportError(f"ONNXAnomalyDetector needs onnxruntime: {ONNX_INSTALL_HINT}") from error
        if session_options is None:
            if graph_optimization_level not in _OPTIMIZATION_LEVELS:
                raise ValueError(
                    f"graph_optimization_level must be one of {_OPTIMIZATION_LEVELS}, got {graph_optimization_level!r}."
                )
            levels = onnxruntime.GraphOptimizationLevel
            session_options = onnxruntime.SessionOptions()
            session_options.graph_optimization_level = {
                "disable": levels.ORT_DISABLE_ALL,
                "basic": levels.ORT_ENABLE_BASIC,
                "extended": levels.ORT_ENABLE_EXTENDED,
                "layout": getattr(levels, "ORT_ENABLE_LAYOUT", levels.ORT_ENABLE_EXTENDED),
                "all": levels.ORT_ENABLE_ALL,
            }[graph_optimization_level]
            if intra_op_num_threads is not None:
                if isinstance(intra_op_num_threads, bool) or not isinstance(intra_op_num_threads, int):
                    raise ValueError(f"intra_op_num_threads must be an int, got {intra_op_num_threads!r}.")
                session_options.intra_op_num_threads = intra_op_num_threads
        return onnxruntime.InferenceSession(
            os.fspath(onnx_path), sess_options=session_options, providers=list(providers or ["CPUExecutionProvider"])
        )

    def run(self, pixel_values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Run the graph on normalised pixels.

        Args:
            pixel_values: Normalised images (B, 3, H, W) at the exported size.

        Returns:
            ``(image_scores (B,), anomaly_maps (B, H, W))``, float32.
        """
        pixel_values = np.ascontiguousarray(pixel_values, dtype=np.float32)
        expected = (3, *self.image_size)
        if pixel_values.ndim != 4 or tuple(pixel_values.shape[1:]) != expected:
            raise ValueError(
                f"pixel_values must have shape (B, {expected[0]}, {expected[1]}, {expected[2]}) (the exported size), "
                f"got {tuple(pixel_values.shape)}: prepare images with preprocess()."
            )
        scores, maps = self.session.run(self.output_names, {self.input_name: pixel_values})
        return scores, maps

    def preprocess(self, image: ImageInput, source: str | None = None) -> tuple[np.ndarray, Any]:
        """One image -> (normalised pixels (3, H, W), the RGB PIL image), as the PyTorch image processor does."""
        rgb = to_rgb_image(image, source)
        return normalize_image(rgb, self.image_size, self.resample, self.image_mean, self.image_std), rgb

    def __call__(
        self,
        images: ImageInput | Sequence[ImageInput],
        batch_size: int = 1,
        threshold: float | None = None,
        pixel_threshold: float = DEFAULT_PIXEL_THRESHOLD,
        return_overlay: bool = True,
        overlay_alpha: float = 0.5,
        overlay_normalize: Normalization = True,
    ) -> dict[str, Any] | list[dict[str, Any]]:
        """Detect anomalies in one image or a list of images.

        Args:
            images: One image (path, PIL image or array) or a list (or tuple) of them.
            batch_size: Images per graph run; results do not depend on it.
            threshold: Image-score threshold (default: the saved ``anomaly_threshold``, else 0.5 with a warning).
            pixel_threshold: Anomaly-map threshold of ``mask``.
            return_overlay: Draw the heatmap overlay.
            overlay_alpha: Heatmap weight of the overlay, in [0, 1].
            overlay_normalize: True (each map min-max scaled), False, or a fixed ``(vmin, vmax)``.

        Returns:
            A result dict for one image, a list of them for a list (see the class docstring).

        Raises:
            FileNotFoundError: A path does not exist (the message names it).
            ValueError: An input that is not an image (the message names it), or a bad threshold or batch size.
        """
        if threshold is not None:
            threshold = check_threshold(threshold, "threshold")
        pixel_threshold = check_threshold(pixel_threshold, "pixel_threshold")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}.")
        single = not isinstance(images, (list, tuple))
        image_list = [images] if single else list(images)
        results = []
        for start in range(0, len(image_list), batch_size):
            batch = image_list[start : start + batch_size]
            prepared = [
                self.preprocess(image, os.fspath(image) if isinstance(image, (str, os.PathLike)) else None)
                for image in batch
            ]
            scores, maps = self.run(np.stack([pixels for pixels, _ in prepared]))
            for (_, rgb), score, anomaly_map in zip(prepared, scores, maps, strict=True):
                results.append(
                    detection_result(
                        score=float(score),
                        anomaly_map=anomaly_map,
                        image=rgb,
                        threshold=self._resolve_threshold(threshold),
                        pixel_threshold=pixel_threshold,
                        return_overlay=return_overlay,
                        overlay_alpha=overlay_alpha,
                        overlay_normalize=overlay_normalize,
                    )
                )
        return results[0] if single else results

    def _resolve_threshold(self, threshold: float | None) -> float:
        """The threshold argument, else the saved ``anomaly_threshold``, else 0.5 (warning once per detector)."""
        threshold, warned = resolve_threshold(threshold, self.threshold, not self._warned_uncalibrated)
        self._warned_uncalibrated |= warned
        return threshold

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

from ..file_utils import digests_enabled, verify_file_digest
from ..image_utils import ImageInput, to_rgb_image
from ..inference_utils import (
    DEFAULT_PIXEL_THRESHOLD,
    check_overlay_options,
    check_pixel_array,
    check_processor_settings,
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
        verify_digests: Check the graph's files against the SHA-256 recorded at export in ``onnx_config.json``
            (default: unless ``FAPROMPT_VERIFY_DIGESTS=0``); a damaged file is an ``OSError`` naming it.

    A graph exported from a model with normal references holds one class's reference features and returns the
    fused scores and maps; :attr:`normal_reference_class` and :attr:`normal_reference_image_count` say which (from
    ``onnx_config.json``; None for a zero-shot graph).

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
        verify_digests: bool | None = None,
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
        processor_path = self.directory / PREPROCESSOR_CONFIG_NAME
        self.image_size, self.resample, self.image_mean, self.image_std = check_processor_settings(
            _read_json(processor_path), os.fspath(processor_path)
        )
        config_path = self.directory / ONNX_CONFIG_NAME
        graph_size = self.config.get("image_size", list(self.image_size))
        if not isinstance(graph_size, (list, tuple)) or list(self.image_size) != list(graph_size):
            raise ValueError(
                f"{processor_path} gives the size {list(self.image_size)} but {config_path} the graph's "
                f"{graph_size!r}: the two files come from different exports. Export the model again."
            )
        threshold = self.config.get("anomaly_threshold")
        try:
            self.threshold = None if threshold is None else check_threshold(threshold, "anomaly_threshold")
        except ValueError as error:
            raise ValueError(f"{config_path}: {error} Calibrate the model again, or set it to null.") from None
        self.input_name = self.config.get("input_name", INPUT_NAME)
        self.output_names = self.config.get("output_names", list(OUTPUT_NAMES))
        if not isinstance(self.input_name, str) or not (
            isinstance(self.output_names, list)
            and len(self.output_names) == 2
            and all(isinstance(name, str) for name in self.output_names)
        ):
            raise ValueError(
                f"{config_path}: input_name must be a string and output_names a list of 2 strings (image scores, "
                f"anomaly maps), got {self.input_name!r} and {self.output_names!r}: export the model again."
            )
        self.normal_reference_class = self.config.get("normal_reference_class")
        self.normal_reference_image_count = self.config.get("normal_reference_image_count")
        if digests_enabled(verify_digests):
            self._verify_files(onnx_path)
        self.session = self._session(
            onnx_path, providers, intra_op_num_threads, graph_optimization_level, session_options
        )
        self._check_graph(config_path)
        self._warned_uncalibrated = False

    def _verify_files(self, onnx_path: Path) -> None:
        """Check the graph and its weights against the SHA-256 recorded at export (older exports record none)."""
        recorded = self.config.get("file_sha256")
        if not isinstance(recorded, dict):
            return
        fix = (
            "Export the model again (or copy the folder again); ONNXAnomalyDetector(..., verify_digests=False) skips "
            "the check."
        )
        for name, expected in sorted(recorded.items()):
            if name == ONNX_FILE_NAME and onnx_path.name != ONNX_FILE_NAME:
                continue  # another graph file was chosen (onnx_file=...): the recorded one is not loaded
            verify_file_digest(self.directory / name, str(expected), fix)

    def _check_graph(self, config_path: Path) -> None:
        """The graph's input and outputs must be those ``onnx_config.json`` names, in the recorded order and sizes."""
        inputs = {node.name: node for node in self.session.get_inputs()}
        outputs = list(self.session.get_outputs())
        if self.input_name not in inputs:
            raise ValueError(
                f"{config_path} names the input {self.input_name!r}, but the graph's input is "
                f"{sorted(inputs)}: fix input_name, or export the model again."
            )
        shape = list(inputs[self.input_name].shape)
        static = [dim if isinstance(dim, int) else None for dim in shape]
        if (
            len(static) != 4
            or (static[2], static[3]) != (None, None)
            and (static[2], static[3]) != tuple(self.image_size)
        ):
            raise ValueError(
                f"The graph's input {self.input_name!r} has shape {shape}, but {config_path} and "
                f"{PREPROCESSOR_CONFIG_NAME} give the size {list(self.image_size)}: the configs come from another "
                "export. Export the model again."
            )
        ranks = {node.name: len(node.shape) for node in outputs}
        missing = [name for name in self.output_names if name not in ranks]
        if missing:
            raise ValueError(
                f"{config_path} names the outputs {self.output_names}, but the graph has {sorted(ranks)}: fix "
                "output_names, or export the model again."
            )
        if (ranks[self.output_names[0]], ranks[self.output_names[1]]) != (1, 3):
            raise ValueError(
                f"{config_path}: output_names must list the image scores (B,) first and the anomaly maps (B, H, W) "
                f"second, but {self.output_names[0]!r} has {ranks[self.output_names[0]]} dimension(s) and "
                f"{self.output_names[1]!r} {ranks[self.output_names[1]]}: they look swapped. Fix output_names, or "
                "export the model again."
            )

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
        try:
            return onnxruntime.InferenceSession(
                os.fspath(onnx_path),
                sess_options=session_options,
                providers=list(providers or ["CPUExecutionProvider"]),
            )
        except Exception as error:  # onnxruntime raises its own Fail / InvalidProtobuf / RuntimeError classes
            data = onnx_path.with_name(onnx_path.name + ".data")
            files = f"{onnx_path}" + (f" (with its weights {data})" if data.exists() else "")
            raise OSError(
                f"onnxruntime cannot load the graph {files}: {type(error).__name__}: {str(error).splitlines()[0]} "
                "The files are truncated, emptied or from different exports: export the model again."
            ) from error

    def run(self, pixel_values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Run the graph on normalised pixels.

        Args:
            pixel_values: Normalised images (B, 3, H, W) at the exported size.

        Returns:
            ``(image_scores (B,), anomaly_maps (B, H, W))``, float32.

        Raises:
            TypeError: Not a numpy array.
            ValueError: An empty batch, another shape or size, integer pixels, NaN or inf (the rules of
                ``FAPromptModel.forward``, :func:`faprompt_hf.inference_utils.check_pixel_array`).
        """
        pixel_values = check_pixel_array(pixel_values, self.image_size)
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
        overlay_alpha, overlay_normalize = check_overlay_options(overlay_alpha, overlay_normalize)
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

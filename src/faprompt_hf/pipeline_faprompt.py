# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""The ``"anomaly-detection"`` pipeline for FAPrompt.

Importing the package registers the pipeline with transformers (idempotent), so that
``pipeline("anomaly-detection", model="path/or/hub-id")`` builds a [`FAPromptAnomalyDetectionPipeline`].
:func:`pipeline` (``faprompt_hf.pipeline``) is the same call with the package's check of local paths first: a
``model`` that looks like a local folder and does not exist fails at once with "no such folder" and close names
(``transformers.pipeline`` resolves ``model`` before any code of this package runs; docs/errors.md).

Thresholds. ``is_anomalous`` is ``score >= threshold`` with the threshold taken from, in order: the ``threshold``
argument, ``model.config.anomaly_threshold`` (set by :mod:`faprompt_hf.calibration` and kept by ``save_pretrained``),
else 0.5 with a one-time warning that it is uncalibrated. The pixel ``mask`` is ``anomaly_map >= pixel_threshold``
(argument, default 0.5). Both follow the one threshold rule, a finite number in [0, 1].
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from transformers import Pipeline
from transformers.pipelines import PIPELINE_REGISTRY
from transformers.utils import cached_file, logging

from .file_utils import check_model_reference
from .image_processing_faprompt import FAPromptImageProcessor
from .image_utils import ImageInput, to_rgb_image
from .inference_utils import (
    ANOMALY_DETECTION_TASK,
    DEFAULT_PIXEL_THRESHOLD,
    DEFAULT_THRESHOLD,
    check_overlay_options,
    check_threshold,
    detection_result,
    resolve_threshold,
)
from .modeling_faprompt import DEFAULT_REFERENCE_CLASS, FAPromptModel

logger = logging.get_logger(__name__)

__all__ = [
    "ANOMALY_DETECTION_TASK",
    "DEFAULT_PIXEL_THRESHOLD",
    "DEFAULT_THRESHOLD",
    "FAPromptAnomalyDetectionPipeline",
    "pipeline",
    "reference_digest",
    "register_pipeline",
]


_PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")


def reference_digest(pixel_values: torch.Tensor, class_name: str) -> str:
    """SHA-256 of prepared reference pixels (their shape and float32 bytes) and a class name, as hex.

    The pipeline's cache key for a reference set, and part of a ``faprompt-hf predict`` run's identity.

    Args:
        pixel_values: Prepared references (R, 3, S, S).
        class_name: The class they are stored as.

    Returns:
        64 hex digits.
    """
    digest = hashlib.sha256(f"{class_name}\0{tuple(pixel_values.shape)}\0".encode())
    digest.update(pixel_values.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


def _saved_image_processor(model: Any) -> FAPromptImageProcessor | None:
    """The image processor saved beside the model, when its folder (or hub repo) has one, else None.

    transformers' ``pipeline()`` drops a processor file it cannot load and goes on without one: a file that is
    present must load, or fail naming it.

    Raises:
        ValueError: A processor file that is not valid JSON or holds invalid settings (e.g. size 0); the message
            names it and the fix.
    """
    source = getattr(model, "name_or_path", None)
    if not source:
        return None
    lookup = {"_raise_exceptions_for_missing_entries": False, "_raise_exceptions_for_connection_errors": False}
    try:
        present = [path for name in _PROCESSOR_FILES if (path := cached_file(source, name, **lookup))]
    except OSError:
        return None
    if not present:
        return None
    fix = "fix the file or delete it (the pipeline then uses an image processor at the model's config.image_size)"
    for path in present:
        try:
            json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as error:
            raise ValueError(f"{path} cannot be read as JSON ({error}): {fix}.") from error
    try:
        return FAPromptImageProcessor.from_pretrained(source)
    except (OSError, ValueError, TypeError, KeyError) as error:
        raise ValueError(f"{present[0]} holds invalid image processor settings ({error}): {fix}.") from error


class FAPromptAnomalyDetectionPipeline(Pipeline):
    """Zero-shot anomaly detection of images with an [`FAPromptModel`].

    Inputs: an image path, a PIL image of any mode, a numpy array or torch tensor ((H, W), (H, W, C) or (C, H, W);
    uint8, uint16 or float in [0, 1]), or a list of them. Use ``batch_size`` to score several images per forward pass;
    results do not depend on it.

    Each image gives a dict:

    - ``score`` (float): the image anomaly score, in [0, 1].
    - ``is_anomalous`` (bool): ``score >= threshold`` (see the module docstring for where the threshold comes from).
    - ``anomaly_map`` (float32 ndarray (H, W)): the smoothed anomaly map, resized (bilinear) to the input's original
      height H and width W.
    - ``mask`` (bool ndarray (H, W)): ``anomaly_map >= pixel_threshold``.
    - ``overlay`` (PIL RGB image of size W x H): the map as a "jet" heatmap over the image (None with
      ``return_overlay=False``).
    - ``reference_score`` (float, only when the model has normal references): the maximum of the reference map
      (each patch's distance from its nearest reference patch, upsampled and smoothed like the anomaly map), in
      [0, 1]; ``score`` and ``anomaly_map`` then fuse the text and reference scores (``docs/few_shot.md``).

    Call parameters (also accepted by the constructor as defaults): ``threshold``, ``pixel_threshold``,
    ``return_overlay`` (default True), ``overlay_alpha`` (default 0.5), ``overlay_normalize`` (default True: each
    map min-max scaled, as the original visualisations; ``(vmin, vmax)`` for a fixed scale) and ``class_name`` (the
    class of the model's normal-reference bank to compare with; needed when it holds several).

    Normal references (few-shot): ``references=[...]`` (a call parameter only) stores a few normal images of the
    class ``class_name`` (default ``"default"``) in the model's bank, replacing that class's earlier set
    (``model.set_normal_references(..., replace=True)``), and scores against them. The features are computed once
    per set: a call with the same references (same pixels) and class reuses them.

    Example:
        ```python
        from transformers import pipeline
        import faprompt_hf  # registers the task

        detector = pipeline("anomaly-detection", model="path/to/faprompt-checkpoint")
        result = detector("part.png", threshold=0.42)
        result["score"], result["is_anomalous"], result["anomaly_map"].shape
        # few-shot: a handful of known-good images of the same part
        result = detector("part.png", references=["good1.png", "good2.png"], class_name="screw")
        result["score"], result["reference_score"]
        ```
    """

    _load_processor = False
    _load_image_processor = None
    _load_feature_extractor = False
    _load_tokenizer = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.image_processor is None:
            self.image_processor = _saved_image_processor(self.model)
        if self.image_processor is None:
            logger.info("No image processor given or found; using the model's (FAPromptImageProcessor at image_size).")
            self.image_processor = FAPromptImageProcessor.from_model_config(self.model.config)
        self._warned_uncalibrated = False
        self._reference_digests: dict[str, tuple[str, int]] = {}  # class -> (digest, model bank version after it)

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any) -> None:
        """Save the model and its image processor so that the folder loads with and without this package.

        ``pipeline("anomaly-detection", model=save_directory)`` loads it where ``faprompt_hf`` is imported, and
        ``pipeline("anomaly-detection", model=save_directory, trust_remote_code=True)`` where it is not (see
        ``FAPromptModel.save_pretrained``). Unlike transformers' ``Pipeline.save_pretrained``, the live model's
        config is left unchanged.

        Args:
            save_directory: The folder (created if needed).
            **kwargs: Options of ``FAPromptModel.save_pretrained`` (``include_clip``, ``max_shard_size``, ...).
        """
        from .file_utils import staged_directory
        from .processing_faprompt import FAPromptProcessor

        with staged_directory(save_directory) as staging:
            FAPromptProcessor(image_processor=self.image_processor).save_pretrained(staging)
        self.model.save_pretrained(save_directory, **kwargs)

    def _sanitize_parameters(
        self,
        threshold: float | None = None,
        pixel_threshold: float | None = None,
        return_overlay: bool | None = None,
        overlay_alpha: float | None = None,
        overlay_normalize: bool | tuple[float, float] | None = None,
        class_name: str | None = None,
        **kwargs: Any,
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        """Split call arguments into preprocess, forward and postprocess parameters."""
        if kwargs:
            raise TypeError(f"Unknown argument(s) {sorted(kwargs)} for the anomaly-detection pipeline.")
        forward: dict[str, Any] = {}
        if class_name is not None:  # (checked against the bank in __call__, after references= may have added it)
            forward["class_name"] = class_name
        postprocess: dict[str, Any] = {}
        if threshold is not None:
            postprocess["threshold"] = check_threshold(threshold, "threshold")
        if pixel_threshold is not None:
            postprocess["pixel_threshold"] = check_threshold(pixel_threshold, "pixel_threshold")
        if return_overlay is not None:
            postprocess["return_overlay"] = bool(return_overlay)
        if overlay_alpha is not None or overlay_normalize is not None:
            alpha, normalize = check_overlay_options(
                0.5 if overlay_alpha is None else overlay_alpha,
                True if overlay_normalize is None else overlay_normalize,
            )
            if overlay_alpha is not None:
                postprocess["overlay_alpha"] = alpha
            if overlay_normalize is not None:
                postprocess["overlay_normalize"] = normalize
        return {}, forward, postprocess

    def __call__(
        self,
        images: ImageInput | Sequence[ImageInput],
        references: ImageInput | Sequence[ImageInput] | None = None,
        **kwargs: Any,
    ) -> dict[str, Any] | list[dict[str, Any]]:
        """Detect anomalies in one image or a list of images, optionally against a few normal references.

        Args:
            images: One image (path, PIL image, array or tensor) or a list (or tuple) of them.
            references: Normal images of the same kind of object (any input kind and size ``images`` takes); they
                become the normal references of ``class_name`` in the model's bank (see the class docstring).
            **kwargs: ``batch_size``, ``num_workers``, ``threshold``, ``pixel_threshold``, ``return_overlay``,
                ``overlay_alpha``, ``overlay_normalize``, ``class_name``.

        Returns:
            A result dict for one image (see the class docstring), a list of them for a list.

        Raises:
            FileNotFoundError: A path does not exist (the message names it).
            ValueError: An input or reference that is not an image (the message names it), an empty ``references``
                list, NaN/inf reference pixels, a ``class_name`` the bank does not hold (the message lists those it
                holds), several classes in the bank and no ``class_name``, or a bad threshold.
        """
        class_name = kwargs.get("class_name", self._forward_params.get("class_name"))
        if references is not None:
            kwargs["class_name"] = self._set_references(references, class_name)
        elif class_name is not None:
            self.model.normal_reference_features(class_name)  # a ValueError listing the bank's classes if unknown
        elif len(self.model.normal_reference_classes) > 1:
            raise ValueError(
                f"The model holds normal references of several classes {self.model.normal_reference_classes}: "
                "choose one with class_name=NAME."
            )
        if isinstance(images, tuple):
            images = list(images)
        if isinstance(images, list) and not images:
            return []
        return super().__call__(images, **kwargs)

    def _set_references(self, references: ImageInput | Sequence[ImageInput], class_name: str | None) -> str:
        """Prepare ``references`` and store them as ``class_name``'s, unless the bank already holds this very set.

        Returns:
            The class name used.
        """
        name = DEFAULT_REFERENCE_CLASS if class_name is None else class_name
        pixel_values = self.image_processor.preprocess_references(references, return_tensors="pt")
        pixel_values = pixel_values["reference_pixel_values"]
        digest = reference_digest(pixel_values, name)
        model = self.model
        # A hit needs this set to be the last one stored and the bank untouched since (by anyone sharing the model).
        if self._reference_digests.get(name) == (digest, model.normal_reference_version):
            return name
        self._reference_digests.pop(name, None)
        model.set_normal_references(pixel_values.to(model.device, model.dtype), name, replace=True, batch_size=8)
        self._reference_digests[name] = (digest, model.normal_reference_version)
        return name

    def preprocess(self, image: ImageInput) -> dict[str, Any]:
        """Load and convert one image to RGB, and normalise it for the model.

        Returns:
            ``pixel_values`` (1, 3, S, S) and the RGB ``image`` (whose size is the size of the returned maps).
        """
        source = os.fspath(image) if isinstance(image, (str, os.PathLike)) else None
        rgb = to_rgb_image(image, source)
        pixel_values = self.image_processor(images=[rgb], return_tensors="pt")["pixel_values"]
        return {"pixel_values": pixel_values, "image": rgb}

    def _forward(self, model_inputs: dict[str, Any], class_name: str | None = None) -> dict[str, Any]:
        """Run the model on a batch; scores and maps come back as float32, the maps already at each image's size.

        The maps are smoothed (in ``forward``) and resized (bilinear) to their image's original size on the model's
        device, before they leave it: the host only thresholds them and draws the overlay.

        Args:
            model_inputs: ``pixel_values`` (B, 3, S, S) and the RGB ``image`` (or list of them).
            class_name: The normal-reference class to compare with (None: the bank's only class, or none).

        Returns:
            ``image_scores`` (B,), ``anomaly_maps`` ((B, H, W) when the images share a size, else a list of (H, W)
            tensors), ``reference_scores`` ((B,), or None without references) and the RGB ``image`` (or list).
        """
        outputs = self.model(
            pixel_values=model_inputs["pixel_values"].to(self.model.dtype), normal_reference_class=class_name
        )
        images = model_inputs["image"]
        reference_scores = outputs.reference_scores
        return {
            "image_scores": outputs.image_scores.float(),
            "anomaly_maps": _resize_maps(
                outputs.anomaly_maps.float(), images if isinstance(images, list) else [images]
            ),
            "reference_scores": None if reference_scores is None else reference_scores.float(),
            "image": images,
        }

    def _resolve_threshold(self, threshold: float | None) -> float:
        """The threshold argument, else ``config.anomaly_threshold``, else 0.5 (warning once per pipeline)."""
        threshold, warned = resolve_threshold(
            threshold, getattr(self.model.config, "anomaly_threshold", None), not self._warned_uncalibrated
        )
        self._warned_uncalibrated |= warned
        return threshold

    def postprocess(
        self,
        model_outputs: dict[str, Any],
        threshold: float | None = None,
        pixel_threshold: float = DEFAULT_PIXEL_THRESHOLD,
        return_overlay: bool = True,
        overlay_alpha: float = 0.5,
        overlay_normalize: bool | tuple[float, float] = True,
    ) -> dict[str, Any]:
        """Turn one image's outputs into the result dict (its map arrives resized to the image's size)."""
        result = detection_result(
            score=float(model_outputs["image_scores"].reshape(-1)[0]),
            anomaly_map=model_outputs["anomaly_maps"].reshape(model_outputs["anomaly_maps"].shape[-2:]).numpy(),
            image=model_outputs["image"],
            threshold=self._resolve_threshold(threshold),
            pixel_threshold=pixel_threshold,
            return_overlay=return_overlay,
            overlay_alpha=overlay_alpha,
            overlay_normalize=overlay_normalize,
        )
        if model_outputs["reference_scores"] is not None:
            result["reference_score"] = float(model_outputs["reference_scores"].reshape(-1)[0])
        return result


def _resize_maps(maps: torch.Tensor, images: Sequence[Any]) -> torch.Tensor | list[torch.Tensor]:
    """Resize maps (B, S_h, S_w) to their images' sizes with bilinear interpolation, where the maps are.

    This is :func:`faprompt_hf.inference_utils.resize_anomaly_map` (``align_corners=False``), run on the maps'
    device; ``detection_result`` then finds each map at its image's size and leaves it as it is.

    Args:
        maps: Anomaly maps (B, S_h, S_w), float32.
        images: The B PIL images, whose sizes the maps take.

    Returns:
        One tensor (B, H, W) when every image has the same size (H, W), else a list of B tensors (H_i, W_i).
    """
    sizes = [(image.height, image.width) for image in images]
    if len(set(sizes)) == 1:
        return _resize(maps, sizes[0])
    return [_resize(anomaly_map[None], size)[0] for anomaly_map, size in zip(maps, sizes, strict=True)]


def _resize(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Maps (B, h, w) resized to (B, size[0], size[1]) (bilinear, ``align_corners=False``); unchanged at that size."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return F.interpolate(maps[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]


def register_pipeline() -> None:
    """Register [`FAPromptAnomalyDetectionPipeline`] under the task ``"anomaly-detection"`` (idempotent)."""
    existing = PIPELINE_REGISTRY.supported_tasks.get(ANOMALY_DETECTION_TASK)
    if existing is not None and existing.get("impl") is FAPromptAnomalyDetectionPipeline:
        return
    PIPELINE_REGISTRY.register_pipeline(
        ANOMALY_DETECTION_TASK,
        pipeline_class=FAPromptAnomalyDetectionPipeline,
        pt_model=FAPromptModel,
        type="image",
    )


def pipeline(task: str | None = ANOMALY_DETECTION_TASK, model: Any = None, **kwargs: Any) -> Pipeline:
    """``transformers.pipeline``, with the package's check of a local model path first.

    ``transformers.pipeline(task, model="./missing")`` reads ``model``'s config before it looks at the task, so the
    package's pipeline class never sees a missing folder and the error is transformers' ("Repo id must use
    alphanumeric chars ..."). This function first applies the rule of ``FAPromptModel.from_pretrained`` and
    ``faprompt-hf``: a ``model`` (or ``config``) string that looks like a local path (starts with ``.``, ``/`` or
    ``~``, holds the OS separator, or more than one ``/``) and does not exist fails at once, without hub requests.

    Args:
        task: The task (default ``"anomaly-detection"``).
        model: A model folder, a hub id or a loaded model, as for ``transformers.pipeline``.
        **kwargs: Everything else ``transformers.pipeline`` takes (``device``, ``threshold``, ``trust_remote_code``,
            ...).

    Returns:
        The pipeline, e.g. a [`FAPromptAnomalyDetectionPipeline`].

    Raises:
        FileNotFoundError: A path-like ``model`` or ``config`` that does not exist: "'./missing': no such folder;
            close names in ./: ...".

    Example:
        ```python
        import faprompt_hf

        detector = faprompt_hf.pipeline(model="runs/faprompt-mvtec")  # = pipeline("anomaly-detection", model=...)
        ```
    """
    for reference in (model, kwargs.get("config")):
        if isinstance(reference, (str, os.PathLike)):
            check_model_reference(reference)
    from transformers import pipeline as transformers_pipeline

    if isinstance(model, os.PathLike):
        model = os.fspath(model)
    return transformers_pipeline(task, model=model, **kwargs)


_MOVED_TO_CALIBRATION = ("calibrate_threshold", "threshold_from_f1")


def __getattr__(name: str) -> Any:
    """Names that moved: ``calibrate_threshold`` and ``threshold_from_f1`` live in :mod:`faprompt_hf.calibration`.

    They stay importable from here where the package is installed.
    """
    if name in _MOVED_TO_CALIBRATION:
        try:  # (not a relative import: a saved folder's remote code carries no calibration code)
            from faprompt_hf import calibration
        except ImportError as error:
            raise AttributeError(f"{name} needs the faprompt_hf package: pip install faprompt-hf") from error
        return getattr(calibration, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

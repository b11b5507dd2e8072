# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""Export an [`FAPromptModel`] to one ONNX graph: ``pixel_values`` in, ``image_scores`` and ``anomaly_maps`` out.

After training the static prompts are constants, so their text features (and the prompt embeddings the prior is added
to) are computed once here and stored in the graph. Per image the graph runs the vision tower with its V-V path, the
prior network, one text-tower pass over the K prior-conditioned prompts, and the arithmetic of
``FAPromptModel.forward`` (the exported graph is traced from that very forward, given the baked prompts through its
``static_prompts`` argument).
"""

from __future__ import annotations

import copy
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import __version__
from ..file_utils import file_sha256, remove_stale_staging, staged_directory
from ..image_processing_faprompt import FAPromptImageProcessor
from ..modeling_faprompt import FAPromptModel, FAPromptStaticPrompts
from ..processing_faprompt import FAPromptProcessor
from .runtime import (
    INPUT_NAME,
    ONNX_CONFIG_NAME,
    ONNX_FILE_NAME,
    ONNX_INSTALL_HINT,
    OUTPUT_NAMES,
    PREPROCESSOR_CONFIG_NAME,
)

__all__ = [
    "FAPromptForONNX",
    "MIN_OPSET",
    "QUANTIZATION_MODES",
    "export_onnx",
    "normal_reference_choice",
    "quantize_onnx_file",
]

logger = logging.getLogger(__name__)

MIN_OPSET = 18
"""The oldest ONNX opset the exporter (``torch.onnx.export(..., dynamo=True)``) writes."""

_TRACE_BATCH = 2  # the example batch the graph is traced with (the batch axis stays dynamic)

QUANTIZATION_MODES = ("int8",)
"""What ``export_onnx(..., quantize=...)`` accepts (besides None, float32): ``"int8"``, onnxruntime's dynamic int8
quantisation of the MatMul weights (see :func:`quantize_onnx_file`)."""


class FAPromptForONNX(nn.Module):
    """An [`FAPromptModel`] whose static prompt side is constant: ``pixel_values -> (image_scores, anomaly_maps)``.

    The static prompts' features and the embeddings of the K abnormal prompts (before the prior is added to their
    contexts) are computed once, when the wrapper is built, and kept as buffers; the token-embedding table is not
    needed afterwards. With normal references, the rows of one class of the bank are kept as a buffer too, and the
    outputs are the fused ones. The forward is ``model.forward(pixel_values, static_prompts=<the buffers>,
    normal_reference_features=<the class's rows>)``: the public forward, traced as it is.

    Args:
        model: A float32 FAPromptModel in eval mode (its weights are shared, not copied).
        normal_reference_class: The bank's class to bake in (see :func:`normal_reference_choice`); None: the only
            class of a one-class bank, or no references when the bank is empty.
    """

    def __init__(self, model: FAPromptModel, normal_reference_class: str | None = None) -> None:
        super().__init__()
        self.model = model
        with torch.no_grad():
            static = model.static_prompts()
        self.register_buffer("normal_text_feature", static.normal_feature.detach().clone())
        self.register_buffer("abnormal_text_features", static.abnormal_features.detach().clone())
        self.register_buffer("abnormal_prompt_embeds", static.abnormal_prompt_embeds.detach().clone())
        self.normal_reference_class = normal_reference_choice(model, normal_reference_class)
        rows = None
        if self.normal_reference_class is not None:
            rows = model.normal_reference_features(self.normal_reference_class).detach().float().clone()
        self.register_buffer("normal_reference_features", rows)  # (N, D) of one class, or None

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Score images.

        Args:
            pixel_values: Normalised images (B, 3, H, W), float32.

        Returns:
            ``(image_scores (B,), anomaly_maps (B, H, W))``, the smoothed maps of ``FAPromptModel.forward``.
        """
        static = FAPromptStaticPrompts(
            self.normal_text_feature, self.abnormal_text_features, self.abnormal_prompt_embeds
        )
        outputs = self.model(
            pixel_values=pixel_values,
            static_prompts=static,
            normal_reference_features=self.normal_reference_features,
            return_dict=True,
        )
        return outputs.image_scores, outputs.anomaly_maps


def normal_reference_choice(model: FAPromptModel, normal_reference_class: str | None) -> str | None:
    """The class of the model's normal-reference bank an export bakes in.

    Args:
        model: The model.
        normal_reference_class: The class asked for, or None.

    Returns:
        ``normal_reference_class``; else the only class of a one-class bank; else None (an empty bank: a zero-shot
        graph).

    Raises:
        ValueError: The bank holds several classes and none is chosen, or not the one chosen (the message lists the
            classes it holds), or a class is asked of an empty bank.
    """
    names = model.normal_reference_classes
    if normal_reference_class is None:
        if len(names) > 1:
            raise ValueError(
                f"The model holds normal references of several classes {names}; an ONNX graph holds one: choose it "
                "with export_onnx(..., normal_reference_class=NAME) (faprompt-hf export --normal_reference_class "
                "NAME)."
            )
        return names[0] if names else None
    if normal_reference_class not in names:
        known = f"it holds {names}" if names else "it holds none (add some with model.set_normal_references)"
        raise ValueError(
            f"normal_reference_class={normal_reference_class!r} is not a class of the model's normal-reference bank: "
            f"{known}."
        )
    return normal_reference_class


def _image_size(
    image_size: int | tuple[int, int] | None, image_processor: FAPromptImageProcessor | None, model: FAPromptModel
) -> tuple[int, int]:
    """The exported (height, width): the argument, else the processor's size, else ``config.image_size``."""
    if image_size is None:
        if image_processor is not None:
            image_size = (image_processor.size["height"], image_processor.size["width"])
        else:
            image_size = model.config.image_size
    return model.config.check_input_size(image_size, name="image_size", check_prior=True)


def _check_opset(opset: int | None, newest: int) -> int | None:
    """The opset, checked against what the exporter and the installed onnx support."""
    if opset is None:
        return None
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= newest:
        raise ValueError(
            f"Unknown or unsupported ONNX opset {opset!r}: use an integer from {MIN_OPSET} to {newest} (the newest "
            "the installed onnx package knows), or leave it unset for the exporter's default."
        )
    return opset


def _float32_model(model: FAPromptModel) -> FAPromptModel:
    """The model itself when it is float32, else a float32 copy (the graph's input and maths are float32)."""
    dtypes = {tensor.dtype for tensor in [*model.parameters(), *model.buffers()] if tensor.is_floating_point()}
    if dtypes <= {torch.float32}:
        return model
    logger.warning(
        "The model holds %s weights; exporting a float32 copy (the ONNX graph takes and computes float32).",
        ", ".join(sorted(str(dtype).removeprefix("torch.") for dtype in dtypes - {torch.float32})),
    )
    return copy.deepcopy(model).float()


def _check_quantize(quantize: str | None) -> str | None:
    """The ``quantize`` argument, checked: None or one of :data:`QUANTIZATION_MODES`."""
    if quantize is None or (isinstance(quantize, str) and quantize in QUANTIZATION_MODES):
        return quantize
    raise ValueError(
        f"Unknown quantize={quantize!r}: use None (float32) or one of {list(QUANTIZATION_MODES)} (int8: dynamic "
        "quantisation of the MatMul weights with onnxruntime)."
    )


def quantize_onnx_file(onnx_path: str | os.PathLike, quantize: str = "int8") -> dict[str, Any]:
    """Quantise an exported graph in place: int8 weights for every MatMul with a constant weight.

    onnxruntime's dynamic quantisation (``onnxruntime.quantization.quantize_dynamic``): the weights of the MatMuls
    (the vision and text towers' projections and MLPs, the prior network) are stored as int8, one scale per tensor;
    each run quantises their input activations to uint8 with the activations' own range. Attention products of two
    activations, the softmaxes, the maps and the smoothing stay float32. The graph keeps its input and outputs, so
    :class:`~faprompt_hf.onnx.ONNXAnomalyDetector` loads it unchanged. Dynamic quantisation needs no calibration
    images; because the activation ranges are measured per run, an image's result depends on the other images of
    its batch (up to 0.22 in score on the tiny test model; run batch 1 where that matters). Speed and accuracy:
    ``docs/deployment.md`` (int8) and ``docs/performance.md``.

    Args:
        onnx_path: ``model.onnx`` of an export folder (a ``model.onnx.data`` beside it is replaced as well).
        quantize: ``"int8"`` (the only mode, see :data:`QUANTIZATION_MODES`).

    Returns:
        What was done, as stored under ``"quantization"`` in ``onnx_config.json``.

    Raises:
        ImportError: onnxruntime is not installed.
        ValueError: An unknown ``quantize``.
    """
    _check_quantize(quantize)
    try:
        import onnxruntime
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as error:
        raise ImportError(f"Quantising the ONNX graph needs onnxruntime: {ONNX_INSTALL_HINT}") from error
    onnx_path = Path(onnx_path)
    weights = onnx_path.with_name(f"{onnx_path.name}.data")
    large = weights.is_file()  # a graph over protobuf's 2 GB limit keeps its weights beside it
    settings = {
        "method": "dynamic",
        "weight_type": "int8",
        "activation_type": "uint8 (range measured per run)",
        "op_types": ["MatMul"],
        "per_channel": False,
        "reduce_range": False,
        "tool": f"onnxruntime.quantization.quantize_dynamic (onnxruntime {onnxruntime.__version__})",
    }
    with tempfile.TemporaryDirectory(dir=onnx_path.parent, prefix=".quantize-") as work:
        quantized = Path(work) / onnx_path.name
        quantize_dynamic(
            onnx_path,
            quantized,
            op_types_to_quantize=settings["op_types"],
            per_channel=settings["per_channel"],
            reduce_range=settings["reduce_range"],
            weight_type=QuantType.QInt8,
            use_external_data_format=large,
        )
        weights.unlink(missing_ok=True)
        for file in Path(work).iterdir():
            file.replace(onnx_path.parent / file.name)
    return settings


def _reference_settings(model: FAPromptModel, reference_class: str | None) -> dict[str, Any]:
    """What ``onnx_config.json`` records of the baked normal references (None throughout for a zero-shot graph)."""
    config = model.config
    index = None if reference_class is None else config.normal_reference_classes.index(reference_class)
    return {
        "normal_reference_class": reference_class,
        "normal_reference_image_count": None if index is None else config.normal_reference_image_counts[index],
        "normal_reference_patch_count": None if index is None else config.normal_reference_patch_counts[index],
        "reference_map_weight": None if index is None else config.reference_map_weight,
        "reference_score_weight": None if index is None else config.reference_score_weight,
    }


def export_onnx(
    model: FAPromptModel,
    path: str | os.PathLike,
    image_size: int | tuple[int, int] | None = None,
    opset: int | None = None,
    processor: FAPromptImageProcessor | FAPromptProcessor | None = None,
    quantize: str | None = None,
    normal_reference_class: str | None = None,
) -> Path:
    """Export a model to ``path/model.onnx``, with the processor's config and the threshold beside it.

    The graph takes ``pixel_values`` (float32, N x 3 x H x W, N dynamic, H x W fixed at export) and returns
    ``image_scores`` (N) and ``anomaly_maps`` (N x H x W, smoothed with ``config.gaussian_sigma``). The folder also
    gets ``preprocessor_config.json`` (the image processor at the exported size) and ``onnx_config.json`` (sizes,
    names, opset and ``anomaly_threshold``), which :class:`faprompt_hf.onnx.ONNXAnomalyDetector` reads. The graph is
    checked with ``onnx.checker.check_model(..., full_check=True)`` before anything is written.

    Args:
        model: The model. A model in another dtype (bf16, fp16) is exported as a float32 copy; the model itself is
            not modified.
        path: The output folder (created if needed; files of a previous export are replaced).
        image_size: Input side S, or (height, width); multiples of the patch size. Default: the processor's size,
            else ``config.image_size``.
        opset: ONNX opset (from 18); default: the exporter's.
        processor: The image processor (or processor) whose settings to save; default
            ``FAPromptImageProcessor(size=image_size)``. Its size is set to the exported size.
        quantize: None (default: a float32 graph) or ``"int8"``: the MatMul weights stored as int8 and their inputs
            quantised per run (onnxruntime dynamic quantisation, :func:`quantize_onnx_file`): weights 4x smaller,
            faster on CPUs, and results that depend on the batch's other images (see ``docs/deployment.md``).
            Recorded as ``"quantization"`` in ``onnx_config.json``.
        normal_reference_class: With normal references (``model.set_normal_references``), the class whose bank rows
            the graph holds as a constant, so that its outputs are the fused ones of ``forward(...,
            normal_reference_class=...)``. Required when the bank holds several classes; with one class that class
            is used; without references the graph is the zero-shot one. Recorded in ``onnx_config.json``
            (``normal_reference_class``, ``normal_reference_image_count``, ``normal_reference_patch_count``).

    Returns:
        The path of the ONNX file.

    Raises:
        ImportError: onnx or onnxscript is not installed (``pip install "faprompt-hf[onnx]"``).
        ValueError: An image size that is not a multiple of the patch size, an unknown opset or ``quantize``, a
            path that names a file, or a bank of several classes without ``normal_reference_class`` (or without that
            class).
    """
    try:
        import onnx
        import onnxscript  # noqa: F401 - the dynamo exporter needs it
    except ImportError as error:
        raise ImportError(f"export_onnx needs onnx and onnxscript: {ONNX_INSTALL_HINT}") from error
    if not isinstance(model, FAPromptModel):
        raise TypeError(f"export_onnx needs an FAPromptModel, got {type(model).__name__}.")
    destination = Path(path)
    if destination.suffix == ".onnx" or destination.is_file():
        raise ValueError(
            f"path {os.fspath(path)!r} must be a folder: export_onnx writes {ONNX_FILE_NAME} and its configs into it "
            f"(for example path={os.fspath(destination.with_suffix(''))!r})."
        )
    if processor is not None and not isinstance(processor, (FAPromptImageProcessor, FAPromptProcessor)):
        raise TypeError(
            f"processor must be an FAPromptImageProcessor or FAPromptProcessor (or None for one at the exported size), "
            f"got {processor!r} ({type(processor).__name__}); load one with "
            "FAPromptProcessor.from_pretrained(model_folder)."
        )
    image_processor = processor.image_processor if isinstance(processor, FAPromptProcessor) else processor
    height, width = _image_size(image_size, image_processor, model)
    opset = _check_opset(opset, onnx.defs.onnx_opset_version())
    quantize = _check_quantize(quantize)
    reference_class = normal_reference_choice(model, normal_reference_class)
    if image_processor is None:
        image_processor = FAPromptImageProcessor.from_model_config(model.config, (height, width))
    else:
        image_processor = copy.deepcopy(image_processor)
        image_processor.size = {"height": height, "width": width}

    export_model = _float32_model(model)
    was_training = export_model.training
    export_model.eval()
    try:
        wrapper = FAPromptForONNX(export_model, reference_class).eval()
        example = torch.zeros(_TRACE_BATCH, 3, height, width)
        with torch.no_grad():
            program = torch.onnx.export(
                wrapper,
                (example,),
                input_names=[INPUT_NAME],
                output_names=list(OUTPUT_NAMES),
                opset_version=opset,
                dynamic_shapes={"pixel_values": {0: torch.export.Dim("batch", min=1)}},
                dynamo=True,
                verbose=False,
            )
    finally:
        export_model.train(was_training)

    config = model.config
    settings: dict[str, Any] = {
        "format_version": 1,
        "onnx_file": ONNX_FILE_NAME,
        "input_name": INPUT_NAME,
        "output_names": list(OUTPUT_NAMES),
        "image_size": [height, width],
        "opset": program.model.opset_imports.get("", opset),
        "anomaly_threshold": config.anomaly_threshold,
        "gaussian_sigma": config.gaussian_sigma,
        "prior_patch_selection": config.prior_patch_selection,
        "source_model": model.name_or_path or None,
        "faprompt_hf_version": __version__,
        "torch_version": torch.__version__,
        "onnx_version": onnx.__version__,
        "quantization": None,
        **_reference_settings(model, reference_class),
    }
    for stale in remove_stale_staging(destination):  # left by an export that was killed before it finished
        logger.warning("Removed %s, left by an export into %s that was killed before it finished.", stale, destination)
    with staged_directory(destination) as staging:
        onnx_path = staging / ONNX_FILE_NAME
        program.save(onnx_path)
        onnx.checker.check_model(os.fspath(onnx_path), full_check=True)
        if quantize is not None:
            settings["quantization"] = quantize_onnx_file(onnx_path, quantize)
            onnx.checker.check_model(os.fspath(onnx_path), full_check=True)
        graph_files = [name for name in (ONNX_FILE_NAME, f"{ONNX_FILE_NAME}.data") if (staging / name).is_file()]
        settings["file_sha256"] = {name: file_sha256(staging / name) for name in graph_files}  # of the final graph
        (staging / PREPROCESSOR_CONFIG_NAME).write_text(image_processor.to_json_string(), encoding="utf-8")
        (staging / ONNX_CONFIG_NAME).write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
        written = {file.name for file in staging.iterdir()}
    stale_weights = destination / f"{ONNX_FILE_NAME}.data"
    if stale_weights.name not in written:
        stale_weights.unlink(missing_ok=True)  # an earlier, larger export's weights: the new graph holds its own
    logger.info("Exported %s (%dx%d, opset %s).", destination / ONNX_FILE_NAME, height, width, settings["opset"])
    return destination / ONNX_FILE_NAME

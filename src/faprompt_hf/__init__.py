# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""FAPrompt for zero-shot anomaly detection, on Hugging Face transformers.

Importing the package registers ``FAPromptConfig``, ``FAPromptModel``, ``FAPromptImageProcessor`` and
``FAPromptProcessor`` with transformers' Auto classes (model type ``"faprompt"``), the ``"anomaly-detection"``
pipeline, and the model card writer that ``model.push_to_hub`` uses. ``faprompt_hf.pipeline`` is
``transformers.pipeline`` (task ``"anomaly-detection"`` by default) with the package's check of local model paths.
``docs/architecture.md`` maps the modules.

Without PyTorch or transformers the package still imports, for the ONNX runtime
(:class:`faprompt_hf.onnx.ONNXAnomalyDetector`, which needs only numpy, Pillow and onnxruntime); the PyTorch names then
raise an ImportError that says what to install.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from .defaults import DEFAULT_CLIP
from .defaults import __version__ as __version__


def _is_importable(name: str) -> bool:
    """Whether a top-level package can be imported (transformers' ``is_torch_available`` style: no import)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


__all__ = [
    "DEFAULT_CLIP",
    "TORCH_AVAILABLE",
    "FAPromptAnomalyDetectionPipeline",
    "FAPromptConfig",
    "FAPromptImageProcessor",
    "FAPromptModel",
    "FAPromptOutput",
    "FAPromptPreTrainedModel",
    "FAPromptProcessor",
    "calibrate_threshold",
    "clip_vit_large_patch14_336_config",
    "convert_original_checkpoint",
    "export_onnx",
    "pipeline",
    "register_pipeline",
    "threshold_from_f1",
]

TORCH_AVAILABLE = _is_importable("torch") and _is_importable("transformers")
"""Whether PyTorch and transformers are installed (the model, processor, pipeline and ONNX export need them)."""

if TORCH_AVAILABLE:
    from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoProcessor

    from .calibration import calibrate_threshold, threshold_from_f1
    from .checkpoints import register_hub_publisher
    from .configuration_faprompt import FAPromptConfig, clip_vit_large_patch14_336_config
    from .convert_original import convert_original_checkpoint
    from .hub import push_model_to_hub
    from .image_processing_faprompt import FAPromptImageProcessor
    from .modeling_faprompt import FAPromptModel, FAPromptOutput, FAPromptPreTrainedModel
    from .onnx.export import export_onnx
    from .pipeline_faprompt import FAPromptAnomalyDetectionPipeline, pipeline, register_pipeline
    from .processing_faprompt import FAPromptProcessor

    AutoConfig.register("faprompt", FAPromptConfig, exist_ok=True)
    AutoModel.register(FAPromptConfig, FAPromptModel, exist_ok=True)
    AutoImageProcessor.register(FAPromptConfig, image_processor_classes={"pil": FAPromptImageProcessor}, exist_ok=True)
    AutoProcessor.register(FAPromptConfig, FAPromptProcessor, exist_ok=True)
    register_pipeline()  # here only: a model folder's remote-code copy of the pipeline must not claim the task
    register_hub_publisher(push_model_to_hub)  # model.push_to_hub adds a processor and a model card
    # Saved folders carry their code through faprompt_hf.remote_code alone (no register_for_auto_class: transformers
    # would copy the code a second time).
else:

    def __getattr__(name: str) -> Any:
        """Explain, for a PyTorch name, that it needs PyTorch and transformers."""
        if name in __all__:
            raise ImportError(
                f"faprompt_hf.{name} needs PyTorch and transformers, which are not installed: "
                'pip install torch "faprompt-hf". Without them only faprompt_hf.onnx.ONNXAnomalyDetector works.'
            )
        raise AttributeError(f"module 'faprompt_hf' has no attribute {name!r}")

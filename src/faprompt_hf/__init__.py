# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""FAPrompt for zero-shot anomaly detection, on Hugging Face transformers.

Importing the package registers ``FAPromptConfig``, ``FAPromptModel``, ``FAPromptImageProcessor`` and
``FAPromptProcessor`` with transformers' Auto classes (model type ``"faprompt"``) and for remote code (saved folders
carry their code), and the ``"anomaly-detection"`` pipeline.
"""

from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoProcessor

from .configuration_faprompt import FAPromptConfig, clip_vit_large_patch14_336_config
from .convert_original import convert_original_checkpoint
from .image_processing_faprompt import FAPromptImageProcessor
from .modeling_faprompt import FAPromptModel, FAPromptOutput, FAPromptPreTrainedModel
from .pipeline_faprompt import (
    FAPromptAnomalyDetectionPipeline,
    calibrate_threshold,
    register_pipeline,
    threshold_from_f1,
)
from .processing_faprompt import FAPromptProcessor

__version__ = "0.1.0"

DEFAULT_CLIP = "openai/clip-vit-large-patch14-336"

AutoConfig.register("faprompt", FAPromptConfig, exist_ok=True)
AutoModel.register(FAPromptConfig, FAPromptModel, exist_ok=True)
AutoImageProcessor.register(FAPromptConfig, image_processor_classes={"pil": FAPromptImageProcessor}, exist_ok=True)
AutoProcessor.register(FAPromptConfig, FAPromptProcessor, exist_ok=True)
register_pipeline()
# Saved folders name these classes in their auto_map and carry their code (trust_remote_code=True without the package).
FAPromptConfig.register_for_auto_class("AutoConfig")
FAPromptModel.register_for_auto_class("AutoModel")
FAPromptImageProcessor.register_for_auto_class("AutoImageProcessor")
FAPromptProcessor.register_for_auto_class("AutoProcessor")

__all__ = [
    "DEFAULT_CLIP",
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
    "register_pipeline",
    "threshold_from_f1",
]

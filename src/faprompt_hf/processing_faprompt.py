# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""Processor for FAPrompt: the image processor plus an optional CLIP tokenizer."""

from __future__ import annotations

import os
from typing import Any

from transformers.feature_extraction_utils import BatchFeature
from transformers.processing_utils import ProcessorMixin
from transformers.utils import logging

from .image_processing_faprompt import FAPromptImageProcessor
from .remote_code import write_remote_code

__all__ = ["TOKENIZER_FILES", "FAPromptProcessor", "prompt_token_ids"]

logger = logging.get_logger(__name__)

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json")
"""Files of which at least one is in a folder that holds a tokenizer."""


def prompt_token_ids(
    tokenizer: Any, normal_suffix: str = "object.", abnormal_suffix: str = "damaged object."
) -> dict[str, Any]:
    """Config fields for the prompt templates, tokenised by a CLIP tokenizer (the one home of this rule).

    Args:
        tokenizer: A ``CLIPTokenizer``.
        normal_suffix: Words after the normal context.
        abnormal_suffix: Words after the abnormal context.

    Returns:
        Keyword arguments for [`FAPromptConfig`]: ``bos_token_id``, ``eos_token_id``, placeholder ids and the
        two suffixes' ids.

    Raises:
        ValueError: A word maps to the unknown token (which is EOS for CLIP).
    """

    def encode(words: str) -> list[int]:
        ids = tokenizer(words, add_special_tokens=False)["input_ids"]
        if tokenizer.unk_token_id is not None and tokenizer.unk_token_id in ids:
            raise ValueError(f"{words!r} contains a token unknown to the tokenizer (it would be read as EOS).")
        return ids

    (normal_placeholder,), (abnormal_placeholder,) = encode("N"), encode("A")
    return {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "normal_placeholder_token_id": normal_placeholder,
        "abnormal_placeholder_token_id": abnormal_placeholder,
        "normal_suffix_token_ids": encode(normal_suffix),
        "abnormal_suffix_token_ids": encode(abnormal_suffix),
    }


class FAPromptProcessor(ProcessorMixin):
    r"""Wraps an [`FAPromptImageProcessor`] and, optionally, a CLIP tokenizer.

    Inference needs no tokenizer: the prompt templates' token ids live in [`FAPromptConfig`]. The tokenizer is only
    used to derive those ids for custom prompt words (:meth:`prompt_token_ids`).

    Args:
        image_processor: The image processor.
        tokenizer: Optional ``CLIPTokenizer``.
    """

    def __init__(self, image_processor: FAPromptImageProcessor | None = None, tokenizer: Any = None, **kwargs: Any):
        super().__init__(image_processor, tokenizer)

    @classmethod
    def from_model_config(
        cls, config: Any, size: int | tuple[int, int] | None = None, tokenizer: Any = None
    ) -> FAPromptProcessor:
        """The processor of a model: see :meth:`FAPromptImageProcessor.from_model_config`.

        Args:
            config: An ``FAPromptConfig``.
            size: A size instead of ``config.image_size`` (checked against the model's patch size).
            tokenizer: Optional ``CLIPTokenizer``.

        Returns:
            The processor.
        """
        return cls(image_processor=FAPromptImageProcessor.from_model_config(config, size), tokenizer=tokenizer)

    def check_argument_for_proper_class(self, argument_name: str, argument: Any) -> Any:
        """Accept a missing tokenizer; check every other sub-processor as transformers does."""
        if argument_name == "tokenizer" and argument is None:
            return None
        return super().check_argument_for_proper_class(argument_name, argument)

    def save_pretrained(self, save_directory: str, **kwargs: Any) -> list[str]:
        """Save like transformers' processors, with the remote code; without a tokenizer only the image processor.

        The folder gets the inference code and an ``auto_map`` (:func:`faprompt_hf.remote_code.write_remote_code`),
        so that ``AutoProcessor.from_pretrained(folder, trust_remote_code=True)`` works without this package.
        """
        if self.tokenizer is not None:
            saved = super().save_pretrained(save_directory, **kwargs)
        else:
            self.get_attributes = lambda: ["image_processor"]  # shadows the classmethod for this call only
            try:
                saved = super().save_pretrained(save_directory, **kwargs)
            finally:
                del self.get_attributes
        write_remote_code(save_directory)
        return saved

    @classmethod
    def _load_tokenizer_from_pretrained(
        cls, sub_processor_type: str, pretrained_model_name_or_path: str, **kwargs: Any
    ) -> Any:
        """Load the tokenizer when the checkpoint has one, else None (inference needs none)."""
        if os.path.isdir(pretrained_model_name_or_path):
            folder = os.path.join(pretrained_model_name_or_path, kwargs.get("subfolder") or "")
            if not any(os.path.isfile(os.path.join(folder, name)) for name in TOKENIZER_FILES):
                return None
        try:
            return super()._load_tokenizer_from_pretrained(sub_processor_type, pretrained_model_name_or_path, **kwargs)
        except (OSError, ValueError):
            logger.info("No tokenizer found at %s; the processor works without one.", pretrained_model_name_or_path)
            return None

    def __call__(
        self, images: Any = None, text: Any = None, masks: Any = None, references: Any = None, **kwargs: Any
    ) -> BatchFeature:
        """Process images and masks, normal references (few-shot) and text (when a tokenizer is present).

        Args:
            images: One image or a list (see [`FAPromptImageProcessor.preprocess`]).
            text: Optional text for the tokenizer.
            masks: Optional masks, one (or None) per image.
            references: Optional normal reference images for ``model.set_normal_references`` (``docs/few_shot.md``):
                one or a list, of any input kind and size ``images`` takes; they are prepared like images
                ([`FAPromptImageProcessor.preprocess_references`]).
            **kwargs: ``return_tensors``, ``size``, ``resize_mismatched_masks``; tokenizer options with text.

        Returns:
            ``BatchFeature`` with ``pixel_values`` (B, 3, S, S) and ``masks`` (B, S, S) (when images are given),
            ``reference_pixel_values`` (R, 3, S, S) (when references are given) and the tokenizer's outputs (when
            text is given).

        Raises:
            ValueError: Nothing to process, masks without images, an empty ``references`` list, an input that is not
                an image (named), or text without a tokenizer.
        """
        if images is None and text is None and references is None:
            raise ValueError("Give images (and optionally masks), references or text.")
        data: dict[str, Any] = {}
        return_tensors = kwargs.pop("return_tensors", None)
        size = kwargs.pop("size", None)
        if images is not None:
            image_kwargs = {"size": size}
            if "resize_mismatched_masks" in kwargs:
                image_kwargs["resize_mismatched_masks"] = kwargs.pop("resize_mismatched_masks")
            data.update(self.image_processor(images, masks=masks, return_tensors=return_tensors, **image_kwargs))
        elif masks is not None:
            raise ValueError("masks were given without images.")
        if references is not None:
            data.update(
                self.image_processor.preprocess_references(references, size=size, return_tensors=return_tensors)
            )
        if text is not None:
            if self.tokenizer is None:
                raise ValueError(
                    "This processor has no tokenizer; build it with FAPromptProcessor(image_processor, tokenizer)."
                )
            data.update(self.tokenizer(text, return_tensors=return_tensors, **kwargs))
        return BatchFeature(data=data, tensor_type=return_tensors)

    def prompt_token_ids(
        self, normal_suffix: str = "object.", abnormal_suffix: str = "damaged object."
    ) -> dict[str, Any]:
        """:func:`prompt_token_ids` with this processor's tokenizer (a ``ValueError`` when it has none)."""
        if self.tokenizer is None:
            raise ValueError("prompt_token_ids needs a tokenizer.")
        return prompt_token_ids(self.tokenizer, normal_suffix, abnormal_suffix)

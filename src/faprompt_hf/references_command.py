# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""Save a model with normal references in its bank: the library part of ``faprompt-hf references``.

:func:`add_references` loads a saved model, stores a folder's normal images in its normal-reference bank
(``docs/few_shot.md``) and saves it, with its processor (and tokenizer), in the layout it had: a compact checkpoint
stays compact, an embedded one embedded. ``pipeline("anomaly-detection", model=output_dir)`` and ``faprompt-hf
predict --model output_dir`` then use the references without being given them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .file_utils import check_model_reference, staged_directory
from .predict import PredictError, read_references

__all__ = ["ReferencesSummary", "add_references", "add_references_from_args"]


@dataclass
class ReferencesSummary:
    """What :func:`add_references` did.

    Attributes:
        output_dir: The saved model's folder.
        class_name: The class the references were stored as.
        num_images: Reference images stored.
        classes: Every class of the saved bank with its number of images.
        embeds_clip: Whether the saved weights embed the CLIP (else a compact checkpoint).
    """

    output_dir: Path
    class_name: str
    num_images: int
    classes: dict[str, int]
    embeds_clip: bool

    def __str__(self) -> str:
        """The summary ``faprompt-hf references`` prints."""
        layout = "embedded CLIP" if self.embeds_clip else "compact: the CLIP is named, not stored"
        bank = ", ".join(f"{name!r} ({count} image{'s' * (count != 1)})" for name, count in self.classes.items())
        return (
            f"Stored {self.num_images} normal references as class {self.class_name!r} and saved the model to "
            f"{self.output_dir}/ ({layout}).\n  bank: {bank}"
        )


def add_references(
    model: str | os.PathLike,
    images: Sequence[str | os.PathLike],
    output_dir: str | os.PathLike,
    class_name: str | None = None,
    batch_size: int = 8,
    device: str | None = None,
    load_package: Callable[[], None] | None = None,
) -> ReferencesSummary:
    """Store normal reference images in a saved model's bank and save the model, in its layout, to ``output_dir``.

    A class the bank already holds is replaced by the new images; other classes are kept. The processor (and the
    tokenizer, when the folder has one) is saved beside the model, so ``output_dir`` is a complete model folder.

    Args:
        model: A saved FAPrompt model: local folder or hub id.
        images: Normal images: files, folders, glob patterns or ``.txt`` lists (as ``faprompt-hf predict``'s inputs).
        output_dir: The output folder (created; may be ``model``'s own folder, to update it).
        class_name: The bank's class of these images (default ``"default"``).
        batch_size: Images per feature pass, >= 1.
        device: Where the features are computed (default: cuda when present, else cpu).
        load_package: Called before the model is loaded (the CLI's deferred package import).

    Returns:
        The :class:`ReferencesSummary`.

    Raises:
        PredictError: A missing model or image folder, an empty folder, an unreadable image (named), an
            ``output_dir`` that is a file, or references the model refuses; each message names the input and the fix.
    """
    output = Path(output_dir)
    if output.exists() and not output.is_dir():
        raise PredictError(f"--output_dir {output} is a file, not a folder: give a folder (it is created).")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise PredictError(f"--batch_size must be an integer >= 1, got {batch_size!r}.")
    try:
        check_model_reference(model)
    except (OSError, ValueError) as error:
        raise PredictError(f"--model {os.fspath(model)}: {error}") from None
    if load_package is not None:
        load_package()
    import torch

    from .checkpoints import folder_embeds_clip
    from .modeling_faprompt import DEFAULT_REFERENCE_CLASS, FAPromptModel

    try:
        loaded = FAPromptModel.from_pretrained(model)
    except (OSError, ValueError) as error:
        raise PredictError(f"--model {os.fspath(model)}: {error}") from None
    processor = _saved_processor(model, loaded.config)
    pixel_values = torch.from_numpy(read_references(images, processor.image_processor, flag="--images"))
    include_clip = loaded.config.weights_include_clip
    if include_clip is None and Path(model).is_dir():
        include_clip = folder_embeds_clip(model)
    loaded.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    try:
        name = DEFAULT_REFERENCE_CLASS if class_name is None else class_name
        loaded.set_normal_references(
            pixel_values.to(loaded.device, loaded.dtype), name, replace=True, batch_size=batch_size
        )
    except ValueError as error:
        raise PredictError(f"--images: {error}") from None
    loaded.to("cpu")
    with staged_directory(output) as staging:
        processor.save_pretrained(staging)
    loaded.save_pretrained(output, include_clip=include_clip)
    config = loaded.config
    return ReferencesSummary(
        output_dir=output,
        class_name=name,
        num_images=int(pixel_values.shape[0]),
        classes=dict(zip(config.normal_reference_classes, config.normal_reference_image_counts, strict=True)),
        embeds_clip=folder_embeds_clip(output),
    )


def _saved_processor(model: str | os.PathLike, config: Any) -> Any:
    """The processor saved with the model (with its tokenizer, when there is one), else one at the model's size."""
    from .processing_faprompt import FAPromptProcessor

    try:
        return FAPromptProcessor.from_pretrained(model)
    except (OSError, ValueError, TypeError):
        return FAPromptProcessor.from_model_config(config)


def add_references_from_args(args: Any, load_package: Callable[[], None] | None = None) -> ReferencesSummary:
    """Run :func:`add_references` from ``faprompt-hf references``' parsed flags.

    Args:
        args: The namespace of :func:`faprompt_hf.cli_flags.add_references_arguments`.
        load_package: Completes the package import before the model is loaded.

    Returns:
        The summary.

    Raises:
        PredictError: Bad inputs (see :func:`add_references`).
    """
    return add_references(
        args.model,
        args.images,
        args.output_dir,
        class_name=args.class_name,
        batch_size=args.batch_size,
        device=args.device,
        load_package=load_package,
    )

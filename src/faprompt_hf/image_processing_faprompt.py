# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""Image processor for FAPrompt: images and ground-truth masks, as the original evaluation prepares them."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers.feature_extraction_utils import BatchFeature
from transformers.image_processing_utils import BaseImageProcessor

from .configuration_faprompt import DEFAULT_IMAGE_SIZE
from .image_utils import ImageInput, to_mask_array, to_rgb_image
from .inference_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, RESAMPLE_FILTERS, normalize_image, resize_anomaly_map
from .remote_code import write_remote_code

__all__ = ["FAPromptImageProcessor", "OPENAI_CLIP_MEAN", "OPENAI_CLIP_STD"]


def checked_size(size: Any, name: str = "size") -> tuple[int, int]:
    """Validate an output size: a positive int, or ``{"height": H, "width": W}`` of positive ints.

    Args:
        size: The value to check.
        name: The argument's name, for the error message.

    Returns:
        ``(height, width)``.

    Raises:
        TypeError: Not an int or a dict of two ints (bools and floats are refused: a size is a count of pixels).
        ValueError: Zero or negative, or a dict without exactly the keys ``height`` and ``width``.
    """
    hint = f"give a positive number of pixels, e.g. {name}=518 or {name}={{'height': 518, 'width': 518}}"
    if isinstance(size, dict):
        if set(size) != {"height", "width"}:
            raise ValueError(f"{name} {size!r} must have exactly the keys 'height' and 'width'; {hint}.")
        values = (size["height"], size["width"])
    else:
        values = (size, size)
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{name} must be an int or a dict of ints, got {size!r} ({type(value).__name__}); {hint}.")
        if value <= 0:
            raise ValueError(f"{name} must be positive, got {size!r}; {hint}.")
    return int(values[0]), int(values[1])


def _as_list(inputs: Any) -> list:
    """One input or a batch of them -> a list (a 4-D array or tensor is a batch; a 3-D one is one image)."""
    if isinstance(inputs, (list, tuple)):
        return list(inputs)
    if isinstance(inputs, (np.ndarray, torch.Tensor)) and inputs.ndim == 4:
        return list(inputs)
    return [inputs]


class FAPromptImageProcessor(BaseImageProcessor):
    r"""Prepare images (and masks) for [`FAPromptModel`] exactly as the released evaluation does (method §6-§7).

    Images of any PIL mode (1, L, LA, P, RGB, RGBA, CMYK, I;16, ...), numpy arrays or tensors are converted to RGB,
    resized to ``size`` x ``size`` with PIL's bicubic filter (aspect ratio not kept), scaled to [0, 1] and
    normalised with CLIP's mean and std. Masks are binarised at > 0 at their own resolution, resized with PIL's
    bilinear filter (antialiased when shrinking) and thresholded at 0.5.

    Args:
        size: Output side S in pixels, or ``{"height": H, "width": W}``; must be a multiple of the patch size.
            Zero, negative and non-integer sizes are refused here and in :meth:`preprocess`.
        resample: Image filter name (``"bicubic"``).
        image_mean: Normalisation mean.
        image_std: Normalisation std.
        resize_mismatched_masks: When a mask's size differs from its image's, resize it (True) instead of raising.
    """

    model_input_names = ["pixel_values"]

    def __init__(
        self,
        size: int | dict[str, int] = DEFAULT_IMAGE_SIZE,
        resample: str = "bicubic",
        image_mean: Sequence[float] = OPENAI_CLIP_MEAN,
        image_std: Sequence[float] = OPENAI_CLIP_STD,
        resize_mismatched_masks: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        height, width = checked_size(size)
        if resample not in RESAMPLE_FILTERS:
            raise ValueError(f"resample must be one of {sorted(RESAMPLE_FILTERS)}, got {resample!r}.")
        self.size = {"height": height, "width": width}
        self.resample = resample
        self.image_mean = [float(v) for v in image_mean]
        self.image_std = [float(v) for v in image_std]
        self.resize_mismatched_masks = resize_mismatched_masks

    @classmethod
    def from_model_config(cls, config: Any, size: int | tuple[int, int] | None = None, **kwargs: Any) -> Any:
        """The image processor of a model: at ``config.image_size``, or at ``size`` checked against the model.

        The one way the package builds a processor for a model (the pipeline, evaluation, training, calibration,
        the hub upload and the scripts use it), so that a model's size is stored once, in its config.

        Args:
            config: An ``FAPromptConfig``.
            size: A side S or ``(height, width)`` instead of the model's size; it must pass
                ``config.check_input_size`` (multiples of the patch size).
            **kwargs: Other ``FAPromptImageProcessor`` arguments.

        Returns:
            The image processor.
        """
        height, width = config.check_input_size(config.image_size if size is None else size, name="image_size")
        return cls(size={"height": height, "width": width}, **kwargs)

    def save_pretrained(self, save_directory: str | os.PathLike, *args: Any, **kwargs: Any) -> list[str]:
        """Save ``preprocessor_config.json`` with the remote code and its ``auto_map`` beside it.

        (:func:`faprompt_hf.remote_code.write_remote_code`: ``AutoImageProcessor.from_pretrained(folder,
        trust_remote_code=True)`` then works without this package.)
        """
        saved = super().save_pretrained(save_directory, *args, **kwargs)
        write_remote_code(save_directory)
        return saved

    def _target_size(self, size: int | dict[str, int] | None) -> tuple[int, int]:
        """(height, width) of the output: ``size`` when given (checked), else the processor's own."""
        return checked_size(self.size if size is None else size)

    def preprocess_image(self, image: ImageInput, size: tuple[int, int], source: str | None = None) -> np.ndarray:
        """One image -> normalised float32 array (3, H, W)."""
        return normalize_image(to_rgb_image(image, source), size, self.resample, self.image_mean, self.image_std)

    def preprocess_mask(
        self,
        mask: ImageInput | None,
        size: tuple[int, int],
        image_size: tuple[int, int] | None = None,
        source: str | None = None,
        resize_mismatched_masks: bool | None = None,
    ) -> np.ndarray:
        """One mask -> binary float32 array (H, W); ``None`` -> zeros (a normal image).

        Args:
            mask: The mask (any value > 0 is anomalous), or None.
            size: Output (height, width).
            image_size: The (height, width) of its image before resizing, to check that they agree.
            source: Name for error messages.
            resize_mismatched_masks: Override of the processor's setting.
        """
        if mask is None:
            return np.zeros(size, dtype=np.float32)
        binary = to_mask_array(mask, source)
        resize_mismatched = self.resize_mismatched_masks if resize_mismatched_masks is None else resize_mismatched_masks
        if image_size is not None and binary.shape != tuple(image_size) and not resize_mismatched:
            raise ValueError(
                f"Mask {source or ''} has size {binary.shape[1]}x{binary.shape[0]} (WxH) but its image is "
                f"{image_size[1]}x{image_size[0]}: fix the mask, or pass resize_mismatched_masks=True to resize it."
            )
        resized = Image.fromarray(binary.astype(np.uint8) * 255).resize((size[1], size[0]), Image.Resampling.BILINEAR)
        return (np.asarray(resized, dtype=np.float32) / 255.0 > 0.5).astype(np.float32)

    def preprocess(
        self,
        images: ImageInput | Sequence[ImageInput],
        masks: ImageInput | Sequence[ImageInput | None] | None = None,
        size: int | dict[str, int] | None = None,
        return_tensors: str | None = None,
        resize_mismatched_masks: bool | None = None,
        **kwargs: Any,
    ) -> BatchFeature:
        """Process a batch of images and, optionally, their masks.

        Args:
            images: One image or a list (paths, PIL images of any mode, arrays or tensors).
            masks: None, or one mask per image (None entries are normal images: all-zero masks), as a list or as
                one (B, H, W) / (B, 1, H, W) array or tensor. For a single image, a 3-D array is that image's mask:
                (1, H, W), (H, W, 1) or channels-last colour; a channels-first (N, H, W) stack is refused.
            size: Override of ``self.size``.
            return_tensors: ``"pt"`` for torch tensors, ``"np"`` or None for numpy arrays.
            resize_mismatched_masks: Override of the processor's setting.
            **kwargs: Ignored (accepted for compatibility with transformers' calling conventions).

        Returns:
            ``BatchFeature`` with ``pixel_values`` (B, 3, H, W) and, when masks are given, ``masks`` (B, H, W) in
            {0, 1}.
        """
        target = self._target_size(size)
        image_list = _as_list(images)
        if not image_list:
            raise ValueError("No images given (an empty list, or a batch of 0 images): give at least one image.")
        pixel_values, image_sizes = self._pixel_values(image_list, target)
        data: dict[str, Any] = {"pixel_values": pixel_values}
        if masks is not None:
            if isinstance(masks, (list, tuple)):
                mask_list = list(masks)
            elif isinstance(masks, (np.ndarray, torch.Tensor)) and (
                masks.ndim == 4 or (masks.ndim == 3 and len(image_list) > 1)
            ):
                mask_list = list(masks)  # a (B, H, W) or (B, 1, H, W) batch of masks
            else:
                mask_list = [masks]
            if len(mask_list) != len(image_list):
                raise ValueError(f"Got {len(mask_list)} masks for {len(image_list)} images; give one (or None) each.")
            data["masks"] = np.stack(
                [
                    self.preprocess_mask(
                        mask,
                        target,
                        image_sizes[index],
                        str(mask) if isinstance(mask, str) else f"#{index}",
                        resize_mismatched_masks,
                    )
                    for index, mask in enumerate(mask_list)
                ]
            )
        return BatchFeature(data=data, tensor_type=return_tensors)

    def _pixel_values(
        self, image_list: Sequence[ImageInput], target: tuple[int, int], prefix: str = ""
    ) -> tuple[np.ndarray, list[tuple[int, int]]]:
        """Images -> normalised pixels (N, 3, H, W) and each image's (height, width) before resizing.

        Errors name each image by its path, else by ``f"{prefix}#{index}"``.
        """
        pixel_values, image_sizes = [], []
        for index, image in enumerate(image_list):
            source = str(image) if isinstance(image, str) else f"{prefix}#{index}"
            rgb = to_rgb_image(image, source)
            image_sizes.append((rgb.height, rgb.width))
            pixel_values.append(self.preprocess_image(rgb, target, source))
        return np.stack(pixel_values), image_sizes

    def preprocess_references(
        self,
        references: ImageInput | Sequence[ImageInput],
        size: int | dict[str, int] | None = None,
        return_tensors: str | None = None,
    ) -> BatchFeature:
        """Prepare normal reference images (few-shot, ``docs/few_shot.md``) as :meth:`preprocess` prepares images.

        Every input :meth:`preprocess` takes is accepted (paths, PIL images of any mode, arrays, tensors, a 4-D
        batch); references of any size are resized to ``size`` like images.

        Args:
            references: One normal image or a list of them.
            size: Override of ``self.size``.
            return_tensors: ``"pt"`` for torch tensors, ``"np"`` or None for numpy arrays.

        Returns:
            ``BatchFeature`` with ``reference_pixel_values`` (R, 3, H, W), for ``model.set_normal_references``.

        Raises:
            ValueError: No references (the message says to give at least one normal image), or a reference that is
                not an image (named by its path, else ``reference #i``).
        """
        reference_list = _as_list(references)
        if not reference_list:
            raise ValueError(
                "references is empty (an empty list, or a batch of 0 images): give at least one normal image."
            )
        pixel_values, _ = self._pixel_values(reference_list, self._target_size(size), prefix="reference ")
        return BatchFeature(data={"reference_pixel_values": pixel_values}, tensor_type=return_tensors)

    def __call__(self, images: Any = None, masks: Any = None, **kwargs: Any) -> BatchFeature:
        """Alias of :meth:`preprocess`."""
        return self.preprocess(images, masks=masks, **kwargs)

    def post_process_anomaly_maps(
        self, anomaly_maps: torch.Tensor, target_sizes: Sequence[tuple[int, int]]
    ) -> list[torch.Tensor]:
        """Resize model anomaly maps back to each original image size (bilinear).

        Args:
            anomaly_maps: (B, H, W) maps from the model.
            target_sizes: (height, width) of each original image.

        Returns:
            A list of B float maps, each (height_i, width_i).
        """
        return [
            torch.from_numpy(
                resize_anomaly_map(anomaly_map.detach().float().cpu().numpy(), (int(height), int(width)))
            ).to(anomaly_map.device)
            for anomaly_map, (height, width) in zip(anomaly_maps, target_sizes, strict=True)
        ]

# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""The rules for labels, masks and model inputs, in one place, so every boundary refuses bad input with the same words.

The data collator (rows of a dataset) and :meth:`FAPromptModel.forward` (tensors from a custom training loop) both
build their messages here. Tensor checks use tensor methods only, so this module imports neither torch nor numpy;
each costs one reduction over its tensor.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "LABEL_RULE",
    "MASK_RULE",
    "PIXEL_VALUES_RULE",
    "check_model_inputs",
    "label_error",
    "normal_mask_error",
]

LABEL_RULE = "a label is 0 (normal) or 1 (anomalous)"
"""What a label may be, wherever labels enter."""

MASK_RULE = "a mask marks anomalous pixels with 1 (or any value > 0.5 once processed) and normal pixels with 0"
"""What a processed mask holds."""

PIXEL_VALUES_RULE = (
    "pixel_values are normalised float images (B, 3, H, W), channels first, as FAPromptImageProcessor returns them"
)
"""What the model takes."""

_MODEL_LABEL_FIX = (
    "give labels as a (B,) tensor of 0/1, one per image; there is no ignore index such as -100: drop unlabelled "
    "images from the batch"
)


def label_error(
    value: Any, where: str, fix: str = "use 0/1, True/False, 'normal'/'good' or 'anomaly'/'anomalous'"
) -> str:
    """The message for a label that is neither normal nor anomalous.

    Args:
        value: The offending label.
        where: The row, file or tensor index it came from.
        fix: How to write it instead.

    Returns:
        ``"Cannot read the label <value> of <where>: a label is 0 (normal) or 1 (anomalous); <fix>."``
    """
    return f"Cannot read the label {value!r} of {where}: {LABEL_RULE}; {fix}."


def normal_mask_error(where: str, num_pixels: int) -> str:
    """The message for a normal-labelled image whose mask marks anomalous pixels.

    Args:
        where: The row, file or batch row.
        num_pixels: How many pixels the mask marks.

    Returns:
        ``"<where> is labelled normal but its mask marks <n> anomalous pixels; ..."`` with the fix.
    """
    return (
        f"{where} is labelled normal but its mask marks {num_pixels} anomalous pixels; fix the label (1 for "
        "anomalous) or clear the mask."
    )


def _check_pixel_values(pixel_values: Any, check_values: bool) -> None:
    """Shape, channels, dtype and finiteness of the model's images; see :func:`check_model_inputs`."""
    if not hasattr(pixel_values, "dim") or not hasattr(pixel_values, "is_floating_point"):
        raise TypeError(f"pixel_values must be a torch tensor, got {type(pixel_values).__name__}: {PIXEL_VALUES_RULE}.")
    shape = tuple(pixel_values.shape)
    if pixel_values.dim() == 3 and shape[0] == 3:
        raise ValueError(
            f"pixel_values has shape {shape}, one image without a batch dimension: {PIXEL_VALUES_RULE}; add the "
            "batch dimension with pixel_values[None]."
        )
    if pixel_values.dim() != 4:
        raise ValueError(f"pixel_values has shape {shape}: {PIXEL_VALUES_RULE}.")
    if shape[0] == 0:
        raise ValueError(f"pixel_values has shape {shape}, a batch of 0 images: give at least one image.")
    if shape[1] != 3:
        if shape[-1] == 3:
            fix = "this looks channels-last (B, H, W, 3): use pixel_values.permute(0, 3, 1, 2)"
        else:
            fix = (
                f"{shape[1]}-channel images are not RGB: convert them with FAPromptImageProcessor, which turns grey, "
                "grey + alpha, RGBA and other modes into RGB"
            )
        raise ValueError(f"pixel_values has shape {shape}: {PIXEL_VALUES_RULE}; {fix}.")
    if shape[2] == 0 or shape[3] == 0:
        raise ValueError(f"pixel_values has shape {shape}: the images have no pixels; {PIXEL_VALUES_RULE}.")
    if not pixel_values.is_floating_point():
        raise ValueError(
            f"pixel_values has dtype {pixel_values.dtype}: {PIXEL_VALUES_RULE}; raw integer pixels would be read as "
            "normalised values, so prepare the images with FAPromptImageProcessor."
        )
    if check_values and not bool(pixel_values.isfinite().all()):
        raise ValueError(
            f"pixel_values (shape {shape}) contains NaN or inf: every score would be NaN. Check the images and the "
            "normalisation (FAPromptImageProcessor never produces them)."
        )


def _check_labels(labels: Any, batch_size: int, check_values: bool) -> None:
    """Count and values of the labels; see :func:`check_model_inputs`."""
    if not hasattr(labels, "reshape"):
        raise TypeError(f"labels must be a torch tensor, got {type(labels).__name__}: {_MODEL_LABEL_FIX}.")
    flat = labels.reshape(-1)
    if flat.numel() != batch_size:
        raise ValueError(
            f"Got {flat.numel()} labels (shape {tuple(labels.shape)}) for a batch of {batch_size} images: "
            f"{_MODEL_LABEL_FIX}."
        )
    if not check_values:
        return
    bad = ~((flat == 0) | (flat == 1))  # NaN compares unequal to both: refused too
    if bool(bad.any()):
        index = int(bad.nonzero()[0, 0])
        raise ValueError(label_error(flat[index].item(), f"labels[{index}]", _MODEL_LABEL_FIX))


def _check_masks(masks: Any, labels: Any, size: tuple[int, int], check_values: bool) -> Any:
    """Shape, range and agreement with the labels of the masks; returns them as (B, H, W)."""
    if not hasattr(masks, "dim"):
        raise TypeError(f"masks must be a torch tensor (B, H, W), got {type(masks).__name__}.")
    batch_size = labels.reshape(-1).numel()
    if masks.dim() == 4 and masks.shape[1] == 1:
        masks = masks[:, 0]
    if tuple(masks.shape) != (batch_size, *size):
        raise ValueError(
            f"masks have shape {tuple(masks.shape)} but pixel_values need ({batch_size}, {size[0]}, {size[1]}): "
            "process masks with the same processor (and size) as the images."
        )
    if not check_values:
        return masks
    low, high = (float(value) for value in masks.float().aminmax())
    if not (0.0 <= low and high <= 1.0):  # also False for NaN
        raise ValueError(
            f"masks hold values in [{low:.4g}, {high:.4g}]: {MASK_RULE}, so values must lie in [0, 1] (and be "
            "finite). Divide 0..255 masks by 255, or prepare them with FAPromptImageProcessor."
        )
    marked = (masks > 0.5).reshape(batch_size, -1).sum(1)
    normal_with_mask = (labels.reshape(-1) == 0) & (marked > 0)
    if bool(normal_with_mask.any()):
        row = int(normal_with_mask.nonzero()[0, 0])
        raise ValueError(normal_mask_error(f"batch row {row}", int(marked[row])))
    return masks


def check_model_inputs(
    pixel_values: Any, labels: Any = None, masks: Any = None, mask_valid: Any = None, check_values: bool = True
) -> Any:
    """Refuse inputs :meth:`FAPromptModel.forward` would turn into a silent wrong result or a puzzling error.

    Checks, each one reduction at most: ``pixel_values`` is a floating (B, 3, H, W) tensor with B >= 1 and H, W >= 1
    (channels-last, 1- and 4-channel tensors get an error saying what to do), with no NaN or inf. With ``labels``:
    exactly B labels, each 0 or 1 (no -100, 0.5, 2, -1 or NaN); ``masks``, when given, are (B, H, W) or
    (B, 1, H, W) at the images' size, finite and in [0, 1], and empty (nothing > 0.5) on every normal image;
    ``mask_valid``, when given, has B entries. Without labels, masks are not used and not checked.

    The checks of values (NaN/inf pixels, label values, mask range and emptiness) read tensor contents on the host;
    ``check_values=False`` skips them and keeps the shape, dtype and count checks, for graphs being traced
    (``torch.compile``, ``torch.export``), where a branch on tensor contents cannot be recorded.

    Args:
        pixel_values: Images (B, 3, H, W).
        labels: Optional labels (B,) or (B, 1).
        masks: Optional masks (B, H, W) or (B, 1, H, W).
        mask_valid: Optional booleans (B,).
        check_values: Also check tensor contents (one reduction per tensor).

    Returns:
        The masks as (B, H, W) (None when not given or when there are no labels).

    Raises:
        TypeError: An input that is not a tensor.
        ValueError: Any rule broken; the message names the value and the fix.
    """
    _check_pixel_values(pixel_values, check_values)
    if labels is None:
        return None
    batch_size = pixel_values.shape[0]
    _check_labels(labels, batch_size, check_values)
    if mask_valid is not None and mask_valid.reshape(-1).numel() != batch_size:
        raise ValueError(
            f"mask_valid has {mask_valid.reshape(-1).numel()} entries for a batch of {batch_size} images; give one "
            "boolean per image (as FAPromptCollator does)."
        )
    if masks is None:
        return None
    return _check_masks(masks, labels, tuple(pixel_values.shape[-2:]), check_values)

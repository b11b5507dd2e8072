# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""Turning user images and masks of any mode into what FAPrompt expects.

Every function here names the offending file or value in its error and says how to fix it, so that a bad
input never becomes a silently wrong label or mask.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Union

import numpy as np
from PIL import Image, UnidentifiedImageError

if TYPE_CHECKING:
    import torch

ImageInput = Union[str, os.PathLike, Image.Image, np.ndarray, "torch.Tensor"]

__all__ = ["ImageInput", "load_image", "to_rgb_image", "to_mask_array"]

_RAW_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")
"""PIL modes whose values ``convert("L")`` would clip to 0..255: read as raw numbers instead."""


def _is_torch_tensor(value: object) -> bool:
    """Whether ``value`` is a torch tensor, without importing torch (a tensor exists only once torch is imported)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


def _tensor_to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """Move a tensor to a numpy array; floating tensors (bfloat16, float16, ...) are upcast to float32 first.

    Args:
        tensor: Any torch tensor.

    Returns:
        The numpy array (numpy has no bfloat16, so ``.numpy()`` alone would raise on it).
    """
    import torch

    tensor = tensor.detach().cpu()
    if tensor.is_floating_point():
        tensor = tensor.to(torch.float32)
    return tensor.numpy()


def load_image(path: str | os.PathLike) -> Image.Image:
    """Open an image file and decode it fully.

    Args:
        path: Path to an image file PIL can read.

    Returns:
        The decoded PIL image, in its own mode (call :func:`to_rgb_image` for RGB).

    Raises:
        FileNotFoundError: The file does not exist.
        ValueError: The file exists but is not a decodable image (the message names the file).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Image file not found: {path!r}. Check the path, or the dataset root it came from.")
    try:
        with Image.open(path) as image:
            image.load()
            return image.copy()
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise ValueError(
            f"Cannot decode image {path!r} ({error}). The file is truncated or not an image: re-export or remove it."
        ) from error


def _rescale_to_uint8(array: np.ndarray, source: str) -> np.ndarray:
    """Map an integer or float array onto 0..255 uint8, by its dtype's range (not by its content)."""
    if array.dtype == np.uint8:
        return array
    if array.dtype == bool:
        return array.astype(np.uint8) * 255
    if np.issubdtype(array.dtype, np.integer):
        if array.min() < 0:
            raise ValueError(f"Image {source} has negative integer values; give unsigned 8- or 16-bit data.")
        # 16-bit images (PNG/TIFF "I;16", or "I" holding 16-bit data) keep their relative brightness.
        # uint16 is always 16-bit; wider integer types are 16-bit only when they exceed 255.
        top = 65535 if array.dtype == np.uint16 or array.max() > 255 else 255
        if array.max() > 65535:
            raise ValueError(f"Image {source} has values above 65535; only 8- and 16-bit integer images are supported.")
        return np.round(array.astype(np.float64) * (255.0 / top)).astype(np.uint8)
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise ValueError(f"Image {source} contains NaN or inf values.")
        if array.min() < 0 or array.max() > 1:
            raise ValueError(
                f"Float image {source} has values in [{array.min():.3g}, {array.max():.3g}]; float images must lie "
                "in [0, 1]. Convert to uint8 (0..255) or rescale."
            )
        return np.round(array * 255.0).astype(np.uint8)
    raise ValueError(f"Image {source} has unsupported dtype {array.dtype}.")


def to_rgb_image(image: ImageInput, source: str | None = None) -> Image.Image:
    """Convert any supported image input into an 8-bit RGB PIL image.

    Handles PIL modes 1, L, LA, P (palette, with or without transparency), RGB, RGBA, CMYK, YCbCr, I, I;16 and F,
    numpy arrays (H, W), (H, W, 1|3|4) or channels-first (1|3|4, H, W) of uint8, uint16 or float in [0, 1], and
    torch tensors of the same layouts (float16/bfloat16 tensors are upcast to float32). Alpha is dropped (as
    ``Image.convert("RGB")`` does), and 16-bit data is scaled by 255/65535 rather than clipped.

    Args:
        image: A path, PIL image, numpy array or torch tensor.
        source: A name for error messages (defaults to the path, or the input's type).

    Returns:
        An RGB PIL image (an RGB PIL input is returned as is, not copied).

    Raises:
        ValueError: The input cannot be interpreted as an image (the message names it and the fix).
    """
    if isinstance(image, (str, os.PathLike)):
        source = source or os.fspath(image)
        image = load_image(image)
    source = source or f"<{type(image).__name__}>"
    if _is_torch_tensor(image):
        image = _tensor_to_numpy(image)
    if isinstance(image, np.ndarray):
        array = image
        if array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[-1] not in (1, 3, 4):
            array = np.moveaxis(array, 0, -1)
        if array.ndim == 3 and array.shape[-1] == 1:
            array = array[..., 0]
        if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)):
            raise ValueError(
                f"Image {source} has shape {tuple(image.shape)}; "
                "expected (H, W), (H, W, C) or (C, H, W) with C in 1, 3, 4."
            )
        array = _rescale_to_uint8(array, source)
        if array.ndim == 3 and array.shape[-1] == 4:
            return Image.fromarray(array, mode="RGBA").convert("RGB")
        return Image.fromarray(array).convert("RGB")
    if not isinstance(image, Image.Image):
        raise ValueError(f"Unsupported image input {source}: give a path, PIL image, numpy array or torch tensor.")
    if image.mode == "RGB":
        return image  # already what the model needs: no copy (callers never modify it in place)
    if image.mode in _RAW_MODES:
        return to_rgb_image(np.asarray(image), source)
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("LA", "PA"):
        image = image.convert("RGBA")
    return image.convert("RGB")


def _channels_last(array: np.ndarray) -> np.ndarray:
    """Move a channels-first (1|2|3|4, H, W) array to channels-last and squeeze a single channel.

    Args:
        array: An array of any shape.

    Returns:
        (H, W) for one channel, (H, W, C) for several, other shapes unchanged.
    """
    if array.ndim == 3 and array.shape[0] == 1:
        return array[0]
    if array.ndim == 3 and array.shape[0] in (2, 3, 4) and array.shape[-1] not in (1, 2, 3, 4):
        array = np.moveaxis(array, 0, -1)
    if array.ndim == 3 and array.shape[-1] == 1:
        return array[..., 0]
    return array


def to_mask_array(mask: ImageInput | None, source: str | None = None) -> np.ndarray | None:
    """Binarise a ground-truth mask at its own resolution, as the original FAPrompt code does.

    The original code reads a mask as ``np.array(Image.open(path).convert("L")) > 0``; this function gives the
    same result for every input:

    * PIL images of any mode (``1``, ``L``, ``LA``, ``P`` with or without transparency, ``RGB``, ``RGBA``,
      ``CMYK``, ...): ``np.array(mask.convert("L")) > 0``, i.e. by grey level, alpha ignored. A palette mask is read
      by its colours' grey level, not by its indices. Exceptions: 16-bit and 32-bit integer modes (``I;16``,
      ``I``) and float ``F`` masks, which ``convert("L")`` would clip, are read as raw values ``> 0``.
    * Arrays and tensors (H, W), (1, H, W) or (H, W, 1): values ``> 0``.
    * (H, W, C) or channels-first (C, H, W) with C = 2 (grey + alpha), 3 (RGB) or 4 (RGBA): the alpha channel is
      dropped; uint8 data is then converted to grey level exactly as PIL's ``convert("L")`` does
      (``round(0.299 R + 0.587 G + 0.114 B)``, so a pure ``(0, 0, 1)`` pixel is 0), other dtypes (bool, 16-bit,
      float) count a pixel as anomalous when any channel is ``> 0``.

    Args:
        mask: A path, PIL image, numpy array or torch tensor (see above), or ``None`` for "no mask".
        source: A name for error messages (defaults to the path, or the input's type).

    Returns:
        A boolean array (H, W), or ``None`` when ``mask`` is ``None``.

    Raises:
        ValueError: The mask has an unexpected shape or mode, or holds NaN or inf (the message names it).
    """
    if mask is None:
        return None
    if isinstance(mask, (str, os.PathLike)):
        source = source or os.fspath(mask)
        mask = load_image(mask)
    source = source or f"<{type(mask).__name__}>"
    if isinstance(mask, Image.Image):
        if mask.mode in _RAW_MODES:
            array = np.asarray(mask)
        else:
            try:
                return np.array(mask.convert("L")) > 0
            except ValueError as error:
                raise ValueError(
                    f"Mask {source} has PIL mode {mask.mode!r}, which cannot be converted to grey levels ({error}); "
                    "save it as an L (8-bit grey) or 1 (binary) image."
                ) from error
    elif _is_torch_tensor(mask):
        array = _tensor_to_numpy(mask)
    else:
        array = np.asarray(mask)
    shape = tuple(array.shape)
    array = _channels_last(array)
    if array.ndim == 3 and array.shape[-1] in (2, 4):
        array = array[..., :-1]  # drop alpha
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 3 and array.shape[-1] == 3 and array.dtype == np.uint8:
        array = np.array(Image.fromarray(np.ascontiguousarray(array)).convert("L"))
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] != 3):
        raise ValueError(
            f"Mask {source} has shape {shape}; expected (H, W), (1, H, W), or (H, W, C) / (C, H, W) with C in 1-4."
        )
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        raise ValueError(f"Mask {source} contains NaN or inf values.")
    if array.ndim == 3:
        return (array > 0).any(axis=-1)
    return array > 0

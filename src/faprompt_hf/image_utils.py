# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""Turning user images and masks of any mode into what FAPrompt expects.

Every function here names the offending file or value in its error and says how to fix it, so that a bad
input never becomes a silently wrong label or mask.
"""

from __future__ import annotations

import os
import sys
import warnings
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

    Raises:
        ValueError: A tensor on the ``meta`` device (it has a shape but no values).
    """
    import torch

    if tensor.device.type == "meta":
        raise ValueError(
            f"Got a tensor of shape {tuple(tensor.shape)} on the meta device, which has a shape but no values (a model "
            "or tensor created under torch.device('meta') and never loaded): give a tensor with data, e.g. on the CPU."
        )
    tensor = tensor.detach().cpu()
    if tensor.is_floating_point():
        tensor = tensor.to(torch.float32)
    return tensor.numpy()


def load_image(path: str | os.PathLike) -> Image.Image:
    """Open an image file and decode it fully.

    Args:
        path: Path to an image file PIL can read.

    Returns:
        The decoded PIL image, in its own mode (call :func:`to_rgb_image` for RGB). The file is closed.

    Raises:
        FileNotFoundError: The file does not exist.
        PIL.Image.DecompressionBombError: The image has more than twice ``PIL.Image.MAX_IMAGE_PIXELS`` pixels (the
            message names the file, its size and how to raise the limit for a trusted file).
        ValueError: The file exists but is not a decodable image (the message names the file).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Image file not found: {path!r}. Check the path, or the dataset root it came from.")
    try:
        with Image.open(path) as image:
            image.load()  # decoded in place; leaving the block only closes the file, the pixels stay
        return image
    except Image.DecompressionBombError as error:
        raise Image.DecompressionBombError(
            f"Image {path!r} is refused by PIL's decompression-bomb check ({error}). If you trust the file, raise "
            "the limit before loading it: `PIL.Image.MAX_IMAGE_PIXELS = <pixels>` (None disables the check); "
            "otherwise remove the file. See docs/errors.md for the memory this needs."
        ) from error
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise ValueError(
            f"Cannot decode image {path!r} ({error}). The file is truncated or not an image: re-export or remove it."
        ) from error


def _empty_image_error(kind: str, source: str, shape: tuple[int, ...]) -> ValueError:
    """The error for an image or mask without pixels (zero height or width)."""
    return ValueError(
        f"{kind} {source} has shape {shape}: it has no pixels (zero height or width). Give an image of at least 1x1 "
        "pixels; an empty crop, an empty batch or a failed read usually causes this."
    )


def _native_byte_order(array: np.ndarray) -> np.ndarray:
    """The array in the machine's byte order (PIL's ``I;16B`` gives big-endian uint16)."""
    if array.dtype.byteorder in ("=", "|"):
        return array
    return array.astype(array.dtype.newbyteorder("="))


def _rescale_to_uint8(array: np.ndarray, source: str, what: str | None = None) -> np.ndarray:
    """Map an image array onto 0..255 uint8 by its dtype alone, never by its values (see :func:`to_rgb_image`).

    Args:
        array: The pixel values.
        source: A name for error messages.
        what: How the data type is named in errors (default ``dtype <dtype>``; e.g. ``PIL mode 'I'``).

    Warns:
        UserWarning: A uint16 image whose values all lie in 1..255 (8-bit data in a 16-bit array).

    Raises:
        ValueError: A value outside its dtype's documented range, NaN/inf, or an unsupported dtype.
    """
    array = _native_byte_order(array)
    what = what or f"dtype {array.dtype}"
    if array.dtype == np.uint8:
        return array
    if array.dtype == bool:
        return array.astype(np.uint8) * 255
    if array.dtype == np.uint16:  # always 16-bit, whatever the values: round(value * 255 / 65535), exactly
        high = int(array.max()) if array.size else 0
        if 0 < high <= 255:
            warnings.warn(
                f"Image {source} has {what} but all its values lie in 0..{high}, the range of 8-bit data: read as "
                "16-bit (0..65535), it comes out nearly black. If it holds 8-bit values, cast it with "
                ".astype(np.uint8); if it really is a dark 16-bit image, ignore this warning.",
                UserWarning,
                stacklevel=4,
            )
        return ((array.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    if np.issubdtype(array.dtype, np.integer):
        low, high = int(array.min()), int(array.max())
        if low < 0 or high > 255:
            bad = low if low < 0 else high
            raise ValueError(
                f"Image {source} has {what} value {bad} outside 0..255: {what} images are read as 8-bit (0..255); "
                "only uint16 data is read as 16-bit (0..65535). Cast 16-bit data with .astype(np.uint16) (for a PIL "
                "image: image.convert('I;16')), or scale the values to floats in [0, 1]."
            )
        return array.astype(np.uint8)
    if np.issubdtype(array.dtype, np.floating):
        low, high = float(array.min()), float(array.max())
        if not (np.isfinite(low) and np.isfinite(high)):
            raise ValueError(
                f"Image {source} contains NaN or inf values; every pixel must be a finite number (replace them, "
                "e.g. with np.nan_to_num, or drop the image)."
            )
        if low < 0 or high > 1:
            raise ValueError(
                f"Float image {source} has values in [{low:.3g}, {high:.3g}]; float images must lie in [0, 1]. "
                "Divide 0..255 data by 255 (or cast it to uint8), or rescale."
            )
        return np.rint(array * 255.0).astype(np.uint8)
    raise ValueError(
        f"Image {source} has unsupported {what}; give uint8 (0..255), uint16 (0..65535), bool, another integer "
        "type holding 0..255, or floats in [0, 1]."
    )


def to_rgb_image(image: ImageInput, source: str | None = None) -> Image.Image:
    """Convert any supported image input into an 8-bit RGB PIL image.

    The scale follows the data type, never the values (``docs/errors.md`` lists the rules):

    * ``uint8`` (and PIL's 8-bit modes): as is, 0..255.
    * ``uint16`` (and PIL modes ``I;16``, ``I;16B``, ``I;16L``, ``I;16N``): 16-bit, 0..65535 scaled by 255/65535,
      even when the values happen to be small.
    * Every other integer type (int8, int16, int32, int64, uint32, uint64) and PIL mode ``I`` (32-bit integers):
      8-bit, 0..255; a value outside 0..255 is an error (cast 16-bit data to uint16 first).
    * Floats (float16/32/64, bfloat16 tensors, PIL mode ``F``): [0, 1], scaled by 255; a value outside [0, 1], NaN
      or inf is an error.
    * ``bool``: False black, True white.

    Layouts: PIL images of modes 1, L, LA, P (with or without transparency), RGB, RGBA, CMYK, YCbCr, I, I;16 and F;
    arrays and tensors (H, W), (H, W, 1|3|4) or channels-first (1|3|4, H, W). Alpha is dropped (as
    ``Image.convert("RGB")`` does). An image without pixels (zero height or width) is an error.

    Args:
        image: A path, PIL image, numpy array or torch tensor.
        source: A name for error messages (defaults to the path, or the input's type).

    Returns:
        An RGB PIL image (an RGB PIL input is returned as is, not copied).

    Raises:
        ValueError: The input cannot be interpreted as an image (the message names it and the fix).
        FileNotFoundError: A path that does not exist.
    """
    if isinstance(image, (str, os.PathLike)):
        source = source or os.fspath(image)
        image = load_image(image)
    source = source or f"<{type(image).__name__}>"
    if _is_torch_tensor(image):
        image = _tensor_to_numpy(image)
    if isinstance(image, np.ndarray):
        return _array_to_rgb(image, source)
    if not isinstance(image, Image.Image):
        raise ValueError(f"Unsupported image input {source}: give a path, PIL image, numpy array or torch tensor.")
    if image.width == 0 or image.height == 0:
        raise _empty_image_error("Image", source, (image.height, image.width))
    if image.mode == "RGB":
        return image  # already what the model needs: no copy (callers never modify it in place)
    if image.mode in _RAW_MODES:
        return _array_to_rgb(np.asarray(image), source, what=f"PIL mode {image.mode!r}")
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("LA", "PA"):
        image = image.convert("RGBA")
    return image.convert("RGB")


def _array_to_rgb(image: np.ndarray, source: str, what: str | None = None) -> Image.Image:
    """The array branch of :func:`to_rgb_image`: check the layout, rescale by dtype, convert to RGB."""
    shape = tuple(image.shape)
    if image.size == 0:
        raise _empty_image_error("Image", source, shape)
    array = image
    if array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[-1] not in (1, 3, 4):
        array = np.moveaxis(array, 0, -1)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)):
        batch_hint = " (several images: pass them as a list)" if array.ndim == 4 else ""
        raise ValueError(
            f"Image {source} has shape {shape}; expected (H, W), (H, W, C) or (C, H, W) with C in 1, 3, 4{batch_hint}."
        )
    array = _rescale_to_uint8(array, source, what)
    if array.ndim == 3 and array.shape[-1] == 4:
        return Image.fromarray(array, mode="RGBA").convert("RGB")
    return Image.fromarray(array).convert("RGB")


def to_mask_array(mask: ImageInput | None, source: str | None = None) -> np.ndarray | None:
    """Binarise a ground-truth mask at its own resolution, as the original FAPrompt code does.

    The original code reads a mask as ``np.array(Image.open(path).convert("L")) > 0``; this function gives the
    same result for every input:

    * PIL images of any mode (``1``, ``L``, ``LA``, ``P`` with or without transparency, ``RGB``, ``RGBA``,
      ``CMYK``, ...): ``np.array(mask.convert("L")) > 0``, i.e. by grey level, alpha ignored. A palette mask is read
      by its colours' grey level, not by its indices. Exceptions: 16-bit and 32-bit integer modes (``I;16``,
      ``I``) and float ``F`` masks, which ``convert("L")`` would clip, are read as raw values ``> 0``.
    * Arrays and tensors (H, W), (1, H, W) or (H, W, 1): values ``> 0``.
    * Channels-last colour arrays (H, W, C) with C = 2 (grey + alpha), 3 (RGB) or 4 (RGBA), the layout of
      ``np.asarray(pil_image)``: the alpha channel is dropped; uint8 data is then converted to grey level exactly
      as PIL's ``convert("L")`` does (``round(0.299 R + 0.587 G + 0.114 B)``, so a pure ``(0, 0, 1)`` pixel is 0),
      other dtypes (bool, 16-bit, float) count a pixel as anomalous when any channel is ``> 0``.
    * Channels-first (C, H, W) with C = 2, 3 or 4 is refused: it is as likely a stack of C masks as a colour mask,
      and reading it as grey + alpha or colour would drop masks. Give one (H, W) mask per image.

    Args:
        mask: A path, PIL image, numpy array or torch tensor (see above), or ``None`` for "no mask".
        source: A name for error messages (defaults to the path, or the input's type).

    Returns:
        A boolean array (H, W), or ``None`` when ``mask`` is ``None``.

    Raises:
        ValueError: The mask has no pixels, an unexpected or ambiguous shape or mode, or holds NaN or inf (the
            message names it and the fix).
    """
    if mask is None:
        return None
    if isinstance(mask, (str, os.PathLike)):
        source = source or os.fspath(mask)
        mask = load_image(mask)
    source = source or f"<{type(mask).__name__}>"
    if isinstance(mask, Image.Image):
        if mask.width == 0 or mask.height == 0:
            raise _empty_image_error("Mask", source, (mask.height, mask.width))
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
    if array.size == 0:
        raise _empty_image_error("Mask", source, shape)
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    elif array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    elif array.ndim == 3 and array.shape[0] in (2, 3, 4) and array.shape[-1] not in (2, 3, 4):
        raise ValueError(
            f"Mask {source} has shape {shape}: that is {shape[0]} masks stacked (N, H, W) or a channels-first colour "
            "mask, and either reading could drop anomalous pixels. Give one (H, W) mask per image (a batch as a "
            "list, or as a (B, H, W) array with as many images), or a colour mask channels-last (H, W, C)."
        )
    if array.ndim == 3 and array.shape[-1] in (2, 4):
        array = array[..., :-1]  # drop alpha
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 3 and array.shape[-1] == 3 and array.dtype == np.uint8:
        array = np.array(Image.fromarray(np.ascontiguousarray(array)).convert("L"))
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] != 3):
        raise ValueError(
            f"Mask {source} has shape {shape}; expected (H, W), (1, H, W), (H, W, 1) or a channels-last colour mask "
            "(H, W, C) with C in 2-4. Give one mask per image."
        )
    if np.issubdtype(array.dtype, np.floating) and not (np.isfinite(array.min()) and np.isfinite(array.max())):
        raise ValueError(f"Mask {source} contains NaN or inf values; use 0 (normal) and 1 (anomalous) pixels.")
    if array.ndim == 3:
        return (array > 0).any(axis=-1)
    return array > 0

# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""Anomaly-map overlays: colour tables and the heatmap blend, with numpy and Pillow only.

The "jet" colormap is built in; other colormap names use matplotlib when it is installed (the ``plots`` extra). This
module is part of a saved folder's remote code (the pipeline's overlays), so it imports nothing else of the package
but image utilities.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from .image_utils import ImageInput, to_rgb_image

if TYPE_CHECKING:
    from collections.abc import Sequence

    import torch

    MapLike = np.ndarray | torch.Tensor | Sequence[Sequence[float]]

__all__ = ["LUT_SIZE", "Normalization", "apply_colormap", "overlay_heatmap"]

Normalization = bool | tuple[float, float]
"""``True`` (the map's own min and max), ``(vmin, vmax)``, or ``False`` (the map is already in [0, 1])."""

_PLOTS_HINT = 'pip install "faprompt-hf[plots]"'

# The classic piecewise-linear "jet" colormap: (position, value) knots per channel, dark blue -> red -> dark red.
_JET_KNOTS = (
    ((0.0, 0.35, 0.66, 0.89, 1.0), (0.0, 0.0, 1.0, 1.0, 0.5)),
    ((0.0, 0.125, 0.375, 0.64, 0.91, 1.0), (0.0, 0.0, 1.0, 1.0, 0.0, 0.0)),
    ((0.0, 0.11, 0.34, 0.65, 1.0), (0.5, 1.0, 1.0, 0.0, 0.0)),
)


def _require_matplotlib(feature: str) -> Any:
    """Import matplotlib, or raise an ImportError that says how to install it."""
    try:
        import matplotlib
    except ImportError as error:
        raise ImportError(f"{feature} needs matplotlib; install it with: {_PLOTS_HINT}") from error
    return matplotlib


LUT_SIZE = 256
"""Entries of the colour tables: a value v in [0, 1] takes entry ``min(floor(v * 256), 255)``, as matplotlib does."""

_CHUNK_PIXELS = 1 << 18
"""Pixels colour-mapped and blended per step, which bounds the temporary memory of an overlay (a few MB)."""


def _lookup_table(colormap: str) -> np.ndarray:
    """The (LUT_SIZE, 3) uint8 colour table of a colormap, entry k the colour of k / (LUT_SIZE - 1).

    Raises:
        ImportError: A colormap other than "jet" without matplotlib.
        ValueError: A name matplotlib does not know.
    """
    if colormap == "jet":
        return _cached_table(colormap)
    matplotlib = _require_matplotlib(f"colormap {colormap!r}")
    if colormap not in matplotlib.colormaps:
        raise ValueError(f"Unknown colormap {colormap!r}; use 'jet' or a matplotlib colormap name.")
    return _cached_table(colormap)


@functools.lru_cache(maxsize=8)
def _cached_table(colormap: str) -> np.ndarray:
    """The colour table of a known colormap (see :func:`_lookup_table`), computed once (read-only)."""
    positions = np.linspace(0.0, 1.0, LUT_SIZE)
    if colormap == "jet":
        rgb = np.stack([np.interp(positions, knots, levels) for knots, levels in _JET_KNOTS], axis=-1)
    else:
        rgb = _require_matplotlib(f"colormap {colormap!r}").colormaps[colormap](positions)[..., :3]
    table = np.round(rgb * 255.0).astype(np.uint8)
    table.flags.writeable = False
    return table


def _lut_indices(values: np.ndarray) -> np.ndarray:
    """Colour-table entries of values in [0, 1] (any float dtype): ``min(floor(v * LUT_SIZE), LUT_SIZE - 1)``."""
    indices = (values * LUT_SIZE).astype(np.int16)  # truncation is floor for values >= 0
    return np.minimum(indices, LUT_SIZE - 1, out=indices)


def apply_colormap(values: np.ndarray, colormap: str = "jet") -> np.ndarray:
    """Map values in [0, 1] to RGB colours through a 256-entry colour table (as matplotlib's colormaps do).

    Memory: besides the (..., 3) uint8 result, only a few MB of temporaries, whatever the input size (values are
    mapped in chunks through the table, never as a float64 copy of the whole input).

    Args:
        values: Values of any shape (...); clipped to [0, 1].
        colormap: ``"jet"`` (built in) or any matplotlib colormap name (needs matplotlib).

    Returns:
        uint8 colours of shape (..., 3).

    Raises:
        ImportError: A colormap other than "jet" is asked for and matplotlib is not installed.
        ValueError: The colormap name is unknown to matplotlib, or a value is NaN.
    """
    table = _lookup_table(colormap)
    values = np.asarray(values)
    flat = values.reshape(-1)
    colours = np.empty((flat.size, 3), dtype=np.uint8)
    for start in range(0, flat.size, _CHUNK_PIXELS):
        chunk = np.clip(flat[start : start + _CHUNK_PIXELS].astype(np.float32), 0.0, 1.0)
        if np.isnan(chunk).any():
            raise ValueError("apply_colormap got NaN values; replace them (e.g. np.nan_to_num) before mapping.")
        colours[start : start + chunk.size] = table[_lut_indices(chunk)]
    return colours.reshape(*values.shape, 3)


def _map_array(anomaly_map: MapLike, name: str = "anomaly_map") -> np.ndarray:
    """A finite float32 (H, W) array (no copy when it already is one) from an array or tensor (H, W) or (1, H, W)."""
    if hasattr(anomaly_map, "detach"):
        anomaly_map = anomaly_map.detach().cpu().float().numpy()
    array = np.asarray(anomaly_map, dtype=np.float32)
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 2:
        raise ValueError(f"{name} must have shape (H, W) or (1, H, W); got shape {array.shape}.")
    if array.size == 0:
        raise ValueError(f"{name} has shape {array.shape}: it has no pixels; give a map of at least 1x1.")
    if not (np.isfinite(array.min()) and np.isfinite(array.max())):  # NaN and inf reach the min or the max
        raise ValueError(f"{name} (shape {array.shape}) contains NaN or infinite values.")
    return array


def _normalization_range(array: np.ndarray, normalize: Normalization) -> tuple[float, float]:
    """The (low, high) that map onto [0, 1]: the map's own min/max (True), a fixed (vmin, vmax), or (0, 1) (False)."""
    if normalize is True:
        return float(array.min()), float(array.max())
    if normalize is False:
        return 0.0, 1.0
    low, high = (float(bound) for bound in normalize)
    if not high > low:
        raise ValueError(f"normalize=(vmin, vmax) needs vmax > vmin; got {normalize!r}.")
    return low, high


def _scale(array: np.ndarray, low: float, high: float) -> np.ndarray:
    """``clip((array - low) / (high - low), 0, 1)`` in float32; all zeros when ``high == low``."""
    if high == low:
        return np.zeros(array.shape, dtype=np.float32)
    scaled = np.subtract(array, low, dtype=np.float32)
    scaled /= high - low
    return np.clip(scaled, 0.0, 1.0, out=scaled)


def overlay_heatmap(
    image: ImageInput,
    anomaly_map: MapLike,
    alpha: float = 0.5,
    colormap: str = "jet",
    normalize: Normalization = True,
) -> Image.Image:
    """Blend a colour-mapped anomaly map over an image.

    Memory: the result (an RGB image of the input's size), a float32 copy of the map when it must be resized to the
    image, and a few MB of temporaries: the map is scaled, colour-mapped (a 256-entry table, see
    :func:`apply_colormap`) and blended a band of rows at a time, never as a full-size float copy. ``docs/errors.md``
    gives the measured bound for the pipeline.

    Args:
        image: A path, PIL image (any mode), numpy array or tensor; converted to RGB.
        anomaly_map: Anomaly map of shape (H', W') or (1, H', W'), any resolution; resized (bilinear) to the image.
        alpha: Weight of the heatmap in the blend, in [0, 1] (1 shows the heatmap alone).
        colormap: ``"jet"`` (built in, hot = dark red) or a matplotlib colormap name.
        normalize: ``True`` rescales the map by its own min and max, ``(vmin, vmax)`` by a fixed range (use it to
            compare maps), ``False`` takes the map as already in [0, 1]. Values outside the range are clipped.

    Returns:
        An RGB image of the input image's size.

    Raises:
        ValueError: Bad shapes, non-finite map values, ``alpha`` outside [0, 1] or an empty ``normalize`` range.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1]; got {alpha!r}.")
    rgb = to_rgb_image(image)
    array = _map_array(anomaly_map)
    low, high = _normalization_range(array, normalize)
    table = _lookup_table(colormap)
    if array.shape != (rgb.height, rgb.width):  # scale at the map's resolution, then resize once
        small = Image.fromarray(_scale(array, low, high))
        array, low, high = np.asarray(small.resize(rgb.size, Image.Resampling.BILINEAR)), 0.0, 1.0
    overlay = Image.new("RGB", rgb.size)
    rows = max(1, _CHUNK_PIXELS // rgb.width)
    for top in range(0, rgb.height, rows):
        bottom = min(top + rows, rgb.height)
        heat = table[_lut_indices(_scale(array[top:bottom], low, high))].astype(np.float32)
        heat *= alpha
        band = np.asarray(rgb.crop((0, top, rgb.width, bottom)), dtype=np.float32)
        band *= 1.0 - alpha
        band += heat
        overlay.paste(Image.fromarray(np.rint(band, out=band).astype(np.uint8)), (0, top))
    return overlay

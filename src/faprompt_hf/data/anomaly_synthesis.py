# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""Synthetic anomalies on normal images, so that FAPrompt can be fine-tuned on a folder of good parts.

A factory rarely has pixel masks, often not even defective parts; it has good parts. This module turns normal images
into anomalous copies with an exact mask, on the fly, in the ``DataLoader`` workers. Four kinds of defect:

* ``perlin_texture``: a Perlin-noise-shaped region filled, semi-transparently, with a generated texture (the texture
  families of :mod:`faprompt_hf.data.synthetic`, drawn with fresh colours; nothing is downloaded). DRAEM-style.
* ``perlin_image``: the same Perlin-noise region, filled from *another* normal image of the dataset.
* ``cutpaste``: a patch of the image (a thin scar or a block) cut out, rotated, sometimes recoloured, and pasted
  elsewhere on the image. CutPaste-style.
* ``seamless``: a rectangular patch of another normal image, blended in with Poisson (gradient-domain) cloning, so
  that its borders disappear and only its structure differs. NSA-style.

**Exact masks.** Every kind follows one rule: pixels whose value changes by less than :data:`MIN_CHANGE` grey levels
(on every channel) are put back to their original value, and the mask is then *exactly* the set of pixels that
differ from the normal image. A placement is kept when at least ``max(16, 0.2 %)`` of the image
(:data:`~faprompt_hf.data.synthetic.MIN_DEFECT_AREA_FRACTION`), and :data:`VISIBLE_FRACTION` of the mask, changed by
24 grey levels or more; else another one is drawn.

**Determinism.** The defect painted on normal image ``i`` depends only on ``(seed, i)`` (and the dataset, which
provides the foreign images), never on the worker, the epoch or the batch: a resumed run sees the same data.

**Foreground.** With ``foreground_threshold``, defects are placed on the object only: the background colour is the
median of the image's blurred border, and the foreground is every pixel whose blurred colour differs from it by more
than the threshold (grey levels, largest channel difference), or by more than the automatic Otsu threshold of those
differences with ``"otsu"``.

Example:
    ```python
    from torch.utils.data import DataLoader
    from faprompt_hf.data import FAPromptCollator, load_folder
    from faprompt_hf.data.anomaly_synthesis import SyntheticAnomalyDataset

    good_parts = load_folder("my_parts")  # my_parts/<product>/good/*.png
    pairs = SyntheticAnomalyDataset(good_parts, ratio=1.0, seed=0, foreground_threshold="otsu")
    loader = DataLoader(pairs, batch_size=8, shuffle=True, collate_fn=FAPromptCollator(processor), num_workers=2)
    ```
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from datasets import Dataset
from PIL import Image
from scipy import fft as scipy_fft
from scipy import ndimage
from transformers.utils import logging

from ..image_utils import to_rgb_image
from ..training_args import (
    SYNTHETIC_ANOMALY_KINDS,
    check_synthetic_anomaly_ratio,
    parse_foreground_threshold,
    parse_synthetic_anomaly_weights,
)
from .schema import decode_image_value, defer_decoding
from .synthetic import _TEXTURES, _VISIBLE_CHANGE, MIN_DEFECT_AREA_FRACTION, _quantise

logger = logging.get_logger(__name__)

__all__ = [
    "MIN_CHANGE",
    "MIN_SYNTHESIS_SIDE",
    "SYNTHETIC_ANOMALY_KINDS",
    "VISIBLE_FRACTION",
    "SyntheticAnomalyDataset",
    "check_synthetic_anomaly_ratio",
    "foreground_mask",
    "parse_foreground_threshold",
    "parse_synthetic_anomaly_weights",
    "perlin_noise",
    "summarize_kinds",
    "synthesize_anomaly",
]

MIN_SYNTHESIS_SIDE = 32
"""Smallest image side (pixels) synthetic defects are painted on: the smallest defect is about 8 pixels across and is
placed with a margin."""

MIN_CHANGE = 8
"""A pixel belongs to a synthetic defect when some channel changed by at least this many grey levels (0..255);
smaller changes are undone, so that the mask is exact and every marked pixel visibly changed."""

VISIBLE_FRACTION = 0.3
"""A placement is kept when at least this fraction of its mask (and ``max(16, 0.2 %)`` of the image) changed by 24
grey levels or more, as the synthetic generator's defects; otherwise another placement is drawn."""

DEFECT_TYPE_PREFIX = "synthetic_"
"""``defect_type`` of a synthetic row: this prefix and the kind, e.g. ``"synthetic_cutpaste"``."""

_MAX_TRIES = 30
_SELECTION_STREAM = 7_001  # mixed into the seed of the choice of normal images that get a copy
_DEFECT_STREAM = 7_002  # mixed into the seed of each image's defect
_FOREGROUND_MIN_FRACTION = 0.01


# ----------------------------------------------------------------------------------------------------------------------
# Noise, foreground and blending
# ----------------------------------------------------------------------------------------------------------------------


def perlin_noise(shape: tuple[int, int], resolution: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Two-dimensional Perlin (gradient) noise.

    Random unit gradients sit on a lattice of ``resolution`` cells over the image; each pixel blends the four
    surrounding corners' ramps with the quintic fade ``6t^5 - 15t^4 + 10t^3``.

    Args:
        shape: ``(height, width)`` in pixels.
        resolution: Lattice cells ``(along y, along x)``, each >= 1.
        rng: The random generator (draws ``(ry + 1) * (rx + 1)`` angles).

    Returns:
        The noise (height, width) float32, roughly in [-1, 1], zero on lattice points.
    """
    height, width = shape
    cells_y, cells_x = (max(1, int(cells)) for cells in resolution)
    angles = rng.uniform(0.0, 2.0 * np.pi, size=(cells_y + 1, cells_x + 1))
    gradient_y, gradient_x = np.sin(angles).astype(np.float32), np.cos(angles).astype(np.float32)
    y = (np.arange(height, dtype=np.float32) + 0.5) * cells_y / height
    x = (np.arange(width, dtype=np.float32) + 0.5) * cells_x / width
    row, column = np.floor(y).astype(int), np.floor(x).astype(int)
    fy, fx = (y - row)[:, None], (x - column)[None, :]

    def ramp(dy: int, dx: int) -> np.ndarray:
        rows, columns = (row + dy)[:, None], (column + dx)[None, :]
        return gradient_y[rows, columns] * (fy - dy) + gradient_x[rows, columns] * (fx - dx)

    def fade(t: np.ndarray) -> np.ndarray:
        return t * t * t * (t * (t * 6.0 - 15.0) + 10.0)

    u, v = fade(fy), fade(fx)
    top = ramp(0, 0) * (1.0 - v) + ramp(0, 1) * v
    bottom = ramp(1, 0) * (1.0 - v) + ramp(1, 1) * v
    return (np.sqrt(2.0) * (top * (1.0 - u) + bottom * u)).astype(np.float32)


def _otsu(values: np.ndarray) -> float:
    """Otsu's threshold of values in [0, 255]: the cut of a 256-bin histogram that maximises between-class variance."""
    histogram = np.bincount(np.clip(values, 0, 255).astype(np.int64).ravel(), minlength=256).astype(np.float64)
    levels = np.arange(256, dtype=np.float64)
    weight = np.cumsum(histogram)
    mass = np.cumsum(histogram * levels)
    total, total_mass = weight[-1], mass[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_low = mass / weight
        mean_high = (total_mass - mass) / (total - weight)
        between = weight * (total - weight) * (mean_low - mean_high) ** 2
    between = np.nan_to_num(between, nan=-1.0, posinf=-1.0)
    return float(np.argmax(between)) + 0.5


def foreground_mask(image: np.ndarray, threshold: str | float) -> np.ndarray:
    """Where the object is: pixels whose blurred colour differs from the background's (the border's median).

    The image is blurred (Gaussian, sigma 1 % of its longer side, at least 1 px); the background colour is the
    per-channel median of the blurred border (a 2 % frame); a pixel's distance is its largest channel difference from
    it. Pixels farther than ``threshold`` (or Otsu's threshold of the distances with ``"otsu"``) are the
    foreground; specks under 0.5 % of the image are dropped and small gaps closed.

    Args:
        image: RGB image (H, W, 3) uint8.
        threshold: ``"otsu"`` or a distance in grey levels (0..255).

    Returns:
        The foreground (H, W) bool; all True when less than 1 % of the image is foreground (a texture, or a
        threshold too high for this image), with a warning.
    """
    threshold = parse_foreground_threshold(threshold)
    if threshold is None:
        return np.ones(image.shape[:2], bool)
    height, width = image.shape[:2]
    sigma = max(1.0, 0.01 * max(height, width))
    blurred = ndimage.gaussian_filter(image.astype(np.float32), sigma=(sigma, sigma, 0))
    frame = max(1, int(round(0.02 * min(height, width))))
    border = np.ones((height, width), bool)
    border[frame:-frame, frame:-frame] = False
    background = np.median(blurred[border], axis=0)
    distance = np.abs(blurred - background).max(axis=-1)
    cut = _otsu(distance) if threshold == "otsu" else float(threshold)
    foreground = distance > cut
    foreground = ndimage.binary_closing(foreground, structure=np.ones((3, 3), bool), iterations=2) & (distance > 0)
    labelled, count = ndimage.label(foreground)
    if count:
        sizes = ndimage.sum_labels(foreground, labelled, index=np.arange(1, count + 1))
        keep = np.flatnonzero(sizes >= 0.005 * height * width) + 1
        foreground = np.isin(labelled, keep)
    if foreground.mean() < _FOREGROUND_MIN_FRACTION:
        logger.warning(
            "The foreground threshold %s leaves %.2f%% of a %dx%d image as the object: placing its synthetic defect "
            "anywhere. Lower --foreground_threshold, or leave it out for textures.",
            threshold,
            100.0 * foreground.mean(),
            width,
            height,
        )
        return np.ones((height, width), bool)
    return foreground


def _poisson_blend(patch: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Seamless cloning of ``patch`` into ``target``, both (h, w, C) float.

    Keeps the patch's gradients inside and the target's values on the one-pixel frame, solving the Poisson equation
    exactly with a sine transform (DST-I diagonalises the 5-point Laplacian with a fixed frame).

    Returns:
        The blended block (h, w, C) float64; its frame equals ``target``'s.
    """
    height, width = patch.shape[:2]
    result = target.astype(np.float64).copy()
    if height < 3 or width < 3:
        return result
    difference = target.astype(np.float64) - patch.astype(np.float64)  # the harmonic correction's boundary values
    rhs = np.zeros((height - 2, width - 2, patch.shape[2]))
    rhs[0] += difference[0, 1:-1]
    rhs[-1] += difference[-1, 1:-1]
    rhs[:, 0] += difference[1:-1, 0]
    rhs[:, -1] += difference[1:-1, -1]
    ky = 2.0 - 2.0 * np.cos(np.pi * np.arange(1, height - 1) / (height - 1))
    kx = 2.0 - 2.0 * np.cos(np.pi * np.arange(1, width - 1) / (width - 1))
    eigenvalues = (ky[:, None] + kx[None, :])[..., None]
    correction = scipy_fft.idstn(scipy_fft.dstn(rhs, type=1, axes=(0, 1)) / eigenvalues, type=1, axes=(0, 1))
    result[1:-1, 1:-1] = patch[1:-1, 1:-1] + correction
    return result


# ----------------------------------------------------------------------------------------------------------------------
# The defects
# ----------------------------------------------------------------------------------------------------------------------


def _pick(rng: np.random.Generator, support: np.ndarray, margin: float) -> np.ndarray:
    """A random (y, x) pixel centre in the support, preferably ``margin`` (fraction of the side) from the border."""
    height, width = support.shape
    inner = support
    border = int(margin * min(height, width))
    if border:
        inner = np.zeros_like(support)
        inner[border : height - border, border : width - border] = support[
            border : height - border, border : width - border
        ]
        if not inner.any():
            inner = support
    flat = np.flatnonzero(inner)
    index = flat[rng.integers(flat.size)]
    return np.array([index // width, index % width], np.float64) + 0.5


def _as_grey_if(image_is_grey: bool, fill: np.ndarray) -> np.ndarray:
    """The fill as grey (the channels' mean in every channel) when the image is grey, so a defect never adds colour."""
    return np.repeat(fill.mean(-1, keepdims=True), 3, axis=-1) if image_is_grey else fill


def _texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A generated texture (H, W, 3) float in [0, 255] from one of the synthetic generator's families."""
    names = sorted(_TEXTURES)
    side = max(height, width, 64)
    texture = _TEXTURES[names[int(rng.integers(len(names)))]](rng, side)
    return np.clip(texture[:height, :width], 0.0, 255.0)


def _perlin_region(rng: np.random.Generator, support: np.ndarray) -> np.ndarray:
    """A DRAEM-like region: the top 1-10 % (of the support) of Perlin noise with 2-16 cells per side."""
    height, width = support.shape
    resolution = (2 ** int(rng.integers(1, 5)), 2 ** int(rng.integers(1, 5)))
    noise = perlin_noise((height, width), resolution, rng)
    fraction = rng.uniform(0.01, 0.1)
    cut = np.quantile(noise[support], 1.0 - fraction)
    return (noise > cut) & support


def _perlin(
    rng: np.random.Generator, image: np.ndarray, support: np.ndarray, fill: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Blend ``fill`` into a Perlin region with opacity 0.4-1 (DRAEM's ``beta`` in [0, 0.6])."""
    region = _perlin_region(rng, support)
    opacity = rng.uniform(0.4, 1.0)
    out = image.astype(np.float64)
    out[region] = (1.0 - opacity) * out[region] + opacity * fill[region]
    return out, region


def _cutpaste(rng: np.random.Generator, image: np.ndarray, support: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cut a scar (thin) or block from the image, rotate it, maybe recolour it, and paste it elsewhere."""
    height, width = support.shape
    side = min(height, width)
    if rng.random() < 0.5:  # scar
        thickness = max(2.0, rng.uniform(0.015, 0.05) * side)
        length = max(8.0, rng.uniform(0.1, 0.3) * side)
    else:  # block
        area = rng.uniform(0.01, 0.06) * height * width
        aspect = math.exp(rng.uniform(math.log(0.3), math.log(3.3)))
        thickness, length = max(4.0, math.sqrt(area / aspect)), max(8.0, math.sqrt(area * aspect))
    target = _pick(rng, support, 0.05)
    source = _pick(rng, support, 0.1)
    target_angle, source_angle = rng.uniform(0.0, np.pi, size=2)
    reach = 0.5 * math.hypot(thickness, length) + 1.0
    top, left = (max(0, int(target[axis] - reach)) for axis in (0, 1))
    bottom, right = min(height, int(target[0] + reach) + 1), min(width, int(target[1] + reach) + 1)
    ys = np.arange(top, bottom, dtype=np.float64)[:, None] + 0.5 - target[0]
    xs = np.arange(left, right, dtype=np.float64)[None, :] + 0.5 - target[1]
    along = xs * math.cos(target_angle) + ys * math.sin(target_angle)
    across = -xs * math.sin(target_angle) + ys * math.cos(target_angle)
    inside = (np.abs(along) <= length / 2) & (np.abs(across) <= thickness / 2)
    source_y = source[0] - 0.5 + along * math.sin(source_angle) + across * math.cos(source_angle)
    source_x = source[1] - 0.5 + along * math.cos(source_angle) - across * math.sin(source_angle)
    inside &= (source_y >= 0) & (source_y <= height - 1) & (source_x >= 0) & (source_x <= width - 1)
    patch = np.stack(
        [
            ndimage.map_coordinates(image[..., channel].astype(np.float64), [source_y, source_x], order=1)
            for channel in range(3)
        ],
        axis=-1,
    )
    if rng.random() < 0.5:  # recolour: brightness, contrast and a per-channel gain
        mean = patch[inside].mean(0) if inside.any() else np.zeros(3)
        gain = rng.uniform(0.8, 1.2, size=3) if not _is_grey(image) else np.full(3, rng.uniform(0.8, 1.2))
        patch = (patch - mean) * rng.uniform(0.6, 1.4) + mean * rng.uniform(0.7, 1.3) * gain
    region = np.zeros((height, width), bool)
    region[top:bottom, left:right] = inside
    region &= support
    out = image.astype(np.float64)
    block = out[top:bottom, left:right]
    block[inside] = patch[inside]
    return out, region


def _seamless(
    rng: np.random.Generator, image: np.ndarray, support: np.ndarray, foreign: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Poisson-blend a rectangle of ``foreign`` (another image, same size) into the image, NSA-style."""
    height, width = support.shape
    patch_height = int(np.clip(rng.uniform(0.1, 0.35) * height, 8, height))
    patch_width = int(np.clip(rng.uniform(0.1, 0.35) * width, 8, width))
    centre = _pick(rng, support, 0.05)
    top = int(np.clip(centre[0] - patch_height / 2, 0, height - patch_height))
    left = int(np.clip(centre[1] - patch_width / 2, 0, width - patch_width))
    source_top = int(rng.integers(0, height - patch_height + 1))
    source_left = int(rng.integers(0, width - patch_width + 1))
    patch = foreign[source_top : source_top + patch_height, source_left : source_left + patch_width].astype(np.float64)
    out = image.astype(np.float64)
    window = (slice(top, top + patch_height), slice(left, left + patch_width))
    out[window] = _poisson_blend(patch, out[window])
    region = np.zeros((height, width), bool)
    region[window] = True
    return out, region & support


def _is_grey(image: np.ndarray) -> bool:
    return bool((image[..., 0] == image[..., 1]).all() and (image[..., 1] == image[..., 2]).all())


def _settle(original: np.ndarray, painted: np.ndarray, region: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Undo changes outside ``region`` and imperceptible ones, closing gaps and holes.

    A change is imperceptible when it is below :data:`MIN_CHANGE` both at the pixel and on average over its 5x5
    neighbourhood.

    Returns:
        The image (H, W, 3) uint8 and its exact mask (H, W) bool: the pixels that differ from ``original``.
    """
    painted = _quantise(painted)
    change = np.abs(painted.astype(np.int16) - original.astype(np.int16)).max(axis=-1)
    smoothed = ndimage.uniform_filter(change.astype(np.float32), size=5)  # judge small neighbourhoods, not pixels
    keep = region & ((change >= MIN_CHANGE) | (smoothed >= MIN_CHANGE))
    keep = ndimage.binary_fill_holes(ndimage.binary_closing(keep, structure=np.ones((3, 3), bool))) & region
    out = np.where(keep[..., None], painted, original)
    return out, (out != original).any(axis=-1)


def synthesize_anomaly(
    image: np.ndarray,
    kind: str,
    rng: np.random.Generator,
    foreign: np.ndarray | None = None,
    support: np.ndarray | None = None,
    where: str = "the image",
) -> tuple[np.ndarray, np.ndarray]:
    """Paint one synthetic defect of ``kind`` on a normal image.

    Placements are drawn until one is visible (see the module's description; up to 30); when a kind
    cannot change this image (a flat, uniform image defeats ``cutpaste``), ``perlin_texture`` is used instead.

    Args:
        image: The normal RGB image (H, W, 3) uint8, H and W >= :data:`MIN_SYNTHESIS_SIDE`.
        kind: One of :data:`SYNTHETIC_ANOMALY_KINDS`.
        rng: The random generator (the result depends only on it and the inputs).
        foreign: Another image (H, W, 3) uint8 of the same size, the source of ``perlin_image`` and ``seamless``
            (default: the image itself, rotated by 180 degrees).
        support: Where the defect may go (H, W) bool, e.g. :func:`foreground_mask`; default everywhere.
        where: The image's name (path) for error messages.

    Returns:
        The anomalous image (H, W, 3) uint8 and its mask (H, W) bool, exactly the pixels that differ from ``image``.

    Raises:
        ValueError: An unknown kind, an image that is not (H, W, 3) uint8, an image smaller than
            :data:`MIN_SYNTHESIS_SIDE` (the message names it and its size), or a ``foreign`` image of another size.
        RuntimeError: No visible defect could be painted (the image and every fill are uniform and equal).
    """
    if kind not in SYNTHETIC_ANOMALY_KINDS:
        raise ValueError(f"Unknown synthetic anomaly kind {kind!r}; choose from {SYNTHETIC_ANOMALY_KINDS}.")
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"synthesize_anomaly needs an RGB uint8 array (H, W, 3) for {where}; got {_describe(image)}.")
    height, width = image.shape[:2]
    if min(height, width) < MIN_SYNTHESIS_SIDE:
        raise ValueError(_too_small(where, width, height))
    if foreign is None:
        foreign = image[::-1, ::-1]
    elif foreign.shape != image.shape:
        raise ValueError(f"The foreign image for {where} is {foreign.shape}, not the image's {image.shape}.")
    support = np.ones((height, width), bool) if support is None else support.astype(bool)
    if support.shape != (height, width) or not support.any():
        raise ValueError(f"The support mask for {where} must be a non-empty (H, W) = ({height}, {width}) array.")
    grey = _is_grey(image)
    min_area = max(16, math.ceil(MIN_DEFECT_AREA_FRACTION * height * width))
    for attempt_kind in (kind, "perlin_texture") if kind != "perlin_texture" else (kind,):
        for _ in range(_MAX_TRIES):
            if attempt_kind == "perlin_texture":
                painted, region = _perlin(rng, image, support, _as_grey_if(grey, _texture(rng, height, width)))
            elif attempt_kind == "perlin_image":
                painted, region = _perlin(rng, image, support, _as_grey_if(grey, foreign.astype(np.float64)))
            elif attempt_kind == "cutpaste":
                painted, region = _cutpaste(rng, image, support)
            else:
                painted, region = _seamless(rng, image, support, _as_grey_if(grey, foreign.astype(np.float64)))
            out, mask = _settle(image, painted, region)
            visible = int((np.abs(out.astype(np.int16) - image.astype(np.int16)).max(axis=-1) >= _VISIBLE_CHANGE).sum())
            if visible >= min_area and visible >= VISIBLE_FRACTION * mask.sum():
                return out, mask
        if attempt_kind != "perlin_texture":
            logger.debug("No visible %r defect fits %s; painting a perlin_texture one instead.", attempt_kind, where)
    raise RuntimeError(
        f"Could not paint a visible synthetic {kind!r} defect on {where} ({width}x{height}) in {_MAX_TRIES} tries: the "
        "image (or its foreground) is too small or too uniform. Check the image, or lower --foreground_threshold."
    )


def _too_small(where: str, width: int, height: int) -> str:
    """The message for an image below :data:`MIN_SYNTHESIS_SIDE`, naming it and its size."""
    return (
        f"{where} is {width}x{height} pixels (width x height), smaller than the smallest synthetic defect allows: "
        f"synthetic anomalies need images of at least {MIN_SYNTHESIS_SIDE}x{MIN_SYNTHESIS_SIDE} pixels (the "
        "smallest defect is about 8 pixels across and is placed with a margin). Remove or upscale such images, or "
        "train without --synthesize_anomalies."
    )


def _describe(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape} and dtype {value.dtype}"
    return type(value).__name__


# ----------------------------------------------------------------------------------------------------------------------
# The dataset
# ----------------------------------------------------------------------------------------------------------------------


class SyntheticAnomalyDataset(torch.utils.data.Dataset):
    """A dataset's rows, followed by a synthetic anomalous copy of some of its normal images.

    Rows ``0 .. N-1`` are the dataset's own rows, unchanged (images undecoded). Rows ``N ..`` are synthetic: the
    normal image ``i``, with a defect of a kind drawn by ``weights``, its exact mask, ``label`` 1, ``defect_type``
    ``"synthetic_<kind>"`` and ``path`` ``"<path>#synthetic_<kind>"``. Which normal images get a copy (the
    ``round(ratio * normal)`` of them first in a seeded random order, so a higher ratio keeps the lower one's) and the
    defect each gets depend only on ``seed`` and the image's index: every epoch, worker and resumed run sees the same
    pairs. The defect is painted in ``__getitem__``, that is in the ``DataLoader`` worker processes.

    Args:
        dataset: A map-style dataset in :data:`~faprompt_hf.data.ANOMALY_FEATURES` with at least one normal image.
        ratio: Fraction of the normal images that get a synthetic copy, in (0, 1].
        weights: Per-kind weights (see :func:`parse_synthetic_anomaly_weights`); default all kinds equally.
        seed: Seed of the choice of images and of every defect.
        foreground_threshold: None (defects anywhere), ``"otsu"`` or grey levels (see :func:`foreground_mask`).

    Raises:
        TypeError: ``dataset`` is not a map-style ``datasets.Dataset``.
        ValueError: No normal image, or a bad ``ratio``, ``weights`` or ``foreground_threshold``.
    """

    def __init__(
        self,
        dataset: Dataset,
        ratio: float = 1.0,
        weights: str | Mapping[str, float] | None = None,
        seed: int = 0,
        foreground_threshold: str | float | None = None,
    ) -> None:
        if not isinstance(dataset, Dataset):
            raise TypeError(
                f"Synthetic anomalies need a map-style datasets.Dataset (got {type(dataset).__name__}): a copy of "
                "image i is painted from row i. Load the data without streaming."
            )
        missing = [column for column in ("image", "label") if column not in dataset.column_names]
        if missing:
            raise ValueError(f"The dataset lacks the column(s) {missing}; use a loader of faprompt_hf.data.")
        self.ratio = check_synthetic_anomaly_ratio(ratio)
        self.weights = parse_synthetic_anomaly_weights(weights)
        self.foreground_threshold = parse_foreground_threshold(foreground_threshold)
        self.seed = int(seed)
        self.dataset = defer_decoding(dataset)
        labels = np.asarray([int(label) for label in self.dataset.select_columns(["label"])["label"]], dtype=np.int64)
        self.normal_indices = np.flatnonzero(labels == 0)
        if self.normal_indices.size == 0:
            raise ValueError(
                f"--synthesize_anomalies turns normal images into synthetic anomalies, but all {len(labels)} images "
                "of the training dataset are labelled anomalous. Add normal images (e.g. a good/ folder, or the "
                "train split of MVTec AD: --split train)."
            )
        count = max(1, round(self.ratio * self.normal_indices.size))
        keys = np.random.default_rng([self.seed, _SELECTION_STREAM]).random(len(labels))
        order = self.normal_indices[np.argsort(keys[self.normal_indices], kind="stable")]
        self.synthetic_sources = np.sort(order[:count])
        self._position = {int(index): position for position, index in enumerate(self.normal_indices)}

    def __len__(self) -> int:
        return len(self.dataset) + len(self.synthetic_sources)

    @property
    def num_synthetic(self) -> int:
        """How many synthetic anomalous rows follow the dataset's own."""
        return len(self.synthetic_sources)

    def __getitem__(self, index: int) -> dict[str, Any]:
        """Row ``index``: the dataset's row, or (``index >= len(dataset)``) a synthetic anomalous copy.

        Returns:
            A row of the schema: for synthetic rows ``image`` (RGB PIL), ``mask`` ("L" PIL, 0/255), ``label`` 1,
            ``class_name``, ``defect_type`` and ``path``.

        Raises:
            IndexError: ``index`` out of range.
            ValueError: The image (or the foreign one) cannot be decoded or is too small; the message names it.
        """
        index = int(index)
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"Index {index} is out of range for {len(self)} rows.")
        base = len(self.dataset)
        if index < base:
            return dict(self.dataset[index])
        return self.synthesize(int(self.synthetic_sources[index - base]))

    def synthesize(self, source_index: int) -> dict[str, Any]:
        """The synthetic anomalous copy of normal row ``source_index`` (deterministic in ``seed`` and the index).

        Args:
            source_index: The index of a normal row of the dataset.

        Returns:
            The synthetic row (see :meth:`__getitem__`).
        """
        row = self.dataset[source_index]
        path = str(row.get("path") or f"row {source_index}")
        image = self._decode(row, path)
        rng = np.random.default_rng([self.seed, int(source_index), _DEFECT_STREAM])
        kind = SYNTHETIC_ANOMALY_KINDS[int(rng.choice(len(SYNTHETIC_ANOMALY_KINDS), p=list(self.weights.values())))]
        foreign = None
        if kind in ("perlin_image", "seamless") and self.normal_indices.size > 1:
            offset = int(rng.integers(1, self.normal_indices.size))
            other = int(self.normal_indices[(self._position[int(source_index)] + offset) % self.normal_indices.size])
            other_row = self.dataset[other]
            other_image = self._decode(other_row, str(other_row.get("path") or f"row {other}"))
            if other_image.shape != image.shape:
                resized = Image.fromarray(other_image).resize((image.shape[1], image.shape[0]), Image.BILINEAR)
                other_image = np.asarray(resized)
            foreign = other_image
        support = None
        if self.foreground_threshold is not None:
            support = foreground_mask(image, self.foreground_threshold)
        out, mask = synthesize_anomaly(image, kind, rng, foreign=foreign, support=support, where=repr(path))
        return {
            "image": Image.fromarray(out),
            "mask": Image.fromarray(mask.astype(np.uint8) * 255),
            "label": 1,
            "class_name": str(row.get("class_name") or ""),
            "defect_type": DEFECT_TYPE_PREFIX + kind,
            "path": f"{path}#{DEFECT_TYPE_PREFIX}{kind}",
        }

    @staticmethod
    def _decode(row: Mapping[str, Any], path: str) -> np.ndarray:
        image = np.asarray(to_rgb_image(decode_image_value(row["image"], path), path), dtype=np.uint8)
        height, width = image.shape[:2]
        if min(height, width) < MIN_SYNTHESIS_SIDE:
            raise ValueError(_too_small(repr(path), width, height))
        return image


def summarize_kinds(dataset: SyntheticAnomalyDataset, limit: int | None = None) -> dict[str, int]:
    """Count the kinds of the synthetic rows (draws only the kinds, paints nothing).

    Args:
        dataset: The synthetic dataset.
        limit: Count only the first ``limit`` synthetic rows.

    Returns:
        ``{kind: count}`` in :data:`SYNTHETIC_ANOMALY_KINDS` order.
    """
    counts = dict.fromkeys(SYNTHETIC_ANOMALY_KINDS, 0)
    probabilities = list(dataset.weights.values())
    for source in dataset.synthetic_sources[:limit]:
        rng = np.random.default_rng([dataset.seed, int(source), _DEFECT_STREAM])
        counts[SYNTHETIC_ANOMALY_KINDS[int(rng.choice(len(SYNTHETIC_ANOMALY_KINDS), p=probabilities))]] += 1
    return counts

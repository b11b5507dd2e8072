# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""Deterministic synthetic anomaly data, so that training and zero-shot evaluation run fully offline.

Each *domain* is a texture family or a simple object on a background. Domains differ only in structure (texture
family or shape), never in colour: every image draws its colours from the full hue range with the same saturation
and brightness ranges, so a model cannot tell domains (or normal from anomalous) apart by colour. Normal images never
contain near-black, near-white or grey pixels, which is what the colour-independent defects are made of:

* ``scratch``: a thin (2-4 px at 224 px, proportionally wider above) slightly curved line, black or white.
* ``crack``: a dark branching polyline.
* ``stain``: a dark grey, semi-opaque irregular blob.
* ``hole``: a dark ellipse with a slightly lighter rim.
* ``bleach``: an irregular patch blended towards white.
* ``missing`` (objects only): a chunk cut out of the object's edge, showing the background.

Masks are exact: a mask is exactly the set of pixels whose value the defect changed. A placement is kept only when
at least :data:`MIN_DEFECT_AREA_FRACTION` of the image (and 16 pixels), and most of the mask, changed by 24 grey
levels or more, so a defect is never invisible. The clean
image depends only on ``(domain, image_size, seed)``, so :func:`generate_sample` with ``defect_type=None`` and the
same seed returns the image the defect was painted on.

Example:
    ```python
    from faprompt_hf.data.synthetic import make_synthetic_dataset, write_synthetic_mvtec

    train = make_synthetic_dataset(domains=("stripes", "checker", "nut"), n_normal=32, n_anomalous=32)
    root = write_synthetic_mvtec("synthetic_mvtec", domains=("rings", "capsule"))
    ```
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from datasets import Dataset
from PIL import Image
from scipy import ndimage
from transformers.utils import logging

from ..file_utils import staged_directory
from .schema import _build_dataset

logger = logging.get_logger(__name__)

__all__ = [
    "DEFECT_TYPES",
    "DOMAINS",
    "MIN_DEFECT_AREA_FRACTION",
    "OBJECT_DOMAINS",
    "OBJECT_ONLY_DEFECT_TYPES",
    "TEXTURE_DOMAINS",
    "defect_types_for",
    "generate_sample",
    "make_synthetic_dataset",
    "write_synthetic_mvtec",
]

TEXTURE_DOMAINS: tuple[str, ...] = ("gradient", "stripes", "checker", "blobs", "rings", "dots")
"""Texture domains: the whole image is one texture family."""

OBJECT_DOMAINS: tuple[str, ...] = ("nut", "plate", "capsule")
"""Object domains: one object (hexagonal nut, rounded plate, two-tone capsule) on a plain background."""

DOMAINS: tuple[str, ...] = TEXTURE_DOMAINS + OBJECT_DOMAINS
"""All domains, in a fixed order (a domain's position seeds its images, so subsets give the same images)."""

DEFECT_TYPES: tuple[str, ...] = ("scratch", "crack", "stain", "hole", "bleach", "missing")
"""All defect types."""

OBJECT_ONLY_DEFECT_TYPES: tuple[str, ...] = ("missing",)
"""Defect types that need an object (and a background to show through)."""

MIN_DEFECT_AREA_FRACTION = 0.002
"""Smallest mask area, as a fraction of the image (and never below 16 pixels)."""

MIN_IMAGE_SIZE = 64
_MAX_DEFECT_TRIES = 50
_VISIBLE_CHANGE = 24  # a placement is kept when most changed pixels change by at least this much (0..255)
_LINE_WIDTH_SIZE = 224  # line defects have their nominal width in pixels up to this side, and scale with it above
# Normal images keep to these saturation/brightness ranges, so that black, white and grey defects always show.
_SATURATION = (0.35, 0.9)
_VALUE = (0.5, 0.9)

_Layer = tuple[np.ndarray, np.ndarray, np.ndarray]  # image (H, W, 3) uint8, support (H, W) bool, background


def defect_types_for(domain: str) -> tuple[str, ...]:
    """Return the defect types that apply to a domain.

    Args:
        domain: One of :data:`DOMAINS`.

    Returns:
        :data:`DEFECT_TYPES` for object domains; the same without :data:`OBJECT_ONLY_DEFECT_TYPES` for textures.

    Raises:
        ValueError: Unknown domain.
    """
    _check_domain(domain)
    if domain in OBJECT_DOMAINS:
        return DEFECT_TYPES
    return tuple(kind for kind in DEFECT_TYPES if kind not in OBJECT_ONLY_DEFECT_TYPES)


def _check_domain(domain: str) -> None:
    if domain not in DOMAINS:
        raise ValueError(f"Unknown synthetic domain {domain!r}; choose from {DOMAINS}.")


def _check_image_size(image_size: int) -> None:
    if not isinstance(image_size, (int, np.integer)) or image_size < MIN_IMAGE_SIZE:
        raise ValueError(
            f"image_size must be an int >= {MIN_IMAGE_SIZE} (got {image_size!r}); use 224 (a 14x14 patch grid for "
            "ViT-B/16) or 112 for quick tests."
        )


# ----------------------------------------------------------------------------------------------------------------
# Colours and fields
# ----------------------------------------------------------------------------------------------------------------


def _hsv_to_rgb(hue: np.ndarray, saturation: np.ndarray, value: np.ndarray) -> np.ndarray:
    """Convert HSV arrays in [0, 1] of shape (N,) to RGB of shape (N, 3) in [0, 255]."""
    sector = np.floor(hue * 6.0)
    fraction = hue * 6.0 - sector
    p = value * (1.0 - saturation)
    q = value * (1.0 - fraction * saturation)
    t = value * (1.0 - (1.0 - fraction) * saturation)
    sector = sector.astype(int) % 6
    red = np.choose(sector, [value, q, p, p, t, value])
    green = np.choose(sector, [t, value, value, q, p, p])
    blue = np.choose(sector, [p, p, t, value, value, q])
    return np.stack([red, green, blue], axis=-1) * 255.0


def _palette(rng: np.random.Generator, count: int) -> np.ndarray:
    """Draw ``count`` colours (count, 3) with distinct hues from the full hue range."""
    first = rng.random()
    # Consecutive hues differ by at least 0.15 and the total spread stays below 0.85, so all pairs differ by >= 0.15.
    offsets = np.concatenate([[0.0], np.cumsum(rng.uniform(0.15, 0.85 / max(count - 1, 1), size=count - 1))])
    hues = (first + offsets) % 1.0
    saturation = rng.uniform(*_SATURATION, size=count)
    value = rng.uniform(*_VALUE, size=count)
    return _hsv_to_rgb(hues, saturation, value).astype(np.float32)


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (y, x), each (size, size), in units of the image side (0..1)."""
    axis = (np.arange(size, dtype=np.float32) + 0.5) / size
    return axis[:, None] + np.zeros((1, size), np.float32), np.zeros((size, 1), np.float32) + axis[None, :]


def _rotated(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates (u, v) of the image rotated by a random angle around its centre, each (size, size)."""
    y, x = _grid(size)
    angle = rng.uniform(0.0, np.pi)
    cos, sin = np.float32(np.cos(angle)), np.float32(np.sin(angle))
    return (x - 0.5) * cos + (y - 0.5) * sin, -(x - 0.5) * sin + (y - 0.5) * cos


def _smooth_noise(rng: np.random.Generator, height: int, width: int, cells: int) -> np.ndarray:
    """Smooth zero-mean, unit-variance noise (height, width): a grid of about ``cells`` x ``cells`` random bumps."""

    def bumps(length: int) -> np.ndarray:
        centres = np.linspace(-1.0 / cells, 1.0 + 1.0 / cells, cells + 2, dtype=np.float32)
        positions = (np.arange(length, dtype=np.float32) + 0.5) / length
        return np.exp(-(((positions[:, None] - centres[None, :]) * cells) ** 2))

    field = bumps(height) @ rng.standard_normal((cells + 2, cells + 2), dtype=np.float32) @ bumps(width).T
    return (field - field.mean()) / (field.std() + 1e-6)


def _soft_sign(wave: np.ndarray, sharpness: float) -> np.ndarray:
    """Map a wave in [-1, 1] to [0, 1], sharper (more square) for larger ``sharpness``."""
    return 0.5 + 0.5 * np.tanh(sharpness * wave) / np.tanh(sharpness)


def _mix(field: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """Blend two colours (2, 3) by a field (H, W) in [0, 1] into an image (H, W, 3)."""
    return colours[0] + field[..., None] * (colours[1] - colours[0])


def _lighting(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A gentle illumination gradient (H, W, 1) and sensor grain (H, W, 1), to apply as ``image * light + grain``."""
    u, _ = _rotated(rng, size)
    light = 1.0 + np.float32(rng.uniform(0.0, 0.08)) * u
    return light[..., None], rng.standard_normal((size, size, 1), dtype=np.float32) * np.float32(2.5)


# ----------------------------------------------------------------------------------------------------------------
# Domains
# ----------------------------------------------------------------------------------------------------------------


def _texture_gradient(rng: np.random.Generator, size: int) -> np.ndarray:
    u, _ = _rotated(rng, size)
    field = np.clip(u / 0.71 * 0.5 + 0.5 + 0.08 * _smooth_noise(rng, size, size, 3), 0.0, 1.0)
    return _mix(field, _palette(rng, 2))


def _texture_stripes(rng: np.random.Generator, size: int) -> np.ndarray:
    u, v = _rotated(rng, size)
    frequency = rng.uniform(4.0, 11.0)
    wobble = rng.uniform(0.0, 0.02) * np.sin(2 * np.pi * rng.uniform(1.0, 3.0) * v)
    wave = np.sin(2 * np.pi * frequency * (u + wobble) + rng.uniform(0, 2 * np.pi))
    return _mix(_soft_sign(wave, rng.uniform(1.5, 6.0)), _palette(rng, 2))


def _texture_checker(rng: np.random.Generator, size: int) -> np.ndarray:
    u, v = _rotated(rng, size)
    cells = rng.uniform(3.0, 8.0)
    wave = np.sin(np.pi * cells * u + rng.uniform(0, np.pi)) * np.sin(np.pi * cells * v + rng.uniform(0, np.pi))
    return _mix(_soft_sign(wave, rng.uniform(6.0, 12.0)), _palette(rng, 2))


def _texture_blobs(rng: np.random.Generator, size: int) -> np.ndarray:
    field = _smooth_noise(rng, size, size, int(rng.integers(4, 9)))
    return _mix(1.0 / (1.0 + np.exp(-rng.uniform(2.0, 6.0) * field)), _palette(rng, 2))


def _texture_rings(rng: np.random.Generator, size: int) -> np.ndarray:
    y, x = _grid(size)
    centre = rng.uniform(-0.3, 1.3, size=2)
    radius = np.hypot(y - centre[0], x - centre[1])
    wave = np.sin(2 * np.pi * rng.uniform(4.0, 10.0) * radius + rng.uniform(0, 2 * np.pi))
    return _mix(_soft_sign(wave, rng.uniform(1.5, 5.0)), _palette(rng, 2))


def _texture_dots(rng: np.random.Generator, size: int) -> np.ndarray:
    u, v = _rotated(rng, size)
    cells = rng.uniform(4.0, 9.0)
    row = np.floor(v * cells)
    cell_u = np.mod(u * cells + 0.5 * np.mod(row, 2.0), 1.0) - 0.5
    cell_v = np.mod(v * cells, 1.0) - 0.5
    distance = np.hypot(cell_u, cell_v)
    field = np.clip((rng.uniform(0.18, 0.38) - distance) * size / cells + 0.5, 0.0, 1.0)
    return _mix(field, _palette(rng, 2))


def _background(rng: np.random.Generator, size: int, colour: np.ndarray) -> np.ndarray:
    """A plain background (H, W, 3) of one colour with a soft vignette."""
    y, x = _grid(size)
    vignette = 1.0 - rng.uniform(0.0, 0.12) * ((y - 0.5) ** 2 + (x - 0.5) ** 2) * 2.0
    return colour * vignette[..., None]


def _object_nut(rng: np.random.Generator, size: int, colours: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y, x = _grid(size)
    cy, cx = 0.5 + rng.uniform(-0.08, 0.08, size=2)
    outer = rng.uniform(0.26, 0.36)
    angle = rng.uniform(0.0, np.pi / 3)
    dy, dx = y - cy, x - cx
    hex_radius = np.max(
        [np.abs(dx * np.cos(angle + k * np.pi / 3) + dy * np.sin(angle + k * np.pi / 3)) for k in range(3)], axis=0
    )
    radius = np.hypot(dy, dx)
    inner = outer * rng.uniform(0.35, 0.5)
    support = (hex_radius <= outer * np.cos(np.pi / 6)) & (radius > inner)
    shade = 1.0 - 0.12 * np.clip(radius / outer, 0.0, 1.0)
    chamfer = np.abs(radius - outer * 0.82) < 0.012
    shade = np.where(chamfer, shade * 0.85, shade)
    return colours[0] * shade[..., None], support


def _object_plate(rng: np.random.Generator, size: int, colours: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    u, v = _rotated(rng, size)
    u = u - rng.uniform(-0.05, 0.05)
    v = v - rng.uniform(-0.05, 0.05)
    half = np.array([rng.uniform(0.26, 0.38), rng.uniform(0.16, 0.27)], np.float32)
    corner = rng.uniform(0.02, 0.08)
    qu, qv = np.abs(u) - half[0] + corner, np.abs(v) - half[1] + corner
    outside = np.hypot(np.maximum(qu, 0.0), np.maximum(qv, 0.0))
    signed = outside + np.minimum(np.maximum(qu, qv), 0.0) - corner
    support = signed <= 0.0
    bevel = np.where(signed > -0.025, 0.88, 1.0)
    brushed = 1.0 + 0.03 * np.sin(2 * np.pi * 60.0 * v + rng.uniform(0, 2 * np.pi))
    return colours[0] * (bevel * brushed)[..., None], support


def _object_capsule(rng: np.random.Generator, size: int, colours: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    u, v = _rotated(rng, size)
    u = u - rng.uniform(-0.06, 0.06)
    v = v - rng.uniform(-0.06, 0.06)
    half_length, radius = rng.uniform(0.16, 0.26), rng.uniform(0.1, 0.15)
    along = np.clip(u, -half_length, half_length)
    distance = np.hypot(u - along, v)
    support = distance <= radius
    image = np.where((u < 0.0)[..., None], colours[0], colours[1])
    highlight = np.exp(-(((v + 0.45 * radius) / (0.18 * radius)) ** 2))[..., None] * 0.2
    shade = (1.0 - 0.15 * (distance / radius) ** 2)[..., None]
    return (image * shade) * (1.0 - highlight) + 255.0 * highlight, support


_TEXTURES: dict[str, Callable[[np.random.Generator, int], np.ndarray]] = {
    "gradient": _texture_gradient,
    "stripes": _texture_stripes,
    "checker": _texture_checker,
    "blobs": _texture_blobs,
    "rings": _texture_rings,
    "dots": _texture_dots,
}
_OBJECTS: dict[str, Callable[[np.random.Generator, int, np.ndarray], tuple[np.ndarray, np.ndarray]]] = {
    "nut": _object_nut,
    "plate": _object_plate,
    "capsule": _object_capsule,
}


def _render_clean(domain: str, size: int, rng: np.random.Generator) -> _Layer:
    """Render a normal image.

    Returns:
        The image (H, W, 3) uint8, the support (H, W) bool where defects may go (the object, or everything), and the
        background (H, W, 3) uint8 a missing part reveals (the image itself for textures).
    """
    if domain in _TEXTURES:
        texture = _TEXTURES[domain](rng, size)
        light, grain = _lighting(rng, size)
        image = _quantise(texture * light + grain)
        return image, np.ones((size, size), bool), image
    colours = _palette(rng, 3)  # colours[0] is the background, the object uses the other hues
    background = _background(rng, size, colours[0])
    foreground, support = _OBJECTS[domain](rng, size, colours[1:])
    light, grain = _lighting(rng, size)
    background = _quantise(background * light + grain)
    return np.where(support[..., None], _quantise(foreground * light + grain), background), support, background


def _quantise(image: np.ndarray) -> np.ndarray:
    image = np.rint(image)
    return np.clip(image, 0, 255, out=image).astype(np.uint8)


# ----------------------------------------------------------------------------------------------------------------
# Defects
# ----------------------------------------------------------------------------------------------------------------


def _pick_point(rng: np.random.Generator, support: np.ndarray, margin: float = 0.0) -> np.ndarray:
    """A random (y, x) pixel position in the support, at least ``margin`` (fraction of the side) from the border."""
    size = support.shape[0]
    inner = support
    if margin > 0:
        border = int(margin * size)
        inner = np.zeros_like(support)
        inner[border : size - border, border : size - border] = support[border : size - border, border : size - border]
        if not inner.any():
            inner = support
    flat = np.flatnonzero(inner)
    index = flat[rng.integers(flat.size)]
    return np.array([index // size, index % size], np.float32) + 0.5


def _polyline_mask(size: int, points: np.ndarray, width: float) -> np.ndarray:
    """Pixels (H, W) bool within ``width / 2`` of a polyline given as (N, 2) (y, x) pixel positions."""
    mask = np.zeros((size, size), bool)
    half = width / 2.0
    low = np.clip(np.floor(points.min(axis=0) - half - 1), 0, size).astype(int)
    high = np.clip(np.ceil(points.max(axis=0) + half + 1), 0, size).astype(int)
    if np.any(high <= low):
        return mask
    ys = np.arange(low[0], high[0], dtype=np.float32)[:, None] + 0.5
    xs = np.arange(low[1], high[1], dtype=np.float32)[None, :] + 0.5
    nearest = np.full((ys.shape[0], xs.shape[1]), np.inf, np.float32)
    for start, end in zip(points[:-1], points[1:], strict=True):
        direction = end - start
        length2 = float(direction @ direction) or 1e-6
        t = np.clip(((ys - start[0]) * direction[0] + (xs - start[1]) * direction[1]) / length2, 0.0, 1.0)
        nearest = np.minimum(nearest, np.hypot(ys - start[0] - t * direction[0], xs - start[1] - t * direction[1]))
    mask[low[0] : high[0], low[1] : high[1]] = nearest <= half
    return mask


def _blob_mask(rng: np.random.Generator, size: int, centre: np.ndarray, radius: float) -> np.ndarray:
    """An irregular blob (H, W) bool of about ``radius`` pixels around ``centre`` (y, x)."""
    extent = int(math.ceil(radius * 1.8))
    low = np.maximum(np.floor(centre - extent).astype(int), 0)
    high = np.minimum(np.ceil(centre + extent).astype(int), size)
    ys = np.arange(low[0], high[0], dtype=np.float32)[:, None] + 0.5 - centre[0]
    xs = np.arange(low[1], high[1], dtype=np.float32)[None, :] + 0.5 - centre[1]
    angle = rng.uniform(0, np.pi)
    axes = radius * rng.uniform(0.7, 1.3, size=2)
    along = (xs * np.cos(angle) + ys * np.sin(angle)) / axes[0]
    across = (-xs * np.sin(angle) + ys * np.cos(angle)) / axes[1]
    wobble = 0.3 * _smooth_noise(rng, ys.shape[0], xs.shape[1], 4)
    mask = np.zeros((size, size), bool)
    mask[low[0] : high[0], low[1] : high[1]] = np.hypot(along, across) + wobble < 1.0
    return mask


def _line_width_scale(size: int) -> float:
    """Factor on the pixel width of line defects (scratch, crack), so that their area grows like the image's.

    Their length is a fraction of the side; a width fixed in pixels would make their area a shrinking fraction of
    larger images, below :data:`MIN_DEFECT_AREA_FRACTION` at 518 px for most placements.
    """
    return max(1.0, size / _LINE_WIDTH_SIZE)


def _scratch(rng: np.random.Generator, clean: np.ndarray, support: np.ndarray, background: np.ndarray) -> np.ndarray:
    size = clean.shape[0]
    start = _pick_point(rng, support, margin=0.1)
    angle = rng.uniform(0, 2 * np.pi)
    length = rng.uniform(0.25, 0.5) * size
    end = start + length * np.array([np.sin(angle), np.cos(angle)], np.float32)
    bend = (start + end) / 2 + rng.uniform(-0.15, 0.15) * length * np.array([np.cos(angle), -np.sin(angle)])
    t = np.linspace(0.0, 1.0, 12, dtype=np.float32)[:, None]
    points = (1 - t) ** 2 * start + 2 * (1 - t) * t * bend + t**2 * end
    region = _polyline_mask(size, points, float(rng.integers(2, 5)) * _line_width_scale(size)) & support
    tone = rng.uniform(10, 35) if rng.random() < 0.5 else rng.uniform(225, 250)
    out = clean.copy()
    out[region] = _quantise(tone + rng.normal(0, 3, size=(int(region.sum()), 1)))
    return out


def _crack(rng: np.random.Generator, clean: np.ndarray, support: np.ndarray, background: np.ndarray) -> np.ndarray:
    size = clean.shape[0]

    def walk(start: np.ndarray, heading: float, steps: int, step: float) -> np.ndarray:
        turns = heading + np.cumsum(rng.normal(0.0, 0.45, size=steps))
        moves = step * rng.uniform(0.6, 1.4, size=(steps, 1)) * np.stack([np.sin(turns), np.cos(turns)], axis=1)
        return np.concatenate([start[None], start + np.cumsum(moves, axis=0)]).astype(np.float32)

    heading = rng.uniform(0, 2 * np.pi)
    trunk = walk(_pick_point(rng, support, margin=0.15), heading, int(rng.integers(8, 15)), size * 0.035)
    width = rng.uniform(1.6, 2.6) * _line_width_scale(size)
    region = _polyline_mask(size, trunk, width)
    for _ in range(int(rng.integers(1, 4))):
        fork = trunk[rng.integers(1, len(trunk))]
        branch_heading = heading + rng.choice([-1, 1]) * rng.uniform(0.5, 1.2)
        branch = walk(fork, branch_heading, int(rng.integers(3, 7)), size * 0.025)
        region |= _polyline_mask(size, branch, max(1.2 * _line_width_scale(size), width * 0.7))
    region &= support
    out = clean.copy()
    out[region] = _quantise(rng.uniform(10, 40) + rng.normal(0, 4, size=(int(region.sum()), 1)))
    return out


def _stain(rng: np.random.Generator, clean: np.ndarray, support: np.ndarray, background: np.ndarray) -> np.ndarray:
    size = clean.shape[0]
    region = _blob_mask(rng, size, _pick_point(rng, support, margin=0.1), rng.uniform(0.06, 0.13) * size) & support
    grey, opacity = rng.uniform(45, 95), rng.uniform(0.6, 0.85)
    out = clean.copy()
    out[region] = _quantise(clean[region] * (1.0 - opacity) + grey * opacity)
    return out


def _hole(rng: np.random.Generator, clean: np.ndarray, support: np.ndarray, background: np.ndarray) -> np.ndarray:
    size = clean.shape[0]
    centre = _pick_point(rng, support, margin=0.08)
    y, x = _grid(size)
    radii = rng.uniform(0.025, 0.06) * rng.uniform(0.75, 1.25, size=2)
    distance = np.hypot((y - centre[0] / size) / radii[0], (x - centre[1] / size) / radii[1])
    region = (distance <= 1.0) & support
    depth = rng.uniform(5, 25) + 25.0 * np.clip(distance[region] - 0.75, 0.0, None) / 0.25
    out = clean.copy()
    out[region] = _quantise(np.repeat(depth[:, None], 3, axis=1))
    return out


def _bleach(rng: np.random.Generator, clean: np.ndarray, support: np.ndarray, background: np.ndarray) -> np.ndarray:
    size = clean.shape[0]
    region = _blob_mask(rng, size, _pick_point(rng, support, margin=0.1), rng.uniform(0.06, 0.14) * size) & support
    strength = rng.uniform(0.55, 0.8)
    out = clean.copy()
    values = clean[region].astype(np.float32)
    out[region] = _quantise(values + strength * (255.0 - values))
    return out


def _missing(rng: np.random.Generator, clean: np.ndarray, support: np.ndarray, background: np.ndarray) -> np.ndarray:
    size = clean.shape[0]
    edge = support & ~ndimage.binary_erosion(support)
    centre = _pick_point(rng, edge)
    y, x = _grid(size)
    radius = rng.uniform(0.07, 0.14)
    chunk = np.hypot(y - centre[0] / size, x - centre[1] / size) <= radius
    region = chunk & support
    out = clean.copy()
    out[region] = background[region]
    return out


_DEFECTS: dict[str, Callable[[np.random.Generator, np.ndarray, np.ndarray, np.ndarray], np.ndarray]] = {
    "scratch": _scratch,
    "crack": _crack,
    "stain": _stain,
    "hole": _hole,
    "bleach": _bleach,
    "missing": _missing,
}


def _domain_rng(domain: str, seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), DOMAINS.index(domain), stream])


def generate_sample(
    domain: str, defect_type: str | None = None, image_size: int = 224, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Render one synthetic image and its exact defect mask.

    Args:
        domain: One of :data:`DOMAINS`.
        defect_type: One of :func:`defect_types_for` ``(domain)``, or ``None`` for a normal image.
        image_size: Side S of the square image, at least 64.
        seed: Non-negative seed; the clean image depends only on ``(domain, image_size, seed)``.

    Returns:
        The image (S, S, 3) uint8 and the mask (S, S) bool: exactly the pixels the defect changed (all ``False``
        for a normal image).

    Raises:
        ValueError: Unknown domain or defect type, a defect type that does not apply to the domain, or a bad size.
        RuntimeError: No visible defect could be placed (does not happen with the built-in domains).
    """
    _check_image_size(image_size)
    if defect_type is not None and defect_type not in defect_types_for(domain):
        raise ValueError(
            f"Defect type {defect_type!r} does not apply to domain {domain!r}; use one of "
            f"{defect_types_for(domain)} or None."
        )
    clean, support, background = _render_clean(domain, image_size, _domain_rng(domain, seed, 0))
    if defect_type is None:
        return clean, np.zeros(clean.shape[:2], bool)
    rng = _domain_rng(domain, seed, 1 + DEFECT_TYPES.index(defect_type))
    placed = _place_defect(defect_type, (clean, support, background), rng)
    if placed is None:
        raise RuntimeError(f"Could not place a visible {defect_type!r} defect on {domain!r} (seed {seed}).")
    return placed[0], placed[1]


def _place_defect(
    defect_type: str, layer: _Layer, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, int] | None:
    """Paint a visible defect on a clean image, drawing placements until one passes the visibility rule.

    Args:
        defect_type: One of :data:`DEFECT_TYPES`.
        layer: The clean image (S, S, 3) uint8, its support (S, S) bool and background (S, S, 3) uint8.
        rng: The defect's random generator.

    Returns:
        The image, its exact mask and the number of placements drawn; None when :data:`_MAX_DEFECT_TRIES` failed.
    """
    clean, support, background = layer
    size = clean.shape[0]
    min_area = max(16, math.ceil(MIN_DEFECT_AREA_FRACTION * size * size))
    for tries in range(1, _MAX_DEFECT_TRIES + 1):
        image = _DEFECTS[defect_type](rng, clean, support, background)
        change = np.abs(image.astype(np.int16) - clean.astype(np.int16)).max(axis=-1)
        mask = change > 0
        visible = int((change >= _VISIBLE_CHANGE).sum())
        if visible >= min_area and visible >= 0.5 * mask.sum():
            return image, mask, tries
    return None


def _sample_seed(seed: int, split: str, label: int, index: int) -> int:
    split_code = sum(ord(char) * 31**position for position, char in enumerate(split)) % 2**31
    return int(np.random.SeedSequence([int(seed), split_code, label, index]).generate_state(1)[0])


def _plan(
    domains: Sequence[str] | None, defect_types: Sequence[str] | None, n_normal: int, n_anomalous: int
) -> list[tuple[str, str | None, int]]:
    """List (domain, defect type or None, index) for every image, anomalous ones cycling through defect types."""
    domains = tuple(DOMAINS if domains is None else domains)
    if not domains:
        raise ValueError(f"domains is empty; give at least one of {DOMAINS}.")
    for domain in domains:
        _check_domain(domain)
    if defect_types is not None:
        unknown = [kind for kind in defect_types if kind not in DEFECT_TYPES]
        if unknown:
            raise ValueError(f"Unknown defect types {unknown}; choose from {DEFECT_TYPES}.")
    if n_normal < 0 or n_anomalous < 0:
        raise ValueError(f"n_normal and n_anomalous must be >= 0 (got {n_normal}, {n_anomalous}).")
    plan: list[tuple[str, str | None, int]] = []
    for domain in domains:
        kinds = [kind for kind in defect_types_for(domain) if defect_types is None or kind in defect_types]
        if n_anomalous and not kinds:
            raise ValueError(f"None of the defect types {tuple(defect_types or ())} applies to domain {domain!r}.")
        plan.extend((domain, None, index) for index in range(n_normal))
        plan.extend((domain, kinds[index % len(kinds)], index) for index in range(n_anomalous))
    return plan


def _render_plan(
    plan: list[tuple[str, str | None, int]], image_size: int, seed: int, split: str
) -> list[tuple[np.ndarray, np.ndarray]]:
    return [
        generate_sample(domain, kind, image_size, _sample_seed(seed, split, int(kind is not None), index))
        for domain, kind, index in plan
    ]


def make_synthetic_dataset(
    domains: Sequence[str] | None = None,
    n_normal: int = 8,
    n_anomalous: int = 8,
    image_size: int = 224,
    seed: int = 0,
    defect_types: Sequence[str] | None = None,
    split: str = "test",
) -> Dataset:
    """Build an in-memory synthetic dataset in the loaders' schema (:data:`~faprompt_hf.data.ANOMALY_FEATURES`).

    Args:
        domains: Domains to include (default: all of :data:`DOMAINS`); each becomes a ``class_name``.
        n_normal: Normal images per domain.
        n_anomalous: Anomalous images per domain; they cycle through the domain's defect types.
        image_size: Side of the square images (224 by default; 112 is enough for quick tests).
        seed: Seed of the whole dataset.
        defect_types: Restrict defects to these types (default: all that apply to each domain).
        split: Name mixed into the seed, so ``"train"`` and ``"test"`` draw different images.

    Returns:
        A ``datasets.Dataset`` with ``len(domains) * (n_normal + n_anomalous)`` rows; images and masks (0/255 "L")
        are stored as PNG bytes, ``path`` is ``"synthetic/<split>/<domain>/<defect_type>/<index>"``.

    Raises:
        ValueError: Unknown domain or defect type, negative counts or a bad image size.
    """
    plan = _plan(domains, defect_types, n_normal, n_anomalous)
    if not plan:
        raise ValueError("The synthetic dataset would be empty: n_normal + n_anomalous must be > 0.")
    rows = [
        {
            "image": Image.fromarray(image),
            "mask": None if kind is None else Image.fromarray(mask.astype(np.uint8) * 255),
            "label": int(kind is not None),
            "class_name": domain,
            "defect_type": kind or "good",
            "path": f"synthetic/{split}/{domain}/{kind or 'good'}/{index:03d}",
        }
        for (domain, kind, index), (image, mask) in zip(plan, _render_plan(plan, image_size, seed, split), strict=True)
    ]
    return _build_dataset(rows)


def write_synthetic_mvtec(
    root: str | os.PathLike,
    domains: Sequence[str] | None = None,
    n_train: int = 8,
    n_normal: int = 4,
    n_anomalous: int = 4,
    image_size: int = 224,
    seed: int = 0,
    defect_types: Sequence[str] | None = None,
) -> Path:
    """Write a synthetic dataset to disk in the MVTec AD layout, readable by :func:`~faprompt_hf.data.load_mvtec_ad`.

    Layout: ``root/<domain>/train/good/NNN.png``, ``root/<domain>/test/good/NNN.png``,
    ``root/<domain>/test/<defect>/NNN.png`` and ``root/<domain>/ground_truth/<defect>/NNN_mask.png`` (0/255).

    Args:
        root: Output folder (created; existing files with the same names are replaced, others kept). The tree is
            written into a temporary sibling folder and moved into ``root`` once complete
            (:func:`~faprompt_hf.file_utils.staged_directory`): a failure leaves ``root`` as it was.
        domains: Domains to write (default: all of :data:`DOMAINS`).
        n_train: Normal training images per domain.
        n_normal: Normal test images per domain.
        n_anomalous: Anomalous test images per domain.
        image_size: Side of the square images.
        seed: Seed; the test images equal ``make_synthetic_dataset(..., seed=seed, split="test")``'s.
        defect_types: Restrict defects to these types.

    Returns:
        The root folder.

    Raises:
        ValueError: As :func:`make_synthetic_dataset`.
        OSError: Writing failed (the message names ``root``; it is left as it was).
    """
    root = Path(root)
    plans = [
        (split, _plan(domains, defect_types, normal, anomalous))
        for split, normal, anomalous in (("train", n_train, 0), ("test", n_normal, n_anomalous))
    ]
    with staged_directory(root) as staging:
        for split, plan in plans:
            rendered = _render_plan(plan, image_size, seed, split)
            for (domain, kind, index), (image, mask) in zip(plan, rendered, strict=True):
                folder = staging / domain / split / (kind or "good")
                folder.mkdir(parents=True, exist_ok=True)
                Image.fromarray(image).save(folder / f"{index:03d}.png")
                if kind is not None:
                    mask_folder = staging / domain / "ground_truth" / kind
                    mask_folder.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(mask.astype(np.uint8) * 255).save(mask_folder / f"{index:03d}_mask.png")
    logger.info("Wrote a synthetic MVTec AD tree to %s", root)
    return root

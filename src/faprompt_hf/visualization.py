# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""Comparison grids and per-class ROC / precision-recall plots.

The overlays themselves live in :mod:`faprompt_hf.overlay` (re-exported here). The grids need only numpy and
Pillow. The curve plots use matplotlib, installed with ``pip install "faprompt-hf[plots]"``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw

from .file_utils import atomic_write
from .image_utils import ImageInput, to_mask_array, to_rgb_image
from .overlay import _PLOTS_HINT, LUT_SIZE, Normalization, _require_matplotlib, apply_colormap, overlay_heatmap

if TYPE_CHECKING:
    from .metrics import ArrayLike

    try:  # matplotlib is optional (the "plots" extra): imports inside try blocks are not required by hub remote code
        from matplotlib.figure import Figure
    except ImportError:
        pass

__all__ = ["LUT_SIZE", "Normalization", "apply_colormap", "comparison_grid", "overlay_heatmap", "plot_roc_pr_curves"]


def comparison_grid(
    images: Sequence[ImageInput],
    anomaly_maps: Sequence[ArrayLike] | np.ndarray,
    masks: Sequence[ImageInput] | np.ndarray | None = None,
    titles: Sequence[str] | None = None,
    tile_size: int = 224,
    padding: int = 4,
    alpha: float = 0.5,
    normalize: Normalization = True,
) -> Image.Image:
    """One row per sample: image | anomaly-map overlay | ground-truth mask (when masks are given).

    Every tile is resized to ``tile_size`` x ``tile_size``. With ``titles``, a strip of ``tile_size // 8`` pixels
    above each row holds its title.

    Args:
        images: N images (paths, PIL images of any mode, arrays or tensors).
        anomaly_maps: N maps of shape (H, W), or an array / tensor of shape (N, H, W).
        masks: Optional N masks (any value > 0 is anomalous), or an array of shape (N, H, W).
        titles: Optional N row titles (e.g. class and score).
        tile_size: Side of each square tile, in pixels.
        padding: White margin around and between tiles, in pixels.
        alpha: Heatmap weight of the overlays (see :func:`overlay_heatmap`).
        normalize: Map scaling of the overlays; pass ``(vmin, vmax)`` to share one scale across rows.

    Returns:
        An RGB image of width ``C * tile_size + (C + 1) * padding`` (C = 3 with masks, else 2) and height
        ``N * (tile_size + title_height) + (N + 1) * padding``.

    Raises:
        ValueError: The sequences have different lengths, are empty, or hold invalid images or maps.
    """
    count = len(images)
    lengths = {"anomaly_maps": len(anomaly_maps), "masks": count if masks is None else len(masks)}
    lengths["titles"] = count if titles is None else len(titles)
    mismatched = {name: length for name, length in lengths.items() if length != count}
    if mismatched or not count:
        raise ValueError(f"comparison_grid needs the same non-zero number of items; images: {count}, {lengths}.")
    if tile_size < 1 or padding < 0:
        raise ValueError(f"tile_size must be >= 1 and padding >= 0; got {tile_size} and {padding}.")
    columns = 2 if masks is None else 3
    title_height = tile_size // 8 if titles is not None else 0
    row_height = tile_size + title_height
    grid = Image.new(
        "RGB", (columns * tile_size + (columns + 1) * padding, count * row_height + (count + 1) * padding), "white"
    )
    draw = ImageDraw.Draw(grid)
    size = (tile_size, tile_size)
    for row in range(count):
        tile = to_rgb_image(images[row], source=f"images[{row}]").resize(size, Image.Resampling.BILINEAR)
        tiles = [tile, overlay_heatmap(tile, anomaly_maps[row], alpha=alpha, normalize=normalize)]
        if masks is not None:
            mask = to_mask_array(masks[row], source=f"masks[{row}]")
            tiles.append(Image.fromarray(mask.astype(np.uint8) * 255).resize(size, Image.Resampling.NEAREST))
        top = padding + row * (row_height + padding)
        if titles is not None:
            draw.text((padding, top), str(titles[row]), fill="black")
        for column, picture in enumerate(tiles):
            grid.paste(picture.convert("RGB"), (padding + column * (tile_size + padding), top + title_height))
    return grid


def plot_roc_pr_curves(
    per_class_scores_labels: Mapping[str, tuple[ArrayLike, ArrayLike]],
    path: str | os.PathLike | None = None,
    title: str | None = None,
) -> Figure:
    """Per-class ROC and precision-recall curves side by side, AUROC / AP in the legends.

    Args:
        per_class_scores_labels: ``{class: (scores, labels)}``, scores of shape (N,) and labels in {0, 1} of shape
            (N,) (image-level, or flattened pixels). Classes without both labels are skipped with a UserWarning.
        path: Where to save the figure (format from the extension, e.g. ``.png`` or ``.pdf``); not saved if ``None``.
        title: Optional figure title.

    Returns:
        The matplotlib figure (two axes: ROC, then precision-recall).

    Raises:
        ImportError: matplotlib is not installed (``pip install "faprompt-hf[plots]"``).
        ValueError: Invalid scores or labels.
    """
    _require_matplotlib("plot_roc_pr_curves")
    try:  # (inside try: hub remote code must not require the optional matplotlib)
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ImportError(f"plot_roc_pr_curves needs matplotlib; install it with: {_PLOTS_HINT}") from error

    from .metrics import auroc, average_precision, precision_recall_curve, roc_curve

    figure = Figure(figsize=(11, 5), layout="constrained")
    roc_axes, pr_axes = figure.subplots(1, 2)
    for name, (scores, labels) in per_class_scores_labels.items():
        label_array = np.asarray(labels.detach().cpu() if hasattr(labels, "detach") else labels)
        if label_array.size == 0 or label_array.min() == label_array.max():
            warnings.warn(f"Class {name!r} is not plotted: it needs both normal and anomalous samples.", stacklevel=2)
            continue
        fpr, tpr = roc_curve(scores, label_array)
        precision, recall = precision_recall_curve(scores, label_array)
        roc_axes.plot(fpr, tpr, label=f"{name} (AUROC {100 * auroc(scores, label_array):.1f})")
        pr_axes.step(
            recall, precision, where="pre", label=f"{name} (AP {100 * average_precision(scores, label_array):.1f})"
        )
    roc_axes.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    roc_axes.set(xlabel="False positive rate", ylabel="True positive rate", title="ROC", xlim=(0, 1), ylim=(0, 1.01))
    pr_axes.set(xlabel="Recall", ylabel="Precision", title="Precision-recall", xlim=(0, 1), ylim=(0, 1.01))
    for axes in (roc_axes, pr_axes):
        if axes.get_legend_handles_labels()[0]:
            axes.legend(loc="lower right" if axes is roc_axes else "lower left", fontsize="small")
    if title:
        figure.suptitle(title)
    if path is not None:
        extension = os.path.splitext(os.fspath(path))[1].lstrip(".").lower()
        with atomic_write(path, "wb") as handle:
            figure.savefig(handle, format=extension or None, dpi=120)
    return figure

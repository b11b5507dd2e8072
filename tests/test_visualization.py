# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""Tests of faprompt_hf.visualization: colours, sizes, modes, hot-spot placement, grid layout, plots."""

from __future__ import annotations

import sys
import tracemalloc

import numpy as np
import pytest
import torch
from PIL import Image

from faprompt_hf.visualization import apply_colormap, comparison_grid, overlay_heatmap, plot_roc_pr_curves


def test_builtin_jet_matches_matplotlib() -> None:
    matplotlib = pytest.importorskip("matplotlib")
    values = np.arange(256) / 255  # the positions of matplotlib's 256-entry lookup table
    expected = matplotlib.colormaps["jet"](values)[:, :3] * 255
    assert np.abs(apply_colormap(values).astype(float) - expected).max() <= 1
    assert apply_colormap(np.array([0.0, 1.0])).tolist() == [[0, 0, 128], [128, 0, 0]]
    assert apply_colormap(np.array([-5.0, 7.0])).tolist() == [[0, 0, 128], [128, 0, 0]]  # clipped
    viridis = apply_colormap(values, "viridis").astype(float)
    assert np.abs(viridis - matplotlib.colormaps["viridis"](values)[:, :3] * 255).max() <= 1
    with pytest.raises(ValueError, match="Unknown colormap"):
        apply_colormap(values, "no-such-map")


@pytest.mark.parametrize(
    "image",
    [
        Image.new("L", (40, 30), 100),
        Image.new("RGBA", (40, 30), (10, 200, 30, 0)),
        Image.new("P", (40, 30), 3),
        Image.new("1", (40, 30), 1),
        Image.fromarray(np.full((30, 40), 40000, dtype=np.uint16)),
        np.random.default_rng(0).random((30, 40, 3)),
        torch.rand(3, 30, 40),
    ],
    ids=["L", "RGBA", "P", "1", "I;16", "float-array", "tensor-CHW"],
)
def test_overlay_returns_rgb_at_image_size(image) -> None:
    overlay = overlay_heatmap(image, np.random.default_rng(1).random((7, 9)))
    assert overlay.mode == "RGB" and overlay.size == (40, 30)


@pytest.mark.parametrize("map_kind", ["numpy", "tensor-1HW"])
def test_hot_spot_is_hottest_colour_at_its_place(map_kind: str) -> None:
    image = Image.new("RGB", (64, 48), (128, 128, 128))
    anomaly_map = np.zeros((12, 16), dtype=np.float32)
    anomaly_map[3:5, 12:14] = 5.0  # map rows 3-4, cols 12-13 cover image rows 12..19, cols 48..55
    if map_kind == "tensor-1HW":
        anomaly_map = torch.from_numpy(anomaly_map)[None]
    pure = np.asarray(overlay_heatmap(image, anomaly_map, alpha=1.0)).astype(int)
    assert pure[15, 51].tolist() == [128, 0, 0]  # jet at 1.0: dark red
    assert pure[0, 0].tolist() == [0, 0, 128]  # jet at 0.0: dark blue
    blended = np.asarray(overlay_heatmap(image, anomaly_map, alpha=0.5)).astype(int)
    redness = blended[..., 0] - blended[..., 2]
    hottest = np.argwhere(redness == redness.max())
    assert hottest[:, 0].min() >= 12 and hottest[:, 0].max() <= 19
    assert hottest[:, 1].min() >= 48 and hottest[:, 1].max() <= 55
    assert blended[0, 0].tolist() == [64, 64, 128]  # half grey, half dark blue


def test_overlay_normalization_options() -> None:
    image = Image.new("RGB", (8, 8))
    flat = np.full((8, 8), 0.25, dtype=np.float32)
    assert np.asarray(overlay_heatmap(image, flat, alpha=1.0))[0, 0].tolist() == [0, 0, 128]  # constant -> 0
    as_is = np.asarray(overlay_heatmap(image, flat, alpha=1.0, normalize=False))[0, 0]
    assert as_is.tolist() == apply_colormap(np.array(0.25)).tolist()
    ranged = np.asarray(overlay_heatmap(image, flat, alpha=1.0, normalize=(0.0, 0.5)))[0, 0]
    assert ranged.tolist() == apply_colormap(np.array(0.5)).tolist()
    with pytest.raises(ValueError, match="vmax > vmin"):
        overlay_heatmap(image, flat, normalize=(1.0, 1.0))
    with pytest.raises(ValueError, match="alpha"):
        overlay_heatmap(image, flat, alpha=1.5)
    with pytest.raises(ValueError, match="shape"):
        overlay_heatmap(image, np.zeros((2, 3, 3)))


def test_comparison_grid_layout() -> None:
    rng = np.random.default_rng(2)
    images = [Image.new("RGB", (50, 40), (200, 200, 200)), rng.random((20, 30)), Image.new("L", (64, 64))]
    maps = rng.random((3, 10, 10)).astype(np.float32)
    masks = np.zeros((3, 10, 10), dtype=bool)
    masks[0, 2:5, 2:5] = True
    grid = comparison_grid(images, maps, masks, tile_size=32, padding=2)
    assert grid.mode == "RGB" and grid.size == (3 * 32 + 4 * 2, 3 * 32 + 4 * 2)
    pixels = np.asarray(grid)
    mask_tile = pixels[2 : 2 + 32, 2 + 2 * 34 : 2 + 2 * 34 + 32]
    assert mask_tile[8, 8].tolist() == [255, 255, 255] and mask_tile[25, 25].tolist() == [0, 0, 0]
    assert pixels[0, 0].tolist() == [255, 255, 255]  # padding
    titled = comparison_grid(images, list(maps), titles=["a", "b", "c"], tile_size=40, padding=0)
    assert titled.size == (2 * 40, 3 * (40 + 5))
    with pytest.raises(ValueError, match="same non-zero number"):
        comparison_grid(images, maps[:2])


def test_plot_roc_pr_curves(tmp_path) -> None:
    pytest.importorskip("matplotlib")
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 60)
    per_class = {
        "bottle": (rng.random(60) + labels, labels),
        "cable": (torch.rand(60), torch.from_numpy(labels)),
        "screw": (rng.random(5), np.zeros(5)),
    }
    path = tmp_path / "curves.png"
    with pytest.warns(UserWarning, match="'screw' is not plotted"):
        figure = plot_roc_pr_curves(per_class, path, title="test")
    assert path.stat().st_size > 1000
    roc_axes, pr_axes = figure.axes
    assert len(pr_axes.get_lines()) == 2 and len(roc_axes.get_lines()) == 3  # two classes + chance diagonal
    assert "AUROC" in roc_axes.get_legend().get_texts()[0].get_text()


def test_matplotlib_missing_raises_install_hint(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"faprompt-hf\[plots\]"):
        plot_roc_pr_curves({"a": ([0.1, 0.9], [0, 1])})
    with pytest.raises(ImportError, match=r"faprompt-hf\[plots\]"):
        apply_colormap(np.zeros(3), "viridis")
    assert apply_colormap(np.zeros(3)).shape == (3, 3)  # jet needs no matplotlib


def test_plot_roc_pr_curves_keeps_the_old_file_when_saving_fails(tmp_path, monkeypatch) -> None:
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    path = tmp_path / "curves.pdf"
    plot_roc_pr_curves({"a": ([0.1, 0.9, 0.4], [0, 1, 1])}, path)
    before = path.read_bytes()
    assert before.startswith(b"%PDF")  # the format still follows the extension

    def fail_half_way(figure, handle, **kwargs):
        handle.write(b"%PDF-1.4 trunc")
        raise OSError(27, "File too large")

    monkeypatch.setattr(Figure, "savefig", fail_half_way)
    with pytest.raises(OSError, match=r"Could not write .*curves.pdf.*File too large.*intact"):
        plot_roc_pr_curves({"a": ([0.2, 0.8, 0.5], [0, 1, 1])}, path)
    assert path.read_bytes() == before and [item.name for item in tmp_path.iterdir()] == ["curves.pdf"]


def test_overlay_temporaries_do_not_grow_with_the_image():
    """numpy temporaries of one overlay stay under 48 MB at 2000 x 2000, whatever the map's size.

    That is a few MB of per-band temporaries plus, for a map smaller than the image, its one resized float32 copy
    (16 MB here). The float64 colour map this replaces allocated about 85 bytes per pixel (336 MB here). The result
    is a PIL image, which tracemalloc does not see; benchmarks/benchmark_memory.py measures the whole pipeline.
    """
    image = Image.new("RGB", (2000, 2000), (90, 120, 150))
    full_size_map = np.random.default_rng(0).random((2000, 2000), dtype=np.float32)
    small_map = full_size_map[::50, ::50].copy()
    for anomaly_map in (full_size_map, small_map):
        tracemalloc.start()
        try:
            overlay = overlay_heatmap(image, anomaly_map)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 48 * 2**20, peak
        assert overlay.size == (2000, 2000)


def test_colour_table_matches_matplotlib_entry_for_entry():
    matplotlib = pytest.importorskip("matplotlib")
    values = np.random.default_rng(4).random(10_000)
    for name in ("jet", "viridis"):
        expected = np.round(matplotlib.colormaps[name](values)[:, :3] * 255)
        assert np.abs(apply_colormap(values, name).astype(float) - expected).max() <= 1, name


@pytest.mark.parametrize(
    "call, words",
    [
        (lambda: apply_colormap(np.array([0.2, np.nan])), "NaN values; replace them"),
        (lambda: overlay_heatmap(Image.new("RGB", (4, 4)), np.zeros((0, 3))), r"shape \(0, 3\): it has no pixels"),
        (lambda: overlay_heatmap(Image.new("RGB", (4, 4)), np.full((2, 2), np.inf)), "NaN or infinite"),
        (lambda: overlay_heatmap(np.zeros((0, 4, 3), np.uint8), np.zeros((2, 2))), r"shape \(0, 4, 3\)"),
    ],
    ids=["nan-values", "empty-map", "inf-map", "empty-image"],
)
def test_degenerate_maps_and_images_are_clear_errors(call, words):
    with pytest.raises(ValueError, match=words):
        call()

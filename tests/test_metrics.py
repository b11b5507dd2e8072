# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""Tests of faprompt_hf.metrics against scikit-learn and slow, obviously-correct references."""

from __future__ import annotations

import inspect
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from faprompt_hf import metrics as M

METRIC_DIR = Path(__file__).resolve().parents[1] / "metrics" / "anomaly_detection"


# ----------------------------------------------------------------------------------------------------------------------
# Slow references: a flood fill for 8-connected regions and per-threshold loops over regions
# ----------------------------------------------------------------------------------------------------------------------


def flood_fill_regions(mask: np.ndarray) -> list[np.ndarray]:
    """8-connected regions of one 2-D mask, each as a boolean mask, by depth-first flood fill."""
    height, width = mask.shape
    seen = np.zeros_like(mask, dtype=bool)
    regions = []
    for start in map(tuple, np.argwhere(mask)):
        if seen[start]:
            continue
        region = np.zeros_like(seen)
        stack = [start]
        seen[start] = True
        while stack:
            row, col = stack.pop()
            region[row, col] = True
            for d_row in (-1, 0, 1):
                for d_col in (-1, 0, 1):
                    r, c = row + d_row, col + d_col
                    if 0 <= r < height and 0 <= c < width and mask[r, c] and not seen[r, c]:
                        seen[r, c] = True
                        stack.append((r, c))
        regions.append(region)
    return regions


def pro_and_fpr(binary: np.ndarray, masks: np.ndarray, regions: list[tuple[int, np.ndarray]]) -> tuple[float, float]:
    overlaps = [binary[index][region].sum() / region.sum() for index, region in regions]
    normal = ~masks
    return float(np.mean(overlaps)), float((binary & normal).sum() / normal.sum())


def all_regions(masks: np.ndarray) -> list[tuple[int, np.ndarray]]:
    return [(index, region) for index, mask in enumerate(masks) for region in flood_fill_regions(mask)]


def reference_aupro_exact(maps: np.ndarray, masks: np.ndarray, limit: float = 0.3) -> float:
    masks = masks.astype(bool)
    regions = all_regions(masks)
    points = [(0.0, 0.0)]
    for threshold in np.unique(maps)[::-1]:
        pro, fpr = pro_and_fpr(maps >= threshold, masks, regions)
        points.append((fpr, pro))
    area = 0.0
    for (x0, y0), (x1, y1) in zip(points[:-1], points[1:], strict=True):
        if x0 >= limit:
            break
        if x1 <= limit:
            area += (x1 - x0) * (y0 + y1) / 2
        else:
            y_limit = y0 + (y1 - y0) * (limit - x0) / (x1 - x0)
            area += (limit - x0) * (y0 + y_limit) / 2
            break
    return area / limit


def reference_aupro_original(maps: np.ndarray, masks: np.ndarray, limit: float = 0.3, steps: int = 200) -> float:
    masks = masks.astype(bool)
    regions = all_regions(masks)
    low, high = maps.min(), maps.max()
    pros, fprs = [], []
    for threshold in np.arange(low, high, (high - low) / steps):
        pro, fpr = pro_and_fpr(maps > threshold, masks, regions)
        pros.append(pro)
        fprs.append(fpr)
    pros, fprs = np.array(pros), np.array(fprs)
    kept = fprs < limit
    fprs = fprs[kept]
    fprs = (fprs - fprs.min()) / (fprs.max() - fprs.min())
    return float(skm.auc(fprs, pros[kept]))


def reference_pool(maps: np.ndarray, masks: np.ndarray, factor: int) -> tuple[np.ndarray, np.ndarray]:
    n, height, width = maps.shape
    out_h, out_w = -(-height // factor), -(-width // factor)
    pooled_maps = np.zeros((n, out_h, out_w), dtype=np.float64)
    pooled_masks = np.zeros((n, out_h, out_w), dtype=bool)
    for i in range(n):
        for r in range(out_h):
            for c in range(out_w):
                rows = [min(r * factor + k, height - 1) for k in range(factor)]
                cols = [min(c * factor + k, width - 1) for k in range(factor)]
                pooled_maps[i, r, c] = maps[i][np.ix_(rows, cols)].mean()
                inside = masks[i, r * factor : (r + 1) * factor, c * factor : (c + 1) * factor]
                pooled_masks[i, r, c] = inside.any()
    return pooled_maps, pooled_masks


# ----------------------------------------------------------------------------------------------------------------------
# Fixtures
# ----------------------------------------------------------------------------------------------------------------------


def hand_made_masks() -> np.ndarray:
    """Four 16x16 masks: several regions, diagonal-only contacts, a ring, border regions and an empty mask."""
    masks = np.zeros((4, 16, 16), dtype=bool)
    masks[0, 1:3, 1:3] = True  # 2x2 square ...
    masks[0, 3:6, 3:6] = True  # ... touching a 3x3 square by one corner: one 8-connected region of 13 pixels
    masks[0, 10:14, 9:15] = True
    masks[1, 0:4, 12:16] = True  # border region
    masks[1, 6, 2:9] = True  # a line
    masks[1, 7, 9] = True  # diagonal continuation of the line
    masks[1, 12, 3] = True  # isolated pixel
    masks[2, 4:12, 4:12] = True
    masks[2, 6:10, 6:10] = False  # a ring
    masks[2, 8, 8] = True  # an island inside the ring
    return masks  # masks[3] stays empty (a normal image)


def random_maps(rng: np.random.Generator, masks: np.ndarray, decimals: int | None, heavy: bool = False) -> np.ndarray:
    noise = rng.standard_normal(masks.shape)
    maps = noise + 1.5 * masks * rng.random(masks.shape)
    if heavy:
        maps = np.exp(2.5 * maps)
    if decimals is not None:
        maps = np.round(maps, decimals)  # creates many ties
    return maps.astype(np.float32)


# ----------------------------------------------------------------------------------------------------------------------
# Image-level metrics vs scikit-learn
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_image_metrics_equal_sklearn_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(25):
        n = int(rng.integers(2, 400))
        scores = rng.integers(0, int(rng.integers(1, 30)), n) / 7.0  # heavy ties
        if seed % 2:
            scores = scores + rng.standard_normal(n) * (rng.random(n) < 0.5)
        labels = rng.integers(0, 2, n)
        if labels.min() == labels.max():
            labels[0] = 1 - labels[0]
        assert abs(M.auroc(scores, labels) - skm.roc_auc_score(labels, scores)) < 1e-10
        assert abs(M.average_precision(scores, labels) - skm.average_precision_score(labels, scores)) < 1e-10
        precision, recall, _ = skm.precision_recall_curve(labels, scores)
        with np.errstate(invalid="ignore"):
            f1 = 2 * precision * recall / (precision + recall)
        best, threshold = M.f1_max(scores, labels)
        assert abs(best - np.max(f1[np.isfinite(f1)])) < 1e-10
        assert abs(skm.f1_score(labels, scores >= threshold) - best) < 1e-10


def test_curves_integrate_to_auroc_and_ap() -> None:
    rng = np.random.default_rng(1)
    scores = np.round(rng.random(300), 1)
    labels = rng.integers(0, 2, 300)
    fpr, tpr = M.roc_curve(scores, labels)
    assert fpr[0] == tpr[0] == 0 and fpr[-1] == tpr[-1] == 1 and np.all(np.diff(fpr) >= 0)
    assert abs(skm.auc(fpr, tpr) - skm.roc_auc_score(labels, scores)) < 1e-12
    precision, recall = M.precision_recall_curve(scores, labels)
    assert abs(np.sum(np.diff(recall) * precision[1:]) - skm.average_precision_score(labels, scores)) < 1e-12
    with pytest.raises(ValueError, match="both"):
        M.roc_curve(scores, np.zeros(300))


def test_torch_and_list_inputs_match_numpy() -> None:
    rng = np.random.default_rng(2)
    scores, labels = rng.random(50), rng.integers(0, 2, 50)
    expected = M.compute_anomaly_metrics(scores, labels)
    assert M.compute_anomaly_metrics(torch.tensor(scores), torch.tensor(labels)) == expected
    assert M.compute_anomaly_metrics(scores.tolist(), labels.astype(bool).tolist()) == expected
    maps, masks = rng.random((50, 8, 8)), rng.random((50, 8, 8)) < 0.2
    masks[labels == 0] = False  # a normal image's mask is empty
    direct = M.compute_anomaly_metrics(scores, labels, maps.astype(np.float32), masks)
    from_torch = M.compute_anomaly_metrics(scores, labels, torch.tensor(maps).float(), torch.tensor(masks).float())
    assert from_torch == direct
    with_channel = M.compute_anomaly_metrics(scores, labels, maps[:, None].astype(np.float32), masks[:, None])
    assert with_channel == direct
    bf16 = M.compute_anomaly_metrics(scores, labels, torch.tensor(maps).bfloat16(), masks)
    assert set(bf16) == set(direct)


def test_keys_and_pixel_metrics_match_sklearn() -> None:
    rng = np.random.default_rng(3)
    masks = np.tile(hand_made_masks(), (3, 1, 1))
    maps = random_maps(rng, masks, decimals=1)
    labels = masks.any(axis=(1, 2)).astype(int)
    scores = maps.max(axis=(1, 2))
    image_only = M.compute_anomaly_metrics(scores, labels)
    assert tuple(image_only) == M.IMAGE_METRIC_KEYS
    result = M.compute_anomaly_metrics(scores, labels, maps, masks)
    assert tuple(result) == M.IMAGE_METRIC_KEYS + M.PIXEL_METRIC_KEYS
    assert all(isinstance(value, float) for value in result.values())
    flat_labels, flat_scores = masks.ravel(), maps.ravel()
    assert abs(result["pixel_auroc"] - skm.roc_auc_score(flat_labels, flat_scores)) < 1e-10
    assert abs(result["pixel_ap"] - skm.average_precision_score(flat_labels, flat_scores)) < 1e-10
    assert result["pixel_f1_max"] == pytest.approx(M.f1_max(flat_scores, flat_labels)[0], abs=1e-12)
    assert result["pixel_aupro"] == pytest.approx(M.aupro(maps, masks), abs=1e-12)


# ----------------------------------------------------------------------------------------------------------------------
# AUPRO vs the slow references
# ----------------------------------------------------------------------------------------------------------------------


def test_flood_fill_reference_sees_diagonal_contacts_as_one_region() -> None:
    masks = hand_made_masks()
    assert [len(flood_fill_regions(mask)) for mask in masks] == [2, 3, 2, 0]
    assert sorted(region.sum() for region in flood_fill_regions(masks[0])) == [13, 24]


def test_aupro_uses_eight_connected_regions() -> None:
    mask = np.zeros((1, 10, 10), dtype=bool)
    mask[0, 1:3, 1:3] = True  # 4 pixels
    mask[0, 3:6, 3:6] = True  # 9 pixels, touching the first by a corner
    hot = np.zeros((1, 10, 10), dtype=np.float32)
    hot[0, 1:3, 1:3] = 1.0
    pro_at_zero = 4 / 13  # one region; 4-connectivity would give two regions and PRO 0.5
    expected = pro_at_zero + 0.15 * (1 - pro_at_zero)  # trapezoid from (0, p) towards (1, 1), cut at 0.3, / 0.3
    assert M.aupro(hot, mask) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("decimals", [1, 2, None])
def test_aupro_exact_matches_reference(seed: int, decimals: int | None) -> None:
    rng = np.random.default_rng(seed)
    masks = hand_made_masks()
    maps = random_maps(rng, masks, decimals)
    assert M.aupro(maps, masks, method="exact") == pytest.approx(reference_aupro_exact(maps, masks), abs=1e-10)
    assert M.aupro(maps, masks, fpr_limit=0.05) == pytest.approx(reference_aupro_exact(maps, masks, 0.05), abs=1e-10)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("heavy", [False, True])
def test_aupro_original_matches_reference(seed: int, heavy: bool) -> None:
    rng = np.random.default_rng(seed)
    masks = hand_made_masks()
    maps = random_maps(rng, masks, decimals=None, heavy=heavy)
    assert M.aupro(maps, masks, method="original") == pytest.approx(reference_aupro_original(maps, masks), abs=1e-10)
    as_float64 = maps.astype(np.float64)
    assert M.aupro(as_float64, masks, method="original", num_thresholds=50) == pytest.approx(
        reference_aupro_original(as_float64, masks, steps=50), abs=1e-10
    )


def test_aupro_definitions_differ_on_heavy_tailed_maps() -> None:
    rng = np.random.default_rng(0)
    masks = hand_made_masks()
    maps = random_maps(rng, masks, decimals=None)
    heavy = np.exp(2.5 * maps.astype(np.float64))
    # "exact" depends only on the ranking of the pixels, "original" on the spacing of the values.
    assert M.aupro(heavy, masks) == pytest.approx(M.aupro(maps, masks), abs=1e-12)
    gap_light = abs(M.aupro(maps, masks, method="original") - M.aupro(maps, masks))
    gap_heavy = abs(M.aupro(heavy, masks, method="original") - M.aupro(heavy, masks))
    assert gap_heavy > 0.1 and gap_heavy > 3 * gap_light


def test_aupro_perfect_and_random_maps() -> None:
    masks = hand_made_masks()
    assert M.aupro(masks.astype(np.float32), masks) == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    big_masks = np.zeros((20, 64, 64), dtype=bool)
    big_masks[:, 20:40, 10:50] = True
    noise = rng.random(big_masks.shape)
    assert M.aupro(noise, big_masks) == pytest.approx(0.15, abs=0.01)  # PRO == FPR: area 0.3^2 / 2, / 0.3


# ----------------------------------------------------------------------------------------------------------------------
# Undefined metrics, per-class helper, table
# ----------------------------------------------------------------------------------------------------------------------


def test_single_class_inputs_report_nan_with_warning() -> None:
    scores = np.array([0.1, 0.5, 0.3])
    with pytest.warns(UserWarning, match="auroc is undefined"):
        assert math.isnan(M.auroc(scores, [0, 0, 0]))
    with pytest.warns(UserWarning, match="average_precision is undefined"):
        assert math.isnan(M.average_precision(scores, [0, 0, 0]))
    with pytest.warns(UserWarning, match="f1_max is undefined"):
        assert all(math.isnan(value) for value in M.f1_max(scores, [0, 0, 0]))
    with pytest.warns(UserWarning, match="auroc is undefined"):
        assert math.isnan(M.auroc(scores, [1, 1, 1]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert M.average_precision(scores, [1, 1, 1]) == skm.average_precision_score([1, 1, 1], scores) == 1.0
    with pytest.warns(UserWarning, match="aupro is undefined.*no anomalous pixel"):
        assert math.isnan(M.aupro(np.random.rand(2, 4, 4), np.zeros((2, 4, 4))))
    with pytest.warns(UserWarning, match="aupro is undefined.*no normal pixel"):
        assert math.isnan(M.aupro(np.random.rand(2, 4, 4), np.ones((2, 4, 4))))
    with pytest.warns(UserWarning, match="all anomaly-map values are equal"):
        assert math.isnan(M.aupro(np.ones((2, 4, 4)), np.eye(4)[None].repeat(2, 0), method="original"))


def test_compute_metrics_without_anomalies_warns_per_metric() -> None:
    with pytest.warns(UserWarning) as record:
        result = M.compute_anomaly_metrics(np.random.rand(4), np.zeros(4), np.random.rand(4, 5, 5), np.zeros((4, 5, 5)))
    messages = " ".join(str(item.message) for item in record)
    for key in ("image_auroc", "image_ap", "image_f1_max", "pixel_auroc", "pixel_ap", "pixel_f1_max", "pixel_aupro"):
        assert math.isnan(result[key]) and key in messages


def per_class_inputs() -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(5)
    masks = np.concatenate([hand_made_masks(), hand_made_masks(), np.zeros((3, 16, 16), dtype=bool)])
    maps = random_maps(rng, masks, decimals=None)
    labels = masks.any(axis=(1, 2)).astype(int)
    names = ["bottle"] * 4 + ["cable"] * 4 + ["screw"] * 3
    return names, maps.mean(axis=(1, 2)) + labels * 0.1, labels, maps, masks


def test_per_class_metrics_and_mean() -> None:
    names, scores, labels, maps, masks = per_class_inputs()
    with pytest.warns(UserWarning) as record:
        table = M.compute_per_class_metrics(names, scores, labels, maps, masks, aupro="original")
    assert list(table) == ["bottle", "cable", "screw", "mean"]
    assert all("for class 'screw'" in str(item.message) for item in record)
    assert any("pixel_aupro" in str(item.message) for item in record)
    bottle = M.compute_anomaly_metrics(scores[:4], labels[:4], maps[:4], masks[:4], aupro="original")
    assert table["bottle"] == bottle
    assert math.isnan(table["screw"]["image_auroc"]) and math.isnan(table["screw"]["pixel_aupro"])
    for key in ("image_auroc", "pixel_aupro"):
        assert table["mean"][key] == pytest.approx((table["bottle"][key] + table["cable"][key]) / 2)
    assert "image_f1_threshold" not in table["mean"]


def test_format_metrics_table() -> None:
    names, scores, labels, maps, masks = per_class_inputs()
    with pytest.warns(UserWarning):
        table = M.compute_per_class_metrics(names, scores, labels, maps, masks)
    text = M.format_metrics_table(table)
    lines = text.splitlines()
    assert lines[0] == "| class | " + " | ".join(M.TABLE_KEYS) + " |"
    assert len(lines) == 2 + 4 and lines[-1].startswith("| mean | ")
    screw = lines[4].split(" | ")
    assert screw[0] == "| screw" and screw[1] == "n/a"
    assert f"{100 * table['bottle']['image_auroc']:.1f}" in lines[2]
    raw = M.format_metrics_table({k: v for k, v in table.items() if k != "mean"}, keys=["image_ap"], percent=False)
    assert raw.splitlines()[-1] == f"| mean | {table['mean']['image_ap']:.4f} |"
    threshold = M.format_metrics_table(table, keys=["image_f1_threshold"]).splitlines()
    assert threshold[2] == f"| bottle | {table['bottle']['image_f1_threshold']:.4g} |"
    assert threshold[-1] == "| mean | n/a |"


# ----------------------------------------------------------------------------------------------------------------------
# Validation and pooling
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"image_scores": np.zeros(3), "image_labels": np.zeros(4)}, r"image_scores has shape \(3,\).*image_labels"),
        ({"image_scores": np.zeros((3, 1)), "image_labels": np.zeros(3)}, r"image_scores must have shape \(N,\)"),
        ({"image_scores": np.zeros(3), "image_labels": [0, 2, 1]}, r"image_labels \(shape \(3,\)\).*\[2\]"),
        ({"image_scores": [0.1, np.nan, 0.3], "image_labels": [0, 1, 1]}, r"image_scores \(shape \(3,\)\).*NaN"),
        ({"image_scores": ["a", "b"], "image_labels": [0, 1]}, "image_scores must hold real numbers"),
        ({"anomaly_maps": np.zeros((3, 4, 4))}, "anomaly_maps was given without masks"),
        ({"anomaly_maps": np.zeros((3, 4, 4)), "masks": np.zeros((3, 4, 5))}, r"masks must have shape \(3, 4, 4\)"),
        ({"anomaly_maps": np.zeros((2, 4, 4)), "masks": np.zeros((2, 4, 4))}, r"anomaly_maps has shape \(2, 4, 4\)"),
        ({"anomaly_maps": np.zeros((3, 16)), "masks": np.zeros((3, 16))}, r"anomaly_maps must have shape \(N, H, W\)"),
        ({"anomaly_maps": np.full((3, 4, 4), np.inf), "masks": np.zeros((3, 4, 4))}, "anomaly_maps.*infinite"),
        ({"anomaly_maps": np.zeros((3, 4, 4)), "masks": np.full((3, 4, 4), 255)}, r"masks .*\[255\]"),
        ({"aupro": "fast"}, "aupro method"),
        ({"downsample": 0}, "downsample"),
    ],
)
def test_invalid_inputs_raise(kwargs: dict, pattern: str) -> None:
    arguments = {"image_scores": np.array([0.1, 0.2, 0.3]), "image_labels": np.array([0, 1, 1]), **kwargs}
    with pytest.raises(ValueError, match=pattern):
        M.compute_anomaly_metrics(**arguments)


def _normal_image_with_marked_pixels() -> dict:
    masks = np.zeros((4, 8, 8), dtype=bool)
    masks[0, 1:3, 1:3] = True
    masks[2, 5, 5:8] = True  # image 2 is labelled normal
    return {"image_labels": [1, 0, 0, 1], "anomaly_maps": np.random.default_rng(0).random((4, 8, 8)), "masks": masks}


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        (
            _normal_image_with_marked_pixels(),
            r"1 image\(s\) labelled normal \(0\) have masks marking anomalous pixels: image 2 \(3 px\)\. "
            r"A normal image's mask must be empty: fix the label \(1 for anomalous\) or clear the mask",
        ),
        (
            {"image_labels": [0, 0, 0, 1], "anomaly_maps": np.zeros((4, 8, 8)), "masks": np.ones((4, 8, 8))},
            r"3 image\(s\) labelled normal .*image 0 \(64 px\), image 1 \(64 px\), image 2 \(64 px\)\.",
        ),
        (
            {"image_labels": [0] * 7 + [1], "anomaly_maps": np.zeros((8, 4, 4)), "masks": np.ones((8, 4, 4))},
            r"7 image\(s\) .*image 4 \(16 px\), \.\.\.\.",
        ),
        (
            {"downsample": 8},
            r"downsample=8 is too large for maps of 8x8 pixels: the pooled maps must keep at least 2 pixels per "
            r"side, so downsample must be at most 7",
        ),
        ({"downsample": 1000}, r"downsample=1000 is too large for maps of 8x8 pixels.*at most 7"),
        (
            {"downsample": 4, "anomaly_maps": np.zeros((4, 3, 40)), "masks": np.zeros((4, 3, 40))},
            r"downsample=4 is too large for maps of 3x40 pixels.*at most 2",
        ),
    ],
)
def test_masks_on_normal_images_and_oversized_downsample_are_refused(kwargs: dict, pattern: str) -> None:
    masks = np.zeros((4, 8, 8), dtype=bool)
    masks[0, 2:4, 2:4] = masks[3, 5:7, 1:3] = True
    arguments = {
        "image_scores": np.linspace(0, 1, len(kwargs.get("image_labels", [1, 0, 0, 1]))),
        "image_labels": [1, 0, 0, 1],
        "anomaly_maps": np.random.default_rng(1).random((4, 8, 8)),
        "masks": masks,
        **kwargs,
    }
    with pytest.raises(ValueError, match=pattern):
        M.compute_anomaly_metrics(**arguments)
    names = ["a"] * len(arguments["image_scores"])
    with pytest.raises(ValueError, match=pattern):
        M.compute_per_class_metrics(names, **arguments)


@pytest.mark.parametrize(("shape", "limit"), [((8, 8), 7), ((3, 40), 2), ((2, 2), 1), ((1, 5), 1), ((518, 518), 517)])
def test_max_downsample_keeps_two_pixels_per_side(shape: tuple[int, int], limit: int) -> None:
    assert M.max_downsample(shape) == limit
    assert math.ceil(min(shape) / limit) >= min(M.MIN_POOLED_SIDE, min(shape))


def test_downsample_at_the_limit_still_measures_the_maps() -> None:
    """The largest allowed factor keeps 2x2 maps, on which a perfect map still scores a perfect AUPRO."""
    masks = np.zeros((4, 8, 8), dtype=bool)
    masks[:2, :4, :4] = True
    maps = masks.astype(np.float64)
    result = M.compute_anomaly_metrics([1, 1, 0, 0], [1, 1, 0, 0], maps, masks, downsample=M.max_downsample((8, 8)))
    assert result["pixel_aupro"] == pytest.approx(1.0) and result["pixel_auroc"] == pytest.approx(1.0)


def test_per_class_and_aupro_validation() -> None:
    with pytest.raises(ValueError, match="class_names"):
        M.compute_per_class_metrics(["a"], [0.1, 0.2], [0, 1])
    with pytest.raises(ValueError, match="reserved"):
        M.compute_per_class_metrics(["mean", "a"], [0.1, 0.2], [0, 1])
    with pytest.raises(ValueError, match="fpr_limit"):
        M.aupro(np.zeros((1, 2, 2)), np.eye(2)[None], fpr_limit=0)


def test_class_names_are_checked_on_their_own() -> None:
    M.check_class_names(["bottle", "cable", "meanwhile"])
    with pytest.raises(ValueError, match="'mean', which is reserved for the mean row"):
        M.check_class_names(np.array(["bottle", "mean"]))


def test_mean_over_classes_skips_nan_and_thresholds() -> None:
    per_class = {
        "a": {"image_auroc": 0.5, "pixel_aupro": math.nan, "image_f1_threshold": 0.2},
        "b": {"image_auroc": 1.0, "pixel_aupro": 0.4, "image_f1_threshold": 0.7},
    }
    assert M.mean_over_classes(per_class) == {"image_auroc": 0.75, "pixel_aupro": 0.4}
    assert math.isnan(M.mean_over_classes({"a": {"pixel_ap": math.nan}})["pixel_ap"])


def test_aupro_protocol_constants_are_the_defaults() -> None:
    assert (M.AUPRO_FPR_LIMIT, M.AUPRO_ORIGINAL_THRESHOLDS) == (0.3, 200)
    parameters = inspect.signature(M.aupro).parameters
    assert parameters["fpr_limit"].default == M.AUPRO_FPR_LIMIT
    assert parameters["num_thresholds"].default == M.AUPRO_ORIGINAL_THRESHOLDS
    rng = np.random.default_rng(3)
    maps = rng.random((4, 8, 8))
    masks = np.zeros((4, 8, 8), dtype=bool)
    masks[:2, 2:5, 2:5] = True
    for method in ("exact", "original"):
        expected = M.aupro(maps, masks, M.AUPRO_FPR_LIMIT, method, M.AUPRO_ORIGINAL_THRESHOLDS)
        pixel = M.compute_anomaly_metrics(maps.mean(axis=(1, 2)), [1, 1, 0, 0], maps, masks, aupro=method)
        assert pixel["pixel_aupro"] == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("size", [8, 7])
def test_downsample_pools_maps_and_masks(size: int) -> None:
    rng = np.random.default_rng(7)
    masks = np.zeros((6, size, size), dtype=bool)
    masks[:3, 2:5, 1:4] = True
    masks[1, 6, 6] = True
    maps = (rng.random(masks.shape) + masks).astype(np.float64)
    scores, labels = rng.random(6), np.array([1, 1, 1, 0, 0, 0])
    pooled_maps, pooled_masks = reference_pool(maps, masks, 2)
    expected = M.compute_anomaly_metrics(scores, labels, pooled_maps, pooled_masks)
    result = M.compute_anomaly_metrics(scores, labels, maps, masks, downsample=2)
    assert result == pytest.approx(expected, abs=1e-12)


# ----------------------------------------------------------------------------------------------------------------------
# The evaluate module
# ----------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def evaluate_lib():
    return pytest.importorskip("evaluate")


def test_evaluate_module_image_level(evaluate_lib) -> None:
    metric = evaluate_lib.load(str(METRIC_DIR), keep_in_memory=True)
    rng = np.random.default_rng(8)
    scores, labels = rng.random(30), rng.integers(0, 2, 30)
    result = metric.compute(image_scores=scores, image_labels=labels)
    assert result == M.compute_anomaly_metrics(scores, labels)


def test_evaluate_module_pixel_level_with_batches(evaluate_lib) -> None:
    metric = evaluate_lib.load(str(METRIC_DIR), "pixel", keep_in_memory=True)
    rng = np.random.default_rng(9)
    masks = np.tile(hand_made_masks(), (2, 1, 1))
    maps = random_maps(rng, masks, decimals=None)
    scores, labels = rng.random(8), masks.any(axis=(1, 2)).astype(int)
    metric.add_batch(image_scores=scores[:5], image_labels=labels[:5], anomaly_maps=maps[:5], masks=masks[:5])
    metric.add_batch(  # a list of 2-D arrays and torch tensors work as well as one (B, H, W) array
        image_scores=torch.tensor(scores[5:]),
        image_labels=labels[5:].tolist(),
        anomaly_maps=[torch.tensor(item) for item in maps[5:]],
        masks=list(masks[5:].astype(np.uint8)),
    )
    result = metric.compute(aupro="original")
    assert result == M.compute_anomaly_metrics(scores, labels, maps, masks, aupro="original")


def test_evaluate_module_errors(evaluate_lib) -> None:
    with pytest.raises(ValueError, match="Unknown configuration"):
        evaluate_lib.load(str(METRIC_DIR), "bogus")
    metric = evaluate_lib.load(str(METRIC_DIR), "pixel", keep_in_memory=True)
    metric.add_batch(
        image_scores=[0.1, 0.9],
        image_labels=[0, 1],
        anomaly_maps=[np.zeros((3, 3)), np.zeros((4, 4))],
        masks=[np.zeros((3, 3)), np.ones((4, 4))],
    )
    with pytest.raises(ValueError, match="same"):
        metric.compute()


# ---------------------------------------------------------------------------------------------------- empty inputs


@pytest.mark.parametrize("downsample", [1, 2])
def test_empty_arrays_with_maps_give_nan_with_warnings_not_a_reshape_error(downsample) -> None:
    arrays = (np.zeros(0), np.zeros(0, int), np.zeros((0, 8, 8)), np.zeros((0, 8, 8), bool))
    with pytest.warns(UserWarning, match="pixel_auroc is undefined"):
        result = M.compute_anomaly_metrics(*arrays, downsample=downsample)
    assert set(result) >= {"image_auroc", "pixel_auroc", "pixel_aupro"}
    assert all(math.isnan(value) for value in result.values())
    with pytest.warns(UserWarning, match=r"image_auroc is undefined \(no images\)"):
        per_class = M.compute_per_class_metrics([], *arrays, downsample=downsample)
    assert list(per_class) == ["mean"] and all(math.isnan(value) for value in per_class["mean"].values())


def test_an_anomalous_image_with_an_empty_mask_is_warned_about() -> None:
    rng = np.random.default_rng(0)
    maps = rng.random((3, 8, 8))
    masks = np.zeros((3, 8, 8), bool)
    masks[0, 2:4, 2:4] = True
    labels = np.array([1, 1, 0])  # image 1 is anomalous, its mask empty
    with pytest.warns(UserWarning, match=r"1 image\(s\) labelled anomalous have an empty mask \(image 1\)"):
        M.compute_anomaly_metrics(maps.max(axis=(1, 2)), labels, maps, masks)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        M.compute_anomaly_metrics(maps.max(axis=(1, 2)), np.array([1, 0, 0]), maps, masks)

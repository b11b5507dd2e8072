# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""The torch-free pre- and post-processing shared by the pipeline and the ONNX runtime."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from faprompt_hf import FAPromptImageProcessor
from faprompt_hf.inference_utils import (
    DEFAULT_THRESHOLD,
    check_threshold,
    detection_result,
    normalize_image,
    normalize_pixels,
    resize_anomaly_map,
    resize_image,
    resolve_threshold,
)


@pytest.mark.parametrize("size", [(37, 53), (16, 16), (7, 30), (518, 300)])
def test_resize_anomaly_map_equals_bilinear_interpolate(size):
    anomaly_map = np.random.default_rng(0).random((16, 24)).astype(np.float32)
    expected = F.interpolate(torch.from_numpy(anomaly_map)[None, None], size=size, mode="bilinear")[0, 0].numpy()
    resized = resize_anomaly_map(anomaly_map, size)
    assert resized.dtype == np.float32 and resized.shape == size
    np.testing.assert_allclose(resized, expected, atol=2e-6, rtol=0)


def test_resize_to_the_same_size_returns_the_map_unchanged():
    anomaly_map = np.random.default_rng(1).random((9, 5)).astype(np.float32)
    np.testing.assert_array_equal(resize_anomaly_map(anomaly_map, (9, 5)), anomaly_map)


def test_normalize_image_is_what_the_image_processor_returns():
    image = Image.fromarray(np.random.default_rng(2).integers(0, 256, (41, 29, 3), dtype=np.uint8))
    processor = FAPromptImageProcessor(size={"height": 24, "width": 40})
    expected = processor(images=image)["pixel_values"][0]
    np.testing.assert_array_equal(normalize_image(image, (24, 40)), expected)
    white = normalize_image(Image.new("RGB", (5, 5), "white"), (8, 8))
    np.testing.assert_allclose(white[:, 0, 0], (1 - np.array(processor.image_mean)) / np.array(processor.image_std))
    with pytest.raises(ValueError, match="resample must be one of"):
        normalize_image(image, (8, 8), resample="cubic")


def test_a_batch_normalised_at_once_is_the_images_normalised_one_by_one():
    rng = np.random.default_rng(3)
    images = [Image.fromarray(rng.integers(0, 256, (30 + i, 50 - i, 3), dtype=np.uint8)) for i in range(3)]
    resized = np.stack([resize_image(image, (24, 40)) for image in images])
    assert resized.dtype == np.uint8 and resized.shape == (3, 24, 40, 3)
    batch = normalize_pixels(resized)
    assert batch.dtype == np.float32 and batch.shape == (3, 3, 24, 40) and batch.flags["C_CONTIGUOUS"]
    for index, image in enumerate(images):  # bit for bit: predict's pixels are the pipeline's
        np.testing.assert_array_equal(batch[index], normalize_image(image, (24, 40)))


def test_thresholds_are_checked_and_resolved_in_order():
    assert check_threshold(np.float32(0.25), "threshold") == 0.25
    for bad in (float("inf"), "0.5", True, None):
        with pytest.raises(ValueError, match="threshold"):
            check_threshold(bad, "threshold")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_threshold(0.1, 0.9) == (0.1, False)
        assert resolve_threshold(None, 0.9) == (0.9, False)
        assert resolve_threshold(None, None, warn_uncalibrated=False) == (DEFAULT_THRESHOLD, False)
    with pytest.warns(UserWarning, match="uncalibrated default 0.5"):
        assert resolve_threshold(None, None) == (DEFAULT_THRESHOLD, True)


def test_detection_result_resizes_thresholds_and_draws():
    image = Image.new("RGB", (12, 6), "gray")
    anomaly_map = np.zeros((4, 4), np.float32)
    anomaly_map[:, 2:] = 1.0
    result = detection_result(0.7, anomaly_map, image, threshold=0.7, pixel_threshold=0.5, overlay_alpha=1.0)
    assert result["score"] == 0.7 and result["is_anomalous"] is True
    assert result["anomaly_map"].shape == (6, 12) and result["mask"].shape == (6, 12)
    assert result["mask"][:, -1].all() and not result["mask"][:, 0].any()
    assert result["overlay"].size == (12, 6)
    assert detection_result(0.7, anomaly_map, image, threshold=0.71, return_overlay=False)["overlay"] is None


def test_check_pixel_array_has_forwards_rules():
    from faprompt_hf.inference_utils import check_pixel_array

    good = check_pixel_array(np.zeros((2, 3, 8, 8), np.float64), (8, 8))
    assert good.dtype == np.float32 and good.flags.c_contiguous
    cases = [
        (np.zeros((0, 3, 8, 8), np.float32), ValueError, "a batch of 0 images"),
        ("abc", TypeError, "must be a numpy array"),
        (np.full((1, 3, 8, 8), np.nan, np.float32), ValueError, "NaN or inf"),
        (np.zeros((1, 3, 8, 8), np.uint8), ValueError, "raw integer pixels"),
        (np.zeros((1, 8, 8, 3), np.float32), ValueError, "channels-last"),
        (np.zeros((1, 3, 16, 16), np.float32), ValueError, r"\(B, 3, 8, 8\) \(the exported size\)"),
    ]
    for value, error, pattern in cases:
        with pytest.raises(error, match=pattern):
            check_pixel_array(value, (8, 8))


def test_check_overlay_options_and_processor_settings():
    from faprompt_hf.inference_utils import check_overlay_options, check_processor_settings

    assert check_overlay_options(1, (0, 1)) == (1.0, (0.0, 1.0))
    for alpha, normalize in ((0.5, "yes"), (0.5, (1, 0)), (0.5, (0, float("inf"))), (float("nan"), True), ("1", True)):
        with pytest.raises(ValueError, match="overlay_"):
            check_overlay_options(alpha, normalize)
    settings = {"size": {"height": 8, "width": 8}, "image_mean": [0.5] * 3, "image_std": [0.5] * 3}
    assert check_processor_settings(settings, "p.json") == ((8, 8), "bicubic", [0.5] * 3, [0.5] * 3)
    with pytest.raises(ValueError, match=r"p\.json: image_mean must be 3 finite numbers"):
        check_processor_settings({**settings, "image_mean": [0.5, 0.5]}, "p.json")

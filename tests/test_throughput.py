# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""Throughput work: the pipeline resizes maps on the model's device; the throughput benchmark runs and reports."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from faprompt_hf.inference_utils import resize_anomaly_map
from helpers import fresh_pipeline, load_script

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def test_forward_returns_maps_at_each_images_size_as_tensors(model, images):
    detector = fresh_pipeline(model)
    outputs = detector._forward(detector.preprocess(images[0]))
    anomaly_map = outputs["anomaly_maps"]
    assert isinstance(anomaly_map, torch.Tensor) and anomaly_map.device == next(model.parameters()).device
    assert tuple(anomaly_map.shape) == (1, images[0].height, images[0].width)


@pytest.mark.parametrize("batch_size", [1, 3])
def test_device_resize_equals_the_host_resize_for_mixed_sizes(model, images, batch_size, make_pixels):
    detector = fresh_pipeline(model, threshold=0.5)
    results = detector(images[:4], batch_size=batch_size)
    processed = detector.image_processor(images=images[:4], return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        maps = model(pixel_values=processed).anomaly_maps.numpy()
    assert len({image.size for image in images[:4]}) == 4  # every size differs: the per-image path
    for result, image, anomaly_map in zip(results, images[:4], maps, strict=True):
        expected = resize_anomaly_map(anomaly_map, (image.height, image.width))
        assert result["anomaly_map"].shape == (image.height, image.width)
        np.testing.assert_allclose(result["anomaly_map"], expected, atol=1e-5, rtol=0)


def test_same_size_batch_is_resized_in_one_call(model):
    from PIL import Image

    from faprompt_hf.pipeline_faprompt import _resize_maps

    maps = torch.rand(3, 32, 32)
    same = [Image.new("RGB", (20, 50))] * 3
    resized = _resize_maps(maps, same)
    assert isinstance(resized, torch.Tensor) and tuple(resized.shape) == (3, 50, 20)
    for row in range(3):
        np.testing.assert_allclose(resized[row].numpy(), resize_anomaly_map(maps[row].numpy(), (50, 20)), atol=1e-5)
    assert _resize_maps(maps, [Image.new("RGB", (32, 32))] * 3) is maps  # already at size: untouched


def test_throughput_benchmark_reports_every_variant_and_its_ratio(model, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    script = load_script(BENCHMARKS / "benchmark_throughput.py")
    record = script.measure_throughput(
        model, torch.device("cpu"), batch=4, num_workers=(0,), num_images=8, rounds=1, warmup=0, image_side=64
    )
    assert set(record["results"]) == {"forward", "pipeline_w0", "pipeline_no_overlay_w0", "evaluate_w0"}
    assert record["num_images"] == 8 and record["batch"] == 4
    for row in record["results"].values():
        assert row["images_per_s"] > 0 and row["ratio_vs_forward"] > 0
    assert record["results"]["forward"]["ratio_vs_forward"] == 1.0
    json.dumps(record, allow_nan=False)

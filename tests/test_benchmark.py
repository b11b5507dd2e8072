# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""benchmarks/benchmark.py prints valid JSON (no bare NaN), also on a CPU where peak memory is not measured."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from helpers import load_script

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "benchmark.py"


@pytest.fixture(scope="module")
def benchmark_script():
    return load_script(BENCHMARK)


def _strict_loads(text: str):
    def refuse(constant: str):
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_cpu_measurement_has_a_null_peak_memory(benchmark_script):
    result = benchmark_script._time(lambda: None, torch.device("cpu"), batch=1, warmup=0, min_seconds=0.0)
    assert result["peak_mem_gib"] is None
    assert _strict_loads(json.dumps(benchmark_script._json_safe(result), allow_nan=False)) == result


def test_non_finite_numbers_print_as_null(benchmark_script):
    record = {"images_per_s": float("nan"), "nested": {"cosine": float("inf")}, "runs": [1.5, float("-inf")]}
    printed = json.dumps(benchmark_script._json_safe(record), allow_nan=False)
    assert _strict_loads(printed) == {"images_per_s": None, "nested": {"cosine": None}, "runs": [1.5, None]}


def test_summary_gives_the_speed_issues_ratios(benchmark_script):
    records = [
        {"mode": "reference", "dtype": "float32", "batch": 1, "images_per_s": 8.0},
        {"mode": "infer", "dtype": "float32", "batch": 1, "images_per_s": 20.0},
        {"mode": "infer", "dtype": "float32", "batch": 1, "images_per_s": 24.0, "compiled": True},
        {"mode": "infer", "dtype": "bfloat16", "batch": 32, "images_per_s": 300.0},
        {"mode": "train", "dtype": "bfloat16", "batch": 8, "images_per_s": 160.0, "peak_mem_gib": 1.5},
        {"mode": "tower", "dtype": "bfloat16", "batch": 32, "images_per_s": 360.0},
        {
            "mode": "throughput",
            "dtype": "bfloat16",
            "batch": 32,
            "results": {"pipeline_w4": {"ratio_vs_forward": 0.85}},
        },
    ]
    summary = benchmark_script.summarize(records)
    assert summary["eager_bf16_vs_tower"] == round(300 / 360, 3)
    assert summary["eager_fp32_b1_vs_reference"] == 2.5 and summary["compiled_fp32_b1_vs_reference"] == 3.0
    assert summary["train_bf16_b8_images_per_s"] == 160.0 and summary["train_bf16_b8_peak_gib"] == 1.5
    assert summary["pipeline_w4_vs_forward"] == 0.85
    assert benchmark_script.summarize([])["eager_bf16_vs_tower"] is None  # a missing measurement is None

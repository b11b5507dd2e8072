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

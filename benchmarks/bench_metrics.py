# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""Time compute_anomaly_metrics on random anomaly maps with blob masks; print one JSON line.

Usage::

    python benchmarks/bench_metrics.py [--images 100] [--size 518] [--repeats 3] [--seed 0]

The JSON line holds the best-of-``repeats`` wall time of each configuration (image + pixel metrics with the
"exact" AUPRO, with the "original" AUPRO, and "exact" with ``downsample=2``), the AUPRO of both definitions on these
maps and on a heavy-tailed version of them (``exp(10 * map)``), and the machine (CPU count and model, numpy version).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable

import numpy as np
from scipy import ndimage

from faprompt_hf.metrics import aupro, compute_anomaly_metrics


def make_data(images: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Smooth noise maps, half of them with 1 to 3 elliptic blobs raised in both mask and map.

    Args:
        images: Number of images N.
        size: Map side S.
        seed: Random seed.

    Returns:
        Image scores (N,), image labels (N,), float32 maps (N, S, S) and boolean masks (N, S, S).
    """
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:size, 0:size]
    masks = np.zeros((images, size, size), dtype=bool)
    for index in range(images // 2):
        for _ in range(rng.integers(1, 4)):
            center = rng.uniform(0.1 * size, 0.9 * size, 2)
            radii = rng.uniform(0.02 * size, 0.12 * size, 2)
            masks[index] |= ((rows - center[0]) / radii[0]) ** 2 + ((cols - center[1]) / radii[1]) ** 2 <= 1
    noise = ndimage.gaussian_filter(rng.standard_normal((images, size, size)).astype(np.float32), sigma=(0, 4, 4))
    signal = ndimage.gaussian_filter(masks.astype(np.float32), sigma=(0, 6, 6))
    maps = (noise / noise.std() * 0.5 + 1.5 * signal * rng.uniform(0.3, 1.0, (images, 1, 1))).astype(np.float32)
    maps = (maps - maps.min()) / (maps.max() - maps.min())
    labels = masks.any(axis=(1, 2)).astype(np.int64)
    scores = maps.max(axis=(1, 2)).astype(np.float64)
    return scores, labels, maps, masks


def best_time(function: Callable[[], object], repeats: int) -> float:
    """Best wall time of ``repeats`` calls, in seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def cpu_model() -> str:
    """The CPU model from /proc/cpuinfo, or platform.processor() elsewhere."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    """Run the benchmark and print its JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--size", type=int, default=518)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    scores, labels, maps, masks = make_data(args.images, args.size, args.seed)
    heavy = np.exp(10.0 * maps.astype(np.float64))
    result = {
        "images": args.images,
        "size": args.size,
        "pixels": int(maps.size),
        "anomalous_pixel_fraction": round(float(masks.mean()), 4),
        "seconds_exact": round(
            best_time(lambda: compute_anomaly_metrics(scores, labels, maps, masks), args.repeats), 3
        ),
        "seconds_original": round(
            best_time(lambda: compute_anomaly_metrics(scores, labels, maps, masks, aupro="original"), args.repeats), 3
        ),
        "seconds_exact_downsample2": round(
            best_time(lambda: compute_anomaly_metrics(scores, labels, maps, masks, downsample=2), args.repeats), 3
        ),
        "aupro_exact": round(aupro(maps, masks), 4),
        "aupro_original": round(aupro(maps, masks, method="original"), 4),
        "aupro_exact_heavy_tailed": round(aupro(heavy, masks), 4),
        "aupro_original_heavy_tailed": round(aupro(heavy, masks, method="original"), 4),
        "nproc": os.cpu_count(),
        "cpu": cpu_model(),
        "numpy": np.__version__,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()

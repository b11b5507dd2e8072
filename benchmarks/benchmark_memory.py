# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""Peak memory (RSS) of the anomaly-detection pipeline on one large image, with and without the overlay.

Each measurement runs in a fresh subprocess, so that its peak RSS (``resource.getrusage(...).ru_maxrss``) belongs to
that call alone. The model is the tiny random one of the tests (``faprompt_hf.tiny``): the memory that grows with the
image size (decoding, the full-resolution map, mask and overlay) does not depend on the model, which only ever sees
the resized input.

Run (about a minute at 9000x9000 on 2 cores):

    PYTHONPATH=src python benchmarks/benchmark_memory.py --size 9000
    PYTHONPATH=src python benchmarks/benchmark_memory.py --size 9000 --json memory.json

Reports, per setting: the peak RSS of the whole process, the RSS high-water mark before the call (Python, torch and
the model), the growth caused by the call, and that growth per image pixel.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np
from PIL import Image


def _peak_rss_bytes() -> int:
    """This process's peak resident set size (Linux reports kilobytes, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def make_test_image(path: str, size: int) -> int:
    """Write a ``size`` x ``size`` RGB PNG that compresses well (gradients and a faint grid); returns its bytes."""
    gradient = Image.linear_gradient("L").resize((size, size), Image.Resampling.BILINEAR)
    grid = np.zeros((size, size), np.uint8)
    grid[::97] = 40
    grid[:, ::89] = 40
    red = Image.fromarray(grid)
    Image.merge("RGB", (red, gradient, gradient.transpose(Image.Transpose.ROTATE_90))).save(path, compress_level=9)
    return os.path.getsize(path)


def measure(path: str, return_overlay: bool) -> dict[str, float]:
    """Run the pipeline once on ``path`` in this process and report its memory (call in a fresh process)."""
    import torch

    from faprompt_hf import FAPromptImageProcessor, FAPromptModel
    from faprompt_hf.pipeline_faprompt import FAPromptAnomalyDetectionPipeline
    from faprompt_hf.tiny import tiny_faprompt_config

    torch.manual_seed(0)
    model = FAPromptModel(tiny_faprompt_config()).eval()
    detector = FAPromptAnomalyDetectionPipeline(
        model=model, image_processor=FAPromptImageProcessor(size=model.config.image_size)
    )
    detector(Image.new("RGB", (64, 64)), threshold=0.5)  # warm-up: lazy imports and allocations
    before = _peak_rss_bytes()
    start = time.perf_counter()
    result = detector(path, threshold=0.5, return_overlay=return_overlay)
    seconds = time.perf_counter() - start
    peak = _peak_rss_bytes()
    height, width = result["anomaly_map"].shape
    return {
        "return_overlay": return_overlay,
        "pixels": height * width,
        "peak_rss_mb": peak / 2**20,
        "rss_before_call_mb": before / 2**20,
        "call_growth_mb": (peak - before) / 2**20,
        "call_growth_bytes_per_pixel": (peak - before) / (height * width),
        "seconds": seconds,
    }


def run_in_subprocess(path: str, return_overlay: bool) -> dict[str, float]:
    """:func:`measure` in a fresh interpreter, so that the peak RSS is that call's alone."""
    command = [sys.executable, os.path.abspath(__file__), "--measure", path]
    if not return_overlay:
        command.append("--no-overlay")
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"The measurement failed:\n{completed.stderr}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main() -> None:
    """Make the test image, measure the pipeline with and without the overlay, print (and save) the results."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=9000, help="Side of the square test image, in pixels.")
    parser.add_argument("--json", help="Also write the results to this JSON file.")
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # internal: measure this image in this process
    parser.add_argument("--no-overlay", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, return_overlay=not args.no_overlay)))
        return
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, f"test_{args.size}.png")
        file_bytes = make_test_image(path, args.size)
        results = [run_in_subprocess(path, return_overlay) for return_overlay in (True, False)]
    report = {
        "machine": f"{platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "image": f"{args.size}x{args.size} RGB PNG, {file_bytes / 1024:.0f} KB",
        "results": results,
    }
    print(f"{report['image']} on {report['machine']}")
    for result in results:
        print(
            f"  overlay={str(result['return_overlay']):5}  peak RSS {result['peak_rss_mb']:7.0f} MB  "
            f"(before the call {result['rss_before_call_mb']:.0f} MB, growth {result['call_growth_mb']:.0f} MB = "
            f"{result['call_growth_bytes_per_pixel']:.1f} bytes/pixel)  {result['seconds']:.1f} s"
        )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as file:
            json.dump(report, file, indent=2)


if __name__ == "__main__":
    main()

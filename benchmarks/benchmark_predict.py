#!/usr/bin/env python
# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""Throughput of ``faprompt-hf predict`` against the bare model forward at the same batch size.

Writes ``--num_images`` random PNGs (``--image_size`` px) to a temporary folder, then measures

- ``forward``: ``model(pixel_values=...)`` on already-normalised tensors, batch after batch (the ceiling);
- ``predict``: :func:`faprompt_hf.predict.predict` on the folder (decoding and resizing in ``--num_workers``
  threads, normalisation, the forward, the areas and the per-batch JSONL appends), timed over its scoring loop
  (which includes starting and stopping the decoding threads),

and prints one JSON line per measurement and the predict/forward ratio; with ``--results`` the summary is appended to
a ``benchmarks/results/*.jsonl`` file (with the CPU, the load average before and after, and the command). The two
alternate, round after round, and the ratio is the median over rounds of (forward time / predict time) of the same
round, so that a shared machine's load, which changes from minute to minute, affects both sides of each ratio alike.
``forward_share`` is the part of predict's time spent in the model's forward (timed by forward hooks inside the same
run): what is left is decoding waits, normalisation, post-processing and writing. The model is the tiny random
FAPrompt of :mod:`faprompt_hf.tiny` at ``--image_size`` (nothing is downloaded).

Both sides run with the library's default torch threads (``torch.get_num_threads()``, recorded): predict changes no
thread setting.

Usage:
    python benchmarks/benchmark_predict.py                      # 200 PNGs, 64 px, batch 16, 2 threads, CPU
    python benchmarks/benchmark_predict.py --num_workers 0      # decoding between batches, for comparison
    python benchmarks/benchmark_predict.py --rounds 7 --results benchmarks/results/predict_cpu.jsonl --label "..."
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from benchmark import cpu_description, write_result  # the script folder is on sys.path when run as a script
from faprompt_hf import FAPromptModel
from faprompt_hf.predict import predict
from faprompt_hf.tiny import tiny_clip_config, tiny_faprompt_config


def _model(image_size: int) -> FAPromptModel:
    torch.manual_seed(0)
    config = tiny_faprompt_config(clip_config=tiny_clip_config(image_size=image_size), image_size=image_size)
    return FAPromptModel(config).eval()


def _forward_seconds(model: FAPromptModel, num_images: int, batch_size: int, image_size: int) -> float:
    pixels = torch.randn(batch_size, 3, image_size, image_size)
    start = time.perf_counter()
    with torch.inference_mode():
        for first in range(0, num_images, batch_size):
            model(pixel_values=pixels[: min(batch_size, num_images - first)])
    return time.perf_counter() - start


def main() -> None:
    """Run the measurement and print JSON lines."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num_images", type=int, default=200)
    parser.add_argument("--image_size", type=int, default=64)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--num_workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--results", default=None, help="Append the summary to this .jsonl file (default: print).")
    parser.add_argument("--label", default=None, help="A note stored with the result (e.g. the machine's load).")
    args = parser.parse_args()
    load_before = os.getloadavg()
    model = _model(args.image_size)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        images = Path(folder) / "images"
        images.mkdir()
        for index in range(args.num_images):
            array = rng.integers(0, 256, (args.image_size, args.image_size, 3), dtype=np.uint8)
            Image.fromarray(array).save(images / f"{index:04d}.png")
        _forward_seconds(model, args.batch_size * 2, args.batch_size, args.image_size)  # warm-up
        forward, scored, inside = [], [], []
        clock = {"start": 0.0, "total": 0.0}

        def before(*_: object) -> None:
            clock["start"] = time.perf_counter()

        def after(*_: object) -> None:
            clock["total"] += time.perf_counter() - clock["start"]

        for round_index in range(args.rounds):
            forward.append(_forward_seconds(model, args.num_images, args.batch_size, args.image_size))
            hooks = [model.register_forward_pre_hook(before), model.register_forward_hook(after)]
            clock["total"] = 0.0
            summary = predict(
                [images],
                model,
                Path(folder) / f"out{round_index}",
                batch_size=args.batch_size,
                num_workers=args.num_workers,
                threshold=0.5,
                progress=False,
            )
            for hook in hooks:
                hook.remove()
            scored.append(summary.seconds)
            inside.append(clock["total"])
    common = {
        "num_images": args.num_images,
        "image_size": args.image_size,
        "batch_size": args.batch_size,
        "torch_threads": torch.get_num_threads(),
    }
    rates = {}
    for mode, seconds in (("forward", forward), ("predict", scored)):
        rates[mode] = args.num_images / min(seconds)
        extra = {"num_workers": args.num_workers} if mode == "predict" else {}
        median = round(args.num_images / statistics.median(seconds), 1)
        print(json.dumps({"mode": mode, **common, **extra, "images_per_s": round(rates[mode], 1), "median": median}))
    ratios = [bare / run for bare, run in zip(forward, scored, strict=True)]
    shares = [part / run for part, run in zip(inside, scored, strict=True)]
    record = {
        "benchmark": "predict_vs_forward",
        **common,
        "num_workers": args.num_workers,
        "rounds": args.rounds,
        "forward_images_per_s_median": round(args.num_images / statistics.median(forward), 1),
        "predict_images_per_s_median": round(args.num_images / statistics.median(scored), 1),
        "predict_over_forward": round(statistics.median(ratios), 3),
        "per_round": [round(ratio, 2) for ratio in ratios],
        "forward_share": round(statistics.median(shares), 3),
        "device": cpu_description(),
        "load_average_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "versions": {"torch": torch.__version__},
        "command": "python benchmarks/benchmark_predict.py " + " ".join(sys.argv[1:]),
        "label": args.label,
    }
    write_result(record, args.results)


if __name__ == "__main__":
    main()

#!/usr/bin/env python
# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""Images per second through the pipeline and the evaluation, against the bare model forward at the same batch.

The images are synthetic PNG files (``make_synthetic_dataset``, ``--image_side`` px, written to a temporary folder):
the pipeline gets their paths (decoding, RGB conversion, resizing and normalisation, the forward, the map resize,
the thresholds and, by default, the overlay), the evaluation gets the same rows as a ``datasets.Dataset``
(``evaluate_model``: decoding, the forward, the per-class image and pixel metrics). ``forward`` is the bare
``model(pixel_values=...)`` on already normalised batches on the device. Every variant runs once per round, in turn,
so that all of them see the same machine load; the medians and the ratio to ``forward`` are reported.

Variants (each at ``--batch``; the pipeline and evaluation ones once per ``--num_workers`` value):

- ``forward``: the bare model forward.
- ``pipeline_wN``: ``pipeline(paths, batch_size=B, num_workers=N)`` with its defaults (overlay drawn).
- ``pipeline_no_overlay_wN``: the same with ``return_overlay=False``.
- ``evaluate_wN``: ``evaluate_model(model, dataset, batch_size=B, num_workers=N)`` (default protocol).

Prints one JSON line (and appends it to ``--results``).

Usage:
    python benchmarks/benchmark_throughput.py                         # CPU, the quickstart's tiny model, batch 8
    python benchmarks/benchmark_throughput.py --device cuda --vit_l --dtype bfloat16 --batch 32 --num_workers 4 8
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from benchmark import (  # the script folder is on sys.path when run as a script
    cpu_description,
    synchronize,
    write_result,
)
from faprompt_hf import (
    FAPromptAnomalyDetectionPipeline,
    FAPromptConfig,
    FAPromptImageProcessor,
    FAPromptModel,
    clip_vit_large_patch14_336_config,
)
from faprompt_hf.data import DOMAINS, make_synthetic_dataset
from faprompt_hf.evaluation import evaluate_model
from faprompt_hf.tiny import tiny_clip_config, tiny_clip_tokenizer, tiny_faprompt_config


def quickstart_model(image_size: int = 112) -> FAPromptModel:
    """The quickstart's tiny model shape (hidden 64, patch 8, 112 px), seeded random weights."""
    torch.manual_seed(0)
    tokenizer = tiny_clip_tokenizer()
    clip_config = tiny_clip_config(tokenizer, hidden_size=64, image_size=image_size, patch_size=8, projection_dim=64)
    return FAPromptModel(tiny_faprompt_config(tokenizer, clip_config, image_size=image_size)).eval()


def vit_l_model() -> FAPromptModel:
    """FAPrompt on a ViT-L/14@336-shaped CLIP with seeded random weights (518 px)."""
    torch.manual_seed(0)
    return FAPromptModel(FAPromptConfig(clip_config=clip_vit_large_patch14_336_config().to_dict())).eval()


def measure_throughput(
    model: FAPromptModel,
    device: torch.device,
    batch: int,
    num_workers: Sequence[int] = (0,),
    num_images: int = 64,
    rounds: int = 3,
    warmup: int = 1,
    image_side: int = 256,
) -> dict:
    """Time the bare forward, the pipeline and the evaluation alternately; see the module docstring.

    Args:
        model: The model, in eval mode, on ``device`` (any dtype).
        device: Where it runs.
        batch: Images per forward, for every variant.
        num_workers: DataLoader workers of the pipeline and evaluation variants (one variant each).
        num_images: Images per timed run (rounded up to whole domains of normal and anomalous images).
        rounds: Timed rounds; every variant runs once per round.
        warmup: Untimed rounds first.
        image_side: Side of the synthetic PNG images.

    Returns:
        ``{"results": {variant: {"median_s", "images_per_s", "ratio_vs_forward"}}, "num_images": N, ...}``.
    """
    per_domain = max(1, -(-num_images // (2 * 4)))
    dataset = make_synthetic_dataset(DOMAINS[:4], per_domain, per_domain, image_size=image_side, seed=0)
    count = len(dataset)
    size = model.config.image_size
    image_processor = FAPromptImageProcessor(size=size)
    detector = FAPromptAnomalyDetectionPipeline(
        model=model, image_processor=image_processor, device=device, threshold=0.5
    )
    pixels = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device, model.dtype)
    folder = Path(tempfile.mkdtemp(prefix="faprompt_throughput_"))
    paths = []
    for index, row in enumerate(dataset):
        path = folder / f"{index:04d}.png"
        row["image"].save(path)
        paths.append(str(path))

    def forward() -> None:
        with torch.no_grad():
            for start in range(0, count, batch):
                outputs = model(pixel_values=pixels[: min(batch, count - start)])
            outputs.anomaly_maps.sum().item()
        synchronize(device)

    steps: dict[str, Callable[[], object]] = {"forward": forward}
    for workers in num_workers:
        steps[f"pipeline_w{workers}"] = lambda w=workers: detector(paths, batch_size=batch, num_workers=w)
        steps[f"pipeline_no_overlay_w{workers}"] = lambda w=workers: detector(
            paths, batch_size=batch, num_workers=w, return_overlay=False
        )
        steps[f"evaluate_w{workers}"] = lambda w=workers: evaluate_model(
            model, dataset, image_processor, batch_size=batch, num_workers=w
        )
    times: dict[str, list[float]] = {name: [] for name in steps}
    for round_index in range(warmup + rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            synchronize(device)
            if round_index >= warmup:
                times[name].append(time.perf_counter() - start)
    forward_s = statistics.median(times["forward"])
    results = {
        name: {
            "median_s": round(statistics.median(seconds), 4),
            "images_per_s": round(count / statistics.median(seconds), 2),
            "ratio_vs_forward": round(forward_s / statistics.median(seconds), 3),
        }
        for name, seconds in times.items()
    }
    for path in paths:
        os.unlink(path)
    folder.rmdir()
    return {
        "results": results,
        "num_images": count,
        "batch": batch,
        "image_side": image_side,
        "image_size": size,
        "dtype": str(model.dtype).removeprefix("torch."),
        "rounds": rounds,
    }


def main() -> None:
    """Parse the arguments, measure and print one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--vit_l", action="store_true", help="ViT-L/14@336 at 518 px instead of the tiny model.")
    parser.add_argument("--model", default=None, help="A saved model folder instead (e.g. the quickstart's).")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--num_workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--num_images", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--image_side", type=int, default=256, help="Side of the synthetic input images.")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: PyTorch's).")
    parser.add_argument("--results", default=None, help="Append the JSON line to this file too.")
    parser.add_argument("--label", default="", help="A note stored in the output (e.g. 'machine shared').")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.model:
        model = FAPromptModel.from_pretrained(args.model).eval()
    else:
        model = vit_l_model() if args.vit_l else quickstart_model()
    model = model.to(device=device, dtype=getattr(torch, args.dtype))
    record = measure_throughput(
        model,
        device,
        args.batch,
        args.num_workers,
        args.num_images,
        args.rounds,
        args.warmup,
        args.image_side,
    )
    record = {
        "benchmark": "throughput",
        "model": args.model or ("vit-l-14-336" if args.vit_l else "quickstart-tiny"),
        **record,
        "torch_threads": torch.get_num_threads(),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_description(),
        "versions": {"torch": torch.__version__},
        "command": "python benchmarks/benchmark_throughput.py " + " ".join(sys.argv[1:]),
        "label": args.label,
    }
    write_result(record, args.results)


if __name__ == "__main__":
    main()

#!/usr/bin/env python
# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""Would a PyTorch int8 path pay on this CPU? ViT-L/14's dominant operation, fp32 against PyTorch dynamic int8.

Times, alternately round by round, the MLP of one ViT-L/14 block at 518 px (1370 tokens: Linear 1024 -> 4096, GELU,
Linear 4096 -> 1024) in fp32 and after ``torch.ao.quantization.quantize_dynamic`` (int8 weights, activations
quantised per call): the operation where int8 would gain most. Prints one JSON line (and appends it to ``--results``).

Usage:
    python benchmarks/torch_int8_linear.py --results benchmarks/results/torch_int8.jsonl
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings

import torch
from torch import nn

from benchmark import cpu_description, write_result  # the script folder is on sys.path when run as a script


def main() -> None:
    """Time both variants alternately and print one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--results", default=None, help="Append the JSON line to this file too.")
    parser.add_argument("--label", default="")
    args = parser.parse_args()

    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(1024, 4096), nn.GELU(), nn.Linear(4096, 1024)).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization is deprecated in favour of torchao
        int8 = torch.ao.quantization.quantize_dynamic(mlp, {nn.Linear}, dtype=torch.qint8)
    x = torch.randn(1, 1370, 1024)
    variants = {"float32": mlp, "int8_dynamic": int8}
    times: dict[str, list[float]] = {name: [] for name in variants}
    with torch.no_grad():
        reference = mlp(x)
        outputs = {name: module(x) for name, module in variants.items()}
        for _ in range(args.rounds):
            for name, module in variants.items():
                start = time.perf_counter()
                for _ in range(5):
                    module(x)
                times[name].append((time.perf_counter() - start) / 5)
    fp32 = statistics.median(times["float32"])
    record = {
        "benchmark": "torch_int8_linear",
        "operation": "ViT-L/14 block MLP, 1370 tokens, batch 1",
        "engine": torch.backends.quantized.engine,
        "results": {
            name: {
                "median_ms": round(1000 * statistics.median(seconds), 2),
                "speedup_vs_float32": round(fp32 / statistics.median(seconds), 3),
                "cosine_vs_float32": round(
                    torch.nn.functional.cosine_similarity(outputs[name].flatten(), reference.flatten(), dim=0).item(), 6
                ),
            }
            for name, seconds in times.items()
        },
        "torch_threads": torch.get_num_threads(),
        "device": cpu_description(),
        "versions": {"torch": torch.__version__},
        "command": "python benchmarks/torch_int8_linear.py " + " ".join(sys.argv[1:]),
        "label": args.label,
    }
    write_result(record, args.results)


if __name__ == "__main__":
    main()

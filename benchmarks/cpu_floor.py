#!/usr/bin/env python
# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""How close PyTorch eager fp32 runs FAPrompt (ViT-L/14@336, 518 px, batch 1) to this CPU's matrix-multiply rate.

Counts the floating-point operations of one forward (``torch.utils.flop_counter.FlopCounterMode``: matrix products,
convolutions and attention, 2 FLOPs per multiply-add), then alternates, round by round, a large fp32 matrix product
(the rate the CPU's FMA units reach in practice, with PyTorch's threads) and the eager forward. The forward's achieved
rate over the GEMM rate is the fraction of the practical peak it uses: near 1, fp32 speed is at its floor on this
CPU and only fewer operations or cheaper ones (int8) can go faster. Prints one JSON line (and appends it to
``--results``).

Usage:
    python benchmarks/cpu_floor.py --rounds 2 --results benchmarks/results/cpu_floor.jsonl
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmark import cpu_description, write_result  # the script folder is on sys.path when run as a script
from faprompt_hf import FAPromptConfig, FAPromptModel, clip_vit_large_patch14_336_config


def gemm_rate(side: int = 2048, seconds: float = 3.0) -> float:
    """fp32 GFLOP/s of repeated ``side`` x ``side`` matrix products (at least ``seconds`` long)."""
    a, b = torch.randn(side, side), torch.randn(side, side)
    torch.mm(a, b)
    runs, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or runs < 3:
        torch.mm(a, b)
        runs += 1
    return 2 * side**3 * runs / (time.perf_counter() - start) / 1e9


def main() -> None:
    """Count, time alternately and print one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--results", default=None, help="Append the JSON line to this file too.")
    parser.add_argument("--label", default="", help="A note stored in the output (e.g. 'machine shared').")
    args = parser.parse_args()

    torch.manual_seed(0)
    model = FAPromptModel(FAPromptConfig(clip_config=clip_vit_large_patch14_336_config().to_dict())).eval()
    pixel_values = torch.randn(1, 3, 518, 518)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(pixel_values=pixel_values)
    flops = counter.get_total_flops()
    forward_s, gemm = [], []
    for _ in range(args.rounds):
        gemm.append(gemm_rate())
        start = time.perf_counter()
        with torch.no_grad():
            model(pixel_values=pixel_values)
        forward_s.append(time.perf_counter() - start)
    fractions = [flops / seconds / 1e9 / rate for seconds, rate in zip(forward_s, gemm, strict=True)]
    record = {
        "benchmark": "cpu_floor",
        "model": "vit-l-14-336",
        "image_size": 518,
        "batch": 1,
        "dtype": "float32",
        "tflop_per_image": round(flops / 1e12, 4),
        "forward_s": [round(value, 2) for value in forward_s],
        "gemm_gflop_s": [round(value, 1) for value in gemm],
        "forward_gflop_s": [round(flops / value / 1e9, 1) for value in forward_s],
        "fraction_of_gemm_rate": [round(value, 3) for value in fractions],
        "fraction_of_gemm_rate_median": round(statistics.median(fractions), 3),
        "torch_threads": torch.get_num_threads(),
        "device": cpu_description(),
        "versions": {"torch": torch.__version__},
        "command": "python benchmarks/cpu_floor.py " + " ".join(sys.argv[1:]),
        "label": args.label,
    }
    write_result(record, args.results)


if __name__ == "__main__":
    main()

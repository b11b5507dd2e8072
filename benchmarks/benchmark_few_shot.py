#!/usr/bin/env python
# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""The cost of normal references: inference time with K references against zero-shot, and the bank's size.

FAPrompt on a ViT-L/14@336-shaped CLIP (``clip_vit_large_patch14_336_config()``) with random weights (built without
the default initialisation, then filled with N(0, 0.02) noise: timing does not depend on the values), at 518 px,
batch 1, float32. No download.

For each K of ``--k_shots`` (1, 4, 16) the bank grows by ``set_normal_references`` (timed too: one vision pass per
reference image), then ``--repeats`` **pairs** of forwards of the same image run back to back: one zero-shot (the
bank set aside) and one with the K references. The machine's load drifts (a shared 2-core machine: a forward took
18 to 44 s in one run), so each pair's ratio is taken and the median of the pair ratios reported
(``ratio_vs_zero_shot``), beside the medians of the times. ``overhead_s`` times only what references add (the
distance to the bank, the reference map's upsampling and smoothing, the fusion) on the same bank, over
``--overhead_repeats`` runs: it is small enough to time many times, so it is the steadier figure;
``ratio_from_overhead`` is ``(zero-shot + overhead) / zero-shot``.

Prints one JSON line (and appends it to ``--results``): ``zero_shot_s``, per K ``median_s``,
``ratio_vs_zero_shot``, ``overhead_s`` and ``ratio_from_overhead``, ``bank_bytes_per_reference`` (patches per image
x projection width x 4 bytes, float32), ``bank_bytes`` at each K and ``set_references_s_per_image``.

Usage:
    python benchmarks/benchmark_few_shot.py --results benchmarks/results/few_shot_cost.jsonl
    python benchmarks/benchmark_few_shot.py --tiny   # seconds: the same measurement on the tiny test model
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from benchmark import cpu_description, synchronize, write_result  # the script folder is on sys.path
from faprompt_hf import FAPromptConfig, FAPromptModel, clip_vit_large_patch14_336_config
from faprompt_hf.modeling_faprompt import normal_reference_distances
from faprompt_hf.tiny import tiny_faprompt_config


def build_model(tiny: bool, device: torch.device) -> FAPromptModel:
    """ViT-L/14@336 FAPrompt (518 px) with random N(0, 0.02) weights, or the tiny test model (32 px)."""
    generator = torch.Generator().manual_seed(0)
    if tiny:
        torch.manual_seed(0)
        return FAPromptModel(tiny_faprompt_config()).to(device).eval()
    from transformers.initialization import no_init_weights  # skips the slow default initialisation

    config = FAPromptConfig(clip_config=clip_vit_large_patch14_336_config().to_dict())
    with no_init_weights():
        model = FAPromptModel(config)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.02, generator=generator)
    return model.to(device).eval()


def forward_seconds(model: FAPromptModel, pixels: torch.Tensor) -> float:
    """Seconds of one forward (outputs read back, device synchronised)."""
    start = time.perf_counter()
    with torch.no_grad():
        model(pixel_values=pixels).anomaly_maps.sum().item()
    synchronize(pixels.device)
    return time.perf_counter() - start


def zero_shot_seconds(model: FAPromptModel, pixels: torch.Tensor) -> float:
    """One zero-shot forward of a model holding references: the bank is set aside for it, then put back."""
    config, module = model.config, model.normal_references
    saved = (
        module.features,
        config.normal_reference_classes,
        config.normal_reference_image_counts,
        config.normal_reference_patch_counts,
    )
    module.features = None
    config.normal_reference_classes, config.normal_reference_image_counts = [], []
    config.normal_reference_patch_counts = []
    try:
        return forward_seconds(model, pixels)
    finally:
        module.features = saved[0]
        config.normal_reference_classes, config.normal_reference_image_counts = saved[1], saved[2]
        config.normal_reference_patch_counts = saved[3]


def overhead_seconds(model: FAPromptModel, size: int, repeats: int) -> float:
    """Median seconds of what references add to a forward of one image: distances, reference map, fusion."""
    patch = model.config.clip_config.vision_config.patch_size
    grid = (size // patch, size // patch)
    bank = model.normal_reference_features()
    tokens = F.normalize(torch.randn(1, grid[0] * grid[1], bank.shape[1], device=bank.device), dim=-1)
    text_maps = torch.rand(1, size, size, device=bank.device)
    sigma = model.config.gaussian_sigma
    seconds = []
    with torch.no_grad():
        for index in range(repeats + 1):
            start = time.perf_counter()
            distances = normal_reference_distances(tokens, bank)
            _, fused, reference = model._fuse_reference_maps(distances, grid, text_maps, text_maps, sigma)
            reference.flatten(1).amax(1).sum().item()
            synchronize(bank.device)
            if index:
                seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def main() -> None:
    """Parse the arguments, measure and print one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--tiny", action="store_true", help="The tiny test model instead of ViT-L/14@336.")
    parser.add_argument("--k_shots", type=int, nargs="+", default=[1, 4, 16], help="Bank sizes, increasing.")
    parser.add_argument("--repeats", type=int, default=3, help="Timed pairs (zero-shot, K-shot) per K.")
    parser.add_argument("--warmup", type=int, default=1, help="Untimed forwards first.")
    parser.add_argument("--overhead_repeats", type=int, default=10, help="Timed runs of the references' own cost.")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: PyTorch's).")
    parser.add_argument("--results", default=None, help="Append the JSON line to this file too.")
    parser.add_argument("--label", default="", help="A note stored in the output (e.g. 'machine shared').")
    args = parser.parse_args()
    if sorted(args.k_shots) != args.k_shots or args.k_shots[0] < 1:
        parser.error("--k_shots must be increasing and >= 1")
    if args.threads:
        torch.set_num_threads(args.threads)

    device = torch.device(args.device)
    start = time.perf_counter()
    model = build_model(args.tiny, device)
    build_s = time.perf_counter() - start
    size = model.config.image_size
    generator = torch.Generator().manual_seed(0)
    pixels = torch.randn(1, 3, size, size, generator=generator).to(device)
    references = torch.randn(args.k_shots[-1], 3, size, size, generator=generator).to(device)

    for _ in range(args.warmup):
        forward_seconds(model, pixels)
    zero_shot: list[float] = []
    per_k: dict[str, dict] = {}
    set_seconds: list[float] = []
    held = 0
    for k_shot in args.k_shots:
        added = references[held:k_shot]
        start = time.perf_counter()
        for image in added:  # one image at a time: the per-reference cost, and bounded memory
            model.set_normal_references(image[None])
        synchronize(device)
        set_seconds.append((time.perf_counter() - start) / len(added))
        held = k_shot
        pairs = []
        for _ in range(args.repeats):
            pairs.append((zero_shot_seconds(model, pixels), forward_seconds(model, pixels)))
        zero_shot += [plain for plain, _ in pairs]
        bank = model.normal_reference_features()
        per_k[str(k_shot)] = {
            "median_s": round(statistics.median(with_bank for _, with_bank in pairs), 4),
            "pairs_s": [[round(plain, 4), round(with_bank, 4)] for plain, with_bank in pairs],
            "ratio_vs_zero_shot": round(statistics.median(with_bank / plain for plain, with_bank in pairs), 3),
            "overhead_s": round(overhead_seconds(model, size, args.overhead_repeats), 4),
            "bank_rows": int(bank.shape[0]),
            "bank_bytes": int(bank.numel() * bank.element_size()),
            "bank_dtype": str(bank.dtype).removeprefix("torch."),
        }
    model.clear_normal_references()
    zero_shot_s = statistics.median(zero_shot)
    for row in per_k.values():
        row["ratio_from_overhead"] = round((zero_shot_s + row["overhead_s"]) / zero_shot_s, 3)
    patches = (size // model.config.clip_config.vision_config.patch_size) ** 2
    width = model.config.clip_config.projection_dim
    record = {
        "benchmark": "few_shot_cost",
        "model": "tiny" if args.tiny else "vit-l-14-336",
        "image_size": size,
        "batch": 1,
        "dtype": "float32",
        "zero_shot_s": round(zero_shot_s, 4),
        "zero_shot_seconds": [round(value, 4) for value in zero_shot],
        "k_shot": per_k,
        "bank_bytes_per_reference": patches * width * 4,
        "bank_patches_per_reference": patches,
        "bank_width": width,
        "set_references_s_per_image": round(statistics.median(set_seconds), 3),
        "goal_ratio_at_k4": 1.2,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "overhead_repeats": args.overhead_repeats,
        "build_s": round(build_s, 1),
        "torch_threads": torch.get_num_threads(),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_description(),
        "versions": {"torch": torch.__version__},
        "command": "python benchmarks/benchmark_few_shot.py " + " ".join(sys.argv[1:]),
        "label": args.label,
    }
    write_result(record, args.results)


if __name__ == "__main__":
    main()

#!/usr/bin/env python
# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""Sizes of compact and embedded checkpoints, and the cost of the CLIP fingerprint, for ViT-L/14@336.

No downloads: the model is FAPrompt's reference configuration (``FAPromptConfig()``, ViT-L/14@336) with random
weights. Prints one JSON object: the sizes of ``model.safetensors`` saved with ``include_clip=False`` and with
``include_clip=True``, the seconds :func:`faprompt_hf.hub.clip_fingerprint` takes, and the seconds a full SHA-256 of
every CLIP tensor's float32 bytes takes (the alternative it replaces), with the machine.

With ``--digest``, also the cost of the integrity manifest (``integrity.json``, a SHA-256 of each weight file): the
save with and without it (``write_digests``), the load with and without its verification (``verify_digests``), and
the SHA-256 of the weight file alone, for the compact and the embedded checkpoint.

Usage:
    python benchmarks/benchmark_hub.py              # writes about 1.7 GB to a temporary folder
    python benchmarks/benchmark_hub.py --no_full    # skip the embedded save
    python benchmarks/benchmark_hub.py --digest     # and the digests' cost (about 2 minutes on 2 CPUs)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import tempfile
import time

import torch

from faprompt_hf import FAPromptConfig, FAPromptModel
from faprompt_hf.file_utils import file_sha256
from faprompt_hf.hub import clip_fingerprint


def _seconds(function, repeats: int = 3) -> float:
    """The best of ``repeats`` wall-clock timings."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def _full_sha256(model: FAPromptModel) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.clip.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _digest_costs(model: FAPromptModel, folder: str, kind: str, repeats: int) -> dict[str, float]:
    """Seconds to save and load one checkpoint kind with and without digests, and to hash its weight file."""
    path = os.path.join(folder, f"digest_{kind}")
    include_clip = kind == "embedded"
    results = {}
    for write in (False, True):
        results[f"{kind}_save_s_digests_{'on' if write else 'off'}"] = round(
            _seconds(lambda w=write: model.save_pretrained(path, include_clip=include_clip, write_digests=w), repeats),
            3,
        )
    weights = os.path.join(path, "model.safetensors")
    results[f"{kind}_model_safetensors_mb"] = round(os.path.getsize(weights) / 2**20, 2)
    results[f"{kind}_sha256_of_weights_s"] = round(_seconds(lambda: file_sha256(weights), repeats), 3)
    for verify in (False, True):
        results[f"{kind}_load_s_verify_{'on' if verify else 'off'}"] = round(
            _seconds(lambda v=verify: FAPromptModel.from_pretrained(path, verify_digests=v), repeats), 3
        )
    return results


def main() -> None:
    """Run the measurements and print them as JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no_full", action="store_true", help="Do not save the embedded (1.7 GB) checkpoint.")
    parser.add_argument("--digest", action="store_true", help="Also time the integrity manifest's digests.")
    args = parser.parse_args()
    torch.manual_seed(0)
    model = FAPromptModel(FAPromptConfig(clip_name_or_path="openai/clip-vit-large-patch14-336")).eval()
    clip_values = sum(tensor.numel() for tensor in model.clip.state_dict().values())
    fingerprint_s = _seconds(lambda: clip_fingerprint(model.clip))
    full_hash_s = _seconds(lambda: _full_sha256(model), repeats=1)
    model.config.clip_fingerprint = clip_fingerprint(model.clip)
    result = {
        "config": "ViT-L/14@336 (FAPromptConfig defaults), random weights",
        "prompt_parameters": sum(tensor.numel() for tensor in model.prompt_learner.state_dict().values()),
        "clip_parameters": clip_values,
        "clip_fingerprint_s": round(fingerprint_s, 4),
        "full_sha256_s": round(full_hash_s, 3),
    }
    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(os.path.join(folder, "compact"), include_clip=False)
        result["compact_model_safetensors_mb"] = round(
            os.path.getsize(os.path.join(folder, "compact", "model.safetensors")) / 2**20, 2
        )
        if not args.no_full:
            model.save_pretrained(os.path.join(folder, "full"), include_clip=True)
            result["embedded_model_safetensors_mb"] = round(
                os.path.getsize(os.path.join(folder, "full", "model.safetensors")) / 2**20, 1
            )
            shutil.rmtree(os.path.join(folder, "full"))
        if args.digest:
            # The compact load fetches the CLIP it names: point it at a local copy (no download).
            model.clip.save_pretrained(os.path.join(folder, "clip"))
            model.config.clip_name_or_path = os.path.join(folder, "clip")
            result.update(_digest_costs(model, folder, "compact", repeats=3))
            shutil.rmtree(os.path.join(folder, "digest_compact"))
            if not args.no_full:
                result.update(_digest_costs(model, folder, "embedded", repeats=3))
    result.update(
        machine=f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        torch=torch.__version__,
        threads=torch.get_num_threads(),
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()

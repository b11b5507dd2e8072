#!/usr/bin/env python
# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""Speed and memory of FAPrompt: inference, training and the bare CLIP vision tower, on random weights.

No downloads: the model is built from ``clip_vit_large_patch14_336_config()`` (ViT-L/14@336) with random weights,
or from the tiny test configuration with ``--tiny``. Prints one JSON line per measurement:
``mode`` (infer / train / tower / reference), ``dtype``, ``batch``, ``images_per_s``, ``peak_mem_gib``, ``device``,
``commit``.

``reference`` measures a per-image path written the way the released implementation runs (one image at a time,
77-token prompts, the static prompts re-encoded for every image, the normal prompt re-encoded with the prior's
prompts, Gaussian smoothing with scipy on the host); the script checks that the fast path gives its outputs.

``throughput`` measures images per second through the ``"anomaly-detection"`` pipeline and ``evaluate_model``
against the bare forward at the same batch (``benchmarks/benchmark_throughput.py``). After the measurements one
``mode=summary`` line gives the speed issue's ratios and goals (eager bf16 batch 32 against the tower, fp32 batch 1
against the reference path, training speed and peak memory, pipeline and evaluation against the forward).
``--results FILE`` appends every line to FILE as well.

Usage:
    python benchmarks/benchmark.py                    # GPU: ViT-L/14@336 at 518 px, every measurement
    python benchmarks/benchmark.py --tiny --device cpu  # CPU: fast path vs reference path on the tiny config
    # GPU, every figure of the speed issue in one call (a few minutes on an H200), recorded:
    python benchmarks/benchmark.py --compile --results benchmarks/results/gpu.jsonl
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter

from faprompt_hf import FAPromptConfig, FAPromptModel, clip_vit_large_patch14_336_config
from faprompt_hf.tiny import tiny_clip_config, tiny_faprompt_config


def write_result(record: dict, results: str | None) -> None:
    """Print one benchmark result as a JSON line, and append it to the ``results`` file (``--results``) if given.

    Args:
        record: The measurement; the commit and the UTC date are added when absent.
        results: A ``.jsonl`` file under ``benchmarks/results/`` (created if needed), or None.
    """
    record = {"commit": commit_id(), "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **record}
    line = json.dumps(record)
    print(line, flush=True)
    if results:
        Path(results).parent.mkdir(parents=True, exist_ok=True)
        with open(results, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")


def commit_id() -> str:
    """The short commit of this checkout (or $FAPROMPT_COMMIT), stored with every benchmark result."""
    if os.environ.get("FAPROMPT_COMMIT"):
        return os.environ["FAPROMPT_COMMIT"]
    try:
        root = Path(__file__).resolve().parents[1]
        return subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA), so that a timer measures it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cpu_description() -> str:
    """The CPU as benchmark results record it: processor (or architecture) and logical CPU count."""
    return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs)"


def _time(step: Callable[[], object], device: torch.device, batch: int, min_seconds: float, warmup: int) -> dict:
    """Images per second of ``step`` (run at least ``min_seconds`` after ``warmup`` runs) and peak memory."""
    for _ in range(warmup):
        step()
    synchronize(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    runs, start = 0, time.perf_counter()
    while True:
        step()
        runs += 1
        synchronize(device)
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds and runs >= 3:
            break
    # Peak memory is measured on CUDA only; elsewhere it is null (JSON has no NaN).
    peak = round(torch.cuda.max_memory_allocated(device) / 2**30, 3) if device.type == "cuda" else None
    return {"images_per_s": round(runs * batch / elapsed, 2), "peak_mem_gib": peak, "runs": runs}


def _run_compiled(report: Callable, mode: str, dtype: str, batch: int, measure: Callable[[], dict]) -> None:
    """Report a torch.compile measurement, or the error that stopped it (compilation is optional)."""
    try:
        report(mode, dtype, batch, measure(), compiled=True)
    except Exception as error:  # noqa: BLE001 - report any compiler failure instead of losing the run
        report(
            mode, dtype, batch, {"images_per_s": None, "error": f"{type(error).__name__}: {error}"[:300]}, compiled=True
        )


def _profile(step: Callable[[], object], device: torch.device, path: Path) -> None:
    """Write the 25 most expensive operators of a few steps to ``path``."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    for _ in range(2):
        step()
    synchronize(device)
    with torch.profiler.profile(activities=activities) as profiler:
        for _ in range(3):
            step()
        synchronize(device)
    sort = "cuda_time_total" if device.type == "cuda" else "cpu_time_total"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(profiler.key_averages().table(sort_by=sort, row_limit=25))


def build_model(tiny: bool, device: torch.device) -> tuple[FAPromptModel, int]:
    """The benchmarked model and its input side."""
    torch.manual_seed(0)
    if tiny:
        clip_config = tiny_clip_config(image_size=112, patch_size=8, hidden_size=64, num_layers=6)
        config = tiny_faprompt_config(
            clip_config=clip_config,
            image_size=112,
            num_vv_blocks=4,
            gaussian_sigma=4.0,
            num_abnormal_prompts=10,
            prior_num_patches=10,
            deep_prompt_depth=4,
        )
    else:
        config = FAPromptConfig(clip_config=clip_vit_large_patch14_336_config().to_dict())
    with torch.device(device):
        model = FAPromptModel(config)
    return model.eval(), config.image_size


@torch.no_grad()
def reference_forward(model: FAPromptModel, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """FAPrompt computed the released code's way, one image at a time (see module docstring).

    Returns:
        ``(image_scores (B,), anomaly_maps (B, H, W))`` on the host.
    """
    config, learner = model.config, model.prompt_learner
    context_length = config.clip_config.text_config.max_position_embeddings
    token_embedding = model.clip.text_model.embeddings.token_embedding
    patch = config.clip_config.vision_config.patch_size
    scores, maps = [], []

    def padded(ids: list[int]) -> torch.Tensor:
        return torch.tensor(ids + [0] * (context_length - len(ids)), device=pixel_values.device)

    normal_ids, abnormal_ids = padded(config.normal_prompt_ids()), padded(config.abnormal_prompt_ids())
    normal_eot, abnormal_eot = len(config.normal_prompt_ids()) - 1, len(config.abnormal_prompt_ids()) - 1
    split_n, split_a = (
        1 + config.normal_context_length,
        1 + config.normal_context_length + config.abnormal_context_length,
    )

    def encode(prior_bias: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        fixed_n, fixed_a = token_embedding(normal_ids), token_embedding(abnormal_ids)
        normal = torch.cat([fixed_n[:1], learner.normal_context, fixed_n[split_n:]])[None]
        context = learner.abnormal_context + (0 if prior_bias is None else prior_bias)
        abnormal = torch.stack(
            [
                torch.cat([fixed_a[:1], learner.normal_context, context[k], fixed_a[split_a:]])
                for k in range(config.num_abnormal_prompts)
            ]
        )
        t_n = model.encode_prompts(normal, torch.tensor([normal_eot], device=normal.device))
        t_a = model.encode_prompts(abnormal, torch.full((abnormal.shape[0],), abnormal_eot, device=normal.device))
        return t_n[0], t_a

    for image in pixel_values:
        height, width = image.shape[-2:]
        image_embed, patch_embeds = model.encode_image(image[None])
        tokens = patch_embeds[0, 1:]
        t_n, t_a = encode(None)
        static_text = F.normalize(torch.stack([t_n, t_a.mean(0)]), dim=-1)
        s = (tokens @ static_text.T / config.temperature).softmax(-1)
        selected = (
            tokens[: config.prior_num_patches]
            if config.prior_patch_selection == "first_m"
            else tokens[s[:, 1].topk(config.prior_num_patches).indices]
        )
        prior_bias = learner.prior(selected[None])[0]
        t_n_prior, t_a_prior = encode(prior_bias)
        prior_text = F.normalize(torch.stack([t_n_prior, t_a_prior.mean(0)]), dim=-1)
        s_hat = (tokens @ prior_text.T / config.temperature).softmax(-1)
        p = (image_embed[0] @ prior_text.T / config.temperature).softmax(-1)[1]
        scores.append(0.5 * (p + (2 * s[:, 1].max() + s_hat[:, 1].max()) / 3))
        grid = (height // patch, width // patch)
        up = [F.interpolate(x.T.reshape(1, 2, *grid), size=(height, width), mode="bilinear") for x in (s, s_hat)]
        raw = ((up[0][0, 1] + 1 - up[0][0, 0] + up[1][0, 1] + 1 - up[1][0, 0]) / 4).cpu().numpy()
        smoothed = gaussian_filter(raw, sigma=config.gaussian_sigma) if config.gaussian_sigma else raw
        maps.append(torch.from_numpy(smoothed))
    return torch.stack(scores).cpu(), torch.stack(maps)


def _json_safe(value: object) -> object:
    """``value`` with every NaN or infinite float replaced by None, so that it prints as valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    return value


def main() -> None:
    """Parse the arguments, build the model and print one JSON line per measurement."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--tiny", action="store_true", help="Tiny config (CPU-friendly) instead of ViT-L/14@336.")
    parser.add_argument("--image_size", type=int, default=None, help="Input side (default: the config's, 518).")
    parser.add_argument("--min_seconds", type=float, default=3.0, help="Time each measurement at least this long.")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--compile", action="store_true", help="Also measure bf16 inference under torch.compile.")
    parser.add_argument(
        "--profile",
        default=None,
        metavar="DIR",
        help="Write torch.profiler tables of fp32 inference (batch 1) and the training step here.",
    )
    parser.add_argument("--only", nargs="*", default=None, help="Subset of: infer train tower reference throughput.")
    parser.add_argument(
        "--num_workers", type=int, default=4, help="DataLoader workers of the pipeline and evaluation (throughput)."
    )
    parser.add_argument("--results", default=None, help="Append every JSON line to this file too.")
    args = parser.parse_args()

    device = torch.device(args.device)
    model, image_size = build_model(args.tiny, device)
    image_size = args.image_size or image_size
    common = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "commit": commit_id(),
        "image_size": image_size,
        "model": "tiny" if args.tiny else "vit-l-14-336",
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": "python benchmarks/benchmark.py " + " ".join(sys.argv[1:]),
    }
    # throughput runs by default on a GPU or with --tiny (ViT-L through the pipeline on a CPU takes many minutes)
    default = ["infer", "train", "tower", "reference"] + (["throughput"] if device.type == "cuda" or args.tiny else [])
    wanted = set(args.only or default)
    records: list[dict] = []

    def report(mode: str, dtype: str, batch: int, result: dict, **extra: object) -> None:
        record = {"mode": mode, "dtype": dtype, "batch": batch, **result, **common, **extra}
        records.append(record)
        line = json.dumps(_json_safe(record), allow_nan=False)
        print(line, flush=True)
        if args.results:
            Path(args.results).parent.mkdir(parents=True, exist_ok=True)
            with open(args.results, "a", encoding="utf-8") as handle:
                handle.write(line + "\n")

    def pixels(batch: int) -> torch.Tensor:
        return torch.randn(batch, 3, image_size, image_size, device=device)

    if "reference" in wanted:
        batch = 4 if args.tiny else 1
        x = pixels(batch)
        ref_scores, ref_maps = reference_forward(model, x)
        with torch.no_grad():
            fast = model(pixel_values=x)
        score_diff = (fast.image_scores.cpu() - ref_scores).abs().max().item()
        map_diff = (fast.anomaly_maps.cpu() - ref_maps).abs().max().item()
        report(
            "reference",
            "float32",
            batch,
            _time(lambda: reference_forward(model, x), device, batch, args.min_seconds, 1),
            max_abs_diff_scores=score_diff,
            max_abs_diff_maps=map_diff,
        )
    if "infer" in wanted:
        x = pixels(1)
        with torch.no_grad():
            fp32 = model(pixel_values=x)
        report("infer", "float32", 1, _time(lambda: model(pixel_values=x), device, 1, args.min_seconds, args.warmup))
        if args.profile:
            with torch.no_grad():
                _profile(lambda: model(pixel_values=x), device, Path(args.profile) / "infer_fp32_b1.txt")
        low = model.to(torch.bfloat16)
        with torch.no_grad():
            bf16 = low(pixel_values=x)
            cosine = F.cosine_similarity(bf16.anomaly_maps.flatten(1).float(), fp32.anomaly_maps.flatten(1)).min()
        for batch in [1, 4] if args.tiny else [1, 8, 32]:
            xb = pixels(batch)
            with torch.no_grad():
                result = _time(lambda xb=xb: low(pixel_values=xb), device, batch, args.min_seconds, args.warmup)
            report("infer", "bfloat16", batch, result, map_cosine_vs_fp32=round(cosine.item(), 6))
        if args.compile:
            compiled = torch.compile(low)
            xb = pixels(8 if args.tiny else 32)
            _run_compiled(
                report,
                "infer",
                "bfloat16",
                xb.shape[0],
                lambda: _time(lambda: compiled(pixel_values=xb), device, xb.shape[0], args.min_seconds, 3),
            )
        model.float()
        if args.compile:
            compiled = torch.compile(model)
            _run_compiled(
                report,
                "infer",
                "float32",
                1,
                lambda: _time(lambda: compiled(pixel_values=x), device, 1, args.min_seconds, 3),
            )
    if "train" in wanted:
        batch = 8
        model.clip.to(torch.bfloat16)
        model.train()
        optimizer = torch.optim.Adam(model.trainable_parameters(), lr=1e-3, betas=(0.5, 0.999))
        xb = pixels(batch)
        labels = torch.tensor([0, 1] * (batch // 2), device=device)
        masks = torch.zeros(batch, image_size, image_size, device=device)
        masks[1::2, : image_size // 4, : image_size // 4] = 1

        def train_step(forward: Callable = model) -> None:
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
                loss = forward(pixel_values=xb, labels=labels, masks=masks).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        report("train", "bfloat16", batch, _time(train_step, device, batch, args.min_seconds, args.warmup))
        if args.profile:
            _profile(train_step, device, Path(args.profile) / "train_bf16_b8.txt")
        if args.compile:
            compiled = torch.compile(model)
            _run_compiled(
                report,
                "train",
                "bfloat16",
                batch,
                lambda: _time(lambda: train_step(compiled), device, batch, args.min_seconds, 3),
            )
        model.eval().float()
    if "tower" in wanted:
        tower = model.clip.to(torch.bfloat16)
        batch = 4 if args.tiny else 32
        xb = pixels(batch).to(torch.bfloat16)
        with torch.no_grad():
            result = _time(
                lambda: tower.get_image_features(pixel_values=xb, interpolate_pos_encoding=True),
                device,
                batch,
                args.min_seconds,
                args.warmup,
            )
        report("tower", "bfloat16", batch, result)
        model.float()
    if "throughput" in wanted:
        from benchmark_throughput import measure_throughput  # the script folder is on sys.path

        low = model.to(torch.bfloat16) if device.type == "cuda" else model
        batch = 4 if args.tiny else 32 if device.type == "cuda" else 1
        result = measure_throughput(
            low, device, batch, num_workers=(args.num_workers,), num_images=4 * batch, rounds=3, warmup=1
        )
        report("throughput", result.pop("dtype"), result.pop("batch"), result)
        model.float()
    report("summary", "-", 0, summarize(records))


def summarize(records: list[dict]) -> dict:
    """The speed issue's ratios and goals from this run's records (None where a measurement is missing)."""

    def speed(mode: str, dtype: str, batch: int, compiled: bool = False) -> float | None:
        for record in records:
            if (record["mode"], record["dtype"], record["batch"], bool(record.get("compiled"))) == (
                mode,
                dtype,
                batch,
                compiled,
            ):
                return record.get("images_per_s")
        return None

    def ratio(numerator: float | None, denominator: float | None) -> float | None:
        return round(numerator / denominator, 3) if numerator and denominator else None

    tower = next((r for r in records if r["mode"] == "tower"), None)
    big = tower["batch"] if tower else 32
    train = next((r for r in records if r["mode"] == "train" and not r.get("compiled")), None)
    throughput = next((r for r in records if r["mode"] == "throughput"), None)
    goals = {
        "eager_bf16_vs_tower": ratio(speed("infer", "bfloat16", big), tower and tower["images_per_s"]),
        "eager_bf16_vs_tower_goal": 0.9,
        "eager_fp32_b1_vs_reference": ratio(speed("infer", "float32", 1), speed("reference", "float32", 1)),
        "eager_fp32_b1_vs_reference_goal": 2.5,
        "compiled_fp32_b1_vs_reference": ratio(
            speed("infer", "float32", 1, compiled=True), speed("reference", "float32", 1)
        ),
        "train_bf16_b8_images_per_s": train and train["images_per_s"],
        "train_bf16_b8_peak_gib": train and train["peak_mem_gib"],
        "train_goal": ">= 150 images/s, <= 2 GiB",
    }
    if throughput:
        goals.update({f"{name}_vs_forward": row["ratio_vs_forward"] for name, row in throughput["results"].items()})
        goals["pipeline_vs_forward_goal"] = 0.8
    return goals


if __name__ == "__main__":
    main()

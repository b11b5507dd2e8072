#!/usr/bin/env python
# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""onnxruntime (CPU) against PyTorch eager (CPU) on FAPrompt, fp32, batch 1, measured alternately in one run.

No downloads: the model is built from ``clip_vit_large_patch14_336_config()`` (ViT-L/14@336) with random weights and
run at 518 px, or from the tiny test configuration with ``--tiny``. It is exported with ``faprompt_hf.export_onnx``
at opset 18 and at opset 23 (into ``--export_dir``, where earlier exports of the same seeded model are reused), then
every variant runs once per round, in turn, so that all of them see the same machine load:

- ``torch_eager``: ``FAPromptModel`` in PyTorch, eager, fp32 (PyTorch's default threads).
- ``ort_default``: the opset-18 graph in an onnxruntime session with default settings.
- ``ort_threads``: the same with ``intra_op_num_threads`` = physical cores, sequential execution, all graph
  optimisations.
- ``ort_fused``: the opset-18 graph after onnxruntime's transformer optimiser (``onnxruntime.transformers.optimizer``,
  model type ``clip``), with the ``ort_threads`` settings.
- ``ort_opset23``: the opset-23 graph, where attention is one ONNX ``Attention`` operator, with the ``ort_threads``
  settings.
- ``ort_int8`` (``--int8``): the opset-18 graph quantised as ``export_onnx(..., quantize="int8")`` does it
  (:func:`faprompt_hf.onnx.export.quantize_onnx_file`: dynamic int8 quantisation of the MatMul weights), with the
  ``ort_threads`` settings.

``--variants`` keeps only the named onnxruntime variants (``torch_eager`` always runs). Prints one JSON object: per
variant the median and minimum seconds per image, the ratio ``torch_eager / variant`` (> 1: faster than eager), the
largest differences from PyTorch's scores and maps and the maps' cosine similarity; ``--results FILE`` appends it to
FILE as one line.

Usage:
    python benchmarks/benchmark_onnx.py --export_dir onnx_bench   # ViT-L/14@336 at 518 px (exports: minutes)
    python benchmarks/benchmark_onnx.py --tiny --rounds 5          # a quick check that the script works
    # int8 against PyTorch eager and the float32 graph, recorded:
    python benchmarks/benchmark_onnx.py --export_dir /tmp/onnx_bench --opsets 18 --int8 --no_fused
        --variants ort_threads ort_int8 --rounds 3 --results benchmarks/results/onnx_cpu.jsonl   (one line)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime
import torch

from benchmark import commit_id  # the script folder is on sys.path when run as a script
from faprompt_hf import FAPromptConfig, FAPromptModel, clip_vit_large_patch14_336_config, export_onnx
from faprompt_hf.onnx import ONNX_FILE_NAME
from faprompt_hf.onnx.export import quantize_onnx_file
from faprompt_hf.tiny import tiny_faprompt_config


def physical_cores() -> int:
    """Physical CPU cores (distinct (package, core) pairs of /proc/cpuinfo), else the logical CPU count."""
    try:
        pairs, package = set(), None
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "physical id":
                package = value.strip()
            elif key.strip() == "core id":
                pairs.add((package, value.strip()))
        if pairs:
            return len(pairs)
    except OSError:
        pass
    return os.cpu_count() or 1


def build_model(tiny: bool) -> tuple[FAPromptModel, int]:
    """The seeded benchmark model (random weights) and its input side."""
    torch.manual_seed(0)
    if tiny:
        return FAPromptModel(tiny_faprompt_config()).eval(), 32
    return FAPromptModel(FAPromptConfig(clip_config=clip_vit_large_patch14_336_config().to_dict())).eval(), 518


def session(path: Path, threads: int | None) -> onnxruntime.InferenceSession:
    """An onnxruntime CPU session; ``threads=None`` keeps every default."""
    options = onnxruntime.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    return onnxruntime.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def fuse_transformer(path: Path, output: Path, model: FAPromptModel) -> Path:
    """Apply onnxruntime's transformer optimiser (model type ``clip``) and save the fused graph."""
    from onnxruntime.transformers.optimizer import optimize_model

    vision = model.config.clip_config.vision_config
    fused = optimize_model(
        str(path), model_type="clip", num_heads=vision.num_attention_heads, hidden_size=vision.hidden_size, opt_level=1
    )
    fused.save_model_to_file(str(output), use_external_data_format=fused.model.ByteSize() >= 2**31)
    return output


def quantize_int8(path: Path, folder: Path) -> tuple[Path, float]:
    """A copy of the graph at ``path``, quantised as ``export_onnx(..., quantize="int8")`` does; and the seconds taken.

    An int8 graph already in ``folder`` is reused (seconds: None).
    """
    output = folder / ONNX_FILE_NAME
    if output.is_file():
        return output, None
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy2(path, output)
    if path.with_name(f"{path.name}.data").is_file():
        shutil.copy2(path.with_name(f"{path.name}.data"), output.with_name(f"{output.name}.data"))
    start = time.perf_counter()
    quantize_onnx_file(output, "int8")
    return output, round(time.perf_counter() - start, 1)


def main() -> None:
    """Parse the arguments, export, measure alternately and print one JSON object."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="Tiny config at 32 px instead of ViT-L/14@336 at 518 px.")
    parser.add_argument("--rounds", type=int, default=5, help="Timed rounds (each runs every variant once).")
    parser.add_argument("--warmup", type=int, default=1, help="Untimed rounds first.")
    parser.add_argument(
        "--export_dir",
        default=None,
        help="Folder for the exports (opset18/, opset23/); ones already there are reused (default: a temporary one).",
    )
    parser.add_argument("--threads", type=int, default=None, help="intra_op_num_threads (default: physical cores).")
    parser.add_argument("--opsets", type=int, nargs="+", default=[18, 23], help="Opsets to export (18 is required).")
    parser.add_argument("--no_fused", action="store_true", help="Skip the transformer-optimiser variant.")
    parser.add_argument("--int8", action="store_true", help="Also measure dynamic int8 quantisation.")
    parser.add_argument(
        "--variants",
        nargs="+",
        default=None,
        help="Keep only these onnxruntime variants (ort_default ort_threads ort_fused ort_opset23 ort_int8).",
    )
    parser.add_argument("--results", default=None, help="Append the JSON object to this file as one line.")
    parser.add_argument("--label", default="", help="A note stored in the output (e.g. 'under contention').")
    args = parser.parse_args()
    wanted = set(args.variants) if args.variants else None

    def keep(name: str) -> bool:
        return wanted is None or name in wanted

    model, side = build_model(args.tiny)
    threads = args.threads or physical_cores()
    work = Path(tempfile.mkdtemp(prefix="faprompt_onnx_bench_"))
    export_root = Path(args.export_dir) if args.export_dir else work
    export_seconds: dict[str, float | None] = {}
    graphs = {}
    if 18 not in args.opsets:
        parser.error("--opsets must include 18 (the baseline graph).")
    for opset in args.opsets:
        directory = export_root / f"opset{opset}"
        export_seconds[f"opset{opset}"] = None
        if not (directory / ONNX_FILE_NAME).is_file():
            start = time.perf_counter()
            export_onnx(model, directory, image_size=side, opset=opset)
            export_seconds[f"opset{opset}"] = round(time.perf_counter() - start, 1)
        graphs[opset] = directory / ONNX_FILE_NAME
    graph = graphs[18]

    pixel_values = torch.randn(1, 3, side, side, generator=torch.Generator().manual_seed(1))
    feed = {"pixel_values": pixel_values.numpy()}
    with torch.no_grad():
        reference = model(pixel_values=pixel_values)
    reference_scores, reference_maps = reference.image_scores.numpy(), reference.anomaly_maps.numpy()

    sessions = {}
    if keep("ort_default"):
        sessions["ort_default"] = session(graph, None)
    if keep("ort_threads"):
        sessions["ort_threads"] = session(graph, threads)
    if not args.no_fused and keep("ort_fused"):
        sessions["ort_fused"] = session(fuse_transformer(graph, work / "fused.onnx", model), threads)
    if 23 in graphs and keep("ort_opset23"):
        sessions["ort_opset23"] = session(graphs[23], threads)
    if args.int8 and keep("ort_int8"):
        int8_graph, export_seconds["int8_quantize"] = quantize_int8(graph, export_root / "int8")
        sessions["ort_int8"] = session(int8_graph, threads)

    def torch_step() -> tuple[np.ndarray, np.ndarray]:
        with torch.no_grad():
            outputs = model(pixel_values=pixel_values)
        return outputs.image_scores.numpy(), outputs.anomaly_maps.numpy()

    steps: dict[str, Callable[[], tuple[np.ndarray, np.ndarray]]] = {"torch_eager": torch_step}
    for name, ort_session in sessions.items():
        steps[name] = lambda ort_session=ort_session: tuple(ort_session.run(["image_scores", "anomaly_maps"], feed))

    times: dict[str, list[float]] = {name: [] for name in steps}
    outputs: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for round_index in range(args.warmup + args.rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            outputs[name] = step()
            if round_index >= args.warmup:
                times[name].append(time.perf_counter() - start)

    eager = statistics.median(times["torch_eager"])
    results = {}
    for name, seconds in times.items():
        scores, maps = outputs[name]
        flat, flat_reference = maps.reshape(-1).astype(np.float64), reference_maps.reshape(-1).astype(np.float64)
        results[name] = {
            "median_s": round(statistics.median(seconds), 4),
            "min_s": round(min(seconds), 4),
            "times_s": [round(value, 3) for value in seconds],
            "speedup_vs_eager": round(eager / statistics.median(seconds), 3),
            # eager / variant within each round (the two ran back to back), then the median: steadier on a busy CPU
            "paired_speedup_median": round(
                statistics.median(a / b for a, b in zip(times["torch_eager"], seconds, strict=True)), 3
            ),
            "max_abs_diff_scores": float(np.abs(scores - reference_scores).max()),
            "max_abs_diff_maps": float(np.abs(maps - reference_maps).max()),
            "map_cosine": float(flat @ flat_reference / (np.linalg.norm(flat) * np.linalg.norm(flat_reference))),
        }
    report = {
        "model": "tiny" if args.tiny else "vit-l-14-336",
        "image_size": side,
        "batch": 1,
        "dtype": "float32",
        "rounds": args.rounds,
        "intra_op_num_threads": threads,
        "export_s": export_seconds,
        "results": results,
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "logical_cpus": os.cpu_count(),
            "physical_cores": physical_cores(),
            "torch_threads": torch.get_num_threads(),
        },
        "versions": {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__},
        "commit": commit_id(),
        "device": f"cpu ({platform.processor() or platform.machine()}, {physical_cores()} physical cores)",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": "python benchmarks/benchmark_onnx.py " + " ".join(sys.argv[1:]),
        "label": args.label,
    }
    print(json.dumps(report, indent=2))
    if args.results:
        Path(args.results).parent.mkdir(parents=True, exist_ok=True)
        with open(args.results, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(report) + "\n")


if __name__ == "__main__":
    main()

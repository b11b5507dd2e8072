#!/usr/bin/env python
# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""What int8 quantisation of the ONNX graph does to detection: AUROC and score ranking against float32.

Takes a trained model (the quickstart's: ``python examples/quickstart.py --output_dir DIR`` writes it to
``DIR/model``), exports it twice with :func:`faprompt_hf.export_onnx` (float32, and ``quantize="int8"``), and scores
the quickstart's held-out synthetic test domains with PyTorch, the float32 graph and the int8 graph, all from the same
normalised pixels. Prints one JSON line (and appends it to ``--results``): per runtime the mean image and pixel AUROC
over the domains (in %), the differences int8 - float32 in points, the Spearman correlation of the int8 image scores
with the float32 graph's, and the maps' cosine similarity.

Usage:
    python examples/quickstart.py --output_dir /tmp/qs
    python benchmarks/int8_quality.py --model /tmp/qs/model --export_dir /tmp/qs_onnx
        --results benchmarks/results/int8_quality.jsonl   (one line)
"""

from __future__ import annotations

import argparse
import platform
import shutil
import time
from pathlib import Path

import numpy as np
import onnxruntime
import torch
from scipy.stats import spearmanr
from torch.utils.data import DataLoader

from benchmark import write_result  # the script folder is on sys.path when run as a script
from faprompt_hf import FAPromptImageProcessor, FAPromptModel, export_onnx
from faprompt_hf.data import FAPromptCollator, defer_decoding, make_synthetic_dataset
from faprompt_hf.metrics import compute_per_class_metrics
from faprompt_hf.onnx import ONNXAnomalyDetector

TEST_DOMAINS = ("blobs", "rings", "dots", "capsule")  # the quickstart's held-out domains
TRAIN_DOMAINS = ("gradient", "stripes", "checker", "nut", "plate")  # the quickstart's training domains


def quantize_static_qdq(float32_dir: Path, output_dir: Path, calibration: np.ndarray) -> None:
    """Static int8 (QDQ) quantisation of the MatMuls, activation ranges calibrated (min-max) on ``calibration``."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{"pixel_values": image[None]} for image in calibration])

        def get_next(self) -> dict | None:
            return next(self.items, None)

    output_dir.mkdir(parents=True, exist_ok=True)
    for file in float32_dir.iterdir():
        if file.suffix == ".json":
            shutil.copy2(file, output_dir / file.name)
    quantize_static(
        str(float32_dir / "model.onnx"),
        str(output_dir / "model.onnx"),
        Reader(),
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=["MatMul"],
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two arrays, flattened, in float64."""
    a, b = a.reshape(-1).astype(np.float64), b.reshape(-1).astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def main() -> None:
    """Export, score the held-out domains three ways and print one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="A trained model folder (the quickstart's DIR/model).")
    parser.add_argument("--export_dir", required=True, help="Folder for the float32/ and int8/ exports.")
    parser.add_argument("--seed", type=int, default=0, help="The quickstart's seed (it draws the test images).")
    parser.add_argument("--num_test_images", type=int, default=40, help="Normal (and as many anomalous) per domain.")
    parser.add_argument("--domains", nargs="+", default=list(TEST_DOMAINS))
    parser.add_argument(
        "--static",
        type=int,
        default=0,
        metavar="N",
        help="Also measure static QDQ int8, calibrated on N images of the quickstart's training domains.",
    )
    parser.add_argument("--results", default=None, help="Append the JSON line to this file too.")
    parser.add_argument("--label", default="", help="A note stored in the output (e.g. 'machine shared').")
    args = parser.parse_args()

    torch.set_num_threads(1)  # the quickstart's setting for the tiny model
    model = FAPromptModel.from_pretrained(args.model).eval()
    size = model.config.image_size
    export_root = Path(args.export_dir)
    export_seconds = {}
    for name, quantize in (("float32", None), ("int8", "int8")):
        start = time.perf_counter()
        export_onnx(model, export_root / name, image_size=size, quantize=quantize)
        export_seconds[name] = round(time.perf_counter() - start, 1)
    names = ["float32", "int8"]
    if args.static:
        per_domain = max(1, args.static // (2 * len(TRAIN_DOMAINS)))
        calibration_set = make_synthetic_dataset(
            TRAIN_DOMAINS, per_domain, per_domain, image_size=max(64, size), seed=args.seed, split="train"
        )
        collate = FAPromptCollator(FAPromptImageProcessor(size=size))
        calibration = collate([calibration_set[index] for index in range(len(calibration_set))])["pixel_values"]
        start = time.perf_counter()
        quantize_static_qdq(export_root / "float32", export_root / "int8_static", calibration.numpy())
        export_seconds["int8_static"] = round(time.perf_counter() - start, 1)
        names.append("int8_static")
    detectors = {name: ONNXAnomalyDetector(export_root / name) for name in names}

    dataset = make_synthetic_dataset(
        args.domains,
        args.num_test_images,
        args.num_test_images,
        image_size=max(64, size),
        seed=args.seed,
        split="test",
    )
    loader = DataLoader(
        defer_decoding(dataset), batch_size=16, collate_fn=FAPromptCollator(FAPromptImageProcessor(size=size))
    )
    collected: dict[str, dict[str, list]] = {name: {"scores": [], "maps": []} for name in ("torch", *detectors)}
    labels, masks, class_names, pixel_batches = [], [], [], []
    for batch in loader:
        pixel_batches.append(batch["pixel_values"].numpy())
        with torch.no_grad():
            outputs = model(pixel_values=batch["pixel_values"])
        collected["torch"]["scores"].append(outputs.image_scores.numpy())
        collected["torch"]["maps"].append(outputs.anomaly_maps.numpy())
        for name, detector in detectors.items():
            scores, maps = detector.run(batch["pixel_values"].numpy())
            collected[name]["scores"].append(scores)
            collected[name]["maps"].append(maps)
        labels.append(batch["labels"].numpy())
        masks.append(batch["masks"].numpy())
        class_names.extend(batch["class_names"])
    all_pixels = np.concatenate(pixel_batches)
    labels_all = np.concatenate(labels).astype(np.int64)
    masks_all = (np.concatenate(masks) > 0.5).astype(np.int64)

    runtimes = {}
    arrays = {}
    for name, parts in collected.items():
        scores, maps = np.concatenate(parts["scores"]), np.concatenate(parts["maps"])
        arrays[name] = (scores, maps)
        metrics = compute_per_class_metrics(class_names, scores, labels_all, maps, masks_all)
        runtimes[name] = {
            "image_auroc": round(100 * metrics["mean"]["image_auroc"], 3),
            "pixel_auroc": round(100 * metrics["mean"]["pixel_auroc"], 3),
            "per_class_image_auroc": {
                key: round(100 * row["image_auroc"], 2) for key, row in metrics.items() if key != "mean"
            },
        }
    int8_scores, int8_maps = arrays["int8"]
    fp32_scores, fp32_maps = arrays["float32"]
    # batch dependence: the same images one at a time (dynamic ranges are per run; static ones are fixed)
    singles = {
        name: np.concatenate([detectors[name].run(image[None])[0] for image in all_pixels])
        for name in detectors
        if name != "float32"
    }
    record = {
        "benchmark": "int8_quality",
        "model": args.model,
        "image_size": size,
        "num_images": len(class_names),
        "domains": args.domains,
        "runtimes": runtimes,
        "int8_minus_float32_points": {
            key: round(runtimes["int8"][key] - runtimes["float32"][key], 3) for key in ("image_auroc", "pixel_auroc")
        },
        "spearman_image_scores_int8_vs_float32": round(float(spearmanr(int8_scores, fp32_scores).statistic), 6),
        "map_cosine_int8_vs_float32": round(cosine(int8_maps, fp32_maps), 6),
        **(
            {
                "int8_static_minus_float32_points": {
                    key: round(runtimes["int8_static"][key] - runtimes["float32"][key], 3)
                    for key in ("image_auroc", "pixel_auroc")
                },
                "spearman_image_scores_int8_static_vs_float32": round(
                    float(spearmanr(arrays["int8_static"][0], fp32_scores).statistic), 6
                ),
                "map_cosine_int8_static_vs_float32": round(cosine(arrays["int8_static"][1], fp32_maps), 6),
                "static_calibration_images": len(calibration),
            }
            if args.static
            else {}
        ),
        "map_cosine_float32_vs_torch": round(cosine(fp32_maps, arrays["torch"][1]), 8),
        "max_abs_diff_scores_int8_vs_float32": float(np.abs(int8_scores - fp32_scores).max()),
        "max_abs_diff_scores_batch16_vs_batch1": {
            name: float(np.abs(values - arrays[name][0]).max()) for name, values in singles.items()
        },
        "quantization": detectors["int8"].config.get("quantization"),
        "export_s": export_seconds,
        "device": f"cpu ({platform.processor() or platform.machine()})",
        "versions": {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__},
        "label": args.label,
    }
    write_result(record, args.results)


if __name__ == "__main__":
    main()

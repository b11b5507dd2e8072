#!/usr/bin/env python
# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
r"""How much normal references help: K-shot metrics, the fusion-weight sweep and a defective reference.

The model is the quickstart's trained tiny model (``python examples/quickstart.py`` writes it to
``quickstart_output/model``); the data are the quickstart's held-out domains (blobs, rings, dots, capsule; 40 normal
and 40 anomalous test images each, 112 px, seed 0). References are drawn by
:func:`~faprompt_hf.few_shot.evaluate_few_shot` from a separate pool of normal images,
``make_synthetic_dataset(domains, 16, 0, split="reference")``; every number is the mean and standard deviation over
the reference seeds (default 0, 1, 2). Metrics use the quickstart's protocol (AUPRO ``exact``), so the zero-shot row
is the quickstart's.

Experiments (one JSON line each, appended to ``--results``):

- ``zero_shot``: no references.
- ``k_shot``: K = 1, 2, 4, 8 references per class at the config's fusion weights.
- ``weight_sweep``: at K = ``--sweep_k``, ``reference_map_weight`` swept with ``reference_score_weight`` at its
  default, then the other way round. Run on the test images and on a separate validation draw of the same domains
  (``split="validation"``), so that a weight is not chosen on the images it is reported on.
- ``defective_reference``: 4 references of which one is replaced by an anomalous image of the same class (from
  ``make_synthetic_dataset(domains, 0, 16, split="reference")``), against the 4 clean ones and the 3 clean ones kept.

Usage:
    python examples/quickstart.py --output_dir quickstart_output      # the model (a few minutes)
    python benchmarks/few_shot_quality.py --model quickstart_output/model \
        --results benchmarks/results/few_shot_quality.jsonl
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from datasets import concatenate_datasets

from benchmark import cpu_description, write_result  # the script folder is on sys.path
from faprompt_hf import FAPromptModel, FAPromptProcessor
from faprompt_hf.data import make_synthetic_dataset
from faprompt_hf.evaluation import evaluate_model
from faprompt_hf.few_shot import (
    FewShotResult,
    aggregate_runs,
    evaluate_few_shot,
    evaluate_with_references,
    select_normal_references,
)
from faprompt_hf.tiny import tiny_clip_tokenizer

TEST_DOMAINS = ("blobs", "rings", "dots", "capsule")
KEYS = ("image_auroc", "image_ap", "pixel_auroc", "pixel_aupro")


def rounded(row: dict[str, float]) -> dict[str, float]:
    """The table metrics of a row, in percent with 2 decimals."""
    return {key: round(100 * row[key], 2) for key in KEYS}


@contextmanager
def fusion_weights(model: FAPromptModel, map_weight: float, score_weight: float) -> Iterator[None]:
    """Set the config's fusion weights for the block, and restore them."""
    saved = model.config.reference_map_weight, model.config.reference_score_weight
    model.config.reference_map_weight, model.config.reference_score_weight = map_weight, score_weight
    try:
        yield
    finally:
        model.config.reference_map_weight, model.config.reference_score_weight = saved


def summary(result: FewShotResult) -> dict[str, Any]:
    """Mean and std (percent) of the mean row, and the per-class means."""
    return {
        "mean": rounded(result.metrics["mean"]),
        "std": rounded(result.metrics_std["mean"]),
        "per_class_mean": {name: rounded(row) for name, row in result.metrics.items() if name != "mean"},
    }


def main() -> None:
    """Parse the arguments, run the experiments and print one JSON line each."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="quickstart_output/model", help="The quickstart's trained model folder.")
    parser.add_argument("--domains", nargs="+", default=list(TEST_DOMAINS))
    parser.add_argument("--num_test_images", type=int, default=40, help="Normal and anomalous images per domain.")
    parser.add_argument("--pool", type=int, default=16, help="Normal reference images per domain in the pool.")
    parser.add_argument("--k_shots", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--weights", type=float, nargs="+", default=[0.0, 0.25, 0.5, 0.75, 1.0])
    parser.add_argument("--sweep_k", type=int, default=4)
    parser.add_argument("--only", nargs="+", default=None, help="Subset of: zero_shot k_shot sweep defective.")
    parser.add_argument("--results", default=None, help="Append every JSON line to this file too.")
    parser.add_argument("--label", default="")
    args = parser.parse_args()
    wanted = set(args.only or ["zero_shot", "k_shot", "sweep", "defective"])

    torch.set_num_threads(1)  # the quickstart's setting: the tiny model does not gain from threads
    model = FAPromptModel.from_pretrained(args.model).eval()
    processor = FAPromptProcessor.from_model_config(model.config, tokenizer=tiny_clip_tokenizer())
    size = model.config.image_size
    domains = list(args.domains)
    n = args.num_test_images
    test = make_synthetic_dataset(domains, n, n, image_size=size, seed=0, split="test")
    pool = make_synthetic_dataset(domains, args.pool, 0, image_size=size, seed=0, split="reference")
    options = {"aupro": "exact", "batch_size": 16}
    common = {
        "benchmark": "few_shot_quality",
        "model": args.model,
        "domains": domains,
        "num_test_images_per_domain": f"{n} normal + {n} anomalous",
        "reference_pool": f"make_synthetic_dataset(domains, {args.pool}, 0, image_size={size}, seed=0, "
        "split='reference')",
        "image_size": size,
        "seeds": args.seeds,
        "aupro": "exact",
        "default_weights": {
            "reference_map_weight": model.config.reference_map_weight,
            "reference_score_weight": model.config.reference_score_weight,
        },
        "device": cpu_description(),
        "command": "python benchmarks/few_shot_quality.py " + " ".join(sys.argv[1:]),
        "label": args.label,
    }

    def report(record: dict[str, Any]) -> None:
        write_result({**common, **record}, args.results)

    def few_shot(dataset: Any, k_shot: int) -> FewShotResult:
        return evaluate_few_shot(model, dataset, pool, processor, k_shot=k_shot, seeds=args.seeds, **options)

    if "zero_shot" in wanted:
        start = time.perf_counter()
        result = evaluate_model(model, test, processor, **options)
        report(
            {
                "experiment": "zero_shot",
                "mean": rounded(result.metrics["mean"]),
                "per_class": {name: rounded(row) for name, row in result.metrics.items() if name != "mean"},
                "seconds": round(time.perf_counter() - start, 1),
            }
        )
    if "k_shot" in wanted:
        for k_shot in args.k_shots:
            start = time.perf_counter()
            result = few_shot(test, k_shot)
            report(
                {
                    "experiment": "k_shot",
                    "k_shot": k_shot,
                    **summary(result),
                    "seconds": round(time.perf_counter() - start, 1),
                }
            )
    if "sweep" in wanted:
        validation = make_synthetic_dataset(domains, n, n, image_size=size, seed=0, split="validation")
        default_map, default_score = model.config.reference_map_weight, model.config.reference_score_weight
        for split, dataset in (("validation", validation), ("test", test)):
            for swept in ("reference_map_weight", "reference_score_weight"):
                for weight in args.weights:
                    map_weight = weight if swept == "reference_map_weight" else default_map
                    score_weight = weight if swept == "reference_score_weight" else default_score
                    with fusion_weights(model, map_weight, score_weight):
                        result = few_shot(dataset, args.sweep_k)
                    report(
                        {
                            "experiment": "weight_sweep",
                            "split": split,
                            "k_shot": args.sweep_k,
                            "swept": swept,
                            "reference_map_weight": map_weight,
                            "reference_score_weight": score_weight,
                            **summary(result),
                        }
                    )
    if "defective" in wanted:
        anomalous = make_synthetic_dataset(domains, 0, args.pool, image_size=size, seed=0, split="reference")
        references = concatenate_datasets([pool, anomalous])
        offset = len(pool)
        anomalous_names = np.asarray(anomalous["class_name"])
        evaluated = set(test["path"])
        runs: dict[str, list] = {"4 normal": [], "3 normal": [], "3 normal + 1 anomalous": []}
        chosen_defects: list[str] = []
        for seed in args.seeds:
            clean = select_normal_references(references, domains, 4, seed, exclude_paths=evaluated)
            rng = np.random.default_rng([seed, 1])
            defective = {}
            for name in domains:
                index = int(rng.choice(np.flatnonzero(anomalous_names == name)))
                chosen_defects.append(f"{name}/{anomalous[index]['defect_type']}")
                defective[name] = clean[name][:3] + [offset + index]
            for condition, selection in (
                ("4 normal", clean),
                ("3 normal", {name: rows[:3] for name, rows in clean.items()}),
                ("3 normal + 1 anomalous", defective),
            ):
                runs[condition].append(
                    evaluate_with_references(model, test, references, selection, processor, **options)
                )
        conditions = {}
        for condition, results in runs.items():
            mean, std = aggregate_runs(results)
            conditions[condition] = {"mean": rounded(mean["mean"]), "std": rounded(std["mean"])}
        drop = {
            key: round(conditions["4 normal"]["mean"][key] - conditions["3 normal + 1 anomalous"]["mean"][key], 2)
            for key in KEYS
        }
        report(
            {
                "experiment": "defective_reference",
                "k_shot": 4,
                "conditions": conditions,
                "drop_vs_4_normal": drop,
                "anomalous_references": chosen_defects,
            }
        )


if __name__ == "__main__":
    main()

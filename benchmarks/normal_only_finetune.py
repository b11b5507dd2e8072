# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""What synthetic anomalies and image-level labels give, measured offline on the quickstart's synthetic domains.

(a) **Normal-only fine-tuning.** Train FAPrompt as ``examples/quickstart.py`` does (tiny random CLIP, five training
    domains with masks), then fine-tune it once per held-out domain on that domain's *normal* training images only,
    with ``synthesize_anomalies`` (each normal image paired with a synthetic defect and its mask). Evaluate each
    fine-tuned model on its domain's test images, which it never saw (real synthetic-generator defects: scratches,
    cracks, stains, holes, bleaching, missing parts), against the zero-shot model and the untrained baseline.
(b) **Labels without masks.** Train as the quickstart does, once with every mask and once with the masks of all
    anomalous images removed (``allow_missing_masks``: the image-level objective only); evaluate zero-shot on the
    held-out domains.

Everything is generated; nothing is downloaded. About 3 minutes on 2 CPU cores::

    python benchmarks/normal_only_finetune.py                     # seed 0, the tables of docs/training.md
    python benchmarks/normal_only_finetune.py --seed 1 --output_dir normal_only_seed1
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from accelerate.state import AcceleratorState, GradientState

from faprompt_hf.data import OBJECT_DOMAINS, make_synthetic_dataset
from faprompt_hf.file_utils import atomic_write
from faprompt_hf.training import FAPromptTrainingArguments, train

REPO_ROOT = Path(__file__).resolve().parents[1]


def _quickstart() -> Any:
    """``examples/quickstart.py`` as a module (its model builder, evaluation and metrics)."""
    spec = importlib.util.spec_from_file_location("quickstart_example", REPO_ROOT / "examples" / "quickstart.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _train(model: Any, dataset: Any, processor: Any, **arguments: Any) -> Any:
    """One training run in this process (accelerate's process-wide state is reset before it)."""
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    return train(model, dataset, processor, FAPromptTrainingArguments(**arguments))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0, help="Seed of the backbone, the data and training.")
    parser.add_argument("--steps", type=int, default=240, help="Steps of the quickstart training (batch 8).")
    parser.add_argument("--finetune_steps", type=int, default=60, help="Fine-tuning steps per held-out domain.")
    parser.add_argument("--num_normal", type=int, default=24, help="Normal training images per held-out domain.")
    parser.add_argument("--num_test_images", type=int, default=40, help="Normal and anomalous test images per domain.")
    parser.add_argument("--output_dir", default="normal_only_output")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run (a) and (b); print the tables and write ``metrics.json``.

    Args:
        argv: Command-line arguments (default: ``sys.argv[1:]``).

    Returns:
        The content of ``metrics.json``.
    """
    args = parse_args(argv)
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.WARNING)
    quickstart = _quickstart()
    output = Path(args.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    size = 112
    model, processor = quickstart.build_model(quickstart.TINY_CLIP, size, args.seed)
    train_domains, test_domains = list(quickstart.TRAIN_DOMAINS), list(quickstart.TEST_DOMAINS)
    train_set = make_synthetic_dataset(train_domains, 24, 24, image_size=size, seed=args.seed, split="train")
    test_set = make_synthetic_dataset(
        test_domains, args.num_test_images, args.num_test_images, image_size=size, seed=args.seed, split="test"
    )
    common = {"image_size": size, "seed": args.seed, "logging_steps": 20}

    # The quickstart model (every mask) and the same training without any mask.
    with_masks = _train(
        model, train_set, processor, output_dir=str(output / "with_masks"), max_steps=args.steps, **common
    )
    no_masks_set = train_set.map(lambda row: {"mask": None})
    fresh, _ = quickstart.build_model(quickstart.TINY_CLIP, size, args.seed)
    without_masks = _train(
        fresh,
        no_masks_set,
        processor,
        output_dir=str(output / "without_masks"),
        max_steps=args.steps,
        allow_missing_masks=True,
        **common,
    )
    zero_shot_results = quickstart.evaluate(with_masks, test_set, processor)
    zero_shot = quickstart.per_class(zero_shot_results)
    baseline = quickstart.per_class(zero_shot_results, prefix="baseline_")
    image_level = quickstart.per_class(quickstart.evaluate(without_masks, test_set, processor))

    # (a) fine-tune the quickstart model per held-out domain on its normal images with synthetic anomalies.
    fine_tuned: dict[str, dict[str, float]] = {}
    for domain in test_domains:
        normal = make_synthetic_dataset([domain], args.num_normal, 0, image_size=size, seed=args.seed, split="train")
        tuned = _train(
            copy.deepcopy(with_masks),
            normal,
            processor,
            output_dir=str(output / f"fine_tuned_{domain}"),
            max_steps=args.finetune_steps,
            synthesize_anomalies=True,
            foreground_threshold="otsu" if domain in OBJECT_DOMAINS else None,
            **common,
        )
        domain_test = test_set.filter(lambda row, name=domain: row["class_name"] == name)
        fine_tuned[domain] = quickstart.per_class(quickstart.evaluate(tuned, domain_test, processor))[domain]
    fine_tuned["mean"] = {
        key: sum(fine_tuned[domain][key] for domain in test_domains) / len(test_domains)
        for key in ("image_auroc", "pixel_auroc")
    }

    def percent(value: float) -> str:
        return f"{100 * value:.1f}"

    rows = [
        "| held-out domain | zero-shot image AUROC | fine-tuned, normal only | baseline | zero-shot pixel AUROC | "
        "fine-tuned, normal only | baseline |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name in [*test_domains, "mean"]:
        rows.append(
            f"| {name} | {percent(zero_shot[name]['image_auroc'])} | {percent(fine_tuned[name]['image_auroc'])} | "
            f"{percent(baseline[name]['image_auroc'])} | {percent(zero_shot[name]['pixel_auroc'])} | "
            f"{percent(fine_tuned[name]['pixel_auroc'])} | {percent(baseline[name]['pixel_auroc'])} |"
        )
    table_a = "\n".join(rows)
    rows = [
        "| held-out domain | image AUROC, trained with masks | without masks (image-level only) | pixel AUROC, with "
        "masks | without masks |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name in [*test_domains, "mean"]:
        rows.append(
            f"| {name} | {percent(zero_shot[name]['image_auroc'])} | {percent(image_level[name]['image_auroc'])} | "
            f"{percent(zero_shot[name]['pixel_auroc'])} | {percent(image_level[name]['pixel_auroc'])} |"
        )
    table_b = "\n".join(rows)
    seconds = time.perf_counter() - start
    print(f"(a) Fine-tuned per held-out domain on its normal images with synthetic anomalies (seed {args.seed}):\n")
    print(table_a)
    print(f"\n(b) Trained on {', '.join(train_domains)} with and without masks, zero-shot (seed {args.seed}):\n")
    print(table_b)
    print(f"\nTotal {seconds:.0f} s. The backbone is a small random CLIP: see docs/training.md for what this shows.")
    metrics = {
        "seed": args.seed,
        "zero_shot": zero_shot,
        "baseline": baseline,
        "fine_tuned_normal_only": fine_tuned,
        "trained_without_masks": image_level,
        "seconds": seconds,
    }
    with atomic_write(output / "metrics.json") as handle:
        json.dump(metrics, handle, indent=2)
    return metrics


if __name__ == "__main__":
    main()

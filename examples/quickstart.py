# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""FAPrompt end to end, offline, in a few minutes on a laptop CPU: train on some products, detect on an unseen one.

1. Build a small, randomly initialised (seeded) CLIP, or load a real one with ``--clip``.
2. Generate synthetic anomaly domains (textures and objects with scratches, cracks, stains, holes, ...).
3. Train FAPrompt's prompts with its real objective on the training domains (``faprompt_hf.training.train``).
4. Evaluate zero-shot on held-out domains that training never saw, beside an untrained baseline on the same
   backbone features, and write ``metrics.json``, heatmap overlays and the trained model to ``--output_dir``.

A random backbone has no pretrained knowledge of defects, so its numbers say that the pipeline works, not how good
FAPrompt is on real data; the baseline (each patch's distance from its image's mean patch feature) shows what the
features alone give. With ``--clip openai/clip-vit-large-patch14-336`` (online) it is a real run.

With ``--k_shot 1 4`` it also evaluates with K normal reference images per held-out domain (few-shot,
``docs/few_shot.md``) and prints those rows beside the zero-shot one.

Usage::

    python examples/quickstart.py
    python examples/quickstart.py --steps 600 --test_domains capsule --output_dir my_run
    python examples/quickstart.py --k_shot 1 2 4 8 --reference_seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from datasets import Dataset
from torch.utils.data import DataLoader
from transformers import CLIPTokenizer

from faprompt_hf import FAPromptModel, FAPromptProcessor
from faprompt_hf.configuration_faprompt import DEFAULT_IMAGE_SIZE
from faprompt_hf.data import DOMAINS, FAPromptCollator, defer_decoding, make_synthetic_dataset
from faprompt_hf.few_shot import evaluate_few_shot, format_mean_std_table
from faprompt_hf.file_utils import atomic_write
from faprompt_hf.hub import write_model_card
from faprompt_hf.metrics import compute_per_class_metrics, format_metrics_table
from faprompt_hf.modeling_faprompt import gaussian_smooth
from faprompt_hf.tiny import tiny_clip_config, tiny_clip_tokenizer, tiny_faprompt_config
from faprompt_hf.training import FAPromptTrainingArguments, train
from faprompt_hf.visualization import comparison_grid, overlay_heatmap

TINY_CLIP = "tiny-random"
TRAIN_DOMAINS = ("gradient", "stripes", "checker", "nut", "plate")
TEST_DOMAINS = ("blobs", "rings", "dots", "capsule")
METRIC_KEYS = ("image_auroc", "image_ap", "pixel_auroc", "pixel_aupro")
SMOKE = {
    "train_domains": ["stripes"],
    "test_domains": ["rings"],
    "image_size": 64,
    "steps": 2,
    "num_train_images": 4,
    "num_test_images": 4,
}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line of the quickstart."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--clip",
        default=TINY_CLIP,
        help="'tiny-random' (offline, seeded) or a CLIP Hub id / folder, e.g. "
        "openai/clip-vit-large-patch14-336 for a real run.",
    )
    parser.add_argument(
        "--image_size",
        type=int,
        default=None,
        help="Image side: default 112 for the tiny CLIP (patch 8: a 14x14 grid), 518 for a real one.",
    )
    parser.add_argument("--steps", type=int, default=240, help="Optimizer steps (batch 8), unless --epochs is given.")
    parser.add_argument("--epochs", type=int, default=None, help="Train for this many epochs instead of --steps.")
    parser.add_argument("--train_domains", nargs="+", default=list(TRAIN_DOMAINS), choices=DOMAINS)
    parser.add_argument(
        "--test_domains",
        nargs="+",
        default=list(TEST_DOMAINS),
        choices=DOMAINS,
        help="Held-out domains for zero-shot evaluation (never seen in training).",
    )
    parser.add_argument(
        "--num_train_images", type=int, default=24, help="Normal and (as many) anomalous training images per domain."
    )
    parser.add_argument(
        "--num_test_images", type=int, default=40, help="Normal and (as many) anomalous test images per domain."
    )
    parser.add_argument("--seed", type=int, default=0, help="Seed of the backbone, the data and training.")
    parser.add_argument(
        "--k_shot",
        type=int,
        nargs="+",
        default=None,
        metavar="K",
        help="Also evaluate K-shot (K normal reference images per held-out domain, drawn from a separate pool of "
        "normal images, split 'reference') for each K given, beside the zero-shot row (docs/few_shot.md).",
    )
    parser.add_argument(
        "--reference_seeds",
        type=int,
        nargs="+",
        default=[0],
        metavar="S",
        help="With --k_shot: the seeds of the reference draws; several give mean ± std over them.",
    )
    parser.add_argument("--output_dir", default="quickstart_output")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="A seconds-long run on tiny data (for the test suite); the numbers mean nothing.",
    )
    args = parser.parse_args(argv)
    if args.smoke:
        for key, value in SMOKE.items():
            setattr(args, key, value)
        args.epochs = None
    overlap = set(args.train_domains) & set(args.test_domains)
    if overlap:
        parser.error(f"--test_domains must be held out of --train_domains; both have {sorted(overlap)}.")
    if args.image_size is None:
        args.image_size = 112 if args.clip == TINY_CLIP else DEFAULT_IMAGE_SIZE
    if args.k_shot and min(args.k_shot) < 1:
        parser.error(f"--k_shot values must be >= 1, got {args.k_shot}.")
    if min(args.reference_seeds) < 0 or len(set(args.reference_seeds)) != len(args.reference_seeds):
        parser.error(f"--reference_seeds must be distinct integers >= 0, got {args.reference_seeds}.")
    return args


def build_model(clip: str, image_size: int, seed: int) -> tuple[FAPromptModel, FAPromptProcessor]:
    """A fresh FAPrompt on a seeded tiny random CLIP, or on a pretrained CLIP.

    Args:
        clip: ``"tiny-random"`` or a CLIP Hub id / folder.
        image_size: Input side (a multiple of the patch size: 8 for the tiny CLIP).
        seed: Seed of the random backbone and of the prompts.

    Returns:
        ``(model, processor)``.
    """
    torch.manual_seed(seed)
    if clip == TINY_CLIP:
        # The tiny model's operations are too small to gain from several threads, and on a busy machine waiting
        # threads make each step many times slower (measured: 0.1 s with one thread, up to 3 s with two).
        torch.set_num_threads(1)
        tokenizer = tiny_clip_tokenizer()
        clip_config = tiny_clip_config(
            tokenizer, hidden_size=64, image_size=image_size, patch_size=8, projection_dim=64
        )
        model = FAPromptModel(tiny_faprompt_config(tokenizer, clip_config, image_size=image_size))
    else:
        tokenizer = CLIPTokenizer.from_pretrained(clip)
        model = FAPromptModel.from_clip(clip, image_size=image_size)
    return model, FAPromptProcessor.from_model_config(model.config, tokenizer=tokenizer)


def baseline_maps(patch_embeds: torch.Tensor, size: int, sigma: float) -> torch.Tensor:
    """Untrained baseline: each patch's distance from its image's mean patch feature, as a smoothed map.

    Args:
        patch_embeds: Normalised V-V patch embeddings without the class token (B, G, D), G a square grid.
        size: Output side in pixels.
        sigma: Gaussian smoothing, as the model's maps.

    Returns:
        Maps (B, size, size).
    """
    distances = (patch_embeds - patch_embeds.mean(1, keepdim=True)).norm(dim=-1)
    side = int(round(distances.shape[1] ** 0.5))
    grid = distances.view(-1, 1, side, side)
    maps = F.interpolate(grid, size=(size, size), mode="bilinear", align_corners=False)[:, 0]
    return gaussian_smooth(maps, sigma)


@torch.no_grad()
def evaluate(model: FAPromptModel, dataset: Dataset, processor: FAPromptProcessor) -> dict[str, Any]:
    """Score every test image with the model and with the baseline (one backbone pass for both).

    Args:
        model: The model.
        dataset: Test data in the loaders' schema.
        processor: Its processor.

    Returns:
        Numpy arrays ``scores``, ``maps``, ``baseline_scores``, ``baseline_maps``, ``labels``, ``masks`` and the
        list ``class_names``.
    """
    model.eval()
    device = next(model.parameters()).device
    loader = DataLoader(defer_decoding(dataset), batch_size=16, collate_fn=FAPromptCollator(processor))
    collected: dict[str, list] = {
        key: [] for key in ("scores", "maps", "baseline_scores", "baseline_maps", "labels", "masks", "class_names")
    }
    for batch in loader:
        pixel_values = batch["pixel_values"].to(device)
        outputs = model(pixel_values=pixel_values)
        baseline = baseline_maps(outputs.patch_embeds[:, 1:], pixel_values.shape[-1], model.config.gaussian_sigma)
        collected["scores"].append(outputs.image_scores.cpu())
        collected["maps"].append(outputs.anomaly_maps.cpu())
        collected["baseline_scores"].append(baseline.flatten(1).amax(1).cpu())
        collected["baseline_maps"].append(baseline.cpu())
        collected["labels"].append(batch["labels"])
        collected["masks"].append(batch["masks"])
        collected["class_names"].extend(batch["class_names"])
    results = {key: torch.cat(values).float().numpy() for key, values in collected.items() if key != "class_names"}
    results["class_names"] = collected["class_names"]
    return results


def per_class(results: dict[str, Any], prefix: str = "") -> dict[str, dict[str, float]]:
    """Per-class and mean metrics (``METRIC_KEYS``) of the model (``prefix=""``) or the baseline."""
    metrics = compute_per_class_metrics(
        results["class_names"],
        results[f"{prefix}scores"],
        results["labels"].astype(np.int64),
        results[f"{prefix}maps"],
        results["masks"].astype(np.int64),
    )
    return {name: {key: row[key] for key in METRIC_KEYS} for name, row in metrics.items()}


def few_shot_rows(
    model: FAPromptModel,
    test_set: Dataset,
    processor: FAPromptProcessor,
    args: argparse.Namespace,
    data_size: int,
) -> dict[str, Any]:
    """K-shot metrics on the held-out domains for each ``--k_shot``, references from a separate normal pool.

    Returns:
        ``{"reference_pool": description, "reference_seeds": [...], "k_shot": {K: {"metrics", "metrics_std",
        "references"}}}``; metrics per domain and ``"mean"`` (``METRIC_KEYS``), mean and std over the seeds.
    """
    pool_size = max(16, *args.k_shot)
    pool = make_synthetic_dataset(
        args.test_domains, pool_size, 0, image_size=data_size, seed=args.seed, split="reference"
    )
    rows: dict[str, Any] = {}
    for k_shot in args.k_shot:
        result = evaluate_few_shot(
            model, test_set, pool, processor, k_shot=k_shot, seeds=args.reference_seeds, aupro="exact", batch_size=16
        )
        rows[str(k_shot)] = {
            "metrics": {name: {key: row[key] for key in METRIC_KEYS} for name, row in result.metrics.items()},
            "metrics_std": {name: {key: row[key] for key in METRIC_KEYS} for name, row in result.metrics_std.items()},
            "references": {str(seed): paths for seed, paths in result.references.items()},
        }
    return {
        "reference_pool": f"make_synthetic_dataset({list(args.test_domains)}, {pool_size}, 0, "
        f"image_size={data_size}, seed={args.seed}, split='reference')",
        "reference_seeds": list(args.reference_seeds),
        "k_shot": rows,
    }


def write_overlays(dataset: Dataset, results: dict[str, Any], folder: Path, per_domain: int = 2) -> list[Path]:
    """Write heatmap overlays of a few anomalous test images per domain, and a comparison grid of them.

    Returns:
        The written files.
    """
    folder.mkdir(parents=True, exist_ok=True)
    chosen: list[int] = []
    for domain in dict.fromkeys(results["class_names"]):
        anomalous = [
            index
            for index, (name, label) in enumerate(zip(results["class_names"], results["labels"], strict=True))
            if name == domain and label == 1
        ]
        chosen.extend(anomalous[::3][:per_domain])  # anomalous images cycle through defect types: vary them
    images = [dataset[index]["image"] for index in chosen]
    written = []
    for index, image in zip(chosen, images, strict=True):
        row = dataset[index]
        path = folder / f"{row['class_name']}_{row['defect_type']}_{index:03d}.png"
        with atomic_write(path, "wb") as handle:
            overlay_heatmap(image, results["maps"][index]).save(handle, format="PNG")
        written.append(path)
    titles = [
        f"{dataset[index]['class_name']} / {dataset[index]['defect_type']}: score {results['scores'][index]:.2f}"
        for index in chosen
    ]
    grid = comparison_grid(
        images,
        [results["maps"][index] for index in chosen],
        masks=[results["masks"][index] for index in chosen],
        titles=titles,
        tile_size=160,
    )
    with atomic_write(folder / "comparison_grid.png", "wb") as handle:
        grid.save(handle, format="PNG")
    return [*written, folder / "comparison_grid.png"]


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the quickstart.

    Args:
        argv: Command-line arguments (default: ``sys.argv[1:]``).

    Returns:
        The content of ``metrics.json``.
    """
    args = parse_args(argv)
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.WARNING)
    start = time.perf_counter()
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)

    model, processor = build_model(args.clip, args.image_size, args.seed)
    data_size = max(64, args.image_size)
    train_set = make_synthetic_dataset(
        args.train_domains,
        args.num_train_images,
        args.num_train_images,
        image_size=data_size,
        seed=args.seed,
        split="train",
    )
    test_set = make_synthetic_dataset(
        args.test_domains,
        args.num_test_images,
        args.num_test_images,
        image_size=data_size,
        seed=args.seed,
        split="test",
    )
    print(
        f"Training on {', '.join(args.train_domains)} ({len(train_set)} images); held-out test domains: "
        f"{', '.join(args.test_domains)} ({len(test_set)} images). Backbone: {args.clip}."
    )

    training_args = FAPromptTrainingArguments(
        output_dir=str(output_dir / "model"),
        num_train_epochs=args.epochs or 1,
        max_steps=-1 if args.epochs else args.steps,
        image_size=args.image_size,
        seed=args.seed,
        logging_steps=max(1, min(20, args.steps // 4)),
    )
    dataset_name = f"synthetic ({', '.join(args.train_domains)})"
    before_training = per_class(evaluate(model, test_set, processor))["mean"]
    train_start = time.perf_counter()
    model = train(model, train_set, processor, training_args, base_model=args.clip, dataset_name=dataset_name)
    train_seconds = time.perf_counter() - train_start

    results = evaluate(model, test_set, processor)
    metrics: dict[str, Any] = per_class(results)
    metrics["baseline"] = per_class(results, prefix="baseline_")
    if args.k_shot:
        metrics["few_shot"] = few_shot_rows(model, test_set, processor, args, data_size)
    with atomic_write(output_dir / "metrics.json") as handle:
        json.dump(metrics, handle, indent=2)
    write_model_card(
        training_args.output_dir,
        training_args,
        base_model=args.clip,
        dataset_name=dataset_name,
        metrics={name: row for name, row in metrics.items() if name not in ("baseline", "few_shot")},
        metrics_description=f"Zero-shot on held-out synthetic domains ({', '.join(args.test_domains)}).",
    )
    overlays = write_overlays(test_set, results, output_dir / "overlays")

    print("\nFAPrompt, zero-shot on held-out domains:")
    print(format_metrics_table({name: row for name, row in metrics.items() if name not in ("baseline", "few_shot")}))
    print("\nUntrained baseline on the same backbone features (patch distance from the image's mean patch):")
    print(format_metrics_table(metrics["baseline"]))
    print(
        "\nMean image / pixel AUROC on the held-out domains: FAPrompt {:.1f} / {:.1f}, the same model before "
        "training {:.1f} / {:.1f}, baseline {:.1f} / {:.1f}.".format(
            *(
                100 * row[key]
                for row in (metrics["mean"], before_training, metrics["baseline"]["mean"])
                for key in ("image_auroc", "pixel_auroc")
            )
        )
    )
    if args.k_shot:
        few_shot = metrics["few_shot"]
        seeds = ", ".join(map(str, few_shot["reference_seeds"]))
        spread = f"mean ± std over reference seeds {seeds}" if len(few_shot["reference_seeds"]) > 1 else f"seed {seeds}"
        table_rows = {"zero-shot": {key: metrics["mean"][key] for key in METRIC_KEYS}}
        table_std = {"zero-shot": {key: float("nan") for key in METRIC_KEYS}}
        for k_shot, row in few_shot["k_shot"].items():
            table_rows[f"{k_shot}-shot"] = row["metrics"]["mean"]
            table_std[f"{k_shot}-shot"] = row["metrics_std"]["mean"]
        print(
            f"\nZero-shot and K-shot on the held-out domains (mean over domains; K normal references per domain from "
            f"a separate pool of normal images, {spread}):"
        )
        print(format_mean_std_table(table_rows, table_std, METRIC_KEYS).replace("| class |", "| setting |"))
    if args.clip == TINY_CLIP:
        print(
            "\nThe backbone is a small random CLIP: compare the method with the baseline, not with published numbers."
        )
    print(
        f"\nWrote {output_dir / 'metrics.json'}, {len(overlays)} overlays in {output_dir / 'overlays'} and the "
        f"model in {training_args.output_dir}. Training took {train_seconds:.0f} s; total "
        f"{time.perf_counter() - start:.0f} s."
    )
    return metrics


if __name__ == "__main__":
    main()

# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""Zero-shot evaluation of an FAPrompt model on an anomaly-detection dataset.

The default protocol is the released evaluation's (the published table): the model's image size (518 px) and
smoothing sigma (10), metrics per class then averaged over classes, AUPRO in the "original" definition (200
thresholds). Prints a markdown table and writes metrics.json, metrics.csv, metrics.md and image_scores.csv to
--output_dir. See docs/evaluation.md.

One process:
    python examples/evaluate.py --model path/or/hub-id --dataset_format mvtec --dataset_path /data/mvtec

Several GPUs (the data is sharded, the outputs gathered; same numbers as one process):
    accelerate launch --multi_gpu --num_processes 4 examples/evaluate.py --model ... --dataset_format visa ...

Several CPU processes (accelerate's --cpu launcher starts a single process unless MPI is set up):
    accelerate launch --multi_gpu --num_processes 2 examples/evaluate.py --use_cpu --model ...

An original checkpoint, converted on the fly:
    python examples/evaluate.py --original_checkpoint epoch_15.pth --clip openai/clip-vit-large-patch14-336 ...
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

from accelerate import Accelerator

from faprompt_hf.data import DATASET_FORMATS, load_dataset_by_format
from faprompt_hf.evaluation import DEFAULT_AUPRO, EvaluationResult, evaluate_model, load_evaluation_model, save_heatmaps
from faprompt_hf.script_flags import (
    argparse_type,
    non_negative_float,
    parse_column_mapping,
    parse_json_object,
    positive_int,
)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of this script."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_argument_group("model")
    source.add_argument("--model", help="Hub id or directory of a transformers FAPrompt checkpoint.")
    source.add_argument("--original_checkpoint", help="Instead: an original FAPrompt epoch_N.pth, converted on load.")
    source.add_argument(
        "--clip",
        help="With --original_checkpoint: the CLIP it was trained on (id, dir or .pt file). With --model (a compact "
        "checkpoint): the CLIP to load instead of the one its config names, e.g. a local copy.",
    )
    data = parser.add_argument_group("data")
    data.add_argument(
        "--dataset_format", required=True, choices=DATASET_FORMATS, help="How to read the data (as in train.py)."
    )
    data.add_argument("--dataset_path", help="Dataset folder, or hub id / path for --dataset_format hub.")
    data.add_argument("--split", default="test", help="Split to evaluate (default: test).")
    data.add_argument("--classes", nargs="+", help="Classes to evaluate (space- or comma-separated; default all).")
    data.add_argument(
        "--column_mapping",
        type=argparse_type(parse_column_mapping, "column mapping"),
        help="hub: our column -> theirs, as ours=theirs,... or a JSON object (as in train.py).",
    )
    data.add_argument(
        "--dataset_kwargs",
        type=argparse_type(lambda text: parse_json_object(text, "--dataset_kwargs"), "JSON object"),
        default={},
        help='More loader arguments as JSON, e.g. \'{"split_csv": "..."}\' (visa), \'{"require_masks": false}\' '
        '(folder, meta_json), \'{"n_normal": 4, "image_size": 128}\' (synthetic).',
    )
    data.add_argument("--resize_mismatched_masks", action="store_true", help="Resize masks whose size differs.")
    protocol = parser.add_argument_group("protocol")
    protocol.add_argument(
        "--image_size", type=positive_int("--image_size"), help="Evaluation side in px (default: the model's, 518)."
    )
    protocol.add_argument(
        "--gaussian_sigma",
        "--sigma",
        dest="gaussian_sigma",
        type=non_negative_float("--gaussian_sigma"),
        help="Anomaly-map smoothing sigma in px, >= 0; 0 turns smoothing off (default: the model's, 10; --sigma is "
        "an alias).",
    )
    protocol.add_argument(
        "--aupro",
        choices=("original", "exact"),
        default=DEFAULT_AUPRO,
        help="AUPRO definition: 'original' (default, the released evaluation: 200 thresholds, rescaled FPRs) or "
        "'exact' (MVTec AD: every threshold, area up to FPR 0.3 divided by 0.3).",
    )
    protocol.add_argument(
        "--pixel_metrics_size",
        type=positive_int("--pixel_metrics_size"),
        help="Pool maps and masks to this side before pixel metrics (saves memory).",
    )
    protocol.add_argument("--no_pixel_metrics", action="store_true", help="Image-level metrics only.")
    run = parser.add_argument_group("run")
    run.add_argument(
        "--batch_size",
        "--per_device_eval_batch_size",
        dest="batch_size",
        type=positive_int("--batch_size"),
        default=8,
        help="Images per forward pass and process (as train.py's --batch_size).",
    )
    run.add_argument(
        "--dataloader_num_workers",
        "--num_workers",
        dest="num_workers",
        type=positive_int("--dataloader_num_workers", 0),
        default=2,
        help="Data-loader workers per process (as train.py's; --num_workers is an alias).",
    )
    run.add_argument(
        "--use_cpu", "--cpu", dest="use_cpu", action="store_true", help="Run on CPU even when a GPU is available."
    )
    run.add_argument("--output_dir", default="outputs/evaluation")
    run.add_argument(
        "--save_heatmaps",
        type=positive_int("--save_heatmaps", 0),
        default=0,
        metavar="N",
        help="Heatmap grid of N images per class.",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> EvaluationResult:
    """Run the evaluation.

    Args:
        argv: Command-line arguments (default: ``sys.argv[1:]``).

    Returns:
        The evaluation result (the same on every process).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if (args.model is None) == (args.original_checkpoint is None):
        parser.error("give exactly one of --model and --original_checkpoint")
    if args.original_checkpoint and not args.clip:
        parser.error("--original_checkpoint needs --clip")
    classes = [name for item in args.classes or [] for name in item.split(",") if name] or None

    accelerator = Accelerator(cpu=args.use_cpu)
    logging.basicConfig(level=logging.INFO if accelerator.is_main_process else logging.WARNING, format="%(message)s")
    model, image_processor = load_evaluation_model(args.model, args.original_checkpoint, args.clip)
    with accelerator.main_process_first():
        dataset = load_dataset_by_format(
            args.dataset_format, args.dataset_path, args.split, classes, args.column_mapping, **args.dataset_kwargs
        )
    result = evaluate_model(
        model,
        dataset,
        image_processor,
        batch_size=args.batch_size,
        aupro=args.aupro,
        accelerator=accelerator,
        pixel_metrics=not args.no_pixel_metrics,
        pixel_metrics_size=args.pixel_metrics_size,
        image_size=args.image_size,
        gaussian_sigma=args.gaussian_sigma,
        num_workers=args.num_workers,
        resize_mismatched_masks=args.resize_mismatched_masks,
        heatmaps_per_class=args.save_heatmaps,
        show_progress=True,
    )
    if accelerator.is_main_process:
        run = {
            "model": args.model,
            "original_checkpoint": args.original_checkpoint,
            "clip": args.clip,
            "dataset_format": args.dataset_format,
            "dataset_path": args.dataset_path,
            "split": args.split,
            "classes": classes,
            "batch_size": args.batch_size,
            "num_processes": accelerator.num_processes,
        }
        written = result.save(args.output_dir, extra=run)
        if args.save_heatmaps:
            written.update(
                {f"heatmap {path.stem}": path for path in save_heatmaps(result, dataset, f"{args.output_dir}/heatmaps")}
            )
        protocol = result.protocol
        print(
            f"FAPrompt zero-shot, {protocol['num_images']} images, {protocol['num_classes']} classes, "
            f"{protocol['image_size']} px, sigma {protocol['gaussian_sigma']:g}, AUPRO {protocol['aupro']} "
            "(metrics per class, then the mean):\n"
        )
        print(result.table)
        for name, why in protocol.get("pixel_metrics_missing", {}).items():
            print(f"{name}: no pixel metrics, {why}")
        print()
        for kind, path in written.items():
            print(f"{kind}: {path}")
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return result


if __name__ == "__main__":
    main()

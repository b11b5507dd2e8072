# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""``faprompt-hf evaluate`` and ``examples/evaluate.py``: zero-shot evaluation from the command line.

The flags are defined once, in :func:`faprompt_hf.cli_flags.add_evaluate_arguments`. The protocol is the released
evaluation's; see ``docs/evaluation.md`` and ``docs/cli.md``.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from accelerate import Accelerator

from .cli_flags import add_evaluate_arguments
from .data import load_dataset_by_format
from .evaluation import EvaluationResult, evaluate_model, load_evaluation_model, save_heatmaps
from .few_shot import FewShotResult, default_reference_split, evaluate_few_shot, load_reference_dataset
from .launch import warn_if_fewer_processes

if TYPE_CHECKING:
    from datasets import Dataset

    from .image_processing_faprompt import FAPromptImageProcessor
    from .modeling_faprompt import FAPromptModel

logger = logging.getLogger(__name__)

__all__ = ["build_parser", "main"]


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """The parser of ``faprompt-hf evaluate`` / ``examples/evaluate.py``.

    Args:
        prog: The program name shown in messages.

    Returns:
        The parser.
    """
    return add_evaluate_arguments(
        argparse.ArgumentParser(prog=prog, description="Zero-shot evaluation of an FAPrompt model on a dataset.")
    )


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> EvaluationResult | FewShotResult:
    """Run the evaluation.

    Args:
        argv: Command-line arguments (default: ``sys.argv[1:]``).
        prog: The program name shown in messages (default: the script's).

    Returns:
        The evaluation result (the same on every process): a [`FewShotResult`] with ``--k_shot``.

    Raises:
        ValueError: With ``--k_shot``: the reference split cannot be loaded, or a class has fewer than K normal
            reference images (the message names the class and its count).
    """
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    if (args.model is None) == (args.original_checkpoint is None):
        parser.error("give exactly one of --model and --original_checkpoint")
    if args.original_checkpoint and not args.clip:
        parser.error("--original_checkpoint needs --clip")
    if args.k_shot is None and (
        args.reference_seed is not None or args.reference_seeds is not None or args.reference_split is not None
    ):
        parser.error(
            "--reference_seed, --reference_seeds and --reference_split choose few-shot references: add --k_shot K."
        )
    classes = [name for item in args.classes or [] for name in item.split(",") if name] or None

    accelerator = Accelerator(cpu=args.use_cpu)
    logging.basicConfig(level=logging.INFO if accelerator.is_main_process else logging.WARNING, format="%(message)s")
    warn_if_fewer_processes(accelerator.num_processes)
    model, image_processor = load_evaluation_model(args.model, args.original_checkpoint, args.clip)
    with accelerator.main_process_first():
        dataset = load_dataset_by_format(
            args.dataset_format, args.dataset_path, args.split, classes, args.column_mapping, **args.dataset_kwargs
        )
    if args.k_shot is not None:
        return _few_shot_main(args, accelerator, model, image_processor, dataset, classes)
    result = evaluate_model(model, dataset, image_processor, **_evaluation_options(args, accelerator))
    if accelerator.is_main_process:
        written = result.save(args.output_dir, extra=_run_record(args, classes, accelerator.num_processes))
        if args.save_heatmaps:
            written.update(
                {f"heatmap {path.stem}": path for path in save_heatmaps(result, dataset, f"{args.output_dir}/heatmaps")}
            )
        _print_report("FAPrompt zero-shot", result.protocol, result.table, written)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return result


def _evaluation_options(args: argparse.Namespace, accelerator: Accelerator) -> dict[str, Any]:
    """The options of :func:`evaluate_model` that the flags set (zero-shot and ``--k_shot`` alike)."""
    return {
        "batch_size": args.batch_size,
        "aupro": args.aupro,
        "accelerator": accelerator,
        "pixel_metrics": not args.no_pixel_metrics,
        "pixel_metrics_size": args.pixel_metrics_size,
        "image_size": args.image_size,
        "gaussian_sigma": args.gaussian_sigma,
        "num_workers": args.num_workers,
        "resize_mismatched_masks": args.resize_mismatched_masks,
        "heatmaps_per_class": args.save_heatmaps,
        "show_progress": True,
    }


def _few_shot_main(
    args: argparse.Namespace,
    accelerator: Accelerator,
    model: FAPromptModel,
    image_processor: FAPromptImageProcessor,
    dataset: Dataset,
    classes: list[str] | None,
) -> FewShotResult:
    """``--k_shot``: draw references from the reference split, evaluate per seed, print mean ± std and save."""
    split = args.reference_split or default_reference_split(args.dataset_format)
    seeds = args.reference_seeds or [args.reference_seed or 0]
    with accelerator.main_process_first():
        references = load_reference_dataset(
            args.dataset_format,
            args.dataset_path,
            split,
            classes or list(dict.fromkeys(dataset["class_name"])),
            args.column_mapping,
            k_shot=args.k_shot,
            **args.dataset_kwargs,
        )
    result = evaluate_few_shot(
        model,
        dataset,
        references,
        image_processor,
        k_shot=args.k_shot,
        seeds=seeds,
        reference_split=split,
        **_evaluation_options(args, accelerator),
    )
    if accelerator.is_main_process:
        written = result.save(args.output_dir, extra=_run_record(args, classes, accelerator.num_processes))
        if args.save_heatmaps:
            heatmaps = save_heatmaps(result.runs[0], dataset, f"{args.output_dir}/heatmaps")
            written.update({f"heatmap {path.stem} (seed {seeds[0]})": path for path in heatmaps})
        spread = f"mean ± std over seeds {', '.join(map(str, seeds))}" if len(seeds) > 1 else f"seed {seeds[0]}"
        title = (
            f"FAPrompt {args.k_shot}-shot ({args.k_shot} normal reference image(s) per class from split {split!r}, "
            f"{spread})"
        )
        _print_report(title, result.protocol, result.table, written)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return result


def _print_report(title: str, protocol: dict[str, Any], table: str, written: dict[str, Any]) -> None:
    """Print an evaluation's summary line, its table, the classes without pixel metrics and the files written."""
    print(  # noqa: T201 (the command's output)
        f"{title}, {protocol['num_images']} images, {protocol['num_classes']} classes, {protocol['image_size']} px, "
        f"sigma {protocol['gaussian_sigma']:g}, AUPRO {protocol['aupro']} (metrics per class, then the mean):\n"
    )
    print(table)  # noqa: T201
    for name, why in protocol.get("pixel_metrics_missing", {}).items():
        print(f"{name}: no pixel metrics, {why}")  # noqa: T201
    print()  # noqa: T201
    for kind, path in written.items():
        print(f"{kind}: {path}")  # noqa: T201


def _run_record(args: argparse.Namespace, classes: list[str] | None, num_processes: int) -> dict[str, object]:
    """What ``metrics.json`` records under ``run``."""
    return {
        "model": args.model,
        "original_checkpoint": args.original_checkpoint,
        "clip": args.clip,
        "dataset_format": args.dataset_format,
        "dataset_path": args.dataset_path,
        "split": args.split,
        "classes": classes,
        "batch_size": args.batch_size,
        "num_processes": num_processes,
    }

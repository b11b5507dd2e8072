# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""The one definition of every command-line flag of ``faprompt-hf`` and of the example scripts.

This module imports neither torch nor transformers (nor anything that does), so that every ``--help`` answers at
once; the commands import the library only when they run.

Where a flag is defined:

- ``faprompt-hf train`` / ``examples/train.py``: the fields of :class:`TrainScriptArguments` (model and data) and of
  :class:`faprompt_hf.training_args.FAPromptTrainingArguments` (hyper-parameters and run options). A new training
  option is one new field in one of them; :func:`add_dataclass_arguments` turns fields into flags (name, type,
  default, choices, ``aliases`` and ``help`` from the field's metadata, as ``transformers.HfArgumentParser`` does).
- ``faprompt-hf evaluate`` / ``examples/evaluate.py``: :func:`add_evaluate_arguments`.
- ``faprompt-hf predict``: :func:`add_predict_arguments`.
- ``faprompt-hf convert`` and ``export``: :func:`add_convert_arguments`, :func:`add_export_arguments`.
- ``faprompt-hf references``: :func:`add_references_arguments`.
- ``faprompt-hf app`` / ``examples/app.py``: :func:`add_app_arguments` and :func:`parse_app_args`.

Every help line shows the default (:func:`with_default`).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .defaults import (
    DATASET_FORMATS,
    DEFAULT_AUPRO,
    DEFAULT_CLIP,
    DEFAULT_IMAGE_SIZE,
    DEFAULT_ONNX_OPSET,
    DEFAULT_REFERENCE_SPLIT,
    MIX_STRATEGIES,
    PAPER_DATASET_FORMATS,
    SYNTHETIC_REFERENCE_SPLIT,
)
from .script_flags import argparse_type, non_negative_float, parse_column_mapping, parse_json_object, positive_int
from .training_args import FAPromptTrainingArguments

__all__ = [
    "APP_CACHE_ENV",
    "APP_DESCRIPTION",
    "APP_LIMIT_DEFAULTS",
    "APP_MODEL_ENV",
    "DTYPES",
    "SYNTHETIC_TRAIN_DOMAINS",
    "TRAIN_REPEATABLE_FLAGS",
    "TrainScriptArguments",
    "add_app_arguments",
    "add_convert_arguments",
    "add_dataclass_arguments",
    "add_evaluate_arguments",
    "add_export_arguments",
    "add_few_shot_arguments",
    "add_predict_arguments",
    "add_references_arguments",
    "add_train_arguments",
    "dataclasses_from_namespace",
    "parse_app_args",
    "show_defaults",
    "string_to_bool",
    "threshold_type",
    "with_default",
]

SYNTHETIC_TRAIN_DOMAINS = ("gradient", "stripes", "checker", "nut", "plate")
"""The synthetic domains ``train --dataset synthetic`` trains on by default (the quickstart's)."""

DTYPES = ("float32", "bfloat16", "float16")
"""Values of ``predict --dtype``."""

TRAIN_REPEATABLE_FLAGS = ("dataset_format", "dataset_path")
"""Training flags that may be given several times: one per dataset of a mix (with ``--mix_strategy``)."""


def with_default(help_text: str, default: Any) -> str:
    """``help_text`` with ``(default: X)`` appended, unless it already states its default.

    Args:
        help_text: The flag's help.
        default: Its default value.

    Returns:
        The help line.
    """
    if "default" in help_text.lower():
        return help_text
    shown = "off" if default is False else ("not set" if default is None else default)
    return f"{help_text} (default: {shown})".strip()


def show_defaults(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Append ``(default: X)`` to the help of every optional flag of ``parser`` that does not state its default.

    Args:
        parser: The parser.

    Returns:
        The same parser.
    """
    for action in parser._actions:
        if action.option_strings and action.help not in (None, argparse.SUPPRESS) and action.dest != "help":
            if not action.required:
                action.help = with_default(action.help, action.default)
    return parser


def string_to_bool(text: str) -> bool:
    """An argparse type for ``--flag true|false`` (``yes``/``no``, ``1``/``0`` too), as HfArgumentParser takes."""
    lowered = text.strip().lower()
    if lowered in ("true", "yes", "y", "1", "on"):
        return True
    if lowered in ("false", "no", "n", "0", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _field_type(annotation: Any) -> tuple[Any, bool]:
    """The base type of a field annotation and whether it is a list (``int | None`` -> ``(int, False)``)."""
    if isinstance(annotation, str):
        annotation = eval(annotation, {"list": list, "str": str, "int": int, "float": float, "bool": bool})  # noqa: S307
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        members = [member for member in typing.get_args(annotation) if member is not type(None)]
        annotation = members[0]
        origin = typing.get_origin(annotation)
    if origin is list:
        return typing.get_args(annotation)[0], True
    return annotation, False


def add_dataclass_arguments(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    cls: type,
    repeatable: Sequence[str] = (),
) -> None:
    """Add one flag per field of the dataclass ``cls`` (``--name``, plus the ``aliases`` of its metadata).

    Types follow ``transformers.HfArgumentParser``: ``bool`` fields take an optional ``true``/``false`` (a bare
    ``--flag`` is true), ``list[X]`` fields take one or more values, ``X | None`` is ``X``; the metadata's
    ``choices`` and ``help`` are used, and the help shows the default.

    Args:
        parser: The parser or argument group.
        cls: The dataclass.
        repeatable: Fields whose flag may be given several times (each value is appended to a list).
    """
    for item in dataclasses.fields(cls):
        if not item.init:
            continue
        metadata = dict(item.metadata)
        aliases = metadata.pop("aliases", [])
        default = item.default if item.default is not dataclasses.MISSING else None
        kwargs: dict[str, Any] = {"dest": item.name, "help": with_default(metadata.pop("help", ""), default)}
        base, is_list = _field_type(item.type)
        if "choices" in metadata:
            kwargs["choices"] = list(metadata.pop("choices"))
        if base is bool:
            kwargs.update(nargs="?", const=True, type=string_to_bool, default=default, metavar="true|false")
        elif item.name in repeatable:
            kwargs.update(action="append", type=base, default=None)
        else:
            kwargs.update(type=base, default=default)
            if is_list:
                kwargs["nargs"] = "+"
        parser.add_argument(f"--{item.name}", *aliases, **kwargs)


def dataclasses_from_namespace(namespace: argparse.Namespace, *classes: type) -> tuple[Any, ...]:
    """Build each dataclass from the parsed flags of its fields (their ``__post_init__`` checks run here).

    Args:
        namespace: The parsed flags.
        *classes: The dataclasses whose fields were added with :func:`add_dataclass_arguments`.

    Returns:
        One instance per class.

    Raises:
        ValueError: A value a dataclass refuses.
    """
    return tuple(
        cls(**{item.name: getattr(namespace, item.name) for item in dataclasses.fields(cls) if item.init})
        for cls in classes
    )


@dataclass
class TrainScriptArguments:
    """What to train (model and data); the hyper-parameters are in ``FAPromptTrainingArguments``.

    The data flags are those of ``evaluate`` (``--dataset_format``, ``--dataset_path``, ``--split``);
    ``--dataset`` and ``--dataset_split`` are kept as aliases. ``--dataset_format`` and ``--dataset_path`` given
    several times train on a mix of datasets (with ``--mix_strategy``).
    """

    clip: str | None = field(
        default=None,
        metadata={
            "help": f"Base CLIP for a new model: a Hub id or a transformers CLIP folder (default: {DEFAULT_CLIP}). "
            "Not with --model."
        },
    )
    model: str | None = field(
        default=None,
        metadata={
            "help": "An FAPrompt model (folder or Hub id) to continue training, instead of --clip (and without "
            "--config_overrides: the model's config is used as saved)."
        },
    )
    config_overrides: str | None = field(
        default=None,
        metadata={
            "help": "FAPromptConfig fields for a new model, as JSON, e.g. '{\"num_abnormal_prompts\": 5}'. "
            "Not with --model."
        },
    )
    dataset_format: str | None = field(
        default=None,
        metadata={
            "choices": list(DATASET_FORMATS),
            "help": "How to read the data (as in evaluate); give it once per dataset, with its --dataset_path, to "
            "train on a mix.",
        },
    )
    dataset_path: str | None = field(
        default=None,
        metadata={"help": "Dataset folder, or Hub id / path for --dataset_format hub (not used by synthetic)."},
    )
    mix_strategy: str | None = field(
        default=None,
        metadata={
            "choices": list(MIX_STRATEGIES),
            "help": "With several --dataset_format: 'proportional' (every image once; the default) or 'equal' "
            "(every dataset the same share of an epoch).",
        },
    )
    split: str | None = field(
        default=None,
        metadata={
            "help": "Split to train on. Default: test (the reference trains on the test split, which has the "
            "masks); train for --dataset_format synthetic, so that its test split stays unseen."
        },
    )
    dataset: str | None = field(
        default=None,
        metadata={
            "help": "Alias: '--dataset synthetic' is '--dataset_format synthetic'; '--dataset ID' is "
            "'--dataset_format hub --dataset_path ID' (a Hub id or a data folder read by datasets)."
        },
    )
    dataset_split: str | None = field(default=None, metadata={"help": "Alias of --split."})
    classes: list[str] | None = field(
        default=None, metadata={"help": "Only these classes (default: all); for synthetic, the domains."}
    )
    column_mapping: str | None = field(
        default=None,
        metadata={
            "help": 'For hub: our column -> theirs, as JSON (\'{"image": "img", "mask": "gt"}\') or '
            "ours=theirs pairs (image=img,mask=gt), as in evaluate."
        },
    )
    dataset_kwargs: str | None = field(
        default=None,
        metadata={
            "help": 'More loader arguments as JSON, e.g. \'{"split_csv": "..."}\' (visa), '
            '\'{"require_masks": false}\' (folder, meta_json), \'{"revision": "main"}\' (hub).'
        },
    )
    synthetic_domains: list[str] | None = field(
        default=None,
        metadata={"help": f"Alias of --classes for synthetic (default: {' '.join(SYNTHETIC_TRAIN_DOMAINS)})."},
    )
    synthetic_num_normal: int = field(default=16, metadata={"help": "Normal images per synthetic domain."})
    synthetic_num_anomalous: int = field(default=16, metadata={"help": "Anomalous images per synthetic domain."})
    simulate_crash_after_steps: int | None = field(
        default=None,
        metadata={"help": "Testing aid: kill this process (SIGKILL, no clean-up) after this optimizer step."},
    )


def add_train_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the flags of ``faprompt-hf train`` (= ``examples/train.py``) to ``parser``.

    Args:
        parser: The parser to extend.

    Returns:
        The same parser.
    """
    add_dataclass_arguments(
        parser.add_argument_group("model and data"), TrainScriptArguments, repeatable=TRAIN_REPEATABLE_FLAGS
    )
    add_dataclass_arguments(parser.add_argument_group("training"), FAPromptTrainingArguments)
    return parser


def threshold_type(flag: str) -> Any:
    """An argparse type for a threshold: the one threshold rule (finite, in [0, 1]), naming ``flag`` when refused."""

    def check(text: str) -> float:
        from .inference_utils import check_threshold  # numpy and Pillow only, at parse time

        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"{flag} must be a number in [0, 1], got {text!r}.") from None
        return check_threshold(value, flag)

    return argparse_type(check, "threshold in [0, 1]")


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the flags of ``faprompt-hf evaluate`` (= ``examples/evaluate.py``) to ``parser``.

    Args:
        parser: The parser to extend.

    Returns:
        The same parser.
    """
    source = parser.add_argument_group("model")
    source.add_argument(
        "--model", help="Hub id or directory of a transformers FAPrompt checkpoint (this or --original_checkpoint)."
    )
    source.add_argument(
        "--original_checkpoint", help="Instead: an original FAPrompt epoch_N.pth, converted on load (default: not set)."
    )
    source.add_argument(
        "--clip",
        help="With --original_checkpoint: the CLIP it was trained on (id, dir or .pt file). With --model (a compact "
        "checkpoint): the CLIP to load instead of the one its config names, e.g. a local copy (default: not set).",
    )
    data = parser.add_argument_group("data")
    data.add_argument(
        "--dataset_format", required=True, choices=DATASET_FORMATS, help="How to read the data (as in train)."
    )
    data.add_argument("--dataset_path", help="Dataset folder, or hub id / path for --dataset_format hub.")
    data.add_argument("--split", default="test", help="Split to evaluate (default: test).")
    data.add_argument("--classes", nargs="+", help="Classes to evaluate (space- or comma-separated; default all).")
    data.add_argument(
        "--column_mapping",
        type=argparse_type(parse_column_mapping, "column mapping"),
        help="hub: our column -> theirs, as ours=theirs,... or a JSON object (as in train; default: none).",
    )
    data.add_argument(
        "--dataset_kwargs",
        type=argparse_type(lambda text: parse_json_object(text, "--dataset_kwargs"), "JSON object"),
        default={},
        help='More loader arguments as JSON, e.g. \'{"split_csv": "..."}\' (visa), \'{"require_masks": false}\' '
        '(folder, meta_json), \'{"n_normal": 4, "image_size": 128}\' (synthetic) (default: {}).',
    )
    data.add_argument(
        "--resize_mismatched_masks", action="store_true", help="Resize masks whose size differs (default: off)."
    )
    protocol = parser.add_argument_group("protocol")
    protocol.add_argument(
        "--image_size",
        type=positive_int("--image_size"),
        help=f"Evaluation side in px (default: the model's, {DEFAULT_IMAGE_SIZE}).",
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
        help=f"AUPRO definition: 'original' (default: {DEFAULT_AUPRO}, the released evaluation: 200 thresholds, "
        "rescaled FPRs) or 'exact' (MVTec AD: every threshold, area up to FPR 0.3 divided by 0.3).",
    )
    protocol.add_argument(
        "--pixel_metrics_size",
        type=positive_int("--pixel_metrics_size"),
        help="Pool maps and masks to this side before pixel metrics, to save memory (default: the image size).",
    )
    protocol.add_argument("--no_pixel_metrics", action="store_true", help="Image-level metrics only (default: off).")
    add_few_shot_arguments(parser)
    run = parser.add_argument_group("run")
    run.add_argument(
        "--batch_size",
        "--per_device_eval_batch_size",
        dest="batch_size",
        type=positive_int("--batch_size"),
        default=8,
        help="Images per forward pass and process (as train's --batch_size; default: 8).",
    )
    run.add_argument(
        "--dataloader_num_workers",
        "--num_workers",
        dest="num_workers",
        type=positive_int("--dataloader_num_workers", 0),
        default=2,
        help="Data-loader workers per process (as train's; --num_workers is an alias; default: 2).",
    )
    run.add_argument(
        "--use_cpu",
        "--cpu",
        dest="use_cpu",
        action="store_true",
        help="Run on CPU even when a GPU is available (default: off).",
    )
    run.add_argument(
        "--output_dir", default="outputs/evaluation", help="Where to write the metrics (default: %(default)s)."
    )
    run.add_argument(
        "--save_heatmaps",
        type=positive_int("--save_heatmaps", 0),
        default=0,
        metavar="N",
        help="Heatmap grid of N images per class (default: 0, none).",
    )
    return show_defaults(parser)


def add_few_shot_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the few-shot flags of ``faprompt-hf evaluate`` (``--k_shot``, the reference seeds and split) to ``parser``.

    Args:
        parser: The parser to extend.

    Returns:
        The same parser.
    """
    few_shot = parser.add_argument_group("few-shot (normal references; docs/few_shot.md)")
    few_shot.add_argument(
        "--k_shot",
        type=positive_int("--k_shot", 1),
        default=None,
        metavar="K",
        help="Evaluate K-shot: for each class, K normal images drawn from --reference_split become that class's "
        "normal references (default: not set, zero-shot).",
    )
    seeds = few_shot.add_mutually_exclusive_group()
    seeds.add_argument(
        "--reference_seed",
        type=positive_int("--reference_seed", 0),
        default=None,
        metavar="S",
        help="Seed of the reference draw (default: 0).",
    )
    seeds.add_argument(
        "--reference_seeds",
        type=positive_int("--reference_seeds", 0),
        nargs="+",
        default=None,
        metavar="S",
        help="Several seeds, one evaluation each; the table shows mean ± std over them (default: not set, "
        "--reference_seed).",
    )
    few_shot.add_argument(
        "--reference_split",
        default=None,
        metavar="SPLIT",
        help=f"Split the references are drawn from, never the evaluated images (default: {DEFAULT_REFERENCE_SPLIT}; "
        f"for synthetic, {SYNTHETIC_REFERENCE_SPLIT!r}, a separate pool of normal images).",
    )
    return parser


def add_predict_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the flags of ``faprompt-hf predict`` to ``parser``.

    Args:
        parser: The parser to extend.

    Returns:
        The same parser.
    """
    parser.add_argument(
        "inputs",
        nargs="*",
        metavar="INPUT",
        help="Image files, folders (searched recursively), glob patterns ('parts/**/*.png', quoted) or text files "
        "(.txt) with one path per line. Or none, with --dataset_format.",
    )
    parser.add_argument(
        "--model",
        required=True,
        help="A saved FAPrompt model (folder or hub id), or an ONNX export folder (then torch is not needed).",
    )
    parser.add_argument(
        "--output_dir",
        required=True,
        help="Where predictions.csv, predictions.jsonl, errors.jsonl and the maps go (created if needed).",
    )
    data = parser.add_argument_group("dataset input (instead of INPUT, as in evaluate)")
    data.add_argument("--dataset_format", choices=DATASET_FORMATS, help="How to read the data (default: not set).")
    data.add_argument("--dataset_path", help="Dataset folder, or hub id / path for hub (default: not set).")
    data.add_argument("--split", default="test", help="Split (default: test).")
    data.add_argument("--classes", nargs="+", help="Only these classes (default: all).")
    few_shot = parser.add_argument_group("normal references (few-shot, docs/few_shot.md)")
    few_shot.add_argument(
        "--references",
        nargs="+",
        metavar="REFERENCE",
        help="A few normal (defect-free) images of the inputs' kind: files, folders, glob patterns or .txt lists, as "
        "INPUT. They are stored in the model's normal-reference bank as --reference_class (replacing that class's "
        "earlier ones, for this run only) and the scores fuse the text and reference scores. PyTorch models only "
        "(default: none, zero-shot; a model saved with references uses them).",
    )
    few_shot.add_argument(
        "--reference_class",
        metavar="NAME",
        help="The bank's class of --references; without --references, the class of the model's bank to compare "
        "with, needed when it holds several (default: 'default' with --references, else the bank's only class).",
    )
    decision = parser.add_argument_group("decision")
    decision.add_argument(
        "--threshold",
        type=threshold_type("--threshold"),
        help="Image-score threshold of is_anomalous, in [0, 1] (default: the model's calibrated anomaly_threshold, "
        "else 0.5 with a warning).",
    )
    decision.add_argument(
        "--pixel_threshold",
        type=threshold_type("--pixel_threshold"),
        default=0.5,
        help="Anomaly-map threshold of the masks and the anomalous-area fraction, in [0, 1] (default: 0.5).",
    )
    outputs = parser.add_argument_group("outputs")
    outputs.add_argument("--save_masks", action="store_true", help="Write masks (PNG) under masks/ (default: off).")
    outputs.add_argument(
        "--save_overlays", action="store_true", help="Write heatmap overlays (PNG) under overlays/ (default: off)."
    )
    outputs.add_argument(
        "--save_maps", action="store_true", help="Write raw anomaly maps (float32 .npy) under maps/ (default: off)."
    )
    run = parser.add_argument_group("run")
    run.add_argument(
        "--batch_size", type=positive_int("--batch_size"), default=8, help="Images per forward pass (default: 8)."
    )
    run.add_argument(
        "--num_workers",
        type=positive_int("--num_workers", 0),
        default=2,
        help="Threads that decode and resize images beside the model (default: 2; 0 decodes between batches).",
    )
    run.add_argument(
        "--device",
        default=None,
        help="cpu, cuda, cuda:1, mps (default: cuda when present, else cpu; under accelerate launch, the process's).",
    )
    run.add_argument(
        "--dtype",
        choices=DTYPES,
        default="float32",
        help="Model dtype: bfloat16/float16 where the device has them (default: float32).",
    )
    run.add_argument(
        "--resume",
        action="store_true",
        help="Skip the images already in output_dir/predictions.jsonl (written by the same model; default: off).",
    )
    run.add_argument(
        "--on_error",
        choices=("skip", "stop"),
        default="skip",
        help="An unreadable or undecodable image: 'skip' records it in errors.jsonl and goes on; 'stop' ends the "
        "run with exit code 1, naming the file (default: skip).",
    )
    run.add_argument("--no_progress", action="store_true", help="Hide the progress bar (default: shown).")
    return show_defaults(parser)


def add_references_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the flags of ``faprompt-hf references`` to ``parser``.

    Args:
        parser: The parser to extend.

    Returns:
        The same parser.
    """
    parser.add_argument("--model", required=True, help="A saved FAPrompt model: local directory or hub id.")
    parser.add_argument(
        "--images",
        required=True,
        nargs="+",
        metavar="IMAGE",
        help="The normal (defect-free) reference images: files, folders (searched recursively), glob patterns "
        "(quoted) or .txt lists, as predict's INPUT.",
    )
    parser.add_argument(
        "--output_dir",
        required=True,
        help="Where the model with its references is saved (created; may be --model's own folder to update it).",
    )
    parser.add_argument(
        "--class_name",
        metavar="NAME",
        help="The bank's class of these references; a class the model already holds is replaced (default: 'default').",
    )
    parser.add_argument(
        "--batch_size", type=positive_int("--batch_size"), default=8, help="Images per feature pass (default: 8)."
    )
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda when present, else cpu).")
    return show_defaults(parser)


def add_convert_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the flags of ``faprompt-hf convert`` to ``parser``.

    Args:
        parser: The parser to extend.

    Returns:
        The same parser.
    """
    parser.add_argument("--checkpoint", required=True, help="The original epoch_N.pth ({'prompt_learner': ...}).")
    parser.add_argument(
        "--clip",
        default=DEFAULT_CLIP,
        help="The CLIP it was trained on: an OpenAI-format state-dict file, a transformers CLIP id or directory "
        f"(default: {DEFAULT_CLIP}, the same weights as OpenAI's ViT-L-14-336px.pt).",
    )
    parser.add_argument("--output", required=True, help="Output directory.")
    parser.add_argument(
        "--image_size",
        type=positive_int("--image_size"),
        default=None,
        help=f"Input side in pixels (default: {DEFAULT_IMAGE_SIZE}, the original evaluation's).",
    )
    parser.add_argument(
        "--gaussian_sigma",
        type=non_negative_float("--gaussian_sigma"),
        default=None,
        help="Anomaly-map smoothing in pixels, 0 turns it off (default: 10).",
    )
    parser.add_argument(
        "--push_to_hub", default=None, metavar="REPO_ID", help="Also push to this hub repository (default: no push)."
    )
    parser.add_argument(
        "--embed_clip",
        action="store_true",
        help="Include the CLIP's weights (about 1.7 GB for ViT-L/14@336) for fully offline use. By default a CLIP "
        "given as a hub id is only named (with its revision and fingerprint) and downloaded on first load.",
    )
    return show_defaults(parser)


def add_export_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the flags of ``faprompt-hf export`` to ``parser``.

    Args:
        parser: The parser to extend.

    Returns:
        The same parser.
    """
    parser.add_argument("--model", required=True, help="A saved FAPrompt model: local directory or hub id.")
    parser.add_argument("--output", required=True, help="Output directory.")
    parser.add_argument(
        "--opset",
        type=positive_int("--opset", 18),
        default=None,
        help=f"ONNX opset, 18 or newer (default: {DEFAULT_ONNX_OPSET}).",
    )
    parser.add_argument(
        "--image_size",
        type=positive_int("--image_size"),
        default=None,
        help="Input side in pixels, a multiple of the patch size (default: the saved processor's, else the config's).",
    )
    parser.add_argument(
        "--quantize",
        choices=["int8"],
        default=None,
        help="Quantise the graph's MatMuls to int8 (onnxruntime dynamic quantisation; docs/deployment.md#int8) "
        "(default: not set, a float32 graph).",
    )
    parser.add_argument(
        "--normal_reference_class",
        default=None,
        metavar="NAME",
        help="For a model with normal references: the class whose references the graph holds (required when the "
        "model holds several; with one, that one; docs/deployment.md).",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="Also compare the ONNX outputs with PyTorch's on a random image (default: off).",
    )
    return show_defaults(parser)


PAPER_BENCHMARK_DATASETS = ("mvtec", "visa", *PAPER_DATASET_FORMATS)
"""The datasets ``faprompt-hf benchmark --datasets`` names (the paper's 19, then MVTec AD 2 and MVTec LOCO AD)."""

PAPER_NUMBERS_FILE = str(Path(__file__).resolve().parent / "data" / "paper_numbers.json")
"""The published FAPrompt numbers the benchmark's ``--paper_numbers`` reads by default."""


def add_benchmark_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the flags of ``faprompt-hf benchmark`` (and ``examples/benchmark_paper.py``) to ``parser``.

    ``--datasets`` values are checked against the known datasets when the command runs
    (:func:`faprompt_hf.paper_benchmark.run_from_args`), so that ``--help`` needs none of the loaders.

    Args:
        parser: The parser to extend.

    Returns:
        The same parser.
    """
    parser.add_argument("--data_root", help="Folder holding the dataset folders (by their usual names).")
    parser.add_argument("--model", required=True, help="FAPrompt model for every dataset but MVTec AD (dir or hub id).")
    parser.add_argument("--mvtec_model", help="Model for MVTec AD (the paper: prompts trained on VisA).")
    parser.add_argument(
        "--datasets",
        nargs="+",
        metavar="NAME[=FOLDER]",
        help=f"Datasets to evaluate (default: every one present): {', '.join(PAPER_BENCHMARK_DATASETS)}; "
        "NAME=FOLDER for a folder with another name (relative to --data_root).",
    )
    parser.add_argument("--include_extra", action="store_true", help="Also look for MVTec AD 2 and MVTec LOCO AD.")
    parser.add_argument("--output_dir", default="outputs/benchmark", help="Where the tables are written.")
    parser.add_argument("--resume", action="store_true", help="Skip datasets finished by an earlier run.")
    parser.add_argument(
        "--paper_numbers",
        nargs="?",
        const=PAPER_NUMBERS_FILE,
        default=None,
        metavar="FILE",
        help="Put the published FAPrompt numbers beside ours (the file: faprompt_hf/data/paper_numbers.json).",
    )
    parser.add_argument(
        "--synthetic_domains",
        nargs="+",
        metavar="DOMAIN",
        help="Also evaluate these synthetic domains (faprompt_hf.data.make_synthetic_dataset, 8+8 images, 64 px).",
    )
    parser.add_argument(
        "--make_replicas",
        metavar="DIR",
        help="Write the miniature replicas of every layout into DIR first and use DIR as --data_root (testing aid).",
    )
    parser.add_argument("--batch_size", type=positive_int("--batch_size"), default=8, help="Images per forward pass.")
    parser.add_argument(
        "--num_workers", type=positive_int("--num_workers", 0), default=0, help="Data-loader worker processes."
    )
    parser.add_argument(
        "--image_size", type=positive_int("--image_size"), help="Evaluation side in px (default: the model's, 518)."
    )
    parser.add_argument(
        "--gaussian_sigma",
        "--sigma",
        dest="gaussian_sigma",
        type=non_negative_float("--gaussian_sigma"),
        help="Map smoothing in px, >= 0 (default: the model's, 10; --sigma is an alias).",
    )
    parser.add_argument("--aupro", choices=("original", "exact"), default=DEFAULT_AUPRO, help="AUPRO definition.")
    parser.add_argument(
        "--pixel_metrics_size",
        type=positive_int("--pixel_metrics_size"),
        help="Pool maps to this side before pixel metrics.",
    )
    parser.add_argument("--resize_mismatched_masks", action="store_true", help="Resize masks of another size.")
    parser.add_argument("--use_cpu", action="store_true", help="Run on the CPU even when a GPU is available.")
    return show_defaults(parser)


APP_DESCRIPTION = "A Gradio demo of FAPrompt: drop part images on a page, get scores, verdicts, heatmaps and masks."
"""What ``faprompt-hf app --help`` and ``python examples/app.py --help`` say first."""

APP_MODEL_ENV = "FAPROMPT_MODEL"
"""Environment variable the app reads when ``--model`` is not given (handy in a hub Space's settings)."""

APP_CACHE_ENV = "FAPROMPT_APP_CACHE"
"""Environment variable the app reads when ``--cache_dir`` is not given."""

APP_LIMIT_DEFAULTS = {
    "max_file_mb": 20.0,
    "max_megapixels": 12.0,
    "max_images": 16,
    "max_calibration_images": 500,
    "max_reference_images": 64,
}
"""The app's upload limits by default (its ``Limits``), so that one upload cannot exhaust the server."""

_LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")


def add_app_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the flags of ``faprompt-hf app`` (= ``examples/app.py``) to ``parser``.

    ``--model``'s default is read from ``$FAPROMPT_MODEL`` when the parser is built.

    Args:
        parser: The parser to extend.

    Returns:
        The same parser.
    """
    parser.add_argument(
        "--model",
        default=os.environ.get(APP_MODEL_ENV),
        help=f"A FAPrompt folder (save_pretrained) or hub model id; default: ${APP_MODEL_ENV}, else an "
        "offline tiny demo model trained once and cached.",
    )
    parser.add_argument("--device", default=None, help="Pipeline device: cpu, cuda, 0, ... (default: transformers').")
    parser.add_argument(
        "--cache_dir",
        default=None,
        help=f"Where the demo model and examples are cached (default: ${APP_CACHE_ENV}, else "
        "~/.cache/faprompt-hf/app).",
    )
    parser.add_argument(
        "--server_name",
        default=None,
        help="Address to listen on: 127.0.0.1 (default, or $GRADIO_SERVER_NAME), 0.0.0.0 for the whole network.",
    )
    parser.add_argument(
        "--server_port",
        type=int,
        default=None,
        help="Port (default: $GRADIO_SERVER_PORT, else the first free one from 7860).",
    )
    parser.add_argument("--share", action="store_true", help="Also serve a temporary public gradio.live link")
    parser.add_argument(
        "--max_file_mb", type=float, default=APP_LIMIT_DEFAULTS["max_file_mb"], help="Largest accepted file, in MB"
    )
    parser.add_argument(
        "--max_megapixels",
        type=float,
        default=APP_LIMIT_DEFAULTS["max_megapixels"],
        help="Largest accepted image, in megapixels (read from the header, before decoding)",
    )
    parser.add_argument(
        "--max_images", type=int, default=APP_LIMIT_DEFAULTS["max_images"], help="Most images scored at once"
    )
    parser.add_argument(
        "--max_calibration_images",
        type=int,
        default=APP_LIMIT_DEFAULTS["max_calibration_images"],
        help="Most images in one calibration",
    )
    parser.add_argument(
        "--max_reference_images",
        type=int,
        default=APP_LIMIT_DEFAULTS["max_reference_images"],
        help="Most normal reference images in one upload (few-shot)",
    )
    folder = parser.add_mutually_exclusive_group()
    folder.add_argument(
        "--folder_calibration",
        dest="folder_calibration",
        action="store_true",
        default=None,
        help="Offer calibration from a folder on the server even when the app is reachable from other machines "
        "(default: see --no_folder_calibration).",
    )
    folder.add_argument(
        "--no_folder_calibration",
        dest="folder_calibration",
        action="store_false",
        help="Hide calibration from a folder on the server. Default: offered only on a loopback address without "
        "--share (a visitor could otherwise probe the server's paths).",
    )
    return show_defaults(parser)


def parse_app_args(argv: Sequence[str] | None = None, prog: str | None = None) -> argparse.Namespace:
    """Parse the app's command line: the flags of :func:`add_app_arguments`, checked.

    Args:
        argv: Arguments (default: ``sys.argv[1:]``).
        prog: The program name in usage and error messages (default: argparse's, the script's name).

    Returns:
        The flags; ``folder_calibration`` is resolved: unless given, True only on a loopback address (``--server_name``,
        else ``$GRADIO_SERVER_NAME``, else 127.0.0.1) without ``--share``.

    Raises:
        SystemExit: A bad flag, or a limit that is not > 0 (argparse's error, exit code 2).
    """
    parser = add_app_arguments(argparse.ArgumentParser(prog=prog, description=APP_DESCRIPTION))
    args = parser.parse_args(argv)
    for name in APP_LIMIT_DEFAULTS:
        if not getattr(args, name) > 0:
            parser.error(f"--{name} must be > 0, got {getattr(args, name)}.")
    if args.folder_calibration is None:  # offered only where no other machine can reach the app
        server_name = args.server_name or os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1")
        args.folder_calibration = not args.share and server_name in _LOOPBACK_NAMES
    return args

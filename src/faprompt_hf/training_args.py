# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""The arguments of :func:`faprompt_hf.training.train`, importable without torch (``faprompt-hf train --help``)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

__all__ = [
    "SYNTHETIC_ANOMALY_KINDS",
    "FAPromptTrainingArguments",
    "check_synthetic_anomaly_ratio",
    "parse_foreground_threshold",
    "parse_synthetic_anomaly_weights",
]


SYNTHETIC_ANOMALY_KINDS: tuple[str, ...] = ("perlin_texture", "perlin_image", "cutpaste", "seamless")
"""The defect kinds, in a fixed order (the weights and the random draws follow it)."""


# ----------------------------------------------------------------------------------------------------------------------
# Options of the synthetic anomalies (torch-free: the command line checks them)
# ----------------------------------------------------------------------------------------------------------------------


def check_synthetic_anomaly_ratio(ratio: Any, name: str = "synthetic_anomaly_ratio") -> float:
    """Check the fraction of normal images that get a synthetic anomalous copy.

    Args:
        ratio: The value to check.
        name: The option's name, for the message.

    Returns:
        ``ratio`` as a float in (0, 1].

    Raises:
        ValueError: Not a finite number in (0, 1] (the message names the value and the range).
    """
    try:
        value = float(ratio)
    except (TypeError, ValueError):
        value = math.nan
    if isinstance(ratio, bool) or not (math.isfinite(value) and 0.0 < value <= 1.0):
        raise ValueError(
            f"{name} must be a number in (0, 1], the fraction of normal images that also appear as a synthetic "
            f"anomalous copy (1: every normal image gets one); got {ratio!r}."
        )
    return value


def parse_synthetic_anomaly_weights(weights: str | Mapping[str, float] | None) -> dict[str, float]:
    """Read per-kind weights, e.g. ``"perlin_texture=2,cutpaste=1"`` or ``{"seamless": 1}``.

    Kinds that are not named get weight 0; ``None`` or ``""`` weighs every kind of :data:`SYNTHETIC_ANOMALY_KINDS`
    equally.

    Args:
        weights: Comma-separated ``kind=weight`` pairs, a mapping, or None.

    Returns:
        ``{kind: probability}`` for every kind, in :data:`SYNTHETIC_ANOMALY_KINDS` order, summing to 1.

    Raises:
        ValueError: An unknown kind, a malformed pair, a negative or non-finite weight, or all weights 0.
    """
    if weights is None or (isinstance(weights, str) and not weights.strip()):
        return {kind: 1.0 / len(SYNTHETIC_ANOMALY_KINDS) for kind in SYNTHETIC_ANOMALY_KINDS}
    example = "e.g. 'perlin_texture=1,perlin_image=1,cutpaste=2,seamless=1'"
    if isinstance(weights, str):
        pairs: dict[str, Any] = {}
        for item in weights.split(","):
            kind, separator, value = item.partition("=")
            if not separator or not kind.strip():
                raise ValueError(f"synthetic_anomaly_weights: cannot read {item.strip()!r} as kind=weight ({example}).")
            pairs[kind.strip()] = value.strip()
    elif isinstance(weights, Mapping):
        pairs = dict(weights)
    else:
        raise ValueError(f"synthetic_anomaly_weights must be a string or a mapping ({example}); got {weights!r}.")
    unknown = sorted(set(pairs) - set(SYNTHETIC_ANOMALY_KINDS))
    if unknown:
        raise ValueError(
            f"synthetic_anomaly_weights names unknown kind(s) {unknown}; the kinds are {SYNTHETIC_ANOMALY_KINDS}."
        )
    parsed: dict[str, float] = {}
    for kind in SYNTHETIC_ANOMALY_KINDS:
        raw = pairs.get(kind, 0.0)
        try:
            value = float(raw)
        except (TypeError, ValueError):
            value = math.nan
        if isinstance(raw, bool) or not math.isfinite(value) or value < 0:
            raise ValueError(
                f"synthetic_anomaly_weights: the weight of {kind!r} must be a finite number >= 0; got {raw!r}."
            )
        parsed[kind] = value
    total = sum(parsed.values())
    if total <= 0:
        raise ValueError(
            f"synthetic_anomaly_weights gives every kind weight 0; give at least one a weight > 0 ({example})."
        )
    return {kind: value / total for kind, value in parsed.items()}


def parse_foreground_threshold(value: str | float | None) -> str | float | None:
    """Read the foreground option: None (defects anywhere), ``"otsu"`` or a threshold in grey levels.

    Args:
        value: None or ``""`` (no foreground mask), ``"otsu"`` (any case), or a number (or numeric string) in
            [0, 255]: how far, in grey levels on the most different channel, a pixel's blurred colour must be from the
            background's to count as the object.

    Returns:
        None, ``"otsu"`` or the threshold as a float.

    Raises:
        ValueError: Anything else (the message names the value).
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, str) and value.strip().lower() == "otsu":
        return "otsu"
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not (math.isfinite(number) and 0.0 <= number <= 255.0):
        raise ValueError(
            f"foreground_threshold must be 'otsu' (automatic) or a number of grey levels in [0, 255] (how far a "
            f"pixel's colour must be from the background's to count as the object, e.g. 30); got {value!r}."
        )
    return number


@dataclasses.dataclass
class FAPromptTrainingArguments:
    """Hyper-parameters and run options of :func:`train`; the defaults are the reference recipe (method §6).

    Every field is also a command-line flag of ``faprompt-hf train`` and ``examples/train.py``: the one definition of
    its name, default and help (:func:`faprompt_hf.cli_flags.add_dataclass_arguments` builds the flags; the class also
    works with ``transformers.HfArgumentParser``). A new training option is a new field here, nothing else.
    """

    output_dir: str = dataclasses.field(
        default="faprompt-output",
        metadata={"help": "Where the trained model, processor, model card and checkpoints/ are written."},
    )
    num_train_epochs: int = dataclasses.field(default=15, metadata={"help": "Passes over the training data."})
    max_steps: int = dataclasses.field(
        default=-1, metadata={"help": "If > 0: stop after this many optimizer steps (overrides num_train_epochs)."}
    )
    per_device_train_batch_size: int = dataclasses.field(
        default=8, metadata={"help": "Images per batch on each process.", "aliases": ["--batch_size"]}
    )
    learning_rate: float = dataclasses.field(default=1e-3, metadata={"help": "Adam learning rate (constant)."})
    adam_beta1: float = dataclasses.field(default=0.5, metadata={"help": "Adam beta1."})
    adam_beta2: float = dataclasses.field(default=0.999, metadata={"help": "Adam beta2."})
    adam_epsilon: float = dataclasses.field(default=1e-8, metadata={"help": "Adam epsilon."})
    max_grad_norm: float | None = dataclasses.field(
        default=None, metadata={"help": "Clip the prompts' gradient norm to this value (default: no clipping)."}
    )
    image_size: int | None = dataclasses.field(
        default=None,
        metadata={
            "help": "Training image side, a multiple of the patch size (default: the model's config.image_size, 518 "
            "for a new model)."
        },
    )
    seed: int = dataclasses.field(default=111, metadata={"help": "Seed of the data order and every RNG."})
    gradient_accumulation_steps: int = dataclasses.field(
        default=1, metadata={"help": "Batches whose gradients are summed before each optimizer step."}
    )
    mixed_precision: str | None = dataclasses.field(
        default=None,
        metadata={
            "choices": ["no", "fp16", "bf16"],
            "help": "'no', 'fp16' or 'bf16': the frozen CLIP runs in this dtype, prompts and optimizer stay float32. "
            "None: the `accelerate launch`/config setting, which defaults to 'no' (the reference).",
        },
    )
    checkpointing_steps: int | None = dataclasses.field(
        default=None, metadata={"help": "Save a resumable checkpoint every this many optimizer steps."}
    )
    save_total_limit: int | None = dataclasses.field(
        default=None, metadata={"help": "Keep only the newest N checkpoints."}
    )
    resume_from_checkpoint: str | None = dataclasses.field(
        default=None,
        metadata={
            "help": "'latest' (the newest intact checkpoint of the run last started in output_dir; a fresh start "
            "when there is none) or the path of a checkpoint folder. Changed arguments apply and are logged, except "
            "seed, image_size, per_device_train_batch_size, gradient_accumulation_steps, the number of "
            "processes and the synthetic-anomaly options, which are refused unless --allow_changed_arguments."
        },
    )
    overwrite_output_dir: bool = dataclasses.field(
        default=False,
        metadata={
            "help": "Let this run replace what another run left in output_dir (its checkpoints, its saved model). "
            "Without it, a run refuses to start in an output_dir holding another run's work that it would replace."
        },
    )
    allow_changed_arguments: bool = dataclasses.field(
        default=False,
        metadata={
            "help": "Resume even when seed, image_size, per_device_train_batch_size, gradient_accumulation_steps, "
            "the number of processes or the synthetic-anomaly options differ from the checkpoint's run (the run then "
            "does not repeat exactly)."
        },
    )
    logging_steps: int = dataclasses.field(
        default=10, metadata={"help": "Average the losses over this many optimizer steps per logged point."}
    )
    report_to: str = dataclasses.field(
        default="none",
        metadata={"help": "Trackers, comma-separated ('tensorboard', 'wandb', ...), 'all' or 'none'."},
    )
    logging_dir: str | None = dataclasses.field(
        default=None, metadata={"help": "Tracker folder (default: output_dir/runs)."}
    )
    push_to_hub: bool = dataclasses.field(
        default=False, metadata={"help": "Upload output_dir (without checkpoints/) to the Hub at the end."}
    )
    hub_model_id: str | None = dataclasses.field(
        default=None, metadata={"help": "Hub repository id (default: the name of output_dir)."}
    )
    hub_private_repo: bool = dataclasses.field(
        default=False, metadata={"help": "Create the Hub repository as private."}
    )
    dataloader_num_workers: int = dataclasses.field(
        default=0, metadata={"help": "Worker processes that decode and preprocess images."}
    )
    resize_mismatched_masks: bool = dataclasses.field(
        default=False,
        metadata={
            "help": "Resize a mask whose size differs from its image's to the image's size; by default such a mask "
            "stops training with an error that names its file."
        },
    )
    use_cpu: bool = dataclasses.field(
        default=False, metadata={"help": "Train on the CPU even if a GPU is present.", "aliases": ["--cpu"]}
    )
    allow_missing_masks: bool = dataclasses.field(
        default=False,
        metadata={
            "help": "Train on anomalous images without a mask (image-level labels): their pixel-level losses are "
            "left out, image by image, and their image-level losses stay; a run where no image has a mask trains "
            "the image-level objective only. Without it such images stop the run with an error."
        },
    )
    synthesize_anomalies: bool = dataclasses.field(
        default=False,
        metadata={
            "help": "Pair normal training images with a synthetic anomalous copy and its exact mask (Perlin-noise "
            "texture or image fill, CutPaste scars, seamless-blended patches), painted in the data-loader workers, "
            "deterministic per seed and image: trains on a folder of good parts."
        },
    )
    synthetic_anomaly_ratio: float = dataclasses.field(
        default=1.0,
        metadata={"help": "With --synthesize_anomalies: the fraction of normal images that get a copy, in (0, 1]."},
    )
    synthetic_anomaly_weights: str | None = dataclasses.field(
        default=None,
        metadata={
            "help": "With --synthesize_anomalies: per-kind weights, e.g. 'perlin_texture=1,perlin_image=1,"
            "cutpaste=2,seamless=1' (kinds not named get 0; default: all four equally)."
        },
    )
    foreground_threshold: str | None = dataclasses.field(
        default=None,
        metadata={
            "help": "With --synthesize_anomalies: place defects on the object only. 'otsu' (automatic) or a number "
            "of grey levels: how far a pixel's blurred colour must be from the background's (the border's) to count "
            "as the object. Default: anywhere (textures)."
        },
    )

    def __post_init__(self) -> None:
        """Check the values that would otherwise fail late, inside the loop."""
        if self.mixed_precision not in (None, "no", "fp16", "bf16"):
            raise ValueError(f"mixed_precision must be 'no', 'fp16', 'bf16' or None; got {self.mixed_precision!r}.")
        positive = ("num_train_epochs", "per_device_train_batch_size", "gradient_accumulation_steps", "logging_steps")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}.")
        for name in ("checkpointing_steps", "save_total_limit", "image_size"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1 or None; got {getattr(self, name)}.")
        for name in ("learning_rate", "adam_beta1", "adam_beta2", "adam_epsilon", "max_grad_norm"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number; got {value}.")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be > 0; got {self.learning_rate}.")
        if not (0 <= self.adam_beta1 < 1 and 0 <= self.adam_beta2 < 1):
            raise ValueError(f"adam_beta1 and adam_beta2 must be in [0, 1); got {self.adam_beta1}, {self.adam_beta2}.")
        self.synthetic_anomaly_ratio = check_synthetic_anomaly_ratio(self.synthetic_anomaly_ratio)
        parse_synthetic_anomaly_weights(self.synthetic_anomaly_weights)
        parse_foreground_threshold(self.foreground_threshold)

    def to_dict(self) -> dict[str, Any]:
        """The arguments as a JSON-able dict."""
        return dataclasses.asdict(self)

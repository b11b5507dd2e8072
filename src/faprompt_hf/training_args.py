# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""The arguments of :func:`faprompt_hf.training.train`, importable without torch (``faprompt-hf train --help``)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

__all__ = ["FAPromptTrainingArguments"]


@dataclasses.dataclass
class FAPromptTrainingArguments:
    """Hyper-parameters and run options of :func:`train`; the defaults are the reference recipe (spec section 6).

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
            "seed, image_size, per_device_train_batch_size, gradient_accumulation_steps and the number of "
            "processes, which are refused unless --allow_changed_arguments."
        },
    )
    allow_changed_arguments: bool = dataclasses.field(
        default=False,
        metadata={
            "help": "Resume even when seed, image_size, per_device_train_batch_size, gradient_accumulation_steps or "
            "the number of processes differ from the checkpoint's run (the run then does not repeat exactly)."
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

    def to_dict(self) -> dict[str, Any]:
        """The arguments as a JSON-able dict."""
        return dataclasses.asdict(self)

# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""Training FAPrompt's prompts on an auxiliary dataset with masks, with ``accelerate`` (spec section 6).

One loop runs unchanged on a CPU, one GPU, several GPUs or several nodes (``accelerate launch``: DDP, FSDP or
DeepSpeed), with or without mixed precision. Only the prompt learner is optimised; the frozen CLIP runs in the
mixed-precision dtype when one is chosen, while the prompts and the optimizer state stay in float32.

Checkpoints (``output_dir/checkpoints/checkpoint_<step>``) hold the prompt learner, the optimizer, the RNG states
and the position in the data; they are written to ``checkpoint_<step>.tmp`` and renamed when complete, so a run killed
at any moment leaves its last complete checkpoint loadable. Resuming (``resume_from_checkpoint="latest"``) continues
exactly: the final weights equal those of an uninterrupted run, also when it stopped in the middle of an epoch.

Example:
    ```python
    from faprompt_hf import FAPromptModel, FAPromptProcessor, FAPromptImageProcessor
    from faprompt_hf.data import load_mvtec_ad
    from faprompt_hf.training import FAPromptTrainingArguments, train

    model = FAPromptModel.from_clip(clip_model)  # a transformers CLIPModel
    processor = FAPromptProcessor(FAPromptImageProcessor(size=518))
    args = FAPromptTrainingArguments(output_dir="faprompt-mvtec")  # the reference recipe
    model = train(model, load_mvtec_ad("mvtec_anomaly_detection", split="test"), processor, args)
    ```
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import os
import re
import shutil
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, DistributedType, gather_object, set_seed
from datasets import Dataset
from huggingface_hub import HfApi, ModelCardData
from safetensors.torch import load_file
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers.utils import logging

from .data import FAPromptCollator, defer_decoding
from .data.schema import _is_missing
from .modeling_faprompt import FAPromptModel

__all__ = [
    "CHECKPOINTS_DIR",
    "LOSS_TERMS",
    "FAPromptTrainingArguments",
    "find_latest_checkpoint",
    "train",
    "validate_training_dataset",
    "write_model_card",
]

logger = logging.get_logger(__name__)

CHECKPOINTS_DIR = "checkpoints"
"""Sub-folder of ``output_dir`` that holds the ``checkpoint_<step>`` folders."""

LOSS_TERMS: dict[str, str] = {
    "loss": "loss",
    "local": "loss_local",
    "global": "loss_global",
    "orth": "loss_orthogonality",
    "prior": "loss_prior",
}
"""Short name (progress bar, logs) -> ``FAPromptOutput`` field of each loss term."""

TRAINER_STATE_NAME = "trainer_state.json"
_CHECKPOINT_PATTERN = re.compile(r"^checkpoint_(\d+)$")
_TEMPORARY_SUFFIX = ".tmp"
_MIXED_PRECISION_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}
_MODEL_CARD_TAGS = ["anomaly-detection", "zero-shot", "faprompt"]


@dataclasses.dataclass
class FAPromptTrainingArguments:
    """Hyper-parameters and run options of :func:`train`; the defaults are the reference recipe (spec section 6).

    Every field is also a command-line flag of ``examples/train.py`` (through ``transformers.HfArgumentParser``).
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
        default=8, metadata={"help": "Images per batch on each process."}
    )
    learning_rate: float = dataclasses.field(default=1e-3, metadata={"help": "Adam learning rate (constant)."})
    adam_beta1: float = dataclasses.field(default=0.5, metadata={"help": "Adam beta1."})
    adam_beta2: float = dataclasses.field(default=0.999, metadata={"help": "Adam beta2."})
    adam_epsilon: float = dataclasses.field(default=1e-8, metadata={"help": "Adam epsilon."})
    max_grad_norm: float | None = dataclasses.field(
        default=None, metadata={"help": "Clip the prompts' gradient norm to this value (default: no clipping)."}
    )
    image_size: int | None = dataclasses.field(
        default=518,
        metadata={"help": "Training image side (a multiple of the patch size); None keeps the processor's size."},
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
            "None: the `accelerate launch`/config setting, which defaults to 'no' (the reference)."
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
            "help": "'latest' (the newest complete checkpoint in output_dir; a fresh start when there is none) "
            "or the path of a checkpoint folder."
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
    use_cpu: bool = dataclasses.field(default=False, metadata={"help": "Train on the CPU even if a GPU is present."})

    def __post_init__(self) -> None:
        """Check the values that would otherwise fail late, inside the loop."""
        if self.mixed_precision not in (None, "no", *_MIXED_PRECISION_DTYPES):
            raise ValueError(f"mixed_precision must be 'no', 'fp16', 'bf16' or None; got {self.mixed_precision!r}.")
        positive = ("num_train_epochs", "per_device_train_batch_size", "gradient_accumulation_steps", "logging_steps")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}.")
        for name in ("checkpointing_steps", "save_total_limit", "image_size"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1 or None; got {getattr(self, name)}.")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be > 0; got {self.learning_rate}.")

    def to_dict(self) -> dict[str, Any]:
        """The arguments as a JSON-able dict."""
        return dataclasses.asdict(self)


def validate_training_dataset(dataset: Dataset) -> dict[str, Any]:
    """Check that a dataset can train FAPrompt: anomalous images, each with a ground-truth mask.

    FAPrompt's objective is pixel-level (focal + dice against the mask), so a dataset of normal images only, or with
    anomalous images without masks, cannot train it. Nothing is decoded: only the label and mask columns are read.

    Args:
        dataset: A dataset in :data:`~faprompt_hf.data.ANOMALY_FEATURES` (any loader of :mod:`faprompt_hf.data`).

    Returns:
        ``num_images``, ``num_anomalous`` and ``class_names`` (sorted), for the model card.

    Raises:
        TypeError: ``dataset`` is not a map-style ``datasets.Dataset``.
        ValueError: Missing columns, no images, no anomalous image, or anomalous images without a mask.
    """
    if not isinstance(dataset, Dataset):
        raise TypeError(
            f"train() needs a map-style datasets.Dataset (got {type(dataset).__name__}): exact resumption needs "
            "random access. Load the data without streaming."
        )
    missing = [column for column in ("image", "mask", "label") if column not in dataset.column_names]
    if missing:
        raise ValueError(f"The training dataset lacks the column(s) {missing}; use a loader of faprompt_hf.data.")
    if len(dataset) == 0:
        raise ValueError("The training dataset is empty.")
    columns = defer_decoding(dataset.select_columns(["mask", "label"]))
    labels = [int(label) for label in columns["label"]]
    num_anomalous = sum(labels)
    if num_anomalous == 0:
        raise ValueError(
            f"The training dataset has {len(labels)} images but no anomalous one: FAPrompt learns from anomalous "
            "images and their ground-truth masks (the reference trains on the *test* split of MVTec AD or VisA, "
            "which has them). Use a split with labelled defects."
        )
    without_mask = [
        index for index, (label, mask) in enumerate(zip(labels, columns["mask"], strict=True))
        if label == 1 and _is_missing(mask)
    ]
    if without_mask:
        paths = dataset.select(without_mask[:3])["path"] if "path" in dataset.column_names else without_mask[:3]
        raise ValueError(
            f"{len(without_mask)} anomalous training images have no mask (e.g. {paths}): FAPrompt's objective needs "
            "a ground-truth mask for every anomalous image. Filter them out, e.g. "
            "dataset.filter(lambda row: row['label'] == 0 or row['mask'] is not None)."
        )
    class_names = sorted(set(dataset["class_name"])) if "class_name" in dataset.column_names else []
    return {"num_images": len(labels), "num_anomalous": num_anomalous, "class_names": class_names}


def find_latest_checkpoint(output_dir: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint of a run.

    Only folders named exactly ``checkpoint_<step>`` (with a trainer state) count: a ``checkpoint_<step>.tmp`` folder
    left by a run killed while saving is ignored.

    Args:
        output_dir: The run's ``output_dir``.

    Returns:
        The folder with the highest step, or None when there is none.
    """
    folder = Path(output_dir) / CHECKPOINTS_DIR
    if not folder.is_dir():
        return None
    complete = [
        (int(match.group(1)), path)
        for path in folder.iterdir()
        if (match := _CHECKPOINT_PATTERN.match(path.name)) and (path / TRAINER_STATE_NAME).is_file()
    ]
    return max(complete)[1] if complete else None


def _trainable_state_dict(model: FAPromptModel) -> dict[str, torch.Tensor]:
    """The learned tensors (the prompt learner's state), keyed as in the full model."""
    return model.prompt_learner.state_dict(prefix="prompt_learner.")


def _prompt_digest(state_dict: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 of the learned tensors (the ``prompt_learner.*`` entries of a model state dict), in float32."""
    digest = hashlib.sha256()
    for name, tensor in sorted(state_dict.items()):
        if name.startswith("prompt_learner."):
            digest.update(name.encode())
            digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _is_hub_id(name: str | None) -> bool:
    """Whether ``name`` looks like a Hub repository id rather than a local path."""
    return bool(name) and not os.path.exists(name) and re.fullmatch(r"[\w.-]+/[\w.-]+", name) is not None


def write_model_card(
    output_dir: str | os.PathLike,
    args: FAPromptTrainingArguments,
    base_model: str | None = None,
    dataset_name: str | None = None,
    dataset_summary: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Mapping[str, float]] | None = None,
    metrics_description: str | None = None,
) -> Path:
    """Write ``README.md``, a Hub model card: YAML metadata, training data, hyper-parameters and metrics.

    Args:
        output_dir: The model folder.
        args: The training arguments (their hyper-parameters are listed).
        base_model: The CLIP the prompts were learned on (a Hub id goes into the metadata's ``base_model``).
        dataset_name: The training data (a Hub id goes into the metadata's ``datasets``).
        dataset_summary: The output of :func:`validate_training_dataset`.
        metrics: Optional per-class metrics (``compute_per_class_metrics``' output) to tabulate.
        metrics_description: What the metrics were measured on.

    Returns:
        The path of the model card.
    """
    from .metrics import format_metrics_table

    card_data = ModelCardData(
        library_name="faprompt-hf",
        tags=list(_MODEL_CARD_TAGS),
        base_model=base_model if _is_hub_id(base_model) else None,
        datasets=[dataset_name] if _is_hub_id(dataset_name) else None,
        license="apache-2.0",
    )
    summary = dict(dataset_summary or {})
    data_lines = [f"- Dataset: {dataset_name or 'not recorded'}"]
    if summary:
        data_lines.append(
            f"- {summary['num_images']} images, {summary['num_anomalous']} of them anomalous with ground-truth masks"
        )
        if summary.get("class_names"):
            data_lines.append(f"- Classes: {', '.join(summary['class_names'])}")
    hyper_parameters = {
        "epochs": args.num_train_epochs if args.max_steps <= 0 else f"max {args.max_steps} steps",
        "batch size per process": args.per_device_train_batch_size,
        "gradient accumulation steps": args.gradient_accumulation_steps,
        "optimizer": f"Adam (lr {args.learning_rate:g}, betas ({args.adam_beta1:g}, {args.adam_beta2:g}))",
        "image size": args.image_size,
        "seed": args.seed,
        "mixed precision": args.mixed_precision or "no",
    }
    sections = [
        f"---\n{card_data.to_yaml()}\n---",
        f"# FAPrompt prompts for {base_model or 'CLIP'}",
        "Fine-grained abnormality prompts (FAPrompt, Zhu et al., ICCV 2025, arXiv 2410.10289) learned on a frozen "
        "CLIP for zero-shot anomaly detection and localisation: the model scores images and returns pixel anomaly "
        "maps for products it never saw in training.",
        f"- Base model: {base_model or 'not recorded'}",
        "## Training data\n\n" + "\n".join(data_lines),
        "## Training hyper-parameters\n\n| parameter | value |\n|---|---|\n"
        + "\n".join(f"| {key} | {value} |" for key, value in hyper_parameters.items()),
    ]
    if metrics:
        heading = "## Evaluation" + (f"\n\n{metrics_description}" if metrics_description else "")
        sections.append(f"{heading}\n\n{format_metrics_table(metrics)}")
    sections.append(
        "## Usage\n\n```python\nimport faprompt_hf  # registers the FAPrompt classes\n"
        "from transformers import AutoModel, AutoProcessor\n\n"
        'model = AutoModel.from_pretrained("<this repository>")\n'
        'processor = AutoProcessor.from_pretrained("<this repository>")\n'
        'outputs = model(**processor(images=image, return_tensors="pt"))\n'
        "outputs.image_scores, outputs.anomaly_maps\n```"
    )
    path = Path(output_dir) / "README.md"
    path.write_text("\n\n".join(sections) + "\n", encoding="utf-8")
    return path


def _fsync_tree(folder: Path) -> None:
    """Flush every file of a folder to disk, so the rename that publishes it never exposes torn files."""
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())


class _Checkpointer:
    """Atomic, rotating ``accelerator.save_state`` checkpoints that hold only the learned tensors of the model."""

    def __init__(self, accelerator: Accelerator, args: FAPromptTrainingArguments) -> None:
        self.accelerator = accelerator
        self.folder = Path(args.output_dir) / CHECKPOINTS_DIR
        self.save_total_limit = args.save_total_limit
        # With DDP (or one process) accelerate would save the frozen CLIP in every checkpoint; these hooks keep only
        # the prompt learner. FSDP and DeepSpeed save their sharded states natively and never call them with weights.
        accelerator.register_save_state_pre_hook(self._keep_trainable_weights)
        accelerator.register_load_state_pre_hook(self._load_trainable_weights)

    def _keep_trainable_weights(self, models: list, weights: list, output_dir: str) -> None:
        for index in range(len(weights)):
            weights[index] = _trainable_state_dict(self.accelerator.unwrap_model(models[index]))

    def _load_trainable_weights(self, models: list, input_dir: str) -> None:
        for index in reversed(range(len(models))):
            model = self.accelerator.unwrap_model(models.pop(index))
            suffix = f"_{index}" if index else ""
            state = load_file(os.path.join(input_dir, f"model{suffix}.safetensors"))
            prefix = "prompt_learner."
            model.prompt_learner.load_state_dict({key.removeprefix(prefix): value for key, value in state.items()})

    def save(self, step: int, state: dict[str, Any]) -> Path:
        """Write ``checkpoint_<step>`` atomically (all processes must call this)."""
        accelerator = self.accelerator
        final = self.folder / f"checkpoint_{step}"
        temporary = final.with_name(final.name + _TEMPORARY_SUFFIX)
        if accelerator.is_main_process:
            shutil.rmtree(temporary, ignore_errors=True)
            temporary.mkdir(parents=True)
        accelerator.wait_for_everyone()
        accelerator.save_state(str(temporary))
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            (temporary / TRAINER_STATE_NAME).write_text(json.dumps(state, indent=2), encoding="utf-8")
            _fsync_tree(temporary)
            if final.exists():
                shutil.rmtree(final)
            os.replace(temporary, final)
            self._rotate()
            logger.info("Saved checkpoint %s", final)
        accelerator.wait_for_everyone()
        return final

    def _rotate(self) -> None:
        """Delete leftover temporary folders and the oldest checkpoints beyond ``save_total_limit``."""
        for path in self.folder.glob(f"checkpoint_*{_TEMPORARY_SUFFIX}"):
            shutil.rmtree(path, ignore_errors=True)
        if self.save_total_limit is None:
            return
        complete = sorted(
            (int(match.group(1)), path)
            for path in self.folder.iterdir()
            if (match := _CHECKPOINT_PATTERN.match(path.name))
        )
        for _, path in complete[: max(0, len(complete) - self.save_total_limit)]:
            shutil.rmtree(path)


def _resolve_resume_path(args: FAPromptTrainingArguments) -> Path | None:
    """The checkpoint folder to resume from, or None for a fresh start."""
    if args.resume_from_checkpoint is None:
        return None
    if args.resume_from_checkpoint == "latest":
        path = find_latest_checkpoint(args.output_dir)
        if path is None:
            logger.warning("resume_from_checkpoint='latest' but %s holds no checkpoint: starting fresh.",
                           Path(args.output_dir) / CHECKPOINTS_DIR)
        return path
    path = Path(args.resume_from_checkpoint)
    if not (path / TRAINER_STATE_NAME).is_file():
        raise FileNotFoundError(
            f"{str(path)!r} is not a complete checkpoint (no {TRAINER_STATE_NAME}); pass a checkpoint_<step> folder "
            "or 'latest'."
        )
    return path


def _cast_frozen_backbone(accelerator: Accelerator, model: FAPromptModel) -> torch.dtype | None:
    """Keep the prompts in float32 and, under mixed precision, cast the frozen CLIP to the low-precision dtype.

    FSDP and DeepSpeed apply mixed precision themselves (and FSDP needs one dtype per flattened unit), so the CLIP is
    only cast for plain and DDP runs.

    Returns:
        The CLIP's dtype before the cast (to restore before saving), or None when it was not cast.
    """
    model.prompt_learner.float()
    low_precision = _MIXED_PRECISION_DTYPES.get(accelerator.mixed_precision)
    if low_precision is None or accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED):
        return None
    original = next(model.clip.parameters()).dtype
    model.clip.to(low_precision)
    return original


def _tracker_config(args: FAPromptTrainingArguments, accelerator: Accelerator) -> dict[str, Any]:
    """Scalar hyper-parameters for the trackers (TensorBoard's hparams accept no None or lists)."""
    config = {key: value for key, value in args.to_dict().items() if isinstance(value, (int, float, str, bool))}
    config["num_processes"] = accelerator.num_processes
    return config


def train(
    model: FAPromptModel,
    train_dataset: Dataset,
    processor: Any,
    args: FAPromptTrainingArguments,
    base_model: str | None = None,
    dataset_name: str | None = None,
    step_callback: Callable[[int, dict[str, float]], None] | None = None,
) -> FAPromptModel:
    """Learn FAPrompt's prompts on a dataset with masks, then save the model, processor and a model card.

    Run it in a script started with ``python`` or ``accelerate launch`` (an ``Accelerator`` is created here; one
    per process). Every process holds identical prompts at the end; this is checked.

    Args:
        model: The model to train (for example ``FAPromptModel.from_clip(...)`` or a trained checkpoint); only its
            ``prompt_learner`` is optimised.
        train_dataset: Training data in :data:`~faprompt_hf.data.ANOMALY_FEATURES`, with anomalous images and masks
            (see :func:`validate_training_dataset`).
        processor: An ``FAPromptProcessor`` or ``FAPromptImageProcessor``. A copy set to ``args.image_size`` is
            used and saved; the caller's object is not modified.
        args: Hyper-parameters and run options.
        base_model: The CLIP the model is built on, for the model card (default: ``model.name_or_path``).
        dataset_name: The training data's name, for the model card.
        step_callback: Called on every process after each optimizer step with the step number and the loss terms
            of that step (averaged over processes and accumulated batches), keyed by :data:`LOSS_TERMS`.

    Returns:
        The trained model (unwrapped, in eval mode), also saved with the processor in ``args.output_dir``.

    Raises:
        ValueError: A dataset that cannot train FAPrompt (see :func:`validate_training_dataset`), an image size
            that is not a multiple of the patch size, or (at the first batch that holds it) a mask whose size differs
            from its image, naming the file, unless ``args.resize_mismatched_masks``.
        FloatingPointError: A loss became NaN or infinite; the message names the step.
        RuntimeError: The processes ended with different prompts.
    """
    dataset_summary = validate_training_dataset(train_dataset)
    processor = copy.deepcopy(processor)
    image_processor = getattr(processor, "image_processor", processor)
    if args.image_size is not None:
        patch_size = model.config.clip_config.vision_config.patch_size
        if args.image_size % patch_size:
            raise ValueError(f"image_size {args.image_size} is not a multiple of the patch size {patch_size}.")
        image_processor.size = {"height": args.image_size, "width": args.image_size}
        model.config.image_size = args.image_size
    base_model = base_model or model.name_or_path or None

    output_dir = Path(args.output_dir)
    log_with = None if args.report_to in ("none", "") else [name.strip() for name in args.report_to.split(",")]
    accelerator = Accelerator(
        mixed_precision=args.mixed_precision,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        cpu=args.use_cpu,
        log_with=log_with,
        project_dir=str(args.logging_dir or output_dir / "runs"),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=args.seed),
    )
    set_seed(args.seed)
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)

    clip_dtype = _cast_frozen_backbone(accelerator, model)
    model.train()
    trainable = model.trainable_parameters()
    if not trainable:
        raise ValueError("The model has no trainable parameters (is model.prompt_learner frozen?).")
    optimizer = torch.optim.Adam(
        trainable, lr=args.learning_rate, betas=(args.adam_beta1, args.adam_beta2), eps=args.adam_epsilon
    )
    dataloader = DataLoader(
        defer_decoding(train_dataset),
        batch_size=args.per_device_train_batch_size,
        shuffle=True,
        collate_fn=FAPromptCollator(processor, resize_mismatched_masks=args.resize_mismatched_masks),
        num_workers=args.dataloader_num_workers,
    )
    model, optimizer, dataloader = accelerator.prepare(model, optimizer, dataloader)
    checkpointer = _Checkpointer(accelerator, args)

    steps_per_epoch = math.ceil(len(dataloader) / args.gradient_accumulation_steps)
    total_steps = args.max_steps if args.max_steps > 0 else args.num_train_epochs * steps_per_epoch
    num_epochs = math.ceil(total_steps / steps_per_epoch)

    global_step, start_epoch, skip_batches = 0, 0, 0
    resume_path = _resolve_resume_path(args)
    if resume_path is None and accelerator.is_main_process and find_latest_checkpoint(output_dir) is not None:
        logger.warning("%s already holds checkpoints of an earlier run; a later resume_from_checkpoint='latest' may "
                       "pick one of them. Use a new output_dir, or remove them.", output_dir / CHECKPOINTS_DIR)
    if resume_path is not None:
        accelerator.load_state(str(resume_path))
        state = json.loads((resume_path / TRAINER_STATE_NAME).read_text(encoding="utf-8"))
        global_step, start_epoch, skip_batches = state["global_step"], state["epoch"], state["batches_in_epoch"]
        layout = {"num_processes": accelerator.num_processes, "per_device_train_batch_size":
                  args.per_device_train_batch_size, "gradient_accumulation_steps": args.gradient_accumulation_steps}
        changed = {key: (state.get(key), value) for key, value in layout.items() if state.get(key) != value}
        if changed and accelerator.is_main_process:
            logger.warning("Resuming with a different layout %s (saved, now): the run will not repeat exactly.",
                           changed)
        if accelerator.is_main_process:
            logger.info("Resumed from %s at step %d (epoch %d, batch %d).", resume_path, global_step,
                        start_epoch + 1, skip_batches)

    accelerator.init_trackers("faprompt", config=_tracker_config(args, accelerator))
    if accelerator.is_main_process:
        logger.info(
            "Training %d prompt parameters on %d images (%d anomalous): %d steps (%d per epoch), %d process(es).",
            sum(parameter.numel() for parameter in trainable), dataset_summary["num_images"],
            dataset_summary["num_anomalous"], total_steps, steps_per_epoch, accelerator.num_processes,
        )
    progress = tqdm(
        total=total_steps,
        initial=global_step,
        desc="FAPrompt",
        disable=not accelerator.is_main_process,
        mininterval=0.1 if sys.stderr.isatty() else 10.0,  # logs and CI get a line every 10 s, not every step
    )
    log_history: list[dict[str, float]] = []
    window: list[torch.Tensor] = []
    accumulated: list[torch.Tensor] = []
    done = global_step >= total_steps
    try:
        for epoch in range(start_epoch, num_epochs):
            if done:
                break
            dataloader.set_epoch(epoch)
            skip = skip_batches if epoch == start_epoch else 0
            batches = accelerator.skip_first_batches(dataloader, skip) if skip else dataloader
            for batch_index, batch in enumerate(batches, start=skip + 1):
                with accelerator.accumulate(model):
                    with accelerator.autocast():
                        inputs = {key: batch[key] for key in ("pixel_values", "labels", "masks", "mask_valid")
                                  if key in batch}
                        outputs = model(**inputs)
                    terms = torch.stack([outputs[field].detach().float() for field in LOSS_TERMS.values()])
                    terms = accelerator.reduce(terms, reduction="mean")
                    if not bool(torch.isfinite(terms).all()):
                        named = zip(LOSS_TERMS, terms.tolist(), strict=True)
                        described = ", ".join(f"{name}={value:.4g}" for name, value in named)
                        raise FloatingPointError(
                            f"The training loss is not finite at step {global_step + 1} (epoch {epoch + 1}, batch "
                            f"{batch_index} of {len(dataloader)}): {described}. Check the data, lower the learning "
                            "rate or train without mixed precision."
                        )
                    accumulated.append(terms)
                    accelerator.backward(outputs.loss)
                    if accelerator.sync_gradients and args.max_grad_norm:
                        accelerator.clip_grad_norm_(trainable, args.max_grad_norm)
                    optimizer.step()
                    optimizer.zero_grad()
                if not accelerator.sync_gradients:
                    continue
                global_step += 1
                step_terms = torch.stack(accumulated).mean(0)
                accumulated.clear()
                window.append(step_terms)
                values = dict(zip(LOSS_TERMS, step_terms.tolist(), strict=True))
                progress.update(1)
                progress.set_postfix({name: f"{value:.4f}" for name, value in values.items()}, refresh=False)
                if global_step % args.logging_steps == 0 or global_step == total_steps:
                    means = dict(zip(LOSS_TERMS, torch.stack(window).mean(0).tolist(), strict=True))
                    window.clear()
                    record = {**{f"train/{name}": value for name, value in means.items()},
                              "train/epoch": epoch + batch_index / len(dataloader)}
                    accelerator.log(record, step=global_step)
                    log_history.append({"step": global_step, **record})
                if args.checkpointing_steps and global_step % args.checkpointing_steps == 0:
                    end_of_epoch = batch_index == len(dataloader)
                    checkpointer.save(global_step, {
                        "global_step": global_step,
                        "epoch": epoch + 1 if end_of_epoch else epoch,
                        "batches_in_epoch": 0 if end_of_epoch else batch_index,
                        "num_processes": accelerator.num_processes,
                        "per_device_train_batch_size": args.per_device_train_batch_size,
                        "gradient_accumulation_steps": args.gradient_accumulation_steps,
                    })
                if step_callback is not None:
                    step_callback(global_step, values)
                if global_step >= total_steps:
                    done = True
                    break
    finally:
        progress.close()

    accelerator.wait_for_everyone()
    unwrapped: FAPromptModel = accelerator.unwrap_model(model)
    if clip_dtype is not None:
        unwrapped.clip.to(clip_dtype)
    state_dict = accelerator.get_state_dict(model)  # gathers FSDP / ZeRO-3 shards (complete on the main process)
    digests = None
    if accelerator.distributed_type not in (DistributedType.FSDP, DistributedType.DEEPSPEED):
        digests = gather_object([_prompt_digest(state_dict)])  # every process holds a full replica: compare them
        if len(set(digests)) != 1:
            raise RuntimeError(f"The processes ended with different prompts (SHA-256 per process: {digests}).")
    unwrapped.save_pretrained(
        output_dir, state_dict=state_dict, is_main_process=accelerator.is_main_process, save_function=accelerator.save
    )
    if accelerator.is_main_process:
        processor.save_pretrained(output_dir)
        write_model_card(output_dir, args, base_model=base_model, dataset_name=dataset_name,
                         dataset_summary=dataset_summary)
        digest = _prompt_digest(state_dict)
        summary = {"global_step": global_step, "num_processes": accelerator.num_processes, "prompt_sha256": digest,
                   "prompt_sha256_per_process": digests, "log_history": log_history}
        (output_dir / TRAINER_STATE_NAME).write_text(json.dumps(summary, indent=2), encoding="utf-8")
        logger.info("Saved the trained model and processor to %s (prompt SHA-256 %s).", output_dir, digest)
        if args.push_to_hub:
            _push_to_hub(output_dir, args)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return unwrapped.eval()


def _push_to_hub(output_dir: Path, args: FAPromptTrainingArguments) -> str:
    """Upload the output folder (model, processor, model card, logs; not the checkpoints) to the Hub."""
    api = HfApi()
    repo_id = args.hub_model_id or output_dir.resolve().name
    repo_url = api.create_repo(repo_id, private=args.hub_private_repo, exist_ok=True)
    api.upload_folder(
        repo_id=repo_url.repo_id,
        folder_path=output_dir,
        ignore_patterns=[f"{CHECKPOINTS_DIR}/*", f"{CHECKPOINTS_DIR}/**"],
        commit_message="Upload FAPrompt model trained with faprompt-hf",
    )
    logger.info("Pushed %s to %s", output_dir, repo_url)
    return str(repo_url)

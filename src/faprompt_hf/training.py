# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""Training FAPrompt's prompts on an auxiliary dataset with masks, with ``accelerate`` (method §6).

One loop runs unchanged on a CPU, one GPU, several GPUs or several nodes (``accelerate launch``: DDP, FSDP or
DeepSpeed), with or without mixed precision. Only the prompt learner is optimised; the frozen CLIP runs in the
mixed-precision dtype when one is chosen, while the prompts and the optimizer state stay in float32.

Checkpoints (``output_dir/checkpoints/checkpoint_<step>``) hold the prompt learner, the optimizer, the RNG states
and the position in the data; they are written to ``checkpoint_<step>.tmp`` and renamed when complete, so a run killed
at any moment leaves its last complete checkpoint loadable. Resuming (``resume_from_checkpoint="latest"``) continues
exactly: the final weights and ``trainer_state.json`` equal those of an uninterrupted run, also when it stopped in the
middle of an epoch. ``latest`` only considers the checkpoints of the run last started in ``output_dir`` and skips
damaged ones; a checkpoint records the run's arguments, and a resume applies changed hyper-parameters (logged) but
refuses changes of :data:`RESUME_FIXED_ARGUMENTS` unless ``allow_changed_arguments``.

Example:
    ```python
    from faprompt_hf import FAPromptModel, FAPromptProcessor
    from faprompt_hf.data import load_mvtec_ad
    from faprompt_hf.training import FAPromptTrainingArguments, train

    model = FAPromptModel.from_clip(clip_model)  # a transformers CLIPModel
    processor = FAPromptProcessor.from_model_config(model.config)
    args = FAPromptTrainingArguments(output_dir="faprompt-mvtec")  # the reference recipe
    model = train(model, load_mvtec_ad("mvtec_anomaly_detection", split="test"), processor, args)
    ```
"""

from __future__ import annotations

import copy
import dataclasses
import errno
import hashlib
import json
import math
import os
import re
import shutil
import sys
import uuid
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

try:
    import resource
except ImportError:  # Windows
    resource = None

import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, DistributedType, broadcast_object_list, gather_object, set_seed
from datasets import Dataset
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers.utils import logging

from .checkpoints import clip_fingerprint
from .data import FAPromptCollator, defer_decoding
from .data.anomaly_synthesis import (
    SyntheticAnomalyDataset,
    summarize_kinds,
)
from .data.schema import _is_missing
from .file_utils import atomic_write, digests_enabled, file_sha256, staged_directory, write_failure
from .hub import push_folder_to_hub, write_model_card
from .modeling_faprompt import FAPromptModel
from .training_args import FAPromptTrainingArguments

__all__ = [
    "CHECKPOINTS_DIR",
    "LOSS_TERMS",
    "RESUME_FIXED_ARGUMENTS",
    "RUN_FILE_NAME",
    "FAPromptTrainingArguments",
    "data_identity",
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
RUN_FILE_NAME = "run.json"
"""File in ``output_dir/checkpoints`` naming the run (``run_id``) whose checkpoints ``latest`` resumes from."""

RESUME_FIXED_ARGUMENTS: tuple[str, ...] = (
    "seed",
    "image_size",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "num_processes",
    "synthesize_anomalies",
    "synthetic_anomaly_ratio",
    "synthetic_anomaly_weights",
    "foreground_threshold",
)
"""What fixes the data a run sees (order, image size, batching, synthetic anomalies; ``num_processes`` is the
launch's). Resuming with
other values than the checkpoint's run is refused unless ``allow_changed_arguments``. Every other argument may
change on resume: the new value applies from the resumed step on (a new learning rate replaces the one in the
restored optimizer state) and the change is logged."""

_RUN_CONTROL_ARGUMENTS = ("output_dir", "resume_from_checkpoint", "allow_changed_arguments", "overwrite_output_dir")
_LOW_DISK_SPACE = 64 * 2**20  # bytes: below this, a failed checkpoint write is reported as a full disk
_CHECKPOINT_PATTERN = re.compile(r"^checkpoint_(\d+)$")
_TEMPORARY_SUFFIX = ".tmp"
_MIXED_PRECISION_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def validate_training_dataset(
    dataset: Dataset, allow_missing_masks: bool = False, synthesize_anomalies: bool = False
) -> dict[str, Any]:
    """Check that a dataset can train FAPrompt: anomalous images, each with a ground-truth mask.

    FAPrompt's objective is pixel-level (focal + dice against the mask), so a dataset of normal images only, or with
    anomalous images without masks, cannot train it, unless ``synthesize_anomalies`` (normal images get synthetic
    anomalous copies with masks) or ``allow_missing_masks`` (anomalous images without a mask train the image-level
    losses only). Nothing is decoded: only the label and mask columns are read.

    Args:
        dataset: A dataset in :data:`~faprompt_hf.data.ANOMALY_FEATURES` (any loader of :mod:`faprompt_hf.data`).
        allow_missing_masks: Accept anomalous images without a mask.
        synthesize_anomalies: Accept a dataset without anomalous images; require normal ones.

    Returns:
        ``num_images``, ``num_anomalous`` and ``class_names`` (sorted), for the model card, and
        ``num_without_mask``: the anomalous images without a mask.

    Raises:
        TypeError: ``dataset`` is not a map-style ``datasets.Dataset``.
        ValueError: Missing columns, no images, no anomalous image (unless ``synthesize_anomalies``), no normal image
            with ``synthesize_anomalies``, or anomalous images without a mask (unless ``allow_missing_masks``).
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
    labels, without_mask = _labels_and_missing_masks(dataset)
    num_anomalous = sum(labels)
    if synthesize_anomalies and num_anomalous == len(labels):
        raise ValueError(
            f"--synthesize_anomalies turns normal images into synthetic anomalies, but all {len(labels)} images of the "
            "training dataset are labelled anomalous. Add normal images (e.g. a good/ folder, or the train split of "
            "MVTec AD: --split train)."
        )
    if num_anomalous == 0 and not synthesize_anomalies:
        raise ValueError(
            f"The training dataset has {len(labels)} images but no anomalous one: FAPrompt learns from anomalous "
            "images and their ground-truth masks (the reference trains on the *test* split of MVTec AD or VisA, "
            "which has them). Use a split with labelled defects, or pass --synthesize_anomalies "
            "(synthesize_anomalies=True) to pair the normal images with synthetic anomalies."
        )
    if without_mask and not allow_missing_masks:
        paths = dataset.select(without_mask[:3])["path"] if "path" in dataset.column_names else without_mask[:3]
        raise ValueError(
            f"{len(without_mask)} anomalous training images have no mask (e.g. {paths}): FAPrompt's objective needs "
            "a ground-truth mask for every anomalous image. Filter them out, e.g. "
            "dataset.filter(lambda row: row['label'] == 0 or row['mask'] is not None), or pass "
            "--allow_missing_masks (allow_missing_masks=True) to train their image-level losses only."
        )
    class_names = sorted(set(dataset["class_name"])) if "class_name" in dataset.column_names else []
    return {
        "num_images": len(labels),
        "num_anomalous": num_anomalous,
        "class_names": class_names,
        "num_without_mask": len(without_mask),
    }


def _labels_and_missing_masks(dataset: Dataset) -> tuple[list[int], list[int]]:
    """Every label of the dataset, and the indices of its anomalous rows without a mask (nothing is decoded)."""
    columns = defer_decoding(dataset.select_columns(["mask", "label"]))
    labels = [int(label) for label in columns["label"]]
    without_mask = [
        index
        for index, (label, mask) in enumerate(zip(labels, columns["mask"], strict=True))
        if label == 1 and _is_missing(mask)
    ]
    return labels, without_mask


def _read_trainer_state(checkpoint: Path) -> dict[str, Any]:
    """The trainer state of a checkpoint folder, checked for the fields a resume needs.

    Raises:
        ValueError: The file is missing, truncated or not a trainer state; the message names it.
    """
    path = checkpoint / TRAINER_STATE_NAME
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} cannot be read ({type(error).__name__}: {error}).") from error
    needed = ("global_step", "epoch", "batches_in_epoch")
    if not isinstance(state, dict) or not all(isinstance(state.get(key), int) for key in needed):
        raise ValueError(f"{path} is not a trainer state: it lacks the integers {needed}.")
    return state


def _check_checkpoint(checkpoint: Path) -> dict[str, Any]:
    """Read every file of a checkpoint far enough to know it is complete; return its trainer state.

    ``.safetensors`` files are read tensor by tensor, ``torch.save`` files (``.bin``, ``.pkl``, ``.pt``: zip archives)
    have every member's CRC checked without unpickling anything, and ``.json`` files are parsed.

    Raises:
        ValueError: A damaged file; the message names it and the cause.
    """
    state = _read_trainer_state(checkpoint)
    recorded = state.get("file_sha256")
    if isinstance(recorded, dict) and digests_enabled():
        for name, expected in sorted(recorded.items()):
            path = checkpoint / name
            try:
                found = file_sha256(path)
            except OSError as error:
                raise ValueError(f"{path} is missing or unreadable ({error.strerror}).") from error
            if found != expected:
                raise ValueError(
                    f"{path} is damaged: its SHA-256 {found} differs from the {expected} recorded in "
                    f"{TRAINER_STATE_NAME} when the checkpoint was written (set FAPROMPT_VERIFY_DIGESTS=0 to resume "
                    "from it anyway)."
                )
    for path in sorted(checkpoint.rglob("*")):
        if not path.is_file():
            continue
        try:
            if path.suffix == ".safetensors":
                with safe_open(str(path), framework="pt") as handle:
                    for key in handle.keys():  # noqa: SIM118 - safe_open objects are not iterable
                        handle.get_tensor(key)
            elif path.suffix in (".bin", ".pkl", ".pt"):
                if not zipfile.is_zipfile(path):
                    raise ValueError("truncated, or not a file written by torch.save")
                with zipfile.ZipFile(path) as archive:
                    if (bad := archive.testzip()) is not None:
                        raise ValueError(f"member {bad} is corrupt")
            elif path.suffix == ".json" and path.name != TRAINER_STATE_NAME:
                json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, RuntimeError, SafetensorError, zipfile.BadZipFile) as error:
            raise ValueError(f"{path} is damaged ({type(error).__name__}: {error}).") from error
    return state


def _read_run(output_dir: str | os.PathLike) -> dict[str, Any]:
    """The run file of ``output_dir`` (``run_id`` and ``resumed_from``), or {} when there is none (older runs)."""
    path = Path(output_dir) / CHECKPOINTS_DIR / RUN_FILE_NAME
    try:
        run = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return run if isinstance(run, dict) and isinstance(run.get("run_id"), str) else {}


def _run_checkpoints(output_dir: str | os.PathLike, run_id: str | None) -> tuple[list[Path], list[Path]]:
    """The renamed (complete) checkpoint folders of the run ``run_id`` in ``output_dir``, and those of other runs.

    Both lists are newest first. With ``run_id`` None (a folder written before runs were recorded), every checkpoint
    counts as the run's.
    """
    folder = Path(output_dir) / CHECKPOINTS_DIR
    if not folder.is_dir():
        return [], []
    complete = sorted(
        (
            (int(match.group(1)), path)
            for path in folder.iterdir()
            if (match := _CHECKPOINT_PATTERN.match(path.name)) and (path / TRAINER_STATE_NAME).is_file()
        ),
        reverse=True,
    )
    ours, others = [], []
    for _, path in complete:
        if run_id is None:
            ours.append(path)
            continue
        try:
            belongs = json.loads((path / TRAINER_STATE_NAME).read_text(encoding="utf-8")).get("run_id") == run_id
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
            belongs = True  # unreadable: a damaged checkpoint of this run is reported (and skipped) when checked
        (ours if belongs else others).append(path)
    return ours, others


def _checkpoint_run_id(checkpoint: Path) -> str | None:
    """The ``run_id`` recorded in a checkpoint's trainer state (None when unreadable)."""
    try:
        run_id = json.loads((checkpoint / TRAINER_STATE_NAME).read_text(encoding="utf-8")).get("run_id")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        return None
    return run_id if isinstance(run_id, str) else None


def _checkpoint_step(checkpoint: Path) -> int:
    return int(_CHECKPOINT_PATTERN.match(checkpoint.name).group(1))


def _refuse_replacing_other_runs(
    args: FAPromptTrainingArguments, run_id: str, start_step: int, resumed: Path | None, latest: bool
) -> None:
    """Refuse to start a run that would replace another run's work in ``output_dir`` (unless overwrite allowed).

    Another run's work: checkpoints of another run (or branch) at a later step than this run starts from (this run
    would write its own under the same names), and, unless this run continues the recorded one (``latest``), the
    model a finished run saved (``trainer_state.json``).

    Raises:
        ValueError: Names the folder, what would be replaced and the three ways on; nothing has been changed.
    """
    if args.overwrite_output_dir:
        return
    output_dir = Path(args.output_dir)
    _, others = _run_checkpoints(output_dir, run_id)
    replaced = sorted((path for path in others if _checkpoint_step(path) > start_step), key=_checkpoint_step)
    names = [f"{CHECKPOINTS_DIR}/{path.name}" for path in replaced]
    if not latest and (output_dir / TRAINER_STATE_NAME).is_file():
        names.append(f"the trained model ({TRAINER_STATE_NAME}, model weights)")
    if not names:
        return
    shown = ", ".join(names[:6] + ([f"... ({len(names) - 6} more)"] if len(names) > 6 else []))
    if latest:
        how = f"Resuming the run recorded in {output_dir / CHECKPOINTS_DIR / RUN_FILE_NAME} would replace"
    elif resumed is not None:
        how = f"Resuming from {resumed} starts a new branch of the run, which would replace"
    else:
        how = "A fresh run (no --resume_from_checkpoint) would replace"
    raise ValueError(
        f"{output_dir} holds another run's work: {how} {shown}. Nothing was changed. Continue that run with "
        "--resume_from_checkpoint latest, train into another --output_dir (a checkpoint path resumes into any "
        "folder), or pass --overwrite_output_dir (overwrite_output_dir=True) to replace them."
    )


def data_identity(dataset: Dataset, dataset_name: str | None = None) -> dict[str, Any]:
    """What identifies a training dataset in a checkpoint: its name, its item count and a digest of its item list.

    The digest covers each row's ``path``, ``label``, ``class_name`` and ``defect_type`` (no image is decoded), so
    another folder, other classes or another number of items change it.

    Args:
        dataset: The training dataset.
        dataset_name: The name the run gives it (e.g. the dataset path, or ``"synthetic (stripes)"``).

    Returns:
        ``{"name", "num_items", "items_sha256"}``.
    """
    digest = hashlib.sha256()
    for column in ("path", "label", "class_name", "defect_type"):
        if column in dataset.column_names:
            digest.update(column.encode())
            digest.update(json.dumps(dataset[column], default=str).encode())
    return {"name": dataset_name, "num_items": len(dataset), "items_sha256": digest.hexdigest()}


def find_latest_checkpoint(output_dir: str | os.PathLike) -> Path | None:
    """The newest intact checkpoint of the run in ``output_dir``, the one ``resume_from_checkpoint="latest"`` uses.

    Only checkpoints of the run recorded in ``output_dir/checkpoints/run.json`` count (the last run started in
    ``output_dir``): checkpoints left there by an earlier run are ignored, with a warning. Only folders named
    exactly ``checkpoint_<step>`` count: a ``checkpoint_<step>.tmp`` folder left by a run killed while saving is
    ignored. A damaged checkpoint (a truncated ``model.safetensors``, ``optimizer.bin`` or ``trainer_state.json``)
    is skipped with a warning naming the bad file, and the previous one is used. When the run has no intact
    checkpoint of its own yet but was itself resumed from one, that one is returned.

    Args:
        output_dir: The run's ``output_dir``.

    Returns:
        The checkpoint folder, or None when there is none.
    """
    found = _find_resumable_checkpoint(output_dir)
    return None if found is None else found[0]


def _find_resumable_checkpoint(output_dir: str | os.PathLike) -> tuple[Path, dict[str, Any]] | None:
    """:func:`find_latest_checkpoint` and the checkpoint's trainer state."""
    run = _read_run(output_dir)
    ours, others = _run_checkpoints(output_dir, run.get("run_id"))
    if others:
        logger.warning(
            "Ignoring %d checkpoint(s) in %s of another run than the one last started there (%s); resume from one "
            "of them explicitly with resume_from_checkpoint=<path> if you mean to.",
            len(others),
            Path(output_dir) / CHECKPOINTS_DIR,
            ", ".join(path.name for path in others),
        )
    candidates = list(ours)
    if run.get("resumed_from") and Path(run["resumed_from"]) not in candidates:
        candidates.append(Path(run["resumed_from"]))
    for path in candidates:
        try:
            return path, _check_checkpoint(path)
        except ValueError as error:
            logger.warning("Skipping the damaged checkpoint %s: %s Falling back to the previous one.", path, error)
    return None


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


def _fsync_tree(folder: Path) -> None:
    """Flush every file of a folder to disk, so the rename that publishes it never exposes torn files."""
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())


def _checkpoint_write_error(error: BaseException, path: Path) -> OSError:
    """An ``OSError`` naming the checkpoint being written and the cause, for any failure of a checkpoint write.

    ``torch.save`` reports a full disk or a file-size limit as ``RuntimeError: [enforce fail at
    inline_container.cc:...] . unexpected pos``, without the cause: it is recovered from the free space of the file
    system and the process's file-size limit.
    """
    cause: BaseException | None = error
    while cause is not None and not (isinstance(cause, OSError) and cause.errno):
        cause = cause.__cause__ or cause.__context__
    if cause is None:
        existing = next(folder for folder in (path, *path.parents) if folder.exists())
        file_size_limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0] if resource is not None else -1
        if shutil.disk_usage(existing).free < _LOW_DISK_SPACE:
            cause = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        elif file_size_limit not in (-1, getattr(resource, "RLIM_INFINITY", -1)):
            cause = OSError(errno.EFBIG, f"{os.strerror(errno.EFBIG)} (the file-size limit, ulimit -f)")
        else:
            cause = OSError(errno.EIO, f"{type(error).__name__}: {error}")
    failure = write_failure(cause, path)
    return OSError(
        failure.errno,
        f"{failure.strerror} Earlier checkpoints in {path.parent} are intact: resume from them with "
        "resume_from_checkpoint='latest' once the cause is fixed.",
    )


class _Checkpointer:
    """Atomic, rotating ``accelerator.save_state`` checkpoints that hold only the learned tensors of the model."""

    def __init__(self, accelerator: Accelerator, args: FAPromptTrainingArguments) -> None:
        self.accelerator = accelerator
        self.folder = Path(args.output_dir) / CHECKPOINTS_DIR
        self.save_total_limit = args.save_total_limit
        self.overwrite = args.overwrite_output_dir  # may another run's checkpoint be replaced (set by _resume)
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

    def write_run(self, run_id: str, resumed_from: Path | None) -> None:
        """Record (main process) which run writes to this folder, so that ``latest`` only picks its checkpoints.

        ``run_id`` names the branch last started: a fresh start or an explicit resume starts a new one, ``latest``
        continues the recorded one (and inherits its ``overwrite_output_dir``).
        """
        if self.accelerator.is_main_process:
            run = {
                "run_id": run_id,
                "resumed_from": None if resumed_from is None else str(resumed_from.resolve()),
                "overwrite_output_dir": self.overwrite,
            }
            with atomic_write(self.folder / RUN_FILE_NAME) as handle:
                json.dump(run, handle, indent=2)

    def save(self, step: int, state: dict[str, Any]) -> Path:
        """Write ``checkpoint_<step>`` atomically (all processes must call this).

        Raises:
            OSError: The write failed (full disk, file-size limit, ...): the message names the checkpoint and the
                cause; the temporary folder is removed and earlier checkpoints stay intact.
        """
        accelerator = self.accelerator
        final = self.folder / f"checkpoint_{step}"
        temporary = final.with_name(final.name + _TEMPORARY_SUFFIX)
        owner = _checkpoint_run_id(final) if final.is_dir() else state["run_id"]
        if owner != state["run_id"] and not self.overwrite:
            raise ValueError(
                f"{final} was written by another run ({owner}); this run ({state['run_id']}) will not replace it. "
                "Train into another output_dir, or pass --overwrite_output_dir (overwrite_output_dir=True)."
            )
        try:
            if accelerator.is_main_process:
                shutil.rmtree(temporary, ignore_errors=True)
                temporary.mkdir(parents=True)
            accelerator.wait_for_everyone()
            accelerator.save_state(str(temporary))
            accelerator.wait_for_everyone()
            if accelerator.is_main_process:
                files = sorted(path for path in temporary.rglob("*") if path.is_file())
                state = {
                    **state,
                    "file_sha256": {path.relative_to(temporary).as_posix(): file_sha256(path) for path in files},
                }
                with atomic_write(temporary / TRAINER_STATE_NAME) as handle:
                    json.dump(state, handle, indent=2)
                _fsync_tree(temporary)
                if final.exists():
                    shutil.rmtree(final)
                os.replace(temporary, final)
        except (OSError, RuntimeError) as error:
            shutil.rmtree(temporary, ignore_errors=True)
            raise _checkpoint_write_error(error, temporary) from error
        if accelerator.is_main_process:
            self._rotate(state["run_id"])
            logger.info("Saved checkpoint %s", final)
        accelerator.wait_for_everyone()
        return final

    def _rotate(self, run_id: str) -> None:
        """Delete leftover temporary folders and this run's oldest checkpoints beyond ``save_total_limit``."""
        for path in self.folder.glob(f"checkpoint_*{_TEMPORARY_SUFFIX}"):
            shutil.rmtree(path, ignore_errors=True)
        if self.save_total_limit is None:
            return
        ours, _ = _run_checkpoints(self.folder.parent, run_id)
        for path in ours[self.save_total_limit :]:
            shutil.rmtree(path)


@dataclasses.dataclass
class _LoopState:
    """Where the step loop is: what a checkpoint saves besides the tensors, RNG states and data position.

    Attributes:
        run_id: Identifies the run (kept across resumes through ``latest``), so ``latest`` ignores other runs'.
        global_step: Optimizer steps done.
        epoch: The epoch in progress (0-based).
        batches_in_epoch: Batches of ``epoch`` already consumed.
        log_history: The logged points so far (``step``, ``train/<term>``, ``train/epoch``), across resumes.
        loss_window: The loss terms of each step since the last logged point (in :data:`LOSS_TERMS` order).
    """

    run_id: str
    global_step: int = 0
    epoch: int = 0
    batches_in_epoch: int = 0
    log_history: list[dict[str, float]] = dataclasses.field(default_factory=list)
    loss_window: list[list[float]] = dataclasses.field(default_factory=list)

    @classmethod
    def from_checkpoint(cls, saved: Mapping[str, Any]) -> _LoopState:
        """The state saved by :meth:`checkpoint_state` (checkpoints of older versions lack the history)."""
        return cls(
            run_id=saved.get("run_id") or uuid.uuid4().hex,
            global_step=saved["global_step"],
            epoch=saved["epoch"],
            batches_in_epoch=saved["batches_in_epoch"],
            log_history=list(saved.get("log_history", [])),
            loss_window=[list(terms) for terms in saved.get("loss_window", [])],
        )

    def checkpoint_state(
        self, args: FAPromptTrainingArguments, num_processes: int, identity: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """The trainer state of a checkpoint: this state, the layout, the run's arguments, data and CLIP identity."""
        return {
            **dict(identity or {}),
            **dataclasses.asdict(self),
            "num_processes": num_processes,
            "per_device_train_batch_size": args.per_device_train_batch_size,
            "gradient_accumulation_steps": args.gradient_accumulation_steps,
            "arguments": args.to_dict(),
        }


@dataclasses.dataclass
class _TrainingSetup:
    """What the set-up phase prepares for the loop: the accelerator, the wrapped model, optimizer and data."""

    accelerator: Accelerator
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    dataloader: DataLoader
    trainable: list[torch.nn.Parameter]
    checkpointer: _Checkpointer
    clip_dtype: torch.dtype | None
    steps_per_epoch: int
    total_steps: int
    identity: dict[str, Any] = dataclasses.field(default_factory=dict)  # data and CLIP, see _run_identity


def _run_identity(model: FAPromptModel, dataset: Dataset, dataset_name: str | None) -> dict[str, Any]:
    """What a checkpoint records of the data and the CLIP, so that a resume on other ones is refused."""
    return {"data": data_identity(dataset, dataset_name), "clip_fingerprint": clip_fingerprint(model.clip)}


def _changed_identity(saved: Mapping[str, Any], identity: Mapping[str, Any]) -> dict[str, str]:
    """``{what: "saved -> now"}`` for the data and CLIP identity (checkpoints that record them)."""
    changed = {}
    before, now = saved.get("data"), identity.get("data")
    if isinstance(before, dict) and now and before != now:
        changed["data"] = (
            f"data {before.get('name')!r} ({before.get('num_items')} items, sha256 "
            f"{str(before.get('items_sha256'))[:12]}) -> {now['name']!r} ({now['num_items']} items, sha256 "
            f"{now['items_sha256'][:12]})"
        )
    before, now = saved.get("clip_fingerprint"), identity.get("clip_fingerprint")
    if before and now and before != now:
        changed["clip"] = f"CLIP fingerprint {before} -> {now} (another --clip or other CLIP weights)"
    return changed


def _resolve_resume_path(args: FAPromptTrainingArguments) -> tuple[Path, dict[str, Any]] | None:
    """The checkpoint folder to resume from and its trainer state, or None for a fresh start."""
    if args.resume_from_checkpoint is None:
        return None
    if args.resume_from_checkpoint == "latest":
        found = _find_resumable_checkpoint(args.output_dir)
        if found is None:
            logger.warning(
                "resume_from_checkpoint='latest' but %s holds no intact checkpoint of this run: starting fresh.",
                Path(args.output_dir) / CHECKPOINTS_DIR,
            )
        else:
            logger.info("resume_from_checkpoint='latest' picked %s (step %d).", found[0], found[1]["global_step"])
        return found
    path = Path(args.resume_from_checkpoint)
    if not (path / TRAINER_STATE_NAME).is_file():
        raise FileNotFoundError(
            f"{str(path)!r} is not a complete checkpoint (no {TRAINER_STATE_NAME}); pass a checkpoint_<step> folder "
            "or 'latest'."
        )
    return path, _check_checkpoint(path)


def _changed_arguments(
    saved: Mapping[str, Any], args: FAPromptTrainingArguments, num_processes: int
) -> dict[str, tuple[Any, Any]]:
    """``{name: (saved, now)}`` for each argument (and ``num_processes``) that differs from the checkpoint's run."""
    before = dict(saved.get("arguments", {}))  # checkpoints of older versions only recorded the layout below
    for key in ("num_processes", "per_device_train_batch_size", "gradient_accumulation_steps"):
        if key in saved:
            before.setdefault(key, saved[key])
    now = {**args.to_dict(), "num_processes": num_processes}
    return {
        key: (before[key], value)
        for key, value in now.items()
        if key in before and key not in _RUN_CONTROL_ARGUMENTS and before[key] != value
    }


def _apply_resume_rules(
    path: Path,
    saved: Mapping[str, Any],
    args: FAPromptTrainingArguments,
    num_processes: int,
    identity: Mapping[str, Any] | None = None,
) -> None:
    """Refuse changes of :data:`RESUME_FIXED_ARGUMENTS`, the data or the CLIP (unless allowed); log every change."""
    changed = _changed_arguments(saved, args, num_processes)
    described = {key: f"{key} {before!r} -> {now!r}" for key, (before, now) in changed.items()}
    fixed = [key for key in RESUME_FIXED_ARGUMENTS if key in changed]
    for key, text in _changed_identity(saved, identity or {}).items():
        changed[key], described[key] = text, text
        fixed.append(key)
    if fixed and not args.allow_changed_arguments:
        raise ValueError(
            f"Resuming {path} with arguments that differ from its run's: {'; '.join(described[key] for key in fixed)}. "
            "These fix the data the run sees (order, image size, batching, synthetic anomalies, the items, the CLIP), "
            "so the result would "
            "not continue the saved run. Pass the saved values, or --allow_changed_arguments "
            "(allow_changed_arguments=True) to continue with the new ones."
        )
    if changed:
        logger.warning(
            "Resuming %s with changed arguments, applied from step %d on: %s.",
            path,
            saved["global_step"],
            "; ".join(described.values()),
        )


def _set_up(
    model: FAPromptModel, train_dataset: Dataset, processor: Any, args: FAPromptTrainingArguments
) -> _TrainingSetup:
    """Create the accelerator, the optimizer and the data loader, and prepare them (set-up phase of :func:`train`)."""
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
    rows, collate_fn = _training_rows(train_dataset, processor, args)
    dataloader = DataLoader(
        rows,
        batch_size=args.per_device_train_batch_size,
        shuffle=True,
        collate_fn=collate_fn,
        num_workers=args.dataloader_num_workers,
    )
    model, optimizer, dataloader = accelerator.prepare(model, optimizer, dataloader)
    steps_per_epoch = math.ceil(len(dataloader) / args.gradient_accumulation_steps)
    total_steps = args.max_steps if args.max_steps > 0 else args.num_train_epochs * steps_per_epoch
    return _TrainingSetup(
        accelerator,
        model,
        optimizer,
        dataloader,
        trainable,
        _Checkpointer(accelerator, args),
        clip_dtype,
        steps_per_epoch,
        total_steps,
    )


class _WithoutPixelTruth:
    """A collator whose batches mark every image as without pixel ground truth (``mask_valid`` all False)."""

    def __init__(self, collator: FAPromptCollator) -> None:
        self.collator = collator

    def __call__(self, rows: list[Mapping[str, Any]]) -> dict[str, Any]:
        batch = self.collator(rows)
        batch["mask_valid"] = torch.zeros_like(batch["mask_valid"])
        return batch


def _training_rows(
    train_dataset: Dataset, processor: Any, args: FAPromptTrainingArguments
) -> tuple[torch.utils.data.Dataset, Callable[[list[Mapping[str, Any]]], dict[str, Any]]]:
    """The rows the data loader reads and its collate function.

    With ``synthesize_anomalies``, the dataset's rows followed by synthetic anomalous copies of its normal images
    (:class:`~faprompt_hf.data.anomaly_synthesis.SyntheticAnomalyDataset`, painted in the workers). With
    ``allow_missing_masks`` and no mask anywhere (no synthesis, no anomalous image with a mask), every batch is
    marked as without pixel ground truth, so that only the image-level objective trains.
    """
    collator = FAPromptCollator(processor, resize_mismatched_masks=args.resize_mismatched_masks)
    if args.synthesize_anomalies:
        rows = SyntheticAnomalyDataset(
            train_dataset,
            ratio=args.synthetic_anomaly_ratio,
            weights=args.synthetic_anomaly_weights,
            seed=args.seed,
            foreground_threshold=args.foreground_threshold,
        )
        return rows, collator
    if args.allow_missing_masks:
        labels, without_mask = _labels_and_missing_masks(train_dataset)
        if len(without_mask) == sum(labels):
            return defer_decoding(train_dataset), _WithoutPixelTruth(collator)
    return defer_decoding(train_dataset), collator


def _log_data_options(args: FAPromptTrainingArguments, dataset_summary: Mapping[str, Any], rows: Any) -> None:
    """Say once (main process) what --allow_missing_masks and --synthesize_anomalies do to this run's data."""
    num_without_mask = dataset_summary.get("num_without_mask", 0)
    if isinstance(rows, SyntheticAnomalyDataset):
        kinds = ", ".join(f"{kind} {count}" for kind, count in summarize_kinds(rows).items() if count)
        logger.info(
            "synthesize_anomalies: %d of the %d normal images also appear as a synthetic anomaly with its mask "
            "(ratio %g; %s; defects %s): %d rows per epoch.",
            rows.num_synthetic,
            len(rows.normal_indices),
            rows.ratio,
            kinds,
            "anywhere"
            if rows.foreground_threshold is None
            else f"on the foreground (threshold {rows.foreground_threshold})",
            len(rows),
        )
    if not args.allow_missing_masks:
        return
    if num_without_mask == 0:
        logger.info("allow_missing_masks: every anomalous training image has a mask; nothing is left out.")
    elif num_without_mask == dataset_summary["num_anomalous"] and not isinstance(rows, SyntheticAnomalyDataset):
        logger.warning(
            "allow_missing_masks: none of the %d anomalous training images has a mask: training the image-level "
            "objective only (loss_local is 0).",
            num_without_mask,
        )
    else:
        logger.warning(
            "allow_missing_masks: %d of the %d anomalous training images have no mask: their pixel-level losses are "
            "left out, their image-level losses stay.",
            num_without_mask,
            dataset_summary["num_anomalous"],
        )


def _resume(setup: _TrainingSetup, args: FAPromptTrainingArguments) -> _LoopState:
    """Load the checkpoint to resume from, if any, under the rules of :data:`RESUME_FIXED_ARGUMENTS` (resume phase).

    The arguments of this call win: a changed learning rate (or Adam betas, epsilon) replaces the one the restored
    optimizer state carries.
    """
    accelerator = setup.accelerator
    found = _resolve_resume_path(args)
    run = _read_run(args.output_dir)
    latest = found is not None and args.resume_from_checkpoint == "latest"
    new_run_id = broadcast_object_list([uuid.uuid4().hex])[0]
    # A fresh start or an explicit resume starts a new branch; `latest` continues the branch recorded in run.json.
    run_id = (run.get("run_id") or found[1].get("run_id") or new_run_id) if latest else new_run_id
    if latest and run.get("overwrite_output_dir"):
        setup.checkpointer.overwrite = True  # the branch was allowed to replace when it started
    if not setup.checkpointer.overwrite:
        _refuse_replacing_other_runs(
            args, run_id, 0 if found is None else found[1]["global_step"], None if found is None else found[0], latest
        )
    if found is None:
        state = _LoopState(run_id=run_id)
    else:
        path, saved = found
        _apply_resume_rules(path, saved, args, accelerator.num_processes, setup.identity)
        accelerator.load_state(str(path))
        for group in setup.optimizer.param_groups:  # the restored optimizer state carries the saved run's values
            group.update(lr=args.learning_rate, betas=(args.adam_beta1, args.adam_beta2), eps=args.adam_epsilon)
        state = _LoopState.from_checkpoint(saved)
        state.run_id = run_id
        if accelerator.is_main_process:
            logger.info(
                "Resumed from %s at step %d (epoch %d, batch %d).",
                path,
                state.global_step,
                state.epoch + 1,
                state.batches_in_epoch,
            )
    if args.checkpointing_steps or (Path(args.output_dir) / CHECKPOINTS_DIR).is_dir():
        setup.checkpointer.write_run(state.run_id, None if found is None else found[0])
    return state


def _run_steps(
    setup: _TrainingSetup,
    state: _LoopState,
    args: FAPromptTrainingArguments,
    step_callback: Callable[[int, dict[str, float]], None] | None,
) -> None:
    """The step loop: optimizer steps from ``state`` to ``setup.total_steps``, with logs and checkpoints.

    ``state`` is updated in place after every optimizer step.
    """
    accelerator, model, optimizer, dataloader = setup.accelerator, setup.model, setup.optimizer, setup.dataloader
    num_epochs = math.ceil(setup.total_steps / setup.steps_per_epoch)
    progress = tqdm(
        total=setup.total_steps,
        initial=state.global_step,
        desc="FAPrompt",
        disable=not accelerator.is_main_process,
        mininterval=0.1 if sys.stderr.isatty() else 10.0,  # logs and CI get a line every 10 s, not every step
    )
    accumulated: list[torch.Tensor] = []
    start_epoch, skip = state.epoch, state.batches_in_epoch
    try:
        for epoch in range(start_epoch, num_epochs):
            if state.global_step >= setup.total_steps:
                break
            dataloader.set_epoch(epoch)
            skip = skip if epoch == start_epoch else 0
            batches = accelerator.skip_first_batches(dataloader, skip) if skip else dataloader
            for batch_index, batch in enumerate(batches, start=skip + 1):
                with accelerator.accumulate(model):
                    with accelerator.autocast():
                        inputs = {
                            key: batch[key] for key in ("pixel_values", "labels", "masks", "mask_valid") if key in batch
                        }
                        if args.allow_missing_masks:
                            inputs["allow_missing_masks"] = True
                        outputs = model(**inputs)
                    terms = torch.stack([outputs[field].detach().float() for field in LOSS_TERMS.values()])
                    terms = accelerator.reduce(terms, reduction="mean")
                    if not bool(torch.isfinite(terms).all()):
                        named = zip(LOSS_TERMS, terms.tolist(), strict=True)
                        described = ", ".join(f"{name}={value:.4g}" for name, value in named)
                        raise FloatingPointError(
                            f"The training loss is not finite at step {state.global_step + 1} (epoch {epoch + 1}, "
                            f"batch {batch_index} of {len(dataloader)}): {described}. Check the data, lower the "
                            "learning rate or train without mixed precision."
                        )
                    accumulated.append(terms)
                    accelerator.backward(outputs.loss)
                    if accelerator.sync_gradients and args.max_grad_norm:
                        accelerator.clip_grad_norm_(setup.trainable, args.max_grad_norm)
                    optimizer.step()
                    optimizer.zero_grad()
                if not accelerator.sync_gradients:
                    continue
                end_of_epoch = batch_index == len(dataloader)
                state.global_step += 1
                state.epoch, state.batches_in_epoch = (epoch + 1, 0) if end_of_epoch else (epoch, batch_index)
                step_terms = torch.stack(accumulated).mean(0).tolist()
                accumulated.clear()
                state.loss_window.append(step_terms)
                values = dict(zip(LOSS_TERMS, step_terms, strict=True))
                progress.update(1)
                progress.set_postfix({name: f"{value:.4f}" for name, value in values.items()}, refresh=False)
                if state.global_step % args.logging_steps == 0 or state.global_step == setup.total_steps:
                    means = torch.tensor(state.loss_window, dtype=torch.float32).mean(0).tolist()
                    state.loss_window.clear()
                    record = {
                        **{f"train/{name}": value for name, value in zip(LOSS_TERMS, means, strict=True)},
                        "train/epoch": epoch + batch_index / len(dataloader),
                    }
                    accelerator.log(record, step=state.global_step)
                    state.log_history.append({"step": state.global_step, **record})
                if args.checkpointing_steps and state.global_step % args.checkpointing_steps == 0:
                    setup.checkpointer.save(
                        state.global_step, state.checkpoint_state(args, accelerator.num_processes, setup.identity)
                    )
                if step_callback is not None:
                    step_callback(state.global_step, values)
                if state.global_step >= setup.total_steps:
                    break
    finally:
        progress.close()


def _save_final(
    setup: _TrainingSetup,
    state: _LoopState,
    args: FAPromptTrainingArguments,
    processor: Any,
    model_card: Mapping[str, Any],
) -> FAPromptModel:
    """Save the model, processor, model card and trainer state (final-save phase of :func:`train`).

    Args:
        setup: The prepared objects.
        state: The finished loop's state (its ``log_history`` goes into ``trainer_state.json``).
        args: The training arguments.
        processor: The processor the model was trained with.
        model_card: Keyword arguments of :func:`write_model_card` besides ``output_dir`` and ``args``.

    Returns:
        The unwrapped trained model (in train mode, in its original dtype).
    """
    accelerator, output_dir = setup.accelerator, Path(args.output_dir)
    accelerator.wait_for_everyone()
    unwrapped: FAPromptModel = accelerator.unwrap_model(setup.model)
    if setup.clip_dtype is not None:
        unwrapped.clip.to(setup.clip_dtype)
    state_dict = accelerator.get_state_dict(setup.model)  # gathers FSDP / ZeRO-3 shards (complete on the main one)
    digests = None
    if accelerator.distributed_type not in (DistributedType.FSDP, DistributedType.DEEPSPEED):
        digests = gather_object([_prompt_digest(state_dict)])  # every process holds a full replica: compare them
        if len(set(digests)) != 1:
            raise RuntimeError(f"The processes ended with different prompts (SHA-256 per process: {digests}).")
    unwrapped.save_pretrained(
        output_dir,
        state_dict=state_dict,
        is_main_process=accelerator.is_main_process,
        save_function=accelerator.save,
        include_clip=None,  # compact (prompts only) when the CLIP is a hub model, else embedded
    )
    if accelerator.is_main_process:
        with staged_directory(output_dir) as staging:  # the processor and its remote code, atomically
            processor.save_pretrained(staging)
        write_model_card(output_dir, args, **model_card)
        digest = _saved_prompt_digest(output_dir)
        summary = {
            "global_step": state.global_step,
            "num_processes": accelerator.num_processes,
            "prompt_sha256": digest,
            "prompt_sha256_per_process": digests,
            "log_history": state.log_history,
        }
        with atomic_write(output_dir / TRAINER_STATE_NAME) as handle:
            json.dump(summary, handle, indent=2)
        logger.info("Saved the trained model and processor to %s (prompt SHA-256 %s).", output_dir, digest)
        if args.push_to_hub:
            push_folder_to_hub(
                output_dir,
                args.hub_model_id or output_dir.resolve().name,
                private=args.hub_private_repo,
                ignore_patterns=[f"{CHECKPOINTS_DIR}/*", f"{CHECKPOINTS_DIR}/**"],
                commit_message="Upload FAPrompt model trained with faprompt-hf",
            )
    accelerator.wait_for_everyone()
    return unwrapped


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
    per process). Every process holds identical prompts at the end; this is checked. The phases: set-up
    (accelerator, optimizer, data), resume (see :data:`RESUME_FIXED_ARGUMENTS` for the rules), the step loop and the
    final save.

    Args:
        model: The model to train (for example ``FAPromptModel.from_clip(...)`` or a trained checkpoint); only its
            ``prompt_learner`` is optimised.
        train_dataset: Training data in :data:`~faprompt_hf.data.ANOMALY_FEATURES`, with anomalous images and masks
            (see :func:`validate_training_dataset`).
        processor: An ``FAPromptProcessor`` or ``FAPromptImageProcessor``. A copy set to the training size
            (``args.image_size``, default the model's ``config.image_size``) is used and saved; the caller's object
            is not modified.
        args: Hyper-parameters and run options.
        base_model: The CLIP the model is built on, for the model card (default: ``model.name_or_path``).
        dataset_name: The training data's name, for the model card.
        step_callback: Called on every process after each optimizer step with the step number and the loss terms
            of that step (averaged over processes and accumulated batches), keyed by :data:`LOSS_TERMS`.

    Returns:
        The trained model (unwrapped, in eval mode), also saved with the processor in ``args.output_dir``.

    Raises:
        ValueError: A dataset that cannot train FAPrompt (see :func:`validate_training_dataset`), an image size
            that is not a multiple of the patch size, a resume whose checkpoint was written with other
            :data:`RESUME_FIXED_ARGUMENTS` (unless ``args.allow_changed_arguments``), a damaged checkpoint given
            explicitly, or (at the first batch that holds it) a mask whose size differs from its image, naming the
            file, unless ``args.resize_mismatched_masks``.
        FloatingPointError: A loss became NaN or infinite; the message names the step.
        OSError: A checkpoint could not be written (full disk, ...); the message names it and the cause.
        RuntimeError: The processes ended with different prompts.
    """
    dataset_summary = validate_training_dataset(
        train_dataset, allow_missing_masks=args.allow_missing_masks, synthesize_anomalies=args.synthesize_anomalies
    )
    processor = copy.deepcopy(processor)
    image_processor = getattr(processor, "image_processor", processor)
    size, _ = model.config.check_input_size(args.image_size or model.config.image_size, name="image_size")
    args = dataclasses.replace(args, image_size=size)  # the run records (and resumes with) the size it trained at
    image_processor.size = {"height": size, "width": size}
    model.config.image_size = size
    model_card = {
        "base_model": base_model or model.name_or_path or None,
        "dataset_name": dataset_name,
        "dataset_summary": dataset_summary,
    }

    identity = _run_identity(model, train_dataset, dataset_name)  # (before the CLIP is cast or wrapped)
    setup = _set_up(model, train_dataset, processor, args)
    setup.identity = identity
    state = _resume(setup, args)
    accelerator = setup.accelerator
    if accelerator.is_main_process:
        _log_data_options(args, dataset_summary, setup.dataloader.dataset)
    accelerator.init_trackers("faprompt", config=_tracker_config(args, accelerator))
    if accelerator.is_main_process:
        logger.info(
            "Training %d prompt parameters on %d images (%d anomalous): %d steps (%d per epoch), %d process(es).",
            sum(parameter.numel() for parameter in setup.trainable),
            dataset_summary["num_images"],
            dataset_summary["num_anomalous"],
            setup.total_steps,
            setup.steps_per_epoch,
            accelerator.num_processes,
        )
    _run_steps(setup, state, args, step_callback)
    trained = _save_final(setup, state, args, processor, model_card)
    accelerator.end_training()
    return trained.eval()


def _saved_prompt_digest(model_dir: Path) -> str:
    """SHA-256 (as :func:`_prompt_digest`) of the prompt tensors as saved in ``model_dir``'s safetensors files."""
    tensors: dict[str, torch.Tensor] = {}
    for path in sorted(model_dir.glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as handle:
            tensors.update({key: handle.get_tensor(key) for key in handle.keys() if key.startswith("prompt_learner.")})
    if not tensors:
        raise RuntimeError(f"The model saved in {model_dir} holds no prompt_learner.* tensor.")
    return _prompt_digest(tensors)

# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""Model cards and hub uploads of saved FAPrompt folders.

Saving and loading (compact checkpoints, the CLIP's fingerprint) live in :mod:`faprompt_hf.checkpoints`, remote code
in :mod:`faprompt_hf.remote_code`; their public names are re-exported here, where earlier releases had them. This
module is not part of a saved folder's remote code.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, HfApi, ModelCard, ModelCardData
from transformers import PreTrainedModel
from transformers.utils import logging

from .checkpoints import (
    CLIP_PREFIX,
    FINGERPRINT_SAMPLES_PER_TENSOR,
    clip_fingerprint,
    describe_clip_source,
    folder_embeds_clip,
    has_hub_clip,
    record_clip_source,
)
from .file_utils import atomic_write, is_hub_id
from .metrics import MEAN_KEY, format_metrics_table, mean_over_classes
from .processing_faprompt import FAPromptProcessor
from .remote_code import REMOTE_CODE_MODULES, remote_code_files, write_remote_code

__all__ = [
    "CLIP_PREFIX",
    "FINGERPRINT_SAMPLES_PER_TENSOR",
    "REMOTE_CODE_MODULES",
    "clip_fingerprint",
    "describe_clip_source",
    "has_hub_clip",
    "is_hub_id",
    "push_folder_to_hub",
    "push_model_to_hub",
    "record_clip_source",
    "remote_code_files",
    "write_model_card",
    "write_remote_code",
]

logger = logging.get_logger(__name__)


def _read_config(output_dir: Path) -> dict[str, Any]:
    path = output_dir / "config.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def write_model_card(
    output_dir: str | os.PathLike,
    args: Any = None,
    base_model: str | None = None,
    dataset_name: str | None = None,
    dataset_summary: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Mapping[str, float]] | None = None,
    metrics_description: str | None = None,
    threshold_description: str | None = None,
    repo_id: str | None = None,
) -> Path:
    """Write ``README.md``, a hub model card: YAML metadata (parsed by ``huggingface_hub.ModelCard``) and usage.

    Args:
        output_dir: The saved model folder (its ``config.json`` gives the CLIP, the threshold and the checkpoint kind).
        args: The ``FAPromptTrainingArguments`` of a training run (its hyper-parameters are listed), or None.
        base_model: The CLIP the prompts were learned on (default: the config's ``clip_name_or_path``); a hub id
            goes into the metadata's ``base_model``.
        dataset_name: The training data (a hub id goes into the metadata's ``datasets``).
        dataset_summary: The output of ``faprompt_hf.training.validate_training_dataset``.
        metrics: Optional per-class metrics (``compute_per_class_metrics``' output, with a ``"mean"`` row): a table
            in the body, and the mean row as ``model-index`` results.
        metrics_description: What the metrics were measured on (also the ``model-index`` dataset name).
        threshold_description: How ``anomaly_threshold`` was set (e.g. "calibrate_threshold, 0.99 quantile of 200
            normal images").
        repo_id: The hub repository, for the usage snippets (default: a placeholder).

    Returns:
        The path of the model card.
    """
    output_dir = Path(output_dir)
    config = _read_config(output_dir)
    base_model = base_model or config.get("clip_name_or_path")
    card_data = ModelCardData(
        library_name="transformers",
        pipeline_tag="image-segmentation",
        tags=["anomaly-detection", "zero-shot", "faprompt", "faprompt-hf", "custom_code"],
        base_model=base_model if is_hub_id(base_model) else None,
        datasets=[dataset_name] if is_hub_id(dataset_name) else None,
        license="apache-2.0",
        model_name=repo_id or output_dir.resolve().name,
        eval_results=_eval_results(metrics, dataset_name, metrics_description),
    )
    sections = [_overview_section(output_dir, config, base_model)]
    if config.get("normal_reference_classes"):
        sections.append(_normal_references_section(config))
    if args is not None or dataset_name or dataset_summary:
        sections.append(_training_data_section(dataset_name, dataset_summary))
    if args is not None:
        sections.append(_hyper_parameter_section(args))
    if metrics:
        heading = "## Evaluation" + (f"\n\n{metrics_description}" if metrics_description else "")
        sections.append(f"{heading}\n\n{format_metrics_table(metrics)}")
    sections.append(_threshold_section(config.get("anomaly_threshold"), threshold_description))
    sections.append(_usage_section(repo_id or "<this repository>"))
    card = ModelCard(f"---\n{card_data.to_yaml()}\n---\n\n" + "\n\n".join(sections) + "\n")
    path = output_dir / "README.md"
    with atomic_write(path) as handle:
        handle.write(str(card))
    return path


def _eval_results(
    metrics: Mapping[str, Mapping[str, float]] | None, dataset_name: str | None, metrics_description: str | None
) -> list[EvalResult] | None:
    """The ``model-index`` results: the mean row's finite metrics (thresholds left out), or None."""
    if not metrics:
        return None
    mean = dict(metrics[MEAN_KEY]) if MEAN_KEY in metrics else mean_over_classes(dict(metrics))
    return [
        EvalResult(
            task_type="anomaly-detection",
            dataset_type=dataset_name if is_hub_id(dataset_name) else "custom",
            dataset_name=metrics_description or "evaluation",
            metric_type=key,
            metric_value=float(value),
        )
        for key, value in mean.items()
        if not key.endswith("threshold") and isinstance(value, (int, float)) and math.isfinite(value)
    ] or None


def _overview_section(output_dir: Path, config: Mapping[str, Any], base_model: str | None) -> str:
    """The title, what FAPrompt is, the base model and whether the checkpoint is compact or embedded."""
    compact = bool(config.get("clip_name_or_path")) and not folder_embeds_clip(output_dir)
    lines = [
        f"# FAPrompt prompts for {base_model or 'CLIP'}",
        "Fine-grained abnormality prompts (FAPrompt, Zhu et al., ICCV 2025, arXiv 2410.10289) learned on a frozen "
        "CLIP for zero-shot anomaly detection and localisation: the model scores images and returns pixel anomaly "
        "maps for products it never saw in training.",
        f"- Base model: {base_model or 'not recorded'}"
        + (f" (revision {config['clip_revision']})" if config.get("clip_revision") else ""),
        "- Checkpoint: "
        + (
            "compact: only FAPrompt's prompts; the CLIP above is downloaded on first load and checked against the "
            f"fingerprint `{config.get('clip_fingerprint')}`."
            if compact
            else "embedded: the CLIP weights are included (works fully offline)."
        ),
    ]
    return "\n\n".join(lines)


def _normal_references_section(config: Mapping[str, Any]) -> str:
    """The normal-reference bank the checkpoint holds (few-shot): its classes, counts and fusion weights."""
    rows = zip(
        config.get("normal_reference_classes") or [],
        config.get("normal_reference_image_counts") or [],
        config.get("normal_reference_patch_counts") or [],
        strict=False,
    )
    table = "| class | reference images | patch features |\n|---|---:|---:|\n" + "\n".join(
        f"| {name} | {images} | {patches} |" for name, images, patches in rows
    )
    names = config["normal_reference_classes"]
    choose = (
        f' Choose the class with `model(..., normal_reference_class="{names[0]}")`.'
        if len(names) > 1
        else " With one class it is used by itself."
    )
    return (
        "## Normal references\n\nThe checkpoint holds the patch features of normal reference images (few-shot), "
        "saved in `model.safetensors` as `normal_references.features`. Anomaly maps and scores fuse FAPrompt's text "
        "scores with each patch's distance from the nearest reference patch (weights "
        f"{config.get('reference_map_weight')} for the maps, {config.get('reference_score_weight')} for the scores)."
        f"{choose}\n\n{table}"
    )


def _training_data_section(dataset_name: str | None, dataset_summary: Mapping[str, Any] | None) -> str:
    """The training data: its name, image counts and classes."""
    summary = dict(dataset_summary or {})
    data_lines = [f"- Dataset: {dataset_name or 'not recorded'}"]
    if summary:
        data_lines.append(
            f"- {summary['num_images']} images, {summary['num_anomalous']} of them anomalous with ground-truth masks"
        )
        if summary.get("class_names"):
            data_lines.append(f"- Classes: {', '.join(summary['class_names'])}")
    return "## Training data\n\n" + "\n".join(data_lines)


def _hyper_parameter_section(args: Any) -> str:
    """A table of a training run's hyper-parameters."""
    hyper_parameters = {
        "epochs": args.num_train_epochs if args.max_steps <= 0 else f"max {args.max_steps} steps",
        "batch size per process": args.per_device_train_batch_size,
        "gradient accumulation steps": args.gradient_accumulation_steps,
        "optimizer": f"Adam (lr {args.learning_rate:g}, betas ({args.adam_beta1:g}, {args.adam_beta2:g}))",
        "image size": args.image_size,
        "seed": args.seed,
        "mixed precision": args.mixed_precision or "no",
    }
    return "## Training hyper-parameters\n\n| parameter | value |\n|---|---|\n" + "\n".join(
        f"| {key} | {value} |" for key, value in hyper_parameters.items()
    )


def _threshold_section(threshold: float | None, threshold_description: str | None) -> str:
    """How ``is_anomalous`` decides, and how to recalibrate."""
    if threshold is None:
        text = (
            "No threshold is stored: `is_anomalous` uses 0.5 (uncalibrated, with a warning). Calibrate one on your "
            "own normal images with `faprompt_hf.calibrate_threshold(detector, normal_images)` (or from labelled "
            "scores with `threshold_from_f1`), or pass `threshold=` to the pipeline."
        )
    else:
        text = (
            f"`is_anomalous` is `score >= {threshold:.6g}` (`anomaly_threshold` in `config.json`), set by "
            f"{threshold_description or 'the uploader (calibrate_threshold or threshold_from_f1)'}. Scores depend on "
            "the product: recalibrate on your own normal images with `faprompt_hf.calibrate_threshold`."
        )
    return f"## Decision threshold\n\n{text}"


def _usage_section(repo: str) -> str:
    """Usage with the package, and with transformers alone (remote code)."""
    return (
        "## Usage\n\nWith the package (from a clone of faprompt-hf: `pip install -e .`):\n\n```python\n"
        "import faprompt_hf  # registers the model and the pipeline\n"
        "from transformers import pipeline\n\n"
        f'detector = pipeline("anomaly-detection", model="{repo}")\n'
        'result = detector("part.png")\n'
        'result["score"], result["is_anomalous"], result["anomaly_map"].shape\n```\n\n'
        "Without the package, with transformers alone (`pip install transformers torch pillow`; this runs model "
        "code stored in this repository):\n\n```python\n"
        "from transformers import AutoModel, AutoProcessor, pipeline\n\n"
        f'detector = pipeline("anomaly-detection", model="{repo}", trust_remote_code=True)\n'
        f'model = AutoModel.from_pretrained("{repo}", trust_remote_code=True)\n'
        f'processor = AutoProcessor.from_pretrained("{repo}", trust_remote_code=True)\n'
        'outputs = model(**processor(images=image, return_tensors="pt"))\n'
        "outputs.image_scores, outputs.anomaly_maps\n```"
    )


def push_folder_to_hub(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    commit_message: str | None = None,
    private: bool | None = None,
    token: bool | str | None = None,
    revision: str | None = None,
    create_pr: bool = False,
    ignore_patterns: Sequence[str] | None = None,
) -> str:
    """Upload a saved model folder to the hub in one commit (``HfApi.create_repo`` + ``HfApi.upload_folder``).

    Args:
        folder: The folder (model, processor, model card, remote code).
        repo_id: The hub repository (created if needed).
        commit_message: The commit message.
        private: Create the repository as private.
        token: Hub token (default: the logged-in one).
        revision: Branch to commit to.
        create_pr: Open a pull request instead of committing.
        ignore_patterns: Paths of the folder not to upload (glob patterns, e.g. ``["checkpoints/*"]``).

    Returns:
        The URL of the commit.
    """
    api = HfApi(token=token) if token not in (None, True) else HfApi()
    repo = api.create_repo(repo_id, private=private, exist_ok=True)
    info = api.upload_folder(
        repo_id=repo.repo_id,
        folder_path=os.fspath(folder),
        commit_message=commit_message or "Upload FAPrompt model with faprompt-hf",
        revision=revision,
        create_pr=create_pr,
        ignore_patterns=list(ignore_patterns) if ignore_patterns else None,
    )
    logger.info("Pushed %s to %s", folder, repo.repo_id)
    return str(getattr(info, "commit_url", info))


def push_model_to_hub(
    model: PreTrainedModel,
    repo_id: str,
    *,
    include_clip: bool | None = None,
    processor: Any = None,
    commit_message: str | None = None,
    private: bool | None = None,
    token: bool | str | None = None,
    revision: str | None = None,
    create_pr: bool = False,
    **card_kwargs: Any,
) -> str:
    """Implementation of ``FAPromptModel.push_to_hub`` (see there), registered with the model class by the package."""
    if processor is None:
        processor = FAPromptProcessor.from_model_config(model.config)
    with tempfile.TemporaryDirectory(prefix="faprompt-push-") as folder:
        model.save_pretrained(folder, include_clip=include_clip)
        processor.save_pretrained(folder)
        write_model_card(folder, repo_id=repo_id, **card_kwargs)
        return push_folder_to_hub(
            folder,
            repo_id,
            commit_message=commit_message,
            private=private,
            token=token,
            revision=revision,
            create_pr=create_pr,
        )

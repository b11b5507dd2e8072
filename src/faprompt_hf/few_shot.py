# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""Few-shot evaluation: K normal reference images per class, drawn from a reference split, over several seeds.

The protocol (``docs/few_shot.md``), as in the few-shot anomaly-detection literature:

1. For each seed and each evaluated class, draw K **normal** images of that class from the reference split (by
   default the dataset's ``train`` split; a separate ``"reference"`` pool for the synthetic data). Images that are
   also evaluated (same ``path``) are never drawn; a class with fewer than K candidates is refused.
2. Put them in the model's normal-reference bank under the class's name
   (:meth:`~faprompt_hf.FAPromptModel.set_normal_references`) and evaluate that class's images with
   ``normal_reference_class=class`` (:func:`~faprompt_hf.evaluation.evaluate_model`, the usual protocol).
3. Report the per-class metrics of each seed, and their mean and standard deviation over the seeds (per class and
   for the mean row).

The bank is cleared afterwards, also when the evaluation fails: a model leaves as it came (without references).

Example:
    ```python
    from faprompt_hf.data import make_synthetic_dataset
    from faprompt_hf.few_shot import evaluate_few_shot

    test = make_synthetic_dataset(["rings", "dots"], 8, 8, image_size=112, split="test")
    pool = make_synthetic_dataset(["rings", "dots"], 16, 0, image_size=112, split="reference")
    result = evaluate_few_shot(model, test, pool, processor, k_shot=4, seeds=(0, 1, 2))
    print(result.table)  # "66.6 ± 1.2" cells: mean ± standard deviation over the seeds
    ```
"""

from __future__ import annotations

import csv
import math
import os
import warnings
import zlib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import Dataset
from transformers.utils import logging

from .data import FAPromptCollator, load_dataset_by_format
from .defaults import DEFAULT_REFERENCE_SPLIT, SYNTHETIC_REFERENCE_SPLIT
from .evaluation import EvaluationResult, _json_number, evaluate_model, write_metrics_json
from .file_utils import atomic_write
from .image_processing_faprompt import FAPromptImageProcessor
from .metrics import MEAN_KEY, TABLE_KEYS, format_metrics_table, mean_over_classes
from .modeling_faprompt import FAPromptModel
from .processing_faprompt import FAPromptProcessor

logger = logging.get_logger(__name__)

__all__ = [
    "DEFAULT_REFERENCE_SPLIT",
    "SYNTHETIC_REFERENCE_SPLIT",
    "FewShotResult",
    "aggregate_runs",
    "default_reference_split",
    "evaluate_few_shot",
    "evaluate_with_references",
    "format_mean_std_table",
    "load_reference_dataset",
    "reference_pixel_values",
    "select_normal_references",
]


def default_reference_split(dataset_format: str) -> str:
    """The split normal references are drawn from by default: ``"reference"`` for synthetic data, else ``"train"``.

    Args:
        dataset_format: A :data:`~faprompt_hf.data.DATASET_FORMATS` name.

    Returns:
        The split name.
    """
    return SYNTHETIC_REFERENCE_SPLIT if dataset_format == "synthetic" else DEFAULT_REFERENCE_SPLIT


def load_reference_dataset(
    dataset_format: str,
    dataset_path: str | os.PathLike | None = None,
    split: str | None = None,
    classes: Sequence[str] | None = None,
    column_mapping: Mapping[str, str] | None = None,
    k_shot: int = 1,
    **loader_kwargs: Any,
) -> Dataset:
    """Load the split that normal references are drawn from, with the evaluation's loader and options.

    For ``"synthetic"`` the split is a separate pool of normal images only (``n_anomalous=0``) with
    ``max(n_normal, k_shot)`` images per domain, drawn with another seed stream than the evaluated ``"test"`` images.

    Args:
        dataset_format: The evaluated dataset's format.
        dataset_path: Its folder or hub id (not used by synthetic).
        split: The reference split (default: :func:`default_reference_split`).
        classes: Classes to load (default: all).
        column_mapping: For hub datasets.
        k_shot: References per class that will be drawn (sizes the synthetic pool).
        **loader_kwargs: The evaluation's loader options (``dataset_kwargs``).

    Returns:
        The reference dataset, in :data:`~faprompt_hf.data.ANOMALY_FEATURES`.

    Raises:
        ValueError: The split cannot be loaded (missing, or the loader refuses it); the message names the split and
            the loader's reason.
    """
    split = split or default_reference_split(dataset_format)
    kwargs = dict(loader_kwargs)
    if dataset_format == "synthetic":
        kwargs["n_anomalous"] = 0
        kwargs["n_normal"] = max(int(kwargs.get("n_normal", 8)), k_shot)
    try:
        return load_dataset_by_format(dataset_format, dataset_path, split, classes, column_mapping, **kwargs)
    except (ValueError, OSError, KeyError) as error:
        raise ValueError(
            f"The reference split {split!r} of this {dataset_format} dataset could not be loaded ({error}); few-shot "
            "evaluation draws its normal references from it. Choose another split with --reference_split "
            "(reference_split=...), one with normal images of every evaluated class that are not evaluated."
        ) from error


def _class_rng(seed: int, class_name: str) -> np.random.Generator:
    """The generator of one class's draw: it depends only on the seed and the class, not on the other classes."""
    return np.random.default_rng([int(seed), zlib.crc32(class_name.encode("utf-8"))])


def select_normal_references(
    reference_dataset: Dataset,
    classes: Sequence[str],
    k_shot: int,
    seed: int = 0,
    exclude_paths: Collection[str] = (),
) -> dict[str, list[int]]:
    """Draw ``k_shot`` normal images per class from ``reference_dataset``, without replacement.

    The draw of a class depends only on ``(seed, class name)`` and the candidates (the normal rows of that class in
    dataset order, without ``exclude_paths``), so it is reproducible and does not change when other classes are added.

    Args:
        reference_dataset: The reference split (only its ``label``, ``class_name`` and ``path`` columns are read).
        classes: The classes to draw for.
        k_shot: Images per class, >= 1.
        seed: Seed of the draw.
        exclude_paths: Paths never drawn: the evaluated images.

    Returns:
        ``{class: sorted row indices into reference_dataset}``.

    Raises:
        ValueError: ``k_shot < 1``, or some class has fewer than ``k_shot`` normal candidates (the message names each
            such class with its count, and how many were left out because they are evaluated).
    """
    if isinstance(k_shot, bool) or int(k_shot) != k_shot or k_shot < 1:
        raise ValueError(f"k_shot must be an integer >= 1, got {k_shot!r}.")
    labels = np.asarray(reference_dataset["label"], dtype=np.int64)
    names = [str(name) for name in reference_dataset["class_name"]]
    paths = [str(path) for path in reference_dataset["path"]]
    excluded = {str(path) for path in exclude_paths}
    selection: dict[str, list[int]] = {}
    short: list[str] = []
    for name in classes:
        normal = [index for index, other in enumerate(names) if other == name and labels[index] == 0]
        candidates = [index for index in normal if paths[index] not in excluded]
        if len(candidates) < k_shot:
            left_out = len(normal) - len(candidates)
            why = f" ({left_out} more left out: they are among the evaluated images)" if left_out else ""
            short.append(f"class {name!r} has {len(candidates)} normal reference image(s){why}")
            continue
        chosen = _class_rng(seed, name).choice(len(candidates), size=int(k_shot), replace=False)
        selection[name] = sorted(candidates[position] for position in chosen)
    if short:
        raise ValueError(
            f"Few-shot evaluation needs k_shot={k_shot} normal reference images per class, but "
            + "; ".join(short)
            + ". Use a smaller k_shot or another reference split."
        )
    return selection


def reference_pixel_values(
    reference_dataset: Dataset,
    indices: Sequence[int],
    processor: FAPromptImageProcessor | FAPromptProcessor,
    size: int,
) -> torch.Tensor:
    """Decode and preprocess reference rows exactly as the evaluation preprocesses its images.

    Args:
        reference_dataset: The reference split.
        indices: Its rows to use.
        processor: The evaluation's image processor (or processor).
        size: The evaluation side S.

    Returns:
        ``pixel_values`` (R, 3, S, S), float32.
    """
    image_processor = getattr(processor, "image_processor", processor)
    collator = FAPromptCollator(partial(image_processor.preprocess, size=size))
    return collator([reference_dataset[int(index)] for index in indices])["pixel_values"]


def evaluate_with_references(
    model: FAPromptModel,
    dataset: Dataset,
    reference_dataset: Dataset,
    selection: Mapping[str, Sequence[int]],
    processor: FAPromptImageProcessor | FAPromptProcessor | None = None,
    **evaluate_kwargs: Any,
) -> EvaluationResult:
    """Evaluate each class of ``dataset`` with the given reference rows as its normal-reference bank.

    The rows are used as given (:func:`select_normal_references` draws normal ones; an experiment may put an
    anomalous image among them on purpose). The model's bank must be empty, and is empty again afterwards.

    Args:
        model: The model (its bank empty).
        dataset: The images to evaluate.
        reference_dataset: Where the reference rows come from.
        selection: ``{class: row indices into reference_dataset}``, one entry for every class of ``dataset``.
        processor: As for :func:`~faprompt_hf.evaluation.evaluate_model` (references are preprocessed the same way).
        **evaluate_kwargs: Options of :func:`~faprompt_hf.evaluation.evaluate_model` (``batch_size``, ``aupro``,
            ``image_size``, ``accelerator``, ...), applied to every class.

    Returns:
        One [`EvaluationResult`] over the whole dataset, as :func:`~faprompt_hf.evaluation.evaluate_model` returns
        (per-class metrics, then their mean), with ``protocol["normal_references"]``:
        ``{class: [reference paths]}``.

    Raises:
        ValueError: The model already holds references, a class of ``dataset`` has no entry in ``selection`` or an
            empty one, or an option :func:`~faprompt_hf.evaluation.evaluate_model` refuses.
    """
    if model.normal_reference_classes:
        raise ValueError(
            f"The model already holds normal references of {model.normal_reference_classes}; few-shot evaluation "
            "sets its own. Remove them first with model.clear_normal_references()."
        )
    class_names = [str(name) for name in dataset["class_name"]]
    if not class_names:
        raise ValueError("The dataset is empty.")
    classes = list(dict.fromkeys(class_names))
    missing = [name for name in classes if not selection.get(name)]
    if missing:
        raise ValueError(f"No reference images given for class(es) {missing}.")
    image_processor = getattr(processor, "image_processor", processor)
    if image_processor is None:
        image_processor = FAPromptImageProcessor.from_model_config(model.config)
    size, _ = model.config.check_input_size(evaluate_kwargs.get("image_size") or model.config.image_size)
    accelerator = evaluate_kwargs.get("accelerator")
    if accelerator is not None:
        model.to(accelerator.device)
    reference_paths = [str(path) for path in reference_dataset["path"]]
    parts: dict[str, tuple[np.ndarray, EvaluationResult]] = {}
    try:
        for name in classes:
            pixel_values = reference_pixel_values(reference_dataset, selection[name], image_processor, size)
            device = next(model.parameters()).device
            model.set_normal_references(pixel_values.to(device=device, dtype=model.dtype), class_name=name)
        for name in classes:
            members = np.flatnonzero(np.asarray(class_names) == name)
            parts[name] = (
                members,
                evaluate_model(
                    model,
                    dataset.select(members.tolist()),
                    processor,
                    normal_reference_class=name,
                    **evaluate_kwargs,
                ),
            )
    finally:
        model.clear_normal_references()
    references = {name: [reference_paths[int(index)] for index in selection[name]] for name in classes}
    return _merge_class_results(dataset, class_names, parts, references)


def _merge_class_results(
    dataset: Dataset,
    class_names: list[str],
    parts: Mapping[str, tuple[np.ndarray, EvaluationResult]],
    references: Mapping[str, list[str]],
) -> EvaluationResult:
    """One result over the dataset from per-class results (each on the rows ``members`` of the dataset)."""
    count = len(class_names)
    scores = np.full(count, np.nan, dtype=np.float32)
    labels = np.zeros(count, dtype=np.int64)
    metrics: dict[str, dict[str, float]] = {}
    heatmaps: dict[int, np.ndarray] = {}
    missing_pixels: dict[str, str] = {}
    for name, (members, result) in parts.items():
        scores[members] = result.image_scores
        labels[members] = result.labels
        metrics[name] = result.metrics[name]
        heatmaps.update({int(members[index]): heatmap for index, heatmap in result.heatmaps.items()})
        missing_pixels.update(result.protocol.get("pixel_metrics_missing", {}))
    metrics[MEAN_KEY] = mean_over_classes(metrics)
    protocol = dict(next(iter(parts.values()))[1].protocol)
    protocol.update(
        pixel_metrics_missing=missing_pixels,
        num_images=count,
        num_classes=len(parts),
        normal_references={name: list(paths) for name, paths in references.items()},
    )
    return EvaluationResult(
        metrics=metrics,
        table=format_metrics_table(metrics),
        protocol=protocol,
        image_scores=scores,
        labels=labels,
        class_names=class_names,
        paths=[str(path) for path in dataset["path"]],
        heatmaps=heatmaps,
    )


# ----------------------------------------------------------------------------------------------------------------------
# Several seeds: mean and standard deviation
# ----------------------------------------------------------------------------------------------------------------------


def aggregate_runs(
    runs: Sequence[EvaluationResult],
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]]]:
    """The mean and standard deviation (numpy's, ddof 0) of every metric over runs, per class and for the mean row.

    Args:
        runs: Evaluations of the same classes (e.g. one per reference seed).

    Returns:
        ``(mean, std)``, each ``{class: {metric: value}}`` in the first run's row order. F1 thresholds are left out
        (a threshold of one run means nothing for another); a metric undefined (NaN) in some runs is averaged over
        the others, and stays NaN when undefined in all.
    """
    mean: dict[str, dict[str, float]] = {}
    std: dict[str, dict[str, float]] = {}
    for name in runs[0].metrics:
        keys = [key for key in runs[0].metrics[name] if not key.endswith("threshold")]
        values = {
            key: np.asarray([run.metrics[name].get(key, math.nan) for run in runs], dtype=np.float64) for key in keys
        }
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a metric undefined in every run stays NaN
            mean[name] = {key: float(np.nanmean(column)) for key, column in values.items()}
            std[name] = {key: float(np.nanstd(column)) for key, column in values.items()}
    return mean, std


def format_mean_std_table(
    mean: Mapping[str, Mapping[str, float]],
    std: Mapping[str, Mapping[str, float]],
    keys: Sequence[str] | None = None,
) -> str:
    """A markdown table of ``mean ± std`` cells in percent (classes, then the mean row); NaN shows as ``n/a``.

    Args:
        mean: ``{row: {metric: value}}``, fractions.
        std: The standard deviations, same layout.
        keys: Metric columns (default: those of :data:`~faprompt_hf.metrics.TABLE_KEYS` present).

    Returns:
        The table, without a trailing newline.
    """
    if keys is None:
        keys = [key for key in TABLE_KEYS if any(key in row for row in mean.values())]

    def cell(name: str, key: str) -> str:
        value, spread = mean[name].get(key, math.nan), std.get(name, {}).get(key, math.nan)
        if value is None or math.isnan(value):
            return "n/a"
        return f"{100 * value:.1f} ± {100 * spread:.1f}" if not math.isnan(spread) else f"{100 * value:.1f}"

    lines = ["| class | " + " | ".join(keys) + " |", "|---|" + "---:|" * len(keys)]
    lines += ["| " + " | ".join([name, *(cell(name, key) for key in keys)]) + " |" for name in mean]
    return "\n".join(lines)


@dataclass
class FewShotResult:
    """Few-shot metrics over several reference seeds.

    Attributes:
        k_shot: Normal references per class.
        seeds: The reference seeds, one run each.
        reference_split: The split the references were drawn from (None when the caller gave the dataset only).
        runs: One [`EvaluationResult`] per seed (same order as ``seeds``); each has
            ``protocol["normal_references"]``.
        references: ``{seed: {class: [reference paths]}}``.
        metrics: ``{class: {metric: mean over seeds}}``, classes then ``"mean"`` (the mean over seeds of each run's
            mean row). F1 thresholds are not aggregated (see ``runs``).
        metrics_std: The standard deviation over seeds (numpy's, ddof 0), same layout; 0 with one seed.
        table: ``mean ± std`` per cell (percent) with several seeds, the usual table with one.
        protocol: The first run's protocol, plus ``few_shot``: ``{"k_shot", "seeds", "reference_split",
            "std": "population (ddof 0) over seeds"}``.
    """

    k_shot: int
    seeds: list[int]
    reference_split: str | None
    runs: list[EvaluationResult]
    references: dict[int, dict[str, list[str]]]
    metrics: dict[str, dict[str, float]]
    metrics_std: dict[str, dict[str, float]]
    table: str
    protocol: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The protocol, the references chosen and the metrics as standard-JSON data (NaN becomes ``None``)."""

        def clean(metrics: Mapping[str, Mapping[str, float]]) -> dict[str, dict[str, float | None]]:
            return {name: {key: _json_number(value) for key, value in row.items()} for name, row in metrics.items()}

        protocol = {key: value for key, value in self.protocol.items() if key != "normal_references"}
        return {
            "protocol": protocol,
            "few_shot": {
                "k_shot": self.k_shot,
                "seeds": list(self.seeds),
                "reference_split": self.reference_split,
                "references": {str(seed): paths for seed, paths in self.references.items()},
            },
            "metrics": clean(self.metrics),
            "metrics_std": clean(self.metrics_std),
            "metrics_per_seed": {
                str(seed): clean(run.metrics) for seed, run in zip(self.seeds, self.runs, strict=True)
            },
        }

    def save(self, output_dir: str | os.PathLike, extra: Mapping[str, Any] | None = None) -> dict[str, Path]:
        """Write ``metrics.json``, ``metrics.csv``, ``metrics.md`` and ``image_scores.csv`` into ``output_dir``.

        ``metrics.csv`` has a ``<metric>`` (mean over seeds) and a ``<metric>_std`` column per metric;
        ``image_scores.csv`` has one row per seed and image (``index, path, class_name, label, seed, score``). Each
        file is written to a temporary name and renamed (:func:`~faprompt_hf.file_utils.atomic_write`).

        Args:
            output_dir: Folder (created if missing).
            extra: Run information stored under ``"run"`` in ``metrics.json``.

        Returns:
            ``{"json": path, "csv": path, "markdown": path, "scores": path}``.

        Raises:
            OSError: Writing failed (the message names the file; the previous version is intact).
        """
        paths = write_metrics_json(output_dir, self.to_dict(), extra)
        keys = [key for key in TABLE_KEYS if any(key in row for row in self.metrics.values())]
        with atomic_write(paths["csv"]) as handle:
            writer = csv.writer(handle)
            writer.writerow(["class", *(name for key in keys for name in (key, f"{key}_std"))])
            for name, row in self.metrics.items():
                spread = self.metrics_std[name]
                writer.writerow(
                    [
                        name,
                        *(repr(float(values.get(key, math.nan))) for key in keys for values in (row, spread)),
                    ]
                )
        with atomic_write(paths["markdown"]) as handle:
            handle.write(self.table + "\n")
        with atomic_write(paths["scores"]) as handle:
            writer = csv.writer(handle)
            writer.writerow(["index", "path", "class_name", "label", "seed", "score"])
            for seed, run in zip(self.seeds, self.runs, strict=True):
                for index, (path, name, label, score) in enumerate(
                    zip(run.paths, run.class_names, run.labels.tolist(), run.image_scores.tolist(), strict=True)
                ):
                    writer.writerow([index, path, name, label, seed, repr(float(score))])
        return paths


def evaluate_few_shot(
    model: FAPromptModel,
    dataset: Dataset,
    reference_dataset: Dataset,
    processor: FAPromptImageProcessor | FAPromptProcessor | None = None,
    *,
    k_shot: int,
    seeds: Sequence[int] = (0,),
    reference_split: str | None = None,
    **evaluate_kwargs: Any,
) -> FewShotResult:
    """K-shot evaluation: K normal references per class from ``reference_dataset``, one run per seed.

    See the module docstring for the protocol. References are never drawn from the evaluated images (same path), and
    the model's bank is empty before and after.

    Args:
        model: The model, with an empty normal-reference bank.
        dataset: The images to evaluate (every class needs references).
        reference_dataset: The reference split (:func:`load_reference_dataset`); only its normal rows are drawn.
        processor: As for :func:`~faprompt_hf.evaluation.evaluate_model`.
        k_shot: Normal references per class, >= 1.
        seeds: Reference seeds (distinct); one evaluation each.
        reference_split: The split's name, recorded in the result.
        **evaluate_kwargs: Options of :func:`~faprompt_hf.evaluation.evaluate_model` (``batch_size``, ``aupro``,
            ``accelerator``, ``image_size``, ``gaussian_sigma``, ``heatmaps_per_class``, ...).

    Returns:
        A [`FewShotResult`].

    Raises:
        ValueError: No seeds or repeated ones, a bad ``k_shot``, a class with fewer than ``k_shot`` normal reference
            images (named, with its count), a model that already holds references, or an evaluation option refused.
    """
    seeds = [int(seed) for seed in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be one or more distinct integers, got {seeds}.")
    if model.normal_reference_classes:
        raise ValueError(
            f"The model already holds normal references of {model.normal_reference_classes}; few-shot evaluation "
            "sets its own. Remove them first with model.clear_normal_references()."
        )
    class_names = [str(name) for name in dataset["class_name"]]
    classes = list(dict.fromkeys(class_names))
    evaluated = {str(path) for path in dataset["path"]}
    selections = {
        seed: select_normal_references(reference_dataset, classes, k_shot, seed, exclude_paths=evaluated)
        for seed in seeds  # every draw is checked before any inference
    }
    runs = [
        evaluate_with_references(model, dataset, reference_dataset, selections[seed], processor, **evaluate_kwargs)
        for seed in seeds
    ]
    mean, std = aggregate_runs(runs)
    table = format_mean_std_table(mean, std) if len(seeds) > 1 else format_metrics_table(mean)
    protocol = {key: value for key, value in runs[0].protocol.items() if key != "normal_references"}
    protocol["few_shot"] = {
        "k_shot": int(k_shot),
        "seeds": seeds,
        "reference_split": reference_split,
        "std": "population (ddof 0) over seeds",
    }
    return FewShotResult(
        k_shot=int(k_shot),
        seeds=seeds,
        reference_split=reference_split,
        runs=runs,
        references={seed: run.protocol["normal_references"] for seed, run in zip(seeds, runs, strict=True)},
        metrics=mean,
        metrics_std=std,
        table=table,
        protocol=protocol,
    )

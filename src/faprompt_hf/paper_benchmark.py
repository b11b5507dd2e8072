# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""The paper's cross-dataset zero-shot benchmark in one command: find the datasets, evaluate, write the table.

:func:`run_benchmark` finds which of the paper's 19 datasets are under a data root (by their usual folder names,
:func:`~faprompt_hf.data.find_paper_datasets`), evaluates a model zero-shot on each with the released evaluation's
protocol (:func:`~faprompt_hf.evaluation.evaluate_model`: the model's 518 px and sigma 10, metrics per class then
averaged, AUPRO "original"), and writes the paper-style table (Markdown, CSV, JSON): per dataset image AUROC/AP and,
where masks exist, pixel AUROC/AUPRO, with the industrial and medical means.

* MVTec AD is evaluated with ``mvtec_model`` (prompts trained on VisA, the paper's protocol); every other dataset with
  ``model`` (prompts trained on MVTec AD). Without ``mvtec_model`` MVTec AD uses ``model`` and the table says so.
* Each dataset's files (``<output_dir>/<key>/metrics.json`` ... and ``status.json``) and the table are written as soon
  as it finishes; ``resume=True`` skips datasets whose ``status.json`` says ``done``.
* A dataset that is present but damaged (a layout error, a missing mask, an unknown label value, an unreadable
  image, a mask of another size than its image) is reported in the table and in its ``status.json`` and skipped.

``faprompt-hf benchmark`` (when wired) and ``examples/benchmark_paper.py`` call :func:`main`; :func:`add_arguments`
and :func:`run_from_args` are the pieces a subcommand needs.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datasets import Dataset
from transformers.utils import logging

from .cli_flags import add_benchmark_arguments
from .data.paper_datasets import (
    FoundDatasets,
    all_dataset_specs,
    find_paper_datasets,
    get_dataset_spec,
)
from .file_utils import atomic_write

logger = logging.get_logger(__name__)

__all__ = [
    "BENCHMARK_METRICS",
    "PAPER_NUMBERS_FILE",
    "BenchmarkResult",
    "DatasetOutcome",
    "NoDatasetsFoundError",
    "add_arguments",
    "benchmark_rows",
    "format_benchmark_table",
    "load_paper_numbers",
    "main",
    "run_benchmark",
    "run_from_args",
]

BENCHMARK_METRICS: tuple[str, ...] = ("image_auroc", "image_ap", "pixel_auroc", "pixel_aupro")
"""The paper's columns: image AUROC and AP, pixel AUROC and AUPRO."""

_METRIC_TITLES = {
    "image_auroc": "Image AUROC",
    "image_ap": "Image AP",
    "pixel_auroc": "Pixel AUROC",
    "pixel_aupro": "Pixel AUPRO",
}

PAPER_NUMBERS_FILE = Path(__file__).parent / "data" / "paper_numbers.json"
"""The published FAPrompt numbers, with their source (cells that could not be found are null)."""

STATUS_FILE = "status.json"
NOT_FOUND = "not found"


class NoDatasetsFoundError(FileNotFoundError):
    """No benchmark dataset under the data root; the message lists the folder names looked for."""


@dataclass
class DatasetOutcome:
    """What happened to one dataset of the benchmark.

    Attributes:
        key: The dataset key (``"btad"``).
        title: Its name in the paper's tables.
        domain: ``"industrial"``, ``"medical"``, ``"extra"`` or ``"synthetic"``.
        status: ``"done"`` or ``"damaged"``.
        metrics: The mean-over-classes metrics (fractions; NaN when undefined), for ``"done"``.
        error: The error message, for ``"damaged"``.
        folder: The dataset folder.
        model: The model evaluated on it.
        num_images: Images evaluated.
        resumed: Read back from an earlier run (``resume=True``).
    """

    key: str
    title: str
    domain: str
    status: str
    metrics: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    folder: str | None = None
    model: str | None = None
    num_images: int = 0
    resumed: bool = False

    def to_dict(self) -> dict[str, Any]:
        """As standard JSON data (NaN becomes null)."""
        return {
            "key": self.key,
            "title": self.title,
            "domain": self.domain,
            "status": self.status,
            "metrics": {key: _json_number(value) for key, value in self.metrics.items()},
            "error": self.error,
            "folder": self.folder,
            "model": self.model,
            "num_images": self.num_images,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DatasetOutcome:
        """Read back :meth:`to_dict`'s output (null becomes NaN)."""
        metrics = {key: math.nan if value is None else float(value) for key, value in data.get("metrics", {}).items()}
        return cls(
            key=data["key"],
            title=data["title"],
            domain=data["domain"],
            status=data["status"],
            metrics=metrics,
            error=data.get("error"),
            folder=data.get("folder"),
            model=data.get("model"),
            num_images=int(data.get("num_images", 0)),
            resumed=True,
        )


@dataclass
class BenchmarkResult:
    """The outcome of :func:`run_benchmark`.

    Attributes:
        outcomes: One :class:`DatasetOutcome` per dataset evaluated or found damaged, in table order.
        absent: Keys of the datasets looked for and not found.
        unrecognised: Folders under the data root that match no dataset.
        table: The Markdown table.
        files: ``{"markdown": path, "csv": path, "json": path}``.
        notes: Remarks printed under the table (protocol deviations, damaged datasets).
    """

    outcomes: list[DatasetOutcome]
    absent: list[str]
    unrecognised: list[str]
    table: str
    files: dict[str, Path]
    notes: list[str]


def _json_number(value: float) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


# ----------------------------------------------------------------------------------------------------------------
# The published numbers
# ----------------------------------------------------------------------------------------------------------------


def load_paper_numbers(path: str | os.PathLike | None = None) -> dict[str, dict[str, float | None]]:
    """The published FAPrompt numbers, ``{dataset key: {metric: percent or None}}``.

    Args:
        path: A file in the format of :data:`PAPER_NUMBERS_FILE` (default: that file). Its ``sources`` say where the
            numbers come from; a null cell is a number that could not be found.

    Returns:
        The numbers (None where not found).

    Raises:
        ValueError: The file lacks ``sources`` or ``numbers``, names an unknown dataset or metric, or holds a value
            that is not a number in [0, 100] or null (the message names the file and cell).
    """
    path = Path(path) if path is not None else PAPER_NUMBERS_FILE
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    if not isinstance(data, dict) or not data.get("sources") or not isinstance(data.get("numbers"), dict):
        raise ValueError(f"{str(path)!r} must hold 'sources' (where the numbers come from) and 'numbers'.")
    numbers: dict[str, dict[str, float | None]] = {}
    for key, row in data["numbers"].items():
        if key not in all_dataset_specs():
            raise ValueError(f"{path}: unknown dataset {key!r}; known: {', '.join(all_dataset_specs())}.")
        numbers[key] = {}
        for metric, value in row.items():
            if metric not in BENCHMARK_METRICS:
                raise ValueError(f"{path}: [{key}] unknown metric {metric!r}; expected {list(BENCHMARK_METRICS)}.")
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 100
            ):
                raise ValueError(f"{path}: [{key}][{metric}] must be a percentage in [0, 100] or null, got {value!r}.")
            numbers[key][metric] = None if value is None else float(value)
    return numbers


# ----------------------------------------------------------------------------------------------------------------
# The table
# ----------------------------------------------------------------------------------------------------------------


def _mean(values: Sequence[float]) -> float:
    finite = [value for value in values if value is not None and math.isfinite(value)]
    return sum(finite) / len(finite) if finite else math.nan


def benchmark_rows(
    outcomes: Sequence[DatasetOutcome], paper_numbers: Mapping[str, Mapping[str, float | None]] | None = None
) -> list[dict[str, Any]]:
    """The table's rows: datasets by domain, with the industrial and medical means after their datasets.

    Each row has ``domain``, ``dataset``, ``status``, ``note``, every metric of :data:`BENCHMARK_METRICS` as a
    percentage (NaN when undefined or not evaluated) and, with ``paper_numbers``, ``paper_<metric>`` (None when not
    found, NaN when the paper has no such cell). A mean row averages each metric over the datasets that define it.

    Args:
        outcomes: The datasets' outcomes.
        paper_numbers: The published numbers (:func:`load_paper_numbers`), or None.

    Returns:
        The rows, in table order.
    """
    rows: list[dict[str, Any]] = []
    domains = ("industrial", "medical", "extra", "synthetic")
    for domain in domains:
        members = [outcome for outcome in outcomes if outcome.domain == domain]
        if not members:
            continue
        for outcome in members:
            row: dict[str, Any] = {
                "domain": domain,
                "dataset": outcome.title,
                "key": outcome.key,
                "status": outcome.status,
                "note": outcome.error or "",
            }
            for metric in BENCHMARK_METRICS:
                row[metric] = 100.0 * outcome.metrics.get(metric, math.nan)
                if paper_numbers is not None:
                    defined = not math.isnan(row[metric]) or outcome.status != "done"
                    published = paper_numbers.get(outcome.key)
                    # None: the paper has the cell but it was not found; NaN: not applicable (not in the paper)
                    row[f"paper_{metric}"] = published.get(metric) if published is not None and defined else math.nan
            rows.append(row)
        if domain in ("industrial", "medical"):
            done = [row for row in rows if row["domain"] == domain and row["status"] == "done"]
            mean = {"domain": domain, "dataset": f"{domain.capitalize()} mean", "key": f"{domain}_mean"}
            mean.update({"status": "mean", "note": f"over {len(done)} dataset(s)"})
            for metric in BENCHMARK_METRICS:
                mean[metric] = _mean([row[metric] for row in done])
                if paper_numbers is not None:
                    published = [row[f"paper_{metric}"] for row in done]
                    applicable = [value for value in published if value is None or not math.isnan(value)]
                    missing = any(value is None for value in applicable)
                    mean[f"paper_{metric}"] = None if missing else _mean(applicable)
            rows.append(mean)
    return rows


def _cell(value: float | None, missing: str = "-") -> str:
    if value is None:
        return missing
    return f"{value:.1f}" if math.isfinite(value) else "-"


def format_benchmark_table(rows: Sequence[Mapping[str, Any]], paper: bool = False) -> str:
    """The rows of :func:`benchmark_rows` as a Markdown table (percentages, one decimal).

    ``-`` marks a metric the dataset does not define (no masks: no pixel metrics; no normal images: no image
    metrics) or a dataset the paper does not report; ``not found`` a published number that could not be found;
    damaged datasets show ``damaged``.

    Args:
        rows: The table rows.
        paper: Add a ``paper`` column after each metric.

    Returns:
        The Markdown table.
    """
    header = ["Domain", "Dataset"]
    for metric in BENCHMARK_METRICS:
        header.append(_METRIC_TITLES[metric])
        if paper:
            header.append("paper")
    header.append("Note")
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---", "---"] + ["---:"] * (len(header) - 3) + ["---"]) + "|",
    ]
    for row in rows:
        cells = [row["domain"], f"**{row['dataset']}**" if row["status"] == "mean" else row["dataset"]]
        for metric in BENCHMARK_METRICS:
            cells.append("damaged" if row["status"] == "damaged" else _cell(row[metric]))
            if paper:
                cells.append(_cell(row.get(f"paper_{metric}"), NOT_FOUND))
        note = str(row.get("note") or "").replace("|", "/").replace("\n", " ")
        cells.append(note[:160] + ("..." if len(note) > 160 else ""))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _write_table(
    output: Path, outcomes: Sequence[DatasetOutcome], paper_numbers: Mapping | None, notes: Sequence[str], extra: dict
) -> tuple[str, dict[str, Path]]:
    rows = benchmark_rows(outcomes, paper_numbers)
    table = format_benchmark_table(rows, paper=paper_numbers is not None)
    files = {"markdown": output / "benchmark.md", "csv": output / "benchmark.csv", "json": output / "benchmark.json"}
    with atomic_write(files["markdown"]) as handle:
        handle.write(table + "\n")
        if notes:
            handle.write("\n" + "\n".join(f"- {note}" for note in notes) + "\n")
    columns = ["domain", "dataset", "key", "status", *BENCHMARK_METRICS]
    if paper_numbers is not None:
        columns += [f"paper_{metric}" for metric in BENCHMARK_METRICS]
    columns.append("note")
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if row.get(name) is None else row.get(name) for name in columns])
    with atomic_write(files["csv"]) as handle:
        handle.write(buffer.getvalue())
    payload = {
        **extra,
        "units": "percent",
        "datasets": [outcome.to_dict() for outcome in outcomes],
        "rows": [
            {key: _json_number(value) if isinstance(value, float) else value for key, value in row.items()}
            for row in rows
        ],
        "notes": list(notes),
    }
    with atomic_write(files["json"]) as handle:
        handle.write(json.dumps(payload, indent=2) + "\n")
    return table, files


# ----------------------------------------------------------------------------------------------------------------
# Running
# ----------------------------------------------------------------------------------------------------------------


def _looked_for(found: FoundDatasets) -> str:
    return "; ".join(f"{get_dataset_spec(key).title}: {', '.join(names)}" for key, names in found.looked_for.items())


def run_benchmark(
    model: Any,
    data_root: str | os.PathLike | None,
    output_dir: str | os.PathLike,
    *,
    image_processor: Any = None,
    mvtec_model: Any = None,
    mvtec_image_processor: Any = None,
    model_name: str | None = None,
    mvtec_model_name: str | None = None,
    datasets: Sequence[str] | None = None,
    dataset_paths: Mapping[str, str | os.PathLike] | None = None,
    include_extra: bool = False,
    synthetic: Dataset | None = None,
    resume: bool = False,
    paper_numbers: Mapping[str, Mapping[str, float | None]] | None = None,
    batch_size: int = 8,
    num_workers: int = 0,
    image_size: int | None = None,
    gaussian_sigma: float | None = None,
    aupro: str = "original",
    pixel_metrics_size: int | None = None,
    resize_mismatched_masks: bool = False,
    evaluate: Callable[..., Any] | None = None,
) -> BenchmarkResult:
    """Evaluate a model zero-shot on every benchmark dataset found under ``data_root`` and write the table.

    Args:
        model: The FAPromptModel for every dataset but MVTec AD (the paper: prompts trained on MVTec AD's test split).
        data_root: The folder holding the dataset folders (see :func:`~faprompt_hf.data.find_paper_datasets`); None
            with only ``synthetic``.
        output_dir: Where ``benchmark.md``, ``benchmark.csv``, ``benchmark.json`` and one folder per dataset go.
        image_processor: ``model``'s image processor (default: a new one).
        mvtec_model: The model for MVTec AD (the paper: prompts trained on VisA); default ``model``, noted in the
            table as outside the protocol.
        mvtec_image_processor: Its image processor.
        model_name: How ``model`` is named in the results (its path or hub id).
        mvtec_model_name: How ``mvtec_model`` is named.
        datasets: Datasets to evaluate (keys, titles or folder names; default: the paper's 19 that are present).
        dataset_paths: Explicit ``{dataset: folder}`` for datasets under other names or elsewhere.
        include_extra: Also look for MVTec AD 2 and MVTec LOCO AD.
        synthetic: A dataset (e.g. ``make_synthetic_dataset(...)``) evaluated as an extra "Synthetic" row.
        resume: Skip datasets whose ``<output_dir>/<key>/status.json`` says ``done`` (their numbers are read back).
        paper_numbers: The published numbers to put beside ours (:func:`load_paper_numbers`), or None.
        batch_size: Images per forward pass.
        num_workers: Data-loader workers.
        image_size: Evaluation side (default: the model's, 518 for the released models).
        gaussian_sigma: Map smoothing in px (default: the model's, 10).
        aupro: ``"original"`` (the released evaluation) or ``"exact"``.
        pixel_metrics_size: Pool maps before the pixel metrics (an approximation; see ``evaluate_model``).
        resize_mismatched_masks: Resize masks whose size differs from their image instead of marking the dataset
            damaged.
        evaluate: The evaluation function (default :func:`~faprompt_hf.evaluation.evaluate_model`).

    Returns:
        A :class:`BenchmarkResult`.

    Raises:
        NoDatasetsFoundError: No dataset is present (the message lists the folder names looked for).
        FileNotFoundError: ``data_root`` does not exist.
    """
    if evaluate is None:
        from .evaluation import evaluate_model as evaluate
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    if data_root is not None:
        found = find_paper_datasets(data_root, datasets, dataset_paths, include_extra)
    else:
        found = FoundDatasets({}, [], {})
    if not found.found and synthetic is None:
        unrecognised = [folder.name for folder in found.unrecognised]
        raise NoDatasetsFoundError(
            f"None of the benchmark datasets is under {os.fspath(data_root)!r}. Looked for folders named (case and "
            f"separators ignored) {_looked_for(found)}."
            + (
                f" Folders there that match none: {unrecognised}; name them with --datasets KEY=FOLDER."
                if unrecognised
                else ""
            )
        )
    notes: list[str] = []
    for folder in found.unrecognised:
        notes.append(
            f"Folder {folder.name!r} under the data root matches no dataset name; if it is one, pass "
            f"--datasets KEY={folder.name}."
        )
    mvtec_is_zero_shot = mvtec_model is not None
    if "mvtec" in found.found and not mvtec_is_zero_shot:
        notes.append(
            "MVTec AD was evaluated with the same model as the others; the paper evaluates it with prompts trained on "
            "VisA (--mvtec_model), so its row is not zero-shot if the model was trained on MVTec AD."
        )
    run_info = {
        "model": model_name,
        "mvtec_model": mvtec_model_name,
        "data_root": None if data_root is None else os.fspath(data_root),
        "protocol": {
            "image_size": image_size,
            "gaussian_sigma": gaussian_sigma,
            "aupro": aupro,
            "pixel_metrics_size": pixel_metrics_size,
        },
        "paper_numbers_source": None if paper_numbers is None else "faprompt_hf/data/paper_numbers.json",
    }
    jobs: list[tuple[str, str, str, Path | None, Dataset | None]] = []
    for key, folder in found.found.items():
        spec = get_dataset_spec(key)
        jobs.append((key, spec.title, spec.domain, folder, None))
    if synthetic is not None:
        jobs.append(("synthetic", "Synthetic", "synthetic", None, synthetic))
    outcomes: list[DatasetOutcome] = []
    for key, title, domain, folder, in_memory in jobs:
        target = output / key
        status_file = target / STATUS_FILE
        if resume and status_file.is_file():
            try:
                saved = DatasetOutcome.from_dict(json.loads(status_file.read_text(encoding="utf-8")))
            except (ValueError, KeyError, TypeError) as error:
                logger.warning("Ignoring unreadable %s (%s); evaluating %s again.", status_file, error, title)
            else:
                if saved.status == "done":
                    logger.info("%s: done in an earlier run (%s), skipped.", title, status_file)
                    outcomes.append(saved)
                    continue
        use_mvtec = key == "mvtec" and mvtec_is_zero_shot
        this_model = mvtec_model if use_mvtec else model
        this_processor = mvtec_image_processor if use_mvtec else image_processor
        this_name = mvtec_model_name if use_mvtec else model_name
        spec = get_dataset_spec(key) if key != "synthetic" else None
        pixel = True if spec is None else spec.pixel_metrics
        logger.info("%s: evaluating %s", title, folder if folder is not None else "in memory")
        try:
            dataset = in_memory if in_memory is not None else spec.loader(folder, split="test")
            with warnings.catch_warnings():
                if spec is not None and not spec.image_metrics:  # all images anomalous: image metrics undefined
                    warnings.filterwarnings("ignore", message=r"image_\w+ is undefined")
                result = evaluate(
                    this_model,
                    dataset,
                    this_processor,
                    batch_size=batch_size,
                    aupro=aupro,
                    pixel_metrics=pixel,
                    pixel_metrics_size=pixel_metrics_size if pixel else None,
                    image_size=image_size,
                    gaussian_sigma=gaussian_sigma,
                    num_workers=num_workers,
                    resize_mismatched_masks=resize_mismatched_masks,
                )
        except (ValueError, OSError, RuntimeError) as error:
            message = f"{type(error).__name__}: {error}"
            logger.warning("%s is damaged and was skipped: %s", title, message)
            outcome = DatasetOutcome(key, title, domain, "damaged", error=message, folder=_str(folder), model=this_name)
        else:
            mean = result.metrics["mean"]
            metrics = {metric: float(mean.get(metric, math.nan)) for metric in BENCHMARK_METRICS}
            if spec is not None and not spec.image_metrics:
                metrics.update(image_auroc=math.nan, image_ap=math.nan)
            result.save(target, extra={**run_info, "dataset": key, "folder": _str(folder), "model": this_name})
            outcome = DatasetOutcome(
                key, title, domain, "done", metrics, folder=_str(folder), model=this_name, num_images=len(dataset)
            )
        target.mkdir(parents=True, exist_ok=True)
        with atomic_write(status_file) as handle:
            handle.write(json.dumps(outcome.to_dict(), indent=2) + "\n")
        outcomes.append(outcome)
        _write_table(output, outcomes, paper_numbers, _notes(notes, outcomes), run_info)
    all_notes = _notes(notes, outcomes)
    table, files = _write_table(output, outcomes, paper_numbers, all_notes, run_info)
    absent = [key for key in found.looked_for if key not in found.found]
    return BenchmarkResult(outcomes, absent, [folder.name for folder in found.unrecognised], table, files, all_notes)


def _str(folder: Path | None) -> str | None:
    return None if folder is None else str(folder)


def _notes(notes: Sequence[str], outcomes: Sequence[DatasetOutcome]) -> list[str]:
    damaged = [f"{outcome.title} was skipped: {outcome.error}" for outcome in outcomes if outcome.status == "damaged"]
    return [*notes, *damaged]


# ----------------------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------------------


def _dataset_choice(text: str) -> tuple[str, str | None]:
    """``NAME[=FOLDER]`` -> (the dataset's key, the folder or None); a ValueError lists the known names."""
    name, _, path = text.partition("=")
    return get_dataset_spec(name).key, path or None


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the benchmark's options to ``parser``: :func:`faprompt_hf.cli_flags.add_benchmark_arguments`."""
    return add_benchmark_arguments(parser)


def run_from_args(args: argparse.Namespace) -> BenchmarkResult:
    """Run the benchmark from parsed :func:`add_arguments` options and write the table to standard output.

    Args:
        args: The parsed options.

    Returns:
        The :class:`BenchmarkResult`.

    Raises:
        NoDatasetsFoundError: No dataset is present.
        ValueError: Neither ``--data_root`` nor ``--make_replicas`` nor ``--synthetic_domains``.
    """
    import torch

    from .evaluation import load_evaluation_model

    data_root = args.data_root
    if args.make_replicas:
        from .data.paper_replicas import write_replicas

        write_replicas(args.make_replicas)
        data_root = data_root or args.make_replicas
    if data_root is None and not args.synthetic_domains:
        raise ValueError("Give --data_root (the folder holding the datasets), --make_replicas or --synthetic_domains.")
    device = "cuda" if torch.cuda.is_available() and not args.use_cpu else "cpu"
    model, image_processor = load_evaluation_model(args.model)
    model.to(device)
    mvtec_model = mvtec_processor = None
    if args.mvtec_model:
        mvtec_model, mvtec_processor = load_evaluation_model(args.mvtec_model)
        mvtec_model.to(device)
    synthetic = None
    if args.synthetic_domains:
        from .data.synthetic import make_synthetic_dataset

        synthetic = make_synthetic_dataset(
            args.synthetic_domains, n_normal=8, n_anomalous=8, image_size=64, split="test"
        )
    chosen = [_dataset_choice(text) for text in args.datasets or []]
    datasets = [key for key, _ in chosen] or None
    paths = {key: path for key, path in chosen if path}
    result = run_benchmark(
        model,
        data_root,
        args.output_dir,
        image_processor=image_processor,
        mvtec_model=mvtec_model,
        mvtec_image_processor=mvtec_processor,
        model_name=args.model,
        mvtec_model_name=args.mvtec_model,
        datasets=datasets,
        dataset_paths=paths,
        include_extra=args.include_extra,
        synthetic=synthetic,
        resume=args.resume,
        paper_numbers=load_paper_numbers(args.paper_numbers) if args.paper_numbers else None,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        image_size=args.image_size,
        gaussian_sigma=args.gaussian_sigma,
        aupro=args.aupro,
        pixel_metrics_size=args.pixel_metrics_size,
        resize_mismatched_masks=args.resize_mismatched_masks,
    )
    lines = [result.table, ""]
    lines += [f"- {note}" for note in result.notes]
    if result.absent:
        lines.append(
            f"Not present under {data_root}: {', '.join(get_dataset_spec(key).title for key in result.absent)}."
        )
    lines += [f"{kind}: {path}" for kind, path in result.files.items()]
    sys.stdout.write("\n".join(lines) + "\n")
    return result


def main(argv: Sequence[str] | None = None) -> BenchmarkResult:
    """``faprompt-hf benchmark`` / ``examples/benchmark_paper.py``: parse ``argv`` and run the benchmark.

    Args:
        argv: Command-line arguments (default: ``sys.argv[1:]``).

    Returns:
        The :class:`BenchmarkResult` (exits with status 2 and the message when no dataset is found).
    """
    import logging as std_logging

    std_logging.basicConfig(level=std_logging.WARNING, format="%(message)s")
    std_logging.getLogger("faprompt_hf").setLevel(std_logging.INFO)
    parser = add_arguments(argparse.ArgumentParser(description=__doc__.split("\n\n")[0]))
    args = parser.parse_args(argv)
    try:
        return run_from_args(args)
    except (NoDatasetsFoundError, ValueError) as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")

# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""Batch scoring of image files, folders, globs, path lists or datasets: the library part of ``faprompt-hf predict``.

:func:`predict` finds the inputs (:func:`discover_inputs`), decodes and resizes them in decoding threads, normalises
each batch at once, runs the model in batches and appends each batch's rows to ``predictions.jsonl`` (one ``write``
per batch: a killed run loses at most the batch in flight and never leaves a broken line behind). At the end it writes
``predictions.csv`` in input order. Unreadable files go to ``errors.jsonl`` (``on_error="skip"``) or stop the run
(``on_error="stop"``). ``resume=True`` skips the images already in ``predictions.jsonl`` of the same model.

The scores are those of ``pipeline("anomaly-detection")``: the same decoding
(:func:`~faprompt_hf.image_utils.to_rgb_image`), the image processor's resizing and normalisation (the same float32
operations, :func:`~faprompt_hf.inference_utils.resize_image` and
:func:`~faprompt_hf.inference_utils.normalize_pixels`) and the same post-processing
(:func:`~faprompt_hf.inference_utils.resize_anomaly_map`). An ONNX export folder as ``model`` runs through
:class:`~faprompt_hf.onnx.ONNXAnomalyDetector`, without torch.

With ``references`` (``--references``), a few normal images are stored in the model's normal-reference bank first
(``docs/few_shot.md``) and every score fuses the text and reference scores, as the pipeline's ``references=`` does.

Under ``accelerate launch`` with N processes, each process scores every N-th input and writes its own part; the
first process then merges them into one ``predictions.jsonl``/``predictions.csv`` in input order.
"""

from __future__ import annotations

import contextlib
import csv
import glob
import io
import json
import os
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .file_utils import atomic_write, check_model_reference
from .image_utils import to_rgb_image
from .inference_utils import check_threshold, normalize_pixels, resize_anomaly_map, resize_image, resolve_threshold

__all__ = [
    "CSV_COLUMNS",
    "ERRORS_FILE",
    "IMAGE_EXTENSIONS",
    "PREDICTIONS_CSV",
    "PREDICTIONS_JSONL",
    "RUN_FILE",
    "InputImage",
    "PredictError",
    "PredictSummary",
    "discover_inputs",
    "predict",
    "predict_from_args",
    "read_references",
]

PREDICTIONS_CSV = "predictions.csv"
PREDICTIONS_JSONL = "predictions.jsonl"
ERRORS_FILE = "errors.jsonl"
RUN_FILE = "predict_run.json"
"""Names the model that wrote an output folder (``--resume`` refuses another model's folder)."""

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
"""Files a folder or glob input picks up (case-insensitive). A file named directly is read whatever its extension."""

CSV_COLUMNS = (
    "path",
    "score",
    "is_anomalous",
    "threshold",
    "pixel_threshold",
    "anomalous_area",
    "mask",
    "overlay",
    "map",
)
"""Columns of ``predictions.csv`` (``predictions.jsonl`` has the same keys): the input path, the image score, the
decision and the threshold it used, the pixel threshold, the fraction of pixels at or above it, and the paths of the
written mask, overlay and raw map, relative to the output folder (empty when not written)."""

_GLOB_CHARACTERS = ("*", "?", "[")


class PredictError(Exception):
    """A refused input or a stopped run; the message names the input and the fix.

    Attributes:
        exit_code: 2 for bad arguments or inputs (nothing was scored), 1 for a run stopped by ``on_error="stop"``.
    """

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class InputImage:
    """One image to score.

    Attributes:
        path: The file, as found (the key of its row).
        relative: Where its maps go under ``masks/``, ``overlays/``, ``maps/`` (mirrors the input folder).
    """

    path: str
    relative: str


@dataclass
class PredictSummary:
    """What a run did.

    Attributes:
        output_dir: The output folder.
        num_inputs: Images found.
        num_scored: Images scored by this run.
        num_resumed: Images skipped because ``predictions.jsonl`` already had them.
        num_errors: Images that could not be read (in ``errors.jsonl``).
        num_anomalous: Rows with ``is_anomalous`` in ``predictions.csv``.
        seconds: Wall time of the scoring loop.
        files: The files written.
    """

    output_dir: Path
    num_inputs: int
    num_scored: int
    num_resumed: int
    num_errors: int
    num_anomalous: int
    seconds: float
    files: list[Path] = field(default_factory=list)

    def __str__(self) -> str:
        """The summary ``faprompt-hf predict`` prints."""
        rate = self.num_scored / self.seconds if self.seconds > 0 else 0.0
        lines = [
            f"Scored {self.num_scored} of {self.num_inputs} images in {self.seconds:.1f} s ({rate:.1f} images/s)"
            + (f", {self.num_resumed} already done" if self.num_resumed else "")
            + (f", {self.num_errors} unreadable (see {ERRORS_FILE})" if self.num_errors else "")
            + f"; {self.num_anomalous} anomalous.",
            *(f"  {path}" for path in self.files),
        ]
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------- inputs


def _is_image_name(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def _close_names(path: Path) -> str:
    import difflib

    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        return f" (its folder {os.fspath(parent)}/ does not exist either)"
    close = difflib.get_close_matches(path.name, sorted(item.name for item in parent.iterdir()), n=5, cutoff=0.5)
    return f"; close names in {os.fspath(parent)}/: {', '.join(close)}" if close else ""


def _glob_base(pattern: str) -> Path:
    """The folder part of a glob pattern before its first wildcard (the root of the mirrored tree)."""
    parts = Path(pattern).parts
    base = [part for part in parts[: next(i for i, p in enumerate(parts) if any(c in p for c in _GLOB_CHARACTERS))]]
    return Path(*base) if base else Path(".")


def _relative(path: Path, base: Path) -> str:
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return path.name


def discover_inputs(inputs: Sequence[str | os.PathLike]) -> list[InputImage]:
    """The images that ``inputs`` name, in order, each once.

    Args:
        inputs: Image files, folders (searched recursively for :data:`IMAGE_EXTENSIONS`), glob patterns (``**``
            recurses) or ``.txt`` files with one path per line (relative paths are relative to the list's folder;
            blank lines and lines starting with ``#`` are skipped).

    Returns:
        The images; a folder's images are mirrored as ``<folder name>/<path inside it>``, a glob's relative to its
        folder part, a file's as its name.

    Raises:
        PredictError: No inputs, a path that does not exist (with close names), an empty folder, or a glob that
            matches nothing.
    """
    if not inputs:
        raise PredictError("No inputs: give image files, folders, glob patterns or a .txt list, or --dataset_format.")
    found: list[InputImage] = []
    for item in inputs:
        text = os.fspath(item)
        path = Path(os.path.expanduser(text))
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and _is_image_name(p))
            if not files:
                raise PredictError(
                    f"{text}: the folder holds no images ({', '.join(IMAGE_EXTENSIONS)}), nor do its subfolders. "
                    "Check the folder, or name the files directly."
                )
            base = path.resolve().parent
            found += [InputImage(os.fspath(p), _relative(p.resolve(), base)) for p in files]
        elif path.is_file() and path.suffix.lower() == ".txt":
            folder = path.parent
            lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
            entries = [line for line in lines if line and not line.startswith("#")]
            if not entries:
                raise PredictError(f"{text}: the list holds no paths. Put one image path per line in it.")
            for entry in entries:
                listed = Path(os.path.expanduser(entry))
                listed = listed if listed.is_absolute() else folder / listed
                found.append(InputImage(os.fspath(listed), _relative(listed, folder)))
        elif path.is_file():
            found.append(InputImage(text, path.name))
        elif any(character in text for character in _GLOB_CHARACTERS):
            matches = sorted(Path(p) for p in glob.glob(os.path.expanduser(text), recursive=True))
            files = [p for p in matches if p.is_file() and _is_image_name(p)]
            if not files:
                raise PredictError(
                    f"{text}: the glob pattern matches no image files ({len(matches)} paths matched, none an image). "
                    "Check the pattern; quote it so that the shell does not expand it, and use ** to search "
                    "subfolders ('parts/**/*.png')."
                )
            base = _glob_base(os.path.expanduser(text))
            found += [InputImage(os.fspath(p), _relative(p, base)) for p in files]
        else:
            raise PredictError(f"{text}: no such file or folder{_close_names(path)}. Check the path.")
    unique: dict[str, InputImage] = {}
    for image in found:
        unique.setdefault(image.path, image)
    return list(unique.values())


def _dataset_inputs(
    dataset_format: str, dataset_path: str | None, split: str, classes: Sequence[str] | None
) -> list[InputImage]:
    """The image paths of a dataset read by :func:`faprompt_hf.data.load_dataset_by_format` (files only)."""
    from .data import load_dataset_by_format

    kwargs = {"require_masks": False} if dataset_format in ("folder", "meta_json") else {}  # scoring needs no masks
    dataset = load_dataset_by_format(dataset_format, dataset_path, split, classes, **kwargs)
    root = Path(dataset_path) if dataset_path and Path(dataset_path).is_dir() else None
    images = []
    for row_path in dataset["path"]:
        if not os.path.isfile(row_path) and root is not None and (root / row_path).is_file():
            row_path = os.fspath(root / row_path)
        if not os.path.isfile(row_path):
            raise PredictError(
                f"--dataset_format {dataset_format}: row {row_path!r} is not an image file on disk; predict reads "
                "files (give the dataset's folder, or export the images)."
            )
        images.append(InputImage(row_path, _relative(Path(row_path), root) if root else Path(row_path).name))
    if not images:
        raise PredictError(f"--dataset_format {dataset_format} --dataset_path {dataset_path}: no images in {split}.")
    return images


# ---------------------------------------------------------------------------------------------------------- decoding


class _Preprocess:
    """Decode one file and resize it to the model's input size (it runs in the decoding threads).

    The threads return uint8 pixels; the scorer normalises a whole batch at once
    (:func:`~faprompt_hf.inference_utils.normalize_pixels`) with the same float32 operations as the image processor,
    so the model sees the pipeline's pixels bit for bit.
    """

    def __init__(self, size: tuple[int, int], resample: str, keep_image: bool) -> None:
        self.size = size
        self.resample = resample
        self.keep_image = keep_image

    def __call__(self, path: str) -> tuple[np.ndarray, tuple[int, int], np.ndarray | None]:
        """``(pixels (S_h, S_w, 3) uint8, (height, width) of the image, the RGB image (H, W, 3) or None)``."""
        rgb = to_rgb_image(path, path)
        return (
            resize_image(rgb, self.size, self.resample),
            (rgb.height, rgb.width),
            (np.asarray(rgb) if self.keep_image else None),
        )


class _ImageFiles:
    """A map-style dataset of image files; each item is decoded where it is read (a decoding thread)."""

    def __init__(self, images: Sequence[InputImage], preprocess: _Preprocess) -> None:
        self.images = list(images)
        self.preprocess = preprocess

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, Any]:
        image = self.images[index]
        try:
            pixels, size, rgb = self.preprocess(image.path)
        except Exception as error:  # any decoding failure is this file's error, reported with its name
            message = str(error).splitlines()[0] if str(error) else type(error).__name__
            return {"image": image, "error": f"{type(error).__name__}: {message}"}
        return {"image": image, "pixels": pixels, "size": size, "rgb": rgb, "error": None}


PREFETCH_BATCHES = 2
"""Batches decoded ahead of the one the model is scoring (bounds the memory of decoded images)."""


def _batches(dataset: _ImageFiles, batch_size: int, num_workers: int) -> Iterator[list[dict[str, Any]]]:
    """Batches of decoded items, in order.

    With ``num_workers`` > 0 the items are decoded by that many threads, at most :data:`PREFETCH_BATCHES` batches
    ahead of the model: Pillow and numpy release the GIL while they decode, convert and resize, so the threads run
    beside the forward pass. Threads rather than DataLoader worker processes: a process costs a fork of the whole
    (torch-sized) interpreter and a shutdown per run, about 50 ms for two on a 2-core CPU, which is more than
    decoding a few hundred small images takes; and the ONNX runtime's environment has no torch.
    """
    if num_workers == 0:
        for first in range(0, len(dataset), batch_size):
            yield [dataset[index] for index in range(first, min(first + batch_size, len(dataset)))]
        return
    from concurrent.futures import Future, ThreadPoolExecutor

    pool = ThreadPoolExecutor(max_workers=num_workers, thread_name_prefix="faprompt-predict-decode")
    pending: deque[Future] = deque()
    submitted = 0
    window = batch_size * (PREFETCH_BATCHES + 1)
    try:
        while submitted < len(dataset) or pending:
            while submitted < len(dataset) and len(pending) < window:
                pending.append(pool.submit(dataset.__getitem__, submitted))
                submitted += 1
            yield [pending.popleft().result() for _ in range(min(batch_size, len(pending)))]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


# ---------------------------------------------------------------------------------------------------------- models


class _Scorer:
    """The model behind a run: a PyTorch FAPromptModel or an ONNX export."""

    def __init__(
        self,
        model: str | os.PathLike | Any,
        device: str | None,
        dtype: str,
        load_package: Callable[[], None] | None,
    ) -> None:
        self.onnx = None
        self.model = None
        self.reference_class: str | None = None
        if isinstance(model, (str, os.PathLike)):
            check_model_reference(model)
            self.name = os.fspath(Path(model).resolve()) if Path(model).exists() else os.fspath(model)
            from .onnx.runtime import ONNX_CONFIG_NAME

            if (Path(model) / ONNX_CONFIG_NAME).is_file():
                if dtype != "float32":
                    raise PredictError(f"--dtype {dtype}: an ONNX export runs in float32; drop --dtype.")
                from .onnx.runtime import ONNXAnomalyDetector

                self.onnx = ONNXAnomalyDetector(model)
                self.calibrated = self.onnx.threshold
                self.size, self.resample = tuple(self.onnx.image_size), self.onnx.resample
                self.image_mean, self.image_std = self.onnx.image_mean, self.onnx.image_std
                return
            if load_package is not None:
                load_package()
            from .image_processing_faprompt import FAPromptImageProcessor
            from .modeling_faprompt import FAPromptModel

            loaded = FAPromptModel.from_pretrained(model)
            try:
                image_processor = FAPromptImageProcessor.from_pretrained(model)
            except OSError:
                image_processor = FAPromptImageProcessor.from_model_config(loaded.config)
        else:
            from .image_processing_faprompt import FAPromptImageProcessor

            loaded = model
            self.name = getattr(model.config, "_name_or_path", "") or type(model).__name__
            image_processor = FAPromptImageProcessor.from_model_config(loaded.config)
        # the pipeline's pre-processing (FAPromptImageProcessor.preprocess_image), split between threads and batches
        self.image_processor = image_processor  # (references are prepared by it as a whole)
        self.size = (image_processor.size["height"], image_processor.size["width"])
        self.resample, self.image_mean, self.image_std = (
            image_processor.resample,
            image_processor.image_mean,
            image_processor.image_std,
        )
        import torch

        torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if torch_dtype == torch.float16 and torch.device(device).type == "cpu":
            raise PredictError("--dtype float16 needs a GPU; on a CPU use --dtype bfloat16 or float32.")
        if torch_dtype == torch.bfloat16 and torch.device(device).type == "cuda" and not torch.cuda.is_bf16_supported():
            raise PredictError("--dtype bfloat16: this GPU has no bfloat16; use --dtype float16 or float32.")
        self.model = loaded.to(device=device, dtype=torch_dtype).eval()
        self.device = device
        self.calibrated = getattr(loaded.config, "anomaly_threshold", None)

    def __call__(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Scores (B,) and smoothed maps (B, S_h, S_w), float32, of resized uint8 pixels (B, S_h, S_w, 3)."""
        pixels = normalize_pixels(pixels, self.image_mean, self.image_std)
        if self.onnx is not None:
            return self.onnx.run(pixels)
        import torch

        with torch.inference_mode():
            outputs = self.model(
                pixel_values=torch.from_numpy(pixels).to(self.device, self.model.dtype),
                normal_reference_class=self.reference_class,
            )
        return outputs.image_scores.float().cpu().numpy(), outputs.anomaly_maps.float().cpu().numpy()

    def use_references(
        self, references: Sequence[str | os.PathLike] | None, reference_class: str | None, batch_size: int
    ) -> None:
        """Store ``references`` in the model's bank as ``reference_class`` and/or score against that class.

        The run's name (:data:`RUN_FILE`, checked by ``resume``) then names the class and the references' digest, so
        that a run is never resumed with other references.

        Raises:
            PredictError: An ONNX model, unreadable references, a class the bank does not hold (listing those it
                holds), or several classes in the bank and no ``reference_class``.
        """
        if self.onnx is not None:
            raise PredictError(
                "--references/--reference_class: an ONNX export has no normal-reference bank. Give the PyTorch model "
                "folder as --model, or drop the flags."
            )
        from .modeling_faprompt import DEFAULT_REFERENCE_CLASS
        from .pipeline_faprompt import reference_digest

        classes = self.model.normal_reference_classes
        identity = ""
        if references is not None:
            pixels = read_references(references, self.image_processor)
            import torch

            pixel_values = torch.from_numpy(pixels)
            try:
                self.reference_class = DEFAULT_REFERENCE_CLASS if reference_class is None else reference_class
                self.model.set_normal_references(
                    pixel_values.to(self.model.device, self.model.dtype),
                    self.reference_class,
                    replace=True,
                    batch_size=batch_size,
                )
            except ValueError as error:
                raise PredictError(f"--references: {error}") from None
            identity = f", sha256 {reference_digest(pixel_values, self.reference_class)[:16]}"
        elif reference_class is not None:
            try:
                self.model.normal_reference_features(reference_class)
            except ValueError as error:
                raise PredictError(
                    f"--reference_class {reference_class}: {error} Give normal images of it with --references."
                ) from None
            self.reference_class = reference_class
        elif len(classes) > 1:
            raise PredictError(
                f"--model {self.name} holds normal references of several classes {classes}: choose one with "
                "--reference_class NAME."
            )
        if self.reference_class is not None:
            self.name = f"{self.name} [normal references: class {self.reference_class!r}{identity}]"


def read_references(
    references: Sequence[str | os.PathLike], image_processor: Any, flag: str = "--references"
) -> np.ndarray:
    """The normal reference images that ``references`` name, prepared for ``model.set_normal_references``.

    Args:
        references: Image files, folders, glob patterns or ``.txt`` lists, as the inputs (:func:`discover_inputs`).
        image_processor: The run's ``FAPromptImageProcessor`` (references are prepared and resized like images).
        flag: The command-line flag that gave them, named in errors.

    Returns:
        Pixels (R, 3, S, S), float32, in the order :func:`discover_inputs` finds them.

    Raises:
        PredictError: No references, a missing path, an empty folder, a glob matching nothing, or a file that cannot
            be read as an image (named), each with its fix.
    """
    if not references:
        raise PredictError(
            f"{flag} is empty: give at least one normal image (files, folders, glob patterns or a .txt list)."
        )
    try:
        found = discover_inputs(references)
    except PredictError as error:
        raise PredictError(f"{flag}: {error}") from None
    paths = [image.path for image in found]
    try:
        prepared = image_processor.preprocess_references(paths, return_tensors="np")
    except (OSError, ValueError) as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise PredictError(
            f"{flag}: {message} Every reference must be readable: fix the file or leave it out."
        ) from None
    return np.asarray(prepared["reference_pixel_values"], dtype=np.float32)


# ---------------------------------------------------------------------------------------------------------- outputs


def _append_lines(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    """Append rows as JSON lines with one ``write`` (a killed process never leaves half a batch).

    No fsync per batch: what a killed process wrote is in the page cache; the final files are written (and synced)
    by :func:`~faprompt_hf.file_utils.atomic_write` at the end.
    """
    if not rows:
        return
    data = "".join(json.dumps(row, allow_nan=False) + "\n" for row in rows).encode("utf-8")
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        written = os.write(descriptor, data)
        if written != len(data):
            raise OSError(f"Short write to {path}: {written} of {len(data)} bytes (is the disk full?).")
    finally:
        os.close(descriptor)


def _drop_partial_line(path: Path) -> None:
    """Cut a last line that a kill left without its newline, so that the next append starts a fresh line."""
    if not path.is_file():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with open(path, "r+b") as handle:
            handle.truncate(data.rfind(b"\n") + 1)


def _read_lines(path: Path) -> list[dict[str, Any]]:
    """The complete JSON lines of a file (a line cut short by a kill is dropped)."""
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def _write_png(path: Path, image: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    with atomic_write(path, "wb", encoding=None) as handle:
        handle.write(buffer.getvalue())


def _write_npy(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "wb", encoding=None) as handle:
        np.save(handle, array.astype(np.float32))


def _write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    with atomic_write(path, "w", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "score": f"{row['score']:.6f}", "anomalous_area": f"{row['anomalous_area']:.6f}"})


def _prepare_output_dir(output_dir: Path, model_name: str, resume: bool, is_main: bool) -> None:
    """Create the folder; refuse a file, a finished run without ``resume``, or another model's run with it."""
    if output_dir.exists() and not output_dir.is_dir():
        raise PredictError(f"--output_dir {output_dir} is a file, not a folder: give a folder (it is created).")
    run_file = output_dir / RUN_FILE
    if not is_main:  # the first process checks and creates the folder (the others wait for it)
        return
    if run_file.is_file():
        recorded = json.loads(run_file.read_text(encoding="utf-8")).get("model")
        if resume and recorded != model_name:
            raise PredictError(
                f"--resume: {output_dir} holds predictions of the model {recorded!r}, not of {model_name!r}. Resume "
                "with that model, or write this model's predictions to another --output_dir."
            )
        if not resume:
            raise PredictError(
                f"{output_dir} already holds predictions (of {recorded!r}): pass --resume to add the missing images, "
                "or choose another --output_dir."
            )
    output_dir.mkdir(parents=True, exist_ok=True)
    if not run_file.is_file():
        with atomic_write(run_file) as handle:
            json.dump({"model": model_name}, handle, indent=2)


# ---------------------------------------------------------------------------------------------------------- the run


def _distributed(device: str | None) -> tuple[int, int, Any]:
    """``(rank, world_size, state)`` under ``accelerate launch``/torchrun with several processes, else (0, 1, None).

    On a machine without a GPU (or with ``device="cpu"``) the processes form a CPU (gloo) group, as
    ``accelerate launch --multi_gpu --num_processes N ... --use_cpu`` does for training.
    """
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return 0, 1, None
    import torch
    from accelerate import PartialState

    cpu = (device or "").startswith("cpu") or (device is None and not torch.cuda.is_available())
    state = PartialState(cpu=cpu)
    return state.process_index, state.num_processes, state


def predict(
    inputs: Sequence[str | os.PathLike] | Sequence[InputImage],
    model: str | os.PathLike | Any,
    output_dir: str | os.PathLike,
    *,
    batch_size: int = 8,
    num_workers: int = 2,
    device: str | None = None,
    dtype: str = "float32",
    threshold: float | None = None,
    pixel_threshold: float = 0.5,
    save_masks: bool = False,
    save_overlays: bool = False,
    save_maps: bool = False,
    resume: bool = False,
    on_error: str = "skip",
    progress: bool = True,
    load_package: Callable[[], None] | None = None,
    references: Sequence[str | os.PathLike] | None = None,
    reference_class: str | None = None,
) -> PredictSummary:
    """Score images and write ``predictions.csv``, ``predictions.jsonl``, ``errors.jsonl`` and the requested maps.

    Args:
        inputs: Paths, folders, globs or ``.txt`` lists (see :func:`discover_inputs`), or :class:`InputImage` items.
        model: A model folder or hub id, an ONNX export folder, or a loaded ``FAPromptModel``.
        output_dir: The output folder (created).
        batch_size: Images per forward pass, >= 1.
        num_workers: Decoding threads, >= 0 (0: decode in the calling thread).
        device: ``cpu``, ``cuda``, ... (default: cuda when present; under ``accelerate launch``, the process's).
        dtype: ``float32``, ``bfloat16`` or ``float16`` (PyTorch models).
        threshold: Image-score threshold (default: the model's calibrated one, else 0.5 with a warning).
        pixel_threshold: Anomaly-map threshold of masks and ``anomalous_area``.
        save_masks: Write ``masks/<relative>.png``.
        save_overlays: Write ``overlays/<relative>.png``.
        save_maps: Write ``maps/<relative>.npy`` (float32, at the image's size).
        resume: Skip the images already in ``predictions.jsonl`` (the folder must be this model's).
        on_error: ``"skip"`` (record in ``errors.jsonl``, go on) or ``"stop"`` (raise :class:`PredictError`, exit
            code 1).
        progress: Show a progress bar.
        load_package: Called before a PyTorch model is loaded (the CLI's deferred package import).
        references: Normal images of the inputs' kind (files, folders, globs or ``.txt`` lists, as ``inputs``),
            stored in the model's bank as ``reference_class`` (replacing that class's rows) before scoring; scores
            and maps then fuse the text and reference scores (``docs/few_shot.md``). PyTorch models only. A model
            given as an object keeps them in its bank afterwards (a folder or hub id is loaded for the run alone).
        reference_class: The bank's class to store ``references`` as (default ``"default"``), or without
            ``references`` the class of the model's bank to compare with (needed when it holds several).

    Returns:
        The :class:`PredictSummary`.

    Raises:
        PredictError: Bad arguments or inputs (naming them and the fix), or an unreadable image with
            ``on_error="stop"``.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise PredictError(f"--batch_size must be an integer >= 1, got {batch_size!r}.")
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise PredictError(f"--num_workers must be an integer >= 0, got {num_workers!r}.")
    if on_error not in ("skip", "stop"):
        raise PredictError(f"--on_error must be 'skip' or 'stop', got {on_error!r}.")
    try:
        threshold = None if threshold is None else check_threshold(threshold, "--threshold")
        pixel_threshold = check_threshold(pixel_threshold, "--pixel_threshold")
    except ValueError as error:
        raise PredictError(str(error)) from None
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise PredictError(f"--output_dir {output_dir} is a file, not a folder: give a folder (it is created).")
    images = [item for item in inputs if isinstance(item, InputImage)]
    if len(images) != len(inputs):
        images = discover_inputs(inputs)  # type: ignore[arg-type]
    rank, world, state = _distributed(device)
    if state is not None and device is None:
        device = str(state.device)
    try:
        scorer = _Scorer(model, device, dtype, load_package)
    except (OSError, ValueError) as error:
        name = os.fspath(model) if isinstance(model, (str, os.PathLike)) else model
        raise PredictError(f"--model {name}: {error}") from None
    if references is not None or reference_class is not None or scorer.onnx is None:
        scorer.use_references(references, reference_class, batch_size)
    _prepare_output_dir(output_dir, scorer.name, resume, rank == 0)
    if state is not None:
        state.wait_for_everyone()
    jsonl, errors_file = output_dir / PREDICTIONS_JSONL, output_dir / ERRORS_FILE
    parts = sorted(output_dir.glob(f"{PREDICTIONS_JSONL}.part*")) + sorted(output_dir.glob(f"{ERRORS_FILE}.part*"))
    done_rows = [row for path in [jsonl, *parts] if not path.name.startswith(ERRORS_FILE) for row in _read_lines(path)]
    done = {row["path"] for row in done_rows if "path" in row}
    todo = [image for image in images if image.path not in done]
    shard = todo[rank::world]
    suffix = f".part{rank}" if world > 1 else ""
    own_jsonl, own_errors = Path(f"{jsonl}{suffix}"), Path(f"{errors_file}{suffix}")
    for path in (own_jsonl, own_errors):
        _drop_partial_line(path)
    if world == 1 and errors_file.is_file():
        # errors of an earlier run are retried: keep only those of images this run does not score again
        retried = {image.path for image in todo}
        kept = [row for row in _read_lines(errors_file) if row.get("path") not in retried]
        with atomic_write(errors_file) as handle:
            handle.write("".join(json.dumps(row) + "\n" for row in kept))
    dataset = _ImageFiles(shard, _Preprocess(scorer.size, scorer.resample, save_overlays))
    warned = False
    scored = failed = 0
    start = time.perf_counter()
    bar = None
    if progress and rank == 0:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(shard) * world, unit="img", desc="predict")
    with contextlib.closing(_batches(dataset, batch_size, num_workers)) as batches:  # stops the threads on a stop
        for batch in batches:
            good = [item for item in batch if item["error"] is None]
            bad = [item for item in batch if item["error"] is not None]
            rows = []
            if good:
                scores, maps = scorer(np.stack([item["pixels"] for item in good]))
                used, now_warned = resolve_threshold(threshold, scorer.calibrated, not warned)
                warned |= now_warned
                rows = _rows(
                    good, scores, maps, used, pixel_threshold, output_dir, save_masks, save_overlays, save_maps
                )
            _append_lines(own_jsonl, rows)
            error_rows = [{"path": item["image"].path, "error": item["error"]} for item in bad]
            _append_lines(own_errors, error_rows)
            scored += len(rows)
            failed += len(bad)
            if bar is not None:
                bar.update(len(batch) * world)
            if bad and on_error == "stop":
                if bar is not None:
                    bar.close()
                raise PredictError(
                    f"{bad[0]['image'].path}: {bad[0]['error']}. Fix or remove the file, or pass --on_error skip to "
                    f"record unreadable files in {errors_file} and go on ({scored} images scored so far, kept in "
                    f"{own_jsonl}; --resume continues).",
                    exit_code=1,
                )
    if bar is not None:
        bar.close()
    seconds = time.perf_counter() - start
    if state is not None:
        state.wait_for_everyone()
    if rank != 0:
        return PredictSummary(output_dir, len(images), scored, len(done), failed, 0, seconds)
    return _finish(output_dir, images, len(done), scored, failed, seconds, world)


def _rows(
    items: Sequence[dict[str, Any]],
    scores: np.ndarray,
    maps: np.ndarray,
    threshold: float,
    pixel_threshold: float,
    output_dir: Path,
    save_masks: bool,
    save_overlays: bool,
    save_maps: bool,
) -> list[dict[str, Any]]:
    """A batch's rows, writing each image's mask, overlay and map as asked.

    ``anomalous_area`` is the mask's share of the image's pixels, with the mask taken at the image's size as the
    pipeline takes it (``resize_anomaly_map``, then ``>= pixel_threshold``). Images already at the model's size need
    no resizing: their areas come from one comparison over the batch's maps; only the others are resized, one by one,
    and maps are turned into files only when a mask, overlay or map is written.

    Args:
        items: The decoded items, B of them (``image``, ``size``, ``rgb``).
        scores: Image scores (B,).
        maps: Anomaly maps at the model's input size (B, S_h, S_w).
        threshold: The image-score threshold.
        pixel_threshold: The anomaly-map threshold.
        output_dir: Where masks, overlays and maps go.
        save_masks: Write ``masks/<relative>.png``.
        save_overlays: Write ``overlays/<relative>.png``.
        save_maps: Write ``maps/<relative>.npy``.

    Returns:
        B rows with the keys of :data:`CSV_COLUMNS`.
    """
    map_size = tuple(maps.shape[1:])
    areas = (maps >= pixel_threshold).mean(axis=(1, 2))  # right for images at the model's size
    write_files = save_masks or save_overlays or save_maps
    rows = []
    for item, score, anomaly_map, area in zip(items, scores.tolist(), maps, areas.tolist(), strict=True):
        image: InputImage = item["image"]
        written = {"mask": "", "overlay": "", "map": ""}
        if tuple(item["size"]) != map_size or write_files:
            resized = resize_anomaly_map(anomaly_map, item["size"])
            mask = resized >= pixel_threshold
            area = float(mask.mean())
            if write_files:
                written = _write_outputs(item, resized, mask, output_dir, save_masks, save_overlays, save_maps)
        rows.append(
            {
                "path": image.path,
                "score": score,
                "is_anomalous": score >= threshold,
                "threshold": threshold,
                "pixel_threshold": pixel_threshold,
                "anomalous_area": area,
                **written,
            }
        )
    return rows


def _write_outputs(
    item: dict[str, Any],
    resized: np.ndarray,
    mask: np.ndarray,
    output_dir: Path,
    save_masks: bool,
    save_overlays: bool,
    save_maps: bool,
) -> dict[str, str]:
    """Write one image's mask, overlay and map as asked; their paths relative to ``output_dir`` ("" if not asked).

    Args:
        item: The decoded item (``image``, ``rgb``).
        resized: Its anomaly map at the image's size (H, W), float32.
        mask: ``resized >= pixel_threshold`` (H, W), bool.
        output_dir: The output folder.
        save_masks: Write ``masks/<relative>.png``.
        save_overlays: Write ``overlays/<relative>.png``.
        save_maps: Write ``maps/<relative>.npy``.
    """
    from PIL import Image

    stem = Path(item["image"].relative).with_suffix("").as_posix()
    written = {"mask": "", "overlay": "", "map": ""}
    if save_masks:
        written["mask"] = f"masks/{stem}.png"
        _write_png(output_dir / written["mask"], Image.fromarray(mask.astype(np.uint8) * 255))
    if save_overlays:
        from .overlay import overlay_heatmap

        written["overlay"] = f"overlays/{stem}.png"
        _write_png(output_dir / written["overlay"], overlay_heatmap(Image.fromarray(item["rgb"]), resized))
    if save_maps:
        written["map"] = f"maps/{stem}.npy"
        _write_npy(output_dir / written["map"], resized)
    return written


def _finish(
    output_dir: Path, images: Sequence[InputImage], resumed: int, scored: int, failed: int, seconds: float, world: int
) -> PredictSummary:
    """Merge the processes' parts, and write ``predictions.jsonl``/``predictions.csv`` in input order."""
    jsonl, errors_file = output_dir / PREDICTIONS_JSONL, output_dir / ERRORS_FILE
    parts = sorted(output_dir.glob(f"{PREDICTIONS_JSONL}.part*"))
    error_parts = sorted(output_dir.glob(f"{ERRORS_FILE}.part*"))
    rows = {row["path"]: row for path in [jsonl, *parts] for row in _read_lines(path) if "path" in row}
    order = {image.path: index for index, image in enumerate(images)}
    ordered = sorted(rows.values(), key=lambda row: order.get(row["path"], len(order)))
    errors = {row["path"]: row for path in [errors_file, *error_parts] for row in _read_lines(path)}
    errors = {path: row for path, row in errors.items() if path not in rows}
    with atomic_write(jsonl) as handle:
        handle.write("".join(json.dumps(row, allow_nan=False) + "\n" for row in ordered))
    with atomic_write(errors_file) as handle:
        handle.write(
            "".join(json.dumps(row) + "\n" for row in sorted(errors.values(), key=lambda r: order.get(r["path"], 0)))
        )
    for part in [*parts, *error_parts]:
        part.unlink()
    _write_csv(output_dir / PREDICTIONS_CSV, ordered)
    files = [output_dir / PREDICTIONS_CSV, jsonl, errors_file]
    return PredictSummary(
        output_dir,
        len(images),
        scored * world if world > 1 else scored,
        resumed,
        len(errors),
        sum(bool(row["is_anomalous"]) for row in ordered),
        seconds,
        files,
    )


def predict_from_args(args: Any, load_package: Callable[[], None] | None = None) -> PredictSummary:
    """Run :func:`predict` from ``faprompt-hf predict``'s parsed flags.

    Args:
        args: The namespace of :func:`faprompt_hf.cli_flags.add_predict_arguments`.
        load_package: Completes the package import before a PyTorch model is loaded.

    Returns:
        The summary.

    Raises:
        PredictError: Bad inputs or a stopped run.
    """
    if args.inputs and args.dataset_format:
        raise PredictError("Give INPUT paths or --dataset_format/--dataset_path, not both.")
    if args.dataset_format:
        if load_package is not None:
            load_package()
        try:
            inputs: Sequence[Any] = _dataset_inputs(args.dataset_format, args.dataset_path, args.split, args.classes)
        except (OSError, ValueError) as error:
            raise PredictError(f"--dataset_format {args.dataset_format}: {error}") from None
    else:
        inputs = discover_inputs(args.inputs)
    return predict(
        inputs,
        args.model,
        args.output_dir,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        device=args.device,
        dtype=args.dtype,
        threshold=args.threshold,
        pixel_threshold=args.pixel_threshold,
        save_masks=args.save_masks,
        save_overlays=args.save_overlays,
        save_maps=args.save_maps,
        resume=args.resume,
        on_error=args.on_error,
        progress=not args.no_progress,
        load_package=load_package,
        references=args.references,
        reference_class=args.reference_class,
    )

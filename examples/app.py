# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""A Gradio demo of FAPrompt: drop part images on a page, get scores, verdicts, heatmaps and masks.

The page runs ``pipeline("anomaly-detection")`` once per batch of images and keeps the raw scores and anomaly maps;
the image threshold, pixel threshold and overlay opacity sliders re-decide and re-draw from them without running the
model again. "Calibrate" sets the image threshold from labelled images (uploaded, or a folder): the 0.99 quantile of
normal images' scores (``calibrate_threshold``), or the best-F1 threshold when anomalous images are given too
(``threshold_from_f1``). "Normal references" (few-shot): known-normal images of the part; when given, the scores
and maps fuse FAPrompt's with each patch's distance from the nearest reference patch (``model.set_normal_references``,
computed once per upload). Downloads: each image's anomaly map (PNG and ``.npy``) and a CSV of the batch's scores.

Without ``--model`` the app uses a small FAPrompt on a seeded random tiny CLIP, trained for a few seconds on the
package's synthetic parts and cached (``--cache_dir``), so it runs offline; its built-in examples are synthetic parts
from :mod:`faprompt_hf.data.synthetic`. Its numbers show the app working, not how good FAPrompt is.

Usage::

    pip install "faprompt-hf[demo]"
    python examples/app.py                                   # offline tiny model, http://127.0.0.1:7860
    python examples/app.py --model path/or/hub-id --server_name 0.0.0.0 --server_port 8080
    python examples/app.py --model your-name/faprompt-mvtec --share

As a hub Space's ``app.py``: see docs/inference.md ("The demo app").
"""

from __future__ import annotations

import sys

if __name__ == "__main__" and {"-h", "--help"} & set(sys.argv[1:]):
    try:
        import faprompt_hf_cli  # --help from the flag definitions, before gradio and torch are imported (seconds)
    except ImportError:  # an older installation without the launcher: the parser below answers
        pass
    else:
        faprompt_hf_cli.main(["app", "--help"])

import argparse
import contextlib
import csv
import hashlib
import logging
import math
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

import faprompt_hf  # noqa: F401  (registers the "anomaly-detection" task)
from faprompt_hf import FAPromptImageProcessor, FAPromptModel, FAPromptProcessor, pipeline
from faprompt_hf.cli_flags import APP_CACHE_ENV, APP_LIMIT_DEFAULTS, APP_MODEL_ENV, parse_app_args
from faprompt_hf.data.synthetic import generate_sample, make_synthetic_dataset
from faprompt_hf.file_utils import atomic_write, staged_directory
from faprompt_hf.image_utils import load_image, to_rgb_image
from faprompt_hf.pipeline_faprompt import (
    DEFAULT_PIXEL_THRESHOLD,
    DEFAULT_THRESHOLD,
    FAPromptAnomalyDetectionPipeline,
    calibrate_threshold,
    threshold_from_f1,
)
from faprompt_hf.tiny import tiny_clip_config, tiny_clip_tokenizer, tiny_faprompt_config
from faprompt_hf.training import FAPromptTrainingArguments, train
from faprompt_hf.visualization import overlay_heatmap

logger = logging.getLogger("faprompt_hf.app")

MODEL_ENV = APP_MODEL_ENV
"""Environment variable read when ``--model`` is not given (handy in a hub Space's settings)."""

CACHE_ENV = APP_CACHE_ENV
"""Environment variable read when ``--cache_dir`` is not given."""

# The offline default model: a tiny random CLIP, FAPrompt trained on these synthetic domains for DEMO_STEPS steps.
DEMO_TRAIN_DOMAINS = ("gradient", "stripes", "checker", "nut", "plate")
DEMO_IMAGE_SIZE = 112
DEMO_STEPS = 40
DEMO_SEED = 0
# Built-in examples: (domain, defect type or None for a normal part), synthetic parts the model never trained on.
EXAMPLES = (("capsule", "crack"), ("capsule", None), ("rings", "stain"), ("nut", "scratch"), ("blobs", "hole"))
EXAMPLE_SIZE = 256
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
NORMAL_FOLDER_NAMES = ("good", "normal", "ok")
SKIPPED_FOLDER_NAMES = ("ground_truth",)
PREVIEW_SIDE = 768  # overlays and masks are drawn at most this large; the downloads keep the full size
RESULT_HEADERS = ["file", "score", "anomalous", "threshold", "anomalous pixels (%)", "pixel threshold"]

REFERENCE_CLASS = "uploaded references"
"""The bank class the page's normal references are stored under while they are used."""

REFERENCE_CACHE_SIZE = 4
"""Reference uploads whose features the app keeps (the last ones used), so that the same upload is not recomputed."""

OPTIONAL_INPUT_IDS = ("references",)
"""Inputs an API call may leave out at the end (the handler's default applies): the normal references."""

CONTROL_NAMES = {
    "threshold": "The image threshold",
    "pixel_threshold": "The pixel threshold",
    "opacity": "The overlay opacity",
    "quantile": "The calibration quantile",
}
"""How the page names each control in its error messages."""


class DemoBlocks(gr.Blocks):
    """The page's Blocks, with the app's own error for an API call that sends fewer inputs than the event takes."""

    def validate_inputs(self, block_fn: Any, inputs: list[Any]) -> None:
        """Refuse a call with missing inputs, naming them (Gradio's own error is hidden from API clients)."""
        expected = list(block_fn.inputs)
        left_out = expected[len(inputs) :]
        if left_out and all(getattr(block, "elem_id", None) in OPTIONAL_INPUT_IDS for block in left_out):
            inputs.extend([None] * len(left_out))  # (an API client of the time before the references upload)
        if len(inputs) < len(expected):
            missing = [getattr(block, "label", None) or type(block).__name__ for block in expected[len(inputs) :]]
            raise gr.Error(
                f"The call sent {len(inputs)} input value(s) but '{block_fn.name}' takes {len(expected)}: missing "
                f"{', '.join(repr(name) for name in missing)}. Send every input, in the order the API page lists.",
                title="Missing input",
            )
        super().validate_inputs(block_fn, inputs)


def control_slider(*args: Any, **kwargs: Any) -> gr.Slider:
    """A ``gr.Slider`` whose value reaches the handler as sent, so that :func:`checked_control` explains a bad one.

    Gradio's own slider refuses a string or an out-of-range value from an API client before the handler runs, with
    its generic "has not enabled verbose error reporting" message. (The instance's ``preprocess`` is replaced rather
    than subclassing ``gr.Slider``: Gradio writes a ``.pyi`` file beside every module that defines a component class.)

    Args:
        *args: ``gr.Slider``'s arguments.
        **kwargs: ``gr.Slider``'s keyword arguments.

    Returns:
        The slider.
    """
    slider = gr.Slider(*args, **kwargs)
    slider.preprocess = lambda payload: payload
    return slider


def checked_control(value: Any, name: str, low: float = 0.0, high: float = 1.0, low_open: bool = False) -> float:
    """A slider's or number box's value as the app's API receives it, checked: a finite number in its range.

    The page's sliders always send one; API clients (``gradio_client``, raw HTTP) may send anything, and a bad value
    would otherwise end in Gradio's generic error or a NaN threshold in the table and ``scores.csv``.

    Args:
        value: The value received.
        name: The control (a key of :data:`CONTROL_NAMES`).
        low: The smallest value allowed.
        high: The largest value allowed.
        low_open: Whether ``low`` itself is excluded.

    Returns:
        The value as a float.

    Raises:
        gr.Error: Names the control, the value received and what to send.
    """
    label = CONTROL_NAMES.get(name, name)
    interval = f"{'(' if low_open else '['}{low:g}, {high:g}]"
    if value is None:
        raise gr.Error(f"{label} ({name}) is missing: send a number in {interval}.", title="Missing input")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise gr.Error(
            f"{label} ({name}) must be a number in {interval}, got {value!r} ({type(value).__name__}): send a number, "
            "not a string or a list (e.g. 0.5).",
            title="Invalid input",
        )
    number = float(value)
    if not math.isfinite(number) or number < low or number > high or (low_open and number == low):
        raise gr.Error(f"{label} ({name}) must be a finite number in {interval}, got {value!r}.", title="Invalid input")
    return number


@dataclass(frozen=True)
class Limits:
    """What the app accepts, so that one upload cannot exhaust the server."""

    max_file_mb: float = APP_LIMIT_DEFAULTS["max_file_mb"]
    max_megapixels: float = APP_LIMIT_DEFAULTS["max_megapixels"]
    max_images: int = APP_LIMIT_DEFAULTS["max_images"]
    max_calibration_images: int = APP_LIMIT_DEFAULTS["max_calibration_images"]
    max_reference_images: int = APP_LIMIT_DEFAULTS["max_reference_images"]


@dataclass
class Detection:
    """One scored image: what the model said, kept so that thresholds and opacity change without re-running it.

    Attributes:
        name: The file name shown in the page and the CSV.
        score: The image anomaly score.
        preview: The RGB image, at most ``PREVIEW_SIDE`` pixels on its longer side.
        preview_map: The anomaly map at the preview's size, float32 (h, w).
        anomaly_map: The anomaly map at the image's full size, float32 (H, W) (as the pipeline returns it).
        exports: The written anomaly-map files (PNG, ``.npy``).
    """

    name: str
    score: float
    preview: Image.Image
    preview_map: np.ndarray
    anomaly_map: np.ndarray
    exports: list[str] = field(default_factory=list)


class RejectedImage(ValueError):
    """An input file the app will not score; the message names the file and says what to do."""


# ----------------------------------------------------------------------------------------------------------------------
# The offline default model and the built-in examples
# ----------------------------------------------------------------------------------------------------------------------


def default_cache_dir() -> Path:
    """``$FAPROMPT_APP_CACHE``, else ``~/.cache/faprompt-hf/app`` (``$XDG_CACHE_HOME`` honoured)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")).expanduser() / "faprompt-hf" / "app"


def build_demo_model(
    cache_dir: str | os.PathLike, steps: int = DEMO_STEPS, image_size: int = DEMO_IMAGE_SIZE, seed: int = DEMO_SEED
) -> Path:
    """Train (once) the offline demo model and return its folder; later calls load the cached folder.

    A seeded tiny random CLIP (``faprompt_hf.tiny``) gets FAPrompt's prompts trained for ``steps`` steps on synthetic
    parts of :data:`DEMO_TRAIN_DOMAINS`, then its image threshold set to the best-F1 threshold on a few fresh
    synthetic images. The folder is written whole or not at all (``staged_directory``), and its name holds the
    recipe, so a changed recipe trains a new model.

    Args:
        cache_dir: Folder holding cached demo models.
        steps: Optimizer steps (batch 8).
        image_size: Input side of the model (a multiple of the tiny CLIP's patch size, 8).
        seed: Seed of the backbone, the data and training.

    Returns:
        The model folder (``config.json``, ``model.safetensors``, the processor files).
    """
    folder = Path(cache_dir) / f"demo-model-s{image_size}-n{steps}-seed{seed}"
    if (folder / "model.safetensors").is_file() and (folder / "config.json").is_file():
        return folder
    logger.warning("Training the offline demo model once (under a minute on a CPU); it is cached in %s.", folder)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the tiny model's operations are too small to gain from more threads
    try:
        torch.manual_seed(seed)
        tokenizer = tiny_clip_tokenizer()
        clip_config = tiny_clip_config(
            tokenizer, hidden_size=64, image_size=image_size, patch_size=8, projection_dim=64
        )
        model = FAPromptModel(tiny_faprompt_config(tokenizer, clip_config, image_size=image_size))
        processor = FAPromptProcessor(FAPromptImageProcessor(size=image_size), tokenizer)
        data = make_synthetic_dataset(
            DEMO_TRAIN_DOMAINS, 8, 8, image_size=max(64, image_size), seed=seed, split="train"
        )
        with staged_directory(folder) as staging:
            arguments = FAPromptTrainingArguments(
                output_dir=str(staging),
                max_steps=steps,
                image_size=image_size,
                seed=seed,
                report_to="none",
                logging_steps=max(1, steps // 4),
            )
            model = train(
                model,
                data,
                processor,
                arguments,
                base_model="tiny-random (faprompt_hf.tiny)",
                dataset_name="synthetic parts (faprompt_hf.data.synthetic)",
            )
            validation = make_synthetic_dataset(
                DEMO_TRAIN_DOMAINS, 4, 4, image_size=max(64, image_size), seed=seed, split="validation"
            )
            detector = FAPromptAnomalyDetectionPipeline(model=model, image_processor=processor.image_processor)
            scores = [
                result["score"] for result in detector(list(validation["image"]), return_overlay=False, threshold=0.5)
            ]
            threshold_from_f1(scores, validation["label"], model)
            model.save_pretrained(staging)  # the config now carries anomaly_threshold
    finally:
        torch.set_num_threads(threads)
    return folder


def write_examples(cache_dir: str | os.PathLike, size: int = EXAMPLE_SIZE) -> list[Path]:
    """Write the built-in example images (synthetic parts, see :data:`EXAMPLES`) once and return their paths."""
    folder = Path(cache_dir) / f"examples-{size}"
    paths = []
    for index, (domain, defect_type) in enumerate(EXAMPLES):
        path = folder / f"{domain}_{defect_type or 'good'}.png"
        if not path.is_file():
            image, _ = generate_sample(domain, defect_type, image_size=size, seed=100 + index)
            with atomic_write(path, "wb") as handle:
                Image.fromarray(image).save(handle, format="PNG")
        paths.append(path)
    return paths


# ----------------------------------------------------------------------------------------------------------------------
# Model loading and input checks
# ----------------------------------------------------------------------------------------------------------------------


def load_detector(model: str | os.PathLike, device: str | int | None = None) -> FAPromptAnomalyDetectionPipeline:
    """``faprompt_hf.pipeline("anomaly-detection", model=model)``, or a :class:`RuntimeError` with reason and fix.

    (``faprompt_hf.pipeline``: a missing local folder is named as such, with close names, not as a bad hub id.)

    Args:
        model: A folder written by ``save_pretrained`` or a hub model id.
        device: Passed to the pipeline (``"cpu"``, ``"cuda"``, ``0``, ...; default: transformers' choice).

    Returns:
        The pipeline.
    """
    try:
        return pipeline("anomaly-detection", model=os.fspath(model), device=device)
    except Exception as error:  # any loading failure becomes one message in the page, not a traceback
        reason = " ".join(str(error).split())[:500] or type(error).__name__
        raise RuntimeError(
            f"Cannot load the model {os.fspath(model)!r}: {reason} Give --model a folder written by save_pretrained "
            "(config.json, model.safetensors) or a hub model id of a FAPrompt model (the hub needs network access)."
        ) from error


def read_image(path: str | os.PathLike, limits: Limits) -> Image.Image:
    """Decode one image file into RGB after checking its size on disk and its pixel count (from the header).

    Args:
        path: The file.
        limits: The app's limits.

    Returns:
        The RGB image.

    Raises:
        RejectedImage: The file is too large, has too many pixels, or is not a decodable image (named in the message).
    """
    name = Path(path).name
    size_mb = os.path.getsize(path) / 2**20
    if size_mb > limits.max_file_mb:
        raise RejectedImage(
            f"{name} is {size_mb:.1f} MB; this app accepts files up to {limits.max_file_mb:g} MB. Resize or "
            "re-compress it (or start the app with a larger --max_file_mb)."
        )
    try:
        with Image.open(path) as header:
            width, height = header.size
    except Image.DecompressionBombError as error:
        raise RejectedImage(f"{name} has more pixels than Pillow will decode ({error}). Downscale it.") from error
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise RejectedImage(
            f"{name} is not an image that can be decoded: upload a PNG, JPEG, BMP, TIFF or WebP file."
        ) from error
    if width * height > limits.max_megapixels * 1e6:
        raise RejectedImage(
            f"{name} is {width} x {height} pixels ({width * height / 1e6:.1f} megapixels); this app accepts up to "
            f"{limits.max_megapixels:g} megapixels. Downscale it (or start the app with a larger --max_megapixels)."
        )
    try:
        return to_rgb_image(load_image(path), source=name)
    except (ValueError, OSError, Image.DecompressionBombError) as error:
        raise RejectedImage(f"{name} cannot be decoded: {error}") from error


def _read_all(paths: Sequence[str], limits: Limits) -> tuple[list[tuple[str, Image.Image]], list[str]]:
    """Decode the files that pass the checks; return ``(name, image)`` pairs and the messages of the others."""
    images, problems = [], []
    for path in paths:
        try:
            images.append((Path(path).name, read_image(path, limits)))
        except RejectedImage as error:
            problems.append(str(error))
    return images, problems


# ----------------------------------------------------------------------------------------------------------------------
# Decisions, drawings and exports from the kept scores and maps (no model)
# ----------------------------------------------------------------------------------------------------------------------


def _preview(image: Image.Image, anomaly_map: np.ndarray) -> tuple[Image.Image, np.ndarray]:
    """The image and its map shrunk to at most ``PREVIEW_SIDE`` pixels on the longer side (as they are if smaller)."""
    scale = PREVIEW_SIDE / max(image.size)
    if scale >= 1:
        return image, anomaly_map
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    small_map = np.asarray(Image.fromarray(anomaly_map).resize(size, Image.Resampling.BILINEAR), dtype=np.float32)
    return image.resize(size, Image.Resampling.BILINEAR), small_map


def _safe_stem(name: str) -> str:
    """A file-name stem with only letters, digits, ``.``, ``_`` and ``-``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).stem) or "image"


def _new_output_folder(root: Path, keep_seconds: float = 3600.0) -> Path:
    """A fresh folder under ``root`` for one request's downloads; folders older than ``keep_seconds`` are removed."""
    root.mkdir(parents=True, exist_ok=True)
    now = time.time()
    for old in root.iterdir():
        try:
            if old.is_dir() and now - old.stat().st_mtime > keep_seconds:
                shutil.rmtree(old, ignore_errors=True)
        except OSError:
            continue  # removed meanwhile by another request
    folder = root / uuid.uuid4().hex
    folder.mkdir()
    return folder


def export_anomaly_map(anomaly_map: np.ndarray, folder: Path, stem: str) -> list[str]:
    """Write a map as ``<stem>_anomaly_map.npy`` (float32, exact) and ``<stem>_anomaly_map.png`` (8-bit grey).

    The PNG's grey level is ``round(255 * clip(map, 0, 1))``: grey level / 255 is the map value, so the pixel
    threshold compares with it directly (no per-image rescaling).

    Returns:
        The two paths (PNG first).
    """
    png, npy = folder / f"{stem}_anomaly_map.png", folder / f"{stem}_anomaly_map.npy"
    with atomic_write(npy, "wb") as handle:
        np.save(handle, anomaly_map.astype(np.float32, copy=False))
    grey = np.round(np.clip(anomaly_map, 0.0, 1.0) * 255.0).astype(np.uint8)
    with atomic_write(png, "wb") as handle:
        Image.fromarray(grey).save(handle, format="PNG")
    return [str(png), str(npy)]


def result_rows(detections: Sequence[Detection], threshold: float, pixel_threshold: float) -> list[list[Any]]:
    """One table / CSV row per image: file, score, "yes"/"no", threshold, anomalous pixel share (%), pixel threshold."""
    return [
        [
            detection.name,
            round(detection.score, 6),
            "yes" if detection.score >= threshold else "no",
            round(threshold, 6),
            round(100.0 * float((detection.anomaly_map >= pixel_threshold).mean()), 3),
            round(pixel_threshold, 6),
        ]
        for detection in detections
    ]


def write_scores_csv(rows: Sequence[Sequence[Any]], path: Path) -> str:
    """Write the result rows (with :data:`RESULT_HEADERS`) as a CSV file and return its path."""
    with atomic_write(path, "w") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(RESULT_HEADERS)
        writer.writerows(rows)
    return str(path)


# ----------------------------------------------------------------------------------------------------------------------
# Normal references (few-shot)
# ----------------------------------------------------------------------------------------------------------------------
#
# The page's normal references become the model's normal-reference bank while the page's images are scored: their
# features are computed once per upload (model.encode_normal_references) and swapped in under the model lock, so
# that visitors with different uploads never recompute each other's (the pipeline's references= keeps one set per
# class).

ReferenceBank = dict[str, tuple[int, torch.Tensor]]
"""A model's normal-reference bank: ``{class: (image count, patch features (N, D))}``, in bank order."""


def upload_key(paths: Sequence[str]) -> str:
    """A key of an upload's contents (SHA-256 of each file's bytes, in order): the same images give the same key."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(hashlib.sha256(Path(path).read_bytes()).digest())
    return digest.hexdigest()


@contextlib.contextmanager
def swapped_reference_bank(model: FAPromptModel, bank: ReferenceBank) -> Iterator[None]:
    """Give ``model`` the normal-reference bank ``bank`` inside the block, then its own again (even on an error)."""
    own = model._reference_banks()
    model._store_reference_banks(bank)
    try:
        yield
    finally:
        model._store_reference_banks(own)


def compute_reference_bank(detector: FAPromptAnomalyDetectionPipeline, images: Sequence[Image.Image]) -> ReferenceBank:
    """The normal-reference bank of ``images``: the processor's pixels through ``model.encode_normal_references``.

    Args:
        detector: The pipeline (its image processor and model).
        images: Normal RGB images of the part.

    Returns:
        ``{REFERENCE_CLASS: (len(images), patch features (N, D))}``; the model's own bank is not touched.
    """
    model = detector.model
    pixel_values = detector.image_processor(images=list(images), return_tensors="pt")["pixel_values"]
    rows = model.encode_normal_references(pixel_values.to(model.device, model.dtype), batch_size=8)
    return {REFERENCE_CLASS: (len(images), rows)}


class ReferenceBanks:
    """The reference banks of the last uploads, by :func:`upload_key`: an upload's features are computed once."""

    def __init__(self, size: int = REFERENCE_CACHE_SIZE) -> None:
        self.size = size
        self._banks: OrderedDict[str, ReferenceBank] = OrderedDict()
        self.computed = 0  # how many banks were computed (for tests and logs)

    def bank(
        self, key: str, detector: FAPromptAnomalyDetectionPipeline, images: Sequence[Image.Image]
    ) -> ReferenceBank:
        """The bank of the upload ``key`` (of ``images``), computed when it is not kept. Call under the model lock."""
        if key in self._banks:
            self._banks.move_to_end(key)
            return self._banks[key]
        bank = compute_reference_bank(detector, images)
        self.computed += 1
        self._banks[key] = bank
        while len(self._banks) > self.size:
            self._banks.popitem(last=False)
        return bank


# ----------------------------------------------------------------------------------------------------------------------
# The app
# ----------------------------------------------------------------------------------------------------------------------


class DemoApp:
    """The app's state shared by all visitors (the pipeline, limits, the download folder) and its event handlers.

    Per-visitor state (the scored images) lives in a ``gr.State`` and is passed to the handlers.

    Args:
        detector: The pipeline, or None when the model could not be loaded (then ``load_error`` says why).
        model_name: What ``--model`` named (shown in the page).
        examples: Built-in example images.
        limits: What the app accepts.
        output_root: Where the downloads are written (default: a folder in the system's temporary directory).
        folder_calibration: Offer calibration from a folder on the server (turn it off for a public Space).
        load_error: The message shown when ``detector`` is None.
    """

    def __init__(
        self,
        detector: FAPromptAnomalyDetectionPipeline | None,
        model_name: str,
        examples: Sequence[str | os.PathLike] = (),
        limits: Limits | None = None,
        output_root: str | os.PathLike | None = None,
        folder_calibration: bool = True,
        load_error: str | None = None,
    ) -> None:
        if detector is None and not load_error:
            raise ValueError("DemoApp needs a detector, or the load_error that says why there is none.")
        self.detector = detector
        self.model_name = model_name
        self.examples = [os.fspath(path) for path in examples]
        self.limits = limits or Limits()
        self.output_root = Path(output_root or Path(tempfile.gettempdir()) / "faprompt-app")
        self.folder_calibration = folder_calibration
        self.load_error = load_error
        self._model_lock = threading.Lock()  # one forward pass at a time: the model is shared by all visitors
        self.reference_banks = ReferenceBanks()

    # -- thresholds -------------------------------------------------------------------------------------------------

    def initial_threshold(self) -> tuple[float, str]:
        """The image threshold the page starts with, and where it comes from."""
        configured = None if self.detector is None else getattr(self.detector.model.config, "anomaly_threshold", None)
        if configured is not None:
            return round(float(configured), 6), "the model's calibrated threshold (config.anomaly_threshold)"
        return DEFAULT_THRESHOLD, f"the uncalibrated default {DEFAULT_THRESHOLD}: calibrate it below"

    def _require_detector(self) -> FAPromptAnomalyDetectionPipeline:
        if self.detector is None:
            raise gr.Error(self.load_error, title="The model could not be loaded")
        return self.detector

    @contextlib.contextmanager
    def _model_with(self, references: tuple[str, Sequence[Image.Image]] | None) -> Iterator[dict[str, Any]]:
        """Hold the model lock, with the uploaded normal references as the model's bank (None: the model as loaded).

        Yields:
            The pipeline's call options: ``class_name`` when the model's own bank holds several classes and no upload
            is given (its first class is used, with a warning: the page has no class selector).
        """
        detector = self._require_detector()
        with self._model_lock, contextlib.ExitStack() as stack:
            options: dict[str, Any] = {}
            if references is not None:
                bank = self.reference_banks.bank(references[0], detector, references[1])
                stack.enter_context(swapped_reference_bank(detector.model, bank))
            elif len(detector.model.normal_reference_classes) > 1:
                options["class_name"] = detector.model.normal_reference_classes[0]
                gr.Warning(
                    f"The model holds normal references of {detector.model.normal_reference_classes}; this page uses "
                    f"{options['class_name']!r}. Upload normal references of your part to use those instead."
                )
            yield options

    def _score(
        self, images: Sequence[Image.Image], references: tuple[str, Sequence[Image.Image]] | None = None
    ) -> list[dict[str, Any]]:
        """Run the pipeline once on the images (maps at their full size, no overlays).

        Args:
            images: The images to score.
            references: ``(upload key, normal images)``: score with these normal references (their bank is computed
                once per key); None: the model as loaded.
        """
        detector = self._require_detector()
        try:
            with self._model_with(references) as options:
                results = detector(
                    list(images), batch_size=8, return_overlay=False, threshold=DEFAULT_THRESHOLD, **options
                )  # the page decides the threshold; this only silences a warning
        except (ValueError, RuntimeError) as error:
            raise gr.Error(f"Detection failed: {error}") from error
        return results if isinstance(results, list) else [results]

    def _read_references(self, reference_files: Sequence[str] | None) -> tuple[str, list[Image.Image]] | None:
        """The uploaded normal references as ``(upload key, images)``, or None when there are none."""
        if reference_files is not None and (
            not isinstance(reference_files, (list, tuple))
            or not all(isinstance(path, (str, os.PathLike)) for path in reference_files)
        ):
            raise gr.Error(
                f"references must be a list of uploaded files, got {reference_files!r}.", title="Invalid input"
            )
        paths = [os.fspath(path) for path in (reference_files or [])]
        if not paths:
            return None
        if len(paths) > self.limits.max_reference_images:
            raise gr.Error(
                f"{len(paths)} normal references given; this app takes at most {self.limits.max_reference_images}. "
                "A handful (4 to 16) of normal images of the part is enough."
            )
        references, problems = _read_all(paths, self.limits)
        for problem in problems:
            gr.Warning(problem, title="Normal reference skipped")
        if not references:
            raise gr.Error("No normal reference could be read:\n" + "\n".join(problems))
        return upload_key(paths), [image for _, image in references]

    # -- event handlers ---------------------------------------------------------------------------------------------

    def detect(
        self,
        files: Sequence[str] | None,
        threshold: float,
        pixel_threshold: float,
        opacity: float,
        references: Sequence[str] | None = None,
    ) -> tuple[Any, ...]:
        """Score uploaded images and show the results; the scores and maps go into the visitor's state.

        With ``references`` (normal images of the part), the scores and maps are the fused few-shot ones.
        """
        threshold = checked_control(threshold, "threshold")
        pixel_threshold = checked_control(pixel_threshold, "pixel_threshold")
        opacity = checked_control(opacity, "opacity")
        if files is not None and (
            not isinstance(files, (list, tuple)) or not all(isinstance(path, (str, os.PathLike)) for path in files)
        ):
            raise gr.Error(f"files must be a list of uploaded files, got {files!r}.", title="Invalid input")
        paths = [os.fspath(path) for path in (files or [])]
        if not paths:
            return ([], *self.render([], threshold, pixel_threshold, opacity))
        if len(paths) > self.limits.max_images:
            raise gr.Error(
                f"{len(paths)} images given; this app scores at most {self.limits.max_images} at a time "
                "(--max_images). Upload them in smaller batches."
            )
        self._require_detector()
        reference_upload = self._read_references(references)
        images, problems = _read_all(paths, self.limits)
        if not images:
            raise gr.Error("\n".join(problems), title="No image could be read")
        for problem in problems:
            gr.Warning(problem, title="Image skipped")
        folder = _new_output_folder(self.output_root)
        detections = []
        used_stems: set[str] = set()
        results = self._score([image for _, image in images], reference_upload)
        for (name, image), result in zip(images, results, strict=True):
            stem, copy = _safe_stem(name), 1
            while stem in used_stems:  # two uploads with the same name keep separate downloads
                stem, copy = f"{_safe_stem(name)}_{copy}", copy + 1
            used_stems.add(stem)
            preview, preview_map = _preview(image, result["anomaly_map"])
            detections.append(
                Detection(
                    name=name,
                    score=result["score"],
                    preview=preview,
                    preview_map=preview_map,
                    anomaly_map=result["anomaly_map"],
                    exports=export_anomaly_map(result["anomaly_map"], folder, stem),
                )
            )
        overlays, masks, rows, downloads, summary = self.render(detections, threshold, pixel_threshold, opacity)
        if reference_upload is not None:
            summary += f" With {len(reference_upload[1])} normal reference image(s)."
        if problems:
            summary += "\n\n**Skipped:**\n" + "\n".join(f"- {problem}" for problem in problems)
        return detections, overlays, masks, rows, downloads, summary

    def render(
        self, detections: Sequence[Detection], threshold: float, pixel_threshold: float, opacity: float
    ) -> tuple[Any, ...]:
        """Decide, draw and export from kept scores and maps: thresholds and opacity change without the model."""
        threshold = checked_control(threshold, "threshold")
        pixel_threshold = checked_control(pixel_threshold, "pixel_threshold")
        opacity = checked_control(opacity, "opacity")
        if not detections:
            return [], [], [], [], ""
        overlays, masks = [], []
        for detection in detections:
            verdict = "ANOMALOUS" if detection.score >= threshold else "normal"
            relation = ">=" if detection.score >= threshold else "<"
            caption = f"{detection.name}: {detection.score:.3f} {relation} {threshold:.3f}, {verdict}"
            overlays.append((overlay_heatmap(detection.preview, detection.preview_map, alpha=opacity), caption))
            mask = Image.fromarray((detection.preview_map >= pixel_threshold).astype(np.uint8) * 255)
            masks.append((mask, f"{detection.name}: map >= {pixel_threshold:.3f}"))
        rows = result_rows(detections, threshold, pixel_threshold)
        csv_path = write_scores_csv(rows, _new_output_folder(self.output_root) / "scores.csv")
        exports = [path for detection in detections for path in detection.exports if os.path.isfile(path)]
        downloads = [csv_path, *exports]  # exports older than an hour were pruned with their folder
        flagged = sum(row[2] == "yes" for row in rows)
        summary = (
            f"**{flagged} of {len(rows)} image(s) anomalous** at image threshold {threshold:.3f} "
            f"(pixel threshold {pixel_threshold:.3f})."
        )
        return overlays, masks, rows, downloads, summary

    def calibrate(
        self,
        folder: str | None,
        normal_files: Sequence[str] | None,
        anomalous_files: Sequence[str] | None,
        quantile: float,
        references: Sequence[str] | None = None,
    ) -> tuple[float, str]:
        """Set the image threshold from labelled images: a normal-score quantile, or the best F1 with anomalies.

        With ``references`` (the page's normal references) the calibration scores are the fused few-shot ones, the
        scores ``detect`` then thresholds.
        """
        quantile = checked_control(quantile, "quantile", low_open=True)
        detector = self._require_detector()
        reference_upload = self._read_references(references)
        normal_paths = [os.fspath(path) for path in (normal_files or [])]
        anomalous_paths = [os.fspath(path) for path in (anomalous_files or [])]
        if folder and folder.strip():
            if not self.folder_calibration:
                raise gr.Error("Calibration from a folder on the server is turned off in this app; upload images.")
            folder_normal, folder_anomalous = labelled_images_in_folder(folder.strip())
            normal_paths += folder_normal
            anomalous_paths += folder_anomalous
        if not normal_paths:
            raise gr.Error(
                "Calibration needs known-normal images: upload some under 'Normal images', or give a folder with a "
                f"{'/, '.join(NORMAL_FOLDER_NAMES)}/ subfolder (e.g. an MVTec AD class's test/ folder)."
            )
        total = len(normal_paths) + len(anomalous_paths)
        if total > self.limits.max_calibration_images:
            raise gr.Error(
                f"{total} calibration images; this app takes at most {self.limits.max_calibration_images} "
                "(--max_calibration_images). Use a smaller folder."
            )
        normal, normal_problems = _read_all(normal_paths, self.limits)
        anomalous, anomalous_problems = _read_all(anomalous_paths, self.limits)
        for problem in normal_problems + anomalous_problems:
            gr.Warning(problem, title="Calibration image skipped")
        if not normal:
            raise gr.Error("No normal calibration image could be read:\n" + "\n".join(normal_problems))
        if not anomalous:
            with self._model_with(reference_upload) as options:
                threshold = calibrate_threshold(
                    detector,
                    [image for _, image in normal],
                    quantile=float(quantile),
                    store=False,
                    normal_reference_class=options.get("class_name"),
                )
            how = f"the {float(quantile):g} quantile of {len(normal)} normal images' scores"
            scores, labels = None, None
        else:
            results = self._score([image for _, image in normal + anomalous], reference_upload)
            scores = np.array([result["score"] for result in results])
            labels = np.array([0] * len(normal) + [1] * len(anomalous))
            threshold = threshold_from_f1(scores, labels)
            how = f"the best-F1 threshold on {len(normal)} normal and {len(anomalous)} anomalous images"
        if reference_upload is not None:
            how += f", with {len(reference_upload[1])} normal reference image(s)"
        message = f"Image threshold set to **{threshold:.4f}**: {how}."
        if scores is not None:
            flagged = scores >= threshold
            message += (
                f" At this threshold {int((~flagged[labels == 0]).sum())}/{len(normal)} normal and "
                f"{int(flagged[labels == 1].sum())}/{len(anomalous)} anomalous images are classified right."
            )
        skipped = len(normal_problems) + len(anomalous_problems)
        if skipped:
            message += f" {skipped} file(s) skipped (see the warnings)."
        return threshold, message

    # -- layout -----------------------------------------------------------------------------------------------------

    def build(self) -> gr.Blocks:
        """The page: inputs and controls on the left, results on the right."""
        threshold, source = self.initial_threshold()
        with DemoBlocks(title="FAPrompt anomaly detection", analytics_enabled=False) as demo:
            gr.Markdown(
                "# FAPrompt anomaly detection\n"
                f"Model: `{self.model_name}`. Drop part images (or pick an example): each gets an anomaly score, a "
                "verdict, a heatmap and a mask. Sliders re-decide without re-running the model."
            )
            if self.load_error:
                gr.Markdown(f"### The model could not be loaded\n{self.load_error}", elem_id="load-error")
            detections = gr.State([])
            with gr.Row():
                with gr.Column(scale=2):
                    files = gr.File(
                        label="Images (one or several)", file_count="multiple", file_types=["image"], elem_id="images"
                    )
                    detect_button = gr.Button("Detect", variant="primary")
                    if self.examples:
                        gr.Examples(
                            examples=[[[path]] for path in self.examples] + [[self.examples]],
                            example_labels=[Path(path).stem.replace("_", ": ") for path in self.examples]
                            + ["all examples"],
                            inputs=[files],
                            label="Examples (synthetic parts)",
                        )
                    image_threshold = control_slider(
                        0.0,
                        1.0,
                        value=threshold,
                        step=0.001,
                        label="Image threshold",
                        info=f"Anomalous when score >= threshold. Starts at {source}.",
                        elem_id="image-threshold",
                    )
                    pixel_threshold = control_slider(
                        0.0,
                        1.0,
                        value=DEFAULT_PIXEL_THRESHOLD,
                        step=0.001,
                        label="Pixel threshold",
                        info="Mask: anomaly map >= threshold.",
                    )
                    opacity = control_slider(0.0, 1.0, value=0.5, step=0.05, label="Overlay opacity")
                    with gr.Accordion("Normal references (few-shot)", open=False):
                        gr.Markdown(
                            "A few known-normal images of the same part: scores and maps then also compare each "
                            "patch with its nearest normal patch. Clear them to go back to zero-shot."
                        )
                        reference_files = gr.File(
                            label="Normal references",
                            file_count="multiple",
                            file_types=["image"],
                            elem_id="references",
                        )
                    with gr.Accordion("Calibrate the image threshold", open=False):
                        gr.Markdown(
                            "Normal images only: the threshold becomes a quantile of their scores. With anomalous "
                            "images too: the threshold with the best F1."
                        )
                        normal_files = gr.File(label="Normal images", file_count="multiple", file_types=["image"])
                        anomalous_files = gr.File(
                            label="Anomalous images (optional)", file_count="multiple", file_types=["image"]
                        )
                        folder = gr.Textbox(
                            label="Or a folder on the server",
                            visible=self.folder_calibration,
                            placeholder="e.g. mvtec/bottle/test: good/ is normal, other subfolders anomalous",
                        )
                        quantile = control_slider(0.5, 1.0, value=0.99, step=0.005, label="Quantile of normal scores")
                        calibrate_button = gr.Button("Calibrate")
                        calibration_message = gr.Markdown()
                with gr.Column(scale=3):
                    summary = gr.Markdown(elem_id="summary")
                    with gr.Row():
                        overlays = gr.Gallery(
                            label="Anomaly maps over the images",
                            columns=2,
                            height=320,
                            fit_columns=False,
                            object_fit="contain",
                            format="png",
                            elem_id="overlays",
                        )
                        masks = gr.Gallery(
                            label="Masks (white: anomalous pixels)",
                            columns=2,
                            height=320,
                            fit_columns=False,
                            object_fit="contain",
                            format="png",
                        )
                    table = gr.Dataframe(headers=RESULT_HEADERS, label="Scores", interactive=False)
                    downloads = gr.File(
                        label="Downloads: scores.csv and each anomaly map (PNG, .npy)",
                        file_count="multiple",
                        interactive=False,
                    )

            controls = [image_threshold, pixel_threshold, opacity]
            shown = [overlays, masks, table, downloads, summary]
            detect_inputs = [files, *controls, reference_files]
            files.change(self.detect, inputs=detect_inputs, outputs=[detections, *shown], api_name="detect")
            reference_files.change(self.detect, inputs=detect_inputs, outputs=[detections, *shown], api_name=False)
            detect_button.click(self.detect, inputs=detect_inputs, outputs=[detections, *shown], api_name=False)
            for slider in controls:
                slider.change(
                    self.render,
                    inputs=[detections, *controls],
                    outputs=shown,
                    api_name="rethreshold" if slider is image_threshold else False,
                )
            calibrate_button.click(
                self.calibrate,
                inputs=[folder, normal_files, anomalous_files, quantile, reference_files],
                outputs=[image_threshold, calibration_message],
                api_name="calibrate",
            )
        return demo


def labelled_images_in_folder(folder: str | os.PathLike) -> tuple[list[str], list[str]]:
    """Normal and anomalous image files of a folder in MVTec AD's test layout.

    Images in a subfolder named ``good``, ``normal`` or ``ok``, or directly in ``folder``, are normal; images in any
    other subfolder (``scratch/``, ``crack/``, ...) are anomalous; ``ground_truth/`` (masks) is skipped. Only one
    level of subfolders is read.

    Raises:
        gr.Error: The folder does not exist or holds no image.
    """
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise gr.Error(f"Calibration folder {os.fspath(folder)!r} does not exist or is not a folder.")
    normal, anomalous = [], []
    for entry in sorted(root.iterdir()):
        if entry.is_file() and entry.suffix.lower() in IMAGE_SUFFIXES:
            normal.append(str(entry))
        elif entry.is_dir() and entry.name.lower() not in SKIPPED_FOLDER_NAMES:
            images = [str(path) for path in sorted(entry.iterdir()) if path.suffix.lower() in IMAGE_SUFFIXES]
            (normal if entry.name.lower() in NORMAL_FOLDER_NAMES else anomalous).extend(images)
    if not normal and not anomalous:
        raise gr.Error(f"Calibration folder {os.fspath(folder)!r} holds no image ({', '.join(IMAGE_SUFFIXES)}).")
    return normal, anomalous


# ----------------------------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The app's command line: the flags of ``faprompt_hf.cli_flags.add_app_arguments`` (as ``faprompt-hf app``)."""
    return parse_app_args(argv)


def main(argv: Sequence[str] | None = None, block: bool = True) -> gr.Blocks:
    """Start the app.

    Args:
        argv: Command-line arguments (default: ``sys.argv[1:]``).
        block: Serve until interrupted; ``False`` returns once the server runs (call ``demo.close()``).

    Returns:
        The running ``gr.Blocks``.
    """
    args = parse_args(argv)
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.WARNING)
    cache_dir = Path(args.cache_dir).expanduser() if args.cache_dir else default_cache_dir()
    model_name = args.model or os.fspath(build_demo_model(cache_dir))
    detector, load_error = None, None
    try:
        detector = load_detector(model_name, args.device)
    except RuntimeError as error:
        load_error = str(error)
        logger.error("%s", load_error)
    examples = write_examples(cache_dir)
    limits = Limits(
        args.max_file_mb, args.max_megapixels, args.max_images, args.max_calibration_images, args.max_reference_images
    )
    app = DemoApp(
        detector,
        model_name if args.model else f"offline demo model ({model_name})",
        examples,
        limits,
        folder_calibration=args.folder_calibration,
        load_error=load_error,
    )
    demo = app.build()
    demo.launch(
        server_name=args.server_name,
        server_port=args.server_port,
        share=args.share,
        prevent_thread_lock=not block,
        max_file_size=int(args.max_file_mb * 2**20),
        allowed_paths=[str(Path(examples[0]).parent)],
    )
    return demo


if __name__ == "__main__":
    main()

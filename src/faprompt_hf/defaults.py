# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""Constants that the command-line flags show as defaults and choices, importable without torch or transformers.

``faprompt-hf --help`` builds its parsers from :mod:`faprompt_hf.cli_flags`, which reads these; the library modules
that own each concept import them from here, so that the help and the code cannot disagree.
"""

from __future__ import annotations

__all__ = [
    "BASE_DATASET_FORMATS",
    "DATASET_FORMATS",
    "DEFAULT_AUPRO",
    "DEFAULT_CLIP",
    "DEFAULT_IMAGE_SIZE",
    "DEFAULT_ONNX_OPSET",
    "DEFAULT_REFERENCE_SPLIT",
    "MIX_STRATEGIES",
    "PAPER_DATASET_FORMATS",
    "SYNTHETIC_REFERENCE_SPLIT",
    "__version__",
]

__version__ = "0.1.0"

DEFAULT_CLIP = "openai/clip-vit-large-patch14-336"
"""The CLIP the paper uses (the same weights as OpenAI's ViT-L-14-336px.pt)."""

DEFAULT_IMAGE_SIZE = 518
"""Input side of the released code's evaluation, in pixels."""

DEFAULT_AUPRO = "original"
"""AUPRO definition of the released evaluation (200 thresholds, rescaled FPRs)."""

DEFAULT_ONNX_OPSET = 20
"""The ONNX opset ``faprompt-hf export`` writes unless ``--opset`` says otherwise."""

DEFAULT_REFERENCE_SPLIT = "train"
"""The split few-shot evaluation draws its normal reference images from (``--reference_split``)."""

SYNTHETIC_REFERENCE_SPLIT = "reference"
"""The synthetic data's reference split: a separate pool of normal images (another seed stream than ``test``)."""

MIX_STRATEGIES: tuple[str, ...] = ("proportional", "equal")
"""``proportional``: every image once (a source's share is its size); ``equal``: every source the same share."""

BASE_DATASET_FORMATS: tuple[str, ...] = ("mvtec", "visa", "meta_json", "folder", "hub", "synthetic")
"""The generic dataset formats."""

PAPER_DATASET_FORMATS: tuple[str, ...] = (
    "elpv",
    "sdd",
    "aitex",
    "btad",
    "dagm",
    "dtd",
    "mpdd",
    "brainmri",
    "headct",
    "lag",
    "br35h",
    "colondb",
    "clinicdb",
    "kvasir",
    "endo",
    "isic",
    "tn3k",
    "mvtec_ad2",
    "mvtec_loco",
)
"""Formats of the paper's other datasets (checked against :mod:`faprompt_hf.data.paper_datasets` by the tests)."""

DATASET_FORMATS: tuple[str, ...] = (*BASE_DATASET_FORMATS, *PAPER_DATASET_FORMATS)
"""Values of ``dataset_format`` understood by :func:`faprompt_hf.data.load_dataset_by_format`."""

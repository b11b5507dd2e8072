# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""One entry point that loads a dataset by format name, shared by training and evaluation (and their scripts).

``examples/train.py`` and ``examples/evaluate.py`` both take ``--dataset_format``, ``--dataset_path`` and ``--split``
and hand them to :func:`load_dataset_by_format`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from datasets import Dataset

from ..defaults import DATASET_FORMATS, PAPER_DATASET_FORMATS
from .hub import load_hub_dataset
from .loaders import load_folder, load_meta_json, load_mvtec_ad, load_visa
from .paper_datasets import EXTRA_DATASETS, PAPER_DATASETS, load_paper_dataset
from .synthetic import make_synthetic_dataset

__all__ = ["DATASET_FORMATS", "PAPER_DATASET_FORMATS", "load_dataset_by_format"]

if PAPER_DATASET_FORMATS != tuple(key for key in (*PAPER_DATASETS, *EXTRA_DATASETS) if key not in ("mvtec", "visa")):
    raise ImportError("faprompt_hf.defaults.PAPER_DATASET_FORMATS is out of date with data.paper_datasets.")


def load_dataset_by_format(
    dataset_format: str,
    dataset_path: str | os.PathLike | None = None,
    split: str = "test",
    classes: Sequence[str] | None = None,
    column_mapping: Mapping[str, str] | None = None,
    **loader_kwargs: Any,
) -> Dataset:
    """Load a dataset with the loader of ``dataset_format``.

    Args:
        dataset_format: One of :data:`DATASET_FORMATS`: ``"mvtec"`` (:func:`~faprompt_hf.data.load_mvtec_ad`),
            ``"visa"`` (:func:`~faprompt_hf.data.load_visa`), ``"meta_json"``
            (:func:`~faprompt_hf.data.load_meta_json`), ``"folder"`` (:func:`~faprompt_hf.data.load_folder`),
            ``"hub"`` (:func:`~faprompt_hf.data.load_hub_dataset`), ``"synthetic"``
            (:func:`~faprompt_hf.data.make_synthetic_dataset`, in memory; no path), or one of
            :data:`PAPER_DATASET_FORMATS` (``"btad"``, ``"headct"``, ...; the paper's datasets in their public layouts,
            :func:`~faprompt_hf.data.load_paper_dataset`).
        dataset_path: The dataset folder, or the Hub id / path for ``"hub"``; not used by ``"synthetic"``.
        split: The split to load (ignored by ``"folder"``, which has no splits; for ``"synthetic"`` it is mixed into
            the seed, so ``"train"`` and ``"test"`` draw different images).
        classes: Classes to keep (default: all); for ``"synthetic"``, the domains to generate.
        column_mapping: For ``"hub"`` only: our column name -> the dataset's column name.
        **loader_kwargs: Further arguments of the loader (e.g. ``split_csv`` for visa, ``meta_path`` or
            ``require_masks`` for meta_json/folder, ``allow_outside_root`` for visa/meta_json, ``n_normal``,
            ``n_anomalous``, ``image_size`` or ``seed`` for synthetic, ``revision`` or ``data_files`` for hub).

    Returns:
        A map-style dataset in :data:`~faprompt_hf.data.ANOMALY_FEATURES`.

    Raises:
        ValueError: Unknown format, a missing path, ``column_mapping`` with a format other than ``"hub"``, or
            classes absent from a hub dataset.
    """
    if dataset_format not in DATASET_FORMATS:
        raise ValueError(f"dataset_format must be one of {DATASET_FORMATS}, got {dataset_format!r}.")
    if column_mapping and dataset_format != "hub":
        raise ValueError("column_mapping only applies to dataset_format='hub'.")
    classes = list(classes) if classes else None
    if dataset_format == "synthetic":
        return make_synthetic_dataset(domains=classes, split=split, **loader_kwargs)
    if dataset_path is None:
        raise ValueError(f"dataset_format={dataset_format!r} needs a dataset_path.")
    if dataset_format == "hub":
        dataset = load_hub_dataset(dataset_path, split=split, column_mapping=column_mapping, **loader_kwargs)
        if classes is None:
            return dataset
        absent = sorted(set(classes) - set(dataset.unique("class_name")))
        if absent:
            raise ValueError(f"Classes {absent} are not in {os.fspath(dataset_path)!r}.")
        wanted = set(classes)
        return dataset.filter(lambda name: name in wanted, input_columns="class_name")
    if dataset_format == "folder":
        return load_folder(dataset_path, classes=classes, **loader_kwargs)
    if dataset_format in PAPER_DATASET_FORMATS:
        return load_paper_dataset(dataset_format, dataset_path, split=split, classes=classes, **loader_kwargs)
    loader = {"mvtec": load_mvtec_ad, "visa": load_visa, "meta_json": load_meta_json}[dataset_format]
    return loader(dataset_path, split=split, classes=classes, **loader_kwargs)

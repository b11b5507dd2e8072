# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""Datasets for FAPrompt: loaders into one schema, synthetic anomalies, and processor-backed batching."""

from .anomaly_synthesis import SYNTHETIC_ANOMALY_KINDS, SyntheticAnomalyDataset
from .collate import FAPromptCollator, with_processor_transform
from .hub import load_hub_dataset
from .loaders import load_folder, load_meta_json, load_mvtec_ad, load_visa, write_meta_json
from .mixing import MIX_STRATEGIES, mix_datasets
from .paper_datasets import (
    EXTRA_DATASETS,
    PAPER_DATASETS,
    DatasetLayoutError,
    DatasetSpec,
    find_paper_datasets,
    load_aitex,
    load_br35h,
    load_brain_mri,
    load_btad,
    load_cvc_clinicdb,
    load_cvc_colondb,
    load_dagm,
    load_dtd_synthetic,
    load_elpv,
    load_endo,
    load_headct,
    load_isic,
    load_kolektorsdd,
    load_kvasir,
    load_lag,
    load_mpdd,
    load_mvtec_ad2,
    load_mvtec_loco,
    load_paper_dataset,
    load_tn3k,
    write_paper_meta_json,
)
from .paper_replicas import write_replica, write_replicas
from .schema import (
    ANOMALY_FEATURES,
    IMAGE_EXTENSIONS,
    LABEL_NAMES,
    NORMAL_DEFECT_TYPE,
    decode_image_value,
    defer_decoding,
    verify_dataset,
)
from .synthetic import (
    DEFECT_TYPES,
    DOMAINS,
    OBJECT_DOMAINS,
    TEXTURE_DOMAINS,
    generate_sample,
    make_synthetic_dataset,
    write_synthetic_mvtec,
)

__all__ = [
    "ANOMALY_FEATURES",
    "DEFECT_TYPES",
    "DOMAINS",
    "FAPromptCollator",
    "IMAGE_EXTENSIONS",
    "LABEL_NAMES",
    "NORMAL_DEFECT_TYPE",
    "OBJECT_DOMAINS",
    "SYNTHETIC_ANOMALY_KINDS",
    "SyntheticAnomalyDataset",
    "TEXTURE_DOMAINS",
    "decode_image_value",
    "defer_decoding",
    "generate_sample",
    "load_folder",
    "load_hub_dataset",
    "load_meta_json",
    "load_mvtec_ad",
    "load_visa",
    "make_synthetic_dataset",
    "verify_dataset",
    "with_processor_transform",
    "write_meta_json",
    "write_synthetic_mvtec",
]

from .dispatch import DATASET_FORMATS, load_dataset_by_format

__all__ += ["DATASET_FORMATS", "load_dataset_by_format"]

__all__ += [
    "EXTRA_DATASETS",
    "MIX_STRATEGIES",
    "PAPER_DATASETS",
    "DatasetLayoutError",
    "DatasetSpec",
    "find_paper_datasets",
    "load_aitex",
    "load_br35h",
    "load_brain_mri",
    "load_btad",
    "load_cvc_clinicdb",
    "load_cvc_colondb",
    "load_dagm",
    "load_dtd_synthetic",
    "load_elpv",
    "load_endo",
    "load_headct",
    "load_isic",
    "load_kolektorsdd",
    "load_kvasir",
    "load_lag",
    "load_mpdd",
    "load_mvtec_ad2",
    "load_mvtec_loco",
    "load_paper_dataset",
    "load_tn3k",
    "mix_datasets",
    "write_paper_meta_json",
    "write_replica",
    "write_replicas",
]

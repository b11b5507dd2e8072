# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""Zero-shot evaluation of an FAPrompt model on an anomaly-detection dataset: ``faprompt-hf evaluate`` as a script.

The default protocol is the released evaluation's (the published table): the model's image size (518 px) and
smoothing sigma (10), metrics per class then averaged over classes, AUPRO in the "original" definition (200
thresholds). Prints a markdown table and writes metrics.json, metrics.csv, metrics.md and image_scores.csv to
--output_dir. See docs/evaluation.md.

One process:
    python examples/evaluate.py --model path/or/hub-id --dataset_format mvtec --dataset_path /data/mvtec

Several GPUs (the data is sharded, the outputs gathered; same numbers as one process):
    accelerate launch --multi_gpu --num_processes 4 examples/evaluate.py --model ... --dataset_format visa ...

Several CPU processes (accelerate's --cpu launcher starts a single process unless MPI is set up):
    accelerate launch --multi_gpu --num_processes 2 examples/evaluate.py --use_cpu --model ...

An original checkpoint, converted on the fly:
    python examples/evaluate.py --original_checkpoint epoch_15.pth --clip openai/clip-vit-large-patch14-336 ...
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

__all__ = ["build_parser", "main"]  # noqa: F822  (resolved by __getattr__)


def __getattr__(name: str) -> Any:
    """The library's names, imported on first use (so that ``--help`` does not import torch)."""
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module("faprompt_hf.evaluate_command"), name)


if __name__ == "__main__":
    try:
        import faprompt_hf_cli  # the launcher that parses (and answers --help) before importing torch
    except ImportError:  # an older installation without it
        __getattr__("main")()
    else:
        faprompt_hf_cli.main(["evaluate", *sys.argv[1:]])

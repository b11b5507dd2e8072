# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""Train FAPrompt's prompts on an auxiliary dataset with masks: ``faprompt-hf train`` as a script.

Every hyper-parameter defaults to the reference recipe (15 epochs, batch 8, Adam lr 1e-3 betas (0.5, 0.999), 518 px,
seed 111). Runs as is on a CPU or one GPU, and on several GPUs or nodes with ``accelerate launch``::

    python examples/train.py --dataset_format mvtec --dataset_path mvtec_anomaly_detection --output_dir faprompt-mvtec
    accelerate launch --num_processes 4 examples/train.py --dataset_format visa --dataset_path VisA_20220922
        --output_dir faprompt-visa --mixed_precision bf16 --checkpointing_steps 200   (one line)

The flags are defined in ``faprompt_hf.cli_flags`` and the command in ``faprompt_hf.train_command``; see
``docs/training.md`` and ``docs/cli.md``.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

_NAMES = {
    "SYNTHETIC_TRAIN_DOMAINS": "faprompt_hf.cli_flags",
    "ScriptArguments": "faprompt_hf.cli_flags:TrainScriptArguments",
    "build_model": "faprompt_hf.train_command",
    "build_parser": "faprompt_hf.train_command",
    "check_script_arguments": "faprompt_hf.train_command",
    "load_training_data": "faprompt_hf.train_command",
    "main": "faprompt_hf.train_command",
    "resolve_dataset_arguments": "faprompt_hf.train_command",
}
__all__ = sorted(_NAMES)  # noqa: F822  (resolved by __getattr__)


def __getattr__(name: str) -> Any:
    """The library's names, imported on first use (so that ``--help`` does not import torch)."""
    if name not in _NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, _, attribute = _NAMES[name].partition(":")
    return getattr(importlib.import_module(module), attribute or name)


if __name__ == "__main__":
    try:
        import faprompt_hf_cli  # the launcher that parses (and answers --help) before importing torch
    except ImportError:  # an older installation without it
        __getattr__("main")()
    else:
        faprompt_hf_cli.main(["train", *sys.argv[1:]])

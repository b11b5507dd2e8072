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

from faprompt_hf.cli_flags import SYNTHETIC_TRAIN_DOMAINS
from faprompt_hf.cli_flags import TrainScriptArguments as ScriptArguments
from faprompt_hf.train_command import (
    build_model,
    build_parser,
    check_script_arguments,
    load_training_data,
    main,
    resolve_dataset_arguments,
)

__all__ = [
    "SYNTHETIC_TRAIN_DOMAINS",
    "ScriptArguments",
    "build_model",
    "build_parser",
    "check_script_arguments",
    "load_training_data",
    "main",
    "resolve_dataset_arguments",
]

if __name__ == "__main__":
    main()

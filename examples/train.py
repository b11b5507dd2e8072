# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""Train FAPrompt's prompts on an auxiliary dataset with masks (a thin CLI over ``faprompt_hf.training``).

Every hyper-parameter defaults to the reference recipe (15 epochs, batch 8, Adam lr 1e-3 betas (0.5, 0.999), 518 px,
seed 111). Runs as is on a CPU or one GPU, and on several GPUs or nodes with ``accelerate launch``::

    python examples/train.py --dataset_format mvtec --dataset_path mvtec_anomaly_detection --output_dir faprompt-mvtec
    accelerate launch --num_processes 4 examples/train.py --dataset_format visa --dataset_path VisA_20220922
        --output_dir faprompt-visa --mixed_precision bf16 --checkpointing_steps 200   (one line)

See ``docs/training.md`` for every option.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

from accelerate import PartialState
from accelerate.utils import set_seed
from datasets import Dataset
from transformers import CLIPTokenizer, HfArgumentParser

from faprompt_hf import DEFAULT_CLIP, FAPromptImageProcessor, FAPromptModel, FAPromptProcessor
from faprompt_hf.data import load_folder, load_hub_dataset, load_meta_json, load_mvtec_ad, load_visa
from faprompt_hf.data.synthetic import make_synthetic_dataset
from faprompt_hf.training import FAPromptTrainingArguments, train

DATASET_FORMATS = ("mvtec", "visa", "meta_json", "folder")
SYNTHETIC_TRAIN_DOMAINS = ("gradient", "stripes", "checker", "nut", "plate")


@dataclass
class ScriptArguments:
    """What to train (model and data); the hyper-parameters are in ``FAPromptTrainingArguments``."""

    clip: str = field(
        default=DEFAULT_CLIP, metadata={"help": "Base CLIP for a new model: a Hub id or a transformers CLIP folder."}
    )
    model: str | None = field(
        default=None, metadata={"help": "An FAPrompt model (folder or Hub id) to continue training, instead of --clip."}
    )
    config_overrides: str | None = field(
        default=None,
        metadata={"help": 'FAPromptConfig fields for a new model, as JSON, e.g. \'{"num_abnormal_prompts": 5}\'.'},
    )
    dataset: str | None = field(
        default=None,
        metadata={"help": "'synthetic', or a Hub dataset id / data folder read by datasets (see --column_mapping)."},
    )
    dataset_format: str | None = field(
        default=None, metadata={"help": f"Format of --dataset_path: one of {', '.join(DATASET_FORMATS)}."}
    )
    dataset_path: str | None = field(default=None, metadata={"help": "Root folder of a dataset in --dataset_format."})
    dataset_split: str = field(
        default="test", metadata={"help": "Split to train on (the reference trains on the test split, with masks)."}
    )
    classes: list[str] | None = field(default=None, metadata={"help": "Only these classes (default: all)."})
    column_mapping: str | None = field(
        default=None,
        metadata={"help": 'For --dataset: our column -> theirs, as JSON, e.g. \'{"image": "img", "mask": "gt"}\'.'},
    )
    synthetic_domains: list[str] | None = field(
        default=None,
        metadata={"help": f"Domains of --dataset synthetic (default: {' '.join(SYNTHETIC_TRAIN_DOMAINS)})."},
    )
    synthetic_num_normal: int = field(default=16, metadata={"help": "Normal images per synthetic domain."})
    synthetic_num_anomalous: int = field(default=16, metadata={"help": "Anomalous images per synthetic domain."})
    simulate_crash_after_steps: int | None = field(
        default=None,
        metadata={"help": "Testing aid: kill this process (SIGKILL, no clean-up) after this optimizer step."},
    )


def load_training_data(script: ScriptArguments, training: FAPromptTrainingArguments) -> tuple[Dataset, str]:
    """The training dataset and its name, from the script arguments.

    Args:
        script: The dataset options.
        training: The training arguments (synthetic images are drawn at ``image_size`` with ``seed``).

    Returns:
        ``(dataset, name)``.

    Raises:
        ValueError: No dataset, or both a path and a name, or an unknown format.
    """
    if (script.dataset is None) == (script.dataset_path is None):
        raise ValueError("Give exactly one of --dataset (synthetic or a Hub id) and --dataset_path.")
    if script.dataset_path is not None:
        if script.dataset_format not in DATASET_FORMATS:
            raise ValueError(f"--dataset_format must be one of {DATASET_FORMATS}; got {script.dataset_format!r}.")
        if script.dataset_format == "folder":  # a hand-made tree has no splits
            return load_folder(script.dataset_path, classes=script.classes), script.dataset_path
        loader = {"mvtec": load_mvtec_ad, "visa": load_visa, "meta_json": load_meta_json}[script.dataset_format]
        return loader(script.dataset_path, split=script.dataset_split, classes=script.classes), script.dataset_path
    if script.dataset == "synthetic":
        domains = script.synthetic_domains or SYNTHETIC_TRAIN_DOMAINS
        dataset = make_synthetic_dataset(
            domains=domains,
            n_normal=script.synthetic_num_normal,
            n_anomalous=script.synthetic_num_anomalous,
            image_size=max(64, training.image_size or 224),
            seed=training.seed,
            split="train",
        )
        return dataset, f"synthetic ({', '.join(domains)})"
    mapping = json.loads(script.column_mapping) if script.column_mapping else None
    dataset = load_hub_dataset(script.dataset, split=script.dataset_split, column_mapping=mapping)
    if script.classes:
        wanted = set(script.classes)
        dataset = dataset.filter(lambda name: name in wanted, input_columns="class_name")
    return dataset, script.dataset


def build_model(
    script: ScriptArguments, training: FAPromptTrainingArguments
) -> tuple[FAPromptModel, FAPromptProcessor, str]:
    """The model to train, its processor and the base model's name.

    Args:
        script: ``--model`` (continue) or ``--clip`` with ``--config_overrides`` (new prompts).
        training: The training arguments (``seed`` seeds the new prompts, ``image_size`` is stored in the config).

    Returns:
        ``(model, processor, base_model)``.
    """
    if script.model is not None:
        model = FAPromptModel.from_pretrained(script.model)
        try:
            processor = FAPromptProcessor.from_pretrained(script.model)
        except OSError:
            processor = FAPromptProcessor(FAPromptImageProcessor(size=model.config.image_size))
        return model, processor, script.model
    set_seed(training.seed)
    try:
        tokenizer = CLIPTokenizer.from_pretrained(script.clip)
    except OSError:
        tokenizer = None
    processor = FAPromptProcessor(FAPromptImageProcessor(size=training.image_size or 518), tokenizer)
    overrides = processor.prompt_token_ids() if tokenizer is not None else {}
    overrides.update(json.loads(script.config_overrides) if script.config_overrides else {})
    if training.image_size is not None:
        overrides.setdefault("image_size", training.image_size)
    model = FAPromptModel.from_clip(script.clip, **overrides)
    return model, processor, script.clip


def main(argv: Sequence[str] | None = None) -> FAPromptModel:
    """Parse the arguments, build the model and data, and train.

    Args:
        argv: Command-line arguments (default: ``sys.argv[1:]``).

    Returns:
        The trained model (also saved in ``--output_dir``).
    """
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.WARNING)
    logging.getLogger("faprompt_hf").setLevel(logging.INFO)
    parser = HfArgumentParser((ScriptArguments, FAPromptTrainingArguments))
    script, training = parser.parse_args_into_dataclasses(args=list(sys.argv[1:] if argv is None else argv))
    dataset, dataset_name = load_training_data(script, training)
    model, processor, base_model = build_model(script, training)

    step_callback = None
    if script.simulate_crash_after_steps is not None:

        def step_callback(step: int, losses: dict[str, float]) -> None:
            if step >= script.simulate_crash_after_steps:
                os.kill(os.getpid(), signal.SIGKILL)

    model = train(
        model, dataset, processor, training, base_model=base_model, dataset_name=dataset_name,
        step_callback=step_callback,
    )
    if PartialState().is_main_process:
        print(f"Saved the trained FAPrompt model and processor to {training.output_dir}")
    return model


if __name__ == "__main__":
    main()

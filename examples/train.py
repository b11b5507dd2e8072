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

import dataclasses
import logging
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from accelerate import PartialState
from accelerate.utils import set_seed
from datasets import Dataset
from transformers import CLIPConfig, CLIPTokenizer, HfArgumentParser

from faprompt_hf import DEFAULT_CLIP, FAPromptConfig, FAPromptModel, FAPromptProcessor
from faprompt_hf.data import DATASET_FORMATS, load_dataset_by_format
from faprompt_hf.data.mixing import extract_mix_arguments
from faprompt_hf.processing_faprompt import TOKENIZER_FILES, prompt_token_ids
from faprompt_hf.script_flags import parse_column_mapping, parse_json_object
from faprompt_hf.training import FAPromptTrainingArguments, train

SYNTHETIC_TRAIN_DOMAINS = ("gradient", "stripes", "checker", "nut", "plate")


@dataclass
class ScriptArguments:
    """What to train (model and data); the hyper-parameters are in ``FAPromptTrainingArguments``.

    The data flags are those of ``examples/evaluate.py`` (``--dataset_format``, ``--dataset_path``, ``--split``);
    ``--dataset`` and ``--dataset_split`` are kept as aliases.
    """

    clip: str | None = field(
        default=None,
        metadata={
            "help": f"Base CLIP for a new model: a Hub id or a transformers CLIP folder (default: {DEFAULT_CLIP}). "
            "Not with --model."
        },
    )
    model: str | None = field(
        default=None,
        metadata={
            "help": "An FAPrompt model (folder or Hub id) to continue training, instead of --clip (and without "
            "--config_overrides: the model's config is used as saved)."
        },
    )
    config_overrides: str | None = field(
        default=None,
        metadata={
            "help": "FAPromptConfig fields for a new model, as JSON, e.g. '{\"num_abnormal_prompts\": 5}'. "
            "Not with --model."
        },
    )
    dataset_format: str | None = field(
        default=None,
        metadata={
            "choices": list(DATASET_FORMATS),
            "help": f"How to read the data: one of {', '.join(DATASET_FORMATS)} (as in examples/evaluate.py).",
        },
    )
    dataset_path: str | None = field(
        default=None,
        metadata={"help": "Dataset folder, or Hub id / path for --dataset_format hub (not used by synthetic)."},
    )
    split: str | None = field(
        default=None,
        metadata={
            "help": "Split to train on. Default: test (the reference trains on the test split, which has the "
            "masks); train for --dataset_format synthetic, so that its test split stays unseen."
        },
    )
    dataset: str | None = field(
        default=None,
        metadata={
            "help": "Alias: '--dataset synthetic' is '--dataset_format synthetic'; '--dataset ID' is "
            "'--dataset_format hub --dataset_path ID' (a Hub id or a data folder read by datasets)."
        },
    )
    dataset_split: str | None = field(default=None, metadata={"help": "Alias of --split."})
    classes: list[str] | None = field(
        default=None, metadata={"help": "Only these classes (default: all); for synthetic, the domains."}
    )
    column_mapping: str | None = field(
        default=None,
        metadata={
            "help": 'For hub: our column -> theirs, as JSON (\'{"image": "img", "mask": "gt"}\') or '
            "ours=theirs pairs (image=img,mask=gt), as in examples/evaluate.py."
        },
    )
    dataset_kwargs: str | None = field(
        default=None,
        metadata={
            "help": 'More loader arguments as JSON, e.g. \'{"split_csv": "..."}\' (visa), '
            '\'{"require_masks": false}\' (folder, meta_json), \'{"revision": "main"}\' (hub).'
        },
    )
    synthetic_domains: list[str] | None = field(
        default=None,
        metadata={"help": f"Alias of --classes for synthetic (default: {' '.join(SYNTHETIC_TRAIN_DOMAINS)})."},
    )
    synthetic_num_normal: int = field(default=16, metadata={"help": "Normal images per synthetic domain."})
    synthetic_num_anomalous: int = field(default=16, metadata={"help": "Anomalous images per synthetic domain."})
    simulate_crash_after_steps: int | None = field(
        default=None,
        metadata={"help": "Testing aid: kill this process (SIGKILL, no clean-up) after this optimizer step."},
    )


def check_script_arguments(script: ScriptArguments) -> None:
    """Refuse combinations of flags that would otherwise be ignored silently.

    Args:
        script: The parsed script arguments.

    Raises:
        ValueError: ``--model`` with ``--clip`` or ``--config_overrides``, malformed JSON in ``--config_overrides``,
            ``--dataset_kwargs`` or ``--column_mapping`` (naming the flag, with an example), or conflicting data
            flags (see :func:`resolve_dataset_arguments`).
    """
    for flag, text in (("--config_overrides", script.config_overrides), ("--dataset_kwargs", script.dataset_kwargs)):
        if text is not None:
            parse_json_object(text, flag)
    if script.column_mapping is not None:
        parse_column_mapping(script.column_mapping)
    if script.model is not None:
        ignored = [
            flag
            for flag, value in (("--clip", script.clip), ("--config_overrides", script.config_overrides))
            if value is not None
        ]
        if ignored:
            raise ValueError(
                f"--model continues a saved FAPrompt model with its own CLIP and config, so {' and '.join(ignored)} "
                "would be ignored; drop them, or start new prompts with --clip (and --config_overrides) instead."
            )
    resolve_dataset_arguments(script)


def resolve_dataset_arguments(script: ScriptArguments) -> tuple[str, str | None, str]:
    """The ``(dataset_format, dataset_path, split)`` the flags ask for, with the aliases resolved.

    Args:
        script: The parsed script arguments.

    Returns:
        The arguments of :func:`faprompt_hf.data.load_dataset_by_format`.

    Raises:
        ValueError: No data, both ``--dataset`` and ``--dataset_format``/``--dataset_path``, both ``--split`` and
            ``--dataset_split`` with different values, or a format that needs ``--dataset_path`` without it.
    """
    if script.dataset is not None:
        if script.dataset_format is not None or script.dataset_path is not None:
            raise ValueError(
                "--dataset is an alias of --dataset_format (synthetic) or --dataset_format hub --dataset_path ID; "
                "give either --dataset or --dataset_format/--dataset_path, not both."
            )
        dataset_format = "synthetic" if script.dataset == "synthetic" else "hub"
        dataset_path = None if dataset_format == "synthetic" else script.dataset
    else:
        if script.dataset_format is None:
            raise ValueError(
                f"Give --dataset_format ({', '.join(DATASET_FORMATS)}) with --dataset_path, or --dataset synthetic."
            )
        dataset_format, dataset_path = script.dataset_format, script.dataset_path
    if dataset_format not in DATASET_FORMATS:
        raise ValueError(f"--dataset_format must be one of {DATASET_FORMATS}; got {dataset_format!r}.")
    if dataset_path is None and dataset_format != "synthetic":
        raise ValueError(f"--dataset_format {dataset_format} needs --dataset_path.")
    if script.split is not None and script.dataset_split is not None and script.split != script.dataset_split:
        raise ValueError(f"--split {script.split} and its alias --dataset_split {script.dataset_split} disagree.")
    split = script.split or script.dataset_split or ("train" if dataset_format == "synthetic" else "test")
    if script.synthetic_domains and dataset_format != "synthetic":
        raise ValueError("--synthetic_domains only applies to synthetic data; use --classes.")
    if script.synthetic_domains and script.classes:
        raise ValueError("--synthetic_domains is an alias of --classes; give one of them.")
    if script.column_mapping and dataset_format != "hub":
        raise ValueError("--column_mapping only applies to --dataset_format hub (or --dataset ID).")
    return dataset_format, dataset_path, split


def load_training_data(script: ScriptArguments, training: FAPromptTrainingArguments) -> tuple[Dataset, str]:
    """The training dataset and its name, from the script arguments (through ``load_dataset_by_format``).

    Args:
        script: The dataset options.
        training: The training arguments, resolved by :func:`main` (synthetic images are drawn at ``image_size``,
            at least 64 px, with ``seed``; ``allow_missing_masks`` lets the folder and meta.json loaders keep
            anomalous images without a mask).

    Returns:
        ``(dataset, name)``.

    Raises:
        ValueError: No dataset, conflicting flags, or an unknown format (see :func:`resolve_dataset_arguments`).
    """
    dataset_format, dataset_path, split = resolve_dataset_arguments(script)
    classes = script.classes or script.synthetic_domains
    loader_kwargs = parse_json_object(script.dataset_kwargs, "--dataset_kwargs") if script.dataset_kwargs else {}
    if dataset_format == "synthetic":
        classes = classes or list(SYNTHETIC_TRAIN_DOMAINS)
        loader_kwargs = {
            "n_normal": script.synthetic_num_normal,
            "n_anomalous": script.synthetic_num_anomalous,
            "image_size": max(64, training.image_size),
            "seed": training.seed,
            **loader_kwargs,
        }
    if training.allow_missing_masks and dataset_format in ("folder", "meta_json"):
        loader_kwargs.setdefault("require_masks", False)  # image-level labels: anomalous images may lack a mask
    mapping = parse_column_mapping(script.column_mapping) if script.column_mapping else None
    dataset = load_dataset_by_format(dataset_format, dataset_path, split, classes, mapping, **loader_kwargs)
    name = f"synthetic ({', '.join(classes)})" if dataset_format == "synthetic" else str(dataset_path)
    return dataset, name


def _clip_unavailable(clip: str, error: Exception) -> OSError:
    """The error for a ``--clip`` that cannot be loaded: how to train offline from a local folder."""
    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}
    return OSError(
        f"Could not load the CLIP {clip!r} of --clip ({type(error).__name__}: {str(error).splitlines()[0]}). "
        + ("HF_HUB_OFFLINE is set, so only local files are used: " if offline else "")
        + "offline (HF_HUB_OFFLINE=1) or without network, pass --clip a local folder that holds a transformers "
        "CLIPModel (config.json and model.safetensors), e.g. one written by CLIPModel.save_pretrained(folder) on a "
        f"connected machine or by `hf download {clip} --local-dir folder`; a model already in the local cache also "
        "works with HF_HUB_OFFLINE=1. See docs/training.md, 'Training offline'."
    )


def _load_tokenizer(clip: str) -> CLIPTokenizer | None:
    """The CLIP's tokenizer when it has one (it derives the template token ids), else None (the config's defaults)."""
    folder = Path(clip)
    if folder.is_dir() and not any((folder / name).is_file() for name in TOKENIZER_FILES):
        return None
    try:
        return CLIPTokenizer.from_pretrained(clip)
    except (OSError, ValueError):
        return None


def _config_for(clip: str, clip_config: CLIPConfig, overrides: dict, from_tokenizer: bool) -> FAPromptConfig:
    """The FAPrompt configuration the model will get, checked against the CLIP (a small CLIP needs overrides).

    Raises:
        ValueError: A field that does not fit the CLIP (e.g. more V-V blocks than vision layers), or template token
            ids outside its vocabulary; the message says which ``--config_overrides`` or files fix it.
    """
    try:
        config = FAPromptConfig(clip_config=clip_config.to_dict(), **overrides)
    except (ValueError, TypeError) as error:
        cause = str(error).strip().splitlines()[-1].strip()
        raise ValueError(
            f"The FAPrompt configuration does not fit the CLIP {clip!r}: {cause} Adjust it with --config_overrides, "
            'e.g. \'{"num_vv_blocks": 2, "deep_prompt_depth": 3}\' for a CLIP with 4 layers; see docs/training.md, '
            "'Training offline'."
        ) from None
    source = "its tokenizer" if from_tokenizer else "the defaults (OpenAI CLIP's tokenizer; --clip has none)"
    config.check_prompt_vocabulary(f"the CLIP {clip!r}", source)
    return config


def build_model(
    script: ScriptArguments, training: FAPromptTrainingArguments
) -> tuple[FAPromptModel, FAPromptProcessor, str]:
    """The model to train, its processor and the base model's name.

    No tokenizer is needed: the prompt template's token ids live in the config. When the CLIP has a tokenizer, the
    ids are taken from it (``faprompt_hf.processing_faprompt.prompt_token_ids``); ``--config_overrides`` wins over both.

    Args:
        script: ``--model`` (continue) or ``--clip`` (default ``DEFAULT_CLIP``) with ``--config_overrides`` (new
            prompts).
        training: The training arguments (``seed`` seeds the new prompts, ``image_size`` is stored in the config;
            None keeps the model's).

    Returns:
        ``(model, processor, base_model)``.

    Raises:
        OSError: ``--clip`` cannot be loaded (offline, unknown id, a folder without a CLIP); the message says how to
            point ``--clip`` at a local folder.
        ValueError: Template token ids outside the CLIP's vocabulary.
    """
    if script.model is not None:
        model = FAPromptModel.from_pretrained(script.model)
        try:
            processor = FAPromptProcessor.from_pretrained(script.model)
        except OSError:
            processor = FAPromptProcessor.from_model_config(model.config)
        return model, processor, script.model
    clip = script.clip or DEFAULT_CLIP
    try:
        clip_config = CLIPConfig.from_pretrained(clip)
    except (OSError, ValueError) as error:
        raise _clip_unavailable(clip, error) from error
    tokenizer = _load_tokenizer(clip)
    overrides = prompt_token_ids(tokenizer) if tokenizer is not None else {}
    overrides.update(
        parse_json_object(script.config_overrides, "--config_overrides") if script.config_overrides else {}
    )
    if training.image_size is not None:
        overrides.setdefault("image_size", training.image_size)
    _config_for(clip, clip_config, overrides, tokenizer is not None)
    set_seed(training.seed)
    try:
        model = FAPromptModel.from_clip(clip, **overrides)
    except OSError as error:
        raise _clip_unavailable(clip, error) from error
    return model, FAPromptProcessor.from_model_config(model.config, tokenizer=tokenizer), clip


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
    try:
        # --dataset_format/--dataset_path given several times (+ --mix_strategy): a mix, see docs/training.md
        argv, mix = extract_mix_arguments(sys.argv[1:] if argv is None else argv)
        script, training = parser.parse_args_into_dataclasses(args=argv)
        check_script_arguments(script)
    except ValueError as error:
        parser.error(str(error))
    try:
        model, processor, base_model = build_model(script, training)
    except (OSError, ValueError) as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    if training.image_size is None:  # unset: the model's size (518 for a new model; a trained model keeps its own)
        training = dataclasses.replace(training, image_size=model.config.image_size)
    if mix is None:
        dataset, dataset_name = load_training_data(script, training)
    else:
        dataset, dataset_name = mix.load(resolve_dataset_arguments(script)[2], training.seed, training.image_size)

    step_callback = None
    if script.simulate_crash_after_steps is not None:

        def step_callback(step: int, losses: dict[str, float]) -> None:
            if step >= script.simulate_crash_after_steps:
                os.kill(os.getpid(), signal.SIGKILL)

    try:
        model = train(
            model,
            dataset,
            processor,
            training,
            base_model=base_model,
            dataset_name=dataset_name,
            step_callback=step_callback,
        )
    except ValueError as error:
        if "allow_changed_arguments" not in str(error) and "overwrite_output_dir" not in str(error):
            raise
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    if PartialState().is_main_process:
        print(f"Saved the trained FAPrompt model and processor to {training.output_dir}")
    return model


if __name__ == "__main__":
    main()

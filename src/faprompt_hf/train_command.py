# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""``faprompt-hf train`` and ``examples/train.py``: train FAPrompt's prompts from the command line.

The flags are defined once, in :mod:`faprompt_hf.cli_flags` (:class:`~faprompt_hf.cli_flags.TrainScriptArguments`
and :class:`~faprompt_hf.training_args.FAPromptTrainingArguments`); this module builds the model and the data and
calls :func:`faprompt_hf.training.train`. See ``docs/training.md`` and ``docs/cli.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import signal
from collections.abc import Sequence
from pathlib import Path

from accelerate import PartialState
from accelerate.utils import set_seed
from datasets import Dataset
from transformers import CLIPConfig, CLIPTokenizer

from .cli_flags import SYNTHETIC_TRAIN_DOMAINS, TrainScriptArguments, add_train_arguments, dataclasses_from_namespace
from .configuration_faprompt import FAPromptConfig
from .data import DATASET_FORMATS, load_dataset_by_format
from .data.mixing import MixRequest, build_mix_request
from .defaults import DEFAULT_CLIP
from .launch import warn_if_fewer_processes
from .modeling_faprompt import FAPromptModel
from .processing_faprompt import TOKENIZER_FILES, FAPromptProcessor, prompt_token_ids
from .script_flags import parse_column_mapping, parse_json_object
from .training import train
from .training_args import FAPromptTrainingArguments

__all__ = [
    "SYNTHETIC_TRAIN_DOMAINS",
    "build_model",
    "build_parser",
    "check_script_arguments",
    "load_training_data",
    "main",
    "parse_train_args",
    "resolve_dataset_arguments",
]


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """The parser of ``faprompt-hf train`` / ``examples/train.py`` (its flags: :func:`~.cli_flags.add_train_arguments`).

    Args:
        prog: The program name shown in messages.

    Returns:
        The parser.
    """
    return add_train_arguments(
        argparse.ArgumentParser(prog=prog, description="Train FAPrompt's prompts on a dataset with masks.")
    )


def parse_train_args(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None
) -> tuple[TrainScriptArguments, FAPromptTrainingArguments, MixRequest | None]:
    """Parse and check the training flags; a mix when ``--dataset_format`` is given several times.

    Args:
        parser: From :func:`build_parser`.
        argv: The arguments (default: ``sys.argv[1:]``).

    Returns:
        ``(script, training, mix or None)``.

    Raises:
        ValueError: A value or combination of flags that is refused (the message names the flag).
    """
    namespace = parser.parse_args(argv)
    formats, paths = namespace.dataset_format or [], namespace.dataset_path or []
    given = {
        flag
        for flag in ("classes", "dataset_kwargs", "column_mapping", "dataset", "synthetic_domains")
        if getattr(namespace, flag) is not None
    }
    mix = build_mix_request(formats, paths, namespace.mix_strategy, [f"--{flag}" for flag in sorted(given)])
    namespace.dataset_format = formats[0] if formats else None
    namespace.dataset_path = mix.paths[0] if mix else (paths[0] if paths else None)
    script, training = dataclasses_from_namespace(namespace, TrainScriptArguments, FAPromptTrainingArguments)
    check_script_arguments(script)
    return script, training, mix


def check_script_arguments(script: TrainScriptArguments) -> None:
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


def resolve_dataset_arguments(script: TrainScriptArguments) -> tuple[str, str | None, str]:
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


def load_training_data(script: TrainScriptArguments, training: FAPromptTrainingArguments) -> tuple[Dataset, str]:
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
    script: TrainScriptArguments, training: FAPromptTrainingArguments
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


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> FAPromptModel:
    """Parse the arguments, build the model and data, and train.

    Args:
        argv: Command-line arguments (default: ``sys.argv[1:]``).
        prog: The program name shown in messages (default: the script's).

    Returns:
        The trained model (also saved in ``--output_dir``).
    """
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.WARNING)
    logging.getLogger("faprompt_hf").setLevel(logging.INFO)
    parser = build_parser(prog)
    try:
        script, training, mix = parse_train_args(parser, argv)
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

    warn_if_fewer_processes(int(os.environ.get("WORLD_SIZE", "1") or 1))  # before train() creates the Accelerator
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
        print(f"Saved the trained FAPrompt model and processor to {training.output_dir}")  # noqa: T201 (the command's output)
    return model

# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""Saving and loading FAPrompt checkpoints: embedded or compact weights, the CLIP's source and fingerprint.

FAPrompt learns a few million prompt parameters on a frozen public CLIP. A **compact** save
(``save_pretrained(path, include_clip=False)``) writes only the ``prompt_learner.*`` tensors (and the normal-reference
bank ``normal_references.features`` when the model holds one) and records in the config where the CLIP comes from
(``clip_name_or_path``, ``clip_revision``) and its :func:`clip_fingerprint`; loading fetches that CLIP and refuses one
whose fingerprint differs. An **embedded** save holds the CLIP's weights too.

This module is FAPrompt's ``modeling_utils``: :class:`FAPromptCheckpointMixin` gives the model class its
``from_pretrained``, ``from_clip``, ``save_pretrained`` and ``push_to_hub``, as transformers' ``PreTrainedModel`` gives
every model its own. It never imports the model: what it needs of it comes through the hooks the model class
defines (``learned_state_keys``). It travels in saved folders as remote code, so it imports nothing beyond torch,
transformers, huggingface_hub, safetensors and the package's flat inference modules.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging as std_logging
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from transformers import CLIPModel, CLIPTokenizer, PreTrainedConfig, PreTrainedModel
from transformers.utils import cached_file, extract_commit_hash, logging

from .configuration_faprompt import FAPromptConfig
from .file_utils import (
    INTEGRITY_FILE_NAME,
    check_model_reference,
    digests_enabled,
    is_hub_id,
    read_integrity_manifest,
    staged_directory,
    verify_file_digest,
    write_integrity_manifest,
)
from .processing_faprompt import TOKENIZER_FILES, prompt_token_ids
from .remote_code import write_remote_code

__all__ = [
    "CLIP_PREFIX",
    "FINGERPRINT_SAMPLES_PER_TENSOR",
    "PROMPT_PREFIX",
    "FAPromptCheckpointMixin",
    "check_finite_prompts",
    "clip_fingerprint",
    "describe_clip_source",
    "folder_embeds_clip",
    "has_hub_clip",
    "is_hub_id",
    "record_clip_source",
    "register_hub_publisher",
]

logger = logging.get_logger(__name__)

CLIP_PREFIX = "clip."
"""Prefix of the CLIP's tensors in an FAPrompt state dict; a compact checkpoint has none of them."""

PROMPT_PREFIX = "prompt_learner."
"""Prefix of FAPrompt's own (learned) tensors."""

FINGERPRINT_SAMPLES_PER_TENSOR = 4096
"""Evenly spaced values of each CLIP tensor that enter :func:`clip_fingerprint` (all of them in smaller tensors)."""

_FINGERPRINT_SCHEME = f"sha256-bf16-{FINGERPRINT_SAMPLES_PER_TENSOR}"

_WEIGHTS_NAME = "model.safetensors"
_WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
_STALE_WEIGHTS = re.compile(r"^model(-\d{5}-of-\d{5})?\.safetensors(\.index\.json)?$")
_HUB_KWARGS = ("revision", "cache_dir", "local_files_only", "token", "subfolder", "force_download", "proxies")
# from_pretrained arguments for the model, not the config (the config would store some of them and keep them away).
_MODEL_ONLY_KWARGS = (
    "dtype",
    "torch_dtype",
    "attn_implementation",
    "device_map",
    "max_memory",
    "output_loading_info",
    "trust_remote_code",
    "adapter_kwargs",
    "key_mapping",
    "ignore_mismatched_sizes",
    "variant",
    "weights_only",
    "quantization_config",
    "tp_plan",
    "tp_size",
    "device_mesh",
    "distributed_config",
)


# ----------------------------------------------------------------------------------------------------------------------
# The CLIP a model was trained on: source and fingerprint
# ----------------------------------------------------------------------------------------------------------------------


def clip_fingerprint(clip: CLIPModel | Mapping[str, torch.Tensor]) -> str:
    """A fingerprint of CLIP weights: which checkpoint they are, independent of file format and of bf16 casting.

    SHA-256 over each floating-point tensor's name, shape and :data:`FINGERPRINT_SAMPLES_PER_TENSOR` evenly spaced
    values rounded to bfloat16. It identifies a checkpoint in 0.3 s instead of the 11 s of hashing all of its bytes
    (1.7 GB for ViT-L/14@336; ``benchmarks/benchmark_hub.py``): another checkpoint, another revision or fine-tuned
    weights change nearly every value, so they change the fingerprint; a float32 copy, a bfloat16 copy or a re-saved
    file of the same weights keep it.
    It is an identity check, not a tamper seal: an edit of a few unsampled values is not seen (pin
    ``clip_revision`` to a commit for that: the hub addresses files by content).

    Args:
        clip: A ``CLIPModel`` or its state dict (keys without the ``clip.`` prefix), on any device.

    Returns:
        ``"sha256-bf16-4096:<hex digest>"``.
    """
    state_dict = clip.state_dict() if isinstance(clip, torch.nn.Module) else clip
    digest = hashlib.sha256()
    samples = FINGERPRINT_SAMPLES_PER_TENSOR
    for name in sorted(state_dict):
        tensor = state_dict[name]
        if not tensor.is_floating_point():
            continue
        values = tensor.detach().reshape(-1)
        if values.numel() > samples:
            positions = torch.arange(samples, device=values.device) * (values.numel() - 1) // (samples - 1)
            values = values.index_select(0, positions)  # (advanced indexing is 200x slower on large CPU tensors)
        digest.update(f"{name}:{tuple(tensor.shape)}:".encode())
        digest.update(values.to(torch.bfloat16).float().cpu().numpy().tobytes())
    return f"{_FINGERPRINT_SCHEME}:{digest.hexdigest()}"


def _hub_revision(name_or_path: str, revision: str | None, hub_kwargs: Mapping[str, Any]) -> str | None:
    """The commit a hub CLIP resolves to (from the local cache), else the revision asked for."""
    try:
        resolved = cached_file(
            name_or_path,
            "config.json",
            revision=revision,
            _raise_exceptions_for_missing_entries=False,
            _raise_exceptions_for_connection_errors=False,
            **{key: hub_kwargs[key] for key in ("cache_dir", "local_files_only", "token") if key in hub_kwargs},
        )
    except OSError:
        resolved = None
    return (extract_commit_hash(resolved, None) if resolved else None) or revision


def _load_clip(
    name_or_path: str, revision: str | None, hub_kwargs: Mapping[str, Any], dtype: Any, what: str
) -> CLIPModel:
    """``CLIPModel.from_pretrained`` with an error that names the CLIP and says how to point elsewhere."""
    kwargs = {key: hub_kwargs[key] for key in ("cache_dir", "local_files_only", "token") if key in hub_kwargs}
    try:
        return CLIPModel.from_pretrained(name_or_path, revision=revision, dtype=dtype, **kwargs)
    except (OSError, ValueError) as error:
        where = f"{name_or_path!r}" + (f" (revision {revision!r})" if revision else "")
        raise OSError(
            f"{what} needs the CLIP {where}, which could not be loaded: {error}\n"
            "Point to a copy of the same weights with FAPromptModel.from_pretrained(path, clip='<local folder or hub "
            "id>') (examples/evaluate.py: --clip) or clip=<a CLIPModel>, or allow downloads (local_files_only=False, "
            "HF_HUB_OFFLINE unset)."
        ) from error


def _clip_load_dtype(dtype: Any) -> Any:
    """The dtype to load a CLIP in so that its fingerprint can be checked: bf16 and fp32 keep it, others may not."""
    if dtype in (None, "auto", torch.float32, torch.bfloat16, "float32", "bfloat16"):
        return "auto" if dtype is None else dtype
    return "auto"  # e.g. float16: load as stored, check, then cast


def describe_clip_source(
    clip: str | os.PathLike | CLIPModel, revision: str | None = None, **hub_kwargs: Any
) -> tuple[str | None, str | None]:
    """Where a CLIP comes from, as a config records it: ``(clip_name_or_path, clip_revision)``.

    Args:
        clip: A hub id (its revision is resolved to the cached commit when possible), a local folder (recorded as an
            absolute path), or a ``CLIPModel`` (its ``name_or_path``, with ``revision`` only when given).
        revision: The revision asked for (or, for a ``CLIPModel``, the one it was loaded at).
        **hub_kwargs: ``cache_dir``, ``local_files_only``, ``token``.

    Returns:
        The name or path (None when unknown) and the revision (None unless a hub id).
    """
    if isinstance(clip, CLIPModel):  # the revision it was loaded at is unknown: only the one given is recorded
        name_or_path = clip.name_or_path or None
        return name_or_path, revision if is_hub_id(name_or_path) else None
    name_or_path = os.fspath(clip)
    if os.path.exists(name_or_path):
        return os.path.abspath(name_or_path), None
    if not is_hub_id(name_or_path):
        return name_or_path, None
    return name_or_path, _hub_revision(name_or_path, revision, hub_kwargs)


def record_clip_source(model: PreTrainedModel, clip: str | os.PathLike | CLIPModel, **hub_kwargs: Any) -> None:
    """Record in ``model.config`` where its CLIP comes from and its fingerprint (for converted models).

    Args:
        model: The model; its CLIP must hold the weights of ``clip`` as stored.
        clip: The hub id, folder or ``CLIPModel`` the CLIP was loaded from.
        **hub_kwargs: ``revision``, ``cache_dir``, ``local_files_only``, ``token``.
    """
    revision = hub_kwargs.pop("revision", None)
    name_or_path, revision = describe_clip_source(clip, revision, **hub_kwargs)
    model.config.clip_name_or_path = name_or_path
    model.config.clip_revision = revision
    model.config.clip_fingerprint = clip_fingerprint(model.clip)


def _prompt_ids_from_tokenizer(clip: Any, load_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The template's token ids from the CLIP's own tokenizer, when it has one (else {}: the config's defaults).

    A folder without tokenizer files, or a hub id whose tokenizer cannot be had (offline), gives {}.
    """
    if isinstance(clip, CLIPModel):
        return {}
    name_or_path = os.fspath(clip)
    keys = ("revision", "cache_dir", "local_files_only", "token")
    kwargs = {key: load_kwargs[key] for key in keys if key in load_kwargs}
    lookup = {"_raise_exceptions_for_missing_entries": False, "_raise_exceptions_for_connection_errors": False}
    try:
        has_files = any(cached_file(name_or_path, name, **lookup, **kwargs) for name in TOKENIZER_FILES)
    except OSError:
        has_files = False
    if not has_files:  # (transformers would build an empty tokenizer, which knows no word of the template)
        return {}
    try:
        tokenizer = CLIPTokenizer.from_pretrained(name_or_path, **kwargs)
    except (OSError, ValueError):
        return {}
    return prompt_token_ids(tokenizer)


def build_from_clip(
    model_class: type[PreTrainedModel], base_from_pretrained: Callable[..., Any], clip: Any, config_kwargs: dict
) -> PreTrainedModel:
    """Implementation of ``FAPromptModel.from_clip`` (see there): load the CLIP, record its source, fresh prompts."""
    load_kwargs = {
        key: config_kwargs.pop(key)
        for key in ("dtype", "attn_implementation", "revision", "cache_dir", "local_files_only", "token")
        if key in config_kwargs
    }
    hub_kwargs = {key: load_kwargs[key] for key in ("cache_dir", "local_files_only", "token") if key in load_kwargs}
    name_or_path, revision = describe_clip_source(clip, load_kwargs.get("revision"), **hub_kwargs)
    if isinstance(clip, CLIPModel):
        clip_model = clip
    else:
        load_from = name_or_path if os.path.isdir(name_or_path) else os.fspath(clip)
        dtype = _clip_load_dtype(load_kwargs.get("dtype"))
        clip_model = _load_clip(load_from, revision, hub_kwargs, dtype, "FAPromptModel.from_clip")
    token_ids = _prompt_ids_from_tokenizer(clip, load_kwargs)
    config_kwargs = {**token_ids, **config_kwargs}  # explicit fields win over the tokenizer's ids
    config_kwargs.setdefault("clip_name_or_path", name_or_path)
    config_kwargs.setdefault("clip_revision", revision)
    config_kwargs.setdefault("clip_fingerprint", clip_fingerprint(clip_model))
    config = FAPromptConfig(clip_config=clip_model.config.to_dict(), **config_kwargs)
    config.check_prompt_vocabulary(
        f"the CLIP {name_or_path!r}", "its tokenizer" if token_ids else "the defaults (OpenAI CLIP's tokenizer)"
    )
    state_dict = {CLIP_PREFIX + key: value for key, value in clip_model.state_dict().items()}
    model_kwargs = {key: load_kwargs[key] for key in ("dtype", "attn_implementation") if key in load_kwargs}
    model, loading_info = _quiet_from_pretrained(
        base_from_pretrained, config=config, state_dict=state_dict, **model_kwargs
    )
    others = sorted(key for key in loading_info["missing_keys"] if not key.startswith(PROMPT_PREFIX))
    if others or loading_info["unexpected_keys"] or loading_info["mismatched_keys"]:
        logger.warning(
            "from_clip: CLIP tensors missing %s, unexpected %s, mismatched %s.",
            others,
            sorted(loading_info["unexpected_keys"]),
            sorted(loading_info["mismatched_keys"]),
        )
    logger.info("from_clip: CLIP weights loaded from %s; FAPrompt's prompts are freshly initialised.", name_or_path)
    return model


def _quiet_from_pretrained(base_from_pretrained: Callable[..., Any], **kwargs: Any) -> tuple[Any, dict]:
    """``from_pretrained(None, state_dict=...)`` without transformers' LOAD REPORT (the caller reports instead)."""
    report_logger = logging.get_logger("transformers.modeling_utils")
    drop_report = _DropLoadReport()
    report_logger.addFilter(drop_report)
    try:
        return base_from_pretrained(None, output_loading_info=True, **kwargs)
    finally:
        report_logger.removeFilter(drop_report)


class _DropLoadReport(std_logging.Filter):
    """Drops transformers' LOAD REPORT, which would list the fresh prompts of ``from_clip`` as MISSING."""

    def filter(self, record: std_logging.LogRecord) -> bool:
        return "LOAD REPORT" not in str(record.msg)


# ----------------------------------------------------------------------------------------------------------------------
# Loading checkpoints: prompts present, files readable, compact checkpoints completed with their CLIP
# ----------------------------------------------------------------------------------------------------------------------


def _weight_files(name_or_path: str, hub_kwargs: Mapping[str, Any]) -> list[str] | None:
    """The checkpoint's safetensors files (one, or the shards of its index), or None when it has none."""
    kwargs = {key: value for key, value in hub_kwargs.items() if value is not None}
    subfolder = kwargs.pop("subfolder", "") or ""
    common = {"_raise_exceptions_for_missing_entries": False, "subfolder": subfolder, **kwargs}
    single = cached_file(name_or_path, _WEIGHTS_NAME, **common)
    if single is not None:
        return [single]
    index = cached_file(name_or_path, _WEIGHTS_INDEX_NAME, **common)
    if index is None:
        return None
    try:
        weight_map = json.loads(Path(index).read_text(encoding="utf-8"))["weight_map"]
    except (ValueError, KeyError) as error:
        raise OSError(
            f"{index} is not a valid safetensors index ({error}): download or save the model again."
        ) from error
    shards = [cached_file(name_or_path, shard, **common) for shard in sorted(set(weight_map.values()))]
    missing = [shard for shard, path in zip(sorted(set(weight_map.values())), shards, strict=True) if path is None]
    if missing:
        raise OSError(f"{index} lists shard(s) {missing} that are not in {name_or_path}: download or save again.")
    return shards


def _verify_weight_files(name_or_path: str, files: list[str], hub_kwargs: Mapping[str, Any]) -> None:
    """Check each weight file against the SHA-256 that ``save_pretrained`` recorded in ``integrity.json``.

    A folder saved before digests were written (no manifest) is not checked.

    Raises:
        OSError: A weight file whose bytes changed since it was saved, or that the manifest does not list; the
            message names the file, the fix and the opt-out.
    """
    kwargs = {key: value for key, value in hub_kwargs.items() if value is not None}
    subfolder = kwargs.pop("subfolder", "") or ""
    manifest = cached_file(
        name_or_path, INTEGRITY_FILE_NAME, _raise_exceptions_for_missing_entries=False, subfolder=subfolder, **kwargs
    )
    if manifest is None:
        logger.info(
            "%s has no %s (saved by an older version): its weight files are not verified.",
            name_or_path,
            INTEGRITY_FILE_NAME,
        )
        return
    digests = read_integrity_manifest(manifest)
    fix = (
        "Download the model again (from_pretrained(..., force_download=True)) or save it again; "
        "from_pretrained(..., verify_digests=False) loads it without the check."
    )
    for file in files:
        name = os.path.basename(file)
        if name not in digests:
            raise OSError(
                f"{file} is not listed in {manifest}, which records the weight files written by save_pretrained: the "
                f"folder mixes files of two saves. {fix}"
            )
        verify_file_digest(file, digests[name], fix)


def _check_saved_config(name_or_path: str, files: list[str], hub_kwargs: Mapping[str, Any]) -> None:
    """The checkpoint's ``config.json`` must exist and describe an FAPrompt model (else the error names it).

    Raises:
        OSError: No ``config.json`` beside the weights.
        ValueError: A ``config.json`` that is not a JSON object, whose ``model_type`` is not ``"faprompt"``, or that
            lacks ``clip_config``.
    """
    kwargs = {key: value for key, value in hub_kwargs.items() if value is not None}
    subfolder = kwargs.pop("subfolder", "") or ""
    path = cached_file(
        name_or_path, "config.json", _raise_exceptions_for_missing_entries=False, subfolder=subfolder, **kwargs
    )
    if path is None:
        raise OSError(
            f"{name_or_path} holds weights ({', '.join(os.path.basename(file) for file in files)}) but no config.json, "
            "which says how to build the model (and, for a compact checkpoint, which CLIP to load). Restore it from "
            "where the folder came from, or save the model again."
        )
    try:
        saved = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ValueError(f"{path} is not valid JSON ({error}): restore it, or save the model again.") from error
    if not isinstance(saved, dict):
        raise ValueError(
            f"{path} holds a JSON {type(saved).__name__}, not an object of config fields: restore it, or save the "
            "model again."
        )
    model_type = saved.get("model_type")
    if model_type != FAPromptConfig.model_type:
        hint = (
            " This is a CLIP folder: build an FAPrompt model on it with FAPromptModel.from_clip(folder)."
            if model_type == "clip"
            else f' An FAPrompt config has "model_type": "{FAPromptConfig.model_type}".'
        )
        raise ValueError(
            f"{path} has model_type {model_type!r}, not {FAPromptConfig.model_type!r}: it is not an FAPrompt "
            f"checkpoint's config.{hint}"
        )
    if "clip_config" not in saved:
        raise ValueError(
            f"{path} lacks clip_config, the architecture of the CLIP the weights were saved with (every saved FAPrompt "
            "config holds it; without it the ViT-L/14@336 default would be assumed). Restore it, or save the model "
            "again."
        )


def _tensor_names(files: list[str]) -> set[str]:
    """Names of the tensors stored in safetensors files, reading only their headers."""
    names: set[str] = set()
    for file in files:
        try:
            with safe_open(file, framework="pt") as handle:
                names.update(handle.keys())
        except (SafetensorError, OSError) as error:
            raise OSError(
                f"{file} is not a readable safetensors file ({error}): it is truncated or corrupted, e.g. by an "
                "interrupted download or copy. Download it again (from_pretrained(..., force_download=True)) or save "
                "the model again."
            ) from error
    return names


def load_pretrained(
    model_class: type[FAPromptCheckpointMixin],
    base_from_pretrained: Callable[..., Any],
    pretrained_model_name_or_path: str | os.PathLike | None,
    *model_args: Any,
    **kwargs: Any,
) -> PreTrainedModel:
    """Implementation of ``FAPromptModel.from_pretrained`` (see there): load, then check the prompts' values."""
    loaded = _load_pretrained(model_class, base_from_pretrained, pretrained_model_name_or_path, *model_args, **kwargs)
    model = loaded[0] if isinstance(loaded, tuple) else loaded
    check_finite_prompts(model, pretrained_model_name_or_path)
    return loaded


def check_finite_prompts(model: torch.nn.Module, source: Any = None) -> None:
    """Refuse a model whose learned ``prompt_learner.*`` tensors hold NaN or infinite values.

    Args:
        model: A loaded FAPrompt model.
        source: Where it was loaded from, for the message.

    Raises:
        ValueError: Names the first bad tensor, how many values are bad and the checkpoint.
    """
    learner = getattr(model, "prompt_learner", None)
    if learner is None:
        return
    for name, tensor in learner.state_dict().items():
        if tensor.is_floating_point() and tensor.device.type != "meta" and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            where = f" of {os.fspath(source)}" if source is not None else ""
            raise ValueError(
                f"The prompt tensor {PROMPT_PREFIX}{name}{where} (shape {tuple(tensor.shape)}) holds {bad} NaN or "
                "infinite value(s): the training that wrote it diverged, or the file was edited. Use an earlier "
                "checkpoint, or train again."
            )


def _load_pretrained(
    model_class: type[FAPromptCheckpointMixin],
    base_from_pretrained: Callable[..., Any],
    pretrained_model_name_or_path: str | os.PathLike | None,
    *model_args: Any,
    clip: str | os.PathLike | CLIPModel | None = None,
    clip_revision: str | None = None,
    verify_clip_fingerprint: bool = True,
    verify_digests: bool | None = None,
    **kwargs: Any,
) -> PreTrainedModel:
    """:func:`load_pretrained` before the check of the prompts' values (its keyword arguments are documented there)."""
    if pretrained_model_name_or_path is None or kwargs.get("state_dict") is not None:
        if clip is not None:
            raise ValueError("clip= applies to compact checkpoints loaded from a folder or hub id.")
        return base_from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)
    check_model_reference(pretrained_model_name_or_path)  # a missing local folder fails here, not after hub retries
    name_or_path = os.fspath(pretrained_model_name_or_path)
    if os.path.isfile(name_or_path):
        raise ValueError(
            f"from_pretrained takes the model's folder (or hub id), not one of its files: {name_or_path!r} is a file. "
            f"Pass its folder, FAPromptModel.from_pretrained({os.path.dirname(os.path.abspath(name_or_path))!r})."
        )
    hub_kwargs = {key: kwargs.pop(key) for key in _HUB_KWARGS if key in kwargs}
    files = _weight_files(name_or_path, hub_kwargs)
    if files is None:  # no safetensors: transformers raises its own error (or loads a format it knows)
        return base_from_pretrained(name_or_path, *model_args, **hub_kwargs, **kwargs)
    names = _tensor_names(files)  # (a truncated file is named as such before its digest is compared)
    config = kwargs.pop("config", None)
    if config is None:
        _check_saved_config(name_or_path, files, hub_kwargs)
    if not isinstance(config, PreTrainedConfig):  # (remote code may give a config class from another module copy)
        model_kwargs = {key: kwargs.pop(key) for key in _MODEL_ONLY_KWARGS if key in kwargs}
        config, kwargs = model_class.config_class.from_pretrained(
            config or name_or_path, return_unused_kwargs=True, **hub_kwargs, **kwargs
        )
        kwargs.update(model_kwargs)
    _check_learned_tensors(name_or_path, files, config, sorted(model_class.learned_state_keys(config) - names))
    if digests_enabled(verify_digests):
        _verify_weight_files(name_or_path, files, hub_kwargs)
    if _embeds_clip(name_or_path, files, names, config):
        if clip is not None:
            raise ValueError(
                f"{name_or_path} embeds its CLIP; clip= only applies to compact checkpoints (saved with "
                "include_clip=False)."
            )
        return base_from_pretrained(name_or_path, *model_args, config=config, **hub_kwargs, **kwargs)
    return _load_compact(
        base_from_pretrained,
        name_or_path,
        files,
        config,
        clip,
        clip_revision,
        verify_clip_fingerprint,
        hub_kwargs,
        kwargs,
    )


def _check_learned_tensors(name_or_path: str, files: list[str], config: FAPromptConfig, missing: list[str]) -> None:
    """Refuse a checkpoint that lacks learned tensors its config calls for: prompts, or the normal-reference bank.

    Raises:
        ValueError: Names the missing prompt tensors (the checkpoint would load with random prompts), or the missing
            normal-reference bank with the classes and image counts ``config.json`` lists for it.
    """
    if not missing:
        return
    shown = [os.path.basename(file) for file in files]
    prompts = [key for key in missing if key.startswith(PROMPT_PREFIX)]
    if prompts:
        raise ValueError(
            f"The checkpoint {name_or_path} lacks FAPrompt's prompt tensor(s) {prompts} (in {shown}): it would load "
            "with random prompts. Load a complete FAPrompt checkpoint, or build fresh prompts on a CLIP with "
            "FAPromptModel.from_clip(...)."
        )
    listed = ", ".join(
        f"{name!r} ({images} image(s))"
        for name, images in zip(config.normal_reference_classes, config.normal_reference_image_counts, strict=False)
    )
    raise ValueError(
        f"The checkpoint {name_or_path} lacks the normal-reference bank {missing} (in {shown}), but its config.json "
        f"lists normal references of {listed or 'some class'}: it would load with an empty (all-zero) bank. Save the "
        "model again (save_pretrained keeps the bank), or, to load it without references, empty "
        "normal_reference_classes, normal_reference_image_counts and normal_reference_patch_counts in config.json."
    )


def _embeds_clip(name_or_path: str, files: list[str], names: set[str], config: FAPromptConfig) -> bool:
    """Embedded (True) or compact (False), as the config says was saved; files holding the other kind are refused.

    A config without ``weights_include_clip`` (an older save) is embedded when the files hold any CLIP tensor.

    Raises:
        ValueError: The files hold CLIP tensors but the config says compact (a stray tensor would swap in a random
            CLIP), or no CLIP tensor but the config says embedded.
    """
    clip_names = sorted(name for name in names if name.startswith(CLIP_PREFIX))
    recorded = getattr(config, "weights_include_clip", None)
    shown = [os.path.basename(file) for file in files]
    if recorded is False and clip_names:
        listed = clip_names[:5] + (["..."] if len(clip_names) > 5 else [])
        raise ValueError(
            f"{name_or_path} was saved as a compact checkpoint (config.json: weights_include_clip false, the prompts "
            f"only), but {shown} also hold{'s' if len(shown) == 1 else ''} {len(clip_names)} CLIP tensor(s) "
            f"{listed}: a mix of two saves or an edited file, which would load a partly random CLIP. Save the model "
            "again, or remove the clip.* tensors from the file."
        )
    if recorded is True and not clip_names:
        raise ValueError(
            f"{name_or_path} was saved with its CLIP embedded (config.json: weights_include_clip true), but {shown} "
            "hold no clip.* tensor: the weights of a compact save replaced the embedded ones. Save the model again "
            "(include_clip=True), or set weights_include_clip to false in config.json if the folder is meant to be "
            "compact."
        )
    return bool(clip_names) if recorded is None else recorded


def _load_compact(
    base_from_pretrained: Callable[..., Any],
    name_or_path: str,
    files: list[str],
    config: FAPromptConfig,
    clip: str | os.PathLike | CLIPModel | None,
    clip_revision: str | None,
    verify_clip_fingerprint: bool,
    hub_kwargs: dict[str, Any],
    kwargs: dict[str, Any],
) -> PreTrainedModel:
    """Load a compact checkpoint: its prompts plus the CLIP it names (or ``clip``), fingerprint checked."""
    dtype = kwargs.get("dtype", kwargs.get("torch_dtype"))
    what = f"The compact checkpoint {name_or_path}"
    if isinstance(clip, CLIPModel):
        clip_model, source = clip, clip.name_or_path or "the given CLIPModel"
    else:
        source = os.fspath(clip) if clip is not None else config.clip_name_or_path
        if not source:
            raise ValueError(
                f"{what} holds no CLIP and its config names none (clip_name_or_path): pass the CLIP its prompts were "
                "trained on with FAPromptModel.from_pretrained(path, clip='<hub id or folder>')."
            )
        revision = clip_revision if clip_revision is not None else (config.clip_revision if clip is None else None)
        clip_model = _load_clip(source, revision, hub_kwargs, _clip_load_dtype(dtype), what)
    if config.clip_fingerprint and verify_clip_fingerprint:
        found = clip_fingerprint(clip_model)
        if found != config.clip_fingerprint:
            bank = (
                f" and the normal-reference bank of {config.normal_reference_classes} (features of that CLIP)"
                if config.normal_reference_classes
                else ""
            )
            raise ValueError(
                f"{what} was trained on a CLIP with fingerprint {config.clip_fingerprint}, but the CLIP from {source} "
                f"has fingerprint {found}: other weights (another checkpoint or revision, or modified weights), so "
                f"the prompts{bank} would give wrong scores. Pass the CLIP they were trained on with clip='<hub id or "
                "folder>' (and clip_revision=...), or verify_clip_fingerprint=False to use this one anyway."
            )
    elif not config.clip_fingerprint:
        logger.warning("%s records no CLIP fingerprint: the CLIP from %s is not checked.", what, source)
    state_dict = {CLIP_PREFIX + key: value for key, value in clip_model.state_dict().items()}
    for file in files:
        state_dict.update(load_file(file))
    loaded = base_from_pretrained(None, config=config, state_dict=state_dict, **kwargs)
    model = loaded[0] if isinstance(loaded, tuple) else loaded  # (model, loading_info) with output_loading_info
    model.name_or_path = name_or_path
    return loaded


def folder_embeds_clip(folder: str | os.PathLike) -> bool:
    """Whether a saved folder's weights include CLIP tensors (an embedded checkpoint), reading only file headers."""
    files = _weight_files(os.fspath(folder), {})
    if files is None:
        return False
    try:
        recorded = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8")).get("weights_include_clip")
    except (OSError, ValueError, AttributeError):
        recorded = None
    if isinstance(recorded, bool):
        return recorded
    return any(name.startswith(CLIP_PREFIX) for name in _tensor_names(files))


# ----------------------------------------------------------------------------------------------------------------------
# Saving: compact or embedded weights, remote code, nothing changed on the live model
# ----------------------------------------------------------------------------------------------------------------------


def has_hub_clip(config: FAPromptConfig) -> bool:
    """Whether a compact save can name the CLIP: a hub id with a recorded fingerprint."""
    return is_hub_id(config.clip_name_or_path) and bool(config.clip_fingerprint)


def save_model(
    model: PreTrainedModel,
    base_save_pretrained: Callable[..., Any],
    save_directory: str | os.PathLike,
    include_clip: bool | None = True,
    write_digests: bool = True,
    **kwargs: Any,
) -> None:
    """Implementation of ``FAPromptModel.save_pretrained`` (see there)."""
    if include_clip is None:
        include_clip = not has_hub_clip(model.config)
    if kwargs.get("push_to_hub"):
        raise ValueError("Use model.push_to_hub(repo_id) to upload (it writes the model card and the processor too).")
    config = copy.deepcopy(model.config)
    config.weights_include_clip = bool(include_clip)
    state_dict = kwargs.pop("state_dict", None)
    if state_dict is None:
        state_dict = model.state_dict()
    if not include_clip:
        _check_compact(model, config)
        state_dict = {key: value for key, value in state_dict.items() if not key.startswith(CLIP_PREFIX)}
    if not kwargs.get("is_main_process", True):  # other ranks only take part in gathering sharded weights
        base_save_pretrained(save_directory, state_dict=state_dict, **kwargs)
        return
    live_config = model.config
    with staged_directory(save_directory) as staging:
        model.config = config  # transformers writes dtype, architectures and auto_map into the config it saves
        try:
            base_save_pretrained(staging, state_dict=state_dict, **kwargs)
        finally:
            model.config = live_config
        weights = [path.name for path in staging.iterdir() if _STALE_WEIGHTS.match(path.name)]
        if write_digests:
            write_integrity_manifest(staging, weights)
        write_remote_code(staging)
        written = {path.name for path in staging.iterdir()}
    for stale in Path(save_directory).iterdir():  # weights (and digests) of an earlier save in another layout
        if (_STALE_WEIGHTS.match(stale.name) or stale.name == INTEGRITY_FILE_NAME) and stale.name not in written:
            stale.unlink()


def _check_compact(model: PreTrainedModel, config: FAPromptConfig) -> None:
    """Refuse a compact save that could not find its CLIP again, or would find other weights than the model's."""
    if not config.clip_name_or_path or not config.clip_fingerprint:
        raise ValueError(
            "A compact save (include_clip=False) must name the CLIP, but this model does not record where its CLIP "
            "comes from (config.clip_name_or_path / clip_fingerprint: build models with FAPromptModel.from_clip). "
            "Save with include_clip=True to embed the CLIP."
        )
    if any(parameter.dtype == torch.float16 for parameter in model.clip.parameters()):
        logger.warning(
            "The CLIP is in float16, whose rounding changes the fingerprint: it was not compared before this compact "
            "save, which names %s. Save with include_clip=True to embed these exact weights instead.",
            config.clip_name_or_path,
        )
        return
    found = clip_fingerprint(model.clip)
    if found != config.clip_fingerprint:
        raise ValueError(
            f"The model's CLIP no longer matches the one it was built on ({config.clip_name_or_path}, fingerprint "
            f"{config.clip_fingerprint}; now {found}): a compact checkpoint would load other weights. Save with "
            "include_clip=True to embed the CLIP as it is."
        )


# ----------------------------------------------------------------------------------------------------------------------
# The model class's loading and saving methods
# ----------------------------------------------------------------------------------------------------------------------


class FAPromptCheckpointMixin:
    """``from_pretrained``, ``from_clip``, ``save_pretrained`` and ``push_to_hub`` for a FAPrompt model class.

    Mixed in before ``PreTrainedModel``. The model class provides the hook :meth:`learned_state_keys`.
    """

    @classmethod
    def learned_state_keys(cls, config: FAPromptConfig) -> set[str]:
        """Hook: the names of the learned (non-CLIP) tensors a checkpoint of ``config`` must hold."""
        raise NotImplementedError(f"{cls.__name__} must define learned_state_keys(config).")

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike | None,
        *model_args: Any,
        clip: str | os.PathLike | CLIPModel | None = None,
        clip_revision: str | None = None,
        verify_clip_fingerprint: bool = True,
        verify_digests: bool | None = None,
        **kwargs: Any,
    ) -> PreTrainedModel:
        """Load a saved FAPrompt (a folder or hub id), embedded or compact, then freeze CLIP again.

        A checkpoint must hold every prompt tensor (else a ``ValueError`` names the missing ones: fresh prompts are
        :meth:`from_clip`'s job) and, when its config lists normal-reference classes, the bank
        ``normal_references.features`` (else a ``ValueError`` names it and the classes), and its safetensors files
        must be readable (else an ``OSError`` names the file).
        A compact checkpoint (saved with ``include_clip=False``) gets its CLIP from ``config.clip_name_or_path`` at
        ``config.clip_revision`` (honouring ``cache_dir``, ``local_files_only``, ``token`` and ``dtype``), or from
        ``clip``; a CLIP whose :func:`clip_fingerprint` differs from the recorded one is refused.

        Integrity: each weight file is checked against the SHA-256 recorded at save in ``integrity.json`` (a damaged
        file is an ``OSError`` naming it); embedded or compact is decided by ``config.weights_include_clip`` (weight
        files holding the other kind are a ``ValueError``); prompt tensors holding NaN or inf are a ``ValueError``.

        An ``attn_implementation`` is also set explicitly on the CLIP towers (transformers < 5.24 does not always
        pass it on to nested sub-models).

        Args:
            pretrained_model_name_or_path: A folder or hub id (or None with ``config=`` and ``state_dict=``, as in
                transformers).
            *model_args: Passed to transformers.
            clip: For compact checkpoints: the CLIP to use instead of the recorded one (a hub id, a folder or a
                ``CLIPModel``), e.g. a local copy for offline use.
            clip_revision: Revision of ``clip`` (default: the recorded one when ``clip`` is not given).
            verify_clip_fingerprint: Refuse a CLIP whose fingerprint differs from the recorded one.
            verify_digests: Check the weight files against ``integrity.json``; None (default) checks unless the
                environment variable ``FAPROMPT_VERIFY_DIGESTS`` is ``0``.
            **kwargs: transformers' ``from_pretrained`` options (``revision``, ``cache_dir``, ``local_files_only``,
                ``token``, ``dtype``, ``attn_implementation``, ...).

        Returns:
            The model, in eval mode.
        """
        loaded = load_pretrained(
            cls,
            super().from_pretrained,
            pretrained_model_name_or_path,
            *model_args,
            clip=clip,
            clip_revision=clip_revision,
            verify_clip_fingerprint=verify_clip_fingerprint,
            verify_digests=verify_digests,
            **kwargs,
        )
        model = loaded[0] if isinstance(loaded, tuple) else loaded
        model.clip.requires_grad_(False)
        if kwargs.get("attn_implementation"):
            model.set_attn_implementation(kwargs["attn_implementation"])
        return loaded

    @classmethod
    def from_clip(cls, clip: str | os.PathLike | CLIPModel, **config_kwargs: Any) -> PreTrainedModel:
        """Build an FAPrompt with freshly initialised prompts on a CLIP backbone.

        The config records where the CLIP came from (``clip_name_or_path``: the hub id, the absolute folder, or a
        ``CLIPModel``'s ``name_or_path``; ``clip_revision``: the resolved hub commit when known) and its
        fingerprint, so that a later compact save (``save_pretrained(..., include_clip=False)``) can name it. When
        the CLIP (a folder or hub id) has a tokenizer, the prompt template's token ids come from it, as in training;
        fields given in ``config_kwargs`` win.

        Args:
            clip: A transformers ``CLIPModel``, or a hub id / local directory of one.
            **config_kwargs: Overrides of [`FAPromptConfig`] fields; loading options (``dtype``,
                ``attn_implementation``, ``revision``, ``cache_dir``, ``local_files_only``, ``token``) are passed to
                ``from_pretrained`` when ``clip`` is a path or id.

        Returns:
            An ``FAPromptModel`` in training mode whose CLIP weights are ``clip``'s.

        Raises:
            ValueError: The prompt template's token ids do not fit the CLIP's vocabulary (the message says which
                files or fields fix it), or a config field does not fit the CLIP.
            OSError: The CLIP cannot be loaded.
        """
        model = build_from_clip(cls, super().from_pretrained, clip, config_kwargs)
        model.clip.requires_grad_(False)
        model.train()
        return model

    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        *,
        include_clip: bool | None = True,
        write_digests: bool = True,
        **kwargs: Any,
    ) -> None:
        """Save the model, with the code that loads it without this package (``trust_remote_code=True``).

        The folder is written in a staging folder and moved in place when complete; the live model's config is not
        changed. ``config.json`` gets an ``auto_map`` (config, model, image processor, processor) and a
        ``custom_pipelines`` entry for ``"anomaly-detection"``, and the inference modules are copied beside it
        (:func:`faprompt_hf.remote_code.write_remote_code`).

        Args:
            save_directory: The folder (created if needed; other files in it are kept).
            include_clip: True embeds the CLIP's weights (works offline); False writes only FAPrompt's own tensors
                (``prompt_learner.*``, about 16 MB for ViT-L/14, and the normal-reference bank
                ``normal_references.features`` when there is one) and loading fetches the CLIP named in the config;
                None chooses compact when the CLIP is a hub model with a recorded fingerprint, else embedded.
                ``config.json`` records the choice (``weights_include_clip``).
            write_digests: Write ``integrity.json``, the SHA-256 of each weight file, which loading verifies
                (hashing costs about 1 s per GB; ``benchmarks/benchmark_hub.py --digest``).
            **kwargs: transformers' ``save_pretrained`` options (``max_shard_size``, ``state_dict``,
                ``is_main_process``, ``save_function``, ...).

        Raises:
            ValueError: A compact save of a model whose CLIP source is unknown, or whose CLIP changed since.
        """
        save_model(
            self,
            super().save_pretrained,
            save_directory,
            include_clip=include_clip,
            write_digests=write_digests,
            **kwargs,
        )

    def push_to_hub(
        self, repo_id: str, *, include_clip: bool | None = None, processor: Any = None, **kwargs: Any
    ) -> str:
        """Upload the model, a processor, the remote code and a model card to a hub repository, in one commit.

        The upload and the model card are :func:`faprompt_hf.hub.push_model_to_hub`'s. A model loaded as remote
        code where the package is not installed uploads through transformers' own ``push_to_hub`` instead (the
        same files, without a processor or FAPrompt's model card).

        Args:
            repo_id: The repository (created if needed).
            include_clip: As in :meth:`save_pretrained`; the default uploads a compact checkpoint when the CLIP is a
                hub model, else embeds it.
            processor: The ``FAPromptProcessor`` to upload (default: one at ``config.image_size``).
            **kwargs: ``commit_message``, ``private``, ``token``, ``revision``, ``create_pr``, and model-card
                options of :func:`faprompt_hf.hub.write_model_card` (``dataset_name``, ``metrics``, ...).

        Returns:
            The URL of the commit.
        """
        publisher = _hub_publisher
        if publisher is None:  # remote code without the package: transformers' own upload
            return super().push_to_hub(repo_id, **kwargs)
        return publisher(self, repo_id, include_clip=include_clip, processor=processor, **kwargs)


_hub_publisher: Callable[..., str] | None = None


def register_hub_publisher(publisher: Callable[..., str]) -> None:
    """Let ``push_to_hub`` upload through ``publisher``; without one, ``push_to_hub`` is transformers' own.

    The package registers :func:`faprompt_hf.hub.push_model_to_hub` (which adds a processor and a model card) when it
    is imported; a saved folder's remote-code copy of this module has none registered.

    Args:
        publisher: ``publisher(model, repo_id, *, include_clip, processor, **kwargs) -> commit URL``.
    """
    global _hub_publisher
    _hub_publisher = publisher

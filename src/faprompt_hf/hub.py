# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""Models that travel: compact checkpoints, remote code, model cards and hub uploads.

- **Compact checkpoints.** FAPrompt learns a few million prompt parameters on a frozen public CLIP. A compact save
  (``save_pretrained(path, include_clip=False)``) writes only the ``prompt_learner.*`` tensors and records in the
  config where the CLIP comes from (``clip_name_or_path``, ``clip_revision``) and its :func:`clip_fingerprint`;
  loading fetches that CLIP and refuses one whose fingerprint differs.
- **Remote code.** Every saved folder also holds the package's model code and an ``auto_map`` plus a
  ``custom_pipelines`` entry in ``config.json``, so that transformers alone loads it with ``trust_remote_code=True``.
- **Model cards** with hub metadata, and **uploads** of a saved folder.

This module is part of the remote code (the model imports it to load compact checkpoints), so it imports nothing
beyond torch, transformers, huggingface_hub, safetensors and the model's own modules.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging as std_logging
import math
import os
import re
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from huggingface_hub import EvalResult, HfApi, ModelCard, ModelCardData
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from transformers import CLIPModel, PreTrainedConfig
from transformers.utils import cached_file, extract_commit_hash, logging

from ._compat import get_relative_import_files
from .configuration_faprompt import FAPromptConfig
from .file_utils import atomic_write, staged_directory

if TYPE_CHECKING:
    from .modeling_faprompt import FAPromptModel

__all__ = [
    "CLIP_PREFIX",
    "FINGERPRINT_SAMPLES_PER_TENSOR",
    "REMOTE_CODE_MODULES",
    "clip_fingerprint",
    "is_hub_id",
    "describe_clip_source",
    "push_folder_to_hub",
    "record_clip_source",
    "remote_code_files",
    "write_model_card",
    "write_remote_code",
]

logger = logging.get_logger(__name__)

CLIP_PREFIX = "clip."
"""Prefix of the CLIP's tensors in an FAPrompt state dict; a compact checkpoint has none of them."""

PROMPT_PREFIX = "prompt_learner."
"""Prefix of FAPrompt's own (learned) tensors."""

FINGERPRINT_SAMPLES_PER_TENSOR = 4096
"""Evenly spaced values of each CLIP tensor that enter :func:`clip_fingerprint` (all of them in smaller tensors)."""

_FINGERPRINT_SCHEME = f"sha256-bf16-{FINGERPRINT_SAMPLES_PER_TENSOR}"

REMOTE_CODE_MODULES = (
    "configuration_faprompt",
    "modeling_faprompt",
    "image_processing_faprompt",
    "processing_faprompt",
    "pipeline_faprompt",
)
"""Modules a saved folder carries for ``trust_remote_code`` (plus every module they import relatively)."""

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


def is_hub_id(name: str | os.PathLike | None) -> bool:
    """Whether ``name`` looks like a hub repository id (``owner/name``) rather than an existing local path."""
    if not name:
        return False
    name = os.fspath(name)
    return not os.path.exists(name) and re.fullmatch(r"[\w.-]+/[\w.-]+", name) is not None


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
            "id>') or clip=<a CLIPModel>, or allow downloads (local_files_only=False, HF_HUB_OFFLINE unset)."
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


def record_clip_source(model: FAPromptModel, clip: str | os.PathLike | CLIPModel, **hub_kwargs: Any) -> None:
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


def build_from_clip(
    model_class: type[FAPromptModel], base_from_pretrained: Callable[..., Any], clip: Any, config_kwargs: dict
) -> FAPromptModel:
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
    config_kwargs.setdefault("clip_name_or_path", name_or_path)
    config_kwargs.setdefault("clip_revision", revision)
    config_kwargs.setdefault("clip_fingerprint", clip_fingerprint(clip_model))
    config = FAPromptConfig(clip_config=clip_model.config.to_dict(), **config_kwargs)
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


def expected_prompt_keys(config: FAPromptConfig) -> set[str]:
    """The ``prompt_learner.*`` tensor names an FAPrompt checkpoint of ``config`` must hold."""
    from .modeling_faprompt import FAPromptPromptLearner

    with torch.device("meta"):
        learner = FAPromptPromptLearner(config)
    return {PROMPT_PREFIX + key for key in learner.state_dict()}


def load_pretrained(
    model_class: type[FAPromptModel],
    base_from_pretrained: Callable[..., Any],
    pretrained_model_name_or_path: str | os.PathLike | None,
    *model_args: Any,
    clip: str | os.PathLike | CLIPModel | None = None,
    clip_revision: str | None = None,
    verify_clip_fingerprint: bool = True,
    **kwargs: Any,
) -> FAPromptModel:
    """Implementation of ``FAPromptModel.from_pretrained`` (see there)."""
    if pretrained_model_name_or_path is None or kwargs.get("state_dict") is not None:
        if clip is not None:
            raise ValueError("clip= applies to compact checkpoints loaded from a folder or hub id.")
        return base_from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)
    name_or_path = os.fspath(pretrained_model_name_or_path)
    hub_kwargs = {key: kwargs.pop(key) for key in _HUB_KWARGS if key in kwargs}
    files = _weight_files(name_or_path, hub_kwargs)
    if files is None:  # no safetensors: transformers raises its own error (or loads a format it knows)
        return base_from_pretrained(name_or_path, *model_args, **hub_kwargs, **kwargs)
    names = _tensor_names(files)
    config = kwargs.pop("config", None)
    if not isinstance(config, PreTrainedConfig):  # (remote code may give a config class from another module copy)
        model_kwargs = {key: kwargs.pop(key) for key in _MODEL_ONLY_KWARGS if key in kwargs}
        config, kwargs = model_class.config_class.from_pretrained(
            config or name_or_path, return_unused_kwargs=True, **hub_kwargs, **kwargs
        )
        kwargs.update(model_kwargs)
    missing = sorted(expected_prompt_keys(config) - names)
    if missing:
        raise ValueError(
            f"The checkpoint {name_or_path} lacks FAPrompt's prompt tensor(s) {missing} (in "
            f"{[os.path.basename(file) for file in files]}): it would load with random prompts. Load a complete "
            "FAPrompt checkpoint, or build fresh prompts on a CLIP with FAPromptModel.from_clip(...)."
        )
    if any(name.startswith(CLIP_PREFIX) for name in names):
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
) -> FAPromptModel:
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
            raise ValueError(
                f"{what} was trained on a CLIP with fingerprint {config.clip_fingerprint}, but the CLIP from {source} "
                f"has fingerprint {found}: other weights (another checkpoint or revision, or modified weights), so "
                "the prompts would give wrong scores. Pass the CLIP they were trained on with clip='<hub id or folder>'"
                " (and clip_revision=...), or verify_clip_fingerprint=False to use this one anyway."
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


# ----------------------------------------------------------------------------------------------------------------------
# Saving: compact or embedded weights, remote code, nothing changed on the live model
# ----------------------------------------------------------------------------------------------------------------------


def _remote_code_classes() -> dict[str, type]:
    """The classes transformers' Auto classes and pipeline load as remote code."""
    from .image_processing_faprompt import FAPromptImageProcessor
    from .modeling_faprompt import FAPromptModel
    from .pipeline_faprompt import FAPromptAnomalyDetectionPipeline
    from .processing_faprompt import FAPromptProcessor

    return {
        "AutoConfig": FAPromptConfig,
        "AutoModel": FAPromptModel,
        "AutoImageProcessor": FAPromptImageProcessor,
        "AutoProcessor": FAPromptProcessor,
        "pipeline": FAPromptAnomalyDetectionPipeline,
    }


def _class_reference(cls: type) -> str:
    """``module.Class`` as transformers' ``auto_map`` names a class (the module file's name, without folders)."""
    return f"{cls.__module__.rpartition('.')[2]}.{cls.__name__}"


def remote_code_files() -> list[Path]:
    """The source files a saved folder needs for remote code: :data:`REMOTE_CODE_MODULES` and their imports.

    Raises:
        FileNotFoundError: A relative import does not resolve to a module file of the package (transformers copies
            only flat module files, so remote code cannot import a sub-package).
    """
    package_dir = Path(__file__).resolve().parent
    files: list[Path] = []
    for module in REMOTE_CODE_MODULES:
        entry = package_dir / f"{module}.py"
        for file in [entry, *map(Path, get_relative_import_files(entry))]:
            if not file.is_file():
                raise FileNotFoundError(
                    f"Remote code needs {file.name}, imported relatively by a module of {REMOTE_CODE_MODULES}, but "
                    f"{file} does not exist: remote code can only import flat modules of {package_dir}."
                )
            if file not in files:
                files.append(file)
    return files


def write_remote_code(folder: str | os.PathLike) -> list[str]:
    """Copy the remote code into ``folder`` and add ``auto_map`` and ``custom_pipelines`` to its ``config.json``.

    Args:
        folder: A saved model folder (with ``config.json``).

    Returns:
        The names of the files copied.
    """
    from .pipeline_faprompt import ANOMALY_DETECTION_TASK

    folder = Path(folder)
    names = []
    for file in remote_code_files():
        with atomic_write(folder / file.name, "wb") as handle:
            handle.write(file.read_bytes())
        names.append(file.name)
    classes = _remote_code_classes()
    config_path = folder / "config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["auto_map"] = {name: _class_reference(cls) for name, cls in classes.items() if name.startswith("Auto")}
    config["custom_pipelines"] = {
        ANOMALY_DETECTION_TASK: {"impl": _class_reference(classes["pipeline"]), "pt": ["AutoModel"], "type": "image"}
    }
    with atomic_write(config_path) as handle:
        handle.write(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return names


def has_hub_clip(config: FAPromptConfig) -> bool:
    """Whether a compact save can name the CLIP: a hub id with a recorded fingerprint."""
    return is_hub_id(config.clip_name_or_path) and bool(config.clip_fingerprint)


def save_model(
    model: FAPromptModel,
    base_save_pretrained: Callable[..., Any],
    save_directory: str | os.PathLike,
    include_clip: bool | None = True,
    **kwargs: Any,
) -> None:
    """Implementation of ``FAPromptModel.save_pretrained`` (see there)."""
    if include_clip is None:
        include_clip = not has_hub_clip(model.config)
    if kwargs.get("push_to_hub"):
        raise ValueError("Use model.push_to_hub(repo_id) to upload (it writes the model card and the processor too).")
    config = copy.deepcopy(model.config)
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
        write_remote_code(staging)
        written = {path.name for path in staging.iterdir()}
    for stale in Path(save_directory).iterdir():  # weights of an earlier save in another layout
        if _STALE_WEIGHTS.match(stale.name) and stale.name not in written:
            stale.unlink()


def _check_compact(model: FAPromptModel, config: FAPromptConfig) -> None:
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
# Model cards and uploads
# ----------------------------------------------------------------------------------------------------------------------


def _read_config(output_dir: Path) -> dict[str, Any]:
    path = output_dir / "config.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def write_model_card(
    output_dir: str | os.PathLike,
    args: Any = None,
    base_model: str | None = None,
    dataset_name: str | None = None,
    dataset_summary: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Mapping[str, float]] | None = None,
    metrics_description: str | None = None,
    threshold_description: str | None = None,
    repo_id: str | None = None,
) -> Path:
    """Write ``README.md``, a hub model card: YAML metadata (parsed by ``huggingface_hub.ModelCard``) and usage.

    Args:
        output_dir: The saved model folder (its ``config.json`` gives the CLIP, the threshold and the checkpoint kind).
        args: The ``FAPromptTrainingArguments`` of a training run (its hyper-parameters are listed), or None.
        base_model: The CLIP the prompts were learned on (default: the config's ``clip_name_or_path``); a hub id
            goes into the metadata's ``base_model``.
        dataset_name: The training data (a hub id goes into the metadata's ``datasets``).
        dataset_summary: The output of ``faprompt_hf.training.validate_training_dataset``.
        metrics: Optional per-class metrics (``compute_per_class_metrics``' output, with a ``"mean"`` row): a table
            in the body, and the mean row as ``model-index`` results.
        metrics_description: What the metrics were measured on (also the ``model-index`` dataset name).
        threshold_description: How ``anomaly_threshold`` was set (e.g. "calibrate_threshold, 0.99 quantile of 200
            normal images").
        repo_id: The hub repository, for the usage snippets (default: a placeholder).

    Returns:
        The path of the model card.
    """
    from .metrics import MEAN_KEY, format_metrics_table, mean_over_classes

    output_dir = Path(output_dir)
    config = _read_config(output_dir)
    base_model = base_model or config.get("clip_name_or_path")
    repo = repo_id or "<this repository>"
    compact = bool(config.get("clip_name_or_path")) and not _folder_embeds_clip(output_dir)
    eval_results = None
    if metrics:
        mean = dict(metrics[MEAN_KEY]) if MEAN_KEY in metrics else mean_over_classes(dict(metrics))
        eval_results = [
            EvalResult(
                task_type="anomaly-detection",
                dataset_type=dataset_name if is_hub_id(dataset_name) else "custom",
                dataset_name=metrics_description or "evaluation",
                metric_type=key,
                metric_value=float(value),
            )
            for key, value in mean.items()
            if not key.endswith("threshold") and isinstance(value, (int, float)) and math.isfinite(value)
        ] or None
    card_data = ModelCardData(
        library_name="transformers",
        pipeline_tag="image-segmentation",
        tags=["anomaly-detection", "zero-shot", "faprompt", "faprompt-hf", "custom_code"],
        base_model=base_model if is_hub_id(base_model) else None,
        datasets=[dataset_name] if is_hub_id(dataset_name) else None,
        license="apache-2.0",
        model_name=repo_id or output_dir.resolve().name,
        eval_results=eval_results,
    )
    sections = [
        f"# FAPrompt prompts for {base_model or 'CLIP'}",
        "Fine-grained abnormality prompts (FAPrompt, Zhu et al., ICCV 2025, arXiv 2410.10289) learned on a frozen "
        "CLIP for zero-shot anomaly detection and localisation: the model scores images and returns pixel anomaly "
        "maps for products it never saw in training.",
        f"- Base model: {base_model or 'not recorded'}"
        + (f" (revision {config['clip_revision']})" if config.get("clip_revision") else ""),
        "- Checkpoint: "
        + (
            "compact: only FAPrompt's prompts; the CLIP above is downloaded on first load and checked against the "
            f"fingerprint `{config.get('clip_fingerprint')}`."
            if compact
            else "embedded: the CLIP weights are included (works fully offline)."
        ),
    ]
    if args is not None or dataset_name or dataset_summary:
        summary = dict(dataset_summary or {})
        data_lines = [f"- Dataset: {dataset_name or 'not recorded'}"]
        if summary:
            data_lines.append(
                f"- {summary['num_images']} images, {summary['num_anomalous']} of them anomalous with ground-truth "
                "masks"
            )
            if summary.get("class_names"):
                data_lines.append(f"- Classes: {', '.join(summary['class_names'])}")
        sections.append("## Training data\n\n" + "\n".join(data_lines))
    if args is not None:
        hyper_parameters = {
            "epochs": args.num_train_epochs if args.max_steps <= 0 else f"max {args.max_steps} steps",
            "batch size per process": args.per_device_train_batch_size,
            "gradient accumulation steps": args.gradient_accumulation_steps,
            "optimizer": f"Adam (lr {args.learning_rate:g}, betas ({args.adam_beta1:g}, {args.adam_beta2:g}))",
            "image size": args.image_size,
            "seed": args.seed,
            "mixed precision": args.mixed_precision or "no",
        }
        sections.append(
            "## Training hyper-parameters\n\n| parameter | value |\n|---|---|\n"
            + "\n".join(f"| {key} | {value} |" for key, value in hyper_parameters.items())
        )
    if metrics:
        heading = "## Evaluation" + (f"\n\n{metrics_description}" if metrics_description else "")
        sections.append(f"{heading}\n\n{format_metrics_table(metrics)}")
    threshold = config.get("anomaly_threshold")
    if threshold is None:
        threshold_text = (
            "No threshold is stored: `is_anomalous` uses 0.5 (uncalibrated, with a warning). Calibrate one on your "
            "own normal images with `faprompt_hf.calibrate_threshold(detector, normal_images)` (or from labelled "
            "scores with `threshold_from_f1`), or pass `threshold=` to the pipeline."
        )
    else:
        threshold_text = (
            f"`is_anomalous` is `score >= {threshold:.6g}` (`anomaly_threshold` in `config.json`), set by "
            f"{threshold_description or 'the uploader (calibrate_threshold or threshold_from_f1)'}. Scores depend on "
            "the product: recalibrate on your own normal images with `faprompt_hf.calibrate_threshold`."
        )
    sections.append(f"## Decision threshold\n\n{threshold_text}")
    sections.append(
        "## Usage\n\nWith the package (from a clone of faprompt-hf: `pip install -e .`):\n\n```python\n"
        "import faprompt_hf  # registers the model and the pipeline\n"
        "from transformers import pipeline\n\n"
        f'detector = pipeline("anomaly-detection", model="{repo}")\n'
        'result = detector("part.png")\n'
        'result["score"], result["is_anomalous"], result["anomaly_map"].shape\n```\n\n'
        "Without the package, with transformers alone (`pip install transformers torch pillow scipy`; this runs "
        "model code stored in this repository):\n\n```python\n"
        "from transformers import AutoModel, AutoProcessor, pipeline\n\n"
        f'detector = pipeline("anomaly-detection", model="{repo}", trust_remote_code=True)\n'
        f'model = AutoModel.from_pretrained("{repo}", trust_remote_code=True)\n'
        f'processor = AutoProcessor.from_pretrained("{repo}", trust_remote_code=True)\n'
        'outputs = model(**processor(images=image, return_tensors="pt"))\n'
        "outputs.image_scores, outputs.anomaly_maps\n```"
    )
    card = ModelCard(f"---\n{card_data.to_yaml()}\n---\n\n" + "\n\n".join(sections) + "\n")
    path = output_dir / "README.md"
    with atomic_write(path) as handle:
        handle.write(str(card))
    return path


def _folder_embeds_clip(folder: Path) -> bool:
    """Whether a saved folder's weights include CLIP tensors."""
    files = _weight_files(str(folder), {})
    return files is not None and any(name.startswith(CLIP_PREFIX) for name in _tensor_names(files))


def push_folder_to_hub(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    commit_message: str | None = None,
    private: bool | None = None,
    token: bool | str | None = None,
    revision: str | None = None,
    create_pr: bool = False,
    ignore_patterns: Sequence[str] | None = None,
) -> str:
    """Upload a saved model folder to the hub in one commit (``HfApi.create_repo`` + ``HfApi.upload_folder``).

    Args:
        folder: The folder (model, processor, model card, remote code).
        repo_id: The hub repository (created if needed).
        commit_message: The commit message.
        private: Create the repository as private.
        token: Hub token (default: the logged-in one).
        revision: Branch to commit to.
        create_pr: Open a pull request instead of committing.
        ignore_patterns: Paths of the folder not to upload (glob patterns, e.g. ``["checkpoints/*"]``).

    Returns:
        The URL of the commit.
    """
    api = HfApi(token=token) if token not in (None, True) else HfApi()
    repo = api.create_repo(repo_id, private=private, exist_ok=True)
    info = api.upload_folder(
        repo_id=repo.repo_id,
        folder_path=os.fspath(folder),
        commit_message=commit_message or "Upload FAPrompt model with faprompt-hf",
        revision=revision,
        create_pr=create_pr,
        ignore_patterns=list(ignore_patterns) if ignore_patterns else None,
    )
    logger.info("Pushed %s to %s", folder, repo.repo_id)
    return str(getattr(info, "commit_url", info))


def push_model_to_hub(
    model: FAPromptModel,
    repo_id: str,
    *,
    include_clip: bool | None = None,
    processor: Any = None,
    commit_message: str | None = None,
    private: bool | None = None,
    token: bool | str | None = None,
    revision: str | None = None,
    create_pr: bool = False,
    **card_kwargs: Any,
) -> str:
    """Implementation of ``FAPromptModel.push_to_hub`` (see there)."""
    from .image_processing_faprompt import FAPromptImageProcessor
    from .processing_faprompt import FAPromptProcessor

    if processor is None:
        processor = FAPromptProcessor(image_processor=FAPromptImageProcessor(size=model.config.image_size))
    with tempfile.TemporaryDirectory(prefix="faprompt-push-") as folder:
        model.save_pretrained(folder, include_clip=include_clip)
        processor.save_pretrained(folder)
        write_model_card(folder, repo_id=repo_id, **card_kwargs)
        return push_folder_to_hub(
            folder,
            repo_id,
            commit_message=commit_message,
            private=private,
            token=token,
            revision=revision,
            create_pr=create_pr,
        )

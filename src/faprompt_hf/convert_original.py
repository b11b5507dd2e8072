# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""Load the authors' original checkpoints: an ``epoch_N.pth`` prompt learner plus an OpenAI-format CLIP.

Files are read with ``torch.load(..., weights_only=True)`` only; nothing in them is executed.
"""

from __future__ import annotations

import math
import os
import re
import zipfile
from typing import Any

import torch
from transformers import CLIPConfig, CLIPModel

from .configuration_faprompt import FAPromptConfig
from .modeling_faprompt import FAPromptModel

__all__ = ["clip_from_openai_state_dict", "convert_original_checkpoint", "openai_clip_config", "load_torch_file"]

# The released code replaces the attention of blocks [-1 .. -19] (its DPAM_layer = 20).
_ORIGINAL_VV_BLOCKS = 19

_OPENAI_LAYER_KEYS = {
    "attn.out_proj.weight": "self_attn.out_proj.weight",
    "attn.out_proj.bias": "self_attn.out_proj.bias",
    "ln_1.weight": "layer_norm1.weight",
    "ln_1.bias": "layer_norm1.bias",
    "ln_2.weight": "layer_norm2.weight",
    "ln_2.bias": "layer_norm2.bias",
    "mlp.c_fc.weight": "mlp.fc1.weight",
    "mlp.c_fc.bias": "mlp.fc1.bias",
    "mlp.c_proj.weight": "mlp.fc2.weight",
    "mlp.c_proj.bias": "mlp.fc2.bias",
}
_OPENAI_TOP_KEYS = {
    "visual.class_embedding": "vision_model.embeddings.class_embedding",
    "visual.positional_embedding": "vision_model.embeddings.position_embedding.weight",
    "visual.conv1.weight": "vision_model.embeddings.patch_embedding.weight",
    "visual.ln_pre.weight": "vision_model.pre_layrnorm.weight",
    "visual.ln_pre.bias": "vision_model.pre_layrnorm.bias",
    "visual.ln_post.weight": "vision_model.post_layernorm.weight",
    "visual.ln_post.bias": "vision_model.post_layernorm.bias",
    "positional_embedding": "text_model.embeddings.position_embedding.weight",
    "token_embedding.weight": "text_model.embeddings.token_embedding.weight",
    "ln_final.weight": "text_model.final_layer_norm.weight",
    "ln_final.bias": "text_model.final_layer_norm.bias",
    "logit_scale": "logit_scale",
}
# OpenAI's unused metadata entries in some exports.
_OPENAI_IGNORED_KEYS = {"input_resolution", "context_length", "vocab_size"}


def load_torch_file(path: str | os.PathLike, what: str) -> Any:
    """Read a PyTorch file safely (``weights_only=True``), with errors that name the file and the fix.

    Args:
        path: The file.
        what: What the file should be, for messages (e.g. "original FAPrompt checkpoint").

    Returns:
        The loaded object.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} not found: {path!r}.")
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            if any(name.endswith("constants.pkl") for name in archive.namelist()):
                raise ValueError(
                    f"{path!r} is a TorchScript archive (like OpenAI's released ViT-L-14-336px.pt); loading it would "
                    "execute its code, which this package never does. Pass the same weights as a transformers CLIP "
                    "instead (--clip openai/clip-vit-large-patch14-336), or re-save the archive's state_dict with "
                    "torch.save(torch.jit.load(path).state_dict(), 'clip_state_dict.pt') in a trusted environment."
                )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unpickling failure gets the same clear message
        raise ValueError(f"Cannot read {what} {path!r} with torch.load(weights_only=True): {error}") from error


def _count_blocks(state_dict: dict[str, torch.Tensor], prefix: str) -> int:
    pattern = re.compile(rf"^{re.escape(prefix)}\.resblocks\.(\d+)\.")
    indices = {int(match.group(1)) for key in state_dict if (match := pattern.match(key))}
    return max(indices) + 1 if indices else 0


def openai_clip_config(state_dict: dict[str, torch.Tensor]) -> CLIPConfig:
    """Infer the transformers ``CLIPConfig`` of an OpenAI-format CLIP ViT state dict.

    Args:
        state_dict: Keys as in OpenAI's ``ViT-L-14-336px.pt`` (``visual.*``, ``transformer.*``, ...).

    Returns:
        The matching ``CLIPConfig`` (QuickGELU, LayerNorm eps 1e-5, heads = width / 64).
    """
    for key in ("visual.conv1.weight", "visual.positional_embedding", "ln_final.weight", "text_projection"):
        if key not in state_dict:
            raise KeyError(f"OpenAI CLIP state dict lacks {key!r}: is this a ViT CLIP in OpenAI's key layout?")
    vision_width, _, patch_size, _ = state_dict["visual.conv1.weight"].shape
    grid = round((state_dict["visual.positional_embedding"].shape[0] - 1) ** 0.5)
    text_width = state_dict["ln_final.weight"].shape[0]
    projection_dim = state_dict["text_projection"].shape[1]
    return CLIPConfig(
        vision_config={
            "hidden_size": vision_width,
            "intermediate_size": state_dict["visual.transformer.resblocks.0.mlp.c_fc.weight"].shape[0],
            "num_hidden_layers": _count_blocks(state_dict, "visual.transformer"),
            "num_attention_heads": vision_width // 64,
            "image_size": grid * patch_size,
            "patch_size": patch_size,
            "projection_dim": projection_dim,
        },
        text_config={
            "hidden_size": text_width,
            "intermediate_size": state_dict["transformer.resblocks.0.mlp.c_fc.weight"].shape[0],
            "num_hidden_layers": _count_blocks(state_dict, "transformer"),
            "num_attention_heads": text_width // 64,
            "max_position_embeddings": state_dict["positional_embedding"].shape[0],
            "vocab_size": state_dict["token_embedding.weight"].shape[0],
            "projection_dim": projection_dim,
        },
        projection_dim=projection_dim,
    )


def clip_from_openai_state_dict(state_dict: dict[str, torch.Tensor]) -> CLIPModel:
    """Build a float32 transformers ``CLIPModel`` from an OpenAI-format CLIP ViT state dict.

    Args:
        state_dict: OpenAI key layout: attention packs q, k, v in ``in_proj_*``; ``visual.proj`` and
            ``text_projection`` are applied as ``x @ W``.

    Returns:
        The ``CLIPModel`` in eval mode.

    Raises:
        KeyError: A tensor is missing or unexpected (the message names it).
        ValueError: A tensor has the wrong shape (the message names it).
    """
    config = openai_clip_config(state_dict)
    converted: dict[str, torch.Tensor] = {}
    unexpected = []
    for key, value in state_dict.items():
        value = value.float()
        if key in _OPENAI_TOP_KEYS:
            converted[_OPENAI_TOP_KEYS[key]] = value
        elif key == "visual.proj":
            converted["visual_projection.weight"] = value.T
        elif key == "text_projection":
            converted["text_projection.weight"] = value.T
        elif match := re.match(r"^(visual\.transformer|transformer)\.resblocks\.(\d+)\.(.+)$", key):
            tower = "vision_model" if match.group(1) == "visual.transformer" else "text_model"
            prefix, name = f"{tower}.encoder.layers.{match.group(2)}.", match.group(3)
            if name in ("attn.in_proj_weight", "attn.in_proj_bias"):
                kind = name.rsplit("_", 1)[1]
                for part, chunk in zip(("q", "k", "v"), value.chunk(3, dim=0), strict=True):
                    converted[f"{prefix}self_attn.{part}_proj.{kind}"] = chunk
            elif name in _OPENAI_LAYER_KEYS:
                converted[prefix + _OPENAI_LAYER_KEYS[name]] = value
            else:
                unexpected.append(key)
        elif key not in _OPENAI_IGNORED_KEYS:
            unexpected.append(key)
    if unexpected:
        raise KeyError(f"Unexpected tensors in the OpenAI CLIP state dict: {sorted(unexpected)[:5]}.")
    with torch.device("meta"):
        model = CLIPModel(config)
    expected = {key: tensor.shape for key, tensor in model.state_dict().items()}
    missing = sorted(set(expected) - set(converted))
    if missing:
        raise KeyError(f"The OpenAI CLIP state dict lacks tensors for {missing[:5]}.")
    for key, value in converted.items():
        if key not in expected:
            raise KeyError(f"Converted tensor {key!r} has no place in CLIPModel.")
        if value.shape != expected[key]:
            raise ValueError(f"Tensor {key!r} has shape {tuple(value.shape)}; CLIPModel needs {tuple(expected[key])}.")
    model.load_state_dict(converted, assign=True, strict=False)
    model.text_model.embeddings.position_ids = torch.arange(config.text_config.max_position_embeddings)[None]
    model.vision_model.embeddings.position_ids = torch.arange(model.vision_model.embeddings.num_positions)[None]
    return model.eval()


def _load_clip(clip: str | os.PathLike | CLIPModel) -> CLIPModel:
    """A float32 ``CLIPModel`` from an OpenAI-format file, a transformers id or directory, or a model."""
    if isinstance(clip, CLIPModel):
        return clip.float()
    path = os.fspath(clip)
    if os.path.isfile(path):
        state_dict = load_torch_file(path, "OpenAI-format CLIP file")
        if isinstance(state_dict, dict) and "state_dict" in state_dict:
            state_dict = state_dict["state_dict"]
        if not isinstance(state_dict, dict):
            raise ValueError(f"{path!r} does not hold a CLIP state dict.")
        return clip_from_openai_state_dict(state_dict)
    return CLIPModel.from_pretrained(path, dtype=torch.float32)


def _parse_template(ids: torch.Tensor, context_lengths: list[int], key: str) -> tuple[list[int], list[int]]:
    """Split template ids ``SOT ctx... suffix... EOT`` (padded to 77) into placeholder ids and suffix ids."""
    ids = ids.flatten().long()
    eot = int(ids.argmax())  # the original locates EOT as the largest id
    tokens = ids[: eot + 1].tolist()
    start, placeholders = 1, []
    for length in context_lengths:
        slot = tokens[start : start + length]
        if len(set(slot)) != 1:
            raise ValueError(f"{key}: expected {length} identical placeholder tokens at {start}, found {slot}.")
        placeholders.append(slot[0])
        start += length
    return placeholders, tokens[start:-1]


_REQUIRED_KEYS = (
    "ctx_pos",
    "ctx_neg",
    "patch_meta_net.linear1.weight",
    "patch_meta_net.linear2.weight",
    "tokenized_prompts_pos",
    "tokenized_prompts_neg",
)
_DEEP_PROMPT_PREFIX = "compound_prompts_text."


def _prompt_learner_state(checkpoint: Any, path: str) -> dict[str, torch.Tensor]:
    """The ``prompt_learner`` state dict of a loaded ``epoch_N.pth`` (``module.`` prefixes removed), checked.

    Raises:
        KeyError: No ``prompt_learner`` entry, or a required tensor is missing.
        ValueError: The file or its entry is not a dict, a key is not a string, a value is not a tensor, or a
            floating-point tensor holds NaN or infinite values.
    """
    if not isinstance(checkpoint, dict):
        raise ValueError(
            f"{path!r} holds a {type(checkpoint).__name__}; an original FAPrompt epoch_N.pth holds a dict "
            "{'prompt_learner': state_dict}. Pass the epoch_N.pth the original training wrote."
        )
    if "prompt_learner" not in checkpoint:
        raise KeyError(
            f"{path!r} has no 'prompt_learner' entry (its keys: {sorted(map(str, checkpoint))[:10]}): is it an "
            "original epoch_N.pth? A model saved with save_pretrained loads with FAPromptModel.from_pretrained."
        )
    state = checkpoint["prompt_learner"]
    if not isinstance(state, dict):
        raise ValueError(
            f"{path!r}: 'prompt_learner' holds a {type(state).__name__}; expected a state dict of tensors."
        )
    source: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if not isinstance(key, str):
            raise ValueError(f"{path!r}: 'prompt_learner' has the key {key!r} ({type(key).__name__}); keys are names.")
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"{path!r}: prompt_learner[{key!r}] holds a {type(value).__name__}; expected a tensor.")
        if value.is_floating_point() and not torch.isfinite(value).all():
            bad = int(value.numel() - torch.isfinite(value).sum())
            raise ValueError(
                f"{path!r}: prompt_learner[{key!r}] (shape {tuple(value.shape)}) holds {bad} NaN or infinite "
                "value(s): the training that wrote it diverged. Use an earlier checkpoint."
            )
        source[key.removeprefix("module.")] = value
    for key in _REQUIRED_KEYS:
        if key not in source:
            raise KeyError(f"Original checkpoint {path!r} lacks {key!r}.")
    return source


def _deep_prompt_keys(source: dict[str, torch.Tensor], path: str) -> list[str]:
    """The ``compound_prompts_text.<i>`` keys in the order of ``i``, which must run 0..n-1.

    Raises:
        ValueError: A key whose suffix is not an integer, or missing or repeated numbers.
    """
    numbered: dict[int, str] = {}
    for key in source:
        if not key.startswith(_DEEP_PROMPT_PREFIX):
            continue
        suffix = key.removeprefix(_DEEP_PROMPT_PREFIX)
        if not suffix.isdigit() or int(suffix) in numbered:
            raise ValueError(
                f"{path!r}: deep-prompt key {key!r} is not {_DEEP_PROMPT_PREFIX}<integer> (or repeats a number); "
                f"expected {_DEEP_PROMPT_PREFIX}0 ... {_DEEP_PROMPT_PREFIX}<n-1>."
            )
        numbered[int(suffix)] = key
    if sorted(numbered) != list(range(len(numbered))):
        raise ValueError(
            f"{path!r}: deep-prompt keys are numbered {sorted(numbered)}; expected {_DEEP_PROMPT_PREFIX}0 ... "
            f"{_DEEP_PROMPT_PREFIX}{len(numbered) - 1} without gaps."
        )
    return [numbered[index] for index in range(len(numbered))]


def _check_prompt_shapes(
    source: dict[str, torch.Tensor], deep_keys: list[str], clip_config: CLIPConfig, path: str
) -> None:
    """Check the ranks and widths the conversion reads, so that a malformed file fails naming the key.

    Args:
        source: The prompt learner's tensors.
        deep_keys: Its deep-prompt keys, in order.
        clip_config: The config of the CLIP it is converted with (text width, projection size, vocabulary).
        path: The checkpoint, for messages.

    Raises:
        ValueError: A tensor whose rank, width or leading dimensions differ from the released layout, or token ids
            outside the CLIP vocabulary (the message names the key, its shape and the expected shape).
    """
    width = clip_config.text_config.hidden_size
    projection_dim = clip_config.projection_dim
    vocab_size = clip_config.text_config.vocab_size

    def fail(key: str, expected: str) -> ValueError:
        return ValueError(
            f"{path!r}: prompt_learner[{key!r}] has shape {tuple(source[key].shape)}; the released layout is "
            f"{expected} (text width {width}). Is this an original FAPrompt checkpoint for this CLIP?"
        )

    ctx_pos, ctx_neg = source["ctx_pos"], source["ctx_neg"]
    if ctx_pos.ndim < 2 or ctx_pos.shape[-1] != width or math.prod(ctx_pos.shape[:-2]) != 1:
        raise fail("ctx_pos", f"(1, 1, n_ctx, {width})")
    if ctx_neg.ndim < 3 or ctx_neg.shape[-1] != width or math.prod(ctx_neg.shape[:-3]) != 1:
        raise fail("ctx_neg", f"(1, num_prompts, n_ctx, {width})")
    for key in deep_keys:
        tensor = source[key]
        if tensor.ndim != 2 or tensor.shape[-1] != width or tensor.shape != source[deep_keys[0]].shape:
            raise fail(key, f"(length, {width}), the same for every {_DEEP_PROMPT_PREFIX}<i>")
    for key in ("patch_meta_net.linear1.weight", "patch_meta_net.linear2.weight"):
        if source[key].ndim != 2:
            raise fail(key, "(out_features, in_features)")
    hidden, inputs = source["patch_meta_net.linear1.weight"].shape
    if inputs < projection_dim or inputs % projection_dim or hidden < 1 or inputs % hidden:
        raise fail(
            "patch_meta_net.linear1.weight",
            f"(M * {projection_dim} / reduction, M * {projection_dim}) for M prior patches of the projection size "
            f"{projection_dim}",
        )
    for key, rank in (("tokenized_prompts_pos", 1), ("tokenized_prompts_neg", 2)):
        tensor = source[key]
        layout = "(1, 1, 77)" if rank == 1 else "(1, num_prompts, 77)"
        if tensor.ndim < rank or tensor.is_floating_point() or tensor.is_complex() or tensor.numel() == 0:
            raise fail(key, f"{layout} integer token ids")
        if int(tensor.min()) < 0 or int(tensor.max()) >= vocab_size:
            raise fail(key, f"{layout} token ids in [0, {vocab_size}) (this CLIP's vocabulary)")


def convert_original_checkpoint(
    prompt_learner_path: str | os.PathLike,
    clip: str | os.PathLike | CLIPModel,
    **config_kwargs: Any,
) -> FAPromptModel:
    """Build an ``FAPromptModel`` from the authors' released training checkpoint.

    Args:
        prompt_learner_path: An original ``epoch_N.pth``: ``{"prompt_learner": state_dict}``.
        clip: The CLIP it was trained on: an OpenAI-format state-dict file (the key layout of
            ``ViT-L-14-336px.pt``), a transformers CLIP id or directory, or a ``CLIPModel``.
        **config_kwargs: Overrides of [`FAPromptConfig`] fields (e.g. ``gaussian_sigma``, ``image_size``).

    Returns:
        A float32 ``FAPromptModel`` in eval mode that reproduces the original's outputs: its prior selects the
        first M patches and its deep prompts are rounded to float16 where inserted, as the released code does
        (``prior_patch_selection="first_m"``, ``round_deep_prompts_to_float16=True``).

    Raises:
        KeyError: A tensor is missing or unexpected, or the file has no ``prompt_learner`` entry (the message names
            the key).
        ValueError: The file does not hold the dicts of an ``epoch_N.pth``; a value is not a tensor; a tensor has
            the wrong rank or shape (the message names the key and the expected shape); a tensor holds NaN or
            infinite values (names the key); a deep-prompt key is not ``compound_prompts_text.<integer>`` or the
            numbers are not 0..n-1; or the checkpoint's fixed token embeddings do not match ``clip``.
    """
    path = os.fspath(prompt_learner_path)
    source = _prompt_learner_state(load_torch_file(path, "original FAPrompt checkpoint"), path)
    deep_keys = _deep_prompt_keys(source, path)
    clip_model = _load_clip(clip)
    _check_prompt_shapes(source, deep_keys, clip_model.config, path)

    normal_length, abnormal_length = source["ctx_pos"].shape[-2], source["ctx_neg"].shape[-2]
    num_prompts = source["ctx_neg"].shape[-3]
    deep_prompts = [source[key] for key in deep_keys]
    projection_dim = clip_model.config.projection_dim
    fc1_weight = source["patch_meta_net.linear1.weight"]
    (normal_placeholder,), normal_suffix = _parse_template(
        source["tokenized_prompts_pos"], [normal_length], "tokenized_prompts_pos"
    )
    (_, abnormal_placeholder), abnormal_suffix = _parse_template(
        source["tokenized_prompts_neg"][..., :1, :], [normal_length, abnormal_length], "tokenized_prompts_neg"
    )
    eot = int(source["tokenized_prompts_pos"].flatten().max())
    settings = {
        "clip_config": clip_model.config.to_dict(),
        "normal_context_length": normal_length,
        "abnormal_context_length": abnormal_length,
        "num_abnormal_prompts": num_prompts,
        "prior_num_patches": fc1_weight.shape[1] // projection_dim,
        "prior_hidden_reduction": fc1_weight.shape[1] // fc1_weight.shape[0],
        "prior_patch_selection": "first_m",
        "round_deep_prompts_to_float16": True,
        "deep_prompt_depth": len(deep_prompts) + 1,
        "deep_prompt_length": deep_prompts[0].shape[0] if deep_prompts else 0,
        "num_vv_blocks": min(_ORIGINAL_VV_BLOCKS, clip_model.config.vision_config.num_hidden_layers),
        "bos_token_id": int(source["tokenized_prompts_pos"].flatten()[0]),
        "eos_token_id": eot,
        "normal_placeholder_token_id": normal_placeholder,
        "abnormal_placeholder_token_id": abnormal_placeholder,
        "normal_suffix_token_ids": normal_suffix,
        "abnormal_suffix_token_ids": abnormal_suffix,
    }
    settings.update(config_kwargs)
    config = FAPromptConfig(**settings)

    width = clip_model.config.text_config.hidden_size
    mapped = {
        "prompt_learner.normal_context": source.pop("ctx_pos").reshape(normal_length, width),
        "prompt_learner.abnormal_context": source.pop("ctx_neg").reshape(num_prompts, abnormal_length, width),
        "prompt_learner.deep_prompts": (
            torch.stack(deep_prompts) if deep_prompts else torch.empty(0, config.deep_prompt_length, width)
        ),
        "prompt_learner.prior.fc1.weight": source.pop("patch_meta_net.linear1.weight"),
        "prompt_learner.prior.fc1.bias": source.pop("patch_meta_net.linear1.bias", None),
        "prompt_learner.prior.fc2.weight": source.pop("patch_meta_net.linear2.weight"),
        "prompt_learner.prior.fc2.bias": source.pop("patch_meta_net.linear2.bias", None),
    }
    for key in deep_keys:
        source.pop(key)
    for key, value in mapped.items():
        if value is None:
            raise KeyError(
                f"The original checkpoint {path} lacks the tensor for {key!r}: it is not a complete FAPrompt "
                "epoch_N.pth (use the file the released train.py saved)."
            )

    with torch.device("meta"):
        model = FAPromptModel(config)
    model.clip = clip_model
    _check_fixed_embeddings(source, config, clip_model, path)
    expected = model.prompt_learner.state_dict()
    for key, value in mapped.items():
        name = key.removeprefix("prompt_learner.")
        if value.shape != expected[name].shape:
            raise ValueError(
                f"The original checkpoint {path}: its tensor for {key!r} has shape {tuple(value.shape)}; "
                f"the model needs {tuple(expected[name].shape)}."
            )
    model.prompt_learner.load_state_dict(
        {key.removeprefix("prompt_learner."): value.float() for key, value in mapped.items()}, assign=True
    )
    model.prompt_learner.normal_prompt_ids = torch.tensor(config.normal_prompt_ids())
    model.prompt_learner.abnormal_prompt_ids = torch.tensor(config.abnormal_prompt_ids())
    model.clip.requires_grad_(False)
    return model.float().eval()


def _check_fixed_embeddings(
    source: dict[str, torch.Tensor], config: FAPromptConfig, clip: CLIPModel, path: str
) -> None:
    """Check and drop the original's buffers; they must agree with ``clip`` (else it is the wrong CLIP)."""
    token_embedding = clip.text_model.embeddings.token_embedding.weight
    for side in ("pos", "neg"):
        ids = source.pop(f"tokenized_prompts_{side}").long()
        context = config.normal_context_length + (config.abnormal_context_length if side == "neg" else 0)
        expected = token_embedding[ids.reshape(-1, ids.shape[-1])[0]]
        for part, rows in (("prefix", slice(0, 1)), ("suffix", slice(1 + context, None))):
            key = f"token_{part}_{side}"
            if key not in source:
                raise KeyError(f"Original checkpoint lacks {key!r}.")
            stored = source.pop(key).float()
            stored = stored.reshape(-1, *stored.shape[-2:])[0]
            reference = expected[rows].float()
            if stored.shape != reference.shape or not torch.allclose(stored, reference, atol=1e-4):
                raise ValueError(
                    f"{key!r} does not equal the CLIP token embeddings of the checkpoint's template: the checkpoint "
                    "was trained on another CLIP than the one given (pass the CLIP it was trained with)."
                )
    leftovers = [key for key in source if not key.startswith("compound_prompt_projections.")]
    if leftovers:
        raise KeyError(
            f"Unexpected tensors in the original checkpoint {path}: {sorted(leftovers)} (not an FAPrompt prompt "
            "learner of the released code)."
        )

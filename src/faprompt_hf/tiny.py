# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""Tiny random FAPrompt models and an in-memory CLIP tokenizer, for offline demos, tests and benchmarks.

Nothing here downloads anything. The tokenizer covers every byte, so no text maps to the unknown token (which is
EOS for CLIP and would silently move the pooling position).
"""

from __future__ import annotations

from typing import Any

from tokenizers.pre_tokenizers import ByteLevel
from transformers import CLIPConfig, CLIPTokenizer

from .configuration_faprompt import FAPromptConfig

__all__ = ["tiny_clip_config", "tiny_clip_tokenizer", "tiny_faprompt_config"]

_PROMPT_WORDS = ("object", "damaged", "photo", "of", "flawless")


def tiny_clip_tokenizer(words: tuple[str, ...] = _PROMPT_WORDS) -> CLIPTokenizer:
    """A byte-level CLIP BPE tokenizer with whole-word tokens for ``words`` (about 560 tokens).

    Args:
        words: Words that become single tokens (others are spelt out byte by byte, never unknown).

    Returns:
        A ``CLIPTokenizer`` with ``<|startoftext|>`` and ``<|endoftext|>`` as its highest ids, like OpenAI's.
    """
    alphabet = sorted(ByteLevel.alphabet())
    vocab = {symbol: index for index, symbol in enumerate(alphabet)}
    for symbol in alphabet:
        vocab.setdefault(symbol + "</w>", len(vocab))
    merges: list[tuple[str, str]] = []
    for word in words:
        parts = [*word[:-1], word[-1] + "</w>"]
        while len(parts) > 1:
            merges.append((parts[0], parts[1]))
            vocab.setdefault(parts[0] + parts[1], len(vocab))
            parts = [parts[0] + parts[1], *parts[2:]]
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab[special] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=list(dict.fromkeys(merges)), model_max_length=77)


def tiny_clip_config(
    tokenizer: CLIPTokenizer | None = None,
    hidden_size: int = 32,
    num_layers: int = 4,
    image_size: int = 32,
    patch_size: int = 8,
    projection_dim: int = 16,
) -> CLIPConfig:
    """A small random-CLIP configuration whose special token ids match ``tokenizer``.

    Args:
        tokenizer: The tokenizer (default: :func:`tiny_clip_tokenizer`).
        hidden_size: Width of both towers.
        num_layers: Blocks of each tower.
        image_size: The checkpoint's native input side (position embeddings are resized for other sizes).
        patch_size: Vision patch size.
        projection_dim: Joint embedding width D.

    Returns:
        A ``CLIPConfig``.
    """
    tokenizer = tokenizer or tiny_clip_tokenizer()
    heads = max(1, hidden_size // 8)
    tower = {
        "hidden_size": hidden_size,
        "intermediate_size": 4 * hidden_size + 5,
        "num_hidden_layers": num_layers,
        "num_attention_heads": heads,
        "projection_dim": projection_dim,
    }
    return CLIPConfig(
        text_config={
            **tower,
            "vocab_size": len(tokenizer),
            "max_position_embeddings": 77,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config={**tower, "image_size": image_size, "patch_size": patch_size},
        projection_dim=projection_dim,
    )


def tiny_faprompt_config(
    tokenizer: CLIPTokenizer | None = None, clip_config: CLIPConfig | None = None, **overrides: Any
) -> FAPromptConfig:
    """A tiny FAPrompt configuration (small prompts, 2 V-V blocks, deep prompts on 2 blocks).

    Args:
        tokenizer: The tokenizer whose ids fill the prompt templates (default: :func:`tiny_clip_tokenizer`).
        clip_config: The CLIP configuration (default: :func:`tiny_clip_config` of ``tokenizer``).
        **overrides: Any [`FAPromptConfig`] field.

    Returns:
        The configuration.
    """
    from .image_processing_faprompt import FAPromptImageProcessor
    from .processing_faprompt import FAPromptProcessor

    tokenizer = tokenizer or tiny_clip_tokenizer()
    clip_config = clip_config or tiny_clip_config(tokenizer)
    processor = FAPromptProcessor(image_processor=FAPromptImageProcessor(), tokenizer=tokenizer)
    settings: dict[str, Any] = {
        "clip_config": clip_config.to_dict(),
        "normal_context_length": 3,
        "abnormal_context_length": 2,
        "num_abnormal_prompts": 3,
        "prior_num_patches": 4,
        "prior_hidden_reduction": 4,
        "deep_prompt_depth": 3,
        "deep_prompt_length": 2,
        "num_vv_blocks": 2,
        "image_size": clip_config.vision_config.image_size,
        "gaussian_sigma": 1.0,
        **processor.prompt_token_ids(),
    }
    settings.update(overrides)
    return FAPromptConfig(**settings)

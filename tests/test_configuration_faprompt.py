# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""FAPromptConfig: defaults from the spec, round trips and strictness."""

from __future__ import annotations

import pytest
from huggingface_hub.errors import StrictDataclassClassValidationError
from transformers import AutoConfig, CLIPConfig

from faprompt_hf import FAPromptConfig


def test_defaults_are_the_released_recipe():
    config = FAPromptConfig()
    assert (config.normal_context_length, config.abnormal_context_length, config.num_abnormal_prompts) == (5, 2, 10)
    assert (config.prior_num_patches, config.deep_prompt_depth, config.deep_prompt_length) == (10, 9, 4)
    assert (config.num_vv_blocks, config.temperature, config.image_size, config.gaussian_sigma) == (19, 0.07, 518, 10.0)
    assert config.prior_patch_selection == "top_m"
    assert config.normal_prompt_ids() == [49406, 333, 333, 333, 333, 333, 14115, 269, 49407]
    assert config.abnormal_prompt_ids() == [49406, 333, 333, 333, 333, 333, 320, 320, 13568, 14115, 269, 49407]
    assert config.prompt_length == 12
    vision = config.clip_config.vision_config
    assert (vision.hidden_size, vision.num_hidden_layers, vision.patch_size, vision.image_size) == (1024, 24, 14, 336)
    assert config.prior_hidden_size == 10 * 768 // 16


def test_round_trip_through_dict_and_disk(tiny_config, tmp_path):
    tiny_config.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, FAPromptConfig)
    assert isinstance(loaded.clip_config, CLIPConfig)

    def comparable(config):
        return {k: v for k, v in config.to_dict().items() if k != "_name_or_path"}

    assert comparable(loaded) == comparable(tiny_config)
    assert comparable(FAPromptConfig.from_dict(tiny_config.to_dict())) == comparable(tiny_config)


def test_misspelt_field_is_refused_with_a_suggestion():
    with pytest.raises(TypeError, match="did you mean 'num_abnormal_prompts'"):
        FAPromptConfig(num_abnormal_prompt=4)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("prior_patch_selection", "random", "prior_patch_selection"),
        ("num_vv_blocks", 30, "num_vv_blocks"),
        ("image_size", 500, "multiple of the patch size"),
        ("normal_context_length", 0, "normal_context_length"),
    ],
)
def test_invalid_values_are_refused(field, value, message):
    with pytest.raises((ValueError, StrictDataclassClassValidationError), match=message):
        FAPromptConfig(**{field: value})


def test_wrong_type_is_refused():
    with pytest.raises(StrictDataclassClassValidationError, match="num_abnormal_prompts"):
        FAPromptConfig(num_abnormal_prompts="ten")


@pytest.mark.parametrize(
    "overrides, message",
    [({"deep_prompt_length": 6}, "must not exceed normal_context_length"), ({"deep_prompt_depth": 13}, "exceeds")],
)
def test_deep_prompts_must_fit_the_prompt_and_the_text_tower(overrides, message):
    with pytest.raises(StrictDataclassClassValidationError, match=message):
        FAPromptConfig(**overrides)

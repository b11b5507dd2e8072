# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""FAPromptConfig: defaults from the spec, round trips and strictness."""

from __future__ import annotations

import re

import numpy as np
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


NAN, INF = float("nan"), float("inf")

# (field, bad value, error type, words the message must hold: the field, the value and the fix)
BAD_FIELD_VALUES = [
    ("temperature", NAN, ValueError, "must be a finite number > 0"),
    ("temperature", INF, ValueError, "must be a finite number > 0"),
    ("temperature", -INF, ValueError, "must be a finite number > 0"),
    ("temperature", 0.0, ValueError, "must be a finite number > 0"),
    ("temperature", "high", TypeError, "must be a number"),
    ("gaussian_truncate", -1.0, ValueError, "must be a finite number >= 0"),
    ("gaussian_sigma", "10", TypeError, "must be a number"),
    ("gaussian_sigma", -0.5, ValueError, "must be a finite number >= 0"),
    ("image_size", 0, ValueError, "must be an int >= 1"),
    ("image_size", -14, ValueError, "must be an int >= 1"),
    ("image_size", 518.0, TypeError, "must be an int"),
    ("prior_hidden_reduction", 0, ValueError, "must be an int >= 1"),
    ("prior_hidden_reduction", -1, ValueError, "must be an int >= 1"),
    ("normal_context_length", 0, ValueError, "must be an int >= 1"),
    ("num_abnormal_prompts", "ten", TypeError, "must be an int"),
    ("num_abnormal_prompts", True, TypeError, "must be an int"),
    ("num_vv_blocks", -1, ValueError, "must be an int >= 0"),
    ("focal_gamma", NAN, ValueError, "must be a finite number >= 0"),
    ("prior_map_loss_weight", NAN, ValueError, "must be a finite number >= 0"),
    ("global_loss_weight", -1.0, ValueError, "must be a finite number >= 0"),
    ("orthogonality_loss_weight", INF, ValueError, "must be a finite number >= 0"),
    ("prior_loss_weight", "1", TypeError, "must be a number"),
    ("anomaly_threshold", "high", TypeError, "must be a number"),
    ("anomaly_threshold", NAN, ValueError, r"must be finite and lie in \[0, 1\]"),
    ("anomaly_threshold", 1.5, ValueError, r"must be finite and lie in \[0, 1\]"),
    ("anomaly_threshold", np.float32(0.3), TypeError, r"convert numpy scalars with int\(\) or float\(\)"),
    ("round_deep_prompts_to_float16", "yes", TypeError, "must be True or False"),
    ("prior_patch_selection", "random", ValueError, "must be one of"),
    ("abnormal_suffix_token_ids", ["damaged"], TypeError, "must be a list of token ids"),
    ("reference_map_weight", 1.5, ValueError, r"must be a finite number >= 0.0 and <= 1.0"),
    ("reference_score_weight", NAN, ValueError, r"must be a finite number >= 0.0 and <= 1.0"),
    ("reference_score_weight", -0.1, ValueError, r"must be a finite number >= 0.0 and <= 1.0"),
    ("normal_reference_classes", ["screw", "screw"], ValueError, r"name each class once.*\['screw'\] repeated"),
    ("normal_reference_classes", [""], TypeError, "must be a list of non-empty class names"),
    ("normal_reference_classes", "screw", TypeError, "must be a list of non-empty class names"),
    ("normal_reference_patch_counts", [0], TypeError, r"must be a list of counts \(ints > 0\)"),
    ("normal_reference_image_counts", [1.0], TypeError, r"must be a list of counts \(ints > 0\)"),
]


def _bad_value_id(case) -> str:
    return f"{case[0]}={case[1]!r}"


@pytest.mark.parametrize(
    "field, value, error, rule", BAD_FIELD_VALUES, ids=[_bad_value_id(c) for c in BAD_FIELD_VALUES]
)
def test_bad_field_values_are_refused_at_construction_and_on_assignment(field, value, error, rule):
    """The error is the field's own TypeError/ValueError (not a comparison crash later), naming field, value, fix."""
    expected = rf"FAPromptConfig\.{field} must .*got {re.escape(repr(value))}.*default {field}="
    with pytest.raises(error, match=expected) as at_construction:
        FAPromptConfig(**{field: value})
    config = FAPromptConfig()
    with pytest.raises(error, match=expected) as on_assignment:
        setattr(config, field, value)
    for raised in (at_construction, on_assignment):
        assert re.search(rule, str(raised.value)), str(raised.value)
    assert getattr(config, field) == getattr(FAPromptConfig(), field)  # the refused value was not stored


def test_good_values_are_accepted_on_assignment():
    config = FAPromptConfig()
    config.anomaly_threshold = 0.42
    config.anomaly_threshold = None
    config.temperature = 1  # ints are numbers too
    config.gaussian_sigma = 0  # 0 turns smoothing off
    config.anomaly_threshold = 1
    assert (config.temperature, config.gaussian_sigma, config.anomaly_threshold) == (1, 0, 1)


def test_values_set_behind_the_checks_are_caught_by_validate():
    config = FAPromptConfig()
    config.__dict__["temperature"] = float("nan")
    with pytest.raises(StrictDataclassClassValidationError, match="temperature must be a finite number"):
        config.validate()


def test_cross_field_rules_still_hold():
    with pytest.raises((ValueError, StrictDataclassClassValidationError), match="num_vv_blocks"):
        FAPromptConfig(num_vv_blocks=30)
    with pytest.raises(StrictDataclassClassValidationError, match="multiple of the patch size"):
        FAPromptConfig(image_size=500)


def test_the_reference_bank_layout_needs_one_entry_per_class():
    with pytest.raises(ValueError, match=r"one entry per class, got \['a', 'b'\], \[1\] and \[4, 4\]"):
        FAPromptConfig(
            normal_reference_classes=["a", "b"], normal_reference_image_counts=[1], normal_reference_patch_counts=[4, 4]
        )


@pytest.mark.parametrize(
    "overrides, message",
    [({"deep_prompt_length": 6}, "must not exceed normal_context_length"), ({"deep_prompt_depth": 13}, "exceeds")],
)
def test_deep_prompts_must_fit_the_prompt_and_the_text_tower(overrides, message):
    with pytest.raises(StrictDataclassClassValidationError, match=message):
        FAPromptConfig(**overrides)


def test_check_input_size_is_the_one_rule(tiny_config):
    assert tiny_config.check_input_size(32) == (32, 32)
    assert tiny_config.check_input_size((16, 40)) == (16, 40)
    with pytest.raises(ValueError, match=r"--image_size 30 is not a multiple of the patch size 8: .*for example 32"):
        tiny_config.check_input_size(30, name="--image_size")
    for bad in (0, -8, 32.0, True, (32,), "32"):
        with pytest.raises(ValueError, match="must be a positive int or"):
            tiny_config.check_input_size(bad)
    with pytest.raises(ValueError, match=r"8x8 gives 1 patches but the prior needs 4"):
        tiny_config.check_input_size(8, check_prior=True)


def test_config_value_errors_are_value_errors_as_documented():
    """docs/errors.md: a config that does not fit together is a ValueError (and still huggingface_hub's error)."""
    with pytest.raises(ValueError, match=r"image_size 500 is not a multiple of the patch size 14: .*for example 504"):
        FAPromptConfig(image_size=500)
    with pytest.raises(StrictDataclassClassValidationError):
        FAPromptConfig(num_vv_blocks=30)
    with pytest.raises(ValueError, match=r"num_vv_blocks must lie in \[0, 24\]"):
        FAPromptConfig(num_vv_blocks=30)


def test_prompt_vocabulary_check_names_the_fix(tiny_clip_config_fixture):
    config = FAPromptConfig(
        clip_config=tiny_clip_config_fixture.to_dict(),
        prior_num_patches=4,
        image_size=32,
        num_vv_blocks=2,
        deep_prompt_depth=3,
    )
    with pytest.raises(ValueError, match=r"reach 49407, but the CLIP 'x' has only \d+ tokens.*tokenizer files"):
        config.check_prompt_vocabulary("the CLIP 'x'")


def test_a_misspelt_attribute_is_warned_about_with_the_close_field_name(tiny_config):
    sigma = tiny_config.gaussian_sigma
    with pytest.warns(UserWarning, match=r"no field 'gausian_sigma': did you mean 'gaussian_sigma'\?"):
        tiny_config.gausian_sigma = 3
    assert tiny_config.gaussian_sigma == sigma
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tiny_config.architectures = ["FAPromptModel"]  # transformers' own attributes and far names: no warning
        tiny_config.my_note = "ok"


def test_a_clip_config_dict_with_unknown_keys_names_them():
    with pytest.raises(ValueError, match=r"clip_config has no text_config or vision_config and unknown key\(s\) 'foo'"):
        FAPromptConfig(clip_config={"foo": 1})
    with pytest.raises(ValueError, match=r"'projection_dimension' \(did you mean 'projection_dim'\?\)"):
        FAPromptConfig(clip_config={"projection_dimension": 768})

# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""FAPromptModel on the tiny configuration, in the manner of transformers' model tests."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter
from transformers import AutoModel, CLIPModel

from faprompt_hf import FAPromptConfig, FAPromptModel, FAPromptOutput, modeling_faprompt
from faprompt_hf.modeling_faprompt import (
    FAPromptStaticPrompts,
    add_prior_to_prompts,
    bilinear_resize_matrix,
    gaussian_smooth,
    normal_reference_distances,
    resize_position_embeddings,
)
from faprompt_hf.processing_faprompt import prompt_token_ids


def _outputs_close(first: FAPromptOutput, second: FAPromptOutput, atol: float = 1e-5) -> None:
    for key in ("image_scores", "anomaly_maps", "raw_anomaly_maps", "prior_patch_scores", "static_patch_scores"):
        torch.testing.assert_close(getattr(first, key), getattr(second, key), atol=atol, rtol=0)


def test_forward_shapes_and_ranges(tiny_model, make_pixels):
    config = tiny_model.config
    with torch.no_grad():
        out = tiny_model(pixel_values=make_pixels(2, 48))
    grid = (48 // 8) ** 2
    assert out.image_scores.shape == (2,)
    assert out.anomaly_maps.shape == out.raw_anomaly_maps.shape == (2, 48, 48)
    assert out.static_patch_scores.shape == out.prior_patch_scores.shape == (2, grid, 2)
    assert out.prior_text_features.shape == (2, 2, config.clip_config.projection_dim)
    assert out.static_text_features.shape == (2, config.clip_config.projection_dim)
    assert out.prior_bias.shape == (2, config.clip_config.text_config.hidden_size)
    assert out.prior_patch_indices.shape == (2, config.prior_num_patches)
    assert out.patch_embeds.shape == (2, grid + 1, config.clip_config.projection_dim)
    assert ((out.image_scores >= 0) & (out.image_scores <= 1)).all()
    assert ((out.raw_anomaly_maps >= 0) & (out.raw_anomaly_maps <= 1)).all()
    assert out.loss is None


def test_batch_of_three_equals_three_batches_of_one(tiny_model, make_pixels):
    pixels = make_pixels(3)
    with torch.no_grad():
        batched = tiny_model(pixel_values=pixels)
        singles = [tiny_model(pixel_values=pixels[i : i + 1]) for i in range(3)]
    for key in ("image_scores", "anomaly_maps", "prior_bias"):
        torch.testing.assert_close(
            getattr(batched, key), torch.cat([getattr(s, key) for s in singles]), atol=1e-5, rtol=0
        )


def test_save_load_and_automodel_give_identical_outputs(tiny_model, make_pixels, tmp_path):
    tiny_model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    reloaded = AutoModel.from_pretrained(tmp_path)
    assert isinstance(reloaded, FAPromptModel)
    assert not reloaded.training
    assert not any(p.requires_grad for p in reloaded.clip.parameters())
    pixels = make_pixels(2)
    with torch.no_grad():
        _outputs_close(tiny_model(pixel_values=pixels), reloaded(pixel_values=pixels), atol=0)
    assert torch.equal(reloaded.prompt_learner.abnormal_prompt_ids, tiny_model.prompt_learner.abnormal_prompt_ids)


def test_eager_equals_sdpa_in_float32(tiny_model, make_pixels, tmp_path):
    tiny_model.save_pretrained(tmp_path)
    eager = FAPromptModel.from_pretrained(tmp_path, attn_implementation="eager")
    sdpa = FAPromptModel.from_pretrained(tmp_path, attn_implementation="sdpa")
    assert eager.clip.text_model.config._attn_implementation == "eager"
    assert sdpa.clip.vision_model.config._attn_implementation == "sdpa"
    pixels = make_pixels(2)
    with torch.no_grad():
        _outputs_close(eager(pixel_values=pixels), sdpa(pixel_values=pixels), atol=1e-5)


def test_training_step_changes_only_trainable_parameters(tiny_model, make_pixels):
    model = tiny_model.train()
    clip_before = {k: v.clone() for k, v in model.clip.state_dict().items()}
    prompts_before = {k: v.clone() for k, v in model.prompt_learner.state_dict().items()}
    optimizer = torch.optim.Adam(model.trainable_parameters(), lr=1e-2, betas=(0.5, 0.999))
    masks = torch.zeros(2, 32, 32)
    masks[1, 8:20, 8:20] = 1
    out = model(pixel_values=make_pixels(2), labels=torch.tensor([0, 1]), masks=masks)
    assert torch.isfinite(out.loss)
    expected = out.loss_local + out.loss_global + 0.1 * out.loss_orthogonality + out.loss_prior
    torch.testing.assert_close(out.loss, expected)
    out.loss.backward()
    optimizer.step()
    assert all(torch.equal(clip_before[k], v) for k, v in model.clip.state_dict().items())
    changed = [k for k, v in model.prompt_learner.state_dict().items() if not torch.equal(prompts_before[k], v)]
    assert set(changed) == {n for n, p in model.prompt_learner.named_parameters()}
    assert not model.clip.training


def test_static_text_cache_follows_parameter_updates(tiny_model, make_pixels):
    pixels = make_pixels(1)

    def uncached():
        tiny_model.clear_static_text_cache()
        return tiny_model(pixel_values=pixels).static_text_features

    with torch.no_grad():
        before = tiny_model(pixel_values=pixels).static_text_features  # fills the cache
        tiny_model.prompt_learner.abnormal_context.mul_(-50.0)
        cached = tiny_model(pixel_values=pixels).static_text_features
        fresh = uncached()
        assert torch.equal(cached, fresh)
        assert not torch.allclose(cached, before, atol=1e-3)
        tiny_model.clip.text_projection.weight.mul_(2.0)  # the text tower changes too
        assert torch.equal(tiny_model(pixel_values=pixels).static_text_features, uncached())
        tiny_model.config.round_deep_prompts_to_float16 = True
        assert torch.equal(tiny_model(pixel_values=pixels).static_text_features, uncached())


def test_anomalous_label_without_mask_is_an_error(tiny_model, make_pixels):
    with pytest.raises(ValueError, match="no masks were given"):
        tiny_model(pixel_values=make_pixels(2), labels=torch.tensor([0, 1]))
    out = tiny_model(pixel_values=make_pixels(2), labels=torch.tensor([0, 0]))
    assert torch.isfinite(out.loss)


def test_rows_without_real_masks_cannot_be_trained_on(tiny_model, make_pixels):
    masks = torch.zeros(2, 32, 32)
    with pytest.raises(ValueError, match="no ground-truth mask"):
        tiny_model(
            pixel_values=make_pixels(2),
            labels=torch.tensor([0, 1]),
            masks=masks,
            mask_valid=torch.tensor([True, False]),
        )
    out = tiny_model(
        pixel_values=make_pixels(2), labels=torch.tensor([0, 1]), masks=masks, mask_valid=torch.tensor([False, True])
    )  # a normal row's stand-in mask is fine
    assert torch.isfinite(out.loss)


def test_unknown_keyword_is_an_error_and_collator_keys_are_ignored(tiny_model, make_pixels):
    with pytest.raises(TypeError, match="mask"):
        tiny_model(pixel_values=make_pixels(1), mask=torch.zeros(1, 32, 32))
    with torch.no_grad():
        out = tiny_model(pixel_values=make_pixels(1), class_names=["a"], paths=["a.png"], defect_types=["good"])
    assert out.image_scores.shape == (1,)


def test_mask_of_wrong_size_is_an_error(tiny_model, make_pixels):
    with pytest.raises(ValueError, match=r"masks have shape \(2, 16, 16\)"):
        tiny_model(pixel_values=make_pixels(2), labels=torch.tensor([0, 1]), masks=torch.zeros(2, 16, 16))


def test_input_not_multiple_of_patch_is_an_error(tiny_model):
    with pytest.raises(ValueError, match="not a multiple of the patch size 8"):
        tiny_model(pixel_values=torch.zeros(1, 3, 30, 30))


def test_return_dict_false_gives_the_same_values(tiny_model, make_pixels):
    pixels = make_pixels(1)
    with torch.no_grad():
        as_dict = tiny_model(pixel_values=pixels)
        as_tuple = tiny_model(pixel_values=pixels, return_dict=False)
    assert len(as_tuple) == len(as_dict.to_tuple())
    for first, second in zip(as_tuple, as_dict.to_tuple(), strict=True):
        assert torch.equal(first, second)


def test_top_m_prior_takes_the_most_abnormal_patches(tiny_model, make_pixels):
    assert tiny_model.config.prior_patch_selection == "top_m"
    with torch.no_grad():
        out = tiny_model(pixel_values=make_pixels(2))
    scores = out.static_patch_scores[..., 1]
    chosen = scores.gather(1, out.prior_patch_indices)
    assert (chosen[:, :-1] >= chosen[:, 1:]).all()  # descending
    assert torch.allclose(
        chosen[:, -1], scores.sort(dim=1, descending=True).values[:, tiny_model.config.prior_num_patches - 1]
    )


def test_first_m_prior_takes_the_first_patches(make_tiny_config, make_pixels):
    model = FAPromptModel(make_tiny_config(prior_patch_selection="first_m")).eval()
    with torch.no_grad():
        out = model(pixel_values=make_pixels(2))
    assert torch.equal(out.prior_patch_indices, torch.arange(4).expand(2, 4))


def test_reduction_to_plain_clip(make_tiny_config, tiny_tokenizer, make_pixels):
    """Placeholder embeddings as prompts, no deep prompts, no V-V: FAPrompt's features are CLIP's."""
    config = make_tiny_config(deep_prompt_depth=1, num_vv_blocks=0)
    torch.manual_seed(1)
    model = FAPromptModel(config).eval()
    embedding = model.clip.text_model.embeddings.token_embedding.weight
    with torch.no_grad():
        model.prompt_learner.normal_context.copy_(embedding[config.normal_placeholder_token_id].expand(3, -1))
        model.prompt_learner.abnormal_context.copy_(embedding[config.abnormal_placeholder_token_id].expand(3, 2, -1))
        pixels = make_pixels(2)
        out = model(pixel_values=pixels)
        normal_ids = torch.tensor([config.normal_prompt_ids()])
        abnormal_ids = torch.tensor([config.abnormal_prompt_ids()])
        clip_normal = model.clip.get_text_features(input_ids=normal_ids).pooler_output[0]
        clip_abnormal = model.clip.get_text_features(input_ids=abnormal_ids).pooler_output[0]
        clip_image = model.clip.get_image_features(pixel_values=pixels).pooler_output
        clip_tokens = model.clip.vision_model(pixel_values=pixels).last_hidden_state
        clip_patches = model.clip.visual_projection(model.clip.vision_model.post_layernorm(clip_tokens))
    expected_text = F.normalize(torch.stack([clip_normal, clip_abnormal]), dim=-1)
    torch.testing.assert_close(out.static_text_features, expected_text, atol=1e-6, rtol=0)
    torch.testing.assert_close(out.abnormal_text_features, clip_abnormal.expand(3, -1), atol=1e-6, rtol=0)
    torch.testing.assert_close(out.patch_embeds, F.normalize(clip_patches, dim=-1), atol=1e-6, rtol=0)
    torch.testing.assert_close(out.patch_embeds[:, 0], F.normalize(clip_image, dim=-1), atol=1e-6, rtol=0)


def test_vv_attention_matches_a_hand_written_reference(tiny_model, make_pixels):
    layer = tiny_model.clip.vision_model.encoder.layers[-1]
    hidden = torch.randn(2, 17, 32)
    with torch.no_grad():
        original, value_value = tiny_model._dual_attention(layer, hidden)
        attention = layer.self_attn
        heads = attention.num_heads
        v = attention.v_proj(hidden).view(2, 17, heads, -1).transpose(1, 2)
        weights = (v @ v.transpose(-1, -2) * attention.head_dim**-0.5).softmax(-1)
        expected_vv = attention.out_proj((weights @ v).transpose(1, 2).reshape(2, 17, -1))
        expected_original = attention(hidden)[0]
    torch.testing.assert_close(value_value, expected_vv, atol=1e-5, rtol=0)
    torch.testing.assert_close(original, expected_original, atol=1e-5, rtol=0)


def test_from_pretrained_of_a_plain_clip_checkpoint_initialises_prompts(
    tiny_clip_config_fixture, tiny_tokenizer, tmp_path
):
    clip = CLIPModel(tiny_clip_config_fixture)
    clip.save_pretrained(tmp_path)
    tiny_tokenizer.save_pretrained(tmp_path)  # a CLIP folder with its tokenizer: the template ids come from it
    model = FAPromptModel.from_clip(
        str(tmp_path),
        image_size=32,
        normal_context_length=3,
        num_abnormal_prompts=3,
        prior_num_patches=4,
        deep_prompt_depth=3,
        deep_prompt_length=2,
        num_vv_blocks=2,
    )
    for name, tensor in model.prompt_learner.state_dict().items():
        assert torch.isfinite(tensor.float()).all(), name
    assert 0.01 < model.prompt_learner.abnormal_context.std().item() < 0.03  # prompt_init_std = 0.02
    assert torch.equal(model.clip.vision_model.embeddings.class_embedding, clip.vision_model.embeddings.class_embedding)
    assert model.training and not model.clip.training
    assert model.prompt_learner.normal_prompt_ids.tolist() == model.config.normal_prompt_ids()
    assert model.config.eos_token_id == tiny_tokenizer.eos_token_id != FAPromptConfig().eos_token_id
    model.eval()(pixel_values=torch.randn(1, 3, 32, 32))  # the first forward no longer dies in the token embedding


def test_from_clip_refuses_template_ids_outside_the_vocabulary(tiny_clip_config_fixture, tmp_path):
    CLIPModel(tiny_clip_config_fixture).save_pretrained(tmp_path)  # no tokenizer files: OpenAI's ids
    small = dict(image_size=32, prior_num_patches=4, num_vv_blocks=2, deep_prompt_depth=3)
    with pytest.raises(ValueError, match=r"token ids from the defaults .* reach 49407, but the CLIP .* has only"):
        FAPromptModel.from_clip(str(tmp_path), **small)


def test_from_clip_model_instance(tiny_clip_config_fixture, tiny_tokenizer):
    clip = CLIPModel(tiny_clip_config_fixture)
    ids = prompt_token_ids(tiny_tokenizer)  # a CLIPModel instance has no tokenizer: the ids are given
    model = FAPromptModel.from_clip(
        clip, image_size=32, prior_num_patches=4, num_vv_blocks=2, deep_prompt_depth=3, **ids
    )
    assert torch.equal(model.clip.text_projection.weight, clip.text_projection.weight)
    assert torch.isfinite(model.prompt_learner.prior.fc1.weight).all()
    assert not any(p.requires_grad for p in model.clip.parameters())


def test_meta_device_init_gives_finite_tensors(tiny_config):
    model = FAPromptModel.from_pretrained(None, config=tiny_config, state_dict={})
    for name, tensor in list(model.state_dict().items()) + list(model.named_buffers()):
        if name == "clip.logit_scale":  # CLIP's own init leaves it to the constructor; FAPrompt never reads it
            continue
        assert tensor.device.type == "cpu", name
        assert torch.isfinite(tensor.float()).all(), name
    assert model.prompt_learner.abnormal_prompt_ids.tolist() == tiny_config.abnormal_prompt_ids()


@pytest.mark.parametrize("shape, sigma", [((40, 56), 4.0), ((32, 32), 10.0), ((7, 5), 2.5)])
def test_gaussian_smooth_equals_scipy(shape, sigma):
    maps = torch.rand(2, *shape, generator=torch.Generator().manual_seed(0))
    ours = gaussian_smooth(maps, sigma)
    for index in range(2):
        expected = gaussian_filter(maps[index].double().numpy(), sigma=sigma, mode="reflect", truncate=4.0)
        np.testing.assert_allclose(ours[index].numpy(), expected, atol=1e-6)
    assert torch.equal(gaussian_smooth(maps, 0), maps)


def test_position_embeddings_are_resized_bilinearly_and_purely():
    weights = torch.randn(1 + 4 * 4, 6)
    before = weights.clone()
    resized = resize_position_embeddings(weights, (6, 3))
    grid = weights[1:].reshape(1, 4, 4, 6).permute(0, 3, 1, 2)
    expected = F.interpolate(grid, size=(6, 3), mode="bilinear", align_corners=False).permute(0, 2, 3, 1).reshape(-1, 6)
    assert torch.equal(resized[0], weights[0])
    torch.testing.assert_close(resized[1:], expected)
    assert torch.equal(weights, before)
    assert resize_position_embeddings(weights, (4, 4)) is weights


def test_model_is_small(tiny_model):
    assert sum(p.numel() for p in tiny_model.parameters()) < 1_000_000


@pytest.mark.parametrize("out_size, in_size", [(518, 37), (224, 16), (5, 7), (16, 16)])
def test_bilinear_resize_matrix_equals_interpolate(out_size, in_size):
    image = torch.rand(2, 3, in_size, in_size + 1)
    rows = bilinear_resize_matrix(out_size, in_size, image.device, image.dtype)
    columns = bilinear_resize_matrix(out_size + 2, in_size + 1, image.device, image.dtype)
    expected = F.interpolate(image, size=(out_size, out_size + 2), mode="bilinear", align_corners=False)
    # PyTorch computes its weights in float32, ours in float64: they agree to float32 rounding
    torch.testing.assert_close(rows @ image @ columns.T, expected, atol=1e-5, rtol=0)


def _pixels(*shape: int, fill: float | None = None) -> torch.Tensor:
    tensor = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    if fill is not None:
        tensor[..., 0, 0] = fill
    return tensor


def _masks(batch: int = 2, size: int = 32, value: float = 0.0, row: int = 0) -> torch.Tensor:
    masks = torch.zeros(batch, size, size)
    masks[row, 4:6, 4:6] = value
    return masks


_ANOMALOUS_MASKS = _masks(value=1.0, row=1)

# name: (forward keyword arguments, error type, words naming the value, words of the fix)
BAD_MODEL_INPUTS = {
    "label -100": ({"labels": torch.tensor([0, -100])}, ValueError, r"label -100 of labels\[1\]", "no ignore index"),
    "label 0.5": ({"labels": torch.tensor([0.0, 0.5])}, ValueError, r"label 0.5 of labels\[1\]", "tensor of 0/1"),
    "label 2": ({"labels": torch.tensor([2, 0])}, ValueError, r"label 2 of labels\[0\]", "tensor of 0/1"),
    "label -1": ({"labels": torch.tensor([0, -1])}, ValueError, r"label -1 of labels\[1\]", "tensor of 0/1"),
    "label nan": ({"labels": torch.tensor([float("nan"), 0.0])}, ValueError, r"label nan of labels\[0\]", "0/1"),
    "3 labels for 2 images": ({"labels": torch.tensor([0, 1, 0])}, ValueError, r"Got 3 labels .* 2 images", "one per"),
    "1 label for 2 images": ({"labels": torch.tensor([0])}, ValueError, r"Got 1 labels .* 2 images", "one per image"),
    "labels as a list": ({"labels": [0, 1]}, TypeError, "labels must be a torch tensor, got list", "tensor of 0/1"),
    "normal image with a mask": (
        {"labels": torch.tensor([0, 1]), "masks": _masks(value=1.0) + _ANOMALOUS_MASKS},
        ValueError,
        "batch row 0 is labelled normal but its mask marks 4 anomalous pixels",
        "fix the label",
    ),
    "nan mask": (
        {"labels": torch.tensor([0, 1]), "masks": _masks(value=float("nan"), row=1)},
        ValueError,
        r"masks hold values in \[.*nan",
        r"must lie in \[0, 1\]",
    ),
    "inf mask": (
        {"labels": torch.tensor([0, 1]), "masks": _masks(value=float("inf"), row=1)},
        ValueError,
        r"masks hold values in \[0, inf\]",
        "finite",
    ),
    "0..255 mask": (
        {"labels": torch.tensor([0, 1]), "masks": _masks(value=255.0, row=1)},
        ValueError,
        r"masks hold values in \[0, 255\]",
        "Divide 0..255 masks by 255",
    ),
    "mask of the wrong size": (
        {"labels": torch.tensor([0, 1]), "masks": torch.zeros(2, 16, 16)},
        ValueError,
        r"masks have shape \(2, 16, 16\)",
        "same processor",
    ),
    "mask_valid count": (
        {"labels": torch.tensor([0, 0]), "mask_valid": torch.tensor([True, True, True])},
        ValueError,
        "mask_valid has 3 entries for a batch of 2",
        "one boolean per image",
    ),
    "channels-last": ({"pixel_values": _pixels(2, 32, 32, 3)}, ValueError, r"shape \(2, 32, 32, 3\)", "permute"),
    "1 channel": ({"pixel_values": _pixels(2, 1, 32, 32)}, ValueError, r"shape \(2, 1, 32, 32\)", "1-channel .* RGB"),
    "4 channels": ({"pixel_values": _pixels(2, 4, 32, 32)}, ValueError, r"\(2, 4, 32, 32\)", "4-channel .* RGB"),
    "batch of 0": ({"pixel_values": _pixels(0, 3, 32, 32)}, ValueError, "a batch of 0 images", "at least one image"),
    "no batch dimension": ({"pixel_values": _pixels(3, 32, 32)}, ValueError, r"shape \(3, 32, 32\)", r"\[None\]"),
    "zero height": ({"pixel_values": _pixels(1, 3, 0, 32)}, ValueError, r"\(1, 3, 0, 32\).*no pixels", "(B, 3, H, W)"),
    "nan pixel": (
        {"pixel_values": _pixels(2, 3, 32, 32, fill=float("nan"))},
        ValueError,
        "NaN or inf",
        "normalisation",
    ),
    "inf pixel": (
        {"pixel_values": _pixels(2, 3, 32, 32, fill=float("inf"))},
        ValueError,
        "NaN or inf",
        "normalisation",
    ),
    "uint8 pixels": (
        {"pixel_values": torch.zeros(2, 3, 32, 32, dtype=torch.uint8)},
        ValueError,
        "dtype torch.uint8",
        "FAPromptImageProcessor",
    ),
    "numpy pixels": ({"pixel_values": np.zeros((2, 3, 32, 32))}, TypeError, "got ndarray", "(B, 3, H, W)"),
}


@pytest.mark.parametrize("name", list(BAD_MODEL_INPUTS))
def test_bad_model_inputs_are_refused_naming_the_value_and_the_fix(tiny_model, name):
    overrides, error, value_words, fix_words = BAD_MODEL_INPUTS[name]
    inputs = {"pixel_values": _pixels(2, 3, 32, 32), **overrides}
    with pytest.raises(error, match=value_words) as raised:
        tiny_model(**inputs)
    assert fix_words in str(raised.value) or re.search(fix_words, str(raised.value)), str(raised.value)


def test_valid_label_spellings_still_train(tiny_model):
    masks = _ANOMALOUS_MASKS
    for labels in (
        torch.tensor([0, 1]),
        torch.tensor([[0], [1]]),
        torch.tensor([False, True]),
        torch.tensor([0.0, 1.0]),
    ):
        out = tiny_model(pixel_values=_pixels(2, 3, 32, 32), labels=labels, masks=masks)
        assert torch.isfinite(out.loss)
    soft = masks * 0.9  # a soft mask in [0, 1] is binarised at 0.5
    assert torch.isfinite(tiny_model(pixel_values=_pixels(2, 3, 32, 32), labels=torch.tensor([0, 1]), masks=soft).loss)


def test_the_model_and_the_collator_use_the_same_words(tiny_model):
    """One message per rule (faprompt_hf.validation), whether the batch comes from the collator or a custom loop."""
    from faprompt_hf.data.schema import _check_mask, _parse_label
    from faprompt_hf.validation import LABEL_RULE

    with pytest.raises(ValueError, match="is labelled normal but its mask marks 4 anomalous pixels; fix") as collator:
        _check_mask(np.asarray(_masks(value=1.0)[0] > 0), (32, 32), 0, "row.png")
    with pytest.raises(ValueError, match="is labelled normal but its mask marks 4 anomalous pixels; fix") as model:
        tiny_model(
            pixel_values=_pixels(2, 3, 32, 32), labels=torch.tensor([0, 1]), masks=_masks(value=1.0) + _ANOMALOUS_MASKS
        )
    assert str(collator.value).split(" is labelled")[1] == str(model.value).split(" is labelled")[1]
    for raise_it in (
        lambda: _parse_label(-100, "row 'x.png'"),
        lambda: tiny_model(pixel_values=_pixels(1, 3, 32, 32), labels=torch.tensor([-100])),
    ):
        with pytest.raises(ValueError, match=rf"Cannot read the label -100 of .*: {re.escape(LABEL_RULE)}"):
            raise_it()


def test_traced_graphs_skip_only_the_value_checks():
    from faprompt_hf.validation import check_model_inputs

    nan_pixels = torch.full((1, 3, 8, 8), float("nan"))
    with pytest.raises(ValueError, match="NaN or inf"):
        check_model_inputs(nan_pixels)
    assert check_model_inputs(nan_pixels, torch.tensor([0.5]), check_values=False) is None
    with pytest.raises(ValueError, match="channels-last"):
        check_model_inputs(torch.zeros(1, 8, 8, 3), check_values=False)
    with pytest.raises(ValueError, match="2 labels"):
        check_model_inputs(torch.zeros(1, 3, 8, 8), torch.tensor([0, 1]), check_values=False)


def test_gaussian_sigma_is_a_forward_argument_that_leaves_the_config_alone(tiny_model, make_pixels):
    pixels = make_pixels(2)
    configured = tiny_model.config.gaussian_sigma
    with torch.no_grad():
        default = tiny_model(pixel_values=pixels)
        unsmoothed = tiny_model(pixel_values=pixels, gaussian_sigma=0)
        wide = tiny_model(pixel_values=pixels, gaussian_sigma=3.5)
    assert tiny_model.config.gaussian_sigma == configured
    assert torch.equal(unsmoothed.anomaly_maps, default.raw_anomaly_maps)
    reference = np.stack([gaussian_filter(m.numpy(), 3.5, mode="reflect", truncate=4.0) for m in wide.raw_anomaly_maps])
    np.testing.assert_allclose(wide.anomaly_maps.numpy(), reference, atol=1e-6)
    assert torch.equal(wide.image_scores, default.image_scores)  # smoothing never changes the image scores
    for bad in (-1.0, float("nan"), float("inf"), True, "3"):
        with pytest.raises(ValueError, match=r"gaussian_sigma must be a finite number >= 0"):
            tiny_model(pixel_values=pixels, gaussian_sigma=bad)


def test_precomputed_static_prompts_give_the_same_outputs(tiny_model, make_pixels):
    pixels = make_pixels(3)
    with torch.no_grad():
        static = tiny_model.static_prompts()
        baked = FAPromptStaticPrompts(*(tensor.clone() for tensor in static))
        tiny_model.clear_static_text_cache()
        expected = tiny_model(pixel_values=pixels)
        given = tiny_model(pixel_values=pixels, static_prompts=baked)
    for key in ("image_scores", "anomaly_maps", "prior_patch_scores"):
        assert torch.equal(getattr(given, key), getattr(expected, key)), key


def test_add_prior_to_prompts_adds_omega_to_the_abnormal_context_only(tiny_model):
    with torch.no_grad():
        embeds = tiny_model.abnormal_prompt_embeds()  # (K, La, Dt)
        prior = torch.randn(2, embeds.shape[-1], generator=torch.Generator().manual_seed(1))
        context = tiny_model.abnormal_context_positions
        spliced = add_prior_to_prompts(embeds, prior, context)
    num_prompts = embeds.shape[0]
    assert spliced.shape == (2 * num_prompts, *embeds.shape[1:])
    for image in range(2):
        for prompt in range(num_prompts):
            row = spliced[image * num_prompts + prompt]
            expected = embeds[prompt].clone()
            expected[context] += prior[image]
            assert torch.equal(row, expected), (image, prompt)
    learner = tiny_model.prompt_learner
    assert torch.equal(embeds[:, context], learner.abnormal_context.to(embeds.dtype))
    assert torch.equal(embeds[0, 1 : context.start], learner.normal_context.to(embeds.dtype))


def test_input_sizes_follow_the_configs_one_rule(tiny_model, make_pixels):
    with pytest.raises(
        ValueError, match=r"input size 30x32 is not a multiple of the patch size 8: use a multiple, for"
    ):
        tiny_model(pixel_values=torch.zeros(1, 3, 30, 32))
    with torch.no_grad():
        assert tiny_model(pixel_values=make_pixels(1, size=40)).anomaly_maps.shape == (1, 40, 40)


# ---------------------------------------------------------------------------------------------------- bounds


def test_a_gaussian_sigma_wider_than_the_map_is_refused(tiny_model, make_pixels):
    pixels = make_pixels(2)
    with pytest.raises(ValueError, match=r"gaussian_sigma=1000000.0 is wider than the 32x32 anomaly map.*at most 32"):
        tiny_model(pixel_values=pixels, gaussian_sigma=1e6)
    tiny_model(pixel_values=pixels, gaussian_sigma=32)  # the widest allowed
    sigma = tiny_model.config.gaussian_sigma
    try:
        tiny_model.config.gaussian_sigma = 1e6
        with pytest.raises(ValueError, match=r"config\.gaussian_sigma=1000000.0 is wider"):
            tiny_model(pixel_values=pixels)
    finally:
        tiny_model.config.gaussian_sigma = sigma


def test_pixels_so_large_that_the_scores_overflow_are_refused(tiny_model):
    with pytest.raises(ValueError, match=r"NaN or infinite for pixel_values in \[1e\+30, 1e\+30\].*normalised"):
        tiny_model(pixel_values=torch.full((1, 3, 32, 32), 1e30))


def test_a_token_id_beyond_the_vocabulary_is_refused_naming_it(make_tiny_config, make_pixels):
    model = FAPromptModel(make_tiny_config(eos_token_id=10**9)).eval()
    with pytest.raises(ValueError, match=r"token ids from the config reach 1000000000, but the model's CLIP has only"):
        model(pixel_values=make_pixels(1))


# ---------------------------------------------------------------------------------------------------------------------
# Normal references (few-shot)
# ---------------------------------------------------------------------------------------------------------------------


def _reference_distances_by_hand(patch_tokens: torch.Tensor, bank: torch.Tensor) -> np.ndarray:
    """1 - the largest cosine to any bank row, patch by patch in numpy float64 (an independent reference)."""
    queries = patch_tokens.double().numpy()
    rows = bank.double().numpy()
    rows = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    out = np.empty(queries.shape[:2])
    for image in range(queries.shape[0]):
        for patch in range(queries.shape[1]):
            query = queries[image, patch] / np.linalg.norm(queries[image, patch])
            out[image, patch] = 1.0 - max(float(row @ query) for row in rows)
    return np.clip(out, 0.0, 1.0)


def test_reference_distances_equal_a_patch_by_patch_reference_in_chunks(monkeypatch):
    generator = torch.Generator().manual_seed(0)
    patch_tokens = F.normalize(torch.randn(2, 9, 8, generator=generator), dim=-1)
    bank = F.normalize(torch.randn(23, 8, generator=generator), dim=-1)
    expected = _reference_distances_by_hand(patch_tokens, bank)
    whole = normal_reference_distances(patch_tokens, bank)
    monkeypatch.setattr(modeling_faprompt, "_REFERENCE_CHUNK_ELEMENTS", 5)  # 5 // 18 -> one bank row at a time
    chunked = normal_reference_distances(patch_tokens, bank)
    np.testing.assert_allclose(whole.numpy(), expected, atol=1e-6)
    np.testing.assert_allclose(chunked.numpy(), expected, atol=1e-6)


def test_references_fuse_maps_and_scores_by_the_config_weights(tiny_model, make_pixels):
    config = tiny_model.config
    config.reference_map_weight, config.reference_score_weight = 0.3, 0.6
    pixels, references = make_pixels(2, 48), make_pixels(3, 48, seed=1)
    with torch.no_grad():
        zero_shot = tiny_model(pixel_values=pixels)
        reference_tokens = tiny_model(pixel_values=references).patch_embeds[:, 1:]
    tiny_model.set_normal_references(references)
    with torch.no_grad():
        few_shot = tiny_model(pixel_values=pixels)

    distances = _reference_distances_by_hand(zero_shot.patch_embeds[:, 1:], reference_tokens.reshape(-1, 16))
    upsampled = F.interpolate(torch.from_numpy(distances).float().view(2, 1, 6, 6), size=(48, 48), mode="bilinear")
    expected_maps = np.stack(
        [gaussian_filter(m, config.gaussian_sigma, mode="reflect", truncate=4.0) for m in upsampled[:, 0].numpy()]
    )
    np.testing.assert_allclose(few_shot.reference_maps.numpy(), expected_maps, atol=1e-5)
    np.testing.assert_allclose(few_shot.reference_scores.numpy(), expected_maps.reshape(2, -1).max(1), atol=1e-5)
    torch.testing.assert_close(few_shot.anomaly_maps, 0.7 * zero_shot.anomaly_maps + 0.3 * few_shot.reference_maps)
    torch.testing.assert_close(
        few_shot.image_scores, 0.4 * zero_shot.image_scores + 0.6 * few_shot.reference_scores, atol=1e-6, rtol=0
    )
    assert torch.equal(few_shot.static_patch_scores, zero_shot.static_patch_scores)  # the text side is untouched


def test_an_image_among_its_own_references_has_zero_reference_distance(tiny_model, make_pixels):
    pixels = make_pixels(2, 48)
    tiny_model.set_normal_references(pixels[:1], class_name="part")
    with torch.no_grad():
        out = tiny_model(pixel_values=pixels)
    assert out.reference_maps[0].abs().max() < 1e-5
    assert out.reference_scores[1] > 0.05  # another random image is far from it


def test_without_references_outputs_and_state_dict_are_unchanged(tiny_model, make_pixels):
    pixels = make_pixels(2)
    keys = set(tiny_model.state_dict())
    with torch.no_grad():
        before = tiny_model(pixel_values=pixels)
    tiny_model.set_normal_references(make_pixels(2, seed=3), class_name="a")
    tiny_model.set_normal_references(make_pixels(1, seed=4), class_name="b")
    tiny_model.clear_normal_references()
    with torch.no_grad():
        after = tiny_model(pixel_values=pixels)
    assert set(tiny_model.state_dict()) == keys
    assert after.reference_maps is None and after.reference_scores is None
    for key in ("image_scores", "anomaly_maps", "raw_anomaly_maps"):
        assert torch.equal(getattr(before, key), getattr(after, key)), key
    assert tiny_model.config.normal_reference_classes == []


def test_the_bank_keeps_classes_apart_and_appends(tiny_model, make_pixels):
    first, second, third = make_pixels(2, seed=1), make_pixels(1, seed=2), make_pixels(3, seed=3)
    tiny_model.set_normal_references(first, class_name="screw")
    tiny_model.set_normal_references(second, class_name="nut")
    screw_rows = tiny_model.normal_reference_features("screw").clone()
    tiny_model.set_normal_references(third, class_name="screw")
    grid = (32 // 8) ** 2
    assert tiny_model.normal_reference_classes == ["screw", "nut"]
    assert tiny_model.config.normal_reference_image_counts == [5, 1]
    assert tiny_model.config.normal_reference_patch_counts == [5 * grid, grid]
    assert torch.equal(tiny_model.normal_reference_features("screw")[: 2 * grid], screw_rows)
    nut_rows = tiny_model.normal_reference_features("nut").clone()
    tiny_model.clear_normal_references("screw")
    assert tiny_model.normal_reference_classes == ["nut"]
    assert torch.equal(tiny_model.normal_reference_features(), nut_rows)
    assert tiny_model.normal_reference_features().dtype == torch.float32


def test_reference_classes_are_chosen_by_name_with_errors_that_list_them(tiny_model, make_pixels):
    pixels = make_pixels(1)
    with pytest.raises(ValueError, match="holds no normal references: add some with model.set_normal_references"):
        tiny_model(pixel_values=pixels, normal_reference_class="screw")
    tiny_model.set_normal_references(make_pixels(1, seed=1), class_name="screw")
    tiny_model.set_normal_references(make_pixels(1, seed=2), class_name="nut")
    with pytest.raises(ValueError, match=r"several classes \['screw', 'nut'\]: choose one with normal_reference_cl"):
        tiny_model(pixel_values=pixels)
    with pytest.raises(ValueError, match=r"class 'bolt' in the model's bank: it holds \['screw', 'nut'\]"):
        tiny_model(pixel_values=pixels, normal_reference_class="bolt")
    with pytest.raises(ValueError, match=r"class 'bolt'.*it holds \['screw', 'nut'\]"):
        tiny_model.clear_normal_references("bolt")
    with torch.no_grad():
        screw = tiny_model(pixel_values=pixels, normal_reference_class="screw")
        nut = tiny_model(pixel_values=pixels, normal_reference_class="nut")
    assert not torch.equal(screw.reference_maps, nut.reference_maps)


@pytest.mark.parametrize(
    "pixels, message",
    [
        (torch.zeros(0, 3, 32, 32), "B >= 1|at least one|empty"),
        (torch.full((1, 3, 32, 32), float("nan")), "NaN"),
        (torch.zeros(1, 3, 30, 30), "reference input size 30 is not a multiple of the patch size 8"),
    ],
    ids=["empty", "nan", "size"],
)
def test_bad_references_are_refused_and_leave_the_bank_alone(tiny_model, pixels, message):
    with pytest.raises(ValueError, match=message):
        tiny_model.set_normal_references(pixels, class_name="part")
    assert tiny_model.normal_reference_classes == []
    assert tiny_model.normal_references.features is None


def test_references_leave_the_training_loss_alone(tiny_model, make_pixels):
    pixels = make_pixels(2)
    labels, masks = torch.tensor([0, 1]), torch.zeros(2, 32, 32)
    masks[1, 8:16, 8:16] = 1
    with torch.no_grad():
        before = tiny_model(pixel_values=pixels, labels=labels, masks=masks).loss
        tiny_model.set_normal_references(make_pixels(2, seed=5))
        after = tiny_model(pixel_values=pixels, labels=labels, masks=masks).loss
    assert torch.equal(before, after)


def test_a_config_that_lists_a_bank_builds_a_finite_zero_bank_on_meta_init(make_tiny_config):
    config = make_tiny_config(
        normal_reference_classes=["a", "b"], normal_reference_image_counts=[1, 2], normal_reference_patch_counts=[4, 8]
    )
    model = FAPromptModel.from_pretrained(None, config=config, state_dict={})
    assert model.normal_references.features.shape == (12, config.clip_config.projection_dim)
    assert torch.equal(model.normal_references.features, torch.zeros(12, config.clip_config.projection_dim))


def test_replacing_a_class_keeps_its_place_and_a_refused_set_changes_nothing(tiny_model, make_pixels):
    tiny_model.set_normal_references(make_pixels(2, seed=1), class_name="screw")
    tiny_model.set_normal_references(make_pixels(1, seed=2), class_name="nut")
    new_screws = make_pixels(3, seed=3)
    tiny_model.set_normal_references(new_screws, class_name="screw", replace=True, batch_size=2)
    assert tiny_model.normal_reference_classes == ["screw", "nut"]
    assert tiny_model.config.normal_reference_image_counts == [3, 1]
    torch.testing.assert_close(
        tiny_model.normal_reference_features("screw"), tiny_model.encode_normal_references(new_screws)
    )
    bank = tiny_model.normal_references.features.clone()
    bad = torch.cat([make_pixels(1), torch.full((1, 3, 32, 32), float("nan"))])
    with pytest.raises(ValueError, match="NaN"):
        tiny_model.set_normal_references(bad, class_name="screw", replace=True, batch_size=1)
    assert torch.equal(tiny_model.normal_references.features, bank)
    assert tiny_model.config.normal_reference_image_counts == [3, 1]

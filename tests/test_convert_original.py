# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""Parity with the released implementation (../shared/parity) and the conversion of its checkpoints."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoProcessor

from faprompt_hf import FAPromptModel, cli, convert_original_checkpoint
from faprompt_hf.convert_original import clip_from_openai_state_dict, load_torch_file

ATOL = 1e-4


@pytest.fixture(scope="module")
def reference(parity_dir):
    return torch.load(parity_dir / "parity_seed0.pt", weights_only=True)


@pytest.fixture(scope="module")
def converted(original_weights, reference):
    clip_path, prompt_learner_path = original_weights
    return convert_original_checkpoint(prompt_learner_path, clip_path, gaussian_sigma=float(reference["sigma"]))


@pytest.fixture(scope="module")
def inference(converted, reference):
    with torch.no_grad():
        return converted(pixel_values=reference["pixel_values"])


def test_conversion_sets_the_released_behaviour(converted):
    assert converted.config.prior_patch_selection == "first_m"
    assert converted.config.round_deep_prompts_to_float16
    assert converted.config.num_vv_blocks == 19
    assert not converted.training
    assert all(p.dtype == torch.float32 for p in converted.parameters())
    assert not any(p.requires_grad for p in converted.clip.parameters())


@pytest.mark.parametrize(
    "output_key, reference_key",
    [
        ("patch_embeds", "patch_features"),
        ("static_text_features", "text_features_static"),
        ("static_patch_scores", "sim_static"),
        ("prior_bias", "dap_bias"),
        ("prior_text_features", "text_features_dap"),
        ("prior_patch_scores", "sim_dap"),
        ("raw_anomaly_maps", "anomaly_maps_raw"),
        ("anomaly_maps", "anomaly_maps"),
        ("image_scores", "image_scores"),
    ],
)
def test_inference_matches_released_code(inference, reference, output_key, reference_key):
    ours, theirs = getattr(inference, output_key), reference[reference_key]
    assert ours.shape == theirs.shape
    assert (ours - theirs).abs().max().item() <= ATOL


def test_prior_sees_the_released_patches(inference, reference):
    assert torch.equal(inference.prior_patch_indices.cpu(), reference["prior_input_patches"])


def test_top_m_selection_matches_the_released_topk(converted, reference):
    converted.config.prior_patch_selection = "top_m"
    try:
        with torch.no_grad():
            out = converted(pixel_values=reference["pixel_values"])
    finally:
        converted.config.prior_patch_selection = "first_m"
    assert torch.equal(out.prior_patch_indices, reference["top_m_patches_by_s1"])


def test_training_objective_and_gradients_match(converted, reference):
    converted.train()
    try:
        out = converted(pixel_values=reference["pixel_values"], labels=reference["labels"], masks=reference["masks"])
        converted.zero_grad()
        out.loss.backward()
    finally:
        converted.eval()
    assert abs(out.loss.item() - reference["loss"].item()) / abs(reference["loss"].item()) <= 1e-4
    learner = converted.prompt_learner
    ours = {
        "ctx_pos": learner.normal_context.grad,
        "ctx_neg": learner.abnormal_context.grad,
        "patch_meta_net.linear1.weight": learner.prior.fc1.weight.grad,
        "patch_meta_net.linear1.bias": learner.prior.fc1.bias.grad,
        "patch_meta_net.linear2.weight": learner.prior.fc2.weight.grad,
        "patch_meta_net.linear2.bias": learner.prior.fc2.bias.grad,
    }
    for index in range(learner.deep_prompts.shape[0]):
        ours[f"compound_prompts_text.{index}"] = learner.deep_prompts.grad[index]
    assert set(ours) == set(reference["grads"])
    for key, reference_grad in reference["grads"].items():
        grad = ours[key]
        # the fixture keeps the [:8, :8] corner of large gradients, and their whole norms
        assert abs(grad.norm().item() - reference["grad_norms"][key].item()) <= 1e-3 * reference["grad_norms"][key]
        grad = grad.reshape(reference_grad.shape) if grad.numel() == reference_grad.numel() else grad[:8, :8]
        relative = (grad - reference_grad).norm() / reference_grad.norm()
        assert relative.item() <= 1e-3, key
    converted.zero_grad()


def test_unused_original_tensors_are_dropped(converted, reference):
    assert all(name.startswith("compound_prompt_projections") for name in reference["no_grad_params"])
    assert not any("projection" in name and "prompt" in name for name in converted.state_dict())


def test_any_batch_and_image_size(converted, reference):
    """Nothing depends on the fixture: one image alone gives the batch's outputs, and other sizes run."""
    with torch.no_grad():
        single = converted(pixel_values=reference["pixel_values"][1:])
        wide = converted(pixel_values=torch.randn(3, 3, 168, 252))
    assert (single.image_scores - reference["image_scores"][1:]).abs().max() <= ATOL
    assert (single.anomaly_maps - reference["anomaly_maps"][1:]).abs().max() <= ATOL
    assert wide.anomaly_maps.shape == (3, 168, 252)
    assert torch.isfinite(wide.image_scores).all()


def test_converted_directory_round_trip(converted, reference, tmp_path):
    converted.save_pretrained(tmp_path)
    reloaded = FAPromptModel.from_pretrained(tmp_path)
    with torch.no_grad():
        out = reloaded(pixel_values=reference["pixel_values"])
    assert (out.image_scores - reference["image_scores"]).abs().max() <= ATOL
    assert reloaded.config.prior_patch_selection == "first_m"


def test_cli_writes_a_loadable_directory(original_weights, reference, tmp_path):
    clip_path, prompt_learner_path = original_weights
    output = tmp_path / "converted"
    cli.main(
        [
            "convert",
            "--checkpoint",
            str(prompt_learner_path),
            "--clip",
            str(clip_path),
            "--output",
            str(output),
            "--gaussian_sigma",
            str(float(reference["sigma"])),
            "--image_size",
            "224",
        ]
    )
    model = FAPromptModel.from_pretrained(output)
    processor = AutoProcessor.from_pretrained(output)
    assert processor.image_processor.size == {"height": 224, "width": 224}
    with torch.no_grad():
        out = model(pixel_values=reference["pixel_values"])
    assert (out.anomaly_maps - reference["anomaly_maps"]).abs().max() <= ATOL


def test_wrong_clip_is_detected(original_weights, tmp_path):
    clip_path, prompt_learner_path = original_weights
    state_dict = torch.load(clip_path, weights_only=True)
    state_dict["token_embedding.weight"] = state_dict["token_embedding.weight"] + 1.0
    other = tmp_path / "other_clip.pt"
    torch.save(state_dict, other)
    with pytest.raises(ValueError, match="another CLIP"):
        convert_original_checkpoint(prompt_learner_path, other)


def test_pickled_code_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"prompt_learner": {"x": torch.zeros(1)}, "callback": print}, path)
    with pytest.raises(ValueError, match="weights_only"):
        load_torch_file(path, "original FAPrompt checkpoint")


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        convert_original_checkpoint(tmp_path / "nope.pth", tmp_path / "clip.pt")


def test_openai_clip_equals_transformers_clip_layout(original_weights):
    """The converted OpenAI state dict gives CLIP text features that a hand-written reference reproduces."""
    clip_path, _ = original_weights
    state_dict = torch.load(clip_path, weights_only=True)
    clip = clip_from_openai_state_dict(state_dict)
    ids = torch.tensor([[49406, 320, 13568, 14115, 269, 49407]])
    with torch.no_grad():
        features = clip.get_text_features(input_ids=ids).pooler_output
        # reference: OpenAI's text path written out with its own key layout
        x = state_dict["token_embedding.weight"][ids] + state_dict["positional_embedding"][: ids.shape[1]]
        mask = torch.full((6, 6), float("-inf")).triu(1)
        for block in range(9):
            p = f"transformer.resblocks.{block}."
            h = torch.nn.functional.layer_norm(x, (768,), state_dict[p + "ln_1.weight"], state_dict[p + "ln_1.bias"])
            attention = torch.nn.MultiheadAttention(768, 12, batch_first=True)
            attention.in_proj_weight.data = state_dict[p + "attn.in_proj_weight"]
            attention.in_proj_bias.data = state_dict[p + "attn.in_proj_bias"]
            attention.out_proj.weight.data = state_dict[p + "attn.out_proj.weight"]
            attention.out_proj.bias.data = state_dict[p + "attn.out_proj.bias"]
            x = x + attention(h, h, h, attn_mask=mask, need_weights=False)[0]
            h = torch.nn.functional.layer_norm(x, (768,), state_dict[p + "ln_2.weight"], state_dict[p + "ln_2.bias"])
            h = h @ state_dict[p + "mlp.c_fc.weight"].T + state_dict[p + "mlp.c_fc.bias"]
            h = h * torch.sigmoid(1.702 * h)
            x = x + h @ state_dict[p + "mlp.c_proj.weight"].T + state_dict[p + "mlp.c_proj.bias"]
        x = torch.nn.functional.layer_norm(x, (768,), state_dict["ln_final.weight"], state_dict["ln_final.bias"])
        expected = x[:, -1] @ state_dict["text_projection"]
    assert torch.allclose(features, expected, atol=1e-5)


def test_torchscript_clip_archive_is_refused_with_the_way_out(tmp_path):
    path = tmp_path / "ViT-L-14-336px.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), path)
    with pytest.raises(ValueError, match="TorchScript archive.*openai/clip-vit-large-patch14-336"):
        load_torch_file(path, "OpenAI-format CLIP file")


# ----------------------------------------------------------------------------------------------------------------------
# Malformed and non-finite original checkpoints
# ----------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clip_model(original_weights):
    """The CLIP of the parity weights, built once (conversion accepts a CLIPModel as well as a file)."""
    return clip_from_openai_state_dict(torch.load(original_weights[0], weights_only=True))


def _nan_at_one(tensor):
    tensor = tensor.clone()
    tensor.view(-1)[3] = float("nan")
    return tensor


def _rename(state, old, new):
    state[new] = state.pop(old)


MALFORMED = {
    "ctx_pos 1-D": (
        lambda s: s.update(ctx_pos=s["ctx_pos"].flatten()[:768]),
        ValueError,
        r"prompt_learner\['ctx_pos'\] has shape \(768,\); the released layout is \(1, 1, n_ctx, 768\)",
    ),
    "ctx_pos wrong width": (
        lambda s: s.update(ctx_pos=s["ctx_pos"][..., :512]),
        ValueError,
        r"'ctx_pos'\] has shape \(1, 1, 5, 512\); the released layout is \(1, 1, n_ctx, 768\)",
    ),
    "ctx_neg 2-D": (
        lambda s: s.update(ctx_neg=s["ctx_neg"][0, 0]),
        ValueError,
        r"'ctx_neg'\] has shape \(2, 768\); the released layout is \(1, num_prompts, n_ctx, 768\)",
    ),
    "deep prompt rank 3": (
        lambda s: s.update({"compound_prompts_text.2": s["compound_prompts_text.2"][None]}),
        ValueError,
        r"'compound_prompts_text.2'\] has shape \(1, 4, 768\); the released layout is \(length, 768\)",
    ),
    "deep prompt of another length": (
        lambda s: s.update({"compound_prompts_text.5": s["compound_prompts_text.5"][:2]}),
        ValueError,
        r"'compound_prompts_text.5'\] has shape \(2, 768\).*the same for every",
    ),
    "non-integer deep prompt key": (
        lambda s: _rename(s, "compound_prompts_text.7", "compound_prompts_text.last"),
        ValueError,
        r"deep-prompt key 'compound_prompts_text.last' is not compound_prompts_text.<integer>",
    ),
    "gap in deep prompt keys": (
        lambda s: _rename(s, "compound_prompts_text.3", "compound_prompts_text.9"),
        ValueError,
        r"deep-prompt keys are numbered \[0, 1, 2, 4, 5, 6, 7, 9\]; expected .*0 \.\.\. .*7 without gaps",
    ),
    "prior weight 1-D": (
        lambda s: s.update({"patch_meta_net.linear1.weight": s["patch_meta_net.linear1.weight"][0]}),
        ValueError,
        r"'patch_meta_net.linear1.weight'\] has shape \(7680,\); the released layout is \(out_features, in_features\)",
    ),
    "prior inputs not a multiple of the projection": (
        lambda s: s.update({"patch_meta_net.linear1.weight": s["patch_meta_net.linear1.weight"][:, :700]}),
        ValueError,
        r"'patch_meta_net.linear1.weight'\] has shape \(480, 700\).*M prior patches of the projection size 768",
    ),
    "float token ids": (
        lambda s: s.update(tokenized_prompts_pos=s["tokenized_prompts_pos"].float()),
        ValueError,
        r"'tokenized_prompts_pos'\] has shape \(1, 1, 77\).*integer token ids",
    ),
    "token id outside the vocabulary": (
        lambda s: s["tokenized_prompts_neg"].view(-1).__setitem__(5, 10**6),
        ValueError,
        r"'tokenized_prompts_neg'\].*token ids in \[0, 49408\)",
    ),
    "NaN context": (
        lambda s: s.update(ctx_neg=_nan_at_one(s["ctx_neg"])),
        ValueError,
        r"'ctx_neg'\] \(shape \(1, 10, 2, 768\)\) holds 1 NaN or infinite value\(s\).*earlier checkpoint",
    ),
    "infinite deep prompt": (
        lambda s: s["compound_prompts_text.0"].view(-1).__setitem__(0, float("inf")),
        ValueError,
        r"prompt_learner\['compound_prompts_text.0'\] .*holds 1 NaN or infinite",
    ),
    "NaN prior bias": (
        lambda s: s.update({"patch_meta_net.linear2.bias": torch.full((768,), float("nan"))}),
        ValueError,
        r"'patch_meta_net.linear2.bias'\] \(shape \(768,\)\) holds 768 NaN",
    ),
    "a list instead of a tensor": (
        lambda s: s.update(ctx_pos=s["ctx_pos"].tolist()),
        ValueError,
        r"prompt_learner\['ctx_pos'\] holds a list; expected a tensor",
    ),
    "non-string key": (
        lambda s: s.update({3: torch.zeros(1)}),
        ValueError,
        r"'prompt_learner' has the key 3 \(int\)",
    ),
    "missing context": (lambda s: s.pop("ctx_pos"), KeyError, r"lacks 'ctx_pos'"),
    "missing prior bias": (lambda s: s.pop("patch_meta_net.linear2.bias"), KeyError, r"prior\.fc2\.bias"),
    "prior bias of the wrong shape": (
        lambda s: s.update({"patch_meta_net.linear2.bias": torch.zeros(5)}),
        ValueError,
        r"prior\.fc2\.bias",
    ),
    "unexpected tensor": (lambda s: s.update(surprise=torch.zeros(1)), KeyError, r"surprise"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_checkpoints_name_the_key_and_the_expected_shape(original_weights, clip_model, tmp_path, case):
    mutate, error, pattern = MALFORMED[case]
    checkpoint = torch.load(original_weights[1], weights_only=True)
    mutate(checkpoint["prompt_learner"])
    broken = tmp_path / "epoch_1.pth"
    torch.save(checkpoint, broken)
    with pytest.raises(error, match=pattern) as raised:
        convert_original_checkpoint(broken, clip_model)
    assert str(broken) in str(raised.value)


@pytest.mark.parametrize(
    ("content", "error", "pattern"),
    [
        ([torch.zeros(1)], ValueError, r"holds a list; an original FAPrompt epoch_N.pth holds a dict"),
        ({"state_dict": {}}, KeyError, r"no 'prompt_learner' entry \(its keys: \['state_dict'\]\).*from_pretrained"),
        ({"prompt_learner": [torch.zeros(1)]}, ValueError, r"'prompt_learner' holds a list; expected a state dict"),
    ],
)
def test_checkpoints_of_the_wrong_structure_are_named(clip_model, tmp_path, content, error, pattern):
    path = tmp_path / "epoch_1.pth"
    torch.save(content, path)
    with pytest.raises(error, match=pattern) as raised:
        convert_original_checkpoint(path, clip_model)
    assert str(path) in str(raised.value)


def test_module_prefixed_checkpoints_still_convert(original_weights, clip_model, tmp_path):
    """DataParallel's 'module.' prefixes are removed before the checks."""
    checkpoint = torch.load(original_weights[1], weights_only=True)
    checkpoint["prompt_learner"] = {f"module.{key}": value for key, value in checkpoint["prompt_learner"].items()}
    path = tmp_path / "epoch_1.pth"
    torch.save(checkpoint, path)
    model = convert_original_checkpoint(path, clip_model)
    reference = torch.load(original_weights[1], weights_only=True)["prompt_learner"]["ctx_pos"]
    assert torch.equal(model.prompt_learner.normal_context, reference.reshape(5, 768))

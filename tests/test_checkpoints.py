# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""Checkpoint integrity: weight-file digests, NaN prompts, embedded or compact as the config says."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from transformers import CLIPModel

from faprompt_hf import FAPromptConfig, FAPromptModel
from faprompt_hf.file_utils import INTEGRITY_FILE_NAME, VERIFY_DIGESTS_ENV, file_sha256
from faprompt_hf.tiny import tiny_clip_config


@pytest.fixture
def embedded_dir(tiny_model, tmp_path):
    folder = tmp_path / "embedded"
    tiny_model.save_pretrained(folder)
    return folder


@pytest.fixture
def local_clip_model(tiny_tokenizer, make_tiny_config, tmp_path):
    """An FAPromptModel built with from_clip on a local CLIP folder (which it records with its fingerprint)."""
    clip_dir = tmp_path / "clip"
    torch.manual_seed(0)
    CLIPModel(tiny_clip_config(tiny_tokenizer)).save_pretrained(clip_dir)
    overrides = make_tiny_config().to_dict()
    fields = {name for name in FAPromptConfig.__dataclass_fields__ if not name.startswith(("clip", "weights"))}
    return FAPromptModel.from_clip(str(clip_dir), **{key: overrides[key] for key in fields if key in overrides}).eval()


@pytest.fixture
def compact_dir(local_clip_model, tmp_path):
    """A compact checkpoint whose CLIP is a local folder (recorded with its fingerprint)."""
    folder = tmp_path / "compact"
    local_clip_model.save_pretrained(folder, include_clip=False)
    return folder


def _damage(path, count: int, offset_from_end: int = 2000, value: int = 0x3F) -> None:
    """Overwrite ``count`` bytes inside the tensor data (the header stays readable; 0x3F3F3F3F is 0.747)."""
    data = bytearray(path.read_bytes())
    start = len(data) - offset_from_end
    data[start : start + count] = bytes([value]) * count
    path.write_bytes(bytes(data))


# ---------------------------------------------------------------------------------------------------- digests


@pytest.mark.parametrize("kind", ["embedded", "compact"])
def test_save_writes_a_digest_of_each_weight_file_and_the_kind_in_the_config(kind, request):
    folder = request.getfixturevalue(f"{kind}_dir")
    manifest = json.loads((folder / INTEGRITY_FILE_NAME).read_text())
    assert manifest == {
        "algorithm": "sha256",
        "files": {"model.safetensors": file_sha256(folder / "model.safetensors")},
    }
    assert json.loads((folder / "config.json").read_text())["weights_include_clip"] is (kind == "embedded")
    FAPromptModel.from_pretrained(folder)  # intact: loads


@pytest.mark.parametrize("kind", ["embedded", "compact"])
def test_flipped_bytes_in_the_weights_are_refused_naming_the_file(kind, request, monkeypatch):
    folder = request.getfixturevalue(f"{kind}_dir")
    intact = {key: value.clone() for key, value in FAPromptModel.from_pretrained(folder).state_dict().items()}
    weights = folder / "model.safetensors"
    size = weights.stat().st_size
    _damage(weights, min(1000, size // 8), offset_from_end=size // 3)
    with pytest.raises(OSError, match=r"model\.safetensors is damaged: its SHA-256 .*verify_digests=False") as raised:
        FAPromptModel.from_pretrained(folder)
    assert str(weights) in str(raised.value)
    # The documented opt-outs load it (and show that the bytes changed the weights).
    loaded = FAPromptModel.from_pretrained(folder, verify_digests=False).state_dict()
    assert any(not torch.equal(value, loaded[key]) for key, value in intact.items())
    monkeypatch.setenv(VERIFY_DIGESTS_ENV, "0")
    FAPromptModel.from_pretrained(folder)


def test_a_weight_file_missing_from_the_manifest_is_refused(embedded_dir):
    manifest = embedded_dir / INTEGRITY_FILE_NAME
    manifest.write_text(json.dumps({"algorithm": "sha256", "files": {"other.safetensors": "00"}}))
    with pytest.raises(OSError, match=r"model\.safetensors is not listed in .*integrity\.json"):
        FAPromptModel.from_pretrained(embedded_dir)


def test_an_unreadable_manifest_is_named(embedded_dir):
    (embedded_dir / INTEGRITY_FILE_NAME).write_text("{not json")
    with pytest.raises(OSError, match=r"integrity\.json is not a readable integrity manifest"):
        FAPromptModel.from_pretrained(embedded_dir)


def test_a_folder_saved_before_digests_still_loads(embedded_dir):
    (embedded_dir / INTEGRITY_FILE_NAME).unlink()
    FAPromptModel.from_pretrained(embedded_dir)


def test_save_without_digests_removes_a_stale_manifest(tiny_model, embedded_dir):
    tiny_model.save_pretrained(embedded_dir, write_digests=False)
    assert not (embedded_dir / INTEGRITY_FILE_NAME).exists()
    FAPromptModel.from_pretrained(embedded_dir)


# ---------------------------------------------------------------------------------------------------- NaN prompts


@pytest.mark.parametrize("kind", ["embedded", "compact"])
def test_nan_in_a_prompt_tensor_is_refused_on_load(kind, request):
    folder = request.getfixturevalue(f"{kind}_dir")
    weights = folder / "model.safetensors"
    tensors = load_file(weights)
    name = sorted(key for key in tensors if key.startswith("prompt_learner."))[0]
    tensors[name] = tensors[name].clone()
    tensors[name].view(-1)[0] = float("nan")
    with safe_open(str(weights), framework="pt") as handle:
        metadata = handle.metadata()
    save_file(tensors, weights, metadata=metadata)
    with pytest.raises(ValueError, match=rf"{name} .*holds 1 NaN or infinite value.*earlier checkpoint"):
        FAPromptModel.from_pretrained(folder, verify_digests=False)


# ---------------------------------------------------------------------------------------------------- kind


def test_a_stray_clip_tensor_in_a_compact_checkpoint_is_refused(compact_dir):
    weights = compact_dir / "model.safetensors"
    tensors = load_file(weights)
    tensors["clip.logit_scale"] = torch.tensor(2.6592)
    save_file(tensors, weights, metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"compact checkpoint .*1 CLIP tensor\(s\) \['clip\.logit_scale'\]"):
        FAPromptModel.from_pretrained(compact_dir, verify_digests=False)


def test_an_embedded_config_over_compact_weights_is_refused(compact_dir):
    config_path = compact_dir / "config.json"
    config = json.loads(config_path.read_text())
    config["weights_include_clip"] = True
    config_path.write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"saved with its CLIP embedded .*hold no clip\.\* tensor"):
        FAPromptModel.from_pretrained(compact_dir)


def test_an_older_config_without_the_kind_still_decides_by_the_tensors(embedded_dir, compact_dir):
    for folder in (embedded_dir, compact_dir):
        config_path = folder / "config.json"
        config = json.loads(config_path.read_text())
        del config["weights_include_clip"]
        config_path.write_text(json.dumps(config))
        FAPromptModel.from_pretrained(folder)


# ---------------------------------------------------------------------------------------------------- config.json


def _rewrite_config(folder, transform) -> None:
    path = folder / "config.json"
    path.write_text(json.dumps(transform(json.loads(path.read_text()))))


@pytest.mark.parametrize(
    ("transform", "error", "pattern"),
    [
        (lambda config: [1, 2], ValueError, r"config\.json holds a JSON list, not an object"),
        (lambda config: {**config, "model_type": "clip"}, ValueError, r"model_type 'clip'.*FAPromptModel\.from_clip"),
        (lambda config: {**config, "model_type": "faprompt2"}, ValueError, r"model_type 'faprompt2', not 'faprompt'"),
        (
            lambda config: {key: value for key, value in config.items() if key != "model_type"},
            ValueError,
            r"model_type None, not 'faprompt'",
        ),
        (
            lambda config: {key: value for key, value in config.items() if key != "clip_config"},
            ValueError,
            r"config\.json lacks clip_config",
        ),
    ],
)
def test_a_config_json_that_is_not_an_faprompt_config_is_named(embedded_dir, transform, error, pattern):
    _rewrite_config(embedded_dir, transform)
    with pytest.raises(error, match=pattern) as raised:
        FAPromptModel.from_pretrained(embedded_dir)
    assert str(embedded_dir / "config.json") in str(raised.value)


@pytest.mark.parametrize("kind", ["embedded", "compact"])
def test_a_missing_config_json_is_named(kind, request):
    folder = request.getfixturevalue(f"{kind}_dir")
    (folder / "config.json").unlink()
    with pytest.raises(OSError, match=r"holds weights \(model\.safetensors\) but no config\.json") as raised:
        FAPromptModel.from_pretrained(folder)
    assert str(folder) in str(raised.value)


def test_a_file_instead_of_the_folder_says_to_pass_the_folder(embedded_dir):
    with pytest.raises(ValueError, match=r"takes the model's folder .*not one of its files") as raised:
        FAPromptModel.from_pretrained(embedded_dir / "config.json")
    assert f"from_pretrained({str(embedded_dir)!r})" in str(raised.value)


# ---------------------------------------------------------------------------------------------------- normal references

REFERENCE_COUNTS = {"bottle": 3, "screw": 1, "cable": 2}


def add_references(model: FAPromptModel, counts: dict[str, int] = REFERENCE_COUNTS) -> FAPromptModel:
    """Give ``model`` a normal-reference bank of several classes (random normalised images, seeded)."""
    generator = torch.Generator().manual_seed(7)
    for name, count in counts.items():
        model.set_normal_references(torch.randn(count, 3, 32, 32, generator=generator), class_name=name)
    return model


def fused_outputs(model: FAPromptModel, pixels: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Each class's fused (image scores, anomaly maps)."""
    with torch.no_grad():
        return {
            name: (out.image_scores, out.anomaly_maps)
            for name in model.normal_reference_classes
            for out in [model(pixel_values=pixels, normal_reference_class=name)]
        }


@pytest.mark.parametrize("include_clip", [True, False], ids=["embedded", "compact"])
def test_normal_references_survive_save_and_load(local_clip_model, include_clip, tmp_path):
    model = add_references(local_clip_model)
    model.save_pretrained(tmp_path / "saved", include_clip=include_clip)
    tensors = load_file(tmp_path / "saved" / "model.safetensors")
    assert torch.equal(tensors["normal_references.features"], model.normal_references.features)
    assert any(name.startswith("clip.") for name in tensors) is include_clip

    loaded = FAPromptModel.from_pretrained(tmp_path / "saved")
    assert loaded.normal_reference_classes == list(REFERENCE_COUNTS)
    assert loaded.config.normal_reference_image_counts == list(REFERENCE_COUNTS.values())
    assert loaded.config.normal_reference_patch_counts == model.config.normal_reference_patch_counts
    pixels = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    expected, found = fused_outputs(model, pixels), fused_outputs(loaded, pixels)
    assert list(found) == list(REFERENCE_COUNTS)
    for name, (scores, maps) in expected.items():
        assert torch.equal(found[name][0], scores) and torch.equal(found[name][1], maps), name
    assert not torch.equal(expected["bottle"][1], expected["screw"][1])  # each class's own bank is in use


def test_a_compact_checkpoint_with_references_refuses_another_clip(local_clip_model, tiny_tokenizer, tmp_path):
    """The bank holds features of the CLIP that computed them: the fingerprint check guards it with the prompts."""
    add_references(local_clip_model).save_pretrained(tmp_path / "compact", include_clip=False)
    torch.manual_seed(1)
    CLIPModel(tiny_clip_config(tiny_tokenizer)).save_pretrained(tmp_path / "other_clip")
    with pytest.raises(ValueError, match="fingerprint") as raised:
        FAPromptModel.from_pretrained(tmp_path / "compact", clip=str(tmp_path / "other_clip"))
    message = str(raised.value)
    assert "the normal-reference bank of ['bottle', 'screw', 'cable'] (features of that CLIP)" in message, message
    assert local_clip_model.config.clip_fingerprint in message and "clip=" in message


def test_a_checkpoint_listing_references_without_the_bank_is_refused_naming_it(local_clip_model, tmp_path):
    add_references(local_clip_model)
    for include_clip in (True, False):
        folder = tmp_path / f"saved-{include_clip}"
        local_clip_model.save_pretrained(folder, include_clip=include_clip)
        tensors = load_file(folder / "model.safetensors")
        del tensors["normal_references.features"]
        save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
        with pytest.raises(ValueError) as raised:
            FAPromptModel.from_pretrained(folder, verify_digests=False)
        message = str(raised.value)
        assert "lacks the normal-reference bank ['normal_references.features']" in message, message
        assert "'bottle' (3 image(s)), 'screw' (1 image(s)), 'cable' (2 image(s))" in message
        assert "prompt tensor" not in message and "Save the model again" in message


def test_normal_references_on_a_bfloat16_model_are_stored_in_float32_until_the_model_is_cast(tiny_model, tmp_path):
    pixels = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    model = tiny_model.to(torch.bfloat16)
    model.set_normal_references(pixels.bfloat16(), class_name="bottle")
    assert model.normal_references.features.dtype == torch.float32  # float32 at set time
    with torch.no_grad():
        outputs = model(pixel_values=pixels.bfloat16())
    assert outputs.reference_maps.dtype == torch.float32 and torch.isfinite(outputs.reference_maps).all()
    assert 0 <= float(outputs.reference_scores.min()) and float(outputs.reference_scores.max()) <= 1
    model.to(torch.bfloat16)  # a later cast casts the bank like any buffer
    assert model.normal_references.features.dtype == torch.bfloat16
    with torch.no_grad():
        cast = model(pixel_values=pixels.bfloat16())
    assert cast.reference_maps.dtype == torch.float32  # distances are computed in float32
    torch.testing.assert_close(cast.reference_scores, outputs.reference_scores, atol=0.02, rtol=0)
    model.set_normal_references(pixels[:1].bfloat16(), class_name="screw")  # adding a class to a cast bank
    assert model.normal_reference_features("screw").shape[0] == model.config.normal_reference_patch_counts[1]
    model.save_pretrained(tmp_path)
    loaded = FAPromptModel.from_pretrained(tmp_path)
    assert loaded.normal_reference_classes == ["bottle", "screw"]

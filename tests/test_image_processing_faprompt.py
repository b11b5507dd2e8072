# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""FAPromptImageProcessor / FAPromptProcessor: the original preprocessing, masks, modes, save/load."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoImageProcessor, AutoProcessor

from faprompt_hf import FAPromptConfig, FAPromptImageProcessor, FAPromptProcessor
from faprompt_hf.image_processing_faprompt import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD


def _rgb(width=40, height=30, seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


def test_images_are_prepared_as_the_original_evaluation():
    image = _rgb()
    pixels = FAPromptImageProcessor(size=16)(images=image, return_tensors="pt")["pixel_values"]
    # independent reference: PIL bicubic resize, /255, CLIP normalisation
    resized = np.asarray(image.resize((16, 16), Image.Resampling.BICUBIC), dtype=np.float64) / 255
    expected = ((resized - np.array(OPENAI_CLIP_MEAN)) / np.array(OPENAI_CLIP_STD)).transpose(2, 0, 1)
    assert pixels.shape == (1, 3, 16, 16) and pixels.dtype == torch.float32
    np.testing.assert_allclose(pixels[0].numpy(), expected, atol=1e-5)


def test_masks_are_binarised_then_resized_bilinearly():
    mask = np.zeros((30, 40), dtype=np.uint8)
    mask[10:20, 5:25] = 1  # VisA-style 0/1 values, not 0/255
    out = FAPromptImageProcessor(size=16)(images=_rgb(), masks=mask, return_tensors="pt")["masks"]
    reference = np.asarray(Image.fromarray(mask * 255).resize((16, 16), Image.Resampling.BILINEAR)) / 255.0 > 0.5
    assert out.shape == (1, 16, 16)
    assert set(out.unique().tolist()) <= {0.0, 1.0}
    np.testing.assert_array_equal(out[0].numpy(), reference.astype(np.float32))


def test_batch_with_normal_images_gets_zero_masks():
    mask = np.zeros((30, 40), dtype=bool)
    mask[:5] = True
    batch = FAPromptImageProcessor(size=16)(images=[_rgb(), _rgb(seed=1)], masks=[None, mask], return_tensors="pt")
    assert batch["pixel_values"].shape == (2, 3, 16, 16)
    assert batch["masks"][0].sum() == 0 and batch["masks"][1].sum() > 0


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "CMYK", "1", "I;16", "I", "F"])
def test_every_pil_mode_becomes_rgb(mode):
    if mode in ("I;16", "I"):
        image = Image.fromarray(
            np.full((30, 40), 65535 if mode == "I;16" else 200, dtype=np.uint16 if mode == "I;16" else np.int32)
        )
    elif mode == "F":
        image = Image.fromarray(np.full((30, 40), 0.5, dtype=np.float32))
    else:
        image = _rgb().convert(mode)
    pixels = FAPromptImageProcessor(size=16)(images=image, return_tensors="pt")["pixel_values"]
    assert pixels.shape == (1, 3, 16, 16) and torch.isfinite(pixels).all()
    if mode == "I;16":  # 16-bit white stays white (scaled, not clipped or wrapped)
        white = (1 - np.array(OPENAI_CLIP_MEAN)) / np.array(OPENAI_CLIP_STD)
        np.testing.assert_allclose(pixels[0, :, 0, 0].numpy(), white, atol=1e-5)


def test_arrays_and_tensors_are_accepted():
    array = np.asarray(_rgb())
    processor = FAPromptImageProcessor(size=16)
    from_array = processor(images=array, return_tensors="pt")["pixel_values"]
    from_tensor = processor(images=torch.from_numpy(array).permute(2, 0, 1), return_tensors="pt")["pixel_values"]
    from_batch = processor(images=np.stack([array, array]), return_tensors="pt")["pixel_values"]
    assert torch.equal(from_array, from_tensor)
    assert from_batch.shape == (2, 3, 16, 16)


def test_mask_batch_as_one_array():
    masks = np.zeros((2, 30, 40), dtype=np.uint8)
    masks[1, :10] = 1
    out = FAPromptImageProcessor(size=16)(images=[_rgb(), _rgb(seed=1)], masks=masks, return_tensors="pt")["masks"]
    assert out.shape == (2, 16, 16) and out[0].sum() == 0 and out[1].sum() > 0


def test_mask_of_another_size_is_an_error_or_a_documented_resize():
    processor = FAPromptImageProcessor(size=16)
    mask = np.ones((15, 20), dtype=np.uint8)
    with pytest.raises(ValueError, match="resize_mismatched_masks=True"):
        processor(images=_rgb(), masks=[mask])
    resized = processor(images=_rgb(), masks=[mask], resize_mismatched_masks=True, return_tensors="pt")["masks"]
    assert resized.sum() == 16 * 16


def test_unreadable_file_and_missing_file_name_the_file(tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    processor = FAPromptImageProcessor(size=16)
    with pytest.raises(ValueError, match="broken.png"):
        processor(images=str(broken))
    with pytest.raises(FileNotFoundError, match="missing.png"):
        processor(images=str(tmp_path / "missing.png"))


def test_wrong_number_of_masks_and_bad_values_are_errors():
    processor = FAPromptImageProcessor(size=16)
    with pytest.raises(ValueError, match="2 masks for 1 images"):
        processor(images=[_rgb()], masks=[None, None])
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        processor(images=np.full((8, 8, 3), 3.0, dtype=np.float32))
    with pytest.raises(ValueError, match="NaN"):
        processor(images=_rgb(), masks=[np.full((30, 40), np.nan)])


def test_processor_keeps_masks_and_round_trips_without_tokenizer(tmp_path):
    processor = FAPromptProcessor(image_processor=FAPromptImageProcessor(size=24))
    mask = np.zeros((30, 40), dtype=np.uint8)
    mask[5:15, 5:15] = 255
    batch = processor(images=[_rgb()], masks=[mask], return_tensors="pt")
    assert set(batch) == {"pixel_values", "masks"} and batch["masks"].sum() > 0
    processor.save_pretrained(tmp_path)
    FAPromptConfig().save_pretrained(tmp_path)
    loaded = AutoProcessor.from_pretrained(tmp_path)
    assert isinstance(loaded, FAPromptProcessor) and loaded.tokenizer is None
    assert loaded.image_processor.size == {"height": 24, "width": 24}
    assert isinstance(AutoImageProcessor.from_pretrained(tmp_path), FAPromptImageProcessor)
    again = loaded(images=[_rgb()], masks=[mask], return_tensors="pt")
    assert torch.equal(again["pixel_values"], batch["pixel_values"]) and torch.equal(again["masks"], batch["masks"])


def test_processor_with_tokenizer_round_trips_and_derives_template_ids(tiny_tokenizer, tmp_path):
    processor = FAPromptProcessor(image_processor=FAPromptImageProcessor(size=24), tokenizer=tiny_tokenizer)
    ids = processor.prompt_token_ids()
    assert ids["eos_token_id"] == tiny_tokenizer.eos_token_id
    assert tiny_tokenizer.unk_token_id not in ids["abnormal_suffix_token_ids"]
    decoded = tiny_tokenizer.convert_ids_to_tokens(ids["abnormal_suffix_token_ids"])
    assert decoded == ["damaged</w>", "object</w>", ".</w>"]
    processor.save_pretrained(tmp_path)
    FAPromptConfig().save_pretrained(tmp_path)
    loaded = AutoProcessor.from_pretrained(tmp_path)
    assert loaded.tokenizer is not None and loaded.prompt_token_ids() == ids


def test_post_process_returns_maps_at_original_sizes():
    maps = torch.rand(2, 16, 16)
    resized = FAPromptImageProcessor(size=16).post_process_anomaly_maps(maps, [(30, 40), (16, 16)])
    assert resized[0].shape == (30, 40)
    torch.testing.assert_close(resized[1], maps[1])


# (size, error type, words naming the value)
BAD_SIZES = [
    (0, ValueError, "size must be positive, got 0"),
    (-5, ValueError, "size must be positive, got -5"),
    ({"height": 0, "width": 16}, ValueError, r"got \{'height': 0, 'width': 16\}"),
    (1.5, TypeError, r"got 1.5 \(float\)"),
    ("518", TypeError, r"got '518' \(str\)"),
    (True, TypeError, r"got True \(bool\)"),
    (None, TypeError, r"got None \(NoneType\)"),
    ({"shortest_edge": 16}, ValueError, "exactly the keys 'height' and 'width'"),
]


@pytest.mark.parametrize("size, error, words", BAD_SIZES, ids=[repr(case[0]) for case in BAD_SIZES])
def test_bad_sizes_are_refused_at_construction_and_at_call(size, error, words):
    with pytest.raises(error, match=words) as at_construction:
        FAPromptImageProcessor(size=size)
    if size is not None:  # size=None at call time means "the processor's own size"
        with pytest.raises(error, match=words) as at_call:
            FAPromptImageProcessor(size=16)(images=_rgb(), size=size)
        assert "e.g. size=518" in str(at_call.value)
    assert "e.g. size=518" in str(at_construction.value)


def _mask_stack(count: int) -> np.ndarray:
    stack = np.zeros((count, 30, 40), np.uint8)
    stack[:, 5:10, 5:10] = 1
    return stack


# (images, masks, words naming the value, words of the fix)
BAD_PROCESSOR_INPUTS = {
    "0x0 image": (np.zeros((0, 0, 3), np.uint8), None, r"Image #0 has shape \(0, 0, 3\): it has no pixels", "1x1"),
    "0x5 image": (np.zeros((0, 5), np.uint8), None, r"Image #0 has shape \(0, 5\): it has no pixels", "1x1"),
    "0x5 image in a list": ([_rgb(), np.zeros((5, 0))], None, r"Image #1 has shape \(5, 0\)", "1x1"),
    "empty list": ([], None, "No images given", "at least one image"),
    "batch of 0": (np.zeros((0, 8, 8, 3), np.uint8), None, "No images given", "at least one image"),
    "int64 image above 255": (np.full((8, 8), 256, np.int64), None, "dtype int64 value 256 outside 0..255", "uint16"),
    "2 masks for one image": (_rgb(), _mask_stack(2), r"Mask #0 has shape \(2, 30, 40\): that is 2 masks", "per image"),
    "3 masks for one image": (_rgb(), _mask_stack(3), r"shape \(3, 30, 40\): that is 3 masks", "per image"),
    "3 masks, list of one image": ([_rgb()], _mask_stack(3), r"shape \(3, 30, 40\)", "one \\(H, W\\) mask per image"),
    "3 masks for 2 images": ([_rgb(), _rgb()], _mask_stack(3), "Got 3 masks for 2 images", "one \\(or None\\) each"),
    "0x0 mask": (_rgb(), [np.zeros((0, 0))], r"Mask #0 has shape \(0, 0\): it has no pixels", "1x1"),
}


@pytest.mark.parametrize("name", list(BAD_PROCESSOR_INPUTS))
def test_degenerate_inputs_are_clear_errors(name):
    images, masks, value_words, fix_words = BAD_PROCESSOR_INPUTS[name]
    with pytest.raises(ValueError, match=value_words) as raised:
        FAPromptImageProcessor(size=16)(images=images, masks=masks)
    assert re.search(fix_words, str(raised.value)), str(raised.value)


def test_one_mask_for_one_image_in_every_accepted_layout():
    mask = _mask_stack(1)
    processor = FAPromptImageProcessor(size=16)
    expected = processor(images=_rgb(), masks=[mask[0]], return_tensors="pt")["masks"]
    assert expected.sum() > 0
    for layout in (mask, mask[0], mask[0][..., None], torch.from_numpy(mask), torch.from_numpy(mask)[None]):
        assert torch.equal(processor(images=_rgb(), masks=layout, return_tensors="pt")["masks"], expected)
    batch = processor(images=[_rgb(), _rgb()], masks=torch.from_numpy(_mask_stack(2))[:, None], return_tensors="pt")
    assert batch["masks"].shape == (2, 16, 16)


def test_a_meta_device_tensor_is_refused_with_a_clear_error():
    from faprompt_hf import FAPromptImageProcessor

    with pytest.raises(ValueError, match=r"shape \(3, 32, 32\) on the meta device, which has a shape but no values"):
        FAPromptImageProcessor(size=32)(torch.empty(3, 32, 32, device="meta"), return_tensors="pt")


# ---------------------------------------------------------------------------------------------------- references


def test_references_are_prepared_like_images_whatever_their_kind_and_size(tmp_path):
    processor = FAPromptProcessor(image_processor=FAPromptImageProcessor(size=16))
    path = tmp_path / "good.png"
    _rgb(seed=3).save(path)
    sixteen = np.random.default_rng(0).integers(0, 65536, (20, 24), dtype=np.uint16)
    references = [
        str(path),  # 40 x 30, another size than the model's: resized, not refused
        _rgb(width=64, height=48, seed=4).convert("RGBA"),
        Image.fromarray(sixteen),  # PIL I;16
        sixteen,  # numpy uint16
        np.asarray(_rgb(seed=5).convert("L")),
        torch.from_numpy(np.array(_rgb(seed=6))).permute(2, 0, 1),  # CHW uint8 tensor
        np.asarray(_rgb(seed=7), dtype=np.float32) / 255.0,
    ]
    batch = processor(images=_rgb(), references=references, return_tensors="pt")
    assert set(batch) == {"pixel_values", "reference_pixel_values"}
    assert batch["reference_pixel_values"].shape == (len(references), 3, 16, 16)
    as_images = processor(images=references, return_tensors="pt")["pixel_values"]
    assert torch.equal(batch["reference_pixel_values"], as_images)
    alone = processor(references=np.stack([np.asarray(_rgb(seed=s)) for s in (1, 2)]), return_tensors="pt")
    assert set(alone) == {"reference_pixel_values"} and alone["reference_pixel_values"].shape == (2, 3, 16, 16)


def test_bad_references_are_clear_errors(tmp_path):
    processor = FAPromptProcessor(image_processor=FAPromptImageProcessor(size=16))
    for empty in ([], np.zeros((0, 8, 8, 3), np.uint8)):
        with pytest.raises(ValueError, match="references is empty .*give at least one normal image"):
            processor(references=empty)
    with pytest.raises(ValueError, match=r"Image reference #1 contains NaN or inf values.*nan_to_num"):
        processor(references=[np.zeros((8, 8), np.float32), np.full((8, 8), np.nan, np.float32)])
    broken = tmp_path / "broken.png"
    broken.write_text("not an image")
    with pytest.raises(ValueError, match="broken.png"):
        processor(references=[str(broken)])
    with pytest.raises(ValueError, match="Give images .*references or text"):
        processor()

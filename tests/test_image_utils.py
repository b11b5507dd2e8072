# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""Tests for faprompt_hf.image_utils: loading files, converting images to RGB, binarising masks."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from PIL import Image

from faprompt_hf.image_utils import load_image, to_mask_array, to_rgb_image

H, W = 6, 8


def _rgb_array(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)


def _one_pixel(value, channels: int | None = None, dtype=np.uint8, fill=0) -> np.ndarray:
    """An (H, W[, C]) array of ``fill`` with ``value`` at (2, 3)."""
    shape = (H, W) if channels is None else (H, W, channels)
    array = np.full(shape, fill, dtype=dtype)
    array[2, 3] = value
    return array


def _only_pixel(mask: np.ndarray) -> list[list[int]]:
    return np.argwhere(mask).tolist()


# ------------------------------------------------------------------------------------------------------------
# load_image
# ------------------------------------------------------------------------------------------------------------


def test_load_image_decodes_in_its_own_mode(tmp_path):
    path = tmp_path / "grey.png"
    Image.fromarray(np.full((H, W), 7, np.uint8)).save(path)
    image = load_image(path)
    assert image.mode == "L" and image.size == (W, H) and np.asarray(image).max() == 7


def test_load_image_missing_file_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.png"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(FileNotFoundError, match="missing.png"):
        to_rgb_image(str(tmp_path / "missing.png"))


def test_load_image_undecodable_file_names_the_file(tmp_path):
    path = tmp_path / "broken.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(ValueError, match="broken.png"):
        load_image(path)
    (tmp_path / "text.jpg").write_text("not an image")
    with pytest.raises(ValueError, match="text.jpg"):
        to_mask_array(tmp_path / "text.jpg")


def test_load_image_ignores_exif_orientation(tmp_path):
    """As the original evaluation (PIL open, then RGB): the stored pixels, not rotated."""
    exif = Image.Exif()
    exif[Image.ExifTags.Base.Orientation] = 6  # "rotate 90 degrees clockwise to display"
    Image.fromarray(_rgb_array()).save(tmp_path / "rotated.jpg", exif=exif)
    assert load_image(tmp_path / "rotated.jpg").size == (W, H)
    assert to_rgb_image(tmp_path / "rotated.jpg").size == (W, H)


# ------------------------------------------------------------------------------------------------------------
# to_rgb_image
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["1", "L", "RGB", "RGBA", "CMYK", "YCbCr", "P"])
def test_pil_modes_match_pil_convert_rgb(mode):
    image = Image.fromarray(_rgb_array()).convert(mode)
    expected = np.asarray(image.convert("RGB"))
    rgb = to_rgb_image(image)
    assert rgb.mode == "RGB" and rgb.size == (W, H)
    np.testing.assert_array_equal(np.asarray(rgb), expected)


def test_la_image_drops_alpha():
    grey = np.full((H, W), 90, np.uint8)
    image = Image.fromarray(np.stack([grey, np.zeros_like(grey)], axis=-1), mode="LA")
    assert np.asarray(to_rgb_image(image)).tolist() == np.full((H, W, 3), 90).tolist()


def test_palette_with_transparency_keeps_the_palette_colours():
    image = Image.new("P", (W, H), 0)
    image.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    image.putpixel((3, 2), 1)
    image.info["transparency"] = 0  # index 0 transparent
    rgb = np.asarray(to_rgb_image(image))
    assert rgb[0, 0].tolist() == [10, 20, 30] and rgb[2, 3].tolist() == [200, 100, 50]


def test_rgba_drops_alpha_even_when_transparent():
    array = np.concatenate([_rgb_array(), np.zeros((H, W, 1), np.uint8)], axis=-1)
    np.testing.assert_array_equal(np.asarray(to_rgb_image(Image.fromarray(array))), array[..., :3])
    np.testing.assert_array_equal(np.asarray(to_rgb_image(array)), array[..., :3])


def test_16_bit_white_stays_white_and_grey_is_scaled():
    array = np.array([[65535, 0, 32896]], dtype=np.uint16)
    image = Image.fromarray(array)
    assert image.mode.startswith("I;16")
    rgb = np.asarray(to_rgb_image(image))
    assert rgb[0, :, 0].tolist() == [255, 0, 128] and (rgb[..., 0] == rgb[..., 2]).all()
    eight_bit_in_i = Image.fromarray(np.array([[255, 0]], dtype=np.int32))
    assert eight_bit_in_i.mode == "I" and np.asarray(to_rgb_image(eight_bit_in_i))[0, :, 0].tolist() == [255, 0]


def test_scale_follows_the_dtype_never_the_values():
    """uint16 is always 16-bit; every other integer type is always 8-bit; no value changes the scale of the others."""
    small_uint16 = np.array([[0, 255, 257]], dtype=np.uint16)  # 8-bit-looking data in uint16 is still 16-bit
    assert np.asarray(to_rgb_image(small_uint16))[0, :, 0].tolist() == [0, 1, 1]
    for dtype in (np.int8, np.int16, np.int32, np.int64, np.uint32, np.uint64):
        top = 127 if dtype == np.int8 else 255
        assert np.asarray(to_rgb_image(np.array([[0, 100, top]], dtype=dtype)))[0, :, 0].tolist() == [0, 100, top]
    tensor = torch.tensor([[0, 100, 255]])  # int64, as torch.randint makes them
    assert np.asarray(to_rgb_image(tensor))[0, :, 0].tolist() == [0, 100, 255]
    i16_modes = Image.fromarray(np.array([[0, 65535]], dtype=np.uint16).astype(">u2"))
    assert i16_modes.mode == "I;16B" and np.asarray(to_rgb_image(i16_modes))[0, :, 0].tolist() == [0, 255]


def test_bomb_error_names_the_file_and_the_limit(tmp_path, monkeypatch):
    path = tmp_path / "huge.png"
    Image.new("L", (40, 30)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 1200 pixels > 2 x 100: PIL refuses to decode it
    with pytest.raises(Image.DecompressionBombError, match=r"huge\.png.*Image\.MAX_IMAGE_PIXELS = <pixels>"):
        load_image(path)
    with pytest.raises(Image.DecompressionBombError, match=r"huge\.png"):
        to_rgb_image(path)


# (input, error type, words naming the value, words of the fix)
BAD_IMAGES = {
    "int64-256": (
        _one_pixel(256, dtype=np.int64),
        ValueError,
        "dtype int64 value 256 outside 0..255",
        r"astype\(np.uint16\)",
    ),
    "int32-65535": (
        _one_pixel(65535, dtype=np.int32),
        ValueError,
        "value 65535 outside 0..255",
        r"astype\(np.uint16\)",
    ),
    "int16-negative": (_one_pixel(-1, dtype=np.int16), ValueError, "dtype int16 value -1 outside 0..255", "floats in"),
    "mode-I-16-bit": (
        Image.fromarray(_one_pixel(40000, dtype=np.int32)),
        ValueError,
        "PIL mode 'I' value 40000 outside 0..255",
        r"image.convert\('I;16'\)",
    ),
    "float-3": (np.full((H, W, 3), 3.0), ValueError, r"values in \[3, 3\]", r"float images must lie in \[0, 1\]"),
    "float-negative": (np.full((H, W), -0.5), ValueError, r"\[-0.5", "Divide 0..255 data by 255"),
    "float-nan": (np.full((H, W), np.nan, dtype=np.float32), ValueError, "NaN or inf", "nan_to_num"),
    "float-inf": (_one_pixel(np.inf, dtype=np.float64), ValueError, "NaN or inf", "nan_to_num"),
    "bf16-nan": (torch.full((3, H, W), float("nan"), dtype=torch.bfloat16), ValueError, "NaN or inf", "nan_to_num"),
    "complex": (np.zeros((H, W), np.complex64), ValueError, "unsupported dtype complex64", "give uint8"),
    "0x0": (np.zeros((0, 0), np.uint8), ValueError, r"shape \(0, 0\): it has no pixels", "at least 1x1"),
    "0x5": (np.zeros((0, 5), np.uint8), ValueError, r"shape \(0, 5\): it has no pixels", "at least 1x1"),
    "0x5x3": (np.zeros((0, 5, 3), np.float32), ValueError, r"shape \(0, 5, 3\)", "at least 1x1"),
    "empty-tensor": (torch.zeros(3, 0, 4), ValueError, r"shape \(3, 0, 4\)", "at least 1x1"),
    "pil-0x0": (Image.new("RGB", (0, 0)), ValueError, r"shape \(0, 0\)", "at least 1x1"),
    "pil-L-5x0": (Image.new("L", (5, 0)), ValueError, r"shape \(0, 5\)", "at least 1x1"),
    "5-channels": (np.zeros((H, W, 5), np.uint8), ValueError, r"shape \(6, 8, 5\)", r"expected \(H, W\)"),
    "batch-4d": (np.zeros((2, H, W, 3), np.uint8), ValueError, r"shape \(2, 6, 8, 3\)", "pass them as a list"),
    "1-d": (np.zeros(5, np.uint8), ValueError, r"shape \(5,\)", r"expected \(H, W\)"),
    "not-an-image": (42, ValueError, "Unsupported image input", "give a path, PIL image"),
}


@pytest.mark.parametrize("name", list(BAD_IMAGES))
def test_bad_images_are_errors_naming_the_value_and_the_fix(name):
    image, error, value_words, fix_words = BAD_IMAGES[name]
    with pytest.raises(error, match=value_words) as raised:
        to_rgb_image(image, source="photo.npy" if not isinstance(image, int) else None)
    assert re.search(fix_words, str(raised.value)), str(raised.value)
    if not isinstance(image, int):
        assert "photo.npy" in str(raised.value)


def test_float_mode_f_in_unit_range():
    image = Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32))
    assert image.mode == "F"
    assert np.asarray(to_rgb_image(image))[0, :, 1].tolist() == [0, 128, 255]


def test_bool_array_is_black_and_white():
    array = np.zeros((H, W), dtype=bool)
    array[2, 3] = True
    rgb = np.asarray(to_rgb_image(array))
    assert rgb[2, 3].tolist() == [255, 255, 255] and rgb.sum() == 3 * 255


def test_channels_first_tensor_matches_the_array():
    array = _rgb_array()
    expected = np.asarray(to_rgb_image(array))
    np.testing.assert_array_equal(np.asarray(to_rgb_image(torch.from_numpy(array).permute(2, 0, 1))), expected)
    floats = torch.from_numpy(array).permute(2, 0, 1).float() / 255
    np.testing.assert_array_equal(np.asarray(to_rgb_image(floats)), expected)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_tensors_are_upcast(dtype):
    tensor = torch.tensor([[0.0, 0.5, 1.0]], dtype=dtype)
    assert np.asarray(to_rgb_image(tensor))[0, :, 0].tolist() == [0, 128, 255]
    assert to_rgb_image(torch.rand(3, H, W, dtype=dtype)).size == (W, H)


# ------------------------------------------------------------------------------------------------------------
# to_mask_array
# ------------------------------------------------------------------------------------------------------------


def test_none_is_no_mask():
    assert to_mask_array(None) is None


def test_rgba_opaque_mask_with_one_white_pixel_marks_exactly_that_pixel():
    array = _one_pixel((255, 255, 255, 255), channels=4, fill=0)
    array[..., 3] = 255  # opaque everywhere
    assert _only_pixel(to_mask_array(Image.fromarray(array, mode="RGBA"))) == [[2, 3]]
    assert _only_pixel(to_mask_array(array)) == [[2, 3]]
    assert _only_pixel(to_mask_array(torch.from_numpy(array))) == [[2, 3]]


def test_la_mask_ignores_alpha():
    array = _one_pixel((255, 255), channels=2)
    array[..., 1] = 255
    assert _only_pixel(to_mask_array(Image.fromarray(array, mode="LA"))) == [[2, 3]]
    assert _only_pixel(to_mask_array(array)) == [[2, 3]]


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "PA", "RGB", "RGBA", "CMYK", "YCbCr", "HSV"])
def test_pil_masks_follow_the_original_convert_l(mode):
    """The original code: ``np.array(Image.open(path).convert("L")) > 0``."""
    rgb = Image.fromarray(_rgb_array() // 64 * 2)  # several dark values, some grey level 0, some not
    image = rgb.convert(mode)
    np.testing.assert_array_equal(to_mask_array(image), np.array(image.convert("L")) > 0)


def test_palette_mask_is_read_by_grey_level_not_by_index():
    image = Image.new("P", (W, H), 1)  # index 1 everywhere, but index 1 is black
    image.putpalette([255, 255, 255, 0, 0, 0] + [0] * 762)
    image.putpixel((3, 2), 0)  # index 0 is white
    assert _only_pixel(to_mask_array(image)) == [[2, 3]]


def test_uint8_rgb_arrays_match_pil_grey_levels():
    """A pure (0, 0, 1) blue pixel has grey level round(0.114) = 0 in PIL, so it is not anomalous."""
    faint_blue = _one_pixel((0, 0, 1), channels=3)
    assert not to_mask_array(faint_blue).any()
    assert not to_mask_array(Image.fromarray(faint_blue)).any()
    array = _rgb_array()
    np.testing.assert_array_equal(to_mask_array(array), np.array(Image.fromarray(array).convert("L")) > 0)
    red = _one_pixel((1, 0, 0), channels=3)
    assert not to_mask_array(red).any() and _only_pixel(to_mask_array(_one_pixel((0, 2, 0), channels=3))) == [[2, 3]]


def test_visa_masks_with_values_0_and_1():
    assert _only_pixel(to_mask_array(Image.fromarray(_one_pixel(1)))) == [[2, 3]]
    assert _only_pixel(to_mask_array(_one_pixel(1))) == [[2, 3]]


@pytest.mark.parametrize("value", [1, 255, 65535])
def test_16_bit_masks_use_raw_values(value):
    """``convert("L")`` would clip 16-bit data; a 16-bit value 1 must still count."""
    image = Image.fromarray(_one_pixel(value, dtype=np.uint16))
    assert image.mode.startswith("I;16")
    assert _only_pixel(to_mask_array(image)) == [[2, 3]]
    assert _only_pixel(to_mask_array(Image.fromarray(_one_pixel(value, dtype=np.int32)))) == [[2, 3]]


def test_float_masks():
    image = Image.fromarray(_one_pixel(0.25, dtype=np.float32))
    assert image.mode == "F" and _only_pixel(to_mask_array(image)) == [[2, 3]]
    assert _only_pixel(to_mask_array(_one_pixel(0.01, dtype=np.float64))) == [[2, 3]]
    with pytest.raises(ValueError, match="mask of x.png contains NaN"):
        to_mask_array(_one_pixel(np.nan, dtype=np.float32), source="mask of x.png")


def test_tensor_masks():
    mask = torch.zeros(1, H, W)
    mask[0, 2, 3] = 1
    assert _only_pixel(to_mask_array(mask)) == [[2, 3]]
    assert _only_pixel(to_mask_array(mask.to(torch.bfloat16))) == [[2, 3]]
    assert _only_pixel(to_mask_array(mask[0].bool())) == [[2, 3]]
    assert _only_pixel(to_mask_array(mask.permute(1, 2, 0))) == [[2, 3]]  # (H, W, 1)
    assert _only_pixel(to_mask_array(np.uint8(255) * _one_pixel(1, channels=4))) == [[2, 3]]  # channels-last RGBA


def test_mask_from_file(tmp_path):
    Image.fromarray(_one_pixel((255, 255, 255, 255), channels=4)).save(tmp_path / "m.png")
    assert _only_pixel(to_mask_array(tmp_path / "m.png")) == [[2, 3]]
    assert _only_pixel(to_mask_array(str(tmp_path / "m.png"))) == [[2, 3]]


def _stack_of_masks(count: int) -> np.ndarray:
    """``count`` masks (N, H, W) meant for ONE image, each marking a different pixel."""
    stack = np.zeros((count, H, W), np.uint8)
    for index in range(count):
        stack[index, index, index] = 1
    return stack


# (mask, error type, words naming the value, words of the fix)
BAD_MASKS = {
    "stack-of-2": (_stack_of_masks(2), r"shape \(2, 6, 8\): that is 2 masks stacked", r"one \(H, W\) mask per image"),
    "stack-of-3": (_stack_of_masks(3), r"shape \(3, 6, 8\): that is 3 masks stacked", r"one \(H, W\) mask per image"),
    "stack-of-4-tensor": (torch.from_numpy(_stack_of_masks(4)), r"shape \(4, 6, 8\)", "channels-last"),
    "stack-of-5": (_stack_of_masks(5), r"shape \(5, 6, 8\)", "one mask per image"),
    "4-d": (np.zeros((2, H, W, 3)), r"shape \(2, 6, 8, 3\)", "one mask per image"),
    "5-channels": (np.zeros((H, W, 5)), r"shape \(6, 8, 5\)", "one mask per image"),
    "0x0": (np.zeros((0, 0), bool), r"shape \(0, 0\): it has no pixels", "at least 1x1"),
    "0x5": (np.zeros((0, 5), np.uint8), r"shape \(0, 5\): it has no pixels", "at least 1x1"),
    "pil-0x0": (Image.new("L", (0, 0)), r"shape \(0, 0\)", "at least 1x1"),
    "nan": (_one_pixel(np.nan, dtype=np.float32), "contains NaN or inf", r"use 0 \(normal\) and 1"),
    "inf": (_one_pixel(np.inf, dtype=np.float64), "contains NaN or inf", r"use 0 \(normal\) and 1"),
}


@pytest.mark.parametrize("name", list(BAD_MASKS))
def test_bad_masks_are_errors_naming_the_mask_and_the_fix(name):
    mask, value_words, fix_words = BAD_MASKS[name]
    with pytest.raises(ValueError, match=r"Mask gt\.png .*" + value_words) as raised:
        to_mask_array(mask, source="gt.png")
    assert re.search(fix_words, str(raised.value)), str(raised.value)


def test_uint16_holding_8_bit_values_is_read_as_16_bit_with_a_warning():
    import warnings

    data = np.array([[0, 128, 255]], dtype=np.uint16)
    with pytest.warns(UserWarning, match=r"dtype uint16 but all its values lie in 0\.\.255.*astype\(np\.uint8\)"):
        image = to_rgb_image(data)
    assert np.asarray(image)[0, :, 0].tolist() == [0, 0, 1]  # the scale still follows the dtype
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        to_rgb_image(np.array([[0, 65535]], dtype=np.uint16))  # real 16-bit data: no warning
        to_rgb_image(np.zeros((2, 2), dtype=np.uint16))  # black: no warning

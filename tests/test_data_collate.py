# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""Tests for batching rows with the real FAPrompt processor (FAPromptCollator, with_processor_transform)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets.distributed import split_dataset_by_node
from PIL import Image
from torch.utils.data import DataLoader

from faprompt_hf import FAPromptImageProcessor, FAPromptProcessor
from faprompt_hf.data import (
    FAPromptCollator,
    defer_decoding,
    load_folder,
    load_mvtec_ad,
    make_synthetic_dataset,
    verify_dataset,
    with_processor_transform,
    write_synthetic_mvtec,
)

S = 32


@pytest.fixture(scope="module")
def processor() -> FAPromptImageProcessor:
    return FAPromptImageProcessor(size=S)


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synthetic")
    return write_synthetic_mvtec(
        root,
        domains=("checker", "nut"),
        n_train=0,
        n_normal=3,
        n_anomalous=3,
        image_size=64,
        defect_types=("stain", "bleach", "hole"),
    )


def half_tree(root: Path, mode_images: dict[str, Image.Image] | None = None) -> Path:
    """class "part": one normal image, one anomalous image whose mask marks the left half (16 x 16)."""
    (root / "part" / "good").mkdir(parents=True)
    (root / "part" / "dent").mkdir()
    (root / "part" / "masks" / "dent").mkdir(parents=True)
    Image.fromarray(np.full((16, 16, 3), 100, np.uint8)).save(root / "part" / "good" / "n.png")
    Image.fromarray(np.full((16, 16, 3), 200, np.uint8)).save(root / "part" / "dent" / "a.png")
    mask = np.zeros((16, 16), np.uint8)
    mask[:, :8] = 255
    Image.fromarray(mask).save(root / "part" / "masks" / "dent" / "a.png")
    for name, image in (mode_images or {}).items():
        image.save(root / "part" / "good" / name)
    return root


def test_collator_contract(synthetic_root, processor):
    dataset = load_mvtec_ad(synthetic_root)
    rows = [dataset[index] for index in range(len(dataset))]
    batch = FAPromptCollator(processor)(rows)
    count = len(rows)
    assert batch["pixel_values"].shape == (count, 3, S, S) and batch["pixel_values"].dtype == torch.float32
    assert batch["masks"].shape == (count, S, S) and batch["masks"].dtype == torch.float32
    assert set(batch["masks"].unique().tolist()) <= {0.0, 1.0}
    assert batch["labels"].dtype == torch.long and batch["labels"].tolist() == dataset["label"]
    assert batch["mask_valid"].all()
    assert batch["class_names"] == dataset["class_name"] and batch["paths"] == dataset["path"]
    assert batch["defect_types"] == dataset["defect_type"]
    normal = batch["labels"] == 0
    assert batch["masks"][normal].sum() == 0 and (batch["masks"][~normal].sum(dim=(1, 2)) > 0).all()
    expected = processor(images=[row["image"] for row in rows], return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(batch["pixel_values"], expected)


def test_processed_mask_matches_the_file(tmp_path, processor):
    dataset = load_folder(half_tree(tmp_path))
    batch = FAPromptCollator(FAPromptProcessor(image_processor=processor))([dataset[0], dataset[1]])
    expected = torch.zeros(S, S)
    expected[:, : S // 2] = 1
    torch.testing.assert_close(batch["masks"][0], expected)
    assert batch["labels"].tolist() == [1, 0] and batch["masks"][1].sum() == 0


def test_undecoded_rows_and_in_memory_rows_give_the_same_batch(synthetic_root, processor):
    dataset = load_mvtec_ad(synthetic_root)
    collator = FAPromptCollator(processor)
    decoded = collator([dataset[index] for index in range(4)])
    lazy = defer_decoding(dataset)
    assert isinstance(lazy[0]["image"], dict)
    undecoded = collator([lazy[index] for index in range(4)])
    torch.testing.assert_close(decoded["pixel_values"], undecoded["pixel_values"])
    torch.testing.assert_close(decoded["masks"], undecoded["masks"])
    memory = make_synthetic_dataset(domains=("dots",), n_normal=1, n_anomalous=2, image_size=64)
    assert collator(list(memory))["masks"].sum() > 0


def test_image_modes_are_converted(tmp_path, processor):
    """16-bit, palette, grayscale, RGBA and CMYK files give the same pixels as their 8-bit RGB equivalent."""
    grey = np.tile(np.arange(0, 256, 16, dtype=np.uint8), (16, 1))
    reference = Image.fromarray(np.stack([grey] * 3, axis=-1))
    images = {
        "i16.png": Image.fromarray(grey.astype(np.uint16) * 257),
        "palette.png": reference.convert("P", palette=Image.Palette.ADAPTIVE, colors=256),
        "grey.png": Image.fromarray(grey),
        "rgba.png": reference.convert("RGBA"),
        "cmyk.tif": reference.convert("CMYK"),
    }
    assert images["i16.png"].mode.startswith("I")
    dataset = load_folder(half_tree(tmp_path, images))
    rows = {Path(row["path"]).name: row for row in dataset}
    assert rows["i16.png"]["image"].mode.startswith("I") and rows["cmyk.tif"]["image"].mode == "CMYK"
    batch = FAPromptCollator(processor)([rows[name] for name in images])
    expected = processor(images=[reference], return_tensors="pt")["pixel_values"][0]
    for index, name in enumerate(images):
        tolerance = 0.1 if name in ("palette.png", "cmyk.tif") else 1e-5
        torch.testing.assert_close(batch["pixel_values"][index], expected, atol=tolerance, rtol=0, msg=name)


def test_decoding_errors_name_the_row(tmp_path, processor):
    root = half_tree(tmp_path)
    (root / "part" / "good" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    dataset = load_folder(root)
    collator = FAPromptCollator(processor)
    lazy = defer_decoding(dataset)
    broken = next(row for row in lazy if row["path"].endswith("broken.png"))
    with pytest.raises(ValueError, match=r"broken.png"):
        collator([broken])
    loader = DataLoader(with_processor_transform(dataset, processor), batch_size=len(dataset))
    with pytest.raises(ValueError, match=r"broken.png"):
        next(iter(loader))
    os.remove(root / "part" / "good" / "broken.png")
    os.remove(root / "part" / "good" / "n.png")
    with pytest.raises(FileNotFoundError, match=r"n.png"):
        collator(list(lazy))


def test_mismatched_mask_is_an_error_unless_resizing(tmp_path, processor):
    root = half_tree(tmp_path)
    Image.fromarray(np.full((8, 8), 255, np.uint8)).save(root / "part" / "masks" / "dent" / "a.png")
    rows = list(defer_decoding(load_folder(root)))
    with pytest.raises(ValueError, match=r"mask of .*a.png' is 8x8 but the image is 16x16"):
        FAPromptCollator(processor)(rows)
    batch = FAPromptCollator(processor, resize_mismatched_masks=True)(rows)
    assert batch["masks"][0].sum() == S * S
    resized = with_processor_transform(load_folder(root), processor, resize_mismatched_masks=True)
    assert resized[0]["masks"].sum() == S * S


def test_bad_rows_are_rejected(tmp_path, processor):
    root = half_tree(tmp_path)
    rows = list(load_folder(root))
    collator = FAPromptCollator(processor)
    with pytest.raises(ValueError, match="labelled normal but its mask"):
        collator([{**rows[1], "mask": rows[0]["mask"]}])
    with pytest.raises(ValueError, match=r"label 'maybe' of row .*n.png"):
        collator([{**rows[1], "label": "maybe"}])
    with pytest.raises(ValueError, match="lacks 'image' or 'label'"):
        collator([{"path": "x"}])
    with pytest.raises(ValueError, match="empty batch"):
        collator([])


def test_anomalous_row_without_mask_is_flagged(tmp_path, processor):
    root = half_tree(tmp_path)
    os.remove(root / "part" / "masks" / "dent" / "a.png")
    batch = FAPromptCollator(processor)(list(load_folder(root, require_masks=False)))
    assert batch["labels"].tolist() == [1, 0] and batch["mask_valid"].tolist() == [False, True]


def test_with_processor_transform_through_dataloader(synthetic_root, processor):
    dataset = load_mvtec_ad(synthetic_root)
    transformed = with_processor_transform(dataset, processor)
    row = transformed[1]
    assert row["pixel_values"].shape == (3, S, S) and row["masks"].shape == (S, S)
    assert row["paths"] == dataset[1]["path"]
    batches = list(DataLoader(transformed, batch_size=5, num_workers=2))
    assert [batch["pixel_values"].shape[0] for batch in batches] == [5, 5, 2]
    direct = FAPromptCollator(processor)([dataset[index] for index in range(5)])
    torch.testing.assert_close(batches[0]["pixel_values"], direct["pixel_values"])
    torch.testing.assert_close(batches[0]["masks"], direct["masks"])
    assert batches[0]["labels"].tolist() == direct["labels"].tolist()
    assert batches[0]["paths"] == direct["paths"] and batches[0]["class_names"] == direct["class_names"]
    assert isinstance(dataset[0]["image"], Image.Image)  # the original dataset is unchanged


def test_iterable_dataset_with_workers_and_node_sharding(synthetic_root, processor):
    dataset = load_mvtec_ad(synthetic_root)
    collator = FAPromptCollator(processor)
    stream = defer_decoding(dataset.to_iterable_dataset(num_shards=4))
    seen = []
    for batch in DataLoader(stream, batch_size=3, collate_fn=collator, num_workers=2):
        assert batch["pixel_values"].shape[1:] == (3, S, S) and batch["masks"].shape[1:] == (S, S)
        seen.extend(batch["paths"])
    assert sorted(seen) == sorted(dataset["path"])
    shards = [
        [
            path
            for batch in DataLoader(split_dataset_by_node(stream, rank, 2), batch_size=4, collate_fn=collator)
            for path in batch["paths"]
        ]
        for rank in range(2)
    ]
    assert not set(shards[0]) & set(shards[1]) and sorted(shards[0] + shards[1]) == sorted(dataset["path"])


def test_collator_and_verify_share_the_mask_checks(tmp_path, processor):
    """One helper checks mask size and normal-with-mask for both: the same rows give the same messages."""
    root = half_tree(tmp_path)
    rows = list(defer_decoding(load_folder(root)))
    normal_with_mask = {**rows[1], "mask": rows[0]["mask"]}
    Image.fromarray(np.full((8, 8), 255, np.uint8)).save(root / "part" / "masks" / "dent" / "a.png")
    mismatched = list(defer_decoding(load_folder(root)))
    for bad in ([normal_with_mask], mismatched):
        with pytest.raises(ValueError) as from_collator:
            FAPromptCollator(processor)(bad)
        with pytest.raises(ValueError) as from_verify:
            verify_dataset(bad)
        assert str(from_collator.value) == str(from_verify.value)
    assert "resize_mismatched_masks=True" in str(from_verify.value)


def test_float_labels_are_accepted_and_other_floats_rejected(tmp_path, processor):
    rows = list(load_folder(half_tree(tmp_path)))
    batch = FAPromptCollator(processor)([{**rows[0], "label": 1.0}, {**rows[1], "label": np.float32(0.0)}])
    assert batch["labels"].tolist() == [1, 0]
    with pytest.raises(ValueError, match=r"Cannot read the label 0.5 of row .*n.png"):
        FAPromptCollator(processor)([{**rows[1], "label": 0.5}])


def test_exif_orientation_is_ignored_on_every_path(tmp_path, processor):
    """Deferred rows, with_processor_transform and the processor on the path give the same, unrotated pixels."""
    root = half_tree(tmp_path)
    exif = Image.Exif()
    exif[Image.ExifTags.Base.Orientation] = 3  # "rotate 180 degrees": same size, so only the pixels tell
    array = np.full((16, 16, 3), 200, np.uint8)
    array[:4] = 0
    Image.fromarray(array).save(root / "part" / "dent" / "a.png", exif=exif)
    dataset = load_folder(root)
    expected = processor(images=[str(root / "part" / "dent" / "a.png")], return_tensors="pt")["pixel_values"][0]
    reference = processor(images=[Image.fromarray(array)], return_tensors="pt")["pixel_values"][0]
    torch.testing.assert_close(expected, reference)
    deferred = FAPromptCollator(processor)([defer_decoding(dataset)[0]])["pixel_values"][0]
    torch.testing.assert_close(deferred, expected)
    torch.testing.assert_close(with_processor_transform(dataset, processor)[0]["pixel_values"], expected)
    verify_dataset(dataset)


@pytest.mark.parametrize(
    ("damage", "error", "pattern"),
    [
        (lambda path: path.write_bytes(path.read_bytes()[:60]), ValueError, "Cannot decode the image"),
        (lambda path: path.write_bytes(b"GIF89a not really"), ValueError, "Cannot decode the image"),
        (lambda path: path.unlink(), FileNotFoundError, "not found"),
    ],
)
def test_a_broken_file_is_named_whether_read_from_the_dataset_or_batched(tmp_path, processor, damage, error, pattern):
    root = half_tree(tmp_path)
    broken = root / "part" / "dent" / "a.png"
    dataset = load_folder(root)
    damage(broken)
    for read in (
        lambda: dataset[0]["image"],  # datasets' own decoding, straight from the loaded dataset
        lambda: FAPromptCollator(processor)([defer_decoding(dataset)[0]]),
        lambda: with_processor_transform(dataset, processor)[0],
    ):
        with pytest.raises(error, match=pattern) as raised:
            read()
        assert str(broken) in str(raised.value) and (
            "verify_dataset" in str(raised.value) or "Restore" in str(raised.value)
        )


def test_a_normal_row_with_a_marked_mask_says_how_to_fix_it(tmp_path, processor):
    rows = list(load_folder(half_tree(tmp_path)))
    with pytest.raises(
        ValueError,
        match=r"n.png' is labelled normal but its mask marks 128 anomalous pixels; "
        r"fix the label \(1 for anomalous\) or clear the mask",
    ):
        FAPromptCollator(processor)([{**rows[1], "mask": rows[0]["mask"]}])


def test_an_anomalous_row_with_an_empty_mask_is_warned_about_and_not_ground_truth(processor):
    image = np.full((16, 16, 3), 200, np.uint8)
    rows = [{"image": image, "mask": np.zeros((16, 16), np.uint8), "label": 1, "path": "part/dent/empty.png"}]
    with pytest.warns(UserWarning, match=r"'part/dent/empty\.png' is labelled anomalous but its mask marks no pixel"):
        batch = FAPromptCollator(processor)(rows)
    assert batch["mask_valid"].tolist() == [False]


def test_a_mask_whose_pixels_vanish_when_resized_is_warned_about(processor):
    mask = np.zeros((1000, 1000), np.uint8)
    mask[500, 500] = 255  # one pixel of a 1000 px image: nothing of it is left at S px
    rows = [{"image": np.zeros((1000, 1000, 3), np.uint8), "mask": mask, "label": 1, "path": "big/dent/one.png"}]
    with pytest.warns(
        UserWarning, match=rf"'big/dent/one\.png': its mask's 1 anomalous pixel\(s\) vanish .*to {S}x{S}"
    ):
        batch = FAPromptCollator(processor)(rows)
    assert batch["mask_valid"].tolist() == [False] and batch["masks"].sum() == 0
    mask[400:700, 400:700] = 255  # a region that survives: no warning, ground truth
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert FAPromptCollator(processor)(rows)["mask_valid"].tolist() == [True]

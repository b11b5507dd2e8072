# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""Tests for the dataset loaders (faprompt_hf.data), on tiny trees written into tmp_path."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datasets import ClassLabel, Dataset, DatasetDict, Features, IterableDataset, Value
from datasets import Image as ImageFeature
from PIL import Image

from faprompt_hf.data import (
    ANOMALY_FEATURES,
    decode_image_value,
    load_folder,
    load_hub_dataset,
    load_meta_json,
    load_mvtec_ad,
    load_visa,
    make_synthetic_dataset,
    verify_dataset,
    write_meta_json,
)
from faprompt_hf.image_utils import to_rgb_image

SIZE = 16


def save_image(path: Path, value: int = 120, size: tuple[int, int] = (SIZE, SIZE), suffix: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.full((size[1], size[0], 3), value, np.uint8)
    array[..., 0] = np.arange(size[0], dtype=np.uint8)[None, :] * 8
    Image.fromarray(array).save(path)
    return path


def save_mask(path: Path, rows: slice, value: int = 255, size: tuple[int, int] = (SIZE, SIZE)) -> Path:
    """A mask whose marked rows identify it (so a wrong match is detectable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.zeros((size[1], size[0]), np.uint8)
    array[rows] = value
    Image.fromarray(array).save(path)
    return path


def marked_rows(mask: Image.Image) -> list[int]:
    return np.flatnonzero((np.asarray(mask) > 0).any(axis=1)).tolist()


def undecoded(dataset: Dataset, column: str) -> list:
    return dataset.cast_column(column, ImageFeature(decode=False))[column]


@pytest.fixture
def mvtec_root(tmp_path: Path) -> Path:
    """bottle: 2 train, 1 good + 2 broken test images; masks sorted differently from the images."""
    root = tmp_path / "mvtec"
    for stem in ("000", "001"):
        save_image(root / "bottle" / "train" / "good" / f"{stem}.png")
    save_image(root / "bottle" / "test" / "good" / "000.png")
    for stem, row in (("010", 1), ("002", 5)):
        save_image(root / "bottle" / "test" / "broken" / f"{stem}.png")
        save_mask(root / "bottle" / "ground_truth" / "broken" / f"{stem}_mask.png", slice(row, row + 1))
    # A mask without image: pairing by sort order would give 010.png this mask.
    save_mask(root / "bottle" / "ground_truth" / "broken" / "005_mask.png", slice(9, 10))
    save_image(root / "wood" / "train" / "good" / "000.png")
    save_image(root / "wood" / "test" / "good" / "000.png")
    (root / "license.txt").write_text("not a class")
    return root


# ------------------------------------------------------------------------------------------------------------
# MVTec AD
# ------------------------------------------------------------------------------------------------------------


def test_mvtec_rows_schema_and_name_matched_masks(mvtec_root):
    dataset = load_mvtec_ad(mvtec_root, split="test")
    assert dataset.features == ANOMALY_FEATURES
    assert dataset["class_name"] == ["bottle"] * 3 + ["wood"]
    assert dataset["label"] == [1, 1, 0, 0]
    assert dataset["defect_type"] == ["broken", "broken", "good", "good"]
    first, second = dataset[0], dataset[1]
    assert first["path"] == str(mvtec_root / "bottle" / "test" / "broken" / "002.png")
    assert marked_rows(first["mask"]) == [5]
    assert second["path"].endswith("010.png") and marked_rows(second["mask"]) == [1]
    assert dataset[2]["mask"] is None
    assert all(os.path.isabs(path) for path in dataset["path"])


def test_mvtec_stores_paths_not_bytes(mvtec_root):
    dataset = load_mvtec_ad(mvtec_root)
    images = undecoded(dataset, "image")
    assert all(value["bytes"] is None and os.path.isfile(value["path"]) for value in images)
    masks = undecoded(dataset, "mask")
    assert masks[0]["path"].endswith("002_mask.png") and masks[2] is None


def test_mvtec_train_split_and_class_filter(mvtec_root):
    train = load_mvtec_ad(mvtec_root, split="train", classes=["bottle"])
    assert len(train) == 2 and set(train["label"]) == {0} and set(train["class_name"]) == {"bottle"}
    assert load_mvtec_ad(mvtec_root, split="test", classes="wood")["class_name"] == ["wood"]


def test_mvtec_bad_inputs(mvtec_root, tmp_path):
    with pytest.raises(FileNotFoundError, match="missing_root"):
        load_mvtec_ad(tmp_path / "missing_root")
    with pytest.raises(FileNotFoundError, match="Class folder not found.*carpet"):
        load_mvtec_ad(mvtec_root, classes=["carpet"])
    with pytest.raises(ValueError, match="split must be"):
        load_mvtec_ad(mvtec_root, split="val")
    (mvtec_root / "empty" / "test" / "good").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"empty.test' contains no images"):
        load_mvtec_ad(mvtec_root)
    with pytest.raises(FileNotFoundError, match="No MVTec AD class folders"):
        load_mvtec_ad(tmp_path / "mvtec" / "bottle" / "ground_truth")


def test_mvtec_missing_mask_names_image_and_expected_path(mvtec_root):
    os.remove(mvtec_root / "bottle" / "ground_truth" / "broken" / "010_mask.png")
    expected = mvtec_root / "bottle" / "ground_truth" / "broken" / "010_mask.png"
    with pytest.raises(FileNotFoundError) as error:
        load_mvtec_ad(mvtec_root)
    assert "010.png" in str(error.value) and str(expected) in str(error.value)


def test_verify_catches_corrupt_images_and_mismatched_masks(mvtec_root):
    corrupt = mvtec_root / "wood" / "test" / "good" / "001.png"
    corrupt.write_bytes(b"this is not a png")
    dataset = load_mvtec_ad(mvtec_root)  # cheap checks pass: decoding happens when a row is read
    assert len(dataset) == 5
    with pytest.raises(ValueError, match="001.png"):
        load_mvtec_ad(mvtec_root, verify=True)
    corrupt.unlink()
    save_mask(mvtec_root / "bottle" / "ground_truth" / "broken" / "002_mask.png", slice(0, 2), size=(8, 8))
    with pytest.raises(ValueError, match=r"002.png.*8x8.*16x16"):
        verify_dataset(load_mvtec_ad(mvtec_root))


def test_verify_rejects_normal_image_with_marked_mask(tmp_path):
    save_image(tmp_path / "a.png")
    save_mask(tmp_path / "a_mask.png", slice(0, 3))
    row = {"image": str(tmp_path / "a.png"), "mask": str(tmp_path / "a_mask.png"), "label": 0, "path": "a.png"}
    with pytest.raises(ValueError, match="labelled normal"):
        verify_dataset([row])


# ------------------------------------------------------------------------------------------------------------
# VisA
# ------------------------------------------------------------------------------------------------------------


def write_visa(root: Path, rows: list[tuple[str, ...]] | None = None) -> Path:
    """candle: 2 normal + 1 anomalous test image, 1 train image; masks hold 0/1 values as in VisA."""
    for name in ("000", "001", "002"):
        save_image(root / "candle" / "Data" / "Images" / "Normal" / f"{name}.JPG")
    save_image(root / "candle" / "Data" / "Images" / "Anomaly" / "000.JPG")
    save_mask(root / "candle" / "Data" / "Masks" / "Anomaly" / "000.png", slice(3, 6), value=1)
    save_image(root / "pcb1" / "Data" / "Images" / "Normal" / "000.JPG")
    rows = rows or [
        ("candle", "train", "normal", "candle/Data/Images/Normal/002.JPG", ""),
        ("candle", "test", "normal", "candle/Data/Images/Normal/000.JPG", ""),
        ("candle", "test", "anomaly", "candle/Data/Images/Anomaly/000.JPG", "candle/Data/Masks/Anomaly/000.png"),
        ("candle", "test", "normal", "candle/Data/Images/Normal/001.JPG", ""),
        ("pcb1", "test", "normal", "pcb1/Data/Images/Normal/000.JPG", ""),
    ]
    csv_path = root / "split_csv" / "1cls.csv"
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    csv_path.write_text("object,split,label,image,mask\n" + "".join(",".join(row) + "\n" for row in rows))
    return csv_path


def test_visa_rows_keep_non_binary_masks(tmp_path):
    write_visa(tmp_path)
    dataset = load_visa(tmp_path)
    assert dataset.features == ANOMALY_FEATURES
    assert dataset["label"] == [0, 1, 0, 0]
    assert dataset["defect_type"] == ["good", "anomaly", "good", "good"]
    assert dataset["class_name"] == ["candle"] * 3 + ["pcb1"]
    mask = np.asarray(dataset[1]["mask"])
    assert mask.max() == 1 and marked_rows(dataset[1]["mask"]) == [3, 4, 5]
    assert dataset[1]["path"] == str(tmp_path / "candle" / "Data" / "Images" / "Anomaly" / "000.JPG")
    assert load_visa(tmp_path, split="train")["path"][0].endswith("002.JPG")
    assert load_visa(tmp_path, classes=["pcb1"])["class_name"] == ["pcb1"]
    assert len(load_visa(tmp_path, split_csv=tmp_path / "split_csv" / "1cls.csv", verify=True)) == 4


def test_visa_bad_inputs(tmp_path):
    save_image(tmp_path / "candle" / "x.png")
    with pytest.raises(FileNotFoundError, match="1cls.csv"):
        load_visa(tmp_path)
    csv_path = write_visa(tmp_path)
    with pytest.raises(ValueError, match=r"Classes \['capsules'\]"):
        load_visa(tmp_path, classes=["capsules"])
    with pytest.raises(ValueError, match="No rows with split 'val'"):
        load_visa(tmp_path, split="val")
    csv_path.write_text("object,split,image\ncandle,test,a.png\n")
    with pytest.raises(ValueError, match=r"lacks the columns \['label', 'mask'\]"):
        load_visa(tmp_path)
    write_visa(tmp_path, [("candle", "test", "normal", "candle/nope.JPG", "")])
    with pytest.raises(FileNotFoundError, match=r"1cls.csv:2: image file not found.*nope.JPG"):
        load_visa(tmp_path)
    write_visa(tmp_path, [("candle", "test", "anomaly", "candle/Data/Images/Anomaly/000.JPG", "")])
    with pytest.raises(FileNotFoundError, match=r"1cls.csv:2: anomalous image .*000.JPG.* has no mask"):
        load_visa(tmp_path)
    write_visa(tmp_path, [("candle", "test", "broken?", "candle/Data/Images/Anomaly/000.JPG", "")])
    with pytest.raises(ValueError, match=r"label 'broken\?' of .*1cls.csv:2"):
        load_visa(tmp_path)


# ------------------------------------------------------------------------------------------------------------
# meta.json
# ------------------------------------------------------------------------------------------------------------


def write_meta_tree(root: Path) -> dict:
    save_image(root / "screw" / "good" / "0.png")
    save_image(root / "screw" / "thread" / "0.png")
    save_mask(root / "screw" / "gt" / "thread" / "0.png", slice(2, 4))
    save_image(root / "screw" / "train" / "0.png")
    meta = {
        "train": {
            "screw": [
                {
                    "img_path": "screw/train/0.png",
                    "mask_path": "",
                    "cls_name": "screw",
                    "specie_name": "good",
                    "anomaly": 0,
                }
            ]
        },
        "test": {
            "screw": [
                {
                    "img_path": "screw/good/0.png",
                    "mask_path": "",
                    "cls_name": "screw",
                    "specie_name": "good",
                    "anomaly": 0,
                },
                {
                    "img_path": "screw/thread/0.png",
                    "mask_path": "screw/gt/thread/0.png",
                    "cls_name": "screw",
                    "specie_name": "thread",
                    "anomaly": 1,
                },
            ]
        },
    }
    (root / "meta.json").write_text(json.dumps(meta))
    return meta


def test_meta_json_loads_both_splits(tmp_path):
    write_meta_tree(tmp_path)
    test = load_meta_json(tmp_path)
    assert test.features == ANOMALY_FEATURES
    assert test["label"] == [0, 1] and test["defect_type"] == ["good", "thread"]
    assert marked_rows(test[1]["mask"]) == [2, 3]
    assert test["path"][1] == str(tmp_path / "screw" / "thread" / "0.png")
    assert load_meta_json(tmp_path, split="train")["label"] == [0]


def test_meta_json_bad_inputs(tmp_path):
    with pytest.raises(FileNotFoundError, match="meta.json"):
        load_meta_json(tmp_path)
    meta = write_meta_tree(tmp_path)
    with pytest.raises(ValueError, match="no 'val' object"):
        load_meta_json(tmp_path, split="val")
    with pytest.raises(ValueError, match=r"Classes \['nut'\]"):
        load_meta_json(tmp_path, classes=["nut"])
    meta["test"]["screw"][1]["mask_path"] = ""
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(FileNotFoundError, match=r"\[test\]\[screw\]\[1\]: anomalous image .*thread.0.png"):
        load_meta_json(tmp_path)
    image_level = load_meta_json(tmp_path, require_masks=False)
    assert image_level["label"] == [0, 1] and image_level[1]["mask"] is None
    meta["test"]["screw"][1]["img_path"] = "screw/thread/9.png"
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(FileNotFoundError, match=r"\[test\]\[screw\]\[1\]: img_path file not found.*9.png"):
        load_meta_json(tmp_path)
    meta["test"]["screw"][1].update(img_path="screw/thread/0.png", specie_name="good", mask_path="")
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="labelled anomalous but has defect type 'good'"):
        load_meta_json(tmp_path, require_masks=False)
    (tmp_path / "meta.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_meta_json(tmp_path)


def test_write_meta_json_round_trip(mvtec_root, tmp_path):
    test = load_mvtec_ad(mvtec_root, split="test")
    train = load_mvtec_ad(mvtec_root, split="train")
    write_meta_json(test, mvtec_root)
    meta_path = write_meta_json(train, mvtec_root, split="train")
    meta = json.loads(meta_path.read_text())
    assert set(meta) == {"train", "test"}
    item = meta["test"]["bottle"][0]
    assert item == {
        "img_path": "bottle/test/broken/002.png",
        "mask_path": "bottle/ground_truth/broken/002_mask.png",
        "cls_name": "bottle",
        "specie_name": "broken",
        "anomaly": 1,
    }
    for split, original in (("test", test), ("train", train)):
        loaded = load_meta_json(mvtec_root, split=split)
        for column in ("label", "class_name", "defect_type", "path"):
            assert loaded[column] == original[column]
        assert [value and value["path"] for value in undecoded(loaded, "mask")] == [
            value and value["path"] for value in undecoded(original, "mask")
        ]
    elsewhere = write_meta_json(test, tmp_path / "other_root")
    assert json.loads(elsewhere.read_text())["test"]["bottle"][0]["img_path"] == test[0]["path"]
    with pytest.raises(ValueError, match="outside the dataset root.*allow_outside_root=True"):
        load_meta_json(tmp_path / "other_root")
    assert load_meta_json(tmp_path / "other_root", allow_outside_root=True)["path"] == test["path"]


def test_write_meta_json_refuses_in_memory_rows(tmp_path):
    dataset = make_synthetic_dataset(domains=("dots",), n_normal=1, n_anomalous=0, image_size=64)
    with pytest.raises(ValueError, match="synthetic/test/dots/good/000.*not an image file"):
        write_meta_json(dataset, tmp_path)


# ------------------------------------------------------------------------------------------------------------
# Hand-made folders
# ------------------------------------------------------------------------------------------------------------


@pytest.fixture
def folder_root(tmp_path: Path) -> Path:
    root = tmp_path / "folder"
    save_image(root / "gear" / "good" / "a.png")
    save_image(root / "gear" / "dent" / "b.png")
    save_image(root / "gear" / "dent" / "c.jpg")
    save_mask(root / "gear" / "masks" / "dent" / "b.png", slice(0, 1))
    save_mask(root / "gear" / "masks" / "dent" / "c_mask.png", slice(7, 8))
    save_image(root / "tile" / "good" / "a.png")
    return root


def test_folder_layout(folder_root):
    dataset = load_folder(folder_root)
    assert dataset.features == ANOMALY_FEATURES
    assert dataset["class_name"] == ["gear", "gear", "gear", "tile"]
    assert dataset["defect_type"] == ["dent", "dent", "good", "good"]
    assert dataset["label"] == [1, 1, 0, 0]
    assert marked_rows(dataset[0]["mask"]) == [0] and marked_rows(dataset[1]["mask"]) == [7]
    assert load_folder(folder_root, classes=["tile"])["class_name"] == ["tile"]


def test_folder_with_separate_masks_dir(folder_root, tmp_path):
    masks_dir = tmp_path / "masks"
    masks_dir.mkdir()
    (folder_root / "gear" / "masks").rename(masks_dir / "gear")
    dataset = load_folder(folder_root, masks_dir=masks_dir, classes=["gear"])
    assert marked_rows(dataset[1]["mask"]) == [7]
    with pytest.raises(FileNotFoundError, match=r"No mask for anomalous image .*b.png.*gear.masks.dent.b\[_mask\]"):
        load_folder(folder_root, classes=["gear"])


def test_folder_bad_inputs(folder_root):
    os.remove(folder_root / "gear" / "masks" / "dent" / "b.png")
    with pytest.raises(FileNotFoundError, match=r"b.png.*require_masks=False"):
        load_folder(folder_root)
    image_level = load_folder(folder_root, require_masks=False)
    assert image_level["label"] == [1, 1, 0, 0] and image_level[0]["mask"] is None
    save_image(folder_root / "tile" / "stray.png")
    with pytest.raises(ValueError, match=r"Images directly in class folder .*tile"):
        load_folder(folder_root, require_masks=False)
    os.remove(folder_root / "tile" / "stray.png")
    (folder_root / "empty" / "good").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"Class folder .*empty' contains no images"):
        load_folder(folder_root, require_masks=False)
    with pytest.raises(FileNotFoundError, match="Class folder not found"):
        load_folder(folder_root, classes=["nothing"])


def test_ambiguous_masks_are_an_error(folder_root):
    save_mask(folder_root / "gear" / "masks" / "dent" / "b_mask.png", slice(0, 1))
    with pytest.raises(ValueError, match=r"Ambiguous masks .*b.png.*b_mask.png"):
        load_folder(folder_root)
    os.remove(folder_root / "gear" / "masks" / "dent" / "b_mask.png")
    save_mask(folder_root / "gear" / "masks" / "dent" / "b.bmp", slice(0, 1))
    with pytest.raises(ValueError, match="Ambiguous masks"):
        load_folder(folder_root)


# ------------------------------------------------------------------------------------------------------------
# datasets / Hub
# ------------------------------------------------------------------------------------------------------------


def in_memory_rows(count: int = 4) -> dict[str, list]:
    """Columns in someone else's naming, images and masks embedded as bytes."""
    images = [Image.fromarray(np.full((SIZE, SIZE, 3), 40 * index, np.uint8)) for index in range(count)]
    masks = [None] * (count // 2) + [
        Image.fromarray((np.arange(SIZE)[:, None] == index).repeat(SIZE, 1).astype(np.uint8) * 255)
        for index in range(count - count // 2)
    ]
    kinds = ["good"] * (count // 2) + ["scratch"] * (count - count // 2)
    return {"img": images, "gt": masks, "category": ["leather"] * count, "kind": kinds, "extra": list(range(count))}


def test_hub_parquet_with_column_mapping(tmp_path):
    features = Features(
        {
            "img": ImageFeature(),
            "gt": ImageFeature(),
            "category": Value("string"),
            "kind": Value("string"),
            "extra": Value("int64"),
        }
    )
    Dataset.from_dict(in_memory_rows(), features=features).to_parquet(tmp_path / "test.parquet")
    mapping = {"image": "img", "mask": "gt", "class_name": "category", "defect_type": "kind"}
    dataset = load_hub_dataset("parquet", data_files={"test": str(tmp_path / "test.parquet")}, column_mapping=mapping)
    assert isinstance(dataset, Dataset) and dataset.features == ANOMALY_FEATURES
    assert dataset["label"] == [0, 0, 1, 1]  # derived from defect_type != "good"
    assert dataset["class_name"] == ["leather"] * 4 and dataset["defect_type"] == ["good", "good", "scratch", "scratch"]
    assert dataset["path"] == [f"parquet[test][{index}]" for index in range(4)]
    assert dataset[0]["mask"] is None and marked_rows(dataset[3]["mask"]) == [1]
    assert np.asarray(dataset[2]["image"]).max() == 80
    from_folder = load_hub_dataset(str(tmp_path), column_mapping=mapping)  # a folder of data files
    assert from_folder["label"] == [0, 0, 1, 1] and from_folder["path"][0] == f"{tmp_path}[test][0]"
    streamed = load_hub_dataset(str(tmp_path), column_mapping=mapping, streaming=True)
    assert isinstance(streamed, IterableDataset)
    rows = list(streamed)
    assert [row["label"] for row in rows] == [0, 0, 1, 1] and marked_rows(rows[3]["mask"]) == [1]
    assert rows[2]["image"].size == (SIZE, SIZE) and rows[0]["path"] == f"{tmp_path}[test][0]"


def test_hub_label_from_mask_and_save_to_disk(tmp_path, caplog):
    columns = in_memory_rows()
    Dataset.from_dict({"image": columns["img"], "mask": columns["gt"]}).save_to_disk(str(tmp_path / "saved"))
    with caplog.at_level(logging.INFO, logger="faprompt_hf.data.hub"):
        dataset = load_hub_dataset(tmp_path / "saved", class_name="leather")
    assert f"Loaded 4 rows of {tmp_path / 'saved'}[test]" in caplog.text  # the dataset's name, not a column's
    assert dataset["label"] == [0, 0, 1, 1] and dataset["defect_type"] == ["good", "good", "anomaly", "anomaly"]
    assert dataset["class_name"] == ["leather"] * 4
    assert dataset["path"][1] == f"{tmp_path / 'saved'}[test][1]"
    splits = DatasetDict({"train": Dataset.from_dict({"image": columns["img"][:1], "label": ["normal"]})})
    splits.save_to_disk(str(tmp_path / "dict"))
    train = load_hub_dataset(str(tmp_path / "dict"), split="train", verify=True)
    assert train["label"] == [0] and train[0]["mask"] is None
    with pytest.raises(ValueError, match=r"Split 'test' not in .*its splits are \['train'\]"):
        load_hub_dataset(str(tmp_path / "dict"))
    assert next(iter(load_hub_dataset(str(tmp_path / "dict"), split="train", streaming=True)))["label"] == 0


def test_hub_class_label_is_read_by_name(tmp_path):
    """An imagefolder-style ClassLabel sorts "anomaly" before "normal": index 0 must not mean normal."""
    features = Features(
        {"image": ImageFeature(), "label": ClassLabel(names=["anomaly", "normal"]), "path": Value("string")}
    )
    rows = {"image": in_memory_rows(2)["img"], "label": [0, 1], "path": ["x/a.png", ""]}
    Dataset.from_dict(rows, features=features).save_to_disk(str(tmp_path / "saved"))
    dataset = load_hub_dataset(str(tmp_path / "saved"))
    assert dataset["label"] == [1, 0] and dataset["path"] == ["x/a.png", f"{tmp_path / 'saved'}[test][1]"]
    defects = Features({"image": ImageFeature(), "label": ClassLabel(names=["crack", "good"])})
    Dataset.from_dict({"image": rows["image"], "label": [0, 1]}, features=defects).save_to_disk(str(tmp_path / "d"))
    with pytest.raises(ValueError, match=r"Cannot read the label 'crack'"):
        load_hub_dataset(str(tmp_path / "d"))
    by_defect = load_hub_dataset(str(tmp_path / "d"), column_mapping={"defect_type": "label"})
    assert by_defect["label"] == [1, 0] and by_defect["defect_type"] == ["crack", "good"]


def test_hub_bad_inputs(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_hub_dataset(str(tmp_path / "nowhere"))
    images = in_memory_rows(2)["img"]
    Dataset.from_dict({"picture": images}).save_to_disk(str(tmp_path / "no_image"))
    with pytest.raises(ValueError, match=r"no 'image' column .*picture"):
        load_hub_dataset(str(tmp_path / "no_image"))
    with pytest.raises(ValueError, match="no label, defect_type or mask column"):
        load_hub_dataset(str(tmp_path / "no_image"), column_mapping={"image": "picture"})
    with pytest.raises(ValueError, match=r"names columns that .* lacks"):
        load_hub_dataset(str(tmp_path / "no_image"), column_mapping={"image": "img"})
    with pytest.raises(ValueError, match="not schema columns"):
        load_hub_dataset(str(tmp_path / "no_image"), column_mapping={"picture": "picture"})
    Dataset.from_dict({"image": images, "label": [0, 7]}).save_to_disk(str(tmp_path / "bad_label"))
    with pytest.raises(ValueError, match=r"Cannot read the label 7 of row .*bad_label\[test\]\[1\]"):
        load_hub_dataset(str(tmp_path / "bad_label"))
    Dataset.from_dict({"image": images, "label": [0, 0], "defect_type": ["good", "hole"]}).save_to_disk(
        str(tmp_path / "contradiction")
    )
    with pytest.raises(ValueError, match=r"contradiction\[test\]\[1\].* labelled normal but has defect type 'hole'"):
        load_hub_dataset(str(tmp_path / "contradiction"))
    with pytest.raises(ValueError, match="verify=True needs streaming=False"):
        load_hub_dataset(str(tmp_path / "contradiction"), streaming=True, verify=True)
    with pytest.raises(ValueError, match="load_dataset options"):
        load_hub_dataset(str(tmp_path / "contradiction"), data_files="x.parquet")


def test_hub_keeps_the_mask_column_without_decoding_or_copying(tmp_path, monkeypatch):
    columns = in_memory_rows()
    features = Features({"img": ImageFeature(), "gt": ImageFeature(), "kind": Value("string")})
    source = Dataset.from_dict({name: columns[name] for name in features}, features=features)
    source.save_to_disk(str(tmp_path / "saved"))
    source.to_parquet(tmp_path / "test.parquet")
    expected = source.with_format("arrow")["gt"]

    def forbidden(*args, **kwargs):
        raise AssertionError("a mask was decoded or re-encoded")

    mapping = {"image": "img", "mask": "gt", "defect_type": "kind"}
    monkeypatch.setattr(ImageFeature, "encode_example", forbidden)
    monkeypatch.setattr(ImageFeature, "decode_example", forbidden)
    monkeypatch.setattr(Image, "open", forbidden)
    saved = load_hub_dataset(tmp_path / "saved", column_mapping=mapping)
    parquet = load_hub_dataset("parquet", data_files={"test": str(tmp_path / "test.parquet")}, column_mapping=mapping)
    monkeypatch.undo()
    for dataset in (saved, parquet):
        assert dataset.features == ANOMALY_FEATURES and dataset["label"] == [0, 0, 1, 1]
        assert dataset.with_format("arrow")["mask"].to_pylist() == expected.to_pylist()  # the same stored bytes
        assert dataset[0]["mask"] is None and marked_rows(dataset[3]["mask"]) == [1]


def test_hub_mask_columns_of_paths_bytes_and_empty_entries(tmp_path):
    images = in_memory_rows(3)["img"]
    mask_file = save_mask(tmp_path / "gt" / "b.png", slice(4, 5))
    paths = {"image": images, "mask": ["", None, str(mask_file)]}
    Dataset.from_dict(paths).save_to_disk(str(tmp_path / "paths"))
    from_paths = load_hub_dataset(tmp_path / "paths")
    assert from_paths["label"] == [0, 0, 1] and undecoded(from_paths, "mask")[2] == {
        "bytes": None,
        "path": str(mask_file),
    }
    assert from_paths[0]["mask"] is None and marked_rows(from_paths[2]["mask"]) == [4]
    raw = {"image": images, "mask": [None, None, mask_file.read_bytes()]}
    Dataset.from_dict(raw).save_to_disk(str(tmp_path / "raw"))
    from_bytes = load_hub_dataset(tmp_path / "raw", verify=True)
    assert from_bytes["label"] == [0, 0, 1] and marked_rows(from_bytes[2]["mask"]) == [4]
    # an Image column with an empty, non-null entry: it is re-encoded so that the entry becomes "no mask"
    empty = Dataset.from_dict({"image": images, "mask": [None, str(mask_file), str(mask_file)], "label": [0, 1, 1]})
    table = empty.cast_column("mask", ImageFeature()).data.table
    emptied = pa.StructArray.from_arrays(
        [pa.array([None] * 3, pa.binary()), pa.array(["", str(mask_file), str(mask_file)])], names=["bytes", "path"]
    )
    assert emptied.is_valid().to_pylist() == [True] * 3
    # written with pyarrow: datasets' own writers refuse an Image entry with an empty path
    pq.write_table(table.set_column(table.schema.get_field_index("mask"), "mask", emptied), tmp_path / "empty.parquet")
    from_empty = load_hub_dataset("parquet", data_files={"test": str(tmp_path / "empty.parquet")}, verify=True)
    assert from_empty[0]["mask"] is None and marked_rows(from_empty[1]["mask"]) == [4]


def test_hub_float_labels_from_parquet(tmp_path):
    images = in_memory_rows(3)["img"]
    features = Features({"image": ImageFeature(), "label": Value("float64")})
    Dataset.from_dict({"image": images, "label": [0.0, 1.0, 1.0]}, features=features).to_parquet(tmp_path / "a.parquet")
    dataset = load_hub_dataset("parquet", data_files={"test": str(tmp_path / "a.parquet")})
    assert dataset["label"] == [0, 1, 1] and dataset["defect_type"] == ["good", "anomaly", "anomaly"]
    for bad in (0.5, float("nan")):
        Dataset.from_dict({"image": images[:2], "label": [0.0, bad]}, features=features).to_parquet(
            tmp_path / "bad.parquet"
        )
        with pytest.raises(ValueError, match=rf"Cannot read the label {bad} of row .*\[test\]\[1\].*use 0/1"):
            load_hub_dataset("parquet", data_files={"test": str(tmp_path / "bad.parquet")})


def test_meta_json_accepts_float_anomaly_flags(tmp_path):
    save_image(tmp_path / "bottle" / "good.png")
    save_image(tmp_path / "bottle" / "bad.png")
    save_mask(tmp_path / "bottle" / "bad_mask.png", slice(2, 3))
    item = {"cls_name": "bottle", "specie_name": "good", "mask_path": "", "img_path": "bottle/good.png"}
    bad = {**item, "specie_name": "broken", "mask_path": "bottle/bad_mask.png", "img_path": "bottle/bad.png"}
    meta = {"train": {}, "test": {"bottle": [{**item, "anomaly": 0.0}, {**bad, "anomaly": np.float32(1.0).item()}]}}
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    assert load_meta_json(tmp_path)["label"] == [0, 1]


def test_decode_image_value_ignores_exif_orientation(tmp_path):
    """As the original evaluation and the processor's path loading: the stored pixels, never rotated."""
    exif = Image.Exif()
    exif[Image.ExifTags.Base.Orientation] = 6
    array = np.zeros((SIZE // 2, SIZE, 3), np.uint8)
    array[0, 0] = 255
    Image.fromarray(array).save(tmp_path / "rotated.png", exif=exif)
    assert Image.open(tmp_path / "rotated.png").getexif()[Image.ExifTags.Base.Orientation] == 6
    from_path = decode_image_value(str(tmp_path / "rotated.png"), "row")
    from_bytes = decode_image_value({"bytes": (tmp_path / "rotated.png").read_bytes(), "path": None}, "row")
    for image in (from_path, from_bytes):
        assert image.size == (SIZE, SIZE // 2)
        np.testing.assert_array_equal(np.asarray(to_rgb_image(image)), array)
    np.testing.assert_array_equal(np.asarray(to_rgb_image(str(tmp_path / "rotated.png"))), array)


# ------------------------------------------------------------------------------------------------------------
# Hardening: bad index entries, paths leaving the root, dangling links, undecodable files, lost writes
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "pattern"),
    [
        ("img_path", 5, r"'img_path' must be a string, got int 5; write it as a string"),
        ("img_path", None, r"'img_path' is empty; give the image path relative to"),
        ("img_path", ["screw/thread/0.png"], r"'img_path' must be a string, got list \['screw/thread/0.png'\]"),
        ("img_path", "", r"'img_path' is empty"),
        ("mask_path", 3, r"'mask_path' must be a string, got int 3"),
        ("specie_name", 7, r"'specie_name' must be a string, got int 7; write it as a string such as"),
        ("cls_name", ["a", "b"], r"'cls_name' must be a string, got list \['a', 'b'\]"),
        ("cls_name", {"x": 1}, r"'cls_name' must be a string, got dict"),
        ("anomaly", "maybe", r"Cannot read the label 'maybe' of .*\[test\]\[screw\]\[1\] 'anomaly'"),
        ("anomaly", [1], r"Cannot read the label \[1\]"),
    ],
)
def test_meta_json_bad_item_fields_name_file_split_class_item_and_field(tmp_path, field, value, pattern):
    meta = write_meta_tree(tmp_path)
    meta["test"]["screw"][1][field] = value
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=pattern) as error:
        load_meta_json(tmp_path)
    assert f"{tmp_path / 'meta.json'} [test][screw][1]" in str(error.value)


def test_meta_json_null_optional_fields_are_absent_and_never_a_list_class(tmp_path):
    meta = write_meta_tree(tmp_path)
    meta["test"]["screw"][0].update(mask_path=None, specie_name=None, cls_name=None)
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    dataset = load_meta_json(tmp_path)
    assert dataset["class_name"] == ["screw", "screw"] and dataset["defect_type"] == ["good", "thread"]


def write_outside_file(tmp_path: Path) -> Path:
    return save_image(tmp_path / "secret" / "passwd.png")


@pytest.mark.parametrize(
    ("field", "written"),
    [
        ("img_path", "../secret/passwd.png"),
        ("img_path", "screw/../../secret/passwd.png"),
        ("img_path", "ABSOLUTE"),
        ("mask_path", "../secret/passwd.png"),
    ],
)
def test_meta_json_paths_leaving_the_root_are_refused_unless_allowed(tmp_path, field, written):
    root = tmp_path / "dataset"
    outside = write_outside_file(tmp_path)
    meta = write_meta_tree(root)
    meta["test"]["screw"][1][field] = str(outside) if written == "ABSOLUTE" else written
    (root / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="outside the dataset root") as error:
        load_meta_json(root)
    message = str(error.value)
    assert "[test][screw][1]" in message and field in message and str(outside) in message
    assert "allow_outside_root=True" in message
    loaded = load_meta_json(root, allow_outside_root=True)
    column = "path" if field == "img_path" else "mask"
    values = loaded["path"] if column == "path" else [value["path"] for value in undecoded(loaded, "mask") if value]
    assert str(outside) in values


def test_paths_that_stay_inside_the_root_are_accepted(tmp_path):
    meta = write_meta_tree(tmp_path)
    meta["test"]["screw"][0]["img_path"] = "screw/thread/../good/0.png"
    meta["test"]["screw"][1]["img_path"] = str(tmp_path / "screw" / "thread" / "0.png")
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    assert load_meta_json(tmp_path)["path"] == [
        str(tmp_path / "screw" / "good" / "0.png"),
        str(tmp_path / "screw" / "thread" / "0.png"),
    ]


@pytest.mark.parametrize("column", ["image", "mask"])
def test_visa_paths_leaving_the_root_are_refused_unless_allowed(tmp_path, column):
    root = tmp_path / "visa"
    outside = write_outside_file(tmp_path)
    write_visa(root)
    anomaly = ["candle", "test", "anomaly", "candle/Data/Images/Anomaly/000.JPG", "candle/Data/Masks/Anomaly/000.png"]
    anomaly[3 if column == "image" else 4] = "../secret/passwd.png"
    write_visa(root, [tuple(anomaly)])
    with pytest.raises(ValueError, match=rf"1cls.csv:2: {column} '../secret/passwd.png' leads to .*passwd.png"):
        load_visa(root)
    loaded = load_visa(root, allow_outside_root=True)
    stored = loaded["path"][0] if column == "image" else undecoded(loaded, "mask")[0]["path"]
    assert stored == str(outside)


@pytest.mark.parametrize(
    ("content", "pattern"),
    [
        (
            b"object,split,label,image,mask\ncandle,test,normal,candle/Data/Images/Normal/000.JPG,\ncandle,test\n",
            r"1cls.csv:3: the row has 2 fields but the header has 5 \(object,split,label,image,mask\); fix the row",
        ),
        (
            b"object,split,label,image,mask\ncandle,test,normal,candle/Data/Images/Normal/000.JPG,,extra\n",
            r"1cls.csv:2: the row has 6 fields but the header has 5",
        ),
        (
            b"object,split,label,image,mask\ncandle,test,normal,candle/Data/Images/Normal/000.JPG,\n"
            b"candle,test,normal,candle/caf\xe9.JPG,\n",
            r"1cls.csv:3: VisA split file is not UTF-8 text \(byte 0xe9 .*re-save it as UTF-8",
        ),
        (b"object,split,label,image,mask\ncandle,test,normal, ,\n", r"1cls.csv:2: the 'image' field is empty"),
        (
            b"object,split,label,image,mask\n\ncandle,test,normal,candle/nope.JPG,\n",
            r"1cls.csv:3: image file not found.*nope.JPG",
        ),
    ],
)
def test_visa_malformed_csv_names_file_and_line(tmp_path, content, pattern):
    csv_path = write_visa(tmp_path)
    csv_path.write_bytes(content)
    with pytest.raises((ValueError, FileNotFoundError), match=pattern) as error:
        load_visa(tmp_path)
    assert str(csv_path) in str(error.value)


def test_visa_csv_with_a_byte_order_mark_loads(tmp_path):
    csv_path = write_visa(tmp_path)
    csv_path.write_bytes(b"\xef\xbb\xbf" + csv_path.read_bytes())
    assert len(load_visa(tmp_path)) == 4


def dangling(link: Path) -> Path:
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(link.parent / "gone_target.png")
    return link


@pytest.mark.parametrize(
    ("tree", "link", "load"),
    [
        ("mvtec_root", "bottle/test/good/001.png", load_mvtec_ad),
        ("mvtec_root", "bottle/ground_truth/broken/003_mask.png", load_mvtec_ad),
        ("mvtec_root", "bottle/test/scratch", load_mvtec_ad),
        ("folder_root", "gear/dent/d.png", load_folder),
        ("folder_root", "gear/masks/dent/e.png", load_folder),
        ("folder_root", "wood", load_folder),
    ],
)
def test_dangling_symlinks_are_an_error_naming_link_and_target(request, tree, link, load):
    root = request.getfixturevalue(tree)
    link = dangling(root / link)
    with pytest.raises(FileNotFoundError) as error:
        load(root)
    message = str(error.value)
    assert str(link) in message and "gone_target.png" in message and "fix the link or remove it" in message


def test_dangling_symlink_named_by_an_index_file(tmp_path):
    meta = write_meta_tree(tmp_path)
    dangling(tmp_path / "screw" / "good" / "1.png")
    meta["test"]["screw"][0]["img_path"] = "screw/good/1.png"
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(FileNotFoundError, match=r"\[test\]\[screw\]\[0\]: img_path: .*1.png' is a symbolic link"):
        load_meta_json(tmp_path)


def truncate(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.mark.parametrize(
    "view",
    [
        lambda ds: ds,
        lambda ds: ds.select([0, 1]),
        lambda ds: ds.shuffle(seed=0).filter(lambda path: path.endswith("002.png"), input_columns="path"),
        lambda ds: ds.filter(lambda label: label == 1, input_columns="label"),
        lambda ds: ds.map(lambda name: {"class_name": name.upper()}, input_columns="class_name"),
        lambda ds: ds.train_test_split(test_size=1, shuffle=False)["train"],
    ],
)
def test_reading_an_undecodable_image_from_a_loaded_dataset_names_the_file(mvtec_root, view):
    broken = truncate(mvtec_root / "bottle" / "test" / "broken" / "002.png")
    dataset = view(load_mvtec_ad(mvtec_root))
    with pytest.raises(ValueError, match="Cannot decode the image file") as error:
        dataset[0]["image"]
    assert str(broken) in str(error.value) and "verify_dataset" in str(error.value)


def test_reading_undecodable_masks_missing_files_and_hub_rows_names_the_file(mvtec_root, tmp_path):
    mask = truncate(mvtec_root / "bottle" / "ground_truth" / "broken" / "002_mask.png")
    dataset = load_mvtec_ad(mvtec_root)
    with pytest.raises(ValueError, match=f"Cannot decode the image file '{mask}'"):
        dataset[0]["mask"]
    os.remove(mvtec_root / "bottle" / "test" / "good" / "000.png")
    with pytest.raises(FileNotFoundError, match=r"Image file not found: .*good.000.png'. Restore the file"):
        dataset[2]
    with pytest.raises(ValueError, match="Cannot decode the image file"):
        next(iter(dataset.to_iterable_dataset()))
    rows = Dataset.from_dict({"image": [str(mask)], "label": [1]})
    rows.to_parquet(tmp_path / "rows.parquet")
    hub = load_hub_dataset("parquet", data_files={"test": str(tmp_path / "rows.parquet")})
    with pytest.raises(ValueError, match=f"Cannot decode the image file '{mask}'"):
        hub[0]["image"]


def test_other_datasets_decode_as_datasets_does(tmp_path):
    """The file-naming decoder sits on our schema's features only, not on datasets.Image itself."""
    path = truncate(save_image(tmp_path / "x.png"))
    plain = Dataset.from_dict({"image": [str(path)]}, features=Features({"image": ImageFeature()}))
    with pytest.raises(Exception) as error:  # noqa: PT011 - whatever PIL raises, untouched
        plain[0]["image"]
    assert "Cannot decode the image file" not in str(error.value)


def test_write_meta_json_keeps_the_old_file_when_writing_fails(mvtec_root, monkeypatch):
    meta_path = write_meta_json(load_mvtec_ad(mvtec_root, split="train"), mvtec_root, split="train")
    before = meta_path.read_bytes()

    def dump_half_then_fail(meta, handle, **kwargs):
        handle.write(json.dumps(meta)[:20])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(json, "dump", dump_half_then_fail)
    with pytest.raises(OSError, match=r"Could not write .*meta.json.*No space left.*previous version.*intact"):
        write_meta_json(load_mvtec_ad(mvtec_root), mvtec_root)
    assert meta_path.read_bytes() == before
    assert sorted(path.name for path in mvtec_root.iterdir() if path.name.startswith(".")) == []


@pytest.mark.integration
def test_write_meta_json_survives_a_file_size_limit(mvtec_root):
    """A real failure: RLIMIT_FSIZE in a subprocess makes the write fail with EFBIG half-way."""
    meta_path = write_meta_json(load_mvtec_ad(mvtec_root, split="train"), mvtec_root, split="train")
    before = meta_path.read_bytes()
    code = (
        "import resource, signal, sys\n"
        "from faprompt_hf.data import load_mvtec_ad, write_meta_json\n"
        "dataset = load_mvtec_ad(sys.argv[1])\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({len(before) + 64}, resource.RLIM_INFINITY))\n"
        "try:\n"
        "    write_meta_json(dataset, sys.argv[1])\n"
        "except OSError as error:\n"
        "    print('FAILED', error)\n"
    )
    result = subprocess.run([sys.executable, "-c", code, str(mvtec_root)], capture_output=True, text=True, timeout=300)
    assert "FAILED [Errno 27] Could not write" in result.stdout, result.stdout + result.stderr
    assert "File too large" in result.stdout and "Free some space" in result.stdout
    assert meta_path.read_bytes() == before
    assert json.loads(before)["train"] and not [p for p in mvtec_root.iterdir() if p.name.startswith(".meta")]


def test_write_meta_json_does_not_overwrite_a_corrupt_index(mvtec_root):
    (mvtec_root / "meta.json").write_text("{half a file")
    with pytest.raises(ValueError, match="not valid JSON.*does not overwrite this one: fix it, or remove it"):
        write_meta_json(load_mvtec_ad(mvtec_root), mvtec_root)
    assert (mvtec_root / "meta.json").read_text() == "{half a file"


@pytest.mark.parametrize(
    ("column", "values", "pattern"),
    [
        ("category", [["a", "b"], ["a"]], r"column 'category' holds list \['a', 'b'\] where a string is expected"),
        ("category", [3, 4], r"column 'category' holds int 3 .*ClassLabel\(names=\[\.\.\.\]\)"),
        ("kind", [1.5, 2.5], r"column 'kind' holds float 1.5"),
    ],
)
def test_hub_text_columns_of_other_types_are_refused_naming_row_and_column(tmp_path, column, values, pattern):
    table = {
        "img": [Image.new("RGB", (SIZE, SIZE))] * 2,
        "label": [0, 1],
        "category": ["a", "a"],
        "kind": ["good", "x"],
    }
    table[column] = values
    saved = tmp_path / "saved"
    Dataset.from_dict(table).save_to_disk(saved)
    mapping = {"image": "img", "class_name": "category", "defect_type": "kind"}
    with pytest.raises(ValueError, match=pattern) as error:
        load_hub_dataset(str(saved), column_mapping=mapping)
    assert f"{saved}[test][0]" in str(error.value)


def test_hub_image_column_of_int64_is_named_not_an_arrow_cast_error(tmp_path):
    Dataset.from_dict({"image": [1, 2], "label": [0, 1]}).to_parquet(tmp_path / "test.parquet")
    with pytest.raises(ValueError, match=r"the image column 'image' holds int64 values, not images.*column_mapping"):
        load_hub_dataset("parquet", data_files={"test": str(tmp_path / "test.parquet")})

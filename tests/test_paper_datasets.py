# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""The paper's datasets in their public layouts: miniature replicas, counts, mask pairing, damaged trees, meta.json,
folder discovery and training on a mix."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from accelerate.state import AcceleratorState, GradientState
from datasets import Image as ImageFeature
from PIL import Image

from faprompt_hf.data import (
    ANOMALY_FEATURES,
    DATASET_FORMATS,
    EXTRA_DATASETS,
    PAPER_DATASETS,
    DatasetLayoutError,
    find_paper_datasets,
    load_dataset_by_format,
    load_meta_json,
    load_paper_dataset,
    mix_datasets,
    write_paper_meta_json,
    write_replica,
)
from faprompt_hf.data.mixing import extract_mix_arguments
from faprompt_hf.data.paper_datasets import get_dataset_spec, normalize_folder_name

REPO_ROOT = Path(__file__).resolve().parents[1]

# Test split of each replica: {(class, label): count}, and how many rows have a mask.
EXPECTED = {
    "mvtec": ({("bottle", 0): 2, ("bottle", 1): 2, ("carpet", 0): 2, ("carpet", 1): 2}, 4),
    "visa": ({("candle", 0): 2, ("candle", 1): 2, ("pcb1", 0): 2, ("pcb1", 1): 2}, 4),
    "elpv": ({("mono", 0): 2, ("mono", 1): 2, ("poly", 0): 2, ("poly", 1): 2}, 0),
    "sdd": ({("electrical_commutator", 0): 4, ("electrical_commutator", 1): 2}, 2),
    "aitex": ({("fabric_00", 0): 2, ("fabric_00", 1): 1, ("fabric_01", 0): 1, ("fabric_01", 1): 1}, 2),
    "btad": ({("01", 0): 2, ("01", 1): 2, ("03", 0): 2, ("03", 1): 2}, 4),
    "dagm": ({("Class1", 0): 2, ("Class1", 1): 2, ("Class2", 0): 1, ("Class2", 1): 1}, 3),
    "dtd": ({("Blotchy_099", 0): 2, ("Blotchy_099", 1): 2, ("Woven_001", 0): 2, ("Woven_001", 1): 2}, 4),
    "mpdd": ({("bracket_black", 0): 2, ("bracket_black", 1): 2, ("metal_plate", 0): 2, ("metal_plate", 1): 2}, 4),
    "brainmri": ({("brain", 0): 3, ("brain", 1): 3}, 0),
    "headct": ({("brain", 0): 3, ("brain", 1): 3}, 0),
    "lag": ({("fundus", 0): 3, ("fundus", 1): 2}, 0),
    "br35h": ({("brain", 0): 3, ("brain", 1): 2}, 0),
    "colondb": ({("colon", 1): 3}, 3),
    "clinicdb": ({("colon", 1): 2}, 2),
    "kvasir": ({("colon", 1): 2}, 2),
    "endo": ({("colon", 1): 2}, 2),
    "isic": ({("skin", 1): 2}, 2),
    "tn3k": ({("thyroid", 1): 3}, 3),
    "mvtec_ad2": ({("can", 0): 2, ("can", 1): 2}, 2),
    "mvtec_loco": ({("breakfast_box", 0): 2, ("breakfast_box", 1): 2}, 2),
}


def _undecoded_masks(dataset):
    return dataset.cast_column("mask", ImageFeature(decode=False))["mask"]


def _load_grey(value) -> np.ndarray:
    if value.get("bytes"):
        import io

        return np.asarray(Image.open(io.BytesIO(value["bytes"])).convert("L"))
    return np.asarray(Image.open(value["path"]).convert("L"))


def test_the_registry_has_the_papers_19_datasets_and_their_formats():
    assert len(PAPER_DATASETS) == 19
    assert Counter(spec.domain for spec in PAPER_DATASETS.values()) == {"industrial": 9, "medical": 10}
    assert set(EXTRA_DATASETS) == {"mvtec_ad2", "mvtec_loco"}
    for key in [*PAPER_DATASETS, *EXTRA_DATASETS]:
        assert key in DATASET_FORMATS


@pytest.mark.parametrize("key", list(EXPECTED))
def test_replica_counts_labels_and_mask_pairing(key, tmp_path):
    folder = write_replica(key, tmp_path)
    dataset = load_paper_dataset(key, folder)
    counts, with_mask = EXPECTED[key]
    assert dataset.features == ANOMALY_FEATURES
    assert Counter(zip(dataset["class_name"], dataset["label"], strict=True)) == counts
    masks = _undecoded_masks(dataset)
    assert sum(mask is not None for mask in masks) == with_mask
    spec = get_dataset_spec(key)
    if spec.pixel_metrics:  # every anomalous row has its own mask; normal rows none
        assert all((mask is not None) == bool(label) for mask, label in zip(masks, dataset["label"], strict=True))
    else:
        assert with_mask == 0
    assert all(
        defect == "good" for defect, label in zip(dataset["defect_type"], dataset["label"], strict=True) if not label
    )
    # Pairing: the replica draws the defect square at a random place per image; the mask must mark that image's square.
    for path, mask, label in zip(dataset["path"], masks, dataset["label"], strict=True):
        image = np.asarray(Image.open(path).convert("L")).astype(int)
        if mask is None:
            continue
        marked = _load_grey(mask) > 127
        assert marked.shape == image.shape
        assert marked.sum() >= 64, path
        assert image[marked].mean() > 200, f"{path}: its mask does not mark its defect"
        assert image[~marked].mean() < 160
        assert label == 1


# Each damage, and the error it must give (type, text that names the culprit and the fix).
def _remove(path: Path) -> None:
    shutil.rmtree(path) if path.is_dir() else path.unlink()


def _append(path: Path, text: str) -> None:
    path.write_text(path.read_text() + text)


DAMAGES = {
    "mvtec": (
        lambda r: _remove(r / "bottle/ground_truth/broken_large/001_mask.png"),
        FileNotFoundError,
        "001_mask.png",
    ),
    "visa": (lambda r: _remove(r / "candle/Data/Masks/Anomaly/001.png"), FileNotFoundError, "1cls.csv:.*001.png"),
    "elpv": (
        lambda r: _append(r / "labels.csv", "images/cell0001.png  0.5  mono\n"),
        ValueError,
        r"labels.csv:9: unknown label value '0.5'",
    ),
    "sdd": (lambda r: _remove(r / "kos01/Part1_label.bmp"), FileNotFoundError, r"expected .*kos01/Part1_label.bmp"),
    "aitex": (lambda r: (r / "Extra_images").mkdir(), DatasetLayoutError, r"unexpected .*Extra_images.*expected only"),
    "btad": (lambda r: (r / "01/test/good").mkdir(), DatasetLayoutError, r"01/test/good.*only \['ok', 'ko'\]"),
    "dagm": (
        lambda r: _append(r / "Class1/Test/Label/Labels.txt", "5\t2\t0003.PNG\t0\t\n"),
        ValueError,
        r"Labels.txt:6: unknown label value '2'",
    ),
    "dtd": (
        lambda r: (r / "Woven_001/ground_truth/bda").mkdir(),
        DatasetLayoutError,
        r"ground_truth/bda.*\['bad', 'good'\]",
    ),
    "mpdd": (
        lambda r: _remove(r / "metal_plate/ground_truth/scratches/000_mask.png"),
        FileNotFoundError,
        "000_mask.png",
    ),
    "brainmri": (lambda r: (r / "brain_tumor_dataset/maybe").mkdir(), DatasetLayoutError, r"maybe.*\['yes', 'no'\]"),
    "headct": (
        lambda r: (r / "labels.csv").write_text((r / "labels.csv").read_text().replace("5,0", "5,2")),
        ValueError,
        r"labels.csv:7: unknown label value '2'",
    ),
    "lag": (lambda r: (r / "glaucoma").mkdir(), DatasetLayoutError, r"unexpected .*glaucoma'.*non_glaucoma"),
    "br35h": (lambda r: _remove(r / "no"), DatasetLayoutError, r"Br35H.*no' not found.*yes/"),
    "colondb": (lambda r: _remove(r / "masks/2.png"), FileNotFoundError, r"expected .*masks/2.png"),
    "clinicdb": (lambda r: (r / "Polyps").mkdir(), DatasetLayoutError, r"Polyps.*\['Original', 'Ground Truth'\]"),
    "kvasir": (
        lambda r: _remove(r / "masks/cju0qkwl35piu0993l0dewei2.jpg"),
        FileNotFoundError,
        "cju0qkwl35piu0993l0dewei2",
    ),
    "endo": (lambda r: _remove(r / "masks"), DatasetLayoutError, r"masks' not found; expected images/ and masks/"),
    "isic": (
        lambda r: _remove(r / "ISBI2016_ISIC_Part1_Test_GroundTruth/ISIC_0000012_Segmentation.png"),
        FileNotFoundError,
        "ISIC_0000012_Segmentation",
    ),
    "tn3k": (lambda r: (r / "val-image").mkdir(), DatasetLayoutError, r"val-image.*test-image"),
    "mvtec_ad2": (lambda r: (r / "can/test_public/ground_truth/bda").mkdir(), DatasetLayoutError, r"ground_truth/bda"),
    "mvtec_loco": (
        lambda r: _remove(r / "breakfast_box/ground_truth/structural_anomalies/000"),
        FileNotFoundError,
        r"structural_anomalies/000/000.png",
    ),
}


@pytest.mark.parametrize("key", list(DAMAGES))
def test_damaged_tree_gives_one_clear_error(key, tmp_path):
    folder = write_replica(key, tmp_path)
    damage, error, pattern = DAMAGES[key]
    damage(folder)
    with pytest.raises(error, match=pattern):
        load_paper_dataset(key, folder)


def test_layout_error_names_the_first_unexpected_path_and_the_expected_layout(tmp_path):
    folder = write_replica("btad", tmp_path)
    (folder / "02").mkdir()
    (folder / "02" / "tests").mkdir()
    with pytest.raises(DatasetLayoutError) as raised:
        load_paper_dataset("btad", folder)
    message = str(raised.value)
    assert str(folder / "02" / "tests") in message and "['train', 'test', 'ground_truth']" in message
    assert "docs/data.md" in message


def test_kolektorsdd_labels_come_from_mask_content(tmp_path):
    folder = write_replica("sdd", tmp_path)
    dataset = load_paper_dataset("sdd", folder)
    anomalous = {
        Path(path).relative_to(folder).as_posix()
        for path, label in zip(dataset["path"], dataset["label"], strict=True)
        if label
    }
    assert anomalous == {"kos01/Part1.jpg", "kos02/Part2.jpg"}


def test_mvtec_loco_unites_several_masks_of_one_image(tmp_path):
    folder = write_replica("mvtec_loco", tmp_path)
    dataset = load_paper_dataset("mvtec_loco", folder)
    row = dataset.filter(lambda defect: defect == "logical_anomalies", input_columns="defect_type")
    mask = np.asarray(row[0]["mask"].convert("L")) > 0
    parts = folder / "breakfast_box/ground_truth/logical_anomalies/000"
    union = (np.asarray(Image.open(parts / "000.png")) > 0) | (np.asarray(Image.open(parts / "001.png")) > 0)
    assert np.array_equal(mask, union) and union.sum() > 64


def test_splits_and_classes(tmp_path):
    btad = write_replica("btad", tmp_path)
    train = load_paper_dataset("btad", btad, split="train", classes=["03"])
    assert len(train) == 1 and train["label"] == [0] and train["class_name"] == ["03"]
    with pytest.raises(ValueError, match="classes \\['04'\\] not found; available: \\['01', '03'\\]"):
        load_paper_dataset("btad", btad, classes=["04"])
    headct = write_replica("headct", tmp_path)
    with pytest.raises(ValueError, match="HeadCT has the split\\(s\\) \\['test'\\].*no train/test split"):
        load_paper_dataset("headct", headct, split="train")
    tn3k = write_replica("tn3k", tmp_path)
    assert len(load_paper_dataset("tn3k", tn3k, split="train")) == 2


def test_dispatch_loads_paper_formats(tmp_path):
    folder = write_replica("dagm", tmp_path)
    dataset = load_dataset_by_format("dagm", folder, split="train")
    assert Counter(dataset["label"]) == {1: 2, 0: 2}
    with pytest.raises(ValueError, match="dataset_format must be one of"):
        load_dataset_by_format("kolektor2", folder)


def test_headct_image_without_a_row_is_an_error(tmp_path):
    folder = write_replica("headct", tmp_path)
    Image.new("L", (32, 32)).save(folder / "head_ct" / "head_ct" / "006.png")
    with pytest.raises(ValueError, match="006.png' has no row in"):
        load_paper_dataset("headct", folder)


# ------------------------------------------------------------------------------------------------ meta.json


@pytest.mark.parametrize("key", ["btad", "dagm", "aitex", "isic", "headct", "elpv"])
def test_meta_json_for_the_released_code_round_trips(key, tmp_path):
    folder = write_replica(key, tmp_path)
    meta_path = write_paper_meta_json(key, folder)
    meta = json.loads(meta_path.read_text())
    assert set(meta) == {"train", "test"}
    original = load_paper_dataset(key, folder)
    item = next(iter(meta["test"].values()))[0]
    assert not Path(item["img_path"]).is_absolute() and set(item) == {
        "img_path",
        "mask_path",
        "cls_name",
        "specie_name",
        "anomaly",
    }
    image_level = not get_dataset_spec(key).pixel_metrics
    reloaded = load_meta_json(folder, split="test", require_masks=not image_level)
    assert sorted(reloaded["path"]) == sorted(original["path"])
    assert Counter(zip(reloaded["class_name"], reloaded["label"], strict=True)) == Counter(
        zip(original["class_name"], original["label"], strict=True)
    )
    # the train split is written when the replica has one (BTAD, DAGM); ISIC's replica has only the test folders
    assert bool(meta["train"]) == (key in ("btad", "dagm"))


# ------------------------------------------------------------------------------------------------ discovery


def test_folder_names_are_recognised_whatever_their_case_and_separators(tmp_path):
    root = tmp_path / "data"
    write_replica("mpdd", root)
    (root / "MPDD").rename(root / "mpdd_anomaly_detection")
    write_replica("brainmri", root)
    (root / "BrainMRI").rename(root / "Brain-MRI")
    write_replica("colondb", root)
    (root / "CVC-ColonDB").rename(root / "cvc_colondb")
    (root / "my_private_set").mkdir()
    found = find_paper_datasets(root)
    assert list(found.found) == ["mpdd", "brainmri", "colondb"]  # the paper's order
    assert [folder.name for folder in found.unrecognised] == ["my_private_set"]
    assert normalize_folder_name("MVTec-AD") == normalize_folder_name("mvtec_ad") == "mvtecad"


def test_differently_named_folder_is_chosen_explicitly_and_duplicates_are_refused(tmp_path):
    root = tmp_path / "data"
    write_replica("btad", root)
    (root / "BTech_Dataset_transformed").rename(root / "beantech")
    assert "btad" not in find_paper_datasets(root).found
    found = find_paper_datasets(root, paths={"BTAD": "beantech"})
    assert found.found["btad"] == root / "beantech"
    with pytest.raises(FileNotFoundError, match="BTAD.*nowhere"):
        find_paper_datasets(root, paths={"btad": "nowhere"})
    (root / "btad").mkdir()
    (root / "BTAD_anomaly_detection").mkdir()
    with pytest.raises(ValueError, match="Several folders .* look like BTAD"):
        find_paper_datasets(root)


# ------------------------------------------------------------------------------------------------ mixing


def test_mix_proportional_and_equal(tmp_path):
    small = load_paper_dataset("lag", write_replica("lag", tmp_path))  # 5 images
    large = load_paper_dataset("mvtec", write_replica("mvtec", tmp_path))  # 8 images
    proportional = mix_datasets([small, large], "proportional")
    assert len(proportional) == 13
    equal = mix_datasets([small, large], "equal", seed=3)
    assert len(equal) == 16
    paths = Counter(equal["path"])
    assert sum(paths[path] for path in small["path"]) == 8 and set(small["path"]) <= set(paths)
    assert all(paths[path] == 1 for path in large["path"])
    assert max(paths[path] for path in small["path"]) == 2
    assert equal["path"] == mix_datasets([small, large], "equal", seed=3)["path"]
    with pytest.raises(ValueError, match="mix strategy must be one of"):
        mix_datasets([small, large], "random")
    with pytest.raises(ValueError, match="at least two datasets"):
        mix_datasets([small], "equal")


def test_extract_mix_arguments_pairs_formats_and_paths():
    argv = ["--dataset_format", "mvtec", "--dataset_path", "/m", "--output_dir", "o", "--dataset_format=synthetic"]
    argv += ["--dataset_format", "btad", "--dataset_path", "/b", "--mix_strategy", "equal"]
    rest, mix = extract_mix_arguments(argv)
    assert mix.formats == ["mvtec", "synthetic", "btad"] and mix.paths == ["/m", None, "/b"]
    assert mix.strategy == "equal"
    assert rest == ["--output_dir", "o", "--dataset_format", "mvtec", "--dataset_path", "/m"]
    single = ["--dataset_format", "mvtec", "--dataset_path", "/m"]
    assert extract_mix_arguments(single) == (single, None)
    with pytest.raises(ValueError, match="--mix_strategy mixes several datasets"):
        extract_mix_arguments([*single, "--mix_strategy", "equal"])
    with pytest.raises(ValueError, match="needs one --dataset_path per format"):
        extract_mix_arguments([*single, "--dataset_format", "visa"])
    with pytest.raises(ValueError, match="--classes applies to one dataset"):
        extract_mix_arguments([*single, "--dataset_format", "synthetic", "--classes", "nut"])
    with pytest.raises(ValueError, match="must be one of proportional, equal"):
        extract_mix_arguments([*single, "--dataset_format", "synthetic", "--mix_strategy", "sizes"])


@pytest.fixture
def train_script():
    spec = importlib.util.spec_from_file_location("train_example_mix", REPO_ROOT / "examples" / "train.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)
        AcceleratorState._reset_state(True)
        GradientState._reset_state()


def test_train_script_trains_on_a_mix(train_script, model_dir, tmp_path):
    root = tmp_path / "data"
    btad, mpdd = write_replica("btad", root), write_replica("mpdd", root)
    output = tmp_path / "run"
    train_script.main(
        [
            "--model",
            str(model_dir),
            "--dataset_format",
            "btad",
            "--dataset_path",
            str(btad),
            "--dataset_format",
            "mpdd",
            "--dataset_path",
            str(mpdd),
            "--mix_strategy",
            "equal",
            "--max_steps",
            "1",
            "--batch_size",
            "4",
            "--use_cpu",
            "--output_dir",
            str(output),
        ]
    )
    card = (output / "README.md").read_text()
    assert "mix (equal) of btad:" in card and "mpdd:" in card
    assert (output / "model.safetensors").is_file()


def test_write_meta_json_script(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location(
        "write_meta_json_example", REPO_ROOT / "examples" / "write_meta_json.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    folder = write_replica("tn3k", tmp_path)
    path = module.main(["TN3K", str(folder), "--meta_path", str(tmp_path / "tn3k_meta.json")])
    meta = json.loads(path.read_text())
    assert len(meta["test"]["thyroid"]) == 3 and len(meta["train"]["thyroid"]) == 2
    assert f"Wrote {path}" in capsys.readouterr().out
    with pytest.raises(SystemExit) as raised:
        module.main(["tn3k", str(tmp_path / "missing")])
    assert raised.value.code == 2 and "missing" in capsys.readouterr().err

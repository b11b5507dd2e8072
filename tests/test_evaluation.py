# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""Zero-shot evaluation: the library function, its result files and examples/evaluate.py (1 and 2 processes)."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from accelerate.state import AcceleratorState, GradientState
from datasets import Dataset

from faprompt_hf import FAPromptImageProcessor, FAPromptModel, evaluation, metrics
from faprompt_hf.data import (
    FAPromptCollator,
    defer_decoding,
    load_dataset_by_format,
    load_mvtec_ad,
    make_synthetic_dataset,
    write_synthetic_mvtec,
)
from faprompt_hf.evaluation import (
    DEFAULT_AUPRO,
    EvaluationResult,
    evaluate_model,
    load_evaluation_model,
    pixel_bytes_per_image,
    save_heatmaps,
)
from faprompt_hf.metrics import IMAGE_METRIC_KEYS, PIXEL_METRIC_KEYS, compute_per_class_metrics
from helpers import free_port, load_script

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EVALUATE_SCRIPT = os.path.join(REPO_ROOT, "examples", "evaluate.py")
CLASSES = ("nut", "stripes")


@pytest.fixture(scope="module")
def mvtec_root(tmp_path_factory):
    """A synthetic dataset on disk in the MVTec AD layout: 2 classes x (2 normal + 2 anomalous) test images."""
    root = tmp_path_factory.mktemp("mvtec")
    return write_synthetic_mvtec(root, domains=CLASSES, n_train=0, n_normal=2, n_anomalous=2, image_size=64)


@pytest.fixture(scope="module")
def dataset(mvtec_root) -> Dataset:
    return load_mvtec_ad(mvtec_root)


def direct_outputs(model, dataset, batch_size, size=None):
    """Scores, maps and masks of the whole dataset, by running the collator and the model by hand."""
    size = size or model.config.image_size
    collator = FAPromptCollator(FAPromptImageProcessor(size=size))
    rows = [dataset[index] for index in range(len(dataset))]
    scores, maps, masks = [], [], []
    with torch.no_grad():
        for start in range(0, len(rows), batch_size):
            batch = collator(rows[start : start + batch_size])
            outputs = model(pixel_values=batch["pixel_values"])
            scores.append(outputs.image_scores)
            maps.append(outputs.anomaly_maps)
            masks.append(batch["masks"])
    return torch.cat(scores).numpy(), torch.cat(maps).numpy(), torch.cat(masks).numpy()


def assert_metrics_equal(ours, expected, rel=1e-9):
    assert list(ours) == list(expected)
    for name, row in expected.items():
        assert set(ours[name]) == set(row), name
        for key, value in row.items():
            if math.isnan(value):
                assert math.isnan(ours[name][key]), (name, key)
            else:
                assert ours[name][key] == pytest.approx(value, rel=rel, abs=1e-12), (name, key)


# ----------------------------------------------------------------------------------------------------------------------
# evaluate_model
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("aupro", ["original", "exact"])
def test_evaluation_equals_direct_metric_computation(model, dataset, aupro):
    result = evaluate_model(model, dataset, batch_size=3, aupro=aupro)
    scores, maps, masks = direct_outputs(model, dataset, batch_size=3)
    expected = compute_per_class_metrics(
        list(dataset["class_name"]), scores, list(dataset["label"]), maps, masks, aupro=aupro
    )
    assert_metrics_equal(result.metrics, expected)
    np.testing.assert_array_equal(result.image_scores, scores)
    np.testing.assert_array_equal(result.labels, np.asarray(dataset["label"]))
    assert result.class_names == list(dataset["class_name"])
    assert result.protocol["aupro"] == aupro
    assert result.protocol["num_images"] == 8 and result.protocol["num_classes"] == 2


def test_table_has_every_class_and_the_mean(model, dataset):
    result = evaluate_model(model, dataset, batch_size=4)
    lines = result.table.splitlines()
    assert [line.split("|")[1].strip() for line in lines[2:]] == [*CLASSES, "mean"]
    assert list(result.metrics) == [*CLASSES, "mean"]
    assert set(result.metrics["nut"]) == set(IMAGE_METRIC_KEYS) | set(PIXEL_METRIC_KEYS)
    for key, value in result.metrics["mean"].items():
        assert value == pytest.approx(np.mean([result.metrics[name][key] for name in CLASSES]))


def test_shuffled_dataset_is_visited_class_by_class(model, dataset, monkeypatch):
    pending = []
    add = evaluation._ClassAccumulator.add

    def spy(self, *args):
        add(self, *args)
        pending.append(len(self.pixel_items))

    monkeypatch.setattr(evaluation._ClassAccumulator, "add", spy)
    shuffled = evaluate_model(model, dataset.shuffle(seed=1), batch_size=3)
    assert max(pending) <= 1  # at most one class holds maps at any time
    assert list(shuffled.metrics)[-1] == "mean"
    reference = evaluate_model(model, dataset, batch_size=3)
    assert_metrics_equal({name: shuffled.metrics[name] for name in reference.metrics}, reference.metrics, rel=1e-5)


def test_default_protocol_is_the_models(model, dataset):
    result = evaluate_model(model, dataset)
    assert DEFAULT_AUPRO == "original"
    assert result.protocol["aupro"] == "original" and result.protocol["aupro_thresholds"] == 200
    assert result.protocol["image_size"] == model.config.image_size
    assert result.protocol["gaussian_sigma"] == model.config.gaussian_sigma
    assert result.protocol["pixel_metrics_size"] is None


def test_overrides_apply_and_the_config_is_never_changed(model, dataset, monkeypatch):
    sigma_before, size = model.config.gaussian_sigma, 2 * model.config.image_size
    assigned = []
    config_class = type(model.config)
    original_setattr = config_class.__setattr__
    monkeypatch.setattr(
        config_class,
        "__setattr__",
        lambda self, name, value: (assigned.append(name), original_setattr(self, name, value)),
    )
    result = evaluate_model(model, dataset, batch_size=4, image_size=size, gaussian_sigma=0.0)
    monkeypatch.undo()
    assert assigned == []  # the sigma reaches forward as an argument: the model's config is not touched
    assert model.config.gaussian_sigma == sigma_before
    alias = evaluate_model(model, dataset, batch_size=4, image_size=size, sigma=0.0)  # earlier releases' name
    assert alias.protocol == result.protocol
    assert result.protocol["image_size"] == size and result.protocol["gaussian_sigma"] == 0.0
    model.config.gaussian_sigma = 0.0
    try:
        scores, maps, masks = direct_outputs(model, dataset, batch_size=4, size=size)
    finally:
        model.config.gaussian_sigma = sigma_before
    expected = compute_per_class_metrics(
        list(dataset["class_name"]), scores, list(dataset["label"]), maps, masks, aupro="original"
    )
    assert_metrics_equal(result.metrics, expected)


def test_pixel_metrics_size_pools_maps_and_masks(model, dataset):
    full = evaluate_model(model, dataset, batch_size=4)
    pooled = evaluate_model(model, dataset, batch_size=4, pixel_metrics_size=16, heatmaps_per_class=1)
    for key in IMAGE_METRIC_KEYS:
        assert pooled.metrics["mean"].get(key) == full.metrics["mean"].get(key)
    assert set(pooled.metrics["nut"]) == set(full.metrics["nut"])
    assert pooled.protocol["pixel_metrics_size"] == 16
    assert all(anomaly_map.shape == (16, 16) for anomaly_map in pooled.heatmaps.values())
    assert pixel_bytes_per_image(518) == 1_341_620 and pixel_bytes_per_image(256) == 327_680


def test_no_pixel_metrics(model, dataset):
    result = evaluate_model(model, dataset, batch_size=8, pixel_metrics=False)
    assert set(result.metrics["nut"]) == set(IMAGE_METRIC_KEYS)


def test_anomalous_images_without_masks_are_left_out_of_pixel_metrics(model):
    base = make_synthetic_dataset(["nut", "stripes"], n_normal=2, n_anomalous=2, image_size=64)
    names, labels = list(base["class_name"]), np.asarray(base["label"])
    anomalous_rows = np.flatnonzero(labels == 1).tolist()
    # nut: its first anomalous image loses its mask; stripes: every anomalous image does.
    drop = {anomalous_rows[0]} | {i for i in anomalous_rows if names[i] == "stripes"}
    partial = base.map(lambda row, index: {"mask": None if index in drop else row["mask"]}, with_indices=True)
    scores, maps, masks = direct_outputs(model, base, batch_size=4)
    image_only = compute_per_class_metrics(names, scores, labels)
    keep = np.asarray([i not in drop for i in range(len(base))])
    with warnings.catch_warnings():  # stripes: no anomalous pixel left
        warnings.simplefilter("ignore")
        result = evaluate_model(model, partial, batch_size=4)
        pixel = compute_per_class_metrics(np.asarray(names)[keep], scores[keep], labels[keep], maps[keep], masks[keep])
    assert set(result.metrics["stripes"]) == set(IMAGE_METRIC_KEYS)  # no anomalous image with a mask
    for key in IMAGE_METRIC_KEYS:
        assert result.metrics["nut"][key] == pytest.approx(image_only["nut"][key])
    for key in PIXEL_METRIC_KEYS:
        assert result.metrics["nut"][key] == pytest.approx(pixel["nut"][key])
    assert result.metrics["mean"]["pixel_auroc"] == pytest.approx(result.metrics["nut"]["pixel_auroc"])


def test_result_files(model, dataset, tmp_path):
    result = evaluate_model(model, dataset, batch_size=4, heatmaps_per_class=2)
    paths = result.save(tmp_path / "out", extra={"model": "tiny"})
    payload = json.loads(paths["json"].read_text())
    assert payload["run"] == {"model": "tiny"} and payload["protocol"]["aupro"] == "original"
    assert list(payload["metrics"]) == [*CLASSES, "mean"]
    assert "image_f1_threshold" in payload["metrics"]["nut"] and "image_f1_threshold" not in payload["metrics"]["mean"]
    with paths["csv"].open() as handle:
        rows = list(csv.DictReader(handle))
    assert [row["class"] for row in rows] == [*CLASSES, "mean"]
    assert float(rows[0]["image_auroc"]) == pytest.approx(result.metrics["nut"]["image_auroc"])
    with paths["scores"].open() as handle:
        scores = list(csv.DictReader(handle))
    assert len(scores) == len(dataset) and scores[0]["path"] == dataset[0]["path"]
    assert paths["markdown"].read_text().strip() == result.table
    assert len(result.heatmaps) == 4 and all(result.labels[i] == 1 for i in result.heatmaps)
    grids = save_heatmaps(result, dataset, tmp_path / "heatmaps", tile_size=32)
    assert [path.name for path in grids] == ["nut.png", "stripes.png"]


def test_json_has_no_nan():
    result = EvaluationResult(
        metrics={"a": {"image_auroc": math.nan}, "mean": {"image_auroc": math.nan}},
        table="",
        protocol={},
        image_scores=np.zeros(1, np.float32),
        labels=np.zeros(1, np.int64),
        class_names=["a"],
        paths=["p"],
    )
    assert result.to_dict()["metrics"]["a"]["image_auroc"] is None
    json.dumps(result.to_dict(), allow_nan=False)


def test_class_named_mean_is_refused_before_any_inference(model, dataset, monkeypatch):
    calls = []
    monkeypatch.setattr(model, "forward", lambda *args, **kwargs: calls.append(1))
    renamed = dataset.map(lambda name: {"class_name": "mean" if name == "nut" else name}, input_columns="class_name")
    with pytest.raises(ValueError, match="'mean', which is reserved for the mean row"):
        evaluate_model(model, renamed, batch_size=2)
    assert calls == [], "the class names must be checked before the model runs"


def test_protocol_records_the_metrics_constants(model, dataset):
    result = evaluate_model(model, dataset, batch_size=4, pixel_metrics=False)
    assert result.protocol["aupro_fpr_limit"] == metrics.AUPRO_FPR_LIMIT
    assert result.protocol["aupro_thresholds"] == metrics.AUPRO_ORIGINAL_THRESHOLDS


def test_bad_arguments(model, dataset):
    with pytest.raises(ValueError, match="aupro"):
        evaluate_model(model, dataset, aupro="approximate")
    with pytest.raises(ValueError, match="multiple of the patch size"):
        evaluate_model(model, dataset, image_size=30)
    with pytest.raises(ValueError, match="pixel_metrics_size"):
        evaluate_model(model, dataset, pixel_metrics_size=1000)
    with pytest.raises(TypeError, match="map-style"):
        evaluate_model(model, dataset.to_iterable_dataset())


def small_result(count: int = 3) -> EvaluationResult:
    return EvaluationResult(
        metrics={"a": {"image_auroc": 0.5}, "mean": {"image_auroc": 0.5}},
        table="| class | image_auroc |",
        protocol={"image_size": 32},
        image_scores=np.linspace(0, 1, count, dtype=np.float32),
        labels=np.arange(count) % 2,
        class_names=["a"] * count,
        paths=[f"/data/a/{index:05d}.png" for index in range(count)],
    )


def test_result_files_keep_their_previous_version_when_writing_fails(tmp_path, monkeypatch):
    paths = small_result().save(tmp_path)
    before = {name: path.read_bytes() for name, path in paths.items()}

    class FullDiskWriter:
        def __init__(self, handle):
            self.handle = handle

        def writerow(self, row):
            self.handle.write(",".join(map(str, row))[:5])
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(evaluation.csv, "writer", FullDiskWriter)
    with pytest.raises(OSError, match=r"Could not write .*metrics.csv.*No space left.*previous version.*intact"):
        small_result(50).save(tmp_path)
    assert paths["csv"].read_bytes() == before["csv"] and paths["scores"].read_bytes() == before["scores"]
    assert json.loads(paths["json"].read_text())["metrics"]["a"]["image_auroc"] == 0.5  # complete, new or old
    assert not [path for path in tmp_path.iterdir() if path.name.startswith(".")]


@pytest.mark.integration
def test_result_files_survive_a_file_size_limit(tmp_path):
    """A real failure: RLIMIT_FSIZE in a subprocess makes image_scores.csv too large to write."""
    paths = small_result().save(tmp_path)
    before = paths["scores"].read_bytes()
    code = (
        "import resource, signal, sys\n"
        "sys.path.insert(0, sys.argv[2])\n"
        "from test_evaluation import small_result\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))\n"
        "try:\n"
        "    small_result(2000).save(sys.argv[1])\n"
        "except OSError as error:\n"
        "    print('FAILED', error)\n"
    )
    tests_dir = os.path.dirname(os.path.abspath(__file__))
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path), tests_dir], capture_output=True, text=True, timeout=300
    )
    assert "image_scores.csv': File too large" in result.stdout, result.stdout + result.stderr
    assert paths["scores"].read_bytes() == before
    assert not [path for path in tmp_path.iterdir() if path.name.startswith(".")]


def test_heatmap_grids_keep_their_previous_version_when_writing_fails(model, dataset, tmp_path, monkeypatch):
    result = evaluate_model(model, dataset, batch_size=4, heatmaps_per_class=1, pixel_metrics=False)
    first = save_heatmaps(result, dataset, tmp_path, tile_size=16)
    before = first[0].read_bytes()
    from PIL import Image

    def fail_half_way(image, handle, *args, **kwargs):
        handle.write(before[:10])
        raise OSError(27, "File too large")

    monkeypatch.setattr(Image.Image, "save", fail_half_way)
    with pytest.raises(OSError, match=r"Could not write .*nut.png.*File too large.*intact"):
        save_heatmaps(result, dataset, tmp_path, tile_size=32)
    assert first[0].read_bytes() == before
    assert not [path for path in tmp_path.iterdir() if path.name.startswith(".")]


def test_normal_image_with_a_marked_mask_is_refused_naming_it(model, tmp_path):
    root = write_synthetic_mvtec(tmp_path, domains=["nut"], n_train=0, n_normal=1, n_anomalous=1, image_size=64)
    dataset = load_mvtec_ad(root)
    normal = dataset.filter(lambda label: label == 0, input_columns="label")[0]["path"]
    marked = next((root / "nut" / "ground_truth").rglob("*_mask.png"))
    broken = defer_decoding(dataset).map(
        lambda mask, label: {"mask": {"path": str(marked), "bytes": None} if label == 0 else mask},
        input_columns=["mask", "label"],
    )
    with pytest.raises(
        ValueError, match="labelled normal but its mask marks .* anomalous pixels; fix the label"
    ) as error:
        evaluate_model(model, broken, batch_size=2)
    assert normal in str(error.value)


@pytest.mark.parametrize("size", [1, 0, 2.5, True])
def test_pixel_metrics_size_must_keep_two_pixels(model, dataset, size):
    with pytest.raises(ValueError, match=r"pixel_metrics_size must be an integer in \[2, 32\].*leave it unset"):
        evaluate_model(model, dataset, pixel_metrics_size=size)


# ----------------------------------------------------------------------------------------------------------------------
# Loading by name
# ----------------------------------------------------------------------------------------------------------------------


def test_load_evaluation_dataset_formats(mvtec_root, tmp_path):
    mvtec = load_dataset_by_format("mvtec", mvtec_root, classes=["stripes"])
    assert set(mvtec["class_name"]) == {"stripes"} and len(mvtec) == 4
    synthetic = load_dataset_by_format("synthetic", classes=["nut"], n_normal=1, n_anomalous=1, image_size=64)
    assert list(synthetic["label"]) == [0, 1]
    renamed = make_synthetic_dataset(["nut", "stripes"], n_normal=1, n_anomalous=1, image_size=64).rename_columns(
        {"image": "img", "label": "is_bad", "class_name": "category"}
    )
    renamed.save_to_disk(tmp_path / "hub")
    hub = load_dataset_by_format(
        "hub",
        tmp_path / "hub",
        classes=["stripes"],
        column_mapping={"image": "img", "label": "is_bad", "class_name": "category"},
    )
    assert list(hub["class_name"]) == ["stripes", "stripes"] and list(hub["label"]) == [0, 1]
    with pytest.raises(ValueError, match="dataset_format"):
        load_dataset_by_format("kaggle", mvtec_root)
    with pytest.raises(ValueError, match="needs a dataset_path"):
        load_dataset_by_format("visa")
    with pytest.raises(ValueError, match="column_mapping"):
        load_dataset_by_format("mvtec", mvtec_root, column_mapping={"image": "img"})
    with pytest.raises(ValueError, match="not in"):
        load_dataset_by_format(
            "hub",
            tmp_path / "hub",
            classes=["cable"],
            column_mapping={"image": "img", "label": "is_bad", "class_name": "category"},
        )


def test_load_evaluation_model(model_dir, original_weights):
    loaded, image_processor = load_evaluation_model(model_dir)
    assert isinstance(loaded, FAPromptModel) and not loaded.training
    assert image_processor.size == {"height": 32, "width": 32}
    clip_path, prompt_learner_path = original_weights
    converted, converted_processor = load_evaluation_model(
        original_checkpoint=prompt_learner_path, clip=clip_path, image_size=56
    )
    assert converted.config.prior_patch_selection == "first_m" and not converted.training
    assert converted_processor.size == {"height": 56, "width": 56}
    with pytest.raises(ValueError, match="exactly one"):
        load_evaluation_model()
    with pytest.raises(ValueError, match="needs clip"):
        load_evaluation_model(original_checkpoint=prompt_learner_path)


# ----------------------------------------------------------------------------------------------------------------------
# examples/evaluate.py
# ----------------------------------------------------------------------------------------------------------------------


def script_args(model_dir, mvtec_root, output_dir):
    return [
        "--model",
        str(model_dir),
        "--dataset_format",
        "mvtec",
        "--dataset_path",
        str(mvtec_root),
        "--batch_size",
        "2",
        "--num_workers",
        "0",
        "--cpu",
        "--output_dir",
        str(output_dir),
    ]


def run_script(argv):
    """examples/evaluate.py's main() in this process; the accelerate singletons are reset afterwards (P18)."""
    module = load_script(EVALUATE_SCRIPT)
    try:
        return module.main(argv)
    finally:
        AcceleratorState._reset_state(True)
        GradientState._reset_state()


@pytest.fixture(scope="module")
def one_process_run(model_dir, mvtec_root, tmp_path_factory):
    """The script run in this process (module scope: the 2-process test compares against it)."""
    output = tmp_path_factory.mktemp("one_process")
    return run_script([*script_args(model_dir, mvtec_root, output), "--save_heatmaps", "1"]), output


def test_script_writes_table_and_files(one_process_run):
    result, output = one_process_run
    assert isinstance(result, EvaluationResult)
    names = {path.name for path in output.iterdir()}
    assert {"metrics.json", "metrics.csv", "metrics.md", "image_scores.csv", "heatmaps"} <= names
    assert sorted(path.name for path in (output / "heatmaps").iterdir()) == ["nut.png", "stripes.png"]
    payload = json.loads((output / "metrics.json").read_text())
    assert payload["run"]["num_processes"] == 1 and payload["run"]["dataset_format"] == "mvtec"
    assert list(payload["metrics"]) == [*CLASSES, "mean"]


def test_script_prints_the_markdown_table(model_dir, mvtec_root, tmp_path, capsys):
    result = run_script(
        [*script_args(model_dir, mvtec_root, tmp_path), "--classes", "nut", "--aupro", "exact", "--no_pixel_metrics"]
    )
    printed = capsys.readouterr().out
    assert result.table in printed and "| mean |" in printed and "AUPRO exact" in printed
    assert list(result.metrics) == ["nut", "mean"]


@pytest.mark.integration
def test_two_processes_give_the_same_metrics(one_process_run, model_dir, mvtec_root, tmp_path):
    """accelerate launch with 2 CPU processes: the data is sharded and gathered; metrics equal 1 process's."""
    expected, _ = one_process_run
    port = free_port()
    environment = {**os.environ, "MASTER_PORT": str(port), "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.accelerate_cli",
        "launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(port),
        EVALUATE_SCRIPT,
        *script_args(model_dir, mvtec_root, tmp_path),
    ]
    completed = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-4000:]
    payload = json.loads((tmp_path / "metrics.json").read_text())
    assert payload["run"]["num_processes"] == 2
    assert_metrics_equal(
        {name: {k: (math.nan if v is None else v) for k, v in row.items()} for name, row in payload["metrics"].items()},
        expected.metrics,
        rel=1e-6,
    )
    with (tmp_path / "image_scores.csv").open() as handle:
        scores = [float(row["score"]) for row in csv.DictReader(handle)]
    np.testing.assert_allclose(scores, expected.image_scores, rtol=1e-6)


def test_script_clip_flag_points_a_compact_checkpoint_at_a_moved_clip(
    tiny_tokenizer, make_tiny_config, mvtec_root, tmp_path
):
    """A training checkpoint whose CLIP was a local folder that is gone: --clip points at a copy."""
    import shutil

    from transformers import CLIPModel

    from faprompt_hf import FAPromptConfig, FAPromptProcessor
    from faprompt_hf.tiny import tiny_clip_config

    clip_dir = tmp_path / "clip"
    torch.manual_seed(0)
    CLIPModel(tiny_clip_config(tiny_tokenizer)).save_pretrained(clip_dir)
    overrides = make_tiny_config().to_dict()
    fields = {name for name in FAPromptConfig.__dataclass_fields__ if not name.startswith(("clip", "weights"))}
    model = FAPromptModel.from_clip(str(clip_dir), **{key: overrides[key] for key in fields if key in overrides})
    compact = tmp_path / "compact"
    model.save_pretrained(compact, include_clip=False)
    FAPromptProcessor(image_processor=FAPromptImageProcessor(size=32)).save_pretrained(compact)
    moved = tmp_path / "moved_clip"
    shutil.move(clip_dir, moved)
    argv = [*script_args(compact, mvtec_root, tmp_path / "out"), "--classes", "nut", "--no_pixel_metrics"]
    with pytest.raises(OSError, match=r"examples/evaluate\.py: --clip"):
        run_script(argv)
    result = run_script([*argv, "--clip", str(moved)])
    assert list(result.metrics) == ["nut", "mean"]

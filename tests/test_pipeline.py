# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""The "anomaly-detection" pipeline: registration, inputs, batching, output schema and thresholds."""

from __future__ import annotations

import os
import re
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import pipeline
from transformers.pipelines import PIPELINE_REGISTRY

import faprompt_hf
from faprompt_hf import FAPromptImageProcessor, FAPromptModel
from faprompt_hf.calibration import calibrate_threshold
from faprompt_hf.pipeline_faprompt import (
    ANOMALY_DETECTION_TASK,
    DEFAULT_THRESHOLD,
    FAPromptAnomalyDetectionPipeline,
    register_pipeline,
)
from helpers import fresh_pipeline

RESULT_KEYS = ["score", "is_anomalous", "anomaly_map", "mask", "overlay"]
REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def detector(model_dir):
    return pipeline(ANOMALY_DETECTION_TASK, model=str(model_dir))


def test_task_is_registered():
    register_pipeline()
    register_pipeline()  # idempotent
    assert ANOMALY_DETECTION_TASK in PIPELINE_REGISTRY.get_supported_tasks()
    entry = PIPELINE_REGISTRY.supported_tasks[ANOMALY_DETECTION_TASK]
    assert entry["impl"] is FAPromptAnomalyDetectionPipeline and entry["pt"] == (FAPromptModel,)
    assert entry["type"] == "image"


def test_package_import_exports_the_pipeline():
    assert faprompt_hf.FAPromptAnomalyDetectionPipeline is FAPromptAnomalyDetectionPipeline
    assert faprompt_hf.calibrate_threshold is calibrate_threshold


def test_pipeline_factory_loads_model_and_processor(detector, model):
    assert isinstance(detector, FAPromptAnomalyDetectionPipeline)
    assert isinstance(detector.model, FAPromptModel)
    assert isinstance(detector.image_processor, FAPromptImageProcessor)
    assert detector.image_processor.size == {"height": 32, "width": 32}


def test_faprompt_hf_pipeline_names_a_missing_local_folder_at_once(model_dir, images, tmp_path, monkeypatch):
    (tmp_path / "faprompt-mvtec").mkdir()
    monkeypatch.chdir(tmp_path)
    start = time.perf_counter()
    for reference in ("./faprompt-mvtc", Path("faprompt-mvtc")):
        with pytest.raises(FileNotFoundError, match=r"mvtc'?: no such folder; close names in .*faprompt-mvtec"):
            faprompt_hf.pipeline(model=reference)
    with pytest.raises(FileNotFoundError, match="'runs/exp1/model': no such folder"):
        faprompt_hf.pipeline(ANOMALY_DETECTION_TASK, model="runs/exp1/model", device="cpu")
    assert time.perf_counter() - start < 5  # no hub requests, no retries
    # transformers' own pipeline() reads the config before any code of the package runs: its message, not ours
    with pytest.raises(OSError) as caught:
        pipeline(ANOMALY_DETECTION_TASK, model="./faprompt-mvtc")
    assert "no such folder" not in str(caught.value)
    # an existing folder: the same pipeline, the same scores, as transformers' pipeline()
    ours = faprompt_hf.pipeline(model=model_dir)
    assert isinstance(ours, FAPromptAnomalyDetectionPipeline)
    theirs = pipeline(ANOMALY_DETECTION_TASK, model=str(model_dir))
    assert ours(images[0], threshold=0.5)["score"] == theirs(images[0], threshold=0.5)["score"]


def test_class_usage_defaults_to_the_configs_image_size(model):
    detector = FAPromptAnomalyDetectionPipeline(model=model)
    assert detector.image_processor.size == {"height": model.config.image_size, "width": model.config.image_size}


def test_output_schema_and_sizes(detector, images):
    result = detector(images[1], threshold=0.5)
    assert list(result) == RESULT_KEYS
    height, width = images[1].height, images[1].width
    assert isinstance(result["score"], float) and 0.0 <= result["score"] <= 1.0
    assert isinstance(result["is_anomalous"], bool)
    assert result["anomaly_map"].dtype == np.float32 and result["anomaly_map"].shape == (height, width)
    assert result["mask"].dtype == bool and result["mask"].shape == (height, width)
    assert isinstance(result["overlay"], Image.Image)
    assert result["overlay"].mode == "RGB" and result["overlay"].size == (width, height)


def test_input_kinds(detector, images, tmp_path):
    rgb = images[2]
    path = tmp_path / "part.png"
    rgb.save(path)
    inputs = {
        "path string": str(path),
        "path object": path,
        "PIL RGB": rgb,
        "PIL L": rgb.convert("L"),
        "PIL RGBA": rgb.convert("RGBA"),
        "PIL P": rgb.convert("P"),
        "numpy uint8 HWC": np.asarray(rgb),
        "numpy uint8 HW": np.asarray(rgb.convert("L")),
        "numpy float HWC": np.asarray(rgb, dtype=np.float32) / 255.0,
        "torch CHW": torch.from_numpy(np.array(rgb)).permute(2, 0, 1),
    }
    reference = detector(rgb, threshold=0.5)
    for name, value in inputs.items():
        result = detector(value, threshold=0.5)
        assert result["anomaly_map"].shape == (rgb.height, rgb.width), name
        assert result["overlay"].size == rgb.size, name
    # The same pixels give the same result, whatever the container.
    for name in ("path string", "path object", "numpy uint8 HWC", "numpy float HWC", "torch CHW"):
        assert detector(inputs[name], threshold=0.5)["score"] == pytest.approx(reference["score"], abs=1e-6), name


def test_list_and_tuple_inputs(detector, images):
    results = detector(images[:3], threshold=0.5)
    assert isinstance(results, list) and len(results) == 3
    assert [r["anomaly_map"].shape for r in results] == [(im.height, im.width) for im in images[:3]]
    assert len(detector(tuple(images[:2]), threshold=0.5)) == 2
    assert detector([], threshold=0.5) == []


def test_batch_size_two_equals_one_at_a_time(detector, images):
    single = [detector(image, threshold=0.5, pixel_threshold=0.5) for image in images]
    batched = detector(images, batch_size=2, threshold=0.5, pixel_threshold=0.5)
    assert len(batched) == len(images)
    for one, many in zip(single, batched, strict=True):
        assert many["score"] == pytest.approx(one["score"], abs=1e-6)
        assert many["is_anomalous"] == one["is_anomalous"]
        np.testing.assert_allclose(many["anomaly_map"], one["anomaly_map"], atol=1e-5)
        decided = np.abs(one["anomaly_map"] - 0.5) > 1e-5
        np.testing.assert_array_equal(many["mask"][decided], one["mask"][decided])
        assert many["overlay"].size == one["overlay"].size


def test_threshold_argument_then_config_then_default(model, images):
    detector = fresh_pipeline(model)
    score = detector(images[0], threshold=0.5)["score"]
    assert detector(images[0], threshold=score)["is_anomalous"] is True
    assert detector(images[0], threshold=score + 1e-6)["is_anomalous"] is False
    previous = model.config.anomaly_threshold
    try:
        model.config.anomaly_threshold = score + 1e-6
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert detector(images[0])["is_anomalous"] is False
        assert detector(images[0], threshold=0.0)["is_anomalous"] is True
        model.config.anomaly_threshold = None
        with pytest.warns(UserWarning, match="uncalibrated"):
            result = detector(images[0])
        assert result["is_anomalous"] == (result["score"] >= DEFAULT_THRESHOLD)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            detector(images[0])  # warned once per pipeline
    finally:
        model.config.anomaly_threshold = previous


def test_constructor_defaults_and_pixel_threshold(model, images):
    detector = fresh_pipeline(model, threshold=0.0, pixel_threshold=0.3, return_overlay=False)
    result = detector(images[0])
    assert result["is_anomalous"] is True and result["overlay"] is None
    np.testing.assert_array_equal(result["mask"], result["anomaly_map"] >= 0.3)
    high = detector(images[0], pixel_threshold=1.0)  # maps are means of probabilities below 1
    assert result["anomaly_map"].max() < 1.0 and not high["mask"].any()
    for bad in (2.0, -1.0, float("nan")):  # the one threshold rule: finite and in [0, 1]
        with pytest.raises(ValueError, match=r"pixel_threshold must be finite and lie in \[0, 1\]"):
            detector(images[0], pixel_threshold=bad)


def test_bad_inputs(detector, tmp_path):
    missing = tmp_path / "does_not_exist.png"
    with pytest.raises(FileNotFoundError, match="does_not_exist.png"):
        detector(str(missing), threshold=0.5)
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("not an image")
    with pytest.raises(ValueError, match="notes.png"):
        detector(str(not_an_image), threshold=0.5)
    with pytest.raises(ValueError, match="shape"):
        detector(np.zeros((5, 6, 7), dtype=np.uint8), threshold=0.5)
    with pytest.raises(ValueError, match="Unsupported image input"):
        detector(object(), threshold=0.5)
    with pytest.raises(ValueError, match="threshold"):
        detector(np.zeros((8, 8), np.uint8), threshold=float("nan"))
    with pytest.raises(TypeError, match="Unknown argument"):
        detector(np.zeros((8, 8), np.uint8), treshold=0.5)


def test_pipeline_factory_without_a_saved_processor(model, tmp_path, images):
    model.save_pretrained(tmp_path)  # config and weights only
    detector = pipeline(ANOMALY_DETECTION_TASK, model=str(tmp_path))
    assert detector.image_processor.size == {"height": 32, "width": 32}
    from_instance = pipeline(ANOMALY_DETECTION_TASK, model=model)
    assert from_instance(images[0], threshold=0.5)["score"] == pytest.approx(
        detector(images[0], threshold=0.5)["score"], abs=1e-6
    )


# Inputs the pipeline must refuse with the processor's own words (both go through faprompt_hf.image_utils).
# name: (input, words naming the value, words of the fix)
DEGENERATE_INPUTS = {
    "0x0 array": (np.zeros((0, 0), np.uint8), r"shape \(0, 0\): it has no pixels", "at least 1x1"),
    "0x5 array": (np.zeros((0, 5), np.uint8), r"shape \(0, 5\): it has no pixels", "at least 1x1"),
    "0x0 PIL image": (Image.new("RGB", (0, 0)), r"shape \(0, 0\): it has no pixels", "at least 1x1"),
    "empty CHW tensor": (torch.zeros(3, 0, 5), r"shape \(3, 0, 5\): it has no pixels", "at least 1x1"),
    "1-D array": (np.zeros(5, np.uint8), r"shape \(5,\)", r"expected \(H, W\)"),
    "5 channels": (np.zeros((8, 8, 5), np.uint8), r"shape \(8, 8, 5\)", r"expected \(H, W\)"),
    "int64 value 300": (np.full((8, 8), 300, np.int64), "dtype int64 value 300 outside 0..255", "astype"),
    "float above 1": (np.full((8, 8, 3), 2.0, np.float32), r"values in \[2, 2\]", "Divide 0..255 data by 255"),
    "NaN": (np.full((8, 8), np.nan, np.float32), "contains NaN or inf", "nan_to_num"),
}


def _without_source(message: str) -> str:
    """The message with the input's name (``#0`` in the processor, ``<ndarray>`` in the pipeline) taken out."""
    return re.sub(r"^(Float image|Image) \S+ ", r"\1 ", message)


@pytest.mark.parametrize("name", list(DEGENERATE_INPUTS))
def test_degenerate_inputs_give_the_processors_errors(detector, name):
    image, value_words, fix_words = DEGENERATE_INPUTS[name]
    with pytest.raises(ValueError) as from_processor:
        detector.image_processor(images=[image])
    with pytest.raises(ValueError, match=value_words) as from_pipeline:
        detector(image, threshold=0.5)
    assert re.search(fix_words, str(from_pipeline.value)), str(from_pipeline.value)
    assert _without_source(str(from_pipeline.value)) == _without_source(str(from_processor.value))


def test_a_4d_batch_is_one_input_too_many_dimensions_for_the_pipeline(detector):
    """The processor reads a (B, H, W, C) array as B images; the pipeline takes one image per input: say so."""
    batch = np.zeros((2, 8, 8, 3), np.uint8)
    assert detector.image_processor(images=batch)["pixel_values"].shape[0] == 2
    with pytest.raises(ValueError, match=r"shape \(2, 8, 8, 3\).*several images: pass them as a list"):
        detector(batch, threshold=0.5)
    assert len(detector(list(batch), threshold=0.5)) == 2


@pytest.mark.integration
def test_pipeline_peak_memory_per_pixel_with_the_overlay():
    """The bound of docs/errors.md: one call grows the peak RSS by < 24 bytes per pixel with the overlay on.

    (The float64 colour map it replaces took about 94 bytes per pixel: 7.8 GB at 9000 x 9000.) Measured with
    benchmarks/benchmark_memory.py in a fresh process, on a 2500 x 2500 image (6.25 M pixels).
    """
    sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
    try:
        import benchmark_memory
    finally:
        sys.path.remove(str(REPO_ROOT / "benchmarks"))
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "large.png")
        benchmark_memory.make_test_image(path, 2500)
        result = benchmark_memory.run_in_subprocess(path, return_overlay=True)
    assert result["pixels"] == 2500 * 2500
    assert result["call_growth_bytes_per_pixel"] < 24, result


# ---------------------------------------------------------------------------------------------------- processor files


@pytest.fixture
def folder_copy(model_dir, tmp_path):
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(model_dir, folder)
    return folder


def test_a_processor_file_that_is_not_json_fails_naming_it(folder_copy):
    (folder_copy / "processor_config.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"processor_config\.json cannot be read as JSON .*fix the file or delete it"):
        pipeline(ANOMALY_DETECTION_TASK, model=str(folder_copy))


def test_a_processor_file_with_size_0_fails_naming_it(folder_copy):
    import json

    path = folder_copy / "processor_config.json"
    data = json.loads(path.read_text())
    data["image_processor"]["size"] = 0
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"processor_config\.json holds invalid image processor settings \(size must"):
        pipeline(ANOMALY_DETECTION_TASK, model=str(folder_copy))


def test_a_saved_processor_is_used_and_without_one_the_models(folder_copy, model):
    import json

    path = folder_copy / "processor_config.json"
    data = json.loads(path.read_text())
    data["image_processor"]["resample"] = "bilinear"
    path.write_text(json.dumps(data))
    assert pipeline(ANOMALY_DETECTION_TASK, model=str(folder_copy)).image_processor.resample == "bilinear"
    path.unlink()
    assert pipeline(ANOMALY_DETECTION_TASK, model=str(folder_copy)).image_processor.size == {
        "height": model.config.image_size,
        "width": model.config.image_size,
    }


def test_overlay_options_are_checked_with_their_names(detector):
    image = np.zeros((8, 8), np.uint8)
    with pytest.raises(ValueError, match=r"overlay_normalize must be True .*got 'yes' \(str\)"):
        detector(image, threshold=0.5, overlay_normalize="yes")
    with pytest.raises(ValueError, match=r"overlay_alpha must be finite and lie in \[0, 1\]"):
        detector(image, threshold=0.5, overlay_alpha=2)


# ---------------------------------------------------------------------------------------------------- references


def _arrays(count: int, seed: int, size: tuple[int, int] = (40, 48)) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (*size, 3), dtype=np.uint8) for _ in range(count)]


@pytest.fixture
def few_shot_model(make_tiny_config):
    """Fresh tiny models with the same weights, each with its own config (where the bank's layout lives)."""

    def build() -> FAPromptModel:
        torch.manual_seed(0)
        return FAPromptModel(make_tiny_config()).eval()

    return build


def test_references_give_the_models_fused_scores(few_shot_model):
    model, twin = few_shot_model(), few_shot_model()
    detector = fresh_pipeline(model, threshold=0.5)
    images, references = _arrays(3, 0), _arrays(2, 1, size=(50, 30))
    zero_shot = detector(images)
    results = detector(images, references=references, batch_size=2)
    assert model.normal_reference_classes == ["default"] and model.config.normal_reference_image_counts == [2]
    processor = detector.image_processor
    twin.set_normal_references(
        processor.preprocess_references(references, return_tensors="pt")["reference_pixel_values"]
    )
    with torch.no_grad():
        expected = twin(pixel_values=processor(images=images, return_tensors="pt")["pixel_values"])
    for index, result in enumerate(results):
        assert result["score"] == pytest.approx(float(expected.image_scores[index]), abs=1e-6)
        assert result["reference_score"] == pytest.approx(float(expected.reference_scores[index]), abs=1e-6)
    assert [r["score"] for r in results] != pytest.approx([r["score"] for r in zero_shot], abs=1e-4)
    assert "reference_score" not in zero_shot[0]


def test_the_same_references_are_not_encoded_twice_and_a_new_set_replaces_the_old(few_shot_model, monkeypatch):
    model = few_shot_model()
    calls = []
    encode_image = model.encode_image
    monkeypatch.setattr(
        model, "encode_image", lambda pixel_values: calls.append(len(pixel_values)) or encode_image(pixel_values)
    )
    detector = fresh_pipeline(model, threshold=0.5)
    image, references = _arrays(1, 0)[0], _arrays(3, 1)
    first = detector(image, references=references, class_name="screw")
    assert calls == [3, 1]  # the references' features, then the image
    again = detector(image, references=[reference.copy() for reference in references], class_name="screw")
    assert calls == [3, 1, 1] and again["score"] == first["score"]  # same content: the bank is reused
    other = detector(image, references=references[:2], class_name="screw")
    assert calls == [3, 1, 1, 2, 1]
    assert model.normal_reference_classes == ["screw"] and model.config.normal_reference_image_counts == [2]
    assert other["score"] != first["score"]


def test_two_pipelines_sharing_a_model_never_score_against_the_others_references(few_shot_model):
    model = few_shot_model()
    first, second = fresh_pipeline(model, threshold=0.5), fresh_pipeline(model, threshold=0.5)
    image, set_a, set_b = _arrays(1, 0)[0], _arrays(2, 1), _arrays(2, 2)
    with_a = first(image, references=set_a)["score"]
    with_b = second(image, references=set_b)["score"]  # same class, same count: replaces A in the shared bank
    assert with_a != with_b
    assert first(image, references=set_a)["score"] == with_a  # not B's bank, although the cache saw A last


def test_a_class_name_given_to_the_constructor_may_come_with_the_first_references(few_shot_model):
    model = few_shot_model()
    detector = fresh_pipeline(model, threshold=0.5, class_name="screw")  # the bank is empty yet
    result = detector(_arrays(1, 0)[0], references=_arrays(2, 1))
    assert model.normal_reference_classes == ["screw"] and "reference_score" in result
    with pytest.raises(ValueError, match=r"class 'nut' in the model's bank: it holds \['screw'\]"):
        detector(_arrays(1, 0)[0], class_name="nut")


def test_class_name_selects_a_class_of_the_bank(few_shot_model, tmp_path):
    model = few_shot_model()
    processor = FAPromptImageProcessor(size=32)
    for name, seed in (("screw", 1), ("nut", 2)):
        pixels = processor.preprocess_references(_arrays(2, seed), return_tensors="pt")["reference_pixel_values"]
        model.set_normal_references(pixels, name)
    model.save_pretrained(tmp_path)
    image = _arrays(1, 0)[0]
    detector = pipeline(ANOMALY_DETECTION_TASK, model=str(tmp_path), threshold=0.5)
    assert detector.model.normal_reference_classes == ["screw", "nut"]
    with torch.no_grad():
        expected = model(
            pixel_values=processor(images=image, return_tensors="pt")["pixel_values"], normal_reference_class="nut"
        )
    assert detector(image, class_name="nut")["score"] == pytest.approx(float(expected.image_scores[0]), abs=1e-6)
    with pytest.raises(ValueError, match=r"several classes \['screw', 'nut'\]: choose one with class_name=NAME"):
        detector(image)
    with pytest.raises(ValueError, match=r"No normal references of class 'bolt'.*it holds \['screw', 'nut'\]"):
        detector(image, class_name="bolt")
    by_default = pipeline(ANOMALY_DETECTION_TASK, model=str(tmp_path), threshold=0.5, class_name="nut")
    assert by_default(image)["score"] == pytest.approx(float(expected.image_scores[0]), abs=1e-6)


def test_bad_references_are_refused_and_leave_the_bank_as_it_was(few_shot_model):
    model = few_shot_model()
    detector = fresh_pipeline(model, threshold=0.5)
    image, references = _arrays(1, 0)[0], _arrays(2, 1)
    detector(image, references=references, class_name="screw")
    bank = model.normal_references.features.clone()
    with pytest.raises(ValueError, match="references is empty .*give at least one normal image"):
        detector(image, references=[], class_name="screw")
    with pytest.raises(ValueError, match="Image reference #1 contains NaN or inf values"):
        detector(image, references=[references[0], np.full((8, 8), np.nan, np.float32)], class_name="screw")
    with pytest.raises(ValueError, match="class_name must be a non-empty string"):
        detector(image, references=references[:1], class_name="")
    with pytest.raises(ValueError, match="NaN"):  # refused by the model after the old rows were cleared: restored
        model.set_normal_references(torch.full((1, 3, 32, 32), float("nan")), "screw", replace=True)
    assert model.normal_reference_classes == ["screw"] and torch.equal(model.normal_references.features, bank)
    assert model.config.normal_reference_image_counts == [2]

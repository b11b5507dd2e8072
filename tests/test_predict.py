# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""``faprompt-hf predict``: inputs, outputs, resume, errors, the pipeline's scores, ONNX and two processes."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from transformers import pipeline

import faprompt_hf  # noqa: F401  (registers the task)
from faprompt_hf.cli import main as cli_main
from faprompt_hf.predict import (
    CSV_COLUMNS,
    ERRORS_FILE,
    PREDICTIONS_CSV,
    PREDICTIONS_JSONL,
    PredictError,
    discover_inputs,
    predict,
)
from helpers import OFFLINE_ENV, free_port

REPO_ROOT = Path(__file__).resolve().parents[1]


def _save_rgb(path: Path, seed: int, size: tuple[int, int] = (40, 48)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture
def image_tree(tmp_path) -> Path:
    """parts/{good,bad/deep}/*.png: 6 images in nested folders."""
    root = tmp_path / "parts"
    for index in range(3):
        _save_rgb(root / "good" / f"{index}.png", index)
        _save_rgb(root / "bad" / "deep" / f"{index}.png", 10 + index)
    return root


def _rows(output_dir: Path) -> list[dict[str, str]]:
    with open(output_dir / PREDICTIONS_CSV, newline="") as handle:
        return list(csv.DictReader(handle))


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# ------------------------------------------------------------------------------------------------ scores and outputs


def test_scores_equal_the_pipelines_and_outputs_mirror_the_tree(model_dir, image_tree, tmp_path):
    out = tmp_path / "out"
    summary = predict(
        [image_tree],
        model_dir,
        out,
        batch_size=4,
        num_workers=0,
        threshold=0.5,
        save_masks=True,
        save_overlays=True,
        save_maps=True,
        progress=False,
    )
    assert summary.num_scored == 6 and summary.num_errors == 0
    rows = _rows(out)
    assert list(rows[0]) == list(CSV_COLUMNS)
    paths = [row["path"] for row in rows]
    assert paths == sorted(paths) and len(paths) == 6
    detector = pipeline("anomaly-detection", model=str(model_dir))
    expected = detector(paths, threshold=0.5, pixel_threshold=0.5)
    records = _jsonl(out / PREDICTIONS_JSONL)
    for record, result in zip(records, expected, strict=True):
        assert record["score"] == pytest.approx(result["score"], abs=1e-6)
        assert record["is_anomalous"] == result["is_anomalous"]
        assert record["anomalous_area"] == pytest.approx(float(result["mask"].mean()), abs=1e-6)
        np.testing.assert_allclose(np.load(out / record["map"]), result["anomaly_map"], atol=1e-5)
    first = records[0]
    assert first["mask"] == "masks/parts/bad/deep/0.png" and first["overlay"] == "overlays/parts/bad/deep/0.png"
    mask = np.asarray(Image.open(out / first["mask"]))
    assert mask.shape == (40, 48) and set(np.unique(mask)) <= {0, 255}
    assert Image.open(out / first["overlay"]).size == (48, 40)
    assert (out / ERRORS_FILE).read_text() == ""


def test_workers_give_the_same_scores_as_the_main_process(model_dir, image_tree, tmp_path):
    kwargs = {"batch_size": 2, "threshold": 0.5, "progress": False}
    predict([image_tree], model_dir, tmp_path / "w0", num_workers=0, **kwargs)
    predict([image_tree], model_dir, tmp_path / "w2", num_workers=2, **kwargs)
    assert _rows(tmp_path / "w0") == _rows(tmp_path / "w2")


def test_areas_of_images_at_and_off_the_models_size_equal_the_pipelines(model_dir, tmp_path):
    folder = tmp_path / "sizes"
    for index in range(5):  # the test model takes 32 px: three images need no map resizing, two do
        _save_rgb(folder / f"{index}.png", 20 + index, (32, 32) if index % 2 == 0 else (45, 27))
    paths = [str(path) for path in sorted(folder.glob("*.png"))]
    detector = pipeline("anomaly-detection", model=str(model_dir))
    maps = [result["anomaly_map"] for result in detector(paths, threshold=0.5)]
    pixel_threshold = float(np.median(np.concatenate([m.ravel() for m in maps])))  # areas well inside (0, 1)
    expected = detector(paths, threshold=0.5, pixel_threshold=pixel_threshold)
    predict([folder], model_dir, tmp_path / "out", batch_size=4, num_workers=2, threshold=0.5,
            pixel_threshold=pixel_threshold, progress=False)  # fmt: skip
    records = _jsonl(tmp_path / "out" / PREDICTIONS_JSONL)
    assert [record["path"] for record in records] == paths
    areas = [record["anomalous_area"] for record in records]
    assert len(set(areas)) > 1 and all(0 < area < 1 for area in areas)
    for record, result in zip(records, expected, strict=True):
        assert record["score"] == pytest.approx(result["score"], abs=1e-6)
        assert record["anomalous_area"] == pytest.approx(float(result["mask"].mean()), abs=1e-6)
        assert (record["mask"], record["overlay"], record["map"]) == ("", "", "")  # nothing written unless asked


def test_inputs_files_globs_and_lists(image_tree, tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_text("# two images\nparts/good/0.png\n\nparts/bad/deep/1.png\n")
    assert [image.relative for image in discover_inputs([listing])] == ["parts/good/0.png", "parts/bad/deep/1.png"]
    globbed = discover_inputs([str(image_tree / "**" / "*.png")])
    assert len(globbed) == 6 and globbed[0].relative == "bad/deep/0.png"
    single = discover_inputs([image_tree / "good" / "1.png", image_tree / "good" / "1.png"])
    assert [image.relative for image in single] == ["1.png"]  # each image once


def test_sixteen_bit_and_grayscale_pngs_are_scored(model_dir, tmp_path):
    folder = tmp_path / "modes"
    folder.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 65535, (30, 30), dtype=np.uint16)).save(folder / "sixteen.png")
    Image.fromarray(rng.integers(0, 256, (30, 30), dtype=np.uint8), mode="L").save(folder / "gray.png")
    assert Image.open(folder / "sixteen.png").mode.startswith("I")
    summary = predict([folder], model_dir, tmp_path / "out", num_workers=0, threshold=0.5, progress=False)
    assert summary.num_scored == 2 and summary.num_errors == 0
    assert all(0 <= float(row["score"]) <= 1 for row in _rows(tmp_path / "out"))


def test_a_dataset_as_input(model_dir, tmp_path):
    root = tmp_path / "data"
    _save_rgb(root / "screw" / "good" / "0.png", 0)
    _save_rgb(root / "screw" / "crack" / "1.png", 1)
    cli_main(
        ["predict", "--dataset_format", "folder", "--dataset_path", str(root), "--model", str(model_dir)]
        + ["--output_dir", str(tmp_path / "out"), "--num_workers", "0", "--threshold", "0.5", "--no_progress"]
    )
    assert sorted(Path(row["path"]).relative_to(root).as_posix() for row in _rows(tmp_path / "out")) == [
        "screw/crack/1.png",
        "screw/good/0.png",
    ]


# ------------------------------------------------------------------------------------------------ resume and errors


def test_resume_skips_done_images_and_tolerates_a_cut_line(model_dir, image_tree, tmp_path):
    out = tmp_path / "out"
    predict([image_tree], model_dir, out, num_workers=0, threshold=0.5, progress=False)
    complete = _rows(out)
    lines = (out / PREDICTIONS_JSONL).read_text().splitlines(keepends=True)
    (out / PREDICTIONS_JSONL).write_text("".join(lines[:2]) + lines[2][:25])  # killed in the middle of a write
    (out / PREDICTIONS_CSV).unlink()
    summary = predict([image_tree], model_dir, out, num_workers=0, threshold=0.5, resume=True, progress=False)
    assert summary.num_resumed == 2 and summary.num_scored == 4
    assert _rows(out) == complete
    assert len(_jsonl(out / PREDICTIONS_JSONL)) == 6


def test_a_second_run_without_resume_is_refused(model_dir, image_tree, tmp_path):
    predict([image_tree / "good"], model_dir, tmp_path / "out", num_workers=0, threshold=0.5, progress=False)
    with pytest.raises(PredictError, match="--resume"):
        predict([image_tree / "good"], model_dir, tmp_path / "out", num_workers=0, progress=False)


def test_resume_on_another_models_folder_is_refused_naming_both(model_dir, image_tree, tmp_path):
    out = tmp_path / "out"
    predict([image_tree / "good"], model_dir, out, num_workers=0, threshold=0.5, progress=False)
    other = tmp_path / "other_model"
    other.mkdir()
    for item in model_dir.iterdir():
        (other / item.name).write_bytes(item.read_bytes())
    with pytest.raises(PredictError) as raised:
        predict([image_tree / "good"], other, out, num_workers=0, resume=True, progress=False)
    assert str(model_dir.resolve()) in str(raised.value) and str(other.resolve()) in str(raised.value)


@pytest.fixture
def mixed_folder(tmp_path) -> Path:
    folder = tmp_path / "mixed"
    _save_rgb(folder / "a.png", 0)
    (folder / "b.png").write_bytes(b"this is not a png")
    _save_rgb(folder / "c.png", 1)
    return folder


def test_corrupt_files_are_recorded_and_skipped(model_dir, mixed_folder, tmp_path):
    out = tmp_path / "out"
    summary = predict([mixed_folder], model_dir, out, num_workers=2, threshold=0.5, progress=False)
    assert summary.num_scored == 2 and summary.num_errors == 1
    assert [Path(row["path"]).name for row in _rows(out)] == ["a.png", "c.png"]
    (error,) = _jsonl(out / ERRORS_FILE)
    assert error["path"].endswith("b.png") and "Cannot decode image" in error["error"]


def test_a_stopped_run_leaves_no_decoding_threads_behind(model_dir, mixed_folder, tmp_path):
    with pytest.raises(PredictError, match="b.png") as raised:
        predict([mixed_folder], model_dir, tmp_path / "out", batch_size=1, num_workers=2, on_error="stop",
                threshold=0.5, progress=False)  # fmt: skip
    # while the caller still holds the error (and so predict's frame), the threads are already gone
    assert raised.value.exit_code == 1
    assert not [thread for thread in threading.enumerate() if thread.name.startswith("faprompt-predict-decode")]


def test_corrupt_file_stops_the_run_with_exit_code_1_naming_it(model_dir, mixed_folder, tmp_path, capsys):
    with pytest.raises(SystemExit) as raised:
        cli_main(
            ["predict", str(mixed_folder), "--model", str(model_dir), "--output_dir", str(tmp_path / "out")]
            + ["--on_error", "stop", "--num_workers", "0", "--batch_size", "1", "--threshold", "0.5", "--no_progress"]
        )
    assert raised.value.code == 1
    error = capsys.readouterr().err
    assert "b.png" in error and "--on_error skip" in error
    assert len(_jsonl(tmp_path / "out" / PREDICTIONS_JSONL)) == 1  # a.png, scored before the stop, is kept


# ------------------------------------------------------------------------------------------------ refused inputs


def _cli_error(argv: list[str], capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as raised:
        cli_main(argv)
    return raised.value.code, capsys.readouterr().err


def test_an_empty_folder_is_refused(model_dir, tmp_path, capsys):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    code, error = _cli_error(
        ["predict", str(tmp_path / "empty"), "--model", str(model_dir), "--output_dir", "o"], capsys
    )
    assert code == 2 and "empty" in error and "holds no images" in error


def test_a_glob_matching_nothing_is_refused(model_dir, tmp_path, capsys):
    pattern = str(tmp_path / "*.png")
    code, error = _cli_error(["predict", pattern, "--model", str(model_dir), "--output_dir", "o"], capsys)
    assert code == 2 and pattern in error and "matches no image files" in error and "quote" in error


def test_an_output_folder_that_is_a_file_is_refused(model_dir, image_tree, tmp_path, capsys):
    target = tmp_path / "taken"
    target.write_text("x")
    code, error = _cli_error(
        ["predict", str(image_tree), "--model", str(model_dir), "--output_dir", str(target)], capsys
    )
    assert code == 2 and str(target) in error and "is a file, not a folder" in error


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--threshold", "1.5", "--threshold must be finite and lie in [0, 1]"),
        ("--pixel_threshold", "nan", "--pixel_threshold must be finite"),
        ("--batch_size", "0", "--batch_size must be an integer >= 1, got 0"),
        ("--num_workers", "-1", "--num_workers must be an integer >= 0"),
    ],
)
def test_bad_numbers_are_refused_by_the_parser(model_dir, image_tree, flag, value, message, capsys):
    code, error = _cli_error(
        ["predict", str(image_tree), "--model", str(model_dir), "--output_dir", "o", flag, value], capsys
    )
    assert code == 2 and message in error


def test_a_missing_input_names_close_names(model_dir, image_tree, capsys):
    code, error = _cli_error(
        ["predict", str(image_tree / "god"), "--model", str(model_dir), "--output_dir", "o"], capsys
    )
    assert code == 2 and "no such file or folder" in error and "good" in error


def test_a_missing_local_model_folder_fails_at_once(image_tree, tmp_path, capsys):
    (tmp_path / "small-rn50").mkdir()
    code, error = _cli_error(
        ["predict", str(image_tree), "--model", str(tmp_path / "small-rn"), "--output_dir", str(tmp_path / "o")], capsys
    )
    assert code == 2 and "no such folder" in error and "small-rn50" in error


# ------------------------------------------------------------------------------------------------ ONNX and processes


@pytest.mark.integration
def test_an_onnx_folder_runs_without_torch_and_scores_like_pytorch(model, model_dir, image_tree, tmp_path):
    pytest.importorskip("onnxruntime")
    from faprompt_hf.onnx.export import export_onnx

    export_onnx(model, tmp_path / "onnx", opset=20)
    predict([image_tree], model_dir, tmp_path / "torch_out", num_workers=0, threshold=0.5, progress=False)
    code = (
        "import sys\n"
        "sys.modules['torch'] = None; sys.modules['transformers'] = None  # any import of them fails\n"
        "import faprompt_hf_cli\n"
        f"faprompt_hf_cli.main(['predict', {str(image_tree)!r}, '--model', {str(tmp_path / 'onnx')!r}, "
        f"'--output_dir', {str(tmp_path / 'onnx_out')!r}, '--threshold', '0.5', '--no_progress'])\n"
    )
    env = {
        **os.environ,
        **OFFLINE_ENV,
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
    }
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    onnx_rows, torch_rows = _rows(tmp_path / "onnx_out"), _rows(tmp_path / "torch_out")
    assert [row["path"] for row in onnx_rows] == [row["path"] for row in torch_rows]
    for onnx_row, torch_row in zip(onnx_rows, torch_rows, strict=True):
        assert float(onnx_row["score"]) == pytest.approx(float(torch_row["score"]), abs=1e-4)


@pytest.mark.integration
def test_two_processes_shard_the_inputs_and_write_one_csv_in_input_order(model_dir, tmp_path):
    folder = tmp_path / "many"
    for index in range(7):
        _save_rgb(folder / f"{index:02d}.png", index)
    predict([folder], model_dir, tmp_path / "one", num_workers=0, threshold=0.5, progress=False)
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_port", str(free_port()), "-m", "faprompt_hf.cli", "predict", str(folder),
        "--model", str(model_dir), "--output_dir", str(tmp_path / "two"), "--device", "cpu",
        "--num_workers", "0", "--batch_size", "2", "--threshold", "0.5", "--no_progress",
    ]  # fmt: skip
    env = {**os.environ, **OFFLINE_ENV, "ACCELERATE_USE_CPU": "true"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT / "src"), os.environ.get("PYTHONPATH", "")])
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert _rows(tmp_path / "two") == _rows(tmp_path / "one")
    assert not list((tmp_path / "two").glob("*.part*"))


# ------------------------------------------------------------------------------------------------ normal references


@pytest.fixture
def reference_folder(tmp_path) -> Path:
    """good/: three normal images of another size than the inputs'."""
    folder = tmp_path / "good"
    for index in range(3):
        _save_rgb(folder / f"{index}.png", 100 + index, size=(36, 30))
    return folder


def test_references_change_the_scores_and_equal_the_pipelines(model_dir, image_tree, reference_folder, tmp_path):
    kwargs = {"num_workers": 0, "threshold": 0.5, "progress": False, "batch_size": 4}
    predict([image_tree], model_dir, tmp_path / "zero", **kwargs)
    predict([image_tree], model_dir, tmp_path / "few", references=[reference_folder], **kwargs)
    zero_shot, few_shot = _jsonl(tmp_path / "zero" / PREDICTIONS_JSONL), _jsonl(tmp_path / "few" / PREDICTIONS_JSONL)
    assert [row["score"] for row in few_shot] != pytest.approx([row["score"] for row in zero_shot], abs=1e-4)
    detector = pipeline("anomaly-detection", model=str(model_dir))
    references = sorted(str(path) for path in reference_folder.iterdir())
    expected = detector([row["path"] for row in few_shot], references=references, threshold=0.5)
    for row, result in zip(few_shot, expected, strict=True):
        assert row["score"] == pytest.approx(result["score"], abs=1e-6)
        assert row["anomalous_area"] == pytest.approx(float(result["mask"].mean()), abs=1e-6)
    assert "normal references: class 'default'" in (tmp_path / "few" / "predict_run.json").read_text()


def test_resume_with_other_references_is_refused(model_dir, image_tree, reference_folder, tmp_path):
    kwargs = {"num_workers": 0, "threshold": 0.5, "progress": False}
    predict([image_tree / "good"], model_dir, tmp_path / "out", references=[reference_folder], **kwargs)
    with pytest.raises(PredictError, match="--resume: .*normal references"):
        predict(
            [image_tree / "good"],
            model_dir,
            tmp_path / "out",
            references=[reference_folder / "0.png"],
            resume=True,
            **kwargs,
        )


def test_reference_class_selects_a_class_of_a_saved_bank(model_dir, image_tree, reference_folder, tmp_path, capsys):
    from faprompt_hf import FAPromptModel

    banked = FAPromptModel.from_pretrained(model_dir)
    processor = pipeline("anomaly-detection", model=banked).image_processor
    for name, files in (("screw", ["0.png", "1.png"]), ("nut", ["2.png"])):
        paths = [str(reference_folder / file) for file in files]
        banked.set_normal_references(
            processor.preprocess_references(paths, return_tensors="pt")["reference_pixel_values"], name
        )
    banked.save_pretrained(tmp_path / "banked")
    argv = [
        "predict",
        str(image_tree / "good"),
        "--model",
        str(tmp_path / "banked"),
        "--num_workers",
        "0",
        "--no_progress",
        "--threshold",
        "0.5",
    ]
    cli_main([*argv, "--output_dir", str(tmp_path / "nut"), "--reference_class", "nut"])
    cli_main([*argv, "--output_dir", str(tmp_path / "given"), "--references", str(reference_folder / "2.png")])
    capsys.readouterr()
    assert [row["score"] for row in _rows(tmp_path / "nut")] == [row["score"] for row in _rows(tmp_path / "given")]
    code, error = _cli_error([*argv, "--output_dir", str(tmp_path / "o1")], capsys)
    assert code == 2 and "several classes ['screw', 'nut']" in error and "--reference_class NAME" in error
    code, error = _cli_error([*argv, "--output_dir", str(tmp_path / "o2"), "--reference_class", "bolt"], capsys)
    assert code == 2 and "'bolt'" in error and "it holds ['screw', 'nut']" in error and "--references" in error


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda root: root / "missing", ["--references", "missing", "no such file or folder"]),
        (lambda root: (root / "empty").mkdir() or root / "empty", ["--references", "empty", "holds no images"]),
        (
            lambda root: (root / "bad.png").write_bytes(b"not a png") and root / "bad.png",
            ["--references", "bad.png", "fix the file or leave it out"],
        ),
    ],
    ids=["missing folder", "empty folder", "unreadable image"],
)
def test_bad_references_are_refused_naming_them(model_dir, image_tree, tmp_path, capsys, make, words):
    reference = make(tmp_path)
    code, error = _cli_error(
        ["predict", str(image_tree), "--model", str(model_dir), "--output_dir", str(tmp_path / "o")]
        + ["--num_workers", "0", "--references", str(reference)],
        capsys,
    )
    assert code == 2 and all(word in error for word in words), error
    assert not (tmp_path / "o" / PREDICTIONS_JSONL).exists()

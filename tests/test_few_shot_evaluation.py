# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""Few-shot evaluation: references drawn per class from a reference split, several seeds, the flags and scripts."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from accelerate.state import AcceleratorState, GradientState

from faprompt_hf import FAPromptImageProcessor
from faprompt_hf.data import FAPromptCollator, make_synthetic_dataset, write_synthetic_mvtec
from faprompt_hf.evaluation import evaluate_model, load_evaluation_model
from faprompt_hf.few_shot import (
    FewShotResult,
    evaluate_few_shot,
    evaluate_with_references,
    load_reference_dataset,
    select_normal_references,
)
from helpers import load_script

REPO_ROOT = Path(__file__).resolve().parents[1]
EVALUATE_SCRIPT = REPO_ROOT / "examples" / "evaluate.py"
QUICKSTART = REPO_ROOT / "examples" / "quickstart.py"
CLASSES = ["nut", "stripes"]
FEW_SHOT_FLAGS = ("--k_shot", "--reference_seed", "--reference_seeds", "--reference_split")


@pytest.fixture(scope="module")
def test_set():
    return make_synthetic_dataset(CLASSES, 2, 2, image_size=64, seed=0, split="test")


@pytest.fixture(scope="module")
def pool():
    """The reference split: 6 normal and 2 anomalous images per class (only normal ones may be drawn)."""
    return make_synthetic_dataset(CLASSES, 6, 2, image_size=64, seed=0, split="reference")


def test_references_are_normal_of_their_class_and_never_evaluated(model, test_set, pool):
    result = evaluate_few_shot(model, test_set, pool, k_shot=3, seeds=(0, 1))
    evaluated = set(test_set["path"])
    assert set(result.references) == {0, 1}
    for per_class in result.references.values():
        assert list(per_class) == CLASSES
        for name, paths in per_class.items():
            assert len(paths) == len(set(paths)) == 3
            assert not set(paths) & evaluated
            assert all(path.startswith(f"synthetic/reference/{name}/good/") for path in paths)
    assert model.normal_reference_classes == []  # cleared afterwards


def test_scores_are_the_models_with_that_class_bank(model, test_set, pool):
    """Each class is scored with its own references, exactly as forward(normal_reference_class=...) scores it."""
    selection = select_normal_references(pool, CLASSES, 2, seed=5)
    result = evaluate_with_references(model, test_set, pool, selection, batch_size=3)
    collator = FAPromptCollator(FAPromptImageProcessor(size=model.config.image_size))
    try:
        for name in CLASSES:
            model.set_normal_references(collator([pool[i] for i in selection[name]])["pixel_values"], name)
        for name in CLASSES:
            rows = [index for index, other in enumerate(test_set["class_name"]) if other == name]
            with torch.no_grad():
                outputs = model(
                    pixel_values=collator([test_set[i] for i in rows])["pixel_values"], normal_reference_class=name
                )
            np.testing.assert_allclose(result.image_scores[rows], outputs.image_scores.numpy(), rtol=1e-5, atol=1e-6)
    finally:
        model.clear_normal_references()
    zero_shot = evaluate_model(model, test_set, batch_size=3)
    assert not np.allclose(result.image_scores, zero_shot.image_scores)  # the references changed the scores
    assert result.protocol["normal_references"] == {
        name: [pool[i]["path"] for i in selection[name]] for name in CLASSES
    }


def test_the_same_seed_is_reproducible_and_seeds_differ(model, test_set, pool):
    first = evaluate_few_shot(model, test_set, pool, k_shot=2, seeds=(0,))
    again = evaluate_few_shot(model, test_set, pool, k_shot=2, seeds=(0,))
    other = evaluate_few_shot(model, test_set, pool, k_shot=2, seeds=(3,))
    assert first.references == again.references and first.metrics == again.metrics
    np.testing.assert_array_equal(first.runs[0].image_scores, again.runs[0].image_scores)
    assert first.references[0] != other.references[3]
    # a class's draw does not depend on which other classes are evaluated
    stripes_rows = [index for index, path in enumerate(pool["path"]) if path in first.references[0]["stripes"]]
    assert select_normal_references(pool, ["stripes"], 2, 0) == {"stripes": stripes_rows}


def test_several_seeds_give_mean_and_std(model, test_set, pool, tmp_path):
    result = evaluate_few_shot(model, test_set, pool, k_shot=2, seeds=(0, 1, 2), reference_split="reference")
    assert isinstance(result, FewShotResult) and len(result.runs) == 3
    assert list(result.metrics) == list(result.metrics_std) == [*CLASSES, "mean"]
    for name in result.metrics:
        for key in ("image_auroc", "pixel_auroc"):
            values = [run.metrics[name][key] for run in result.runs]
            assert result.metrics[name][key] == pytest.approx(np.mean(values))
            assert result.metrics_std[name][key] == pytest.approx(np.std(values))
    assert "image_f1_threshold" not in result.metrics["nut"]
    assert "±" in result.table and "| mean |" in result.table
    assert result.protocol["few_shot"]["k_shot"] == 2 and result.protocol["few_shot"]["seeds"] == [0, 1, 2]

    paths = result.save(tmp_path)
    payload = json.loads(paths["json"].read_text())
    assert payload["few_shot"]["k_shot"] == 2 and payload["few_shot"]["seeds"] == [0, 1, 2]
    assert payload["few_shot"]["reference_split"] == "reference"
    assert payload["few_shot"]["references"]["1"] == result.references[1]
    assert set(payload["metrics_std"]["mean"]) >= {"image_auroc", "pixel_auroc", "pixel_aupro"}
    assert set(payload["metrics_per_seed"]) == {"0", "1", "2"}
    with paths["csv"].open() as handle:
        header = next(csv.reader(handle))
    assert "image_auroc" in header and "image_auroc_std" in header
    with paths["scores"].open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 3 * len(test_set) and {row["seed"] for row in rows} == {"0", "1", "2"}


def test_one_seed_prints_the_usual_table(model, test_set, pool):
    result = evaluate_few_shot(model, test_set, pool, k_shot=1)
    assert "±" not in result.table and result.seeds == [0]
    assert all(value == 0 for value in result.metrics_std["mean"].values())


def test_fewer_normal_references_than_k_is_refused_naming_the_class(model, test_set, pool):
    only_stripes = pool.filter(lambda row: row["class_name"] == "stripes" or row["path"].endswith("/000"))
    with pytest.raises(ValueError, match=r"k_shot=4 .*class 'nut' has 1 normal reference image") as raised:
        evaluate_few_shot(model, test_set, only_stripes, k_shot=4)
    assert "stripes" not in str(raised.value)
    with pytest.raises(ValueError, match="class 'nut' has 6 normal reference image"):
        evaluate_few_shot(model, test_set, pool, k_shot=7)
    assert model.normal_reference_classes == []


def test_evaluated_images_are_never_drawn(model, test_set):
    with pytest.raises(ValueError, match=r"has 0 normal reference image\(s\) \(2 more left out: they are among"):
        evaluate_few_shot(model, test_set, test_set, k_shot=1)


def test_the_bank_is_cleared_when_the_evaluation_fails(model, test_set, pool):
    with pytest.raises(ValueError, match="aupro"):
        evaluate_few_shot(model, test_set, pool, k_shot=1, aupro="nonsense")
    assert model.normal_reference_classes == [] and model.normal_references.features is None


def test_a_model_holding_references_is_refused(model, test_set, pool):
    collator = FAPromptCollator(FAPromptImageProcessor(size=model.config.image_size))
    model.set_normal_references(collator([pool[0]])["pixel_values"], "nut")
    try:
        with pytest.raises(ValueError, match="already holds normal references"):
            evaluate_few_shot(model, test_set, pool, k_shot=1)
    finally:
        model.clear_normal_references()


def test_bad_arguments(model, test_set, pool):
    with pytest.raises(ValueError, match="k_shot"):
        evaluate_few_shot(model, test_set, pool, k_shot=0)
    with pytest.raises(ValueError, match="distinct"):
        evaluate_few_shot(model, test_set, pool, k_shot=1, seeds=(1, 1))
    with pytest.raises(ValueError, match="distinct"):
        evaluate_few_shot(model, test_set, pool, k_shot=1, seeds=())


def test_reference_split_loading(tmp_path):
    synthetic = load_reference_dataset("synthetic", classes=["nut"], k_shot=12, n_normal=2, image_size=64)
    assert len(synthetic) == 12 and set(synthetic["label"]) == {0}
    assert all(path.startswith("synthetic/reference/nut/good/") for path in synthetic["path"])
    root = write_synthetic_mvtec(
        tmp_path / "mvtec", domains=["nut"], n_train=3, n_normal=1, n_anomalous=1, image_size=64
    )
    train = load_reference_dataset("mvtec", root, classes=["nut"])
    assert len(train) == 3 and set(train["label"]) == {0}
    with pytest.raises(ValueError, match="reference split 'validation' .* --reference_split"):
        load_reference_dataset("mvtec", root, "validation", classes=["nut"])


# ----------------------------------------------------------------------------------------------------------------------
# faprompt-hf evaluate / examples/evaluate.py
# ----------------------------------------------------------------------------------------------------------------------


def run_evaluate(argv):
    module = load_script(EVALUATE_SCRIPT)
    try:
        return module.main(argv)
    finally:
        AcceleratorState._reset_state(True)
        GradientState._reset_state()


def synthetic_args(model_dir, output_dir):
    return [
        "--model",
        str(model_dir),
        "--dataset_format",
        "synthetic",
        "--classes",
        *CLASSES,
        "--dataset_kwargs",
        '{"n_normal": 2, "n_anomalous": 2, "image_size": 64}',
        "--batch_size",
        "4",
        "--num_workers",
        "0",
        "--cpu",
        "--output_dir",
        str(output_dir),
    ]


def test_script_k_shot_with_seeds(model_dir, tmp_path, capsys):
    result = run_evaluate([*synthetic_args(model_dir, tmp_path), "--k_shot", "2", "--reference_seeds", "0", "1"])
    printed = capsys.readouterr().out
    assert isinstance(result, FewShotResult) and result.seeds == [0, 1]
    assert "2-shot" in printed and "split 'reference'" in printed and "±" in printed and result.table in printed
    payload = json.loads((tmp_path / "metrics.json").read_text())
    assert payload["few_shot"]["k_shot"] == 2 and payload["few_shot"]["seeds"] == [0, 1]
    assert payload["few_shot"]["reference_split"] == "reference"
    for per_class in payload["few_shot"]["references"].values():
        assert all(path.startswith(f"synthetic/reference/{name}/good/") for name in CLASSES for path in per_class[name])
    assert payload["run"]["dataset_format"] == "synthetic"


def test_script_same_seed_gives_the_library_result(model, model_dir, tmp_path):
    result = run_evaluate([*synthetic_args(model_dir, tmp_path), "--k_shot", "1", "--reference_seed", "4"])
    test_set = make_synthetic_dataset(CLASSES, 2, 2, image_size=64)
    pool = load_reference_dataset("synthetic", classes=CLASSES, k_shot=1, n_normal=2, n_anomalous=2, image_size=64)
    expected = evaluate_few_shot(model, test_set, pool, k_shot=1, seeds=(4,))
    assert result.references == expected.references
    np.testing.assert_allclose(result.runs[0].image_scores, expected.runs[0].image_scores, rtol=1e-5)


def test_script_refuses_a_reference_split_that_is_evaluated(model_dir, tmp_path):
    with pytest.raises(ValueError, match="class 'nut' has 0 normal reference image"):
        run_evaluate([*synthetic_args(model_dir, tmp_path), "--k_shot", "1", "--reference_split", "test"])


def test_script_refuses_a_missing_reference_split(model_dir, tmp_path):
    root = write_synthetic_mvtec(
        tmp_path / "mvtec", domains=["nut"], n_train=0, n_normal=1, n_anomalous=1, image_size=64
    )
    argv = ["--model", str(model_dir), "--dataset_format", "mvtec", "--dataset_path", str(root), "--num_workers", "0"]
    with pytest.raises(ValueError, match="reference split 'train'"):
        run_evaluate([*argv, "--cpu", "--output_dir", str(tmp_path / "out"), "--k_shot", "1"])


@pytest.mark.parametrize(
    "flags", [["--reference_seed", "1"], ["--reference_seeds", "0", "1"], ["--reference_split", "train"]]
)
def test_reference_flags_without_k_shot_are_refused_not_ignored(model_dir, tmp_path, flags, capsys):
    with pytest.raises(SystemExit) as raised:
        run_evaluate([*synthetic_args(model_dir, tmp_path), *flags])
    assert raised.value.code == 2
    assert "choose few-shot references: add --k_shot K" in capsys.readouterr().err


def test_a_saved_bank_is_set_aside_by_the_zero_shot_evaluation(model, tmp_path, caplog):
    model.set_normal_references(torch.randn(1, 3, 32, 32), class_name="nut")
    model.set_normal_references(torch.randn(1, 3, 32, 32), class_name="screw")
    try:
        model.save_pretrained(tmp_path / "with-bank")
    finally:
        model.clear_normal_references()
    with caplog.at_level("WARNING"):
        loaded, _ = load_evaluation_model(tmp_path / "with-bank")
    assert loaded.normal_reference_classes == []  # a zero-shot evaluation, not a crash on two classes
    assert "holds normal references of ['nut', 'screw']; they are set aside" in caplog.text


def test_flags_and_defaults_in_the_parser():
    parser = load_script(EVALUATE_SCRIPT).build_parser()
    help_text = " ".join(parser.format_help().split())
    for flag in FEW_SHOT_FLAGS:
        assert flag in help_text
    assert "(default: not set, zero-shot)" in help_text and "Seed of the reference draw (default: 0)" in help_text
    assert "(default: train; for synthetic, 'reference'" in help_text
    args = parser.parse_args(["--dataset_format", "synthetic"])
    assert (args.k_shot, args.reference_seed, args.reference_seeds, args.reference_split) == (None, None, None, None)
    with pytest.raises(SystemExit):
        parser.parse_args(["--dataset_format", "synthetic", "--reference_seed", "1", "--reference_seeds", "2"])
    with pytest.raises(SystemExit):
        parser.parse_args(["--dataset_format", "synthetic", "--k_shot", "0"])


@pytest.mark.integration
@pytest.mark.parametrize("command", ["script", "cli"])
def test_help_shows_the_few_shot_flags(command):
    argv = (
        [sys.executable, str(EVALUATE_SCRIPT), "--help"]
        if command == "script"
        else [sys.executable, "-c", "import faprompt_hf_cli; faprompt_hf_cli.main(['evaluate', '--help'])"]
    )
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    text = " ".join(result.stdout.split())
    for flag in FEW_SHOT_FLAGS:
        assert flag in text
    assert "K-shot" in text and "(default: 0)" in text and "(default: train;" in text


@pytest.mark.integration
def test_quickstart_smoke_k_shot(tmp_path):
    output_dir = tmp_path / "quickstart_output"
    result = subprocess.run(
        [sys.executable, str(QUICKSTART), "--smoke", "--k_shot", "1", "2", "--reference_seeds", "0", "1"]
        + ["--output_dir", str(output_dir)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TOKENIZERS_PARALLELISM": "false"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| zero-shot |" in result.stdout and "| 1-shot |" in result.stdout and "| 2-shot |" in result.stdout
    metrics = json.loads((output_dir / "metrics.json").read_text())
    assert set(metrics) == {"rings", "mean", "baseline", "few_shot"}
    few = metrics["few_shot"]
    assert few["reference_seeds"] == [0, 1] and set(few["k_shot"]) == {"1", "2"}
    row = few["k_shot"]["2"]
    assert set(row["metrics"]["mean"]) == {"image_auroc", "image_ap", "pixel_auroc", "pixel_aupro"}
    assert set(row["metrics_std"]) == {"rings", "mean"}
    assert all(len(paths["rings"]) == 2 for paths in row["references"].values())
    card = (output_dir / "model" / "README.md").read_text()
    assert "few_shot" not in card

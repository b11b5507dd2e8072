# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""Anomalous images labelled without a mask: ``allow_missing_masks`` in the model's objective, in training (and
``examples/train.py``), and in evaluation."""

from __future__ import annotations

import importlib.util
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from accelerate.state import AcceleratorState, GradientState
from PIL import Image
from transformers import HfArgumentParser

from faprompt_hf import FAPromptImageProcessor, FAPromptModel, FAPromptProcessor
from faprompt_hf.data import make_synthetic_dataset
from faprompt_hf.data.synthetic import generate_sample
from faprompt_hf.evaluation import evaluate_model
from faprompt_hf.tiny import tiny_clip_config, tiny_faprompt_config
from faprompt_hf.training import FAPromptTrainingArguments, train, validate_training_dataset

REPO_ROOT = Path(__file__).resolve().parents[1]
IMAGE_SIZE = 64


def _tiny_model(tokenizer) -> FAPromptModel:
    torch.manual_seed(0)
    clip_config = tiny_clip_config(tokenizer, image_size=IMAGE_SIZE)
    return FAPromptModel(tiny_faprompt_config(tokenizer, clip_config, image_size=IMAGE_SIZE))


@pytest.fixture(scope="module")
def batch():
    """Four images: normal, anomalous with a mask, anomalous (its mask to be dropped), normal."""
    torch.manual_seed(1)
    pixels = torch.randn(4, 3, IMAGE_SIZE, IMAGE_SIZE)
    masks = torch.zeros(4, IMAGE_SIZE, IMAGE_SIZE)
    masks[1, 10:30, 20:40] = 1
    masks[2, 40:50, 5:25] = 1
    return pixels, torch.tensor([0, 1, 1, 0]), masks


# ------------------------------------------------------------------------------------------------ the objective


def test_without_the_option_a_missing_mask_is_still_an_error(tiny_tokenizer, batch):
    model = _tiny_model(tiny_tokenizer)
    pixels, labels, masks = batch
    with pytest.raises(ValueError, match="no ground-truth mask.*allow_missing_masks=True"):
        model(pixels, labels=labels, masks=masks, mask_valid=torch.tensor([True, True, False, True]))
    with pytest.raises(ValueError, match="no masks were given.*allow_missing_masks=True"):
        model(pixels, labels=labels)


def test_with_every_mask_present_the_objective_is_unchanged_bit_for_bit(tiny_tokenizer, batch):
    model = _tiny_model(tiny_tokenizer)
    pixels, labels, masks = batch
    reference = model(pixels, labels=labels, masks=masks)
    allowed = model(
        pixels, labels=labels, masks=masks, mask_valid=torch.ones(4, dtype=torch.bool), allow_missing_masks=True
    )
    for field in ("loss", "loss_local", "loss_global", "loss_orthogonality", "loss_prior"):
        assert torch.equal(reference[field], allowed[field]), field


def test_pixel_losses_leave_out_images_without_a_mask_per_image(tiny_tokenizer, batch):
    model = _tiny_model(tiny_tokenizer)
    pixels, labels, masks = batch
    valid = torch.tensor([True, True, False, True])
    full = model(pixels, labels=labels, masks=masks)
    partial = model(pixels, labels=labels, masks=masks, mask_valid=valid, allow_missing_masks=True)
    kept = model(pixels[valid], labels=labels[valid], masks=masks[valid])
    # the local loss is that of the images with a mask alone; the image-level losses still see every image
    torch.testing.assert_close(partial.loss_local, kept.loss_local, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(partial.loss_local, full.loss_local)
    torch.testing.assert_close(partial.loss_global, full.loss_global)
    torch.testing.assert_close(partial.loss_prior, full.loss_prior)
    # what the left-out image's (stand-in) mask holds does not matter
    other = masks.clone()
    other[2] = 0
    again = model(pixels, labels=labels, masks=other, mask_valid=valid, allow_missing_masks=True)
    torch.testing.assert_close(again.loss, partial.loss)
    # without masks at all, the anomalous images are left out and the normal ones kept
    no_masks = model(pixels, labels=labels, allow_missing_masks=True)
    normal = labels == 0
    torch.testing.assert_close(no_masks.loss_local, model(pixels[normal], labels=labels[normal]).loss_local)


def test_no_pixel_truth_trains_the_image_level_objective_only(tiny_tokenizer, batch):
    model = _tiny_model(tiny_tokenizer).train()
    pixels, labels, masks = batch
    outputs = model(
        pixels, labels=labels, masks=masks, mask_valid=torch.zeros(4, dtype=torch.bool), allow_missing_masks=True
    )
    assert outputs.loss_local.item() == 0.0
    config = model.config
    expected = (
        config.global_loss_weight * outputs.loss_global
        + config.orthogonality_loss_weight * outputs.loss_orthogonality
        + config.prior_loss_weight * outputs.loss_prior
    )
    torch.testing.assert_close(outputs.loss, expected)
    outputs.loss.backward()
    gradients = [parameter.grad for parameter in model.trainable_parameters()]
    assert any(gradient is not None and bool(gradient.abs().sum() > 0) for gradient in gradients)


# ------------------------------------------------------------------------------------------------ training


@pytest.fixture(scope="module")
def train_set():
    return make_synthetic_dataset(domains=("stripes",), n_normal=4, n_anomalous=4, image_size=IMAGE_SIZE)


def _drop_masks(dataset, count: int):
    """``dataset`` with the masks of its first ``count`` anomalous images removed."""
    anomalous = [index for index, label in enumerate(dataset["label"]) if label == 1][:count]
    return dataset.map(lambda row, index: {"mask": None if index in anomalous else row["mask"]}, with_indices=True)


def _train_recording(tokenizer, dataset, output_dir: Path, **overrides) -> tuple[list[dict], list[dict]]:
    """Train the tiny model (batch 4) and return the keyword arguments of every forward and the step losses."""
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    model = _tiny_model(tokenizer)
    forward, calls, losses = model.forward, [], []

    def record(*inputs, **kwargs):
        calls.append(kwargs)
        return forward(*inputs, **kwargs)

    model.forward = record
    arguments = {"output_dir": str(output_dir), "per_device_train_batch_size": 4, "image_size": IMAGE_SIZE, **overrides}
    processor = FAPromptProcessor(FAPromptImageProcessor(size=IMAGE_SIZE), tokenizer)
    train(
        model,
        dataset,
        processor,
        FAPromptTrainingArguments(**arguments),
        step_callback=lambda step, values: losses.append(values),
    )
    return calls, losses


def test_validation_counts_missing_masks_only_when_allowed(train_set):
    partial = _drop_masks(train_set, 2)
    with pytest.raises(ValueError, match="2 anomalous training images have no mask.*--allow_missing_masks"):
        validate_training_dataset(partial)
    assert validate_training_dataset(partial, allow_missing_masks=True)["num_without_mask"] == 2
    assert validate_training_dataset(train_set)["num_without_mask"] == 0


def test_training_without_any_mask_trains_image_level_only_and_says_so(
    tiny_tokenizer, train_set, tmp_path, fresh_accelerate_state, caplog
):
    with caplog.at_level("INFO", logger="faprompt_hf.training"):
        calls, losses = _train_recording(
            tiny_tokenizer, _drop_masks(train_set, 4), tmp_path / "run", max_steps=2, allow_missing_masks=True
        )
    assert caplog.text.count("none of the 4 anomalous training images has a mask") == 1
    assert len(calls) == 2
    for kwargs in calls:
        assert kwargs["allow_missing_masks"] is True and not bool(kwargs["mask_valid"].any())
    assert [values["local"] for values in losses] == [0.0, 0.0]
    assert all(values["global"] > 0 for values in losses)
    assert json.loads((tmp_path / "run" / "trainer_state.json").read_text())["global_step"] == 2


def test_training_with_some_masks_missing_leaves_out_those_images(
    tiny_tokenizer, train_set, tmp_path, fresh_accelerate_state, caplog
):
    partial = _drop_masks(train_set, 2)
    with pytest.raises(ValueError, match="2 anomalous training images have no mask"):
        _train_recording(tiny_tokenizer, partial, tmp_path / "refused", max_steps=1)
    with caplog.at_level("INFO", logger="faprompt_hf.training"):
        calls, losses = _train_recording(
            tiny_tokenizer, partial, tmp_path / "run", max_steps=2, allow_missing_masks=True
        )
    assert "2 of the 4 anomalous training images have no mask" in caplog.text
    invalid = sum(int((~kwargs["mask_valid"]).sum()) for kwargs in calls)
    assert invalid == 2  # one epoch of 8 images: exactly the two without a mask
    for kwargs in calls:
        assert bool((kwargs["labels"][~kwargs["mask_valid"]] == 1).all())
    assert all(values["local"] > 0 for values in losses)


def _write_labelled_folder(root: Path) -> Path:
    """A folder dataset: 2 good parts and 2 bad ones, without masks."""
    for folder, defect in (("good", None), ("bad", "scratch")):
        (root / "part" / folder).mkdir(parents=True)
        for index in range(2):
            image, _ = generate_sample("stripes", defect, IMAGE_SIZE, seed=index)
            Image.fromarray(image).save(root / "part" / folder / f"{index}.png")
    return root


def test_script_allow_missing_masks_loads_folders_without_masks(tmp_path):
    spec = importlib.util.spec_from_file_location("train_example_masks", REPO_ROOT / "examples" / "train.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        root = _write_labelled_folder(tmp_path / "parts")
        parser = HfArgumentParser((module.ScriptArguments, FAPromptTrainingArguments))
        flags = ["--dataset_format", "folder", "--dataset_path", str(root)]
        script, training = parser.parse_args_into_dataclasses(args=flags)
        with pytest.raises(FileNotFoundError, match="require_masks=False"):
            module.load_training_data(script, training)
        script, training = parser.parse_args_into_dataclasses(args=[*flags, "--allow_missing_masks"])
        dataset, _ = module.load_training_data(script, training)
    finally:
        sys.modules.pop(spec.name, None)
    assert sorted(dataset["label"]) == [0, 0, 1, 1] and dataset["mask"] == [None] * 4
    assert validate_training_dataset(dataset, allow_missing_masks=True)["num_without_mask"] == 2


# ------------------------------------------------------------------------------------------------ evaluation


def test_evaluation_without_masks_reports_image_metrics_and_why_pixel_ones_are_missing(model):
    data = make_synthetic_dataset(["nut", "stripes"], n_normal=2, n_anomalous=2, image_size=64)
    names = list(data["class_name"])
    without = data.map(
        lambda row, index: {"mask": None if names[index] == "stripes" else row["mask"]}, with_indices=True
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = evaluate_model(model, without, batch_size=4)
    assert result.protocol["pixel_metrics_missing"] == {
        "stripes": "no anomalous image of this class has a mask (image-level labels only)"
    }
    assert np.isfinite(result.metrics["stripes"]["image_auroc"]) and "pixel_auroc" not in result.metrics["stripes"]
    assert np.isfinite(result.metrics["nut"]["pixel_auroc"])

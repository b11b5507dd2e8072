# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""Synthetic anomalies on normal images: determinism, exact masks, each kind, foreground placement, bad input, and
normal-only training (including a resume with a changed ratio)."""

from __future__ import annotations

import importlib.util
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from accelerate.state import AcceleratorState, GradientState
from PIL import Image
from transformers import HfArgumentParser

from faprompt_hf import FAPromptImageProcessor, FAPromptModel, FAPromptProcessor
from faprompt_hf.data import FAPromptCollator, load_folder, make_synthetic_dataset
from faprompt_hf.data.anomaly_synthesis import (
    MIN_CHANGE,
    MIN_SYNTHESIS_SIDE,
    SYNTHETIC_ANOMALY_KINDS,
    VISIBLE_FRACTION,
    SyntheticAnomalyDataset,
    _poisson_blend,
    foreground_mask,
    parse_foreground_threshold,
    parse_synthetic_anomaly_weights,
    perlin_noise,
    summarize_kinds,
    synthesize_anomaly,
)
from faprompt_hf.data.synthetic import _domain_rng, _render_clean, generate_sample
from faprompt_hf.tiny import tiny_clip_config, tiny_faprompt_config
from faprompt_hf.training import FAPromptTrainingArguments, train, validate_training_dataset

REPO_ROOT = Path(__file__).resolve().parents[1]
IMAGE_SIZE = 64


@pytest.fixture(scope="module")
def normal_only():
    """Normal images of two domains (one texture, one object), 64 px."""
    return make_synthetic_dataset(domains=("stripes", "nut"), n_normal=4, n_anomalous=0, image_size=IMAGE_SIZE)


def _pixels(row) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(row["image"].convert("RGB")), np.asarray(row["mask"]) > 0


def _original(dataset: SyntheticAnomalyDataset, synthetic_index: int) -> np.ndarray:
    source = int(dataset.synthetic_sources[synthetic_index])
    with Image.open(io.BytesIO(dataset.dataset[source]["image"]["bytes"])) as image:
        return np.asarray(image.convert("RGB"))


# ------------------------------------------------------------------------------------------------ building blocks


def test_perlin_noise_is_seeded_smooth_and_zero_on_the_lattice():
    first = perlin_noise((64, 48), (4, 3), np.random.default_rng(0))
    assert first.shape == (64, 48) and first.dtype == np.float32
    np.testing.assert_array_equal(first, perlin_noise((64, 48), (4, 3), np.random.default_rng(0)))
    assert not np.array_equal(first, perlin_noise((64, 48), (4, 3), np.random.default_rng(1)))
    assert np.abs(first).max() <= 1.0 and first.std() > 0.1
    # neighbouring pixels differ far less than the field's spread: smooth noise, not white noise
    assert np.abs(np.diff(first, axis=0)).mean() < 0.2 * first.std()


def test_poisson_blend_keeps_the_frame_and_the_patch_gradients():
    rng = np.random.default_rng(0)
    target = rng.uniform(0, 255, size=(20, 30, 3))
    # A patch that differs from the target by a harmonic (linear) field blends back into the target exactly.
    ramp = np.linspace(0, 50, 30)[None, :, None] + np.linspace(0, 20, 20)[:, None, None]
    np.testing.assert_allclose(_poisson_blend(target + ramp, target), target, atol=1e-8)
    patch = rng.uniform(0, 255, size=(20, 30, 3))
    blended = _poisson_blend(patch, target)
    np.testing.assert_array_equal(blended[0], target[0])
    np.testing.assert_array_equal(blended[:, -1], target[:, -1])

    # inside, the discrete Laplacian is the patch's
    def laplacian(a):
        return 4 * a[1:-1, 1:-1] - a[:-2, 1:-1] - a[2:, 1:-1] - a[1:-1, :-2] - a[1:-1, 2:]

    np.testing.assert_allclose(laplacian(blended)[1:-1, 1:-1], laplacian(patch)[1:-1, 1:-1], atol=1e-6)


@pytest.mark.parametrize("kind", SYNTHETIC_ANOMALY_KINDS)
@pytest.mark.parametrize("domain", ["stripes", "capsule"])
def test_each_kind_paints_a_visible_defect_with_an_exact_mask(kind, domain):
    image, _ = generate_sample(domain, None, 96, seed=3)
    foreign, _ = generate_sample(domain, None, 96, seed=4)
    for seed in range(3):
        out, mask = synthesize_anomaly(image, kind, np.random.default_rng(seed), foreign=foreign)
        assert out.dtype == np.uint8 and out.shape == image.shape and mask.dtype == bool
        change = np.abs(out.astype(int) - image.astype(int)).max(-1)
        np.testing.assert_array_equal(mask, change > 0)  # exactly the changed pixels
        assert mask.sum() >= 0.002 * 96 * 96 and mask.sum() < 0.6 * 96 * 96
        assert (change[mask] >= 24).mean() >= VISIBLE_FRACTION  # what is marked visibly changed
        assert (change[mask] >= MIN_CHANGE).mean() > 0.5
        again = synthesize_anomaly(image, kind, np.random.default_rng(seed), foreign=foreign)
        np.testing.assert_array_equal(out, again[0])


def test_kinds_differ_in_what_they_paint():
    image, _ = generate_sample("stripes", None, 96, seed=3)
    foreign = np.full_like(image, 20)  # a dark foreign image: perlin_image and seamless bring dark pixels
    out, mask = synthesize_anomaly(image, "perlin_image", np.random.default_rng(0), foreign=foreign)
    assert out[mask].mean() < image[mask].mean() - 20
    out, mask = synthesize_anomaly(image, "cutpaste", np.random.default_rng(0), foreign=foreign)
    # cut from the image itself: the foreign image plays no part
    np.testing.assert_array_equal(out, synthesize_anomaly(image, "cutpaste", np.random.default_rng(0))[0])
    out, mask = synthesize_anomaly(image, "seamless", np.random.default_rng(0), foreign=foreign)
    rows, columns = np.nonzero(mask)
    box = (slice(rows.min(), rows.max() + 1), slice(columns.min(), columns.max() + 1))
    # a rectangle blended in: the mask fills much of its bounding box; seamless cloning brings the patch's gradients
    # (none, for a flat patch), not its colour, so the box becomes smooth
    assert mask[box].mean() > 0.3
    assert (
        np.abs(np.diff(out[box].astype(float), axis=1)).mean()
        < 0.5 * np.abs(np.diff(image[box].astype(float), axis=1)).mean()
    )


def test_a_flat_image_falls_back_to_a_texture_defect():
    flat = np.full((64, 64, 3), 128, np.uint8)
    out, mask = synthesize_anomaly(flat, "cutpaste", np.random.default_rng(0))
    assert mask.sum() >= 16
    np.testing.assert_array_equal(mask, (out != flat).any(-1))


# ------------------------------------------------------------------------------------------------ foreground


def test_otsu_foreground_finds_the_object_and_defects_stay_on_it():
    clean, support, _ = _render_clean("nut", 128, _domain_rng("nut", 5, 0))
    foreground = foreground_mask(clean, "otsu")
    iou = (foreground & support).sum() / (foreground | support).sum()
    assert iou > 0.8, iou
    for kind in SYNTHETIC_ANOMALY_KINDS:
        for seed in range(3):
            _, mask = synthesize_anomaly(clean, kind, np.random.default_rng(seed), support=foreground)
            assert mask.any() and not (mask & ~foreground).any(), kind


def test_numeric_foreground_threshold_and_fallback(caplog):
    clean, support, _ = _render_clean("plate", 128, _domain_rng("plate", 2, 0))
    foreground = foreground_mask(clean, 20)
    assert (foreground & support).sum() / (foreground | support).sum() > 0.8
    with caplog.at_level("WARNING", logger="faprompt_hf.data.anomaly_synthesis"):
        everywhere = foreground_mask(clean, 255)
    assert everywhere.all() and "--foreground_threshold" in caplog.text


def test_dataset_places_defects_on_the_foreground():
    objects = make_synthetic_dataset(domains=("capsule",), n_normal=3, n_anomalous=0, image_size=96)
    pairs = SyntheticAnomalyDataset(objects, seed=0, foreground_threshold="otsu")
    for index in range(len(objects), len(pairs)):
        image, mask = _pixels(pairs[index])
        original = _original(pairs, index - len(objects))
        assert not (mask & ~foreground_mask(original, "otsu")).any()


# ------------------------------------------------------------------------------------------------ the dataset


def test_dataset_is_deterministic_per_seed_and_image(normal_only):
    first = SyntheticAnomalyDataset(normal_only, ratio=1.0, seed=3)
    second = SyntheticAnomalyDataset(normal_only, ratio=1.0, seed=3)
    assert len(first) == 2 * len(normal_only) and first.num_synthetic == len(normal_only)
    order = list(range(len(normal_only), len(first)))
    for index in reversed(order):  # another order, another object: the same rows
        a, b = first[index], second[index]
        np.testing.assert_array_equal(_pixels(a)[0], _pixels(b)[0])
        np.testing.assert_array_equal(_pixels(a)[1], _pixels(b)[1])
        assert a["label"] == 1 and a["defect_type"].startswith("synthetic_") and "#synthetic_" in a["path"]
    other_seed = SyntheticAnomalyDataset(normal_only, ratio=1.0, seed=4)
    assert any(not np.array_equal(_pixels(first[index])[1], _pixels(other_seed[index])[1]) for index in order)
    # A lower ratio keeps a subset of the images, each with the same defect.
    half = SyntheticAnomalyDataset(normal_only, ratio=0.5, seed=3)
    assert half.num_synthetic == 4 and set(half.synthetic_sources) <= set(first.synthetic_sources)
    for position, source in enumerate(half.synthetic_sources):
        full_position = list(first.synthetic_sources).index(source)
        np.testing.assert_array_equal(
            _pixels(half[len(normal_only) + position])[0], _pixels(first[len(normal_only) + full_position])[0]
        )
    # The dataset's own rows come first, unchanged.
    assert first[0]["path"] == normal_only[0]["path"] and first[-1]["path"].endswith(first[-1]["defect_type"])


def test_masks_are_exact_in_dataset_rows(normal_only):
    pairs = SyntheticAnomalyDataset(normal_only, seed=0)
    for position in range(pairs.num_synthetic):
        image, mask = _pixels(pairs[len(normal_only) + position])
        np.testing.assert_array_equal(mask, (image != _original(pairs, position)).any(-1))


def test_weights_choose_the_kinds(normal_only):
    only_cutpaste = SyntheticAnomalyDataset(normal_only, weights="cutpaste=1", seed=0)
    assert {only_cutpaste[i]["defect_type"] for i in range(len(normal_only), len(only_cutpaste))} == {
        "synthetic_cutpaste"
    }
    assert summarize_kinds(only_cutpaste) == {"perlin_texture": 0, "perlin_image": 0, "cutpaste": 8, "seamless": 0}
    assert parse_synthetic_anomaly_weights(None) == dict.fromkeys(SYNTHETIC_ANOMALY_KINDS, 0.25)
    assert parse_synthetic_anomaly_weights({"seamless": 3, "cutpaste": 1})["seamless"] == 0.75


@pytest.mark.parametrize(
    ("weights", "pattern"),
    [
        ("scratch=1", r"unknown kind\(s\) \['scratch'\]"),
        ("cutpaste=-1", "'cutpaste' must be a finite number >= 0"),
        ("cutpaste=0", "every kind weight 0"),
        ("cutpaste", "kind=weight"),
        ("seamless=nan", "finite"),
    ],
)
def test_bad_weights_are_refused(weights, pattern):
    with pytest.raises(ValueError, match=pattern):
        parse_synthetic_anomaly_weights(weights)
    with pytest.raises(ValueError, match=pattern):
        FAPromptTrainingArguments(synthetic_anomaly_weights=weights)


@pytest.mark.parametrize("value", ["abc", "300", "-1", "nan"])
def test_bad_foreground_threshold_is_refused(value):
    with pytest.raises(ValueError, match=f"foreground_threshold must be 'otsu'.*got '{value}'"):
        FAPromptTrainingArguments(foreground_threshold=value)
    assert parse_foreground_threshold("OTSU") == "otsu" and parse_foreground_threshold("30") == 30.0


def test_synthetic_rows_collate_with_their_masks(normal_only):
    pairs = SyntheticAnomalyDataset(normal_only, seed=0)
    collator = FAPromptCollator(FAPromptImageProcessor(size=IMAGE_SIZE))
    batch = collator([pairs[i] for i in (0, len(normal_only), len(normal_only) + 1)])
    assert batch["labels"].tolist() == [0, 1, 1] and bool(batch["mask_valid"].all())
    assert batch["masks"][0].sum() == 0 and (batch["masks"][1:].flatten(1).sum(1) > 0).all()


# ------------------------------------------------------------------------------------------------ bad input


def test_no_normal_images_is_a_clear_error():
    anomalous = make_synthetic_dataset(domains=("stripes",), n_normal=0, n_anomalous=3, image_size=IMAGE_SIZE)
    with pytest.raises(ValueError, match="all 3 images of the training dataset are labelled anomalous"):
        SyntheticAnomalyDataset(anomalous)
    with pytest.raises(ValueError, match="all 3 images .* labelled anomalous.*normal images"):
        validate_training_dataset(anomalous, synthesize_anomalies=True)


def test_normal_only_data_needs_synthesis(normal_only):
    with pytest.raises(ValueError, match="no anomalous one.*--synthesize_anomalies"):
        validate_training_dataset(normal_only)
    summary = validate_training_dataset(normal_only, synthesize_anomalies=True)
    assert summary["num_anomalous"] == 0 and summary["num_images"] == 8


def _write_folder(root: Path, size: tuple[int, int], mode: str, count: int = 3) -> Path:
    folder = root / "part" / "good"
    folder.mkdir(parents=True)
    for index in range(count):
        image, _ = generate_sample("dots", None, 64, seed=index)
        picture = Image.fromarray(image).resize(size).convert(mode)
        picture.save(folder / f"{index:03d}.png")
    return root


def test_images_smaller_than_the_smallest_defect_are_refused_naming_the_size(tmp_path):
    dataset = load_folder(_write_folder(tmp_path, (40, 20), "RGB"))
    pairs = SyntheticAnomalyDataset(dataset)
    with pytest.raises(ValueError, match=r"000\.png' is 40x20 pixels .* at least 32x32") as raised:
        pairs[len(dataset)]
    assert str(MIN_SYNTHESIS_SIDE) in str(raised.value)
    tiny = np.zeros((16, 64, 3), np.uint8)
    with pytest.raises(ValueError, match="part.png is 64x16 pixels"):
        synthesize_anomaly(tiny, "cutpaste", np.random.default_rng(0), where="part.png")


def test_a_grayscale_dataset_works_and_stays_grey(tmp_path):
    dataset = load_folder(_write_folder(tmp_path, (64, 64), "L"))
    pairs = SyntheticAnomalyDataset(dataset, seed=0)
    kinds = set()
    for index in range(len(dataset), len(pairs)):
        row = pairs[index]
        image, mask = _pixels(row)
        kinds.add(row["defect_type"])
        assert mask.any()
        assert (image[..., 0] == image[..., 1]).all() and (image[..., 1] == image[..., 2]).all()
    for kind in SYNTHETIC_ANOMALY_KINDS:  # every kind keeps a grey image grey
        grey = np.repeat(np.asarray(Image.open(tmp_path / "part" / "good" / "000.png"))[..., None], 3, axis=-1)
        out, _ = synthesize_anomaly(grey, kind, np.random.default_rng(1))
        assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all(), kind
    batch = FAPromptCollator(FAPromptImageProcessor(size=IMAGE_SIZE))([pairs[0], pairs[len(dataset)]])
    assert batch["pixel_values"].shape == (2, 3, IMAGE_SIZE, IMAGE_SIZE)


@pytest.fixture(scope="module")
def train_script():
    spec = importlib.util.spec_from_file_location("train_example_synthesis", REPO_ROOT / "examples" / "train.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


@pytest.mark.parametrize("ratio", ["1.5", "-0.1", "0", "nan"])
def test_a_ratio_outside_0_1_is_refused_at_the_parser(ratio, train_script, tmp_path, capsys):
    parser = HfArgumentParser(FAPromptTrainingArguments)
    with pytest.raises(ValueError, match=rf"synthetic_anomaly_ratio must be a number in \(0, 1\].*got {ratio}"):
        parser.parse_args_into_dataclasses(args=["--synthetic_anomaly_ratio", ratio])
    with pytest.raises(SystemExit) as raised:
        train_script.main(
            [
                "--dataset",
                "synthetic",
                "--synthesize_anomalies",
                "--synthetic_anomaly_ratio",
                ratio,
                "--output_dir",
                str(tmp_path),
            ]
        )
    assert raised.value.code == 2
    assert "synthetic_anomaly_ratio must be a number in (0, 1]" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_script_flags_reach_the_training_arguments(train_script):
    parser = HfArgumentParser((train_script.ScriptArguments, FAPromptTrainingArguments))
    _, training = parser.parse_args_into_dataclasses(
        args=[
            "--dataset", "synthetic", "--synthesize_anomalies", "--synthetic_anomaly_ratio", "0.25",
            "--synthetic_anomaly_weights", "cutpaste=1,seamless=1", "--foreground_threshold", "otsu",
            "--allow_missing_masks",
        ]
    )  # fmt: skip
    assert training.synthesize_anomalies and training.allow_missing_masks
    assert training.synthetic_anomaly_ratio == 0.25 and training.foreground_threshold == "otsu"
    assert training.synthetic_anomaly_weights == "cutpaste=1,seamless=1"


# ------------------------------------------------------------------------------------------------ training


def _tiny_model(tokenizer) -> FAPromptModel:
    torch.manual_seed(0)
    clip_config = tiny_clip_config(tokenizer, image_size=IMAGE_SIZE)
    return FAPromptModel(tiny_faprompt_config(tokenizer, clip_config, image_size=IMAGE_SIZE))


def _train(tokenizer, dataset, output_dir: Path, callback=None, **overrides) -> FAPromptModel:
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    arguments = {
        "output_dir": str(output_dir),
        "per_device_train_batch_size": 4,
        "image_size": IMAGE_SIZE,
        "learning_rate": 1e-2,
        "synthesize_anomalies": True,
        **overrides,
    }
    processor = FAPromptProcessor(FAPromptImageProcessor(size=IMAGE_SIZE), tokenizer)
    return train(
        _tiny_model(tokenizer), dataset, processor, FAPromptTrainingArguments(**arguments), step_callback=callback
    )


def test_normal_only_training_with_synthetic_anomalies(
    tiny_tokenizer, normal_only, tmp_path, fresh_accelerate_state, caplog
):
    losses = []
    with caplog.at_level("INFO", logger="faprompt_hf.training"):
        _train(tiny_tokenizer, normal_only, tmp_path / "run", lambda step, values: losses.append(values), max_steps=4)
    assert "8 of the 8 normal images also appear as a synthetic anomaly" in caplog.text
    assert "16 rows per epoch" in caplog.text
    assert len(losses) == 4 and all(values["local"] > 0 for values in losses)
    state = json.loads((tmp_path / "run" / "trainer_state.json").read_text())
    assert state["global_step"] == 4


def test_resume_with_a_changed_ratio_is_refused_unless_allowed(
    tiny_tokenizer, normal_only, tmp_path, fresh_accelerate_state, caplog
):
    run = tmp_path / "run"
    _train(tiny_tokenizer, normal_only, run, max_steps=1, checkpointing_steps=1)
    saved = json.loads((run / "checkpoints" / "checkpoint_1" / "trainer_state.json").read_text())
    assert saved["arguments"]["synthetic_anomaly_ratio"] == 1.0 and saved["arguments"]["synthesize_anomalies"]
    with pytest.raises(ValueError, match=r"synthetic_anomaly_ratio 1\.0 -> 0\.5.*--allow_changed_arguments"):
        _train(
            tiny_tokenizer, normal_only, run, max_steps=2, synthetic_anomaly_ratio=0.5, resume_from_checkpoint="latest"
        )
    assert not (run / "checkpoints" / "checkpoint_2").exists()
    with caplog.at_level("WARNING", logger="faprompt_hf.training"):
        _train(
            tiny_tokenizer,
            normal_only,
            run,
            max_steps=2,
            synthetic_anomaly_ratio=0.5,
            resume_from_checkpoint="latest",
            allow_changed_arguments=True,
        )
    assert "synthetic_anomaly_ratio 1.0 -> 0.5" in caplog.text
    assert json.loads((run / "trainer_state.json").read_text())["global_step"] == 2


def test_workers_paint_the_same_data_as_the_main_process(tiny_tokenizer, normal_only, tmp_path, fresh_accelerate_state):
    in_process = _train(tiny_tokenizer, normal_only, tmp_path / "main", max_steps=2, dataloader_num_workers=0)
    in_workers = _train(tiny_tokenizer, normal_only, tmp_path / "workers", max_steps=2, dataloader_num_workers=2)
    for key, value in in_process.prompt_learner.state_dict().items():
        assert torch.equal(value, in_workers.prompt_learner.state_dict()[key]), key


@pytest.mark.integration
def test_good_parts_to_a_fine_tuned_model_with_the_documented_commands(tiny_tokenizer, tmp_path):
    """docs/training.md, "Your own product": folder of good parts -> --synthesize_anomalies -> evaluation."""
    import os
    import subprocess

    model_dir = tmp_path / "zero-shot"
    _tiny_model(tiny_tokenizer).save_pretrained(model_dir)
    FAPromptProcessor(FAPromptImageProcessor(size=IMAGE_SIZE), tokenizer=tiny_tokenizer).save_pretrained(model_dir)
    parts = tmp_path / "my_parts" / "bracket"
    (parts / "good").mkdir(parents=True)
    (parts / "bad").mkdir()
    for index in range(6):
        Image.fromarray(generate_sample("plate", None, 96, seed=index)[0]).save(parts / "good" / f"{index}.png")
    for index in range(2):
        Image.fromarray(generate_sample("plate", "crack", 96, seed=10 + index)[0]).save(parts / "bad" / f"{index}.png")
    environment = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(REPO_ROOT / "src")}

    def run(*command: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, *command], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, env=environment
        )

    trained = run(
        "examples/train.py", "--model", str(model_dir), "--dataset_format", "folder",
        "--dataset_path", str(tmp_path / "my_parts"), "--classes", "bracket", "--dataset_kwargs",
        '{"require_masks": false}', "--synthesize_anomalies", "--foreground_threshold", "otsu",
        "--allow_missing_masks", "--max_steps", "3", "--batch_size", "4", "--dataloader_num_workers", "2",
        "--output_dir", str(tmp_path / "fine-tuned"),
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert "6 of the 6 normal images also appear as a synthetic anomaly" in trained.stderr
    assert "2 of the 2 anomalous training images have no mask" in trained.stderr
    evaluated = run(
        "examples/evaluate.py", "--model", str(tmp_path / "fine-tuned"), "--dataset_format", "folder",
        "--dataset_path", str(tmp_path / "my_parts"), "--dataset_kwargs", '{"require_masks": false}',
        "--output_dir", str(tmp_path / "results"),
    )  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert "bracket: no pixel metrics, no anomalous image of this class has a mask" in evaluated.stdout
    metrics = json.loads((tmp_path / "results" / "metrics.json").read_text())["metrics"]["bracket"]
    assert metrics["image_auroc"] is not None and "pixel_auroc" not in metrics

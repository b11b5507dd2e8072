# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""Training loop: multi-process runs, exact resumption after a crash, atomic checkpoints, and refusals.

Runs of ``examples/train.py`` go through subprocesses because an ``Accelerator`` is a process-wide singleton; the
in-process runs reset accelerate's state around each test.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from accelerate.state import AcceleratorState, GradientState
from safetensors.torch import load_file
from transformers import HfArgumentParser

import faprompt_hf.training as training_module
from faprompt_hf import FAPromptImageProcessor, FAPromptModel, FAPromptProcessor
from faprompt_hf.data import make_synthetic_dataset, write_synthetic_mvtec
from faprompt_hf.tiny import tiny_clip_config, tiny_faprompt_config
from faprompt_hf.training import (
    FAPromptTrainingArguments,
    _prompt_digest,
    find_latest_checkpoint,
    train,
    validate_training_dataset,
)
from helpers import free_port, load_script

REPO_ROOT = Path(__file__).resolve().parents[1]
TRAIN_SCRIPT = REPO_ROOT / "examples" / "train.py"
IMAGE_SIZE = 64


def _tiny_model(tokenizer, seed: int = 0) -> FAPromptModel:
    torch.manual_seed(seed)
    clip_config = tiny_clip_config(tokenizer, image_size=IMAGE_SIZE)
    return FAPromptModel(tiny_faprompt_config(tokenizer, clip_config, image_size=IMAGE_SIZE))


def _processor(tokenizer) -> FAPromptProcessor:
    return FAPromptProcessor(FAPromptImageProcessor(size=IMAGE_SIZE), tokenizer)


def _prompt_tensors(model_dir: Path) -> dict[str, torch.Tensor]:
    return {
        key: value
        for key, value in load_file(model_dir / "model.safetensors").items()
        if key.startswith("prompt_learner.")
    }


def _run(command: list[str], timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        command,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "TOKENIZERS_PARALLELISM": "false"},
    )


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory, tiny_tokenizer) -> Path:
    """A saved tiny FAPrompt model and processor, the ``--model`` of the script runs."""
    folder = tmp_path_factory.mktemp("tiny_model")
    _tiny_model(tiny_tokenizer).save_pretrained(folder)
    _processor(tiny_tokenizer).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def small_train_set():
    return make_synthetic_dataset(domains=("stripes",), n_normal=4, n_anomalous=4, image_size=IMAGE_SIZE)


# ------------------------------------------------------------------------------------------------ refusals


def test_dataset_without_anomalous_images_is_refused_before_training(tiny_tokenizer, tmp_path, fresh_accelerate_state):
    normal_only = make_synthetic_dataset(domains=("stripes",), n_normal=6, n_anomalous=0, image_size=IMAGE_SIZE)
    args = FAPromptTrainingArguments(output_dir=str(tmp_path / "run"), max_steps=2, image_size=IMAGE_SIZE)
    with pytest.raises(ValueError, match="no anomalous one"):
        train(_tiny_model(tiny_tokenizer), normal_only, _processor(tiny_tokenizer), args)
    assert not (tmp_path / "run").exists()


def test_anomalous_images_without_masks_are_refused(small_train_set):
    without_masks = small_train_set.map(lambda row: {"mask": None})
    with pytest.raises(ValueError, match="4 anomalous training images have no mask"):
        validate_training_dataset(without_masks)
    assert validate_training_dataset(small_train_set) == {
        "num_images": 8,
        "num_anomalous": 4,
        "class_names": ["stripes"],
        "num_without_mask": 0,
    }


def test_nan_loss_stops_the_run_and_names_the_step(tiny_tokenizer, small_train_set, tmp_path, fresh_accelerate_state):
    model = _tiny_model(tiny_tokenizer)
    with torch.no_grad():
        model.prompt_learner.normal_context[0, 0] = float("nan")
    args = FAPromptTrainingArguments(
        output_dir=str(tmp_path), max_steps=3, per_device_train_batch_size=4, image_size=IMAGE_SIZE
    )
    with pytest.raises(FloatingPointError, match=r"not finite at step 1 \(epoch 1, batch 1 of 2\)"):
        train(model, small_train_set, _processor(tiny_tokenizer), args)
    assert not (tmp_path / "model.safetensors").exists(), "a diverged run must not publish a model"


def _with_one_small_mask(dataset):
    """``dataset`` with the mask of its first anomalous image at half the image's size; and that image's path."""
    index = list(dataset["label"]).index(1)

    def shrink(row, position):
        if position == index:
            row["mask"] = row["mask"].resize((IMAGE_SIZE // 2, IMAGE_SIZE // 2))
        return row

    return dataset.map(shrink, with_indices=True), dataset[index]["path"]


def test_mismatched_mask_fails_by_default_naming_the_file_and_trains_with_the_flag(
    tiny_tokenizer, small_train_set, tmp_path, fresh_accelerate_state
):
    dataset, path = _with_one_small_mask(small_train_set)
    args = FAPromptTrainingArguments(
        output_dir=str(tmp_path / "refused"), max_steps=1, per_device_train_batch_size=8, image_size=IMAGE_SIZE
    )
    assert args.resize_mismatched_masks is False
    with pytest.raises(ValueError, match=re.escape(path) + r".*resize_mismatched_masks"):
        train(_tiny_model(tiny_tokenizer), dataset, _processor(tiny_tokenizer), args)
    assert not (tmp_path / "refused" / "model.safetensors").exists()

    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    args = dataclasses.replace(args, output_dir=str(tmp_path / "resized"), resize_mismatched_masks=True)
    trained = train(_tiny_model(tiny_tokenizer), dataset, _processor(tiny_tokenizer), args)
    assert (tmp_path / "resized" / "model.safetensors").is_file()
    assert _prompt_digest(trained.state_dict()) != _prompt_digest(_tiny_model(tiny_tokenizer).state_dict())


def test_mask_valid_is_passed_to_the_model(tiny_tokenizer, small_train_set, tmp_path, fresh_accelerate_state):
    model = _tiny_model(tiny_tokenizer)
    forward = model.forward
    seen = []

    def record(*inputs, **kwargs):
        seen.append(kwargs)
        return forward(*inputs, **kwargs)

    model.forward = record
    args = FAPromptTrainingArguments(
        output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=4, image_size=IMAGE_SIZE
    )
    train(model, small_train_set, _processor(tiny_tokenizer), args)
    assert len(seen) == 2
    for kwargs in seen:
        assert set(kwargs) == {"pixel_values", "labels", "masks", "mask_valid"}
        assert kwargs["mask_valid"].shape == kwargs["labels"].shape and bool(kwargs["mask_valid"].all())


# ------------------------------------------------------------------------------------------ examples/train.py flags


@pytest.fixture(scope="module")
def train_script():
    """examples/train.py imported as a module (its parser and data helpers, without running main)."""
    module = load_script(TRAIN_SCRIPT, "train_example")
    try:
        yield module
    finally:
        sys.modules.pop(module.__name__, None)


def _parse(train_script, *argv: str):
    parser = HfArgumentParser((train_script.ScriptArguments, FAPromptTrainingArguments))
    return parser.parse_args_into_dataclasses(args=list(argv))


@pytest.mark.parametrize("extra", [["--clip", "openai/clip-vit-base-patch16"], ["--config_overrides", "{}"]])
def test_script_refuses_flags_that_model_would_ignore(train_script, tiny_model_dir, tmp_path, extra, capsys):
    with pytest.raises(SystemExit) as raised:
        train_script.main(
            ["--model", str(tiny_model_dir), *extra, "--dataset", "synthetic", "--output_dir", str(tmp_path)]
        )
    assert raised.value.code == 2
    error = capsys.readouterr().err
    assert extra[0] in error and "--model" in error and "ignored" in error
    assert not tmp_path.joinpath("model.safetensors").exists()


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--dataset", "synthetic"], ("synthetic", None, "train")),
        (["--dataset_format", "synthetic"], ("synthetic", None, "train")),
        (["--dataset", "user/parts", "--dataset_split", "validation"], ("hub", "user/parts", "validation")),
        (
            ["--dataset_format", "hub", "--dataset_path", "user/parts", "--split", "validation"],
            ("hub", "user/parts", "validation"),
        ),
        (["--dataset_format", "mvtec", "--dataset_path", "/data/mvtec"], ("mvtec", "/data/mvtec", "test")),
        (
            ["--dataset_format", "visa", "--dataset_path", "/data/visa", "--dataset_split", "train"],
            ("visa", "/data/visa", "train"),
        ),
    ],
)
def test_script_data_flags_and_their_aliases(train_script, argv, expected):
    script, _ = _parse(train_script, *argv)
    assert train_script.resolve_dataset_arguments(script) == expected


@pytest.mark.parametrize(
    ("argv", "pattern"),
    [
        ([], "--dataset_format"),
        (["--dataset", "synthetic", "--dataset_format", "mvtec"], "alias"),
        (["--dataset_format", "mvtec"], "needs --dataset_path"),
        (
            ["--dataset_format", "mvtec", "--dataset_path", "x", "--split", "test", "--dataset_split", "train"],
            "disagree",
        ),
        (["--dataset_format", "mvtec", "--dataset_path", "x", "--column_mapping", "{}"], "column_mapping"),
    ],
)
def test_script_refuses_conflicting_data_flags(train_script, argv, pattern):
    script, _ = _parse(train_script, *argv)
    with pytest.raises(ValueError, match=pattern):
        train_script.resolve_dataset_arguments(script)


def test_script_alias_loads_the_same_data_and_has_the_resize_flag(train_script):
    common = ["--synthetic_num_normal", "1", "--synthetic_num_anomalous", "1", "--image_size", str(IMAGE_SIZE)]
    old_script, training = _parse(train_script, "--dataset", "synthetic", "--synthetic_domains", "nut", *common)
    new_script, _ = _parse(
        train_script, "--dataset_format", "synthetic", "--classes", "nut", *common, "--resize_mismatched_masks"
    )
    old, old_name = train_script.load_training_data(old_script, training)
    new, new_name = train_script.load_training_data(new_script, training)
    assert len(new) == 2 and old["path"] == new["path"]
    assert all(path.startswith("synthetic/train/nut/") for path in new["path"])  # split "train" by default
    assert old_name == new_name == "synthetic (nut)"
    assert _parse(train_script, "--dataset", "synthetic", "--resize_mismatched_masks")[1].resize_mismatched_masks
    assert not training.resize_mismatched_masks


# ------------------------------------------------------------------------------------------------ checkpoints


def test_latest_checkpoint_ignores_partial_temporary_folders(tmp_path):
    checkpoints = tmp_path / "checkpoints"
    for name in ("checkpoint_4", "checkpoint_10", "checkpoint_12.tmp", "checkpoint_11"):
        (checkpoints / name).mkdir(parents=True)
    for name in ("checkpoint_4", "checkpoint_10", "checkpoint_12.tmp"):
        state = {"global_step": int(name.split("_")[1].split(".")[0]), "epoch": 0, "batches_in_epoch": 0}
        (checkpoints / name / "trainer_state.json").write_text(json.dumps(state))
    # checkpoint_11 has no trainer state (not ours); checkpoint_12.tmp was being written when the run was killed.
    assert find_latest_checkpoint(tmp_path) == checkpoints / "checkpoint_10"
    assert find_latest_checkpoint(tmp_path / "missing") is None


@pytest.mark.integration
def test_killed_run_resumes_mid_epoch_to_the_same_weights(tiny_model_dir, tmp_path):
    data = write_synthetic_mvtec(
        tmp_path / "data", domains=("stripes",), n_train=0, n_normal=8, n_anomalous=8, image_size=IMAGE_SIZE
    )
    # 16 images, batch 2, 2 accumulated batches: 4 optimizer steps per epoch, 6 in all.
    common = [
        sys.executable,
        str(TRAIN_SCRIPT),
        "--model",
        str(tiny_model_dir),
        "--dataset_format",
        "mvtec",
        "--dataset_path",
        str(data),
        "--image_size",
        str(IMAGE_SIZE),
        "--per_device_train_batch_size",
        "2",
        "--gradient_accumulation_steps",
        "2",
        "--max_steps",
        "6",
        "--checkpointing_steps",
        "2",
        "--save_total_limit",
        "2",
        "--logging_steps",
        "4",
    ]
    reference = _run([*common, "--output_dir", str(tmp_path / "reference")])
    assert reference.returncode == 0, reference.stderr[-3000:]
    assert sorted(path.name for path in (tmp_path / "reference" / "checkpoints").iterdir()) == [
        "checkpoint_4",
        "checkpoint_6",
        "run.json",
    ]

    crashed_dir = tmp_path / "crashed"
    crashed = _run([*common, "--output_dir", str(crashed_dir), "--simulate_crash_after_steps", "3"])
    assert crashed.returncode == -signal.SIGKILL
    assert not (crashed_dir / "model.safetensors").exists()
    saved_state = json.loads((crashed_dir / "checkpoints" / "checkpoint_2" / "trainer_state.json").read_text())
    assert saved_state["epoch"] == 0 and saved_state["batches_in_epoch"] == 4  # stopped in the middle of epoch 1
    # A later checkpoint that was being written when the process died: complete-looking but never renamed.
    partial = crashed_dir / "checkpoints" / "checkpoint_5.tmp"
    partial.mkdir()
    (partial / "trainer_state.json").write_text(json.dumps({"global_step": 5, "epoch": 1, "batches_in_epoch": 2}))
    (partial / "model.safetensors").write_bytes(b"\x00" * 10)

    resumed = _run([*common, "--output_dir", str(crashed_dir), "--resume_from_checkpoint", "latest"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Resumed from" in resumed.stderr and "checkpoint_2 at step 2" in resumed.stderr
    assert "'latest' picked" in resumed.stderr
    expected, actual = _prompt_tensors(tmp_path / "reference"), _prompt_tensors(crashed_dir)
    assert expected.keys() == actual.keys() and expected
    for key in expected:
        assert torch.equal(expected[key], actual[key]), f"{key} differs after resuming"
    assert not partial.exists(), "leftover temporary checkpoints are cleaned up"
    # The trainer state, with its loss history averaged over windows that span the crash, is the uninterrupted one's.
    reference_state = json.loads((tmp_path / "reference" / "trainer_state.json").read_text())
    assert [entry["step"] for entry in reference_state["log_history"]] == [4, 6]
    assert json.loads((crashed_dir / "trainer_state.json").read_text()) == reference_state


# ------------------------------------------------------------------------------------------------ distributed


@pytest.mark.integration
def test_two_process_cpu_run_ends_with_identical_prompts_on_both(tiny_model_dir, tmp_path):
    output_dir = tmp_path / "ddp"
    port = free_port()
    # On a CPU-only machine accelerate starts several local processes with its multi-process launcher; --use_cpu
    # makes them one gloo process group.
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
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
        str(TRAIN_SCRIPT),
        "--use_cpu",
        "--model",
        str(tiny_model_dir),
        "--dataset",
        "synthetic",
        "--synthetic_domains",
        "stripes",
        "--synthetic_num_normal",
        "4",
        "--synthetic_num_anomalous",
        "4",
        "--image_size",
        str(IMAGE_SIZE),
        "--per_device_train_batch_size",
        "2",
        "--max_steps",
        "3",
        "--output_dir",
        str(output_dir),
    ]
    result = _run(command)
    assert result.returncode == 0, result.stderr[-3000:]
    state = json.loads((output_dir / "trainer_state.json").read_text())
    assert state["num_processes"] == 2
    digests = state["prompt_sha256_per_process"]
    assert len(digests) == 2 and digests[0] == digests[1]

    trained = FAPromptModel.from_pretrained(output_dir)
    assert _prompt_digest(trained.state_dict()) == digests[0] == state["prompt_sha256"]
    initial = _prompt_tensors(tiny_model_dir)
    assert any(not torch.equal(initial[key], value) for key, value in _prompt_tensors(output_dir).items())
    card = (output_dir / "README.md").read_text()
    front_matter = card.split("---")[1]
    assert "library_name: transformers" in front_matter
    assert all(f"- {tag}" in front_matter for tag in ("anomaly-detection", "zero-shot", "faprompt"))
    assert "8 images, 4 of them anomalous" in card
    assert (output_dir / "processor_config.json").is_file()


# ------------------------------------------------------------------------------------------------ precision, hub


def test_bf16_runs_the_frozen_clip_in_bf16_and_keeps_prompts_in_float32(
    tiny_tokenizer, small_train_set, tmp_path, fresh_accelerate_state
):
    model = _tiny_model(tiny_tokenizer)
    seen: list[tuple[torch.dtype, set[torch.dtype]]] = []

    def record(step: int, losses: dict[str, float]) -> None:
        prompt_dtypes = {parameter.dtype for parameter in model.prompt_learner.parameters()}
        seen.append((model.clip.vision_model.embeddings.patch_embedding.weight.dtype, prompt_dtypes))
        assert all(torch.isfinite(torch.tensor(list(losses.values()))))

    args = FAPromptTrainingArguments(
        output_dir=str(tmp_path),
        max_steps=2,
        per_device_train_batch_size=4,
        image_size=IMAGE_SIZE,
        mixed_precision="bf16",
    )
    trained = train(model, small_train_set, _processor(tiny_tokenizer), args, step_callback=record)
    assert seen == [(torch.bfloat16, {torch.float32})] * 2
    assert trained.clip.vision_model.embeddings.patch_embedding.weight.dtype == torch.float32
    reloaded = FAPromptModel.from_pretrained(tmp_path)
    assert _prompt_digest(reloaded.state_dict()) == _prompt_digest(trained.state_dict())


def test_push_to_hub_uploads_model_processor_and_card_without_checkpoints(
    tiny_tokenizer, small_train_set, tmp_path, monkeypatch, fresh_accelerate_state
):
    calls = {}

    class FakeApi:  # the huggingface_hub boundary
        def create_repo(self, repo_id, private, exist_ok):
            calls["create_repo"] = (repo_id, private)
            return type("RepoUrl", (), {"repo_id": f"user/{repo_id}"})()

        def upload_folder(self, repo_id, folder_path, ignore_patterns, commit_message, **kwargs):
            calls["upload"] = (repo_id, sorted(path.name for path in Path(folder_path).iterdir()), ignore_patterns)

    monkeypatch.setattr("faprompt_hf.hub.HfApi", FakeApi)
    args = FAPromptTrainingArguments(
        output_dir=str(tmp_path / "out"),
        max_steps=2,
        per_device_train_batch_size=4,
        image_size=IMAGE_SIZE,
        checkpointing_steps=1,
        push_to_hub=True,
        hub_model_id="faprompt-test",
        hub_private_repo=True,
    )
    train(_tiny_model(tiny_tokenizer), small_train_set, _processor(tiny_tokenizer), args)
    assert calls["create_repo"] == ("faprompt-test", True)
    repo_id, files, ignored = calls["upload"]
    assert repo_id == "user/faprompt-test"
    assert {"config.json", "model.safetensors", "processor_config.json", "README.md"} <= set(files)
    assert "checkpoints/*" in ignored and (tmp_path / "out" / "checkpoints" / "checkpoint_2").is_dir()


# ------------------------------------------------------------------------------------------------ resume rules


def _reset_accelerate() -> None:
    AcceleratorState._reset_state(True)
    GradientState._reset_state()


def _train_tiny(tokenizer, dataset, output_dir: Path, **overrides) -> FAPromptModel:
    """A fresh in-process run of the tiny model (batch 4, 64 px) with ``overrides`` of the arguments."""
    _reset_accelerate()
    arguments = {
        "output_dir": str(output_dir),
        "per_device_train_batch_size": 4,
        "image_size": IMAGE_SIZE,
        "learning_rate": 1e-2,
        **overrides,
    }
    return train(_tiny_model(tokenizer), dataset, _processor(tokenizer), FAPromptTrainingArguments(**arguments))


def _prompts(model: FAPromptModel) -> dict[str, torch.Tensor]:
    return {key: value.detach().clone() for key, value in model.prompt_learner.state_dict().items()}


def test_resume_applies_a_new_learning_rate_and_says_so(
    tiny_tokenizer, small_train_set, tmp_path, fresh_accelerate_state, caplog
):
    run = tmp_path / "run"
    at_step_2 = _prompts(_train_tiny(tiny_tokenizer, small_train_set, tmp_path / "two", max_steps=2))
    at_step_3 = _prompts(_train_tiny(tiny_tokenizer, small_train_set, run, max_steps=3, checkpointing_steps=2))
    with caplog.at_level("WARNING", logger="faprompt_hf.training"):
        faster = _prompts(
            _train_tiny(
                tiny_tokenizer,
                small_train_set,
                tmp_path / "faster",
                max_steps=3,
                learning_rate=0.5,
                resume_from_checkpoint=str(run / "checkpoints" / "checkpoint_2"),
            )
        )
    assert "learning_rate 0.01 -> 0.5" in caplog.text
    # Adam's step is proportional to the learning rate: the resumed step 3 is 50 times the saved run's.
    for key in at_step_2:
        expected = at_step_2[key] + 50 * (at_step_3[key] - at_step_2[key])
        assert torch.allclose(faster[key], expected, rtol=1e-3, atol=1e-6), key


def test_resume_refuses_changed_seed_and_image_size_unless_allowed(
    tiny_tokenizer, small_train_set, tmp_path, fresh_accelerate_state
):
    run = tmp_path / "run"
    _train_tiny(tiny_tokenizer, small_train_set, run, max_steps=1, checkpointing_steps=1)
    checkpoint = run / "checkpoints" / "checkpoint_1"
    saved = json.loads((checkpoint / "trainer_state.json").read_text())
    assert saved["arguments"]["learning_rate"] == 0.01 and saved["arguments"]["seed"] == 111
    with pytest.raises(ValueError, match=r"seed 111 -> 5; image_size 64 -> 32.*--allow_changed_arguments"):
        _train_tiny(
            tiny_tokenizer, small_train_set, run, max_steps=2, seed=5, image_size=32, resume_from_checkpoint="latest"
        )
    assert not (run / "checkpoints" / "checkpoint_2").exists()
    trained = _train_tiny(
        tiny_tokenizer,
        small_train_set,
        run,
        max_steps=2,
        seed=5,
        checkpointing_steps=1,
        resume_from_checkpoint="latest",
        allow_changed_arguments=True,
    )
    assert json.loads((run / "trainer_state.json").read_text())["global_step"] == 2
    assert trained.config.image_size == IMAGE_SIZE


@pytest.mark.integration
def test_latest_ignores_checkpoints_of_an_earlier_run(
    tiny_tokenizer, small_train_set, tmp_path, fresh_accelerate_state, caplog
):
    shared, other = tmp_path / "shared", tmp_path / "other"
    _train_tiny(tiny_tokenizer, small_train_set, shared, max_steps=3, checkpointing_steps=1)  # the earlier run
    _train_tiny(tiny_tokenizer, small_train_set, other, max_steps=1, checkpointing_steps=1)
    # A new run in the same folder, resumed explicitly from another run's checkpoint; it ends at step 2, replacing
    # the earlier run's checkpoint_2, which it may only do when told to.
    with pytest.raises(ValueError, match=r"checkpoints/checkpoint_2, checkpoints/checkpoint_3.*--overwrite_output_dir"):
        _train_tiny(
            tiny_tokenizer,
            small_train_set,
            shared,
            max_steps=2,
            checkpointing_steps=2,
            resume_from_checkpoint=str(other / "checkpoints" / "checkpoint_1"),
        )
    _train_tiny(
        tiny_tokenizer,
        small_train_set,
        shared,
        max_steps=2,
        checkpointing_steps=2,
        resume_from_checkpoint=str(other / "checkpoints" / "checkpoint_1"),
        overwrite_output_dir=True,
    )
    with caplog.at_level("WARNING", logger="faprompt_hf.training"):
        latest = find_latest_checkpoint(shared)
    assert latest == shared / "checkpoints" / "checkpoint_2"
    run_id = json.loads((shared / "checkpoints" / "run.json").read_text())["run_id"]
    assert json.loads((latest / "trainer_state.json").read_text())["run_id"] == run_id
    assert "Ignoring" in caplog.text and "checkpoint_3" in caplog.text  # the earlier run's newest, named


@pytest.fixture(scope="module")
def two_checkpoints(tiny_tokenizer, small_train_set, tmp_path_factory):
    run = tmp_path_factory.mktemp("two_checkpoints")
    _train_tiny(tiny_tokenizer, small_train_set, run, max_steps=2, checkpointing_steps=1)
    _reset_accelerate()
    return run


@pytest.mark.parametrize("damaged", ["model.safetensors", "optimizer.bin", "trainer_state.json"])
def test_damaged_latest_checkpoint_falls_back_to_the_previous_one(two_checkpoints, tmp_path, damaged, caplog):
    run = tmp_path / "run"
    shutil.copytree(two_checkpoints, run)
    path = run / "checkpoints" / "checkpoint_2" / damaged
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # truncated, as by a full disk or a kill
    with caplog.at_level("WARNING", logger="faprompt_hf.training"):
        assert find_latest_checkpoint(run) == run / "checkpoints" / "checkpoint_1"
    assert str(path) in caplog.text and "damaged" in caplog.text


def test_a_full_disk_during_a_checkpoint_names_the_path_and_keeps_earlier_checkpoints(
    tiny_tokenizer, small_train_set, tmp_path, fresh_accelerate_state, monkeypatch
):
    import accelerate.checkpointing

    import faprompt_hf.training as training

    real_save, calls = accelerate.checkpointing.save, []

    def save_until_the_disk_is_full(obj, path, *args, **kwargs):
        calls.append(path)
        if "checkpoint_2" in str(path):  # what torch.save raises when the disk fills up mid-write
            Path(path).write_bytes(b"PK\x03\x04partial")
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 4480 vs 4374")
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(accelerate.checkpointing, "save", save_until_the_disk_is_full)
    monkeypatch.setattr(training.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9, 0))
    with pytest.raises(OSError, match=r"checkpoint_2\.tmp.*No space left on device.*intact") as raised:
        _train_tiny(tiny_tokenizer, small_train_set, tmp_path, max_steps=3, checkpointing_steps=1)
    assert raised.value.errno == errno.ENOSPC
    checkpoints = tmp_path / "checkpoints"
    assert sorted(path.name for path in checkpoints.iterdir()) == ["checkpoint_1", "run.json"]
    assert find_latest_checkpoint(tmp_path) == checkpoints / "checkpoint_1"


def test_trainer_state_digest_is_that_of_the_saved_prompts(
    tiny_tokenizer, small_train_set, tmp_path, fresh_accelerate_state
):
    trained = _train_tiny(tiny_tokenizer, small_train_set, tmp_path, max_steps=1)  # a model built from a config
    state = json.loads((tmp_path / "trainer_state.json").read_text())
    saved = FAPromptModel.from_pretrained(tmp_path)
    assert state["prompt_sha256"] == _prompt_digest(saved.state_dict()) == _prompt_digest(trained.state_dict())
    assert state["prompt_sha256"] != hashlib.sha256(b"").hexdigest()


# ------------------------------------------------------------------------------------------------ nothing lost


class _Killed(BaseException):
    """Stands for a SIGKILL in an in-process run: the loop stops with no clean-up and no final save."""


def _kill_at(step: int):
    def callback(done: int, losses: dict[str, float]) -> None:
        if done >= step:
            raise _Killed

    return callback


def _train_tiny_killed(tokenizer, dataset, output_dir: Path, kill_at: int, **overrides) -> None:
    _reset_accelerate()
    arguments = {
        "output_dir": str(output_dir),
        "per_device_train_batch_size": 4,
        "image_size": IMAGE_SIZE,
        "learning_rate": 1e-2,
        **overrides,
    }
    with pytest.raises(_Killed):
        train(
            _tiny_model(tokenizer),
            dataset,
            _processor(tokenizer),
            FAPromptTrainingArguments(**arguments),
            step_callback=_kill_at(kill_at),
        )


def _file_digests(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def test_a_fresh_run_refuses_an_output_dir_holding_another_runs_checkpoints_and_model(
    tiny_tokenizer, small_train_set, tmp_path, fresh_accelerate_state
):
    out = tmp_path / "out"
    _train_tiny(tiny_tokenizer, small_train_set, out, max_steps=4, checkpointing_steps=1, seed=7)  # run A, finished
    before = _file_digests(out)
    with pytest.raises(ValueError) as refused:  # run B: --seed 8, no resume flag, same output_dir
        _train_tiny(tiny_tokenizer, small_train_set, out, max_steps=4, checkpointing_steps=1, seed=8)
    message = str(refused.value)
    assert str(out) in message and "A fresh run" in message
    assert "checkpoints/checkpoint_1, checkpoints/checkpoint_2" in message and "trained model" in message
    assert "--resume_from_checkpoint latest" in message and "--overwrite_output_dir" in message
    assert _file_digests(out) == before  # nothing of run A was touched
    # Told to, run B replaces run A's work.
    _train_tiny(
        tiny_tokenizer, small_train_set, out, max_steps=2, checkpointing_steps=1, seed=8, overwrite_output_dir=True
    )
    assert _file_digests(out)["model.safetensors"] != before["model.safetensors"]


def test_latest_refuses_to_replace_another_runs_checkpoint_copied_into_the_folder(
    tiny_tokenizer, small_train_set, tmp_path, fresh_accelerate_state
):
    out, other = tmp_path / "out", tmp_path / "other"
    _train_tiny_killed(tiny_tokenizer, small_train_set, out, kill_at=3, max_steps=4, checkpointing_steps=2)
    _train_tiny(tiny_tokenizer, small_train_set, other, max_steps=4, checkpointing_steps=4, seed=5)
    shutil.copytree(other / "checkpoints" / "checkpoint_4", out / "checkpoints" / "checkpoint_4")
    copied = _file_digests(out / "checkpoints" / "checkpoint_4")
    with pytest.raises(
        ValueError, match=r"Resuming the run recorded in .*run\.json would replace checkpoints/checkpoint_4"
    ):
        _train_tiny(
            tiny_tokenizer, small_train_set, out, max_steps=4, checkpointing_steps=2, resume_from_checkpoint="latest"
        )
    assert _file_digests(out / "checkpoints" / "checkpoint_4") == copied
    assert not (out / "model.safetensors").exists()


def test_a_checkpoint_save_never_replaces_another_runs_checkpoint(tmp_path):
    import faprompt_hf.training as training

    folder = tmp_path / "checkpoints" / "checkpoint_2"
    folder.mkdir(parents=True)
    (folder / "trainer_state.json").write_text(json.dumps({"run_id": "other", "global_step": 2}))
    checkpointer = training._Checkpointer.__new__(training._Checkpointer)
    checkpointer.folder, checkpointer.overwrite, checkpointer.accelerator = tmp_path / "checkpoints", False, None
    with pytest.raises(ValueError, match=r"checkpoint_2 was written by another run \(other\).*--overwrite_output_dir"):
        checkpointer.save(2, {"run_id": "mine"})
    assert json.loads((folder / "trainer_state.json").read_text())["run_id"] == "other"


def test_latest_follows_the_branch_an_explicit_resume_started(
    tiny_tokenizer, small_train_set, tmp_path, fresh_accelerate_state, caplog
):
    out = tmp_path / "out"
    original = _prompts(_train_tiny(tiny_tokenizer, small_train_set, out, max_steps=6, checkpointing_steps=2))
    branch_point = str(out / "checkpoints" / "checkpoint_2")
    # An explicit resume starts a new branch; its checkpoints would replace the first branch's: refused unless told.
    with pytest.raises(ValueError, match=r"starts a new branch .*checkpoint_4, checkpoints/checkpoint_6"):
        _train_tiny(
            tiny_tokenizer,
            small_train_set,
            out,
            max_steps=6,
            checkpointing_steps=2,
            learning_rate=0.05,
            resume_from_checkpoint=branch_point,
        )
    _train_tiny_killed(
        tiny_tokenizer,
        small_train_set,
        out,
        kill_at=5,
        max_steps=6,
        checkpointing_steps=2,
        learning_rate=0.05,
        resume_from_checkpoint=branch_point,
        overwrite_output_dir=True,
    )
    with caplog.at_level("INFO", logger="faprompt_hf.training"):
        resumed = _prompts(
            _train_tiny(
                tiny_tokenizer,
                small_train_set,
                out,
                max_steps=6,
                checkpointing_steps=2,
                learning_rate=0.05,
                resume_from_checkpoint="latest",
            )
        )
    assert f"Resumed from {out / 'checkpoints' / 'checkpoint_4'} at step 4" in caplog.text
    # The new branch continued (not the first branch's checkpoint_6, which would give back the original model) ...
    assert any(not torch.equal(original[key], value) for key, value in resumed.items())
    # ... and equals the branch run uninterrupted.
    straight = _prompts(
        _train_tiny(
            tiny_tokenizer,
            small_train_set,
            tmp_path / "straight",
            max_steps=6,
            learning_rate=0.05,
            resume_from_checkpoint=branch_point,
        )
    )
    for key, value in straight.items():
        assert torch.equal(resumed[key], value), key


def test_resume_refuses_other_data_or_another_clip_unless_allowed(
    tiny_tokenizer, small_train_set, tmp_path, fresh_accelerate_state
):
    run = tmp_path / "run"
    _train_tiny(tiny_tokenizer, small_train_set, run, max_steps=1, checkpointing_steps=1)
    saved = json.loads((run / "checkpoints" / "checkpoint_1" / "trainer_state.json").read_text())
    assert saved["data"]["num_items"] == 8 and saved["clip_fingerprint"].startswith("sha256-bf16-4096:")
    more = make_synthetic_dataset(domains=("stripes",), n_normal=4, n_anomalous=5, image_size=IMAGE_SIZE)
    with pytest.raises(ValueError, match=r"data None \(8 items.*-> None \(9 items.*--allow_changed_arguments"):
        _train_tiny(tiny_tokenizer, more, run, max_steps=2, resume_from_checkpoint="latest")
    _reset_accelerate()
    args = FAPromptTrainingArguments(
        output_dir=str(run),
        per_device_train_batch_size=4,
        image_size=IMAGE_SIZE,
        learning_rate=1e-2,
        max_steps=2,
        resume_from_checkpoint="latest",
    )
    other_clip = _tiny_model(tiny_tokenizer, seed=1)
    with pytest.raises(ValueError, match=r"CLIP fingerprint sha256-bf16-4096:\w+ -> sha256-bf16-4096:\w+"):
        train(other_clip, small_train_set, _processor(tiny_tokenizer), args)
    assert not (run / "checkpoints" / "checkpoint_2").exists()
    _train_tiny(tiny_tokenizer, more, run, max_steps=2, resume_from_checkpoint="latest", allow_changed_arguments=True)


def test_checkpoint_digests_find_zeroed_bytes_that_still_parse(two_checkpoints, tmp_path, caplog, monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(two_checkpoints, run)
    state = json.loads((run / "checkpoints" / "checkpoint_2" / "trainer_state.json").read_text())
    assert set(state["file_sha256"]) >= {"model.safetensors", "optimizer.bin"}
    path = run / "checkpoints" / "checkpoint_2" / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[-200:-150] = bytes(50)  # 50 zeroed bytes inside the tensor data: the file still parses
    path.write_bytes(bytes(data))
    load_file(path)
    with caplog.at_level("WARNING", logger="faprompt_hf.training"):
        assert find_latest_checkpoint(run) == run / "checkpoints" / "checkpoint_1"
    assert str(path) in caplog.text and "SHA-256" in caplog.text
    with pytest.raises(ValueError, match=r"model\.safetensors is damaged: its SHA-256"):
        training_module._check_checkpoint(run / "checkpoints" / "checkpoint_2")
    monkeypatch.setenv("FAPROMPT_VERIFY_DIGESTS", "0")  # the documented opt-out
    assert find_latest_checkpoint(run) == run / "checkpoints" / "checkpoint_2"


def test_script_has_the_overwrite_flag(train_script):
    _, training = _parse(train_script, "--dataset", "synthetic", "--overwrite_output_dir")
    assert training.overwrite_output_dir is True

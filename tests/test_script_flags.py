# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""The command-line flags of examples/train.py and examples/evaluate.py: shared names, aliases and checks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import CLIPModel, HfArgumentParser

from faprompt_hf import FAPromptImageProcessor, FAPromptModel, FAPromptProcessor
from faprompt_hf.script_flags import non_negative_float, parse_column_mapping, parse_json_object
from faprompt_hf.tiny import tiny_clip_config
from faprompt_hf.training import FAPromptTrainingArguments
from helpers import load_script

REPO_ROOT = Path(__file__).resolve().parents[1]
SMALL_CLIP_OVERRIDES = {"num_vv_blocks": 2, "deep_prompt_depth": 3, "deep_prompt_length": 2, "prior_num_patches": 4}
"""What a 4-layer, 64 px CLIP needs besides the token ids (docs/training.md, 'Training offline')."""


def _import_script(name: str):
    return load_script(name)


@pytest.fixture(scope="module")
def train_script():
    module = _import_script("train")
    yield module
    sys.modules.pop(module.__name__, None)


@pytest.fixture(scope="module")
def evaluate_script():
    module = _import_script("evaluate")
    yield module
    sys.modules.pop(module.__name__, None)


def _train_args(train_script, *argv: str):
    return HfArgumentParser((train_script.ScriptArguments, FAPromptTrainingArguments)).parse_args_into_dataclasses(
        args=list(argv)
    )


EVALUATE_BASE = ["--model", "some/model", "--dataset_format", "synthetic"]


# ------------------------------------------------------------------------------------------------ shared names


def test_both_scripts_take_the_canonical_names_and_the_old_ones(train_script, evaluate_script):
    for flags in (["--batch_size", "3"], ["--per_device_train_batch_size", "3"]):
        assert _train_args(train_script, *flags)[1].per_device_train_batch_size == 3
    for flags in (["--batch_size", "3"], ["--per_device_eval_batch_size", "3"]):
        assert evaluate_script.build_parser().parse_args([*EVALUATE_BASE, *flags]).batch_size == 3
    for flag in ("--use_cpu", "--cpu"):
        assert _train_args(train_script, flag)[1].use_cpu is True
        assert evaluate_script.build_parser().parse_args([*EVALUATE_BASE, flag]).use_cpu is True


@pytest.mark.parametrize("text", ['{"image": "img", "mask": "gt"}', "image=img,mask=gt", " image = img , mask=gt "])
def test_column_mapping_takes_json_or_pairs_in_both_scripts(train_script, evaluate_script, text):
    expected = {"image": "img", "mask": "gt"}
    assert parse_column_mapping(text) == expected
    assert evaluate_script.build_parser().parse_args([*EVALUATE_BASE, "--column_mapping", text]).column_mapping == (
        expected
    )
    script, _ = _train_args(train_script, "--dataset", "user/parts", "--column_mapping", text)
    train_script.check_script_arguments(script)


# ------------------------------------------------------------------------------------------------ refusals


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "-inf", "ten"])
def test_evaluate_refuses_a_bad_sigma(evaluate_script, value, capsys):
    for flag in ("--gaussian_sigma", "--sigma"):  # one knob, one name (--sigma is an alias)
        with pytest.raises(SystemExit) as raised:
            evaluate_script.main([*EVALUATE_BASE, f"{flag}={value}"])
        assert raised.value.code == 2
        assert "--gaussian_sigma must be a" in capsys.readouterr().err
        assert evaluate_script.build_parser().parse_args([*EVALUATE_BASE, flag, "0"]).gaussian_sigma == 0.0


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--dataset_kwargs", "{'a': 1}"),
        ("--dataset_kwargs", "[1]"),
        ("--column_mapping", '{"image": '),
        ("--column_mapping", "image"),
    ],
)
def test_evaluate_names_the_flag_of_malformed_json(evaluate_script, flag, value, capsys):
    with pytest.raises(SystemExit) as raised:
        evaluate_script.main([*EVALUATE_BASE, flag, value])
    assert raised.value.code == 2
    error = capsys.readouterr().err
    assert f"{flag} " in error and "e.g." in error


@pytest.mark.parametrize("flag", ["--dataset_kwargs", "--config_overrides", "--column_mapping"])
def test_train_names_the_flag_of_malformed_json(train_script, flag, tmp_path, capsys):
    data = ["--dataset", "user/parts"] if flag == "--column_mapping" else ["--dataset", "synthetic"]
    with pytest.raises(SystemExit) as raised:
        train_script.main([*data, flag, '{"num_abnormal_prompts": 5', "--output_dir", str(tmp_path)])
    assert raised.value.code == 2
    error = capsys.readouterr().err
    assert f"{flag} is not valid JSON" in error and "e.g." in error
    assert not any(tmp_path.iterdir()), "nothing is written before the flags are valid"


def test_train_refuses_bad_hyper_parameters_at_the_parser(train_script, capsys):
    with pytest.raises(SystemExit) as raised:
        train_script.main(["--dataset", "synthetic", "--learning_rate", "nan"])
    assert raised.value.code == 2 and "learning_rate must be a finite number" in capsys.readouterr().err


def test_parsers_of_the_library():
    assert parse_json_object('{"a": [1]}', "--dataset_kwargs") == {"a": [1]}
    with pytest.raises(ValueError, match=r"--config_overrides must be a JSON object, got list"):
        parse_json_object("[1, 2]", "--config_overrides")
    assert non_negative_float("--sigma")("2.5") == 2.5


# ------------------------------------------------------------------------------------------------ the CLIP


@pytest.mark.integration
def test_offline_with_an_unknown_clip_fails_fast_and_says_how_to_train_offline(tmp_path):
    # Timed from after the imports (which take seconds on a loaded machine) to the error.
    argv = ["--clip", "no-such-user/no-such-clip", "--dataset", "synthetic", "--output_dir", str(tmp_path / "out")]
    code = (
        "import importlib.util, sys, time\n"
        f"spec = importlib.util.spec_from_file_location('train_script', {str(REPO_ROOT / 'examples' / 'train.py')!r})\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "sys.modules[spec.name] = module\n"
        "spec.loader.exec_module(module)\n"
        "start = time.monotonic()\n"
        "try:\n"
        f"    module.main({argv!r})\n"
        "finally:\n"
        "    print(f'SECONDS {time.monotonic() - start:.1f}', file=sys.stderr)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"},
    )
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert float(lines[-1].split()[1]) < 30
    error = lines[-2]
    assert "--clip" in error and "HF_HUB_OFFLINE" in error and "local folder" in error
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def clip_without_tokenizer(tmp_path_factory, tiny_tokenizer) -> Path:
    folder = tmp_path_factory.mktemp("tiny_clip")
    torch.manual_seed(0)
    CLIPModel(tiny_clip_config(tiny_tokenizer, image_size=64)).save_pretrained(folder)
    return folder


def test_clip_folder_without_tokenizer_names_the_fix(train_script, clip_without_tokenizer, tmp_path, capsys):
    with pytest.raises(SystemExit) as raised:
        train_script.main(
            [
                "--clip",
                str(clip_without_tokenizer),
                "--config_overrides",
                json.dumps(SMALL_CLIP_OVERRIDES),
                "--dataset",
                "synthetic",
                "--image_size",
                "64",
                "--output_dir",
                str(tmp_path),
            ]
        )
    assert raised.value.code == 2
    error = capsys.readouterr().err
    assert "tokenizer files" in error and "--config_overrides" in error


def test_clip_smaller_than_the_default_config_names_the_overrides(
    train_script, clip_without_tokenizer, tmp_path, capsys
):
    argv = ["--clip", str(clip_without_tokenizer), "--dataset", "synthetic", "--output_dir", str(tmp_path)]
    with pytest.raises(SystemExit) as raised:
        train_script.main(argv)
    assert raised.value.code == 2
    error = capsys.readouterr().err
    assert "does not fit the CLIP" in error and "num_vv_blocks" in error and "--config_overrides" in error


def test_training_starts_without_a_tokenizer(train_script, clip_without_tokenizer, tiny_tokenizer, tmp_path):
    from accelerate.state import AcceleratorState, GradientState

    token_ids = FAPromptProcessor(FAPromptImageProcessor(size=64), tiny_tokenizer).prompt_token_ids()
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    try:
        trained = train_script.main(
            [
                "--clip",
                str(clip_without_tokenizer),
                "--config_overrides",
                json.dumps({**SMALL_CLIP_OVERRIDES, **token_ids}),
                "--dataset",
                "synthetic",
                "--synthetic_domains",
                "stripes",
                "--synthetic_num_normal",
                "1",
                "--synthetic_num_anomalous",
                "2",
                "--image_size",
                "64",
                "--max_steps",
                "1",
                "--batch_size",
                "2",
                "--output_dir",
                str(tmp_path),
            ]
        )
    finally:
        AcceleratorState._reset_state(True)
        GradientState._reset_state()
    assert trained.config.normal_placeholder_token_id == token_ids["normal_placeholder_token_id"]
    assert FAPromptModel.from_pretrained(tmp_path).config.image_size == 64


def test_model_keeps_its_image_size_unless_given(train_script, clip_without_tokenizer, tiny_tokenizer, tmp_path):
    from accelerate.state import AcceleratorState, GradientState

    model_dir = tmp_path / "model"
    token_ids = FAPromptProcessor(FAPromptImageProcessor(size=64), tiny_tokenizer).prompt_token_ids()
    FAPromptModel.from_clip(
        str(clip_without_tokenizer), image_size=64, **SMALL_CLIP_OVERRIDES, **token_ids
    ).save_pretrained(model_dir)
    common = [
        "--model",
        str(model_dir),
        "--dataset",
        "synthetic",
        "--synthetic_domains",
        "stripes",
        "--synthetic_num_normal",
        "1",
        "--synthetic_num_anomalous",
        "2",
        "--max_steps",
        "1",
        "--batch_size",
        "2",
    ]
    sizes = {}
    for name, extra in (("kept", []), ("given", ["--image_size", "32"])):
        AcceleratorState._reset_state(True)
        GradientState._reset_state()
        try:
            train_script.main([*common, *extra, "--output_dir", str(tmp_path / name)])
        finally:
            AcceleratorState._reset_state(True)
            GradientState._reset_state()
        processor = FAPromptProcessor.from_pretrained(tmp_path / name).image_processor
        sizes[name] = (FAPromptModel.from_pretrained(tmp_path / name).config.image_size, processor.size["height"])
    assert sizes == {"kept": (64, 64), "given": (32, 32)}


# ------------------------------------------------------------------------------------------------ one definition


def test_the_scripts_are_thin_wrappers_over_the_library(train_script, evaluate_script):
    from faprompt_hf import evaluate_command, train_command
    from faprompt_hf.cli_flags import TrainScriptArguments

    assert train_script.ScriptArguments is TrainScriptArguments
    assert train_script.main is train_command.main and evaluate_script.main is evaluate_command.main
    help_text = " ".join(train_script.build_parser().format_help().split())
    assert "(default: X) ... (default: None)" not in help_text
    assert help_text.count("--per_device_train_batch_size PER_DEVICE_TRAIN_BATCH_SIZE, --batch_size") == 1
    assert "Images per batch on each process. (default: 8)" in help_text

# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""The ``faprompt-hf`` front door: one flag definition, fast help, --version, train/evaluate/app, paths vs hub ids."""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from accelerate.state import AcceleratorState, GradientState
from transformers import HfArgumentParser

from faprompt_hf import FAPromptModel
from faprompt_hf.cli import build_parser
from faprompt_hf.cli import main as cli_main
from faprompt_hf.cli_flags import (
    APP_MODEL_ENV,
    TrainScriptArguments,
    add_app_arguments,
    add_evaluate_arguments,
    add_train_arguments,
    parse_app_args,
)
from faprompt_hf.defaults import DEFAULT_AUPRO, DEFAULT_ONNX_OPSET, __version__
from faprompt_hf.file_utils import check_model_reference, looks_like_local_path
from faprompt_hf.launch import requested_num_processes, warn_if_fewer_processes
from faprompt_hf.train_command import build_parser as build_train_parser
from faprompt_hf.train_command import parse_train_args
from faprompt_hf.training import FAPromptTrainingArguments
from helpers import OFFLINE_ENV, load_script

REPO_ROOT = Path(__file__).resolve().parents[1]
SRC = REPO_ROOT / "src"


def _env() -> dict[str, str]:
    return {**os.environ, **OFFLINE_ENV, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}


def _subparser(name: str) -> argparse.ArgumentParser:
    actions = [action for action in build_parser()._actions if isinstance(action, argparse._SubParsersAction)]
    return actions[0].choices[name]


# ------------------------------------------------------------------------------------------------ help and version


@pytest.mark.integration
@pytest.mark.parametrize("argv", [["--help"], ["predict", "--help"], ["train", "--help"], ["evaluate", "--help"],
                                  ["benchmark", "--help"], ["export", "--help"], ["convert", "--help"],
                                  ["app", "--help"], ["references", "--help"], ["--version"]])  # fmt: skip
def test_help_and_version_import_neither_torch_nor_transformers(argv):
    code = (
        "import sys, faprompt_hf_cli\n"
        "try:\n"
        f"    faprompt_hf_cli.main({argv!r})\n"
        "except SystemExit as exit:\n"
        "    assert exit.code in (0, None), exit.code\n"
        "heavy = sorted(n for n in ('torch', 'transformers', 'datasets', 'accelerate', 'gradio') if n in sys.modules)\n"
        "print('HEAVY', heavy, file=sys.stderr)\n"
    )
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=120)
    seconds = time.perf_counter() - start
    assert result.returncode == 0, result.stderr[-2000:]
    assert "HEAVY []" in result.stderr
    assert seconds < 10  # well under `import torch` even on a loaded machine (about 0.3 s measured)
    if argv == ["--version"]:
        assert result.stdout.strip() == f"faprompt-hf {__version__}"
    if argv == ["app", "--help"]:  # the app's own flags, from the one definition
        assert "--max_calibration_images" in result.stdout and "--no_folder_calibration" in result.stdout


@pytest.mark.integration
@pytest.mark.parametrize("script", ["train", "evaluate", "app"])
def test_the_scripts_help_imports_neither_torch_nor_gradio(script):
    code = (
        "import runpy, sys\n"
        f"sys.argv = [{str(REPO_ROOT / 'examples' / f'{script}.py')!r}, '--help']\n"
        "try:\n"
        "    runpy.run_path(sys.argv[0], run_name='__main__')\n"
        "except SystemExit as exit:\n"
        "    assert exit.code in (0, None), exit.code\n"
        "heavy = sorted(n for n in ('torch', 'transformers', 'gradio') if n in sys.modules)\n"
        "print('HEAVY', heavy, file=sys.stderr)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "HEAVY []" in result.stderr
    assert "--server_port" in result.stdout if script == "app" else "--output_dir" in result.stdout


@pytest.mark.parametrize("command", ["predict", "train", "evaluate", "export", "convert", "app", "references"])
def test_every_help_line_shows_its_default_once(command):
    for action in _subparser(command)._actions:
        if action.help in (None, argparse.SUPPRESS) or action.dest == "help" or not action.option_strings:
            continue
        text = action.help.lower()
        if action.required or action.dest == "model":  # evaluate: --model or --original_checkpoint, one required
            continue
        assert "default" in text, f"{command} {action.option_strings[0]} shows no default: {action.help!r}"
        assert text.count("(default:") <= 1, f"{command} {action.option_strings[0]}: {action.help!r}"


def test_version_in_process(capsys):
    with pytest.raises(SystemExit) as raised:
        cli_main(["--version"])
    assert raised.value.code == 0 and capsys.readouterr().out.strip() == f"faprompt-hf {__version__}"


# ------------------------------------------------------------------------------------------------ one definition


def _option_table(parser: argparse.ArgumentParser) -> dict[str, tuple]:
    return {
        action.dest: (tuple(action.option_strings), action.default, action.help, action.choices)
        for action in parser._actions
        if action.dest != "help"
    }


def test_train_and_evaluate_take_exactly_the_scripts_flags():
    train_script, evaluate_script = load_script("train", "train_cli_test"), load_script("evaluate", "evaluate_cli_test")
    try:
        assert _option_table(_subparser("train")) == _option_table(train_script.build_parser())
        assert _option_table(_subparser("evaluate")) == _option_table(evaluate_script.build_parser())
    finally:
        sys.modules.pop("train_cli_test", None)
        sys.modules.pop("evaluate_cli_test", None)
    train_flags = _option_table(add_train_arguments(argparse.ArgumentParser()))
    for field_name in [*FAPromptTrainingArguments.__dataclass_fields__, *TrainScriptArguments.__dataclass_fields__]:
        assert field_name in train_flags, f"--{field_name} is missing from faprompt-hf train"
    evaluate_flags = _option_table(add_evaluate_arguments(argparse.ArgumentParser()))
    assert evaluate_flags["aupro"][1] == DEFAULT_AUPRO


@pytest.mark.parametrize(
    "argv",
    [
        ["--dataset", "synthetic", "--allow_changed_arguments", "--use_cpu", "--seed", "3", "--classes", "a", "b"],
        [
            "--dataset_format",
            "mvtec",
            "--dataset_path",
            "/m",
            "--cpu",
            "--batch_size",
            "4",
            "--mixed_precision",
            "bf16",
        ],
        ["--dataset", "user/parts", "--push_to_hub", "false", "--max_grad_norm", "1.5", "--image_size", "64"],
    ],
)
def test_the_flag_builder_parses_as_hf_argument_parser(argv):
    script, training, mix = parse_train_args(build_train_parser(), argv)
    expected_script, expected_training = HfArgumentParser(
        (TrainScriptArguments, FAPromptTrainingArguments)
    ).parse_args_into_dataclasses(args=argv)
    assert (script, training, mix) == (expected_script, expected_training, None)


def test_mix_flags_are_parser_flags_shown_in_the_help():
    parser = build_train_parser()
    text = " ".join(parser.format_help().split())
    assert "--mix_strategy {proportional,equal}" in text and "to train on a mix" in text
    argv = ["--dataset_format", "mvtec", "--dataset_path", "/m", "--dataset_format", "synthetic"]
    script, _, mix = parse_train_args(parser, [*argv, "--mix_strategy", "equal"])
    assert mix.formats == ["mvtec", "synthetic"] and mix.paths == ["/m", None] and mix.strategy == "equal"
    assert (script.dataset_format, script.dataset_path) == ("mvtec", "/m")
    with pytest.raises(ValueError, match="--classes applies to one dataset"):
        parse_train_args(parser, [*argv, "--classes", "bottle"])
    with pytest.raises(ValueError, match="--mix_strategy mixes several datasets"):
        parse_train_args(parser, ["--dataset_format", "mvtec", "--dataset_path", "/m", "--mix_strategy", "equal"])


def test_the_default_opset_is_the_documented_one():
    assert f"default: {DEFAULT_ONNX_OPSET}" in _subparser("export").format_help()
    deployment = (REPO_ROOT / "docs" / "deployment.md").read_text()
    assert f"default: opset {DEFAULT_ONNX_OPSET}" in deployment and "default: the exporter's (18" not in deployment


# ------------------------------------------------------------------------------------------------ the commands


def test_train_and_evaluate_run_through_the_front_door(model_dir, tmp_path, fresh_accelerate_state, capsys):
    cli_main(
        ["train", "--model", str(model_dir), "--dataset", "synthetic", "--synthetic_domains", "stripes"]
        + ["--synthetic_num_normal", "1", "--synthetic_num_anomalous", "2", "--max_steps", "1", "--batch_size", "2"]
        + ["--use_cpu", "--output_dir", str(tmp_path / "trained")]
    )
    assert FAPromptModel.from_pretrained(tmp_path / "trained").config.image_size == 32
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    cli_main(
        ["evaluate", "--model", str(tmp_path / "trained"), "--dataset_format", "synthetic", "--num_workers", "0"]
        + ["--dataset_kwargs", '{"n_normal": 2, "n_anomalous": 2, "image_size": 64}', "--classes", "stripes"]
        + ["--use_cpu", "--output_dir", str(tmp_path / "metrics")]
    )
    assert (tmp_path / "metrics" / "metrics.json").is_file()
    assert "stripes" in capsys.readouterr().out


def test_train_errors_name_the_front_door(tmp_path, capsys):
    with pytest.raises(SystemExit) as raised:
        cli_main(["train", "--dataset", "synthetic", "--learning_rate", "nan", "--output_dir", str(tmp_path)])
    assert raised.value.code == 2
    assert "faprompt-hf train: error: learning_rate must be a finite number" in capsys.readouterr().err


def test_app_without_gradio_says_how_to_install_it(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *args: None if name == "gradio" else real_find_spec(name, *args)
    )
    with pytest.raises(SystemExit) as raised:
        cli_main(["app"])
    assert "pip install 'faprompt-hf[demo]'" in str(raised.value.code)


def test_app_flags_are_checked_before_gradio_is_looked_for(monkeypatch, capsys):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: pytest.fail(f"looked for {name}"))
    with pytest.raises(SystemExit) as raised:
        cli_main(["app", "--max_images", "0"])
    assert raised.value.code == 2
    assert "faprompt-hf app: error: --max_images must be > 0, got 0." in capsys.readouterr().err


def test_app_and_its_script_share_one_flag_definition(monkeypatch):
    assert _option_table(_subparser("app")) == _option_table(add_app_arguments(argparse.ArgumentParser()))
    script = (REPO_ROOT / "examples" / "app.py").read_text()
    assert "add_argument(" not in script and "parse_app_args(argv)" in script  # no flag of its own
    monkeypatch.setenv(APP_MODEL_ENV, "space/model")
    monkeypatch.setenv("GRADIO_SERVER_NAME", "0.0.0.0")  # as on a hub Space: no folder calibration by default
    args = parse_app_args(["--max_images", "4"])
    assert (args.model, args.max_images, args.folder_calibration) == ("space/model", 4, False)
    assert parse_app_args(["--server_name", "127.0.0.1"]).folder_calibration
    assert not parse_app_args(["--server_name", "127.0.0.1", "--share"]).folder_calibration


def test_benchmark_is_wired(capsys):
    with pytest.raises(SystemExit) as raised:
        cli_main(["benchmark", "--help"])
    assert raised.value.code == 0 and "--data_root" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------------ paths vs hub ids


@pytest.mark.parametrize(
    ("name", "is_path"),
    [("owner/model", False), ("model", False), ("./model", True), ("/abs/model", True), ("~/model", True),
     ("runs/exp1/model", True), ("runs/", True)],
)  # fmt: skip
def test_what_looks_like_a_local_path(name, is_path):
    assert looks_like_local_path(name) is is_path


def test_a_missing_local_folder_fails_at_once_with_close_names(tmp_path, monkeypatch):
    (tmp_path / "small-rn50").mkdir()
    (tmp_path / "unrelated").mkdir()
    monkeypatch.chdir(tmp_path)
    start = time.perf_counter()
    with pytest.raises(FileNotFoundError, match=r"'\./small-rn': no such folder; close names in \./?: small-rn50"):
        FAPromptModel.from_pretrained("./small-rn")
    with pytest.raises(FileNotFoundError, match="no such folder"):
        check_model_reference(tmp_path / "nope" / "deeper")
    assert time.perf_counter() - start < 5  # no hub retries
    check_model_reference("owner/model")  # a hub id is left to the hub


# ------------------------------------------------------------------------------------------------ processes


def test_fewer_processes_than_asked_are_warned_about(caplog):
    launcher = ["/usr/bin/python", "/usr/bin/accelerate", "launch", "--cpu", "--num_processes", "2", "train.py"]
    environ = {"ACCELERATE_USE_CPU": "True", "ACCELERATE_MIXED_PRECISION": "no"}
    assert requested_num_processes(environ, launcher) == 2
    message = warn_if_fewer_processes(1, environ, launcher)
    assert "asked for 2 processes but 1 started" in message and "--multi_gpu --num_processes 2" in message
    assert warn_if_fewer_processes(2, environ, launcher) is None
    assert warn_if_fewer_processes(1, {}, launcher) is None  # not under accelerate launch
    assert requested_num_processes({**environ, "MASTER_ADDR": "127.0.0.1"}, []) == 2


# ------------------------------------------------------------------------------------------------ references


def _save_images(folder: Path, count: int, seed: int) -> Path:
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for index in range(count):
        Image.fromarray(rng.integers(0, 256, (36, 44, 3), dtype=np.uint8)).save(folder / f"{index}.png")
    return folder


def _predict_scores(model: Path, images: Path, output_dir: Path, *extra: str) -> list[str]:
    from faprompt_hf.predict import PREDICTIONS_CSV

    cli_main(["predict", str(images), "--model", str(model), "--output_dir", str(output_dir), "--num_workers", "0"]
             + ["--no_progress", "--threshold", "0.5", *extra])  # fmt: skip
    return [line.split(",")[1] for line in (output_dir / PREDICTIONS_CSV).read_text().splitlines()[1:]]


def test_references_saves_a_complete_model_folder_with_the_bank(model_dir, tmp_path, capsys):
    good, parts = _save_images(tmp_path / "good", 3, 0), _save_images(tmp_path / "parts", 2, 1)
    output = tmp_path / "with_refs"
    cli_main(["references", "--model", str(model_dir), "--images", str(good), "--class_name", "screw"]
             + ["--output_dir", str(output), "--device", "cpu"])  # fmt: skip
    printed = capsys.readouterr().out
    assert "Stored 3 normal references as class 'screw'" in printed and "embedded CLIP" in printed
    loaded = FAPromptModel.from_pretrained(output)
    assert loaded.normal_reference_classes == ["screw"] and loaded.config.normal_reference_image_counts == [3]
    assert loaded.normal_references.features.shape[0] == loaded.config.normal_reference_patch_counts[0] > 0
    assert (output / "processor_config.json").is_file() and loaded.config.weights_include_clip is True
    # the saved bank scores as the references given to predict do
    with_bank = _predict_scores(output, parts, tmp_path / "p_bank")
    given = _predict_scores(model_dir, parts, tmp_path / "p_given", "--references", str(good), "--reference_class", "x")
    assert with_bank == given and with_bank != _predict_scores(model_dir, parts, tmp_path / "p_zero")
    # another class is added to the bank, the same class replaced
    cli_main(["references", "--model", str(output), "--images", str(good / "0.png"), "--output_dir", str(output)])
    cli_main(["references", "--model", str(output), "--images", str(good / "1.png"), "--class_name", "screw"]
             + ["--output_dir", str(output)])  # fmt: skip
    again = FAPromptModel.from_pretrained(output)
    bank = dict(zip(again.normal_reference_classes, again.config.normal_reference_image_counts, strict=True))
    assert bank == {"screw": 1, "default": 1}


def test_references_keeps_a_compact_checkpoint_compact_with_its_tokenizer(tiny_tokenizer, make_tiny_config, tmp_path):
    import torch
    from transformers import AutoProcessor, CLIPModel

    from faprompt_hf import FAPromptConfig, FAPromptImageProcessor, FAPromptProcessor
    from faprompt_hf.tiny import tiny_clip_config

    clip_dir, compact = tmp_path / "clip", tmp_path / "compact"
    torch.manual_seed(0)
    CLIPModel(tiny_clip_config(tiny_tokenizer)).save_pretrained(clip_dir)
    overrides = make_tiny_config().to_dict()
    fields = {name for name in FAPromptConfig.__dataclass_fields__ if not name.startswith(("clip", "weights"))}
    model = FAPromptModel.from_clip(str(clip_dir), **{key: overrides[key] for key in fields if key in overrides})
    model.save_pretrained(compact, include_clip=False)
    FAPromptProcessor(FAPromptImageProcessor(size=32), tokenizer=tiny_tokenizer).save_pretrained(compact)
    output = tmp_path / "out"
    cli_main(["references", "--model", str(compact), "--images", str(_save_images(tmp_path / "good", 2, 0))]
             + ["--output_dir", str(output)])  # fmt: skip
    loaded = FAPromptModel.from_pretrained(output)
    assert loaded.config.weights_include_clip is False and loaded.normal_reference_classes == ["default"]
    assert (output / "model.safetensors").stat().st_size < (compact / "model.safetensors").stat().st_size * 2
    processor = AutoProcessor.from_pretrained(output)
    assert isinstance(processor, FAPromptProcessor) and processor.tokenizer is not None


@pytest.mark.parametrize(
    ("case", "words"),
    [
        ("missing folder", ["--images", "nowhere", "no such file or folder"]),
        ("empty folder", ["--images", "empty", "holds no images"]),
        ("unreadable image", ["--images", "bad.png", "fix the file or leave it out"]),
        ("output_dir is a file", ["--output_dir", "taken", "is a file, not a folder"]),
    ],
)
def test_references_errors_name_the_input_and_the_fix(model_dir, tmp_path, capsys, case, words):
    images, output = tmp_path / "nowhere", tmp_path / "out"
    if case == "empty folder":
        images = tmp_path / "empty"
        images.mkdir()
    elif case == "unreadable image":
        images = _save_images(tmp_path / "good", 1, 0)
        (images / "bad.png").write_bytes(b"not a png")
    elif case == "output_dir is a file":
        images, output = _save_images(tmp_path / "good", 1, 0), tmp_path / "taken"
        output.write_text("x")
    with pytest.raises(SystemExit) as raised:
        cli_main(["references", "--model", str(model_dir), "--images", str(images), "--output_dir", str(output)])
    error = capsys.readouterr().err
    assert raised.value.code == 2 and error.startswith("faprompt-hf references: error:")
    assert all(word in error for word in words), error
    assert not (tmp_path / "out").exists()


@pytest.mark.integration
def test_the_references_command_runs_from_the_console_launcher(model_dir, tmp_path):
    good = _save_images(tmp_path / "good", 2, 0)
    code = (
        "import faprompt_hf_cli\n"
        f"faprompt_hf_cli.main(['references', '--model', {str(model_dir)!r}, '--images', {str(good)!r}, "
        f"'--class_name', 'screw', '--output_dir', {str(tmp_path / 'out')!r}])\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Stored 2 normal references as class 'screw'" in result.stdout
    assert FAPromptModel.from_pretrained(tmp_path / "out").normal_reference_classes == ["screw"]

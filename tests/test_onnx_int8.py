# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""int8 ONNX export (``export_onnx(..., quantize="int8")``): parity with float32, the recorded settings, bad input."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

from faprompt_hf import FAPromptModel, export_onnx
from faprompt_hf.onnx import ONNX_CONFIG_NAME, ONNX_FILE_NAME, ONNXAnomalyDetector
from faprompt_hf.onnx.export import QUANTIZATION_MODES, quantize_onnx_file

MIN_MAP_COSINE = 0.999


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.reshape(-1).astype(np.float64), b.reshape(-1).astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.fixture(scope="module")
def model(tiny_tokenizer):
    from faprompt_hf.tiny import tiny_faprompt_config

    torch.manual_seed(5)
    return FAPromptModel(tiny_faprompt_config(tokenizer=tiny_tokenizer)).eval()


@pytest.fixture(scope="module")
def exports(model, tmp_path_factory):
    root = tmp_path_factory.mktemp("onnx_int8")
    export_onnx(model, root / "float32")
    export_onnx(model, root / "int8", quantize="int8")
    return root / "float32", root / "int8"


@pytest.mark.integration
def test_int8_export_is_recorded_smaller_and_quantised(exports):
    float32, int8 = exports
    assert json.loads((float32 / ONNX_CONFIG_NAME).read_text())["quantization"] is None
    settings = json.loads((int8 / ONNX_CONFIG_NAME).read_text())["quantization"]
    assert settings["method"] == "dynamic" and settings["weight_type"] == "int8" and settings["op_types"] == ["MatMul"]
    assert not [path.name for path in int8.iterdir() if path.name.startswith(".")]  # no staging leftovers
    graph = onnx.load(str(int8 / ONNX_FILE_NAME))
    onnx.checker.check_model(graph, full_check=True)
    op_types = {node.op_type for node in graph.graph.node}
    assert "MatMulInteger" in op_types and "DynamicQuantizeLinear" in op_types
    int8_weights = [init for init in graph.graph.initializer if init.data_type == onnx.TensorProto.INT8]
    assert int8_weights, "no int8 weights in the quantised graph"
    assert [value.name for value in graph.graph.input] == ["pixel_values"]
    assert [value.name for value in graph.graph.output] == ["image_scores", "anomaly_maps"]
    assert (int8 / ONNX_FILE_NAME).stat().st_size < 0.8 * (float32 / ONNX_FILE_NAME).stat().st_size


@pytest.mark.integration
def test_int8_maps_match_float32_and_the_runtime_loads_it(model, exports, make_pixels, images):
    float32, int8 = exports
    pixel_values = make_pixels(3, seed=7)
    with torch.no_grad():
        expected = model(pixel_values=pixel_values)
    fp32_detector, int8_detector = ONNXAnomalyDetector(float32), ONNXAnomalyDetector(int8)
    scores, maps = int8_detector.run(pixel_values.numpy())
    assert scores.shape == (3,) and maps.shape == (3, 32, 32) and maps.dtype == np.float32
    assert cosine(maps, expected.anomaly_maps.numpy()) >= MIN_MAP_COSINE
    fp32_scores, fp32_maps = fp32_detector.run(pixel_values.numpy())
    assert cosine(maps, fp32_maps) >= MIN_MAP_COSINE
    np.testing.assert_allclose(scores, expected.image_scores.numpy(), atol=0.05)
    assert not np.array_equal(maps, fp32_maps)  # it is the quantised graph that ran

    results = int8_detector(images[:2], batch_size=2, threshold=0.5)
    assert [result["anomaly_map"].shape for result in results] == [image.size[::-1] for image in images[:2]]
    assert all(0.0 <= result["score"] <= 1.0 for result in results)


def test_unknown_quantize_is_a_value_error_naming_the_allowed_values(model, tmp_path):
    for bad in ["int4", "INT8", True, 8, "fp16"]:
        with pytest.raises(ValueError, match=r"quantize=.*'int8'") as error:
            export_onnx(model, tmp_path / "out", quantize=bad)
        assert repr(bad) in str(error.value)
    assert not (tmp_path / "out").exists()  # refused before tracing: nothing written
    assert QUANTIZATION_MODES == ("int8",)


def test_quantize_onnx_file_refuses_an_unknown_mode_before_touching_the_file(tmp_path):
    graph = tmp_path / ONNX_FILE_NAME
    graph.write_bytes(b"not a graph")
    with pytest.raises(ValueError, match="int4"):
        quantize_onnx_file(graph, "int4")
    assert graph.read_bytes() == b"not a graph"


@pytest.mark.integration
def test_the_export_command_writes_an_int8_graph_that_verifies(model, tmp_path, capsys):
    from faprompt_hf.cli import main as cli_main

    model.save_pretrained(tmp_path / "model")
    cli_main(["export", "--model", str(tmp_path / "model"), "--output", str(tmp_path / "onnx"), "--quantize", "int8"])
    assert "int8" in capsys.readouterr().out
    settings = json.loads((tmp_path / "onnx" / ONNX_CONFIG_NAME).read_text())
    assert settings["quantization"]["weight_type"] == "int8"
    ONNXAnomalyDetector(tmp_path / "onnx").run(np.zeros((1, 3, 32, 32), np.float32))  # its recorded digest holds


def test_the_export_flag_offers_exactly_the_library_modes():
    import argparse

    from faprompt_hf.cli_flags import add_export_arguments

    action = next(a for a in add_export_arguments(argparse.ArgumentParser())._actions if a.dest == "quantize")
    assert tuple(action.choices) == tuple(QUANTIZATION_MODES)

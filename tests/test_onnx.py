# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""ONNX export and the PyTorch-free runtime: graph contents, parity with PyTorch, pipeline equality, bad input."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import textwrap
import time

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from PIL import Image

from faprompt_hf import (
    FAPromptAnomalyDetectionPipeline,
    FAPromptConfig,
    FAPromptImageProcessor,
    FAPromptModel,
    clip_vit_large_patch14_336_config,
    export_onnx,
)
from faprompt_hf.cli import main as cli_main
from faprompt_hf.onnx import ONNX_CONFIG_NAME, ONNX_FILE_NAME, PREPROCESSOR_CONFIG_NAME, ONNXAnomalyDetector

TOLERANCE = 1e-4
THRESHOLD = 0.37


def run_graph(directory, pixel_values: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    session = onnxruntime.InferenceSession(str(directory / ONNX_FILE_NAME), providers=["CPUExecutionProvider"])
    return tuple(session.run(["image_scores", "anomaly_maps"], {"pixel_values": pixel_values.numpy()}))


def assert_parity(model: FAPromptModel, directory, pixel_values: torch.Tensor) -> None:
    scores, maps = run_graph(directory, pixel_values)
    with torch.no_grad():
        expected = model(pixel_values=pixel_values)
    assert scores.shape == (pixel_values.shape[0],) and maps.shape == (pixel_values.shape[0], *pixel_values.shape[2:])
    np.testing.assert_allclose(scores, expected.image_scores.numpy(), atol=TOLERANCE, rtol=0)
    np.testing.assert_allclose(maps, expected.anomaly_maps.numpy(), atol=TOLERANCE, rtol=0)


@pytest.fixture(scope="module")
def top_m_model(tiny_tokenizer):
    from faprompt_hf.tiny import tiny_faprompt_config

    torch.manual_seed(3)
    model = FAPromptModel(tiny_faprompt_config(tokenizer=tiny_tokenizer, prior_patch_selection="top_m")).eval()
    model.config.anomaly_threshold = THRESHOLD
    return model


@pytest.fixture(scope="module")
def top_m_export(top_m_model, tmp_path_factory):
    directory = tmp_path_factory.mktemp("onnx_top_m")
    export_onnx(top_m_model, directory)
    return directory


@pytest.fixture(scope="module")
def first_m_model(tiny_tokenizer):
    from faprompt_hf.tiny import tiny_faprompt_config

    torch.manual_seed(4)
    return FAPromptModel(tiny_faprompt_config(tokenizer=tiny_tokenizer, prior_patch_selection="first_m")).eval()


@pytest.fixture(scope="module")
def first_m_non_square_export(first_m_model, tmp_path_factory):
    directory = tmp_path_factory.mktemp("onnx_first_m")
    export_onnx(first_m_model, directory, image_size=(32, 48))
    return directory


@pytest.fixture(scope="module")
def images():
    """Images of several modes and sizes, as users pass them."""
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (40, 56, 3), dtype=np.uint8))
    return [
        rgb,
        Image.fromarray(rng.integers(0, 256, (29, 37), dtype=np.uint8)),  # L
        Image.fromarray(rng.integers(0, 256, (33, 31, 4), dtype=np.uint8), mode="RGBA"),
        rgb.convert("P"),
        rng.integers(0, 65536, (36, 30), dtype=np.uint16),  # 16-bit grey array
        rng.random((3, 20, 44)).astype(np.float32),  # channels-first float array
    ]


# ------------------------------------------------------------------------------------------------ the graph


@pytest.mark.integration
def test_export_writes_a_checked_graph_with_processor_config_and_threshold(top_m_model, top_m_export):
    assert sorted(path.name for path in top_m_export.iterdir()) == sorted(
        [ONNX_FILE_NAME, ONNX_CONFIG_NAME, PREPROCESSOR_CONFIG_NAME]
    )
    onnx.checker.check_model(str(top_m_export / ONNX_FILE_NAME), full_check=True)
    graph = onnx.load(str(top_m_export / ONNX_FILE_NAME)).graph
    (pixel_values,) = graph.input
    assert pixel_values.name == "pixel_values"
    assert pixel_values.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    dims = pixel_values.type.tensor_type.shape.dim
    assert dims[0].dim_param and [dim.dim_value for dim in dims[1:]] == [3, 32, 32]
    assert [output.name for output in graph.output] == ["image_scores", "anomaly_maps"]

    settings = json.loads((top_m_export / ONNX_CONFIG_NAME).read_text())
    assert settings["anomaly_threshold"] == THRESHOLD and settings["image_size"] == [32, 32]
    assert settings["gaussian_sigma"] == top_m_model.config.gaussian_sigma
    processor = FAPromptImageProcessor.from_pretrained(top_m_export)
    assert processor.size == {"height": 32, "width": 32}


@pytest.mark.integration
def test_static_prompt_side_is_baked_into_the_graph(top_m_model, top_m_export):
    graph = onnx.load(str(top_m_export / ONNX_FILE_NAME)).graph
    table_shape = list(top_m_model.clip.text_model.embeddings.token_embedding.weight.shape)
    assert all(list(initializer.dims) != table_shape for initializer in graph.initializer)
    assert not any("token_embedding" in initializer.name for initializer in graph.initializer)
    # One text-tower pass (the prior-conditioned prompts) plus the vision tower: one LayerNorm pair per block.
    text_layers = top_m_model.config.clip_config.text_config.num_hidden_layers
    vision_layers = top_m_model.config.clip_config.vision_config.num_hidden_layers
    layer_norms = sum(node.op_type == "LayerNormalization" for node in graph.node)
    assert layer_norms == 2 * text_layers + 1 + 2 * vision_layers + 2  # + final, pre and post layer norms


@pytest.mark.integration
@pytest.mark.parametrize("batch", [1, 2, 5])
def test_parity_with_pytorch_at_several_batch_sizes(top_m_model, top_m_export, make_pixels, batch):
    assert_parity(top_m_model, top_m_export, make_pixels(batch, 32, seed=batch))


@pytest.mark.integration
@pytest.mark.parametrize("batch", [1, 3])
def test_first_m_exports_at_a_non_square_size(first_m_model, first_m_non_square_export, batch):
    pixel_values = torch.randn(batch, 3, 32, 48, generator=torch.Generator().manual_seed(batch))
    assert_parity(first_m_model, first_m_non_square_export, pixel_values)


@pytest.mark.integration
def test_cli_exports_a_bf16_model_in_float32(top_m_model, tmp_path, make_pixels):
    saved = tmp_path / "bf16_model"
    copy.deepcopy(top_m_model).to(torch.bfloat16).save_pretrained(saved)
    output = tmp_path / "exported"
    cli_main(["export", "--model", str(saved), "--output", str(output), "--opset", "18", "--image_size", "40"])

    graph = onnx.load(str(output / ONNX_FILE_NAME))
    assert graph.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert {entry.domain: entry.version for entry in graph.opset_import}[""] == 18
    assert json.loads((output / ONNX_CONFIG_NAME).read_text())["image_size"] == [40, 40]
    reloaded = FAPromptModel.from_pretrained(saved).float().eval()
    assert_parity(reloaded, output, make_pixels(2, 40))


# ------------------------------------------------------------------------------------------------ the runtime


@pytest.mark.integration
def test_runtime_equals_the_pytorch_pipeline(top_m_model, top_m_export, images, tmp_path):
    path = tmp_path / "part.png"
    images[0].save(path)
    inputs = [str(path), *images]
    pipeline = FAPromptAnomalyDetectionPipeline(model=top_m_model, image_processor=FAPromptImageProcessor(size=32))
    expected = pipeline(inputs)
    detector = ONNXAnomalyDetector(top_m_export)
    assert detector.threshold == THRESHOLD
    results = detector(inputs, batch_size=3)
    assert results == [] or len(results) == len(inputs)
    for result, reference in zip(results, expected, strict=True):
        assert_same_result(result, reference)
    single = detector(inputs[1])
    np.testing.assert_array_equal(single["anomaly_map"], results[1]["anomaly_map"])
    assert single["score"] == pytest.approx(results[1]["score"], abs=1e-6)


def assert_same_result(result: dict, reference: dict) -> None:
    assert list(result) == ["score", "is_anomalous", "anomaly_map", "mask", "overlay"] == list(reference)
    assert result["score"] == pytest.approx(reference["score"], abs=TOLERANCE)
    if abs(reference["score"] - THRESHOLD) > TOLERANCE:
        assert result["is_anomalous"] == reference["is_anomalous"]
    assert result["anomaly_map"].dtype == np.float32 and result["anomaly_map"].shape == reference["anomaly_map"].shape
    np.testing.assert_allclose(result["anomaly_map"], reference["anomaly_map"], atol=TOLERANCE, rtol=0)
    clear = np.abs(reference["anomaly_map"] - 0.5) > TOLERANCE
    np.testing.assert_array_equal(result["mask"][clear], reference["mask"][clear])
    assert result["overlay"].size == reference["overlay"].size
    overlay_difference = np.abs(np.asarray(result["overlay"], int) - np.asarray(reference["overlay"], int))
    assert overlay_difference.max() <= 1


@pytest.mark.integration
def test_runtime_threshold_arguments_and_uncalibrated_warning(top_m_export, first_m_non_square_export, images):
    detector = ONNXAnomalyDetector(top_m_export)
    score = detector(images[0])["score"]
    assert detector(images[0], threshold=score)["is_anomalous"] is True
    assert detector(images[0], threshold=score + 1e-6)["is_anomalous"] is False
    low = detector(images[0], pixel_threshold=0.0, return_overlay=False)
    assert low["mask"].all() and low["overlay"] is None
    with pytest.raises(ValueError, match=r"threshold must be finite and lie in \[0, 1\]"):
        detector(images[0], threshold=1.5)

    uncalibrated = ONNXAnomalyDetector(first_m_non_square_export)
    assert uncalibrated.threshold is None
    uncalibrated(images[0], threshold=0.2)  # an explicit threshold does not use up the warning
    with pytest.warns(UserWarning, match="uncalibrated"):
        result = uncalibrated(images[0])
    assert result["is_anomalous"] == (result["score"] >= 0.5)
    assert result["anomaly_map"].shape == (40, 56)


@pytest.mark.integration
def test_runtime_without_torch_transformers_or_scipy(top_m_model, top_m_export, images, tmp_path):
    for index, image in enumerate(images):
        if isinstance(image, np.ndarray):
            np.save(tmp_path / f"{index}.npy", image)
        else:
            image.save(tmp_path / f"{index}.png")
    script = textwrap.dedent(
        f"""
        import sys
        for name in ("torch", "transformers", "scipy"):
            sys.modules[name] = None  # any import of them now fails
        from pathlib import Path
        import numpy as np
        from PIL import Image
        import faprompt_hf
        from faprompt_hf.onnx import ONNXAnomalyDetector

        try:
            faprompt_hf.FAPromptModel
        except ImportError as error:
            assert "PyTorch" in str(error), error
        else:
            raise AssertionError("FAPromptModel imported without torch")
        folder = Path({str(tmp_path)!r})
        images = []
        for index in range({len(images)}):
            npy = folder / f"{{index}}.npy"
            images.append(np.load(npy) if npy.exists() else Image.open(folder / f"{{index}}.png"))
        results = ONNXAnomalyDetector({str(top_m_export)!r})(images, batch_size=2)
        np.savez(
            folder / "results.npz",
            scores=np.array([r["score"] for r in results]),
            **{{f"map{{i}}": r["anomaly_map"] for i, r in enumerate(results)}},
            **{{f"overlay{{i}}": np.asarray(r["overlay"]) for i, r in enumerate(results)}},
        )
        heavy = sorted(name for name in ("torch", "transformers", "scipy") if sys.modules.get(name) is not None)
        assert not heavy, heavy
        """
    )
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]

    saved = np.load(tmp_path / "results.npz")
    reloaded = [
        np.load(tmp_path / f"{i}.npy") if (tmp_path / f"{i}.npy").exists() else None for i in range(len(images))
    ]
    inputs = [Image.open(tmp_path / f"{i}.png") if array is None else array for i, array in enumerate(reloaded)]
    pipeline = FAPromptAnomalyDetectionPipeline(model=top_m_model, image_processor=FAPromptImageProcessor(size=32))
    for index, reference in enumerate(pipeline(inputs)):
        assert saved["scores"][index] == pytest.approx(reference["score"], abs=TOLERANCE)
        np.testing.assert_allclose(saved[f"map{index}"], reference["anomaly_map"], atol=TOLERANCE, rtol=0)
        overlay_difference = np.abs(saved[f"overlay{index}"].astype(int) - np.asarray(reference["overlay"], int))
        assert overlay_difference.max() <= 1


# ------------------------------------------------------------------------------------------------ bad input


def test_export_rejects_sizes_that_are_not_patch_multiples(top_m_model, tmp_path):
    with pytest.raises(ValueError, match="not a multiple of the patch size 8.*for example 32"):
        export_onnx(top_m_model, tmp_path / "out", image_size=30)
    with pytest.raises(ValueError, match="positive int"):
        export_onnx(top_m_model, tmp_path / "out", image_size=(32, 0))
    with pytest.raises(ValueError, match="prior needs 4"):
        export_onnx(top_m_model, tmp_path / "out", image_size=8)
    assert not (tmp_path / "out").exists()


def test_export_rejects_unknown_opsets_and_file_paths(top_m_model, tmp_path):
    for opset in (7, 99, "18"):
        with pytest.raises(ValueError, match=f"opset {opset!r}.*from 18 to"):
            export_onnx(top_m_model, tmp_path / "out", opset=opset)
    with pytest.raises(SystemExit):
        cli_main(["export", "--model", "x", "--output", str(tmp_path), "--opset", "eighteen"])
    with pytest.raises(ValueError, match="must be a folder"):
        export_onnx(top_m_model, tmp_path / "model.onnx")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.integration
def test_missing_onnx_packages_give_an_install_hint(top_m_model, top_m_export, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ImportError, match=r'pip install "faprompt-hf\[onnx\]"'):
        ONNXAnomalyDetector(top_m_export)
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ImportError, match=r'pip install "faprompt-hf\[onnx\]"'):
        export_onnx(top_m_model, tmp_path / "out")


@pytest.mark.integration
def test_folders_without_the_onnx_file_or_configs(top_m_export, tmp_path):
    with pytest.raises(FileNotFoundError, match="not found.*faprompt-hf export"):
        ONNXAnomalyDetector(tmp_path / "nowhere")
    for name in (ONNX_CONFIG_NAME, PREPROCESSOR_CONFIG_NAME):
        (tmp_path / name).write_bytes((top_m_export / name).read_bytes())
    with pytest.raises(FileNotFoundError, match=f"No ONNX graph at .*{ONNX_FILE_NAME}.*faprompt-hf export"):
        ONNXAnomalyDetector(tmp_path)
    (tmp_path / ONNX_FILE_NAME).write_bytes((top_m_export / ONNX_FILE_NAME).read_bytes())
    (tmp_path / PREPROCESSOR_CONFIG_NAME).unlink()
    with pytest.raises(FileNotFoundError, match=f"{PREPROCESSOR_CONFIG_NAME} is missing"):
        ONNXAnomalyDetector(tmp_path)


@pytest.mark.integration
def test_runtime_rejects_bad_inputs(top_m_export, tmp_path):
    detector = ONNXAnomalyDetector(top_m_export)
    with pytest.raises(FileNotFoundError, match="does_not_exist.png"):
        detector(str(tmp_path / "does_not_exist.png"))
    with pytest.raises(ValueError, match="shape"):
        detector(np.zeros((5, 6, 7), dtype=np.uint8))
    with pytest.raises(ValueError, match="threshold must be finite"):
        detector(np.zeros((8, 8), np.uint8), threshold=float("nan"))
    with pytest.raises(ValueError, match="batch_size"):
        detector(np.zeros((8, 8), np.uint8), batch_size=0)
    with pytest.raises(ValueError, match=r"pixel_values must have shape \(B, 3, 32, 32\)"):
        detector.run(np.zeros((1, 3, 16, 16), np.float32))


# ------------------------------------------------------------------------------------------------ ViT-L/14@336


@pytest.mark.large  # deselected by default (pyproject addopts); run with: python -m pytest -m large
def test_parity_on_the_vit_l_14_336_configuration_at_518_px(tmp_path):
    torch.manual_seed(0)
    model = FAPromptModel(FAPromptConfig(clip_config=clip_vit_large_patch14_336_config().to_dict())).eval()
    start = time.perf_counter()
    export_onnx(model, tmp_path, image_size=518)
    print(f"ViT-L/14@336 export at 518 px: {time.perf_counter() - start:.0f} s")
    assert_parity(model, tmp_path, torch.randn(1, 3, 518, 518, generator=torch.Generator().manual_seed(1)))


def test_the_export_wrapper_traces_the_public_forward_without_patching_the_model(top_m_model):
    """FAPromptForONNX passes the baked prompts to forward(static_prompts=...): nothing is set on the model."""
    from faprompt_hf.onnx.export import FAPromptForONNX

    before = dict(vars(top_m_model))
    seen = []
    hook = top_m_model.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append((set(vars(module)) - set(before), kwargs.get("static_prompts"))),
        with_kwargs=True,
    )
    try:
        wrapper = FAPromptForONNX(top_m_model).eval()
        pixels = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            scores, maps = wrapper(pixels)
            expected = top_m_model(pixel_values=pixels)
    finally:
        hook.remove()
    assert seen[0][0] == set() and seen[0][1] is not None  # no attribute added; the baked prompts came as an argument
    assert vars(top_m_model).keys() == before.keys()
    torch.testing.assert_close(scores, expected.image_scores, atol=1e-6, rtol=0)
    torch.testing.assert_close(maps, expected.anomaly_maps, atol=1e-6, rtol=0)


# -------------------------------------------------------------------------------------- runtime = forward's rules


@pytest.fixture
def export_copy(top_m_export, tmp_path):
    """A copy of the export folder to edit."""
    import shutil

    directory = tmp_path / "export"
    shutil.copytree(top_m_export, directory)
    shutil.copytree(top_m_export, tmp_path / "intact")
    return directory


def _edit_json(path, **changes) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


@pytest.mark.integration
def test_runtime_run_has_the_input_rules_of_forward(top_m_export):
    detector = ONNXAnomalyDetector(top_m_export)
    good = np.zeros((1, 3, 32, 32), np.float32)
    detector.run(good)
    with pytest.raises(ValueError, match=r"shape \(0, 3, 32, 32\), a batch of 0 images"):  # was SIGFPE
        detector.run(np.zeros((0, 3, 32, 32), np.float32))
    with pytest.raises(TypeError, match="must be a numpy array .* got str"):
        detector.run("abc")
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match="contains NaN or inf"):
            detector.run(np.full((1, 3, 32, 32), bad, np.float32))
    with pytest.raises(ValueError, match="dtype uint8.*raw integer pixels"):
        detector.run(np.full((1, 3, 32, 32), 255, np.uint8))
    with pytest.raises(ValueError, match=r"channels-last.*transpose\(0, 3, 1, 2\)"):
        detector.run(np.zeros((1, 32, 32, 3), np.float32))
    with pytest.raises(ValueError, match=r"pixel_values\[None\]"):
        detector.run(np.zeros((3, 32, 32), np.float32))


@pytest.mark.integration
def test_runtime_overlay_options_are_checked(top_m_export):
    detector = ONNXAnomalyDetector(top_m_export)
    image = np.zeros((8, 8), np.uint8)
    with pytest.raises(ValueError, match=r"overlay_normalize must be True .* got 'yes' \(str\)"):
        detector(image, overlay_normalize="yes")
    with pytest.raises(ValueError, match=r"overlay_normalize must be .*got \(1.0, 0.0\)"):
        detector(image, overlay_normalize=(1.0, 0.0))
    with pytest.raises(ValueError, match="overlay_alpha must be finite and lie in"):
        detector(image, overlay_alpha=float("nan"))
    detector(image, overlay_normalize=(0, 1), overlay_alpha=1)


@pytest.mark.integration
@pytest.mark.parametrize(
    ("file", "changes", "pattern"),
    [
        (ONNX_CONFIG_NAME, {"anomaly_threshold": 2.0}, r"onnx_config\.json: anomaly_threshold must be finite .*2\.0"),
        (
            ONNX_CONFIG_NAME,
            {"input_name": "image"},
            r"names the input 'image', but the graph's input is \['pixel_values'\]",
        ),
        (ONNX_CONFIG_NAME, {"output_names": ["anomaly_maps", "image_scores"]}, r"look swapped"),
        (ONNX_CONFIG_NAME, {"output_names": ["scores", "maps"]}, r"names the outputs \['scores', 'maps'\]"),
        (ONNX_CONFIG_NAME, {"output_names": "image_scores"}, r"output_names a list of 2 strings"),
        (PREPROCESSOR_CONFIG_NAME, {"image_mean": [0.5, 0.5]}, r"image_mean must be 3 finite numbers .*\[0\.5, 0\.5\]"),
        (PREPROCESSOR_CONFIG_NAME, {"image_std": [0.5, 0.0, 0.5]}, r"image_std must be > 0"),
        (
            PREPROCESSOR_CONFIG_NAME,
            {"size": {"height": 64, "width": 64}},
            r"gives the size \[64, 64\] but .*\[32, 32\]",
        ),
        (PREPROCESSOR_CONFIG_NAME, {"size": 32}, r"size must be \{\"height\": H, \"width\": W\}"),
        (PREPROCESSOR_CONFIG_NAME, {"resample": "cubic"}, r"resample must be one of"),
    ],
)
def test_runtime_refuses_edited_configs_naming_the_file(export_copy, file, changes, pattern):
    _edit_json(export_copy / file, **changes)
    with pytest.raises(ValueError, match=pattern):
        ONNXAnomalyDetector(export_copy)


@pytest.mark.integration
def test_runtime_refuses_configs_of_another_size_than_the_graph(export_copy):
    for name in (ONNX_CONFIG_NAME, PREPROCESSOR_CONFIG_NAME):
        data = json.loads((export_copy / name).read_text())
        if name == ONNX_CONFIG_NAME:
            data["image_size"] = [64, 64]
        else:
            data["size"] = {"height": 64, "width": 64}
        (export_copy / name).write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"has shape \[.*32, 32\], but .* give the size \[64, 64\]"):
        ONNXAnomalyDetector(export_copy)


def _graph_weights(directory):
    """The file holding the graph's weights (the external data file when there is one)."""
    data = directory / f"{ONNX_FILE_NAME}.data"
    return data if data.is_file() else directory / ONNX_FILE_NAME


@pytest.mark.integration
def test_runtime_verifies_the_graph_files_digests(export_copy, monkeypatch):
    recorded = json.loads((export_copy / ONNX_CONFIG_NAME).read_text())["file_sha256"]
    assert ONNX_FILE_NAME in recorded
    weights = _graph_weights(export_copy)
    # Zero the bytes of the largest weight tensor where they lie in the file: the graph still parses and runs.
    graph = onnx.load(export_copy / ONNX_FILE_NAME, load_external_data=False)
    largest = max(graph.graph.initializer, key=lambda tensor: len(tensor.raw_data))
    data = weights.read_bytes()
    start = data.index(largest.raw_data) if largest.raw_data else len(data) // 2
    count = min(2000, len(largest.raw_data) or 2000)
    weights.write_bytes(data[:start] + bytes(count) + data[start + count :])
    with pytest.raises(OSError, match=rf"{weights.name} is damaged: its SHA-256 .*verify_digests=False"):
        ONNXAnomalyDetector(export_copy)
    damaged = ONNXAnomalyDetector(export_copy, verify_digests=False)  # the opt-outs
    pixels = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    assert not np.array_equal(damaged.run(pixels)[1], ONNXAnomalyDetector(export_copy.parent / "intact").run(pixels)[1])
    monkeypatch.setenv("FAPROMPT_VERIFY_DIGESTS", "0")
    ONNXAnomalyDetector(export_copy)


@pytest.mark.integration
def test_a_truncated_graph_names_its_files(export_copy):
    weights = _graph_weights(export_copy)
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(OSError, match=rf"onnxruntime cannot load the graph .*{ONNX_FILE_NAME}.*export the model again"):
        ONNXAnomalyDetector(export_copy, verify_digests=False)


@pytest.mark.integration
def test_export_refuses_a_processor_that_is_not_one(top_m_model, tmp_path):
    with pytest.raises(TypeError, match=r"processor must be an FAPromptImageProcessor .*got 'tiny' \(str\)"):
        export_onnx(top_m_model, tmp_path / "out", processor="tiny")
    with pytest.raises(ValueError, match=r"image_size must be a positive int .*got 32\.0"):
        export_onnx(top_m_model, tmp_path / "out", image_size=32.0)


@pytest.mark.integration
def test_export_removes_the_staging_folder_a_killed_export_left(top_m_model, tmp_path):
    destination = tmp_path / "out"
    code = textwrap.dedent(
        f"""
        import os, signal
        import faprompt_hf.file_utils as file_utils
        with file_utils.staged_directory({str(destination)!r}) as staging:
            (staging / "model.onnx").write_bytes(b"partial")
            os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    subprocess.run([sys.executable, "-c", code], check=False, timeout=120)
    left = [path for path in tmp_path.iterdir() if path.name.startswith(".out.")]
    assert len(left) == 1 and left[0].is_dir()
    export_onnx(top_m_model, destination)
    assert [path.name for path in tmp_path.iterdir()] == ["out"]
    ONNXAnomalyDetector(destination)


# -------------------------------------------------------------------------------------- normal references


REFERENCE_COUNTS = {"bottle": 3, "screw": 2}


@pytest.fixture(scope="module")
def reference_model(top_m_model):
    """The top-M model with a normal-reference bank of two classes."""
    model = copy.deepcopy(top_m_model)
    generator = torch.Generator().manual_seed(11)
    for name, count in REFERENCE_COUNTS.items():
        model.set_normal_references(torch.randn(count, 3, 32, 32, generator=generator), class_name=name)
    return model


@pytest.fixture(scope="module")
def reference_export(reference_model, tmp_path_factory):
    directory = tmp_path_factory.mktemp("onnx_references")
    export_onnx(reference_model, directory, normal_reference_class="screw")
    return directory


def assert_reference_parity(model, directory, pixel_values, reference_class) -> tuple[float, float]:
    """The graph's and the runtime's outputs against the fused ones of PyTorch; returns the largest differences."""
    with torch.no_grad():
        expected = model(pixel_values=pixel_values, normal_reference_class=reference_class)
    assert expected.reference_maps is not None
    scores, maps = run_graph(directory, pixel_values)
    runtime_scores, runtime_maps = ONNXAnomalyDetector(directory).run(pixel_values.numpy())
    for found_scores, found_maps in ((scores, maps), (runtime_scores, runtime_maps)):
        np.testing.assert_allclose(found_scores, expected.image_scores.numpy(), atol=TOLERANCE, rtol=0)
        np.testing.assert_allclose(found_maps, expected.anomaly_maps.numpy(), atol=TOLERANCE, rtol=0)
    return (
        float(np.abs(scores - expected.image_scores.numpy()).max()),
        float(np.abs(maps - expected.anomaly_maps.numpy()).max()),
    )


@pytest.mark.integration
@pytest.mark.parametrize("batch", [1, 2, 5])
def test_references_export_the_chosen_class_with_fused_parity(reference_model, reference_export, batch):
    pixel_values = torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(20 + batch))
    score_error, map_error = assert_reference_parity(reference_model, reference_export, pixel_values, "screw")
    print(f"ONNX with references, batch {batch}: max |score diff| {score_error:.2e}, max |map diff| {map_error:.2e}")
    # Not the other class's outputs, nor the zero-shot ones.
    with torch.no_grad():
        other = reference_model(pixel_values=pixel_values, normal_reference_class="bottle")
    assert np.abs(run_graph(reference_export, pixel_values)[1] - other.anomaly_maps.numpy()).max() > 10 * TOLERANCE


@pytest.mark.integration
def test_references_export_holds_one_class_and_records_it(reference_model, reference_export):
    settings = json.loads((reference_export / ONNX_CONFIG_NAME).read_text())
    patch_counts = reference_model.config.normal_reference_patch_counts
    assert settings["normal_reference_class"] == "screw"
    assert settings["normal_reference_image_count"] == REFERENCE_COUNTS["screw"]
    assert settings["normal_reference_patch_count"] == patch_counts[1]
    assert settings["reference_map_weight"] == reference_model.config.reference_map_weight
    detector = ONNXAnomalyDetector(reference_export)
    assert (detector.normal_reference_class, detector.normal_reference_image_count) == ("screw", 2)
    # The graph holds the screw rows (or their transpose) as a constant, and no tensor of the whole bank.
    rows = reference_model.normal_reference_features("screw").numpy()
    constants = [
        onnx.numpy_helper.to_array(tensor) for tensor in onnx.load(reference_export / ONNX_FILE_NAME).graph.initializer
    ]
    assert any(array.shape == rows.shape and np.array_equal(array, rows) for array in constants) or any(
        array.shape == rows.T.shape and np.array_equal(array, rows.T) for array in constants
    )
    assert not any(sum(patch_counts) in array.shape for array in constants)


@pytest.mark.integration
def test_a_zero_shot_export_records_no_references(top_m_export):
    settings = json.loads((top_m_export / ONNX_CONFIG_NAME).read_text())
    assert settings["normal_reference_class"] is None and settings["normal_reference_image_count"] is None
    assert ONNXAnomalyDetector(top_m_export).normal_reference_class is None


@pytest.mark.integration
def test_cli_exports_a_one_class_bank_by_itself(top_m_model, tmp_path, capsys):
    model = copy.deepcopy(top_m_model)
    model.set_normal_references(torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(12)))
    model.save_pretrained(tmp_path / "model")
    output = tmp_path / "exported"
    cli_main(["export", "--model", str(tmp_path / "model"), "--output", str(output), "--check"])
    printed = capsys.readouterr().out
    assert "normal references: class 'default', 2 image(s)" in printed and "parity with PyTorch" in printed
    assert json.loads((output / ONNX_CONFIG_NAME).read_text())["normal_reference_class"] == "default"
    reloaded = FAPromptModel.from_pretrained(tmp_path / "model")
    assert_reference_parity(
        reloaded, output, torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(13)), None
    )


def test_export_of_several_reference_classes_needs_one_chosen(reference_model, tmp_path):
    with pytest.raises(ValueError, match=r"several classes \['bottle', 'screw'\].*normal_reference_class=NAME"):
        export_onnx(reference_model, tmp_path / "out")
    with pytest.raises(ValueError, match=r"'cable' is not a class .*it holds \['bottle', 'screw'\]"):
        export_onnx(reference_model, tmp_path / "out", normal_reference_class="cable")
    assert not (tmp_path / "out").exists()

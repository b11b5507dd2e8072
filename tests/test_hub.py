# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""Models that travel: remote code without the package, compact checkpoints, load errors, model cards, uploads."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from huggingface_hub import HfApi, ModelCard
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from transformers import AutoModel, CLIPModel, pipeline
from transformers.dynamic_module_utils import get_imports, get_relative_imports

from faprompt_hf import FAPromptConfig, FAPromptImageProcessor, FAPromptModel, FAPromptProcessor
from faprompt_hf.hub import clip_fingerprint, remote_code_files, write_model_card
from faprompt_hf.pipeline_faprompt import ANOMALY_DETECTION_TASK
from faprompt_hf.processing_faprompt import prompt_token_ids
from faprompt_hf.tiny import tiny_clip_config

HUB_CLIP = "tiny-org/tiny-clip"
COMMIT_MAIN, COMMIT_OTHER = "a" * 40, "b" * 40
SMALL = {"image_size": 32, "prior_num_patches": 4, "num_vv_blocks": 2, "deep_prompt_depth": 3}
OUTPUT_KEYS = ("image_scores", "anomaly_maps", "prior_patch_scores")
# Packages a saved folder's code may import, as transformers' import check of the hub path finds them (what
# `pip install transformers torch pillow` brings; the optional matplotlib is imported inside try blocks only): no
# scipy, which only the metrics need.
ALLOWED_REMOTE_IMPORTS = {
    "torch",
    "transformers",
    "numpy",
    "PIL",
    "huggingface_hub",
    "safetensors",
}
# What a saved folder's code may not contain: metrics, training, evaluation, model cards, calibration, plots.
NOT_REMOTE_CODE = {"metrics.py", "training.py", "evaluation.py", "hub.py", "calibration.py", "visualization.py"}


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory, tiny_tokenizer):
    """A hub cache holding the tiny CLIP ``tiny-org/tiny-clip`` (with its tokenizer, as hub CLIPs have) at two commits:
    main (seed 0) and another (seed 1)."""
    cache = tmp_path_factory.mktemp("hub_cache")
    repo = cache / f"models--{HUB_CLIP.replace('/', '--')}"
    for seed, commit in ((0, COMMIT_MAIN), (1, COMMIT_OTHER)):
        torch.manual_seed(seed)
        CLIPModel(tiny_clip_config(tiny_tokenizer)).save_pretrained(repo / "snapshots" / commit)
        tiny_tokenizer.save_pretrained(repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT_MAIN)
    return cache


@pytest.fixture
def hub_clip_model(hub_cache, make_tiny_config):
    """An FAPromptModel built with from_clip on the cached hub CLIP, with trained-looking (non-initial) prompts."""
    overrides = make_tiny_config().to_dict()
    fields = {name for name in FAPromptConfig.__dataclass_fields__ if not name.startswith("clip")}
    model = FAPromptModel.from_clip(
        HUB_CLIP, cache_dir=str(hub_cache), **{key: overrides[key] for key in fields if key in overrides}
    )
    torch.manual_seed(3)
    with torch.no_grad():
        for parameter in model.prompt_learner.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    return model.eval()


def outputs(model, pixels):
    with torch.no_grad():
        result = model(pixel_values=pixels)
    return {key: getattr(result, key) for key in OUTPUT_KEYS}


def assert_same_outputs(first, second):
    for key in OUTPUT_KEYS:
        assert torch.equal(first[key], second[key]), key


def save_with_processor(model, folder, **kwargs):
    model.save_pretrained(folder, **kwargs)
    FAPromptProcessor(image_processor=FAPromptImageProcessor(size=model.config.image_size)).save_pretrained(folder)
    return folder


# ----------------------------------------------------------------------------------------------------------------------
# Remote code
# ----------------------------------------------------------------------------------------------------------------------

_CHILD = r"""
import json, sys
sys.modules["faprompt_hf"] = None  # this interpreter cannot import the package
import numpy as np, torch
from PIL import Image
from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoProcessor, pipeline

folder, out = sys.argv[1], sys.argv[2]
torch.set_num_threads(1)  # the parent compares with one thread too: bit-identical reductions
try:
    import faprompt_hf  # noqa: F401
    raise SystemExit("faprompt_hf is importable in the child")
except ImportError:
    pass
config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
model = AutoModel.from_pretrained(folder, trust_remote_code=True)
image_processor = AutoImageProcessor.from_pretrained(folder, trust_remote_code=True)
processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
detector = pipeline("anomaly-detection", model=folder, trust_remote_code=True)
image = Image.open(sys.argv[3])
pixels = processor(images=[image], return_tensors="pt")["pixel_values"]
with torch.no_grad():
    result = model(pixel_values=pixels)
detected = detector(image, threshold=0.5)
classes = [type(obj).__module__ for obj in (config, model, image_processor, processor, detector)]
from transformers.pipelines import PIPELINE_REGISTRY
assert "anomaly-detection" not in PIPELINE_REGISTRY.supported_tasks  # remote code does not claim the task globally
references = {}
if model.config.normal_reference_classes:  # the bank, and each class's fused outputs
    references["bank"] = model.normal_references.features.numpy()
    for name in model.config.normal_reference_classes:
        with torch.no_grad():
            fused = model(pixel_values=pixels, normal_reference_class=name)
        references[f"{name}/image_scores"] = fused.image_scores.numpy()
        references[f"{name}/anomaly_maps"] = fused.anomaly_maps.numpy()
        references[f"{name}/reference_maps"] = fused.reference_maps.numpy()
np.savez(out, pixels=pixels.numpy(), image_scores=result.image_scores.numpy(), anomaly_maps=result.anomaly_maps.numpy(),
         pipeline_map=detected["anomaly_map"], pipeline_score=np.array(detected["score"]), **references)
print(json.dumps({"modules": classes, "reference_classes": list(model.config.normal_reference_classes),
                  "reference_image_counts": list(model.config.normal_reference_image_counts)}))
"""


@pytest.mark.integration
def test_a_syntax_error_in_a_saved_code_file_names_that_file(tiny_model, tmp_path):
    """A damaged remote-code file is named by the error of a Python without the package (and by the manifest check)."""
    folder = tmp_path / "model"
    save_with_processor(tiny_model, folder)
    (folder / "validation.py").write_text("def broken(:\n", encoding="utf-8")
    code = (
        "import sys\n"
        'sys.modules["faprompt_hf"] = None\n'
        "from transformers import AutoModel\n"
        "AutoModel.from_pretrained(sys.argv[1], trust_remote_code=True)\n"
    )
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(HF_MODULES_CACHE=str(tmp_path / "modules"), HF_HUB_OFFLINE="1")
    child = subprocess.run(
        [sys.executable, "-c", code, str(folder)], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300
    )
    assert child.returncode != 0
    assert "SyntaxError" in child.stderr and "validation.py" in child.stderr, child.stderr[-2000:]


@pytest.mark.integration
@pytest.mark.parametrize(
    "kind",
    [
        "embedded, saved by the pipeline",
        "compact, saved by the model",
        "embedded with normal references, saved by the pipeline",
        "compact with normal references, saved by the model",
    ],
)
def test_saved_folder_loads_without_the_package_with_identical_outputs(
    kind, hub_clip_model, hub_cache, tmp_path, images_dir
):
    folder = tmp_path / "model"
    # One class: the pipeline (which names no class) and the plain forward use it, so every output below is fused.
    reference_counts = {"bottle": 2} if "references" in kind else {}
    generator = torch.Generator().manual_seed(5)
    for name, count in reference_counts.items():
        hub_clip_model.set_normal_references(torch.randn(count, 3, 32, 32, generator=generator), class_name=name)
    if kind.startswith("embedded"):
        detector = pipeline(ANOMALY_DETECTION_TASK, model=hub_clip_model, image_processor=FAPromptImageProcessor(32))
        detector.save_pretrained(folder)
    else:
        save_with_processor(hub_clip_model, folder, include_clip=False)
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(HF_HUB_CACHE=str(hub_cache), HF_MODULES_CACHE=str(tmp_path / "modules"), HF_HUB_OFFLINE="1")
    child = subprocess.run(
        [sys.executable, "-c", _CHILD, str(folder), str(tmp_path / "out.npz"), str(images_dir / "part.png")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=600,
    )
    assert child.returncode == 0, child.stderr[-4000:]
    reported = json.loads(child.stdout.strip().splitlines()[-1])
    modules = reported["modules"]
    assert all(module.startswith("transformers_modules.") for module in modules), modules
    assert reported["reference_classes"] == list(reference_counts)
    assert reported["reference_image_counts"] == list(reference_counts.values())
    remote = np.load(tmp_path / "out.npz")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        package_model = FAPromptModel.from_pretrained(folder, cache_dir=str(hub_cache))
        expected = outputs(package_model, torch.from_numpy(remote["pixels"]))
        package_detector = pipeline(
            ANOMALY_DETECTION_TASK, model=str(folder), model_kwargs={"cache_dir": str(hub_cache)}
        )
        local = package_detector(Image.open(images_dir / "part.png"), threshold=0.5)
    finally:
        torch.set_num_threads(threads)
    np.testing.assert_array_equal(remote["image_scores"], expected["image_scores"].numpy())
    np.testing.assert_array_equal(remote["anomaly_maps"], expected["anomaly_maps"].numpy())
    np.testing.assert_array_equal(remote["pipeline_map"], local["anomaly_map"])
    assert float(remote["pipeline_score"]) == local["score"]
    if reference_counts:
        np.testing.assert_array_equal(remote["bank"], hub_clip_model.normal_references.features.numpy())
        for name in reference_counts:
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                with torch.no_grad():
                    fused = package_model(pixel_values=torch.from_numpy(remote["pixels"]), normal_reference_class=name)
            finally:
                torch.set_num_threads(threads)
            np.testing.assert_array_equal(remote[f"{name}/image_scores"], fused.image_scores.numpy())
            np.testing.assert_array_equal(remote[f"{name}/anomaly_maps"], fused.anomaly_maps.numpy())
            np.testing.assert_array_equal(remote[f"{name}/reference_maps"], fused.reference_maps.numpy())


@pytest.fixture
def images_dir(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)).save(tmp_path / "part.png")
    return tmp_path


def test_every_saved_code_file_resolves_its_imports_inside_the_folder(tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    referenced = {reference.split(".")[0] for reference in config["auto_map"].values()}
    referenced.add(config["custom_pipelines"][ANOMALY_DETECTION_TASK]["impl"].split(".")[0])
    code_files = sorted(tmp_path.glob("*.py"))
    assert {file.stem for file in code_files} >= referenced
    assert {file.name for file in code_files} == {file.name for file in remote_code_files()}
    for file in code_files:
        for module in get_relative_imports(file):
            assert (tmp_path / f"{module}.py").is_file(), f"{file.name} imports .{module}, absent from the folder"
        third_party = set(get_imports(file)) - set(sys.stdlib_module_names) - {"__future__"}
        assert third_party <= ALLOWED_REMOTE_IMPORTS, f"{file.name} needs {third_party - ALLOWED_REMOTE_IMPORTS}"
    assert config["custom_pipelines"][ANOMALY_DETECTION_TASK]["pt"] == ["AutoModel"]
    assert not {file.name for file in code_files} & NOT_REMOTE_CODE  # inference code only


def test_code_is_written_once_by_one_mechanism(tiny_model, tmp_path, monkeypatch):
    """transformers' own code copy (register_for_auto_class -> custom_object_save) stays off: remote_code writes."""
    import importlib

    copies = []
    for name in ("modeling_utils", "configuration_utils", "image_processing_base", "processing_utils"):
        module = importlib.import_module(f"transformers.{name}")
        monkeypatch.setattr(module, "custom_object_save", lambda *args, **kwargs: copies.append(args))
    tiny_model.save_pretrained(tmp_path)
    FAPromptProcessor(image_processor=FAPromptImageProcessor(size=32)).save_pretrained(tmp_path)
    assert copies == [] and type(tiny_model)._auto_class is None
    processor_config = json.loads((tmp_path / "processor_config.json").read_text())
    assert processor_config["auto_map"]["AutoProcessor"] == "processing_faprompt.FAPromptProcessor"
    assert processor_config["image_processor"]["auto_map"]["AutoImageProcessor"].startswith(
        "image_processing_faprompt."
    )


def test_pipeline_save_leaves_the_live_config_alone_and_reloads_with_the_package(model, model_dir, tmp_path):
    before = model.config.to_dict()
    detector = pipeline(ANOMALY_DETECTION_TASK, model=str(model_dir))
    config_before = detector.model.config.to_dict()
    detector.save_pretrained(tmp_path / "saved")
    assert detector.model.config.to_dict() == config_before
    assert not hasattr(detector.model.config, "custom_pipelines")
    detector.model.save_pretrained(tmp_path / "again")  # a later save of the live model still loads
    for folder in ("saved", "again"):
        reloaded = pipeline(ANOMALY_DETECTION_TASK, model=str(tmp_path / folder))
        assert type(reloaded) is type(detector)
    assert model.config.to_dict() == before
    assert json.loads((tmp_path / "saved" / "config.json").read_text())["custom_pipelines"]


# ----------------------------------------------------------------------------------------------------------------------
# Compact checkpoints
# ----------------------------------------------------------------------------------------------------------------------


def test_from_clip_records_the_hub_source_revision_and_fingerprint(hub_cache, tiny_tokenizer, capfd):
    model = FAPromptModel.from_clip(HUB_CLIP, cache_dir=str(hub_cache), **SMALL)
    reference = CLIPModel.from_pretrained(HUB_CLIP, cache_dir=str(hub_cache))
    assert model.config.eos_token_id == tiny_tokenizer.eos_token_id  # the template ids of the hub CLIP's tokenizer
    assert model.config.clip_name_or_path == HUB_CLIP
    assert model.config.clip_revision == COMMIT_MAIN
    assert model.config.clip_fingerprint == clip_fingerprint(reference)
    other = FAPromptModel.from_clip(HUB_CLIP, cache_dir=str(hub_cache), revision=COMMIT_OTHER, **SMALL)
    assert other.config.clip_revision == COMMIT_OTHER
    assert other.config.clip_fingerprint != model.config.clip_fingerprint
    from_instance = FAPromptModel.from_clip(reference, **SMALL, **prompt_token_ids(tiny_tokenizer))
    assert from_instance.config.clip_name_or_path == HUB_CLIP
    assert from_instance.config.clip_revision is None  # the commit it was loaded at is not known
    assert from_instance.config.clip_fingerprint == model.config.clip_fingerprint
    assert "LOAD REPORT" not in capfd.readouterr().err  # fresh prompts are from_clip's job, not a loading problem


def test_fingerprint_survives_bf16_and_tells_checkpoints_apart(hub_cache):
    clip = CLIPModel.from_pretrained(HUB_CLIP, cache_dir=str(hub_cache))
    fingerprint = clip_fingerprint(clip)
    assert clip_fingerprint(CLIPModel.from_pretrained(HUB_CLIP, cache_dir=str(hub_cache), dtype=torch.bfloat16)) == (
        fingerprint
    )
    assert clip_fingerprint(clip.state_dict()) == fingerprint
    with torch.no_grad():
        clip.text_projection.weight.mul_(1.01)  # a small change of one tensor
    assert clip_fingerprint(clip) != fingerprint


def test_compact_checkpoint_holds_only_prompts_and_gives_the_full_saves_outputs(hub_clip_model, hub_cache, tmp_path):
    hub_clip_model.save_pretrained(tmp_path / "compact", include_clip=None)  # a hub CLIP: compact by default
    hub_clip_model.save_pretrained(tmp_path / "full")
    with safe_open(tmp_path / "compact" / "model.safetensors", "pt") as handle:
        names = set(handle.keys())
    assert names == set(hub_clip_model.prompt_learner.state_dict(prefix="prompt_learner."))
    config = json.loads((tmp_path / "compact" / "config.json").read_text())
    assert (config["clip_name_or_path"], config["clip_revision"]) == (HUB_CLIP, COMMIT_MAIN)
    assert config["clip_fingerprint"] == hub_clip_model.config.clip_fingerprint
    compact = FAPromptModel.from_pretrained(tmp_path / "compact", cache_dir=str(hub_cache), local_files_only=True)
    full = FAPromptModel.from_pretrained(tmp_path / "full")
    pixels = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    expected = outputs(hub_clip_model, pixels)
    assert_same_outputs(outputs(compact, pixels), expected)
    assert_same_outputs(outputs(full, pixels), expected)
    assert not compact.training and not any(p.requires_grad for p in compact.clip.parameters())
    assert isinstance(AutoModel.from_pretrained(tmp_path / "compact", cache_dir=str(hub_cache)), FAPromptModel)


def test_compact_load_refuses_another_clip_and_says_how_to_point_elsewhere(hub_clip_model, hub_cache, tmp_path):
    hub_clip_model.save_pretrained(tmp_path, include_clip=False)
    with pytest.raises(ValueError, match="fingerprint") as error:
        FAPromptModel.from_pretrained(tmp_path, cache_dir=str(hub_cache), clip_revision=COMMIT_OTHER)
    assert hub_clip_model.config.clip_fingerprint in str(error.value) and "clip=" in str(error.value)
    anyway = FAPromptModel.from_pretrained(
        tmp_path, cache_dir=str(hub_cache), clip_revision=COMMIT_OTHER, verify_clip_fingerprint=False
    )
    assert anyway.config.clip_fingerprint == hub_clip_model.config.clip_fingerprint
    with pytest.raises(OSError, match=HUB_CLIP) as error:
        FAPromptModel.from_pretrained(tmp_path, cache_dir=str(tmp_path / "empty_cache"))
    assert "clip=" in str(error.value)
    local_copy = tmp_path / "clip_copy"
    CLIPModel.from_pretrained(HUB_CLIP, cache_dir=str(hub_cache)).save_pretrained(local_copy)
    pixels = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    pointed = FAPromptModel.from_pretrained(tmp_path, cache_dir=str(tmp_path / "empty_cache"), clip=str(local_copy))
    assert_same_outputs(outputs(pointed, pixels), outputs(hub_clip_model, pixels))
    instance = FAPromptModel.from_pretrained(tmp_path, clip=CLIPModel.from_pretrained(local_copy))
    assert_same_outputs(outputs(instance, pixels), outputs(hub_clip_model, pixels))


def test_compact_loads_in_bfloat16_and_saves_again(hub_clip_model, hub_cache, tmp_path):
    hub_clip_model.save_pretrained(tmp_path / "compact", include_clip=False)
    model = FAPromptModel.from_pretrained(tmp_path / "compact", cache_dir=str(hub_cache), dtype=torch.bfloat16)
    assert model.clip.text_projection.weight.dtype == torch.bfloat16
    model.save_pretrained(tmp_path / "again", include_clip=False)  # the bf16 copy is still the recorded CLIP
    again = FAPromptModel.from_pretrained(tmp_path / "again", cache_dir=str(hub_cache))
    for name, tensor in hub_clip_model.prompt_learner.state_dict().items():
        torch.testing.assert_close(
            again.prompt_learner.state_dict()[name].float(), tensor.bfloat16().float(), atol=0, rtol=0
        )


def test_compact_save_refuses_an_unknown_or_changed_clip(tiny_model, hub_clip_model, tmp_path):
    with pytest.raises(ValueError, match="include_clip=True"):
        tiny_model.save_pretrained(tmp_path / "unknown", include_clip=False)
    tiny_model.save_pretrained(tmp_path / "auto", include_clip=None)  # unknown CLIP: embedded by default
    assert any(name.startswith("clip.") for name in load_file(tmp_path / "auto" / "model.safetensors"))
    with torch.no_grad():
        hub_clip_model.clip.visual_projection.weight.mul_(1.5)
    with pytest.raises(ValueError, match="no longer matches"):
        hub_clip_model.save_pretrained(tmp_path / "changed", include_clip=False)
    assert not (tmp_path / "changed" / "model.safetensors").exists()


def test_compact_save_replaces_an_earlier_full_save_in_the_same_folder(hub_clip_model, hub_cache, tmp_path):
    hub_clip_model.save_pretrained(tmp_path, max_shard_size="100KB")  # sharded, CLIP embedded
    assert (tmp_path / "model.safetensors.index.json").is_file()
    hub_clip_model.save_pretrained(tmp_path, include_clip=False)
    assert sorted(path.name for path in tmp_path.glob("model*.safetensors*")) == ["model.safetensors"]
    FAPromptModel.from_pretrained(tmp_path, cache_dir=str(hub_cache))


def test_vit_l_336_compact_checkpoint_is_at_most_20_mb(tmp_path):
    from transformers.initialization import no_init_weights

    with no_init_weights():  # random memory is enough to measure sizes; no download, no 430M-value init
        model = FAPromptModel(FAPromptConfig(clip_name_or_path="openai/clip-vit-large-patch14-336"))
    model.config.clip_fingerprint = clip_fingerprint(model.clip)
    model.save_pretrained(tmp_path, include_clip=None)
    size = (tmp_path / "model.safetensors").stat().st_size
    prompts = sum(tensor.numel() for tensor in model.prompt_learner.state_dict().values())
    assert size <= 20 * 1024**2, size
    assert size >= 4 * prompts  # float32 prompts, nothing less


# ----------------------------------------------------------------------------------------------------------------------
# Load errors
# ----------------------------------------------------------------------------------------------------------------------


def test_checkpoint_without_a_prompt_tensor_is_an_error_naming_it(tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    del weights["prompt_learner.deep_prompts"], weights["prompt_learner.prior.fc2.bias"]
    save_file(weights, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"prompt_learner\.deep_prompts.*prompt_learner\.prior\.fc2\.bias") as error:
        FAPromptModel.from_pretrained(tmp_path)
    assert "from_clip" in str(error.value)


@pytest.mark.parametrize("keep", [0.001, 0.5])
def test_truncated_weights_file_is_an_error_naming_it(tiny_model, tmp_path, keep):
    tiny_model.save_pretrained(tmp_path)
    path = tmp_path / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: max(4, int(len(data) * keep))])
    with pytest.raises(OSError, match="truncated or corrupted") as error:
        FAPromptModel.from_pretrained(tmp_path)
    assert str(path) in str(error.value)


# ----------------------------------------------------------------------------------------------------------------------
# Model cards and uploads
# ----------------------------------------------------------------------------------------------------------------------


def test_model_card_metadata_parses_and_the_body_says_how_to_use_it(hub_clip_model, tmp_path):
    hub_clip_model.config.anomaly_threshold = 0.4321
    hub_clip_model.save_pretrained(tmp_path, include_clip=False)
    metrics = {"bottle": {"image_auroc": 0.9, "pixel_auroc": 0.8}, "mean": {"image_auroc": 0.9, "pixel_auroc": 0.8}}
    write_model_card(
        tmp_path,
        dataset_name="tiny-org/defects",
        metrics=metrics,
        metrics_description="MVTec AD test",
        threshold_description="calibrate_threshold (0.99 quantile of 20 normal images)",
        repo_id="someone/faprompt-tiny",
    )
    card = ModelCard.load(tmp_path / "README.md")
    data = card.data
    assert data.library_name == "transformers" and data.pipeline_tag and data.license == "apache-2.0"
    assert data.base_model == HUB_CLIP and data.datasets == ["tiny-org/defects"]
    assert {"anomaly-detection", "zero-shot"} <= set(data.tags)
    results = {(result.metric_type, result.metric_value) for result in data.eval_results}
    assert results == {("image_auroc", 0.9), ("pixel_auroc", 0.8)}
    assert "pip install" in card.text and "trust_remote_code=True" in card.text and "import faprompt_hf" in card.text
    assert "0.4321" in card.text and "calibrate_threshold (0.99 quantile" in card.text
    assert "someone/faprompt-tiny" in card.text and "compact" in card.text


def test_push_to_hub_uploads_exactly_the_saved_folder(hub_clip_model, hub_cache, tmp_path, monkeypatch):
    calls = {}

    def create_repo(self, repo_id, **kwargs):
        calls["create_repo"] = (repo_id, kwargs)
        return type("RepoUrl", (), {"repo_id": f"user/{repo_id}"})()

    def upload_folder(self, *, repo_id, folder_path, **kwargs):
        calls["upload_folder"] = (repo_id, kwargs)
        shutil.copytree(folder_path, tmp_path / "uploaded")
        return type("CommitInfo", (), {"commit_url": f"https://hub/{repo_id}/commit/1"})()

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    url = hub_clip_model.push_to_hub("faprompt-tiny", private=True, commit_message="first")
    assert url == "https://hub/user/faprompt-tiny/commit/1"
    assert calls["create_repo"] == ("faprompt-tiny", {"private": True, "exist_ok": True})
    assert calls["upload_folder"][0] == "user/faprompt-tiny"
    assert calls["upload_folder"][1]["commit_message"] == "first"

    reference = save_with_processor(hub_clip_model, tmp_path / "reference", include_clip=None)
    write_model_card(reference, repo_id="faprompt-tiny")
    uploaded = tmp_path / "uploaded"
    assert sorted(path.name for path in uploaded.iterdir()) == sorted(path.name for path in reference.iterdir())
    for path in reference.iterdir():
        assert path.read_bytes() == (uploaded / path.name).read_bytes(), path.name
    assert set(load_file(uploaded / "model.safetensors")) == set(
        hub_clip_model.prompt_learner.state_dict(prefix="prompt_learner.")
    )
    assert ModelCard.load(uploaded / "README.md").data.base_model == HUB_CLIP
    pixels = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    reloaded = FAPromptModel.from_pretrained(uploaded, cache_dir=str(hub_cache))
    assert_same_outputs(outputs(reloaded, pixels), outputs(hub_clip_model, pixels))


@pytest.mark.parametrize("include_clip", [None, True], ids=["compact", "embedded"])
def test_push_to_hub_uploads_the_normal_reference_bank_and_the_card_lists_it(
    hub_clip_model, hub_cache, tmp_path, monkeypatch, include_clip
):
    def create_repo(self, repo_id, **kwargs):
        return type("RepoUrl", (), {"repo_id": f"user/{repo_id}"})()

    def upload_folder(self, *, repo_id, folder_path, **kwargs):
        shutil.copytree(folder_path, tmp_path / "uploaded")
        return type("CommitInfo", (), {"commit_url": f"https://hub/{repo_id}/commit/1"})()

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    generator = torch.Generator().manual_seed(6)
    for name, count in (("bottle", 3), ("screw", 2)):
        hub_clip_model.set_normal_references(torch.randn(count, 3, 32, 32, generator=generator), class_name=name)
    hub_clip_model.push_to_hub("faprompt-tiny", include_clip=include_clip)

    uploaded = tmp_path / "uploaded"
    tensors = load_file(uploaded / "model.safetensors")
    assert torch.equal(tensors["normal_references.features"], hub_clip_model.normal_references.features)
    assert any(name.startswith("clip.") for name in tensors) is bool(include_clip)
    card = ModelCard.load(uploaded / "README.md").text
    patches = hub_clip_model.config.normal_reference_patch_counts
    assert "## Normal references" in card and "normal_references.features" in card
    assert f"| bottle | 3 | {patches[0]} |" in card and f"| screw | 2 | {patches[1]} |" in card
    assert 'normal_reference_class="bottle"' in card  # several classes: the card says how to choose one
    reloaded = FAPromptModel.from_pretrained(uploaded, cache_dir=str(hub_cache))
    assert reloaded.normal_reference_classes == ["bottle", "screw"]
    # Compared with the same model saved and loaded here: an embedded from_pretrained model can differ from the
    # in-memory one by float32 rounding (1e-7) on some inputs, with or without references.
    hub_clip_model.save_pretrained(tmp_path / "local", include_clip=include_clip)
    local = FAPromptModel.from_pretrained(tmp_path / "local", cache_dir=str(hub_cache))
    pixels = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = local(pixel_values=pixels, normal_reference_class="screw")
        found = reloaded(pixel_values=pixels, normal_reference_class="screw")
        live = hub_clip_model(pixel_values=pixels, normal_reference_class="screw")
    torch.testing.assert_close(found.anomaly_maps, live.anomaly_maps, atol=1e-6, rtol=0)
    assert torch.equal(found.image_scores, expected.image_scores)
    assert torch.equal(found.anomaly_maps, expected.anomaly_maps)


def test_a_model_card_without_references_has_no_references_section(hub_clip_model, tmp_path):
    hub_clip_model.save_pretrained(tmp_path, include_clip=False)
    assert "Normal references" not in ModelCard.load(write_model_card(tmp_path)).text


def test_config_ignores_transformers_custom_pipelines_key_in_the_package(tiny_config, tmp_path):
    tiny_config.save_pretrained(tmp_path)
    path = Path(tmp_path) / "config.json"
    saved = json.loads(path.read_text())
    saved["custom_pipelines"] = {ANOMALY_DETECTION_TASK: {"impl": "pipeline_faprompt.X", "pt": ["AutoModel"]}}
    path.write_text(json.dumps(saved))
    loaded = FAPromptConfig.from_pretrained(tmp_path)
    assert not hasattr(loaded, "custom_pipelines")

# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""Shared fixtures: offline settings and the one tiny FAPrompt configuration every test builds on."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from helpers import OFFLINE_ENV

for _name, _value in OFFLINE_ENV.items():
    os.environ.setdefault(_name, _value)

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from faprompt_hf import FAPromptConfig, FAPromptModel  # noqa: E402
from faprompt_hf.tiny import tiny_clip_config, tiny_clip_tokenizer, tiny_faprompt_config  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
# The released code's reference tensors: FAPROMPT_PARITY_DIR if set, else the project's shared ../shared/parity beside
# the checkout (authoritative), else the copy of it in tests/fixtures/parity (so that a lone clone runs the suite).
_PARITY_CANDIDATES = [REPO_ROOT.parent / "shared" / "parity", REPO_ROOT / "tests" / "fixtures" / "parity"]
if os.environ.get("FAPROMPT_PARITY_DIR"):
    _PARITY_CANDIDATES = [Path(os.environ["FAPROMPT_PARITY_DIR"])]
SHARED_PARITY = next((p for p in _PARITY_CANDIDATES if (p / "parity_seed0.pt").is_file()), _PARITY_CANDIDATES[0])


@pytest.fixture
def fresh_accelerate_state():
    """Let each in-process training run create its own Accelerator (it is a process-wide singleton)."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    yield
    AcceleratorState._reset_state(True)
    GradientState._reset_state()


@pytest.fixture(scope="module")
def images():
    """RGB images of five different sizes (a module may define its own ``images``)."""
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (24 + 5 * i, 40 - 3 * i, 3), dtype=np.uint8)) for i in range(5)]


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return tiny_clip_tokenizer()


@pytest.fixture
def make_tiny_config(tiny_tokenizer):
    """Build the tiny FAPrompt config, with any field overridden."""

    def build(**overrides) -> FAPromptConfig:
        return tiny_faprompt_config(tokenizer=tiny_tokenizer, **overrides)

    return build


@pytest.fixture
def tiny_config(make_tiny_config) -> FAPromptConfig:
    return make_tiny_config()


@pytest.fixture
def tiny_model(tiny_config) -> FAPromptModel:
    torch.manual_seed(0)
    return FAPromptModel(tiny_config).eval()


@pytest.fixture(scope="session")
def model() -> FAPromptModel:
    """A seeded tiny FAPromptModel shared by the evaluation and pipeline tests (restore anything you change)."""
    torch.manual_seed(0)
    return FAPromptModel(tiny_faprompt_config()).eval()


@pytest.fixture(scope="session")
def model_dir(model, tmp_path_factory):
    """A directory holding ``model`` and its processor, as ``save_pretrained`` writes them."""
    from faprompt_hf import FAPromptImageProcessor, FAPromptProcessor

    directory = tmp_path_factory.mktemp("tiny_model")
    model.save_pretrained(directory)
    FAPromptProcessor(image_processor=FAPromptImageProcessor(size=model.config.image_size)).save_pretrained(directory)
    return directory


@pytest.fixture
def tiny_clip_config_fixture(tiny_tokenizer):
    return tiny_clip_config(tiny_tokenizer)


@pytest.fixture(scope="session")
def parity_dir():
    """The shared parity fixture (make_weights.py and the released code's tensors)."""
    if not (SHARED_PARITY / "parity_seed0.pt").is_file():
        pytest.fail(f"parity fixture missing (looked in {[str(p) for p in _PARITY_CANDIDATES]})")
    return SHARED_PARITY


@pytest.fixture(scope="session")
def original_weights(parity_dir, tmp_path_factory):
    """Seed-0 weights in the original formats, recreated by the shared make_weights.py."""
    out = tmp_path_factory.mktemp("original_weights")
    sys.path.insert(0, str(parity_dir))
    try:
        import make_weights
    finally:
        sys.path.remove(str(parity_dir))
    clip_path, prompt_learner_path = make_weights.make(str(out), seed=0)
    return Path(clip_path), Path(prompt_learner_path)


@pytest.fixture
def make_pixels():
    """Random normalised images (B, 3, S, S), seeded."""

    def build(batch: int, size: int = 32, seed: int = 0) -> torch.Tensor:
        return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))

    return build

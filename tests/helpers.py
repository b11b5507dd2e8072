# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""Helpers shared by the tests: the offline environment, free loopback ports, example scripts loaded by path."""

from __future__ import annotations

import importlib.util
import socket
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = REPO_ROOT / "examples"

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}
"""Nothing is downloaded in a test, in this process or in the subprocesses it starts."""


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (for accelerate's rendezvous and the demo app's server)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def fresh_pipeline(model: Any, **kwargs: Any) -> Any:
    """A new anomaly-detection pipeline over ``model`` at 32 px (its own threshold-warning state)."""
    from faprompt_hf import FAPromptAnomalyDetectionPipeline, FAPromptImageProcessor

    return FAPromptAnomalyDetectionPipeline(model=model, image_processor=FAPromptImageProcessor(size=32), **kwargs)


def load_script(path: str | Path, name: str | None = None) -> ModuleType:
    """Import a script (``examples/train.py``, a benchmark) as a module without running its ``main``.

    Args:
        path: The script, or the name of one in ``examples/`` (``"train"``).
        name: The module's name (default: ``<stem>_script``). It is registered in ``sys.modules``, where dataclasses
            resolve their string annotations.

    Returns:
        The module.
    """
    path = Path(path)
    if not path.suffix:
        path = EXAMPLES / f"{path}.py"
    spec = importlib.util.spec_from_file_location(name or f"{path.stem}_script", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module

# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""Remote code: the inference modules a saved folder carries, so that transformers alone loads it.

A folder saved by ``FAPromptModel.save_pretrained`` holds these modules (and every module they import relatively)
beside its weights, and its ``config.json`` names their classes in ``auto_map`` and ``custom_pipelines``:
``AutoModel.from_pretrained(folder, trust_remote_code=True)`` and ``pipeline("anomaly-detection", model=folder,
trust_remote_code=True)`` then work without this package. This is the only mechanism that writes code into a folder
(the package does not ``register_for_auto_class``, so transformers does not copy code a second time).

Classes are named by strings, as ``auto_map`` names them, so that this module imports none of them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ._compat import get_relative_import_files
from .file_utils import atomic_write
from .inference_utils import ANOMALY_DETECTION_TASK

__all__ = [
    "ANOMALY_DETECTION_TASK",
    "AUTO_MAP",
    "CONFIG_FILES",
    "PIPELINE_CLASS",
    "REMOTE_CODE_MODULES",
    "remote_code_files",
    "write_remote_code",
]

AUTO_MAP = {
    "AutoConfig": "configuration_faprompt.FAPromptConfig",
    "AutoModel": "modeling_faprompt.FAPromptModel",
    "AutoImageProcessor": "image_processing_faprompt.FAPromptImageProcessor",
    "AutoProcessor": "processing_faprompt.FAPromptProcessor",
}
"""``config.json``'s ``auto_map``: each Auto class and the ``module.Class`` it loads."""

PIPELINE_CLASS = "pipeline_faprompt.FAPromptAnomalyDetectionPipeline"
"""The pipeline class ``custom_pipelines`` names for :data:`ANOMALY_DETECTION_TASK`."""

REMOTE_CODE_MODULES = tuple(dict.fromkeys(name.partition(".")[0] for name in [*AUTO_MAP.values(), PIPELINE_CLASS]))
"""Modules a saved folder carries (plus every module they import relatively)."""


def remote_code_files() -> list[Path]:
    """The source files a saved folder needs.

    The modules of :data:`REMOTE_CODE_MODULES` and their relative imports (found as transformers finds them when it
    loads the folder).

    Returns:
        Paths of the package's module files, each once.

    Raises:
        FileNotFoundError: A relative import does not resolve to a flat module file of the package (transformers
            copies only flat module files, so remote code cannot import a sub-package).
    """
    package_dir = Path(__file__).resolve().parent
    files: list[Path] = []
    for module in REMOTE_CODE_MODULES:
        entry = package_dir / f"{module}.py"
        for file in [entry, *map(Path, get_relative_import_files(entry))]:
            if not file.is_file():
                raise FileNotFoundError(
                    f"Remote code needs {file.name}, imported relatively by {module}.py, but {file} does not exist: "
                    f"remote code can only import flat modules of {package_dir}."
                )
            if file not in files:
                files.append(file)
    return files


CONFIG_FILES = ("config.json", "preprocessor_config.json", "processor_config.json")
"""The saved files that name the remote-code classes: the model's config and the processors' configs."""


def write_remote_code(folder: str | os.PathLike) -> list[str]:
    """Copy the remote code into ``folder`` and name its classes in the folder's config files.

    Each of :data:`CONFIG_FILES` that the folder holds gets the ``auto_map`` (and so does the image processor's
    config nested in ``processor_config.json``); ``config.json`` also gets ``custom_pipelines``. The model's and
    the processors' ``save_pretrained`` call this, in any order (it is idempotent).

    Args:
        folder: A saved model or processor folder.

    Returns:
        The names of the files copied.
    """
    folder = Path(folder)
    names = []
    for file in remote_code_files():
        with atomic_write(folder / file.name, "wb") as handle:
            handle.write(file.read_bytes())
        names.append(file.name)
    for config_name in CONFIG_FILES:
        config_path = folder / config_name
        if not config_path.is_file():
            continue
        config = json.loads(config_path.read_text(encoding="utf-8"))
        config["auto_map"] = dict(AUTO_MAP)
        if isinstance(config.get("image_processor"), dict):  # a processor's config nests its image processor's
            config["image_processor"]["auto_map"] = dict(AUTO_MAP)
        if config_name == "config.json":
            config["custom_pipelines"] = {
                ANOMALY_DETECTION_TASK: {"impl": PIPELINE_CLASS, "pt": ["AutoModel"], "type": "image"}
            }
        with atomic_write(config_path) as handle:
            handle.write(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return names

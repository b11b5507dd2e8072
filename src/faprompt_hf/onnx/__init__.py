# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""ONNX deployment: export with PyTorch, run without it.

:func:`export_onnx` (needs PyTorch, onnx and onnxscript) writes one ONNX graph and its configs;
:class:`ONNXAnomalyDetector` (needs only numpy, Pillow and onnxruntime) runs it.

Install the ONNX packages with ``pip install "faprompt-hf[onnx]"``. See ``docs/deployment.md``.
"""

from __future__ import annotations

from typing import Any

from .runtime import (
    ONNX_CONFIG_NAME,
    ONNX_FILE_NAME,
    ONNX_INSTALL_HINT,
    PREPROCESSOR_CONFIG_NAME,
    ONNXAnomalyDetector,
)

__all__ = [
    "ONNXAnomalyDetector",
    "ONNX_CONFIG_NAME",
    "ONNX_FILE_NAME",
    "ONNX_INSTALL_HINT",
    "PREPROCESSOR_CONFIG_NAME",
    "export_onnx",
]


def __getattr__(name: str) -> Any:
    """Import :func:`export_onnx` (and with it PyTorch) only when it is asked for."""
    if name == "export_onnx":
        from .export import export_onnx

        return export_onnx
    raise AttributeError(f"module 'faprompt_hf.onnx' has no attribute {name!r}")

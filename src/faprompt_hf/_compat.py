# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""The only place that imports transformers internals (their homes move between 5.x minors)."""

from __future__ import annotations

from transformers import initialization
from transformers.dynamic_module_utils import get_relative_import_files
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.models.clip.modeling_clip import eager_attention_forward

__all__ = ["ALL_ATTENTION_FUNCTIONS", "eager_attention_forward", "get_relative_import_files", "initialization"]

# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""The quickstart (the README's first command), in its seconds-long ``--smoke`` form."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from helpers import load_script

REPO_ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = REPO_ROOT / "examples" / "quickstart.py"
METRIC_KEYS = {"image_auroc", "image_ap", "pixel_auroc", "pixel_aupro"}


@pytest.fixture(scope="module")
def quickstart():
    return load_script(QUICKSTART)


@pytest.mark.integration
def test_smoke_run_writes_metrics_overlays_and_a_model(tmp_path):
    output_dir = tmp_path / "quickstart_output"
    result = subprocess.run(
        [sys.executable, str(QUICKSTART), "--smoke", "--output_dir", str(output_dir)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TOKENIZERS_PARALLELISM": "false"},
    )
    assert result.returncode == 0, result.stderr[-3000:]

    metrics = json.loads((output_dir / "metrics.json").read_text())
    assert set(metrics) == {"rings", "mean", "baseline"}
    assert set(metrics["baseline"]) == {"rings", "mean"}
    for row in [metrics["rings"], metrics["mean"], *metrics["baseline"].values()]:
        assert set(row) == METRIC_KEYS
        assert all(0.0 <= value <= 1.0 for value in row.values() if not math.isnan(value))
    assert "FAPrompt, zero-shot on held-out domains" in result.stdout and "Untrained baseline" in result.stdout
    assert "| rings |" in result.stdout

    overlays = sorted((output_dir / "overlays").glob("*.png"))
    assert len(overlays) >= 2 and any(path.name == "comparison_grid.png" for path in overlays)
    with Image.open(next(path for path in overlays if path.name.startswith("rings_"))) as overlay:
        assert overlay.mode == "RGB" and overlay.size == (64, 64)

    model_dir = output_dir / "model"
    assert (model_dir / "model.safetensors").is_file() and (model_dir / "processor_config.json").is_file()
    card = (model_dir / "README.md").read_text()
    assert "## Evaluation" in card and "| rings |" in card


def test_held_out_domains_must_not_overlap_training_domains(quickstart, capsys):
    with pytest.raises(SystemExit):
        quickstart.parse_args(["--train_domains", "stripes", "nut", "--test_domains", "nut"])
    assert "held out" in capsys.readouterr().err


def test_baseline_scores_the_odd_patch_highest(quickstart):
    patches = F.normalize(torch.ones(1, 16, 8) + 0.01 * torch.randn(1, 16, 8), dim=-1)
    patches[0, 5] = F.normalize(torch.arange(8.0), dim=0)  # patch (row 1, column 1) of the 4x4 grid
    maps = quickstart.baseline_maps(patches, size=32, sigma=0.0)
    assert maps.shape == (1, 32, 32)
    row, column = divmod(int(maps[0].argmax()), 32)
    assert 8 <= row < 16 and 8 <= column < 16

# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""Threshold calibration (faprompt_hf.calibration): quantiles of normal scores, F1-max, the one threshold rule."""

from __future__ import annotations

import ast
import warnings

import numpy as np
import pytest

from faprompt_hf import FAPromptModel, pipeline_faprompt
from faprompt_hf.calibration import calibrate_threshold, threshold_from_f1
from faprompt_hf.metrics import f1_max
from helpers import REPO_ROOT, fresh_pipeline


def test_calibrate_threshold_stores_into_config_and_survives_save_load(model, images, tmp_path):
    previous = model.config.anomaly_threshold
    try:
        detector = fresh_pipeline(model)
        scores = [detector(image, threshold=0.5)["score"] for image in images]
        threshold = calibrate_threshold(detector, images, quantile=0.5, batch_size=2)
        assert threshold == pytest.approx(float(np.quantile(scores, 0.5)), abs=1e-6)
        assert model.config.anomaly_threshold == threshold
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            results = detector(images)
        assert [r["is_anomalous"] for r in results] == [s >= threshold for s in scores]
        model.save_pretrained(tmp_path)
        assert FAPromptModel.from_pretrained(tmp_path).config.anomaly_threshold == pytest.approx(threshold)
        assert calibrate_threshold(model, images, quantile=1.0) == pytest.approx(max(scores), abs=1e-6)
        kept = model.config.anomaly_threshold
        calibrate_threshold(model, images[:1], store=False)
        assert model.config.anomaly_threshold == kept
    finally:
        model.config.anomaly_threshold = previous
    with pytest.raises(ValueError, match="quantile"):
        calibrate_threshold(model, images, quantile=0.0)
    with pytest.raises(ValueError, match="at least one"):
        calibrate_threshold(model, [])
    with pytest.raises(TypeError, match="FAPromptModel"):
        calibrate_threshold("model", images)


def test_threshold_from_f1(model):
    scores, labels = [0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]
    previous = model.config.anomaly_threshold
    try:
        threshold = threshold_from_f1(scores, labels, model)
        assert threshold == f1_max(scores, labels)[1] == 0.35
        assert model.config.anomaly_threshold == 0.35
    finally:
        model.config.anomaly_threshold = previous
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match="anomalous"):
            threshold_from_f1([0.1, 0.2], [0, 0])


def test_calibration_keeps_its_old_import_path_and_the_pipeline_does_not_import_metrics():
    assert pipeline_faprompt.calibrate_threshold is calibrate_threshold  # earlier releases' import path
    assert pipeline_faprompt.threshold_from_f1 is threshold_from_f1
    source = (REPO_ROOT / "src" / "faprompt_hf" / "pipeline_faprompt.py").read_text()
    imported = {
        node.module
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.ImportFrom) and node.module is not None
    }
    assert not {"metrics", "calibration", "visualization"} & imported


def test_a_stored_threshold_follows_the_one_rule(model):
    with pytest.raises(ValueError, match=r"anomaly_threshold must be finite and lie in \[0, 1\]"):
        model.config.anomaly_threshold = 1.5

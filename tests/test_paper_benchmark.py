# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""The paper's benchmark runner (faprompt_hf.paper_benchmark) on miniature replicas with the tiny random model."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faprompt_hf.data import write_replica
from faprompt_hf.paper_benchmark import (
    BENCHMARK_METRICS,
    NoDatasetsFoundError,
    benchmark_rows,
    format_benchmark_table,
    load_paper_numbers,
    main,
    run_benchmark,
)

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def data_root(tmp_path):
    root = tmp_path / "data"
    for key in ("btad", "headct", "colondb"):
        write_replica(key, root)
    return root


def test_runs_each_present_dataset_and_writes_the_paper_table(model, data_root, tmp_path):
    result = run_benchmark(model, data_root, tmp_path / "out", model_name="tiny")
    assert [outcome.key for outcome in result.outcomes] == ["btad", "headct", "colondb"]
    assert all(outcome.status == "done" for outcome in result.outcomes)
    btad, headct, colondb = result.outcomes
    assert all(math.isfinite(btad.metrics[metric]) for metric in BENCHMARK_METRICS)
    # image-level only: no pixel metrics; all-anomalous segmentation set: no image metrics
    assert math.isfinite(headct.metrics["image_auroc"]) and math.isnan(headct.metrics["pixel_auroc"])
    assert math.isnan(colondb.metrics["image_auroc"]) and math.isfinite(colondb.metrics["pixel_aupro"])
    assert "mvtec" in result.absent and len(result.absent) == 16
    rows = {row["dataset"]: row for row in json.loads(result.files["json"].read_text())["rows"]}
    assert rows["Industrial mean"]["image_auroc"] == pytest.approx(100 * btad.metrics["image_auroc"])
    assert rows["Medical mean"]["image_auroc"] == pytest.approx(100 * headct.metrics["image_auroc"])  # ColonDB has none
    assert rows["Medical mean"]["pixel_auroc"] == pytest.approx(100 * colondb.metrics["pixel_auroc"])
    markdown = result.files["markdown"].read_text()
    assert "| industrial | BTAD |" in markdown and "**Medical mean**" in markdown
    header = result.files["csv"].read_text().splitlines()[0]
    assert header == "domain,dataset,key,status,image_auroc,image_ap,pixel_auroc,pixel_aupro,note"
    metrics = json.loads((tmp_path / "out" / "btad" / "metrics.json").read_text())
    assert metrics["run"]["dataset"] == "btad" and metrics["run"]["model"] == "tiny"
    assert json.loads((tmp_path / "out" / "btad" / "status.json").read_text())["status"] == "done"


def test_resume_skips_finished_datasets(model, data_root, tmp_path):
    calls = []

    def evaluate(*args, **kwargs):
        from faprompt_hf.evaluation import evaluate_model

        calls.append(args[1]["path"][0])
        return evaluate_model(*args, **kwargs)

    output = tmp_path / "out"
    first = run_benchmark(model, data_root, output, datasets=["btad", "headct"], evaluate=evaluate)
    assert len(calls) == 2
    (output / "headct" / "status.json").unlink()  # as if the run had died while evaluating HeadCT
    second = run_benchmark(model, data_root, output, datasets=["btad", "headct"], evaluate=evaluate, resume=True)
    assert len(calls) == 3 and "head_ct" in calls[-1]
    assert second.outcomes[0].resumed and not second.outcomes[1].resumed
    assert second.outcomes[0].metrics == pytest.approx(first.outcomes[0].metrics, nan_ok=True)
    assert second.table == first.table


def test_a_damaged_dataset_is_reported_and_skipped(model, data_root, tmp_path):
    (data_root / "BTech_Dataset_transformed" / "01" / "test" / "good").mkdir()
    result = run_benchmark(model, data_root, tmp_path / "out")
    statuses = {outcome.key: outcome.status for outcome in result.outcomes}
    assert statuses == {"btad": "damaged", "headct": "done", "colondb": "done"}
    assert "01/test/good" in result.outcomes[0].error and "DatasetLayoutError" in result.outcomes[0].error
    assert "| industrial | BTAD | damaged |" in result.table
    assert any(note.startswith("BTAD was skipped: DatasetLayoutError") for note in result.notes)
    status = json.loads((tmp_path / "out" / "btad" / "status.json").read_text())
    assert status["status"] == "damaged" and "01/test/good" in status["error"]


def test_images_and_masks_of_different_sizes_follow_the_resize_rule(model, tmp_path):
    root = tmp_path / "data"
    folder = write_replica("colondb", root)
    Image.fromarray(np.full((16, 16), 255, np.uint8)).save(folder / "masks" / "2.png")
    damaged = run_benchmark(model, root, tmp_path / "a")
    assert damaged.outcomes[0].status == "damaged"
    assert "16x16 but the image is 32x32" in damaged.outcomes[0].error
    assert "resize_mismatched_masks" in damaged.outcomes[0].error
    resized = run_benchmark(model, root, tmp_path / "b", resize_mismatched_masks=True)
    assert resized.outcomes[0].status == "done"


def test_label_file_with_an_unknown_value_is_a_damaged_dataset(model, tmp_path):
    root = tmp_path / "data"
    folder = write_replica("elpv", root)
    (folder / "labels.csv").write_text((folder / "labels.csv").read_text() + "images/cell0001.png  0.5  mono\n")
    result = run_benchmark(model, root, tmp_path / "out")
    assert result.outcomes[0].status == "damaged" and "unknown label value '0.5'" in result.outcomes[0].error


def test_data_root_without_datasets_lists_what_it_looked_for(model, tmp_path):
    (tmp_path / "empty" / "holiday_photos").mkdir(parents=True)
    with pytest.raises(NoDatasetsFoundError) as raised:
        run_benchmark(model, tmp_path / "empty", tmp_path / "out")
    message = str(raised.value)
    assert "None of the benchmark datasets" in message
    assert "MVTec AD: mvtec, mvtecad, mvtec_anomaly_detection" in message and "TN3K: tn3k" in message
    assert "holiday_photos" in message and "--datasets KEY=FOLDER" in message


def test_mixed_case_folders_are_recognised_and_unknown_ones_reported(model, tmp_path):
    root = tmp_path / "data"
    write_replica("tn3k", root)
    (root / "tn3k").rename(root / "TN3K")
    write_replica("br35h", root)
    (root / "Br35H").rename(root / "brain_tumour_scans")
    result = run_benchmark(model, root, tmp_path / "out")
    assert [outcome.key for outcome in result.outcomes] == ["tn3k"]
    assert result.unrecognised == ["brain_tumour_scans"]
    assert any("'brain_tumour_scans'" in note and "--datasets KEY=brain_tumour_scans" in note for note in result.notes)
    named = run_benchmark(model, root, tmp_path / "out2", dataset_paths={"br35h": "brain_tumour_scans"})
    assert [outcome.key for outcome in named.outcomes] == ["br35h", "tn3k"]


def test_mvtec_uses_its_own_model_and_the_table_says_when_it_does_not(model, tmp_path):
    root = tmp_path / "data"
    write_replica("mvtec", root)
    write_replica("btad", root)
    used = {}

    def evaluate(this_model, dataset, *args, **kwargs):
        used[dataset["class_name"][0]] = this_model
        from faprompt_hf.evaluation import evaluate_model

        return evaluate_model(this_model, dataset, *args, **kwargs)

    other = object.__new__(type(model))
    other.__dict__ = dict(model.__dict__)  # a distinct object sharing the weights
    result = run_benchmark(model, root, tmp_path / "a", mvtec_model=other, evaluate=evaluate)
    assert used["bottle"] is other and used["01"] is model
    assert not any("same model" in note for note in result.notes)
    alone = run_benchmark(model, root, tmp_path / "b")
    assert any("MVTec AD was evaluated with the same model" in note for note in alone.notes)


def test_paper_numbers_file_states_its_source_and_missing_cells_say_so(tmp_path):
    numbers = load_paper_numbers()
    raw = json.loads((Path(__file__).resolve().parents[1] / "src/faprompt_hf/data/paper_numbers.json").read_text())
    assert any("2410.10289" in source for source in raw["sources"])
    assert any("mala-lab/FAPrompt" in source for source in raw["sources"])
    assert len(numbers) == 19
    from faprompt_hf.paper_benchmark import DatasetOutcome

    outcomes = [
        DatasetOutcome("btad", "BTAD", "industrial", "done", {m: 0.5 for m in BENCHMARK_METRICS}),
        DatasetOutcome("elpv", "ELPV", "industrial", "done", {"image_auroc": 0.6, "image_ap": 0.7}),
    ]
    published = {"btad": {"image_auroc": 91.0, "image_ap": None, "pixel_auroc": 97.0, "pixel_aupro": 72.0}, "elpv": {}}
    rows = benchmark_rows(outcomes, published)
    table = format_benchmark_table(rows, paper=True)
    assert "| industrial | BTAD | 50.0 | 91.0 | 50.0 | not found | 50.0 | 97.0 | 50.0 | 72.0 |" in table
    assert "| industrial | ELPV | 60.0 | not found | 70.0 | not found | - | - | - | - |" in table
    mean = rows[-1]
    assert mean["paper_image_auroc"] is None and mean["paper_pixel_auroc"] == 97.0  # ELPV has no pixel cell
    bad = tmp_path / "numbers.json"
    bad.write_text(json.dumps({"sources": ["x"], "numbers": {"btad": {"image_auroc": 191}}}))
    with pytest.raises(ValueError, match=r"\[btad\]\[image_auroc\] must be a percentage"):
        load_paper_numbers(bad)
    bad.write_text(json.dumps({"numbers": {}}))
    with pytest.raises(ValueError, match="must hold 'sources'"):
        load_paper_numbers(bad)


def test_main_runs_replicas_and_synthetic_domains_with_paper_numbers(model_dir, tmp_path, capsys):
    result = main(
        [
            "--make_replicas",
            str(tmp_path / "replicas"),
            "--datasets",
            "mvtec",
            "lag",
            "--synthetic_domains",
            "rings",
            "--model",
            str(model_dir),
            "--output_dir",
            str(tmp_path / "out"),
            "--paper_numbers",
            "--use_cpu",
        ]
    )
    assert [outcome.key for outcome in result.outcomes] == ["mvtec", "lag", "synthetic"]
    printed = capsys.readouterr().out
    assert "| industrial | MVTec AD |" in printed and "not found" in printed and "| synthetic | Synthetic |" in printed
    assert result.absent == [] and "Not present under" not in printed  # only the two asked for were looked for


def test_main_exits_with_a_clear_message_when_nothing_is_found(model_dir, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit) as raised:
        main(["--data_root", str(tmp_path / "empty"), "--model", str(model_dir), "--output_dir", str(tmp_path / "o")])
    assert raised.value.code == 2
    assert "None of the benchmark datasets" in capsys.readouterr().err


@pytest.mark.integration
def test_script_runs_as_a_subprocess(model_dir, tmp_path):
    completed = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "examples" / "benchmark_paper.py"),
            "--make_replicas",
            str(tmp_path / "replicas"),
            "--datasets",
            "dtd",
            "--model",
            str(model_dir),
            "--output_dir",
            str(tmp_path / "out"),
            "--use_cpu",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr
    assert "| industrial | DTD-Synthetic |" in completed.stdout
    assert (tmp_path / "out" / "benchmark.csv").is_file()

# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""The paper's cross-dataset zero-shot table in one command (a thin CLI over ``faprompt_hf.paper_benchmark``).

Finds which of the paper's 19 datasets are under --data_root (by their usual folder names), evaluates the model
zero-shot on each with the released evaluation's settings, and prints and writes the table (benchmark.md, .csv,
.json) with the industrial and medical means. See docs/evaluation.md.

    python examples/benchmark_paper.py --data_root /data --model faprompt-trained-on-mvtec \
        --mvtec_model faprompt-trained-on-visa --output_dir results/benchmark --paper_numbers --resume

Offline, on miniature replicas of every layout and a tiny random model (numbers mean nothing):

    python examples/benchmark_paper.py --make_replicas replicas --model outputs/faprompt-tiny --output_dir bench
"""

from __future__ import annotations

from faprompt_hf.paper_benchmark import main

if __name__ == "__main__":
    main()

# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""Write the released FAPrompt / AnomalyCLIP code's meta.json for one of the paper's datasets, in its public layout.

    python examples/write_meta_json.py btad /data/BTech_Dataset_transformed
    python examples/write_meta_json.py headct /data/head_ct --meta_path /indexes/headct_meta.json

The released code then reads the dataset with --data_path pointing at the same folder. See docs/data.md.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

from faprompt_hf.data.paper_datasets import all_dataset_specs, write_paper_meta_json


def main(argv: Sequence[str] | None = None) -> Path:
    """Parse the arguments and write the file.

    Args:
        argv: Command-line arguments (default: ``sys.argv[1:]``).

    Returns:
        The written meta.json.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", help=f"One of {', '.join(all_dataset_specs())} (or its title / folder name).")
    parser.add_argument("root", help="The dataset folder, as the owners publish it.")
    parser.add_argument("--meta_path", help="Output file (default: ROOT/meta.json).")
    parser.add_argument("--splits", nargs="+", help="Splits to write (default: test, and train when present).")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        path = write_paper_meta_json(args.dataset, args.root, args.meta_path, args.splits)
    except (ValueError, FileNotFoundError) as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    print(f"Wrote {path}")
    return path


if __name__ == "__main__":
    main()

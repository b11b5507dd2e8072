# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""The ``faprompt-hf`` launcher: runs :func:`faprompt_hf.cli.main` with the package's ``__init__`` deferred.

Importing ``faprompt_hf`` imports torch and transformers (it registers the model with transformers' Auto classes),
which takes seconds. The command line itself needs neither, so this launcher creates the ``faprompt_hf`` package
module without running its ``__init__``, lets :mod:`faprompt_hf.cli` parse the arguments (``--help`` and
``--version`` answer here), and each command completes the import (:func:`faprompt_hf.cli.load_package`) before it
loads a model. ``python -m faprompt_hf.cli`` does the same without the deferral.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Sequence

__all__ = ["main"]


def _defer_package_init() -> None:
    """Register ``faprompt_hf`` as a package whose ``__init__`` has not run yet (a no-op if it is imported)."""
    if "faprompt_hf" in sys.modules:
        return
    spec = importlib.util.find_spec("faprompt_hf")
    if spec is None or spec.loader is None:
        return
    package = importlib.util.module_from_spec(spec)
    package._faprompt_hf_deferred_init = True
    sys.modules["faprompt_hf"] = package


def main(argv: Sequence[str] | None = None) -> None:
    """Run ``faprompt-hf`` (see :func:`faprompt_hf.cli.main`).

    Args:
        argv: Arguments (default: ``sys.argv[1:]``).
    """
    _defer_package_init()
    from faprompt_hf.cli import main as cli_main

    cli_main(argv)


if __name__ == "__main__":
    main()

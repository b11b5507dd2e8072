# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""What ``accelerate launch`` was asked for against what started (torch-free)."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence

__all__ = ["requested_num_processes", "warn_if_fewer_processes"]

logger = logging.getLogger(__name__)


def _launcher_command_line() -> list[str]:
    """The parent process's command line (Linux ``/proc``; empty elsewhere or when unreadable)."""
    try:
        with open(f"/proc/{os.getppid()}/cmdline", "rb") as handle:
            return [part.decode(errors="replace") for part in handle.read().split(b"\0") if part]
    except OSError:
        return []


def requested_num_processes(
    environ: Mapping[str, str] | None = None, launcher_argv: Sequence[str] | None = None
) -> int | None:
    """The ``--num_processes`` that ``accelerate launch`` was given.

    Read from the launcher's command line (the parent process); when that is not readable, the environment
    ``accelerate launch`` sets tells at least that more than one was asked for (``MASTER_ADDR`` without
    ``WORLD_SIZE``: its one-process launcher was given ``--num_processes`` > 1), reported as 2.

    Args:
        environ: The environment (default: ``os.environ``).
        launcher_argv: The launcher's command line (default: the parent process's).

    Returns:
        The number, or None outside ``accelerate launch`` or when it cannot be told.
    """
    environ = os.environ if environ is None else environ
    if "ACCELERATE_USE_CPU" not in environ and "ACCELERATE_MIXED_PRECISION" not in environ:
        return None  # not started by accelerate launch
    argv = _launcher_command_line() if launcher_argv is None else list(launcher_argv)
    if any(part.endswith("accelerate") or part == "launch" for part in argv[:3]):
        for index, part in enumerate(argv):
            if part == "--num_processes" and index + 1 < len(argv) and argv[index + 1].isdigit():
                return int(argv[index + 1])
            if part.startswith("--num_processes=") and part.split("=", 1)[1].isdigit():
                return int(part.split("=", 1)[1])
    if "MASTER_ADDR" in environ and "WORLD_SIZE" not in environ:
        return 2
    return None


def warn_if_fewer_processes(
    started: int, environ: Mapping[str, str] | None = None, launcher_argv: Sequence[str] | None = None
) -> str | None:
    """Warn when ``accelerate launch`` was asked for more processes than started.

    ``accelerate launch --cpu --num_processes 2`` (without ``--multi_gpu``) starts one process, silently; on a CPU,
    ``accelerate launch --multi_gpu --num_processes 2 ... --use_cpu`` starts two.

    Args:
        started: ``accelerator.num_processes`` (or ``PartialState().num_processes``).
        environ: The environment (default: ``os.environ``).
        launcher_argv: The launcher's command line (default: the parent process's).

    Returns:
        The warning, or None when the numbers agree.
    """
    requested = requested_num_processes(environ, launcher_argv)
    if requested is None or requested <= started:
        return None
    message = (
        f"accelerate launch was asked for {requested} processes but {started} started: on a CPU, "
        f"`accelerate launch --cpu --num_processes {requested}` starts one. For {requested} CPU processes use "
        f"`accelerate launch --multi_gpu --num_processes {requested} ... --use_cpu` (see docs/cli.md)."
    )
    logger.warning(message)
    return message

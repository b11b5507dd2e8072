# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""Writing files so that a failure (full disk, file-size limit, a killed process) never loses the old ones.

Every file the package writes goes through :func:`atomic_write` (one file) or :func:`staged_directory` (a folder of
files): the new content is written under a temporary name beside its destination, flushed to disk, and only then
renamed over the old file. A failure before the rename leaves the old file exactly as it was and removes the
temporary one.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = [
    "atomic_write",
    "check_model_reference",
    "is_hub_id",
    "looks_like_local_path",
    "staged_directory",
    "write_failure",
]


def is_hub_id(name: str | os.PathLike | None) -> bool:
    """Whether ``name`` looks like a hub repository id (``owner/name``) rather than an existing local path."""
    if not name:
        return False
    name = os.fspath(name)
    return not os.path.exists(name) and re.fullmatch(r"[\w.-]+/[\w.-]+", name) is not None


def looks_like_local_path(name: str | os.PathLike) -> bool:
    r"""Whether a model reference is meant as a local path rather than a hub id.

    A path: a ``PathLike``, or a string that starts with ``.``, ``/`` or ``~``, holds the OS separator where that is
    not ``/`` (``\\`` on Windows), holds more than one ``/`` or ends with one. A hub id is ``name`` or
    ``owner/name``.

    Args:
        name: The reference (``--model``, ``model=``).

    Returns:
        True for a local path.
    """
    if not isinstance(name, str):
        return True
    separators = {os.sep, os.altsep} - {None, "/"}
    return (
        name.startswith((".", "/", "~"))
        or any(separator in name for separator in separators)
        or name.count("/") > 1
        or name.endswith("/")
    )


def check_model_reference(name: str | os.PathLike) -> None:
    """Fail at once, without hub requests, when a model reference is a local path that does not exist.

    Args:
        name: The reference (``--model``, ``model=``, ``from_pretrained``'s first argument).

    Raises:
        FileNotFoundError: A path-like reference (see :func:`looks_like_local_path`) that does not exist; the
            message says "no such folder" and lists close names in its parent folder.
    """
    import difflib

    if not looks_like_local_path(name):
        return
    path = Path(os.path.expanduser(os.fspath(name)))
    if path.exists():
        return
    parent = path.parent if str(path.parent) else Path(".")
    message = f"{os.fspath(name)!r}: no such folder"
    if parent.is_dir():
        entries = sorted(entry.name for entry in parent.iterdir())
        close = difflib.get_close_matches(path.name, entries, n=5, cutoff=0.5)
        if close:
            message += f"; close names in {os.fspath(parent)}/: {', '.join(close)}"
        else:
            message += f" in {os.fspath(parent)}/"
    else:
        existing = next((folder for folder in path.parents if folder.is_dir()), None)
        message += f" (nor its parent {os.fspath(parent)}/"
        message += f"; the nearest existing folder is {os.fspath(existing)}/)" if existing is not None else ")"
    raise FileNotFoundError(
        message + ". Give an existing model folder, or a hub id (owner/name) for a model on the Hugging Face Hub."
    )


def _default_permissions() -> int:
    """The permission bits a plain ``open(path, "w")`` would give a new file (0o666 less the umask)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def write_failure(error: OSError, path: str | os.PathLike) -> OSError:
    """An ``OSError`` that names the file being written and the cause, and says that the old file is intact.

    Args:
        error: The error raised while writing.
        path: The destination that was being written.

    Returns:
        An ``OSError`` with the same ``errno`` (raise it ``from error``).
    """
    cause = error.strerror or str(error)
    hint = " Free some space and run again." if error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG) else ""
    return OSError(
        error.errno, f"Could not write {os.fspath(path)!r}: {cause}. The previous version, if any, is intact.{hint}"
    )


def _fsync_directory(folder: Path) -> None:
    """Flush a directory entry (the rename) to disk where the platform allows it."""
    with contextlib.suppress(OSError):
        handle = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(handle)
        finally:
            os.close(handle)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; rename it over ``path`` when the block ends without an error.

    Args:
        path: The destination file; its folder is created if needed.
        mode: ``"w"`` (text) or ``"wb"`` (bytes).
        encoding: Text encoding (ignored in binary mode).

    Yields:
        The open temporary file.

    Raises:
        OSError: Writing failed (full disk, permissions, ...): the message names ``path`` and the cause; the old
            file is untouched and the temporary file is removed.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write mode must be 'w' or 'wb', got {mode!r}.")
    destination = Path(path)
    temporary = None
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(prefix=f".{destination.name}.", suffix=".tmp", dir=destination.parent)
        permissions = destination.stat().st_mode & 0o777 if destination.exists() else _default_permissions()
        os.chmod(temporary, permissions)
        with os.fdopen(descriptor, mode, encoding=None if "b" in mode else encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, destination)
        temporary = None
        _fsync_directory(destination.parent)
    except OSError as error:
        raise write_failure(error, destination) from error
    finally:
        if temporary is not None:
            with contextlib.suppress(OSError):
                os.unlink(temporary)


@contextlib.contextmanager
def staged_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Stage a folder's files in a temporary folder; move each over its destination once all were written.

    Files already in ``path`` that the block does not write are kept (a processor saved beside a model stays).
    A failure inside the block (serialisation, full disk, a killed process) leaves ``path`` exactly as it was. The
    files are then moved in one rename each: every file is whole, old or new, but a failure between two renames
    (which need no space) could leave some files new and others old.

    Args:
        path: The destination folder; created if needed.

    Yields:
        The temporary folder to write into (a sibling of ``path``, on the same file system).

    Raises:
        OSError: Writing failed: the message names ``path`` and the cause.
    """
    destination = Path(path)
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", suffix=".tmp", dir=destination.parent))
    try:
        yield staging
        for root, _, files in os.walk(staging):
            for name in files:
                with open(os.path.join(root, name), "rb") as handle:
                    os.fsync(handle.fileno())
        destination.mkdir(exist_ok=True)
        for source in sorted(staging.rglob("*")):
            target = destination / source.relative_to(staging)
            if source.is_dir():
                target.mkdir(exist_ok=True)
            else:
                os.replace(source, target)
        _fsync_directory(destination)
    except OSError as error:
        raise write_failure(error, destination) from error
    finally:
        shutil.rmtree(staging, ignore_errors=True)

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
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = [
    "DIGEST_ALGORITHM",
    "INTEGRITY_FILE_NAME",
    "VERIFY_DIGESTS_ENV",
    "atomic_write",
    "check_model_reference",
    "digests_enabled",
    "file_sha256",
    "is_hub_id",
    "looks_like_local_path",
    "read_integrity_manifest",
    "remove_stale_staging",
    "staged_directory",
    "verify_file_digest",
    "write_failure",
    "write_integrity_manifest",
]

INTEGRITY_FILE_NAME = "integrity.json"
"""The manifest a saved model folder carries: the SHA-256 of each weight file written beside it."""

DIGEST_ALGORITHM = "sha256"

VERIFY_DIGESTS_ENV = "FAPROMPT_VERIFY_DIGESTS"
"""Set to ``0`` (or ``false``, ``no``, ``off``) to skip digest verification everywhere (loading, resuming, ONNX)."""

_DIGEST_CHUNK = 8 * 2**20


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


def _process_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine (one we may not signal counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def remove_stale_staging(path: str | os.PathLike) -> list[Path]:
    """Remove the staging folders that writers of ``path`` killed mid-write left beside it.

    :func:`staged_directory` stages in a hidden sibling ``.<name>.<pid>-<random>.tmp``; a writer killed before the
    move leaves it behind. Those whose process no longer runs are removed; those of a live process (a concurrent
    writer) are kept.

    Args:
        path: The destination folder.

    Returns:
        The folders removed.
    """
    destination = Path(path)
    pattern = re.compile(rf"^\.{re.escape(destination.name)}\.(\d+)-[^/]*\.tmp$")
    removed = []
    if not destination.parent.is_dir():
        return removed
    for candidate in destination.parent.iterdir():
        match = pattern.match(candidate.name)
        if match and candidate.is_dir() and not _process_alive(int(match.group(1))):
            shutil.rmtree(candidate, ignore_errors=True)
            removed.append(candidate)
    return removed


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
    # The staging folder's name carries the writer's process id, so that a later writer can tell a folder left by a
    # killed process (remove_stale_staging) from one still being written.
    staging = Path(
        tempfile.mkdtemp(prefix=f".{destination.name}.{os.getpid()}-", suffix=".tmp", dir=destination.parent)
    )
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


# ----------------------------------------------------------------------------------------------------------------------
# Digests of written files: a file damaged after it was written is found, and named, when it is read back
# ----------------------------------------------------------------------------------------------------------------------


def digests_enabled(verify: bool | None = None) -> bool:
    """Whether digests are to be verified: ``verify`` when given, else unless ``FAPROMPT_VERIFY_DIGESTS`` is off.

    Args:
        verify: An explicit choice (a ``verify_digests=`` argument); None defers to the environment variable.

    Returns:
        True to verify.
    """
    if verify is not None:
        return bool(verify)
    return os.environ.get(VERIFY_DIGESTS_ENV, "1").strip().lower() not in {"0", "false", "no", "off"}


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes, read in 8 MB chunks.

    Args:
        path: The file.

    Returns:
        The hex digest.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_DIGEST_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def write_integrity_manifest(folder: str | os.PathLike, names: list[str]) -> dict[str, str]:
    """Write :data:`INTEGRITY_FILE_NAME` in ``folder`` with the SHA-256 of each of its files ``names``.

    Args:
        folder: The folder holding the files (the manifest is written there, atomically).
        names: File names relative to ``folder``.

    Returns:
        ``{name: hex digest}``.
    """
    folder = Path(folder)
    digests = {name: file_sha256(folder / name) for name in sorted(names)}
    with atomic_write(folder / INTEGRITY_FILE_NAME) as handle:
        json.dump({"algorithm": DIGEST_ALGORITHM, "files": digests}, handle, indent=2)
        handle.write("\n")
    return digests


def read_integrity_manifest(path: str | os.PathLike) -> dict[str, str]:
    """The ``{file name: SHA-256}`` of an integrity manifest.

    Args:
        path: The manifest file.

    Returns:
        The recorded digests.

    Raises:
        OSError: The manifest is not valid JSON or not a manifest; the message names it.
    """
    try:
        manifest = json.loads(Path(path).read_text(encoding="utf-8"))
        files = manifest["files"]
        if manifest.get("algorithm") != DIGEST_ALGORITHM or not all(
            isinstance(name, str) and isinstance(value, str) for name, value in files.items()
        ):
            raise ValueError(f"expected {{'algorithm': '{DIGEST_ALGORITHM}', 'files': {{name: hex digest}}}}")
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise OSError(
            f"{path} is not a readable integrity manifest ({type(error).__name__}: {error}): download or save the "
            f"model again, or set {VERIFY_DIGESTS_ENV}=0 to load without checking the files."
        ) from error
    return dict(files)


def verify_file_digest(path: str | os.PathLike, expected: str, what: str = "") -> None:
    """Refuse a file whose SHA-256 differs from the one recorded when it was written.

    Args:
        path: The file.
        expected: The recorded hex digest.
        what: How to get an intact copy, appended to the message (e.g. "Download the model again.").

    Raises:
        OSError: The file is missing, or its bytes changed since it was written; the message names it.
    """
    try:
        found = file_sha256(path)
    except OSError as error:
        raise OSError(error.errno, f"Cannot read {path} to verify its digest: {error.strerror}. {what}") from error
    if found != expected:
        raise OSError(
            f"{path} is damaged: its SHA-256 is {found}, but {expected} was recorded when it was written (a "
            f"corrupted copy, a disk error or an edit). {what} To use it anyway, set {VERIFY_DIGESTS_ENV}=0."
        )

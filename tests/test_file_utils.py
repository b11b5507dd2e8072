import json
import os
import subprocess
import sys

import pytest

from faprompt_hf.file_utils import atomic_write, staged_directory


def test_atomic_write_replaces_the_file(tmp_path):
    path = tmp_path / "meta.json"
    path.write_text("old")
    with atomic_write(path) as handle:
        handle.write("new")
    assert path.read_text() == "new"
    assert os.listdir(tmp_path) == ["meta.json"]


def test_atomic_write_keeps_the_old_file_when_the_block_fails(tmp_path):
    path = tmp_path / "meta.json"
    path.write_text('{"keep": 1}')
    with pytest.raises(RuntimeError), atomic_write(path) as handle:
        handle.write('{"trunc')
        raise RuntimeError("killed mid-write")
    assert json.loads(path.read_text()) == {"keep": 1}
    assert os.listdir(tmp_path) == ["meta.json"]


def test_atomic_write_keeps_permissions(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("x")
    path.chmod(0o640)
    with atomic_write(path) as handle:
        handle.write("y")
    assert path.stat().st_mode & 0o777 == 0o640


_FILE_SIZE_LIMIT = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))
from faprompt_hf.file_utils import atomic_write
try:
    with atomic_write(sys.argv[1]) as handle:
        handle.write("x" * 100_000)
except OSError as error:
    print(error)
    sys.exit(3)
"""


@pytest.mark.integration
@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX")
def test_a_file_size_limit_leaves_the_old_file_and_names_the_path(tmp_path):
    path = tmp_path / "meta.json"
    path.write_text('{"train": []}')
    result = subprocess.run([sys.executable, "-c", _FILE_SIZE_LIMIT, str(path)], capture_output=True, text=True)
    assert result.returncode == 3, result.stderr
    assert str(path) in result.stdout and "intact" in result.stdout
    assert path.read_text() == '{"train": []}'
    assert os.listdir(tmp_path) == ["meta.json"]


def test_staged_directory_keeps_other_files_and_replaces_written_ones(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "preprocessor_config.json").write_text("processor")
    (folder / "config.json").write_text("old")
    with staged_directory(folder) as staging:
        (staging / "config.json").write_text("new")
        (staging / "sub").mkdir()
        (staging / "sub" / "a.bin").write_bytes(b"1")
    assert (folder / "config.json").read_text() == "new"
    assert (folder / "preprocessor_config.json").read_text() == "processor"
    assert (folder / "sub" / "a.bin").read_bytes() == b"1"
    assert sorted(os.listdir(tmp_path)) == ["model"]


def test_staged_directory_failure_leaves_the_folder_untouched(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("old")
    with pytest.raises(ValueError), staged_directory(folder) as staging:
        (staging / "config.json").write_text("half")
        raise ValueError("serialisation failed")
    assert (folder / "config.json").read_text() == "old"
    assert sorted(os.listdir(tmp_path)) == ["model"]


def test_stale_staging_folders_of_dead_writers_are_removed_and_live_ones_kept(tmp_path):
    from faprompt_hf.file_utils import remove_stale_staging

    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(finished.stdout)
    dead = tmp_path / f".out.{dead_pid}-abc.tmp"
    live = tmp_path / f".out.{os.getpid()}-def.tmp"
    other = tmp_path / f".other.{dead_pid}-ghi.tmp"  # another destination's: not ours to remove
    for folder in (dead, live, other):
        folder.mkdir()
    assert remove_stale_staging(tmp_path / "out") == [dead]
    assert not dead.exists() and live.is_dir() and other.is_dir()


def test_staging_folders_carry_the_writers_pid(tmp_path):
    from faprompt_hf.file_utils import staged_directory

    with staged_directory(tmp_path / "out") as staging:
        assert staging.name.startswith(f".out.{os.getpid()}-") and staging.name.endswith(".tmp")


def test_file_digests_and_their_manifest(tmp_path):
    import hashlib

    from faprompt_hf.file_utils import (
        INTEGRITY_FILE_NAME,
        read_integrity_manifest,
        verify_file_digest,
        write_integrity_manifest,
    )

    (tmp_path / "a.bin").write_bytes(b"abc")
    digests = write_integrity_manifest(tmp_path, ["a.bin"])
    assert digests == {"a.bin": hashlib.sha256(b"abc").hexdigest()}
    assert read_integrity_manifest(tmp_path / INTEGRITY_FILE_NAME) == digests
    verify_file_digest(tmp_path / "a.bin", digests["a.bin"])
    (tmp_path / "a.bin").write_bytes(b"abd")
    with pytest.raises(OSError, match=r"a\.bin is damaged: its SHA-256 .*FAPROMPT_VERIFY_DIGESTS=0"):
        verify_file_digest(tmp_path / "a.bin", digests["a.bin"], "Save it again.")

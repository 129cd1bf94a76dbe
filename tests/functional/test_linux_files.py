"""File system calls of unmodified Linux programs, recorded and replayed (tests/data/linux/files.c).

The program checks each call's result against what Linux returns (errno included) and
prints "PASS files"; it is built static, static-PIE, dynamic PIE and dynamic non-PIE.
Every recording is replayed with --verify and must reproduce the console exactly.
"""

from __future__ import annotations

import os

import pytest

from conftest import describe, replay_verify
from linux_helpers import linux_prog, record_linux, record_replay_linux  # noqa: F401  (fixture)

pytestmark = pytest.mark.timeout(60)

INPUT = b"line one\nline two\nline three\n"


def scratch_dir(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "input.txt").write_bytes(INPUT)
    os.symlink("input.txt", work / "link")
    return work


@pytest.mark.parametrize("variant", ["pie", "no-pie", "static", "static-pie"])
def test_file_calls(linux_prog, tmp_path, variant):
    work = scratch_dir(tmp_path)
    record, replay, _ = record_replay_linux(tmp_path, [linux_prog("files", variant), work])
    assert "PASS files" in record.stdout, record.stdout
    assert "entries: . .. input.txt link out.txt sub\n" in record.stdout
    # The program's writes really happened on the host while recording ...
    assert sorted(p.name for p in work.iterdir()) == ["input.txt", "link"]


def test_replay_touches_no_host_file(linux_prog, tmp_path):
    """Replay answers from the trace: the scratch directory may be gone, nothing is recreated."""
    work = scratch_dir(tmp_path)
    record, _, trace = record_replay_linux(tmp_path, [linux_prog("files", "static"), work])
    for path in work.iterdir():
        path.unlink()
    work.rmdir()
    replay = replay_verify(trace)
    assert replay.stdout == record.stdout
    assert not work.exists()


def test_stdin_is_recorded(linux_prog, tmp_path):
    trace = tmp_path / "streams.vmrr"
    record = record_linux(trace, [linux_prog("streams", "static")], input=b"x" * 1000)
    assert record.returncode == 0, describe(record)
    assert "read 1000 bytes from stdin\nPASS streams\n" in record.stdout, describe(record)
    replay = replay_verify(trace)
    assert "read 1000 bytes from stdin" in replay.stdout, describe(replay)


def test_replay_keeps_stdout_and_stderr_apart(linux_prog, tmp_path):
    trace = tmp_path / "streams.vmrr"
    record = record_linux(trace, [linux_prog("streams", "static")])
    assert record.stdout == "first to stdout\nread 0 bytes from stdin\nPASS streams\n", describe(record)
    assert "first to stderr\nsecond to stderr\n" in record.stderr, describe(record)
    replay = replay_verify(trace)
    assert replay.stdout == record.stdout, describe(replay)
    assert "first to stderr\nsecond to stderr\n" in replay.stderr, describe(replay)


def test_closed_files_free_their_host_descriptors(linux_prog, tmp_path):
    """800 opens of a file and of a directory under a host limit of 128 descriptors."""
    import resource
    import subprocess
    import sys

    from conftest import REPO

    (tmp_path / "data.txt").write_text("content\n")
    exe = linux_prog("reopen", "static")

    def low_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (128, 128))

    run = subprocess.run([sys.executable, "-m", "vmrr", "run", "--", str(exe), str(tmp_path / "data.txt"),
                          str(tmp_path), "800"], cwd=REPO, capture_output=True, text=True, timeout=60,
                         stdin=subprocess.DEVNULL, preexec_fn=low_limit)
    assert run.returncode == 0 and "PASS reopen" in run.stdout, describe(run)

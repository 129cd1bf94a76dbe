"""Unmodified Debian binaries, recorded and replayed: python3, sha256sum, sort, ls -l.

Each program is recorded once (module-scoped), replayed with --verify twice (identical
console each time), and replayed again after its input files were changed or deleted on
the host: the trace carries every file the program read, so it is self-contained. Where
the output is deterministic it must equal the same command run natively.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import describe, replay_verify
from linux_helpers import PY_ENV, record_linux

pytestmark = pytest.mark.timeout(90)

PYTHON = Path("/usr/bin/python3")
SCRIPT = """\
import random, sys, time
with open(sys.argv[1]) as f:
    numbers = [int(line) for line in f]
print("sum", sum(numbers))
print("random", random.random(), random.randint(1, 10**9))
print("time", time.time(), time.monotonic())
print("PASS python")
"""


@dataclass
class Recording:
    argv: list[str]
    inputs: Path
    record: subprocess.CompletedProcess
    trace: Path
    native: str | None          # the command's output run natively (None: host-dependent)


def _inputs(root: Path) -> Path:
    work = root / "inputs"
    (work / "dir").mkdir(parents=True)
    (work / "numbers.txt").write_text("3\n1\n2\n")
    (work / "script.py").write_text(SCRIPT)
    (work / "a.txt").write_text("pear\napple\nfig\n")
    (work / "b.txt").write_text("banana\ncherry\n")
    (work / "dir" / "one").write_text("x\n")
    (work / "dir" / "two").write_text("yy\n")
    os.symlink("one", work / "dir" / "link")
    return work


def _argv(name: str, work: Path) -> tuple[list[str], tuple[str, ...], bool]:
    """(argv, extra record options, whether the output is deterministic)."""
    if name == "python3":
        return [str(PYTHON), str(work / "script.py"), str(work / "numbers.txt")], PY_ENV, False
    if name == "sha256sum":
        return ["/usr/bin/sha256sum", str(work / "a.txt"), str(work / "b.txt")], (), True
    if name == "sort":
        return ["/usr/bin/sort", str(work / "a.txt"), str(work / "b.txt")], (), True
    if name == "ls":
        return ["/usr/bin/ls", "-l", str(work / "dir")], (), True
    raise ValueError(name)


PROGRAMS = ["python3", "sha256sum", "sort", "ls"]
_cache: dict[str, Recording] = {}


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    def get(name: str) -> Recording:
        if name not in _cache:
            argv, options, deterministic = _argv(name, work := _inputs(tmp_path_factory.mktemp(name)))
            if not Path(argv[0]).is_file():
                pytest.skip(f"{argv[0]} is not installed")
            native = None
            if deterministic:
                native = subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout
            trace = work.parent / f"{name}.vmrr"
            record = record_linux(trace, argv, *options, timeout=60)
            assert record.returncode == 0, describe(record)
            _cache[name] = Recording(argv, work, record, trace, native)
        return _cache[name]

    yield get
    _cache.clear()


@pytest.mark.parametrize("name", PROGRAMS)
def test_record_and_replay_twice(recorded, name):
    rec = recorded(name)
    if rec.native is not None:
        assert rec.record.stdout == rec.native, describe(rec.record)
    for _ in range(2):
        replay = replay_verify(rec.trace)
        assert replay.stdout == rec.record.stdout, describe(rec.record) + describe(replay)


@pytest.mark.parametrize("name", PROGRAMS)
def test_replay_after_inputs_changed_or_deleted(recorded, name):
    rec = recorded(name)
    (rec.inputs / "a.txt").write_text("changed\n")
    (rec.inputs / "numbers.txt").write_text("100\n")
    (rec.inputs / "script.py").unlink()
    shutil.rmtree(rec.inputs / "dir")
    replay = replay_verify(rec.trace)
    assert replay.stdout == rec.record.stdout, describe(rec.record) + describe(replay)


def test_python_output(recorded):
    out = recorded("python3").record.stdout
    assert "sum 6\n" in out and "PASS python\n" in out, out
    assert re.search(r"^random 0\.\d+ \d+$", out, re.M), out
    assert re.search(r"^time \d{10}\.\d+ \d+\.\d+$", out, re.M), out


def test_ls_long_listing(recorded):
    out = recorded("ls").record.stdout
    assert re.search(r"^-rw.* one$", out, re.M) and re.search(r"^l.* link -> one$", out, re.M), out


def test_ls_long_listing_prints_no_error(recorded):
    rec = recorded("ls")
    assert "ls:" not in rec.record.stderr, rec.record.stderr


_LINK_CALLS = ("vmm/linux/syscalls.py has no working entry for creat (85), link (86, ENOSYS), "
               "symlink (88), linkat (265) or symlinkat (266); the handlers are ready in files.py "
               "(sys_creat, sys_link, sys_linkat, sys_symlink, sys_symlinkat)")


def test_tar_creates_an_archive(tmp_path):
    """GNU tar opens its archive with creat(2)."""
    work = _inputs(tmp_path)
    archive = tmp_path / "inputs.tar"
    record = record_linux(tmp_path / "tar.vmrr", ["/usr/bin/tar", "-cf", str(archive), "-C", str(tmp_path),
                                                  "inputs"])
    assert record.returncode == 0, describe(record)
    names = subprocess.run(["tar", "-tf", str(archive)], capture_output=True, text=True, timeout=30).stdout
    assert "inputs/numbers.txt" in names and "inputs/dir/link" in names, names
    replay_verify(tmp_path / "tar.vmrr")
    assert work.is_dir()


def test_ln_makes_links(tmp_path):
    work = _inputs(tmp_path)
    for argv in (["/usr/bin/ln", "-s", "a.txt", str(work / "soft")],
                 ["/usr/bin/ln", str(work / "a.txt"), str(work / "hard")]):
        record = record_linux(tmp_path / f"{Path(argv[-1]).name}.vmrr", argv)
        assert record.returncode == 0, describe(record)
    assert os.readlink(work / "soft") == "a.txt"
    assert (work / "hard").stat().st_ino == (work / "a.txt").stat().st_ino

"""Helpers for the Linux-program tests: build the C test programs, record and replay them.

The programs live in tests/data/linux/*.c. Each prints a success marker ("PASS <name>")
or "FAIL file:line: condition" and exits 1. ``linux_prog`` (session-scoped) compiles a
program once per variant into pytest's temporary directory:

    linux_prog("files")                       dynamic PIE (gcc's default)
    linux_prog("files", "static")             -static (non-PIE)
    linux_prog("files", "static-pie")         -static-pie
    linux_prog("files", "no-pie")             dynamic, -no-pie

``record_linux`` and ``record_replay_linux`` drive the real CLI: ``vmrr record -o TRACE
[OPTIONS] -- PROGRAM ARGS``, then ``vmrr replay TRACE --verify`` with the console compared
byte for byte.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import REPO, describe, replay_verify, vmrr

SOURCES = REPO / "tests" / "data" / "linux"
VARIANTS: dict[str, list[str]] = {
    "pie": ["-fPIE", "-pie"],
    "no-pie": ["-fno-pie", "-no-pie"],
    "static": ["-static"],
    "static-pie": ["-fPIE", "-static-pie"],
}
# Python on the host must not write bytecode caches next to the standard library.
PY_ENV = ("--env", "PYTHONDONTWRITEBYTECODE=1")
_SECONDS = re.compile(r"in (\d+(?:\.\d+)?) s")


class LinuxPrograms:
    """Compiles tests/data/linux/NAME.c on first use; later calls return the same binary."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self._built: dict[tuple, Path] = {}

    def __call__(self, name: str, variant: str = "pie", *cflags: str) -> Path:
        key = (name, variant, cflags)
        if key in self._built:
            return self._built[key]
        if shutil.which("gcc") is None:
            pytest.skip("gcc is not installed")
        suffix = "-".join([variant, *(f.strip("-").replace("=", "") for f in cflags)])
        out = self.out_dir / f"{name}-{suffix}"
        cmd = ["gcc", "-g", "-O1", "-Wall", *VARIANTS[variant], *cflags, "-o", str(out),
               str(SOURCES / f"{name}.c")]
        build = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert build.returncode == 0, f"$ {' '.join(cmd)}\n{build.stderr}"
        self._built[key] = out
        return out


@pytest.fixture(scope="session")
def linux_prog(tmp_path_factory) -> LinuxPrograms:
    return LinuxPrograms(tmp_path_factory.mktemp("linux-progs"))


def record_linux(trace: Path, argv, *options, timeout: float = 60,
                 input: bytes | None = None) -> subprocess.CompletedProcess:
    """``vmrr record -o TRACE OPTIONS -- ARGV``; asserts no traceback and a trace on disk."""
    record = vmrr("record", "-o", trace, *options, "--", *argv, timeout=timeout, input=input)
    assert "Traceback" not in record.stderr, describe(record)
    assert trace.is_file(), "the recording left no trace" + describe(record)
    return record


def record_replay_linux(tmp_path: Path, argv, *options, expect: int = 0, name: str | None = None,
                        timeout: float = 60):
    """Record ARGV, check its exit code, replay ``--verify`` and compare the console.

    Returns:
        (record CompletedProcess, replay CompletedProcess, trace Path)
    """
    trace = tmp_path / f"{name or Path(str(argv[0])).name}.vmrr"
    record = record_linux(trace, argv, *options, timeout=timeout)
    assert record.returncode == expect, f"record exited {record.returncode}, expected {expect}" + describe(record)
    replay = replay_verify(trace, timeout=timeout)
    assert replay.stdout == record.stdout, ("replay reproduced a different console"
                                            + describe(record) + describe(replay))
    return record, replay, trace


def reported_seconds(stderr: str, prefix: str) -> float:
    """The ``in N s`` figure of the first stderr line starting with ``prefix``."""
    for line in stderr.splitlines():
        if line.startswith(prefix):
            match = _SECONDS.search(line)
            if match:
                return float(match.group(1))
    raise AssertionError(f"no line starting {prefix!r} with a duration in:\n{stderr}")

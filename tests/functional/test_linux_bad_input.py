"""Programs vmrr cannot run: one line on stderr naming what and why, exit 2, no traceback.

Missing programs, files that are not ELF, ELFs for another machine or for 32-bit x86,
object files, truncated ELFs, empty files, directories, a missing ELF interpreter — through both ``vmrr run`` and
``vmrr record`` (which must not leave a trace behind).
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from conftest import describe, vmrr
from linux_helpers import SOURCES, linux_prog  # noqa: F401  (fixture)

pytestmark = pytest.mark.timeout(60)


def _aarch64_elf() -> bytes:
    header = (b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
              + struct.pack("<HHIQQQIHHHHHH", 2, 183, 1, 0x400078, 64, 0, 0, 64, 56, 1, 64, 0, 0))
    load = struct.pack("<IIQQQQQQ", 1, 5, 0, 0x400000, 0x400000, 0x80, 0x80, 0x1000)
    return header + load + bytes(8)


def _i386_elf() -> bytes:
    header = (b"\x7fELF" + bytes([1, 1, 1, 0]) + bytes(8)
              + struct.pack("<HHIIIIIHHHHHH", 2, 3, 1, 0x8048054, 52, 0, 0, 52, 32, 1, 40, 0, 0))
    load = struct.pack("<IIIIIIII", 1, 0, 0x8048000, 0x8048000, 0x60, 0x60, 5, 0x1000)
    return header + load + b"\xcd\x80" * 6          # int 0x80


@pytest.fixture(scope="module")
def bad_programs(tmp_path_factory, linux_prog) -> dict[str, tuple[str, str]]:
    """name -> (program argument, a phrase the error must contain)."""
    where = tmp_path_factory.mktemp("bad-programs")

    def put(name: str, data: bytes) -> str:
        path = where / name
        path.write_bytes(data)
        path.chmod(0o755)
        return str(path)

    hello = linux_prog("hello", "pie").read_bytes()
    interp = b"/lib64/ld-linux-x86-64.so.2"
    assert interp in hello
    missing_interp = hello.replace(interp, b"/lib64/ld-missing-x86.so.2\0")
    obj = where / "hello.o"
    subprocess.run(["gcc", "-c", "-o", str(obj), str(SOURCES / "hello.c")], check=True, timeout=60)
    unexecutable = put("no-x-bit", hello)
    Path(unexecutable).chmod(0o644)
    obj.chmod(0o755)
    return {
        "missing": (str(where / "no-such-program"), "no such program"),
        "not-on-path": ("vmrr-no-such-command", "no such program"),
        "directory": (str(where), "directory"),
        "text": (put("script.sh", b"echo hello\n"), "not an ELF"),              # no #! line
        "bad-interpreter": (put("bad.sh", b"#!/no/such/interpreter\necho hello\n"), "no such program"),
        "empty": (put("empty", b""), "not an ELF"),
        "aarch64": (put("arm64.elf", _aarch64_elf()), "not x86-64"),
        "i386": (put("i386.elf", _i386_elf()), "32-bit"),
        "truncated": (put("truncated.elf", hello[:1500]), "truncated.elf"),
        "missing-interpreter": (put("needs-missing-ld", missing_interp), "ld-missing-x86.so.2"),
        "object": (str(obj), "not an executable"),
        "no-x-bit": (unexecutable, "permission denied"),
    }


CASES = ["missing", "not-on-path", "directory", "text", "bad-interpreter", "empty", "aarch64", "i386",
         "truncated", "missing-interpreter", "object", "no-x-bit"]


@pytest.mark.parametrize("case", CASES)
def test_bad_program_run(bad_programs, case):
    program, phrase = bad_programs[case]
    run = vmrr("run", "--", program)
    assert run.returncode == 2, describe(run)
    assert "Traceback" not in run.stderr, describe(run)
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vmrr: error: "), describe(run)
    assert phrase in lines[0], describe(run)


@pytest.mark.parametrize("case", ["missing", "text", "aarch64", "i386", "missing-interpreter"])
def test_bad_program_record_leaves_no_trace(bad_programs, tmp_path, case):
    program, phrase = bad_programs[case]
    trace = tmp_path / "t.vmrr"
    record = vmrr("record", "-o", trace, "--", program)
    assert record.returncode == 2, describe(record)
    assert "Traceback" not in record.stderr and phrase in record.stderr, describe(record)
    assert len(record.stderr.strip().splitlines()) == 1, describe(record)
    assert not any(p.name.startswith("t.vmrr") for p in tmp_path.iterdir())


def test_program_without_execute_permission(linux_prog, tmp_path):
    exe = tmp_path / "noexec"
    shutil.copy(linux_prog("hello", "static"), exe)
    exe.chmod(0o644)
    if os.access(exe, os.X_OK):
        pytest.skip("running as a user that may execute anything")
    run = vmrr("run", "--", exe)
    assert run.returncode == 2 and "Traceback" not in run.stderr, describe(run)
    assert "permission" in run.stderr.lower(), describe(run)


@pytest.mark.parametrize("argv, message", [
    (["run", "--bind-host", "localhost", "--", "/bin/true"], "--bind-host localhost: not an IP address"),
    (["run", "--bind-host", "0.0.0.0", "cpubench"], "--bind-host are for a Linux program"),
])
def test_bad_bind_host(argv, message):
    result = vmrr(*argv, timeout=60)
    assert result.returncode == 2, describe(result)
    assert message in result.stderr and "Traceback" not in result.stderr, describe(result)
    assert len(result.stderr.strip().splitlines()) == 1, describe(result)

"""Clock reads and SIGALRM for Linux programs (tests/data/linux/clocks.c), recorded and
replayed --verify: the native clock path (vmm/linux/fastsys.py) and every case it leaves
to Python (a timezone, NULL, a bad pointer, a page not yet present, a page boundary, a
read-only page, CPU-time clocks), then setitimer, getitimer, alarm and pause."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from conftest import REPO, vmrr
from linux_helpers import linux_prog, record_replay_linux  # noqa: F401
from trace_format import TraceReader
from trace_format.events import EventKind

pytestmark = pytest.mark.timeout(60)
_VMRR = [sys.executable, "-m", "vmrr"]


@pytest.mark.parametrize("variant", ["pie", "static"])
def test_clock_reads_and_alarms_replay_exactly(linux_prog, tmp_path, variant):
    exe = linux_prog("clocks", variant)
    record, replay, trace = record_replay_linux(tmp_path, [exe])
    assert "PASS clocks" in record.stdout, record.stdout
    assert "gettimeofday" in record.stderr and "setitimer" in record.stderr, record.stderr
    missing = [line for line in record.stderr.splitlines() if "not implemented" in line]
    assert not any(call in line for line in missing for call in ("itimer", "alarm", "pause")), missing
    with TraceReader(trace) as reader:
        events = list(reader.events())
    times = [e for e in events if e.kind is EventKind.SYSCALL and e.payload[1] in (96, 228)]
    assert len(times) >= 4000
    # The natively answered reads are logged like Python's: [tid, nr, args, 0, [["clock", ns]]].
    plain = [e for e in times if e.payload[3] == 0 and len(e.payload[4]) == 1]
    assert len(plain) >= 4000 and all(e.payload[4][0][0] == "clock" for e in plain)
    icounts = [e.icount for e in events]
    assert icounts == sorted(icounts)
    assert any(e.kind is EventKind.TIMER for e in events)


def test_native_clock_path_matches_its_source():
    """FASTSYS_CODE is the gcc build of vmm/linux/fastsys_native.c."""
    from vmm import icount
    from vmm.linux import fastsys
    if not icount.have_toolchain():
        pytest.skip(f"needs gcc {icount.NATIVE_GCC} and binutils")
    code, entries = icount.make_native(fastsys.NATIVE_SOURCE)
    assert code == fastsys.FASTSYS_CODE, "rebuild FASTSYS_CODE from vmm/linux/fastsys_native.c"
    assert entries["vmrr_fast_syscall"] == fastsys.FASTSYS_ENTRY


def test_socket_reads_and_writes_on_every_path_replay_exactly(linux_prog, tmp_path):
    """tests/data/linux/sockio.c: the native read/write of a socket with data or room, and
    Python's for EAGAIN, the end, EPIPE, over 64 KiB, a blocking read in a thread."""
    exe = linux_prog("sockio", "pie", "-pthread")
    record, _replay, trace = record_replay_linux(tmp_path, [exe])
    assert "PASS sockio" in record.stdout, record.stdout
    with TraceReader(trace) as reader:
        io = [e for e in reader.events() if e.kind is EventKind.SYSCALL and e.payload[1] in (0, 1)]
    assert len(io) > 4000
    on_sockets = [e for e in io if e.payload[4] and e.payload[4][0][0] in ("recv", "send")]
    assert len(on_sockets) > 4000


def test_the_native_replay_path_replays_as_python_does(linux_prog, tmp_path):
    """Replay answers recorded clock reads and socket reads and writes natively (a queue of
    the calls coming next, vmm/linux/fastsys_native.c): the same traces replay --verify with
    it and with every call in Python (VMRR_PYTHON_SYSCALLS=1, the path it replaces), and a
    recording made entirely in Python replays natively."""
    for name, flags in (("sockio", ("pie", "-pthread")), ("clocks", ("pie",))):
        exe = linux_prog(name, *flags)
        _record, _replay, trace = record_replay_linux(tmp_path, [exe], name=name)
        python = subprocess.run([*_VMRR, "replay", "--verify", str(trace)], capture_output=True, text=True,
                                timeout=60, cwd=REPO, env={**os.environ, "VMRR_PYTHON_SYSCALLS": "1"})
        assert python.returncode == 0 and "verified: final registers" in python.stderr, python.stderr
        assert python.stdout == _replay.stdout
    slow_trace = tmp_path / "python-recorded.vmrr"
    recorded = subprocess.run([*_VMRR, "record", "-o", str(slow_trace), "--", str(exe)], capture_output=True,
                              text=True, timeout=60, cwd=REPO, env={**os.environ, "VMRR_PYTHON_SYSCALLS": "1"})
    assert recorded.returncode == 0, recorded.stderr
    native = vmrr("replay", "--verify", slow_trace)
    assert native.returncode == 0 and native.stdout == recorded.stdout, native.stderr


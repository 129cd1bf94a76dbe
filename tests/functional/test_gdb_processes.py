"""``vmrr gdbserver`` over a Linux program that forks: every process is a gdb inferior.

tests/data/linux/gdbforks.c is built (a PIE, gcc's default) and recorded twice: a parent
that forks a child which computes, writes a global (copy-on-write) and exits 7, and a
parent that vforks a child which execs the program again. Each trace is replayed with
``--verify``; then the real gdb, in batch mode, follows the processes through the
multiprocess extensions: fork and exec events, ``info threads``/``info inferiors``, a
breakpoint only the child reaches, each process's own copy of a global, the child's end,
and going back before the fork.

Every process is ended by a finalizer and every wait is bounded.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess

import pytest

from gdb_helpers import gdbserver, request_packet, run_gdb, syscall_events  # noqa: F401  (fixture)
from linux_helpers import linux_prog, record_replay_linux  # noqa: F401  (fixture)

pytestmark = [
    pytest.mark.timeout(90),
    pytest.mark.skipif(shutil.which("gdb") is None, reason="gdb is not installed"),
]

GDB_TIMEOUT = 60.0
IO_TIMEOUT = 20.0
FOLLOW_BOTH = "set detach-on-fork off"  # gdb keeps the fork's child as an inferior too


@pytest.fixture(scope="module")
def traces(linux_prog, tmp_path_factory):
    """{"fork": trace, "exec": trace, "program": path, "fork_icount": int, "child_end": int,
    "parent"/"child": the fork trace's pids, "exec_parent"/"exec_child": the exec trace's}."""
    out = tmp_path_factory.mktemp("gdb-processes")
    program = linux_prog("gdbforks")
    record, _, fork = record_replay_linux(out, [program], name="fork")
    assert "PASS gdbforks" in record.stdout
    record, _, exec_trace = record_replay_linux(out, [program, "exec"], name="exec")
    assert "PASS gdbforks exec" in record.stdout
    calls = _syscalls(fork)          # [tid, nr, args, ret]: the fork is a clone returning the child
    clone = [e for e in calls if e.payload[1] == 56 and isinstance(e.payload[3], int) and e.payload[3] > 0]
    assert len(clone) == 1, [e.payload[:2] for e in calls]
    parent, child = clone[0].payload[0], clone[0].payload[3]
    child_end = [e.icount for e in calls if e.payload[:2] == [child, 231]]     # its exit_group
    assert len(child_end) == 1, [e.payload[:2] for e in calls]
    calls = _syscalls(exec_trace)    # the vfork returns later; the child is the one that execs
    exec_parent = calls[0].payload[0]
    execs = {e.payload[0] for e in calls if e.payload[1] == 59 and e.payload[0] != exec_parent}
    assert len(execs) == 1, [e.payload[:2] for e in calls]
    return {"fork": fork, "exec": exec_trace, "program": str(program), "fork_icount": clone[0].icount,
            "child_end": child_end[0], "parent": parent, "child": child,
            "exec_parent": exec_parent, "exec_child": execs.pop()}


def _syscalls(trace) -> list:
    return syscall_events(trace)


def gdb(port: int, *commands: str, timeout: float = GDB_TIMEOUT) -> str:
    return run_gdb(port, *commands, timeout=timeout)


def _thread_rows(out: str) -> list[tuple[str, int, int]]:
    """(gdb's id, pid, tid) of each row of every ``info threads`` in ``out``."""
    return [(m.group(1), int(m.group(2)), int(m.group(3)))
            for m in re.finditer(r'^\*?\s+(\d+(?:\.\d+)?)\s+Thread (\d+)\.(\d+) ', out, re.M)]


def _inferior_rows(out: str) -> list[tuple[int, str]]:
    """(number, description) of each row of every ``info inferiors`` in ``out``."""
    return [(int(m.group(1)), m.group(2))
            for m in re.finditer(r"^\*?\s+(\d+)\s+(process \d+|<null>)\s", out, re.M)]


def _values(out: str) -> list[str]:
    return re.findall(r"^\$\d+ = (.*)$", out, re.M)


def _icounts(out: str) -> list[int]:
    return [int(n) for n in re.findall(r"^icount (\d+) \(history", out, re.M)]


# -- both processes as inferiors ------------------------------------------------------------------

def test_a_breakpoint_only_the_child_reaches_stops_in_the_child(traces, gdbserver):
    PARENT, CHILD = traces["parent"], traces["child"]
    port = gdbserver(traces["fork"])
    out = gdb(port, FOLLOW_BOTH, "break child_report", "continue", "info threads", "info inferiors",
              "p shared", "p $_inferior", "bt",
              "thread 1.1", "p shared", "p $_inferior", "bt")
    assert f"[New inferior 2 (process {CHILD})]" in out, out
    assert re.search(rf'^Thread 2\.1 "gdbforks[^"]*" hit Breakpoint 1\.\d, child_report \(sum=(sum@entry=)?55\) '
                     rf'at .*forks\.c:\d+$', out, re.M), out
    assert f"[Switching to Thread {CHILD}.{CHILD}]" in out, out
    rows = _thread_rows(out)
    assert ("1.1", PARENT, PARENT) in rows and ("2.1", CHILD, CHILD) in rows, out
    assert re.search(rf'^\* 2\.1\s+Thread {CHILD}\.{CHILD} "gdbforks[^"]*" child_report ', out, re.M), out
    assert re.search(rf'^  1\.1\s+Thread {PARENT}\.{PARENT} "gdbforks[^"]*" .*wait4', out, re.M), out
    assert _inferior_rows(out)[:2] == [(1, f"process {PARENT}"), (2, f"process {CHILD}")], out
    # Copy-on-write: the child wrote 42 to its copy, the parent's still holds 1; each
    # inferior's memory is read through its own page tables.
    assert _values(out) == ["42", "2", "1", "1"], out
    frames = re.findall(r"^#\d+ .*? in (\w+) \(|^#0\s+(\w+) \(", out, re.M)
    names = [a or b for a, b in frames]
    assert names[:2] == ["child_report", "main"], out                 # the child's stack
    assert "main" in names[2:] and names[2] != "child_report", out     # the parent's, in waitpid


def test_the_child_ends_with_its_status_and_the_parent_goes_on(traces, gdbserver):
    PARENT, CHILD = traces["parent"], traces["child"]
    port = gdbserver(traces["fork"])
    out = gdb(port, FOLLOW_BOTH, "catch fork", "break parent_done", "continue", "continue",
              "info inferiors", "inferior 1", "continue", "info threads", "p status", "p shared")
    assert re.search(rf"^Catchpoint 1 \(forked process {CHILD}\), ", out, re.M), out
    assert f"[Inferior 2 (process {CHILD}) exited with code 07]" in out, out
    assert (2, "<null>") in _inferior_rows(out), out
    assert re.search(r"^Thread 1\.1 \"gdbforks[^\"]*\" hit Breakpoint 2\.1, parent_done \(status=(status@entry=)?7\)",
                     out, re.M), out
    assert {pid for _, pid, _ in _thread_rows(out)} == {PARENT}, out
    assert _values(out) == ["7", "1"], out                             # the child's status; the parent's copy


def test_reverse_continue_back_before_the_fork_shows_one_process(traces, gdbserver):
    PARENT, CHILD = traces["parent"], traces["child"]
    port = gdbserver(traces["fork"])
    out = gdb(port, FOLLOW_BOTH, "break child_report", "continue", "info threads",
              "break main", "reverse-continue", "inferior 1", "reverse-continue",
              "info threads", "info inferiors", "monitor icount", "p shared",
              "continue", "info threads", "p shared")
    first, back, again = out.split("Breakpoint 2 at", 1)[0], *out.split("Breakpoint 2 at", 1)[1].split(
        "icount ", 1)
    assert {pid for _, pid, _ in _thread_rows(first)} == {PARENT, CHILD}, out
    # Going back before the fork, the child does not exist yet: gdb hears it has ended.
    assert f"[Inferior 2 (process {CHILD}) exited normally]" in back, out
    assert re.search(r"^Thread 1\.1 \"gdbforks[^\"]*\" hit Breakpoint 2\.1, main \(argc=1, argv=0x[0-9a-f]+\) at .*forks\.c:\d+$",
                     back, re.M), out
    before = back.split("hit Breakpoint 2.1, main", 1)[1]
    assert [(pid, tid) for _, pid, tid in _thread_rows(before)] == [(PARENT, PARENT)], out
    assert [desc for _, desc in _inferior_rows(before) if desc != "<null>"] == [f"process {PARENT}"], out
    (position,) = _icounts(out)
    assert position < traces["fork_icount"], out
    # Forward again: the fork is met again and gdb takes the child as a new inferior.
    assert f"[New inferior 3 (process {CHILD})]" in again, out
    assert re.search(r'^Thread 3\.1 "gdbforks[^"]*" hit Breakpoint 1\.\d, child_report ', again, re.M), out
    assert {pid for _, pid, _ in _thread_rows(again)} == {PARENT, CHILD}, out
    assert _values(out) == ["1", "42"], out                            # before the fork; the child


def test_by_default_gdb_follows_the_parent_only(traces, gdbserver):
    """gdb's defaults (follow-fork-mode parent, detach-on-fork on): the child is let go of
    at its fork; its breakpoint hits are not reported, the parent's are."""
    PARENT, CHILD = traces["parent"], traces["child"]
    port = gdbserver(traces["fork"])
    out = gdb(port, "break child_report", "break parent_done", "continue", "info threads",
              "info inferiors", "p status")
    assert f"[Detaching after fork from child process {CHILD}]" in out, out
    assert "child_report (" not in out.split("Detaching after fork", 1)[1], out
    assert re.search(r"^Breakpoint 2, parent_done \(status=(status@entry=)?7\)", out, re.M), out
    assert {pid for _, pid, _ in _thread_rows(out)} == {PARENT}, out
    assert [row for row in _inferior_rows(out) if row[1] != "<null>"] == [(1, f"process {PARENT}")], out


def test_vfork_then_exec_of_the_child(traces, gdbserver):
    CHILD = traces["exec_child"]
    port = gdbserver(traces["exec"])
    out = gdb(port, FOLLOW_BOTH, "set schedule-multiple on", "catch exec", "break execd_work",
              "continue", "info inferiors", "continue", "bt", "p shared", "finish", "p shared")
    assert f"[New inferior 2 (process {CHILD})]" in out, out
    assert f"process {CHILD} is executing new program: {traces['program']}" in out, out
    assert re.search(rf"^Thread 2\.1 \"gdbforks[^\"]*\" hit Catchpoint 1 \(exec'd {re.escape(traces['program'])}\)",
                     out, re.M), out
    assert re.search(r"^Thread 2\.1 \"gdbforks[^\"]*\" hit Breakpoint 2\.\d, execd_work \(n=(n@entry=)?7\)", out, re.M), out
    assert re.search(r"^#1 .* main \(argc=(2|<optimized out>), argv=0x[0-9a-f]+\) at .*forks\.c:\d+$", out, re.M), out
    assert _values(out)[0] == "1" and "Value returned is $2 = 21" in out and _values(out)[-1] == "21", out


# -- the protocol directly --------------------------------------------------------------------------

_request = request_packet


def _symbol(program: str, name: str) -> int:
    out = subprocess.run(["nm", "-P", program], capture_output=True, text=True, timeout=30).stdout
    return int(re.search(rf"^{name} [BbDd] ([0-9a-f]+)", out, re.M).group(1), 16)


def test_threads_memory_and_files_of_each_process_by_packets(traces, gdbserver):
    """Connected while both processes live (just before the child's exit), without fork
    events: the thread list has both, and each process's memory, registers, auxv and exec
    file answer for that process."""
    PARENT, CHILD = traces["parent"], traces["child"]
    if shutil.which("nm") is None:
        pytest.skip("nm is not installed")
    port = gdbserver(traces["fork"], "--at", str(traces["child_end"] - 1))
    with socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT) as sock:
        assert _request(sock, b"QStartNoAckMode") == b"OK"
        supported = _request(sock, b"qSupported:multiprocess+;swbreak+")
        assert b"multiprocess+" in supported and b"fork-events" not in supported
        parent, child = f"p{PARENT:x}.{PARENT:x}".encode(), f"p{CHILD:x}.{CHILD:x}".encode()
        assert _request(sock, b"?").startswith(b"T05thread:" + child + b";")   # the child is on the CPU
        assert _request(sock, b"qC") == b"QC" + child
        assert set(_request(sock, b"qfThreadInfo")[1:].split(b",")) == {parent, child}
        threads = _request(sock, b"qXfer:threads:read::0,fff")
        assert b'id="' + parent + b'"' in threads and b'id="' + child + b'"' in threads
        auxv = _request(sock, b"qXfer:auxv:read::0,1000")[1:]
        pairs = {}
        for i in range(0, len(auxv) - 15, 16):
            pairs[int.from_bytes(auxv[i:i + 8], "little")] = int.from_bytes(auxv[i + 8:i + 16], "little")
        with open(traces["program"], "rb") as f:
            entry = int.from_bytes(f.read(0x20)[0x18:0x20], "little")
        shared = pairs[9] - entry + _symbol(traces["program"], "shared")     # AT_ENTRY - e_entry: the bias
        read = f"m{shared:x},4".encode()
        assert _request(sock, b"Hg" + child) == b"OK"
        assert _request(sock, read) == (42).to_bytes(4, "little").hex().encode()
        child_regs = _request(sock, b"g")
        assert _request(sock, b"Hg" + parent) == b"OK"
        assert _request(sock, read) == (1).to_bytes(4, "little").hex().encode()
        parent_regs = _request(sock, b"g")
        assert len(child_regs) == len(parent_regs) == 2 * 560                 # gdb's amd64 GNU/Linux g packet
        assert child_regs[2 * 128:2 * 136] != parent_regs[2 * 128:2 * 136]   # rip: each its own
        assert _request(sock, f"Hgp{CHILD:x}.0".encode()) == b"OK"          # a process: its thread
        assert _request(sock, read) == (42).to_bytes(4, "little").hex().encode()
        assert _request(sock, f"Hgp{CHILD + 1:x}.0".encode()) == b"E01"     # no such process
        assert _request(sock, b"T" + child) == b"OK"
        for pid in (PARENT, CHILD):
            assert _request(sock, f"qAttached:{pid:x}".encode()) == b"1"
            exe = _request(sock, f"qXfer:exec-file:read:{pid:x}:0,1000".encode())
            assert exe == b"l" + traces["program"].encode()
        assert _request(sock, f"D;{PARENT:x}".encode()) == b"OK"             # one inferior, then the other
        assert _request(sock, f"D;{CHILD:x}".encode()) == b"OK"

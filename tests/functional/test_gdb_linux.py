"""``vmrr gdbserver`` over a recorded Linux program, driven by the real gdb in batch mode.

A small dynamic C program is built with gcc into a temporary directory and recorded
twice (a clean run, and a run that stores through NULL); each trace is replayed with
``--verify``; then the directory is deleted. gdb gets no file argument and the program
no longer exists anywhere: its symbols, the dynamic linker's and libc's must all come
from the trace through the server (``qXfer:exec-file``, ``qXfer:auxv``, svr4 over
memory reads, ``vFile`` host I/O).

Every process is ended by a finalizer and every wait is bounded.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess

import pytest

from conftest import describe, replay_verify, vmrr
from gdb_helpers import gdbserver, request_packet, run_gdb, syscall_events  # noqa: F401  (fixture)
from gdbstub.protocol import frame

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(shutil.which("gdb") is None, reason="gdb is not installed"),
    pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed"),
]

GDB_TIMEOUT = 45.0
IO_TIMEOUT = 20.0
NO_HISTORY = "No more reverse-execution history."

PROGRAM = r"""
#include <stdio.h>
#include <string.h>

int counter;

size_t measure(const char *s)
{
    counter += 1;
    return strlen(s);
}

void crash(int *p)
{
    *p = 42;
}

int main(int argc, char **argv)
{
    size_t n = measure("hello, world");
    puts("measured");
    counter += (int)n;
    printf("length %zu, counter %d\n", n, counter);
    if (argc > 1)
        crash(NULL);
    return 0;
}
"""


@pytest.fixture(scope="module")
def traces(tmp_path_factory):
    """{"clean": trace, "crash": trace, "program": the deleted program's path}."""
    build = tmp_path_factory.mktemp("gdb-linux-build")
    out = tmp_path_factory.mktemp("gdb-linux")
    source, program = build / "demo.c", build / "demo"
    source.write_text(PROGRAM)
    done = subprocess.run(["gcc", "-g", "-O0", "-o", str(program), str(source)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    clean, crash = out / "clean.vmrr", out / "crash.vmrr"
    record = vmrr("record", "-o", clean, "--", program)
    assert record.returncode == 0, describe(record)
    assert "length 12, counter 13" in record.stdout, describe(record)
    record = vmrr("record", "-o", crash, "--", program, "crash")
    assert record.returncode == 3, describe(record)                 # the recorded crash
    shutil.rmtree(build)                                             # gdb must not need it
    for trace in (clean, crash):
        replay_verify(trace)                                         # replays with no program
    return {"clean": clean, "crash": crash, "program": str(program), "pid": _pid(clean)}


def _syscalls(trace) -> list:
    return [event.payload for event in syscall_events(trace)]


def _pid(trace) -> int:
    """The program's pid as recorded (the host's): the caller of its first system call."""
    return _syscalls(trace)[0][0]


def gdb(port: int, *commands: str, timeout: float = GDB_TIMEOUT) -> str:
    return run_gdb(port, *commands, timeout=timeout)


def _pcs(output: str) -> list[int]:
    return [int(m, 16) for m in re.findall(r"^\$\d+ = \(void \(\*\)\(\)\) (0x[0-9a-f]+)", output, re.M)]


def _icounts(output: str) -> list[int]:
    return [int(n) for n in re.findall(r"^icount (\d+) \(history", output, re.M)]


# -- symbols from the trace ---------------------------------------------------------------------

def test_program_and_shared_library_symbols_come_from_the_trace(traces, gdbserver):
    port = gdbserver(traces["clean"])
    out = gdb(port, "break main", "continue", "info sharedlibrary", "info symbol measure",
              "info threads")
    program = traces["program"]
    assert f"Reading symbols from target:{program}..." in out, out
    assert "Breakpoint 1, main (argc=1, argv=0x" in out, out
    libs = {m.group(2): m.group(1) for m in
            re.finditer(r"^0x[0-9a-f]+\s+0x[0-9a-f]+\s+(\S+)\s+target:(\S+)$", out, re.M)}
    libc = [path for path in libs if path.endswith("/libc.so.6")]
    ldso = [path for path in libs if "/ld-linux-x86-64.so.2" in path]
    assert libc and ldso, out
    assert libs[libc[0]] == "Yes" and libs[ldso[0]] == "Yes", out    # symbols read
    assert "measure in section .text" in out, out
    pid = traces["pid"]
    assert re.search(rf'^\* 1\s+Thread {pid}\.{pid} "demo" main \(', out, re.M), out
    assert "Could not load shared library symbols" not in out, out


def test_break_main_then_bt_at_the_crash(traces, gdbserver):
    port = gdbserver(traces["crash"])
    out = gdb(port, "break main", "continue", "continue", "bt", "x/i $pc", "continue")
    assert "Breakpoint 1, main (argc=2, argv=0x" in out, out
    assert "Program received signal SIGSEGV, Segmentation fault." in out, out
    assert re.search(r"^#0 .*crash \(p=0x0\) at .*demo\.c:\d+$", out, re.M), out
    assert re.search(r"^#1 .*main \(argc=2, argv=0x[0-9a-f]+\) at .*demo\.c:\d+$", out, re.M), out
    assert re.search(r"=> 0x[0-9a-f]+ <crash\+\d+>:\s+movl\s+\$0x2a,\(%rax\)", out), out
    assert out.rstrip().endswith(NO_HISTORY) or out.count(NO_HISTORY) == 1, out


def test_connecting_at_the_crash_finds_the_libraries_already_loaded(traces, gdbserver):
    port = gdbserver(traces["crash"], "--at", "crash")
    out = gdb(port, "bt", "info sharedlibrary", "reverse-stepi", "reverse-stepi", "x/i $pc",
              "p counter")
    assert re.search(r"^#0 .*crash \(p=0x0\) at .*demo\.c:\d+$", out, re.M), out
    assert re.search(r"^#1 .*main \(argc=2, ", out, re.M), out
    assert re.search(r"^0x[0-9a-f]+\s+0x[0-9a-f]+\s+Yes\s+target:\S+/libc\.so\.6$", out, re.M), out
    assert re.search(r"=> 0x[0-9a-f]+ <crash\+\d+>:\s+mov\s+-0x8\(%rbp\),%rax", out), out
    assert re.search(r"^\$1 = 13$", out, re.M), out


def test_reverse_stepi_then_stepi_return_to_the_same_pc(traces, gdbserver):
    port = gdbserver(traces["clean"])
    out = gdb(port, "break measure", "continue", "delete", "stepi", "stepi", "stepi",
              "p $pc", "monitor icount", "reverse-stepi", "p $pc", "monitor icount",
              "stepi", "p $pc", "monitor icount", "continue")
    assert "Breakpoint 1, measure (s=0x" in out, out
    there, back, again = _pcs(out)
    assert back != there and again == there, out
    first, second, third = _icounts(out)
    assert second == first - 1 and third == first, out
    assert out.count(NO_HISTORY) == 1, out                          # the last continue: the end


# -- libc -------------------------------------------------------------------------------------

def test_breakpoints_in_libc_both_directions(traces, gdbserver):
    port = gdbserver(traces["clean"])
    out = gdb(port, "break puts", "continue", "bt", "monitor icount",
              "continue", "reverse-continue", "monitor icount", "info symbol $pc")
    assert re.search(r"Breakpoint 1, \w*puts \(str=0x[0-9a-f]+ \"measured\"\)", out), out
    assert re.search(r"^#1 .*main \(argc=1, argv=0x[0-9a-f]+\) at .*demo\.c:\d+$", out, re.M), out
    assert out.count(NO_HISTORY) == 1, out                           # continue ran to the end
    hit, back = _icounts(out)
    assert back == hit, out                                          # reverse-continue found it again
    assert re.search(r"puts in section \.text of .*libc\.so\.6", out), out


def test_break_strlen_in_libc_and_finish_back_to_the_program(traces, gdbserver):
    """strlen is an IFUNC bound lazily: the first hit is libc's resolver, called from
    measure through the PLT and the dynamic linker, as under a live gdb."""
    port = gdbserver(traces["clean"])
    out = gdb(port, "break measure", "continue", "break strlen", "continue", "bt",
              "delete", "continue", "break measure", "reverse-continue", "finish")
    assert re.search(r"^Breakpoint 2(\.\d+)?, .*strlen", out, re.M), out
    assert re.search(r"^#\d+ .*_dl_runtime_resolve", out, re.M), out
    assert re.search(r"^#\d+ .*measure \(s=0x[0-9a-f]+ \"hello, world\"\) at .*demo\.c:\d+$", out,
                     re.M), out
    assert re.search(r"^0x[0-9a-f]+ in main \(argc=1, ", out, re.M), out     # finish: back in main
    assert re.search(r"^Value returned is \$\d+ = 12$", out, re.M), out   # strlen("hello, world")


def test_watchpoint_on_a_global_both_directions(traces, gdbserver):
    port = gdbserver(traces["clean"])
    out = gdb(port, "break main", "continue", "watch counter", "continue", "continue",
              "bt 1", "reverse-continue", "bt 1", "p counter")
    changes = re.findall(r"Old value = (\d+)\nNew value = (\d+)", out)
    assert changes == [("0", "1"), ("1", "13"), ("13", "1")], out
    frames = re.findall(r"^#0 .*?(measure|main) \(", out, re.M)
    assert frames == ["main", "main"], out
    assert re.search(r"^\$1 = 1$", out, re.M), out


# -- the protocol directly ------------------------------------------------------------------------

_request = request_packet


def test_host_io_serves_only_files_of_the_trace(traces, gdbserver):
    port = gdbserver(traces["clean"])
    with socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT) as sock:
        assert _request(sock, b"QStartNoAckMode") == b"OK"          # acknowledged once, by "+"
        supported = _request(sock, b"qSupported:multiprocess+;swbreak+;xmlRegisters=i386")
        assert b"qXfer:auxv:read+" in supported and b"multiprocess+" in supported
        pid = traces["pid"]
        assert _request(sock, b"qC") == f"QCp{pid:x}.{pid:x}".encode()
        assert _request(sock, b"qfThreadInfo") == f"mp{pid:x}.{pid:x}".encode()
        assert b"<osabi>GNU/Linux</osabi>" in _request(sock, b"qXfer:features:read:target.xml:0,fff")
        auxv = _request(sock, b"qXfer:auxv:read::0,1000")
        assert auxv[:1] == b"l" and len(auxv) > 16 * 10
        exe = _request(sock, f"qXfer:exec-file:read:{pid:x}:0,1000".encode())
        assert exe == b"l" + traces["program"].encode()
        for path in (b"/etc/passwd", b"/usr/bin/gdb"):             # host files: never
            assert _request(sock, b"vFile:open:" + path.hex().encode() + b",0,0") == b"F-1,2"
        fd = _request(sock, b"vFile:open:" + traces["program"].encode().hex().encode() + b",0,0")
        assert fd.startswith(b"F") and not fd.startswith(b"F-")
        head = _request(sock, b"vFile:pread:" + fd[1:] + b",4,0")
        assert head == b"F4;\x7fELF"
        assert _request(sock, b"vFile:open:" + traces["program"].encode().hex().encode() + b",1,0") \
            == b"F-1,d"                                              # write access: EACCES
        assert _request(sock, b"vFile:close:" + fd[1:]) == b"F0"
        sock.sendall(frame(f"D;{pid:x}".encode()))


# -- threads ------------------------------------------------------------------------------------

THREADS = r"""
#include <pthread.h>
#include <stdio.h>
static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
static long counter;
static void *work(void *arg) {
    char name[16];
    snprintf(name, sizeof name, "worker%ld", (long)arg);
    pthread_setname_np(pthread_self(), name);
    for (int i = 0; i < 20000; i++) { pthread_mutex_lock(&m); counter++; pthread_mutex_unlock(&m); }
    return arg;
}
int main(void) {
    pthread_t t[3];
    for (long i = 0; i < 3; i++) pthread_create(&t[i], 0, work, (void *)i);
    for (int i = 0; i < 3; i++) pthread_join(t[i], 0);
    printf("counter %ld\n", counter);
    return 0;
}
"""


def test_threads_are_gdb_threads_with_names_registers_and_reverse_execution(tmp_path, gdbserver):
    source, program, trace = tmp_path / "threads.c", tmp_path / "threads", tmp_path / "threads.vmrr"
    source.write_text(THREADS)
    done = subprocess.run(["gcc", "-g", "-O0", "-pthread", "-o", str(program), str(source)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    record = vmrr("record", "-o", trace, "--", program)
    assert record.returncode == 0 and "counter 60000" in record.stdout, describe(record)
    replay_verify(trace)
    port = gdbserver(trace)
    out = gdb(port, "break threads.c:10", "continue", "continue", "continue", "info threads",
              "thread 1", "bt", "reverse-continue", "info threads")
    calls = _syscalls(trace)
    pid = calls[0][0]
    workers = {ret for tid, nr, _args, ret, *_ in calls if nr in (56, 435) and tid == pid and isinstance(ret, int) and ret > 0}
    assert len(workers) == 3, calls                                   # pthread_create: a clone each
    threads = re.findall(rf'^\*?\s+\d+\s+Thread {pid}\.(\d+) "([^"]+)"', out, re.M)
    assert {pid, *workers} <= {int(tid) for tid, _ in threads}, out
    assert {"worker0", "worker1", "worker2"} & {name for _, name in threads}, out
    assert re.search(r"hit Breakpoint 1, work \(arg=0x[0-2]\) at .*threads\.c:10", out), out
    # Thread 1 (main) is off the CPU: its own registers give its own stack.
    assert re.search(r"^#\d+ .*main \(\) at .*threads\.c:\d+$", out, re.M), out
    assert out.count("hit Breakpoint 1, work") >= 4, out              # reverse-continue stopped too

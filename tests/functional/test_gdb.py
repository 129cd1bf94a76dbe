"""``vmrr gdbserver`` driven by the real gdb, in batch mode, over real TCP.

Traces are recorded in the tests: the kvstore appliance under real ``redis-cli``
clients (four commands, one connection each), a guest that crashes, and a long
CPU-bound run for Ctrl-C. Each recording is replayed once with ``--verify``. Each test
starts its own ``vmrr gdbserver TRACE --port 0`` (so positions do not leak between
tests) and runs ``gdb -batch -nx -ex 'target remote ...' -ex ...`` with no file
argument: gdb must find symbols and source lines through the server alone.

Every process is ended by a finalizer and every wait is bounded.
"""

from __future__ import annotations

import re
import shutil
import signal
import socket
import subprocess
import time

import pytest

from conftest import VmrrProcess, describe, free_port, guest, replay_verify, vmrr
from gdb_helpers import run_gdb
from gdbstub.protocol import frame
from vmm.symbols import SymbolTable

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(shutil.which("gdb") is None, reason="gdb is not installed"),
]

GDB_TIMEOUT = 45.0
IO_TIMEOUT = 20.0
KV_COMMANDS = (["SET", "k", "v"], ["GET", "k"], ["SET", "k2", "hello"], ["INCR", "n"])
_SERVING = re.compile(r"vmrr: gdbserver listening on 127\.0\.0\.1:(\d+) \(trace .*, icount (\d+)\)")
NO_HISTORY = "No more reverse-execution history."


# -- recording the traces ------------------------------------------------------------------

def _redis_cli(port: int, *words: str) -> str:
    done = subprocess.run(["redis-cli", "-p", str(port), *words], capture_output=True,
                          text=True, timeout=IO_TIMEOUT)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture(scope="module")
def kv_trace(tmp_path_factory):
    """kvstore recorded while redis-cli sends SET, GET, SET, INCR; replayed with --verify."""
    if shutil.which("redis-cli") is None:
        pytest.skip("redis-cli is not installed")
    trace = tmp_path_factory.mktemp("gdb") / "kv.vmrr"
    port = free_port()
    recorder = VmrrProcess(["record", "kvstore", "-o", trace, "--listen", f"127.0.0.1:{port}",
                            "--no-stdin"])
    try:
        recorder.wait_listening()
        replies = [_redis_cli(port, *command) for command in KV_COMMANDS]
        assert replies == ["OK", "v", "OK", "1"]
        done = recorder.stop()
        assert done.returncode == 0, describe(done)
    finally:
        recorder.terminate_quietly()
    replay_verify(trace)
    return trace


@pytest.fixture(scope="module")
def kv_symbols() -> SymbolTable:
    return SymbolTable.from_elf(guest("kvstore").read_bytes())


# -- running the server and gdb --------------------------------------------------------------

@pytest.fixture
def gdbserver(request):
    """Factory: ``gdbserver(trace, *options) -> (process, port, start icount)``."""
    started: list[VmrrProcess] = []

    def start(trace, *options) -> tuple[VmrrProcess, int, int]:
        proc = VmrrProcess(["gdbserver", trace, "--port", "0", *options])
        started.append(proc)
        match = proc.wait_for_stderr(_SERVING, timeout=40)
        return proc, int(match.group(1)), int(match.group(2))

    yield start
    for proc in started:
        proc.terminate_quietly()


def gdb(port: int, *commands: str, timeout: float = GDB_TIMEOUT) -> str:
    """Run gdb in batch mode against the server; return everything it printed."""
    return run_gdb(port, *commands, timeout=timeout)


def _registers(output: str) -> dict[str, int]:
    """``info registers`` lines → {name: value}."""
    return {m.group(1): int(m.group(2), 16)
            for m in re.finditer(r"^(r\w+|eflags|[c-gs]s)\s+0x([0-9a-f]+)", output, re.M)}


def _icounts(output: str) -> list[int]:
    return [int(n) for n in re.findall(r"^icount (\d+) \(history", output, re.M)]


# -- symbols, breakpoints, registers -----------------------------------------------------------

def test_symbols_and_source_lines_with_no_file_argument(kv_trace, gdbserver):
    _, port, start = gdbserver(kv_trace)
    assert start == 0
    out = gdb(port, "info line *$pc", "info symbol command_execute", "info line command_execute",
              "ptype stats")
    assert "Reading symbols from target:" in out, out
    assert re.search(r'Line \d+ of "sdk/boot\.S" starts at address 0x100000 <_start>', out), out
    assert "command_execute in section .text" in out, out
    assert re.search(r'Line \d+ of "kvstore/commands\.c" starts at address 0x[0-9a-f]+ '
                     r'<command_execute>', out), out
    assert "uint64_t commands_processed;" in out, out               # types from DWARF


def test_break_at_the_dispatcher_and_continue(kv_trace, kv_symbols, gdbserver):
    _, port, _ = gdbserver(kv_trace)
    out = gdb(port, "break command_execute", "continue", "info registers rip", "monitor icount")
    address = kv_symbols.address_of("command_execute")
    assert f"Breakpoint 1 at {address:#x}: file kvstore/commands.c" in out, out
    assert "Breakpoint 1, command_execute (c=" in out, out
    assert re.search(rf"^rip\s+{address:#x}\s+{address:#x} <command_execute>", out, re.M), out
    assert _icounts(out)[0] > 0


def test_continue_stops_at_every_hit(kv_trace, gdbserver):
    """Four commands were recorded: the dispatcher breakpoint hits four times, then history ends."""
    _, port, _ = gdbserver(kv_trace)
    out = gdb(port, "break command_execute", *["continue", "monitor icount"] * 5)
    assert out.count("Breakpoint 1, command_execute") == 4, out
    icounts = _icounts(out)
    assert icounts[:4] == sorted(set(icounts[:4])), out
    assert out.rstrip().count(NO_HISTORY) == 1, out


def test_stepi_then_reverse_stepi_restores_rip_and_registers(kv_trace, gdbserver):
    _, port, _ = gdbserver(kv_trace)
    out = gdb(port, "break command_execute", "continue", "delete",
              "echo ==before\\n", "info registers", "monitor icount",
              "stepi", "echo ==after\\n", "info registers", "monitor icount",
              "reverse-stepi", "echo ==back\\n", "info registers", "monitor icount")
    before = out.split("==before")[1].split("==after")[0]
    after = out.split("==after")[1].split("==back")[0]
    back = out.split("==back")[1]
    assert _registers(before)["rip"] != _registers(after)["rip"], out
    assert _registers(back) == _registers(before), out
    assert len(_registers(before)) >= 24, out
    icount_before, icount_after, icount_back = _icounts(out)
    assert icount_after == icount_before + 1 and icount_back == icount_before, out


def test_reverse_continue_to_a_watchpoint_on_a_global(kv_trace, gdbserver):
    """stats.commands_processed: 4 at the end; going back, the write that made it 4, then 3."""
    _, port, _ = gdbserver(kv_trace)
    out = gdb(port, "continue", "watch stats.commands_processed",
              "reverse-continue", "monitor icount", "p/x $pc",
              "stepi", 'eval "monitor last-write %lu 8", &stats.commands_processed', "reverse-stepi",
              "reverse-continue", "p stats.commands_processed",
              "continue", "p stats.commands_processed")
    assert out.count(NO_HISTORY) == 1, out                         # the first continue: to the end
    assert "Hardware watchpoint 1: stats.commands_processed" in out, out
    changes = re.findall(r"Old value = (\d+)\nNew value = (\d+)", out)
    assert changes[0] == ("4", "3") and changes[-2:] == [("3", "2"), ("2", "3")], out
    assert re.search(r"^\$2 = 2$", out, re.M) and re.search(r"^\$3 = 3$", out, re.M), out
    # Going back, the watchpoint stops just before the writing instruction (RIP on it);
    # one stepi later, last-write names that instruction and the position after it.
    watch_icount = _icounts(out)[0]
    writer = re.search(r"^\$1 = (0x[0-9a-f]+)$", out, re.M).group(1)
    write = re.search(r"^icount (\d+), rip (0x[0-9a-f]+) \(\w+\+0x[0-9a-f]+\): 0x[0-9a-f]+ "
                      r"\[8 bytes\] 0x3 -> 0x4$", out, re.M)
    assert write, out
    assert int(write.group(1)) == watch_icount + 1 and write.group(2) == writer, out


def test_reverse_finish_and_reverse_nexti(kv_trace, gdbserver):
    _, port, _ = gdbserver(kv_trace)
    out = gdb(port, "break command_execute", "continue", "delete", "next", "next",
              "reverse-finish", "echo ==call\\n", "x/i $pc", "bt 1", "monitor icount",
              "nexti", "reverse-nexti", "echo ==again\\n", "x/i $pc", "monitor icount")
    at_call = out.split("==call")[1].split("==again")[0]
    again = out.split("==again")[1]
    call = re.search(r"=> (0x[0-9a-f]+) <(\w+)\+\d+>:\s+call\s+0x[0-9a-f]+ <command_execute>", at_call)
    assert call, out                                  # back at the call, in the caller
    assert re.search(rf"#0  {int(call.group(1), 16):#018x} in {call.group(2)} ", at_call), out
    assert re.search(rf"=> {call.group(1)} <{call.group(2)}\+", again), out
    first, second = _icounts(out)
    assert first == second, out


def test_reverse_continue_with_no_breakpoints_reaches_the_start(kv_trace, gdbserver):
    _, port, _ = gdbserver(kv_trace)
    out = gdb(port, "continue", "monitor icount", "reverse-continue", "monitor icount",
              "reverse-stepi", "info registers rip")
    assert out.count(NO_HISTORY) == 3, out                          # end, start, start again
    end, start = _icounts(out)
    assert end > 0 and start == 0, out
    assert re.search(r"^rip\s+0x100000\s+0x100000 <_start>", out, re.M), out


# -- monitor commands -------------------------------------------------------------------------

def test_monitor_commands(kv_trace, gdbserver):
    _, port, _ = gdbserver(kv_trace)
    out = gdb(port, "monitor icount", "monitor help", "break command_execute", "continue",
              "monitor events 4", "monitor seek 0", "monitor icount", "monitor when",
              "monitor last-write stats", "monitor seek x", "monitor nonsense")
    icounts = _icounts(out)
    assert icounts == [0, 0, 0], out
    assert "monitor last-write ADDR [SIZE]" in out, out
    assert re.search(r"^-> +\d+  \(you are here\)$", out, re.M), out
    assert len(re.findall(r"^ {3} +\d+  [A-Z_]+ ", out, re.M)) == 4, out
    assert "now at icount 0, rip 0x100000 (_start)" in out, out
    assert "no write to " in out, out                                # nothing wrote stats at boot
    assert "error: ICOUNT: expected a number, got 'x'" in out, out
    assert "unknown monitor command 'nonsense'" in out, out


# -- a replay cannot change ---------------------------------------------------------------------

def test_memory_and_register_writes_are_refused(kv_trace, gdbserver):
    _, port, _ = gdbserver(kv_trace)
    out = gdb(port, "p/x $rsp", "set {int}$rsp = 1", "set $rax = 5", "p $rax", "x/2x 0", "p/x $rsp")
    assert re.search(r"Cannot access memory at address 0x[0-9a-f]+", out), out
    assert 'Could not write register "rax"' in out, out
    assert re.search(r"^\$2 = 0$", out, re.M), out                  # rax is 0 at boot
    assert "Cannot access memory at address 0x0" in out, out
    rsp = re.findall(r"^\$\d+ = (0x[0-9a-f]+)$", out, re.M)
    assert rsp[0] == rsp[-1], out


# -- crashes, Ctrl-C -------------------------------------------------------------------------------

def test_a_recorded_crash_is_a_signal_and_then_the_end(tmp_path, gdbserver):
    trace = tmp_path / "crash.vmrr"
    record = vmrr("record", guest("t_crash_null"), "-o", trace, "--no-stdin")
    assert record.returncode == 3, describe(record)
    replay_verify(trace)
    _, port, _ = gdbserver(trace)
    out = gdb(port, "continue", "x/i $pc", "continue", "monitor icount")
    assert "Program received signal SIGSEGV, Segmentation fault." in out, out
    assert re.search(r"=> 0x[0-9a-f]+ <kmain\+\d+>:\s+movq\s+\$0x1,0x8", out), out
    assert out.count(NO_HISTORY) == 1, out


@pytest.mark.slow
@pytest.mark.timeout(150)        # a recording, its replay and the server's first pass: ~50 s alone
def test_ctrl_c_interrupts_a_long_continue(tmp_path, gdbserver):
    trace = tmp_path / "cpubench.vmrr"
    # long enough that the continue is still under way after 1.5 s (~4 s of replay alone; a
    # loaded machine slows the continue as much as the server's first pass before it)
    record = vmrr("record", "cpubench", "-o", trace, "--no-stdin", "--args", "rounds=240")
    assert record.returncode == 0, describe(record)
    replay_verify(trace)
    server, port, _ = gdbserver(trace)
    cmd = ["gdb", "-batch", "-nx", "-ex", f"target remote 127.0.0.1:{port}", "-ex", "continue",
           "-ex", "monitor icount"]
    client = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        server.wait_for_stderr(re.compile("gdb connected"), timeout=20)
        time.sleep(1.5)                    # symbols loaded, the continue under way
        client.send_signal(signal.SIGINT)
        out, _ = client.communicate(timeout=GDB_TIMEOUT)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
    assert "Program received signal SIGINT, Interrupt." in out, out
    match = re.search(r"^icount (\d+) \(history 0\.\.(\d+)\)", out, re.M)
    assert match and 0 < int(match.group(1)) < int(match.group(2)), out


# -- the server itself ---------------------------------------------------------------------------

def _exchange(sock: socket.socket, data: bytes, expect: bytes) -> bytes:
    """Send ``data`` and read until ``expect`` has arrived; return all that was read."""
    sock.sendall(data)
    got = b""
    while expect not in got:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed; got {got!r}"
        got += chunk
    return got


def test_malformed_input_and_disconnects_leave_the_server_serving(kv_trace, gdbserver):
    server, port, _ = gdbserver(kv_trace)
    with socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT) as sock:
        got = _exchange(sock, b"garbage\r\n+++$qC#00", b"-")                 # bad checksum: NAK
        assert got == b"-"
        got = _exchange(sock, frame(b"X" * 20000), b"#")                     # oversize: error
        assert got == b"+" + frame(b"E01")
        got = _exchange(sock, frame(b"m zz") + frame(b"qC"), frame(b"QC1"))  # bad args, then fine
        assert got == b"+" + frame(b"E01") + b"+" + frame(b"QC1")
        got = _exchange(sock, frame(b"vNoSuchPacket"), b"#00")               # unknown: empty reply
        assert got == b"+" + frame(b"")
        got = _exchange(sock, frame(b"M100000,1:00"), b"#")                  # a replay is read-only
        assert got == b"+" + frame(b"E01")
        sock.sendall(b"$m1000")                                               # and vanish mid-packet
    with socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT) as sock:
        sock.sendall(b"\x03")                                                 # a stray Ctrl-C, then die
    out = gdb(port, "info registers rip")
    assert re.search(r"^rip\s+0x100000\s", out, re.M), out
    assert server.poll() is None
    assert "Traceback" not in server.stderr_text(), server.stderr_text()
    assert server.stderr_text().count("gdb disconnected") == 3, server.stderr_text()


def test_a_busy_port_is_a_one_line_error(kv_trace, gdbserver):
    _, port, _ = gdbserver(kv_trace)
    second = vmrr("gdbserver", kv_trace, "--port", port, timeout=30)
    assert second.returncode == 2, describe(second)
    assert second.stderr.strip() == (f"vmrr: error: gdbserver: cannot listen on 127.0.0.1:{port}: "
                                     "the port is busy"), describe(second)

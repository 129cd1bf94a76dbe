"""Helpers for the tests that drive real gdb against ``vmrr gdbserver``."""

from __future__ import annotations

import re
import socket
import subprocess

import pytest

from conftest import VmrrProcess
from gdbstub.protocol import frame
from trace_format.events import EventKind
from trace_format.reader import TraceReader

SERVING = re.compile(r"vmrr: gdbserver listening on 127\.0\.0\.1:(\d+) \(trace .*, icount (\d+)\)")


def syscall_events(trace) -> list:
    """The trace's SYSCALL events (payload ``[tid, nr, args, result, answers]``)."""
    with TraceReader(trace) as reader:
        return list(reader.events(kinds=[EventKind.SYSCALL]))


@pytest.fixture
def gdbserver():
    """Factory: ``gdbserver(trace, *options) -> port`` of a fresh ``vmrr gdbserver TRACE --port 0``;
    at the end, the servers' stderr holds no traceback, internal or replay error."""
    started: list[VmrrProcess] = []

    def start(trace, *options) -> int:
        proc = VmrrProcess(["gdbserver", trace, "--port", "0", *options])
        started.append(proc)
        return int(proc.wait_for_stderr(SERVING, timeout=40).group(1))

    yield start
    for proc in started:
        for bad in ("Traceback", "internal error", "replay error"):
            assert bad not in proc.stderr_text(), proc.stderr_text()
        proc.terminate_quietly()


def run_gdb(port: int, *commands: str, timeout: float = 60.0) -> str:
    """gdb in batch mode against the server, no file argument; everything it printed
    (asserting the connection held, gdb met no internal error nor a register it could not
    read, and the server reported no divergence)."""
    args = ["gdb", "-batch", "-nx", "-ex", "set confirm off", "-ex", "set pagination off",
            "-ex", "set debuginfod enabled off", "-ex", "set breakpoint pending on",
            "-ex", f"target remote 127.0.0.1:{port}"]
    for command in commands:
        args += ["-ex", command]
    done = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)
    output = done.stdout
    for bad in ("Remote connection closed", "internal-error", "Truncated register", "vmrr: replay"):
        assert bad not in output, output
    return output


def request_packet(sock: socket.socket, payload: bytes) -> bytes:
    """Send one remote-protocol packet and return the payload of the reply (any leading "+" skipped)."""
    sock.sendall(frame(payload))
    got = b""
    while not re.search(rb"\$.*#[0-9a-f]{2}", got, re.S):
        chunk = sock.recv(65536)
        assert chunk, f"connection closed; got {got!r}"
        got += chunk
    return re.search(rb"\$(.*)#[0-9a-f]{2}", got, re.S).group(1)

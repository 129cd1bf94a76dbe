"""Shared helpers for the vmrr test suite: run the real CLI, record and replay, serve over TCP.

Everything here drives real parts: ``python -m vmrr`` in a subprocess, real TCP on
127.0.0.1, guest images built by ``make -C guests``. Every subprocess a test starts is
ended by a finalizer, and every wait is bounded.

Helpers (plain functions, also offered as fixtures of the same name):
    vmrr(*args, input=None, timeout=60) -> CompletedProcess with str stdout/stderr
    free_port() -> a TCP port on 127.0.0.1 that was free a moment ago
    record_and_replay(tmp_path, image, *extra, input=None) -> (record, replay, trace)
Fixtures:
    start_vmrr(args) -> VmrrProcess (a Popen) for servers, waited on until "listening on"
"""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
IMAGES = REPO / "guests" / "images"
if str(REPO) not in sys.path:                  # in-process tests import vmm/, replay/, ...
    sys.path.insert(0, str(REPO))

STOP_GRACE = 10.0                               # seconds between SIGINT and SIGKILL
_LISTENING = re.compile(r"vmrr: listening on (\S+):(\d+)")


def _text(data: bytes | None) -> str:
    return "" if data is None else data.decode("utf-8", errors="replace")


def vmrr(*args, input: bytes | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run ``python -m vmrr ARGS`` from the repository root and wait for it.

    Args:
        args: command-line arguments (converted with str()).
        input: bytes for the guest's stdin; None gives it /dev/null.
        timeout: seconds before the process is killed (the test then fails).

    Returns:
        CompletedProcess whose stdout and stderr are str.
    """
    cmd = [sys.executable, "-m", "vmrr", *map(str, args)]
    stdin = None if input is not None else subprocess.DEVNULL
    proc = subprocess.run(cmd, cwd=REPO, input=input, stdin=stdin, capture_output=True,
                          timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, _text(proc.stdout),
                                       _text(proc.stderr))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that the kernel just handed out (bind port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def describe(proc: subprocess.CompletedProcess) -> str:
    """The process's command, exit code and output, for assertion messages."""
    return (f"\n$ {' '.join(map(str, proc.args))}\nexit {proc.returncode}\n"
            f"--- stdout ---\n{proc.stdout[-4000:]}\n--- stderr ---\n{proc.stderr[-4000:]}")


def replay_verify(trace: Path | str, *, timeout: float = 60, expect: int | None = None) -> subprocess.CompletedProcess:
    """``vmrr replay TRACE --verify``, asserting it checked the final state and exits as the
    recording did (``expect``; by default from how the trace says it ended: 0, or 1 for a
    non-zero exit status, 3 for a crash)."""
    replay = vmrr("replay", trace, "--verify", timeout=timeout)
    if expect is None:
        expect = recorded_exit_code(trace)
    assert replay.returncode == expect, f"replay --verify exited {replay.returncode}, not {expect}" + describe(replay)
    assert "Traceback" not in replay.stderr, describe(replay)
    assert "vmrr: verified: final registers, devices and RAM match" in replay.stderr, describe(replay)
    return replay


def recorded_exit_code(trace: Path | str) -> int:
    """The exit code ``vmrr record`` gave for the run a trace holds."""
    from trace_format import TraceReader
    with TraceReader(str(trace), recover=True) as reader:
        end = reader.end or {}
    if end.get("reason") == "crash":
        return 3
    if end.get("reason") == "poweroff" and end.get("exit_status"):
        return 1
    return 0


def record_and_replay(tmp_path: Path, image: Path | str, *extra, input: bytes | None = None,
                      timeout: float = 60):
    """Record IMAGE into a trace under tmp_path, then replay it with --verify.

    ``--no-stdin`` is added unless ``input`` is given (then it is fed to the guest's
    console). The replay must exit 0, verify the final state, and reproduce exactly
    the console output of the recording. The recording's exit code is the caller's
    to check (0, 1 for a non-zero guest status, 3 for a crash).

    Returns:
        (record CompletedProcess, replay CompletedProcess, trace Path)
    """
    trace = tmp_path / f"{Path(str(image)).stem}.vmrr"
    args = ["record", image, "-o", trace, *extra]
    if input is None and "--no-stdin" not in extra:
        args.append("--no-stdin")
    record = vmrr(*args, input=input, timeout=timeout)
    assert "Traceback" not in record.stderr, describe(record)
    assert trace.is_file(), "the recording left no trace" + describe(record)
    replay = replay_verify(trace, timeout=timeout)
    assert replay.stdout == record.stdout, ("replay reproduced a different console"
                                            + describe(record) + describe(replay))
    return record, replay, trace


class VmrrProcess(subprocess.Popen):
    """A background ``python -m vmrr`` whose stdout and stderr are collected by threads.

    Attributes:
        host, port: the address from its "listening on" line (after ``wait_listening``).
    """

    def __init__(self, args) -> None:
        super().__init__([sys.executable, "-m", "vmrr", *map(str, args)], cwd=REPO,
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
        self._out = bytearray()
        self._err = bytearray()
        self._cond = threading.Condition()
        self._readers = [threading.Thread(target=self._pump, args=(self.stdout, self._out), daemon=True),
                         threading.Thread(target=self._pump, args=(self.stderr, self._err), daemon=True)]
        for reader in self._readers:
            reader.start()
        self.host: str | None = None
        self.port: int | None = None

    def _pump(self, stream, buffer: bytearray) -> None:
        for chunk in iter(lambda: stream.read1(65536), b""):
            with self._cond:
                buffer += chunk
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def stdout_text(self) -> str:
        with self._cond:
            return _text(bytes(self._out))

    def stderr_text(self) -> str:
        with self._cond:
            return _text(bytes(self._err))

    def wait_for_stderr(self, pattern: re.Pattern, timeout: float = 30) -> re.Match:
        """Wait until stderr matches ``pattern``; fail if the process ends or time runs out."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                match = pattern.search(_text(bytes(self._err)))
                if match:
                    return match
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.poll() is not None and not any(r.is_alive() for r in self._readers)):
                    raise AssertionError(f"no {pattern.pattern!r} on stderr of {self.args} "
                                         f"(exit {self.poll()}):\n{_text(bytes(self._err))}")
                self._cond.wait(min(remaining, 0.2))

    def wait_listening(self, timeout: float = 30) -> tuple[str, int]:
        match = self.wait_for_stderr(_LISTENING, timeout)
        self.host, self.port = match.group(1), int(match.group(2))
        return self.host, self.port

    def stop(self, timeout: float = 30) -> subprocess.CompletedProcess:
        """SIGINT (a user's Ctrl-C), wait for the exit, return what it printed."""
        if self.poll() is None:
            self.send_signal(signal.SIGINT)
        try:
            self.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            self.wait()
            raise AssertionError(f"{self.args} did not exit within {timeout} s of SIGINT:\n"
                                 f"{self.stderr_text()}") from None
        return self.finish()

    def finish(self) -> subprocess.CompletedProcess:
        for reader in self._readers:
            reader.join(10)
        return subprocess.CompletedProcess(self.args, self.returncode, self.stdout_text(),
                                           self.stderr_text())

    def terminate_quietly(self) -> None:
        """The finalizer: SIGINT, then SIGKILL after STOP_GRACE seconds."""
        if self.poll() is None:
            try:
                self.send_signal(signal.SIGINT)
                self.wait(STOP_GRACE)
            except subprocess.TimeoutExpired:
                self.kill()
                self.wait()
        for reader in self._readers:
            reader.join(5)
        for stream in (self.stdout, self.stderr):
            stream.close()


@pytest.fixture
def start_vmrr(request):
    """Factory: ``start_vmrr(args, listening=True) -> VmrrProcess``, ended by a finalizer.

    With ``listening`` it waits for the "listening on HOST:PORT" line on stderr and
    sets ``.host`` and ``.port``.
    """
    started: list[VmrrProcess] = []

    def start(args, *, listening: bool = True, timeout: float = 30) -> VmrrProcess:
        proc = VmrrProcess(args)
        started.append(proc)
        if listening:
            proc.wait_listening(timeout)
        return proc

    yield start
    for proc in started:
        proc.terminate_quietly()


@pytest.fixture(name="vmrr")
def _vmrr_fixture():
    return vmrr


@pytest.fixture(name="free_port")
def _free_port_fixture():
    return free_port


@pytest.fixture(name="record_and_replay")
def _record_and_replay_fixture():
    return record_and_replay


@pytest.fixture
def images() -> Path:
    return IMAGES


def guest(name: str) -> Path:
    """Path of the built test guest ``name`` (skips the test when it is not built)."""
    path = IMAGES / f"{name}.elf"
    if not path.is_file():
        pytest.skip(f"{path} is not built (make -C guests)")
    return path


"""`vmrr demo`: record the kvstore appliance under real clients, replay it, verify it.

This is what the README's first command runs: it shows the whole product on a fresh
machine in under a minute. The clients are real: `redis-benchmark` and `redis-cli`
when they are installed, otherwise a small RESP client in this file talking real TCP.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from typing import Callable

from vmm.errors import CheckFailed, HostError


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _vmrr(*args: str) -> list[str]:
    return [sys.executable, "-m", "vmrr", *args]


def _wait_listening(port: int, proc: subprocess.Popen, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise HostError(f"the recorder exited early: {proc.stderr.read().strip()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise HostError(f"the recorder did not listen on 127.0.0.1:{port} within {seconds:.0f} s")


def _resp(*parts: str) -> bytes:
    out = [f"*{len(parts)}\r\n".encode()]
    for part in parts:
        data = part.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def _builtin_client(port: int, requests: int) -> str:
    """SET/GET pairs over one real TCP connection, pipelined 16 at a time."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        start = time.perf_counter()
        for base in range(0, requests, 16):
            batch = range(base, min(base + 16, requests))
            sock.sendall(b"".join(_resp("SET", f"key:{i}", f"value-{i}") + _resp("GET", f"key:{i}")
                                  for i in batch))
            expected = sum(5 + len(f"${len(f'value-{i}')}\r\nvalue-{i}\r\n") for i in batch)
            got = b""
            while len(got) < expected:
                chunk = sock.recv(65536)
                if not chunk:
                    raise CheckFailed("kvstore closed the connection")
                got += chunk
        rate = 2 * requests / (time.perf_counter() - start)
    return f"built-in RESP client: {2 * requests} requests, {rate:.0f} requests per second"


def run_demo(trace: str, requests: int, say: Callable[[str], None]) -> int:
    port = _free_port()
    for stale in (trace, trace + ".incomplete"):
        if os.path.exists(stale):
            os.unlink(stale)
    say(f"1/3 recording the kvstore appliance on 127.0.0.1:{port} into {trace}")
    rec = subprocess.Popen(_vmrr("record", "kvstore", "-o", trace, "--listen", f"127.0.0.1:{port}",
                                 "--no-stdin", "--console-log", os.devnull),
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _wait_listening(port, rec)
        if shutil.which("redis-benchmark") and shutil.which("redis-cli"):
            subprocess.run(["redis-cli", "-p", str(port), "SET", "greeting", "hello", "EX", "60"],
                           check=True, capture_output=True, timeout=30)
            out = subprocess.run(["redis-benchmark", "-p", str(port), "-t", "set,get,incr,lpush,lpop",
                                  "-c", "10", "-n", str(requests), "-q"],
                                 check=True, capture_output=True, text=True, timeout=600).stdout
            for line in out.replace("\r", "\n").splitlines():
                if "requests per second" in line:
                    say(f"    redis-benchmark {line.strip()}")
        else:
            say("    " + _builtin_client(port, requests))
    finally:
        rec.send_signal(signal.SIGINT)
        _, err = rec.communicate(timeout=120)
    for line in err.splitlines():
        if line.startswith("vmrr: ") and ("instructions" in line or "events" in line or "trace " in line):
            say("    " + line.removeprefix("vmrr: "))
    if rec.returncode != 0:
        raise CheckFailed(f"the recorder failed (exit {rec.returncode}): {err.strip().splitlines()[-1:]}")

    say(f"2/3 replaying {trace} with no network, no clock, no entropy, and verifying it")
    rep = subprocess.run(_vmrr("replay", trace, "--verify", "--quiet"), capture_output=True, text=True)
    for line in rep.stderr.splitlines():
        say("    " + line.removeprefix("vmrr: "))
    if rep.returncode != 0:
        return rep.returncode
    say(f"3/3 done. Look inside: vmrr info {trace} | vmrr events {trace} --kind SOCK_DATA | vmrr tui {trace}")
    return 0

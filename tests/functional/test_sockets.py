"""The socket device over real TCP: the t_echo guest recorded while real clients talk to it.

Each test starts ``vmrr record t_echo --listen 127.0.0.1:PORT`` in the background,
drives it with real sockets, stops it with SIGINT (exit 0 and a summary), then replays
the trace with ``--verify``. Every socket has a timeout and every loop a bound.
"""

from __future__ import annotations

import hashlib
import json
import random
import select
import socket
import struct
import threading

import pytest

from conftest import describe, free_port, guest, replay_verify, vmrr

pytestmark = pytest.mark.timeout(90)

IO_TIMEOUT = 30.0               # seconds any single socket operation may block
CHANNELS = 64


@pytest.fixture
def echo(tmp_path, start_vmrr):
    """A recording t_echo server: (process, port, trace path)."""
    trace = tmp_path / "echo.vmrr"
    port = free_port()
    proc = start_vmrr(["record", guest("t_echo"), "-o", trace, "--listen", f"127.0.0.1:{port}",
                       "--no-stdin"])
    assert proc.port == port
    return proc, port, trace


def stop_and_replay(proc, trace) -> dict:
    """SIGINT the recorder (exit 0, summary printed), replay --verify; return SOCK_* counts."""
    assert proc.poll() is None, "the recorder died:\n" + proc.stderr_text()
    done = proc.stop()
    assert done.returncode == 0, describe(done)
    assert "Traceback" not in done.stderr
    assert "vmrr: stopped (interrupted)" in done.stderr, describe(done)
    assert f"vmrr: trace {trace}:" in done.stderr, describe(done)
    assert "vmrr: events: " in done.stderr, describe(done)
    assert done.stdout.startswith("echo: ready\n"), describe(done)
    replay = replay_verify(trace)
    assert replay.stdout == done.stdout
    assert "verified: console and socket output match" in replay.stderr
    info = vmrr("info", trace, "--json")
    assert info.returncode == 0, describe(info)
    return json.loads(info.stdout)["events"]


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT)
    sock.settimeout(IO_TIMEOUT)
    return sock


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:                        # bounded: each recv blocks at most IO_TIMEOUT
        chunk = sock.recv(min(65536, n - len(data)))
        if not chunk:
            break
        data += chunk
    return bytes(data)


def payload(i: int, size: int) -> bytes:
    rng = random.Random(i)
    return f"client {i}:".encode() + rng.randbytes(size)


def run_threads(targets) -> list:
    """Run callables in threads; re-raise the first failure; return their results."""
    results: list = [None] * len(targets)
    errors: list = []

    def wrap(k, fn):
        try:
            results[k] = fn()
        except BaseException as exc:           # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=wrap, args=(k, fn), daemon=True) for k, fn in enumerate(targets)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(IO_TIMEOUT * 2)
    assert not any(t.is_alive() for t in threads), "a client thread hung"
    if errors:
        raise errors[0]
    return results


def test_64_concurrent_clients(echo):
    proc, port, trace = echo
    barrier = threading.Barrier(CHANNELS, timeout=IO_TIMEOUT)

    def client(i):
        data = payload(i, 4096 + 97 * i)
        with connect(port) as sock:
            barrier.wait()                      # all 64 connected at once
            sock.sendall(data)
            echoed = recv_exactly(sock, len(data))
            sock.shutdown(socket.SHUT_WR)       # hang up; the guest closes the channel in turn
            return echoed == data and sock.recv(1) == b""

    assert run_threads([lambda i=i: client(i) for i in range(CHANNELS)]) == [True] * CHANNELS
    counts = stop_and_replay(proc, trace)
    assert counts["SOCK_ACCEPT"] == CHANNELS
    assert counts["SOCK_HUP"] == CHANNELS


def test_client_leaving_mid_message_does_not_disturb_others(echo):
    proc, port, trace = echo
    message = payload(1, 20000)
    quitter = connect(port)
    quitter.sendall(message[:len(message) // 2])
    quitter.close()                             # gone with half a message sent, nothing read
    rude = connect(port)
    rude.sendall(message[:5000])
    rude.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    rude.close()                                # RST instead of FIN
    for i in range(3):
        with connect(port) as sock:
            sock.sendall(message)
            assert recv_exactly(sock, len(message)) == message
    assert proc.poll() is None
    counts = stop_and_replay(proc, trace)
    assert counts["SOCK_ACCEPT"] == 5


def test_4mb_with_a_slow_reader_comes_back_intact(echo):
    proc, port, trace = echo
    data = random.Random(4).randbytes(4 << 20)
    with connect(port) as sock:
        sender = threading.Thread(target=sock.sendall, args=(data,), daemon=True)
        sender.start()
        received = hashlib.sha256()
        total = 0
        reads = 0
        while total < len(data) and reads < 100_000:       # bounded
            chunk = sock.recv(4096)                        # small reads: the echo backs up
            if not chunk:
                break
            received.update(chunk)
            total += len(chunk)
            reads += 1
            if reads % 16 == 0:
                select.select([], [], [], 0.002)           # and a slow reader
        sender.join(IO_TIMEOUT)
        assert not sender.is_alive()
    assert total == len(data)
    assert received.hexdigest() == hashlib.sha256(data).hexdigest()
    counts = stop_and_replay(proc, trace)
    assert counts["SOCK_ACCEPT"] == 1
    # Flow control: no SOCK_DATA larger than the device's 16 KiB receive buffer.
    sizes = [len(bytes.fromhex(json.loads(line)["payload"][1]["hex"]))
             for line in vmrr("events", trace, "--kind", "SOCK_DATA", "--json").stdout.splitlines()]
    assert sum(sizes) == len(data)
    assert max(sizes) <= 16 * 1024


def test_connections_beyond_64_wait_for_a_free_channel(echo):
    proc, port, trace = echo
    extra = 16
    served = [connect(port) for _ in range(CHANNELS)]
    for i, sock in enumerate(served):             # each has a channel once it is echoed
        sock.sendall(b"ping %d\n" % i)
        assert recv_exactly(sock, len(b"ping %d\n" % i)) == b"ping %d\n" % i
    waiting = [connect(port) for _ in range(extra)]          # in the host's backlog
    for i, sock in enumerate(waiting):
        sock.sendall(b"late %d\n" % i)
    # No 65th channel: nothing can be echoed while all 64 are open.
    readable, _, _ = select.select(waiting, [], [], 0.5)
    assert readable == []
    for sock in served[:extra]:                   # free 16 channels
        sock.close()
    for i, sock in enumerate(waiting):
        assert recv_exactly(sock, len(b"late %d\n" % i)) == b"late %d\n" % i
        sock.close()
    for sock in served[extra:]:
        sock.sendall(b"still here")
        assert recv_exactly(sock, 10) == b"still here"
        sock.close()
    counts = stop_and_replay(proc, trace)
    assert counts["SOCK_ACCEPT"] == CHANNELS + extra

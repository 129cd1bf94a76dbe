"""Debian's real redis-server recorded under real redis-cli and redis-benchmark, then replayed.

redis-tools ships the server as /usr/bin/redis-check-rdb; a link named ``redis-server``
makes it a server, as Debian's redis-server package does. ``--save '' --appendonly no``
keeps it from forking. Each test records the server over real TCP on 127.0.0.1, stops
it with SIGTERM (redis shuts down its own way), and replays the trace ``--verify`` twice.
"""

from __future__ import annotations

import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, describe, free_port, replay_verify, vmrr

REDIS = Path("/usr/bin/redis-check-rdb")
pytestmark = pytest.mark.skipif(not REDIS.exists() or shutil.which("redis-cli") is None,
                                reason="needs redis-tools (redis-check-rdb, redis-cli)")


class Recording:
    """``vmrr record -- redis-server --port PORT`` in the background."""

    def __init__(self, tmp_path: Path) -> None:
        self.port = free_port()
        server = tmp_path / "redis-server"
        server.symlink_to(REDIS)
        self.trace = tmp_path / "redis.vmrr"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "vmrr", "record", "-o", str(self.trace), "--", str(server),
             "--port", str(self.port), "--save", "", "--appendonly", "no"],
            cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 40
        while self.cli("ping") != "PONG":
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.proc.kill()
                out, err = self.proc.communicate()
                pytest.fail(f"redis did not come up under vmrr: {err.decode(errors='replace')[-2000:]}")
            time.sleep(0.3)

    def cli(self, *args: str) -> str:
        result = subprocess.run(["redis-cli", "-p", str(self.port), *args], capture_output=True,
                                text=True, timeout=30)
        return result.stdout.strip()

    def stop(self) -> tuple[str, str]:
        """SIGTERM: redis gets it and exits 0; the trace is finalized."""
        self.proc.send_signal(signal.SIGTERM)
        out, err = self.proc.communicate(timeout=60)
        out, err = out.decode(errors="replace"), err.decode(errors="replace")
        assert self.proc.returncode == 0, err[-3000:]
        assert "Traceback" not in err, err[-3000:]
        return out, err


def _replay_twice(trace: Path) -> None:
    for _ in range(2):
        replay = replay_verify(trace, timeout=120)
        assert "program exited with status 0" in replay.stderr, describe(replay)


def test_commands_of_every_type_expiry_and_sigterm(tmp_path):
    r = Recording(tmp_path)
    try:
        assert r.cli("set", "greeting", "hello") == "OK"
        assert r.cli("get", "greeting") == "hello"
        assert r.cli("incrby", "counter", "41") == "41"
        assert r.cli("incr", "counter") == "42"
        assert r.cli("rpush", "list", "a", "b", "c") == "3"
        assert r.cli("lrange", "list", "0", "-1").split() == ["a", "b", "c"]
        assert r.cli("hset", "hash", "f1", "v1", "f2", "v2") == "2"
        assert r.cli("hget", "hash", "f2") == "v2"
        assert r.cli("sadd", "set", "x", "y", "x") == "2"
        assert r.cli("scard", "set") == "2"
        assert r.cli("zadd", "zset", "1", "one", "2", "two") == "2"
        assert r.cli("zrange", "zset", "0", "-1").split() == ["one", "two"]
        assert r.cli("eval", "return redis.call('get', KEYS[1])", "1", "greeting") == "hello"
        assert r.cli("set", "short", "lived", "px", "200") == "OK"
        time.sleep(0.6)                               # redis's own timer and lazy expiry
        assert r.cli("get", "short") == ""
        assert r.cli("del", "list") == "1"
        assert r.cli("dbsize") == "5"
        assert "redis_version:" in r.cli("info", "server")
    finally:
        out, _err = r.stop()
    assert "Redis is now ready to exit" in out
    _replay_twice(r.trace)
    info = vmrr("info", r.trace)
    assert re.search(r"^network     heard from 127\.0\.0\.1 \(\d+\)$", info.stdout, re.M), info.stdout


def test_benchmark_load_and_clients_that_vanish(tmp_path):
    r = Recording(tmp_path)
    try:
        # A client sends half a pipeline and disappears mid-request.
        with socket.create_connection(("127.0.0.1", r.port)) as s:
            s.sendall(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n*2\r\n$3\r\nGET\r\n$1")
        bench = subprocess.run(["redis-benchmark", "-p", str(r.port), "-q", "-t", "set,get",
                                "-n", "1000", "-c", "10", "-r", "1000"],
                               capture_output=True, text=True, timeout=120)
        assert "requests per second" in bench.stdout, bench.stdout + bench.stderr
        assert r.cli("get", "k") == "v"
        # A thousand clients at once (the guest's RLIMIT_NOFILE soft limit is 1024, as
        # from a shell; redis raises it to its maxclients, and vmrr its own on the host).
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < 1100:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
        many = [socket.create_connection(("127.0.0.1", r.port)) for _ in range(1000)]
        for s in many:
            s.sendall(b"PING\r\n")
        for s in many:
            assert s.recv(16) == b"+PONG\r\n"
        clients = r.cli("info", "clients")
        assert "connected_clients:1001" in clients, clients
        for s in many:
            s.close()
    finally:
        r.stop()
    _replay_twice(r.trace)


BIND_PROBE = ("import socket\n"
              "s = socket.socket()\n"
              "s.bind(('0.0.0.0', 0))\n"
              "s.listen()\n"
              "print(s.getsockname()[0])\n")


@pytest.mark.parametrize("bind_host, listening", [(None, "127.0.0.1"), ("0.0.0.0", "0.0.0.0")])
def test_a_wildcard_bind_listens_where_bind_host_says(tmp_path, bind_host, listening):
    """By default a guest bind to 0.0.0.0 listens on the host's loopback only;
    --bind-host 0.0.0.0 opens it to the network. Replay contacts nothing either way."""
    trace = tmp_path / "bind.vmrr"
    options = ["--bind-host", bind_host] if bind_host else []
    record = subprocess.run([sys.executable, "-m", "vmrr", "record", "-o", str(trace), *options,
                             "--env", "PYTHONDONTWRITEBYTECODE=1", "--", "/usr/bin/python3", "-c", BIND_PROBE],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert record.returncode == 0, describe(record)
    assert record.stdout == listening + "\n", describe(record)
    replay = replay_verify(trace, timeout=120)
    assert replay.stdout == record.stdout, describe(replay)

"""Servers as people run them, under real clients on 127.0.0.1.

nginx with its default master and two workers (fork, a socketpair channel per worker
whose descriptors travel with SCM_RIGHTS, sigsuspend, SIGCHLD), served to curl, stopped
with SIGQUIT (graceful: workers finish and exit 0) or SIGTERM; memcached started as root
with ``-u nobody`` (setgroups, setgid, setuid) and four threads. Each trace replays
--verify."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, describe, replay_verify, vmrr

NGINX = "/usr/sbin/nginx"
MEMCACHED = "/usr/bin/memcached"
pytestmark = pytest.mark.timeout(120)
needs_nginx = pytest.mark.skipif(not Path(NGINX).is_file() or shutil.which("curl") is None,
                                 reason="needs nginx and curl (.ci/run installs them)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _site(where: Path) -> tuple[Path, int]:
    port = _free_port()
    (where / "html").mkdir()
    (where / "html" / "index.html").write_text("hello from nginx\n")
    (where / "tmp").mkdir()
    conf = where / "nginx.conf"
    conf.write_text(f"""worker_processes 2;
error_log {where}/error.log info;
pid {where}/nginx.pid;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {where}/tmp;
    server {{ listen 127.0.0.1:{port}; root {where}/html; }}
}}
""")
    return conf, port


def _get(port: int, deadline: float) -> str:
    while time.monotonic() < deadline:
        got = subprocess.run(["curl", "-s", "-m", "5", f"http://127.0.0.1:{port}/"], capture_output=True, text=True)
        if got.returncode == 0:
            return got.stdout
        time.sleep(0.3)
    raise AssertionError("nginx never answered")


@needs_nginx
@pytest.mark.parametrize("stop", [signal.SIGQUIT, signal.SIGTERM], ids=["SIGQUIT", "SIGTERM"])
def test_master_and_two_workers_serve_curl_stop_on_a_signal_and_replay(tmp_path, stop):
    conf, port = _site(tmp_path)
    trace = tmp_path / "web.vmrr"
    recorder = subprocess.Popen([sys.executable, str(REPO / "vmrr.py"), "record", "-o", str(trace), "--",
                                 NGINX, "-c", str(conf), "-g", "daemon off;"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        for _ in range(5):
            assert _get(port, deadline) == "hello from nginx\n"
        recorder.send_signal(stop)
        out, err = recorder.communicate(timeout=60)
    finally:
        if recorder.poll() is None:
            recorder.kill()
            recorder.communicate()
    assert recorder.returncode == 0 and "Traceback" not in err, err
    log = (tmp_path / "error.log").read_text()
    assert "[alert]" not in log and "exited on signal" not in log, log
    assert log.count("exited with code 0") == 2, log          # both workers ended their own way
    replay_verify(trace, timeout=90)
    ps = vmrr("ps", trace, "--json")
    rows = [json.loads(line) for line in ps.stdout.splitlines()]
    assert len(rows) == 3, describe(ps)
    master = rows[0]
    assert [r["ppid"] for r in rows[1:]] == [master["pid"]] * 2 and all(r["exit_code"] == 0 for r in rows), rows


@pytest.mark.skipif(not Path(MEMCACHED).is_file(), reason="needs memcached (.ci/run installs it)")
@pytest.mark.skipif(__import__("os").getuid() != 0, reason="-u nobody needs a recording made as root")
def test_memcached_drops_to_nobody_serves_a_client_and_replays(tmp_path):
    port = _free_port()
    trace = tmp_path / "cache.vmrr"
    recorder = subprocess.Popen([sys.executable, str(REPO / "vmrr.py"), "record", "-o", str(trace), "--",
                                 MEMCACHED, "-p", str(port), "-l", "127.0.0.1", "-t", "4", "-u", "nobody"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline, client = time.monotonic() + 60, None
        while client is None:
            try:
                client = socket.create_connection(("127.0.0.1", port), timeout=10)
            except OSError:
                assert time.monotonic() < deadline and recorder.poll() is None, "memcached never listened"
                time.sleep(0.3)
        with client:
            client.sendall(b"set k 0 0 5\r\nhello\r\nget k\r\n")
            got = b""
            while not got.endswith(b"END\r\n"):
                chunk = client.recv(4096)
                assert chunk, got
                got += chunk
        assert got == b"STORED\r\nVALUE k 0 5\r\nhello\r\nEND\r\n"
        recorder.send_signal(signal.SIGTERM)
        _out, err = recorder.communicate(timeout=60)
    finally:
        if recorder.poll() is None:
            recorder.kill()
            recorder.communicate()
    assert recorder.returncode == 0 and "Traceback" not in err, err
    replay_verify(trace, timeout=90)
    events = vmrr("events", trace, "--syscall", "setgroups,setgid,setuid")
    assert "setgroups(0, NULL) = 0" in events.stdout or "setgroups(0" in events.stdout, describe(events)
    assert "setuid(65534) = 0" in events.stdout, describe(events)

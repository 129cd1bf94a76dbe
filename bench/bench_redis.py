"""Debian's real redis-server: native, under `vmrr run`, under `vmrr record`; trace size, idle, replay.

    python bench/bench_redis.py [--requests 20000] [--clients 10] [--keyspace 100000] [--repeat 2] [--idle 20]

Side by side in one run, interleaved (native, run, record, native, run, record, ...):
  * `redis-benchmark -t set,get -c CLIENTS -n REQUESTS -r KEYSPACE` against redis-server
    natively, under `vmrr run` and under `vmrr record` (targets: record >= 10,000 req/s,
    record/run >= 0.9; record/native is reported);
  * trace bytes per request: the event chunks of the load recording less those of a
    recording that only starts and stops (start-up reads files, which are logged once),
    over the requests served — target <= 2x the request's own bytes on the wire;
  * replay --verify of the load trace against the time it took to record (both whole
    processes: start-up, the load, shutdown);
  * an idle redis (its own 10 Hz timer, one request every 5 s) for --idle seconds:
    trace growth per second (target <= 2 KB/s) and how long its replay takes.

redis-tools ships the server as /usr/bin/redis-check-rdb; a link named redis-server
makes it a server. ``--save '' --appendonly no`` keeps it from forking.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_kvstore import benchmark as kvstore_benchmark, event_bytes as kvstore_event_bytes, free_port  # noqa: E402  (same directory)

REDIS = "/usr/bin/redis-check-rdb"
QEMU = shutil.which("qemu-x86_64") or "qemu-x86_64"
# Bytes on the wire of one redis-benchmark request and its reply (key:<12 digits>, value xxx).
SET_WIRE = len(b"*3\r\n$3\r\nSET\r\n$16\r\nkey:000000012345\r\n$3\r\nxxx\r\n") + len(b"+OK\r\n")
GET_WIRE = len(b"*2\r\n$3\r\nGET\r\n$16\r\nkey:000000012345\r\n") + len(b"$3\r\nxxx\r\n")


def start(mode: str, server: str, port: int, trace: str | None, options: list[str] = ()) -> subprocess.Popen:
    """redis-server natively, under qemu-x86_64 (mode "qemu") or under `vmrr MODE OPTIONS`;
    returns once it answers PING (bench/bench_speed.py times this: the time to the first PONG)."""
    args = [server, "--port", str(port), "--save", "", "--appendonly", "no"]
    if mode == "native":
        cmd = args
    elif mode == "qemu":
        cmd = [QEMU, *args]
    else:
        cmd = [sys.executable, "-m", "vmrr", mode]
        if trace:
            cmd += ["-o", trace, "--force"]
        cmd += [*options, "--", *args]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if ping(port):
            return proc
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    proc.kill()
    raise SystemExit(f"redis-server did not come up under {mode}: {proc.communicate()[1][-2000:]}")


def stop(proc: subprocess.Popen) -> float:
    """SIGTERM, as a user stops redis; returns how long the shutdown took."""
    t0 = time.perf_counter()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    if proc.returncode != 0:
        raise SystemExit(f"redis-server exited {proc.returncode}: {err[-2000:]}")
    return time.perf_counter() - t0


def ping(port: int) -> bool:
    """PING over a raw connection (no redis-cli process: the first PONG is timed to ~20 ms)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
            conn.sendall(b"PING\r\n")
            reply = b""
            while not reply.endswith(b"\r\n"):
                data = conn.recv(64)
                if not data:
                    return False
                reply += data
            return reply == b"+PONG\r\n"
    except OSError:
        return False


def cli(port: int, *args: str) -> str:
    try:
        done = subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True, text=True,
                              timeout=10)
    except subprocess.TimeoutExpired:
        return ""
    return done.stdout.strip()


def benchmark(port: int, requests: int, clients: int, keyspace: int) -> dict[str, float]:
    rates = kvstore_benchmark(port, requests, clients, keyspace)
    if set(rates) != {"SET", "GET"}:
        raise SystemExit(f"redis-benchmark gave no SET and GET rates on port {port}")
    return rates


def event_bytes(trace: str) -> int:
    """Bytes of the trace's event chunks (checkpoints and the embedded image left out)."""
    return kvstore_event_bytes(trace)[0]


def replay_seconds(trace: str) -> float:
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "vmrr", "replay", trace, "--verify", "--quiet"],
                          cwd=ROOT, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0 or "verified: final registers" not in done.stderr:
        raise SystemExit(f"replay --verify of {trace} failed ({done.returncode}): {done.stderr[-2000:]}")
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--keyspace", type=int, default=100000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--idle", type=float, default=20.0)
    parser.add_argument("--modes", default="native,run,record")
    opts = parser.parse_args()
    modes = opts.modes.split(",")
    if not os.path.exists(REDIS):
        raise SystemExit(f"{REDIS} is missing: apt-get install redis-tools")
    best = {m: {"SET": 0.0, "GET": 0.0} for m in modes}
    with tempfile.TemporaryDirectory() as tmp:
        server = os.path.join(tmp, "redis-server")
        os.symlink(REDIS, server)
        trace = os.path.join(tmp, "load.vmrr")
        record_wall = 0.0
        for _ in range(opts.repeat):
            for mode in modes:
                port = free_port()
                t0 = time.perf_counter()
                proc = start(mode, server, port, trace if mode == "record" else None)
                rates = benchmark(port, opts.requests, opts.clients, opts.keyspace)
                stop(proc)
                wall = time.perf_counter() - t0          # the whole process, as replay's
                for k, v in rates.items():
                    best[mode][k] = max(best[mode][k], v)
                if mode == "record":
                    record_wall = wall
        print(f"redis-benchmark -t set,get -c {opts.clients} -n {opts.requests} -r {opts.keyspace} "
              f"(best of {opts.repeat}, req/s):")
        for mode in modes:
            line = f"  {mode:7s} SET {best[mode]['SET']:8.0f}  GET {best[mode]['GET']:8.0f}"
            if mode == "record" and "run" in best:
                line += "   record/run SET {:.2f} GET {:.2f}".format(
                    best["record"]["SET"] / best["run"]["SET"], best["record"]["GET"] / best["run"]["GET"])
            if mode != "native" and "native" in best:
                line += "   /native SET {:.3f} GET {:.3f}".format(
                    best[mode]["SET"] / best["native"]["SET"], best[mode]["GET"] / best["native"]["GET"])
            print(line, flush=True)
        if "record" not in modes:
            return

        base_trace = os.path.join(tmp, "base.vmrr")
        port = free_port()
        stop(start("record", server, port, base_trace))
        per_request = (event_bytes(trace) - event_bytes(base_trace)) / (2 * opts.requests)
        wire = (SET_WIRE + GET_WIRE) / 2
        print(f"  trace   {per_request:8.1f} bytes/request of events; the request and its reply are "
              f"{wire:.0f} bytes on the wire ({per_request / wire:.2f}x, target <= 2x)")
        load_replay = replay_seconds(trace)
        print(f"  replay --verify of the load trace: {load_replay:.1f} s; recording it took {record_wall:.1f} s "
              f"(replay/record {load_replay / record_wall:.2f}; both whole processes, start-up and "
              f"shutdown included)", flush=True)

        idle_trace = os.path.join(tmp, "idle.vmrr")
        port = free_port()
        proc = start("record", server, port, idle_trace)
        t0 = time.monotonic()
        while time.monotonic() - t0 < opts.idle:
            time.sleep(5)
            cli(port, "INCR", "counter")
        idle_wall = time.monotonic() - t0
        stop(proc)
        idle_bytes = event_bytes(idle_trace) - event_bytes(base_trace)
        idle_replay = replay_seconds(idle_trace)
        print(f"idle redis-server, {idle_wall:.0f} s, its 10 Hz timer and a request every 5 s:")
        print(f"  growth  {idle_bytes / idle_wall:8.0f} bytes/s  (target <= 2048)")
        print(f"  replay  {idle_replay:8.1f} s for {idle_wall:.0f} s of wall time ({idle_replay / idle_wall:.2f}x)")


if __name__ == "__main__":
    main()

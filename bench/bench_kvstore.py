"""kvstore under real clients: throughput, recording overhead, trace size, idle behaviour.

    python bench/bench_kvstore.py [--requests 20000] [--clients 10] [--keyspace 100000] [--repeat 2] [--idle 30]

Runs, side by side in one process tree and interleaved:
  * `vmrr run kvstore` and `vmrr record kvstore` under
    `redis-benchmark -t set,get -c CLIENTS -n REQUESTS -r KEYSPACE` (random keys, so the
    trace cannot shrink identical requests to nothing; target >= 5000 req/s; record/run >= 0.9);
  * trace bytes per request (event chunks only; the embedded image and the base
    checkpoint are a fixed cost) — target close to the request's own size, < 64 B;
  * an idle recording with a few requests spread over --idle seconds, one volatile key
    keeping the expiry timer at 100 Hz: trace growth per second (target <= 2 KB/s) and
    how long its replay takes compared with its wall time.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from trace_format import TraceReader  # noqa: E402
from trace_format.events import EventKind  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(mode: str, port: int, trace: str | None) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "vmrr", mode, "kvstore", "--listen", f"127.0.0.1:{port}", "--no-stdin"]
    if trace:
        cmd += ["-o", trace, "--force"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"vmrr {mode} did not start listening")


def stop(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    return err


def benchmark(port: int, requests: int, clients: int, keyspace: int) -> dict[str, float]:
    keys = ["-r", str(keyspace)] if keyspace else []        # 0: redis-benchmark's one key
    out = subprocess.run(["redis-benchmark", "-p", str(port), "-t", "set,get", "-c", str(clients),
                          "-n", str(requests), *keys, "-q"],
                         capture_output=True, text=True, timeout=300).stdout
    rates = {}
    for line in out.replace("\r", "\n").splitlines():
        m = re.match(r"\s*(SET|GET): ([\d.]+) requests per second", line)
        if m:
            rates[m.group(1)] = float(m.group(2))
    return rates


def event_bytes(trace: str) -> tuple[int, int]:
    """(bytes of event chunks, number of SOCK_DATA events)."""
    with TraceReader(trace) as reader:
        size = sum(c.length for c in reader.chunks if EventKind.CHECKPOINT not in c.counts)
        return size, reader.event_counts.get(EventKind.SOCK_DATA, 0)


def redis(port: int, *args: str) -> None:
    subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True, timeout=10, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--keyspace", type=int, default=100000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--idle", type=float, default=30.0)
    opts = parser.parse_args()
    best = {"run": 0.0, "record": 0.0}
    with tempfile.TemporaryDirectory() as tmp:
        trace = os.path.join(tmp, "load.vmrr")
        for _ in range(opts.repeat):
            for mode in ("run", "record"):
                port = free_port()
                proc = start(mode, port, trace if mode == "record" else None)
                rates = benchmark(port, opts.requests, opts.clients, opts.keyspace)
                stop(proc)
                best[mode] = max(best[mode], sum(rates.values()) / max(1, len(rates)))
        ev_bytes, _ = event_bytes(trace)
        total_requests = 2 * opts.requests          # SET and GET
        start_t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "vmrr", "replay", trace, "--verify", "--quiet"], cwd=ROOT,
                       check=True, capture_output=True, timeout=600)
        load_replay = time.perf_counter() - start_t

        idle_trace = os.path.join(tmp, "idle.vmrr")
        port = free_port()
        proc = start("record", port, idle_trace)
        t0 = time.monotonic()
        redis(port, "SET", "session", "x", "EX", "3600")        # keeps the 100 Hz expiry timer on
        while time.monotonic() - t0 < opts.idle:
            time.sleep(5)
            redis(port, "INCR", "counter")
        idle_wall = time.monotonic() - t0
        stop(proc)
        idle_bytes, _ = event_bytes(idle_trace)
        start_t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "vmrr", "replay", idle_trace, "--verify", "--quiet"], cwd=ROOT,
                       check=True, capture_output=True, timeout=600)
        idle_replay = time.perf_counter() - start_t

    print(f"redis-benchmark -t set,get -c {opts.clients} -n {opts.requests} -r {opts.keyspace} "
          f"(best of {opts.repeat}, mean of SET/GET):")
    print(f"  run     {best['run']:8.0f} req/s   (target >= 5000)")
    print(f"  record  {best['record']:8.0f} req/s   record/run {best['record'] / best['run']:.2f} (target >= 0.90)")
    print(f"  trace   {ev_bytes / total_requests:8.1f} bytes/request of events (a SET request is ~60 bytes on the wire, a GET ~45)")
    print(f"  replay --verify of the last load trace: {load_replay:.1f} s")
    print(f"idle recording, {idle_wall:.0f} s with a request every 5 s and the 100 Hz timer on:")
    print(f"  growth  {idle_bytes / idle_wall:8.0f} bytes/s  (target <= 2048)")
    print(f"  replay  {idle_replay:8.1f} s for {idle_wall:.0f} s of wall time ({idle_replay / idle_wall:.2f}x)")


if __name__ == "__main__":
    main()

"""The flight recorder: redis-server under `vmrr record` and `vmrr record --ring`; a soak; saves.

    python bench/bench_ring.py [--requests 20000] [--clients 10] [--repeat 2] [--ring 60s]
                               [--soak 90] [--soak-ring 20s]

Side by side in one run, interleaved (record, record --ring, record, record --ring, ...):
  * `redis-benchmark -t set,get -c CLIENTS -n REQUESTS` against redis-server under
    `vmrr record` and under `vmrr record --ring RING` (target: ring/record >= 0.9);
  * what the ring's checkpoints cost (the recorder's summary: milliseconds the guest stopped,
    bytes, time spent writing them beside the guest);
  * a soak: redis under `--ring SOAK_RING` with redis-benchmark rounds for SOAK seconds over
    a small keyspace (redis's own memory stays put), the ring directory's disk usage and
    the recorder's RSS sampled every second (flat once the window has filled: first and
    last thirds compared);
  * at the end of the soak, a save by `vmrr save PID` and one by SIGUSR1: how long each
    took and how big the window is; the saved window replayed --verify.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import bench_redis  # noqa: E402  (same directory)
from bench_redis import REDIS, benchmark, free_port  # noqa: E402


def start(server: str, port: int, trace: str, ring: str | None) -> subprocess.Popen:
    """redis-server under `vmrr record` (``--ring RING`` when given), once it answers PING."""
    return bench_redis.start("record", server, port, trace, ["--ring", ring] if ring else [])


def stop(proc: subprocess.Popen) -> str:
    """SIGTERM (redis shuts down its own way); the recorder's stderr."""
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    if proc.returncode != 0:
        raise SystemExit(f"vmrr record exited {proc.returncode}: {err[-2000:]}")
    return err


def disk_usage(directory: str) -> int:
    seen: dict[int, int] = {}
    for root, _dirs, files in os.walk(directory):
        for name in files:
            try:
                info = os.lstat(os.path.join(root, name))
            except FileNotFoundError:
                continue
            seen[info.st_ino] = info.st_blocks * 512
    return sum(seen.values())


def rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def checkpoint_lines(stderr: str) -> list[str]:
    return [line.removeprefix("vmrr: ") for line in stderr.splitlines()
            if "checkpoints" in line and ("guest stopped" in line or "beside the guest" in line)
            or "flight recorder: kept" in line]


def side_by_side(server: str, tmp: str, opts) -> None:
    best = {mode: {"SET": 0.0, "GET": 0.0} for mode in ("record", "ring")}
    costs = ""
    for _ in range(opts.repeat):
        for mode in ("record", "ring"):
            port = free_port()
            proc = start(server, port, os.path.join(tmp, f"{mode}.vmrr"), opts.ring if mode == "ring" else None)
            rates = benchmark(port, opts.requests, opts.clients, 100000)
            err = stop(proc)
            for k, v in rates.items():
                best[mode][k] = max(best[mode][k], v)
            if mode == "ring":
                costs = "\n".join(f"    {line}" for line in checkpoint_lines(err))
    print(f"redis-benchmark -t set,get -c {opts.clients} -n {opts.requests} (best of {opts.repeat}, req/s):")
    for mode, name in (("record", "record"), ("ring", f"record --ring {opts.ring}")):
        print(f"  {name:22s} SET {best[mode]['SET']:8.0f}  GET {best[mode]['GET']:8.0f}")
    print("  ring/record            SET {:.2f}      GET {:.2f}   (target >= 0.9)".format(
        best["ring"]["SET"] / best["record"]["SET"], best["ring"]["GET"] / best["record"]["GET"]))
    print(f"  the ring's checkpoints under that load:\n{costs}", flush=True)


def soak(server: str, tmp: str, opts) -> None:
    trace = os.path.join(tmp, "soak.vmrr")
    ring = trace + ".ring"
    port = free_port()
    proc = start(server, port, trace, opts.soak_ring)
    samples: list[tuple[float, int, int]] = []
    running = True

    def load() -> None:
        while running:
            subprocess.run(["redis-benchmark", "-p", str(port), "-q", "-t", "set,get", "-n", "5000",
                            "-c", str(opts.clients), "-r", str(opts.soak_keys)], capture_output=True,
                           timeout=600)

    loader = threading.Thread(target=load, daemon=True)
    began = time.monotonic()
    loader.start()
    while time.monotonic() - began < opts.soak:
        samples.append((time.monotonic() - began, disk_usage(ring), rss(proc.pid)))
        time.sleep(1.0)
    running = False
    loader.join()

    t0 = time.perf_counter()
    save = subprocess.run([sys.executable, "-m", "vmrr", "save", str(proc.pid), "-o",
                           os.path.join(tmp, "saved.vmrr")], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    save_wall = time.perf_counter() - t0
    if save.returncode != 0:
        raise SystemExit(f"vmrr save failed: {save.stderr}")
    proc.send_signal(signal.SIGUSR1)
    time.sleep(0.5)
    err = stop(proc)
    third = max(1, len(samples) // 3)
    first, last = samples[:third], samples[-third:]
    print(f"soak: redis under --ring {opts.soak_ring}, redis-benchmark rounds for {opts.soak:.0f} s "
          f"(sampled every second; first third / last third):")
    for name, index, unit in (("ring on disk", 1, 1 << 20), ("recorder RSS", 2, 1 << 20)):
        print(f"  {name:14s} max {max(s[index] for s in first) / unit:7.1f} MiB / "
              f"{max(s[index] for s in last) / unit:7.1f} MiB   "
              f"(mean {sum(s[index] for s in first) / len(first) / unit:.1f} / "
              f"{sum(s[index] for s in last) / len(last) / unit:.1f})")
    for line in checkpoint_lines(err):
        print(f"  {line}")
    size = os.path.getsize(os.path.join(tmp, "saved.vmrr"))
    print(f"  vmrr save PID: {save_wall:.2f} s wall (the client's), window {size / (1 << 20):.1f} MiB: "
          f"{save.stderr.strip().removeprefix('vmrr: ')}")
    sigusr1 = re.search(r"flight recorder: saved \S+ \(sigusr1\): (.*)", err)
    if sigusr1:
        print(f"  SIGUSR1: {sigusr1.group(1)}")
    t0 = time.perf_counter()
    replay = subprocess.run([sys.executable, "-m", "vmrr", "replay", os.path.join(tmp, "saved.vmrr"),
                             "--verify", "--quiet"], cwd=ROOT, capture_output=True, text=True, timeout=1800)
    status = "verified" if replay.returncode == 0 else f"FAILED ({replay.returncode}): {replay.stderr[-500:]}"
    print(f"  replay --verify of the saved window: {time.perf_counter() - t0:.1f} s, {status}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--ring", default="60s")
    parser.add_argument("--soak", type=float, default=90.0)
    parser.add_argument("--soak-ring", default="20s")
    parser.add_argument("--soak-keys", type=int, default=1000,
                        help="keyspace of the soak's load (small: redis's own memory stays put, so "
                             "what grows is the recorder's)")
    parser.add_argument("--skip-side-by-side", action="store_true")
    opts = parser.parse_args()
    if not os.path.exists(REDIS):
        raise SystemExit(f"{REDIS} is missing: apt-get install redis-tools")
    with tempfile.TemporaryDirectory() as tmp:
        server = os.path.join(tmp, "redis-server")
        os.symlink(REDIS, server)
        if not opts.skip_side_by_side:
            side_by_side(server, tmp, opts)
        if opts.soak > 0:
            soak(server, tmp, opts)


if __name__ == "__main__":
    main()

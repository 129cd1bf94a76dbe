"""A long recording under load: RSS over time, trace growth, and a verified replay at the end.

    nice -n 10 python bench/bench_soak.py [--minutes 10] [--clients 10] [--keyspace 100000] [--sample 15]

Records the kvstore appliance while redis-benchmark (-t set,get, random keys) runs back
to back against it for --minutes, sampling the recorder's resident memory (VmRSS) and
the trace file's size every --sample seconds; then stops the recorder with SIGINT and
runs `vmrr replay --verify` on the trace. Target: RSS flat (bounded) over the soak, a
verified replay (exit 0) with digests along the way.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from bench_kvstore import free_port, start  # noqa: E402


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--keyspace", type=int, default=100000)
    parser.add_argument("--sample", type=float, default=15.0)
    parser.add_argument("--keep", metavar="DIR", help="keep the trace in DIR")
    opts = parser.parse_args()
    tmp = opts.keep or tempfile.mkdtemp(prefix="vmrr-soak-")
    trace = os.path.join(tmp, "soak.vmrr")
    port = free_port()
    proc = start("record", port, trace)
    incomplete = trace + ".incomplete"
    t0 = time.monotonic()
    samples = []
    requests = 0
    load = None
    next_sample = t0
    try:
        while time.monotonic() - t0 < opts.minutes * 60:
            if load is None or load.poll() is not None:
                if load is not None:
                    requests += 2 * 20000
                load = subprocess.Popen(["redis-benchmark", "-p", str(port), "-t", "set,get", "-c",
                                         str(opts.clients), "-n", "20000", "-r", str(opts.keyspace), "-q"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            now = time.monotonic()
            if now >= next_sample:
                size = os.path.getsize(incomplete) if os.path.exists(incomplete) else 0
                samples.append((now - t0, rss_mb(proc.pid), size))
                print(f"  t={now - t0:6.0f} s  RSS {samples[-1][1]:7.1f} MiB  trace {size / 1e6:8.1f} MB  "
                      f"requests ~{requests}", flush=True)
                next_sample += opts.sample
            time.sleep(0.5)
    finally:
        if load is not None and load.poll() is None:
            load.kill()
            load.wait()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    wall = time.monotonic() - t0
    size = os.path.getsize(trace)
    start_t = time.perf_counter()
    replay = subprocess.run([sys.executable, "-m", "vmrr", "replay", trace, "--verify", "--quiet"], cwd=ROOT,
                            capture_output=True, text=True, timeout=3600)
    replay_s = time.perf_counter() - start_t
    digests = re.search(r"verified: (\d+) state digests, (\d+) checkpoints", replay.stderr)
    rss = [s[1] for s in samples]
    first_half = rss[:len(rss) // 2] or rss
    second_half = rss[len(rss) // 2:] or rss
    print(f"soak: {wall:.0f} s of recording kvstore under redis-benchmark -t set,get -c {opts.clients} "
          f"-r {opts.keyspace}, ~{requests} requests")
    print(f"  recorder RSS: min {min(rss):.1f}, max {max(rss):.1f} MiB; mean of the first half "
          f"{sum(first_half) / len(first_half):.1f}, of the second half {sum(second_half) / len(second_half):.1f}")
    print(f"  trace: {size / 1e6:.1f} MB, {size / wall / 1e3:.1f} KB/s")
    print(f"  recorder: {err.strip().splitlines()[-4:]}")
    print(f"  replay --verify: exit {replay.returncode} in {replay_s:.0f} s; "
          f"{digests.group(1) if digests else '?'} state digests, {digests.group(2) if digests else '?'} checkpoints checked")
    print("  " + " | ".join(replay.stderr.strip().splitlines()[-4:]))
    if not opts.keep:
        for name in os.listdir(tmp):
            os.unlink(os.path.join(tmp, name))
        os.rmdir(tmp)


if __name__ == "__main__":
    main()

"""Killed recordings: SIGKILL the recorder at random moments under load, then verify what it left.

    nice -n 10 python bench/bench_sigkill.py [--trials 100] [--min 0.3] [--max 3.0] [--seed 1]

Each trial records the kvstore appliance while redis-benchmark (-t set,get -c 10,
random keys) hammers it, sends the recorder SIGKILL after a random time in
[--min, --max] seconds, and runs `vmrr replay TRACE.incomplete --verify` on what is on
disk. Reports per trial and in total: the prefixes whose replay verified (exit 0), the
state digests and checkpoints checked in each, and the loss: wall time between the
recorder's last write to the trace (its mtime) and the kill. Targets: every prefix
verified with at least one digest, loss <= 1 s, no traceback.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from bench_kvstore import free_port  # noqa: E402


def wait_listening(proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    line = b""
    while time.monotonic() < deadline:
        chunk = proc.stderr.readline()
        if not chunk:
            break
        line += chunk
        if b"recording to" in line:
            return
    raise RuntimeError(f"the recorder did not start: {line.decode(errors='replace')}")


def trial(directory: str, n: int, delay: float) -> dict:
    trace = os.path.join(directory, f"k{n}.vmrr")
    port = free_port()
    rec = subprocess.Popen([sys.executable, "-m", "vmrr", "record", "kvstore", "--listen", f"127.0.0.1:{port}",
                            "--no-stdin", "-o", trace], cwd=ROOT, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE)
    wait_listening(rec)
    load = subprocess.Popen(["redis-benchmark", "-p", str(port), "-t", "set,get", "-c", "10",
                             "-n", "100000000", "-r", "100000", "-q"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay)
    rec.send_signal(signal.SIGKILL)
    killed_at = time.time()
    rec.wait()
    load.kill()
    load.wait()
    incomplete = trace + ".incomplete"
    loss = killed_at - os.stat(incomplete).st_mtime
    start = time.perf_counter()
    replay = subprocess.run([sys.executable, "-m", "vmrr", "replay", incomplete, "--verify", "--quiet"],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    seconds = time.perf_counter() - start
    found = re.search(r"verified: (\d+) state digests, (\d+) checkpoints", replay.stderr)
    icounts = re.search(r"replayed (\d+) instructions", replay.stderr)
    result = {
        "delay": delay, "loss": loss, "exit": replay.returncode, "replay_s": seconds,
        "digests": int(found.group(1)) if found else 0,
        "checkpoints": int(found.group(2)) if found else 0,
        "instructions": int(icounts.group(1)) if icounts else 0,
        "traceback": "Traceback" in replay.stderr or "internal error" in replay.stderr,
        "bytes": os.path.getsize(incomplete),
        "error": "" if replay.returncode == 0 else replay.stderr.strip().splitlines()[-1][:200],
    }
    os.unlink(incomplete)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--min", type=float, default=0.3)
    parser.add_argument("--max", type=float, default=3.0)
    parser.add_argument("--seed", type=int, default=1)
    opts = parser.parse_args()
    rng = random.Random(opts.seed)
    results = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="vmrr-kill-") as tmp:
        for n in range(opts.trials):
            r = trial(tmp, n, rng.uniform(opts.min, opts.max))
            results.append(r)
            print(f"  #{n:3d} kill after {r['delay']:.2f} s: {r['bytes']:8d} bytes, replay exit {r['exit']} "
                  f"in {r['replay_s']:.1f} s, {r['instructions']} instructions, {r['digests']} digests, "
                  f"{r['checkpoints']} checkpoints, loss {r['loss']:.2f} s {r['error']}", flush=True)
    wall = time.perf_counter() - start
    verified = [r for r in results if r["exit"] == 0]
    print(f"sigkill: {len(results)} recordings of kvstore under redis-benchmark killed after "
          f"{opts.min}-{opts.max} s ({wall:.0f} s)")
    print(f"  prefixes verified: {len(verified)} of {len(results)}; tracebacks "
          f"{sum(r['traceback'] for r in results)}")
    print(f"  digests checked per prefix: min {min(r['digests'] for r in results)}, "
          f"max {max(r['digests'] for r in results)}, total {sum(r['digests'] for r in results)}; "
          f"prefixes with >= 2 digests (one beyond the base checkpoint's): "
          f"{sum(r['digests'] >= 2 for r in results)}")
    print(f"  checkpoints checked: total {sum(r['checkpoints'] for r in results)}")
    print(f"  loss (kill - last write): worst {max(r['loss'] for r in results):.2f} s, "
          f"mean {sum(r['loss'] for r in results) / len(results):.2f} s")


if __name__ == "__main__":
    main()

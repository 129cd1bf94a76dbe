"""Time-travel latency on a long trace: reverse-stepi and seek at random points.

    python bench/bench_timetravel.py [--rounds 140] [--samples 40] [--budget-mib 1024]
    python bench/bench_timetravel.py --trace redis.vmrr     # any trace, e.g. a Linux server's

Records cpubench with ``rounds`` (140 rounds is about 10^9 instructions), or takes the
trace given, opens it with the time-travel engine (the first pass, then again from the
sidecar index it left), then at random positions measures:
  * seek to a random icount        (target p95 <= 0.5 s)
  * reverse-stepi right after it   (target p95 <= 50 ms)
  * a few more reverse-stepi in a row
and the snapshot store's memory against its budget.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recorder import RecordSession  # noqa: E402
from replay.timetravel import TimeTravel  # noqa: E402
from vmm.loader import load_image  # noqa: E402


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=140)
    parser.add_argument("--samples", type=int, default=40)
    parser.add_argument("--budget-mib", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--trace", help="measure this trace instead of recording cpubench "
                                        "(its sidecar index is rebuilt)")
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if opts.trace:
            trace = opts.trace
            if os.path.exists(trace + ".idx"):
                os.unlink(trace + ".idx")
        else:
            trace = os.path.join(tmp, "cpu.vmrr")
            t0 = time.perf_counter()
            summary = RecordSession(load_image("cpubench"), trace, mem_size=64 << 20,
                                    boot_args=f"rounds={opts.rounds}").run()
            print(f"recorded {summary.instructions} instructions in {time.perf_counter() - t0:.1f} s, "
                  f"trace {os.path.getsize(trace)} bytes")
        t0 = time.perf_counter()
        TimeTravel(trace, memory_budget=opts.budget_mib << 20).close()
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        tt = TimeTravel(trace, memory_budget=opts.budget_mib << 20)
        second = time.perf_counter() - t0
        print(f"{tt.last_icount} instructions: first open (a pass) {first:.1f} s "
              f"({tt.last_icount / first / 1e6:.0f} MIPS), second open "
              f"({'from the sidecar' if tt.loaded_from_sidecar else 'sidecar NOT used'}) {second:.2f} s; "
              f"{len(tt._snaps)} snapshots, {tt.memory_used() >> 20} MiB")
        rng = random.Random(opts.seed)
        seeks, backs, runs = [], [], []
        for _ in range(opts.samples):
            target = rng.randrange(1, tt.last_icount)
            t = time.perf_counter()
            tt.seek(target)
            seeks.append(time.perf_counter() - t)
            t = time.perf_counter()
            tt.step_back()
            backs.append(time.perf_counter() - t)
            assert tt.icount == target - 1
            t = time.perf_counter()
            for _ in range(5):
                tt.step_back()
            runs.append((time.perf_counter() - t) / 5)
        peak = tt.memory_used()
    ms = lambda v: f"{v * 1000:7.1f} ms"  # noqa: E731
    print(f"seek          p50 {ms(statistics.median(seeks))}  p95 {ms(pct(seeks, 0.95))}   (target p95 <= 500 ms)")
    print(f"reverse-stepi p50 {ms(statistics.median(backs))}  p95 {ms(pct(backs, 0.95))}   (target p95 <= 50 ms)")
    print(f"  in a row    p50 {ms(statistics.median(runs))}  p95 {ms(pct(runs, 0.95))}")
    print(f"snapshot store {peak >> 20} MiB at the end (budget {opts.budget_mib} MiB), "
          f"{len(tt._snaps)} snapshots")


if __name__ == "__main__":
    main()

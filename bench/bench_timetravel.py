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
from dataclasses import dataclass
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
        else:
            trace = os.path.join(tmp, "cpu.vmrr")
            t0 = time.perf_counter()
            summary = RecordSession(load_image("cpubench"), trace, mem_size=64 << 20,
                                    boot_args=f"rounds={opts.rounds}").run()
            print(f"recorded {summary.instructions} instructions in {time.perf_counter() - t0:.1f} s, "
                  f"trace {os.path.getsize(trace)} bytes")
        figures = measure(trace, opts.budget_mib, opts.samples, opts.seed)
    ms = lambda v: f"{v * 1000:7.1f} ms"  # noqa: E731
    print(f"{figures.instructions} instructions: first open (a pass) {figures.first_open:.1f} s "
          f"({figures.open_mips:.0f} MIPS; sidecar on disk after {figures.sidecar_written:.1f} s), second open "
          f"({'from the sidecar' if figures.from_sidecar else 'sidecar NOT used'}) {figures.second_open:.2f} s; "
          f"{figures.snapshots} snapshots, {figures.memory >> 20} MiB")
    seeks, backs, runs = figures.seeks, figures.backs, figures.runs
    print(f"seek          p50 {ms(statistics.median(seeks))}  p95 {ms(pct(seeks, 0.95))}   (target p95 <= 500 ms)")
    print(f"reverse-stepi p50 {ms(statistics.median(backs))}  p95 {ms(pct(backs, 0.95))}   (target p95 <= 50 ms)")
    print(f"  in a row    p50 {ms(statistics.median(runs))}  p95 {ms(pct(runs, 0.95))}")
    print(f"snapshot store {figures.peak >> 20} MiB at the end (budget {opts.budget_mib} MiB), "
          f"{figures.snapshots} snapshots")


@dataclass
class TimeTravelFigures:
    instructions: int
    first_open: float                 # seconds: the first pass over the trace, until usable
    sidecar_written: float            # seconds from the start until its sidecar was on disk
    second_open: float                # seconds: again, from the sidecar index it left
    from_sidecar: bool
    snapshots: int
    memory: int                       # snapshot store bytes after opening
    seeks: list[float]                # seconds, one per sample
    backs: list[float]                # reverse-stepi right after each seek
    runs: list[float]                 # reverse-stepi in a row (mean of 5)
    peak: int                         # snapshot store bytes at the end

    @property
    def open_mips(self) -> float:
        return self.instructions / self.first_open / 1e6


def measure(trace: str, budget_mib: int = 1024, samples: int = 40, seed: int = 1) -> TimeTravelFigures:
    """Open ``trace`` with the time-travel engine (twice: the pass, then the sidecar), then
    seek to ``samples`` random icounts and reverse-stepi from each."""
    if os.path.exists(trace + ".idx"):
        os.unlink(trace + ".idx")
    t0 = time.perf_counter()
    tt = TimeTravel(trace, memory_budget=budget_mib << 20)
    first = time.perf_counter() - t0              # usable: the sidecar is still being written
    tt.close()
    written = time.perf_counter() - t0
    t0 = time.perf_counter()
    tt = TimeTravel(trace, memory_budget=budget_mib << 20)
    second = time.perf_counter() - t0
    memory = tt.memory_used()
    rng = random.Random(seed)
    seeks, backs, runs = [], [], []
    try:
        for _ in range(samples):
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
        return TimeTravelFigures(tt.last_icount, first, written, second, tt.loaded_from_sidecar, len(tt._snaps),
                                 memory, seeks, backs, runs, tt.memory_used())
    finally:
        tt.close()


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Benchmark of trace_format: events/s written and read back, bytes per event.

Usage: python bench/bench_trace_format.py [N]   (default N = 1_000_000)

Writes N small events shaped like a busy recording (mostly RDTSC/CLOCK reads at
growing icounts, some timer interrupts and socket data) to a temporary trace, then
reads them back with TraceReader.events(). Also times opening the trace (footer only),
a scan-recovery open of the same bytes without footer, and a checkpoint of 64 MiB.
Prints figures; asserts nothing (figures are ratios, not promises).
"""

from __future__ import annotations

import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trace_format import EventKind, MachineConfig, TraceHeader, TraceReader, TraceWriter  # noqa: E402


def make_events(n: int) -> list[tuple[int, EventKind, object]]:
    rng = random.Random(1)
    events = []
    icount = 0
    tsc = 10**9
    for i in range(n):
        icount += rng.randrange(1, 5000)
        roll = i % 100
        if roll < 60:
            tsc += rng.randrange(1000, 100000)
            events.append((icount, EventKind.RDTSC, tsc))
        elif roll < 85:
            events.append((icount, EventKind.CLOCK, 1_700_000_000 * 10**9 + tsc))
        elif roll < 95:
            events.append((icount, EventKind.TIMER, None))
        elif roll < 99:
            events.append((icount, EventKind.ENTROPY, rng.getrandbits(32)))
        else:
            events.append((icount, EventKind.SOCK_DATA, [3, rng.randbytes(32)]))
    return events


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    events = make_events(n)
    config = MachineConfig(mem_size=64 << 20, cpu_model="qemu64", boot_args="", devices={},
                           image_name="bench", image=os.urandom(64 << 10))
    header = TraceHeader.new(config, tool_version="bench")
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "bench.vmrr"

        writer = TraceWriter(path, header)
        append = writer.append
        start = time.perf_counter()
        for icount, kind, payload in events:
            append(icount, kind, payload)
        writer.close({"reason": "poweroff", "exit_status": 0})
        write_s = time.perf_counter() - start
        body = path.stat().st_size - len(config.image)

        start = time.perf_counter()
        trace = TraceReader(path)
        open_s = time.perf_counter() - start
        start = time.perf_counter()
        count = sum(1 for _ in trace.events())
        read_s = time.perf_counter() - start
        assert count == n + 1, count
        chunks = len(trace.chunks)
        trace.close()

        data = path.read_bytes()
        footer_offset = int.from_bytes(data[-32:-24], "little")
        killed = Path(directory) / "killed.vmrr.incomplete"
        killed.write_bytes(data[:footer_offset])
        start = time.perf_counter()
        TraceReader(killed).close()
        scan_s = time.perf_counter() - start

        pages = {pn: os.urandom(64) * 64 for pn in range(config.mem_size >> 12)}
        writer = TraceWriter(Path(directory) / "ckpt.vmrr", header)
        start = time.perf_counter()
        writer.write_checkpoint(0, {"rip": 0}, {}, pages)
        checkpoint_write_s = time.perf_counter() - start
        writer.close({"reason": "poweroff", "exit_status": 0})
        with TraceReader(Path(directory) / "ckpt.vmrr") as trace:
            start = time.perf_counter()
            trace.load_checkpoint(0)
            checkpoint_load_s = time.perf_counter() - start

    print(f"events: {n}, chunks: {chunks}")
    print(f"write: {write_s:.3f} s  {n / write_s / 1e6:.2f} M events/s  "
          f"({write_s / n * 1e9:.0f} ns/event)")
    print(f"read:  {read_s:.3f} s  {n / read_s / 1e6:.2f} M events/s  "
          f"({read_s / n * 1e9:.0f} ns/event)")
    print(f"size:  {body / n:.2f} bytes/event (trace without the image)")
    print(f"open with footer: {open_s * 1e3:.1f} ms; open by scanning (no footer): {scan_s:.3f} s")
    print(f"checkpoint of 64 MiB: write {checkpoint_write_s:.3f} s, load {checkpoint_load_s:.3f} s")


if __name__ == "__main__":
    main()

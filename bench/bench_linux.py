"""Linux programs, side by side in one run: native, vmrr run, vmrr record, vmrr replay.

    python bench/bench_linux.py [--loop 300000] [--repeat 3]

Two workloads on Debian's own /usr/bin/python3:
  1. a CPU-bound pure-Python loop: instructions per second under run, record and replay
     (targets: record/run >= 0.9, replay/record >= 1.0), and the native wall time;
  2. ``python3 -c pass`` start-up: wall time native, run, record; the trace's size and how
     much of it is captured file content (BLOB events) versus the embedded executable.
Each mode runs ``--repeat`` times, interleaved, and the best counts (a shared, noisy machine).
Whole processes are timed, as a user sees them.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from trace_format import TraceReader  # noqa: E402
from trace_format.events import EventKind  # noqa: E402

VMRR = [sys.executable, str(ROOT / "vmrr.py")]
PYTHON = "/usr/bin/python3"
ENV = ["--env", "PYTHONDONTWRITEBYTECODE=1", "--env", "PYTHONHASHSEED=0"]


def timed(cmd: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr}")
    return seconds, done.stderr


def instructions(stderr: str) -> int:
    match = re.search(r"(\d+) instructions", stderr)
    if not match:
        raise SystemExit(f"no instruction count in:\n{stderr}")
    return int(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--loop", type=int, default=300_000, help="iterations of the Python loop")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    script = f"s = 0\nfor i in range({args.loop}):\n    s += i * i % 7\nprint(s)\n"
    work = tempfile.mkdtemp(prefix="vmrr-bench-linux-")
    trace = os.path.join(work, "loop.vmrr")
    best: dict[str, float] = {}
    count = 0
    for _ in range(args.repeat):
        for mode in ("native", "run", "record", "replay"):
            if mode == "native":
                cmd = [PYTHON, "-c", script]
            elif mode == "run":
                cmd = VMRR + ["run", *ENV, "--", PYTHON, "-c", script]
            elif mode == "record":
                cmd = VMRR + ["record", "-o", trace, "--force", *ENV, "--", PYTHON, "-c", script]
            else:
                cmd = VMRR + ["replay", trace, "--quiet"]
            seconds, err = timed(cmd)
            if mode != "native":
                count = instructions(err)
            best[mode] = min(best.get(mode, seconds), seconds)
    print(f"python3 loop of {args.loop}: {count} guest instructions")
    for mode in ("native", "run", "record", "replay"):
        mips = "" if mode == "native" else f"  {count / best[mode] / 1e6:7.1f} MIPS"
        print(f"  {mode:<7} {best[mode]:7.2f} s{mips}")
    print(f"  record/run    {best['run'] / best['record']:.2f}   (target >= 0.9)")
    print(f"  replay/record {best['record'] / best['replay']:.2f}   (target >= 1.0)")
    print(f"  run/native    {best['run'] / best['native']:.1f}x slower")

    start_trace = os.path.join(work, "pass.vmrr")
    startup: dict[str, float] = {}
    for _ in range(args.repeat):
        for mode, cmd in (("native", [PYTHON, "-c", "pass"]),
                          ("run", VMRR + ["run", *ENV, "--", PYTHON, "-c", "pass"]),
                          ("record", VMRR + ["record", "-o", start_trace, "--force", *ENV, "--", PYTHON, "-c", "pass"])):
            seconds, _err = timed(cmd)
            startup[mode] = min(startup.get(mode, seconds), seconds)
    with TraceReader(start_trace) as reader:
        blob_bytes = sum(len(e.payload[3]) for e in reader.events(kinds={EventKind.BLOB}))
        image = len(reader.header.config.image)
        size = reader.file_size
    print("python3 -c pass start-up (wall):")
    for mode in ("native", "run", "record"):
        print(f"  {mode:<7} {startup[mode]:7.2f} s")
    print(f"  trace {size} bytes: embedded executable {image} bytes, captured file content "
          f"{blob_bytes} bytes before compression")


if __name__ == "__main__":
    main()

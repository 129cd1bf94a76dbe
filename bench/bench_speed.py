"""Issue #19: Linux programs natively, under qemu-x86_64, `vmrr run`, `record` and `replay`.

    .venv/bin/python bench/bench_speed.py                          # every workload, once
    .venv/bin/python bench/bench_speed.py pass loop --repeat 3     # some of them, best of 3
    .venv/bin/python bench/bench_speed.py --loop 1000000 --sha 50000 --xz-mib 1   # smaller

Workloads (positional names; default all):
  pass        ``python3 -c pass``: start-up
  loop        a pure-Python loop (``--loop`` iterations, 3M)
  sha256      ``hashlib.sha256`` chained ``--sha`` times (200k) in python3
  xz          ``xz -T1 -c`` of a deterministic ``--xz-mib`` MiB input (4)
  redis       Debian's redis-server: ``redis-benchmark -c 10 -n 20000 -t set,get`` req/s natively,
              under qemu-x86_64, ``vmrr run`` and ``vmrr record``; the time to the first PONG;
              ``replay --verify`` of the recording against the time it took to record
  timetravel  the time-travel engine on a recording of the loop with ``--tt-loop`` iterations
              (700k, ~10^9 instructions): open (a pass, as MIPS), seek p95, reverse-stepi p95

Per repeat the modes run interleaved (native, qemu, run, record, replay, native, ...), and
the best of the repeats counts (a shared, noisy machine). Whole processes are timed, as a
user sees them (start-up of vmrr itself included). A program's stdout must be native's
byte for byte in every mode (replay shows it again), and every recording is replayed with
``--verify`` (the replay column is that replay, timed; ``--modes`` with record always
brings replay): no vmrr figure comes from a trace that does not replay.
MIPS are the guest instructions vmrr counted over the whole process's wall time; qemu's
"MIPS" use vmrr's count of the same program (qemu reports none), so they are estimates.

vmrr runs from this checkout with the Python running this script. The guest python3
gets PYTHONDONTWRITEBYTECODE=1 and PYTHONHASHSEED=0 in every mode; vmrr itself runs
without PYTHONDONTWRITEBYTECODE so that it loads its own modules from bytecode, as an
installed vmrr does.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

from bench_kvstore import free_port  # noqa: E402  (same directory)
from bench_linux import ENV, PYTHON, VMRR, instructions  # noqa: E402
import bench_redis  # noqa: E402
from bench_timetravel import measure as timetravel_measure, pct  # noqa: E402

QEMU = bench_redis.QEMU
MODES = ("native", "qemu", "run", "record", "replay")
WORKLOADS = ("pass", "loop", "sha256", "xz", "redis", "timetravel")
GUEST_ENV = {"PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0"}
# vmrr's own environment: the guest's variables come from --env (bench_linux.ENV).
VMRR_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


@dataclass
class Row:
    """One workload's figures: seconds per mode (best of the repeats) and vmrr's icount."""
    key: str                          # file names under the work directory
    name: str                         # as the table shows it
    seconds: dict[str, float] = field(default_factory=dict)
    icount: int = 0
    note: str = ""

    def add(self, mode: str, seconds: float) -> None:
        self.seconds[mode] = min(self.seconds.get(mode, seconds), seconds)


def run_mode(mode: str, argv: list[str], trace: str, stdout_path: str) -> tuple[float, str]:
    """Run ``argv`` in ``mode``, stdout to ``stdout_path``; (wall seconds, stderr)."""
    if mode == "native":
        cmd, env = argv, {**os.environ, **GUEST_ENV}
    elif mode == "qemu":
        cmd, env = [QEMU, *argv], {**os.environ, **GUEST_ENV}
    elif mode == "run":
        cmd, env = [*VMRR, "run", *ENV, "--", *argv], VMRR_ENV
    elif mode == "record":
        cmd, env = [*VMRR, "record", "-o", trace, "--force", *ENV, "--", *argv], VMRR_ENV
    else:
        cmd, env = [*VMRR, "replay", trace, "--verify"], VMRR_ENV      # the output shown again
    with open(stdout_path, "wb") as out:
        start = time.perf_counter()
        done = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.PIPE, env=env)
        seconds = time.perf_counter() - start
    err = done.stderr.decode(errors="replace")
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:8])} ... failed ({done.returncode}):\n{err[-3000:]}")
    if mode == "replay" and "verified: final registers" not in err:
        raise SystemExit(f"replay --verify of {trace} did not verify:\n{err[-3000:]}")
    return seconds, err


def program(row: Row, argv: list[str], work: Path, modes: list[str], repeat: int) -> str:
    """Time ``argv`` in every mode, interleaved; stdout checked against native's. Returns the trace."""
    trace = str(work / f"{row.key}.vmrr")
    expected = None
    for _ in range(repeat):
        for mode in modes:
            if mode == "replay" and "record" not in modes:
                continue                        # nothing recorded to replay
            out = str(work / f"{row.key}.{mode}.out")
            seconds, err = run_mode(mode, argv, trace, out)
            row.add(mode, seconds)
            if mode in ("run", "record", "replay"):
                row.icount = instructions(err)
            digest = hashlib.sha256(Path(out).read_bytes()).hexdigest()
            if expected is None:
                expected = (mode, digest)
            elif digest != expected[1]:
                raise SystemExit(f"{row.name}: stdout under {mode} differs from {expected[0]}'s")
            print(f"  {row.name:<8} {mode:<7} {seconds:8.2f} s", file=sys.stderr, flush=True)
    return trace


def xz_input(path: Path, mib: int) -> None:
    """``mib`` MiB of deterministic text that compresses like prose (words from a fixed seed)."""
    rng = random.Random(19)
    words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9)))
             for _ in range(5000)]
    out, size = [], 0
    while size < mib << 20:
        line = " ".join(rng.choice(words) for _ in range(12)) + f" {rng.getrandbits(32)}\n"
        out.append(line)
        size += len(line)
    path.write_bytes("".join(out).encode()[: mib << 20])


@dataclass
class RedisFigures:
    rates: dict[str, dict[str, float]] = field(default_factory=dict)   # mode -> {SET, GET}
    first_pong: dict[str, float] = field(default_factory=dict)
    record_wall: float = 0.0
    replay_wall: float = 0.0
    icount: int = 0


def redis(work: Path, modes: list[str], repeat: int, requests: int, clients: int, keyspace: int) -> RedisFigures:
    if not os.path.exists(bench_redis.REDIS):
        raise SystemExit(f"{bench_redis.REDIS} is missing: apt-get install redis-tools")
    server = str(work / "redis-server")
    if not os.path.exists(server):
        os.symlink(bench_redis.REDIS, server)
    trace = str(work / "redis.vmrr")
    figures = RedisFigures()
    served = [m for m in modes if m != "replay"]
    for _ in range(repeat):
        for mode in served:
            port = free_port()
            t0 = time.perf_counter()
            proc = bench_redis.start(mode, server, port, trace if mode == "record" else None)
            pong = time.perf_counter() - t0
            rates = bench_redis.benchmark(port, requests, clients, keyspace)
            bench_redis.stop(proc)
            wall = time.perf_counter() - t0
            best = figures.rates.setdefault(mode, {"SET": 0.0, "GET": 0.0})
            for k, v in rates.items():
                best[k] = max(best[k], v)
            figures.first_pong[mode] = min(figures.first_pong.get(mode, pong), pong)
            print(f"  redis    {mode:<7} SET {rates['SET']:8.0f}/s GET {rates['GET']:8.0f}/s "
                  f"first PONG {pong:.2f} s, whole process {wall:.1f} s", file=sys.stderr, flush=True)
            if mode == "record":
                figures.record_wall = wall
                # The replay of this very recording, timed as a whole process like the recording.
                t0 = time.perf_counter()
                done = subprocess.run([*VMRR, "replay", trace, "--verify", "--quiet"], env=VMRR_ENV,
                                      capture_output=True, text=True, timeout=3600)
                figures.replay_wall = time.perf_counter() - t0
                if done.returncode != 0 or "verified: final registers" not in done.stderr:
                    raise SystemExit(f"replay --verify of the redis trace failed:\n{done.stderr[-3000:]}")
                figures.icount = instructions(done.stderr)
                print(f"  redis    replay  {figures.replay_wall:8.2f} s ({figures.icount} instructions)",
                      file=sys.stderr, flush=True)
    return figures


# -- the report ------------------------------------------------------------------------

def _cell(row: Row, mode: str) -> str:
    if mode not in row.seconds:
        return "–"
    seconds = row.seconds[mode]
    if mode == "native" or not row.icount:
        return f"{seconds:.2f} s"
    mips = row.icount / seconds / 1e6
    return f"{seconds:.2f} s ({'≈' if mode == 'qemu' else ''}{mips:.0f} MIPS)"


def _ratio(a: float | None, b: float | None, fmt: str = "{:.2f}") -> str:
    return fmt.format(a / b) if a and b else "–"


def report(rows: list[Row], redis_figures: RedisFigures | None, tt, tt_source: str, opts) -> str:
    lines = ["| workload | native | qemu-user | vmrr run | vmrr record | replay | record/qemu speed "
             "| record/run speed | replay speed / record |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        s = row.seconds
        lines.append(f"| {row.name} | " + " | ".join(_cell(row, m) for m in MODES)
                     + f" | {_ratio(s.get('qemu'), s.get('record'))} | {_ratio(s.get('run'), s.get('record'))}"
                     + f" | {_ratio(s.get('record'), s.get('replay'))} |")
    if redis_figures is not None:
        r = redis_figures
        for op in ("SET", "GET"):
            cells = [f"{r.rates[m][op]:,.0f}/s" if m in r.rates else "–" for m in MODES[:4]]
            rec, qemu, run = (r.rates.get(m, {}).get(op) for m in ("record", "qemu", "run"))
            replay = (f"{r.replay_wall:.1f} s (recorded in {r.record_wall:.1f} s)"
                      if op == "GET" and r.replay_wall else "–")
            lines.append(f"| redis {op} req/s | " + " | ".join(cells) + f" | {replay} | {_ratio(rec, qemu)} "
                         f"| {_ratio(rec, run)} | {_ratio(r.record_wall, r.replay_wall) if op == 'GET' else '–'} |")
        cells = [f"{r.first_pong[m]:.2f} s" if m in r.first_pong else "–" for m in MODES[:4]]
        lines.append("| redis first PONG | " + " | ".join(cells) + " | – | "
                     f"{_ratio(r.first_pong.get('qemu'), r.first_pong.get('record'))} | "
                     f"{_ratio(r.first_pong.get('run'), r.first_pong.get('record'))} | – |")
    text = "\n".join(lines)
    if tt is not None:
        ms = lambda v: f"{v * 1000:.0f} ms"  # noqa: E731
        text += ("\n\n| time travel | instructions | open (first pass) | open again (sidecar) "
                 "| seek p50 / p95 | reverse-stepi p50 / p95 | 5 in a row p95 |\n|---|---|---|---|---|---|---|\n"
                 f"| {tt_source} | {tt.instructions:,} | {tt.first_open:.1f} s ({tt.open_mips:.0f} MIPS) "
                 f"| {tt.second_open:.2f} s | {ms(statistics.median(tt.seeks))} / {ms(pct(tt.seeks, 0.95))} "
                 f"| {ms(statistics.median(tt.backs))} / {ms(pct(tt.backs, 0.95))} | {ms(pct(tt.runs, 0.95))} |")
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workloads", nargs="*", help=f"some of {', '.join(WORKLOADS)} (default: all)")
    parser.add_argument("--modes", default=",".join(MODES), help=f"subset of {','.join(MODES)}")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--loop", type=int, default=3_000_000, help="iterations of the Python loop")
    parser.add_argument("--sha", type=int, default=200_000, help="sha256 calls")
    parser.add_argument("--xz-mib", type=int, default=4, help="MiB of input for xz")
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--keyspace", type=int, default=0, help="redis-benchmark -r (0: none, as in #19)")
    parser.add_argument("--tt-loop", type=int, default=700_000,
                        help="iterations of the loop recorded for time travel (700k: ~10^9 instructions)")
    parser.add_argument("--tt-samples", type=int, default=20)
    parser.add_argument("--tt-budget-mib", type=int, default=1024)
    parser.add_argument("--work", help="keep traces and outputs here (default: a temporary directory)")
    opts = parser.parse_args()
    which = opts.workloads or list(WORKLOADS)
    if set(which) - set(WORKLOADS):
        parser.error(f"workloads: expected some of {', '.join(WORKLOADS)}")
    modes = opts.modes.split(",")
    if set(modes) - set(MODES):
        parser.error(f"--modes: expected some of {','.join(MODES)}")
    if "record" in modes and "replay" not in modes:
        modes.append("replay")                  # no figure from a trace that does not replay
    if "qemu" in modes and not os.path.exists(QEMU):
        raise SystemExit("qemu-x86_64 is missing: apt-get install qemu-user")

    tmp = None if opts.work else tempfile.TemporaryDirectory(prefix="vmrr-bench-speed-")
    work = Path(opts.work or tmp.name)
    work.mkdir(parents=True, exist_ok=True)
    rows: list[Row] = []
    loop_script = f"s = 0\nfor i in range({opts.loop}):\n    s += i * i % 7\nprint(s)\n"
    sha_script = (f"import hashlib\nh = b'vmrr'\nfor _ in range({opts.sha}):\n"
                  f"    h = hashlib.sha256(h).digest()\nprint(h.hex())\n")
    started = time.perf_counter()
    try:
        for name in which:
            if name == "pass":
                rows.append(Row("pass", "python3 -c pass"))
                program(rows[-1], [PYTHON, "-c", "pass"], work, modes, opts.repeat)
            elif name == "loop":
                rows.append(Row("loop", f"python3 loop {opts.loop:,}"))
                program(rows[-1], [PYTHON, "-c", loop_script], work, modes, opts.repeat)
            elif name == "sha256":
                rows.append(Row("sha256", f"python3 sha256 x{opts.sha:,}"))
                program(rows[-1], [PYTHON, "-c", sha_script], work, modes, opts.repeat)
            elif name == "xz":
                data = work / "xz-input"
                xz_input(data, opts.xz_mib)
                rows.append(Row("xz", f"xz -T1 {opts.xz_mib} MiB"))
                program(rows[-1], ["/usr/bin/xz", "-T1", "-c", str(data)], work, modes, opts.repeat)
        redis_figures = None
        if "redis" in which:
            redis_figures = redis(work, modes, opts.repeat, opts.requests, opts.clients, opts.keyspace)
        tt = None
        tt_source = ""
        if "timetravel" in which:
            # Its own recording of the loop, sized to ~10^9 instructions as #19's targets are.
            tt_trace = str(work / "tt-loop.vmrr")
            tt_script = loop_script.replace(f"range({opts.loop})", f"range({opts.tt_loop})")
            run_mode("record", [PYTHON, "-c", tt_script], tt_trace, str(work / "tt.out"))
            run_mode("replay", [], tt_trace, str(work / "tt.replay.out"))
            tt_source = f"python3 loop {opts.tt_loop:,} (Linux trace)"
            tt = timetravel_measure(tt_trace, opts.tt_budget_mib, opts.tt_samples)
            print(f"  timetravel open {tt.first_open:.1f} s", file=sys.stderr, flush=True)
    finally:
        if tmp is not None:
            tmp.cleanup()
    print(f"\nbench/bench_speed.py {' '.join(sys.argv[1:])}  (best of {opts.repeat}; "
          f"{time.perf_counter() - started:.0f} s in all)\n")
    print(report(rows, redis_figures, tt, tt_source, opts))
    if redis_figures is not None:
        print(f"\nredis-benchmark -c {opts.clients} -n {opts.requests} -t set,get"
              + (f" -r {opts.keyspace}" if opts.keyspace else "")
              + f"; redis replay: {redis_figures.icount:,} instructions, whole processes "
                "(start-up, load, SIGTERM shutdown) compared")
    print("\nIssue #19 targets: record >= 0.5x qemu-user speed (CPU-bound); python3 -c pass under "
          "record <= 3x qemu-user's time; redis record >= 0.5x qemu-user req/s; replay of a server "
          "trace >= 2x faster than recording; time travel open >= 200 MIPS, seek p95 <= 250 ms, "
          "reverse-stepi p95 <= 50 ms at 10^9 instructions.")


if __name__ == "__main__":
    main()

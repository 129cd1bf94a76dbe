"""Run the vmrr command line with counters and timers on its hot Python paths (issue #19).

    .venv/bin/python bench/speed_probe.py record -o t.vmrr -- /usr/bin/python3 -c pass
    .venv/bin/python bench/speed_probe.py replay t.vmrr --verify

The arguments are vmrr's own. Nothing in vmm/ changes: the probe wraps methods of the
classes below before vmrr runs, and prints on exit how often each ran and the wall time
spent inside it (inclusive: _end_tail includes its _reset_overlapping), with the
counter's own statistics (translations, classifications, tails). A wrapper costs about a
microsecond a call, so run it for the counts, not to time the whole run.
"""

from __future__ import annotations

import atexit
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from replay import boundary as replay_boundary  # noqa: E402
from vmm import icount, machine  # noqa: E402
from vmm.linux import kernel  # noqa: E402

CALLS: dict[str, int] = defaultdict(int)
SECONDS: dict[str, float] = defaultdict(float)
COUNTERS: list[icount.InstructionCounter] = []

PROBED = [
    (machine.Machine, "_run_slice"),
    (machine.Machine, "run"),
    (machine.Machine, "state_digest"),
    (icount.InstructionCounter, "_classify"),
    (icount.InstructionCounter, "_start_tail"),
    (icount.InstructionCounter, "_end_tail"),
    (icount.InstructionCounter, "_reset_overlapping"),
    (icount.InstructionCounter, "_remove_cache"),
    (icount.InstructionCounter, "invalidate"),
    (icount.InstructionCounter, "_flush_all"),
    (kernel.LinuxKernel, "_on_syscall"),
    (kernel.LinuxKernel, "arm_fast"),
    (kernel.LinuxKernel, "drain_fast"),
    (machine.Machine, "_before_start"),
    (machine.Machine, "_on_interrupt"),
    (machine.Machine, "code_changed"),
    (machine.Machine, "apply"),
    (kernel.LinuxKernel, "_syscall"),
    (kernel.LinuxKernel, "switch"),
    (kernel.LinuxKernel, "exception"),
    (replay_boundary.TraceBoundary, "slice_limit"),
    (replay_boundary.TraceBoundary, "poll"),
    (replay_boundary.TraceBoundary, "_fill"),
]


def _wrap(cls, name: str) -> None:
    inner = getattr(cls, name)
    label = f"{cls.__name__}.{name}"

    def probe(*args, **kwargs):
        CALLS[label] += 1
        start = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            SECONDS[label] += time.perf_counter() - start
    probe.__name__ = inner.__name__
    setattr(cls, name, probe)


def _keep_counter(init):
    def probe(self, *args, **kwargs):
        init(self, *args, **kwargs)
        COUNTERS.append(self)
    return probe


def _emu_start_probe(uc_cls):
    inner = uc_cls.emu_start

    def emu_start(self, *args, **kwargs):
        CALLS["Uc.emu_start"] += 1
        start = time.perf_counter()
        try:
            return inner(self, *args, **kwargs)
        finally:
            SECONDS["Uc.emu_start"] += time.perf_counter() - start
    uc_cls.emu_start = emu_start


def report() -> None:
    total = time.perf_counter() - STARTED
    out = sys.stderr
    print(f"\nspeed_probe: {total:.2f} s of wall time in all", file=out)
    for label in sorted(CALLS, key=lambda k: -SECONDS[k]):
        n, s = CALLS[label], SECONDS[label]
        print(f"  {label:<36} {n:>9} calls {s:8.2f} s ({100 * s / total:5.1f}%) "
              f"{1e6 * s / max(n, 1):9.1f} us/call", file=out)
    for c in COUNTERS:
        print(f"  counter {c.mode}: {c.stats()} icount {c.icount}", file=out)


def main() -> int:
    for cls, name in PROBED:
        _wrap(cls, name)
    icount.InstructionCounter.__init__ = _keep_counter(icount.InstructionCounter.__init__)
    from unicorn import Uc
    _emu_start_probe(Uc)
    atexit.register(report)
    import vmrr
    return vmrr.main(sys.argv[1:])


STARTED = time.perf_counter()
if __name__ == "__main__":
    sys.exit(main())

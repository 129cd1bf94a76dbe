"""Time travel at random positions, checked against a straight replay.

The check the conformance corpus (``bench/conformance.py``) runs on every trace and the
test suite (``tests/functional/test_conformance.py``) runs on a few: open the trace with
``replay.timetravel.TimeTravel``, go to seeded random positions in a random order
(forward and backward jumps), step back and forward a few instructions here and there,
reopen the trace through its sidecar index (TRACE.idx) and go to a few positions again,
and at every position reached note the registers, the RAM digest and the full state
digest (registers, devices and RAM). Then one straight ``replay.Replay(path,
verify=False)`` runs from the start to each of those positions in increasing order with
``run(until=icount)`` and must give the same three at each.

A mismatch is re-checked with a fresh ``Replay`` run straight to that one position, so
the report says which side is wrong: the time-travel engine, or a straight replay that
was stopped on its way. An exception anywhere (a ``ReplayDivergence`` inside time travel
included) is a failure and is reported with its message.

    python tools/ttcheck.py TRACE [--seed N] [--positions 6] [--step-backs 3] [--json]

exits 0 when every position matched, 1 on a mismatch or an exception.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from replay import Replay  # noqa: E402
from replay.timetravel import TimeTravel  # noqa: E402


@dataclass(frozen=True)
class PositionState:
    """What is compared at one position."""

    registers: dict[str, int]
    ram: bytes                  # Machine.ram_digest()
    state: tuple                # Machine.state_digest(): rip, registers+devices hash, RAM hash

    @classmethod
    def of(cls, machine) -> "PositionState":
        return cls(machine.cpu.registers(), machine.ram_digest(), tuple(machine.state_digest()))

    def difference(self, other: "PositionState") -> str:
        """'' when equal, else which parts differ (register names and values first)."""
        parts = []
        regs = sorted(name for name in self.registers.keys() | other.registers.keys()
                      if self.registers.get(name) != other.registers.get(name))
        if regs:
            shown = ", ".join(f"{name} {_hex(self.registers.get(name))} vs {_hex(other.registers.get(name))}"
                              for name in regs[:6])
            parts.append(f"registers differ: {shown}{' ...' if len(regs) > 6 else ''}")
        if self.ram != other.ram:
            parts.append("RAM digest differs")
        if self.state[1] != other.state[1] and not regs:
            parts.append("device/kernel state differs (state digest)")
        return "; ".join(parts)


def _hex(value: int | None) -> str:
    return "missing" if value is None else f"{value:#x}"


@dataclass
class TimeTravelReport:
    """The outcome of ``check_time_travel``."""

    trace: str
    seed: int
    last_icount: int = 0
    moves: list[str] = field(default_factory=list)        # "seek 123 -> 123", "step_back -> 122", ...
    positions: list[int] = field(default_factory=list)    # distinct positions compared
    mismatches: list[str] = field(default_factory=list)
    error: str | None = None                              # an exception: type, message, where
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.mismatches and self.error is None

    def summary(self) -> str:
        """One line: 'ok (9 positions)', or the first problem."""
        if self.error:
            return f"error: {self.error}"
        if self.mismatches:
            more = f" (+{len(self.mismatches) - 1} more)" if len(self.mismatches) > 1 else ""
            return f"mismatch: {self.mismatches[0]}{more}"
        return f"ok ({len(self.positions)} positions)"


def plan_positions(last_icount: int, seed: int, count: int) -> list[int]:
    """``count`` seeded positions in [0, last_icount] in a random order (so some jumps go
    backward), always including one in the last hundredth and one in the first."""
    rng = random.Random(seed)
    if last_icount <= 0:
        return [0]
    picks = {rng.randrange(0, last_icount + 1) for _ in range(max(0, count - 2))}
    picks.add(rng.randrange(0, max(1, last_icount // 100) + 1))
    picks.add(last_icount - rng.randrange(0, max(1, last_icount // 100) + 1))
    order = sorted(picks)
    rng.shuffle(order)
    if len(order) > 1 and order == sorted(order):        # make sure at least one jump is backward
        order.reverse()
    return order


def check_time_travel(trace: str | Path, *, seed: int = 0, positions: int = 6, step_backs: int = 3,
                      reopen: bool = True, memory_budget: int = 1 << 30) -> TimeTravelReport:
    """Move around TRACE with time travel and compare every position with a straight replay.

    Args:
        trace: the trace file.
        seed: chooses the positions, their order and where to step.
        positions: how many random positions to seek to.
        step_backs: after every second seek, step back this many instructions (and forward
            one again after the first of them).
        reopen: reopen the trace once more through its sidecar index and seek again.
        memory_budget: the time-travel snapshot store's budget in bytes.

    Returns:
        A TimeTravelReport; ``report.ok`` is True when every position matched.
    """
    trace = str(trace)
    report = TimeTravelReport(trace, seed)
    started = time.perf_counter()
    seen: dict[int, PositionState] = {}
    where = "opening the trace"
    rng = random.Random(seed ^ 0x5EED)

    def note(tt: TimeTravel, move: str) -> None:
        icount = tt.icount
        report.moves.append(f"{move} -> {icount}")
        state = PositionState.of(tt.machine)
        earlier = seen.get(icount)
        if earlier is not None and earlier != state:
            report.mismatches.append(f"position {icount} reached twice by time travel with different "
                                     f"states ({move}): {earlier.difference(state)}")
        seen.setdefault(icount, state)

    try:
        with TimeTravel(trace, memory_budget=memory_budget) as tt:
            report.last_icount = tt.last_icount
            for n, target in enumerate(plan_positions(tt.last_icount, seed, positions)):
                where = f"seek {target}"
                tt.seek(target)
                note(tt, where)
                if n % 2 == 1:
                    for k in range(step_backs):
                        where = f"step_back at {tt.icount}"
                        tt.step_back()
                        note(tt, "step_back")
                        if k == 0:
                            where = f"step at {tt.icount}"
                            tt.step()
                            note(tt, "step")
                            tt.step_back()
                            note(tt, "step_back")
        if reopen:
            where = "reopening the trace (sidecar)"
            with TimeTravel(trace, memory_budget=memory_budget) as tt:
                for target in rng.sample(sorted(seen), min(2, len(seen))):
                    target = max(0, target - rng.randrange(0, 1000))
                    where = f"seek {target} after reopening"
                    tt.seek(target)
                    note(tt, f"reopened: seek {target}")
                    where = f"step_back at {tt.icount} after reopening"
                    tt.step_back()
                    note(tt, "reopened: step_back")
        where = "the straight replay"
        _compare_straight(trace, seen, report)
    except Exception as exc:  # noqa: BLE001 - every exception is a finding to report
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        report.error = (f"{type(exc).__name__} during {where}: {exc} "
                        f"({Path(frame.filename).name}:{frame.lineno})")
    report.positions = sorted(seen)
    report.seconds = round(time.perf_counter() - started, 2)
    return report


def _compare_straight(trace: str, seen: dict[int, PositionState], report: TimeTravelReport) -> None:
    """One straight replay through every position, in order; fresh replays on a mismatch."""
    with Replay(trace, verify=False) as rep:
        for icount in sorted(seen):
            rep.run(until=icount)
            if rep.icount != icount:
                report.mismatches.append(f"a straight replay run(until={icount}) stopped at {rep.icount}")
                return
            straight = PositionState.of(rep.machine)
            difference = seen[icount].difference(straight)
            if not difference:
                continue
            with Replay(trace, verify=False) as fresh:
                fresh.run(until=icount)
                alone = PositionState.of(fresh.machine)
            if alone == straight:
                report.mismatches.append(f"time travel at {icount} differs from a straight replay: "
                                         f"{difference} (time travel vs straight)")
            elif alone == seen[icount]:
                report.mismatches.append(f"a straight replay stopped on its way differs at {icount} from one "
                                         f"run there directly (time travel agrees with the direct one): "
                                         f"{straight.difference(alone)}")
            else:
                report.mismatches.append(f"three different states at {icount}: time travel vs direct replay: "
                                         f"{seen[icount].difference(alone)}; stopped-on-the-way vs direct: "
                                         f"{straight.difference(alone)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("trace")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--positions", type=int, default=6)
    parser.add_argument("--step-backs", type=int, default=3)
    parser.add_argument("--no-reopen", action="store_true", help="skip reopening through the sidecar")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")
    args = parser.parse_args(argv)
    report = check_time_travel(args.trace, seed=args.seed, positions=args.positions,
                               step_backs=args.step_backs, reopen=not args.no_reopen)
    if args.json:
        print(json.dumps(asdict(report) | {"ok": report.ok, "summary": report.summary()}))
    else:
        print(f"{args.trace}: {report.summary()} in {report.seconds} s")
        for line in report.mismatches:
            print(f"  {line}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""Time travel checked against the simple thing it stands for: a straight replay.

``check_positions`` opens a trace in the time-travel engine, visits positions in a
shuffled order (backward and forward, with a few steps back on the way) and compares the
whole machine state at each — registers, devices, RAM, as ``Machine.state_digest`` sees
them — with a plain ``Replay`` run from the start to the same icount.
"""

from __future__ import annotations

import random

from replay import Replay
from replay.timetravel import TimeTravel


def straight_digests(trace: str, positions: list[int]) -> dict[int, list]:
    """The state digest at each position, from one straight replay from icount 0."""
    digests = {}
    with Replay(trace, verify=False) as rep:
        for icount in sorted(set(positions)):
            rep.run(until=icount)
            assert rep.machine.icount == icount, (rep.machine.icount, icount)
            digests[icount] = rep.machine.state_digest()
    return digests


def check_positions(trace: str, *, count: int = 8, seed: int = 1, engine: TimeTravel | None = None,
                    **engine_options) -> list[str]:
    """Seek to ``count`` random positions (and the two ends), stepping back now and then;
    return a line for every position whose state differs from a straight replay's (empty
    when time travel is exact)."""
    rng = random.Random(seed)
    own = engine is None
    tt = engine if engine is not None else TimeTravel(trace, **engine_options)
    try:
        last = tt.last_icount
        positions = [rng.randrange(last + 1) for _ in range(count)] + [0, last]
        rng.shuffle(positions)
        visits = []
        for icount in positions:
            visits.append(icount)
            if icount > 3 and rng.random() < 0.5:
                visits.append(("back", rng.randrange(1, 4)))
        reached: list[tuple[str, int, list]] = []
        for visit in visits:
            if isinstance(visit, tuple):
                for _ in range(visit[1]):
                    tt.step_back()
                how = f"{visit[1]} step(s) back"
            else:
                tt.seek(visit)
                how = "seek"
            reached.append((how, tt.icount, tt.machine.state_digest()))
        want = straight_digests(trace, [icount for _how, icount, _d in reached])
        return [f"{how} to {icount}: {digest!r:.120} != straight replay's {want[icount]!r:.120}"
                for how, icount, digest in reached if digest != want[icount]]
    finally:
        if own:
            tt.close()

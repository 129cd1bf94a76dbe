"""A Linux program's state is whole: checkpoints and time travel restore it exactly.

The personality's state (page tables in RAM, the VMA list, the frame allocator, files,
signals) and the SSE registers must round-trip through on-disk checkpoints and the
time-travel engine's snapshots, or a replay entered in the middle would run differently.
"""

from __future__ import annotations

import random

import pytest

from conftest import vmrr
from replay import Replay
from replay.timetravel import TimeTravel

PYTHON = "/usr/bin/python3"
SCRIPT = ("import random, time\nd = {}\nfor i in range(6000):\n    d[str(i)] = [i] * (i % 7)\n"
          "    if i % 1500 == 0: print(i, random.random(), time.monotonic() > 0)\nprint(len(d))\n")


@pytest.fixture(scope="module")
def python_trace(tmp_path_factory):
    trace = tmp_path_factory.mktemp("linux-state") / "py.vmrr"
    record = vmrr("record", "-o", trace, "--checkpoint-every", "4000000", "--env", "PYTHONDONTWRITEBYTECODE=1",
                  "--", PYTHON, "-c", SCRIPT, timeout=120)
    assert record.returncode == 0, record.stderr
    assert "6000" in record.stdout
    return trace, record


def test_replay_verifies_and_prints_the_same(python_trace):
    trace, record = python_trace
    replay = vmrr("replay", trace, "--verify", timeout=120)
    assert replay.returncode == 0, replay.stderr
    assert replay.stdout == record.stdout
    assert "final registers, devices and RAM match" in replay.stderr


def test_every_checkpoint_enters_the_same_execution(python_trace):
    trace, _record = python_trace
    with Replay(str(trace), verify=True) as straight:
        count = len(straight.reader.checkpoints)
        final = straight.run()
        end_digest = straight.machine.state_digest()
    assert count >= 3, "the recording should have several checkpoints"
    for index in range(1, count):
        with Replay(str(trace), verify=True, console_output=None) as entered:
            entered.start_from_checkpoint(index)
            report = entered.run()
            assert report.result.icount == final.result.icount
            assert entered.machine.state_digest() == end_digest, f"checkpoint {index}"


def test_time_travel_positions_match_a_straight_replay(python_trace):
    trace, _record = python_trace
    tt = TimeTravel(str(trace), sidecar=False)
    try:
        rng = random.Random(8)
        points = sorted(rng.randrange(1, tt.last_icount) for _ in range(4))
        expected = {}
        for point in points:
            with Replay(str(trace), verify=False) as straight:
                straight.run(until=point)
                expected[point] = (straight.machine.cpu.registers(), straight.machine.state_digest())
        for point in reversed(points):                      # backwards: snapshots are restored
            tt.seek(point)
            assert tt.registers() == expected[point][0], point
            assert tt.machine.state_digest() == expected[point][1], point
        tt.seek(points[0])
        tt.step_back()
        tt.step()
        assert tt.machine.state_digest() == expected[points[0]][1]
    finally:
        tt.close()

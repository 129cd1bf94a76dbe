"""The replay queue of the native system-call hook (vmm/linux/fastsys.py ``queue``): what
it takes from the recorded calls, where it stops, and that no recorded value makes it
raise (a trace is input: a bad call ends the queue and Python handles it, and diverges)."""

from __future__ import annotations

import ctypes

import pytest

from trace_format.events import Event, EventKind
from vmm.linux import fastsys

TID = 7


@pytest.fixture
def fast():
    f = fastsys.FastSyscalls(None, ctypes.c_void_p(0), 0, 0, 0, 0)
    f.start_replay()
    return f


def call(icount, nr, args, ret, answer):
    return Event(icount, EventKind.SYSCALL, [TID, nr, args, ret, [answer]])


GOOD = [
    call(10, fastsys.NR_CLOCK_GETTIME, [1, 0x7000], 0, ["clock", 123_456_789]),
    call(20, fastsys.NR_WRITE, [5, 0x8000, 100], 40, ["send", 40]),
    call(30, fastsys.NR_READ, [5, 0x9000, 16], 3, ["recv", b"abc"]),
    call(40, fastsys.NR_GETTIMEOFDAY, [0x7100, 0], 0, ["clock", 5]),
    call(50, fastsys.NR_READ, [6, 0x9100, 8], 2, ["recv", b"xy"]),
]


def test_the_queue_holds_each_call_as_the_native_hook_reads_it(fast):
    assert fast.queue(GOOD) == 5
    rows = [(e.icount, e.nr, e.a0, e.a1, e.a2, e.value, e.data) for e in fast._queue[:5]]
    assert rows == [(10, 228, 1, 0x7000, 0, 123_456_789, 0), (20, 1, 5, 0x8000, 100, 40, 0),
                    (30, 0, 5, 0x9000, 16, 3, 0), (40, 96, 0x7100, 0, 0, 5, 0), (50, 0, 6, 0x9100, 8, 2, 3)]
    assert bytes(fast._qdata[:5]) == b"abcxy"
    assert (fast.state.qhead, fast.state.qlen) == (0, 5)


@pytest.mark.parametrize("bad", [
    call(60, fastsys.NR_READ, [5, 0x9000, "a path"], 3, ["recv", b"abc"]),     # a string argument
    call(60, fastsys.NR_READ, [5, 0x9000, None], 3, ["recv", b"abc"]),
    call(60, fastsys.NR_READ, [5, 0x9000, 2], 3, ["recv", b"abc"]),            # more than asked for
    call(60, fastsys.NR_READ, [5, 0x9000, 16], 4, ["recv", b"abc"]),           # ret is not the bytes
    call(60, fastsys.NR_READ, [5, 0x9000, 16], None, ["recv", b"abc"]),        # did not return
    call(60, fastsys.NR_WRITE, [5, 0x8000, 1 << 63], (1 << 63) + 1, ["send", (1 << 63) + 1]),
    call(60, fastsys.NR_WRITE, [5, 0x8000, 100], -11, ["send", -11]),
    call(60, fastsys.NR_CLOCK_GETTIME, [10, 0x7000], 0, ["clock", 5]),          # no such clock
    call(60, fastsys.NR_CLOCK_GETTIME, [1, "x"], 0, ["clock", 5]),
    call(60, fastsys.NR_GETTIMEOFDAY, [0x7100, 1], 0, ["clock", 5]),            # a timezone
    call(60, fastsys.NR_GETTIMEOFDAY, [0x7100, 0], 0, ["clock", 1 << 62]),
    call(60, fastsys.NR_READ, [5, 0x9000, 16, 0], 3, ["recv", b"abc"]),        # four arguments
    call(60, 39, [], 7, ["pid", 7]),                                          # not a queued call
    Event(60, EventKind.SYSCALL, [TID, fastsys.NR_READ, [5, 0x9000, 16], 3, [["recv", b"abc"], ["x", 1]]]),
])
def test_a_call_the_hook_cannot_answer_ends_the_queue(fast, bad):
    assert fast.queue([*GOOD[:2], bad, *GOOD[2:]]) == 2
    assert fast.state.qlen == 2

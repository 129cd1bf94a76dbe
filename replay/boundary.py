"""The replay side of the nondeterminism boundary: every answer comes from the trace.

Mirror of vmm/boundary.py's LiveBoundary. Synchronous inputs (clock, TSC, entropy) are
taken from the next event, which must be of the kind the guest asked for at the icount
it asked; asynchronous ones (timer, socket data, interrupts, digests to check) are
handed to the run loop when it reaches their icount — ``slice_limit`` makes sure it
stops exactly there. No socket is opened, no clock read, no entropy drawn.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Callable, Iterator

from trace_format.events import SYNC_KINDS, Event, EventKind
from vmm.errors import ReplayDivergence

if TYPE_CHECKING:
    from vmm.machine import Machine

# Events the run loop must stop for: everything but answers to the guest's own requests.
INLINE_KINDS = SYNC_KINDS | {EventKind.EXCEPTION}
RECENT = 8


class TraceBoundary:
    """Answers for the host from a trace's events.

    Args:
        machine: the machine being replayed.
        events_from: gives the trace's events from an icount on.
        last_icount: the last icount the trace covers (where a cut-short trace ends).
        verify: check state digests (DIGEST events) as they come, and the trace's
            checkpoints where the replay passes them (``events_from`` then yields their
            marks: ``Event(icount, CHECKPOINT, index)``).
        console_output: binary stream for the reproduced console, or None.
        check_checkpoint: called with a checkpoint's index when the replay reaches it;
            returns whether it checked a recorded state digest (counted in digests_checked).
    """

    decides_interrupts = False

    def __init__(self, machine: Machine, events_from: Callable[[int], Iterator[Event]], *,
                 last_icount: int, verify: bool = True, console_output=None,
                 check_checkpoint: Callable[[int], bool] | None = None) -> None:
        self.machine = machine
        self._events_from = events_from
        self._events = events_from(0)
        self._queue: deque[Event] = deque()
        self._exhausted = False
        self.last_icount = last_icount
        self.verify = verify
        self.console_output = console_output
        self.consumed = 0
        self.digests_checked = 0
        self.checkpoints_checked = 0
        self._check_checkpoint = check_checkpoint
        self.recent: deque[Event] = deque(maxlen=RECENT)

    # -- the event stream ------------------------------------------------------------

    def reposition_after_checkpoint(self, events: Iterator[Event]) -> None:
        """The machine was loaded from a recorded checkpoint: continue with the events after it."""
        self._events = events
        self._queue.clear()
        self._exhausted = False
        self.recent.clear()

    def reposition(self, icount: int) -> None:
        """The machine was put back to position ``icount``: every event up to it is applied."""
        self._events = self._events_from(icount + 1 if icount > 0 else 0)
        self._queue.clear()
        self._exhausted = False
        self.recent.clear()

    def _fill(self, n: int) -> bool:
        while len(self._queue) < n and not self._exhausted:
            event = next(self._events, None)
            if event is None:
                self._exhausted = True
            else:
                self._queue.append(event)
        return len(self._queue) >= n

    def _pop(self) -> Event:
        event = self._queue.popleft()
        self.consumed += 1
        self.recent.append(event)
        return event

    def peek(self) -> Event | None:
        return self._queue[0] if self._fill(1) else None

    def _next_stop(self) -> Event | None:
        i = 0
        while self._fill(i + 1):
            event = self._queue[i]
            if event.kind not in INLINE_KINDS:
                return event
            i += 1
        return None

    def _diverge(self, icount: int, what: str) -> ReplayDivergence:
        recent = "; ".join(f"{e.kind.name}@{e.icount}" for e in self.recent) or "none"
        return ReplayDivergence(f"replay diverged at icount {icount}, event #{self.consumed}: {what} "
                                f"(last events: {recent})")

    def _take(self, icount: int, kind: EventKind) -> object:
        event = self.peek()
        if event is None:
            self.machine.end_of_trace(f"the trace ends before the guest's {kind.name} at icount {icount}")
            return 0
        if event.kind != kind or event.icount != icount:
            raise self._diverge(icount, f"the guest asked for {kind.name} but the recording has "
                                        f"{event.kind.name} at icount {event.icount}")
        return self._pop().payload

    # -- synchronous inputs ----------------------------------------------------------

    def clock_ns(self, icount: int, which: int) -> int:
        return self._int(self._take(icount, EventKind.CLOCK), icount)

    def rdtsc(self, icount: int) -> int:
        return self._int(self._take(icount, EventKind.RDTSC), icount)

    def entropy32(self, icount: int) -> int:
        return self._int(self._take(icount, EventKind.ENTROPY), icount) & 0xFFFFFFFF

    def _int(self, value: object, icount: int) -> int:
        if not isinstance(value, int) or not 0 <= value < 1 << 64:
            raise self._diverge(icount, f"recorded value {value!r} is not a 64-bit number")
        return value

    # -- asynchronous inputs ---------------------------------------------------------

    def slice_limit(self, icount: int, interrupt_waiting: bool) -> int:
        stop = self._next_stop()
        if stop is None:                 # only the guest's own requests remain, if anything
            return max(icount, self.last_icount)
        if stop.icount < icount:
            raise self._diverge(icount, f"the guest ran past {stop.kind.name} at icount {stop.icount}")
        return stop.icount

    def poll(self, icount: int, *, idle: bool) -> list:
        inputs = []
        while True:
            event = self.peek()
            if event is None or event.icount > icount:
                break
            if event.icount < icount or event.kind in INLINE_KINDS:
                raise self._diverge(icount, f"the recording has {event.kind.name} at icount "
                                            f"{event.icount} that the guest never asked for")
            self._pop()
            if event.kind == EventKind.DIGEST or event.kind == EventKind.CHECKPOINT:
                if not self.verify:
                    continue
                if event.kind == EventKind.DIGEST:
                    self.digests_checked += 1
            inputs.append((event.kind, event.payload))
            if event.kind == EventKind.END:
                break
        if not inputs:
            self._no_input(icount, idle)
        return inputs

    def _no_input(self, icount: int, idle: bool) -> None:
        event = self.peek()
        if event is None:
            if idle or icount >= self.last_icount:
                self.machine.end_of_trace("the recording ends here")
        elif idle:
            raise self._diverge(icount, f"the guest halted, but the recording goes on with "
                                        f"{event.kind.name} at icount {event.icount}")

    def checkpoint_reached(self, index: object) -> None:
        """The run loop applied a checkpoint mark: the machine is where checkpoint ``index`` was taken."""
        if self._check_checkpoint is not None and self.verify:
            if self._check_checkpoint(index):
                self.digests_checked += 1            # the checkpoint's recorded state digest
            self.checkpoints_checked += 1

    def record_speed(self, instructions: int, seconds: float) -> None:
        pass                                     # slices end at recorded icounts, not by time

    def note(self, icount: int, kind: EventKind, payload: object) -> None:
        if kind != EventKind.EXCEPTION:
            return                                   # interrupts came from the trace itself
        event = self.peek()
        if event is None:
            return
        if event.kind != kind or event.icount != icount or event.payload != list(payload):
            raise self._diverge(icount, f"the guest took exception {payload[0]} but the recording has "
                                        f"{event.kind.name} {event.payload!r} at icount {event.icount}")
        self._pop()

    # -- outputs (replay sends nothing anywhere but the console) ------------------------

    def timer_armed(self, mode: int, interval_ns: int) -> None:
        pass

    def console_write(self, data: bytes) -> None:
        if self.console_output is not None:
            try:
                self.console_output.write(data)
                self.console_output.flush()
            except (OSError, ValueError):
                self.console_output = None

    def sock_send(self, chan: int, data: bytes) -> None:
        pass

    def sock_close(self, chan: int) -> None:
        pass

    def close(self) -> None:
        pass

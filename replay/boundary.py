"""The replay side of the nondeterminism boundary: every answer comes from the trace.

Mirror of vmm/boundary.py's LiveBoundary. Synchronous inputs (clock, TSC, entropy) are
taken from the next event, which must be of the kind the guest asked for at the icount
it asked; asynchronous ones (timer, socket data, interrupts, digests to check) are
handed to the run loop when it reaches their icount — ``slice_limit`` makes sure it
stops exactly there. No socket is opened, no clock read, no entropy drawn.
"""

from __future__ import annotations

import sys
from collections import deque
from typing import TYPE_CHECKING, Callable, Iterator

from trace_format.events import SYNC_KINDS, Event, EventKind
from vmm.boundary import EndOfTrace
from trace_format.events import check_blob as blob_payload, check_syscall as syscall_payload
from vmm.errors import ReplayDivergence

if TYPE_CHECKING:
    from vmm.machine import Machine

# Events the run loop must stop for: everything but answers to the guest's own requests.
INLINE_KINDS = SYNC_KINDS | {EventKind.EXCEPTION, EventKind.SIGNAL}
STOP_SCAN = 4096                # events looked ahead for the next stop
RECENT = 8


def _syscall_name(nr: object) -> str:
    from vmm.linux.syscalls import describe
    return describe(nr) if isinstance(nr, int) else repr(nr)


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
    replaying = True

    def __init__(self, machine: Machine, events_from: Callable[[int], Iterator[Event]], *,
                 last_icount: int, verify: bool = True, console_output=None,
                 check_checkpoint: Callable[[int], bool] | None = None,
                 blob_events: Callable[[], Iterator[Event]] | None = None) -> None:
        self.machine = machine
        self._events_from = events_from
        self._events = events_from(0)
        self._queue: deque[Event] = deque()
        self._inline_prefix = 0
        self._exhausted = False
        self.last_icount = last_icount
        self.verify = verify
        self.console_output = console_output
        self.consumed = 0
        self.digests_checked = 0
        self.checkpoints_checked = 0
        self._check_checkpoint = check_checkpoint
        self.recent: deque[Event] = deque(maxlen=RECENT)
        self._blob_events = blob_events
        self._blobs: dict[str, bytes] = {}
        self._blob_parts: dict[bytes, dict[int, bytes]] = {}
        self._all_blobs_read = False
        self._syscall: Event | None = None
        self._answers: list = []

    # -- the event stream ------------------------------------------------------------

    def reposition_after_checkpoint(self, events: Iterator[Event]) -> None:
        """The machine was loaded from a recorded checkpoint: continue with the events after it."""
        self._events = events
        self._queue.clear()
        self._inline_prefix = 0
        self._exhausted = False
        self.recent.clear()

    def reposition(self, icount: int) -> None:
        """The machine was put back to position ``icount``: every event up to it is applied."""
        self._events = self._events_from(icount + 1 if icount > 0 else 0)
        self._queue.clear()
        self._inline_prefix = 0
        self._exhausted = False
        self.recent.clear()

    def _fill(self, n: int) -> bool:
        while len(self._queue) < n and not self._exhausted:
            event = next(self._events, None)
            if event is None:
                self._exhausted = True
            elif event.kind == EventKind.BLOB:
                self._keep_blob(event.payload)
            else:
                self._queue.append(event)
        return len(self._queue) >= n

    def _pop(self) -> Event:
        event = self._queue.popleft()
        self._inline_prefix = max(0, self._inline_prefix - 1)
        self.consumed += 1
        self.recent.append(event)
        return event

    def peek(self) -> Event | None:
        return self._queue[0] if self._fill(1) else None

    def _next_stop(self) -> Event | None:
        """The next event the run loop must stop for. The queue's first ``_inline_prefix``
        events are known to be the guest's own requests, so each call scans only new ones."""
        i = self._inline_prefix
        while i < STOP_SCAN and self._fill(i + 1):
            event = self._queue[i]
            if event.kind not in INLINE_KINDS:
                self._inline_prefix = i
                return event
            i += 1
        self._inline_prefix = i
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

    # -- the Linux personality -----------------------------------------------------------

    def syscall_enter(self, icount: int, tid: int, nr: int) -> None:
        event = self.peek()
        if event is None:
            self.machine.end_of_trace(f"the trace ends before the program's system call at icount {icount}")
            raise EndOfTrace()
        payload = event.payload
        if event.kind != EventKind.SYSCALL or event.icount != icount:
            raise self._diverge(icount, f"the program made system call {_syscall_name(nr)} but the "
                                        f"recording has {event.kind.name} at icount {event.icount}")
        problem = syscall_payload(payload)
        if problem is not None:
            raise self._diverge(icount, f"a malformed SYSCALL record: {problem}")
        if payload[0] != tid or payload[1] != nr:
            raise self._diverge(icount, f"the program made system call {_syscall_name(nr)} (thread {tid}) "
                                        f"but the recording has {_syscall_name(payload[1])} (thread {payload[0]})")
        self._syscall = self._pop()
        self._answers = list(payload[4])

    def upcoming_syscalls(self, tid: int):
        """The recorded events from here on while they are thread ``tid``'s system calls
        (for the native hook's replay queue, vmm/linux/fastsys.py)."""
        i = 0
        while self._fill(i + 1):
            event = self._queue[i]
            if event.kind != EventKind.SYSCALL or type(event.payload) is not list or len(event.payload) != 5 \
                    or event.payload[0] != tid:
                return
            yield event
            i += 1

    def replayed_natively(self, n: int) -> None:
        """The native hook answered the next ``n`` recorded calls (each checked there against
        the program's: icount, number, arguments): they are taken off the trace."""
        for _ in range(n):
            self._pop()

    def notice(self, text: str) -> None:
        if self.console_output is not None:
            print(f"vmrr: {text}", file=sys.stderr, flush=True)

    def release(self, handle: int) -> None:
        pass                                     # the recording closed it on the host

    def host_call(self, icount: int, op: str, params: list) -> object:
        if not self._answers:
            raise self._diverge(icount, f"the program asked the host for '{op}', which the recording "
                                        f"does not answer")
        answer = self._answers.pop(0)
        if not (isinstance(answer, list) and len(answer) == 2 and answer[0] == op):
            raise self._diverge(icount, f"the program asked the host for '{op}', the recording "
                                        f"answers {answer[0] if isinstance(answer, list) and answer else answer!r}")
        return answer[1]

    def syscall_exit(self, icount: int, payload: list) -> None:
        recorded = self._syscall.payload if self._syscall is not None else None
        self._syscall = None
        if recorded is None:
            return
        if self._answers:
            raise self._diverge(icount, f"{_syscall_name(payload[1])}: the recording has host answers "
                                        f"the program never asked for")
        if recorded[2] != payload[2]:
            raise self._diverge(icount, f"{_syscall_name(payload[1])}: arguments {payload[2]!r:.200} differ "
                                        f"from the recorded {recorded[2]!r:.200}")
        if recorded[3] != payload[3]:
            raise self._diverge(icount, f"{_syscall_name(payload[1])}: returned {payload[3]!r}, the "
                                        f"recording {recorded[3]!r}")

    def task_blocked(self, tid: int, timeout_ns: int | None) -> None:
        pass                                         # the recording says when it goes on (SWITCH)

    def task_woken(self, tid: int) -> None:
        pass

    def blob(self, file_id: str) -> bytes | None:
        data = self._blobs.get(file_id)
        if data is None and not self._all_blobs_read and self._blob_events is not None:
            self._all_blobs_read = True
            for event in self._blob_events():
                self._keep_blob(event.payload)
            data = self._blobs.get(file_id)
        return data

    def _keep_blob(self, payload: object) -> None:
        problem = blob_payload(payload)
        if problem is not None:
            raise ReplayDivergence(f"a malformed BLOB record in the trace: {problem}")
        digest, part, parts, data = payload
        if digest.hex() in self._blobs:
            return
        pieces = self._blob_parts.setdefault(digest, {})
        pieces[part] = data
        if len(pieces) == parts:
            self._blobs[digest.hex()] = b"".join(pieces[i] for i in range(parts))
            del self._blob_parts[digest]

    def stdio_write(self, stream: str, data: bytes) -> None:
        if stream == "stderr" and self.console_output is not None:
            try:                                  # the program's stderr goes to ours, as recorded
                sys.stderr.buffer.write(data)
                sys.stderr.buffer.flush()
            except (OSError, ValueError, AttributeError):
                pass
            return
        self.console_write(data)

    def _int(self, value: object, icount: int) -> int:
        if not isinstance(value, int) or not 0 <= value < 1 << 64:
            raise self._diverge(icount, f"recorded value {value!r} is not a 64-bit number")
        return value

    # -- asynchronous inputs ---------------------------------------------------------

    def slice_limit(self, icount: int, interrupt_waiting: bool) -> int:
        stop = self._next_stop()
        if stop is None and self._inline_prefix >= STOP_SCAN:
            # Thousands of system calls ahead and no stop among them: run up to just before
            # the last one looked at, and look further from there (bounded memory and time).
            return max(icount, self._queue[STOP_SCAN - 1].icount - 1)
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
            if event.kind in (EventKind.END, EventKind.SWITCH, EventKind.SIGNAL_IN) or (
                    event.kind == EventKind.TIMER and self.machine.kernel is not None):
                break                                # what follows belongs to the thread switched in
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
        if kind not in (EventKind.EXCEPTION, EventKind.SIGNAL):
            return                                   # interrupts came from the trace itself
        event = self.peek()
        if event is None:
            return
        if event.kind != kind or event.icount != icount or not isinstance(event.payload, list) \
                or list(event.payload) != list(payload):
            what = f"exception {payload[0]}" if kind == EventKind.EXCEPTION else f"signal {payload[1]}"
            raise self._diverge(icount, f"the guest took {what} but the recording has "
                                        f"{event.kind.name} {event.payload!r} at icount {event.icount}")
        self._pop()

    # -- outputs (replay sends nothing anywhere but the console) ------------------------

    def timer_armed(self, mode: int, interval_ns: int) -> None:
        pass

    def alarm_armed(self, first_ns: int | None, interval_ns: int) -> None:
        pass                                         # the recording says when it expired (TIMER)

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

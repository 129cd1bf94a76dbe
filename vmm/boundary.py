"""The nondeterminism boundary: the only way anything from the host reaches the guest.

A device that needs an input asks the boundary — a clock reading, TSC value or random
bits (*synchronous* inputs, answered at the icount of the instruction that asked) — and
the run loop asks it between slices what the host has pushed: a timer expiry, a new
connection, bytes from a peer, console input (*asynchronous* inputs, injected at the
icount where the loop stopped). Outputs (console bytes, socket bytes) and notices the
host side needs (the timer was armed, a channel was closed) go the other way.

``LiveBoundary`` answers from the host. The recorder taps it (``tap``) to log every
answer with its icount; replay/ implements the same interface from a trace. Devices
and the run loop cannot tell which one they are talking to.
"""

from __future__ import annotations

import os
import random
import sys
import time
from typing import TYPE_CHECKING, Callable, Protocol

from trace_format.events import EventKind
from vmm.devices.clock import MONOTONIC
from vmm.devices.timer import PERIODIC, STOPPED
from vmm.hostio import HostIO

if TYPE_CHECKING:
    from vmm.machine import Machine

Input = tuple[EventKind, object]
Tap = Callable[[int, EventKind, object], None]

MAX_SLICE = 1_000_000           # instructions; bounds how late a host event is noticed
# A Linux program's slices are sized by time instead: every slice end of a live Linux run
# is exact (a per-instruction tail) and flushes the TLB, and a host event it waits for
# reaches the program at its next system call anyway; SLICE_SECONDS of guest time bounds
# how late a signal to vmrr or a thread's quantum is noticed in a CPU-bound stretch.
SLICE_SECONDS = 0.05
LINUX_MAX_SLICE = 64_000_000
MIN_SLICE = 1_000
INTERRUPT_WINDOW = 500          # short slices while an interrupt waits for IF=1
IDLE_WAIT_MAX = 0.25            # seconds; the loop re-checks for shutdown this often
BLOB_PART = 4 << 20             # file content is logged in BLOB records of at most this many bytes


class EndOfTrace(Exception):
    """Replay: the trace ends before the program's next system call (a cut trace); the run stops."""


class Boundary(Protocol):
    """What the machine asks of whoever answers for the host (live, or a trace)."""

    decides_interrupts: bool     # True: the machine delivers when it can; False: events say when
    exact_slices: bool           # False: a slice may overrun its limit to finish a block

    def clock_ns(self, icount: int, which: int) -> int: ...
    def rdtsc(self, icount: int) -> int: ...
    def entropy32(self, icount: int) -> int: ...
    def slice_limit(self, icount: int, interrupt_waiting: bool) -> int: ...
    def record_speed(self, instructions: int, seconds: float) -> None: ...
    def poll(self, icount: int, *, idle: bool) -> list[Input]: ...
    def note(self, icount: int, kind: EventKind, payload: object) -> None: ...
    def timer_armed(self, mode: int, interval_ns: int) -> None: ...
    def alarm_armed(self, first_ns: int | None, interval_ns: int) -> None: ...
    def console_write(self, data: bytes) -> None: ...
    # The Linux personality's system calls (vmm/linux/kernel.py):
    replaying: bool
    def syscall_enter(self, icount: int, tid: int, nr: int) -> None: ...
    def host_call(self, icount: int, op: str, params: list) -> object: ...
    def release(self, handle: int) -> None: ...
    def notice(self, text: str) -> None: ...
    def syscall_exit(self, icount: int, payload: list) -> None: ...
    def syscall_exits(self, records: list) -> None: ...    # live only: the native hook's calls
    def task_blocked(self, tid: int, timeout_ns: int | None) -> None: ...
    def task_woken(self, tid: int) -> None: ...
    def blob(self, file_id: str) -> bytes | None: ...
    def stdio_write(self, stream: str, data: bytes) -> None: ...
    def sock_send(self, chan: int, data: bytes) -> None: ...
    def sock_close(self, chan: int) -> None: ...
    def close(self) -> None: ...


class Chaos:
    """Perturbs host timing within what real hardware allows, from a seed.

    Timer expirations jitter, socket data is held back a little, and slice lengths vary,
    so rare interrupt interleavings become common. Nothing here needs logging: every
    effect shows up as the icount at which an input was injected.
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.rng = random.Random(seed)

    def timer_deadline(self, deadline_ns: int, interval_ns: int) -> int:
        return deadline_ns + int(self.rng.uniform(-0.5, 0.5) * interval_ns)

    def slice_length(self, length: int) -> int:
        return max(MIN_SLICE // 10, int(length * self.rng.choice((0.001, 0.01, 0.1, 0.5, 1.0))))

    def hold_input(self) -> bool:
        return self.rng.random() < 0.3


class LiveBoundary:
    """Answers from the real host: clocks, os.urandom, TCP sockets, the terminal.

    Args:
        machine: the machine whose devices this boundary feeds.
        listen: (host, port) for the socket device, or None for no listener.
        console_input: read the guest's console input from this process's stdin.
        console_output: where guest console bytes go (a binary stream); None discards.
        chaos: a Chaos perturbing timings, or None.

    Raises:
        HostError: the listen address is busy or invalid.
    """

    decides_interrupts = True
    replaying = False

    @property
    def exact_slices(self) -> bool:
        """An appliance's live slice may end a few instructions late (one block). A Linux
        program's may not: a page fault in a block finished past the limit was counted
        differently from the same fault under replay's exact slices."""
        return self.machine.kernel is not None

    def __init__(self, machine: Machine, *, listen: tuple[str, int] | None = None,
                 console_input: bool = False, console_output=None,
                 chaos: Chaos | None = None) -> None:
        self.machine = machine
        self.tap: Tap | None = None
        self.tap_many: Callable[[EventKind, list], None] | None = None   # the recorder's bulk tap
        self.bind_host = "127.0.0.1"           # where a Linux program's wildcard binds listen
        self.chaos = chaos
        self.boot_mono = time.monotonic_ns()
        self._timer_deadline: int | None = None
        self._timer_interval = 0
        self._timer_periodic = False
        self._ips = 50e6                # instructions/second estimate for timer slices
        self.io = HostIO(listen, console_input and machine.kernel is None, console_output)
        # A platform's live parts come from the platform (the Linux personality: the host
        # that answers its system calls, the scheduler of its threads); this boundary does
        # not know which platform it serves.
        self.host_os = None
        self.sched = None
        self.outside_signals: list[int] = []
        if machine.kernel is not None:
            self.sched = machine.kernel.live_scheduler(self._host_fd, chaos.seed if chaos else None,
                                                       timer_deadline=self.timer_deadline)

    @property
    def listen_address(self) -> tuple[str, int] | None:
        return self.io.address

    # -- synchronous inputs ----------------------------------------------------------

    def clock_ns(self, icount: int, which: int) -> int:
        value = time.monotonic_ns() - self.boot_mono if which == MONOTONIC else time.time_ns()
        if self.tap:
            self.tap(icount, EventKind.CLOCK, value)
        return value

    def rdtsc(self, icount: int) -> int:
        value = time.monotonic_ns() - self.boot_mono
        if self.tap:
            self.tap(icount, EventKind.RDTSC, value)
        return value

    def entropy32(self, icount: int) -> int:
        value = int.from_bytes(os.urandom(4), "little")
        if self.tap:
            self.tap(icount, EventKind.ENTROPY, value)
        return value

    # -- asynchronous inputs ---------------------------------------------------------

    def slice_limit(self, icount: int, interrupt_waiting: bool) -> int:
        length = MAX_SLICE
        if self.sched is not None:
            length = int(min(LINUX_MAX_SLICE, max(MAX_SLICE, self._ips * SLICE_SECONDS)))
        if interrupt_waiting:
            length = INTERRUPT_WINDOW
        elif self._timer_deadline is not None:
            remaining = (self._timer_deadline - time.monotonic_ns()) / 1e9
            length = int(min(MAX_SLICE, max(MIN_SLICE, remaining * self._ips)))
        if self.chaos and self.sched is None:
            length = self.chaos.slice_length(length)
        if self.sched is not None:
            end = self.sched.slice_end(icount)
            if end is not None:
                return max(icount + 1, min(icount + length, end))
        return icount + length

    def record_speed(self, instructions: int, seconds: float) -> None:
        """Feed the run loop's measured speed into the slice-length estimate."""
        if seconds > 0.001 and instructions > 10_000:
            self._ips = 0.8 * self._ips + 0.2 * (instructions / seconds)

    def poll(self, icount: int, *, idle: bool) -> list[Input]:
        """Inputs ready now; when ``idle`` (guest halted) wait for one, up to a bound."""
        timeout = 0.0
        if idle:
            timeout = IDLE_WAIT_MAX
            if self._timer_deadline is not None:
                timeout = min(timeout, max(0.0, (self._timer_deadline - time.monotonic_ns()) / 1e9))
        inputs: list[Input] = []
        if self.sched is not None:                   # a Linux program takes its inputs in system calls
            if self.outside_signals:
                inputs.append((EventKind.SIGNAL_IN, self.outside_signals.pop(0)))
            else:
                self._poll_timer(inputs)             # SIGALRM: alone, like a signal from outside
                if not inputs:
                    inputs.extend(self.sched.poll(icount, idle))
        else:
            if not (self.chaos and not idle and self.chaos.hold_input()):   # chaos: data waits
                self.io.poll(self.machine.sockets, self.machine.console, inputs, timeout)
            self._poll_timer(inputs)
        if self.tap:
            for kind, payload in inputs:
                self.tap(icount, kind, payload)
        return inputs

    def _poll_timer(self, inputs: list[Input]) -> None:
        if self._timer_deadline is None:
            return
        now = time.monotonic_ns()
        if now < self._timer_deadline:
            return
        inputs.append((EventKind.TIMER, None))
        if self._timer_periodic:
            nxt = self._timer_deadline + self._timer_interval
            if nxt <= now:              # fell behind: no catch-up storm
                nxt = now + self._timer_interval
            self._set_deadline(nxt)
        else:
            self._timer_deadline = None

    def note(self, icount: int, kind: EventKind, payload: object) -> None:
        if self.tap:
            self.tap(icount, kind, payload)

    # -- outputs and notices ---------------------------------------------------------

    def timer_armed(self, mode: int, interval_ns: int) -> None:
        if mode == STOPPED:
            self._timer_deadline = None
            return
        self._timer_interval = interval_ns
        self._timer_periodic = mode == PERIODIC
        self._set_deadline(time.monotonic_ns() + interval_ns)

    def alarm_armed(self, first_ns: int | None, interval_ns: int) -> None:
        """A Linux program's ITIMER_REAL: first expiry in ``first_ns`` (None: off), then
        every ``interval_ns`` (0: once). Each expiry becomes a TIMER input."""
        if first_ns is None:
            self._timer_deadline = None
            return
        self._timer_interval = interval_ns
        self._timer_periodic = interval_ns > 0
        self._set_deadline(time.monotonic_ns() + first_ns)

    def timer_deadline(self) -> int | None:
        """Host monotonic ns of the next TIMER, or None."""
        return self._timer_deadline

    def _set_deadline(self, deadline: int) -> None:
        if self.chaos:
            deadline = self.chaos.timer_deadline(deadline, self._timer_interval)
        self._timer_deadline = deadline

    def console_write(self, data: bytes) -> None:
        self.io.write_console(data)

    def sock_send(self, chan: int, data: bytes) -> None:
        self.io.send(chan, data)

    def sock_close(self, chan: int) -> None:
        self.io.close_channel(chan)

    # -- the Linux personality: host operations, logged as SYSCALL events ---------------

    def syscall_enter(self, icount: int, tid: int, nr: int) -> None:
        pass

    def task_blocked(self, tid: int, timeout_ns: int | None) -> None:
        self.sched.blocked(tid, timeout_ns)

    def task_woken(self, tid: int) -> None:
        self.sched.woken(tid)

    def signal_from_outside(self, signo: int) -> None:
        """The user signalled the recorder (SIGTERM, SIGINT): the program gets it at the next
        slice boundary, logged there. Safe in a signal handler."""
        self.outside_signals.append(signo)
        self.machine.request_stop()

    def _host_fd(self, handle: int) -> int | None:
        return None if self.host_os is None else self.host_os.handles.get(handle)

    def notice(self, text: str) -> None:
        print(f"vmrr: {text}", file=sys.stderr, flush=True)

    def release(self, handle: int) -> None:
        """Close a host handle outside any system call (a process killed by a signal): its
        answer is not the program's business, so nothing is logged and replay does nothing."""
        if self.host_os is not None:
            self.host_os.call("close", [handle])

    def host_call(self, icount: int, op: str, params: list) -> object:
        if self.host_os is None:
            self.host_os = self.machine.kernel.live_host(self._blob_ready)
            self.host_os.bind_host = self.bind_host
        self._icount = icount                        # where new file content goes in the trace
        return self.host_os.call(op, params)

    def _blob_ready(self, file_id: str, data: bytes) -> None:
        """New file content: into the trace as BLOB parts, before the answer that names it."""
        if self.tap is None:
            return
        digest = bytes.fromhex(file_id)
        parts = max(1, -(-len(data) // BLOB_PART))
        for part in range(parts):
            self.tap(self._icount, EventKind.BLOB,
                     [digest, part, parts, data[part * BLOB_PART:(part + 1) * BLOB_PART]])

    def syscall_exit(self, icount: int, payload: list) -> None:
        if self.tap:
            self.tap(icount, EventKind.SYSCALL, payload)

    def syscall_exits(self, records: list[tuple[int, list]]) -> None:
        """Calls the native hook answered (vmm/linux/fastsys.py), logged in one go."""
        if self.tap_many is not None:
            self.tap_many(EventKind.SYSCALL, records)
        elif self.tap:
            for icount, payload in records:
                self.tap(icount, EventKind.SYSCALL, payload)

    def blob(self, file_id: str) -> bytes | None:
        return None if self.host_os is None else self.host_os.blobs.get(file_id)

    def stdio_write(self, stream: str, data: bytes) -> None:
        if stream == "stdout":
            self.io.write_console(data)
            return
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(2, view):]
        except OSError:
            pass                                     # nobody reads our stderr: the program carries on

    def close(self) -> None:
        if self.host_os is not None:
            self.host_os.close()
        self.io.close()

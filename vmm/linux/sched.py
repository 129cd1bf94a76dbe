"""The recorder's scheduler for a Linux program's threads: who runs next, and when.

Only the live side (recording, ``vmrr run``) decides; each decision is a SWITCH event
``[tid, how]`` (vmm/linux/tasks.py) that replay follows without deciding anything. So
this module may use the host's clock, its file descriptors and a random generator
freely: none of it is guest state.

- A task runs until it blocks, exits, yields, or has run ``quantum`` instructions while
  another task could run; then the next runnable task after it (in tid order) goes on.
- A task waiting on the host — a socket, a pipe to another program, a sleep — is polled
  (without waiting) at the end of every slice, and goes on the CPU as soon as it is ready.
- When every task waits, the host sleeps in ``poll(2)`` on all their descriptors until
  one is ready or the earliest timeout passes, in steps short enough to notice a
  shutdown; replay skips that time.
- ``--chaos`` (a seed) makes quanta short and random and picks the next task at random,
  so rare interleavings of a racy program show up in seconds.
"""

from __future__ import annotations

import random
import select
import time
from typing import TYPE_CHECKING, Callable

from trace_format.events import EventKind
from vmm.linux.tasks import RESUME_RETRY, RESUME_RUN, RESUME_TIMEOUT, RUN, WAIT

if TYPE_CHECKING:
    from vmm.linux.kernel import LinuxKernel

QUANTUM = 200_000                 # instructions a thread runs while others wait for the CPU
CHAOS_QUANTA = (50, 300, 2_000, 10_000, 50_000, 200_000)
IDLE_WAIT_MAX = 0.25              # seconds: the loop checks for a shutdown this often


class LiveScheduler:
    """Decides the switches of a recording.

    Args:
        kernel: the Linux personality.
        host_fd: maps a host handle (vmm/linux/host.py) to the real descriptor, or None.
        seed: the chaos seed, or None for plain round-robin.
        timer_deadline: when the program's next SIGALRM is due (an idle wait ends then).
    """

    def __init__(self, kernel: LinuxKernel, host_fd: Callable[[int], int | None], seed: int | None,
                 timer_deadline: Callable[[], int | None] = lambda: None) -> None:
        self.k = kernel
        self.host_fd = host_fd
        self.timer_deadline = timer_deadline       # the program's ITIMER_REAL, in host ns
        self.rng = random.Random(seed) if seed is not None else None
        self.deadlines: dict[int, int] = {}        # tid -> host monotonic ns when its wait times out
        self.quantum_start = 0
        self.quantum = self._next_quantum()
        self.retrying: int | None = None

    def _next_quantum(self) -> int:
        return self.rng.choice(CHAOS_QUANTA) if self.rng else QUANTUM

    # -- notices from the personality ----------------------------------------------------

    def blocked(self, tid: int, timeout_ns: int | None) -> None:
        if self.retrying == tid and tid in self.deadlines:
            return                                   # the same call waits again: same deadline
        if timeout_ns is None:
            self.deadlines.pop(tid, None)
        else:
            self.deadlines[tid] = time.monotonic_ns() + timeout_ns

    def woken(self, tid: int) -> None:
        self.deadlines.pop(tid, None)

    # -- decisions -------------------------------------------------------------------------

    def slice_end(self, icount: int) -> int | None:
        """Where the current quantum ends, when another task could take the CPU then."""
        if len(self.k.tasks) < 2:
            return None
        return self.quantum_start + self.quantum

    def poll(self, icount: int, idle: bool) -> list:
        """The switch to make now, if any, as run-loop inputs; when ``idle`` wait for one."""
        self.retrying = None
        k = self.k
        current = k.current
        must = current.state != RUN
        if not must and not k.yielded and icount - self.quantum_start < self.quantum:
            ready = self._ready(0.0) if self._has_host_waits() else []
            if not ready:
                return []
            return [self._switch(icount, *ready[0])]
        runnable = [t for t in k.tasks.values() if t.state == RUN and (t is not current or not must)]
        others = [t for t in runnable if t is not current]
        ready = self._ready(0.0)
        choice = self._pick(current.tid, [(t.tid, RESUME_RUN) for t in others] + ready)
        if choice is None and not must:
            self.quantum_start = icount                  # nobody else: a fresh quantum
            k.yielded = False
            return []
        if choice is None and idle:
            ready = self._ready(self._idle_timeout())
            choice = self._pick(current.tid, ready)
        if choice is None:
            return []
        return [self._switch(icount, *choice)]

    def _switch(self, icount: int, tid: int, how: int) -> tuple:
        self.quantum_start = icount
        self.quantum = self._next_quantum()
        if how == RESUME_RETRY:
            self.retrying = tid
        elif how == RESUME_TIMEOUT:
            self.deadlines.pop(tid, None)
        return (EventKind.SWITCH, [tid, how])

    def _pick(self, after: int, choices: list[tuple[int, int]]) -> tuple[int, int] | None:
        if not choices:
            return None
        if self.rng:
            return self.rng.choice(choices)
        later = [c for c in choices if c[0] > after]
        return min(later or choices)

    def _has_host_waits(self) -> bool:
        return any(t.state == WAIT and t.wait[0] not in ("futex", "sem") or t.tid in self.deadlines
                   for t in self.k.tasks.values() if t.state == WAIT)

    def _idle_timeout(self) -> float:
        timeout = IDLE_WAIT_MAX
        now = time.monotonic_ns()
        alarm = self.timer_deadline()
        if alarm is not None:
            timeout = min(timeout, max(0.0, (alarm - now) / 1e9))
        for tid, deadline in self.deadlines.items():
            task = self.k.tasks.get(tid)
            if task is not None and task.state == WAIT and task.timeout:
                timeout = min(timeout, max(0.0, (deadline - now) / 1e9))
        return timeout

    def _ready(self, timeout: float) -> list[tuple[int, int]]:
        """Waiting tasks that can go on: their descriptors are ready, or their time is up.
        Waits up to ``timeout`` seconds for one."""
        from vmm.linux.poll import wait_targets
        k = self.k
        out: list[tuple[int, int]] = []
        watch: dict[int, list[tuple[int, int]]] = {}    # real fd -> [(tid, events)]
        now = time.monotonic_ns()
        for task in k.tasks.values():
            if task.state != WAIT:
                continue
            kind = task.wait[0]
            if kind == "retry":
                out.append((task.tid, RESUME_RETRY))
                continue
            if task.timeout and self.deadlines.get(task.tid, now) <= now:
                out.append((task.tid, RESUME_TIMEOUT))
                continue
            if kind != "fds":
                continue
            proc = k.processes.get(task.pid)
            if proc is None:
                continue
            targets, inside = wait_targets(k, task.wait[1], proc.files)
            if inside:
                out.append((task.tid, RESUME_RETRY))
                continue
            for handle, events in targets:
                fd = self.host_fd(handle)
                if fd is not None:
                    watch.setdefault(fd, []).append((task.tid, events))
        if out or not watch and timeout <= 0:
            return out
        if not watch:
            time.sleep(timeout)
            return self._expired()
        poller = select.poll()
        for fd, waiters in watch.items():
            mask = 0
            for _tid, events in waiters:
                mask |= events
            poller.register(fd, mask)
        try:
            fired = poller.poll(int(timeout * 1000) if timeout > 0 else 0)
        except InterruptedError:
            fired = []
        seen = set()
        for fd, revents in fired:
            for tid, events in watch.get(fd, ()):
                if tid not in seen and revents & (events | select.POLLERR | select.POLLHUP | select.POLLNVAL):
                    seen.add(tid)
                    out.append((tid, RESUME_RETRY))
        return out or self._expired()

    def _expired(self) -> list[tuple[int, int]]:
        now = time.monotonic_ns()
        return [(t.tid, RESUME_TIMEOUT) for t in self.k.tasks.values()
                if t.state == WAIT and t.timeout and self.deadlines.get(t.tid, now) <= now]

"""Timer: one-shot and periodic expirations in nanoseconds, raising IRQ 0.

Registers (I/O ports):
    0x40 TIMER_INTERVAL_LO  W  low 32 bits of the interval (ns)
    0x41 TIMER_INTERVAL_HI  W  high 32 bits
    0x42 TIMER_CTRL         RW 0 = stop, 1 = one-shot, 2 = periodic; a write (re)arms from now
    0x43 TIMER_FIRED        R  expirations since boot (32 bits, wraps)

When an expiration happens is host time, so it is an input: the host side of the
boundary keeps the deadline (``boundary.timer_armed``) and delivers a TIMER event, which
the run loop hands to ``expire``. The device itself holds only what the guest can see.
"""

from __future__ import annotations

from vmm.devices import Device, one_of, uint

TIMER_INTERVAL_LO, TIMER_INTERVAL_HI, TIMER_CTRL, TIMER_FIRED = 0x40, 0x41, 0x42, 0x43
STOPPED, ONE_SHOT, PERIODIC = 0, 1, 2
IRQ_LINE = 0
MIN_INTERVAL_NS = 10_000       # faster timers would only measure the VMM's overhead


class Timer(Device):
    name = "timer"
    ports = (TIMER_INTERVAL_LO, TIMER_INTERVAL_HI, TIMER_CTRL, TIMER_FIRED)
    STATE_SCHEMA = {"interval_ns": uint(64), "mode": one_of(STOPPED, ONE_SHOT, PERIODIC),
                    "fired": uint(64)}

    def __init__(self, machine) -> None:
        super().__init__(machine)
        self.interval_ns = 0
        self.mode = STOPPED
        self.fired = 0

    def port_read(self, port: int, size: int) -> int:
        if port == TIMER_CTRL:
            return self.mode
        if port == TIMER_FIRED:
            return self.fired & 0xFFFFFFFF
        return 0

    def port_write(self, port: int, size: int, value: int) -> None:
        if port == TIMER_INTERVAL_LO:
            self.interval_ns = (self.interval_ns & ~0xFFFFFFFF) | value
        elif port == TIMER_INTERVAL_HI:
            self.interval_ns = (self.interval_ns & 0xFFFFFFFF) | (value << 32)
        elif port == TIMER_CTRL:
            self.mode = value if value in (ONE_SHOT, PERIODIC) else STOPPED
            self.machine.boundary.timer_armed(self.mode, max(self.interval_ns, MIN_INTERVAL_NS))
            self.machine.request_stop()                 # the slice length depends on the deadline

    def expire(self) -> None:
        """A TIMER event: count it, raise the line, disarm a one-shot."""
        self.fired += 1
        if self.mode == ONE_SHOT:
            self.mode = STOPPED
        self.machine.pic.raise_line(IRQ_LINE)

    def state(self) -> dict:
        return {"interval_ns": self.interval_ns, "mode": self.mode, "fired": self.fired}

    def load_state(self, state: dict) -> None:
        self.check_state(state)
        self.interval_ns, self.mode, self.fired = state["interval_ns"], state["mode"], state["fired"]

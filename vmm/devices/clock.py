"""Clock: wall-clock and monotonic time in nanoseconds, and the CPU's RDTSC/RDTSCP.

Registers (I/O ports):
    0x70 CLOCK_LATCH  W  0 = latch wall-clock time (ns since the Unix epoch),
                         1 = latch monotonic time (ns since boot)
    0x71 CLOCK_LO     R  low 32 bits of the latched value
    0x72 CLOCK_HI     R  high 32 bits

Every read of time is a host input and goes through the boundary (``clock_ns``). The
TSC runs at 1 GHz: RDTSC returns monotonic nanoseconds since boot (``boundary.rdtsc``).
"""

from __future__ import annotations

from vmm.devices import Device, uint

CLOCK_LATCH, CLOCK_LO, CLOCK_HI = 0x70, 0x71, 0x72
WALL, MONOTONIC = 0, 1


class Clock(Device):
    name = "clock"
    ports = (CLOCK_LATCH, CLOCK_LO, CLOCK_HI)
    STATE_SCHEMA = {"latched": uint(64)}

    def __init__(self, machine) -> None:
        super().__init__(machine)
        self.latched = 0

    def port_read(self, port: int, size: int) -> int:
        if port == CLOCK_LO:
            return self.latched & 0xFFFFFFFF
        if port == CLOCK_HI:
            return (self.latched >> 32) & 0xFFFFFFFF
        return 0

    def port_write(self, port: int, size: int, value: int) -> None:
        if port == CLOCK_LATCH:
            which = MONOTONIC if value == MONOTONIC else WALL
            self.latched = self.machine.boundary.clock_ns(self.machine.icount, which)

    def state(self) -> dict:
        return {"latched": self.latched}

    def load_state(self, state: dict) -> None:
        self.check_state(state)
        self.latched = state["latched"]

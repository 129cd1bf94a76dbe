"""Interrupt controller: 16 IRQ lines with fixed priority (line 0 highest).

Registers (I/O ports):
    0x20 PIC_EOI        W  end of interrupt for the highest-priority line in service
    0x21 PIC_MASK       RW bit n = 1 masks line n (reset 0: nothing masked)
    0x22 PIC_PENDING    R  lines raised and not yet delivered
    0x23 PIC_INSERVICE  R  lines delivered and not yet ended by EOI

Line n is delivered as vector 32 + n. A line can be delivered when it is pending, not
masked, and of higher priority than every line in service (so a handler that runs
``sti`` can be interrupted by a higher-priority line, not by its own or a lower one).
"""

from __future__ import annotations

from vmm.devices import Device, uint

PIC_EOI, PIC_MASK, PIC_PENDING, PIC_INSERVICE = 0x20, 0x21, 0x22, 0x23
VECTOR_BASE = 32
LINES = 16


def _lowest_bit(bits: int) -> int:
    return (bits & -bits).bit_length() - 1


class Pic(Device):
    name = "pic"
    ports = (PIC_EOI, PIC_MASK, PIC_PENDING, PIC_INSERVICE)
    STATE_SCHEMA = {"pending": uint(LINES), "mask": uint(LINES), "in_service": uint(LINES)}

    def __init__(self, machine) -> None:
        super().__init__(machine)
        self.pending = 0
        self.mask = 0
        self.in_service = 0

    def raise_line(self, line: int) -> None:
        self.pending |= 1 << line

    def deliverable_line(self) -> int | None:
        """The line the CPU would take now if IF were set, or None."""
        ready = self.pending & ~self.mask
        if self.in_service:
            ready &= (self.in_service & -self.in_service) - 1
        return _lowest_bit(ready) if ready else None

    def acknowledge(self, line: int) -> int:
        """The CPU takes ``line``: pending → in service. Returns its vector."""
        self.pending &= ~(1 << line)
        self.in_service |= 1 << line
        return VECTOR_BASE + line

    def port_read(self, port: int, size: int) -> int:
        if port == PIC_MASK:
            return self.mask
        if port == PIC_PENDING:
            return self.pending
        if port == PIC_INSERVICE:
            return self.in_service
        return 0

    def port_write(self, port: int, size: int, value: int) -> None:
        if port == PIC_EOI:
            self.in_service &= self.in_service - 1      # clears the lowest set bit
        elif port == PIC_MASK:
            self.mask = value & 0xFFFF
        else:
            return
        if self.deliverable_line() is not None:
            self.machine.request_stop()                 # let the run loop deliver it

    def state(self) -> dict:
        return {"pending": self.pending, "mask": self.mask, "in_service": self.in_service}

    def load_state(self, state: dict) -> None:
        self.check_state(state)
        self.pending, self.mask, self.in_service = state["pending"], state["mask"], state["in_service"]

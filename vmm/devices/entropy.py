"""Entropy: random bits from the host.

Registers (I/O ports):
    0x90 ENTROPY  R  32 random bits (host os.urandom, through the boundary)

This is the guest's only source of randomness: the pinned CPU model has no RDRAND/RDSEED.
"""

from __future__ import annotations

from vmm.devices import Device

ENTROPY = 0x90


class Entropy(Device):
    name = "entropy"
    ports = (ENTROPY,)

    def port_read(self, port: int, size: int) -> int:
        return self.machine.boundary.entropy32(self.machine.icount)

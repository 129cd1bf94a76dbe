"""Power: the guest turns the VM off.

Registers (I/O ports):
    0xF4 POWER  W  power off; the value written is the exit status

A HLT with interrupts disabled also powers off (status 0): nothing could wake it.
"""

from __future__ import annotations

from vmm.devices import Device

POWER = 0xF4


class Power(Device):
    name = "power"
    ports = (POWER,)

    def port_write(self, port: int, size: int, value: int) -> None:
        self.machine.power_off(value)

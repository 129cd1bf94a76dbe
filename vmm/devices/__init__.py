"""Devices of the vmrr machine, one module each; each documents its registers at the top.

A device never touches the host: inputs come through the nondeterminism boundary
(``machine.boundary``), either as answers to a register read or as events the run loop
applies between instructions. Outputs go to the boundary too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from vmm.machine import Machine


class Device:
    """Base of every device: a name, the ports it owns, and its deterministic state."""

    name: ClassVar[str] = "device"
    ports: ClassVar[tuple[int, ...]] = ()

    def __init__(self, machine: Machine) -> None:
        self.machine = machine

    def port_read(self, port: int, size: int) -> int:
        return 0

    def port_write(self, port: int, size: int, value: int) -> None:
        pass

    def state(self) -> dict:
        """Everything the guest can observe, as msgpack-able values (checkpoints, digests)."""
        return {}

    def load_state(self, state: dict) -> None:
        pass

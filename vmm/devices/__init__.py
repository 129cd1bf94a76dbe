"""Devices of the vmrr machine, one module each; each documents its registers at the top.

A device never touches the host: inputs come through the nondeterminism boundary
(``machine.boundary``), either as answers to a register read or as events the run loop
applies between instructions. Outputs go to the boundary too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar

from vmm.errors import DATA_ERRORS

if TYPE_CHECKING:
    from vmm.machine import Machine


class BadDeviceState(ValueError):
    """A saved device state (a checkpoint's, a sidecar's) does not fit the device."""


def uint(bits: int) -> Callable[[object], bool]:
    limit = 1 << bits
    return lambda value: type(value) is int and 0 <= value < limit


def sint(bits: int) -> Callable[[object], bool]:
    limit = 1 << (bits - 1)
    return lambda value: type(value) is int and -limit <= value < limit


def blob(max_len: int) -> Callable[[object], bool]:
    return lambda value: type(value) is bytes and len(value) <= max_len


def boolean(value: object) -> bool:
    return type(value) is bool


def one_of(*allowed: object) -> Callable[[object], bool]:
    return lambda value: type(value) is int and value in allowed


class Device:
    """Base of every device: a name, the ports it owns, and its deterministic state.

    ``STATE_SCHEMA`` maps each key of ``state()`` to a check of its value; a saved
    state (from a trace or a sidecar, so untrusted) must have exactly those keys and
    pass every check before ``load_state`` uses it (``check_state``). A device with a
    state too rich for a table overrides ``check_state`` instead.
    """

    name: ClassVar[str] = "device"
    ports: ClassVar[tuple[int, ...]] = ()
    STATE_SCHEMA: ClassVar[dict[str, Callable[[object], bool]]] = {}

    @classmethod
    def check_state(cls, state: object) -> None:
        """Raise BadDeviceState naming the field unless ``state`` fits STATE_SCHEMA.

        Must not raise anything else, whatever ``state`` is."""
        if type(state) is not dict:
            raise BadDeviceState(f"{cls.name} state is not a map")
        if state.keys() != cls.STATE_SCHEMA.keys():
            raise BadDeviceState(f"{cls.name} state has fields {sorted(map(str, state))}, "
                                 f"not {sorted(cls.STATE_SCHEMA)}")
        for key, check in cls.STATE_SCHEMA.items():
            try:
                fits = check(state[key])
            except DATA_ERRORS:                 # a check tripped over a value's type: it does not fit
                fits = False
            if not fits:
                raise BadDeviceState(f"{cls.name} state field {key} is out of range")

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

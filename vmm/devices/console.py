"""Serial console: guest output to the host terminal or a log, host input to the guest.

Registers (I/O ports):
    0x3F8 CON_DATA    W  one byte of output
                      R  the next input byte (0 when there is none)
    0x3F9 CON_STATUS  R  bit 0 = an input byte is available
    0x3FA CON_CTRL    W  bit 0 = raise IRQ 1 when input arrives

Output is deterministic and buffered here until the run loop flushes it (``flush``).
Input arrives as CONSOLE_IN events; the host side reads only while the FIFO has room.
"""

from __future__ import annotations

from vmm.devices import Device, blob, boolean

CON_DATA, CON_STATUS, CON_CTRL = 0x3F8, 0x3F9, 0x3FA
IRQ_LINE = 1
INPUT_CAPACITY = 4096
_FLUSH_AT = 4096


class Console(Device):
    name = "console"
    ports = (CON_DATA, CON_STATUS, CON_CTRL)
    STATE_SCHEMA = {"input": blob(INPUT_CAPACITY), "rx_interrupt": boolean, "output": blob(_FLUSH_AT)}

    def __init__(self, machine) -> None:
        super().__init__(machine)
        self.input = bytearray()
        self.rx_interrupt = False
        self._output = bytearray()
        self.flush_at = _FLUSH_AT          # 1 in time travel: output is placed at its exact icount

    def port_read(self, port: int, size: int) -> int:
        if port == CON_DATA:
            if not self.input:
                return 0
            byte = self.input[0]
            del self.input[0]
            return byte
        if port == CON_STATUS:
            return 1 if self.input else 0
        return 0

    def port_write(self, port: int, size: int, value: int) -> None:
        if port == CON_DATA:
            self._output.append(value & 0xFF)
            if len(self._output) >= self.flush_at:
                self.flush()
        elif port == CON_CTRL:
            self.rx_interrupt = bool(value & 1)
            if self.rx_interrupt and self.input:
                self.machine.pic.raise_line(IRQ_LINE)

    def input_room(self) -> int:
        return INPUT_CAPACITY - len(self.input)

    def receive(self, data: bytes) -> None:
        """A CONSOLE_IN event: bytes typed on the host."""
        self.input += data
        if self.rx_interrupt:
            self.machine.pic.raise_line(IRQ_LINE)

    def flush(self) -> None:
        if self._output:
            data = bytes(self._output)
            self._output.clear()
            self.machine.output("console", data)

    def state(self) -> dict:
        return {"input": bytes(self.input), "rx_interrupt": self.rx_interrupt,
                "output": bytes(self._output)}

    def load_state(self, state: dict) -> None:
        self.check_state(state)
        self.input = bytearray(state["input"])
        self.rx_interrupt = state["rx_interrupt"]
        self._output = bytearray(state["output"])

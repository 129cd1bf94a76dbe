"""Stream sockets: host TCP connections as guest channels, in the spirit of virtio-vsock.

Registers (I/O ports):
    0xA0 SOCK_CMD       W  run a command; its result goes to SOCK_RESULT
    0xA1 SOCK_CHAN      W  channel argument
    0xA2 SOCK_ADDR_LO   W  guest buffer address, low 32 bits
    0xA3 SOCK_ADDR_HI   W  high 32 bits
    0xA4 SOCK_LEN       W  buffer length
    0xA5 SOCK_RESULT    R  signed 32-bit result of the last command
    0xA6 SOCK_READY_LO  R  bit c: channel c (0-31) has data or a hang-up to read
    0xA7 SOCK_READY_HI  R  the same for channels 32-63
    0xA8 SOCK_ACCEPTQ   R  connections waiting to be accepted

Commands: 1 ACCEPT → channel or -11; 2 RECV(chan, addr, len) → bytes copied, 0 at
end of stream, -11 nothing yet; 3 SEND(chan, addr, len) → len, or -32 when the peer has
gone; 4 CLOSE(chan) → 0. Bad channels give -9, bad buffers -14. IRQ 2 is raised when a
connection becomes acceptable, data arrives, or a peer hangs up.

The host side of the boundary owns the real sockets. What reaches the device — a new
connection, bytes, a hang-up — arrives as SOCK_ACCEPT / SOCK_DATA / SOCK_HUP events,
so everything the guest can read is device state. Each channel buffers at most
RX_CAPACITY bytes; the host reads from TCP only as much as fits (flow control).
"""

from __future__ import annotations

from collections import deque

from unicorn import UcError

from vmm.devices import BadDeviceState, Device, blob, boolean, sint, uint

SOCK_CMD, SOCK_CHAN, SOCK_ADDR_LO, SOCK_ADDR_HI, SOCK_LEN = 0xA0, 0xA1, 0xA2, 0xA3, 0xA4
SOCK_RESULT, SOCK_READY_LO, SOCK_READY_HI, SOCK_ACCEPTQ = 0xA5, 0xA6, 0xA7, 0xA8
CMD_ACCEPT, CMD_RECV, CMD_SEND, CMD_CLOSE = 1, 2, 3, 4
EAGAIN, EBADF, EFAULT, EINVAL, EPIPE = -11, -9, -14, -22, -32
CHANNELS = 64
RX_CAPACITY = 16 * 1024
MAX_SEND = 1 << 20
IRQ_LINE = 2


class Channel:
    __slots__ = ("accepted", "rx", "peer_closed")

    def __init__(self) -> None:
        self.accepted = False
        self.rx = bytearray()
        self.peer_closed = False


def _channels(value: object) -> bool:
    rx = blob(RX_CAPACITY)
    return type(value) is list and len(value) == CHANNELS and all(
        entry is None or (type(entry) is list and len(entry) == 3 and boolean(entry[0])
                          and rx(entry[1]) and boolean(entry[2])) for entry in value)


def _args(value: object) -> bool:
    return (type(value) is list and len(value) == 4 and uint(32)(value[0]) and uint(64)(value[1])
            and uint(32)(value[2]) and sint(64)(value[3]))


def _accept_queue(value: object) -> bool:
    return (type(value) is list and len(value) <= CHANNELS
            and all(uint(32)(chan) and chan < CHANNELS for chan in value)
            and len(set(value)) == len(value))          # hashable only once known to be ints


class Sockets(Device):
    name = "sockets"
    ports = (SOCK_CMD, SOCK_CHAN, SOCK_ADDR_LO, SOCK_ADDR_HI, SOCK_LEN,
             SOCK_RESULT, SOCK_READY_LO, SOCK_READY_HI, SOCK_ACCEPTQ)
    STATE_SCHEMA = {"channels": _channels, "accept_queue": _accept_queue, "args": _args}

    @classmethod
    def check_state(cls, state: object) -> None:
        super().check_state(state)
        for chan in state["accept_queue"]:       # a queued connection is open, not yet accepted
            entry = state["channels"][chan]
            if entry is None or entry[0]:
                raise BadDeviceState(f"sockets state: queued channel {chan} is not a waiting connection")

    def __init__(self, machine) -> None:
        super().__init__(machine)
        self.channels: list[Channel | None] = [None] * CHANNELS
        self.accept_queue: deque[int] = deque()
        self.arg_chan = self.arg_addr = self.arg_len = 0
        self.result = 0

    # -- guest side ------------------------------------------------------------------

    def port_read(self, port: int, size: int) -> int:
        if port == SOCK_RESULT:
            return self.result & 0xFFFFFFFF
        if port == SOCK_READY_LO:
            return self.ready_bitmap() & 0xFFFFFFFF
        if port == SOCK_READY_HI:
            return self.ready_bitmap() >> 32
        if port == SOCK_ACCEPTQ:
            return len(self.accept_queue)
        return 0

    def port_write(self, port: int, size: int, value: int) -> None:
        if port == SOCK_CHAN:
            self.arg_chan = value
        elif port == SOCK_ADDR_LO:
            self.arg_addr = (self.arg_addr & ~0xFFFFFFFF) | value
        elif port == SOCK_ADDR_HI:
            self.arg_addr = (self.arg_addr & 0xFFFFFFFF) | (value << 32)
        elif port == SOCK_LEN:
            self.arg_len = value
        elif port == SOCK_CMD:
            self.result = self._command(value)

    def ready_bitmap(self) -> int:
        bits = 0
        for chan, ch in enumerate(self.channels):
            if ch is not None and ch.accepted and (ch.rx or ch.peer_closed):
                bits |= 1 << chan
        return bits

    def _command(self, cmd: int) -> int:
        if cmd == CMD_ACCEPT:
            if not self.accept_queue:
                return EAGAIN
            chan = self.accept_queue.popleft()
            self.channels[chan].accepted = True
            return chan
        chan = self.arg_chan
        ch = self.channels[chan] if chan < CHANNELS else None
        if ch is None or not ch.accepted:
            return EBADF
        if cmd == CMD_RECV:
            return self._recv(ch)
        if cmd == CMD_SEND:
            return self._send(chan, ch)
        if cmd == CMD_CLOSE:
            self.channels[chan] = None
            self.machine.boundary.sock_close(chan)
            return 0
        return EINVAL

    def _recv(self, ch: Channel) -> int:
        if not ch.rx:
            return 0 if ch.peer_closed else EAGAIN
        count = min(self.arg_len, len(ch.rx))
        try:
            self.machine.cpu.uc.mem_write(self.arg_addr, bytes(ch.rx[:count]))
        except UcError:
            return EFAULT
        was_full = len(ch.rx) >= RX_CAPACITY
        del ch.rx[:count]
        if was_full:
            self.machine.request_stop()       # the host held data back: let it refill now
        return count

    def _send(self, chan: int, ch: Channel) -> int:
        if ch.peer_closed:
            return EPIPE
        if self.arg_len > MAX_SEND:
            return EINVAL
        try:
            data = bytes(self.machine.cpu.uc.mem_read(self.arg_addr, self.arg_len))
        except UcError:
            return EFAULT
        self.machine.boundary.sock_send(chan, data)
        self.machine.output(f"sock{chan}", data)
        return len(data)

    # -- host side (events) ----------------------------------------------------------

    def free_channel(self) -> int | None:
        """The lowest channel number a new connection would get, or None when all are busy."""
        for chan, ch in enumerate(self.channels):
            if ch is None:
                return chan
        return None

    def rx_room(self, chan: int) -> int:
        ch = self.channels[chan]
        return 0 if ch is None else RX_CAPACITY - len(ch.rx)

    def on_accept(self, chan: int) -> None:
        self.channels[chan] = Channel()
        self.accept_queue.append(chan)
        self.machine.pic.raise_line(IRQ_LINE)

    def on_data(self, chan: int, data: bytes) -> None:
        self.channels[chan].rx += data
        self.machine.pic.raise_line(IRQ_LINE)

    def on_hup(self, chan: int) -> None:
        self.channels[chan].peer_closed = True
        self.machine.pic.raise_line(IRQ_LINE)

    def state(self) -> dict:
        return {
            "channels": [None if ch is None else [ch.accepted, bytes(ch.rx), ch.peer_closed]
                         for ch in self.channels],
            "accept_queue": list(self.accept_queue),
            "args": [self.arg_chan, self.arg_addr, self.arg_len, self.result],
        }

    def load_state(self, state: dict) -> None:
        self.check_state(state)
        self.channels = []
        for entry in state["channels"]:
            ch = None
            if entry is not None:
                ch = Channel()
                ch.accepted, ch.rx, ch.peer_closed = entry[0], bytearray(entry[1]), entry[2]
            self.channels.append(ch)
        self.accept_queue = deque(state["accept_queue"])
        self.arg_chan, self.arg_addr, self.arg_len, self.result = state["args"]

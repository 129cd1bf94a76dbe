"""gdb remote serial protocol: framing, checksums, escaping, acknowledgements.

A packet on the wire is ``$payload#cc``: ``cc`` is the modulo-256 sum of the payload
bytes as two lowercase hex digits. Binary payloads escape ``#``, ``$``, ``}`` and ``*``
as ``}`` followed by the byte XOR 0x20. Outside packets, gdb sends ``+``/``-``
acknowledgements and the single byte 0x03 to interrupt a running target. After
``QStartNoAckMode`` neither side acknowledges.

``PacketDecoder`` turns a byte stream into ``Packet``, ``Interrupt``, ``BadPacket`` and
``Nak`` items and never raises on malformed input: garbage between packets is skipped,
a bad checksum and an oversize packet become ``BadPacket``. In acknowledgement mode the
connection answers a bad checksum with ``-`` (gdb retransmits); otherwise, and for an
oversize packet, the server sends an error reply. ``Connection`` puts a decoder on a socket.
"""

from __future__ import annotations

import select
import socket
from collections import deque
from dataclasses import dataclass

INTERRUPT_BYTE = 0x03
MAX_PACKET = 0x4000              # advertised to gdb as PacketSize; larger input is refused
_ESCAPED = frozenset(b"#$}*")


@dataclass(frozen=True, slots=True)
class Packet:
    """A well-formed packet from gdb (payload unescaped only where the command says so)."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class Interrupt:
    """gdb sent 0x03: stop the running target."""


@dataclass(frozen=True, slots=True)
class Nak:
    """gdb sent ``-``: it did not receive our last packet intact."""


@dataclass(frozen=True, slots=True)
class BadPacket:
    """A packet that cannot be used: ``why`` is ``"checksum"`` or ``"oversize"``."""

    why: str


Item = Packet | Interrupt | Nak | BadPacket


def checksum(payload: bytes) -> int:
    """The protocol checksum: the sum of the bytes modulo 256."""
    return sum(payload) & 0xFF


def escape(data: bytes) -> bytes:
    """Escape binary data for a packet payload (``}`` then the byte XOR 0x20)."""
    if not any(b in _ESCAPED for b in data):
        return data
    out = bytearray()
    for b in data:
        if b in _ESCAPED:
            out += bytes((0x7D, b ^ 0x20))
        else:
            out.append(b)
    return bytes(out)


def unescape(data: bytes) -> bytes:
    """Undo ``escape`` (for binary payloads such as ``X`` and ``vFile:pwrite``).

    Raises:
        ValueError: the data ends in the middle of an escape.
    """
    if b"}" not in data:
        return data
    out = bytearray()
    it = iter(data)
    for b in it:
        if b == 0x7D:
            nxt = next(it, None)
            if nxt is None:
                raise ValueError("escape at the end of the packet")
            out.append(nxt ^ 0x20)
        else:
            out.append(b)
    return bytes(out)


def frame(payload: bytes) -> bytes:
    """``payload`` (already escaped if binary) as a packet on the wire."""
    return b"$" + payload + b"#" + b"%02x" % checksum(payload)


def hex_text(text: str) -> str:
    """Text as the hex digits gdb expects in ``O`` packets and ``qRcmd``."""
    return text.encode("utf-8", "replace").hex()


class PacketDecoder:
    """Incremental parser of the bytes gdb sends.

    Args:
        max_packet: the longest payload accepted; a longer one becomes ``BadPacket("oversize")``.
    """

    def __init__(self, max_packet: int = MAX_PACKET) -> None:
        self.max_packet = max_packet
        self._buf = bytearray()
        self._in_packet = False
        self._oversize = False

    def feed(self, data: bytes) -> list[Item]:
        """Add received bytes; return the complete items they finish, in order."""
        items: list[Item] = []
        for b in data:
            item = self._packet_byte(b) if self._in_packet else self._idle_byte(b)
            if item is not None:
                items.append(item)
        return items

    def _idle_byte(self, b: int) -> Item | None:
        if b == ord("$"):
            self._start_packet()
        elif b == INTERRUPT_BYTE:
            return Interrupt()
        elif b == ord("-"):
            return Nak()
        return None                       # '+' and line noise between packets

    def _start_packet(self) -> None:
        self._in_packet = True
        self._oversize = False
        self._buf.clear()

    def _packet_byte(self, b: int) -> Item | None:
        if b == ord("$"):                 # a new start inside a packet: the old one was lost
            self._start_packet()
            return None
        self._buf.append(b)
        hash_at = len(self._buf) - 3       # '#' is always escaped in data, so it ends the packet
        if hash_at >= 0 and self._buf[hash_at] == ord("#"):
            return self._finish(hash_at)
        if len(self._buf) > self.max_packet + 3:
            self._oversize = True
            del self._buf[:-3]            # keep scanning for the end, drop the payload
        return None

    def _finish(self, hash_at: int) -> Item:
        self._in_packet = False
        payload, digits = bytes(self._buf[:hash_at]), bytes(self._buf[hash_at + 1:])
        self._buf.clear()
        if self._oversize:
            return BadPacket("oversize")
        try:
            sent = int(digits, 16)
        except ValueError:
            return BadPacket("checksum")
        if sent != checksum(payload):
            return BadPacket("checksum")
        return Packet(payload)


class ConnectionClosed(Exception):
    """The peer closed the connection (or it broke)."""


class Connection:
    """A gdb client on a socket: send and receive packets, acknowledging until no-ack mode.

    Args:
        sock: a connected stream socket.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.ack_mode = True
        self._decoder = PacketDecoder()
        self._pending: deque[Item] = deque()
        self._last_sent = b""

    # -- sending ---------------------------------------------------------------------

    def send(self, payload: bytes | str) -> None:
        """Send one packet (payload already escaped where it carries binary data)."""
        if isinstance(payload, str):
            payload = payload.encode("latin-1")
        self._last_sent = frame(payload)
        self._write(self._last_sent)

    def _write(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError as exc:
            raise ConnectionClosed(str(exc)) from None

    # -- receiving -------------------------------------------------------------------

    def receive(self) -> Packet | BadPacket | Interrupt:
        """Block for the next packet (acknowledged), bad packet, or interrupt.

        Raises:
            ConnectionClosed: the peer went away.
        """
        while True:
            while not self._pending:
                self._read(None)
            item = self._pending.popleft()
            if isinstance(item, Nak):
                if self.ack_mode and self._last_sent:
                    self._write(self._last_sent)
                continue
            if isinstance(item, BadPacket) and item.why == "checksum" and self.ack_mode:
                self._write(b"-")         # gdb sends it again; answering too would desynchronise
                continue
            if self.ack_mode and isinstance(item, Packet | BadPacket):
                self._write(b"+")
            return item

    def poll_interrupt(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a 0x03 from gdb (other input stays queued).

        Raises:
            ConnectionClosed: the peer went away.
        """
        if not any(isinstance(i, Interrupt) for i in self._pending):
            self._read(timeout)
        for item in list(self._pending):
            if isinstance(item, Interrupt):
                self._pending.remove(item)
                return True
        return False

    def _read(self, timeout: float | None) -> None:
        if timeout is not None:
            ready, _, _ = select.select([self.sock], [], [], timeout)
            if not ready:
                return
        try:
            data = self.sock.recv(65536)
        except OSError as exc:
            raise ConnectionClosed(str(exc)) from None
        if not data:
            raise ConnectionClosed("gdb closed the connection")
        self._pending.extend(self._decoder.feed(data))

"""The host side of the boundary: real TCP sockets and the terminal, behind one selector.

Only ``LiveBoundary`` uses this module. Every byte it reads becomes an input
(SOCK_ACCEPT / SOCK_DATA / SOCK_HUP / CONSOLE_IN) that the run loop applies to a
device; it never writes into the guest itself. It reads only as much as the device has
room for, so a fast client is held back by TCP flow control and memory stays bounded.
"""

from __future__ import annotations

import errno
import os
import selectors
import socket
from typing import TYPE_CHECKING

from trace_format.events import EventKind
from vmm.errors import HostError

if TYPE_CHECKING:
    from vmm.devices.console import Console
    from vmm.devices.sockets import Sockets

READ_CHUNK = 64 * 1024
TX_HIGH_WATER = 1 << 20          # stop reading a client whose replies pile up unsent
LISTEN_BACKLOG = 128


class _Conn:
    __slots__ = ("sock", "chan", "tx", "reading", "peer_closed", "broken", "closing")

    def __init__(self, sock: socket.socket, chan: int) -> None:
        self.sock = sock
        self.chan = chan
        self.tx = bytearray()
        self.reading = True
        self.peer_closed = False
        self.broken = False
        self.closing = False


def parse_listen(spec: str) -> tuple[str, int]:
    """'HOST:PORT' → (host, port). Raises HostError on a malformed value."""
    host, sep, port = spec.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise HostError(f"--listen {spec}: expected HOST:PORT, e.g. 127.0.0.1:6380")
    return host or "127.0.0.1", int(port)


class HostIO:
    """Listener, accepted connections and stdin, polled together.

    Raises:
        HostError: the listen address cannot be bound (busy, not local, bad name).
    """

    def __init__(self, listen: tuple[str, int] | None, console_input: bool, console_output) -> None:
        self.selector = selectors.DefaultSelector()
        self.conns: dict[int, _Conn] = {}
        self.closing: list[_Conn] = []
        self.paused: set[int] = set()
        self.listener: socket.socket | None = None
        self.listener_active = False
        self.address: tuple[str, int] | None = None
        self.stdin_fd: int | None = None
        self.stdin_active = False
        self.out = console_output
        if listen is not None:
            self._listen(listen)
        if console_input:
            self.stdin_fd = 0
            self._set_stdin(True)

    def _listen(self, listen: tuple[str, int]) -> None:
        host, port = listen
        try:
            sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(LISTEN_BACKLOG)
        except OSError as exc:
            reason = "address already in use" if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc))
            raise HostError(f"--listen {host}:{port}: {reason}") from None
        sock.setblocking(False)
        self.listener = sock
        self.address = sock.getsockname()[:2]
        self._set_listener(True)

    # -- registration ----------------------------------------------------------------

    def _set_listener(self, active: bool) -> None:
        if self.listener is not None and active != self.listener_active:
            if active:
                self.selector.register(self.listener, selectors.EVENT_READ, "listen")
            else:
                self.selector.unregister(self.listener)
            self.listener_active = active

    def _set_stdin(self, active: bool) -> None:
        if self.stdin_fd is not None and active != self.stdin_active:
            try:
                if active:
                    self.selector.register(self.stdin_fd, selectors.EVENT_READ, "stdin")
                else:
                    self.selector.unregister(self.stdin_fd)
            except (ValueError, OSError, PermissionError):
                self.stdin_fd = None      # not pollable (a regular file, closed): no input
                return
            self.stdin_active = active

    def _update(self, conn: _Conn) -> None:
        events = 0
        if conn.reading and not conn.peer_closed and not conn.broken and not conn.closing:
            events |= selectors.EVENT_READ
        if conn.tx and not conn.broken:
            events |= selectors.EVENT_WRITE
        try:
            key = self.selector.get_key(conn.sock)
        except KeyError:
            key = None
        if key is None and events:
            self.selector.register(conn.sock, events, conn)
        elif key is not None and not events:
            self.selector.unregister(conn.sock)
        elif key is not None and key.events != events:
            self.selector.modify(conn.sock, events, conn)

    # -- polling ---------------------------------------------------------------------

    def poll(self, sockets: Sockets, console: Console, inputs: list, timeout: float) -> None:
        """Append the inputs the host has for the devices now, waiting up to ``timeout``."""
        self._resume(sockets, console)
        for key, mask in self.selector.select(timeout):
            tag = key.data
            if tag == "listen":
                self._accept(sockets, inputs)
            elif tag == "stdin":
                self._read_stdin(console, inputs)
            else:
                if mask & selectors.EVENT_WRITE:
                    self._drain(tag)
                if mask & selectors.EVENT_READ:
                    self._read(tag, sockets, inputs)

    def _resume(self, sockets: Sockets, console: Console) -> None:
        for chan in list(self.paused):
            conn = self.conns.get(chan)
            if conn is None:
                self.paused.discard(chan)
            elif sockets.rx_room(chan) > 0 and len(conn.tx) < TX_HIGH_WATER:
                self.paused.discard(chan)
                conn.reading = True
                self._update(conn)
        if self.listener is not None and not self.listener_active and sockets.free_channel() is not None:
            self._set_listener(True)
        if self.stdin_fd is not None and not self.stdin_active and console.input_room() > 0:
            self._set_stdin(True)

    def _accept(self, sockets: Sockets, inputs: list) -> None:
        taken = {c for k, c in inputs if k == EventKind.SOCK_ACCEPT}
        while True:
            chan = next((c for c in range(len(sockets.channels))
                         if sockets.channels[c] is None and c not in taken and c not in self.conns), None)
            if chan is None:
                self._set_listener(False)      # all channels busy: clients wait in the backlog
                return
            try:
                sock, _addr = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return                         # e.g. ECONNABORTED: the client gave up
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Conn(sock, chan)
            self.conns[chan] = conn
            taken.add(chan)
            inputs.append((EventKind.SOCK_ACCEPT, chan))
            self._update(conn)

    def _read(self, conn: _Conn, sockets: Sockets, inputs: list) -> None:
        if self.conns.get(conn.chan) is not conn:
            return
        room = sockets.rx_room(conn.chan)
        if room <= 0 or len(conn.tx) >= TX_HIGH_WATER:
            conn.reading = False
            self.paused.add(conn.chan)
            self._update(conn)
            return
        try:
            data = conn.sock.recv(min(room, READ_CHUNK))
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
            conn.broken = True
        if data:
            inputs.append((EventKind.SOCK_DATA, [conn.chan, data]))
        else:
            conn.peer_closed = True
            inputs.append((EventKind.SOCK_HUP, conn.chan))
            self._update(conn)

    def _read_stdin(self, console: Console, inputs: list) -> None:
        room = console.input_room()
        if room <= 0:
            self._set_stdin(False)
            return
        try:
            data = os.read(self.stdin_fd, min(room, 4096))
        except OSError:
            data = b""
        if data:
            inputs.append((EventKind.CONSOLE_IN, data))
        else:
            self._set_stdin(False)
            self.stdin_fd = None               # end of input

    # -- output ----------------------------------------------------------------------

    def send(self, chan: int, data: bytes) -> None:
        conn = self.conns.get(chan)
        if conn is None or conn.broken:
            return
        conn.tx += data
        self._drain(conn)

    def _drain(self, conn: _Conn) -> None:
        if conn.tx and not conn.broken:
            try:
                sent = conn.sock.send(conn.tx)
                del conn.tx[:sent]
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                conn.broken = True
                conn.tx.clear()
        if conn.closing and (not conn.tx or conn.broken):
            self._forget(conn)
        else:
            self._update(conn)

    def close_channel(self, chan: int) -> None:
        conn = self.conns.pop(chan, None)
        self.paused.discard(chan)
        if conn is None:
            return
        conn.closing = True
        self._drain(conn)

    def _forget(self, conn: _Conn) -> None:
        try:
            self.selector.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        conn.sock.close()

    def write_console(self, data: bytes) -> None:
        if self.out is not None:
            try:
                self.out.write(data)
                self.out.flush()
            except (OSError, ValueError):
                self.out = None               # the terminal went away; the guest runs on

    def close(self) -> None:
        for conn in list(self.conns.values()):
            self._drain(conn)
            self._forget(conn)
        self.conns.clear()
        if self.listener is not None:
            self._set_listener(False)
            self.listener.close()
        self.selector.close()

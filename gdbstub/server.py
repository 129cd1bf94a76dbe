"""The gdb server: gdb's remote protocol on top of ``replay.timetravel.TimeTravel``.

One gdb at a time; when it disconnects the server waits for the next. Every request is
answered from the replay: registers and memory at the current position, forward and
reverse execution by ``TimeTravel`` motions, breakpoints and watchpoints kept in the
TimeTravel. A replay cannot change, so writes to registers and memory are refused.

gdb finds the guest's symbols by itself: ``qXfer:exec-file:read`` names a private copy
of the ELF embedded in the trace, and ``vFile`` serves that file (only that file), so
gdb on another machine can load it too.

A Linux program's trace is shown as a GNU/Linux process (``gdbstub/linux.py``): the
target description names the OS ABI, ``qXfer:auxv:read`` lets gdb relocate a PIE, the
exec file is the program's own path, and host I/O serves the executable, the dynamic
linker and the libraries from the trace, so ``info sharedlibrary``, ``bt`` through libc
and breakpoints in libraries work with nothing installed where gdb runs. Its threads
are the kernel's tids, as ``pPID.TID`` ids when gdb speaks the multiprocess extensions.
"""

from __future__ import annotations

import errno
import os
import shutil
import socket
import sys
import tempfile
import threading
import traceback
from collections import Counter
from collections.abc import Callable

from gdbstub import monitor
from gdbstub.hostio import HostFiles
from gdbstub.linux import LinuxProcess
from gdbstub.protocol import (BadPacket, Connection, ConnectionClosed, Interrupt, MAX_PACKET,
                              escape, hex_text)
from gdbstub.target import (RBP, RIP, RSP, encode_register, encode_registers, registers_for,
                            target_xml)
from replay.timetravel import Stop, StopReason, TimeTravel, UnreadableMemory
from vmm.errors import HostError, VmrrError

# gdb's own signal numbers (they are not the host's).
SIGINT, SIGILL, SIGTRAP, SIGFPE, SIGBUS, SIGSEGV = 2, 4, 5, 8, 10, 11
_VECTOR_SIGNALS = {0: SIGFPE, 3: SIGTRAP, 6: SIGILL, 16: SIGFPE, 17: SIGBUS, 19: SIGFPE}
# A Linux program's fatal signal, by name, in gdb's numbering.
_GDB_SIGNALS = {"SIGHUP": 1, "SIGINT": 2, "SIGQUIT": 3, "SIGILL": 4, "SIGTRAP": 5, "SIGABRT": 6,
                "SIGFPE": 8, "SIGKILL": 9, "SIGBUS": 10, "SIGSEGV": 11, "SIGSYS": 12, "SIGPIPE": 13,
                "SIGALRM": 14, "SIGTERM": 15, "SIGXCPU": 24, "SIGXFSZ": 25, "SIGVTALRM": 26,
                "SIGPROF": 27, "SIGUSR1": 30, "SIGUSR2": 31}
APPLIANCE_TID = 1                # an appliance is one CPU, shown as thread 1
Reply = str | bytes | None       # a packet payload to send, or None: nothing to send
PAGE = 0x1000
_REFUSED = "E01"                 # writes to a replay, bad arguments
_UNREADABLE = "E14"              # EFAULT: memory gdb asked for is not mapped


def _log(message: str) -> None:
    print(f"vmrr: gdbserver: {message}", file=sys.stderr, flush=True)


def crash_signal(end: dict | None) -> int:
    """The signal gdb reports for the recorded crash.

    An unhandled exception maps by its vector (#DE → SIGFPE, #UD → SIGILL, ...); an
    unmapped access, a double fault and anything else are SIGSEGV.
    """
    end = end or {}
    vector = end.get("vector")
    if end.get("kind") == "unhandled exception" and isinstance(vector, int):
        return _VECTOR_SIGNALS.get(vector, SIGSEGV)
    if end.get("kind") in _GDB_SIGNALS:      # a Linux program killed by a signal
        return _GDB_SIGNALS[end["kind"]]
    return SIGSEGV


class GdbServer:
    """A listening socket serving gdb clients, one after another, on one TimeTravel.

    Args:
        tt: the time-travel session (its position is shared by successive clients).
        host: address to bind; 127.0.0.1 unless the user asks otherwise.
        port: TCP port; 0 picks a free one (see ``address``).
        listener: an already bound socket from ``bind_listener`` (then host and port are unused).

    Raises:
        HostError: the port is busy or the address cannot be bound.
    """

    def __init__(self, tt: TimeTravel, host: str = "127.0.0.1", port: int = 1234,
                 listener: socket.socket | None = None) -> None:
        self.tt = tt
        self._listener = listener if listener is not None else bind_listener(host, port)
        self._workdir = tempfile.mkdtemp(prefix="vmrr-gdb-")
        self.process = LinuxProcess(tt) if getattr(tt.machine, "kernel", None) is not None else None
        if self.process is not None:
            self.exec_path = self.process.exec_path         # served from the trace, by its own path
        else:
            self.exec_path = _write_private(self._workdir, _exec_name(tt), tt.image.elf)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._listener.getsockname()[:2]
        return host, port

    def serve_forever(self) -> None:
        """Accept gdb clients until interrupted; a client leaving never stops the server."""
        while True:
            sock, peer = self._listener.accept()
            _log(f"gdb connected from {peer[0]}:{peer[1]}")
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                Session(self.tt, Connection(sock), self.exec_path, self.process).run()
            finally:
                sock.close()
            _log(f"gdb disconnected; waiting for the next one (icount {self.tt.icount})")

    def close(self) -> None:
        self._listener.close()
        shutil.rmtree(self._workdir, ignore_errors=True)

    def __enter__(self) -> GdbServer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def bind_listener(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port``.

    Raises:
        HostError: the port is busy or the address is not usable (one line for the user).
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        family, _, _, _, address = infos[0]
        sock = socket.socket(family, socket.SOCK_STREAM)
    except (OSError, IndexError) as exc:
        raise HostError(f"gdbserver: cannot listen on {host}:{port}: {exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(1)
    except OSError as exc:
        sock.close()
        reason = "the port is busy" if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc))
        raise HostError(f"gdbserver: cannot listen on {host}:{port}: {reason}") from None
    return sock


def _exec_name(tt: TimeTravel) -> str:
    name = os.path.basename(str(tt.image.name)) or "guest"
    return name if name.endswith(".elf") else f"{name}.elf"


def _write_private(directory: str, name: str, data: bytes) -> str:
    """Write ``data`` to a new file readable only by this user; return its path."""
    path = os.path.join(directory, name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return path


class Session:
    """One gdb connection: reads packets, answers them, until gdb detaches or leaves.

    Breakpoints and watchpoints gdb inserted are removed from the TimeTravel when the
    session ends, so a gdb that died does not leave them behind for the next one.

    Args:
        process: the Linux view of the trace, or None for an appliance.
    """

    def __init__(self, tt: TimeTravel, conn: Connection, exec_path: str,
                 process: LinuxProcess | None = None) -> None:
        self.tt = tt
        self.conn = conn
        self.exec_path = exec_path
        self.process = process
        self.registers = registers_for(process is not None)
        self.gdb_features: set[str] = set()
        self.multiprocess = False
        self.done = False
        self._breakpoints: dict[int, Counter[str]] = {}
        self._watchpoints: Counter[tuple[int, int, str]] = Counter()
        self._placed: dict[tuple[int, int, str], list[tuple[int, int, int]]] = {}
        if process is not None:
            self.files = HostFiles(process.file, process.readlink)
        else:
            self.files = HostFiles(self._exec_file, mtime=int(os.stat(exec_path).st_mtime))
        self._exact = self._exact_routes()
        self._prefixed = self._prefix_routes()

    def _exact_routes(self) -> dict[str, Callable[[], Reply]]:
        """Packets that are a fixed string."""
        return {
            "?": self.stop_status,
            "g": self.read_registers,
            "bc": lambda: self.resume(self._cont_back),
            "bs": lambda: self.resume(self._step_back),
            "k": self.kill,
            "vCont?": lambda: "vCont;c;C;s;S",
            "vMustReplyEmpty": lambda: "",
            "QStartNoAckMode": self.start_no_ack,
            "qAttached": lambda: "1",                # attached: gdb detaches on quit, never kills
            "qC": lambda: f"QC{self.thread_id(self.current_tid())}",
            # A Linux program is relocated by gdb itself, from AT_ENTRY in the auxv.
            "qOffsets": lambda: "" if self.process is not None else "Text=0;Data=0;Bss=0",
            "qfThreadInfo": lambda: "m" + ",".join(self.thread_id(t) for t in self.tids()),
            "qsThreadInfo": lambda: "l",
        }

    def _prefix_routes(self) -> list[tuple[str, Callable[[str], Reply]]]:
        """Packets with arguments, by prefix; the handler gets the rest of the packet."""
        return [
            ("qSupported", self.supported),
            ("qXfer:", self.xfer),
            ("qRcmd,", self.monitor),
            ("qSymbol", lambda _: "OK"),
            ("qAttached:", lambda _: "1"),
            ("qThreadExtraInfo,", self.thread_extra_info),
            ("vCont;", self.vcont),
            ("vFile:", self.files.handle),
            ("vKill", lambda _: self.kill() or "OK"),
            ("p", self.read_register),
            ("m", self.read_memory),
            ("Z", self.insert_point),
            ("z", self.remove_point),
            ("c", lambda _: self.resume(self._cont)),   # an address or signal is ignored
            ("C", lambda _: self.resume(self._cont)),
            ("s", lambda _: self.resume(self._step)),
            ("S", lambda _: self.resume(self._step)),
            ("H", self.select_thread),
            ("T", self.thread_alive),
            ("D", lambda _: self.detach()),
            ("G", self.refuse), ("P", self.refuse), ("M", self.refuse), ("X", self.refuse),
        ]

    # -- the loop --------------------------------------------------------------------

    def run(self) -> None:
        """Serve packets until gdb detaches, kills, or disconnects."""
        try:
            while not self.done:
                item = self.conn.receive()
                if isinstance(item, Interrupt):
                    continue                 # nothing is running: a late Ctrl-C
                if isinstance(item, BadPacket):
                    self.conn.send("E01")
                    continue
                reply = self.handle(item.payload)
                if reply is not None:
                    self.conn.send(reply)
        except ConnectionClosed:
            pass
        finally:
            self.release()

    def handle(self, payload: bytes) -> Reply:
        """The reply to one packet (None: send nothing). Unknown packets get ``""``."""
        text = payload.decode("latin-1")
        try:
            if text in self._exact:
                return self._exact[text]()
            for prefix, handler in self._prefixed:
                if text.startswith(prefix):
                    return handler(text[len(prefix):])
            return ""
        except (ValueError, IndexError):
            return "E01"                     # malformed arguments
        except ConnectionClosed:
            raise
        except VmrrError as exc:
            _log(f"{text[:40]!r}: {exc}")
            return "E01"
        except Exception:                    # a bug: say so, keep serving
            _log(f"internal error answering {text[:40]!r}:\n{traceback.format_exc()}")
            return "E01"

    def release(self) -> None:
        """Take this session's breakpoints and watchpoints out of the TimeTravel."""
        for address in self._breakpoints:
            self.tt.remove_breakpoint(address)
        for key in self._watchpoints:
            self._unplace_watchpoint(key)
        self._breakpoints.clear()
        self._watchpoints.clear()

    def _unplace_watchpoint(self, key: tuple[int, int, str]) -> None:
        for _virtual, watched, n in self._placed.pop(key, ()):
            self.tt.remove_watchpoint(watched, n, key[2])

    # -- connection management ---------------------------------------------------------

    def supported(self, args: str) -> str:
        self.gdb_features = {f[:-1] for f in args.lstrip(":").split(";") if f.endswith("+")}
        features = [f"PacketSize={MAX_PACKET:x}", "QStartNoAckMode+", "qXfer:features:read+",
                    "qXfer:exec-file:read+", "ReverseStep+", "ReverseContinue+", "vContSupported+"]
        features += [f"{f}+" for f in ("swbreak", "hwbreak") if f in self.gdb_features]
        if self.process is not None:
            features += ["qXfer:auxv:read+", "qXfer:threads:read+"]
            self.multiprocess = "multiprocess" in self.gdb_features
            if self.multiprocess:
                features.append("multiprocess+")
        return ";".join(features)

    def start_no_ack(self) -> None:
        self.conn.send("OK")                 # acknowledged one last time, by gdb
        self.conn.ack_mode = False
        return None

    def detach(self) -> None:
        self.conn.send("OK")
        self.done = True
        return None

    def kill(self) -> None:
        self.done = True                     # the replay stays: the next gdb finds it here
        return None

    # -- threads -------------------------------------------------------------------------

    def tids(self) -> list[int]:
        return self.process.tids() if self.process is not None else [APPLIANCE_TID]

    def current_tid(self) -> int:
        return self.process.current_tid() if self.process is not None else APPLIANCE_TID

    def thread_id(self, tid: int) -> str:
        """A thread as gdb names it: ``pPID.TID`` (multiprocess) or ``TID``, in hex."""
        if self.multiprocess and self.process is not None:
            return f"p{self.process.pid:x}.{tid:x}"
        return f"{tid:x}"

    def _known_thread(self, text: str) -> bool:
        """Whether a thread-id from gdb names our thread(s): ``TID``, ``pPID.TID``, -1, 0."""
        if text.startswith("p"):
            pid_text, _, text = text[1:].partition(".")
            if self.process is None or pid_text not in ("-1", "0") and int(pid_text, 16) != self.process.pid:
                return False
            text = text or "-1"
        return text in ("-1", "0") or int(text, 16) in self.tids()

    def thread_alive(self, thread: str) -> str:
        return "OK" if self._known_thread(thread) else "E01"

    def select_thread(self, args: str) -> str:
        """``Hg``/``Hc`` THREAD: every thread is stopped at one position. ``Hg`` chooses whose
        registers ``g``/``p`` show; execution always moves the whole machine (all-stop)."""
        thread = args[1:] or "0"
        if not self._known_thread(thread):
            return "E01"
        if args[:1] == "g":
            tid = self._tid_of(thread)
            self.selected_tid = None if tid in (None, self.current_tid()) else tid
        return "OK"

    def _tid_of(self, thread: str) -> int | None:
        text = thread.partition(".")[2] if thread.startswith("p") else thread
        text = text or "-1"
        return None if text in ("-1", "0") else int(text, 16)

    def thread_extra_info(self, thread: str) -> str:
        if self.process is None:
            return hex_text("vmrr guest CPU")
        tid = self._tid_of(thread)
        return hex_text(self.process.thread_state(tid) if tid is not None else "vmrr replay")

    def refuse(self, _args: str) -> str:
        return _REFUSED                      # a replay's registers and memory cannot change

    # -- qXfer -----------------------------------------------------------------------

    def xfer(self, args: str) -> bytes:
        obj, op, annex, window = args.split(":", 3)
        if op != "read":
            return b""
        if obj == "features":
            data = target_xml(self.process is not None) if annex == "target.xml" else None
        elif obj == "exec-file":
            data = self.exec_path.encode()
        elif obj == "auxv" and self.process is not None:
            data = self.process.auxv()
        elif obj == "threads" and self.process is not None:
            data = self.process.threads_xml(self.thread_id)
        else:
            return b""
        if data is None:
            return b"E00"
        offset, length = (int(x, 16) for x in window.split(","))
        chunk = data[offset:offset + length]
        return (b"l" if offset + length >= len(data) else b"m") + escape(chunk)

    # -- registers and memory ------------------------------------------------------------

    def register_values(self) -> dict[str, int]:
        values = self.tt.registers()
        if self.process is not None:
            tid = getattr(self, "selected_tid", None)
            if tid is not None and tid in self.tids():
                values = self.process.thread_registers(tid, values)
            values = {**values, "orig_rax": -1}  # a stop outside a system call, as Linux shows it
        return values

    def read_registers(self) -> str:
        return encode_registers(self.register_values(), self.registers)

    def read_register(self, args: str) -> str:
        number = int(args, 16)
        if number >= len(self.registers):
            return "E01"
        return encode_register(self.registers[number], self.register_values())

    def read_memory(self, args: str) -> str:
        address, length = (int(x, 16) for x in args.split(","))
        data = self._readable_prefix(address, min(length, MAX_PACKET // 2))
        return data.hex() if data else _UNREADABLE

    def _readable_prefix(self, address: int, length: int) -> bytes:
        """As many bytes from ``address`` as can be read, up to ``length``."""
        if length == 0:
            return b""
        try:
            return self.tt.read_memory(address, length)
        except UnreadableMemory:
            pass
        out = b""
        while len(out) < length:             # page by page up to the first hole
            here = address + len(out)
            step = min(length - len(out), PAGE - here % PAGE)
            try:
                out += self.tt.read_memory(here, step)
            except UnreadableMemory:
                data = self.process.untouched(here, step) if self.process is not None else None
                if data is None:
                    break
                out += data
        return out

    # -- breakpoints and watchpoints -----------------------------------------------------

    def insert_point(self, args: str) -> str:
        kind, address, length = _point_args(args)
        if kind in ("0", "1"):
            counts = self._breakpoints.setdefault(address, Counter())
            if not counts:
                self.tt.add_breakpoint(address)
            counts[kind] += 1
            return "OK"
        if kind in _WATCH_KINDS:
            key = (address, length, _WATCH_KINDS[kind])
            if not self._watchpoints[key]:
                placed = self._place_watchpoint(*key)
                if placed is None:
                    return "E01"             # gdb: "Could not insert hardware watchpoint"
                self._placed[key] = placed
            self._watchpoints[key] += 1
            return "OK"
        return ""

    def _place_watchpoint(self, address: int, length: int, kind: str) -> list[tuple[int, int, int]] | None:
        """Add the TimeTravel watchpoints for a virtual range: [(virtual, watched, length)].

        An appliance's addresses are physical already. A Linux program's range is watched
        through the frames behind it now (Unicorn reports physical addresses), so a page
        with no frame yet cannot be watched, and a page that moves to another frame (fork,
        mremap) is not followed.
        """
        if self.process is None:
            ranges = [(address, address, length)]
        else:
            ranges = self.process.physical_ranges(address, length)
            if ranges is None:
                return None
        for _virtual, watched, n in ranges:
            self.tt.add_watchpoint(watched, n, kind)
        return ranges

    def _watch_address(self, watched: int) -> int:
        """The virtual address gdb knows for an address a TimeTravel watchpoint reported."""
        for ranges in self._placed.values():
            for virtual, start, n in ranges:
                if start <= watched < start + n:
                    return virtual + (watched - start)
        return watched

    def remove_point(self, args: str) -> str:
        kind, address, length = _point_args(args)
        if kind in ("0", "1"):
            counts = self._breakpoints.get(address)
            if counts is not None and counts[kind]:
                counts[kind] -= 1
                if not +counts:
                    del self._breakpoints[address]
                    self.tt.remove_breakpoint(address)
            return "OK"
        if kind in _WATCH_KINDS:
            key = (address, length, _WATCH_KINDS[kind])
            if self._watchpoints[key]:
                self._watchpoints[key] -= 1
                if not self._watchpoints[key]:
                    del self._watchpoints[key]
                    self._unplace_watchpoint(key)
            return "OK"
        return ""

    # -- execution -----------------------------------------------------------------------

    def vcont(self, args: str) -> str | None:
        for action in args.split(";"):
            verb, _, thread = action.partition(":")
            if thread and not self._known_thread(thread):
                continue
            if verb[:1] in ("c", "C"):
                return self.resume(self._cont)
            if verb[:1] in ("s", "S"):
                return self.resume(self._step)
        return "E01"

    def _cont(self, cancel: threading.Event) -> Stop:
        return self.tt.cont(cancel=cancel)

    def _cont_back(self, cancel: threading.Event) -> Stop:
        return self.tt.cont_back(cancel=cancel)

    def _step(self, _cancel: threading.Event) -> Stop:
        return self.tt.step()

    def _step_back(self, _cancel: threading.Event) -> Stop:
        return self.tt.step_back()

    def resume(self, motion: Callable[[threading.Event], Stop]) -> str:
        """Run ``motion`` in a worker while watching for gdb's Ctrl-C; the stop reply."""
        was_at_end = self.tt.icount == self.tt.last_icount
        cancel = threading.Event()
        outcome: dict[str, object] = {}

        def work() -> None:
            try:
                outcome["stop"] = motion(cancel)
            except BaseException as exc:     # handed to the serving thread
                outcome["error"] = exc

        worker = threading.Thread(target=work, name="vmrr-gdb-motion", daemon=True)
        worker.start()
        try:
            while worker.is_alive():
                if self.conn.poll_interrupt(0.05):
                    cancel.set()
        except BaseException:                # gdb left, or the server is being stopped
            cancel.set()
            worker.join()
            raise
        worker.join()
        return self._motion_reply(outcome, was_at_end)

    def _motion_reply(self, outcome: dict[str, object], was_at_end: bool) -> str:
        error = outcome.get("error")
        if isinstance(error, VmrrError):
            _log(f"replay error: {error}")
            self.conn.send("O" + hex_text(f"vmrr: {error}\n"))
            return self._stop_packet(SIGTRAP)
        if error is not None:
            raise error  # type: ignore[misc]
        return self.stop_reply(outcome["stop"], was_at_end)  # type: ignore[arg-type]

    # -- stop replies --------------------------------------------------------------------

    def stop_status(self) -> str:
        """Answer to ``?``: why the target is stopped now (the crash signal at the crash)."""
        if self._at_crash():
            return self._stop_packet(crash_signal(self.tt.end))
        return self._stop_packet(SIGTRAP)

    def _at_crash(self) -> bool:
        return self.tt.crash_icount is not None and self.tt.icount == self.tt.crash_icount

    def stop_reply(self, stop: Stop, was_at_end: bool = False) -> str:
        self.selected_tid = None                     # the machine moved: gdb selects again
        """The ``T`` packet for a Stop of the TimeTravel."""
        reason = stop.reason
        if reason is StopReason.HISTORY_START:
            return self._stop_packet(SIGTRAP, "replaylog:begin;")
        if reason is StopReason.HISTORY_END or (reason is StopReason.CRASH and was_at_end):
            return self._stop_packet(SIGTRAP, "replaylog:end;")
        if reason is StopReason.CRASH:
            return self._stop_packet(crash_signal(self.tt.end))
        if reason is StopReason.CANCELLED:
            return self._stop_packet(SIGINT)
        if reason is StopReason.BREAKPOINT:
            return self._stop_packet(SIGTRAP, self._breakpoint_reason(stop))
        if reason is StopReason.WATCHPOINT:
            name = {"w": "watch", "r": "rwatch", "a": "awatch"}.get(stop.watch_kind or "w", "watch")
            return self._stop_packet(SIGTRAP, f"{name}:{self._watch_address(stop.address or 0):x};")
        return self._stop_packet(SIGTRAP)

    def _breakpoint_reason(self, stop: Stop) -> str:
        address = stop.address if stop.address is not None else self.tt.registers()["rip"]
        kinds = self._breakpoints.get(address, Counter())
        if kinds["0"] and "swbreak" in self.gdb_features:
            return "swbreak:;"
        if kinds["1"] and "hwbreak" in self.gdb_features:
            return "hwbreak:;"
        return ""

    def _stop_packet(self, signal: int, reason: str = "") -> str:
        regs = self.register_values()
        expedite = "".join(f"{n:02x}:{encode_register(self.registers[n], regs)};" for n in (RBP, RSP, RIP))
        return f"T{signal:02x}{reason}{expedite}thread:{self.thread_id(self.current_tid())};"

    # -- monitor -------------------------------------------------------------------------

    def monitor(self, args: str) -> str:
        line = bytes.fromhex(args).decode("utf-8", "replace")
        text = monitor.run(self.tt, line)
        for i in range(0, len(text), 512):   # keep each O packet well under PacketSize
            self.conn.send("O" + hex_text(text[i:i + 512]))
        return "OK"

    # -- host I/O: an appliance's exec file only ------------------------------------------

    def _exec_file(self, path: str) -> bytes | None:
        if path != self.exec_path:
            return None
        with open(self.exec_path, "rb") as f:
            return f.read()


_WATCH_KINDS = {"2": "w", "3": "r", "4": "a"}


def _point_args(args: str) -> tuple[str, int, int]:
    """``TYPE,ADDR,KIND[;cond...]`` of Z/z → (type, address, length or kind)."""
    kind, address, length = args.split(";", 1)[0].split(",")[:3]
    return kind, int(address, 16), int(length, 16)

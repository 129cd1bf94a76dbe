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
import signal as signal_module
import socket
import sys
import tempfile
import threading
import traceback
from collections import Counter
from collections.abc import Callable

from gdbstub import monitor
from gdbstub.hostio import HostFiles
from gdbstub.inferiors import Inferiors
from gdbstub.linux import LinuxProcess
from gdbstub.protocol import (BadPacket, Connection, ConnectionClosed, Interrupt, MAX_PACKET,
                              escape, hex_text)
from gdbstub.target import (RBP, RIP, RSP, encode_register, encode_registers, g_packet_registers,
                            registers_for, target_xml)
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
        # A stop carries the registers gdb needs to show where it is; a Linux program's,
        # every available one of its g packet: gdb resumes one inferior at a time while
        # the replay moves them all, and would keep the others of a thread it did not
        # resume from before.
        self._expedited = ((RBP, RSP, RIP) if process is None else
                           tuple(n for n, reg in enumerate(g_packet_registers(True)) if reg.source is not None))
        self.gdb_features: set[str] = set()
        self.multiprocess = False
        self.done = False
        # Hg: whose registers and memory gdb reads: (pid, tid), tid None for "a thread of
        # pid"; None for the thread the last stop named. Every stop selects the thread it
        # names, as gdb assumes.
        self.selected: tuple[int, int | None] | None = None
        self.inferiors = Inferiors(process) if process is not None else None
        # Stop replies due at this position, each for the motions it answers ("c", "s",
        # "bc", "bs"): a motion that met several events reports one and keeps the rest.
        self._pending: list[tuple[frozenset[str], Callable[[], str]]] = []
        self._vforks: dict[int, tuple[int, int]] = {}   # a reported vfork child -> its parent thread
        self._was_at_end = False             # the motion under way began at the end of history
        # Breakpoints by (pid, address) -> kinds ("0" software, "1" hardware): a Linux
        # program's are per process when gdb follows forks (a Z0 applies to the process
        # ``Hg`` names, as gdbserver does; a fork's child inherits its parent's, as it
        # inherits the int3 bytes in its memory), pid None otherwise (every process).
        self._breakpoints: dict[tuple[int | None, int], set[str]] = {}
        self._watchpoints: Counter[tuple[int | None, int, int, str]] = Counter()   # pid, address, length, kind
        self._placed: dict[tuple[int | None, int, int, str], list[tuple[int, int, int]]] = {}
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
            "qC": lambda: f"QC{self.thread_id(*reversed(self._stop_thread()))}",
            "D": self.detach,
            # A Linux program is relocated by gdb itself, from AT_ENTRY in the auxv.
            "qOffsets": lambda: "" if self.process is not None else "Text=0;Data=0;Bss=0",
            "qfThreadInfo": lambda: "m" + ",".join(self.thread_id(t, p) for p, t in self._listed()),
            "qsThreadInfo": lambda: "l",
        }

    def _prefix_routes(self) -> list[tuple[str, Callable[[str], Reply]]]:
        """Packets with arguments, by prefix; the handler gets the rest of the packet."""
        return [
            ("qSupported", self.supported),
            ("qXfer:", self.xfer),
            ("qRcmd,", self.monitor),
            ("qSymbol", lambda _: "OK"),
            ("qAttached:", self.attached),
            ("qThreadExtraInfo,", self.thread_extra_info),
            ("vCont;", self.vcont),
            ("vFile:", self.files.handle),
            ("vKill;", self.kill_process),
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
            ("D;", self.detach_process),
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
        for address in {address for _pid, address in self._breakpoints}:
            self.tt.remove_breakpoint(address)
        for key in self._watchpoints:
            self._unplace_watchpoint(key)
        self._breakpoints.clear()
        self._watchpoints.clear()

    def _unplace_watchpoint(self, key: tuple[int | None, int, int, str]) -> None:
        for _virtual, watched, n in self._placed.pop(key, ()):
            self.tt.remove_watchpoint(watched, n, key[3])

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
                features += [f"{f}+" for f in _PROCESS_EVENTS if f in self.gdb_features]
            self.inferiors.start(follow=self._reports("fork-events"))
        return ";".join(features)

    def _reports(self, feature: str) -> bool:
        """Whether gdb and this session agreed on ``feature`` (fork-events, ...)."""
        return self.multiprocess and feature in self.gdb_features

    def start_no_ack(self) -> None:
        self.conn.send("OK")                 # acknowledged one last time, by gdb
        self.conn.ack_mode = False
        return None

    def detach(self) -> None:
        self.conn.send("OK")
        self.done = True
        return None

    def detach_process(self, pid: str) -> None:
        """``D;PID`` (multiprocess): gdb lets go of one process — a fork's child under
        ``detach-on-fork`` (the default), or each inferior in turn as it quits. The process
        is hidden from this session; the session ends when gdb holds no process any more,
        else when gdb closes the connection."""
        self._let_go(int(pid, 16))
        self.conn.send("OK")
        return None

    def kill_process(self, pid: str) -> str:
        """``vKill;PID``: a replay cannot kill; the process is let go of as by ``D;PID``."""
        self._let_go(int(pid, 16))
        return "OK"

    def _let_go(self, pid: int) -> None:
        if self.inferiors is None:
            self.done = True
            return
        self.inferiors.let_go(pid)           # a vfork child's parent still hears vforkdone
        if self.inferiors.nothing_left():
            self.done = True

    def kill(self) -> None:
        self.done = True                     # the replay stays: the next gdb finds it here
        return None

    # -- threads -------------------------------------------------------------------------
    #
    # A Linux program's threads are (pid, tid) pairs: every live thread of every live
    # process at the current position. gdb names them pPID.TID (multiprocess) or TID
    # (tids are unique across processes, as on Linux); it adds an inferior for every pid
    # it meets in a thread list or a stop reply.

    def threads(self) -> list[tuple[int, int]]:
        """(pid, tid) of every thread gdb can see now (gdb/inferiors.py), the one on the
        CPU first if it is one."""
        if self.inferiors is None:
            return [(APPLIANCE_TID, APPLIANCE_TID)]
        return self.inferiors.threads()

    def _listed(self) -> list[tuple[int, int]]:
        """The threads for a thread list: gdb holds their processes as inferiors now."""
        threads = self.threads()
        if self.inferiors is not None:
            self.inferiors.listed(pid for pid, _tid in threads)
        return threads

    def _stop_thread(self) -> tuple[int, int]:
        """(pid, tid) a stop names (``Inferiors.stop_thread``)."""
        if self.inferiors is None:
            return APPLIANCE_TID, APPLIANCE_TID
        return self.inferiors.stop_thread()

    def tids(self) -> list[int]:
        return [tid for _pid, tid in self.threads()]

    def current_tid(self) -> int:
        return self.process.current_tid() if self.process is not None else APPLIANCE_TID

    def _pid_of(self, tid: int) -> int:
        if self.process is None:
            return APPLIANCE_TID
        pid = self.process.pid_of(tid)
        return pid if pid is not None else self.process.pid

    def thread_id(self, tid: int, pid: int | None = None) -> str:
        """A thread as gdb names it: ``pPID.TID`` (multiprocess) or ``TID``, in hex."""
        if self.multiprocess and self.process is not None:
            return f"p{self._pid_of(tid) if pid is None else pid:x}.{tid:x}"
        return f"{tid:x}"

    def _parse_thread(self, text: str) -> tuple[int | None, int | None] | None:
        """A thread-id from gdb → (pid, tid) of ours, None standing for "any" (-1, 0);
        None when it names no live process or thread. ``TID``, ``pPID``, ``pPID.TID``."""
        if text.startswith("p"):
            pid_text, _, tid_text = text[1:].partition(".")
        else:
            pid_text, tid_text = "-1", text
        pid = None if pid_text in ("-1", "0") else int(pid_text, 16)
        tid = None if tid_text in ("", "-1", "0") else int(tid_text, 16)
        threads = self.threads()
        if tid is not None:
            if tid not in (t for _p, t in threads):
                return None
            owner = self._pid_of(tid)
            if pid is not None and pid != owner:
                return None
            return owner, tid
        if pid is not None and pid not in (p for p, _t in threads):
            return None
        return pid, None

    def _known_thread(self, text: str) -> bool:
        """Whether a thread-id from gdb names our thread(s): ``TID``, ``pPID.TID``, -1, 0."""
        return self._parse_thread(text) is not None

    def thread_alive(self, thread: str) -> str:
        return "OK" if self._known_thread(thread) else "E01"

    def select_thread(self, args: str) -> str:
        """``Hg``/``Hc`` THREAD: every thread is stopped at one position. ``Hg`` chooses whose
        registers ``g``/``p`` show and, for a Linux program, whose memory ``m`` reads (that
        thread's process's page tables); execution always moves the whole machine
        (all-stop)."""
        parsed = self._parse_thread(args[1:] or "0")
        if parsed is None:
            return "E01"
        if args[:1] == "g" and self.process is not None:
            pid, tid = parsed
            self.selected = None if pid is None else (pid, tid)
        return "OK"

    def _selected_pid(self) -> int | None:
        """The process whose memory gdb reads now: the one ``Hg`` named, else the one
        of the thread the last stop named (None for an appliance)."""
        if self.process is None:
            return None
        return self.selected[0] if self.selected is not None else self._stop_thread()[0]

    def _selected_tid(self) -> int | None:
        """The thread whose registers gdb reads now (``Hg``'s, else the last stop's)."""
        if self.process is None:
            return None
        if self.selected is None:
            return self._stop_thread()[1]
        pid, tid = self.selected
        return tid if tid is not None else self.process.thread_of(pid)

    def _tid_of(self, thread: str) -> int | None:
        parsed = self._parse_thread(thread)
        return None if parsed is None else parsed[1]

    def attached(self, pid: str) -> str:
        """``qAttached:PID``: gdb detaches from every process on quit, never kills one."""
        return "1"

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
            data = self._exec_file_of(annex)
        elif obj == "auxv" and self.process is not None:
            data = self.process.auxv(self._selected_pid())
        elif obj == "threads" and self.process is not None:
            if offset_zero(window):
                self._listed()
            data = self.process.threads_xml(lambda pid, tid: self.thread_id(tid, pid), self.inferiors.shown)
        else:
            return b""
        if data is None:
            return b"E00"
        offset, length = (int(x, 16) for x in window.split(","))
        chunk = data[offset:offset + length]
        return (b"l" if offset + length >= len(data) else b"m") + escape(chunk)

    def _exec_file_of(self, annex: str) -> bytes | None:
        """``qXfer:exec-file:read:PID``: the program process PID runs (no PID: the selected
        process's); an appliance's private copy of its ELF."""
        if self.process is None:
            return self.exec_path.encode()
        pid = int(annex, 16) if annex else self._selected_pid()
        path = self.process.exe(pid)
        return path.encode() if path is not None else None

    # -- registers and memory ------------------------------------------------------------

    def register_values(self, tid: int | None = None) -> dict[str, int]:
        """The registers of thread ``tid`` (None: the one ``Hg`` selected, else the CPU's)."""
        values = self.tt.registers()
        if self.process is not None:
            tid = tid if tid is not None else self._selected_tid()
            values = self.process.thread_registers(tid if tid is not None else self.current_tid(), values)
            values = {**values, "orig_rax": -1}  # a stop outside a system call, as Linux shows it
        return values

    def read_registers(self) -> str:
        return encode_registers(self.register_values(), g_packet_registers(self.process is not None))

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
        """As many bytes from ``address`` as can be read, up to ``length``. A Linux
        program's memory is the selected thread's process's (its own page tables)."""
        if length == 0:
            return b""
        if self.process is not None:
            return self._process_prefix(address, length)
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
                break
        return out

    def _process_prefix(self, address: int, length: int) -> bytes:
        pid = self._selected_pid()
        data = self.process.read_memory(address, length, pid)
        if data is not None:
            return data
        out = b""
        while len(out) < length:             # page by page up to the first hole
            here = address + len(out)
            data = self.process.read_memory(here, min(length - len(out), PAGE - here % PAGE), pid)
            if data is None:
                break
            out += data
        return out

    # -- breakpoints and watchpoints -----------------------------------------------------

    def insert_point(self, args: str) -> str:
        kind, address, length = _point_args(args)
        if kind in ("0", "1"):
            self.tt.add_breakpoint(address)
            self._breakpoints.setdefault((self._point_pid(), address), set()).add(kind)
            return "OK"
        if kind in _WATCH_KINDS:
            key = (self._point_pid(), address, length, _WATCH_KINDS[kind])
            if not self._watchpoints[key]:
                placed = self._place_watchpoint(*key)
                if placed is None:
                    return "E01"             # gdb: "Could not insert hardware watchpoint"
                self._placed[key] = placed
            self._watchpoints[key] += 1
            return "OK"
        return ""

    def _point_pid(self) -> int | None:
        """The process a Z/z packet applies to: ``Hg``'s (None: every process)."""
        return self._selected_pid() if self._follows() else None

    def _has_breakpoint(self, pid: int, address: int) -> set[str]:
        """The kinds of breakpoint gdb has at ``address`` in process ``pid``."""
        return self._breakpoints.get((pid, address)) or self._breakpoints.get((None, address)) or set()

    def _inherit_breakpoints(self, parent: int, child: int) -> None:
        """A fork: the child has its parent's breakpoints (and none it had before, going
        backward and forward again)."""
        self._drop_breakpoints(child)
        for (pid, address), kinds in list(self._breakpoints.items()):
            if pid == parent:
                self._breakpoints[(child, address)] = set(kinds)

    def _drop_breakpoints(self, pid: int) -> None:
        """Process ``pid`` has no breakpoints any more (an exec; a fork's child anew)."""
        for key in [key for key in self._breakpoints if key[0] == pid]:
            del self._breakpoints[key]
            if not any(at == key[1] for _pid, at in self._breakpoints):
                self.tt.remove_breakpoint(key[1])

    def _place_watchpoint(self, pid: int | None, address: int, length: int,
                          kind: str) -> list[tuple[int, int, int]] | None:
        """Add the TimeTravel watchpoints for a virtual range: [(virtual, watched, length)].

        An appliance's addresses are physical already. A Linux program's range is watched
        through the frames behind it now (Unicorn reports physical addresses), so a page
        with no frame yet cannot be watched, and a page that moves to another frame (fork,
        mremap) is not followed.
        """
        if self.process is None:
            ranges = [(address, address, length)]
        else:
            ranges = self.process.physical_ranges(address, length, pid)
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
            key = (self._point_pid(), address)
            kinds = self._breakpoints.get(key)
            if kinds is not None:
                kinds.discard(kind)
                if not kinds:
                    del self._breakpoints[key]
                    if not any(at == address for _pid, at in self._breakpoints):
                        self.tt.remove_breakpoint(address)
            return "OK"
        if kind in _WATCH_KINDS:
            key = (self._point_pid(), address, length, _WATCH_KINDS[kind])
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

    def _cont(self, cancel: threading.Event) -> Stop | str:
        """Forward to a breakpoint or watchpoint hit in a process gdb sees, or to the end
        of history; on the way, at each position where a process may begin, exec or end,
        stop if that is an event gdb is to hear of (``_process_events``)."""
        pending = self._take_pending("c")
        if pending is not None:
            return pending
        condition = self._breakpoint_condition()
        while True:
            events = self.process.next_event_position(self.tt.icount) if self._follows() else None
            stop = self.tt.cont(cancel=cancel, until=events, condition=condition)
            if stop.reason is not StopReason.SEEK:
                return self._with_gone(stop, "c")
            replies = self._process_events()
            if replies:
                return self._first_of(replies, {"c", "s"})

    def _cont_back(self, cancel: threading.Event) -> Stop | str:
        pending = self._take_pending("bc")
        if pending is not None:
            return pending
        return self._with_gone(self.tt.cont_back(cancel=cancel, condition=self._breakpoint_condition()), "bc")

    def _step(self, _cancel: threading.Event) -> Stop | str:
        """One instruction; one that forks, execs or ends a process gdb follows reports
        that first, and the step's own stop on the next step (as ptrace does after a
        system call stepped over)."""
        pending = self._take_pending("s")
        if pending is not None:
            return pending
        stop = self.tt.step()
        if stop.reason is StopReason.STEP and self._follows():
            replies = self._process_events()
            if replies:
                return self._first_of(replies + [(frozenset({"s"}), lambda: self._stop_packet(SIGTRAP))],
                                      {"c", "s"})
        return self._with_gone(stop, "s")

    def _step_back(self, _cancel: threading.Event) -> Stop | str:
        pending = self._take_pending("bs")
        if pending is not None:
            return pending
        return self._with_gone(self.tt.step_back(), "bs")

    def _take_pending(self, motion: str) -> str | None:
        """The next stop reply due at this position for ``motion``; replies due to other
        motions are dropped (the position moves on)."""
        while self._pending:
            answers, make = self._pending.pop(0)
            if motion in answers:
                return make()
        return None

    def _first_of(self, replies: list, answers: set[str]) -> str:
        """Report the first of ``replies`` (packets, or (motions, maker) pairs); the rest
        wait for the next motion (packets: any of ``answers``)."""
        pending = [item if isinstance(item, tuple) else (frozenset(answers), lambda packet=item: packet)
                   for item in replies[1:]]
        self._pending = pending + self._pending
        first = replies[0]
        return first if isinstance(first, str) else first[1]()

    def _with_gone(self, stop: Stop, motion: str) -> Stop | str:
        """A motion's stop, after the end of each process gdb holds that is gone here
        (``Inferiors.gone``): going backward before its fork, or forward past an end
        that no event position caught."""
        if not self._follows():
            return stop
        gone = self._gone_packets()
        if not gone:
            return stop
        was_at_end = self._was_at_end
        return self._first_of(gone + [(frozenset({motion}), lambda: self.stop_reply(stop, was_at_end))], {motion})

    def _breakpoint_condition(self) -> Callable[[int], bool] | None:
        """A breakpoint stops a process gdb sees that has it (``_breakpoints``)."""
        if self.inferiors is None:
            return None
        kernel, inferiors = self.process.kernel, self.inferiors
        return lambda address: inferiors.shown(kernel.pid) and bool(self._has_breakpoint(kernel.pid, address))

    # -- process events ----------------------------------------------------------------

    def _follows(self) -> bool:
        """gdb takes fork events: it is told of processes as they begin, exec and end."""
        return self.inferiors is not None and self.inferiors.follow

    def _process_events(self) -> list[str]:
        """The stop replies for what happened to processes at this position, in order:
        ``fork``/``vfork`` for the child of a process gdb sees, ``exec`` (if gdb asked for
        those), ``W``/``X`` with ``process:PID`` for the end of a process gdb holds
        (``Inferiors.gone``), ``vforkdone`` for the parent of a vfork child that exec'd
        or ended."""
        inferiors = self.inferiors
        replies: list[str] = []
        done_vforks: list[int] = []
        births = inferiors.births()
        for child, parent, tid, vfork in births:
            kind = "vfork" if vfork else "fork"
            if not self._reports(f"{kind}-events"):
                continue
            inferiors.take_births([(child,)])
            self._inherit_breakpoints(parent, child)
            if vfork:
                self._vforks[child] = (parent, tid)
            replies.append(self._stop_packet(SIGTRAP, f"{kind}:{self.thread_id(child, child)};",
                                             thread=(parent, tid)))
        for pid, tid, path in self.process.execs():
            if pid in self._vforks:
                done_vforks.append(pid)
            self._drop_breakpoints(pid)     # the program they were in is gone; gdb inserts anew
            if inferiors.shown(pid) and self._reports("exec-events"):
                replies.append(self._stop_packet(SIGTRAP, f"exec:{path.encode().hex()};", thread=(pid, tid)))
        for pid, _status in self.process.deaths():
            if pid in self._vforks:
                done_vforks.append(pid)
        replies += self._gone_packets()
        for child in done_vforks:
            parent, tid = self._vforks.pop(child)
            if inferiors.shown(parent) and parent in self.process.pids():
                replies.append(self._stop_packet(SIGTRAP, "vforkdone:;", thread=(parent, tid)))
        return replies

    def _gone_packets(self) -> list[str]:
        packets = []
        for pid, status in self.inferiors.gone():
            self._vforks.pop(pid, None)
            code, signo = (status >> 8) & 0xFF, status & 0x7F
            packets.append(f"X{_gdb_signal(signo):02x};process:{pid:x}" if signo
                           else f"W{code:02x};process:{pid:x}")
        return packets

    def resume(self, motion: Callable[[threading.Event], Stop]) -> str:
        """Run ``motion`` in a worker while watching for gdb's Ctrl-C; the stop reply."""
        was_at_end = self._was_at_end = self.tt.icount == self.tt.last_icount
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
            self._pending = []
            self.conn.send("O" + hex_text(f"vmrr: {error}\n"))
            return self._stop_packet(SIGTRAP)
        if error is not None:
            raise error  # type: ignore[misc]
        stop = outcome["stop"]
        if isinstance(stop, str):
            return stop                      # a process event, made where it happened
        return self.stop_reply(stop, was_at_end)  # type: ignore[arg-type]

    # -- stop replies --------------------------------------------------------------------

    def stop_status(self) -> str:
        """Answer to ``?``: why the target is stopped now (the crash signal at the crash)."""
        if self._at_crash():
            return self._stop_packet(crash_signal(self.tt.end))
        return self._stop_packet(SIGTRAP)

    def _at_crash(self) -> bool:
        return self.tt.crash_icount is not None and self.tt.icount == self.tt.crash_icount

    def stop_reply(self, stop: Stop, was_at_end: bool = False) -> str:
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
        kinds = self._has_breakpoint(self._stop_thread()[0], address)
        if "0" in kinds and "swbreak" in self.gdb_features:
            return "swbreak:;"
        if "1" in kinds and "hwbreak" in self.gdb_features:
            return "hwbreak:;"
        return ""

    def _stop_packet(self, signal: int, reason: str = "", thread: tuple[int, int] | None = None) -> str:
        """A ``T`` packet naming ``thread`` (pid, tid; default ``_stop_thread``), which
        becomes the thread ``g`` and ``m`` read (gdb assumes the stop thread is selected).
        The thread comes before the registers so that gdb knows whose they are."""
        pid, tid = thread if thread is not None else self._stop_thread()
        self.selected = None if self.process is None else (pid, tid)
        if self.inferiors is not None:
            self.inferiors.listed([pid])
        regs = self.register_values(tid if self.process is not None else None)
        expedite = "".join(f"{n:02x}:{encode_register(self.registers[n], regs)};" for n in self._expedited)
        return f"T{signal:02x}{reason}thread:{self.thread_id(tid, pid)};{expedite}"

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
_PROCESS_EVENTS = ("fork-events", "vfork-events", "exec-events")


def _gdb_signal(signo: int) -> int:
    """A Linux signal number in gdb's numbering (which differs above 15)."""
    try:
        name = signal_module.Signals(signo).name
    except ValueError:
        return signo
    return _GDB_SIGNALS.get(name, signo)


def offset_zero(window: str) -> bool:
    """Whether a qXfer window ``OFFSET,LENGTH`` starts at 0 (gdb's first read of an object)."""
    return int(window.split(",")[0], 16) == 0


def _point_args(args: str) -> tuple[str, int, int]:
    """``TYPE,ADDR,KIND[;cond...]`` of Z/z → (type, address, length or kind)."""
    kind, address, length = args.split(";", 1)[0].split(",")[:3]
    return kind, int(address, 16), int(length, 16)

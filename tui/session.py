"""The debugger's model: one TimeTravel, the moves a user makes, and what the screen shows.

No textual here. ``DebugSession`` owns the ``TimeTravel`` and is the only code that
touches it. TimeTravel is not thread-safe, so every call goes through one lock taken
without waiting: while a worker thread runs a long move, a call from the UI thread raises
``SessionBusy`` instead of blocking the screen. After every move the session builds a
``Moment`` — an immutable picture of the machine at the new position (code, registers,
stack, memory, events, outputs) with what changed since the previous position — and the
widgets only render Moments. Where code, the program's image and searchable memory are
comes from ``tui.layout``: an appliance's ELF, or a Linux program's memory map as it is at
the current position.
"""

from __future__ import annotations

import bisect
import inspect
import os
import threading
from dataclasses import dataclass, field, replace
from typing import Callable

import capstone
from capstone import x86 as cs_x86

from replay.timetravel import OperationCancelled, Stop, StopReason, Watchpoint
from trace_format.events import Event, EventKind
from tui.layout import clamp_window, layout_for
from tui.source import SourceLocation
from tui.targets import BadInput, SearchKind, SearchSpec, TargetKind, WatchSpec

STACK_SLOTS = 32             # qwords shown from RSP up
STACK_BELOW = 8              # qwords read below RSP, so a push shows as a change
MEMORY_ROWS = 16             # 16-byte rows in the memory window
MAX_FUNCTION_BYTES = 64 * 1024
CONSOLE_TAIL = 16 * 1024     # bytes of console output kept in a Moment
SOCKET_TAIL = 200            # socket sends kept in a Moment
DENSITY_BUCKETS = 1024
SIZELESS_REACH = 0x1000      # how far past a sizeless symbol (an asm label) an address still belongs to it
# Verification and format records: noise in the event list unless asked for.
QUIET_KINDS = frozenset({EventKind.DIGEST, EventKind.OUTPUT, EventKind.CHECKPOINT})
# A Linux program's trace also holds the content of the files it read: hidden as well.
LINUX_QUIET_KINDS = QUIET_KINDS | {EventKind.BLOB}
EVENT_STRING_LIMIT = 24      # bytes of a system call's data shown in the event list
ENDED_SHOWN = 1000           # ended processes in a Moment (the latest), however many a long run had
FLAG_BITS = (("CF", 0), ("PF", 2), ("AF", 4), ("ZF", 6), ("SF", 7), ("TF", 8), ("IF", 9),
             ("DF", 10), ("OF", 11))


class SessionBusy(RuntimeError):
    """A long move is running in another thread; TimeTravel cannot be touched now."""


@dataclass(frozen=True, slots=True)
class CodeRow:
    """One line of the disassembly panel.

    Attributes:
        kind: "label" (a symbol starts here), "source" (the line the code below comes
            from) or "insn".
        address: of the instruction or the symbol.
        text: the label, the source line, or the instruction (mnemonic and operands).
        raw: the instruction's bytes ("insn" only).
        location: the source line ("source" rows, and "insn" rows when known).
    """

    kind: str
    address: int
    text: str
    raw: bytes = b""
    location: SourceLocation | None = None


@dataclass(frozen=True, slots=True)
class StackSlot:
    address: int
    value: int | None          # None: not readable
    symbol: str | None         # when the value points into the image's code
    changed: bool


@dataclass(frozen=True, slots=True)
class MemoryWindow:
    address: int               # 16-byte aligned
    data: tuple[int | None, ...]   # None: not RAM
    changed: frozenset[int]    # addresses whose byte changed since the previous position

    def byte_map(self) -> dict[int, int | None]:
        return {self.address + i: b for i, b in enumerate(self.data)}


@dataclass(frozen=True, slots=True)
class ThreadRow:
    """One live thread of a Linux program at the current position."""

    tid: int
    name: str
    on_cpu: bool
    state: str                 # "on the CPU", or what it waits on (vmm/linux/tasks.py)
    last_ran: int | None       # off the CPU: the icount of its last instruction so far


@dataclass(frozen=True, slots=True)
class ProcessRow:
    """One process of a Linux program at the current position: in the process table
    (running, or a zombie its parent has not reaped yet), or one that ended before now.

    Attributes:
        command: its argv as a shell would take it (printable).
        state: "alive", "zombie" or "reaped" (vmm/linux/process.py).
        status: the wait status once it ended (``code << 8`` for an exit, else the signal).
        on_cpu: one of its threads is on the CPU.
        depth: how deep in the tree of live processes (0: its parent is not in the table).
        threads: its live threads (the one on the CPU first), for a live process.
    """

    pid: int
    ppid: int | None
    command: str
    comm: str
    state: str
    status: int | None
    on_cpu: bool
    depth: int = 0
    threads: tuple[ThreadRow, ...] = ()
    start_icount: int | None = None
    end_icount: int | None = None

    @property
    def alive(self) -> bool:
        return self.state == "alive"

    def state_text(self) -> str:
        """``running``, ``alive``, ``zombie, exited 0``, ``exited 1``, ``killed by SIGKILL``."""
        if self.alive:
            return "running" if self.on_cpu else "alive"
        ended = exit_words(self.status)
        return f"zombie, {ended}" if self.state == "zombie" else ended


def exit_words(status: int | None) -> str:
    """A wait status in words: ``exited 0``, ``killed by SIGSEGV`` (``+core`` when dumped)."""
    if status is None:
        return "ended"
    if status & 0x7F:
        from vmm.linux.names import signal_name
        return f"killed by {signal_name(status & 0x7F)}" + (" (core)" if status & 0x80 else "")
    return f"exited {(status >> 8) & 0xFF}"


@dataclass(frozen=True)
class Moment:
    """Everything the screen shows about one position. Built by ``DebugSession``."""

    icount: int
    stop: object | None                        # the replay.timetravel.Stop that got here
    registers: dict[str, int]
    changed_registers: frozenset[str]
    code: tuple[CodeRow, ...]
    current_row: int                           # index in ``code`` of the instruction at RIP (-1: none)
    access: int | None                         # address of the current instruction's memory operand
    stack: tuple[StackSlot, ...]
    stack_values: dict[int, int | None]        # qwords around RSP (some below it), for change marks
    memory: MemoryWindow
    event_index: int                           # the last event at or before this position (-1: none)
    console: bytes                             # the tail of the console output so far
    console_total: int                         # bytes of console output so far
    sockets: tuple[tuple[int, int, bytes], ...]  # the last socket sends so far
    sockets_total: int                         # socket sends so far
    breakpoints: frozenset[int]
    watchpoints: tuple                         # replay.timetravel.Watchpoint records
    hits: tuple[int, ...]                      # positions where a breakpoint or watchpoint stopped us
    threads: tuple[ThreadRow, ...] = ()        # a Linux program's live threads (the running one first)
    note: str = ""                             # what the last operation wants the user to know
    # A Linux program's processes: the tree of those in the process table (depth first,
    # each with its threads), and those that ended and were reaped before now (latest first).
    processes: tuple[ProcessRow, ...] = ()
    ended: tuple[ProcessRow, ...] = ()
    ended_total: int = 0                       # processes reaped before now (``ended`` holds the latest)
    cpu: tuple[int, int, str, str] | None = None   # (pid, tid, process comm, thread name) on the CPU
    viewing: tuple[int, int] | None = None     # (pid, tid) shown instead of the CPU's thread

    @property
    def rip(self) -> int:
        return self.registers.get("rip", 0)

    def flags(self) -> list[tuple[str, bool]]:
        rflags = self.registers.get("rflags", 0)
        return [(name, bool(rflags >> bit & 1)) for name, bit in FLAG_BITS]


def end_summary(end: dict | None, describe: Callable[[int], str], *, linux: bool = False) -> str:
    """How the recording ended, in a few words, for the status bar.

    Args:
        linux: the trace is of a Linux program (it exits with a status, crashes on a signal).
    """
    if not end:
        return "incomplete trace (the recorder was killed)"
    reason = end.get("reason")
    if linux and reason == "crash":
        where = f" at {describe(end['rip'])}" if isinstance(end.get("rip"), int) else ""
        signal = end.get("kind") or (f"signal {end['signal']}" if end.get("signal") is not None else "?")
        return f"crashed: {signal}{where}"
    if linux and reason == "poweroff":
        return f"exited with status {end.get('exit_status')}"
    if reason == "crash":
        where = f" at {describe(end['rip'])}" if isinstance(end.get("rip"), int) else ""
        vector = f" vector {end['vector']}" if end.get("vector") is not None else ""
        return f"crash: {end.get('kind', '?')}{vector}{where}"
    if reason == "poweroff":
        return f"power-off, status {end.get('exit_status')}"
    return f"{reason or 'stopped'} ({end.get('why', '')})".replace(" ()", "")


@dataclass
class _Listing:
    start: int
    end: int
    rows: tuple[CodeRow, ...]
    index: dict[int, int] = field(default_factory=dict)   # insn address → row
    space: object = None       # whose code: a Linux process and the program it runs (_code_space)


class DebugSession:
    """The TimeTravel of one trace, with the user's moves and the current Moment.

    Args:
        timetravel: an open ``replay.timetravel.TimeTravel``; the session owns it now.
        trace_name: shown in the status bar.

    Use ``DebugSession.open(path)`` to open a trace.
    """

    def __init__(self, timetravel, trace_name: str) -> None:
        self.tt = timetravel
        self.trace_name = trace_name
        self.progress: float | None = None        # set by TimeTravel during long work (any thread)
        self._lock = threading.Lock()
        self._cs = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
        self._cs_detail = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
        self._cs_detail.detail = True
        self.layout = layout_for(timetravel)
        self.linux = self.layout.linux
        self.program = self.layout.program        # the command line of a Linux program, else None
        self.lines = self.layout.lines              # a Linux program's: of the process shown (_build)
        self._kernel = getattr(timetravel.machine, "kernel", None) if self.linux else None
        self._symbols = timetravel.symbols          # a Linux program's: of the process shown (_build)
        self._view_tid: int | None = None           # a thread off the CPU shown instead (view_thread)
        self.mem_size = timetravel.header.config.mem_size
        self.last_icount = timetravel.last_icount
        self.crash_icount = timetravel.crash_icount
        self.end = timetravel.end
        self._modules = self.layout.modules()       # read by the UI thread: kept up to date by _build
        self.end_text = end_summary(self.end, self.describe, linux=self.linux)
        self.events: list[Event] = timetravel.events_between(0, self.last_icount)
        self._event_icounts = [e.icount for e in self.events]
        self.thread_runs = self._thread_runs()      # [(icount, tid)]: who is on the CPU from then
        self._run_icounts = [icount for icount, _tid in self.thread_runs]
        self.thread_owners = self._thread_owners()  # tid -> pid, every thread of the trace
        self.process_runs = self._process_runs()    # [(icount, pid)]: whose thread is on the CPU from then
        self._process_icounts = [icount for icount, _pid in self.process_runs]
        # More than one process: the tree names the program, the status bar the one on the CPU.
        self.multiprocess = len(set(self.thread_owners.values()) | {p for _i, p in self.process_runs}) > 1
        self.density: list[int] = timetravel.event_density(min(DENSITY_BUCKETS, self.last_icount + 1))
        self.default_event_filter = frozenset(EventKind) - (LINUX_QUIET_KINDS if self.linux else QUIET_KINDS)
        self.event_filter: frozenset[EventKind] | None = self.default_event_filter
        self.memory_address: int | None = None      # None until the first Moment picks one
        self._image_span = self.layout.image_span()  # read by the UI thread: kept up to date by _build
        self._hits: list[int] = []
        # A Linux program's watchpoints by the virtual range the user named, and the frames
        # behind it that TimeTravel watches (Unicorn reports guest-physical addresses).
        self._watches: dict[tuple[int, int, str], list[tuple[int, int, int]]] = {}
        self._listings: list[_Listing] = []
        self._last_search: tuple[SearchSpec, int] | None = None
        self._last_found: int | None = None         # the last memory match (a repeat goes past it)
        self.moment: Moment = self._build(None, None)
        self._before: Moment = self.moment          # the Moment at the previous position
        self._cpu_moment: Moment = self.moment      # the last Moment of the CPU's own thread

    @classmethod
    def open(cls, path: str, *, start_at_crash: bool = True, max_mem: int | None = None) -> DebugSession:
        """Open a trace and go to the crash (when the run ended in one), else to the start.

        Raises:
            VmrrError: the trace or its image cannot be opened.
        """
        from replay.timetravel import TimeTravel

        session_ref: list[DebugSession] = []

        def progress(fraction: float) -> None:
            if session_ref:
                session_ref[0].progress = fraction

        tt = TimeTravel(path, progress=progress, max_mem=max_mem)
        session = cls(tt, os.path.basename(path))
        session_ref.append(session)
        if start_at_crash and tt.crash_icount is not None:
            session.memory_address = None           # pick the window for the crash, not for boot
            session.move("crash")
            session._before = session.moment        # nothing "changed": we did not step here
            session.refresh()
        return session

    @property
    def symbols(self):
        """The symbols of the code shown: an appliance's image; a Linux program's process on
        the CPU (or the one ``view_thread`` shows), its program and libraries, as of the
        current Moment."""
        return self._symbols

    @property
    def image_start(self) -> int:
        """Where the program's own image starts (a Linux program's: as of the current Moment)."""
        return self._image_span[0]

    @property
    def image_end(self) -> int:
        return self._image_span[1]

    @property
    def code_ranges(self) -> list[tuple[int, int]]:
        """Executable memory (where return addresses point), at the current position."""
        return self.layout.code_ranges()

    def describe(self, address: int) -> str:
        """'name+0x12' for an address in (or just after a sizeless) symbol, else (a Linux
        program) 'libc.so.6+0x2724a' in a mapped file's code, else the hex address."""
        sym = self.symbols.lookup(address)
        if sym is None or (sym.size == 0 and address - sym.address > SIZELESS_REACH):
            return self._in_module(address) or f"{address:#x}"
        return self.symbols.describe(address)

    def _in_module(self, address: int) -> str | None:
        """'file+offset' for an address in the code of a mapped ELF file (Linux only), else None."""
        for start, end, name, bias in self._modules:
            if start <= address < end:
                return f"{name}+{address - bias:#x}"
        return None

    def close(self) -> None:
        with self._guard():
            close = getattr(self.tt, "close", None)
            if close is not None:
                close()

    # -- serialising access to TimeTravel -------------------------------------------------

    def _guard(self):
        if not self._lock.acquire(blocking=False):
            raise SessionBusy("busy: a long operation is running (Esc cancels it)")
        return _Release(self._lock)

    @property
    def busy(self) -> bool:
        return self._lock.locked()

    # -- moves ------------------------------------------------------------------------

    MOVES = ("step", "step_back", "step_over", "step_over_back", "cont", "cont_back",
             "finish", "finish_back", "next_event", "prev_event", "crash", "start", "end",
             "seek", "goto", "last_write", "search", "seek_event", "next_process", "prev_process")

    def move(self, op: str, *args, cancel: threading.Event | None = None) -> Moment:
        """Run one move and return the new Moment (also kept as ``self.moment``).

        Args:
            op: one of ``MOVES``; ``seek`` takes an icount, ``goto`` a Target or text,
                ``last_write`` (address, length), ``search`` a SearchSpec or None (again),
                ``seek_event`` an event number. Every move shows the CPU's thread again
            (it ends ``view_thread``).
            cancel: set it to stop a long move early (where TimeTravel supports it).

        Raises:
            SessionBusy: another move is running.
            BadInput: a target that does not resolve.
            VmrrError: TimeTravel failed (a divergence, a bad trace).
        """
        if op not in self.MOVES:
            raise ValueError(f"unknown move {op!r}")
        with self._guard():
            self.progress = 0.0
            try:
                # A view of another thread ends with a move: changes are the CPU's, since its own last Moment.
                before = self.moment if self.moment.viewing is None else self._cpu_moment
                stop, note = getattr(self, f"_op_{op}")(*args, cancel=cancel)
                self._view_tid = None
                if stop is not None and stop.reason.name == "WATCHPOINT" and self.linux:
                    stop = replace(stop, address=self._virtual(stop.address))
                if stop is not None and stop.reason.name == "WATCHPOINT" and not note:
                    kind = {"r": "reads", "w": "writes", "a": "accesses"}.get(stop.watch_kind or "", "accesses")
                    where = f"{stop.address:#x}" if stop.address is not None else "the watched memory"
                    # Backward stops are before the access, forward ones after it (like hardware).
                    note = (f"the current instruction {kind} {where}" if op.endswith("_back")
                            else f"the previous instruction {kind} {where}")
                if stop is not None and stop.reason.name in ("BREAKPOINT", "WATCHPOINT"):
                    if stop.icount not in self._hits:
                        bisect.insort(self._hits, stop.icount)
                    if stop.reason.name == "WATCHPOINT" and stop.address is not None:
                        self.memory_address = stop.address & ~0xF
                if self.tt.icount != before.icount:
                    self._before = before
                self.moment = self._build(stop, self._before, note)
                return self.moment
            finally:
                self.progress = None

    def _call(self, fn, *args, cancel=None):
        """Call a TimeTravel move, passing ``cancel`` when it accepts one."""
        try:
            accepts = "cancel" in inspect.signature(fn).parameters
        except (TypeError, ValueError):
            accepts = False
        return fn(*args, cancel=cancel) if accepts and cancel is not None else fn(*args)

    def _kinds(self):
        return None if self.event_filter is None else set(self.event_filter)

    def _op_step(self, cancel=None):
        return self.tt.step(), ""

    def _op_step_back(self, cancel=None):
        return self.tt.step_back(), ""

    def _op_step_over(self, cancel=None):
        return self._call(self.tt.step_over, cancel=cancel), ""

    def _op_step_over_back(self, cancel=None):
        return self._call(self.tt.step_over_back, cancel=cancel), ""

    def _op_cont(self, cancel=None):
        return self._call(self.tt.cont, cancel=cancel), ""

    def _op_cont_back(self, cancel=None):
        return self._call(self.tt.cont_back, cancel=cancel), ""

    def _op_finish(self, cancel=None):
        return self._call(self.tt.finish, cancel=cancel), ""

    def _op_finish_back(self, cancel=None):
        return self._call(self.tt.finish_back, cancel=cancel), ""

    def _op_next_event(self, cancel=None):
        return self._call(self.tt.next_event, self._kinds(), cancel=cancel), ""

    def _op_prev_event(self, cancel=None):
        return self._call(self.tt.prev_event, self._kinds(), cancel=cancel), ""

    def _op_crash(self, cancel=None):
        if self.crash_icount is None:
            return None, f"the run did not crash ({self.end_text})"
        return self.tt.goto_crash(), ""

    def _op_start(self, cancel=None):
        return self.tt.goto_start(), ""

    def _op_end(self, cancel=None):
        return self.tt.goto_end(), ""

    def _op_seek(self, icount: int, cancel=None):
        return self._call(self.tt.seek, icount, cancel=cancel), ""

    def _op_seek_event(self, number: int, cancel=None):
        if not 0 <= number < len(self.events):
            raise BadInput(f"no event #{number} (the trace has {len(self.events)})")
        event = self.events[number]
        stop = self._call(self.tt.seek, event.icount, cancel=cancel)
        return stop, f"event #{number}: {event.kind.name} at icount {event.icount}"

    def _op_goto(self, target, cancel=None):
        if isinstance(target, str):
            from tui.targets import parse_target
            target = parse_target(target)
        kind = target.kind
        if kind is TargetKind.ICOUNT:
            return self._op_seek(target.value, cancel=cancel)
        if kind is TargetKind.EVENT:
            return self._op_seek_event(target.value, cancel=cancel)
        if kind is TargetKind.CRASH:
            return self._op_crash(cancel=cancel)
        if kind is TargetKind.START:
            return self._op_start()
        if kind is TargetKind.END:
            return self._op_end()
        if kind is TargetKind.THREAD:
            return self._op_thread(target.value, cancel=cancel)
        if kind is TargetKind.PROCESS:
            return self._op_process(target.value, cancel=cancel)
        address, label = target.value, f"{target.value:#x}"
        if kind is TargetKind.SYMBOL:
            base = self.symbols.address_of(target.name)
            if base is None:
                raise BadInput(f"no symbol {target.name!r} in the image")
            address = base + target.value
            label = self.describe(address)
        return self._run_to(address, label, cancel)

    def _op_thread(self, tid: int, cancel=None):
        """Back to where thread ``tid`` last ran: just before its latest instruction so far."""
        now = self.moment.icount
        if not self.thread_runs:
            raise BadInput("threads are a Linux program's; this trace is an appliance's")
        if tid not in {who for _icount, who in self.thread_runs}:
            known = ", ".join(str(t) for t in sorted({who for _i, who in self.thread_runs}))
            raise BadInput(f"no thread {tid} in this trace (threads: {known})")
        if self.thread_at(now) == tid:
            return self._call(self.tt.seek, now, cancel=cancel), f"thread {tid} is on the CPU here"
        icount = self.last_ran(tid, now)
        if icount is None:
            raise BadInput(f"thread {tid} has not run before icount {now}")
        stop = self._call(self.tt.seek, icount, cancel=cancel)
        return stop, f"thread {tid}: its last instruction before icount {now}"

    def _op_process(self, pid: int, cancel=None):
        """Back to where process ``pid`` last ran: just before the last instruction one of
        its threads ran before the current position."""
        now = self.moment.icount
        if not self.process_runs:
            raise BadInput("processes are a Linux program's; this trace is an appliance's")
        ran = {who for _icount, who in self.process_runs}
        if pid not in ran:
            known = ", ".join(str(p) for p in sorted(ran))
            raise BadInput(f"no process {pid} ran in this trace (processes that ran: {known})")
        if self.process_at(now) == pid:
            return self._call(self.tt.seek, now, cancel=cancel), f"process {pid} is on the CPU here"
        icount = self._last_in(self.process_runs, self._process_icounts, pid, now)
        if icount is None:
            first = next(start for start, who in self.process_runs if who == pid)
            raise BadInput(f"process {pid} has not run before icount {now} (it first runs at icount {first})")
        stop = self._call(self.tt.seek, icount, cancel=cancel)
        return stop, f"process {pid}: its last instruction before icount {now}"

    def _op_next_process(self, cancel=None):
        """To the next process switch: the first position after now where another process's
        thread is on the CPU."""
        if not self.process_runs:
            raise BadInput("processes are a Linux program's; this trace is an appliance's")
        now = self.moment.icount
        i = bisect.bisect_right(self._process_icounts, now)
        if i >= len(self.process_runs):
            return None, f"no process switch after icount {now}"
        stop = self._call(self.tt.seek, self.process_runs[i][0], cancel=cancel)
        return stop, self._switch_words(self.process_runs[i - 1][1] if i else None)

    def _op_prev_process(self, cancel=None):
        """To the previous process switch: the last position before now where a process got
        the CPU from another (the start of the recording is not one)."""
        if not self.process_runs:
            raise BadInput("processes are a Linux program's; this trace is an appliance's")
        now = self.moment.icount
        i = bisect.bisect_left(self._process_icounts, now) - 1
        if i <= 0:
            return None, f"no process switch before icount {now}"
        stop = self._call(self.tt.seek, self.process_runs[i][0], cancel=cancel)
        return stop, self._switch_words(self.process_runs[i - 1][1])

    def _switch_words(self, before: int | None) -> str:
        """At a process switch: who has the CPU now, and who had it."""
        kernel = self._kernel
        words = f"process switch: pid {kernel.pid} ({self._comm(kernel.pid)}) runs"
        return words + (f", after pid {before}" if before is not None else "")

    def _comm(self, pid: int) -> str:
        proc = self._kernel.processes.get(pid)
        if proc is not None:
            return proc.comm
        return self._kernel.current.name if pid == self._kernel.pid else "?"

    def _run_to(self, address: int, label: str, cancel):
        """The next time RIP is at ``address``: a temporary breakpoint and a continue."""
        tt = self.tt
        temporary = address not in tt.breakpoints
        if temporary:
            tt.add_breakpoint(address)
        try:
            stop = self._call(tt.cont, cancel=cancel)
        finally:
            if temporary:
                tt.remove_breakpoint(address)
        if stop.reason.name == "BREAKPOINT" and stop.address == address:
            return replace(stop, reason=type(stop.reason)["STEP"]), f"at {label}"   # not a user breakpoint
        if stop.reason.name == "CANCELLED":
            return stop, ""
        return stop, f"{label} is not reached after icount {self.moment.icount}"

    def _op_last_write(self, address: int, length: int, cancel=None):
        pieces = self._pieces(address, length)
        record = None
        try:
            for virtual, watched, n in pieces:        # one range a page for a Linux program
                found = self._call(self.tt.last_write, watched, n, cancel=cancel)
                if found is not None and (record is None or found.icount > record.icount):
                    record = replace(found, address=virtual + (found.address - watched))
        except OperationCancelled:
            return Stop(StopReason.CANCELLED, self.tt.icount), ""
        self.memory_address = address & ~0xF
        if record is None:
            return None, f"no write to {address:#x}+{length} before icount {self.tt.icount}"
        stop = self._call(self.tt.seek, record.icount - 1, cancel=cancel)
        note = (f"last write to {record.address:#x}: {record.old.hex() or '?'} → {record.new.hex()} "
                f"by {self.describe(record.rip)} (the current instruction)")
        return stop, note

    def _op_search(self, spec: SearchSpec | None, cancel=None):
        if spec is None:
            if self._last_search is None:
                raise BadInput("no search to repeat")
            spec, _ = self._last_search
        note = None
        stop = None
        if spec.kind in (SearchKind.ANY, SearchKind.EVENTS):
            number = self._find_event(spec)
            if number is not None:
                event = self.events[number]
                stop = self._call(self.tt.seek, event.icount, cancel=cancel)
                note = f"found in event #{number} ({event.kind.name} at icount {event.icount})"
        if note is None and spec.kind in (SearchKind.ANY, SearchKind.MEMORY):
            address = self._find_memory(spec.pattern, cancel)
            if address is not None:
                self.memory_address = address & ~0xF
                self._last_found = address
                where = self.describe(address)
                if where.startswith("0x"):
                    where = self.layout.mapping_name(address) or where     # a Linux program's [stack], ...
                note = f"found in memory at {address:#x} ({where})"
        self._last_search = (spec, self.tt.icount)
        if note is None:
            where = {SearchKind.ANY: "events after now or memory", SearchKind.EVENTS: "events after now",
                     SearchKind.MEMORY: "memory"}[spec.kind]
            note = f"{spec.text!r} not found in {where}"
        return stop, note

    def _find_event(self, spec: SearchSpec) -> int | None:
        """The first event after the current one whose kind or payload mentions the text."""
        needle = spec.text.lower()
        start = bisect.bisect_right(self._event_icounts, self.tt.icount)
        kinds = {k for k in EventKind if k.name.lower() == needle}
        for number in range(start, len(self.events)):
            event = self.events[number]
            if kinds:
                if event.kind in kinds:
                    return number
            elif needle in format_payload(event).lower() or needle.encode() in _payload_bytes(event).lower():
                return number
        return None

    def _find_memory(self, pattern: bytes, cancel) -> int | None:
        """The first occurrence of ``pattern`` after the memory window's address, wrapping.

        Searches the guest's memory: an appliance's RAM, a Linux program's mappings now.
        """
        chunk = 1 << 20
        origin = (self.memory_address or 0) + 1
        if self._last_found is not None and self._last_found & ~0xF == self.memory_address:
            origin = self._last_found + 1          # the window still shows the last match: past it
        regions = self.layout.regions()
        spans = [(max(lo, origin), hi) for lo, hi in regions if hi > origin]
        spans += [(lo, min(hi, origin + len(pattern))) for lo, hi in regions if lo < origin + len(pattern)]
        total = max(1, sum(hi - lo for lo, hi in spans))
        done = 0
        for lo, hi in spans:
            addr = lo
            while addr < hi:
                if cancel is not None and cancel.is_set():
                    return None
                size = min(chunk + len(pattern) - 1, hi - addr)
                data = self._read(addr, size)
                if data is None:           # a page that is not there (the null page, one never touched)
                    data = self._present_prefix(addr, size)
                found = data.find(pattern)
                if found >= 0:
                    return addr + found
                if len(data) == size:
                    step = chunk           # the next read overlaps this one by len(pattern) - 1
                else:                      # searched up to the missing page: go past it
                    step = ((addr + len(data)) | 0xFFF) + 1 - addr
                addr += step
                done += step
                self.progress = min(1.0, done / total)
        return None

    def _present_prefix(self, address: int, size: int) -> bytes:
        """The bytes from ``address`` up to the first page that cannot be read."""
        parts = []
        end = address + size
        while address < end:
            n = min(end, (address | 0xFFF) + 1) - address
            data = self._read(address, n)
            if data is None:
                break
            parts.append(data)
            address += n
        return b"".join(parts)

    # -- changes that do not move --------------------------------------------------------

    def refresh(self, note: str = "") -> Moment:
        """Rebuild the Moment at the same position (after a breakpoint or view change)."""
        with self._guard():
            self.moment = self._build(self.moment.stop, self._before, note)
            return self.moment

    def toggle_breakpoint(self, address: int) -> Moment:
        with self._guard():
            if address in self.tt.breakpoints:
                self.tt.remove_breakpoint(address)
                note = f"breakpoint removed at {self.describe(address)}"
            else:
                self.tt.add_breakpoint(address)
                note = f"breakpoint at {self.describe(address)}"
        return self.refresh(note)

    def clear_breakpoints(self) -> Moment:
        with self._guard():
            for address in list(self.tt.breakpoints):
                self.tt.remove_breakpoint(address)
            for wp in list(self.tt.watchpoints):
                self.tt.remove_watchpoint(wp.addr, wp.length, wp.kind)
            self._watches.clear()
        return self.refresh("breakpoints and watchpoints cleared")

    def resolve_address(self, spec: WatchSpec) -> tuple[int, int | None]:
        """A watch spec's (address, length) with symbols resolved. Raises BadInput."""
        if spec.address is not None:
            return spec.address, spec.length
        address = self.symbols.address_of(spec.name)
        if address is None:
            raise BadInput(f"no symbol {spec.name!r} in the image")
        length = spec.length
        if length is None:
            sym = self.symbols.lookup(address)
            length = sym.size if sym is not None and 0 < sym.size <= 4096 else None
        return address, length

    def toggle_watchpoint(self, spec: WatchSpec) -> Moment:
        address, length = self.resolve_address(spec)
        length = length or 8
        key = (address, length, spec.kind)
        with self._guard():
            if key in {(wp.addr, wp.length, wp.kind) for wp in self._shown_watchpoints()}:
                for _virtual, watched, n in self._frames_for(key):
                    self.tt.remove_watchpoint(watched, n, spec.kind)
                self._watches.pop(key, None)
                note = f"watchpoint removed at {address:#x}+{length}"
            else:
                pieces = self._pieces(address, length)
                for _virtual, watched, n in pieces:
                    self.tt.add_watchpoint(watched, n, spec.kind)
                if self.linux:
                    self._watches[key] = pieces
                note = f"watching {address:#x}+{length} ({_WATCH_WORDS[spec.kind]}): c/C continue to an access"
                self.memory_address = address & ~0xF
        return self.refresh(note)

    def _pieces(self, address: int, length: int) -> list[tuple[int, int, int]]:
        """[(virtual, watched, length)]: an appliance's addresses are physical already; a
        Linux program's range is watched through the frames behind it at this position
        (a page that later moves to another frame is not followed). Raises BadInput."""
        if not self.linux:
            return [(address, address, length)]
        pieces = self.tt.machine.kernel.space.physical_ranges(address, length)
        if pieces is None:
            raise BadInput(f"{address:#x}+{length} is not in memory at icount {self.tt.icount} "
                           f"(not mapped, or never touched yet): watch it from a later position")
        return pieces

    def _frames_for(self, key: tuple[int, int, str]) -> list[tuple[int, int, int]]:
        if not self.linux:
            return [(key[0], key[0], key[1])]
        return self._watches.get(key, [])

    def _shown_watchpoints(self) -> tuple:
        """The watchpoints as the user named them (virtual addresses for a Linux program)."""
        if not self.linux:
            return tuple(self.tt.watchpoints)
        return tuple(Watchpoint(addr, length, kind) for addr, length, kind in self._watches)

    def _virtual(self, watched: int | None) -> int | None:
        """The virtual address behind a guest-physical one a watchpoint reported."""
        if watched is None or not self.linux:
            return watched
        for pieces in self._watches.values():
            for virtual, start, n in pieces:
                if start <= watched < start + n:
                    return virtual + (watched - start)
        return watched

    def view_thread(self, tid: int | None) -> Moment:
        """Show thread ``tid`` as it is at this position although it is off the CPU: its
        saved registers, and code, stack and memory read through its own process's page
        tables (not the CPU's CR3). None, or the thread on the CPU, shows the CPU's thread
        again; so does the next move. Nothing in the machine changes. Raises BadInput."""
        with self._guard():
            kernel = self._kernel
            if kernel is None:
                raise BadInput("threads are a Linux program's; this trace is an appliance's")
            if tid is None or tid == kernel.tid:
                self._view_tid = None
                note = f"showing the thread on the CPU: pid {kernel.pid}, tid {kernel.tid}"
            else:
                self._viewed(tid)                          # raises BadInput unless it can be shown
                self._view_tid = tid
                task = kernel.tasks[tid]
                note = (f"tid {tid} ({task.name}) is off the CPU: {task.describe_wait()}; "
                        f"any move shows the CPU's thread again")
            self.moment = self._build(self.moment.stop, self._before, note)
            return self.moment

    def _viewed(self, tid: int):
        """(process, task) of a thread off the CPU that can be shown, or BadInput."""
        from vmm.linux.process import ALIVE
        from vmm.linux.tasks import DONE

        kernel = self._kernel
        task = kernel.tasks.get(tid)
        if task is None or task.state == DONE:
            raise BadInput(f"no live thread {tid} at icount {self.tt.icount}")
        proc = kernel.processes.get(task.pid)
        if proc is None or proc.state != ALIVE or not proc.space.root:
            raise BadInput(f"thread {tid}'s process {task.pid} has ended: its memory is gone")
        if task.ctx is None:
            raise BadInput(f"thread {tid} has no saved registers at icount {self.tt.icount}")
        return proc, task

    def set_memory_address(self, address: int) -> Moment:
        self.memory_address = address & ~0xF
        return self.refresh(f"memory at {address:#x}")

    def set_event_filter(self, kinds: frozenset[EventKind] | None) -> Moment:
        self.event_filter = kinds
        return self.refresh()

    def event_number_at(self, icount: int) -> int:
        """Index of the last event at or before ``icount`` (-1 when none)."""
        return bisect.bisect_right(self._event_icounts, icount) - 1

    # -- building a Moment ---------------------------------------------------------------

    def _build(self, stop, before: Moment | None, note: str = "") -> Moment:
        """The Moment here: of the CPU's thread, or of the thread ``view_thread`` chose."""
        kernel = self._kernel
        viewed = None
        if kernel is not None and self._view_tid is not None:
            try:
                viewed = self._viewed(self._view_tid)
            except BadInput:
                self._view_tid = None
        if viewed is None:
            moment = self._build_here(stop, before, note, self.tt.registers())
            self._cpu_moment = moment
            return moment
        # The personality's per-process attributes (space, symbols, ...) are the viewed
        # process's while this Moment is built: every read goes through its page tables.
        # Nothing runs meanwhile (the session's lock), and the machine is as it was after.
        proc, task = viewed
        saved = kernel.proc
        kernel.proc = proc
        try:
            return self._build_here(stop, None, note, self._task_registers(task, proc),
                                    viewing=(proc.pid, task.tid))
        finally:
            kernel.proc = saved

    def _task_registers(self, task, proc) -> dict[str, int]:
        """A thread's registers off the CPU: those it saved when it left (vmm/linux/tasks.py),
        over the CPU's (segments and control registers are every user thread's), CR3 its
        process's page tables (as gdbstub/linux.py shows them to gdb)."""
        from vmm.linux.tasks import CTX_NAMES

        values = dict(self.tt.registers())
        ints, _vector = task.ctx
        values.update(zip(CTX_NAMES, ints))
        if "cr3" in values:
            values["cr3"] = proc.space.root
        return values

    def _build_here(self, stop, before: Moment | None, note: str, regs: dict[str, int], *,
                    viewing: tuple[int, int] | None = None) -> Moment:
        tt = self.tt
        if self.linux:
            self._symbols = tt.machine.symbols
            self.lines = self.layout.lines_now()
        self._image_span = self.layout.image_span()
        self._modules = self.layout.modules()
        rip = regs["rip"]
        code, current = self._code_around(rip)
        access = self._memory_operand(rip, regs)
        if self.memory_address is None:
            self.memory_address = self._first_memory_address(access, regs)
        changed_regs = frozenset()
        if before is not None and before.icount != tt.icount:
            changed_regs = frozenset(k for k, v in regs.items() if before.registers.get(k) != v)
        stack, stack_values = self._stack(regs["rsp"], before if before is not None and before.icount != tt.icount else None)
        memory = self._memory(self.memory_address,
                              before if before is not None and before.icount != tt.icount else None)
        console = tt.console_output()
        sockets = tt.socket_output()
        return Moment(
            icount=tt.icount, stop=stop, registers=regs, changed_registers=changed_regs,
            code=code, current_row=current, access=access, stack=stack, stack_values=stack_values,
            memory=memory,
            event_index=self.event_number_at(tt.icount),
            console=bytes(console[-CONSOLE_TAIL:]), console_total=len(console),
            sockets=tuple(sockets[-SOCKET_TAIL:]), sockets_total=len(sockets),
            breakpoints=frozenset(tt.breakpoints), watchpoints=self._shown_watchpoints(),
            hits=tuple(self._hits), threads=self._threads(tt.icount), note=note,
            processes=self._process_tree(tt.icount), ended=self._ended(), cpu=self._cpu(), viewing=viewing,
            ended_total=len(self._kernel.ended) if self._kernel is not None else 0)

    # -- threads (a Linux program) --------------------------------------------------------

    def _thread_runs(self) -> list[tuple[int, int]]:
        """Each stretch of one thread on the CPU, from the SWITCH events: (first icount, tid)."""
        kernel = getattr(self.tt.machine, "kernel", None)
        if kernel is None:
            return []
        runs = [(0, kernel.pid)]
        for event in self.events:
            if event.kind is EventKind.SWITCH and isinstance(event.payload, list) and event.payload:
                tid = event.payload[0]
                if tid != runs[-1][1]:
                    runs.append((event.icount, tid))
        return runs

    def _thread_owners(self) -> dict[int, int]:
        """tid -> pid for every thread of the trace: from the END record's process list, or
        rebuilt from the events (replay/pstree.py, as ``vmrr ps`` does)."""
        if self._kernel is None:
            return {}
        from replay.pstree import process_tree, thread_owners
        from vmm.errors import VmrrError

        try:
            return thread_owners(self.tt.reader, process_tree(self.tt.reader))
        except (VmrrError, ValueError, TypeError, KeyError):
            return {self._kernel.tid: self._kernel.pid}

    def _process_runs(self) -> list[tuple[int, int]]:
        """Each stretch of one process's threads on the CPU: (first icount, pid). A thread
        the owners do not know is taken for a process of its own (its tid, its pid)."""
        runs: list[tuple[int, int]] = []
        for icount, tid in self.thread_runs:
            pid = self.thread_owners.get(tid, tid)
            if not runs or runs[-1][1] != pid:
                runs.append((icount, pid))
        return runs

    def process_at(self, icount: int) -> int | None:
        """The process whose thread is on the CPU at ``icount`` (None for an appliance)."""
        i = bisect.bisect_right(self._process_icounts, icount) - 1
        return self.process_runs[i][1] if i >= 0 else None

    def thread_at(self, icount: int) -> int | None:
        """The thread on the CPU at ``icount`` (None for an appliance)."""
        i = bisect.bisect_right(self._run_icounts, icount) - 1
        return self.thread_runs[i][1] if i >= 0 else None

    def last_ran(self, tid: int, before: int) -> int | None:
        """The position just before the last instruction thread ``tid`` ran before ``before``."""
        return self._last_in(self.thread_runs, self._run_icounts, tid, before)

    def _last_in(self, runs: list[tuple[int, int]], starts: list[int], who: int, before: int) -> int | None:
        i = bisect.bisect_right(starts, before) - 1
        while i >= 0:
            start, owner = runs[i]
            end = runs[i + 1][0] if i + 1 < len(runs) else self.last_icount
            end = min(end, before)
            if owner == who and end > start:
                return end - 1
            i -= 1
        return None

    def _threads(self, icount: int) -> tuple[ThreadRow, ...]:
        kernel = getattr(self.tt.machine, "kernel", None)
        if kernel is None:
            return ()
        current = kernel.tid
        rows = []
        for task in sorted(kernel.live_tasks(), key=lambda t: (t.tid != current, t.tid)):
            on_cpu = task.tid == current
            rows.append(ThreadRow(task.tid, task.name, on_cpu,
                                  "on the CPU" if on_cpu else task.describe_wait(),
                                  None if on_cpu else self.last_ran(task.tid, icount)))
        return tuple(rows)

    def _cpu(self) -> tuple[int, int, str, str] | None:
        """(pid, tid, process comm, thread name) of the thread on the CPU."""
        kernel = self._kernel
        if kernel is None:
            return None
        return kernel.pid, kernel.tid, self._comm(kernel.pid), kernel.current.name

    def _process_tree(self, icount: int) -> tuple[ProcessRow, ...]:
        """The processes in the table now, depth first from those whose parent is not (the
        program vmrr started, orphans init took), children in the order they started."""
        from vmm.linux.process import REAPED
        from vmm.linux.tasks import DONE

        kernel = self._kernel
        if kernel is None:
            return ()
        current = kernel.current
        table = {pid: p for pid, p in kernel.processes.items() if p.state != REAPED}
        children: dict[int | None, list] = {}
        for proc in sorted(table.values(), key=lambda p: (p.start_icount, p.pid)):
            parent = proc.ppid if proc.ppid in table and proc.ppid != proc.pid else None
            children.setdefault(parent, []).append(proc)
        rows: list[ProcessRow] = []

        def add(proc, depth: int) -> None:
            threads = [t for t in kernel.tasks.values()
                       if t.pid == proc.pid and (t.state != DONE or t is current)]
            threads.sort(key=lambda t: (t is not current, t.tid))
            thread_rows = tuple(
                ThreadRow(t.tid, t.name, t is current, "on the CPU" if t is current else t.describe_wait(),
                          None if t is current else self.last_ran(t.tid, icount))
                for t in threads)
            rows.append(ProcessRow(proc.pid, proc.ppid, _command(proc.argv, proc.exe), proc.comm, proc.state,
                                   proc.exit, proc.pid == current.pid, depth, thread_rows,
                                   proc.start_icount, proc.end_icount))
            for child in children.get(proc.pid, ()):
                add(child, depth + 1)

        for root in children.get(None, ()):
            add(root, 0)
        return tuple(rows)

    def _ended(self) -> tuple[ProcessRow, ...]:
        """The processes that ended and were reaped before now (the kernel's history), the
        latest first (at most ENDED_SHOWN)."""
        kernel = self._kernel
        if kernel is None:
            return ()
        from vmm.linux.process import REAPED

        on_cpu = kernel.processes.get(kernel.pid)
        cpu_gone = on_cpu is None or on_cpu.state == REAPED   # the very end: its last thread still holds the CPU
        rows: list[ProcessRow] = []
        for pid, ppid, argv, exe, status, start, end, _tids in reversed(kernel.ended[-ENDED_SHOWN:]):
            comm = (argv[0].rsplit("/", 1)[-1] if argv else exe.rsplit("/", 1)[-1])[:15]
            rows.append(ProcessRow(pid, ppid, _command(argv, exe), comm, "reaped", status,
                                   cpu_gone and pid == kernel.pid and not any(r.pid == pid for r in rows),
                                   start_icount=start, end_icount=end))
        return tuple(rows)

    def _first_memory_address(self, access: int | None, regs: dict[str, int]) -> int:
        candidates = []
        if self.end and isinstance(self.end.get("fault_address"), int):
            candidates.append(self.end["fault_address"])
        if access is not None:
            candidates.append(access)
        for address in candidates:
            if self._readable(address):
                return address & ~0xF
        # The stack: at boot RSP is 16 bytes below the end of RAM (an appliance) or of the
        # stack mapping (a Linux program); keep the window inside.
        return clamp_window(regs["rsp"] & ~0xF, 16 * MEMORY_ROWS, self.layout.regions())

    def _readable(self, address: int) -> bool:
        try:
            self.tt.read_memory(address, 1)
            return True
        except Exception:
            return False

    def _read(self, address: int, size: int) -> bytes | None:
        try:
            return self.tt.read_memory(address, size)
        except Exception:                  # UnreadableMemory: not RAM
            return None

    def _stack(self, rsp: int, before: Moment | None) -> tuple[tuple[StackSlot, ...], dict[int, int | None]]:
        """The slots from RSP up, and every qword read (some below RSP, to see pushes change)."""
        old = before.stack_values if before is not None else {}
        low = rsp - 8 * STACK_BELOW
        count = STACK_BELOW + STACK_SLOTS
        data = self._read(low, 8 * count)
        values: dict[int, int | None] = {}
        for i in range(count):
            address = low + 8 * i
            if data is not None:
                values[address] = int.from_bytes(data[8 * i:8 * i + 8], "little")
            else:
                raw = self._read(address, 8)
                values[address] = None if raw is None else int.from_bytes(raw, "little")
        slots = []
        code_ranges = self.code_ranges
        for i in range(STACK_SLOTS):
            address = rsp + 8 * i
            value = values[address]
            symbol = None
            if value is not None and any(lo <= value < hi for lo, hi in code_ranges):
                if self.symbols.lookup(value) is not None:
                    symbol = self.describe(value)
                else:
                    symbol = self._in_module(value)
            changed = address in old and old[address] != value
            slots.append(StackSlot(address, value, symbol, changed))
        return tuple(slots), values

    def _memory(self, address: int, before: Moment | None) -> MemoryWindow:
        size = 16 * MEMORY_ROWS
        data = self._read(address, size)
        if data is not None:
            values: tuple[int | None, ...] = tuple(data)
        else:
            row_values: list[int | None] = []
            for row in range(MEMORY_ROWS):
                chunk = self._read(address + 16 * row, 16)
                row_values += list(chunk) if chunk is not None else [None] * 16
            values = tuple(row_values)
        changed: frozenset[int] = frozenset()
        if before is not None:
            old = before.memory.byte_map()
            changed = frozenset(address + i for i, b in enumerate(values)
                                if address + i in old and old[address + i] != b)
        return MemoryWindow(address, values, changed)

    # -- code ---------------------------------------------------------------------------

    def _code_space(self) -> object:
        """What tells one process's code from another's at the same addresses: a Linux
        process (the one shown), the program it runs, its page tables. None for an appliance."""
        kernel = self._kernel
        if kernel is None:
            return None
        proc = kernel.proc
        return proc.pid, proc.exe, proc.exe_base, proc.space.root

    def _code_around(self, rip: int) -> tuple[tuple[CodeRow, ...], int]:
        space = self._code_space()
        for listing in self._listings:
            if listing.space == space and listing.start <= rip < listing.end and rip in listing.index:
                return listing.rows, listing.index[rip]
        listing = self._make_listing(rip)
        listing.space = space
        self._listings = [listing] + self._listings[:15]
        return listing.rows, listing.index.get(rip, -1)

    def _make_listing(self, rip: int) -> _Listing:
        sym = self.symbols.lookup(rip)
        start, end = rip, rip + 256
        if sym is not None and 0 < sym.size <= MAX_FUNCTION_BYTES and sym.address <= rip < sym.address + sym.size:
            start, end = sym.address, sym.address + sym.size
        elif sym is not None and sym.size == 0 and rip - sym.address <= 4096:
            start, end = sym.address, rip + 256
        else:
            start = self._resync_start(rip)
        rows = self._decode(start, end)
        if rip not in {r.address for r in rows if r.kind == "insn"}:
            rows = self._decode(rip, rip + 256)
            start = rip
        listing = _Listing(start, end, tuple(rows))
        listing.index = {r.address: i for i, r in enumerate(rows) if r.kind == "insn"}
        return listing

    def _resync_start(self, rip: int) -> int:
        """A start before RIP from which decoding lands exactly on RIP (x86 is not self-syncing)."""
        for back in range(48, 0, -1):
            start = rip - back
            code = self._read(start, back + 16)
            if code is None:
                continue
            for address, size, _m, _o in self._cs.disasm_lite(code, start):
                if address >= rip:
                    if address == rip:
                        return start
                    break
        return rip

    def _decode(self, start: int, end: int) -> list[CodeRow]:
        code = self._read(start, end - start)
        if code is None:
            code = self._read(start, 16) or b""
            end = start + len(code)
        rows: list[CodeRow] = []
        last_location = None
        address = start
        while address < end:
            offset = address - start
            for insn_addr, size, mnemonic, op_str in self._cs.disasm_lite(code[offset:], address):
                self._emit(rows, insn_addr, code[insn_addr - start:insn_addr - start + size],
                           f"{mnemonic} {op_str}".strip(), last_location)
                last_location = rows[-1].location
                address = insn_addr + size
                if address >= end:
                    break
            if address < end:
                if address - start >= len(code):
                    break
                byte = code[address - start]          # not an instruction: show the byte
                self._emit(rows, address, bytes([byte]), f".byte {byte:#04x}", last_location)
                address += 1
        return rows

    def _emit(self, rows: list[CodeRow], address: int, raw: bytes, text: str,
              last_location: SourceLocation | None) -> None:
        sym = self.symbols.lookup(address)
        if sym is not None and sym.address == address:
            rows.append(CodeRow("label", address, sym.name))
        location = self.lines.lookup(address)
        if location is not None and location != last_location and location.line > 0:
            source = self.lines.source_text(location)
            rows.append(CodeRow("source", address, (source or "").strip(), location=location))
        rows.append(CodeRow("insn", address, text, raw, location))

    def _memory_operand(self, rip: int, regs: dict[str, int]) -> int | None:
        """Effective address of the memory operand of the instruction at RIP, if it has one."""
        code = self._read(rip, 16)
        if code is None:
            return None
        insn = next(self._cs_detail.disasm(code, rip, 1), None)
        if insn is None:
            return None
        for op in insn.operands:
            if op.type != cs_x86.X86_OP_MEM:
                continue
            mem = op.mem
            total = mem.disp
            for reg, scale in ((mem.base, 1), (mem.index, mem.scale)):
                if reg == 0:
                    continue
                name = insn.reg_name(reg)
                if name == "rip":
                    value = rip + insn.size
                else:
                    value = _register_value(name, regs)
                    if value is None:
                        return None
                total += value * scale
            if mem.segment != 0:
                seg = insn.reg_name(mem.segment)
                total += regs.get(f"{seg}_base", 0) if seg in ("fs", "gs") else 0
            return total & (1 << 64) - 1
        return None


def _command(argv: list[str], exe: str) -> str:
    """A process's command line as a shell would take it back, printable."""
    import shlex

    from replay.pstree import printable

    return printable(shlex.join(argv)) if argv else f"({printable(exe)})"


_WATCH_WORDS = {"w": "writes", "r": "reads", "a": "reads and writes"}
_SUBREGISTERS = {f"e{r}": f"r{r}" for r in ("ax", "bx", "cx", "dx", "si", "di", "bp", "sp")}
_SUBREGISTERS.update({f"r{n}d": f"r{n}" for n in range(8, 16)})


def _register_value(name: str, regs: dict[str, int]) -> int | None:
    if name in regs:
        return regs[name]
    full = _SUBREGISTERS.get(name)
    if full is not None and full in regs:
        return regs[full] & 0xFFFFFFFF
    return None


class _Release:
    def __init__(self, lock: threading.Lock) -> None:
        self._lock = lock

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc) -> None:
        self._lock.release()


# -- event payloads, in words ---------------------------------------------------------------

_VECTOR_NAMES = {0: "#DE", 1: "#DB", 3: "#BP", 6: "#UD", 8: "#DF", 13: "#GP", 14: "#PF",
                 32: "timer", 33: "console", 34: "sockets"}


def _short_bytes(data: bytes, limit: int = 40) -> str:
    text = repr(data[:limit])[2:-1]
    return text + ("…" if len(data) > limit else "")


_LINUX_KINDS = frozenset({EventKind.SYSCALL, EventKind.SIGNAL, EventKind.BLOB, EventKind.SWITCH,
                          EventKind.SIGNAL_IN})


def format_payload(event: Event, *, string_limit: int = EVENT_STRING_LIMIT) -> str:
    """An event's payload in a few words (the event list, search).

    A Linux program's system calls and signals read as strace prints them
    (``openat(AT_FDCWD, "/etc/ld.so.cache", O_RDONLY|O_CLOEXEC) = 3``), with at most
    ``string_limit`` bytes of the data they carry.
    """
    kind, p = event.kind, event.payload
    if kind in _LINUX_KINDS:
        from replay.render import render_event

        try:
            return render_event(event, string_limit=string_limit)
        except Exception:          # a payload of a shape the renderer does not expect: as it is
            return "" if p is None else str(p)[:60]
    try:
        if kind is EventKind.SOCK_DATA:
            chan, data = p
            return f"ch {chan} +{len(data)}B '{_short_bytes(data)}'"
        if kind in (EventKind.SOCK_ACCEPT, EventKind.SOCK_HUP):
            return f"ch {p}"
        if kind is EventKind.CONSOLE_IN:
            return f"'{_short_bytes(p)}'"
        if kind is EventKind.INTERRUPT:
            return f"vector {p} ({_VECTOR_NAMES.get(p, 'irq')})"
        if kind is EventKind.EXCEPTION:
            vector, error = p
            return f"vector {vector} ({_VECTOR_NAMES.get(vector, 'exception')}) error {error}"
        if kind in (EventKind.RDTSC, EventKind.ENTROPY):
            return f"{p:#x}"
        if kind is EventKind.CLOCK:
            return f"{p} ns"
        if kind is EventKind.DIGEST:
            return f"rip {p[0]:#x}"
        if kind is EventKind.OUTPUT:
            return f"{p[0]} {p[2]} bytes"
        if kind is EventKind.END:
            return str(p.get("reason")) if isinstance(p, dict) else str(p)
    except (TypeError, ValueError, IndexError, AttributeError):
        pass
    return "" if p is None else str(p)[:60]


def _payload_bytes(event: Event) -> bytes:
    p = event.payload
    if isinstance(p, bytes):
        return p
    if isinstance(p, list):
        return b"".join(x for x in p if isinstance(x, bytes))
    return b""


__all__ = ["CodeRow", "DebugSession", "MemoryWindow", "Moment", "SessionBusy", "StackSlot",
           "end_summary", "format_payload"]

"""The processes of a Linux program's trace: ``vmrr ps``, ``vmrr info`` and ``vmrr events --pid``.

A finished recording says it all in its END record: the Linux summary lists every process
that ran (vmm/linux/kernel.py ``process_list``), with its parent, argv, program, wait
status, the icounts where it started and ended and its thread ids. No replay is needed.

A trace without that list (a killed recording's ``.incomplete``, a trace salvaged with
``--recover``, one recorded before vmrr kept the list) is rebuilt from its events, which
say less:

- the first thread seen is the program vmrr started (argv and program from the header);
- fork, vfork and clone name a new process or thread in their result; a vfork (or a
  clone with CLONE_VFORK) blocks, so its event has no result: the child is the id the host
  gave for it (a ``newpid`` answer in the event), or, in a trace whose ids the kernel
  counted itself, the next one (ids are given in order, and every other one is in some event);
- a successful execve (it never returns: no result) runs the path it names, but its argv
  is in the program's memory, not in the event: the argv is unknown from then on;
- exit_group (or the last thread's exit) gives the exit code; a SIGKILL sent by kill,
  tkill or tgkill to one process ends it there; any other death by a signal is not in the
  events: a wait4 that returns the child (or a SIGCHLD about it) shows that it ended, not how;
- as in the kernel, the children a process leaves behind unreaped are init's (pid 1) then.

What the events do not tell is None here and ``?`` in ``vmrr ps``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from trace_format.events import EventKind

# System call numbers (x86-64) the rebuild reads.
NR_CLONE, NR_FORK, NR_VFORK, NR_EXECVE, NR_EXIT, NR_WAIT4, NR_KILL = 56, 57, 58, 59, 60, 61, 62
NR_CLONE3 = 435
NR_TKILL, NR_EXIT_GROUP, NR_TGKILL, NR_EXECVEAT = 200, 231, 234, 322
CLONE_THREAD = 0x10000
SIGKILL, SIGCHLD = 9, 17
CLD_EXITED, CLD_KILLED, CLD_DUMPED = 1, 2, 3
MAX_ID = 1 << 31
INIT_PID = 1                # the parent of orphans (vmm/linux/kernel.py)
EVENT_KINDS = frozenset({EventKind.SYSCALL, EventKind.SIGNAL, EventKind.SWITCH})

# A process's state, as ``vmrr ps --json`` names it.
EXITED, KILLED, RUNNING, ENDED, UNKNOWN = "exited", "killed", "running", "ended", "unknown"


@dataclass
class Process:
    """One process of the tree. None is "the trace does not say" (only in a rebuilt tree).

    Attributes:
        status: the wait status (``code << 8`` for an exit, the signal for a death by one).
        ended: True when it ended (``status`` may still be unknown in a rebuilt tree),
            False when it was still running at the end of the run, None when unknown.
        cut: the summary kept only part of its argv or thread ids.
    """

    pid: int
    ppid: int | None
    argv: list[str] | None
    exe: str | None
    status: int | None
    ended: bool | None
    start_icount: int | None
    end_icount: int | None
    tids: list[int] = field(default_factory=list)
    cut: bool = False

    @property
    def state(self) -> str:
        if self.status is not None:
            return KILLED if self.status & 0x7F else EXITED
        if self.ended is False:
            return RUNNING
        return ENDED if self.ended else UNKNOWN

    @property
    def exit_code(self) -> int | None:
        return (self.status >> 8) & 0xFF if self.state == EXITED else None

    @property
    def signal(self) -> int | None:
        return self.status & 0x7F if self.state == KILLED else None


@dataclass
class ProcessTree:
    """The processes, in the order they started; ``rebuilt`` when they come from events."""

    processes: list[Process]
    rebuilt: bool
    omitted: int = 0                     # processes the summary left out (it is bounded)

    @property
    def first(self) -> Process | None:
        return self.processes[0] if self.processes else None

    def by_pid(self) -> dict[int, Process]:
        return {p.pid: p for p in self.processes}


# -- from the END record ---------------------------------------------------------------------

def from_summary(summary: dict) -> ProcessTree | None:
    """The tree a checked Linux summary (checks.summary_problem) holds; None when it has no
    process list (a trace recorded before vmrr kept one)."""
    rows = summary.get("processes")
    if rows is None:
        return None
    out = []
    for row in sorted(rows, key=lambda r: (r["start_icount"], r["pid"])):
        status = row["exit"]
        out.append(Process(row["pid"], row["ppid"], list(row["argv"]), row["exe"], status, status is not None,
                           row["start_icount"], row["end_icount"], list(row["tids"]), bool(row.get("cut"))))
    return ProcessTree(out, rebuilt=False, omitted=summary.get("processes_omitted", 0))


# -- from the events --------------------------------------------------------------------------

def _s32(value: object) -> int | None:
    if type(value) is not int:
        return None
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


def _child_id(ret: object) -> int | None:
    """A fork's or clone's result when it names a new process or thread."""
    return ret if type(ret) is int and 0 < ret < MAX_ID else None


class TreeBuilder:
    """Rebuilds the tree from SYSCALL, SIGNAL and SWITCH events, fed in trace order.

    Args:
        argv, exe, ppid: the program vmrr started (the trace header's) and its parent, for
            the first thread seen.
    """

    def __init__(self, argv: list[str] | None, exe: str | None, ppid: int | None = 0) -> None:
        self.first_argv = list(argv) if argv is not None else None
        self.first_exe = exe
        self.first_ppid = ppid
        self.processes: dict[int, Process] = {}
        self.task_pid: dict[int, int] = {}            # tid -> pid
        self.live: dict[int, set[int]] = {}           # pid -> its threads not known to have ended
        self.highest = 0                              # the highest id handed out, as far as seen
        self.reaped: set[int] = set()                 # children a wait4 returned

    def feed(self, event) -> None:
        kind, payload = event.kind, event.payload
        if type(payload) is not list or not payload or type(payload[0]) is not int:
            return
        if kind is EventKind.SYSCALL and len(payload) == 5:
            self._syscall(event.icount, *payload)
        elif kind is EventKind.SIGNAL and len(payload) == 4:
            self._signal(event.icount, *payload)
        elif kind is EventKind.SWITCH:
            self.pid_of(payload[0], event.icount)

    def tree(self) -> ProcessTree:
        return ProcessTree(sorted(self.processes.values(),
                                  key=lambda p: (p.start_icount is None, p.start_icount or 0, p.pid)),
                           rebuilt=True)

    def pid_of(self, tid: int, icount: int) -> int:
        """The process of thread ``tid``; a thread first seen here is a process of its own
        (the first one is the program vmrr started) whose origin is unknown."""
        pid = self.task_pid.get(tid)
        if pid is not None:
            return pid
        if not self.processes:
            self._new(tid, self.first_ppid, self.first_argv, self.first_exe, 0)
        else:
            self._new(tid, None, None, None, None)
        return tid

    def _new(self, pid: int, ppid: int | None, argv, exe, start: int | None) -> Process:
        proc = Process(pid, ppid, list(argv) if argv is not None else None, exe, None, None, start, None, [pid])
        self.processes[pid] = proc
        self.task_pid[pid] = pid
        self.live[pid] = {pid}
        self.highest = max(self.highest, pid)
        return proc

    def _end(self, proc: Process, status: int | None, icount: int | None) -> None:
        if proc.ended:
            if proc.status is None and status is not None and proc.end_icount is None:
                proc.status, proc.end_icount = status, icount
                self._orphan(proc)
            return
        proc.ended, proc.status, proc.end_icount = True, status, icount
        self.live[proc.pid] = set()
        if icount is not None:
            self._orphan(proc)

    def _orphan(self, parent: Process) -> None:
        """``parent`` ended: its children not reaped yet are init's now (as the kernel
        reparents them, and as the END record's list shows them)."""
        for child in self.processes.values():
            if child.ppid == parent.pid and child.pid not in self.reaped and child is not parent:
                child.ppid = INIT_PID

    def _syscall(self, icount: int, tid: int, nr: object, args: object, ret: object, answers: object) -> None:
        pid = self.pid_of(tid, icount)
        proc = self.processes[pid]
        args = args if type(args) is list else []
        arg = lambda i: args[i] if i < len(args) else None   # noqa: E731
        clone = nr in (NR_CLONE, NR_CLONE3)        # clone3's event shows its flags as clone's
        flags = arg(0) if clone and type(arg(0)) is int else 0
        if nr in (NR_FORK, NR_VFORK) or clone and not flags & CLONE_THREAD:
            child = _child_id(ret)
            if ret is None:                # a vfork waits for its child: the id given to it is the child's
                given = [a[1] for a in answers if type(a) is list and len(a) == 2 and a[0] == "newpid"] \
                    if type(answers) is list else []
                child = _child_id(given[-1]) if given else \
                    self.highest + 1 if self.highest + 1 < MAX_ID else None
            if child is not None and child not in self.task_pid:
                self._new(child, pid, proc.argv, proc.exe, icount)
        elif clone:
            thread = _child_id(ret)
            if thread is not None and thread not in self.task_pid:
                self.task_pid[thread] = pid
                proc.tids.append(thread)
                self.live.setdefault(pid, set()).add(thread)
                self.highest = max(self.highest, thread)
        elif nr in (NR_EXECVE, NR_EXECVEAT) and ret is None:
            path = arg(0) if nr == NR_EXECVE else arg(1)
            proc.argv = None
            proc.exe = path if type(path) is str and (nr == NR_EXECVE or path.startswith("/")) else None
            self.live[pid] = {tid}                     # exec ends the other threads
        elif nr == NR_EXIT_GROUP:
            code = arg(0)
            self._end(proc, (code & 0xFF) << 8 if type(code) is int else None, icount)
        elif nr == NR_EXIT:
            live = self.live.setdefault(pid, set())
            live.discard(tid)
            if not live:
                code = arg(0)
                self._end(proc, (code & 0xFF) << 8 if type(code) is int else None, icount)
        elif nr == NR_KILL and ret == 0 and _s32(arg(1)) == SIGKILL:
            target = self.processes.get(_s32(arg(0)))
            if target is not None:
                self._end(target, SIGKILL, icount)
        elif nr in (NR_TKILL, NR_TGKILL) and ret == 0 and _s32(arg(1 if nr == NR_TKILL else 2)) == SIGKILL:
            target_pid = self.task_pid.get(_s32(arg(0 if nr == NR_TKILL else 1)))
            if target_pid is not None:
                self._end(self.processes[target_pid], SIGKILL, icount)
        elif nr == NR_WAIT4:
            child = self.processes.get(_child_id(ret))
            if child is not None and child.pid != pid:
                self.reaped.add(child.pid)
                self._end(child, None, None)           # reaped: it ended by now, how is not said

    def _signal(self, icount: int, tid: int, signo: object, code: object, value: object) -> None:
        self.pid_of(tid, icount)
        if signo == SIGCHLD and code in (CLD_EXITED, CLD_KILLED, CLD_DUMPED):
            child = self.processes.get(_child_id(value))
            if child is not None:
                self._end(child, None, None)


def from_events(events, argv: list[str] | None, exe: str | None, ppid: int | None = 0) -> ProcessTree:
    builder = TreeBuilder(argv, exe, ppid)
    for event in events:
        builder.feed(event)
    return builder.tree()


# -- a trace's tree ----------------------------------------------------------------------------

def linux_program(reader):
    """The program a Linux trace started (its header, checked), or a BadTraceData error."""
    from vmm.errors import BadTraceData
    from vmm.linux.program import LinuxProgram

    config = reader.header.config
    if "linux" not in config.devices:
        raise BadTraceData(f"{reader.path}: an appliance's trace: it has no Linux processes")
    return LinuxProgram.from_header(config.devices["linux"], config.image, config.image_name,
                                    where=str(reader.path))


def checked_summary(reader) -> dict | None:
    """The END record's Linux summary, checked (BadTraceData names the problem), or None."""
    from vmm.errors import BadTraceData
    from vmm.linux.checks import summary_problem

    summary = (reader.end or {}).get("linux")
    if summary is None:
        return None
    problem = summary_problem(summary)
    if problem is not None:
        raise BadTraceData(f"{reader.path}: the END record's linux summary {problem}")
    return summary


def process_tree(reader) -> ProcessTree:
    """The process tree of a Linux program's trace: the END record's, else rebuilt from events.

    Raises:
        BadTraceData: not a Linux program's trace, or its summary is malformed.
        ImageError: its header is malformed. TraceCorrupt: a chunk is damaged.
    """
    program = linux_program(reader)
    summary = checked_summary(reader)
    tree = from_summary(summary) if summary is not None else None
    if tree is not None:
        return tree
    return from_events(reader.events(kinds=EVENT_KINDS), program.argv, program.exe.path, first_ppid(program))


def first_ppid(program) -> int | None:
    """The parent of the program vmrr started: the header's identity when it has one (the
    host's pids), else 0 (vmrr's own numbering)."""
    identity = getattr(program, "identity", None)
    if isinstance(identity, (list, tuple)) and len(identity) > 1 and type(identity[1]) is int:
        return identity[1]
    return 0


def thread_owners(reader, tree: ProcessTree) -> dict[int, int]:
    """tid -> pid for every thread of the tree (from the events when the summary cut a list)."""
    if tree.rebuilt or tree.omitted or any(p.cut for p in tree.processes):
        program = linux_program(reader)
        builder = TreeBuilder(program.argv, program.exe.path, first_ppid(program))
        for event in reader.events(kinds=EVENT_KINDS):
            builder.feed(event)
        owners = dict(builder.task_pid)
    else:
        owners = {}
    for proc in tree.processes:
        for tid in proc.tids:
            owners[tid] = proc.pid
    return owners


# -- how it prints ----------------------------------------------------------------------------

def printable(text: str) -> str:
    """``text`` safe for a terminal: control and other unprintable characters escaped."""
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if ch.isprintable():
            out.append(ch)
        elif ch in "\n\t\r":
            out.append({"\n": "\\n", "\t": "\\t", "\r": "\\r"}[ch])
        elif ord(ch) < 0x100:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(f"\\u{ord(ch):04x}" if ord(ch) < 0x10000 else f"\\U{ord(ch):08x}")
    return "".join(out)


def command_text(proc: Process) -> str:
    """CMD: argv as a shell would take it back; ``?`` when the events do not tell it."""
    import shlex

    if proc.argv is None:
        return "?" + (f" (execve {printable(proc.exe)})" if proc.exe is not None else "")
    text = printable(shlex.join(proc.argv)) if proc.argv else f"({printable(proc.exe or '?')}, no argv)"
    return text + (" ..." if proc.cut else "")


def exit_text(proc: Process) -> str:
    """EXIT as rr ps prints it: the code of an exit, minus the signal of a death by one,
    ``-`` for a process still running at the end, ``?`` when the trace does not say."""
    state = proc.state
    if state == EXITED:
        return str(proc.exit_code)
    if state == KILLED:
        return f"-{proc.signal}"
    return "-" if state == RUNNING else "?"


def _icount(value: int | None, proc: Process) -> str:
    if value is not None:
        return str(value)
    return "-" if proc.state == RUNNING else "?"


def table(tree: ProcessTree) -> list[str]:
    """The lines of ``vmrr ps``: a header, then one row per process."""
    rows = [["PID", "PPID", "EXIT", "START-ICOUNT", "END-ICOUNT", "CMD"]]
    for p in tree.processes:
        rows.append([str(p.pid), "?" if p.ppid is None else str(p.ppid), exit_text(p),
                     "?" if p.start_icount is None else str(p.start_icount), _icount(p.end_icount, p),
                     command_text(p)])
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row[:5], widths)) + "  " + row[5] for row in rows]


def as_json(proc: Process, rebuilt: bool) -> dict:
    """One process for ``vmrr ps --json`` and ``vmrr info --json``."""
    from vmm.linux.names import signal_name

    signal = proc.signal
    return {"pid": proc.pid, "ppid": proc.ppid, "state": proc.state, "exit_code": proc.exit_code,
            "signal": signal, "signal_name": signal_name(signal) if signal is not None else None,
            "wait_status": proc.status, "start_icount": proc.start_icount, "end_icount": proc.end_icount,
            "argv": proc.argv, "exe": proc.exe, "tids": list(proc.tids), "cut": proc.cut, "rebuilt": rebuilt}


def counts_text(rows: list[dict], rebuilt: bool, omitted: int = 0) -> str:
    """``vmrr info``'s processes line, from ``as_json`` rows: how many, and how they ended."""
    states = [row["state"] for row in rows]
    parts = [f"{states.count(KILLED)} killed by a signal",
             f"{sum(1 for row in rows if row['state'] == EXITED and row['exit_code'])} exited non-zero"]
    if states.count(RUNNING):
        parts.append(f"{states.count(RUNNING)} still running at the end")
    unknown = states.count(ENDED) + states.count(UNKNOWN)
    if unknown:
        parts.append(f"{unknown} whose end the events do not tell")
    text = f"{len(rows) + omitted}{' (rebuilt from events)' if rebuilt else ''}: " + ", ".join(parts)
    if omitted:
        text += f"; {omitted} left out of the trace's list, which is bounded"
    return text

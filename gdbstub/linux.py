"""What gdb sees of a recorded Linux program: its processes, threads, files and auxv.

A trace of a Linux program (``tt.machine.kernel`` is a ``LinuxKernel``) is shown to gdb
as GNU/Linux processes. gdb's svr4 support then finds a program's shared libraries by
itself, walking the dynamic linker's ``r_debug``/``link_map`` in the program's memory,
and opens each one by path through host I/O; ``LinuxProcess.file`` answers with the
bytes recorded in the trace, never a host file, so a gdb on another machine (or after
the program was deleted) sees exactly what ran:

- the executable and the ELF interpreter, from the trace header;
- every file the program read (libraries included), from the trace's END summary;
- whatever file a live process maps at the current position (a program a child exec'd);
- ``/proc/PID/...`` (maps, auxv, cmdline, ...) of a live process, as the personality
  shows them now.

Threads are the kernel's tids (vmm/linux/tasks.py), of every live process; gdb names
them ``pPID.TID`` when it speaks the multiprocess extensions, as gdb 13 does. Each
process has its own address space: its memory is read through its own page tables
(vmm/linux/memory.py), never the CPU's, so gdb reads a process that is off the CPU as
it is. ``event_positions``, ``births``, ``execs`` and ``deaths`` tell where processes
begin, exec and end, for the stop replies gdb expects (gdbstub/inferiors.py).
"""

from __future__ import annotations

import bisect
from contextlib import contextmanager
from xml.sax.saxutils import escape as xml_escape

from trace_format.events import EventKind
from vmm.cpu import _VECTOR_HEAD
from vmm.linux import procfs
from vmm.linux.memory import PAGE, USER_END
from vmm.linux.process import ALIVE
from vmm.linux.tasks import CTX_NAMES, DONE

_XMM_AT = _VECTOR_HEAD.size + 8 * 10         # in Cpu.vector_state(): after the header and x87


class LinuxProcess:
    """The Linux side of a gdb session over ``tt``.

    Args:
        tt: the TimeTravel of a Linux program's trace.
    """

    def __init__(self, tt) -> None:
        self.tt = tt
        self.kernel = tt.machine.kernel
        program = tt.image
        self.exec_path: str = program.exe.path
        self._fixed: dict[str, bytes] = {program.exe.path: program.exe.data}
        if program.interp is not None:
            self._fixed[program.interp.path] = program.interp.data
        self._recorded: dict[str, str] = {}           # path -> content id, from the END summary
        linux = (tt.end or {}).get("linux")
        files = linux.get("files") if isinstance(linux, dict) else None
        for item in files if isinstance(files, list) else ():
            if (isinstance(item, list) and len(item) >= 2 and isinstance(item[0], str)
                    and isinstance(item[1], str)):
                self._recorded.setdefault(item[0], item[1])
        self._cache: dict[str, bytes] = {}
        self._events: list[int] | None = None         # event_positions, once read
        self._calls: dict[int, list[list]] = {}

    # -- processes and threads -----------------------------------------------------------

    @property
    def pid(self) -> int:
        """The process on the CPU (the first one before the program forks)."""
        return self.kernel.pid

    def _process(self, pid: int | None):
        """The live process ``pid`` (None: the one on the CPU), or None."""
        kernel = self.kernel
        if pid is None or pid == kernel.pid:
            return kernel.proc                # until the scheduler switches away, even ended
        proc = kernel.processes.get(pid)
        return proc if proc is not None and proc.state == ALIVE else None

    def pids(self) -> list[int]:
        """The live processes at the current position, the one on the CPU first."""
        current = self.kernel.pid
        alive = sorted(p.pid for p in self.kernel.processes.values() if p.state == ALIVE)
        return ([current] if current in alive else []) + [pid for pid in alive if pid != current]

    def threads(self) -> list[tuple[int, int]]:
        """(pid, tid) of every live thread of every live process at the current position: the
        thread on the CPU first (even one that has just exited, until the scheduler switches
        away), then by process and thread id."""
        kernel = self.kernel
        current = kernel.current
        alive = {p.pid for p in kernel.processes.values() if p.state == ALIVE}
        rest = sorted((t.pid, t.tid) for t in kernel.tasks.values()
                      if t.state != DONE and t.pid in alive and t is not current)
        return [(current.pid, current.tid)] + rest

    def tids(self) -> list[int]:
        return [tid for _pid, tid in self.threads()]

    def current(self) -> tuple[int, int]:
        """(pid, tid) of the thread that ran the instruction at the current position."""
        return self.kernel.pid, self.kernel.tid

    def current_tid(self) -> int:
        return self.kernel.tid

    def pid_of(self, tid: int) -> int | None:
        """The process of thread ``tid`` (tids are unique across processes, as on Linux)."""
        if tid == self.kernel.tid:
            return self.kernel.pid
        task = self.kernel.tasks.get(tid)
        return task.pid if task is not None else None

    def thread_of(self, pid: int) -> int | None:
        """A thread of process ``pid`` for requests that name only the process: the one on
        the CPU if it is that process's, else its leader, else its first live thread."""
        if pid == self.kernel.pid:
            return self.kernel.tid
        threads = [tid for p, tid in self.threads() if p == pid]
        if not threads:
            return None
        return pid if pid in threads else threads[0]

    def thread_name(self, tid: int) -> str:
        task = self.kernel.tasks.get(tid)
        return task.name if task is not None else self.kernel.comm

    def thread_state(self, tid: int) -> str:
        """For ``info threads``: running, or what the thread waits on."""
        task = self.kernel.tasks.get(tid)
        if task is None or tid == self.kernel.tid:
            return "on the CPU"
        return task.describe_wait()

    def thread_registers(self, tid: int, current: dict[str, int]) -> dict[str, int]:
        """The registers of thread ``tid`` (``current``: the CPU's): the CPU's for the
        running thread, the saved ones (vmm/linux/tasks.py) for a thread off the CPU, with
        CR3 its process's page tables; xmm0-15 and mxcsr from its vector state."""
        kernel = self.kernel
        task = kernel.tasks.get(tid)
        values = dict(current)
        if task is None or task.ctx is None or tid == kernel.tid:
            vector = kernel.machine.cpu.vector_state()
        else:
            ints, vector = task.ctx
            for name, value in zip(CTX_NAMES, ints):
                values["eflags" if name == "rflags" and "eflags" in values else name] = value
            proc = kernel.processes.get(task.pid)
            if proc is not None and proc.space.root and "cr3" in values:
                values["cr3"] = proc.space.root
        values["mxcsr"] = _VECTOR_HEAD.unpack_from(vector, 0)[4]
        for i in range(16):
            at = _XMM_AT + 16 * i
            values[f"xmm{i}"] = int.from_bytes(vector[at:at + 16], "little")
        return values

    def threads_xml(self, thread_id, shown=lambda _pid: True) -> bytes:
        """``qXfer:threads:read``: the threads of every process ``shown(pid)`` with their
        names; ``thread_id(pid, tid)`` formats an id."""
        rows = [f'<thread id="{thread_id(pid, tid)}" core="0" name="{xml_escape(self.thread_name(tid), {chr(34): "&quot;"})}"/>'
                for pid, tid in self.threads() if shown(pid)]
        return ('<?xml version="1.0"?>\n<threads>\n' + "\n".join(rows) + "\n</threads>\n").encode()

    def exe(self, pid: int | None = None) -> str | None:
        """The path of the program process ``pid`` runs (None: the one on the CPU)."""
        proc = self._process(pid)
        return proc.exe if proc is not None else None

    # -- memory --------------------------------------------------------------------------

    def read_memory(self, address: int, size: int, pid: int | None = None) -> bytes | None:
        """``size`` bytes at a virtual address of process ``pid`` (None: the one on the CPU),
        through that process's page tables, not the CPU's; None if a page of it is neither
        present nor mapped. Nothing is faulted in."""
        proc = self._process(pid)
        if proc is None or not proc.space.root or address < 0 or address + size > USER_END:
            return None
        out = bytearray()
        while len(out) < size:
            here = address + len(out)
            n = min(size - len(out), PAGE - here % PAGE)
            data = proc.space.peek(here, n)
            if data is None:
                data = self.untouched(here, n, pid)
            if data is None:
                return None
            out += data
        return bytes(out)

    def untouched(self, address: int, size: int, pid: int | None = None) -> bytes | None:
        """Bytes of a mapped page the program never touched (so it has no frame yet).

        Linux would show them through ptrace: the file's bytes for a file mapping (zeros
        past its end), zeros for anonymous memory. None outside every mapping. ``size``
        must stay within one page.
        """
        proc = self._process(pid)
        vma = proc.space.find(address) if proc is not None else None
        if vma is None:
            return None
        if vma.file is None:
            return bytes(size)
        try:
            data = self.kernel.file_content(vma.file)
        except Exception:
            return None
        offset = vma.offset + (address - vma.start)
        chunk = data[offset:offset + size]
        return chunk + bytes(size - len(chunk))

    def physical_ranges(self, address: int, length: int,
                        pid: int | None = None) -> list[tuple[int, int, int]] | None:
        """[(virtual, physical, length)] behind a virtual range of process ``pid`` now
        (vmm/linux/memory.py)."""
        proc = self._process(pid)
        return proc.space.physical_ranges(address, length) if proc is not None else None

    # -- memory map and files ------------------------------------------------------------

    def auxv(self, pid: int | None = None) -> bytes | None:
        """The auxiliary vector process ``pid`` started its program with (AT_ENTRY
        relocates a PIE)."""
        proc = self._process(pid)
        return proc.auxv if proc is not None else None

    def file(self, path: str) -> bytes | None:
        """The recorded bytes of ``path`` (see the module docstring), or None."""
        if path in self._fixed:
            return self._fixed[path]
        if path in self._cache:
            return self._cache[path]
        virtual = self._proc_file(path)
        if virtual is not None:
            return virtual
        data = None
        file_id = self._recorded.get(path)
        if file_id is not None:
            try:
                data = self.kernel.file_content(file_id)
            except Exception:                 # the blob is missing or damaged: try the map
                data = None
        if data is None:
            data = self._mapped(path)
        if data is not None:
            self._cache[path] = data
        return data

    def _mapped(self, path: str) -> bytes | None:
        """The content of a file some live process maps at ``path`` now (the program a
        child exec'd, its libraries), the process on the CPU first."""
        for pid in self.pids():
            for vma in self.kernel.processes[pid].space.vmas:
                if vma.file is not None and vma.name == path:
                    try:
                        return self.kernel.file_content(vma.file)
                    except Exception:
                        return None
        return None

    def _proc_pid(self, path: str) -> tuple[int, str] | None:
        """(pid, rest) of ``/proc/PID/REST`` for a live process, else None."""
        if not path.startswith("/proc/"):
            return None
        pid_text, _, rest = path[len("/proc/"):].partition("/")
        if not pid_text.isdigit() or self._process(int(pid_text)) is None:
            return None
        return int(pid_text), rest

    @contextmanager
    def _viewing(self, pid: int):
        """The personality's per-process attributes (``k.space``, ``k.pid``, ...) show
        process ``pid`` for the duration: the machine is stopped, nothing else runs."""
        kernel = self.kernel
        saved = kernel.proc, kernel.current
        kernel.proc, kernel.current = kernel.processes[pid], kernel.tasks[self.thread_of(pid)]
        try:
            yield
        finally:
            kernel.proc, kernel.current = saved

    def _proc_file(self, path: str) -> bytes | None:
        """``/proc/PID/...`` of any live process for gdb's ``info proc``: the personality's
        view, now."""
        found = self._proc_pid(path)
        if found is None or found[1].startswith("task/") or self.thread_of(found[0]) is None:
            return None
        try:
            with self._viewing(found[0]):
                return procfs.content(self.kernel, path)
        except Exception:
            return None

    def readlink(self, path: str) -> str | None:
        if path in ("/proc/self/exe", "/proc/self/cwd"):
            path = f"/proc/{self.kernel.pid}/{path.rsplit('/', 1)[1]}"
        found = self._proc_pid(path)
        if found is None:
            return None
        proc = self.kernel.processes[found[0]]
        return {"exe": proc.exe, "cwd": proc.cwd}.get(found[1])

    # -- process events ------------------------------------------------------------------

    def event_positions(self) -> list[int]:
        """Positions where a process may have begun, exec'd or ended: every system call
        that can do it (clone, fork, vfork, execve, exit, kill...) and every signal or
        CPU exception, from the trace's events (read once). Empty for a trace that never
        forks nor execs: a single program has no process events to report."""
        if self._events is None:
            calls: dict[int, list[list]] = {}
            others: set[int] = set()
            interesting = False
            kinds = {EventKind.SYSCALL, EventKind.SIGNAL, EventKind.SIGNAL_IN, EventKind.EXCEPTION}
            for event in self.tt.reader.events(kinds=kinds):
                if event.kind is not EventKind.SYSCALL:
                    others.add(event.icount)
                    continue
                payload = event.payload
                nr, args, ret = payload[1], payload[2], payload[3]
                if nr not in _PROCESS_CALLS or nr in _CLONES and args and type(args[0]) is int \
                        and args[0] & _CLONE_THREAD:
                    continue                 # not a process call, or a new thread
                calls.setdefault(event.icount, []).append(payload)
                if nr in _FORK_CALLS and (ret is None or type(ret) is int and ret > 0) \
                        or nr in _EXEC_CALLS and ret is None:
                    interesting = True       # a fork (a vfork returns later), an exec
            self._calls = calls
            self._events = sorted(set(calls) | others) if interesting else []
        return self._events

    def next_event_position(self, after: int) -> int | None:
        """The first of ``event_positions`` after position ``after``."""
        marks = self.event_positions()
        i = bisect.bisect_right(marks, after)
        return marks[i] if i < len(marks) else None

    def births(self) -> list[tuple[int, int, int, bool]]:
        """(child pid, parent pid, forking thread, vfork) of each process a system call at
        the current position created (a vfork's parent waits in it: no return value)."""
        here = self.tt.icount
        forkers = [payload[0] for payload in self._calls.get(here, ()) if payload[1] in _FORK_CALLS]
        out = []
        for child in sorted(self.kernel.processes.values(), key=lambda p: p.pid):
            if child.start_icount != here or child.state != ALIVE or not forkers:
                continue
            tid = next((t for t in forkers if self.pid_of(t) == child.ppid), child.ppid)
            out.append((child.pid, child.ppid, tid, child.vfork_parent is not None))
        return out

    def execs(self) -> list[tuple[int, int, str]]:
        """(pid, tid, new program's path) of each execve that succeeded at the current position."""
        out = []
        for payload in self._calls.get(self.tt.icount, ()) if self._events else ():
            tid, nr, _args, ret = payload[:4]
            pid = self.pid_of(tid)
            if nr in _EXEC_CALLS and ret is None and pid is not None and pid in self.kernel.processes:
                out.append((pid, tid, self.kernel.processes[pid].exe))
        return out

    def deaths(self) -> list[tuple[int, int]]:
        """(pid, wait status) of each process that ended at the current position (a zombie
        now, or already reaped)."""
        here = self.tt.icount
        out = {p.pid: p.exit for p in self.kernel.processes.values()
               if p.state != ALIVE and p.end_icount == here and p.exit is not None}
        for row in self.kernel.ended:
            if row[6] == here and isinstance(row[4], int):
                out.setdefault(row[0], row[4])
        return sorted(out.items())


_CLONES, _CLONE_THREAD = frozenset({56, 435}), 0x10000     # clone3's event shows its flags as clone's
_FORK_CALLS = frozenset({56, 57, 58, 435})               # clone, fork, vfork, clone3
_EXEC_CALLS = frozenset({59, 322})                       # execve, execveat
_PROCESS_CALLS = _FORK_CALLS | _EXEC_CALLS | {60, 62, 200, 231, 234}   # exit, kill, tkill, exit_group, tgkill

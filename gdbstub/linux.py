"""What gdb sees of a recorded Linux program: its process, threads, files and auxv.

A trace of a Linux program (``tt.machine.kernel`` is a ``LinuxKernel``) is shown to gdb
as a GNU/Linux process. gdb's svr4 support then finds the program's shared libraries by
itself, walking the dynamic linker's ``r_debug``/``link_map`` in the program's memory,
and opens each one by path through host I/O; ``LinuxProcess.file`` answers with the
bytes recorded in the trace, never a host file, so a gdb on another machine (or after
the program was deleted) sees exactly what ran:

- the executable and the ELF interpreter, from the trace header;
- every file the program read (libraries included), from the trace's END summary;
- whatever file is mapped at the current position (``LinuxKernel.file_by_path``);
- ``/proc/PID/...`` (maps, auxv, cmdline, ...), as the personality shows them now.

Threads are the kernel's tids (vmm/linux/tasks.py); gdb names them ``pPID.TID`` when it speaks
the multiprocess extensions, as gdb 13 does.
"""

from __future__ import annotations

from xml.sax.saxutils import escape as xml_escape

from vmm.linux.tasks import CTX_NAMES
from vmm.linux import procfs


class LinuxProcess:
    """The Linux side of a gdb session over ``tt``.

    Args:
        tt: the TimeTravel of a Linux program's trace.
    """

    def __init__(self, tt) -> None:
        self.tt = tt
        self.kernel = tt.machine.kernel
        self.pid: int = self.kernel.pid
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

    # -- threads -------------------------------------------------------------------------

    def tids(self) -> list[int]:
        """The live threads of the process at the current position (the running one first)."""
        current = self.kernel.tid
        return [current] + [t.tid for t in self.kernel.live_tasks() if t.tid != current]

    def current_tid(self) -> int:
        """The thread that ran the instruction at the current position."""
        return self.kernel.tid

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
        """The integer registers of thread ``tid``: the CPU's for the running thread, the
        saved ones (vmm/linux/tasks.py) for a thread off the CPU. The vector registers
        shown are the CPU's in both cases."""
        task = self.kernel.tasks.get(tid)
        if task is None or task.ctx is None:
            return current
        values = dict(current)
        for name, value in zip(CTX_NAMES, task.ctx[0]):
            values["eflags" if name == "rflags" and "eflags" in values else name] = value
        return values

    def threads_xml(self, thread_id) -> bytes:
        """``qXfer:threads:read``: the threads with their names; ``thread_id`` formats an id."""
        rows = [f'<thread id="{thread_id(tid)}" core="0" name="{xml_escape(self.thread_name(tid), {chr(34): "&quot;"})}"/>'
                for tid in self.tids()]
        return ('<?xml version="1.0"?>\n<threads>\n' + "\n".join(rows) + "\n</threads>\n").encode()

    # -- memory --------------------------------------------------------------------------

    def untouched(self, address: int, size: int) -> bytes | None:
        """Bytes of a mapped page the program never touched (so it has no frame yet).

        Linux would show them through ptrace: the file's bytes for a file mapping (zeros
        past its end), zeros for anonymous memory. None outside every mapping. ``size``
        must stay within one page.
        """
        vma = self.kernel.space.find(address)
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

    def physical_ranges(self, address: int, length: int) -> list[tuple[int, int, int]] | None:
        """[(virtual, physical, length)] behind a virtual range now (vmm/linux/memory.py)."""
        return self.kernel.space.physical_ranges(address, length)

    # -- memory map and files ------------------------------------------------------------

    def auxv(self) -> bytes:
        """The auxiliary vector the program started with (AT_ENTRY relocates a PIE)."""
        return self.kernel.auxv

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
            data = self.kernel.file_by_path(path)
        if data is not None:
            self._cache[path] = data
        return data

    def _proc_file(self, path: str) -> bytes | None:
        """``/proc/PID/...`` for gdb's ``info proc``: the personality's view, now."""
        if not path.startswith(f"/proc/{self.pid}/"):
            return None
        if path.startswith(f"/proc/{self.pid}/task/"):
            return None
        try:
            return procfs.content(self.kernel, path)
        except Exception:
            return None

    def readlink(self, path: str) -> str | None:
        if path in (f"/proc/{self.pid}/exe", "/proc/self/exe"):
            return self.exec_path
        if path in (f"/proc/{self.pid}/cwd", "/proc/self/cwd"):
            return self.kernel.cwd
        return None

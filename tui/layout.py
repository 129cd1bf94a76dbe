"""Where things are in the guest's memory, as the debugger needs it: code (where return
addresses point), the program's own image, the memory worth searching, its source lines.

No textual here. An appliance's layout is fixed by its ELF: PT_LOAD segments at their
physical addresses in one block of RAM. A Linux program's layout is its memory map (the
personality's VMAs, vmm/linux/memory.py): it changes as the program maps libraries and
memory, and time travel moves it back and forth with the rest of the kernel's state, so
``LinuxLayout`` reads the map at the current position every time it is asked.
"""

from __future__ import annotations

import io
import shlex
from pathlib import Path

from tui.source import DEFAULT_SEARCH_DIRS, LineTable

Span = tuple[int, int]                 # [start, end)
PROT_READ, PROT_EXEC = 1, 4
PROGRAM_SHOWN = 48                     # characters of the command line in the status bar


class ApplianceLayout:
    """An SDK appliance: its image in RAM at [0, mem_size).

    Attributes:
        program: None (the status bar names the trace only).
        lines: the image's DWARF line table.
    """

    linux = False
    program: str | None = None

    def __init__(self, timetravel) -> None:
        image = timetravel.image
        self._image = (min((s.guest_phys for s in image.segments), default=0), image.end)
        self._code = executable_ranges(image.elf)
        self._ram = [(0, timetravel.header.config.mem_size)]
        self.lines = LineTable.from_elf(image.elf)

    def lines_now(self) -> LineTable:
        return self.lines

    def image_span(self) -> Span:
        return self._image

    def code_ranges(self) -> list[Span]:
        return self._code

    def regions(self) -> list[Span]:
        """Readable memory, sorted (pages inside may still be absent)."""
        return self._ram

    def modules(self) -> list[tuple[int, int, str, int]]:
        """No shared objects in an appliance: its symbols cover its code."""
        return []

    def mapping_name(self, address: int) -> str | None:
        return None


class LinuxLayout:
    """A Linux program: the executable, its libraries and its memory, from the VMAs now.

    Every question is about the process the personality's ``proc`` names: the one whose
    thread is on the CPU, or another one the debugger shows (tui/session.py view_thread).

    Attributes:
        program: the command line (argv) of the program vmrr started, shortened for the
            status bar.
        lines: that program's DWARF line table at its load address (empty without -g).
    """

    linux = True

    def __init__(self, timetravel) -> None:
        self.kernel = timetravel.machine.kernel
        program = timetravel.image
        self._exe_id = program.exe.sha256
        self.program = _command_line(list(program.argv) or [program.exe.path])
        search_dirs = (Path(program.exe.path).parent, *DEFAULT_SEARCH_DIRS)
        self._exe_base = self.kernel.exe_base
        self.lines = LineTable.from_elf(program.elf, search_dirs=search_dirs, bias=self._exe_base)
        self._no_lines = LineTable([])

    def lines_now(self) -> LineTable:
        """The source lines of the code of the process now: the program's, in a process
        that runs it where it was loaded (the first one, a fork of it); none in a process
        that runs another program (a child that exec'd ``cat``)."""
        kernel = self.kernel
        if kernel.exe_base == self._exe_base and any(v.file == self._exe_id for v in kernel.space.vmas):
            return self.lines
        return self._no_lines

    def image_span(self) -> Span:
        """[lowest, highest) address the executable's own mappings cover."""
        spans = [(v.start, v.end) for v in self.kernel.space.vmas if v.file == self._exe_id]
        if not spans:
            return (0, 0)
        return min(lo for lo, _ in spans), max(hi for _, hi in spans)

    def code_ranges(self) -> list[Span]:
        """Every executable mapping: the program's code and its libraries'."""
        return _merged((v.start, v.end) for v in self.kernel.space.vmas if v.prot & PROT_EXEC)

    def regions(self) -> list[Span]:
        """Every readable mapping, sorted (pages never touched are still absent)."""
        return _merged((v.start, v.end) for v in self.kernel.space.vmas if v.prot & PROT_READ)

    def modules(self) -> list[tuple[int, int, str, int]]:
        """(start, end, file name, load bias) of each executable mapping of an ELF file: an
        address there with no symbol (a stripped libc's local function) still has a name,
        ``libc.so.6+0x2724a``, as gdb and objdump count it."""
        biases = dict(self.kernel.libraries())
        return [(v.start, v.end, v.name.rsplit("/", 1)[-1], biases[v.name])
                for v in self.kernel.space.vmas if v.prot & PROT_EXEC and v.name in biases]

    def mapping_name(self, address: int) -> str | None:
        """What is mapped at ``address``: a path, ``[stack]``, ``[heap]``, ``anonymous memory``."""
        for v in self.kernel.space.vmas:
            if v.start <= address < v.end:
                return v.name or "anonymous memory"
        return None


def layout_for(timetravel) -> ApplianceLayout | LinuxLayout:
    """The layout of the trace's guest: a Linux program when the machine has a kernel."""
    if getattr(timetravel.machine, "kernel", None) is not None:
        return LinuxLayout(timetravel)
    return ApplianceLayout(timetravel)


def clamp_window(address: int, size: int, regions: list[Span]) -> int:
    """``address`` moved so that [address, address + size) stays inside the region holding it."""
    for lo, hi in regions:
        if lo <= address < hi:
            return max(lo, min(address, hi - size))
    return address


def executable_ranges(elf_bytes: bytes) -> list[Span]:
    """[start, end) of an ELF's executable PT_LOAD segments (where return addresses point)."""
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile

    ranges = []
    try:
        for segment in ELFFile(io.BytesIO(elf_bytes)).iter_segments():
            if segment["p_type"] == "PT_LOAD" and segment["p_flags"] & 1:       # PF_X
                ranges.append((segment["p_paddr"], segment["p_paddr"] + segment["p_memsz"]))
    except (ELFError, ValueError, OverflowError):
        pass
    return ranges


def _merged(spans) -> list[Span]:
    out: list[list[int]] = []
    for lo, hi in sorted(spans):
        if out and lo <= out[-1][1]:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return [(lo, hi) for lo, hi in out]


def _command_line(argv: list[str]) -> str:
    """argv as a shell would take it; when long, the program by its base name, then cut."""
    text = shlex.join(argv)
    if len(text) > PROGRAM_SHOWN:
        text = shlex.join([argv[0].rsplit("/", 1)[-1], *argv[1:]])
    return text if len(text) <= PROGRAM_SHOWN else text[:PROGRAM_SHOWN - 1] + "…"


__all__ = ["ApplianceLayout", "LinuxLayout", "clamp_window", "executable_ranges", "layout_for"]

"""Address → source line, from the DWARF line program of a guest image.

No textual here: this module only answers "which file and line is this address?" and
"what does that line say?", for the disassembly panel and for anyone else who wants it.
Guest images are built with ``-g`` (guests/Makefile); their compile directory is wherever
they were built, so a file that is not at its recorded path is looked for under the
repository's ``guests/`` directory, where the guest sources live.
"""

from __future__ import annotations

import bisect
import io
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from elftools.common.exceptions import DWARFError, ELFError
from elftools.elf.elffile import ELFFile

# Where guest sources are when the image was built elsewhere (another checkout, CI).
DEFAULT_SEARCH_DIRS: tuple[Path, ...] = (Path(__file__).resolve().parent.parent / "guests",)


@dataclass(frozen=True, slots=True)
class SourceLocation:
    """One row of the line table.

    Attributes:
        file: the file as the build named it, relative to the compile directory when it
            is inside it (``tests/t_crash_null.c``, ``sdk/boot.S``), else absolute.
        line: 1-based line number (0 when the compiler gave none).
        path: the file on this machine, when it was found; None otherwise.
    """

    file: str
    line: int
    path: Path | None

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


class LineTable:
    """Sorted address ranges of an image's line program.

    Args:
        rows: (address, location or None) pairs; None ends a sequence (no line there).
    """

    def __init__(self, rows: list[tuple[int, SourceLocation | None]]) -> None:
        # A real row wins over a sequence end at the same address (the next sequence starts there).
        rows = sorted(rows, key=lambda r: (r[0], r[1] is not None))
        self._starts = [r[0] for r in rows]
        self._locations = [r[1] for r in rows]
        self._text_cache: dict[Path, list[str] | None] = {}

    @classmethod
    def from_elf(cls, elf_bytes: bytes, search_dirs: tuple[Path, ...] = DEFAULT_SEARCH_DIRS, *,
                 bias: int = 0) -> LineTable:
        """Read the line program of every compile unit.

        An image without debug info, or with debug info pyelftools cannot read, gives an
        empty table: lines are a convenience, never a reason to refuse a trace.

        Args:
            bias: added to every address (the load bias of a position-independent executable).
        """
        rows: list[tuple[int, SourceLocation | None]] = []
        try:
            elf = ELFFile(io.BytesIO(elf_bytes))
            if not elf.has_dwarf_info():
                return cls([])
            dwarf = elf.get_dwarf_info()
            found: dict[str, Path | None] = {}
            for cu in dwarf.iter_CUs():
                program = dwarf.line_program_for_CU(cu)
                if program is None:
                    continue
                top = cu.get_top_DIE()
                comp_dir = _text(top.attributes["DW_AT_comp_dir"].value) if "DW_AT_comp_dir" in top.attributes else ""
                files = _file_names(program, comp_dir)
                locations: dict[tuple[int, int], SourceLocation] = {}
                for entry in program.get_entries():
                    state = entry.state
                    if state is None:
                        continue
                    if state.end_sequence:
                        rows.append((state.address + bias, None))
                        continue
                    key = (state.file, state.line)
                    loc = locations.get(key)
                    if loc is None:
                        full = files.get(state.file, "?")
                        shown = _shown_name(full, comp_dir)
                        if full not in found:
                            found[full] = _find_file(full, shown, search_dirs)
                        loc = locations[key] = SourceLocation(shown, state.line, found[full])
                    rows.append((state.address + bias, loc))
        except (ELFError, DWARFError, OverflowError, ValueError, KeyError, struct.error, AttributeError):
            pass                        # damaged debug info only costs source lines
        return cls(rows)

    def __len__(self) -> int:
        return len(self._starts)

    def lookup(self, address: int) -> SourceLocation | None:
        """The source line whose code contains ``address``, or None."""
        i = bisect.bisect_right(self._starts, address) - 1
        return self._locations[i] if i >= 0 else None

    def source_text(self, location: SourceLocation) -> str | None:
        """The text of the line (without its newline), when the file is on disk."""
        if location.path is None or location.line <= 0:
            return None
        lines = self._text_cache.get(location.path, ())
        if lines == ():
            try:
                lines = location.path.read_text(errors="replace").splitlines()
            except OSError:
                lines = None
            self._text_cache[location.path] = lines
        if not lines or location.line > len(lines):
            return None
        return lines[location.line - 1]


def _text(value: object) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _file_names(program, comp_dir: str) -> dict[int, str]:
    """File index → full path, for DWARF 2–5 (5 counts files and directories from 0)."""
    header = program.header
    v5 = header["version"] >= 5
    dirs = [_text(d) for d in header["include_directory"]]
    if not v5:
        dirs = [comp_dir] + dirs
    names = {}
    for i, entry in enumerate(header["file_entry"]):
        name = _text(entry.name)
        directory = dirs[entry.dir_index] if entry.dir_index < len(dirs) else ""
        if directory and not os.path.isabs(directory):
            directory = os.path.join(comp_dir, directory)
        names[i if v5 else i + 1] = os.path.normpath(os.path.join(directory, name))
    return names


def _shown_name(full: str, comp_dir: str) -> str:
    if comp_dir and full.startswith(comp_dir.rstrip("/") + "/"):
        return full[len(comp_dir.rstrip("/")) + 1:]
    return full


def _find_file(full: str, shown: str, search_dirs: tuple[Path, ...]) -> Path | None:
    candidates = [Path(full)]
    if not os.path.isabs(shown):
        candidates += [d / shown for d in search_dirs]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    return None

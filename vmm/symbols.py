"""Symbols of a guest image: address → function name, for reports, the TUI and gdb."""

from __future__ import annotations

import bisect
import functools
import io
import struct
from dataclasses import dataclass

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

from vmm.errors import DATA_ERRORS


@dataclass(frozen=True, slots=True)
class Symbol:
    name: str
    address: int
    size: int


class SymbolTable:
    """Function and object symbols of an ELF, searchable by address and by name."""

    def __init__(self, symbols: list[Symbol]) -> None:
        self._symbols = sorted(symbols, key=lambda s: s.address)
        self._starts = [s.address for s in self._symbols]
        self._by_name = {s.name: s for s in self._symbols}
        self._later: list[tuple] = []         # (get ELF bytes, bias): parsed on first use

    def add_elf_later(self, elf_bytes, bias: int) -> None:
        """Add an ELF's symbols when they are first looked up (parsing costs ~0.1 s a library)."""
        self._later.append((elf_bytes, bias))

    def _resolve(self) -> None:
        while self._later:
            get, bias = self._later.pop(0)
            self.merge(SymbolTable.from_elf(get(), bias=bias))

    @classmethod
    def from_elf(cls, elf_bytes: bytes, *, bias: int = 0) -> SymbolTable:
        """Symbols of an ELF (.symtab and .dynsym), moved by ``bias`` (a shared object's load address).

        Parsing is the slowest part of building a Machine and tables are read-only once
        built: opening the same image again (time travel, a debugger, a test) reuses it."""
        return _from_elf_cached(cls, bytes(elf_bytes), bias)

    @classmethod
    def _parse_elf(cls, elf_bytes: bytes, bias: int = 0) -> SymbolTable:
        symbols = []
        try:
            elf = ELFFile(io.BytesIO(elf_bytes))
            for section in elf.iter_sections():
                if not isinstance(section, SymbolTableSection):
                    continue
                for sym in section.iter_symbols():
                    kind = sym["st_info"]["type"]
                    if kind in ("STT_FUNC", "STT_OBJECT", "STT_NOTYPE") and sym.name and sym["st_value"]:
                        symbols.append(Symbol(sym.name, sym["st_value"] + bias, sym["st_size"]))
        except (ELFError, *DATA_ERRORS):
            pass                  # damaged symbol tables only cost names in reports
        return cls(symbols)

    def merge(self, other: SymbolTable) -> None:
        """Add ``other``'s symbols (a library mapped into the program)."""
        known = set(self._starts)
        added = [s for s in other._symbols if s.address not in known]
        self._symbols = sorted(self._symbols + added, key=lambda s: s.address)
        self._starts = [s.address for s in self._symbols]
        for sym in added:
            self._by_name.setdefault(sym.name, sym)

    def lookup(self, address: int) -> Symbol | None:
        """The symbol containing ``address`` (or the nearest one below a sizeless symbol)."""
        self._resolve()
        i = bisect.bisect_right(self._starts, address) - 1
        while i >= 0:
            sym = self._symbols[i]
            if sym.size == 0 or address < sym.address + sym.size:
                return sym
            if address >= sym.address + sym.size and sym.size:
                return None
            i -= 1
        return None

    def describe(self, address: int) -> str:
        """'name+0x12' for an address inside a symbol, else the bare hex address."""
        sym = self.lookup(address)
        if sym is None:
            return f"{address:#x}"
        offset = address - sym.address
        return f"{sym.name}+{offset:#x}" if offset else sym.name

    def address_of(self, name: str) -> int | None:
        self._resolve()
        sym = self._by_name.get(name)
        return None if sym is None else sym.address

    def __iter__(self):
        self._resolve()
        return iter(self._symbols)


@functools.lru_cache(maxsize=16)
def _from_elf_cached(cls, elf_bytes: bytes, bias: int) -> SymbolTable:
    return cls._parse_elf(elf_bytes, bias)

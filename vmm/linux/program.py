"""A Linux program to run: its executable, its ELF interpreter, argv, environment, cwd.

This is the Linux counterpart of ``vmm.loader.GuestImage``: everything the machine
needs to boot, taken from the host when recording (``LinuxProgram.from_host``) and
from the trace header when replaying (``from_header``), so that boot is a pure
function of the header. The executable is the trace's embedded image; the interpreter
(``ld-linux-x86-64.so.2``) and the 16 AT_RANDOM bytes travel in the header's
``linux`` map. Libraries and data files the program opens later travel as blobs.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
from dataclasses import dataclass, field

from vmm.errors import ImageError

ET_EXEC, ET_DYN = 2, 3
EM_X86_64 = 62
PT_LOAD, PT_INTERP, PT_PHDR = 1, 3, 6
MAX_FILE = 1 << 30


@dataclass(frozen=True, slots=True)
class Segment:
    vaddr: int
    offset: int
    filesz: int
    memsz: int
    flags: int                  # PF_X=1, PF_W=2, PF_R=4


@dataclass(frozen=True)
class ElfFile:
    """The parts of an x86-64 ELF executable or shared object that loading needs."""

    path: str
    data: bytes
    elf_type: int
    entry: int
    phoff: int
    phnum: int
    segments: tuple[Segment, ...]
    interp: str | None
    phdr_vaddr: int | None

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def span(self) -> tuple[int, int]:
        """[lowest, highest) virtual address of the PT_LOAD segments, page-aligned."""
        lo = min(s.vaddr for s in self.segments) & ~0xFFF
        hi = max(s.vaddr + s.memsz for s in self.segments)
        return lo, (hi + 0xFFF) & ~0xFFF


def parse_elf(data: bytes, where: str) -> ElfFile:
    """Check and parse an ELF for this machine.

    Raises:
        ImageError: not an ELF, not 64-bit little-endian x86-64, not an executable or
            shared object, or its headers point outside the file.
    """
    if len(data) < 64 or data[:4] != b"\x7fELF":
        raise ImageError(f"{where}: not an ELF file")
    if data[4] != 2:
        raise ImageError(f"{where}: a 32-bit ELF; vmrr runs x86-64 (64-bit) programs")
    if data[5] != 1:
        raise ImageError(f"{where}: a big-endian ELF; vmrr runs x86-64 programs")
    elf_type, machine = struct.unpack_from("<HH", data, 16)
    if machine != EM_X86_64:
        raise ImageError(f"{where}: an ELF for machine {machine}, not x86-64 (62)")
    if elf_type not in (ET_EXEC, ET_DYN):
        raise ImageError(f"{where}: ELF type {elf_type} is not an executable or shared object")
    entry, phoff = struct.unpack_from("<QQ", data, 24)
    phentsize, phnum = struct.unpack_from("<HH", data, 54)
    if phentsize != 56 or phnum == 0 or phoff + phnum * 56 > len(data):
        raise ImageError(f"{where}: bad program headers")
    segments, interp, phdr = [], None, None
    for i in range(phnum):
        p_type, p_flags, p_offset, p_vaddr, _paddr, p_filesz, p_memsz, _align = \
            struct.unpack_from("<IIQQQQQQ", data, phoff + i * 56)
        if p_type == PT_LOAD:
            if p_offset + p_filesz > len(data) or p_filesz > p_memsz or p_vaddr + p_memsz >= 1 << 47:
                raise ImageError(f"{where}: PT_LOAD segment {i} lies outside the file or the address space")
            if (p_vaddr - p_offset) & 0xFFF:
                raise ImageError(f"{where}: PT_LOAD segment {i} is not page-aligned with its offset")
            segments.append(Segment(p_vaddr, p_offset, p_filesz, p_memsz, p_flags))
        elif p_type == PT_INTERP:
            raw = data[p_offset:p_offset + p_filesz]
            interp = raw.split(b"\0", 1)[0].decode("utf-8", "replace")
        elif p_type == PT_PHDR:
            phdr = p_vaddr
    if not segments:
        raise ImageError(f"{where}: no loadable segments")
    return ElfFile(where, data, elf_type, entry, phoff, phnum, tuple(segments), interp, phdr)


def _read_file(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            if not os.path.isfile(path):
                raise ImageError(f"{path}: {what} is not a regular file")
            data = f.read(MAX_FILE + 1)
    except FileNotFoundError:
        raise ImageError(f"{path}: no such program") from None
    except IsADirectoryError:
        raise ImageError(f"{path}: {what} is a directory") from None
    except OSError as exc:
        raise ImageError(f"{path}: cannot read the {what}: {exc.strerror}") from None
    if len(data) > MAX_FILE:
        raise ImageError(f"{path}: the {what} is larger than 1 GiB")
    return data


DEFAULT_IDENTITY = (1000, 1, 0, 0, [])       # a program made by hand (tests, fuzz corpora)
PID_MAX = 1 << 22                             # Linux's PID_MAX_LIMIT


def host_identity() -> list:
    """vmrr's pid and parent, the recording user's uid, gid and supplementary groups."""
    return [os.getpid(), os.getppid(), os.getuid(), os.getgid(), sorted(set(os.getgroups()))]


def _identity_ok(value: list) -> bool:
    def small(v, hi):
        return type(v) is int and 0 <= v < hi
    return (len(value) == 5 and small(value[0], PID_MAX) and value[0] > 1 and small(value[1], PID_MAX)
            and small(value[2], 1 << 32) and small(value[3], 1 << 32) and type(value[4]) is list
            and len(value[4]) <= 65536 and all(small(g, 1 << 32) for g in value[4]))


@dataclass
class LinuxProgram:
    """An unmodified x86-64 Linux executable and how it was started."""

    exe: ElfFile
    interp: ElfFile | None
    argv: list[str]
    env: list[str]
    cwd: str
    at_random: bytes
    name: str = ""
    files: dict[str, str] = field(default_factory=dict)   # path -> sha256 of what boot read
    # Who ran it: [pid, ppid, uid, gid, groups] -- vmrr's own pid (unique on the host while
    # it records), its parent and the recording user's ids.
    identity: list = field(default_factory=lambda: list(DEFAULT_IDENTITY))

    platform = "linux"

    @classmethod
    def from_host(cls, argv: list[str], env: list[str], cwd: str | None = None) -> "LinuxProgram":
        """Find ``argv[0]`` like a shell would (PATH), read it and its interpreter.

        Raises:
            ImageError: the program does not exist or is not an x86-64 ELF.
        """
        if not argv:
            raise ImageError("no program given after --")
        path = argv[0]
        if "/" not in path:
            found = shutil.which(path)
            if found is None:
                raise ImageError(f"{path}: no such program on PATH")
            path = found
        argv = list(argv)
        for _depth in range(5):                    # a #! script's interpreter, as the kernel finds it
            path = os.path.abspath(path)
            data = _read_file(path, "program")
            if not os.access(path, os.X_OK):
                raise ImageError(f"{path}: permission denied (not executable)")
            if data[:2] != b"#!":
                break
            line = data[2:256].split(b"\n", 1)[0].strip(b" \t").split(None, 1)
            if not line:
                raise ImageError(f"{path}: a #! line that names no interpreter")
            interpreter = line[0].decode("utf-8", "surrogateescape")
            extra = [line[1].decode("utf-8", "surrogateescape").strip()] if len(line) > 1 else []
            argv = [interpreter, *extra, argv[0], *argv[1:]]
            path = interpreter
        else:
            raise ImageError(f"{argv[0]}: too many levels of #! interpreters")
        exe = parse_elf(data, path)
        interp = None
        if exe.interp:
            interp = parse_elf(_read_file(exe.interp, "ELF interpreter"), exe.interp)
            if interp.interp:
                raise ImageError(f"{exe.interp}: the ELF interpreter itself asks for an interpreter")
        return cls(exe, interp, list(argv), list(env), cwd or os.getcwd(), os.urandom(16),
                   name=argv[0], identity=host_identity())

    def header_map(self) -> dict:
        """What the trace header keeps besides the executable (the embedded image)."""
        return {"exe": self.exe.path, "argv": self.argv, "env": self.env, "cwd": self.cwd,
                "at_random": self.at_random, "identity": self.identity,
                "interp": None if self.interp is None else self.interp.path,
                "interp_image": None if self.interp is None else self.interp.data}

    @classmethod
    def from_header(cls, linux: object, image: bytes, name: str, where: str) -> "LinuxProgram":
        """Rebuild the program from a trace header (values checked: they come from a file).

        Raises:
            ImageError: a field is missing or of the wrong type.
        """
        def need(key: str, kind, optional: bool = False):
            value = linux.get(key) if isinstance(linux, dict) else None
            if value is None and optional:
                return None
            if not isinstance(value, kind):
                raise ImageError(f"{where}: header field linux.{key} is missing or not {kind.__name__}")
            return value

        argv, env = need("argv", list), need("env", list)
        if not all(isinstance(a, str) for a in argv + env):
            raise ImageError(f"{where}: header fields linux.argv/env must hold strings")
        at_random = need("at_random", bytes)
        if len(at_random) != 16:
            raise ImageError(f"{where}: header field linux.at_random must be 16 bytes")
        exe_path = need("exe", str)
        exe = parse_elf(image, f"{where} (embedded program {exe_path})")
        exe = ElfFile(exe_path, *[getattr(exe, f) for f in ("data", "elf_type", "entry", "phoff", "phnum",
                                                             "segments", "interp", "phdr_vaddr")])
        interp = None
        interp_image = need("interp_image", bytes, optional=True)
        if interp_image is not None:
            interp_path = need("interp", str)
            parsed = parse_elf(interp_image, f"{where} (embedded interpreter {interp_path})")
            interp = ElfFile(interp_path, *[getattr(parsed, f) for f in
                                            ("data", "elf_type", "entry", "phoff", "phnum",
                                             "segments", "interp", "phdr_vaddr")])
        identity = need("identity", list)
        if not _identity_ok(identity):
            raise ImageError(f"{where}: header field linux.identity must be [pid, ppid, uid, gid, [groups]]")
        return cls(exe, interp, argv, env, need("cwd", str), at_random, name=name, identity=identity)

    # What the rest of vmrr asks of an image (gdb, the TUI, symbols).

    @property
    def elf(self) -> bytes:
        return self.exe.data

    @property
    def entry(self) -> int:
        return self.exe.entry

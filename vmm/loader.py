"""Guest images: find a built-in appliance or an ELF path, validate it, load it into RAM."""

from __future__ import annotations

import hashlib
import io
import struct
from dataclasses import dataclass
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

from vmm.errors import DATA_ERRORS, ImageError

IMAGE_BASE = 0x100000         # images are linked at 1 MiB (docs/machine.md)
LOWEST_LOAD = 0x6000          # below: the null guard page and the boot information page
PAGE = 0x1000
MAX_IMAGE_BYTES = 256 << 20


@dataclass(frozen=True)
class Segment:
    guest_phys: int
    data: bytes          # file bytes; the rest up to mem_size is zero (.bss)
    mem_size: int


@dataclass(frozen=True)
class GuestImage:
    """A validated x86-64 ELF, ready to load.

    Attributes:
        name: the built-in name or the path the user gave.
        elf: the raw file, embedded in traces so they are self-contained.
        entry: the ELF entry point.
        segments: the PT_LOAD segments.
        end: first page-aligned address after the highest segment.
    """

    name: str
    elf: bytes
    entry: int
    segments: tuple[Segment, ...]
    end: int

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.elf).hexdigest()


def resolve_image(spec: str) -> tuple[str, Path]:
    """Map IMAGE (a built-in appliance name or a path) to (name, path).

    Raises:
        ImageError: neither a built-in name nor an existing file.
    """
    import guests

    path = Path(spec)
    if path.exists() or "/" in spec or spec.endswith(".elf"):
        if not path.exists():
            raise ImageError(f"image {spec}: no such file")
        if not path.is_file():
            raise ImageError(f"image {spec}: not a regular file")
        return spec, path
    try:
        return spec, guests.image_path(spec)
    except KeyError:
        names = ", ".join(guests.builtin_names())
        raise ImageError(f"image {spec}: not a file and not a built-in appliance ({names})") from None


def load_image(spec: str) -> GuestImage:
    """Read and validate IMAGE (built-in name or path)."""
    name, path = resolve_image(spec)
    try:
        size = path.stat().st_size
        if size > MAX_IMAGE_BYTES:
            raise ImageError(f"image {path}: {size} bytes is larger than {MAX_IMAGE_BYTES}")
        data = path.read_bytes()
    except OSError as exc:
        raise ImageError(f"image {path}: {exc.strerror}") from None
    return parse_image(name, data, where=str(path))


def parse_image(name: str, data: bytes, *, where: str | None = None) -> GuestImage:
    """Validate ELF bytes as a vmrr guest image.

    Raises:
        ImageError: not an ELF, not x86-64, not executable, or segments below 1 MiB.
    """
    where = where or name
    if data[:4] != b"\x7fELF":
        raise ImageError(f"image {where}: not an ELF file (bad magic {data[:4]!r})")
    try:
        elf = ELFFile(io.BytesIO(data))
        if elf.elfclass != 64 or elf["e_machine"] != "EM_X86_64":
            raise ImageError(f"image {where}: not an x86-64 ELF ({elf['e_machine']}, {elf.elfclass}-bit)")
        if elf["e_type"] != "ET_EXEC":
            raise ImageError(f"image {where}: not a static executable (type {elf['e_type']})")
        segments = []
        for seg in elf.iter_segments():
            if seg["p_type"] != "PT_LOAD" or seg["p_memsz"] == 0:
                continue
            addr, memsz = seg["p_paddr"] or seg["p_vaddr"], seg["p_memsz"]
            if addr < LOWEST_LOAD:
                raise ImageError(f"image {where}: segment at {addr:#x} overlaps the null page "
                                 f"or boot information (link at {IMAGE_BASE:#x})")
            offset, filesz = seg["p_offset"], seg["p_filesz"]
            # pyelftools returns short data silently, or overflows on a huge offset.
            if offset + filesz > len(data):
                raise ImageError(f"image {where}: truncated: segment at {addr:#x} needs "
                                 f"{filesz} bytes at file offset {offset}, the file has "
                                 f"{len(data)} bytes")
            if filesz > memsz:
                raise ImageError(f"image {where}: segment at {addr:#x} has more file bytes "
                                 f"({filesz}) than memory bytes ({memsz})")
            segments.append(Segment(addr, seg.data(), memsz))
        entry = elf["e_entry"]
    except (ELFError, *DATA_ERRORS) as exc:
        # pyelftools reports bad offsets and fields as OverflowError, KeyError, ... not ELFError.
        raise ImageError(f"image {where}: malformed ELF ({exc})") from None
    if not segments:
        raise ImageError(f"image {where}: no loadable segments")
    end = max(s.guest_phys + s.mem_size for s in segments)
    end = (end + PAGE - 1) & ~(PAGE - 1)
    if not any(s.guest_phys <= entry < s.guest_phys + s.mem_size for s in segments):
        raise ImageError(f"image {where}: entry point {entry:#x} is outside its segments")
    return GuestImage(name, data, entry, tuple(segments), end)

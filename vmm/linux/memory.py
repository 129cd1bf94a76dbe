"""A Linux program's memory: x86-64 paging over the machine's one block of RAM.

Unicorn aborts past ~4,096 memory sections, and programs map and protect thousands of
regions. So the personality never maps guest regions into Unicorn: RAM is one Unicorn
region of *physical* memory, the CPU runs with 4-level paging (CR0.PG, CR4.PAE,
EFER.NXE, CR0.WP), and this module writes the page tables itself. Permissions live in
the page-table entries; a fault reaches the personality as #PF with CR2 set.

Pages are given out on first touch (demand paging), the lowest free physical page
first, so allocation is a pure function of the program's behaviour: record and replay
allocate the same pages. A file-backed page is filled from the file's content (the
blob in the trace) when first touched. Everything — page tables, frames, the VMA list,
the allocator — lives in RAM or in ``state()``, so digests, checkpoints and time
travel cover it without knowing it exists.
"""

from __future__ import annotations

import bisect
import struct
from dataclasses import dataclass
from typing import Callable

from vmm.linux.shmem import is_shared

PAGE = 0x1000
PAGE_SHIFT = 12
PTE_P, PTE_W, PTE_U, PTE_A, PTE_D = 0x1, 0x2, 0x4, 0x20, 0x40
PTE_NX = 1 << 63
PTE_KEPT = 1 << 9                    # software bit: a PROT_NONE page that keeps its frame (P clear)
PTE_COW = 1 << 10                    # software bit: writable by its mapping, shared since a fork
PTE_ADDR = 0x000F_FFFF_FFFF_F000
USER_END = 0x7FFF_FFFF_F000          # TASK_SIZE on x86-64 with 4-level paging
PROT_READ, PROT_WRITE, PROT_EXEC = 1, 2, 4
MAP_SHARED, MAP_PRIVATE, MAP_FIXED, MAP_ANONYMOUS = 0x01, 0x02, 0x10, 0x20
MAP_GROWSDOWN, MAP_NORESERVE, MAP_STACK, MAP_FIXED_NOREPLACE = 0x100, 0x4000, 0x20000, 0x100000
ZERO_PAGE = bytes(PAGE)
_Q = struct.Struct("<Q")

FIRST_FRAME = 16                     # frames below this stay unused (page 0 is not RAM)
MMAP_MIN = 0x10000                   # vm.mmap_min_addr
FAULT_AROUND = 16                    # pages mapped per fault (Linux does this for file pages)


class GuestFault(Exception):
    """A guest address the program passed is not mapped, or lacks the needed permission."""

    def __init__(self, address: int) -> None:
        super().__init__(f"bad guest address {address:#x}")
        self.address = address


class OutOfMemory(Exception):
    """Guest RAM (--mem) is exhausted."""


def page_down(value: int) -> int:
    return value & ~(PAGE - 1)


def page_up(value: int) -> int:
    return (value + PAGE - 1) & ~(PAGE - 1)


class Frames:
    """Physical page frames: the lowest free frame first, so allocation is deterministic.

    Free frames are kept as sorted, disjoint [start, end) runs. A frame mapped in more
    than one place (two processes after a fork, a shared mapping and its object) has a
    count in ``refs``; ``free`` then only drops one reference.
    """

    def __init__(self, end: int) -> None:
        self.end = end
        self.runs: list[list[int]] = [[FIRST_FRAME, end]]
        self.high = FIRST_FRAME          # one past the highest frame ever handed out
        self.used = 0
        self.refs: dict[int, int] = {}   # frame -> references, for frames with two or more

    def share(self, frame: int) -> None:
        """One more reference to ``frame``."""
        self.refs[frame] = self.refs.get(frame, 1) + 1

    def count(self, frame: int) -> int:
        return self.refs.get(frame, 1)

    def alloc(self) -> int:
        if not self.runs:
            raise OutOfMemory("guest RAM is exhausted")
        run = self.runs[0]
        frame = run[0]
        run[0] += 1
        if run[0] == run[1]:
            del self.runs[0]
        self.used += 1
        if frame >= self.high:
            self.high = frame + 1
        return frame

    def free(self, frame: int) -> None:
        refs = self.refs.get(frame)
        if refs is not None:
            if refs > 2:
                self.refs[frame] = refs - 1
            else:
                del self.refs[frame]
            return
        runs = self.runs
        i = bisect.bisect_left(runs, [frame + 1]) - 1
        self.used -= 1
        if i >= 0 and runs[i][1] == frame:
            runs[i][1] += 1
            if i + 1 < len(runs) and runs[i + 1][0] == frame + 1:
                runs[i][1] = runs[i + 1][1]
                del runs[i + 1]
            return
        if i + 1 < len(runs) and runs[i + 1][0] == frame + 1:
            runs[i + 1][0] = frame
            return
        runs.insert(i + 1, [frame, frame + 1])

    @property
    def available(self) -> int:
        return sum(end - start for start, end in self.runs)

    def state(self) -> list:
        return [self.high, self.used, [list(r) for r in self.runs], sorted([f, n] for f, n in self.refs.items())]

    def load_state(self, state: list) -> None:
        self.high, self.used, runs, refs = state
        self.runs = [[int(a), int(b)] for a, b in runs]
        self.refs = {int(f): int(n) for f, n in refs}


@dataclass(slots=True)
class Vma:
    """One mapping: [start, end) with its protection and what backs it."""

    start: int
    end: int
    prot: int
    flags: int
    file: str | None = None          # the backing file's content id (sha256 hex), a shared
                                     # object ("shm:N", vmm/linux/shmem.py), None: anonymous
    offset: int = 0                  # file offset of ``start``
    name: str = ""                   # path, "[heap]", "[stack]", or "" for anonymous

    def as_list(self) -> list:
        return [self.start, self.end, self.prot, self.flags, self.file, self.offset, self.name]

    def split(self, at: int) -> "Vma":
        """Cut at ``at``; self keeps [start, at), the returned VMA is [at, end)."""
        tail = Vma(at, self.end, self.prot, self.flags, self.file,
                   self.offset + (at - self.start) if self.file else 0, self.name)
        self.end = at
        return tail


class AddressSpace:
    """The program's virtual memory: VMAs, page tables in guest RAM, demand paging.

    Args:
        ram: the machine's RAM (guest-physical address 0 is byte 0).
        frames: the machine's physical frames, shared by every address space.
        write_phys: writes bytes at a guest-physical address through Unicorn, so that
            translated code cached for that page is invalidated.
        file_content: returns the bytes of a backing file by its content id.
        flush_tlb: called after entries were removed or made stricter, with True when code
            was among them (translated blocks of it must go too).
        shared: the machine's shared objects (vmm/linux/shmem.py): a VMA whose ``file`` is
            ``shm:N`` maps the frames of object N.
        released: called after mappings of shared objects went away (an object no mapping
            names may go).
    """

    def __init__(self, ram, frames: Frames, write_phys: Callable[[int, bytes], None],
                 file_content: Callable[[str], bytes], flush_tlb: Callable[[], None], *,
                 shared=None, released: Callable[[], None] = lambda: None, empty: bool = True) -> None:
        self.ram = memoryview(ram)
        self.frames = frames
        self.write_phys = write_phys
        self.file_content = file_content
        self.flush_tlb = flush_tlb
        self.shared = shared
        self.released = released
        self.vmas: list[Vma] = []
        self._starts: list[int] = []
        # empty=False: no root table yet (load_state gives the one of a saved state)
        self.root = self._new_table() if empty else 0

    # -- page tables -----------------------------------------------------------------

    def _new_table(self) -> int:
        frame = self.frames.alloc()
        self.ram[frame * PAGE:(frame + 1) * PAGE] = ZERO_PAGE
        return frame * PAGE

    def _slot(self, va: int, create: bool) -> int | None:
        """Physical address of the PTE for ``va``; None when a table on the way is absent."""
        table = self.root
        ram = self.ram
        for shift in (39, 30, 21):
            at = table + ((va >> shift) & 0x1FF) * 8
            entry = _Q.unpack_from(ram, at)[0]
            if entry & PTE_P:
                table = entry & PTE_ADDR
            elif create:
                table = self._new_table()
                _Q.pack_into(ram, at, table | PTE_P | PTE_W | PTE_U | PTE_A)
            else:
                return None
        return table + ((va >> 12) & 0x1FF) * 8

    def pte(self, va: int) -> int:
        slot = self._slot(va, False)
        return 0 if slot is None else _Q.unpack_from(self.ram, slot)[0]

    def physical_ranges(self, va: int, length: int) -> list[tuple[int, int, int]] | None:
        """[(virtual, physical, length)] backing ``[va, va+length)`` now, page by page; None
        if a page of the range has no frame yet.

        Unicorn reports memory accesses by guest-physical address once paging is on, so a
        debugger watches a virtual range through the frames behind it."""
        out = []
        end = va + length
        while va < end:
            n = min(end - va, PAGE - va % PAGE)
            entry = self.pte(va)
            if not entry & (PTE_P | PTE_KEPT):
                return None
            out.append((va, (entry & PTE_ADDR) | (va % PAGE), n))
            va += n
        return out

    def present_pages(self, start: int, end: int):
        """Yield (va, slot, pte) for every present page in [start, end), skipping absent tables."""
        ram = self.ram
        va = start
        while va < end:
            table, skipped = self.root, False
            for shift in (39, 30, 21):
                entry = _Q.unpack_from(ram, table + ((va >> shift) & 0x1FF) * 8)[0]
                if not entry & PTE_P:
                    va = ((va >> shift) + 1) << shift
                    skipped = True
                    break
                table = entry & PTE_ADDR
            if skipped:
                continue
            slot = table + ((va >> 12) & 0x1FF) * 8
            entry = _Q.unpack_from(ram, slot)[0]
            if entry & (PTE_P | PTE_KEPT):
                yield va, slot, entry
            va += PAGE

    @staticmethod
    def pte_flags(prot: int) -> int:
        if not prot & (PROT_READ | PROT_WRITE | PROT_EXEC):
            return PTE_KEPT                  # not present: every access faults, the page survives
        # Accessed and dirty are set up front: the CPU then never writes page tables itself,
        # so RAM changes only by the program's stores (and a state at icount 0 is the boot's).
        flags = PTE_P | PTE_U | PTE_A | PTE_D
        if prot & PROT_WRITE:
            flags |= PTE_W
        if not prot & PROT_EXEC:
            flags |= PTE_NX
        return flags

    # -- VMAs ------------------------------------------------------------------------

    def find(self, va: int) -> Vma | None:
        i = bisect.bisect_right(self._starts, va) - 1
        if i >= 0 and va < self.vmas[i].end:
            return self.vmas[i]
        return None

    def _insert(self, vma: Vma) -> None:
        i = bisect.bisect_left(self._starts, vma.start)
        self.vmas.insert(i, vma)
        self._starts.insert(i, vma.start)

    def _carve(self, start: int, end: int) -> list[Vma]:
        """Split VMAs at ``start`` and ``end``; return those inside [start, end), in order."""
        inside = []
        i = max(0, bisect.bisect_right(self._starts, start) - 1)
        while i < len(self.vmas) and self.vmas[i].start < end:
            vma = self.vmas[i]
            if vma.end <= start:
                i += 1
                continue
            if vma.start < start:
                self.vmas.insert(i + 1, vma.split(start))
                self._starts.insert(i + 1, start)
                i += 1
                continue
            if vma.end > end:
                self.vmas.insert(i + 1, vma.split(end))
                self._starts.insert(i + 1, end)
            inside.append(vma)
            i += 1
        return inside

    def _remove(self, gone: list[Vma]) -> None:
        """Drop these VMAs (consecutive in the list, as _carve returns them)."""
        if not gone:
            return
        i = bisect.bisect_left(self._starts, gone[0].start)
        while self.vmas[i] is not gone[0]:
            i += 1
        del self.vmas[i:i + len(gone)]
        del self._starts[i:i + len(gone)]

    def is_free(self, start: int, end: int) -> bool:
        if start < PAGE or end > USER_END or start >= end:
            return False
        i = bisect.bisect_left(self._starts, end) - 1
        return i < 0 or self.vmas[i].end <= start

    def find_gap(self, length: int, below: int) -> int | None:
        """The highest free range of ``length`` bytes ending at or below ``below`` (top-down, like Linux)."""
        top = below
        for vma in reversed(self.vmas):
            if vma.start >= top:
                continue
            if vma.end <= top - length:
                return top - length
            top = vma.start
        return top - length if top - length >= MMAP_MIN else None

    def map(self, start: int, length: int, prot: int, flags: int, *, file: str | None = None,
            offset: int = 0, name: str = "") -> None:
        """Map [start, start+length) (page-aligned), replacing what was there."""
        end = start + length
        self.unmap(start, end)
        self._insert(Vma(start, end, prot, flags, file, offset, name))
        self._merge_around(start, end)
        if prot & PROT_EXEC:
            self.populate(start, end)

    def populate(self, start: int, end: int) -> None:
        """Give every page of [start, end) now. Executable mappings are populated at once:
        Unicorn can hang on a page fault raised while it looks up the target of an indirect
        jump (its TB lookup), so code pages never fault."""
        for page in range(start, end, PAGE):
            vma = self.find(page)
            if vma is not None and vma.prot and not self.pte(page) & (PTE_P | PTE_KEPT):
                self._populate(vma, page)

    def _merge_around(self, start: int, end: int) -> None:
        """Join anonymous neighbours with equal attributes (keeps the list short, like Linux)."""
        i = bisect.bisect_left(self._starts, start)
        for j in (i, i - 1):
            if 0 <= j < len(self.vmas) - 1:
                a, b = self.vmas[j], self.vmas[j + 1]
                if (a.end == b.start and a.file is None and b.file is None and a.prot == b.prot
                        and a.flags == b.flags and a.name == b.name):
                    a.end = b.end
                    del self.vmas[j + 1]
                    del self._starts[j + 1]

    def unmap(self, start: int, end: int) -> bool:
        """Remove every mapping in [start, end) and free its pages. True if anything was mapped."""
        inside = self._carve(start, end)
        if not inside:
            return False
        dropped = self._drop_pages(start, end)
        self._remove(inside)
        if dropped:
            self.flush_tlb(any(vma.prot & PROT_EXEC for vma in inside))
        if any(is_shared(vma.file) for vma in inside):
            self.released()
        return True

    def _drop_pages(self, start: int, end: int) -> int:
        ram, frames, n = self.ram, self.frames, 0
        for _va, slot, entry in list(self.present_pages(start, end)):
            _Q.pack_into(ram, slot, 0)
            frames.free((entry & PTE_ADDR) >> PAGE_SHIFT)
            n += 1
        return n

    def discard(self, start: int, end: int) -> None:
        """MADV_DONTNEED: drop the pages; the next touch sees zeros (or the file) again."""
        if self._drop_pages(start, end):
            vma = self.find(start)
            self.flush_tlb(vma is not None and bool(vma.prot & PROT_EXEC))

    def protect(self, start: int, end: int, prot: int) -> bool:
        """Change the protection of [start, end). False if part of the range is not mapped."""
        covered, was_code = start, bool(prot & PROT_EXEC)
        for vma in self._carve(start, end):
            if vma.start != covered:
                return False
            covered = vma.end
            was_code = was_code or bool(vma.prot & PROT_EXEC)
            vma.prot = prot
        if covered < end:
            return False
        flags = self.pte_flags(prot)
        ram = self.ram
        for va, slot, entry in list(self.present_pages(start, end)):
            new = (entry & PTE_ADDR) | flags | (entry & (PTE_A | PTE_D))
            if new & PTE_W and self.frames.count((entry & PTE_ADDR) >> PAGE_SHIFT) > 1:
                vma = self.find(va)
                if vma is not None and not vma.flags & MAP_SHARED:
                    new = (new & ~PTE_W) | PTE_COW        # still shared since a fork
            _Q.pack_into(ram, slot, new)
        self.flush_tlb(was_code)
        self._merge_around(start, end)
        if prot & PROT_EXEC:
            self.populate(start, end)
        return True

    def move(self, old: int, new: int, length: int) -> None:
        """Move the mapping [old, old+length) to ``new`` (mremap): pages move, nothing is copied."""
        moving = self._carve(old, old + length)
        pages = list(self.present_pages(old, old + length))
        self._remove(moving)
        ram = self.ram
        for va, slot, entry in pages:
            _Q.pack_into(ram, slot, 0)
        self.unmap(new, new + length)
        for va, _slot, entry in pages:
            _Q.pack_into(ram, self._slot(va - old + new, True), entry)
        for vma in moving:
            self._insert(Vma(vma.start - old + new, vma.end - old + new, vma.prot, vma.flags,
                             vma.file, vma.offset, vma.name))
        self.flush_tlb(any(vma.prot & PROT_EXEC for vma in moving))

    def extend(self, vma: Vma, new_end: int) -> None:
        vma.end = new_end

    # -- faults and access from the kernel side --------------------------------------

    def fault(self, va: int) -> bool:
        """A #PF at ``va``: give the page if the mapping allows it. False: the program gets SIGSEGV."""
        vma = self.find(va)
        if vma is None or not vma.prot & (PROT_READ | PROT_WRITE | PROT_EXEC):
            return False
        entry = self.pte(va)
        if entry & PTE_COW and entry & PTE_P and vma.prot & PROT_WRITE:
            self._break_cow(va, entry, vma)    # a write to a page shared since a fork
            return True
        if entry & (PTE_P | PTE_KEPT):
            return False                       # present, so the access broke its protection
        self._populate(vma, page_down(va))
        # Fault-around: the next pages of the mapping too (each fault costs a return to Python).
        around = min(vma.end, page_down(va) + FAULT_AROUND * PAGE)
        for page in range(page_down(va) + PAGE, around, PAGE):
            if not self.pte(page) & (PTE_P | PTE_KEPT) and self.frames.runs:
                self._populate(vma, page)
        return True

    def _break_cow(self, va: int, entry: int, vma: Vma) -> None:
        """The page at ``va`` is written: a copy of its own if another mapping still holds
        the frame, else the frame itself, writable again."""
        frame = (entry & PTE_ADDR) >> PAGE_SHIFT
        if self.frames.count(frame) > 1:
            new = self.frames.alloc()
            self.write_phys(new * PAGE, self.ram[frame * PAGE:(frame + 1) * PAGE].tobytes())
            self.frames.free(frame)
            frame = new
        _Q.pack_into(self.ram, self._slot(page_down(va), True), frame * PAGE | self.pte_flags(vma.prot))
        self.flush_tlb(False)                 # the read-only translation may be cached

    def copy_to(self, child: "AddressSpace") -> None:
        """Fork: ``child`` (empty) gets every mapping and page of this space. Private pages
        are shared copy-on-write (read-only in both until one writes); the pages of shared
        objects are the objects' (a page first touched after the fork is both's too)."""
        child.vmas = [Vma(*vma.as_list()) for vma in self.vmas]
        child._starts = list(self._starts)
        ram, frames, made_strict = self.ram, self.frames, False
        for va, slot, entry in list(self.present_pages(PAGE, USER_END)):
            vma = self.find(va)
            if vma is None:
                continue
            if not vma.flags & MAP_SHARED and entry & PTE_W:
                entry = (entry & ~PTE_W) | PTE_COW
                _Q.pack_into(ram, slot, entry)
                made_strict = True
            frames.share((entry & PTE_ADDR) >> PAGE_SHIFT)
            _Q.pack_into(ram, child._slot(va, True), entry)
        if made_strict:
            self.flush_tlb(False)

    def destroy(self) -> None:
        """Exit or exec: every page and page table of this space goes back to the frames."""
        held = any(is_shared(vma.file) for vma in self.vmas)
        for vma in list(self.vmas):
            self._drop_pages(vma.start, vma.end)
        self.vmas, self._starts = [], []
        self._free_tables(self.root, 3)
        self.root = 0
        if held:
            self.released()

    def _free_tables(self, table: int, level: int) -> None:
        if level > 0:
            for i in range(512):
                entry = _Q.unpack_from(self.ram, table + i * 8)[0]
                if entry & PTE_P:
                    self._free_tables(entry & PTE_ADDR, level - 1)
        self.frames.free(table // PAGE)

    def _populate(self, vma: Vma, page: int) -> None:
        if is_shared(vma.file):                # the shared object's frame, for every mapping
            frame = self.shared.frame(vma.file, (vma.offset + page - vma.start) >> PAGE_SHIFT)
            _Q.pack_into(self.ram, self._slot(page, True), frame * PAGE | self.pte_flags(vma.prot))
            return
        frame = self.frames.alloc()
        phys = frame * PAGE
        content = ZERO_PAGE
        if vma.file is not None:
            data = self.file_content(vma.file)
            off = vma.offset + (page - vma.start)
            content = data[off:off + PAGE]
            if len(content) < PAGE:
                content = content + bytes(PAGE - len(content))
        self.write_phys(phys, content)
        _Q.pack_into(self.ram, self._slot(page, True), phys | self.pte_flags(vma.prot))

    def _phys(self, va: int, write: bool) -> int:
        """Guest-physical address of ``va`` for a kernel-side access, faulting the page in."""
        entry = self.pte(va)
        if not entry & PTE_P:
            vma = self.find(va)
            if vma is None or not vma.prot & (PROT_READ | PROT_WRITE) or entry & PTE_KEPT:
                raise GuestFault(va)
            self._populate(vma, page_down(va))
            entry = self.pte(va)
        if write and entry & PTE_COW:
            vma = self.find(va)
            if vma is not None and vma.prot & PROT_WRITE:
                self._break_cow(va, entry, vma)
                entry = self.pte(va)
        if write and not entry & PTE_W:
            raise GuestFault(va)
        return (entry & PTE_ADDR) | (va & (PAGE - 1))

    def read(self, va: int, size: int) -> bytes:
        """``size`` bytes at guest-virtual ``va``. Raises GuestFault."""
        if size <= 0:
            return b""
        if va < 0 or va + size > USER_END:
            raise GuestFault(va)
        parts = []
        while size:
            phys = self._phys(va, False)
            n = min(size, PAGE - (va & (PAGE - 1)))
            parts.append(self.ram[phys:phys + n].tobytes())
            va += n
            size -= n
        return b"".join(parts)

    def write(self, va: int, data: bytes) -> None:
        """Write ``data`` at guest-virtual ``va`` as the kernel would (copy_to_user). Raises GuestFault."""
        if va < 0 or va + len(data) > USER_END:
            raise GuestFault(va)
        pos = 0
        while pos < len(data):
            phys = self._phys(va, True)
            n = min(len(data) - pos, PAGE - (va & (PAGE - 1)))
            self.write_phys(phys, data[pos:pos + n])
            va += n
            pos += n

    def read_cstr(self, va: int, limit: int = 4096) -> bytes:
        """A NUL-terminated string at ``va`` (without the NUL). Raises GuestFault."""
        out = bytearray()
        while len(out) < limit:
            phys = self._phys(va, False)
            n = PAGE - (va & (PAGE - 1))
            chunk = self.ram[phys:phys + n].tobytes()
            nul = chunk.find(b"\0")
            if nul >= 0:
                out += chunk[:nul]
                return bytes(out)
            out += chunk
            va += n
        raise GuestFault(va)

    def peek(self, va: int, size: int) -> bytes | None:
        """Bytes at ``va`` without faulting anything in (debuggers, crash reports); None if absent."""
        parts = []
        while size > 0:
            entry = self.pte(va)
            if not entry & (PTE_P | PTE_KEPT):
                return None
            phys = (entry & PTE_ADDR) | (va & (PAGE - 1))
            n = min(size, PAGE - (va & (PAGE - 1)))
            parts.append(self.ram[phys:phys + n].tobytes())
            va += n
            size -= n
        return b"".join(parts)

    def poke(self, va: int, data: bytes) -> bool:
        """Write into present pages (a debugger's write); False if a page is absent."""
        pos = 0
        while pos < len(data):
            entry = self.pte(va)
            if not entry & PTE_P:
                return False
            n = min(len(data) - pos, PAGE - (va & (PAGE - 1)))
            self.write_phys((entry & PTE_ADDR) | (va & (PAGE - 1)), data[pos:pos + n])
            va += n
            pos += n
        return True

    # -- state -----------------------------------------------------------------------

    @property
    def ram_in_use(self) -> int:
        """Bytes of RAM from address 0 that have ever held a page (the rest is still zero)."""
        return self.frames.high * PAGE

    def state(self) -> list:
        return [self.root, [v.as_list() for v in self.vmas]]

    def load_state(self, state: list) -> None:
        root, vmas = state
        self.root = int(root)
        self.vmas = [Vma(*v) for v in vmas]
        self._starts = [v.start for v in self.vmas]

"""execve's work: map a program and its interpreter, build the initial stack.

The layout is Linux's with address-space randomisation off, fixed so that runs compare:
a PIE executable at 0x555555554000, the interpreter and later mmaps top-down from
0x7ffff7fff000, the stack ending at 0x7ffffffff000, the heap (brk) right after the
executable. The stack and the auxiliary vector are built as fs/binfmt_elf.c's
create_elf_tables builds them, entry for entry and in its order, but for two entries
left out on purpose (docs/linux.md): AT_SYSINFO_EHDR (without a vDSO, glibc makes real
clock_gettime calls, which the personality answers through the boundary) and AT_RSEQ_*
(rseq is ENOSYS).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from vmm.linux.memory import (MAP_PRIVATE, PAGE, PROT_EXEC, PROT_READ, PROT_WRITE, AddressSpace,
                              page_down, page_up)
from vmm.linux.program import ET_DYN, ElfFile, LinuxProgram

PIE_BASE = 0x5555_5555_4000
MMAP_BASE = 0x7FFF_F7FF_F000
STACK_TOP = 0x7FFF_FFFF_F000
STACK_SIZE = 8 << 20
MAP_GROWSDOWN = 0x100

AT_NULL, AT_PHDR, AT_PHENT, AT_PHNUM, AT_PAGESZ, AT_BASE, AT_FLAGS, AT_ENTRY = 0, 3, 4, 5, 6, 7, 8, 9
AT_UID, AT_EUID, AT_GID, AT_EGID, AT_PLATFORM, AT_HWCAP, AT_CLKTCK = 11, 12, 13, 14, 15, 16, 17
AT_SECURE, AT_RANDOM, AT_HWCAP2, AT_EXECFN, AT_MINSIGSTKSZ = 23, 25, 26, 31, 51


@dataclass
class Loaded:
    entry: int                   # where the CPU starts (the interpreter's entry, if any)
    rsp: int
    brk: int
    exe_base: int                # load bias of the executable
    interp_base: int             # 0 without an interpreter
    auxv: bytes                  # the raw auxiliary vector (for /proc/self/auxv)


def _prot(flags: int) -> int:
    return (PROT_READ if flags & 4 else 0) | (PROT_WRITE if flags & 2 else 0) | (PROT_EXEC if flags & 1 else 0)


def map_elf(space: AddressSpace, elf: ElfFile, base: int) -> None:
    """Map ``elf``'s PT_LOAD segments at load bias ``base``, as the kernel's ELF loader does."""
    for seg in elf.segments:
        start = page_down(base + seg.vaddr)
        file_end = base + seg.vaddr + seg.filesz
        mem_end = page_up(base + seg.vaddr + seg.memsz)
        offset = page_down(seg.offset)
        prot = _prot(seg.flags)
        if seg.filesz:
            space.map(start, page_up(file_end) - start, prot, MAP_PRIVATE, file=elf.sha256,
                      offset=offset, name=elf.path)
            if file_end & (PAGE - 1) and seg.memsz > seg.filesz:
                # The file page holding the end of .data: the rest of it is .bss, zero.
                tail = PAGE - (file_end & (PAGE - 1))
                space.fault(page_down(file_end))
                phys = space._phys(page_down(file_end), False) + (file_end & (PAGE - 1))
                space.write_phys(phys, bytes(tail))
            bss_start = page_up(file_end)
        else:
            bss_start = start
        if mem_end > bss_start:
            space.map(bss_start, mem_end - bss_start, prot, MAP_PRIVATE)


def load_program(space: AddressSpace, program: LinuxProgram, hwcap: int, minsigstksz: int) -> Loaded:
    """Map the program (and its interpreter) and build argv, envp and auxv on a new stack.

    Args:
        space: the new, empty address space.
        program: the executable, its interpreter, argv, envp and the AT_RANDOM bytes.
        hwcap: AT_HWCAP (CPUID leaf 1 EDX of the pinned CPU model).
        minsigstksz: AT_MINSIGSTKSZ (the largest signal frame for that CPU).

    Returns:
        Where the program starts and what was mapped.
    """
    exe = program.exe
    exe_base = PIE_BASE if exe.elf_type == ET_DYN else 0
    map_elf(space, exe, exe_base)
    brk = page_up(exe_base + exe.span[1])
    entry = exe_base + exe.entry
    interp_base = 0
    if program.interp is not None:
        lo, hi = program.interp.span
        interp_base = space.find_gap(hi - lo, MMAP_BASE) - lo
        map_elf(space, program.interp, interp_base)
        entry = interp_base + program.interp.entry
    space.map(STACK_TOP - STACK_SIZE, STACK_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_GROWSDOWN,
              name="[stack]")

    # From the top of the stack down (fs/exec.c, then create_elf_tables): 8 free bytes,
    # the file name (AT_EXECFN), the envp strings, the argv strings; aligned down to 16,
    # the platform string; right below it the AT_RANDOM bytes; then, RSP aligned to 16,
    # argc, argv, envp and the auxiliary vector.
    sp = STACK_TOP - 8
    def push_bytes(data: bytes) -> int:
        nonlocal sp
        sp -= len(data)
        space.write(sp, data)
        return sp

    execfn = push_bytes(exe.path.encode("utf-8", "surrogateescape") + b"\0")
    env_ptrs = [push_bytes(e.encode("utf-8", "surrogateescape") + b"\0") for e in reversed(program.env)][::-1]
    arg_ptrs = [push_bytes(a.encode("utf-8", "surrogateescape") + b"\0") for a in reversed(program.argv)][::-1]
    sp &= ~0xF                                        # arch_align_stack, randomisation off
    platform = push_bytes(b"x86_64\0")
    random = push_bytes(program.at_random)
    phdr = exe_base + (exe.phdr_vaddr if exe.phdr_vaddr is not None else exe.segments[0].vaddr + exe.phoff)
    # create_elf_tables' order: ARCH_DLINFO (AT_SYSINFO_EHDR, left out, and
    # AT_MINSIGSTKSZ) first. AT_HWCAP2 holds no FSGSBASE: the CPU model lacks it.
    auxv = [(AT_MINSIGSTKSZ, minsigstksz), (AT_HWCAP, hwcap), (AT_PAGESZ, PAGE), (AT_CLKTCK, 100),
            (AT_PHDR, phdr), (AT_PHENT, 56), (AT_PHNUM, exe.phnum), (AT_BASE, interp_base),
            (AT_FLAGS, 0), (AT_ENTRY, exe_base + exe.entry), (AT_UID, 0), (AT_EUID, 0), (AT_GID, 0),
            (AT_EGID, 0), (AT_SECURE, 0), (AT_RANDOM, random), (AT_HWCAP2, 0), (AT_EXECFN, execfn),
            (AT_PLATFORM, platform), (AT_NULL, 0)]
    words = [len(program.argv), *arg_ptrs, 0, *env_ptrs, 0]
    auxv_raw = b"".join(struct.pack("<QQ", k, v) for k, v in auxv)
    total = len(words) * 8 + len(auxv_raw)
    sp = (sp - total) & ~0xF
    space.write(sp, struct.pack(f"<{len(words)}Q", *words) + auxv_raw)
    return Loaded(entry, sp, brk, exe_base, interp_base, auxv_raw)

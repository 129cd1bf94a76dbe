"""Memory system calls: mmap, munmap, mprotect, mremap, brk, madvise, mincore.

All deterministic: nothing here is logged beyond the SYSCALL event itself. The model
beneath is vmm/linux/memory.py.
"""

from __future__ import annotations

from vmm.linux.abi import EACCES, EBADF, EEXIST, EINVAL, ENODEV, ENOMEM, O_ACCMODE
from vmm.linux.files import file_key, s32, s64
from vmm.linux.loader import MMAP_BASE
from vmm.linux.memory import (MAP_ANONYMOUS, MAP_FIXED, MAP_FIXED_NOREPLACE, MAP_PRIVATE, MAP_SHARED,
                              PAGE, PROT_EXEC, PROT_READ, PROT_WRITE, USER_END, page_up)

MREMAP_MAYMOVE, MREMAP_FIXED = 1, 2
MADV_DONTNEED, MADV_FREE, MADV_REMOVE = 4, 8, 9
_PROT_ALL = PROT_READ | PROT_WRITE | PROT_EXEC


def _place(k, addr: int, length: int, flags: int) -> int:
    """Where a new mapping goes: MAP_FIXED's address, a free hint, or top-down from MMAP_BASE."""
    space = k.space
    if flags & MAP_FIXED:
        return addr
    if flags & MAP_FIXED_NOREPLACE:
        return addr if space.is_free(addr, addr + length) else -EEXIST
    if addr and not addr & (PAGE - 1) and space.is_free(addr, addr + length):
        return addr
    start = space.find_gap(length, MMAP_BASE)
    return -ENOMEM if start is None else start


def _too_big(k, length: int) -> bool:
    """Linux's heuristic overcommit: refuse one mapping larger than all of RAM."""
    return length > k.machine.mem_size


def sys_mmap(k, addr, length, prot, flags, fd, offset):
    if not length or addr & (PAGE - 1) or offset & (PAGE - 1) or prot & ~_PROT_ALL & 0xFFFFFFFF:
        return -EINVAL
    length = page_up(length)
    if length >= USER_END or (flags & MAP_FIXED and (addr + length > USER_END or addr < PAGE)):
        return -ENOMEM if not flags & MAP_FIXED else -EINVAL
    kind = flags & (MAP_SHARED | MAP_PRIVATE | 0x3)
    if kind not in (MAP_SHARED, MAP_PRIVATE, 0x3):
        return -EINVAL
    file_id, name = None, ""
    if not flags & MAP_ANONYMOUS:
        f = k.files.get(fd)
        if f is None:
            return -EBADF
        if f.kind == "blob":
            file_id = f.data
        elif f.kind == "host":
            data = k.host("pread", f.handle, length, s64(offset))
            if isinstance(data, int):
                return -EACCES
            if flags & MAP_SHARED and f.stat is not None:
                # One copy for every shared mapping of this file, in any process: the
                # pages it does not hold yet come from what was just read.
                file_id = k.shm.for_file(file_key(f))
                k.shm.add_source(file_id, offset // PAGE, k.keep_content(data))
            else:
                file_id = k.keep_content(data)
                offset = 0
        elif f.kind == "zero":
            file_id, name = None, "/dev/zero"
        else:
            return -ENODEV
        if f.kind == "blob" and (f.flags & O_ACCMODE) == 0 and flags & MAP_SHARED and prot & PROT_WRITE:
            return -EACCES
        name = name or f.path
    elif _too_big(k, length) and prot & PROT_WRITE:
        return -ENOMEM
    start = _place(k, addr, length, flags)
    if start < 0:
        return start
    if flags & MAP_SHARED and (flags & MAP_ANONYMOUS or name == "/dev/zero"):
        file_id, offset = k.shm.new("anon"), 0   # one copy, shared with the children of a fork
    k.space.map(start, length, prot & _PROT_ALL, flags & 0xFFFFFFFF, file=file_id,
                offset=offset if file_id else 0, name=name or ("/dev/zero (deleted)" if file_id else ""))
    if file_id is not None and prot & PROT_EXEC:
        k.library_mapped(file_id, start, offset)
    if prot & PROT_EXEC:
        k.machine.code_changed()
    return start


def sys_munmap(k, addr, length):
    if addr & (PAGE - 1) or not length or addr + length > USER_END:
        return -EINVAL
    k.space.unmap(addr, addr + page_up(length))
    return 0


def sys_mprotect(k, addr, length, prot):
    if addr & (PAGE - 1) or prot & ~_PROT_ALL & 0xFFFFFFFF & ~0x03000000:
        return -EINVAL
    if not length:
        return 0
    end = addr + page_up(length)
    if not k.space.protect(addr, end, prot & _PROT_ALL):
        return -ENOMEM
    if prot & PROT_EXEC:
        for vma in k.space.vmas:
            if vma.file is not None and vma.start <= addr < vma.end:
                k.library_mapped(vma.file, vma.start, vma.offset)
    return 0


def sys_brk(k, addr):
    if addr < k.brk_start:
        return k.brk
    new_end, old_end = page_up(addr), page_up(k.brk)
    if new_end > old_end:
        if _too_big(k, new_end - k.brk_start) or not k.space.is_free(old_end, new_end):
            return k.brk
        k.space.map(old_end, new_end - old_end, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                    name="[heap]")
    elif new_end < old_end:
        k.space.unmap(new_end, old_end)
    k.brk = addr
    return addr


def sys_mremap(k, old, old_len, new_len, flags, new_addr):
    if old & (PAGE - 1) or not new_len or flags & ~(MREMAP_MAYMOVE | MREMAP_FIXED | 4):
        return -EINVAL
    old_len, new_len = page_up(old_len), page_up(new_len)
    vma = k.space.find(old)
    if vma is None or old + old_len > vma.end:
        return -14                                                  # EFAULT
    if flags & MREMAP_FIXED:
        if not flags & MREMAP_MAYMOVE or new_addr & (PAGE - 1):
            return -EINVAL
        k.space.move(old, new_addr, min(old_len, new_len))
        if new_len > old_len:
            k.space.map(new_addr + old_len, new_len - old_len, vma.prot, vma.flags)
        if old_len > new_len:
            k.space.unmap(old + new_len, old + old_len)
        return new_addr
    if new_len <= old_len:
        k.space.unmap(old + new_len, old + old_len)
        return old
    if old + old_len == vma.end and k.space.is_free(old + old_len, old + new_len):
        if vma.file is None:
            vma.end = old + new_len
        else:
            k.space.map(old + old_len, new_len - old_len, vma.prot, vma.flags, file=vma.file,
                        offset=vma.offset + (old + old_len - vma.start), name=vma.name)
        return old
    if not flags & MREMAP_MAYMOVE:
        return -ENOMEM
    target = k.space.find_gap(new_len, MMAP_BASE)
    if target is None:
        return -ENOMEM
    prot, vflags, file_id, offset, name = vma.prot, vma.flags, vma.file, vma.offset + (old - vma.start), vma.name
    k.space.move(old, target, old_len)
    k.space.map(target + old_len, new_len - old_len, prot, vflags, file=file_id,
                offset=offset + old_len if file_id else 0, name=name)
    return target


def sys_madvise(k, addr, length, advice):
    if addr & (PAGE - 1):
        return -EINVAL
    if s32(advice) in (MADV_DONTNEED, MADV_FREE, MADV_REMOVE):
        k.space.discard(addr, addr + page_up(length))
    return 0


def sys_mincore(k, addr, length, vec):
    if addr & (PAGE - 1):
        return -EINVAL
    pages = page_up(length) // PAGE
    if any(k.space.find(addr + i * PAGE) is None for i in range(0, pages, max(1, pages // 64 or 1))):
        return -ENOMEM
    present = bytes(1 if k.space.pte(addr + i * PAGE) & 1 else 0 for i in range(pages))
    k.write(vec, present)
    return 0


def sys_msync(k, addr, length, flags):
    return -EINVAL if addr & (PAGE - 1) else 0


def sys_ok(k, *_args):
    return 0

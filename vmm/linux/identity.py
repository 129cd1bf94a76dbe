"""The process and its identity: ids, uname, limits, sysinfo, exit, arch_prctl.

Pids are the host's (the first process has vmrr's own pid, the others what the host
answered, vmm/linux/kernel.py alloc_pid); user and group ids are vmm/linux/creds.py's.
uname's node name and release describe the host that recorded: they are host answers.
"""

from __future__ import annotations

import struct

from unicorn import x86_const as x86

from vmm.linux import abi
from vmm.linux.files import s32

ARCH_SET_GS, ARCH_SET_FS, ARCH_GET_FS, ARCH_GET_GS = 0x1001, 0x1002, 0x1003, 0x1004
ARCH_GET_CPUID, ARCH_SET_CPUID = 0x1011, 0x1012
PR_SET_PDEATHSIG, PR_GET_PDEATHSIG, PR_GET_DUMPABLE, PR_SET_DUMPABLE, PR_SET_NAME, PR_GET_NAME = 1, 2, 3, 4, 15, 16
PR_SET_TIMERSLACK, PR_GET_TIMERSLACK, PR_SET_NO_NEW_PRIVS, PR_CAPBSET_READ = 29, 30, 38, 23
PR_SET_THP_DISABLE, PR_GET_THP_DISABLE = 41, 42


def sys_zero(k, *_args):
    return 0


def sys_getpid(k, *_args):
    return k.pid


def sys_gettid(k):
    return k.tid


def sys_exit(k, status):
    """exit: the calling thread ends (the process with its last thread)."""
    k.task_exit(status & 0xFF)
    from vmm.linux.tasks import NO_RETURN
    return NO_RETURN


def sys_exit_group(k, status):
    from vmm.linux.tasks import SyscallExit
    raise SyscallExit(status & 0xFF)


def sys_uname(k, buf):
    answer = k.host("uname")
    fields = [f.encode()[:64] for f in answer[:5]] + [b"(none)"]
    k.write(buf, b"".join(f.ljust(65, b"\0") for f in fields))
    return 0


def _rlimit(k, resource: int) -> list[int] | None:
    return k.rlimits.get(resource)


def sys_getrlimit(k, resource, rlim):
    limit = _rlimit(k, s32(resource))
    if limit is None:
        return -abi.EINVAL
    k.write(rlim, struct.pack("<QQ", *limit))
    return 0


def sys_setrlimit(k, resource, rlim):
    return sys_prlimit64(k, 0, resource, rlim, 0)


def sys_prlimit64(k, pid, resource, new, old):
    if s32(pid) not in (0, k.pid):
        return -abi.ESRCH
    limit = _rlimit(k, s32(resource))
    if limit is None:
        return -abi.EINVAL
    if old:
        k.write(old, struct.pack("<QQ", *limit))
    if new:
        soft, hard = struct.unpack("<QQ", k.read(new, 16))
        if soft > hard or hard > limit[1]:
            return -abi.EPERM if hard > limit[1] else -abi.EINVAL
        k.rlimits[s32(resource)] = [soft, hard]
    return 0


def sys_getrusage(k, who, usage):
    k.write(usage, bytes(144))
    return 0


def sys_sysinfo(k, info):
    total = k.machine.mem_size
    free = total - k.space.frames.used * 4096
    uptime = 1 + k.machine.icount // 100_000_000
    raw = struct.pack("<q3Q6QHH4xQQI", uptime, 0, 0, 0, total, free, 0, 0, 0, 0, 1, 0, 0, 0, 1)
    k.write(info, raw.ljust(112, b"\0"))
    return 0


def sys_sched_getaffinity(k, pid, size, mask):
    if size < 8 or size & 7:
        return -abi.EINVAL
    k.write(mask, struct.pack("<Q", 1) + bytes(min(size, 128) - 8))
    return min(size, 128)


def sys_getcpu(k, cpu, node, cache):
    for ptr in (cpu, node):
        if ptr:
            k.write(ptr, struct.pack("<I", 0))
    return 0


def sys_prctl(k, option, a2, a3, a4, a5):
    option = s32(option)
    if option == PR_SET_NAME:
        k.current.name = k.space.read_cstr(a2, 16)[:15].decode("utf-8", "replace")
        return 0
    if option == PR_GET_NAME:
        k.write(a2, k.current.name.encode()[:15].ljust(16, b"\0"))
        return 0
    if option == PR_SET_PDEATHSIG:
        if not 0 <= a2 <= abi.NSIG:
            return -abi.EINVAL
        k.proc.pdeathsig = a2                 # sent when its parent ends (kernel.exit_process)
        return 0
    if option == PR_GET_PDEATHSIG:
        k.write(a2, struct.pack("<i", k.proc.pdeathsig))
        return 0
    if option in (PR_SET_TIMERSLACK, PR_SET_DUMPABLE, PR_SET_NO_NEW_PRIVS,
                  PR_SET_THP_DISABLE):
        return 0
    if option == PR_GET_DUMPABLE:
        return 1
    if option == PR_GET_TIMERSLACK:
        return 50_000
    if option in (PR_GET_THP_DISABLE,):
        return 0
    if option == PR_CAPBSET_READ:
        return 1
    return -abi.EINVAL


def sys_arch_prctl(k, code, addr):
    uc = k.uc
    if code == ARCH_SET_FS:
        uc.reg_write(x86.UC_X86_REG_FS_BASE, addr)
        return 0
    if code == ARCH_SET_GS:
        uc.reg_write(x86.UC_X86_REG_GS_BASE, addr)
        return 0
    if code in (ARCH_GET_FS, ARCH_GET_GS):
        reg = x86.UC_X86_REG_FS_BASE if code == ARCH_GET_FS else x86.UC_X86_REG_GS_BASE
        k.write(addr, struct.pack("<Q", uc.reg_read(reg)))
        return 0
    if code == ARCH_GET_CPUID:
        return 1
    return -abi.EINVAL

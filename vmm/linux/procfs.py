"""/proc, /sys and /dev as a Linux kernel would show them to this one process.

Everything here is made up by the personality from its own state (the memory map, the
command line, the machine's RAM), so it is deterministic and never logged. Paths that
Linux has but the personality does not model answer ENOENT, like a kernel built
without that feature.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING

from vmm.linux import abi
from vmm.linux.tasks import REAPED, ZOMBIE

if TYPE_CHECKING:
    from vmm.linux.files import OpenFile
    from vmm.linux.kernel import LinuxKernel

SYNTH_STAT = [0x16, 1, abi.S_IFREG | 0o444, 1, 0, 0, 0, 0, 1024, 0, 0, 0, 0]
_DEV_STAT = {"/dev/null": (0x103, "null"), "/dev/zero": (0x105, "zero"), "/dev/full": (0x107, "zero"),
             "/dev/random": (0x108, "random"), "/dev/urandom": (0x109, "random")}
_STATIC = {
    "/proc/sys/vm/overcommit_memory": "0\n",
    "/proc/sys/net/core/somaxconn": "4096\n",
    "/proc/sys/kernel/pid_max": "4194304\n",
    "/proc/sys/kernel/random/boot_id": "6d1f8a9e-0b7e-4c39-9d5e-2f0a3b1c4d5e\n",
    "/proc/sys/kernel/osrelease": "6.1.0-vmrr\n",
    "/sys/kernel/mm/transparent_hugepage/enabled": "always madvise [never]\n",
    "/sys/kernel/mm/transparent_hugepage/defrag": "always defer defer+madvise [madvise] never\n",
    "/sys/devices/system/cpu/online": "0\n",
    "/sys/devices/system/cpu/possible": "0\n",
    "/sys/devices/system/cpu/present": "0\n",
    "/sys/devices/system/clocksource/clocksource0/current_clocksource": "tsc\n",
    "/sys/fs/cgroup/cpu.max": "max 100000\n",
}
# What CPUID reports on the Westmere model the personality pins (leaf 1 EDX/ECX, 0x80000001):
# a program that reads cpuinfo must see the same CPU that CPUID shows (no AVX, no RDRAND).
_CPU_FLAGS = (b"fpu de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse "
              b"sse2 syscall nx lm pni pclmulqdq ssse3 cx16 sse4_1 sse4_2 popcnt aes hypervisor lahf_lm")
_SELF_FILES = ("maps", "stat", "status", "auxv", "cmdline", "environ", "comm", "statm", "limits")


def is_virtual(path: str) -> bool:
    return path == "/proc" or path.startswith(("/proc/", "/sys/", "/dev/fd/")) or path in _DEV_STAT \
        or path in _STDIO_LINKS


def _target(k: LinuxKernel, path: str):
    """(process, 'maps') for /proc/self/maps, /proc/thread-self/maps, /proc/PID/maps of any
    process that has not been reaped, /proc/PID/task/TID/maps; else None."""
    for prefix in ("/proc/self/", "/proc/thread-self/", f"/proc/self/task/{k.tid}/"):
        if path.startswith(prefix):
            return k.proc, path[len(prefix):]
    if not path.startswith("/proc/"):
        return None
    head, _, rest = path[len("/proc/"):].partition("/")
    proc = k.processes.get(int(head)) if head.isdigit() and len(head) < 10 else None
    if proc is None or proc.state == REAPED or not rest:
        return None
    task, _, inner = rest.partition("/")
    if task == "task" and inner:
        tid, _, inner = inner.partition("/")
        if not (tid.isdigit() and len(tid) < 10 and int(tid) in proc.all_tids() and inner):
            return None
        rest = inner
    return proc, rest


def _self_part(k: LinuxKernel, path: str) -> str | None:
    """'maps' for /proc/self/maps or /proc/PID/maps (of the process ``k.proc`` is now)."""
    found = _target(k, path)
    return None if found is None or found[0] is not k.proc else found[1]


@contextmanager
def _viewing(k: LinuxKernel, proc):
    """The kernel's per-process attributes (space, files, cwd, ...) are ``proc``'s for a while."""
    saved = k.proc
    k.proc = proc
    try:
        yield
    finally:
        k.proc = saved


def _process_dir(k: LinuxKernel, path: str):
    """The process /proc/PID or /proc/self names, or None."""
    if path in ("/proc/self", "/proc/thread-self"):
        return k.proc
    head = path[len("/proc/"):] if path.startswith("/proc/") else ""
    proc = k.processes.get(int(head)) if head.isdigit() and len(head) < 10 else None
    return proc if proc is not None and proc.state != REAPED else None


def content(k: LinuxKernel, path: str) -> bytes | None:
    """The bytes of a virtual file, or None when it does not exist."""
    if path in _STATIC:
        return _STATIC[path].encode()
    found = _target(k, path)
    if found is not None:
        proc, part = found
        maker = {"maps": _maps, "stat": _stat, "status": _status, "auxv": lambda k: k.auxv,
                 "cmdline": lambda k: b"".join(a.encode("utf-8", "surrogateescape") + b"\0" for a in k.proc.argv),
                 "environ": lambda k: b"".join(e.encode("utf-8", "surrogateescape") + b"\0" for e in k.proc.env),
                 "comm": lambda k: k.proc.comm.encode("utf-8", "surrogateescape") + b"\n", "statm": _statm,
                 "limits": _limits}.get(part)
        if maker is None:
            return None
        with _viewing(k, proc):
            return maker(k)
    if path == "/proc/meminfo":
        total = k.machine.mem_size >> 10
        free = total - (k.space.frames.used * 4)
        return (f"MemTotal:       {total:8d} kB\nMemFree:        {free:8d} kB\n"
                f"MemAvailable:   {free:8d} kB\nBuffers:               0 kB\nCached:                0 kB\n"
                f"SwapTotal:             0 kB\nSwapFree:              0 kB\n").encode()
    if path == "/proc/cpuinfo":
        return (b"processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: vmrr virtual CPU (Unicorn)\n"
                b"cpu MHz\t\t: 1000.000\ncpu cores\t: 1\nflags\t\t: " + _CPU_FLAGS + b"\n\n")
    if path == "/proc/loadavg":
        return b"0.00 0.00 0.00 1/1 1000\n"
    if path == "/proc/uptime":
        return b"1.00 1.00\n"
    if path == "/proc/stat":
        return b"cpu  0 0 0 0 0 0 0 0 0 0\ncpu0 0 0 0 0 0 0 0 0 0 0\nprocs_running 1\n"
    return None


def _maps(k: LinuxKernel) -> bytes:
    lines = []
    for vma in k.space.vmas:
        perms = ("r" if vma.prot & 1 else "-") + ("w" if vma.prot & 2 else "-") + \
                ("x" if vma.prot & 4 else "-") + ("s" if vma.flags & 1 else "p")
        inode = 1 if vma.file else 0
        name = vma.name
        if not name and vma.start <= k.brk_start < vma.end or (k.brk_start <= vma.start < k.brk and not vma.file):
            name = "[heap]"
        lines.append(f"{vma.start:08x}-{vma.end:08x} {perms} {vma.offset:08x} "
                     f"{'08:01' if vma.file else '00:00'} {inode:<10d}{'                ' + name if name else ''}")
    return ("\n".join(lines) + "\n").encode("utf-8", "surrogateescape")


def _stat(k: LinuxKernel) -> bytes:
    rss = k.space.frames.used
    vsize = sum(v.end - v.start for v in k.space.vmas)
    # The 52 fields of proc(5): pid (comm) state ppid pgrp session tty tpgid flags, faults and
    # times (10-17), priority nice threads itrealvalue starttime vsize rss rsslim (18-25),
    # code/stack/signal fields (26-37), exit_signal (38), then 39-52.
    proc = k.proc
    state = "R" if proc is k.processes.get(k.pid) else ("Z" if proc.state == ZOMBIE else "S")
    fields = [proc.pid, f"({proc.comm})", state, proc.ppid, proc.pgid, proc.sid, 0, -1, 0x400000, 0, 0, 0, 0, 0, 0, 0, 0, 20, 0, 1, 0,
              100, vsize, rss, abi.RLIM_INFINITY] + [0] * 12 + [17] + [0] * 14
    return (" ".join(str(f) for f in fields) + "\n").encode()


def _statm(k: LinuxKernel) -> bytes:
    size = sum(v.end - v.start for v in k.space.vmas) // 4096
    return f"{size} {k.space.frames.used} 0 0 0 0 0\n".encode()


def _status(k: LinuxKernel) -> bytes:
    rss = k.space.frames.used * 4
    size = sum(v.end - v.start for v in k.space.vmas) >> 10
    proc = k.proc
    ruid, euid, suid, rgid, egid, sgid = proc.creds
    groups = " ".join(str(g) for g in proc.groups)
    state = "R (running)" if proc is k.processes.get(k.pid) else (
        "Z (zombie)" if proc.state == ZOMBIE else "S (sleeping)")
    return (f"Name:\t{proc.comm}\nUmask:\t{k.umask:04o}\nState:\t{state}\nTgid:\t{proc.pid}\nNgid:\t0\n"
            f"Pid:\t{proc.pid}\nPPid:\t{proc.ppid}\nTracerPid:\t0\nUid:\t{ruid}\t{euid}\t{suid}\t{euid}\n"
            f"Gid:\t{rgid}\t{egid}\t{sgid}\t{egid}\nFDSize:\t64\nGroups:\t{groups}\n"
            f"VmPeak:\t{size:8d} kB\nVmSize:\t{size:8d} kB\nVmRSS:\t{rss:8d} kB\n"
            f"Threads:\t{max(1, len(proc.live_threads()))}\n"
            f"SigBlk:\t{k.signals.mask:016x}\nCpus_allowed:\t1\nCpus_allowed_list:\t0\n").encode()


_LIMIT_NAMES = [("Max cpu time", "seconds"), ("Max file size", "bytes"), ("Max data size", "bytes"),
                ("Max stack size", "bytes"), ("Max core file size", "bytes"), ("Max resident set", "bytes"),
                ("Max processes", "processes"), ("Max open files", "files"),
                ("Max locked memory", "bytes"), ("Max address space", "bytes"),
                ("Max file locks", "locks"), ("Max pending signals", "signals"),
                ("Max msgqueue size", "bytes"), ("Max nice priority", ""), ("Max realtime priority", ""),
                ("Max realtime timeout", "us")]


def _limits(k: LinuxKernel) -> bytes:
    """The rlimits in the layout of Linux's proc_pid_limits()."""
    def show(value: int) -> str:
        return "unlimited" if value >= abi.RLIM_INFINITY else str(value)
    lines = [f"{'Limit':<25} {'Soft Limit':<20} {'Hard Limit':<20} {'Units':<10}"]
    for resource, (name, unit) in enumerate(_LIMIT_NAMES):
        soft, hard = k.rlimits.get(resource, [abi.RLIM_INFINITY, abi.RLIM_INFINITY])
        lines.append(f"{name:<25} {show(soft):<20} {show(hard):<20} {unit:<10}")
    return ("\n".join(lines) + "\n").encode()


_STDIO_LINKS = {"/dev/stdin": 0, "/dev/stdout": 1, "/dev/stderr": 2}


def fd_target(k: LinuxKernel, path: str) -> int | None:
    """The descriptor a path names: /dev/fd/N, /proc/self/fd/N (or /proc/<own pid>/fd/N),
    /dev/stdin, /dev/stdout, /dev/stderr -- the program's own descriptors, never vmrr's."""
    if path in _STDIO_LINKS:
        return _STDIO_LINKS[path]
    if path.startswith("/dev/fd/"):
        rest = path[len("/dev/fd/"):]
    else:
        part = _self_part(k, path)
        rest = part[3:] if part is not None and part.startswith("fd/") else None
    return int(rest) if rest is not None and rest.isdigit() and len(rest) < 10 else None


def open(k: LinuxKernel, path: str, flags: int) -> "OpenFile | int | None":
    """An OpenFile for a virtual path, -errno, or None when the host should answer."""
    from vmm.linux.files import OpenFile

    if path in _DEV_STAT:
        rdev, kind = _DEV_STAT[path]
        return OpenFile(kind, path, flags, stat=[5, rdev, abi.S_IFCHR | 0o666, 1, 0, 0, rdev, 0, 4096, 0, 0, 0, 0])
    if not is_virtual(path):
        return None
    if (flags & abi.O_ACCMODE) != 0:
        return -abi.EACCES
    directory = _directory(k, path)
    if directory is not None:
        return OpenFile("dir", path, flags, stat=[0x16, 1, abi.S_IFDIR | 0o555, 1, 0, 0, 0, 0, 1024, 0, 0, 0, 0],
                        data=directory)
    data = content(k, path)
    if data is None:
        return -abi.ENOENT
    return OpenFile("synth", path, flags, stat=SYNTH_STAT, data=data)


def _directory(k: LinuxKernel, path: str) -> list | None:
    """The entries of a /proc directory (/proc, /proc/PID, its fd and task), or None."""
    dots = [[1, 4, "."], [1, 4, ".."]]
    if path == "/proc":
        live = sorted(p.pid for p in k.processes.values() if p.state != REAPED)
        return dots + [[2 + i, 4, str(pid)] for i, pid in enumerate(live)] + [[1 << 20, 10, "self"]]
    base, _, leaf = path.rpartition("/")
    for name in ("fd", "task"):
        if leaf == name:
            proc = _process_dir(k, base)
            if proc is None:
                return None
            if name == "fd":
                names = [str(fd) for fd in sorted(proc.files.fds)]
                return dots + [[100 + i, 10, n] for i, n in enumerate(names)]
            return dots + [[2 + i, 4, str(t)] for i, t in enumerate(t.tid for t in proc.live_threads())]
    proc = _process_dir(k, path)
    if proc is None:
        return None
    return dots + [[10 + i, 8, n] for i, n in enumerate(_SELF_FILES)] + \
        [[30, 10, "exe"], [31, 10, "cwd"], [32, 4, "fd"], [33, 4, "task"]]


def stat(k: LinuxKernel, path: str, follow: bool) -> list | int | None:
    """A stat for a virtual path, -ENOENT, or None when the host should answer."""
    if path in _DEV_STAT:
        rdev = _DEV_STAT[path][0]
        return [5, rdev, abi.S_IFCHR | 0o666, 1, 0, 0, rdev, 0, 4096, 0, 0, 0, 0]
    if not is_virtual(path):
        return None
    target = fd_target(k, path)
    if target is not None and follow:
        from vmm.linux.files import fstat_list
        f = k.files.get(target)
        return -abi.ENOENT if f is None else fstat_list(k, f)
    link = readlink(k, path)
    if link is not None and not isinstance(link, int):
        if not follow:
            return [0x16, 2, abi.S_IFLNK | 0o777, 1, 0, 0, 0, len(link), 1024, 0, 0, 0, 0]
        if not link.startswith("/"):                 # /proc/self -> "1000", relative to /proc
            link = path.rsplit("/", 1)[0] + "/" + link
        if not is_virtual(link):
            return k.host("stat", link, True)
    if path == "/sys" or _directory(k, path) is not None \
            or content(k, path) is None and path.count("/") <= 3 and path.startswith("/sys/"):
        if path.startswith("/sys/") and path not in ("/sys",):
            return -abi.ENOENT if not any(p.startswith(path + "/") for p in _STATIC) else \
                [0x16, 1, abi.S_IFDIR | 0o555, 1, 0, 0, 0, 0, 1024, 0, 0, 0, 0]
        return [0x16, 1, abi.S_IFDIR | 0o555, 1, 0, 0, 0, 0, 1024, 0, 0, 0, 0]
    if any(p.startswith(path + "/") for p in _STATIC):
        return [0x16, 1, abi.S_IFDIR | 0o555, 1, 0, 0, 0, 0, 1024, 0, 0, 0, 0]
    return SYNTH_STAT if content(k, path) is not None else -abi.ENOENT


def readlink(k: LinuxKernel, path: str) -> str | int | None:
    """The target of a /proc link, -errno, or None when the host should answer."""
    if path == "/proc/self":
        return str(k.pid)
    if path.startswith("/dev/") and fd_target(k, path) is not None:
        return f"/proc/self/fd/{fd_target(k, path)}"
    found = _target(k, path)
    if found is None:
        return -abi.EINVAL if is_virtual(path) else None
    proc, part = found
    if part == "exe":
        return proc.exe
    if part == "cwd":
        return proc.cwd
    if part.startswith("fd/"):
        f = proc.files.get(int(part[3:])) if part[3:].isdigit() and len(part) < 13 else None
        return -abi.ENOENT if f is None else f.path
    return -abi.EINVAL

"""The x86-64 Linux ABI the personality speaks: errno values, signal numbers, struct layouts.

Struct layouts are in one place, as ``struct`` formats, so that handlers stay a few
lines over them.
"""

from __future__ import annotations

import struct

# errno (asm-generic/errno-base.h, errno.h)
EPERM, ENOENT, ESRCH, EINTR, EIO, ENXIO, E2BIG, ENOEXEC, EBADF, ECHILD = 1, 2, 3, 4, 5, 6, 7, 8, 9, 10
EAGAIN, ENOMEM, EACCES, EFAULT, EBUSY, EEXIST, EXDEV, ENODEV, ENOTDIR, EISDIR = 11, 12, 13, 14, 16, 17, 18, 19, 20, 21
EINVAL, ENFILE, EMFILE, ENOTTY, EFBIG, ENOSPC, ESPIPE, EROFS, EPIPE, ERANGE = 22, 23, 24, 25, 27, 28, 29, 30, 32, 34
ENAMETOOLONG, ENOSYS, ENOTEMPTY, ELOOP, ENODATA, EOVERFLOW, ENOTSUP = 36, 38, 39, 40, 61, 75, 95
ELIBBAD = 80

# signals
SIGHUP, SIGINT, SIGQUIT, SIGILL, SIGTRAP, SIGABRT, SIGBUS, SIGFPE, SIGKILL = 1, 2, 3, 4, 5, 6, 7, 8, 9
SIGUSR1, SIGSEGV, SIGUSR2, SIGPIPE, SIGALRM, SIGTERM, SIGCHLD, SIGCONT, SIGSTOP = 10, 11, 12, 13, 14, 15, 17, 18, 19
CLD_EXITED, CLD_KILLED, CLD_DUMPED = 1, 2, 3          # si_code of SIGCHLD and waitid
SIGTSTP, SIGTTIN, SIGTTOU, SIGURG, SIGXCPU, SIGXFSZ, SIGVTALRM, SIGPROF, SIGWINCH = 20, 21, 22, 23, 24, 25, 26, 27, 28
SIGIO, SIGPWR, SIGSYS = 29, 30, 31
NSIG = 64
SIGNAL_NAMES = {v: k for k, v in list(globals().items()) if k.startswith("SIG") and isinstance(v, int)
                and k not in ("SIGNAL_NAMES",)}

# si_code values
SI_USER, SI_KERNEL, SI_TKILL = 0, 0x80, -6
SEGV_MAPERR, SEGV_ACCERR = 1, 2
ILL_ILLOPN = 2
FPE_INTDIV = 1
BUS_ADRALN = 1
TRAP_BRKPT = 1

# open flags
O_ACCMODE, O_WRONLY, O_RDWR = 0o3, 0o1, 0o2
O_CREAT, O_EXCL, O_NOCTTY, O_TRUNC, O_APPEND, O_NONBLOCK = 0o100, 0o200, 0o400, 0o1000, 0o2000, 0o4000
O_DIRECTORY, O_NOFOLLOW, O_CLOEXEC, O_PATH, O_TMPFILE = 0o200000, 0o400000, 0o2000000, 0o10000000, 0o20200000
AT_FDCWD = -100
AT_SYMLINK_NOFOLLOW, AT_REMOVEDIR, AT_EMPTY_PATH = 0x100, 0x200, 0x1000

S_IFMT, S_IFDIR, S_IFREG, S_IFCHR, S_IFIFO, S_IFLNK, S_IFSOCK = 0o170000, 0o040000, 0o100000, 0o020000, 0o010000, 0o120000, 0o140000

# A stat as the host answers it, and as the trace keeps it (a list of ints):
STAT_FIELDS = ("dev", "ino", "mode", "nlink", "uid", "gid", "rdev", "size", "blksize", "blocks",
               "atime_ns", "mtime_ns", "ctime_ns")
_STAT = struct.Struct("<QQQIIIIQqqqQqQqQqqqq")      # struct stat, 144 bytes


def pack_stat(st: list[int]) -> bytes:
    dev, ino, mode, nlink, uid, gid, rdev, size, blksize, blocks, at, mt, ct = st
    return _STAT.pack(dev, ino, nlink, mode, uid, gid, 0, rdev, size, blksize, blocks,
                      at // 10**9, at % 10**9, mt // 10**9, mt % 10**9, ct // 10**9, ct % 10**9, 0, 0, 0)


def pack_statx(st: list[int], mask: int) -> bytes:
    """struct statx (256 bytes) with the basic fields filled."""
    dev, ino, mode, nlink, uid, gid, rdev, size, blksize, blocks, at, mt, ct = st
    def ts(ns: int) -> bytes:
        return struct.pack("<qIi", ns // 10**9, ns % 10**9, 0)
    head = struct.pack("<IIQIIIHH", 0x7FF, blksize, 0, nlink, uid, gid, mode, 0)
    head += struct.pack("<QQQQ", ino, size, blocks, 0)
    times = ts(at) + ts(ct) + ts(ct) + ts(mt)              # atime, btime, ctime, mtime
    devs = struct.pack("<IIII", (rdev >> 8) & 0xFFF, rdev & 0xFF, (dev >> 8) & 0xFFF, dev & 0xFF)
    raw = head + times + devs
    return raw + bytes(256 - len(raw))


def timespec(ns: int) -> bytes:
    return struct.pack("<qq", ns // 10**9, ns % 10**9)


def read_timespec(raw: bytes) -> int | None:
    sec, nsec = struct.unpack("<qq", raw)
    if sec < 0 or not 0 <= nsec < 10**9:
        return None
    return sec * 10**9 + nsec


RLIMIT_CPU, RLIMIT_FSIZE, RLIMIT_DATA, RLIMIT_STACK, RLIMIT_CORE, RLIMIT_RSS = 0, 1, 2, 3, 4, 5
RLIMIT_NPROC, RLIMIT_NOFILE, RLIMIT_MEMLOCK, RLIMIT_AS = 6, 7, 8, 9
RLIM_INFINITY = (1 << 64) - 1
FDS_SOFT = 1024                        # RLIMIT_NOFILE as a login shell gives it: soft 1024,
MAX_FDS = 65536                        # hard 65536 (redis raises the soft limit to its maxclients)


def default_rlimits(mem_size: int) -> dict[int, list[int]]:
    inf = RLIM_INFINITY
    limits = {r: [inf, inf] for r in range(16)}
    limits[RLIMIT_STACK] = [8 << 20, inf]
    limits[RLIMIT_CORE] = [0, inf]
    limits[RLIMIT_NOFILE] = [FDS_SOFT, MAX_FDS]
    limits[RLIMIT_NPROC] = [4096, 4096]
    limits[RLIMIT_MEMLOCK] = [8 << 20, 8 << 20]
    return limits


# AT_MINSIGSTKSZ: the most stack a signal frame can take, as Linux's init_sigframe_size
# (arch/x86/kernel/signal.c) computes it at boot for the pinned CPU model (no XSAVE) and a
# kernel with IA32 emulation, as Debian's: the largest frame without the FPU state,
# sizeof(struct sigframe_ia32) = 736 (732 bytes of fields, its legacy 624-byte
# _fpstate_32 included, padded to 8), plus 15 bytes of alignment, plus
# fpu__get_fpstate_size() = the 512-byte FXSAVE image and the 112-byte fsave header a
# 32-bit frame puts before it, plus 63 bytes to align that to 64; rounded up to 16. (A
# 64-bit frame, sizeof(struct rt_sigframe) = 440, is smaller.) With an AVX CPU's 832-byte
# XSAVE area (+4) in place of the FXSAVE image, the same sum gives the 1776 Linux reports.
MINSIGSTKSZ = (736 + 15 + 512 + 112 + 63 + 15) & ~15          # 1440

_HWCAP_CACHE: list[int] = []


def hwcap(uc) -> int:
    """AT_HWCAP: CPUID leaf 1 EDX of the machine's pinned CPU model (computed once)."""
    if not _HWCAP_CACHE:
        from unicorn import UC_ARCH_X86, UC_MODE_64, Uc
        from unicorn import x86_const as x86
        probe = Uc(UC_ARCH_X86, UC_MODE_64)
        probe.ctl_set_cpu_model(uc.ctl_get_cpu_model())
        probe.mem_map(0x1000, 0x1000)
        probe.mem_write(0x1000, b"\x0f\xa2")                    # cpuid
        probe.reg_write(x86.UC_X86_REG_RAX, 1)
        probe.emu_start(0x1000, 0x1002)
        _HWCAP_CACHE.append(probe.reg_read(x86.UC_X86_REG_RDX))
    return _HWCAP_CACHE[0]

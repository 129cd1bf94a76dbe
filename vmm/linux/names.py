"""Linux x86-64 numbers and their names, and decoders that print them the way strace does.

Pure data and small functions, no imports from the rest of vmrr, so a trace renders the
same on any host (the host's own ``errno``/``os`` modules may number things differently).
Numbers are those of the Linux x86-64 ABI (asm-generic/errno.h, asm/signal.h,
asm-generic/fcntl.h, asm-generic/mman-common.h, ...). Every decoder takes the raw value
(an unsigned 64-bit register, or a plain int) and returns strace's text: known bits or
values by name, the unknown remainder in hex (``O_RDONLY|0x80000000``), an unknown enum
value as a number with a ``/* PREFIX_??? */`` comment.
"""

from __future__ import annotations

# errno number -> (name, strerror text as glibc words it)
ERRNO: dict[int, tuple[str, str]] = {
    1: ("EPERM", "Operation not permitted"),
    2: ("ENOENT", "No such file or directory"),
    3: ("ESRCH", "No such process"),
    4: ("EINTR", "Interrupted system call"),
    5: ("EIO", "Input/output error"),
    6: ("ENXIO", "No such device or address"),
    7: ("E2BIG", "Argument list too long"),
    8: ("ENOEXEC", "Exec format error"),
    9: ("EBADF", "Bad file descriptor"),
    10: ("ECHILD", "No child processes"),
    11: ("EAGAIN", "Resource temporarily unavailable"),
    12: ("ENOMEM", "Cannot allocate memory"),
    13: ("EACCES", "Permission denied"),
    14: ("EFAULT", "Bad address"),
    15: ("ENOTBLK", "Block device required"),
    16: ("EBUSY", "Device or resource busy"),
    17: ("EEXIST", "File exists"),
    18: ("EXDEV", "Invalid cross-device link"),
    19: ("ENODEV", "No such device"),
    20: ("ENOTDIR", "Not a directory"),
    21: ("EISDIR", "Is a directory"),
    22: ("EINVAL", "Invalid argument"),
    23: ("ENFILE", "Too many open files in system"),
    24: ("EMFILE", "Too many open files"),
    25: ("ENOTTY", "Inappropriate ioctl for device"),
    26: ("ETXTBSY", "Text file busy"),
    27: ("EFBIG", "File too large"),
    28: ("ENOSPC", "No space left on device"),
    29: ("ESPIPE", "Illegal seek"),
    30: ("EROFS", "Read-only file system"),
    31: ("EMLINK", "Too many links"),
    32: ("EPIPE", "Broken pipe"),
    33: ("EDOM", "Numerical argument out of domain"),
    34: ("ERANGE", "Numerical result out of range"),
    35: ("EDEADLK", "Resource deadlock avoided"),
    36: ("ENAMETOOLONG", "File name too long"),
    37: ("ENOLCK", "No locks available"),
    38: ("ENOSYS", "Function not implemented"),
    39: ("ENOTEMPTY", "Directory not empty"),
    40: ("ELOOP", "Too many levels of symbolic links"),
    42: ("ENOMSG", "No message of desired type"),
    43: ("EIDRM", "Identifier removed"),
    44: ("ECHRNG", "Channel number out of range"),
    45: ("EL2NSYNC", "Level 2 not synchronized"),
    46: ("EL3HLT", "Level 3 halted"),
    47: ("EL3RST", "Level 3 reset"),
    48: ("ELNRNG", "Link number out of range"),
    49: ("EUNATCH", "Protocol driver not attached"),
    50: ("ENOCSI", "No CSI structure available"),
    51: ("EL2HLT", "Level 2 halted"),
    52: ("EBADE", "Invalid exchange"),
    53: ("EBADR", "Invalid request descriptor"),
    54: ("EXFULL", "Exchange full"),
    55: ("ENOANO", "No anode"),
    56: ("EBADRQC", "Invalid request code"),
    57: ("EBADSLT", "Invalid slot"),
    59: ("EBFONT", "Bad font file format"),
    60: ("ENOSTR", "Device not a stream"),
    61: ("ENODATA", "No data available"),
    62: ("ETIME", "Timer expired"),
    63: ("ENOSR", "Out of streams resources"),
    64: ("ENONET", "Machine is not on the network"),
    65: ("ENOPKG", "Package not installed"),
    66: ("EREMOTE", "Object is remote"),
    67: ("ENOLINK", "Link has been severed"),
    68: ("EADV", "Advertise error"),
    69: ("ESRMNT", "Srmount error"),
    70: ("ECOMM", "Communication error on send"),
    71: ("EPROTO", "Protocol error"),
    72: ("EMULTIHOP", "Multihop attempted"),
    73: ("EDOTDOT", "RFS specific error"),
    74: ("EBADMSG", "Bad message"),
    75: ("EOVERFLOW", "Value too large for defined data type"),
    76: ("ENOTUNIQ", "Name not unique on network"),
    77: ("EBADFD", "File descriptor in bad state"),
    78: ("EREMCHG", "Remote address changed"),
    79: ("ELIBACC", "Can not access a needed shared library"),
    80: ("ELIBBAD", "Accessing a corrupted shared library"),
    81: ("ELIBSCN", ".lib section in a.out corrupted"),
    82: ("ELIBMAX", "Attempting to link in too many shared libraries"),
    83: ("ELIBEXEC", "Cannot exec a shared library directly"),
    84: ("EILSEQ", "Invalid or incomplete multibyte or wide character"),
    85: ("ERESTART", "Interrupted system call should be restarted"),
    86: ("ESTRPIPE", "Streams pipe error"),
    87: ("EUSERS", "Too many users"),
    88: ("ENOTSOCK", "Socket operation on non-socket"),
    89: ("EDESTADDRREQ", "Destination address required"),
    90: ("EMSGSIZE", "Message too long"),
    91: ("EPROTOTYPE", "Protocol wrong type for socket"),
    92: ("ENOPROTOOPT", "Protocol not available"),
    93: ("EPROTONOSUPPORT", "Protocol not supported"),
    94: ("ESOCKTNOSUPPORT", "Socket type not supported"),
    95: ("EOPNOTSUPP", "Operation not supported"),
    96: ("EPFNOSUPPORT", "Protocol family not supported"),
    97: ("EAFNOSUPPORT", "Address family not supported by protocol"),
    98: ("EADDRINUSE", "Address already in use"),
    99: ("EADDRNOTAVAIL", "Cannot assign requested address"),
    100: ("ENETDOWN", "Network is down"),
    101: ("ENETUNREACH", "Network is unreachable"),
    102: ("ENETRESET", "Network dropped connection on reset"),
    103: ("ECONNABORTED", "Software caused connection abort"),
    104: ("ECONNRESET", "Connection reset by peer"),
    105: ("ENOBUFS", "No buffer space available"),
    106: ("EISCONN", "Transport endpoint is already connected"),
    107: ("ENOTCONN", "Transport endpoint is not connected"),
    108: ("ESHUTDOWN", "Cannot send after transport endpoint shutdown"),
    109: ("ETOOMANYREFS", "Too many references: cannot splice"),
    110: ("ETIMEDOUT", "Connection timed out"),
    111: ("ECONNREFUSED", "Connection refused"),
    112: ("EHOSTDOWN", "Host is down"),
    113: ("EHOSTUNREACH", "No route to host"),
    114: ("EALREADY", "Operation already in progress"),
    115: ("EINPROGRESS", "Operation now in progress"),
    116: ("ESTALE", "Stale file handle"),
    117: ("EUCLEAN", "Structure needs cleaning"),
    118: ("ENOTNAM", "Not a XENIX named type file"),
    119: ("ENAVAIL", "No XENIX semaphores available"),
    120: ("EISNAM", "Is a named type file"),
    121: ("EREMOTEIO", "Remote I/O error"),
    122: ("EDQUOT", "Disk quota exceeded"),
    123: ("ENOMEDIUM", "No medium found"),
    124: ("EMEDIUMTYPE", "Wrong medium type"),
    125: ("ECANCELED", "Operation canceled"),
    126: ("ENOKEY", "Required key not available"),
    127: ("EKEYEXPIRED", "Key has expired"),
    128: ("EKEYREVOKED", "Key has been revoked"),
    129: ("EKEYREJECTED", "Key was rejected by service"),
    130: ("EOWNERDEAD", "Owner died"),
    131: ("ENOTRECOVERABLE", "State not recoverable"),
    132: ("ERFKILL", "Operation not possible due to RF-kill"),
    133: ("EHWPOISON", "Memory page has hardware error"),

    # Kernel-internal codes a tracer can see when a call is interrupted by a signal.
    512: ("ERESTARTSYS", "To be restarted if SA_RESTART is set"),
    513: ("ERESTARTNOINTR", "To be restarted"),
    514: ("ERESTARTNOHAND", "To be restarted if no handler"),
    515: ("ENOIOCTLCMD", "No ioctl command"),
    516: ("ERESTART_RESTARTBLOCK", "Interrupted by signal"),
    524: ("ENOTSUPP", "Operation not supported"),
}

ERRNO_NUMBER: dict[str, int] = {name: number for number, (name, _text) in ERRNO.items()}

# signal number -> name; 32..64 are the real-time signals (SIGRTMIN, SIGRT_1 ... as strace).
SIGNALS: dict[int, str] = dict(enumerate((
    "SIGHUP SIGINT SIGQUIT SIGILL SIGTRAP SIGABRT SIGBUS SIGFPE SIGKILL SIGUSR1 SIGSEGV "
    "SIGUSR2 SIGPIPE SIGALRM SIGTERM SIGSTKFLT SIGCHLD SIGCONT SIGSTOP SIGTSTP SIGTTIN "
    "SIGTTOU SIGURG SIGXCPU SIGXFSZ SIGVTALRM SIGPROF SIGWINCH SIGIO SIGPWR SIGSYS").split(), 1))
SIGRTMIN, SIGRTMAX = 32, 64
SIGNALS[SIGRTMIN] = "SIGRTMIN"
SIGNALS.update({n: f"SIGRT_{n - SIGRTMIN}" for n in range(SIGRTMIN + 1, SIGRTMAX + 1)})

_U64 = (1 << 64) - 1
_U32 = (1 << 32) - 1


def signed64(value: int) -> int:
    """A 64-bit register value as the signed number it holds."""
    value &= _U64
    return value - (1 << 64) if value >> 63 else value


def signed32(value: int) -> int:
    """The low 32 bits of a register as a C ``int`` (fds, signal numbers, enum values)."""
    value &= _U32
    return value - (1 << 32) if value >> 31 else value


def errno_name(number: int) -> str:
    """``ENOENT`` for 2; ``ERRNO_N`` for a number Linux does not define (as strace)."""
    entry = ERRNO.get(number)
    return entry[0] if entry else f"ERRNO_{number}"


def strerror(number: int) -> str:
    """glibc's message for an errno: ``No such file or directory`` for 2."""
    entry = ERRNO.get(number)
    return entry[1] if entry else f"Unknown error {number}"


def signal_name(signo: int) -> str:
    """``SIGSEGV`` for 11; a number outside 1..64 stays a number."""
    signo = signed32(signo)
    return SIGNALS.get(signo, str(signo))


def _flags(value: int, table: tuple[tuple[int, str], ...], *, prefix: str = "") -> str:
    """Names of the bits of ``value`` in table order, then the unknown rest in hex.

    A table entry may cover several bits (O_SYNC); it matches only when all are set.
    ``prefix`` is text already decided (an access mode, a type) that leads the result.
    """
    parts = [prefix] if prefix else []
    for bits, name in table:
        if bits and value & bits == bits:
            parts.append(name)
            value &= ~bits
    if value:
        parts.append(f"{value:#x}")
    return "|".join(parts) if parts else "0"


def _enum(value: int, table: dict[int, str], unknown: str) -> str:
    """The name of ``value``, or the number with strace's ``/* PREFIX_??? */`` comment."""
    name = table.get(value)
    return name if name is not None else f"{value:#x} /* {unknown}??? */"


# -- open(2) flags (octal, asm-generic/fcntl.h) ----------------------------------------------
O_ACCMODE = 0o3
O_CREAT = 0o100
O_TMPFILE = 0o20200000                  # __O_TMPFILE | O_DIRECTORY
_ACCESS_MODES = {0: "O_RDONLY", 1: "O_WRONLY", 2: "O_RDWR", 3: "O_ACCMODE"}
OPEN_FLAGS: tuple[tuple[int, str], ...] = (
    (0o100, "O_CREAT"), (0o200, "O_EXCL"), (0o400, "O_NOCTTY"), (0o1000, "O_TRUNC"),
    (0o2000, "O_APPEND"), (0o4000, "O_NONBLOCK"), (0o4010000, "O_SYNC"), (0o10000, "O_DSYNC"),
    (0o20000, "O_ASYNC"), (0o40000, "O_DIRECT"), (0o100000, "O_LARGEFILE"),
    (O_TMPFILE, "O_TMPFILE"), (0o200000, "O_DIRECTORY"), (0o400000, "O_NOFOLLOW"),
    (0o1000000, "O_NOATIME"), (0o2000000, "O_CLOEXEC"), (0o4000000, "__O_SYNC"),
    (0o10000000, "O_PATH"), (0o20000000, "__O_TMPFILE"),
)


def open_flags(value: int) -> str:
    """``O_RDONLY|O_CLOEXEC`` for 0o2000000: the access mode always comes first."""
    value &= _U32
    return _flags(value & ~O_ACCMODE, OPEN_FLAGS, prefix=_ACCESS_MODES[value & O_ACCMODE])


def open_takes_mode(flags: int) -> bool:
    """Whether open/openat read their mode argument (strace prints it only then)."""
    return bool(flags & O_CREAT) or flags & O_TMPFILE == O_TMPFILE


# -- file mode (sys/stat.h) -------------------------------------------------------------------
S_IFMT = 0o170000
FILE_TYPES: dict[int, str] = {0o140000: "S_IFSOCK", 0o120000: "S_IFLNK", 0o100000: "S_IFREG",
                              0o060000: "S_IFBLK", 0o040000: "S_IFDIR", 0o020000: "S_IFCHR",
                              0o010000: "S_IFIFO"}


def file_mode(value: int) -> str:
    """``0644``, or ``S_IFREG|0644`` when a file type is present."""
    value &= _U32
    parts = []
    kind = value & S_IFMT
    if kind:
        parts.append(FILE_TYPES.get(kind, f"{kind:#o}"))
    perms = value & 0o7777
    parts.append((f"0{perms:o}" if perms else "0").zfill(3))      # C's %#03o, as strace
    rest = value & ~(S_IFMT | 0o7777)
    if rest:
        parts.append(f"{rest:#x}")
    return "|".join(parts)


# -- mmap / mprotect (asm-generic/mman-common.h, asm/mman.h) ----------------------------------
MMAP_PROT: tuple[tuple[int, str], ...] = (
    (0x1, "PROT_READ"), (0x2, "PROT_WRITE"), (0x4, "PROT_EXEC"), (0x8, "PROT_SEM"),
    (0x01000000, "PROT_GROWSDOWN"), (0x02000000, "PROT_GROWSUP"),
)
MAP_TYPE = 0xf
_MAP_TYPES = {0x1: "MAP_SHARED", 0x2: "MAP_PRIVATE", 0x3: "MAP_SHARED_VALIDATE"}
MMAP_FLAGS: tuple[tuple[int, str], ...] = (
    (0x10, "MAP_FIXED"), (0x20, "MAP_ANONYMOUS"), (0x40, "MAP_32BIT"), (0x100, "MAP_GROWSDOWN"),
    (0x800, "MAP_DENYWRITE"), (0x1000, "MAP_EXECUTABLE"), (0x2000, "MAP_LOCKED"),
    (0x4000, "MAP_NORESERVE"), (0x8000, "MAP_POPULATE"), (0x10000, "MAP_NONBLOCK"),
    (0x20000, "MAP_STACK"), (0x40000, "MAP_HUGETLB"), (0x80000, "MAP_SYNC"),
    (0x100000, "MAP_FIXED_NOREPLACE"),
)


def mmap_prot(value: int) -> str:
    """``PROT_READ|PROT_WRITE``; ``PROT_NONE`` for 0."""
    value &= _U32
    return _flags(value, MMAP_PROT) if value else "PROT_NONE"


def mmap_flags(value: int) -> str:
    """``MAP_PRIVATE|MAP_ANONYMOUS``: the mapping type first, then the flags."""
    value &= _U32
    kind = value & MAP_TYPE
    prefix = _MAP_TYPES.get(kind, f"{kind:#x}" if kind else "")
    return _flags(value & ~MAP_TYPE, MMAP_FLAGS, prefix=prefix)


MADVISE: dict[int, str] = {
    0: "MADV_NORMAL", 1: "MADV_RANDOM", 2: "MADV_SEQUENTIAL", 3: "MADV_WILLNEED",
    4: "MADV_DONTNEED", 8: "MADV_FREE", 9: "MADV_REMOVE", 10: "MADV_DONTFORK", 11: "MADV_DOFORK",
    12: "MADV_MERGEABLE", 13: "MADV_UNMERGEABLE", 14: "MADV_HUGEPAGE", 15: "MADV_NOHUGEPAGE",
    16: "MADV_DONTDUMP", 17: "MADV_DODUMP", 18: "MADV_WIPEONFORK", 19: "MADV_KEEPONFORK",
    20: "MADV_COLD", 21: "MADV_PAGEOUT", 22: "MADV_POPULATE_READ", 23: "MADV_POPULATE_WRITE",
    24: "MADV_DONTNEED_LOCKED", 25: "MADV_COLLAPSE", 100: "MADV_HWPOISON", 101: "MADV_SOFT_OFFLINE",
}


def madvise_advice(value: int) -> str:
    """``MADV_DONTNEED`` for 4."""
    return _enum(signed32(value), MADVISE, "MADV_")


# -- clocks, seeking --------------------------------------------------------------------------
CLOCKS: dict[int, str] = {
    0: "CLOCK_REALTIME", 1: "CLOCK_MONOTONIC", 2: "CLOCK_PROCESS_CPUTIME_ID",
    3: "CLOCK_THREAD_CPUTIME_ID", 4: "CLOCK_MONOTONIC_RAW", 5: "CLOCK_REALTIME_COARSE",
    6: "CLOCK_MONOTONIC_COARSE", 7: "CLOCK_BOOTTIME", 8: "CLOCK_REALTIME_ALARM",
    9: "CLOCK_BOOTTIME_ALARM", 11: "CLOCK_TAI",
}


def clock_id(value: int) -> str:
    """``CLOCK_MONOTONIC`` for 1; negative ids (a process's CPU clock) stay numbers."""
    value = signed32(value)
    if value < 0:
        return str(value)
    return _enum(value, CLOCKS, "CLOCK_")


WHENCE: dict[int, str] = {0: "SEEK_SET", 1: "SEEK_CUR", 2: "SEEK_END", 3: "SEEK_DATA", 4: "SEEK_HOLE"}


def seek_whence(value: int) -> str:
    """``SEEK_END`` for 2."""
    return _enum(signed32(value), WHENCE, "SEEK_")


# -- *at() calls (fcntl.h) --------------------------------------------------------------------
AT_FDCWD = -100
AT_FLAGS: tuple[tuple[int, str], ...] = (
    (0x100, "AT_SYMLINK_NOFOLLOW"), (0x200, "AT_REMOVEDIR"), (0x400, "AT_SYMLINK_FOLLOW"),
    (0x800, "AT_NO_AUTOMOUNT"), (0x1000, "AT_EMPTY_PATH"), (0x2000, "AT_STATX_FORCE_SYNC"),
    (0x4000, "AT_STATX_DONT_SYNC"), (0x8000, "AT_RECURSIVE"),
)
# faccessat2 gives 0x200 another meaning.
AT_FLAGS_ACCESS = tuple((bits, "AT_EACCESS" if bits == 0x200 else name) for bits, name in AT_FLAGS)


def dirfd(value: int) -> str:
    """``AT_FDCWD`` for -100, else the descriptor number."""
    fd = signed32(value)
    return "AT_FDCWD" if fd == AT_FDCWD else str(fd)


def at_flags(value: int, *, eaccess: bool = False) -> str:
    """``AT_SYMLINK_NOFOLLOW|AT_EMPTY_PATH``; ``eaccess`` for faccessat2, where 0x200 is AT_EACCESS."""
    return _flags(value & _U32, AT_FLAGS_ACCESS if eaccess else AT_FLAGS)


# -- fcntl(2) ---------------------------------------------------------------------------------
FCNTL: dict[int, str] = {
    0: "F_DUPFD", 1: "F_GETFD", 2: "F_SETFD", 3: "F_GETFL", 4: "F_SETFL", 5: "F_GETLK",
    6: "F_SETLK", 7: "F_SETLKW", 8: "F_SETOWN", 9: "F_GETOWN", 10: "F_SETSIG", 11: "F_GETSIG",
    15: "F_SETOWN_EX", 16: "F_GETOWN_EX", 17: "F_GETOWNER_UIDS", 36: "F_OFD_GETLK",
    37: "F_OFD_SETLK", 38: "F_OFD_SETLKW", 1024: "F_SETLEASE", 1025: "F_GETLEASE",
    1026: "F_NOTIFY", 1030: "F_DUPFD_CLOEXEC", 1031: "F_SETPIPE_SZ", 1032: "F_GETPIPE_SZ",
    1033: "F_ADD_SEALS", 1034: "F_GET_SEALS", 1035: "F_GET_RW_HINT", 1036: "F_SET_RW_HINT",
    1037: "F_GET_FILE_RW_HINT", 1038: "F_SET_FILE_RW_HINT",
}
FD_FLAGS: tuple[tuple[int, str], ...] = ((0x1, "FD_CLOEXEC"),)


def fcntl_cmd(value: int) -> str:
    """``F_SETFD`` for 2."""
    return _enum(signed32(value), FCNTL, "F_")


def fd_flags(value: int) -> str:
    """``FD_CLOEXEC`` for 1 (F_GETFD/F_SETFD)."""
    return _flags(value & _U32, FD_FLAGS)


# -- ioctl(2) requests (asm-generic/ioctls.h) -------------------------------------------------
IOCTLS: dict[int, str] = {
    0x5401: "TCGETS", 0x5402: "TCSETS", 0x5403: "TCSETSW", 0x5404: "TCSETSF", 0x5405: "TCGETA",
    0x5406: "TCSETA", 0x5407: "TCSETAW", 0x5408: "TCSETAF", 0x5409: "TCSBRK", 0x540A: "TCXONC",
    0x540B: "TCFLSH", 0x540C: "TIOCEXCL", 0x540D: "TIOCNXCL", 0x540E: "TIOCSCTTY",
    0x540F: "TIOCGPGRP", 0x5410: "TIOCSPGRP", 0x5411: "TIOCOUTQ", 0x5412: "TIOCSTI",
    0x5413: "TIOCGWINSZ", 0x5414: "TIOCSWINSZ", 0x5415: "TIOCMGET", 0x5416: "TIOCMBIS",
    0x5417: "TIOCMBIC", 0x5418: "TIOCMSET", 0x5419: "TIOCGSOFTCAR", 0x541A: "TIOCSSOFTCAR",
    0x541B: "FIONREAD", 0x541C: "TIOCLINUX", 0x541D: "TIOCCONS", 0x541E: "TIOCGSERIAL",
    0x541F: "TIOCSSERIAL", 0x5420: "TIOCPKT", 0x5421: "FIONBIO", 0x5422: "TIOCNOTTY",
    0x5423: "TIOCSETD", 0x5424: "TIOCGETD", 0x5425: "TCSBRKP", 0x5427: "TIOCSBRK",
    0x5428: "TIOCCBRK", 0x5429: "TIOCGSID", 0x802C542A: "TCGETS2", 0x402C542B: "TCSETS2",
    0x80045430: "TIOCGPTN", 0x40045431: "TIOCSPTLCK", 0x5441: "TIOCGPTPEER",
    0x5450: "FIONCLEX", 0x5451: "FIOCLEX", 0x5452: "FIOASYNC", 0x5460: "FIOQSIZE",
    0x80086601: "FS_IOC_GETFLAGS", 0x40086602: "FS_IOC_SETFLAGS",
}


def ioctl_request(value: int) -> str:
    """``TCGETS`` for 0x5401; an unknown request in hex."""
    value &= _U32
    return IOCTLS.get(value, f"{value:#x}")


# -- signals, futexes, arch_prctl, limits -----------------------------------------------------
SIGPROCMASK: dict[int, str] = {0: "SIG_BLOCK", 1: "SIG_UNBLOCK", 2: "SIG_SETMASK"}


def sigprocmask_how(value: int) -> str:
    """``SIG_SETMASK`` for 2."""
    return _enum(signed32(value), SIGPROCMASK, "SIG_")


FUTEX_PRIVATE_FLAG = 128
FUTEX_CLOCK_REALTIME = 256
FUTEX_CMDS: dict[int, str] = {
    0: "FUTEX_WAIT", 1: "FUTEX_WAKE", 2: "FUTEX_FD", 3: "FUTEX_REQUEUE", 4: "FUTEX_CMP_REQUEUE",
    5: "FUTEX_WAKE_OP", 6: "FUTEX_LOCK_PI", 7: "FUTEX_UNLOCK_PI", 8: "FUTEX_TRYLOCK_PI",
    9: "FUTEX_WAIT_BITSET", 10: "FUTEX_WAKE_BITSET", 11: "FUTEX_WAIT_REQUEUE_PI",
    12: "FUTEX_CMP_REQUEUE_PI", 13: "FUTEX_LOCK_PI2",
}


def futex_op(value: int) -> str:
    """strace's form: ``FUTEX_WAIT_PRIVATE``, ``FUTEX_WAIT_BITSET|FUTEX_CLOCK_REALTIME``."""
    value &= _U32
    cmd = value & ~(FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME)
    name = FUTEX_CMDS.get(cmd)
    if name is None:
        return f"{value:#x} /* FUTEX_??? */"
    if value & FUTEX_PRIVATE_FLAG:
        name += "_PRIVATE"
    if value & FUTEX_CLOCK_REALTIME:
        name += "|FUTEX_CLOCK_REALTIME"
    return name


ARCH_PRCTL: dict[int, str] = {
    0x1001: "ARCH_SET_GS", 0x1002: "ARCH_SET_FS", 0x1003: "ARCH_GET_FS", 0x1004: "ARCH_GET_GS",
    0x1011: "ARCH_GET_CPUID", 0x1012: "ARCH_SET_CPUID", 0x1021: "ARCH_GET_XCOMP_SUPP",
    0x1022: "ARCH_GET_XCOMP_PERM", 0x1023: "ARCH_REQ_XCOMP_PERM",
    0x1024: "ARCH_GET_XCOMP_GUEST_PERM", 0x1025: "ARCH_REQ_XCOMP_GUEST_PERM",
    0x2001: "ARCH_MAP_VDSO_X32", 0x2002: "ARCH_MAP_VDSO_32", 0x2003: "ARCH_MAP_VDSO_64",
    0x5001: "ARCH_SHSTK_ENABLE", 0x5002: "ARCH_SHSTK_DISABLE", 0x5003: "ARCH_SHSTK_LOCK",
    0x5004: "ARCH_SHSTK_UNLOCK", 0x5005: "ARCH_SHSTK_STATUS",
}


def arch_prctl_code(value: int) -> str:
    """``ARCH_SET_FS`` for 0x1002."""
    return _enum(signed32(value), ARCH_PRCTL, "ARCH_")


RLIMITS: dict[int, str] = dict(enumerate(
    "RLIMIT_CPU RLIMIT_FSIZE RLIMIT_DATA RLIMIT_STACK RLIMIT_CORE RLIMIT_RSS RLIMIT_NPROC "
    "RLIMIT_NOFILE RLIMIT_MEMLOCK RLIMIT_AS RLIMIT_LOCKS RLIMIT_SIGPENDING RLIMIT_MSGQUEUE "
    "RLIMIT_NICE RLIMIT_RTPRIO RLIMIT_RTTIME".split()))


def rlimit_resource(value: int) -> str:
    """``RLIMIT_NOFILE`` for 7."""
    return _enum(signed32(value), RLIMITS, "RLIMIT_")


# -- sockets (bits/socket.h) ------------------------------------------------------------------
SOCKET_DOMAINS: dict[int, str] = {
    0: "AF_UNSPEC", 1: "AF_UNIX", 2: "AF_INET", 10: "AF_INET6", 16: "AF_NETLINK", 17: "AF_PACKET",
}
SOCK_TYPE_MASK = 0xf
SOCKET_TYPES: dict[int, str] = {1: "SOCK_STREAM", 2: "SOCK_DGRAM", 3: "SOCK_RAW", 4: "SOCK_RDM",
                                5: "SOCK_SEQPACKET", 6: "SOCK_DCCP", 10: "SOCK_PACKET"}
SOCKET_TYPE_FLAGS: tuple[tuple[int, str], ...] = ((0o4000, "SOCK_NONBLOCK"), (0o2000000, "SOCK_CLOEXEC"))


def socket_domain(value: int) -> str:
    """``AF_INET`` for 2."""
    return _enum(signed32(value), SOCKET_DOMAINS, "AF_")


def socket_type(value: int) -> str:
    """``SOCK_STREAM|SOCK_NONBLOCK|SOCK_CLOEXEC``."""
    value &= _U32
    kind = value & SOCK_TYPE_MASK
    prefix = SOCKET_TYPES.get(kind, f"{kind:#x} /* SOCK_??? */")
    return _flags(value & ~SOCK_TYPE_MASK, SOCKET_TYPE_FLAGS, prefix=prefix)

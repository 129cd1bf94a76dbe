"""The Linux personality's system-call table: one screen says what is supported.

Every amd64 system call number maps to its name, the types of its arguments (used to
render events the way strace does, replay/render.py) and its handler, with a support
status — the layout of gVisor's linux64.go. A number missing from ``SYSCALLS`` or with
no handler returns -ENOSYS, is counted, and is listed by the recorder's summary and
``vmrr info``. docs/linux.md is checked against this table by a test.

Argument types:
    int, uint, hex, ptr   numbers (signed, unsigned, hex, an address or NULL)
    fd, dirfd             a file descriptor (dirfd shows AT_FDCWD)
    path                  a NUL-terminated path: the event stores the string itself
    buf_in, buf_out       a buffer the program passes in / the kernel fills
    len                   a byte count
    oflags, mode, prot, mapflags, clockid, signo, whence, atflags, fcntl, ioctl,
    sigprocmask, futex, arch_prctl, madvise, rlimit, sockdomain, socktype   flags and enums
    clone_args            clone3's struct: the event stores its flags and exit signal, as
                          clone's first argument
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Callable

from vmm.linux import creds, files, futex, identity, ipc, memory_calls, net, poll, proc_calls, signals, tasks, time_calls


class Support(str, enum.Enum):
    FULL = "supported"
    PARTIAL = "partial"          # the note says what is missing
    ERRNO = "errno"              # always fails with the errno in the note, as on a restricted kernel


@dataclass(frozen=True, slots=True)
class Syscall:
    name: str
    args: tuple[str, ...]
    handler: Callable | None
    support: Support = Support.FULL
    note: str = ""


def _s(name: str, args: str, handler: Callable | None, support: Support = Support.FULL,
       note: str = "") -> Syscall:
    return Syscall(name, tuple(args.split()), handler, support, note)


P, E = Support.PARTIAL, Support.ERRNO

SYSCALLS: dict[int, Syscall] = {
    # -- files (vmm/linux/files.py) ------------------------------------------------------
    0: _s("read", "fd buf_out len", files.sys_read),
    1: _s("write", "fd buf_in len", files.sys_write),
    2: _s("open", "path oflags mode", files.sys_open),
    3: _s("close", "fd", files.sys_close),
    4: _s("stat", "path buf_out", files.sys_stat),
    5: _s("fstat", "fd buf_out", files.sys_fstat),
    6: _s("lstat", "path buf_out", files.sys_lstat),
    8: _s("lseek", "fd int whence", files.sys_lseek),
    16: _s("ioctl", "fd ioctl hex", files.sys_ioctl, P, "TCGETS, TIOCGWINSZ, FIONBIO, FIOASYNC (SIGIO is not sent), FIONREAD of a pipe, FIOCLEX; others ENOTTY"),
    17: _s("pread64", "fd buf_out len int", files.sys_pread64),
    18: _s("pwrite64", "fd buf_in len int", files.sys_pwrite64),
    19: _s("readv", "fd ptr int", files.sys_readv),
    20: _s("writev", "fd ptr int", files.sys_writev),
    21: _s("access", "path int", files.sys_access),
    22: _s("pipe", "ptr", files.sys_pipe),
    32: _s("dup", "fd", files.sys_dup),
    33: _s("dup2", "fd fd", files.sys_dup2),
    72: _s("fcntl", "fd fcntl hex", files.sys_fcntl, P, "F_DUPFD*, F_GETFD/SETFD, F_GETFL/SETFL; locks succeed"),
    73: _s("flock", "fd int", files.sys_flock, P, "always succeeds: one process"),
    74: _s("fsync", "fd", files.sys_fsync),
    75: _s("fdatasync", "fd", files.sys_fsync),
    77: _s("ftruncate", "fd int", files.sys_ftruncate),
    78: _s("getdents", "fd buf_out len", None, E, "ENOSYS: glibc uses getdents64"),
    79: _s("getcwd", "buf_out len", files.sys_getcwd),
    80: _s("chdir", "path", files.sys_chdir),
    81: _s("fchdir", "fd", files.sys_fchdir),
    82: _s("rename", "path path", files.sys_rename),
    83: _s("mkdir", "path mode", files.sys_mkdir),
    84: _s("rmdir", "path", files.sys_rmdir),
    85: _s("creat", "path mode", files.sys_creat),
    86: _s("link", "path path", files.sys_link),
    88: _s("symlink", "path path", files.sys_symlink),
    265: _s("linkat", "dirfd path dirfd path atflags", files.sys_linkat),
    266: _s("symlinkat", "path dirfd path", files.sys_symlinkat),
    87: _s("unlink", "path", files.sys_unlink),
    89: _s("readlink", "path buf_out len", files.sys_readlink),
    90: _s("chmod", "path mode", files.sys_chmod),
    91: _s("fchmod", "fd mode", files.sys_fchmod),
    92: _s("chown", "path int int", files.sys_chown, P, "succeeds without changing anything"),
    93: _s("fchown", "fd int int", files.sys_fchown, P, "succeeds without changing anything"),
    95: _s("umask", "mode", files.sys_umask),
    137: _s("statfs", "path buf_out", files.sys_statfs),
    138: _s("fstatfs", "fd buf_out", files.sys_fstatfs),
    217: _s("getdents64", "fd buf_out len", files.sys_getdents64),
    221: _s("fadvise64", "fd int int int", files.sys_fadvise64),
    257: _s("openat", "dirfd path oflags mode", files.sys_openat),
    258: _s("mkdirat", "dirfd path mode", files.sys_mkdirat),
    260: _s("fchownat", "dirfd path int int atflags", files.sys_fchownat, P, "succeeds without changing anything"),
    262: _s("newfstatat", "dirfd path buf_out atflags", files.sys_newfstatat),
    263: _s("unlinkat", "dirfd path atflags", files.sys_unlinkat),
    264: _s("renameat", "dirfd path dirfd path", files.sys_renameat),
    267: _s("readlinkat", "dirfd path buf_out len", files.sys_readlinkat),
    268: _s("fchmodat", "dirfd path mode", files.sys_fchmodat),
    269: _s("faccessat", "dirfd path int", files.sys_faccessat),
    280: _s("utimensat", "dirfd path ptr atflags", files.sys_utimensat, P, "succeeds without changing times"),
    285: _s("fallocate", "fd int int int", files.sys_fallocate, P, "succeeds; the file is not extended"),
    292: _s("dup3", "fd fd oflags", files.sys_dup3),
    293: _s("pipe2", "ptr oflags", files.sys_pipe2),
    295: _s("preadv", "fd ptr int int", files.sys_preadv),
    296: _s("pwritev", "fd ptr int int", files.sys_pwritev),
    316: _s("renameat2", "dirfd path dirfd path hex", files.sys_renameat2),
    332: _s("statx", "dirfd path atflags hex buf_out", files.sys_statx),
    436: _s("close_range", "fd fd hex", files.sys_close_range),
    439: _s("faccessat2", "dirfd path int atflags", files.sys_faccessat2),
    188: _s("setxattr", "path ptr ptr len int", files.sys_xattr_unsupported, E, "ENOTSUP: no extended attributes"),
    189: _s("lsetxattr", "path ptr ptr len int", files.sys_xattr_unsupported, E, "ENOTSUP: no extended attributes"),
    190: _s("fsetxattr", "fd ptr ptr len int", files.sys_xattr_unsupported, E, "ENOTSUP: no extended attributes"),
    191: _s("getxattr", "path ptr ptr len", files.sys_xattr_none, E, "ENODATA: no extended attributes"),
    192: _s("lgetxattr", "path ptr ptr len", files.sys_xattr_none, E, "ENODATA: no extended attributes"),
    193: _s("fgetxattr", "fd ptr ptr len", files.sys_xattr_none, E, "ENODATA: no extended attributes"),
    194: _s("listxattr", "path ptr len", files.sys_zero_list, P, "an empty list: no extended attributes"),
    195: _s("llistxattr", "path ptr len", files.sys_zero_list, P, "an empty list: no extended attributes"),
    196: _s("flistxattr", "fd ptr len", files.sys_zero_list, P, "an empty list: no extended attributes"),
    # -- memory (vmm/linux/memory_calls.py) ------------------------------------------------
    9: _s("mmap", "ptr len prot mapflags fd hex", memory_calls.sys_mmap, P,
           "MAP_SHARED file mappings are private copies (one process: writes are not written back)"),
    10: _s("mprotect", "ptr len prot", memory_calls.sys_mprotect),
    11: _s("munmap", "ptr len", memory_calls.sys_munmap),
    12: _s("brk", "ptr", memory_calls.sys_brk),
    25: _s("mremap", "ptr len len hex ptr", memory_calls.sys_mremap),
    26: _s("msync", "ptr len hex", memory_calls.sys_msync, P, "succeeds: a shared file mapping is not written back to the host file"),
    27: _s("mincore", "ptr len ptr", memory_calls.sys_mincore),
    28: _s("madvise", "ptr len madvise", memory_calls.sys_madvise, P, "MADV_DONTNEED/FREE drop pages; others succeed"),
    149: _s("mlock", "ptr len", memory_calls.sys_ok),
    # -- System V IPC (vmm/linux/ipc.py): the machine's own namespace ------------------------
    29: _s("shmget", "int len hex", ipc.sys_shmget),
    30: _s("shmat", "int ptr hex", ipc.sys_shmat),
    31: _s("shmctl", "int int ptr", ipc.sys_shmctl),
    67: _s("shmdt", "ptr", ipc.sys_shmdt),
    64: _s("semget", "int int hex", ipc.sys_semget),
    65: _s("semop", "int ptr int", ipc.sys_semop),
    220: _s("semtimedop", "int ptr int ptr", ipc.sys_semtimedop),
    66: _s("semctl", "int int int hex", ipc.sys_semctl),
    150: _s("munlock", "ptr len", memory_calls.sys_ok),
    # -- signals (vmm/linux/signals.py) ---------------------------------------------------
    13: _s("rt_sigaction", "signo ptr ptr len", signals.sys_rt_sigaction),
    14: _s("rt_sigprocmask", "sigprocmask ptr ptr len", signals.sys_rt_sigprocmask),
    15: _s("rt_sigreturn", "", signals.sys_rt_sigreturn),
    62: _s("kill", "int signo", signals.sys_kill, P, "SIGSTOP/SIGCONT do not stop or continue"),
    127: _s("rt_sigpending", "ptr len", signals.sys_rt_sigpending),
    131: _s("sigaltstack", "ptr ptr", signals.sys_sigaltstack),
    200: _s("tkill", "int signo", signals.sys_tkill),
    234: _s("tgkill", "int int signo", signals.sys_tgkill),
    34: _s("pause", "", signals.sys_pause),
    130: _s("rt_sigsuspend", "ptr len", signals.sys_rt_sigsuspend),
    36: _s("getitimer", "int ptr", signals.sys_getitimer, P, "ITIMER_REAL"),
    37: _s("alarm", "uint", signals.sys_alarm),
    38: _s("setitimer", "int ptr ptr", signals.sys_setitimer, P, "ITIMER_REAL"),
    # -- time (vmm/linux/time_calls.py) ---------------------------------------------------
    35: _s("nanosleep", "ptr ptr", time_calls.sys_nanosleep),
    96: _s("gettimeofday", "ptr ptr", time_calls.sys_gettimeofday),
    100: _s("times", "ptr", time_calls.sys_times),
    201: _s("time", "ptr", time_calls.sys_time),
    228: _s("clock_gettime", "clockid ptr", time_calls.sys_clock_gettime),
    229: _s("clock_getres", "clockid ptr", time_calls.sys_clock_getres),
    230: _s("clock_nanosleep", "clockid int ptr ptr", time_calls.sys_clock_nanosleep),
    318: _s("getrandom", "buf_out len hex", time_calls.sys_getrandom),
    319: _s("memfd_create", "path hex", files.sys_memfd_create, P, "a host file unlinked at once; no seals"),
    # -- sockets (vmm/linux/net.py) ------------------------------------------------------------
    41: _s("socket", "sockdomain socktype int", net.sys_socket, P, "AF_INET, AF_INET6, AF_UNIX; stream, datagram, seqpacket"),
    42: _s("connect", "fd ptr len", net.sys_connect),
    43: _s("accept", "fd ptr ptr", net.sys_accept),
    44: _s("sendto", "fd buf_in len hex ptr len", net.sys_sendto),
    45: _s("recvfrom", "fd buf_out len hex ptr ptr", net.sys_recvfrom),
    46: _s("sendmsg", "fd ptr hex", net.sys_sendmsg, P, "no ancillary data (SCM_RIGHTS)"),
    47: _s("recvmsg", "fd ptr hex", net.sys_recvmsg, P, "no ancillary data"),
    48: _s("shutdown", "fd int", net.sys_shutdown),
    49: _s("bind", "fd ptr len", net.sys_bind, P, "the wildcard address binds the host's 127.0.0.1"),
    50: _s("listen", "fd int", net.sys_listen),
    51: _s("getsockname", "fd ptr ptr", net.sys_getsockname),
    52: _s("getpeername", "fd ptr ptr", net.sys_getpeername),
    53: _s("socketpair", "sockdomain socktype int ptr", net.sys_socketpair, P, "AF_UNIX"),
    54: _s("setsockopt", "fd int int ptr len", net.sys_setsockopt),
    55: _s("getsockopt", "fd int int ptr ptr", net.sys_getsockopt),
    288: _s("accept4", "fd ptr ptr hex", net.sys_accept4),
    # -- readiness (vmm/linux/poll.py) ----------------------------------------------------------
    7: _s("poll", "ptr int int", poll.sys_poll),
    23: _s("select", "int ptr ptr ptr ptr", poll.sys_select),
    270: _s("pselect6", "int ptr ptr ptr ptr ptr", poll.sys_pselect6),
    271: _s("ppoll", "ptr int ptr ptr len", poll.sys_ppoll),
    213: _s("epoll_create", "int", poll.sys_epoll_create),
    291: _s("epoll_create1", "hex", poll.sys_epoll_create1),
    233: _s("epoll_ctl", "fd int fd ptr", poll.sys_epoll_ctl),
    232: _s("epoll_wait", "fd ptr int int", poll.sys_epoll_wait),
    281: _s("epoll_pwait", "fd ptr int int ptr len", poll.sys_epoll_pwait),
    441: _s("epoll_pwait2", "fd ptr int ptr ptr len", poll.sys_epoll_pwait2),
    284: _s("eventfd", "int", poll.sys_eventfd),
    290: _s("eventfd2", "int hex", poll.sys_eventfd2),
    # -- threads (vmm/linux/tasks.py, vmm/linux/futex.py) -----------------------------------
    202: _s("futex", "ptr futex int ptr ptr int", futex.sys_futex, P, "WAIT, WAKE, BITSET, REQUEUE, CMP_REQUEUE, WAKE_OP; PI locks ENOSYS"),
    56: _s("clone", "hex ptr ptr ptr hex", tasks.sys_clone, P, "threads and processes; CLONE_FILES/CLONE_FS copy"),
    435: _s("clone3", "clone_args len", tasks.sys_clone3, P, "as clone; no pidfd, set_tid or cgroup"),
    218: _s("set_tid_address", "ptr", tasks.sys_set_tid_address),
    273: _s("set_robust_list", "ptr len", tasks.sys_set_robust_list),
    274: _s("get_robust_list", "int ptr ptr", tasks.sys_get_robust_list),
    24: _s("sched_yield", "", tasks.sys_sched_yield),
    # -- identity, limits, the process (vmm/linux/identity.py) ----------------------------
    39: _s("getpid", "", identity.sys_getpid),
    57: _s("fork", "", proc_calls.sys_fork),
    58: _s("vfork", "", proc_calls.sys_vfork),
    59: _s("execve", "path ptr ptr", proc_calls.sys_execve, P, "ELF and #! scripts; AT_EXECFN is the resolved path"),
    322: _s("execveat", "dirfd path ptr ptr atflags", proc_calls.sys_execveat, P, "as execve"),
    60: _s("exit", "int", identity.sys_exit),
    61: _s("wait4", "int ptr hex ptr", proc_calls.sys_wait4, P, "rusage is zero"),
    247: _s("waitid", "int int ptr hex ptr", proc_calls.sys_waitid, P, "rusage is zero; P_PIDFD is EINVAL"),
    63: _s("uname", "buf_out", identity.sys_uname),
    97: _s("getrlimit", "rlimit ptr", identity.sys_getrlimit),
    98: _s("getrusage", "int ptr", identity.sys_getrusage),
    99: _s("sysinfo", "ptr", identity.sys_sysinfo),
    102: _s("getuid", "", creds.sys_getuid),
    104: _s("getgid", "", creds.sys_getgid),
    105: _s("setuid", "uint", creds.sys_setuid, P, "as in a user namespace of its own (vmm/linux/creds.py)"),
    106: _s("setgid", "uint", creds.sys_setgid, P, "as in a user namespace of its own"),
    107: _s("geteuid", "", creds.sys_geteuid),
    108: _s("getegid", "", creds.sys_getegid),
    113: _s("setreuid", "uint uint", creds.sys_setreuid, P, "as in a user namespace of its own"),
    114: _s("setregid", "uint uint", creds.sys_setregid, P, "as in a user namespace of its own"),
    116: _s("setgroups", "int ptr", creds.sys_setgroups, P, "as in a user namespace of its own"),
    117: _s("setresuid", "uint uint uint", creds.sys_setresuid, P, "as in a user namespace of its own"),
    119: _s("setresgid", "uint uint uint", creds.sys_setresgid, P, "as in a user namespace of its own"),
    122: _s("setfsuid", "uint", creds.sys_setfsuid, P, "the filesystem uid is the effective uid"),
    123: _s("setfsgid", "uint", creds.sys_setfsgid, P, "the filesystem gid is the effective gid"),
    125: _s("capget", "ptr ptr", creds.sys_capget, P, "every capability while the effective uid is 0, else none"),
    126: _s("capset", "ptr ptr", creds.sys_capset, P, "lowering is accepted and changes nothing; raising is EPERM"),
    109: _s("setpgid", "int int", proc_calls.sys_setpgid),
    110: _s("getppid", "", proc_calls.sys_getppid),
    111: _s("getpgrp", "", proc_calls.sys_getpgrp),
    112: _s("setsid", "", proc_calls.sys_setsid),
    115: _s("getgroups", "int ptr", creds.sys_getgroups),
    118: _s("getresuid", "ptr ptr ptr", creds.sys_getresuid),
    120: _s("getresgid", "ptr ptr ptr", creds.sys_getresgid),
    121: _s("getpgid", "int", proc_calls.sys_getpgid),
    124: _s("getsid", "int", proc_calls.sys_getsid),
    157: _s("prctl", "int hex hex hex hex", identity.sys_prctl, P, "PR_SET_NAME/GET_NAME, PR_SET_TIMERSLACK...; others EINVAL"),
    158: _s("arch_prctl", "arch_prctl hex", identity.sys_arch_prctl),
    160: _s("setrlimit", "rlimit ptr", identity.sys_setrlimit),
    186: _s("gettid", "", identity.sys_gettid),
    203: _s("sched_setaffinity", "int len ptr", identity.sys_zero),
    204: _s("sched_getaffinity", "int len ptr", identity.sys_sched_getaffinity),
    231: _s("exit_group", "int", identity.sys_exit_group),
    302: _s("prlimit64", "int rlimit ptr ptr", identity.sys_prlimit64),
    309: _s("getcpu", "ptr ptr ptr", identity.sys_getcpu),
    334: _s("rseq", "ptr len hex hex", None, E, "ENOSYS: glibc carries on without it"),
}


def describe(nr: int) -> str:
    """The name of system call ``nr`` (``syscall_N`` when the kernel has none)."""
    entry = SYSCALLS.get(nr)
    if entry is not None:
        return entry.name
    return ALL_NAMES.get(nr, f"syscall_{nr}")


# Names of the calls the personality does not implement, for reports (from asm/unistd_64.h).
ALL_NAMES: dict[int, str] = dict(enumerate((
    "read write open close stat fstat lstat poll lseek mmap mprotect munmap brk rt_sigaction "
    "rt_sigprocmask rt_sigreturn ioctl pread64 pwrite64 readv writev access pipe select "
    "sched_yield mremap msync mincore madvise shmget shmat shmctl dup dup2 pause nanosleep "
    "getitimer alarm setitimer getpid sendfile socket connect accept sendto recvfrom sendmsg "
    "recvmsg shutdown bind listen getsockname getpeername socketpair setsockopt getsockopt "
    "clone fork vfork execve exit wait4 kill uname semget semop semctl shmdt msgget msgsnd "
    "msgrcv msgctl fcntl flock fsync fdatasync truncate ftruncate getdents getcwd chdir fchdir "
    "rename mkdir rmdir creat link unlink symlink readlink chmod fchmod chown fchown lchown "
    "umask gettimeofday getrlimit getrusage sysinfo times ptrace getuid syslog getgid setuid "
    "setgid geteuid getegid setpgid getppid getpgrp setsid setreuid setregid getgroups "
    "setgroups setresuid getresuid setresgid getresgid getpgid setfsuid setfsgid getsid "
    "capget capset rt_sigpending rt_sigtimedwait rt_sigqueueinfo rt_sigsuspend sigaltstack "
    "utime mknod uselib personality ustat statfs fstatfs sysfs getpriority setpriority "
    "sched_setparam sched_getparam sched_setscheduler sched_getscheduler "
    "sched_get_priority_max sched_get_priority_min sched_rr_get_interval mlock munlock "
    "mlockall munlockall vhangup modify_ldt pivot_root _sysctl prctl arch_prctl adjtimex "
    "setrlimit chroot sync acct settimeofday mount umount2 swapon swapoff reboot sethostname "
    "setdomainname iopl ioperm create_module init_module delete_module get_kernel_syms "
    "query_module quotactl nfsservctl getpmsg putpmsg afs_syscall tuxcall security gettid "
    "readahead setxattr lsetxattr fsetxattr getxattr lgetxattr fgetxattr listxattr llistxattr "
    "flistxattr removexattr lremovexattr fremovexattr tkill time futex sched_setaffinity "
    "sched_getaffinity set_thread_area io_setup io_destroy io_getevents io_submit io_cancel "
    "get_thread_area lookup_dcookie epoll_create epoll_ctl_old epoll_wait_old "
    "remap_file_pages getdents64 set_tid_address restart_syscall semtimedop fadvise64 "
    "timer_create timer_settime timer_gettime timer_getoverrun timer_delete clock_settime "
    "clock_gettime clock_getres clock_nanosleep exit_group epoll_wait epoll_ctl tgkill utimes "
    "vserver mbind set_mempolicy get_mempolicy mq_open mq_unlink mq_timedsend mq_timedreceive "
    "mq_notify mq_getsetattr kexec_load waitid add_key request_key keyctl ioprio_set "
    "ioprio_get inotify_init inotify_add_watch inotify_rm_watch migrate_pages openat mkdirat "
    "mknodat fchownat futimesat newfstatat unlinkat renameat linkat symlinkat readlinkat "
    "fchmodat faccessat pselect6 ppoll unshare set_robust_list get_robust_list splice tee "
    "sync_file_range vmsplice move_pages utimensat epoll_pwait signalfd timerfd_create eventfd "
    "fallocate timerfd_settime timerfd_gettime accept4 signalfd4 eventfd2 epoll_create1 dup3 "
    "pipe2 inotify_init1 preadv pwritev rt_tgsigqueueinfo perf_event_open recvmmsg "
    "fanotify_init fanotify_mark prlimit64 name_to_handle_at open_by_handle_at clock_adjtime "
    "syncfs sendmmsg setns getcpu process_vm_readv process_vm_writev kcmp finit_module "
    "sched_setattr sched_getattr renameat2 seccomp getrandom memfd_create kexec_file_load bpf "
    "execveat userfaultfd membarrier mlock2 copy_file_range preadv2 pwritev2 pkey_mprotect "
    "pkey_alloc pkey_free statx io_pgetevents rseq").split()))
ALL_NAMES.update({424: "pidfd_send_signal", 425: "io_uring_setup", 426: "io_uring_enter",
                  427: "io_uring_register", 434: "pidfd_open", 435: "clone3", 436: "close_range",
                  437: "openat2", 439: "faccessat2", 441: "epoll_pwait2", 449: "futex_waitv"})


def markdown_table() -> str:
    """The support table of docs/linux.md, generated from ``SYSCALLS`` (a test keeps them equal)."""
    rows = ["| nr | system call | support | note |", "|---:|---|---|---|"]
    for nr in sorted(SYSCALLS):
        entry = SYSCALLS[nr]
        support = entry.support.value if entry.handler is not None or entry.support is not Support.FULL \
            else "ENOSYS"
        rows.append(f"| {nr} | `{entry.name}({', '.join(entry.args)})` | {support} | {entry.note} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())

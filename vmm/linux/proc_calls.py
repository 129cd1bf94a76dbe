"""Process system calls: fork, vfork, clone of a process, wait4, waitid, and the process
tree's ids (parent, process group, session).

A fork copies the process (vmm/linux/process.py): its address space copy-on-write
(vmm/linux/memory.py ``copy_to``), its descriptors naming the same open file
descriptions, its signal actions. The child is one more task for the one scheduler; what
it does from then on is as deterministic as any thread's. A vfork child shares its
parent's memory (as Linux's CLONE_VM) and the parent waits until the child execs or exits.
"""

from __future__ import annotations

import struct

from vmm.linux import abi
from vmm.linux.files import s32
from vmm.linux.process import ALIVE, REAPED, ZOMBIE, Process
from vmm.linux.tasks import (CLONE_CHILD_CLEARTID, CLONE_CHILD_SETTID, CLONE_PARENT_SETTID, CLONE_SETTLS,
                             CLONE_THREAD, CLONE_VFORK, CLONE_VM, FS_BASE, RAX, RIP, RSP, Blocked, Task,
                             save_context)

WNOHANG, WUNTRACED, WEXITED, WCONTINUED, WNOWAIT = 1, 2, 4, 8, 0x01000000
WALL_FLAGS = 0x40000000 | 0x80000000 | 0x20000000          # __WALL, __WCLONE, __WNOTHREAD
P_ALL, P_PID, P_PGID = 0, 1, 2
CLONE_PROCESS_FLAGS = 0xFF | CLONE_VM | CLONE_VFORK | CLONE_SETTLS | CLONE_PARENT_SETTID \
    | CLONE_CHILD_SETTID | CLONE_CHILD_CLEARTID | 0x200 | 0x400 | 0x40000   # CLONE_FS, CLONE_FILES, SYSVSEM
MAX_PROCESSES = 1024
MASK64 = (1 << 64) - 1


def fork(k, flags: int, newsp: int = 0, parent_tid: int = 0, child_tid: int = 0, tls: int = 0) -> int:
    """A new process, a copy of the caller's (clone without CLONE_THREAD)."""
    if flags & ~CLONE_PROCESS_FLAGS:
        return -abi.EINVAL
    if sum(1 for p in k.processes.values() if p.state == ALIVE) >= MAX_PROCESSES:
        return -abi.EAGAIN
    parent_proc, parent = k.proc, k.current
    pid = k.alloc_pid()
    if flags & CLONE_VM:
        space = parent_proc.space                # vfork: the same memory, the parent waits
    else:
        space = k.new_space()
        parent_proc.space.copy_to(space)
    child = Process(k, pid, space, ppid=parent_proc.pid, cwd=parent_proc.cwd, argv=parent_proc.argv,
                    env=parent_proc.env, exe=parent_proc.exe)
    child.pgid, child.sid, child.umask = parent_proc.pgid, parent_proc.sid, parent_proc.umask
    child.brk_start, child.brk = parent_proc.brk_start, parent_proc.brk
    child.rlimits = {r: list(v) for r, v in parent_proc.rlimits.items()}
    child.creds, child.groups = list(parent_proc.creds), list(parent_proc.groups)
    child.exe_base, child.interp_base, child.auxv = parent_proc.exe_base, parent_proc.interp_base, parent_proc.auxv
    child.exit_signal = flags & 0xFF
    child.signals.actions = {s: list(a) for s, a in parent_proc.signals.actions.items()}
    for fd, (f, cloexec) in parent_proc.files.fds.items():
        f.ref += 1
        child.files.fds[fd] = [f, cloexec]
    k.processes[pid] = child
    task = Task(pid, parent.name, pid=pid)
    k.tasks[pid] = task
    ints, vector = save_context(k)
    ints[RAX] = 0
    ints[RIP] = (ints[RIP] + 2) & MASK64          # RIP is at the syscall; the child returns after it
    if newsp:
        ints[RSP] = newsp
    if flags & CLONE_SETTLS:
        ints[FS_BASE] = tls
    task.ctx = [ints, vector]
    task.sigmask, task.altstack = parent_proc.signals.mask, list(parent_proc.signals.altstack)
    if flags & CLONE_CHILD_SETTID:
        space.write(child_tid, struct.pack("<i", pid))
    if flags & CLONE_CHILD_CLEARTID:
        task.clear_child_tid = child_tid
    if flags & CLONE_PARENT_SETTID:
        k.write(parent_tid, struct.pack("<i", pid))
    k.rebuild_symbols(child)
    if flags & CLONE_VFORK:
        child.vfork_parent = parent.tid
        raise Blocked(["vfork", pid])
    return pid


def sys_fork(k):
    return fork(k, abi.SIGCHLD)


def sys_vfork(k):
    return fork(k, CLONE_VM | CLONE_VFORK | abi.SIGCHLD)


def vfork_done(k, child: Process) -> None:
    """The vfork child exec'd or exited: its parent goes on (vfork returns the child's pid)."""
    tid, child.vfork_parent = child.vfork_parent, None
    task = k.tasks.get(tid) if tid is not None else None
    if task is not None and task.state == "wait" and task.wait == ["vfork", child.pid]:
        k.wake(task, child.pid)


# -- waiting for children ---------------------------------------------------------------------

def _matches(k, proc: Process, spec: int) -> bool:
    if spec > 0:
        return proc.pid == spec
    if spec == 0:
        return proc.pgid == k.proc.pgid
    if spec < -1:
        return proc.pgid == -spec
    return True


def _waitable(k, spec: int) -> tuple[list[Process], Process | None]:
    """(the caller's children that ``spec`` names, the first of them that is a zombie)."""
    kids = sorted((p for p in k.proc.children() if _matches(k, p, spec)), key=lambda p: (p.start_icount, p.pid))
    return kids, next((p for p in kids if p.state == ZOMBIE), None)


def sys_wait4(k, pid, status_ptr, options, rusage):
    spec = s32(pid)
    if options & ~(WNOHANG | WUNTRACED | WCONTINUED | WALL_FLAGS):
        return -abi.EINVAL
    kids, zombie = _waitable(k, spec)
    if not kids:
        return -abi.ECHILD
    if zombie is None:
        if options & WNOHANG:
            return 0
        raise Blocked(["child", spec])
    if status_ptr:
        k.write(status_ptr, struct.pack("<i", zombie.exit))
    if rusage:
        k.write(rusage, bytes(144))              # struct rusage: vmrr keeps no usage figures
    k.reap(zombie)
    return zombie.pid


def sys_waitid(k, idtype, ident, infop, options, rusage):
    idtype, ident = s32(idtype), s32(ident)
    if idtype == P_ALL:
        spec = -1
    elif idtype == P_PID:
        spec = ident
    elif idtype == P_PGID:
        spec = -ident if ident > 0 else 0
    else:
        return -abi.EINVAL
    if not options & WEXITED or options & ~(WNOHANG | WEXITED | WUNTRACED | WCONTINUED | WNOWAIT | WALL_FLAGS):
        return -abi.EINVAL
    kids, zombie = _waitable(k, spec)
    if not kids:
        return -abi.ECHILD
    if zombie is None:
        if options & WNOHANG:
            if infop:
                k.write(infop, bytes(128))
            return 0
        raise Blocked(["child", spec])
    status = zombie.exit
    if status & 0x7F:
        code, value = (abi.CLD_DUMPED if status & 0x80 else abi.CLD_KILLED), status & 0x7F
    else:
        code, value = abi.CLD_EXITED, (status >> 8) & 0xFF
    if infop:
        k.write(infop, struct.pack("<iii4xiIi", abi.SIGCHLD, 0, code, zombie.pid, zombie.creds[0], value)
                .ljust(128, b"\0"))
    if rusage:
        k.write(rusage, bytes(144))
    if not options & WNOWAIT:
        k.reap(zombie)
    return 0


# -- ids ---------------------------------------------------------------------------------------

def sys_getppid(k):
    return k.proc.ppid


def _named(k, pid: int) -> Process | None:
    """The process ``pid`` names (0: the caller), None if there is none."""
    pid = s32(pid)
    proc = k.proc if pid == 0 else k.processes.get(pid)
    return None if proc is None or proc.state == REAPED else proc


def sys_getpgid(k, pid):
    proc = _named(k, pid)
    return -abi.ESRCH if proc is None else proc.pgid


def sys_getpgrp(k):
    return k.proc.pgid


def sys_getsid(k, pid):
    proc = _named(k, pid)
    return -abi.ESRCH if proc is None else proc.sid


def sys_setpgid(k, pid, pgid):
    pid, pgid = s32(pid), s32(pgid)
    if pgid < 0:
        return -abi.EINVAL
    me = k.proc
    proc = me if pid in (0, me.pid) else k.processes.get(pid)
    if proc is None or proc.state == REAPED or proc is not me and proc.ppid != me.pid:
        return -abi.ESRCH
    if proc.sid != me.sid or proc.pid == proc.sid:
        return -abi.EPERM
    pgid = pgid or proc.pid
    if pgid != proc.pid and not any(p.pgid == pgid and p.sid == me.sid and p.state == ALIVE
                                    for p in k.processes.values()):
        return -abi.EPERM
    proc.pgid = pgid
    return 0


def sys_setsid(k):
    me = k.proc
    if any(p.pgid == me.pid and p.state == ALIVE for p in k.processes.values() if p is not me):
        return -abi.EPERM
    if me.pgid == me.pid:
        return -abi.EPERM
    me.sid = me.pgid = me.pid
    return me.pid


# -- execve ------------------------------------------------------------------------------------

MAX_ARGS = 1 << 16
MAX_ARG_BYTES = 2 << 20                 # Linux: a quarter of the stack limit, at most
MAX_INTERP_DEPTH = 4                    # #! scripts whose interpreter is a script, and so on
BINPRM_BUF = 256                        # the kernel reads this much of a file to recognise it


def _read_strings(k, array: int) -> list[str] | int:
    """A NULL-terminated array of string pointers (argv, envp), or -errno."""
    out, total = [], 0
    if not array:
        return out
    while True:
        ptr = struct.unpack("<Q", k.read(array + 8 * len(out), 8))[0]
        if not ptr:
            return out
        text = k.space.read_cstr(ptr, MAX_ARG_BYTES)
        total += len(text) + 1
        if len(out) >= MAX_ARGS or total > MAX_ARG_BYTES:
            return -abi.E2BIG
        out.append(text.decode("utf-8", "surrogateescape"))


def _find_program(k, path: str, argv: list[str], depth: int = 0):
    """(ElfFile of what runs, its interpreter's or None, the argv it gets) for ``path``, as
    the kernel's binfmt handlers find them (ELF, ``#!``), or -errno."""
    from vmm.errors import ImageError
    from vmm.linux.program import parse_elf
    full = k.files.resolve(abi.AT_FDCWD, path)
    if isinstance(full, int):
        return full
    data = _load(k, full)
    if isinstance(data, int):
        return data
    if data[:2] == b"#!":
        if depth >= MAX_INTERP_DEPTH:
            return -abi.ELOOP
        line = data[2:BINPRM_BUF].split(b"\n", 1)[0].strip(b" \t")
        if not line:
            return -abi.ENOEXEC
        parts = line.split(None, 1)
        interp = parts[0].decode("utf-8", "surrogateescape")
        extra = [parts[1].decode("utf-8", "surrogateescape").strip()] if len(parts) > 1 else []
        return _find_program(k, interp, [interp, *extra, path, *argv[1:]], depth + 1)
    try:
        exe = parse_elf(data, full)
    except ImageError:
        return -abi.ENOEXEC
    interp = None
    if exe.interp:
        interp_data = _load(k, exe.interp)
        if isinstance(interp_data, int):
            return -abi.ENOENT if interp_data == -abi.ENOENT else interp_data
        try:
            interp = parse_elf(interp_data, exe.interp)
        except ImageError:
            return -abi.ELIBBAD
    return exe, interp, argv


def _load(k, full: str) -> bytes | int:
    """The content of the executable file ``full`` (captured in the trace), or -errno."""
    answer = k.host("open", full, 0, 0)          # O_RDONLY
    if isinstance(answer, int):
        return answer
    if answer[0] == "dir":
        return -abi.EACCES
    if answer[0] != "blob":
        k.host("close", answer[1])
        return -abi.EACCES                       # not a regular file
    _kind, file_id, stat = answer
    if not stat[2] & 0o111:
        return -abi.EACCES
    k.files_read.setdefault(full, [file_id, stat[7]])
    return k.file_content(file_id)


def sys_execve(k, path, argv, envp):
    return execveat(k, abi.AT_FDCWD, path, argv, envp, 0)


def sys_execveat(k, dirfd, path, argv, envp, flags):
    return execveat(k, dirfd, path, argv, envp, flags)


AT_EMPTY_PATH = 0x1000


def execveat(k, dirfd, path_ptr, argv_ptr, envp_ptr, flags):
    from vmm.linux.tasks import NO_RETURN
    if flags & ~(AT_EMPTY_PATH | abi.AT_SYMLINK_NOFOLLOW):
        return -abi.EINVAL
    path = k.read_path(path_ptr)
    if not path:
        if not flags & AT_EMPTY_PATH:
            return -abi.ENOENT
        f = k.files.get(dirfd)
        if f is None:
            return -abi.EBADF
        path = f.path
    elif not path.startswith("/") and s32(dirfd) != abi.AT_FDCWD:
        base = k.files.resolve(dirfd, path)
        if isinstance(base, int):
            return base
        path = base
    argv = _read_strings(k, argv_ptr)
    if isinstance(argv, int):
        return argv
    env = _read_strings(k, envp_ptr)
    if isinstance(env, int):
        return env
    found = _find_program(k, path, argv)
    if isinstance(found, int):
        return found
    exe, interp, argv = found
    at_random = k.host("random", 16)
    k.exec_program(exe, interp, argv, env, path, at_random)
    return NO_RETURN

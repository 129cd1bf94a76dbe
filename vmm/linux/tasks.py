"""Threads: the program's tasks, one on the CPU at a time, and how they block and switch.

A task is a thread of the process: its registers while it is off the CPU, its signal
mask and alternate stack, its ``clear_child_tid`` and robust list, its name, and —
while it waits in a system call — what it waits for. One task runs at a time (rr does
the same). A task leaves the CPU when it blocks (a handler raises ``Blocked``), when it
exits, or when the recorder's scheduler preempts it at the end of a slice; each switch
is a SWITCH event ``[tid, how]`` at an exact icount, so replay makes the same switches
without deciding anything:

- ``RUN``: the task was runnable (preempted, or woken by a futex wake), it just continues;
- ``RETRY``: the task waits on something outside the program (a socket, a sleep); the
  recorder saw it ready, and the task's system call runs again from the start;
- ``TIMEOUT``: the task's wait timed out; its system call runs again knowing so.

What wakes a waiting task inside the program (a futex wake, a pipe written, a thread
exiting) is deterministic and happens in both the recording and the replay; what the
host decides (data arrived, time passed) shows only as a SWITCH. The recorder's policy
— quanta, chaos, the host wait when every task waits — is vmm/linux/sched.py.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from unicorn import x86_const as x86

from vmm.cpu import GPR_NAMES
from vmm.linux import abi
from vmm.linux.memory import GuestFault

if TYPE_CHECKING:
    from vmm.linux.kernel import LinuxKernel

RUN, WAIT, DONE = "run", "wait", "done"
# A process: running, ended but not yet waited for, or reaped (vmm/linux/process.py).
ALIVE, ZOMBIE, REAPED = "alive", "zombie", "reaped"
RESUME_RUN, RESUME_RETRY, RESUME_TIMEOUT = 0, 1, 2
HOW_NAMES = {RESUME_RUN: "run", RESUME_RETRY: "retry", RESUME_TIMEOUT: "timeout"}

CLONE_VM, CLONE_FS, CLONE_FILES, CLONE_SIGHAND = 0x100, 0x200, 0x400, 0x800
CLONE_VFORK, CLONE_THREAD, CLONE_SYSVSEM, CLONE_SETTLS = 0x4000, 0x10000, 0x40000, 0x80000
CLONE_PARENT_SETTID, CLONE_CHILD_CLEARTID, CLONE_DETACHED = 0x100000, 0x200000, 0x400000
CLONE_CHILD_SETTID = 0x1000000
THREAD_FLAGS = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD
ALLOWED_FLAGS = THREAD_FLAGS | CLONE_SYSVSEM | CLONE_SETTLS | CLONE_PARENT_SETTID | CLONE_CHILD_CLEARTID \
    | CLONE_DETACHED | CLONE_CHILD_SETTID
MAX_TASKS = 4096

# A task's registers off the CPU: the integer ones, then the whole FPU and SSE state
# (Cpu.vector_state: x87 registers with their exponents, tags, MXCSR, XMM).
CTX_NAMES = GPR_NAMES + ("rip", "rflags", "fs_base", "gs_base")
_CTX_IDS = [getattr(x86, f"UC_X86_REG_{n.upper()}") for n in CTX_NAMES]
RAX = CTX_NAMES.index("rax")
RSP = CTX_NAMES.index("rsp")
RIP = CTX_NAMES.index("rip")
FS_BASE = CTX_NAMES.index("fs_base")


NO_RETURN = object()          # a handler that set every register itself (rt_sigreturn, exit)


class SyscallExit(Exception):
    """Raised by exit/exit_group handlers: the process ended with ``status``."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class Blocked(Exception):
    """Raised by a handler whose call cannot complete now.

    Args:
        wait: what the task waits for — ``["futex", uaddr, bitset, space, key]`` (woken by a futex
            wake), ``["fds", [[fd, events], ...]]`` (readiness of descriptors; an
            empty list for a wait on the host's clock alone) or ``["signal"]``.
        timeout_ns: how long it may wait, or None for ever.
    """

    def __init__(self, wait: list, timeout_ns: int | None = None) -> None:
        super().__init__(wait[0])
        self.wait = wait
        self.timeout_ns = timeout_ns


class Task:
    """One thread. ``ctx`` is None while the task is on the CPU."""

    __slots__ = ("tid", "state", "ctx", "wait", "call", "timeout", "seq", "sigmask", "altstack",
                 "clear_child_tid", "robust_list", "name", "pid", "saved_mask")

    def __init__(self, tid: int, name: str, *, pid: int | None = None) -> None:
        self.tid = tid
        self.pid = tid if pid is None else pid      # the process (thread group) it belongs to
        self.state = RUN
        self.ctx: list | None = None        # [ints (CTX_NAMES), Cpu.vector_state() bytes]
        self.wait: list | None = None
        self.call: list | None = None       # [nr, args] of the call it waits in
        self.timeout = False                # the wait has a timeout (the deadline is the host's)
        self.seq = 0                        # when it began waiting: futex wakes go in this order
        self.sigmask = 0
        self.altstack = [0, 2, 0]
        self.clear_child_tid = 0
        self.robust_list = [0, 0]
        self.name = name
        # The thread's own mask while a call runs with another (ppoll, pselect6,
        # epoll_pwait, rt_sigsuspend): back when the call returns (Linux's saved_sigmask).
        self.saved_mask: int | None = None

    def as_list(self) -> list:
        return [self.tid, self.state, self.ctx, self.wait, self.call, self.timeout, self.seq, self.sigmask,
                list(self.altstack), self.clear_child_tid, list(self.robust_list), self.name, self.pid,
                self.saved_mask]

    @classmethod
    def from_list(cls, raw: list) -> "Task":
        task = cls(raw[0], raw[11], pid=raw[12])
        (_, task.state, task.ctx, task.wait, task.call, task.timeout, task.seq, task.sigmask, altstack,
         task.clear_child_tid, robust, _, _, task.saved_mask) = raw
        task.altstack, task.robust_list = list(altstack), list(robust)
        return task

    def describe_wait(self) -> str:
        """What the task waits on, for deadlock reports and debuggers."""
        if self.state == DONE:
            return "exited"
        if self.state == RUN:
            return "runnable"
        from vmm.linux.syscalls import describe
        kind = self.wait[0] if self.wait else "?"
        call = describe(self.call[0]) if self.call else "?"
        if kind == "futex":
            return f"futex wait at {self.wait[1]:#x}" if call == "futex" else f"{call} on futex {self.wait[1]:#x}"
        return f"{call}" + (" with a timeout" if self.timeout else "")


def save_context(kernel: LinuxKernel) -> list:
    uc, cpu = kernel.uc, kernel.machine.cpu
    return [list(uc.reg_read_batch(_CTX_IDS)), cpu.vector_state()]


def load_context(kernel: LinuxKernel, ctx: list) -> None:
    uc, cpu = kernel.uc, kernel.machine.cpu
    ints, vector = ctx
    uc.reg_write_batch(list(zip(_CTX_IDS, ints)))
    cpu.set_vector_state(vector)


# -- the system calls -----------------------------------------------------------------

def sys_clone(k, flags, newsp, parent_tid, child_tid, tls):
    if not flags & CLONE_THREAD:
        from vmm.linux.proc_calls import fork
        return fork(k, flags, newsp, parent_tid, child_tid, tls)
    if flags & THREAD_FLAGS != THREAD_FLAGS:
        return -abi.EINVAL
    if flags & ~(ALLOWED_FLAGS | 0xFF):
        return -abi.EINVAL
    if len(k.tasks) >= MAX_TASKS:
        return -abi.EAGAIN
    parent = k.current
    child = k.new_task(parent)
    # Linux's fpu_clone: the new thread starts with a copy of the parent's FPU state.
    ints, vector = save_context(k)
    ints[RAX] = 0
    ints[RIP] = (ints[RIP] + 2) & ((1 << 64) - 1)      # RIP is at the syscall; the child returns after it
    if newsp:
        ints[RSP] = newsp
    if flags & CLONE_SETTLS:
        ints[FS_BASE] = tls
    child.ctx = [ints, vector]
    child.sigmask = k.signals.mask
    if flags & CLONE_PARENT_SETTID:
        k.write(parent_tid, struct.pack("<i", child.tid))
    if flags & CLONE_CHILD_SETTID:
        k.write(child_tid, struct.pack("<i", child.tid))
    if flags & CLONE_CHILD_CLEARTID:
        child.clear_child_tid = child_tid
    return child.tid


CLONE_ARGS_SIZE_VER0 = 64                      # flags .. tls: what glibc passes
CLONE_ARGS = struct.Struct("<8Q")               # flags pidfd child_tid parent_tid exit_signal stack stack_size tls
CLONE_PIDFD, CLONE_CLEAR_SIGHAND, CLONE_INTO_CGROUP = 0x1000, 1 << 32, 1 << 33


def clone3_flags(k, args: int) -> int | None:
    """What a clone3 call's event shows for its struct: the flags with the exit signal in
    the low byte, as clone(2) takes them (None if the struct is unreadable)."""
    try:
        flags, _pidfd, _ctid, _ptid, exit_signal = CLONE_ARGS.unpack(k.read(args, CLONE_ARGS.size))[:5]
    except GuestFault:
        return None
    return (flags | exit_signal & 0xFF) & ((1 << 64) - 1)


def sys_clone3(k, args, size):
    """clone3: glibc's pthread_create and posix_spawn. Its struct says what clone's
    arguments say (the stack by its lowest address and size); pidfds (EINVAL), set_tid and
    cgroups (E2BIG: the fields past the first 64 bytes must be zero) are refused."""
    if size < CLONE_ARGS_SIZE_VER0 or size > 4096:
        return -abi.EINVAL
    raw = k.read(args, size)
    if any(raw[CLONE_ARGS.size:]):
        return -abi.E2BIG                            # set_tid, cgroup: features not offered
    flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls = CLONE_ARGS.unpack_from(raw)
    if flags & (0xFF | CLONE_PIDFD | CLONE_CLEAR_SIGHAND | CLONE_INTO_CGROUP) or exit_signal > abi.NSIG \
            or bool(stack) != bool(stack_size):
        return -abi.EINVAL
    return sys_clone(k, flags | exit_signal, stack + stack_size if stack else 0, parent_tid, child_tid, tls)


def sys_set_tid_address(k, tidptr):
    k.current.clear_child_tid = tidptr
    return k.tid


def sys_set_robust_list(k, head, length):
    if length != 24:
        return -abi.EINVAL
    k.current.robust_list = [head, length]
    return 0


def sys_get_robust_list(k, pid, head_ptr, len_ptr):
    task = k.current if pid == 0 else k.tasks.get(pid)
    if task is None or task.state == DONE:
        return -abi.ESRCH
    k.write(head_ptr, struct.pack("<Q", task.robust_list[0]))
    k.write(len_ptr, struct.pack("<Q", 24))
    return 0


def sys_sched_yield(k):
    k.yield_cpu()
    return 0

"""The Linux personality: the VMM answers a program's system calls as a kernel would.

It is one more device of the Machine (``name = "linux"``): it boots the program
(vmm/linux/loader.py), hooks ``syscall``, turns CPU exceptions into signals, and keeps
its state (memory map, files, signals, the process) in ``state()`` so that digests,
checkpoints and time travel treat it like any device.

Every system call is one SYSCALL event ``[tid, nr, args, ret, answers]``. Handlers
compute deterministic results themselves (brk, mmap, getpid, reads from a file's
recorded content) and ask the boundary — ``host(op, ...)`` — for anything that
depends on the host (a clock, bytes from a terminal, whether a path exists). While
recording, the boundary performs ``op`` on the host and the answers go into the
event; in replay they come from the event, the handler runs the same code, and the
arguments and result are checked against the recording.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import struct
from collections import Counter
from typing import TYPE_CHECKING

from unicorn import x86_const as x86

from vmm.boundary import EndOfTrace
from vmm.cpu import RegisterBatch, add_insn_hook
from vmm.errors import ReplayDivergence
from vmm.linux import abi
from vmm.linux.fastsys import FastSyscalls
from vmm.linux.files import OpenFile
from vmm.linux.loader import load_program
from vmm.linux.ipc import Ipc
from vmm.linux.memory import PAGE, PTE_P, AddressSpace, Frames, GuestFault, OutOfMemory, page_down
from vmm.linux.process import (ALIVE, REAPED, SUMMARY_ARGV, SUMMARY_BYTES, SUMMARY_PROCESSES, SUMMARY_TIDS,
                               ZOMBIE, Process)
from vmm.linux.shmem import SharedMemory, is_shared
from vmm.linux.program import PID_MAX, LinuxProgram, parse_elf
from vmm.symbols import SymbolTable
from vmm.linux.syscalls import SYSCALLS, describe
from vmm.linux.tasks import RIP as RIP_INDEX
from vmm.linux.tasks import clone3_flags
from vmm.linux.tasks import (DONE, NO_RETURN, RESUME_RETRY, RESUME_RUN, RESUME_TIMEOUT, RUN, WAIT, Blocked,
                             SyscallExit, Task,
                             load_context, save_context)

if TYPE_CHECKING:
    from vmm.machine import Machine

INIT_PID = 1                  # the parent of orphans: the machine's init, which reaps them
_SYSCALL_CB = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p)   # (uc, user_data)
_ARG_REGS = [x86.UC_X86_REG_RAX, x86.UC_X86_REG_RDI, x86.UC_X86_REG_RSI, x86.UC_X86_REG_RDX,
             x86.UC_X86_REG_R10, x86.UC_X86_REG_R8, x86.UC_X86_REG_R9]
MASK64 = (1 << 64) - 1
CR0_PG, CR0_WP, CR4_PAE, EFER_NXE = 1 << 31, 1 << 16, 1 << 5, 1 << 11
# Linux's user segment selectors (__USER_CS, __USER_DS): what a program reads from CS and
# SS and finds in its signal frames. In 64-bit mode Unicorn takes them as plain values.
USER_CS, USER_DS = 0x33, 0x2B
RFLAGS_INIT = 0x202                      # IF and the always-set bit 1, as start_thread leaves them
_EFER = 0xC0000080
_GPRS = [getattr(x86, f"UC_X86_REG_{r}") for r in ("RAX", "RBX", "RCX", "RDX", "RSI", "RDI", "RBP", "R8", "R9",
                                                    "R10", "R11", "R12", "R13", "R14", "R15")]


def _describe(f: OpenFile, index: dict[int, int]) -> list:
    """An open file description as state: an epoll's items name the files they watch by
    their place in the kernel's list of descriptions."""
    raw = f.as_list()
    if f.kind == "epoll":
        raw[6] = [[*entry[:5], None if entry[5] is None else index.get(id(entry[5]))] for entry in f.data]
    elif f.kind == "socket":                     # its peer and the descriptors in flight to it
        domain, kind, connecting, peer, inbox = f.data
        raw[6] = [domain, kind, connecting, None if peer is None else index.get(id(peer)),
                  [[index[id(p)] for p in message] for message in inbox]]
    return raw


def _text(value: str) -> str:
    """A program's string as the trace can hold it: bytes that are not UTF-8 (kept as
    surrogate escapes) written as ``\\xNN``."""
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        try:
            return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        except UnicodeEncodeError:                   # a surrogate no byte stands for
            return value.encode("utf-8", "backslashreplace").decode("utf-8")


def _per_process(name: str) -> property:
    """An attribute of the process whose thread is on the CPU (handlers say ``k.cwd``)."""
    def get(self):
        return getattr(self.proc, name)

    def put(self, value):
        setattr(self.proc, name, value)
    return property(get, put)


class LinuxKernel:
    """The personality: the Linux processes running in the machine, and their threads.

    Args:
        machine: the machine (its RAM, CPU and boundary).
        program: what the first process runs.

    ``proc`` is the process of the thread on the CPU (``current``); the attributes handlers
    use — ``space``, ``files``, ``signals``, ``cwd``, ``brk`` ... — are that process's.
    """

    space = _per_process("space")
    files = _per_process("files")
    signals = _per_process("signals")
    cwd = _per_process("cwd")
    umask = _per_process("umask")
    brk = _per_process("brk")
    brk_start = _per_process("brk_start")
    rlimits = _per_process("rlimits")
    exe_base = _per_process("exe_base")
    interp_base = _per_process("interp_base")
    auxv = _per_process("auxv")
    symbols = _per_process("symbols")

    name = "linux"
    ports: tuple[int, ...] = ()
    RIP = x86.UC_X86_REG_RIP

    def __init__(self, machine: Machine, program: LinuxProgram) -> None:
        self.machine = machine
        self.uc = machine.uc
        self.program = program
        self._blobs: dict[str, bytes] = {program.exe.sha256: program.exe.data}
        if program.interp is not None:
            self._blobs[program.interp.sha256] = program.interp.data
        self.frames = Frames(machine.mem_size // PAGE)
        self.shm = SharedMemory(self.frames, self._write_phys, self.file_content)
        self.ipc = Ipc()
        self.pipes: dict[int, bytearray] = {}       # pipe number -> bytes in it
        # Descriptors sent with SCM_RIGHTS over a host AF_UNIX connection, by the inode of
        # the token that travels with the bytes (vmm/linux/net.py), until received.
        self.in_flight: dict[int, list[OpenFile]] = {}
        self.next_pipe = 1
        pid, ppid, uid, gid, groups = program.identity
        self.initial_creds = [uid, uid, uid, gid, gid, gid]     # as the recording user ran it
        self.initial_groups: list[int] = list(groups)
        self.fast: FastSyscalls | None = None      # the native clock-read hook (install_hooks)
        first = Process(self, pid, self.new_space(), ppid=ppid, cwd=program.cwd, argv=program.argv,
                        env=program.env, exe=program.exe.path)
        self.processes: dict[int, Process] = {pid: first}
        self.proc = first
        comm = program.argv[0].rsplit("/", 1)[-1][:15] if program.argv else "program"
        self.current = Task(pid, comm, pid=pid)
        self.tasks: dict[int, Task] = {pid: self.current}
        self.next_tid = pid + 1                      # the last id the host gave, plus one
        self.first_pid = pid                         # its status is the run's
        self.first_exit: int | None = None
        self.ended: list[list] = []                  # reaped processes, for `vmrr ps`
        self.wait_seq = 0
        self.switches = 0
        self.timed_out = False                       # a handler runs again after its wait timed out
        self.yielded = False                         # sched_yield: the recorder may switch now
        self.unimplemented: Counter[str] = Counter()
        self.files_read: dict[str, list] = {}        # path -> [content id, size]: for summaries only
        # The state numbers open file descriptions by process and descriptor number, so that
        # a kernel restored from it numbers them the same (header flag linux_state); traces
        # recorded before numbered them in the order the descriptors were made.
        self.canonical_state = False
        self._answers: list | None = None

    def new_space(self, *, empty: bool = True) -> AddressSpace:
        """An address space over the machine's RAM and frames (its own page tables)."""
        return AddressSpace(self.machine.ram, self.frames, self._write_phys, self.file_content,
                            self._flush_tlb, shared=self.shm, released=self.shared_released, empty=empty)

    def shared_released(self) -> None:
        """Mappings of shared objects went away (or a segment was removed): objects no
        process maps any more, and nothing keeps, go; so do removed segments of them."""
        self.shm.collect({vma.file for p in self.processes.values() for vma in p.space.vmas
                          if is_shared(vma.file)})
        self.ipc.segments_gone(self.shm.objects)

    @property
    def pid(self) -> int:
        return self.current.pid

    def open_files(self) -> list[OpenFile]:
        """Every open file description some process holds a descriptor of, once each."""
        seen: dict[int, OpenFile] = {}
        for process in self.processes.values():
            for f, _cloexec in process.files.fds.values():
                seen.setdefault(id(f), f)
        # Descriptors in flight (SCM_RIGHTS sent, not yet received) hold their files too.
        for message in self.in_flight.values():
            for passed in message:
                seen.setdefault(id(passed), passed)
        for f in list(seen.values()):
            if f.kind == "socket":
                for message in f.data[4]:
                    for passed in message:
                        seen.setdefault(id(passed), passed)
        return list(seen.values())

    # -- boot --------------------------------------------------------------------------

    def boot(self) -> None:
        """Paging on, the program and its interpreter mapped, the stack built, RIP at the entry.

        The registers are what Linux's execve leaves (start_thread, ELF_PLAT_INIT): every
        general register zero but RSP, RFLAGS 0x202, the user segment selectors, and the
        FPU in its initial state — Unicorn's own reset state has FCW and MXCSR 0 (single
        precision, every exception unmasked) and no register empty."""
        uc = self.uc
        uc.reg_write(x86.UC_X86_REG_CR3, self.space.root)
        self.machine.counter.space = self.space.root >> 12      # whose page tables the counter reads
        uc.reg_write(x86.UC_X86_REG_CR4, uc.reg_read(x86.UC_X86_REG_CR4) | CR4_PAE | 0x600)
        uc.msr_write(_EFER, uc.msr_read(_EFER) | EFER_NXE)
        uc.reg_write(x86.UC_X86_REG_CR0, uc.reg_read(x86.UC_X86_REG_CR0) | CR0_PG | CR0_WP)
        loaded = load_program(self.space, self.program, abi.hwcap(uc), abi.MINSIGSTKSZ)
        self.exe_base, self.interp_base, self.auxv = loaded.exe_base, loaded.interp_base, loaded.auxv
        self.brk_start = self.brk = loaded.brk
        self.files.open_stdio()
        self._add_symbols(self.program.exe.sha256, self.exe_base)
        if self.program.interp is not None:
            self._add_symbols(self.program.interp.sha256, self.interp_base)
        regs = [(r, 0) for r in (x86.UC_X86_REG_RAX, x86.UC_X86_REG_RBX, x86.UC_X86_REG_RCX,
                                 x86.UC_X86_REG_RDX, x86.UC_X86_REG_RSI, x86.UC_X86_REG_RDI,
                                 x86.UC_X86_REG_RBP, x86.UC_X86_REG_R8, x86.UC_X86_REG_R9,
                                 x86.UC_X86_REG_R10, x86.UC_X86_REG_R11, x86.UC_X86_REG_R12,
                                 x86.UC_X86_REG_R13, x86.UC_X86_REG_R14, x86.UC_X86_REG_R15)]
        uc.reg_write_batch(regs + [(x86.UC_X86_REG_RIP, loaded.entry), (x86.UC_X86_REG_RSP, loaded.rsp),
                                   (x86.UC_X86_REG_RFLAGS, RFLAGS_INIT)])
        uc.reg_write(x86.UC_X86_REG_CS, USER_CS)
        uc.reg_write(x86.UC_X86_REG_SS, USER_DS)
        self.machine.cpu.reset_fpu()

    # -- what a live (recording) boundary asks of the platform ---------------------------

    def live_scheduler(self, host_fd, seed: int | None, *, timer_deadline):
        """The recorder's scheduler of this kernel's threads (vmm/linux/sched.py)."""
        from vmm.linux.sched import LiveScheduler
        return LiveScheduler(self, host_fd, seed, timer_deadline=timer_deadline)

    def live_host(self, blob_ready):
        """What answers host calls while recording (vmm/linux/host.py)."""
        from vmm.linux.host import HostOS
        return HostOS(blob_ready)

    def install_hooks(self) -> None:
        self._args = RegisterBatch(self.uc, _ARG_REGS)
        self._rax = RegisterBatch(self.uc, [x86.UC_X86_REG_RAX])
        self._syscall_cb = _SYSCALL_CB(self._on_syscall)
        machine = self.machine
        machine.counter.mapped = lambda va: bool(self.space.pte(va) & PTE_P)
        # New blocks are classified as Unicorn translates them, from their bytes in RAM
        # through the running process's page tables (no stop, no Python for most).
        machine.counter.classify_natively(machine._ram_ptr, machine.mem_size, paging=True)
        try:
            if os.environ.get("VMRR_PYTHON_SYSCALLS"):
                raise OSError("the native system-call path is switched off")   # the reference path
            self.fast = FastSyscalls(self.uc, self._syscall_cb, machine._ram_ptr, machine.mem_size,
                                     self.space.root, ctypes.addressof(machine.counter._state))
        except OSError:
            self.fast = None                       # every call goes through Python
        if self.fast is not None:
            self._syscall_hook = add_insn_hook(self.uc, self.fast.hook, x86.UC_X86_INS_SYSCALL,
                                               user_data=self.fast.user_data)
        else:
            self._syscall_hook = add_insn_hook(self.uc, self._syscall_cb, x86.UC_X86_INS_SYSCALL)

    def drain_fast(self) -> None:
        """Log the calls the native hook answered (vmm/linux/fastsys.py), in order; in
        replay, take the recorded calls it answered off the trace."""
        fast = self.fast
        if fast is None:
            return
        if fast.state.replay:
            answered = fast.state.qhead - self._fast_taken
            if answered:
                self._fast_taken = fast.state.qhead
                self.boundary.replayed_natively(answered)
        elif fast.state.n:
            self.boundary.syscall_exits(fast.drain(self.current.tid))

    def arm_fast(self) -> None:
        """Let the native hook answer clock reads while recording and no signal is pending
        (its delivery is on the way out of a system call, which only Python does)."""
        fast = self.fast
        if fast is None:
            return
        boundary = self.machine.boundary
        if boundary is not None and boundary.replaying and hasattr(boundary, "upcoming_syscalls"):
            self._arm_replay(fast, boundary)
            return
        live = boundary is not None and not boundary.replaying
        fast.set_enabled(live and not self.signals.pending)
        version = (self.pid, self.files.version)       # each process has its own table
        if live and fast.sockets_version != version:
            fast.set_sockets(self._plain_sockets(), version)

    def _arm_replay(self, fast, boundary) -> None:
        """Replay: the native hook answers the recorded clock reads and socket reads and
        writes that come next, from a queue of them (refilled when Python took a call
        itself, another thread runs, or it runs low)."""
        if not fast.state.replay:
            fast.start_replay()
            self._fast_taken, self._fast_start, self._fast_tid = 0, -1, None
        self.drain_fast()             # calls answered since the last look (a restart mid-slice)
        fast.set_enabled(not self.signals.pending)
        version = (self.pid, self.files.version)
        if fast.sockets_version != version:
            fast.set_sockets(self._plain_sockets(replay=True), version)
        state, tid = fast.state, self.current.tid
        if boundary.consumed != self._fast_start + state.qhead or tid != self._fast_tid \
                or state.qlen - state.qhead < 64:
            fast.queue(boundary.upcoming_syscalls(tid))
            self._fast_start, self._fast_tid, self._fast_taken = boundary.consumed, tid, 0

    def _plain_sockets(self, *, replay: bool = False) -> dict[int, int]:
        """Guest fd -> host fd of each read-write stream socket (the native hook's read/write),
        but a named AF_UNIX connection's: descriptors may come with its bytes (net.recv).
        In replay there is no host descriptor: 0 marks the socket."""
        from vmm.linux.net import AF_UNIX, SOCK_STREAM
        host_fd = (lambda _handle: 0) if replay else getattr(self.boundary, "_host_fd", None)
        out = {}
        if host_fd is None:
            return out
        for fd, (f, _cloexec) in self.files.fds.items():
            if f.kind == "socket" and f.data[1] == SOCK_STREAM and (f.flags & abi.O_ACCMODE) == abi.O_RDWR \
                    and not (f.data[0] == AF_UNIX and f.data[3] is None):
                real = host_fd(f.handle)
                if real is not None and 0 <= fd < abi.MAX_FDS:
                    out[fd] = real
        return out

    # -- threads (vmm/linux/tasks.py) --------------------------------------------------

    @property
    def tid(self) -> int:
        return self.current.tid

    @property
    def comm(self) -> str:
        return self.tasks[self.pid].name if self.pid in self.tasks else self.current.name

    def new_task(self, parent: Task, *, pid: int | None = None) -> Task:
        """A new thread of ``parent``'s process (or, given ``pid``, the first of a new one)."""
        tid = self.alloc_pid()
        task = Task(tid, parent.name, pid=parent.pid if pid is None else tid)
        self.tasks[tid] = task
        return task

    def live_tasks(self) -> list[Task]:
        """The live threads of the process on the CPU."""
        pid = self.pid
        return [t for t in self.tasks.values() if t.state != DONE and t.pid == pid]

    def all_live_tasks(self) -> list[Task]:
        """The live threads of every process."""
        return [t for t in self.tasks.values() if t.state != DONE]

    def can_run(self) -> bool:
        """The task on the CPU can go on (it is not waiting and has not exited)."""
        return self.current.state == RUN

    def runnable(self) -> list[Task]:
        return [t for t in self.tasks.values() if t.state == RUN]

    def block(self, task: Task, nr: int, args: list, exc: Blocked) -> None:
        task.state, task.wait, task.call = WAIT, exc.wait, [nr, list(args)]
        task.timeout = exc.timeout_ns is not None
        self.wait_seq += 1
        task.seq = self.wait_seq
        self.boundary.task_blocked(task.tid, exc.timeout_ns)
        self.machine.request_stop()

    def wake(self, task: Task, result: int) -> None:
        """A waiting task's call completes with ``result`` (a futex wake): it is runnable again."""
        task.state, task.wait, task.call, task.timeout = RUN, None, None, False
        self.set_task_regs(task, rax=result)
        self.boundary.task_woken(task.tid)

    def set_task_regs(self, task: Task, *, rax: int, rip_delta: int = 0) -> None:
        """RAX (and a step of RIP) of a task on or off the CPU."""
        if task.ctx is None:
            self.uc.reg_write(x86.UC_X86_REG_RAX, rax & MASK64)
            if rip_delta:
                self.uc.reg_write(self.RIP, self.uc.reg_read(self.RIP) + rip_delta)
            return
        task.ctx[0][0] = rax & MASK64
        task.ctx[0][RIP_INDEX] = (task.ctx[0][RIP_INDEX] + rip_delta) & MASK64

    def retry_waiters(self, woken=None) -> None:
        """Something inside the program became readable or writable (a pipe, an eventfd):
        every task waiting on one of those files (``woken``: a test of an open file
        description; None, any) runs its call again when next on the CPU."""
        for task in self.tasks.values():
            if task.state == WAIT and task.wait[0] == "fds" and task is not self.current \
                    and (woken is None or self._waits_on(task, woken)):
                task.wait = ["retry"]

    def _waits_on(self, task: Task, woken) -> bool:
        proc = self.processes.get(task.pid)
        if proc is None:
            return False
        for fd, _events in task.wait[1]:
            f = proc.files.get(fd)
            if f is None or woken(f):
                return True
        return False

    def check_deadlock(self) -> bool:
        """Every thread of every process waits, none with a timeout, each on something only
        another thread could end (a futex, a child, a vfork child, pipes and other
        descriptors inside the machine): nothing can ever wake them. The run ends with a
        report of who waits on what (both in recording and replay)."""
        live = self.all_live_tasks()
        if not live or any(t.state != WAIT or t.timeout or not self._stuck(t) for t in live):
            return False
        if any(p.state == ALIVE and p.signals.itimer is not None for p in self.processes.values()):
            return False                                  # SIGALRM will come
        rip = self.uc.reg_read(self.RIP)
        waits = "; ".join(f"thread {t.tid} ({t.name}) waits in {t.describe_wait()}" for t in live)
        self.machine.crash_program("deadlock", 0, rip, f"every thread waits and none can be woken: {waits}")
        return True

    def _stuck(self, task: Task) -> bool:
        """``task`` waits on something no input from outside can end."""
        kind = task.wait[0]
        if kind in ("futex", "sem", "child", "vfork"):
            return True
        if kind != "fds" or not task.wait[1]:
            return False                                  # a signal, a retry, the host's clock
        proc = self.processes.get(task.pid)
        if proc is None:
            return False
        from vmm.linux.poll import wait_targets
        targets, inside = wait_targets(self, task.wait[1], proc.files)
        return not targets and not inside

    def signal_from_outside(self, signo: object) -> None:
        """SIGNAL_IN: the user signalled the recorder: the program — its first process, or
        the oldest one still running — gets it, as from a terminal."""
        if type(signo) is not int or not 1 <= signo <= abi.NSIG:
            raise ReplayDivergence(f"replay diverged at icount {self.machine.icount}: a signal "
                                   f"{signo!r} from outside that is no signal")
        alive = [p for p in self.processes.values() if p.state == ALIVE]
        if not alive:
            return
        target = self.processes.get(self.first_pid)
        if target is None or target.state != ALIVE:
            target = min(alive, key=lambda p: (p.start_icount, p.pid))
        target.signals.from_outside(signo)

    def timer_fired(self) -> None:
        """TIMER: an ITIMER_REAL expired: the process whose timer is due first gets SIGALRM."""
        armed = [p for p in self.processes.values() if p.state == ALIVE and p.signals.itimer is not None]
        if armed:
            min(armed, key=lambda p: (p.signals.itimer[0], p.pid)).signals.timer_fired()

    def notice(self, text: str) -> None:
        """A line for the user about the run (a child process crashed), shown by record, run
        and a replay that shows output."""
        self.boundary.notice(text)

    def who(self, proc: Process) -> tuple[int, str]:
        """(pid, program path) of ``proc``, for crash reports and notices (as a trace holds text)."""
        return proc.pid, _text(proc.exe)

    def note_unsupported(self, what: str) -> None:
        """A call that exists but asked for something out of scope (a fork): in the summary."""
        self.unimplemented[what] += 1

    def yield_cpu(self) -> None:
        if len(self.tasks) > 1:
            self.yielded = True
            self.machine.request_stop()

    # -- processes (vmm/linux/process.py, proc_calls.py) ---------------------------------

    def alloc_pid(self) -> int:
        """A new process's (or thread's) id, as the host would give one: pids and tids share
        one space, and the host answers with an id that no process on it uses now (so
        that programs naming files by pid do not collide with another run's); a host
        answer, so replay gives the same ids."""
        answer = self.host("newpid", self.next_tid)
        if type(answer) is not int or not 1 < answer < PID_MAX or answer in self.tasks \
                or answer in self.processes:
            raise TypeError(f"newpid answered {answer!r}")
        self.next_tid = answer + 1
        return answer

    def exit_process(self, proc: Process, wait_status: int) -> None:
        """``proc`` ends: its threads stop, its descriptors close, its memory goes back, its
        children go to init, and its parent learns (SIGCHLD, a wait4 that can now return).

        Args:
            wait_status: as wait4 reports it (``code << 8`` for an exit, else the signal,
                with 0x80 when it dumped core).
        """
        if proc.state != ALIVE:
            return
        machine = self.machine
        proc.state, proc.exit, proc.end_icount = ZOMBIE, wait_status, machine.icount
        if proc.vfork_parent is not None:
            from vmm.linux.proc_calls import vfork_done
            vfork_done(self, proc)
        for task in proc.threads():
            if task.state != DONE:
                task.state, task.wait, task.call, task.timeout = DONE, None, None, False
                self.boundary.task_woken(task.tid)
        for fd in sorted(proc.files.fds):
            proc.files.close(fd)
        self.ipc.process_exited(self, proc.pid)
        if self.current.pid != proc.pid:              # else when it leaves the CPU (_left)
            self._release_space(proc)
        for child in proc.children():
            child.ppid = INIT_PID
            if child.pdeathsig and child.state == ALIVE:      # prctl(PR_SET_PDEATHSIG)
                child.signals.post(child.pdeathsig, abi.SI_USER, proc.pid)
            if child.state == ZOMBIE:
                self.reap(child)
        parent = self.processes.get(proc.ppid)
        if parent is None or parent.state != ALIVE:
            self.reap(proc)
        else:
            self._tell_parent(parent, proc)
        if proc.pid == self.first_pid:
            self.first_exit = wait_status
        if self.current.pid == proc.pid:
            machine.request_stop()
        if not any(p.state == ALIVE for p in self.processes.values()):
            self._power_off()

    def _release_space(self, proc: Process) -> None:
        """An ended process's memory goes back, unless another process still uses it (vfork)."""
        if proc.space.root and not any(p is not proc and p.space is proc.space and p.state == ALIVE
                                       for p in self.processes.values()):
            proc.space.destroy()
            # Its code frames go back: blocks translated from them must not run again
            # when another program's code lands in the same frame at the same address.
            self.machine.code_changed()

    def _left(self, task: Task) -> None:
        """``task`` left the CPU: if its process has ended, what it held goes now."""
        gone = self.processes.get(task.pid)
        if gone is not None and gone.state == ALIVE and task.state == DONE:
            gone.forget_thread(task)              # an ended thread of a live process
            return
        if gone is None or gone.state == ALIVE:
            return
        self._release_space(gone)
        if gone.state == REAPED:
            self._forget(gone.pid)

    def _tell_parent(self, parent: Process, child: Process) -> None:
        from vmm.linux.signals import SA_NOCLDWAIT, SIG_IGN
        for task in parent.threads():
            if task.state == WAIT and task.wait[0] == "child":
                task.wait = ["retry"]                # its wait4 runs again and finds the zombie
        handler, flags = parent.signals.action(abi.SIGCHLD)[:2]
        if child.exit_signal == abi.SIGCHLD and (handler == SIG_IGN or flags & SA_NOCLDWAIT):
            self.reap(child)                         # nobody will wait: no zombie (Linux)
        if child.exit_signal:
            status = child.exit
            code = abi.CLD_EXITED if status & 0x7F == 0 else (abi.CLD_DUMPED if status & 0x80 else abi.CLD_KILLED)
            parent.signals.post(child.exit_signal, code, child.pid)

    def reap(self, proc: Process) -> None:
        """The zombie is gone: only a line of history remains (``vmrr ps``)."""
        proc.state = REAPED
        self.ended.append([proc.pid, proc.ppid, list(proc.argv), proc.exe, proc.exit, proc.start_icount,
                           proc.end_icount, proc.all_tids()])
        if proc.pid != self.current.pid:            # else when its last thread leaves the CPU
            self._forget(proc.pid)

    def _forget(self, pid: int) -> None:
        del self.processes[pid]
        for tid in [t.tid for t in self.tasks.values() if t.pid == pid]:
            del self.tasks[tid]

    def _power_off(self) -> None:
        """Every process has ended: the run ends with the first one's status."""
        status = self.first_exit or 0
        machine = self.machine
        if status & 0x7F:
            machine.note_signal_exit(status & 0x7F)
        else:
            machine.power_off((status >> 8) & 0xFF)
            machine.result.why = "exit"

    def exec_program(self, exe, interp, argv: list[str], env: list[str], path: str, at_random: bytes) -> None:
        """execve's point of no return: the calling process runs ``exe`` from its start, in
        a new address space; its other threads end, close-on-exec descriptors close,
        caught signals go back to their default action (Linux's flush_old_exec and
        begin_new_exec)."""
        from vmm.linux.proc_calls import vfork_done
        from vmm.linux.signals import SIG_DFL, SIG_IGN, SS_DISABLE
        proc, task = self.proc, self.current
        for other in proc.threads():
            if other is not task and other.state != DONE:
                other.state, other.wait, other.call, other.timeout = DONE, None, None, False
                self.boundary.task_woken(other.tid)
            if other is not task:
                proc.forget_thread(other)
        for fd in [fd for fd, (_f, cloexec) in proc.files.fds.items() if cloexec]:
            proc.files.close(fd)
        proc.signals.actions = {s: a for s, a in proc.signals.actions.items() if a[0] == SIG_IGN}
        proc.signals.altstack = [0, SS_DISABLE, 0]
        proc.signals.itimer = proc.signals.itimer          # ITIMER_REAL survives exec (Linux)
        old = proc.space
        proc.space = self.new_space()
        program = LinuxProgram(exe, interp, list(argv), list(env), proc.cwd, at_random, name=path)
        loaded = load_program(proc.space, program, abi.hwcap(self.uc), abi.MINSIGSTKSZ)
        if proc.vfork_parent is not None:
            vfork_done(self, proc)                        # the parent's memory is its own again
        elif not any(p is not proc and p.space is old and p.state == ALIVE for p in self.processes.values()):
            old.destroy()
        proc.exe_base, proc.interp_base, proc.auxv = loaded.exe_base, loaded.interp_base, loaded.auxv
        proc.brk_start = proc.brk = loaded.brk
        proc.argv, proc.env, proc.exe = list(argv), list(env), exe.path
        task.name = exe.path.rsplit("/", 1)[-1][:15]
        task.clear_child_tid, task.robust_list = 0, [0, 0]
        proc.symbols, proc.symbol_files = SymbolTable([]), set()
        self._add_symbols(exe.sha256, proc.exe_base)
        if interp is not None:
            self._add_symbols(interp.sha256, proc.interp_base)
        self._use_space(proc.space)
        self.machine.code_changed()                       # a program's code replaced its own
        uc = self.uc
        regs = [(r, 0) for r in _GPRS] + [(x86.UC_X86_REG_RIP, loaded.entry - 2),   # Unicorn adds 2
                                         (x86.UC_X86_REG_RSP, loaded.rsp), (x86.UC_X86_REG_RFLAGS, RFLAGS_INIT),
                                         (x86.UC_X86_REG_FS_BASE, 0), (x86.UC_X86_REG_GS_BASE, 0)]
        uc.reg_write_batch(regs)
        self.machine.cpu.reset_fpu()

    def rebuild_symbols(self, proc: Process) -> None:
        """``proc``'s symbols from its executable mappings (a fork's copy, a restored state)."""
        current, self.proc = self.proc, proc
        try:
            for vma in proc.space.vmas:
                if vma.file is not None and vma.prot & 4:
                    self.library_mapped(vma.file, vma.start, vma.offset)
        finally:
            self.proc = current

    def task_exit(self, status: int) -> None:
        """exit(): the thread ends; the process ends with its last thread."""
        task = self.current
        if len(self.live_tasks()) <= 1:
            raise SyscallExit(status)
        task.state, task.wait, task.call = DONE, None, None
        if task.clear_child_tid:
            try:
                self.write(task.clear_child_tid, b"\0\0\0\0")
                from vmm.linux.futex import futex_key, wake_waiters
                wake_waiters(self, futex_key(self, task.clear_child_tid, False), 1, 0xFFFFFFFF)
            except GuestFault:
                pass
        self.boundary.task_woken(task.tid)
        self.machine.request_stop()

    def switch(self, tid: object, how: object) -> None:
        """A SWITCH: ``tid`` goes on the CPU (``how``: tasks.RESUME_*). Checked, since in
        replay it comes from the trace."""
        target = self.tasks.get(tid) if type(tid) is int else None
        if target is None or target.state == DONE:
            raise ReplayDivergence(f"replay diverged at icount {self.machine.icount}: a switch to thread "
                                   f"{tid!r}, which {'has exited' if target else 'does not exist'}")
        if how == RESUME_RUN and target.state != RUN or how in (RESUME_RETRY, RESUME_TIMEOUT) and (
                target.state != WAIT or target.wait[0] == "futex" and how == RESUME_RETRY
                or how == RESUME_TIMEOUT and not target.timeout) or how not in (0, 1, 2):
            raise ReplayDivergence(f"replay diverged at icount {self.machine.icount}: switch {how!r} to "
                                   f"thread {tid}, which is {target.describe_wait()}")
        current = self.current
        self.yielded = False
        if target is not current:
            if current.state != DONE:
                current.ctx = save_context(self)
            if current.pid in self.processes:
                signals = self.processes[current.pid].signals
                current.sigmask, current.altstack = signals.mask, list(signals.altstack)
            self._enter(target)
            self.switches += 1
            self._left(current)
        if how != RESUME_RUN:
            nr, args = target.call
            target.state, target.wait, target.call, target.timeout = RUN, None, None, False
            self.timed_out = how == RESUME_TIMEOUT
            try:
                self._syscall(nr, args, in_hook=False)
            finally:
                self.timed_out = False
        elif self.signals.pending or target.saved_mask is not None:
            # Woken (a futex wake, EINTR): a handler now, and a call's own mask ends.
            self.signals.deliver_pending(in_syscall=False, interrupted=self._rax_value() == -abi.EINTR)

    def _rax_value(self) -> int:
        rax = self.uc.reg_read(x86.UC_X86_REG_RAX)
        return rax - (1 << 64) if rax >> 63 else rax

    def _enter(self, target: Task) -> None:
        """Put ``target`` on the CPU: its registers, its mask, and its process's page tables."""
        load_context(self, target.ctx)
        target.ctx = None
        proc = self.processes[target.pid]
        if proc is not self.proc:
            self.proc = proc
            self._use_space(proc.space)
        self.current = target
        proc.signals.mask, proc.signals.altstack = target.sigmask, list(target.altstack)

    def _use_space(self, space: AddressSpace) -> None:
        """The CPU runs in ``space`` now: CR3 (which flushes the TLB), and the instruction
        counter keeps that space's blocks apart from other processes' at the same addresses."""
        self.machine.counter.space = space.root >> 12
        self.uc.reg_write(x86.UC_X86_REG_CR3, space.root)
        if self.fast is not None:
            self.fast.state.root = space.root

    # -- memory helpers for handlers -------------------------------------------------

    def _write_phys(self, phys: int, data: bytes) -> None:
        self.uc.mem_write(phys, data)

    def _flush_tlb(self, code: bool = True) -> None:
        # Loading CR3 flushes the TLB (and QEMU's jump cache) as on a real CPU.
        self.uc.reg_write(x86.UC_X86_REG_CR3, self.space.root)
        if code:
            self.machine.code_changed()

    def read(self, va: int, size: int) -> bytes:
        return self.space.read(va, size)

    def write(self, va: int, data: bytes) -> None:
        self.space.write(va, data)

    def read_path(self, va: int) -> str:
        """A path argument: bytes decoded as the kernel sees them (surrogate escapes for non-UTF-8)."""
        return self.space.read_cstr(va, 4096).decode("utf-8", "surrogateescape")

    def file_content(self, file_id: str) -> bytes:
        data = self._blobs.get(file_id)
        if data is None:
            data = self.machine.boundary.blob(file_id)
            if data is None or hashlib.sha256(data).hexdigest() != file_id:
                raise ReplayDivergence(f"the trace holds no intact content for file {file_id[:16]}")
            self._blobs[file_id] = data
        return data

    def keep_content(self, data: bytes) -> str:
        """Content that arrived in an answer (a host file's mapped bytes): keep it by its id."""
        file_id = hashlib.sha256(data).hexdigest()
        self._blobs[file_id] = data
        return file_id

    def read_guest(self, va: int, size: int) -> bytes | None:
        """For debuggers and reports: bytes at a virtual address, None where nothing is mapped."""
        return self.space.peek(va, size)

    def write_guest(self, va: int, data: bytes) -> bool:
        return self.space.poke(va, data)

    @property
    def ram_in_use(self) -> int:
        return self.space.ram_in_use

    # -- symbols of the program and of the libraries it maps ---------------------------

    def _add_symbols(self, file_id: str, base: int) -> None:
        proc = self.proc
        if file_id in proc.symbol_files:
            return
        proc.symbol_files.add(file_id)
        proc.symbols.add_elf_later(lambda: self.file_content(file_id), base)

    def library_mapped(self, file_id: str, start: int, offset: int) -> None:
        """An executable file mapping appeared: add the ELF's symbols at its load bias."""
        if file_id in self.proc.symbol_files or is_shared(file_id):
            return
        data = self.file_content(file_id)
        try:
            elf = parse_elf(data, "library")
        except Exception:                                  # not an ELF: no symbols to add
            self.proc.symbol_files.add(file_id)
            return
        for seg in elf.segments:
            if page_down(seg.offset) == offset:
                self._add_symbols(file_id, start - page_down(seg.vaddr))
                return

    def libraries(self) -> list[tuple[str, int]]:
        """(path, load bias) of every ELF mapped executable, the program first (for gdb)."""
        seen, out = set(), []
        for vma in self.space.vmas:
            if vma.file is None or vma.file in seen or not vma.name or is_shared(vma.file):
                continue
            seen.add(vma.file)
            try:
                elf = parse_elf(self.file_content(vma.file), vma.name)
            except Exception:
                continue
            for seg in elf.segments:
                if page_down(seg.offset) == vma.offset:
                    out.append((vma.name, vma.start - page_down(seg.vaddr)))
                    break
        return out

    def file_by_path(self, path: str) -> bytes | None:
        """The recorded content of a file the program mapped (or the program itself), by path.

        For debuggers: gdb asks for the executable and its libraries by name."""
        if path == self.program.exe.path and self.proc.exe == path:
            return self.program.exe.data
        if self.program.interp is not None and path == self.program.interp.path:
            return self.program.interp.data
        for vma in self.space.vmas:
            if vma.file is not None and vma.name == path and not is_shared(vma.file):
                return self.file_content(vma.file)
        return None

    # -- system calls ----------------------------------------------------------------

    @property
    def boundary(self):
        return self.machine.boundary

    @property
    def in_syscall(self) -> bool:
        """A system call is being answered (host answers go into its event)."""
        return self._answers is not None

    def host(self, op: str, *params):
        """Ask the host (recording) or the trace (replay) for a host-dependent answer."""
        value = self.boundary.host_call(self.machine.icount, op, list(params))
        self._answers.append([op, value])
        return value

    def _on_syscall(self, _uc, _user_data) -> None:
        try:
            if self.fast is None:          # else the native hook did it (vmrr_fast_syscall)
                uc = self.uc
                uc.reg_write(x86.UC_X86_REG_RCX, uc.reg_read(x86.UC_X86_REG_RIP) + 2)
                uc.reg_write(x86.UC_X86_REG_R11, uc.reg_read(x86.UC_X86_REG_RFLAGS))
            self.drain_fast()
            values = self._args.read()
            self._syscall(values[0], values[1:], in_hook=True)
            self.arm_fast()
        except BaseException as exc:       # a raw ctypes callback would print and swallow it
            self.machine._hook_failed(exc, None)

    def _syscall(self, nr: int, args: list[int], *, in_hook: bool) -> None:
        """One system call of the task on the CPU: in the SYSCALL hook (RIP at the
        instruction), or again when a waiting task is switched in (RIP after it)."""
        entry = SYSCALLS.get(nr)
        icount = self.machine.icount
        boundary = self.boundary
        task = self.current
        try:
            boundary.syscall_enter(icount, task.tid, nr)
        except EndOfTrace:
            return
        self._answers = []
        shown = self._shown_args(entry, args)
        status = blocked = None
        if entry is None or entry.handler is None:
            self.unimplemented[describe(nr)] += 1
            ret = -abi.ENOSYS
        else:
            try:
                ret = entry.handler(self, *args[:len(entry.args)])
            except GuestFault:
                ret = -abi.EFAULT
            except SyscallExit as ended:
                status, ret = ended.status, NO_RETURN
            except OutOfMemory:
                ret = -abi.ENOMEM
            except Blocked as exc:
                blocked, ret = exc, NO_RETURN
                signo = self.signals.interrupting()
                if signo is not None:            # a signal is waiting for this thread: no sleep
                    blocked = None
                    if self.signals.restarts(signo, nr):
                        ret = nr
                        self.set_task_regs(task, rax=nr, rip_delta=-2)   # the syscall again after the handler
                    else:
                        ret = -abi.EINTR
            except (TypeError, ValueError, IndexError, KeyError, struct.error, UnicodeError) as exc:
                if not boundary.replaying:
                    raise
                raise ReplayDivergence(f"replay diverged at icount {icount}: {describe(nr)}: "
                                       f"the recorded host answer does not fit ({exc})") from None
        answers, self._answers = self._answers, None
        if ret is not NO_RETURN:
            self._rax.write([ret])
        boundary.syscall_exit(icount, [task.tid, nr, shown, None if ret is NO_RETURN else ret, answers])
        if status is not None:
            self.exit_process(self.proc, (status & 0xFF) << 8)
            return
        if blocked is not None:
            self.block(task, nr, args, blocked)
            return
        if task.state == RUN:
            self.signals.deliver_pending(in_syscall=in_hook, interrupted=ret == -abi.EINTR)

    def _shown_args(self, entry, args: list[int]) -> list:
        if entry is None:
            return list(args)
        shown = []
        for kind, value in zip(entry.args, args):
            if kind == "path":
                try:
                    value = self.read_path(value)
                except GuestFault:
                    value = None
            elif kind == "clone_args":
                value = clone3_flags(self, value)
            shown.append(value)
        return shown

    # -- CPU exceptions become signals -------------------------------------------------

    def exception(self, vector: int, rip: int) -> None:
        """A CPU exception in the program: a page to fault in, or a signal."""
        if vector == 14:
            address = self.uc.reg_read(x86.UC_X86_REG_CR2)
            try:
                if self.space.fault(address):
                    return
            except OutOfMemory:
                self.machine.crash_program("out of memory", 9, rip,
                                           f"guest RAM (--mem {self.machine.mem_size >> 20}M) is exhausted",
                                           process=self.who(self.proc))
                return
            code = abi.SEGV_ACCERR if self.space.find(address) else abi.SEGV_MAPERR
            self.signals.fault(abi.SIGSEGV, code, address, rip, vector)
        elif vector == 6:
            self.signals.fault(abi.SIGILL, abi.ILL_ILLOPN, rip, rip, vector)
        elif vector == 0:
            self.signals.fault(abi.SIGFPE, abi.FPE_INTDIV, rip, rip, vector)
        elif vector in (1, 3):
            self.signals.fault(abi.SIGTRAP, abi.TRAP_BRKPT, rip, rip, vector)
        elif vector == 16 or vector == 19:
            self.signals.fault(abi.SIGFPE, 0, rip, rip, vector)
        elif vector == 17:
            self.signals.fault(abi.SIGBUS, abi.BUS_ADRALN, rip, rip, vector)
        else:
            self.signals.fault(abi.SIGSEGV, abi.SI_KERNEL, 0, rip, vector)

    # -- state -----------------------------------------------------------------------

    def _files_in_state_order(self) -> list[OpenFile]:
        """``open_files()``, those a descriptor holds first, by process id and descriptor
        number; the others (in flight) after them in ``open_files()``'s order."""
        rank: dict[int, int] = {}
        for pid in sorted(self.processes):
            fds = self.processes[pid].files.fds
            for fd in sorted(fds):
                rank.setdefault(id(fds[fd][0]), len(rank))
        return sorted(self.open_files(), key=lambda f: rank.get(id(f), len(rank)))

    def state(self) -> dict:
        descriptions = self._files_in_state_order() if self.canonical_state else self.open_files()
        index = {id(f): i for i, f in enumerate(descriptions)}
        return {"frames": self.frames.state(), "shm": self.shm.state(), "ipc": self.ipc.state(),
                "pipes": sorted([n, bytes(b)] for n, b in self.pipes.items()),
                "files": [_describe(f, index) for f in descriptions],
                "in_flight": sorted([token, [index[id(f)] for f in message]]
                                    for token, message in self.in_flight.items()),
                "processes": [self.processes[pid].as_dict(index) for pid in sorted(self.processes)],
                "tasks": [t.as_list() for t in self.tasks.values()],
                "proc": [self.tid, self.next_tid, self.next_pipe, self.wait_seq, self.switches],
                "history": [self.first_pid, self.first_exit, [list(row) for row in self.ended]],
                "unimplemented": [[k, v] for k, v in sorted(self.unimplemented.items())]}

    def check_state(self, state: object) -> None:
        """Raise BadDeviceState naming the problem unless ``state`` (from a file) can be loaded."""
        from vmm.devices import BadDeviceState
        from vmm.linux.checks import state_problem
        problem = state_problem(state, self.machine.mem_size)
        if problem is not None:
            raise BadDeviceState(problem)

    def load_state(self, state: dict) -> None:
        self.check_state(state)
        self.frames.load_state(state["frames"])
        self.shm.load_state(state["shm"])
        self.ipc.load_state(state["ipc"])
        self.pipes = {n: bytearray(b) for n, b in state["pipes"]}
        descriptions = [OpenFile.from_list(raw) for raw in state["files"]]
        for f in descriptions:
            if f.kind == "epoll":
                f.data = [[*entry[:5], None if entry[5] is None else descriptions[entry[5]]] for entry in f.data]
            elif f.kind == "socket":
                domain, kind, connecting, peer, inbox = f.data
                f.data = [domain, kind, connecting, None if peer is None else descriptions[peer],
                          [[descriptions[i] for i in message] for message in inbox]]
        self.in_flight = {token: [descriptions[i] for i in message] for token, message in state["in_flight"]}
        tid, self.next_tid, self.next_pipe, self.wait_seq, self.switches = state["proc"]
        self.first_pid, self.first_exit, ended = state["history"]
        self.ended = [list(row) for row in ended]
        old = self.processes
        self.processes = {}
        for raw in state["processes"]:
            process = old.get(raw["pid"])
            if process is None:
                process = Process(self, raw["pid"], self.new_space(empty=False), ppid=raw["ppid"],
                                  cwd=raw["cwd"], argv=raw["argv"], env=raw["env"], exe=raw["exe"])
            process.load_dict(raw, descriptions)
            self.processes[process.pid] = process
        self.tasks = {raw[0]: Task.from_list(raw) for raw in state["tasks"]}
        self.current = self.tasks[tid]
        self.proc = self.processes[self.current.pid]
        if self.fast is not None:
            self.fast.state.root = self.proc.space.root
        self.unimplemented = Counter(dict((str(k), int(v)) for k, v in state["unimplemented"]))
        # RAM and page tables changed under the CPU: reload CR3 as the restored registers
        # have it (a thread whose process just ended may hold the CPU, its tables gone).
        cr3 = self.uc.reg_read(x86.UC_X86_REG_CR3)
        self.uc.reg_write(x86.UC_X86_REG_CR3, cr3)
        self.machine.counter.space = cr3 >> 12
        self.machine.code_changed()
        for process in self.processes.values():
            self.rebuild_symbols(process)

    def summary(self) -> dict:
        """For the recorder's summary and the END record's ``linux`` map (``vmrr info``, ``vmrr ps``)."""
        return {"unimplemented": dict(self.unimplemented), **self.process_list()}

    def process_list(self) -> dict:
        """Every process that ran, for ``vmrr ps``: ``{"processes": [...]}`` in the order they
        started, each ``{"pid", "ppid", "argv", "exe", "exit", "start_icount", "end_icount",
        "tids"}`` (``exit``, the wait status, and ``end_icount`` are None for a process still
        running when the run ended; a process the run's crash ended has the crash's signal).

        Bounded, so that the END record stays small whatever the program did: an argv of
        more than SUMMARY_ARGV characters and a process of more than SUMMARY_TIDS threads are
        cut (the row then has ``"cut": True``), and past SUMMARY_BYTES (or SUMMARY_PROCESSES
        rows) the processes that started last are left out (counted in ``processes_omitted``)."""
        rows = [list(row) for row in self.ended]
        for proc in self.processes.values():
            if proc.state != REAPED:
                rows.append([proc.pid, proc.ppid, list(proc.argv), proc.exe, proc.exit, proc.start_icount,
                             proc.end_icount, proc.all_tids()])
        result = self.machine.result
        crash = result.crash if result is not None else None
        if crash is not None and crash.signal and self.proc.state == ALIVE:
            # The run ended with this process's crash report (its signal, or out of memory):
            # it died of it, although the kernel never saw it end.
            for row in rows:
                if row[0] == self.proc.pid and row[4] is None:
                    row[4], row[6] = crash.signal & 0x7F, crash.icount
        rows.sort(key=lambda row: (row[5], row[0]))
        out, used = [], 0
        for pid, ppid, argv, exe, status, start, end, tids in rows:
            argv, exe = [_text(a) for a in argv], _text(exe)
            entry = {"pid": pid, "ppid": ppid, "argv": argv, "exe": exe, "exit": status,
                     "start_icount": start, "end_icount": end, "tids": tids}
            kept, size = [], 0
            for arg in argv:
                if size + len(arg) + 1 > SUMMARY_ARGV:
                    kept.append(arg[:max(0, SUMMARY_ARGV - size - 1)])
                    entry["cut"] = True
                    break
                kept.append(arg)
                size += len(arg) + 1
            entry["argv"] = kept
            if len(tids) > SUMMARY_TIDS:
                entry["tids"], entry["cut"] = tids[:SUMMARY_TIDS], True
            used += 96 + sum(len(a) + 4 for a in kept) + len(exe) + 5 * len(entry["tids"])
            if used > SUMMARY_BYTES or len(out) >= SUMMARY_PROCESSES:
                break
            out.append(entry)
        summary: dict = {"processes": out}
        if len(out) < len(rows):
            summary["processes_omitted"] = len(rows) - len(out)
        return summary

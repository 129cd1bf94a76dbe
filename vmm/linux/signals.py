"""Signals: actions, the mask, delivery with a real signal frame, rt_sigreturn.

A fault in the program (a #PF outside any mapping, #UD, #DE, ...) becomes SIGSEGV,
SIGILL or SIGFPE. With a handler installed the personality builds the x86-64
``rt_sigframe`` on the program's stack — siginfo, ucontext with the registers and the
signal mask, the FXSAVE image of the whole x87 and SSE state — exactly as Linux lays it
out for a CPU without XSAVE, and enters the handler with the FPU in its initial state;
the handler's ``rt_sigreturn`` restores everything from that frame. Without
a handler the run ends: a crash report (core-dumping signals, exit 3) or the
program's termination by the signal. A signal the program sends itself is delivered
when the system call returns. Each delivery is a SIGNAL event, checked in replay.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from unicorn import x86_const as x86

from trace_format.events import EventKind
from vmm.cpu import FXSAVE_SIZE
from vmm.linux import abi
from vmm.linux.files import s32
from vmm.linux.tasks import WAIT, Blocked

if TYPE_CHECKING:
    from vmm.linux.kernel import LinuxKernel

SIG_DFL, SIG_IGN = 0, 1
SA_NOCLDSTOP, SA_NOCLDWAIT = 1, 2
SA_SIGINFO, SA_ONSTACK, SA_RESTART, SA_NODEFER, SA_RESETHAND, SA_RESTORER = 4, 0x08000000, 0x10000000, 0x40000000, 0x80000000, 0x04000000
SIG_BLOCK, SIG_UNBLOCK, SIG_SETMASK = 0, 1, 2
SS_ONSTACK, SS_DISABLE = 1, 2
UNBLOCKABLE = (1 << (abi.SIGKILL - 1)) | (1 << (abi.SIGSTOP - 1))
IGNORED_BY_DEFAULT = {abi.SIGCHLD, abi.SIGCONT, abi.SIGURG, abi.SIGWINCH, abi.SIGSTOP, abi.SIGTSTP,
                      abi.SIGTTIN, abi.SIGTTOU}
CORE_BY_DEFAULT = {abi.SIGQUIT, abi.SIGILL, abi.SIGTRAP, abi.SIGABRT, abi.SIGBUS, abi.SIGFPE,
                   abi.SIGSEGV, abi.SIGXCPU, abi.SIGXFSZ, abi.SIGSYS}
DESCRIPTIONS = {abi.SIGSEGV: "segmentation fault", abi.SIGBUS: "bus error", abi.SIGILL: "illegal instruction",
                abi.SIGFPE: "arithmetic exception", abi.SIGABRT: "aborted", abi.SIGTRAP: "trace/breakpoint trap",
                abi.SIGQUIT: "quit", abi.SIGSYS: "bad system call", abi.SIGKILL: "killed"}

# The sigcontext registers in kernel order (struct sigcontext_64).
_MCONTEXT = ("r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rdi", "rsi", "rbp", "rbx", "rdx",
             "rax", "rcx", "rsp", "rip", "eflags")
_REG = {name: getattr(x86, f"UC_X86_REG_{'RFLAGS' if name == 'eflags' else name.upper()}") for name in _MCONTEXT}
_MC_IDS = [_REG[n] for n in _MCONTEXT]
FRAME_SIZE = 440                 # pretcode 8 + ucontext 304 + siginfo 128
UC_OFFSET, MC_OFFSET, MASK_OFFSET, INFO_OFFSET = 8, 48, 304, 312
FPSTATE_SIZE = FXSAVE_SIZE       # without XSAVE the frame's FPU state is an FXSAVE image
# uc_flags as Linux sets them for a 64-bit frame on a CPU without XSAVE (no UC_FP_XSTATE).
UC_SIGCONTEXT_SS, UC_STRICT_RESTORE_SS = 0x2, 0x4
# The software-reserved bytes 464-511 of the image (struct _fpx_sw_bytes), as Linux's
# save_sw_bytes fills them without XSAVE: the magic, the state's size with and without the
# 4-byte end marker an XSAVE frame would add, and no extended features (those come from
# CPUID leaf 0xD, which this CPU lacks). A signal frame's FPU state is recognisable so.
FP_XSTATE_MAGIC1 = 0x46505853
_SW_RESERVED = struct.pack("<IIQI", FP_XSTATE_MAGIC1, FXSAVE_SIZE + 4, 0, FXSAVE_SIZE).ljust(48, b"\0")
# Calls a signal handler with SA_RESTART makes start again instead of failing with EINTR.
RESTARTABLE = frozenset({0, 1, 19, 20, 42, 43, 44, 45, 46, 47, 61, 73, 202, 288, 295, 296})


def signame(signo: int) -> str:
    return abi.SIGNAL_NAMES.get(signo, f"signal {signo}")


class SignalState:
    """A process's actions and pending signals, and the mask and alternate stack of its
    thread on the CPU (each other thread keeps its own in its Task)."""

    def __init__(self, kernel: LinuxKernel, process=None) -> None:
        self.k = kernel
        self.process = process
        self.actions: dict[int, list[int]] = {}     # signo -> [handler, flags, restorer, mask]
        self.mask = 0
        self.altstack = [0, SS_DISABLE, 0]          # ss_sp, ss_flags, ss_size
        self.pending: list[list[int]] = []          # [signo, code, value]
        # ITIMER_REAL (setitimer, alarm): [next expiry, interval] in ns of the recorded
        # CLOCK_MONOTONIC, or None. Expiries are TIMER events; this only answers getitimer.
        self.itimer: list[int] | None = None

    def state(self) -> list:
        return [sorted([s, list(a)] for s, a in self.actions.items()), self.mask, list(self.altstack),
                [list(p) for p in self.pending], None if self.itimer is None else list(self.itimer)]

    def load_state(self, state: list) -> None:
        actions, self.mask, altstack, pending = state[:4]
        self.actions = {int(s): list(a) for s, a in actions}
        self.altstack = list(altstack)
        self.pending = [list(p) for p in pending]
        itimer = state[4] if len(state) > 4 else None          # traces before itimers: none
        self.itimer = None if itimer is None else list(itimer)

    def fatal_by_default(self, signo: int) -> bool:
        """``signo`` would end the process: SIGKILL, or a default action that terminates."""
        return signo == abi.SIGKILL or (self.action(signo)[0] == SIG_DFL and signo not in IGNORED_BY_DEFAULT
                                        and signo != abi.SIGCONT)

    def action(self, signo: int) -> list[int]:
        return self.actions.get(signo, [SIG_DFL, 0, 0, 0])

    def ignores(self, signo: int) -> bool:
        handler = self.action(signo)[0]
        return handler == SIG_IGN or (handler == SIG_DFL and signo in IGNORED_BY_DEFAULT)

    # -- delivery --------------------------------------------------------------------

    def raise_signal(self, signo: int, code: int, value: int) -> None:
        """Make ``signo`` pending (kill/tgkill to self); it is delivered when the call returns."""
        # Linux never ignores a blocked signal: its action may change before it is unblocked.
        if self.ignores(signo) and not self.mask & (1 << (signo - 1)):
            return
        if not any(p[0] == signo for p in self.pending):
            self.pending.append([signo, code, value])

    def post(self, signo: int, code: int, value: int, tid: int | None = None) -> None:
        """A signal for the process (or thread ``tid``): pending, and a waiting thread that
        can take it is interrupted (EINTR, or restarted under SA_RESTART)."""
        k = self.k
        masks = {t.tid: (self.mask if t is k.current else t.sigmask) for t in self.process.live_threads()}
        if self.ignores(signo) and all(m & (1 << (signo - 1)) == 0 for m in masks.values()):
            return
        if not any(p[0] == signo for p in self.pending):
            self.pending.append([signo, code, value])
        bit = 1 << (signo - 1)
        candidates = [tid] if tid in masks else [k.current.tid] + sorted(masks)
        target = next((k.tasks[t] for t in candidates if t in masks and not masks[t] & bit), None)
        if target is not None and target is not k.current and self.fatal_by_default(signo):
            k.exit_process(self.process, signo)        # killed where it stands, running or not
            return
        if target is not None and target.state == WAIT and target.wait != ["retry"] and not self.ignores(signo):
            self._interrupt(target, signo)

    def _interrupt(self, task, signo: int) -> None:
        k = self.k
        nr = task.call[0]
        restart = self.restarts(signo, nr)
        k.wake(task, -abi.EINTR)
        if restart:                                   # back to the syscall instruction, RAX = nr
            k.set_task_regs(task, rax=nr, rip_delta=-2)

    def from_outside(self, signo: int) -> None:
        """SIGNAL_IN: the user signalled the recorder; the program gets it here, between
        instructions, as if another process had sent it."""
        self.post(signo, abi.SI_USER, 0)
        if self.k.can_run() and self.process is self.k.proc:
            self.deliver_pending(in_syscall=False)

    def timer_fired(self) -> None:
        """TIMER: ITIMER_REAL expired (the recorder saw its deadline pass); SIGALRM here,
        between instructions. A periodic timer goes on from its previous expiry."""
        if self.itimer is None:
            return
        if self.itimer[1]:
            self.itimer[0] += self.itimer[1]
        else:
            self.itimer = None
        self.post(abi.SIGALRM, abi.SI_KERNEL, 0)
        if self.k.can_run() and self.process is self.k.proc:
            self.deliver_pending(in_syscall=False)

    def arm_timer(self, now: int, value_ns: int, interval_ns: int) -> None:
        self.itimer = [now + value_ns, interval_ns] if value_ns else None
        self.k.boundary.alarm_armed(value_ns or None, interval_ns)

    def timer_left(self, now: int) -> tuple[int, int]:
        """(ns to the next expiry, interval) of ITIMER_REAL; (0, 0) when it is off."""
        if self.itimer is None:
            return 0, 0
        return max(1000, self.itimer[0] - now), self.itimer[1]

    def interrupting(self) -> int | None:
        """A pending signal that would interrupt a call of the thread on the CPU now (not
        blocked, not ignored): a call that would wait returns instead, as Linux checks
        signal_pending before it sleeps."""
        for signo, _code, _value in self.pending:
            if not self.mask & (1 << (signo - 1)) and not self.ignores(signo):
                return signo
        return None

    def restarts(self, signo: int, nr: int) -> bool:
        """The call ``nr`` interrupted by ``signo`` starts again after the handler (SA_RESTART)."""
        return bool(self.action(signo)[1] & SA_RESTART) and nr in RESTARTABLE

    def use_mask(self, new: int) -> bool:
        """ppoll, pselect6, epoll_pwait and rt_sigsuspend run with mask ``new``; the thread's
        own comes back as the call returns — after the handler of the signal that
        interrupted it, whose frame keeps the thread's own mask (Linux's saved_sigmask).
        True: a signal ``new`` lets through is pending already (the call fails with EINTR)."""
        task = self.k.current
        if task.saved_mask is None:                   # not again when the call runs again
            task.saved_mask = self.mask
        self.mask = new & ~UNBLOCKABLE
        return any(not self.mask & (1 << (p[0] - 1)) for p in self.pending)

    def deliver_pending(self, *, in_syscall: bool, interrupted: bool = True) -> None:
        """A handler for the first signal the mask lets through, if any. After a call made
        with a mask of its own (``use_mask``), the thread's mask comes back first unless
        the call was ``interrupted`` (EINTR), then after the handler (its frame keeps it)."""
        task = self.k.current
        saved, task.saved_mask = task.saved_mask, None
        if saved is not None and not interrupted:
            self.mask, saved = saved, None
        for i, (signo, code, value) in enumerate(self.pending):
            if not self.mask & (1 << (signo - 1)) or signo in (abi.SIGKILL, abi.SIGSTOP):
                del self.pending[i]
                self._deliver(signo, code, value, in_syscall=in_syscall, fault_rip=None, frame_mask=saved)
                return
        if saved is not None:
            self.mask = saved

    def fault(self, signo: int, code: int, address: int, rip: int, vector: int) -> None:
        """A synchronous signal from a CPU exception at ``rip``: a handler, or the end of the run."""
        handler = self.action(signo)[0]
        if handler in (SIG_DFL, SIG_IGN) or self.mask & (1 << (signo - 1)):
            self._die(signo, code, address, rip, vector)
            return
        self._deliver(signo, code, address, in_syscall=False, fault_rip=rip)

    def _die(self, signo: int, code: int, address: int, rip: int, vector: int | None) -> None:
        k = self.k
        what = DESCRIPTIONS.get(signo, "terminated")
        if signo in (abi.SIGSEGV, abi.SIGBUS):
            reason = "address not mapped" if code == abi.SEGV_MAPERR else "access not allowed by the mapping"
            if signo == abi.SIGBUS:
                reason = "misaligned or beyond the end of a mapped file"
            detail = f"{what} at address {address:#x} ({reason})"
        elif vector is not None:
            detail = f"{what} (CPU exception {vector})"
        else:
            detail = f"{what} (sent by the program itself)"
        if self.process.pid != k.first_pid:
            # A child's crash ends the child, not the run: its parent sees the signal in
            # wait4's status; the report says where, in recording and replay alike.
            pid, program = k.who(self.process)
            k.notice(f"process {pid} ({program}) crashed: {signame(signo)} at "
                     f"rip={rip:#x} icount={k.machine.icount}: {detail}")
            k.exit_process(self.process, signo)
            return
        k.machine.crash_program(signame(signo), signo, rip, detail, process=k.who(self.process),
                                fault_address=address if signo in (abi.SIGSEGV, abi.SIGBUS) else None,
                                vector=vector)

    def _deliver(self, signo: int, code: int, value: int, *, in_syscall: bool, fault_rip: int | None,
                 frame_mask: int | None = None) -> None:
        k = self.k
        if frame_mask is None:
            frame_mask = self.mask
        uc = k.uc
        handler, flags, restorer, sa_mask = self.action(signo)
        if handler == SIG_IGN:
            return
        if handler == SIG_DFL:
            if signo in IGNORED_BY_DEFAULT:
                return
            rip = uc.reg_read(x86.UC_X86_REG_RIP) + (2 if in_syscall else 0)
            if signo in CORE_BY_DEFAULT:
                self._die(signo, code, value, rip, None)
            else:
                k.exit_process(self.process, signo)
            return
        k.boundary.note(k.machine.icount, EventKind.SIGNAL, [k.tid, signo, code & 0xFFFFFFFF, value])
        values = uc.reg_read_batch(_MC_IDS)
        regs = dict(zip(_MCONTEXT, values))
        if fault_rip is not None:
            regs["rip"] = fault_rip
        elif in_syscall:
            regs["rip"] += 2                              # resume after the syscall instruction
        sp = regs["rsp"]
        on_alt = self.altstack[1] & SS_DISABLE == 0 and self.altstack[0] <= sp < self.altstack[0] + self.altstack[2]
        if flags & SA_ONSTACK and self.altstack[1] & SS_DISABLE == 0 and not on_alt:
            sp = self.altstack[0] + self.altstack[2]
        sp -= 128                                          # the red zone
        fpstate = (sp - FPSTATE_SIZE) & ~63
        frame = ((fpstate - FRAME_SIZE) & ~15) - 8
        k.write(fpstate, self._fxsave())
        mcontext = struct.pack("<18Q", *[regs[n] & (1 << 64) - 1 for n in _MCONTEXT])
        mcontext += struct.pack("<HHHH", uc.reg_read(x86.UC_X86_REG_CS), 0, 0, uc.reg_read(x86.UC_X86_REG_SS))
        mcontext += struct.pack("<QQQQQ", 0, 14 if signo == abi.SIGSEGV else 0, frame_mask,
                                value if signo in (abi.SIGSEGV, abi.SIGBUS) else 0, fpstate) + bytes(64)
        ucontext = struct.pack("<QQQiiQ", UC_SIGCONTEXT_SS | UC_STRICT_RESTORE_SS, 0, self.altstack[0],
                               self.altstack[1], 0, self.altstack[2])
        ucontext += mcontext + struct.pack("<Q", frame_mask)
        info = struct.pack("<iii4x", signo, 0, code)
        if signo in (abi.SIGSEGV, abi.SIGBUS, abi.SIGILL, abi.SIGFPE, abi.SIGTRAP):
            info += struct.pack("<Q", value)
        else:
            info += struct.pack("<iI", value, 0)
        info = info.ljust(128, b"\0")
        k.write(frame, struct.pack("<Q", restorer) + ucontext + info)
        self.mask |= sa_mask
        if not flags & SA_NODEFER:
            self.mask |= 1 << (signo - 1)
        self.mask &= ~UNBLOCKABLE
        if flags & SA_RESETHAND:
            self.actions.pop(signo, None)
        rip = handler - 2 if in_syscall else handler     # Unicorn adds 2 after the syscall hook
        k.machine.cpu.reset_fpu()                      # fpu__clear_user_states: a fresh FPU
        uc.reg_write_batch([(x86.UC_X86_REG_RSP, frame), (x86.UC_X86_REG_RIP, rip),
                            (x86.UC_X86_REG_RDI, signo), (x86.UC_X86_REG_RSI, frame + INFO_OFFSET),
                            (x86.UC_X86_REG_RDX, frame + UC_OFFSET), (x86.UC_X86_REG_RAX, 0),
                            (x86.UC_X86_REG_RFLAGS, regs["eflags"] & ~0x500)])

    def _fxsave(self) -> bytes:
        """The frame's FPU state: the CPU's FXSAVE image with Linux's software bytes."""
        return self.k.machine.cpu.fxsave()[:464] + _SW_RESERVED

    def sigreturn(self) -> None:
        """rt_sigreturn: the registers, the mask and the FPU state saved in the frame at RSP
        (the handler may have changed them). A frame without FPU state (fpstate NULL)
        leaves the FPU in its initial state, as Linux does."""
        k = self.k
        uc = k.uc
        base = uc.reg_read(x86.UC_X86_REG_RSP)              # the handler returned: RSP = frame + 8
        raw = k.read(base, 304)
        values = struct.unpack_from("<18Q", raw, 40)
        fpstate = struct.unpack_from("<Q", raw, 40 + 18 * 8 + 8 + 32)[0]
        self.mask = struct.unpack_from("<Q", raw, 296)[0] & ~UNBLOCKABLE
        if fpstate:
            k.machine.cpu.fxrstor(k.read(fpstate, FPSTATE_SIZE))
        else:
            k.machine.cpu.reset_fpu()
        regs = dict(zip(_MCONTEXT, values))
        writes = [(_REG[n], regs[n]) for n in _MCONTEXT if n not in ("rip", "eflags")]
        writes.append((x86.UC_X86_REG_RFLAGS, (regs["eflags"] & 0x3F7FD5) | 0x2))
        writes.append((x86.UC_X86_REG_RIP, regs["rip"] - 2))  # Unicorn adds 2 after the hook
        uc.reg_write_batch(writes)


# -- system calls ----------------------------------------------------------------------

def sys_rt_sigaction(k, signo, act, oact, size):
    signo = s32(signo)
    if size != 8 or not 1 <= signo <= abi.NSIG:
        return -abi.EINVAL
    state = k.signals
    old = state.action(signo)
    if act:
        handler, flags, restorer, mask = struct.unpack("<QQQQ", k.read(act, 32))
        if signo in (abi.SIGKILL, abi.SIGSTOP):
            return -abi.EINVAL
        if handler != SIG_DFL:
            state.actions[signo] = [handler, flags, restorer, mask & ~UNBLOCKABLE]
        else:
            state.actions.pop(signo, None)
        if state.ignores(signo):               # setting an ignoring action discards it if pending
            state.pending = [p for p in state.pending if p[0] != signo]
    if oact:
        k.write(oact, struct.pack("<QQQQ", *old))
    return 0


def sys_rt_sigprocmask(k, how, new, old, size):
    if size != 8:
        return -abi.EINVAL
    state = k.signals
    previous = state.mask
    if new:
        value = struct.unpack("<Q", k.read(new, 8))[0]
        how = s32(how)
        if how == SIG_BLOCK:
            state.mask |= value
        elif how == SIG_UNBLOCK:
            state.mask &= ~value
        elif how == SIG_SETMASK:
            state.mask = value
        else:
            return -abi.EINVAL
        state.mask &= ~UNBLOCKABLE
    if old:
        k.write(old, struct.pack("<Q", previous))
    return 0


def sys_rt_sigreturn(k):
    from vmm.linux.tasks import NO_RETURN
    k.signals.sigreturn()
    return NO_RETURN


def sys_rt_sigpending(k, setp, size):
    bits = 0
    for signo, _code, _value in k.signals.pending:
        bits |= 1 << (signo - 1)
    k.write(setp, struct.pack("<Q", bits))
    return 0


def sys_sigaltstack(k, new, old):
    state = k.signals
    if old:
        sp, flags, size = state.altstack
        k.write(old, struct.pack("<QiiQ", sp, flags, 0, size))
    if new:
        sp, flags, _pad, size = struct.unpack("<QiiQ", k.read(new, 24))
        if flags & SS_DISABLE:
            state.altstack = [0, SS_DISABLE, 0]
        elif flags & ~SS_ONSTACK:
            return -abi.EINVAL
        elif size < 2048:
            return -abi.ENOMEM
        else:
            state.altstack = [sp, 0, size]
    return 0


def send(k, proc, signo: int, code: int, tid: int | None = None) -> None:
    """``signo`` from the running thread to process ``proc`` (or its thread ``tid``)."""
    if not signo:
        return
    if tid == k.tid or tid is None and proc is k.proc:
        k.signals.raise_signal(signo, code, k.pid)      # delivered as the call returns
    else:
        proc.signals.post(signo, code, k.pid, tid)


def sys_kill(k, pid, signo):
    from vmm.linux.process import ALIVE
    pid, signo = s32(pid), s32(signo)
    if not 0 <= signo <= abi.NSIG:
        return -abi.EINVAL
    me = k.proc
    if pid > 0:
        targets = [p for p in k.processes.values() if p.pid == pid and p.state == ALIVE]
    elif pid == -1:                                  # every process but init and the caller
        targets = [p for p in k.processes.values() if p.state == ALIVE and p is not me] or [me]
    else:
        group = me.pgid if pid == 0 else -pid
        targets = [p for p in k.processes.values() if p.pgid == group and p.state == ALIVE]
    if not targets:
        return -abi.ESRCH
    for proc in sorted(targets, key=lambda p: p is me):  # the caller last: others act first
        send(k, proc, signo, abi.SI_USER)
    return 0


def _thread(k, tgid: int | None, tid: int, signo: int) -> int:
    task = k.tasks.get(tid)
    if task is None or task.state == "done" or tgid is not None and task.pid != tgid:
        return -abi.ESRCH
    if not 0 <= signo <= abi.NSIG:
        return -abi.EINVAL
    send(k, k.processes[task.pid], signo, abi.SI_TKILL, tid)
    return 0


def sys_tkill(k, tid, signo):
    return _thread(k, None, s32(tid), s32(signo))


def sys_tgkill(k, tgid, tid, signo):
    return _thread(k, s32(tgid), s32(tid), s32(signo))


# -- SIGALRM: setitimer, getitimer, alarm, and pause ------------------------------------

ITIMER_REAL = 0
_TIMEVAL2 = struct.Struct("<qqqq")               # struct itimerval: interval, value


def _itimerval(interval_ns: int, value_ns: int) -> bytes:
    return _TIMEVAL2.pack(interval_ns // 10**9, interval_ns % 10**9 // 1000,
                          value_ns // 10**9, value_ns % 10**9 // 1000)


def _monotonic(k) -> int:
    from vmm.linux.time_calls import CLOCK_MONOTONIC, clock_ns
    return clock_ns(k, CLOCK_MONOTONIC)


def sys_setitimer(k, which, new, old):
    if s32(which) != ITIMER_REAL:
        return -abi.EINVAL                       # ITIMER_VIRTUAL and ITIMER_PROF: not kept
    if new:
        isec, iusec, vsec, vusec = _TIMEVAL2.unpack(k.read(new, 32))
        if not (0 <= iusec < 10**6 and 0 <= vusec < 10**6 and isec >= 0 and vsec >= 0):
            return -abi.EINVAL
    now = _monotonic(k)
    if old:
        left, interval = k.signals.timer_left(now)
        k.write(old, _itimerval(interval, left))
    if new:
        k.signals.arm_timer(now, vsec * 10**9 + vusec * 1000, isec * 10**9 + iusec * 1000)
    return 0


def sys_getitimer(k, which, cur):
    if s32(which) != ITIMER_REAL:
        return -abi.EINVAL
    left, interval = k.signals.timer_left(_monotonic(k))
    k.write(cur, _itimerval(interval, left))
    return 0


def sys_alarm(k, seconds):
    seconds &= 0xFFFFFFFF
    now = _monotonic(k)
    left, _interval = k.signals.timer_left(now)
    k.signals.arm_timer(now, seconds * 10**9, 0)
    if not left:
        return 0
    return max(1, (left + 500_000_000) // 10**9)   # rounded, as Linux does; never 0 if pending


def sys_pause(k):
    """Wait for a signal: only delivery ends it, with EINTR (never restarted)."""
    raise Blocked(["signal"])


def sys_rt_sigsuspend(k, mask, size):
    """Wait for a signal with ``mask`` in place of the thread's own: it ends with EINTR
    once a handler has run, the thread's own mask back (sigsuspend(2))."""
    if size != 8:
        return -abi.EINVAL
    if k.signals.use_mask(struct.unpack("<Q", k.read(mask, 8))[0]):
        return -abi.EINTR
    raise Blocked(["signal"])


def call_mask(k, mask: int, size: int, call) -> int:
    """ppoll, pselect6, epoll_pwait: ``call()`` with the mask argument in place of the
    thread's (``use_mask``). A call that would wait while a signal it lets through is
    pending fails with EINTR instead (ready descriptors win, as on Linux)."""
    if not mask:
        return call()
    if size != 8:
        return -abi.EINVAL
    pending = k.signals.use_mask(struct.unpack("<Q", k.read(mask, 8))[0])
    try:
        return call()
    except Blocked:
        if pending:
            return -abi.EINTR
        raise

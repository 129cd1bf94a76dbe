"""The Machine: CPU, RAM and devices, and the run loop that drives them.

The run loop executes the guest in *slices*: Unicorn runs until the instruction counter
reaches the slice's limit (or HLT, power-off, a fault, or a device asking to stop; a live
slice may finish the translated block that crosses its limit, vmm/icount.py),
then the loop asks the boundary for host inputs, applies them to devices, and delivers
a pending interrupt if the guest can take one. Inputs are therefore injected between
instructions at an exact icount. Record and replay run this same loop; only the
boundary differs (vmm/boundary.py).
"""

from __future__ import annotations

import ctypes
import enum
import hashlib
import mmap
import os
import struct
import time
import zlib

import msgpack
from dataclasses import dataclass
from typing import Callable

from unicorn import (UC_ERR_FETCH_UNMAPPED, UC_ERR_INSN_INVALID, UC_ERR_READ_UNMAPPED,
                     UC_ERR_WRITE_UNMAPPED, UC_HOOK_INSN, UC_HOOK_INSN_INVALID, UC_HOOK_INTR,
                     UC_HOOK_MEM_UNMAPPED, UC_MEM_FETCH_UNMAPPED, UC_MEM_WRITE_UNMAPPED,
                     UC_PROT_ALL, UcError)
from unicorn import x86_const as x86
from unicorn.unicorn_py3 import unicorn as _ucbind

from trace_format.events import EventKind, is_state_digest
from vmm.cpu import (CPU_MODEL, add_insn_hook, ERROR_CODE_VECTORS, GPR_NAMES, LINUX_CPU_MODEL, STATE_REG_NAMES,
                     VECTOR_STATE_SIZE, Cpu, DeliveryFault)
from vmm.crash import CrashKind, CrashReport, disassemble_around
from vmm.devices.clock import Clock
from vmm.devices.console import Console
from vmm.devices.entropy import Entropy
from vmm.devices.pic import Pic
from vmm.devices.power import Power
from vmm.devices.sockets import CHANNELS, Sockets
from vmm.devices.timer import Timer
from vmm.devices import BadDeviceState
from vmm.errors import CheckpointMismatch, HostError, ReplayDivergence, UsageError
from vmm.symbols import SymbolTable

MiB = 1 << 20
DEFAULT_MEM = 64 * MiB
MIN_MEM, MAX_MEM = 2 * MiB, 4096 * MiB
MIN_MACHINE_MEM = 64 * 1024       # boot information, arguments and a stack: below this nothing boots
PAGE = 0x1000
RAM_START = PAGE                  # page 0 stays unmapped: a null-pointer guard
BOOT_INFO = 0x5000
BOOT_ARGS = 0x5100
MAX_BOOT_ARGS = 3839
BOOT_MAGIC = int.from_bytes(b"VMRRBOOT", "little")
UNTIL = 0x7FFF_FFFF_FFFF_F000      # never reached (non-canonical): slices end through the instruction counter
CR4_OSFXSR_OSXMMEXCPT = 0x600
HLT = 0xF4
STI = 0xFB

_ZEROS = ctypes.create_string_buffer(MiB)            # compared against, never written
_ZERO_MIB_CRC = zlib.crc32(bytes(MiB))
_memcmp = ctypes.CDLL(None).memcmp
_memcmp.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
_memcmp.restype = ctypes.c_int
_DIFF_BLOCK = 64 * 1024
_STATE_REGS = {name: getattr(x86, f"UC_X86_REG_{name.upper()}") for name in STATE_REG_NAMES}
_SEGMENTS = frozenset({"cs", "ss", "ds", "es", "fs", "gs"})
# cpu_state() keys and the range of each (ints 0..limit-1): what a checkpoint's CPU state
# must look like. Non-integer parts of the state go in Machine.cpu_state_schema().
CPU_STATE_RANGES: dict[str, int] = {
    **{name: 1 << 64 for name in STATE_REG_NAMES}, **{name: 1 << 16 for name in _SEGMENTS},
    "gdtr_base": 1 << 64, "gdtr_limit": 1 << 16, "idtr_base": 1 << 64, "idtr_limit": 1 << 16,
    "halted": 2,
}


def _below(limit: int) -> Callable[[object], bool]:
    return lambda value: type(value) is int and 0 <= value < limit
_ZERO_CRC_BY_LEN: dict[int, int] = {}
_RDTSC_CB = ctypes.CFUNCTYPE(ctypes.c_uint32, ctypes.c_void_p, ctypes.c_void_p)


class Outcome(str, enum.Enum):
    POWER_OFF = "poweroff"
    CRASH = "crash"
    LIMIT = "limit"                 # --max-instructions / --until reached
    STOPPED = "stopped"             # interrupted by the user or a limit of the recorder
    END_OF_TRACE = "end-of-trace"   # replay: the trace has no more inputs (it was cut short)
    PAUSED = "paused"               # a debugger hook asked to stop (breakpoint, watchpoint)


@dataclass
class RunResult:
    outcome: Outcome
    icount: int
    exit_status: int | None = None
    crash: CrashReport | None = None
    why: str = ""


def default_max_mem() -> int:
    """The most guest RAM a trace may ask of this host: min(4 GiB, half the physical RAM)."""
    try:
        physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
        physical = 8 << 30
    return max(MIN_MEM, min(MAX_MEM, physical // 2 // MiB * MiB))


def parse_mem_size(spec: str, option: str = "--mem", *, limit: int = MAX_MEM) -> int:
    """'64M', '1G', '67108864' → bytes. Raises UsageError when not a multiple of 1 MiB in range."""
    text = spec.strip().upper().removesuffix("B").removesuffix("I")
    scale = {"K": 1 << 10, "M": MiB, "G": 1 << 30, "T": 1 << 40}.get(text[-1:], 1)
    digits = text[:-1] if scale != 1 else text
    if not digits.isascii() or not digits.isdigit() or len(digits) > 20:
        raise UsageError(f"{option} {spec}: expected a size like 64M or 1G")
    size = int(digits) * scale
    if size % MiB or not MIN_MEM <= size <= limit:
        raise UsageError(f"{option} {spec}: must be a multiple of 1M between 2M and "
                         f"{limit // MiB}M")
    return size


class Machine:
    """An x86-64 VM: one CPU, ``mem_size`` bytes of RAM, the devices of docs/machine.md.

    Args:
        image: the guest to boot.
        mem_size: RAM in bytes (see ``parse_mem_size``).
        boot_args: the string the guest finds through its boot information.
        counter: how instructions are counted, ``"fast"`` or ``"reference"``
            (``vmm.icount.InstructionCounter``); the icounts are the same.

    Call ``connect(boundary)`` before ``run``.

    Raises:
        UsageError: the boot arguments are too long or the image does not fit in RAM.
    """

    def __init__(self, image, *, mem_size: int = DEFAULT_MEM, boot_args: str = "",
                 counter: str = "fast") -> None:
        linux = getattr(image, "platform", "appliance") == "linux"
        if type(mem_size) is not int or mem_size % PAGE or mem_size < MIN_MACHINE_MEM:
            raise UsageError(f"guest RAM of {mem_size!r} bytes: must be a multiple of {PAGE} "
                             f"and at least {MIN_MACHINE_MEM}")
        try:
            args = boot_args.encode()
        except UnicodeError:
            raise UsageError("--args: the boot arguments are not valid UTF-8 text") from None
        if len(args) > MAX_BOOT_ARGS:
            raise UsageError(f"--args: {len(args)} bytes is longer than {MAX_BOOT_ARGS}")
        if not linux and image.end + 64 * 1024 > mem_size:
            raise UsageError(f"image {image.name} needs {image.end:#x} bytes of RAM and more for "
                             f"its stack; --mem is {mem_size:#x}")
        self.image = image
        self.mem_size = mem_size
        self.boot_args = boot_args
        self.cpu_model = LINUX_CPU_MODEL if linux else CPU_MODEL
        self.cpu = Cpu(self.cpu_model, counter)
        self.uc = self.cpu.uc
        self.counter = self.cpu.counter
        # The exception that ended the last run was handled by the VMM; QEMU would still
        # count it as "in flight" and make the next fault a double fault, then a triple
        # fault that silently stops the CPU (Cpu.forget_exception). Cleared before every
        # emu_start, including the counter's re-starts after classifying a new block.
        self.counter.before_start = self._before_start
        self.counter.forget_fault = self.cpu.forget_exception
        self.boundary = None
        try:
            # Private, not Python's default shared mapping: pages never written cost no
            # memory even when read (a digest reads all of RAM), and MADV_DONTNEED zeroes.
            self.ram = mmap.mmap(-1, mem_size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        except (OSError, OverflowError, ValueError) as exc:
            raise HostError(f"cannot reserve {mem_size} bytes of guest RAM: {exc}") from None
        self._ram_export = ctypes.c_char.from_buffer(self.ram)   # pins the mapping; close() drops it
        self._ram_ptr = ctypes.addressof(self._ram_export)
        self.uc.mem_map_ptr(RAM_START, mem_size - RAM_START, UC_PROT_ALL, self._ram_ptr + RAM_START)

        self.halted = False
        self.result: RunResult | None = None
        self._shutdown_reason: str | None = None
        self._pending_exception: int | None = None
        self._fault: tuple[int, int, int] | None = None
        self._hook_error: BaseException | None = None    # raised in a hook, re-raised by _run_slice
        self.output_digests: dict[str, hashlib._Hash] = {}
        self.output_bytes: dict[str, int] = {}
        if linux:
            # A Linux program: the personality is the machine's only device (vmm/linux/).
            from vmm.linux.kernel import LinuxKernel
            self.kernel = LinuxKernel(self, image)
            self.pic = None
            self.devices = (self.kernel,)
        else:
            self.kernel = None
            self._symbols = SymbolTable.from_elf(image.elf)
            self.pic = Pic(self)
            self.timer = Timer(self)
            self.clock = Clock(self)
            self.entropy = Entropy(self)
            self.console = Console(self)
            self.sockets = Sockets(self)
            self.power = Power(self)
            self.devices = (self.pic, self.timer, self.clock, self.entropy, self.console,
                            self.sockets, self.power)
        self._ports = {port: dev for dev in self.devices for port in dev.ports}
        if linux:
            from vmm.linux.memory import OutOfMemory
            try:
                self.kernel.boot()
            except OutOfMemory:
                self.close()
                raise UsageError(self._too_small_to_load(image, mem_size)) from None
        else:
            self._boot()
        self._install_hooks()

    @property
    def symbols(self) -> SymbolTable:
        """The symbols of the code running now (a Linux program's: its process's)."""
        return self.kernel.symbols if self.kernel is not None else self._symbols

    # -- set-up ----------------------------------------------------------------------

    @staticmethod
    def _too_small_to_load(image, mem_size: int) -> str:
        """Why a Linux program did not even load in ``mem_size`` bytes, with the size it
        needs: what loading it takes in a machine large enough (RAM there costs nothing
        until it is written)."""
        probe = Machine(image, mem_size=1 << 30)
        try:
            needed = probe.ram_in_use
        finally:
            probe.close()
        size = f"{mem_size >> 20} MiB" if mem_size % (1 << 20) == 0 else f"{mem_size >> 10} KiB"
        return (f"guest RAM of {size} is too small for {image.name}: loading it alone takes "
                f"{needed >> 20} MiB, and running it more (--mem sets it; 1G by default)")

    def _boot(self) -> None:
        uc = self.uc
        for seg in self.image.segments:
            uc.mem_write(seg.guest_phys, seg.data)
        args = self.boot_args.encode()
        uc.mem_write(BOOT_INFO, struct.pack("<5Q", BOOT_MAGIC, self.mem_size, BOOT_ARGS,
                                            len(args), self.image.end))
        uc.mem_write(BOOT_ARGS, args + b"\0")
        uc.reg_write(x86.UC_X86_REG_CR4, uc.reg_read(x86.UC_X86_REG_CR4) | CR4_OSFXSR_OSXMMEXCPT)
        uc.reg_write_batch([(x86.UC_X86_REG_RIP, self.image.entry), (x86.UC_X86_REG_RDI, BOOT_INFO),
                            (x86.UC_X86_REG_RSP, self.mem_size - 16), (x86.UC_X86_REG_RFLAGS, 2)])

    def _before_start(self) -> None:
        self.cpu.forget_exception()
        if self.kernel is not None:
            self.kernel.arm_fast()

    def _install_hooks(self) -> None:
        uc = self.uc
        uc.hook_add(UC_HOOK_INSN, self._on_in, None, 1, 0, x86.UC_X86_INS_IN)
        uc.hook_add(UC_HOOK_INSN, self._on_out, None, 1, 0, x86.UC_X86_INS_OUT)
        uc.hook_add(UC_HOOK_INTR, self._on_interrupt)
        uc.hook_add(UC_HOOK_INSN_INVALID, lambda _uc, _ud: False)
        # Only where there is no RAM: below RAM_START and from mem_size up. A memory hook
        # that covers RAM makes Unicorn take the slow path (a TB-invalidation check) on
        # every guest store, for good: stores ran ~3x slower.
        uc.hook_add(UC_HOOK_MEM_UNMAPPED, self._on_unmapped, None, 0, RAM_START - 1)
        uc.hook_add(UC_HOOK_MEM_UNMAPPED, self._on_unmapped, None, self.mem_size, (1 << 64) - 1)
        self._rdtsc_cb = _RDTSC_CB(self._on_rdtsc)
        self._rdtsc_hooks = [add_insn_hook(uc, self._rdtsc_cb, insn)
                             for insn in (x86.UC_X86_INS_RDTSC, x86.UC_X86_INS_RDTSCP)]
        if self.kernel is not None:
            self.kernel.install_hooks()

    def connect(self, boundary) -> None:
        """Attach the nondeterminism boundary that answers for the host."""
        self.boundary = boundary

    def close(self) -> None:
        """Free the CPU engine and unmap guest RAM now, rather than when the collector
        finds the machine (hooks, devices and the boundary all point back at it).
        Idempotent; the machine cannot run afterwards."""
        uc = getattr(self, "uc", None)
        if uc is None:
            return
        finalizer = getattr(uc, "_Uc__finalizer", None)
        if finalizer is not None:
            finalizer()                                # uc_close: Unicorn lets go of RAM
        self.uc = self.cpu.uc = None
        self.boundary = None
        self.devices = ()
        self._ports = {}
        self._ram_export = None
        try:
            self.ram.close()
        except BufferError:                            # someone still holds a view of RAM
            pass

    # -- hooks (called from inside Unicorn) -------------------------------------------

    def _on_in(self, uc, port: int, size: int, _ud) -> int:
        dev = self._ports.get(port)
        try:
            return 0xFFFFFFFF if dev is None else dev.port_read(port, size) & 0xFFFFFFFF
        except BaseException as exc:    # the binding would hand ctypes None and print a traceback
            return self._hook_failed(exc, 0)

    def _on_out(self, uc, port: int, size: int, value: int, _ud) -> None:
        dev = self._ports.get(port)
        if dev is not None:
            dev.port_write(port, size, value)

    def _on_rdtsc(self, _uc, _ud) -> int:
        try:
            self._rdtsc()
        except BaseException as exc:    # a raw ctypes callback would print and swallow it
            self._hook_failed(exc, 1)
        return 1                                                    # skip the real instruction

    def _rdtsc(self) -> None:
        if self.kernel is not None:
            self.kernel.drain_fast()
        tsc = self.boundary.rdtsc(self.counter.icount)
        rip = self.uc.reg_read(x86.UC_X86_REG_RIP)
        writes = [(x86.UC_X86_REG_RAX, tsc & 0xFFFFFFFF), (x86.UC_X86_REG_RDX, tsc >> 32)]
        if self.read_guest(rip, 3) == b"\x0f\x01\xf9":             # RDTSCP: TSC_AUX = 0
            writes.append((x86.UC_X86_REG_RCX, 0))
        self.uc.reg_write_batch(writes)

    def _hook_failed(self, exc: BaseException, result: int) -> int:
        """Keep an exception raised in a value-returning hook; ``_run_slice`` re-raises it."""
        if self._hook_error is None:
            self._hook_error = exc
        self.counter.stop_soon()
        return result

    def _on_interrupt(self, uc, intno: int, _ud) -> None:
        self.counter.sync_fault(uc.reg_read(x86.UC_X86_REG_RIP))   # it may end a block early
        self._pending_exception = intno
        self.counter.stop_soon()
        if self.kernel is not None:
            uc.emu_stop()          # a fault on fetch begins no instruction: stop_soon alone would not stop

    def _on_unmapped(self, uc, access: int, address: int, size: int, value: int, _ud) -> bool:
        self._fault = (access, address, size)
        return False

    # -- what devices call -----------------------------------------------------------

    @property
    def icount(self) -> int:
        return self.counter.icount

    def request_stop(self) -> None:
        """End the current slice before the next instruction (the loop has work to do)."""
        self.counter.stop_soon()

    def power_off(self, status: int) -> None:
        self.result = RunResult(Outcome.POWER_OFF, self.counter.icount, exit_status=status)
        self.counter.stop_soon()

    def output(self, stream: str, data: bytes) -> None:
        """Guest output: deterministic, so only its digest is kept for verification."""
        digest = self.output_digests.get(stream)
        if digest is None:
            digest = self.output_digests[stream] = hashlib.sha256()
            self.output_bytes[stream] = 0
        digest.update(data)
        self.output_bytes[stream] += len(data)
        if stream == "console":
            self.boundary.console_write(data)
        elif stream in ("stdout", "stderr"):
            self.boundary.stdio_write(stream, data)

    def pause(self, why: str) -> None:
        """A debugger hook asks the run loop to return (Outcome.PAUSED) at the next boundary."""
        if self.result is None:
            self.result = RunResult(Outcome.PAUSED, self.counter.icount, why=why)
        self.counter.stop_soon()

    def end_of_trace(self, why: str) -> None:
        """Replay reached the end of its inputs: stop here (Outcome.END_OF_TRACE)."""
        if self.result is None:
            self.result = RunResult(Outcome.END_OF_TRACE, self.counter.icount, why=why)
        self.counter.stop_soon()

    def output_summary(self) -> dict[str, list]:
        """{stream: [sha256 hex, bytes]} of all guest output so far (recorded, then verified)."""
        return {name: [d.hexdigest(), self.output_bytes[name]] for name, d in self.output_digests.items()}

    def request_shutdown(self, why: str) -> None:
        """Stop at the next slice boundary (SIGINT, a duration limit). Safe in a signal handler."""
        self._shutdown_reason = why
        self.counter.stop_soon()

    # -- the run loop ----------------------------------------------------------------

    def run(self, *, max_instructions: int | None = None,
            between: Callable[[], None] | None = None) -> RunResult:
        """Run until power-off, a crash, ``max_instructions``, a shutdown request or the trace's end.

        Args:
            max_instructions: stop (Outcome.LIMIT) when icount reaches this.
            between: called after every slice or idle wait, once its inputs are applied
                (the recorder writes digests and checkpoints there).
        """
        boundary = self.boundary
        if self.result is not None and self.result.outcome in (Outcome.LIMIT, Outcome.PAUSED):
            self.result = None                       # a debugger resumes after a stop
        while self.result is None:
            if self._shutdown_reason is not None:
                self.result = RunResult(Outcome.STOPPED, self.icount, why=self._shutdown_reason)
                break
            if max_instructions is not None and self.icount >= max_instructions:
                self.result = RunResult(Outcome.LIMIT, self.icount, why="instruction limit")
                break
            if self.halted or (self.kernel is not None and not self.kernel.can_run()):
                # Halted, or every thread of a Linux program waits: the boundary waits for an
                # input (live) or hands over the next recorded one at this icount (replay).
                if self.kernel is not None and self.kernel.check_deadlock():
                    break
                inputs = boundary.poll(self.icount, idle=True)
            else:
                waiting = self.pic is not None and self.pic.deliverable_line() is not None and (
                    not self.cpu.interrupts_enabled or self._in_sti_shadow())
                limit = boundary.slice_limit(self.icount, waiting)
                exact = getattr(boundary, "exact_slices", True)
                if max_instructions is not None and max_instructions <= limit:
                    limit, exact = max_instructions, True
                self._run_slice(limit, exact)
                if self.result is not None and self.result.outcome is not Outcome.PAUSED:
                    break
                if self.kernel is not None and not self.kernel.can_run() and self.kernel.check_deadlock():
                    break                            # before a replay takes the recording's END
                inputs = boundary.poll(self.icount, idle=False)
            for kind, payload in inputs:
                self.apply(kind, payload)
                if self.result is not None and self.result.outcome is not Outcome.PAUSED:
                    break
            if boundary.decides_interrupts and self.result is None:
                self._deliver_interrupt()
            if between is not None and self.result is None:
                between()
            if self.result is not None and self.result.outcome is Outcome.PAUSED:
                break
        self.flush_output()
        return self.result

    def _run_slice(self, limit: int, exact: bool = True) -> None:
        counter = self.counter
        counter.limit = limit
        self._pending_exception = None
        self._fault = None
        start_icount, start = counter.icount, time.perf_counter()
        if self.kernel is not None:
            # Lets QEMU resize its TLB to the working set. Invisible to a Linux program
            # (its page tables have A and D set up front and every change reloads CR3),
            # not to a guest with page tables of its own: the CPU sets their A bits.
            self.cpu.flush_tlb()
        try:
            counter.run(UNTIL, exact=exact)
        except UcError as exc:
            if self.kernel is not None:
                self.kernel.drain_fast()
            self._on_emu_error(exc)
        if self.kernel is not None:
            self.kernel.drain_fast()          # before anything else is logged at this boundary
        if self._hook_error is not None:
            error, self._hook_error = self._hook_error, None
            raise error
        self.flush_output()
        self.boundary.record_speed(counter.icount - start_icount, time.perf_counter() - start)
        if self.result is not None and self.result.outcome not in (Outcome.POWER_OFF, Outcome.PAUSED):
            return
        if self._pending_exception is not None:
            self._raise_exception(self._pending_exception)
        elif self.result is None and self._stopped_on_hlt():
            if self.kernel is not None:                # HLT in a user program: #GP, so SIGSEGV
                self.kernel.exception(13, self.counter.last_pc)
            elif self.cpu.interrupts_enabled:
                self.halted = True
            else:
                self.power_off(0)

    def _stopped_on_hlt(self) -> bool:
        return self._just_ran(HLT)

    def _just_ran(self, opcode: int) -> bool:
        """The last instruction begun was the one-byte ``opcode`` and it completed."""
        last = self.counter.last_pc
        if self.counter.icount == 0 or self.uc.reg_read(x86.UC_X86_REG_RIP) != last + 1:
            return False
        return self.read_guest(last, 1) == bytes([opcode])

    def _on_emu_error(self, exc: UcError) -> None:
        if exc.errno == UC_ERR_INSN_INVALID:
            self._pending_exception = 6                       # #UD, like a CPU without the insn
            return
        rip = self.uc.reg_read(x86.UC_X86_REG_RIP)
        if exc.errno in (UC_ERR_READ_UNMAPPED, UC_ERR_WRITE_UNMAPPED, UC_ERR_FETCH_UNMAPPED) and self._fault:
            access, address, size = self._fault
            verb = {UC_MEM_WRITE_UNMAPPED: "write of", UC_MEM_FETCH_UNMAPPED: "instruction fetch at"}
            detail = f"{verb.get(access, 'read of')} {size} bytes at {address:#x}, which is not RAM"
            if access == UC_MEM_FETCH_UNMAPPED:
                detail = f"instruction fetch at {address:#x}, which is not RAM"
            self._crash(CrashKind.UNMAPPED, None, rip, detail, fault_address=address)
        else:
            self._crash("cpu error", None, rip, str(exc))

    def _raise_exception(self, vector: int) -> None:
        rip = self.uc.reg_read(x86.UC_X86_REG_RIP)
        if self.kernel is not None:
            self.kernel.exception(vector, rip)
            return
        error_code = 0 if vector in ERROR_CODE_VECTORS else None
        try:
            self.cpu.deliver(vector, return_rip=rip, error_code=error_code)
        except DeliveryFault as fault:
            kind = CrashKind.DOUBLE_FAULT if fault.double or vector == 8 else CrashKind.UNHANDLED
            self._crash(kind, vector, rip, str(fault))
            return
        self.halted = False
        self.boundary.note(self.icount, EventKind.EXCEPTION, [vector, error_code or 0])

    def _deliver_interrupt(self) -> None:
        if self.pic is None:
            return
        line = self.pic.deliverable_line()
        if line is None or not self.cpu.interrupts_enabled or self._in_sti_shadow():
            return
        self._enter_interrupt(self.pic.acknowledge(line))

    def _in_sti_shadow(self) -> bool:
        """True right after STI: like the CPU, take no interrupt before the next instruction.

        Without this, a slice ending between ``sti`` and ``hlt`` would deliver there and
        the handler would return to the HLT: a lost wakeup.
        """
        return self._just_ran(STI)

    def _enter_interrupt(self, vector: int) -> None:
        rip = self.uc.reg_read(x86.UC_X86_REG_RIP)
        try:
            self.cpu.deliver(vector, return_rip=rip)
        except DeliveryFault as fault:
            kind = CrashKind.DOUBLE_FAULT if fault.double else CrashKind.UNHANDLED
            self._crash(kind, vector, rip, str(fault))
            return
        self.halted = False
        self.boundary.note(self.icount, EventKind.INTERRUPT, vector)

    def _crash(self, kind: str, vector: int | None, rip: int, detail: str,
               fault_address: int | None = None, signal: int | None = None,
               process: tuple[int, str] | None = None) -> None:
        report = CrashReport(kind, vector, rip, self.icount, detail, self.cpu.registers(),
                             disassemble_around(self.read_guest, rip, self.symbols), fault_address,
                             signal=signal, pid=process[0] if process else None,
                             program=process[1] if process else None)
        self.result = RunResult(Outcome.CRASH, self.icount, crash=report)
        self.counter.stop_soon()

    def crash_program(self, kind: str, signal: int, rip: int, detail: str, *,
                      fault_address: int | None = None, vector: int | None = None,
                      process: tuple[int, str] | None = None) -> None:
        """A Linux program died of ``signal`` (a crash report, like an appliance's);
        ``process``: (pid, program) of the process that crashed."""
        if self.result is None:
            self._crash(kind, vector, rip, detail, fault_address, signal=signal, process=process)

    def note_signal_exit(self, signal: int) -> None:
        """A Linux program was terminated by a signal without a core: it ends with status 128+N."""
        if self.result is None:
            self.result = RunResult(Outcome.POWER_OFF, self.icount, exit_status=128 + signal,
                                    why=f"terminated by signal {signal}")
        self.counter.stop_soon()

    # -- guest memory, as the program sees it ---------------------------------------

    def read_guest(self, address: int, size: int) -> bytes | None:
        """``size`` bytes at a guest address (virtual for a Linux program); None if not mapped."""
        if self.kernel is not None:
            return self.kernel.read_guest(address, size)
        try:
            return bytes(self.uc.mem_read(address, size))
        except UcError:
            return None

    def write_guest(self, address: int, data: bytes) -> bool:
        if self.kernel is not None:
            return self.kernel.write_guest(address, data)
        try:
            self.uc.mem_write(address, data)
            return True
        except UcError:
            return False

    @property
    def ram_in_use(self) -> int:
        """Bytes of RAM from 0 that may be non-zero (a Linux program's pages are given out bottom-up)."""
        if self.kernel is not None:
            return min(self.mem_size, (self.kernel.ram_in_use + MiB - 1) // MiB * MiB)
        return self.mem_size

    def code_changed(self) -> None:
        """Guest code may have changed under translated blocks (a mapping moved or went away)."""
        self.counter.invalidate()

    def flush_output(self) -> None:
        if self.kernel is None:
            self.console.flush()

    # -- inputs ----------------------------------------------------------------------

    def apply(self, kind: EventKind, payload: object) -> None:
        """Hand one host input to its device. Inputs from a trace are validated first.

        Raises:
            ReplayDivergence: the input cannot happen in the machine's current state.
        """
        if kind == EventKind.TIMER:
            if self.kernel is not None:
                self.kernel.timer_fired()              # a Linux program's ITIMER_REAL: SIGALRM
            else:
                self.timer.expire()
        elif kind == EventKind.SOCK_DATA:
            chan, data = self._check_sock_data(payload)
            self.sockets.on_data(chan, data)
        elif kind == EventKind.SOCK_ACCEPT:
            chan = self._check_channel(kind, payload, must_exist=False)
            self.sockets.on_accept(chan)
        elif kind == EventKind.SOCK_HUP:
            self.sockets.on_hup(self._check_channel(kind, payload, must_exist=True))
        elif kind == EventKind.CONSOLE_IN:
            if not isinstance(payload, bytes) or len(payload) > self.console.input_room():
                self._diverge(kind, "console input that does not fit the console's buffer")
            self.console.receive(payload)
        elif kind == EventKind.INTERRUPT:
            self._replay_interrupt(payload)
        elif kind == EventKind.SWITCH or kind == EventKind.SIGNAL_IN:
            if self.kernel is None:
                self._diverge(kind, "a thread switch or signal, but this machine runs no Linux program")
            if kind == EventKind.SWITCH:
                self.kernel.switch(payload[0], payload[1])
            else:
                self.kernel.signal_from_outside(payload)
        elif kind == EventKind.DIGEST:
            self.verify_digest(payload)
        elif kind == EventKind.CHECKPOINT:
            self.boundary.checkpoint_reached(payload)      # a verifying replay passes a checkpoint
        elif kind == EventKind.END:
            self.end_of_trace("the recording ends here")
        else:
            self._diverge(kind, "an input the machine cannot apply here")

    def _replay_interrupt(self, vector: object) -> None:
        if self.pic is None:
            self._diverge(EventKind.INTERRUPT, "an interrupt, but this machine has no interrupt controller")
        line = self.pic.deliverable_line()
        expected = None if line is None or not self.cpu.interrupts_enabled else 32 + line
        if vector != expected:
            seen = "no interrupt is deliverable" if expected is None else f"vector {expected} is"
            self._diverge(EventKind.INTERRUPT, f"vector {vector} delivered, but {seen} here")
        self._enter_interrupt(self.pic.acknowledge(line))

    def _check_channel(self, kind: EventKind, chan: object, *, must_exist: bool) -> int:
        if not isinstance(chan, int) or not 0 <= chan < CHANNELS:
            self._diverge(kind, f"channel {chan!r} out of range")
        if (self.sockets.channels[chan] is not None) != must_exist:
            self._diverge(kind, f"channel {chan} is {'not ' if must_exist else ''}open")
        return chan

    def _check_sock_data(self, payload: object) -> tuple[int, bytes]:
        if not (isinstance(payload, (list, tuple)) and len(payload) == 2 and isinstance(payload[1], bytes)):
            self._diverge(EventKind.SOCK_DATA, "malformed payload")
        chan = self._check_channel(EventKind.SOCK_DATA, payload[0], must_exist=True)
        if len(payload[1]) > self.sockets.rx_room(chan):
            self._diverge(EventKind.SOCK_DATA, f"{len(payload[1])} bytes overflow channel {chan}")
        return chan, payload[1]

    # -- state: digests and checkpoints -----------------------------------------------

    def ram_digest(self) -> bytes:
        """A hash of the RAM in use: crc32 per MiB (fast), then blake2b over those."""
        return ram_digest_of(self.ram, self._ram_ptr, self.ram_in_use, self.mem_size)

    def cpu_state(self) -> dict:
        """Registers plus the run loop's own state (halted)."""
        regs = self.cpu.registers()
        regs["halted"] = int(self.halted)
        if self.kernel is not None:
            regs["vector"] = self.cpu.vector_state()     # programs keep live values in SSE registers
        return regs

    def cpu_state_schema(self) -> dict[str, Callable[[object], bool]]:
        """Each key of ``cpu_state()`` and a check of its value, for state read from files."""
        schema = {name: _below(limit) for name, limit in CPU_STATE_RANGES.items()}
        if self.kernel is not None:
            schema["vector"] = lambda value: type(value) is bytes and len(value) == VECTOR_STATE_SIZE
        return schema

    def device_state(self) -> dict:
        return {dev.name: dev.state() for dev in self.devices}

    def state_digest(self) -> list:
        """[rip, hash of registers and devices, hash of RAM] — compared by replay."""
        return digest_of(self.cpu_state(), self.device_state(), self.ram_digest())

    def verify_digest(self, recorded: object) -> None:
        """Raise ReplayDivergence naming what differs from a recorded DIGEST payload."""
        if not is_state_digest(recorded):
            self._diverge(EventKind.DIGEST, "malformed digest")
        mine = self.state_digest()
        if recorded != mine:
            self._diverge(EventKind.DIGEST, digest_difference(recorded, mine))

    def check_checkpoint(self, icount: int, cpu: object, devices: object,
                         pages: dict[int, bytes]) -> list:
        """Check a checkpoint's contents fit this machine; return the digest they describe.

        Nothing of the machine changes. The digest is what ``state_digest()`` gives once
        the checkpoint is restored, computed from the contents alone.

        Raises:
            CheckpointMismatch: naming the part of the state that does not fit.
        """
        where = f"checkpoint at icount {icount}"
        schema = self.cpu_state_schema()
        if type(cpu) is not dict or cpu.keys() != schema.keys():
            raise CheckpointMismatch(f"{where}: malformed CPU state (wrong set of registers)")
        for name, check in schema.items():
            if not check(cpu[name]):
                raise CheckpointMismatch(f"{where}: CPU state {name} = {cpu[name]!r:.40} is out of range")
        if type(devices) is not dict or devices.keys() != {dev.name for dev in self.devices}:
            raise CheckpointMismatch(f"{where}: malformed device state (wrong set of devices)")
        try:
            for dev in self.devices:
                dev.check_state(devices[dev.name])
        except BadDeviceState as exc:
            raise CheckpointMismatch(f"{where}: bad device state ({exc})") from None
        last_page = self.mem_size // PAGE
        for number, page in pages.items():
            if type(number) is not int or not RAM_START // PAGE <= number < last_page \
                    or type(page) is not bytes or len(page) != PAGE:
                raise CheckpointMismatch(f"{where}: page {number!r} lies outside RAM or is not "
                                         f"{PAGE} bytes")
        return digest_of_state(cpu, devices, pages, self.mem_size)

    def restore_checkpoint(self, icount: int, cpu: dict, devices: dict, pages: dict[int, bytes],
                           digest: list | None = None) -> None:
        """Put the machine in the state of a recorded checkpoint (trace data: checked first).

        The contents are checked (``check_checkpoint``) and must describe the state whose
        digest the recorder stored with them; after restoring, the machine's own
        ``state_digest()`` must equal it too. Nothing changes unless the first checks pass.

        Args:
            icount: the checkpoint's instruction count.
            cpu: ``cpu_state()`` as recorded: register name -> value, and "halted".
            devices: ``device_state()`` as recorded.
            pages: the whole RAM, page number -> 4096 bytes; missing pages are zero.
            digest: the recorded ``state_digest()``; required.

        Raises:
            CheckpointMismatch: the checkpoint does not fit, or it is not the state its
                digest says.
        """
        where = f"checkpoint at icount {icount}"
        if not is_state_digest(digest):
            raise CheckpointMismatch(f"{where}: it carries no state digest, so it cannot be "
                                     f"entered safely (recorded by an older vmrr?)")
        described = self.check_checkpoint(icount, cpu, devices, pages)
        if described != digest:
            raise CheckpointMismatch(f"{where}: its contents are not the state the recorder "
                                     f"saved: {digest_difference(digest, described)}")
        self._zero_ram()
        ram = self.ram
        for number, page in pages.items():
            ram[number * PAGE:(number + 1) * PAGE] = page
        self.uc.ctl_flush_tb()                       # RAM changed behind Unicorn's back
        uc = self.uc
        vector = cpu.get("vector")
        try:
            uc.reg_write(x86.UC_X86_REG_GDTR, (0, cpu["gdtr_base"], cpu["gdtr_limit"], 0))
            uc.reg_write(x86.UC_X86_REG_IDTR, (0, cpu["idtr_base"], cpu["idtr_limit"], 0))
            for name in ("cr0", "cr3", "cr4", "cs", "ss", "ds", "es", "fs", "gs", "fs_base", "gs_base", "cr2"):
                uc.reg_write(_STATE_REGS[name], cpu[name])
            uc.reg_write_batch([(_STATE_REGS[name], cpu[name]) for name in GPR_NAMES + ("rip", "rflags")])
            if self.kernel is not None:
                self.cpu.set_vector_state(vector)
        except (UcError, OverflowError, TypeError) as exc:
            raise CheckpointMismatch(f"{where}: the CPU refuses its registers ({exc})") from None
        for dev in self.devices:
            dev.load_state(devices[dev.name])
        self.counter.icount = icount
        self.halted = bool(cpu["halted"])
        self.result = None
        restored = self.state_digest()
        if restored != digest:
            raise CheckpointMismatch(f"{where}: the restored machine does not have the recorded "
                                     f"state: {digest_difference(digest, restored)}")

    def _zero_ram(self) -> None:
        """All of RAM to zero without touching it: the kernel drops the pages (no RSS)."""
        try:
            self.ram.madvise(mmap.MADV_DONTNEED)
        except (AttributeError, OSError):
            ctypes.memset(self._ram_ptr, 0, self.mem_size)

    def _diverge(self, kind: EventKind, what: str) -> None:
        raise ReplayDivergence(f"replay diverged at icount {self.icount}: {kind.name}: {what}")


def ram_digest_of(ram, address: int, in_use: int, mem_size: int) -> bytes:
    """``Machine.ram_digest`` of a RAM image: ``ram`` (a buffer of ``mem_size`` bytes at
    ``address``) of which only the first ``in_use`` bytes may be non-zero (the rest is
    taken as zero unread). A recorder's copy of RAM hashes to the machine's digest.

    A MiB of zeros (most of a guest's RAM) is recognised by a comparison, several times
    faster than its crc32, which is a constant."""
    mv, crcs = memoryview(ram), []
    for off in range(0, mem_size, MiB):
        length = min(MiB, mem_size - off)
        if off < in_use and _memcmp(address + off, ctypes.addressof(_ZEROS), length) != 0:
            crcs.append(zlib.crc32(mv[off:off + length]))
        elif length == MiB:
            crcs.append(_ZERO_MIB_CRC)
        else:
            crcs.append(zlib.crc32(bytes(length)))
    return hashlib.blake2b(struct.pack(f"<{len(crcs)}I", *crcs), digest_size=16).digest()


def changed_pages(address: int, other: int | None, start: int, end: int) -> list[int]:
    """Offsets of the pages in [``start``, ``end``) where the memory at ``address`` differs
    from the memory at ``other`` (None: from zeros); both are raw addresses of buffers that
    cover the range. Compared 64 KiB at a time with memcmp, then page by page inside the
    blocks that differ: most of a guest's RAM does not change between two looks (the
    recorder's checkpoints, time travel's snapshots)."""
    zeros = ctypes.addressof(_ZEROS)
    changed: list[int] = []
    for block in range(start, end, _DIFF_BLOCK):
        length = min(_DIFF_BLOCK, end - block)
        if _memcmp(address + block, zeros if other is None else other + block, length) == 0:
            continue
        changed.extend(off for off in range(block, block + length, PAGE)
                       if _memcmp(address + off, zeros if other is None else other + off, PAGE) != 0)
    return changed


def digest_of(regs: dict, devices: dict, ram_hash: bytes) -> list:
    """A state digest from ``cpu_state()``, ``device_state()`` and ``ram_digest()``."""
    blob = msgpack.packb([sorted(regs.items()), devices], use_bin_type=True, unicode_errors="surrogateescape")
    return [regs["rip"], hashlib.blake2b(blob, digest_size=16).digest(), ram_hash]


def digest_difference(recorded: list, mine: list) -> str:
    """'state differs in RAM (...)': which parts of two state digests differ."""
    parts = [name for name, a, b in zip(("rip", "registers/devices", "RAM"), recorded, mine) if a != b]
    rip = f" (recorded rip {recorded[0]:#x}, replay rip {mine[0]:#x})" if recorded[0] != mine[0] else ""
    return f"state differs in {', '.join(parts)}{rip}"


def digest_of_state(cpu: dict, devices: dict, pages: dict[int, bytes], mem_size: int) -> list:
    """``Machine.state_digest()`` of a machine in this state, computed without one.

    RAM is hashed like ``ram_digest``, one MiB at a time; a MiB no page touches is
    all zero, so memory and time scale with the pages, not with ``mem_size``.
    """
    blob = msgpack.packb([sorted(cpu.items()), devices], use_bin_type=True, unicode_errors="surrogateescape")
    by_mib: dict[int, list[int]] = {}
    for number in pages:
        by_mib.setdefault(number * PAGE // MiB, []).append(number)
    crcs = []
    for off in range(0, mem_size, MiB):
        length = min(MiB, mem_size - off)
        numbers = by_mib.get(off // MiB)
        if numbers is None:
            crc = _ZERO_CRC_BY_LEN.get(length)
            if crc is None:
                crc = _ZERO_CRC_BY_LEN[length] = zlib.crc32(bytes(length))
        else:
            buf = bytearray(length)
            for number in numbers:
                start = number * PAGE - off
                buf[start:start + PAGE] = pages[number]
            crc = zlib.crc32(buf)
        crcs.append(crc)
    ram = hashlib.blake2b(struct.pack(f"<{len(crcs)}I", *crcs), digest_size=16).digest()
    return [cpu["rip"], hashlib.blake2b(blob, digest_size=16).digest(), ram]

"""The virtual CPU: a Unicorn x86-64 engine pinned to one model, and interrupt delivery.

Unicorn never walks the guest IDT (exceptions and ``int n`` surface as UC_HOOK_INTR), so
``Cpu.deliver`` does what the hardware would: read the gate, push the interrupt frame on
the current stack, clear IF for interrupt gates, and jump. The guest returns with its
own ``iretq``. See docs/machine.md, "Interrupts and exceptions".
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import ctypes

from unicorn import UC_ARCH_X86, UC_HOOK_INSN, UC_HOOK_INTR, UC_MODE_64, Uc, UcError
from unicorn import x86_const as x86
from unicorn.unicorn_const import UC_CTL_IO_WRITE, UC_CTL_TLB_FLUSH
from unicorn.unicorn_py3 import unicorn as _ucbind

from vmm.icount import InstructionCounter

CPU_MODEL = "qemu64"           # CPUID without RDRAND/RDSEED: see docs/machine.md
# Linux programs: SSE4.2 and POPCNT for glibc's string functions, but no AVX (VEX.128 is
# computed wrong by Unicorn), no XSAVE and no RDRAND (LINUX.md).
LINUX_CPU_MODEL = "westmere"
CPU_MODELS = {"qemu64": x86.UC_CPU_X86_QEMU64, "westmere": x86.UC_CPU_X86_WESTMERE}
SUPPORTED_CPU_MODELS = frozenset(CPU_MODELS)       # what a trace header's cpu_model may name

_CTL_FLUSH_TLB = UC_CTL_TLB_FLUSH | UC_CTL_IO_WRITE << 30    # uc_ctl's UC_CTL_WRITE(.., 0 args)
RFLAGS_TF = 1 << 8
RFLAGS_IF = 1 << 9
RFLAGS_RF = 1 << 16

# Vectors whose frames carry an error code.
ERROR_CODE_VECTORS = frozenset({8, 10, 11, 12, 13, 14, 17, 21, 29, 30})
VECTOR_NAMES = {
    0: "#DE divide error", 1: "#DB debug", 2: "NMI", 3: "#BP breakpoint", 4: "#OF overflow",
    5: "#BR bound range", 6: "#UD invalid opcode", 7: "#NM device not available",
    8: "#DF double fault", 10: "#TS invalid TSS", 11: "#NP segment not present",
    12: "#SS stack fault", 13: "#GP general protection", 14: "#PF page fault",
    16: "#MF x87 error", 17: "#AC alignment check", 18: "#MC machine check",
    19: "#XM SIMD error",
}

GPR_NAMES = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp",
             "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15")
STATE_REG_NAMES = GPR_NAMES + ("rip", "rflags", "cs", "ss", "ds", "es", "fs", "gs",
                               "fs_base", "gs_base", "cr0", "cr2", "cr3", "cr4")
_REG_IDS = {name: getattr(x86, f"UC_X86_REG_{name.upper()}") for name in STATE_REG_NAMES}
_STATE_IDS = [_REG_IDS[name] for name in STATE_REG_NAMES]
_XMM_IDS = [getattr(x86, f"UC_X86_REG_XMM{i}") for i in range(16)]
_FP_IDS = [getattr(x86, f"UC_X86_REG_FP{i}") for i in range(8)]
# The FPU and SSE state: FCW, FSW, the full tag word, FOP, MXCSR, FIP, FDP, the eight
# physical x87 registers (64-bit significand, 16-bit sign and exponent), XMM0-15.
_VECTOR_HEAD = struct.Struct("<HHHHIQQ")
VECTOR_STATE_SIZE = _VECTOR_HEAD.size + 8 * 10 + 16 * 16
# What FNINIT and Linux's initial FPU state (init_fpstate) give: double-extended
# precision, round to nearest, every exception masked; MXCSR likewise; all x87 registers
# empty (the full tag word's 3 per register) and zero; XMM zero.
FCW_INIT, MXCSR_INIT, FPTAG_EMPTY = 0x037F, 0x1F80, 0xFFFF
# Westmere's MXCSR_MASK (what its FXSAVE stores): DAZ and every defined bit.
MXCSR_MASK = 0xFFFF
FXSAVE_SIZE = 512
_FXSAVE_HEAD = struct.Struct("<HHBxHQQII")       # FCW FSW FTW(abridged) FOP FIP FDP MXCSR MXCSR_MASK


_CONTEXT_DATA = 40             # offsetof(struct uc_context, data) on 64-bit hosts (uc_priv.h)
_OLD_EXCEPTION: list[int] = []


def _old_exception_offset() -> int:
    """Where CPUX86State.old_exception sits in a CPU context: the int that goes from -1 to 14
    when a page fault is raised in a probe engine."""
    if not _OLD_EXCEPTION:
        uc = Uc(UC_ARCH_X86, UC_MODE_64)
        uc.mem_map(0, 1 << 20)
        tables = 0x10000
        for level in range(3):
            uc.mem_write(tables + level * 0x1000, struct.pack("<Q", (tables + (level + 1) * 0x1000) | 7))
        uc.mem_write(tables + 0x3000 + 8, struct.pack("<Q", 0x20000 | 1))      # 0x1000 -> 0x20000
        uc.mem_write(0x20000, b"\x48\x8b\x04\x25\x00\x30\x00\x00\xf4")          # mov rax, [0x3000]
        uc.reg_write(x86.UC_X86_REG_CR3, tables)
        uc.reg_write(x86.UC_X86_REG_CR4, 0x620)
        uc.reg_write(x86.UC_X86_REG_CR0, uc.reg_read(x86.UC_X86_REG_CR0) | 0x80010000)

        def data(ctx) -> bytes:
            base = ctypes.cast(ctx.context, ctypes.c_void_p).value
            return ctypes.string_at(base + _CONTEXT_DATA, ctypes.c_size_t.from_address(base).value)

        before = data(uc.context_save())
        uc.hook_add(UC_HOOK_INTR, lambda uc, _n, _ud: uc.emu_stop())
        uc.emu_start(0x1000, 0x2000)
        after = data(uc.context_save())
        found = [i for i in range(0, len(before) - 3, 4)
                 if struct.unpack_from("<i", before, i)[0] == -1 and struct.unpack_from("<i", after, i)[0] == 14]
        if len(found) != 1:
            raise RuntimeError("cannot locate the CPU's exception-in-flight state in this Unicorn build")
        _OLD_EXCEPTION.append(found[0])
    return _OLD_EXCEPTION[0]


def add_insn_hook(uc: Uc, callback, insn: int, *, user_data: int | None = None):
    """A UC_HOOK_INSN hook on ``insn`` with a ctypes callback, through Unicorn's C entry
    point: the binding refuses some instructions (RDTSC), and its Python wrapper costs two
    more frames a call on a hot path (SYSCALL). The caller keeps ``callback`` alive and
    handles its own exceptions; ``callback`` may be a native function's address, with its
    ``user_data``. Returns the hook handle."""
    handle = _ucbind.uc_hook_h()
    status = _ucbind.uclib.uc_hook_add(uc._uch, ctypes.byref(handle), UC_HOOK_INSN, callback,
                                       None if user_data is None else ctypes.c_void_p(user_data),
                                       ctypes.c_uint64(1), ctypes.c_uint64(0), ctypes.c_int(insn))
    if status != 0:
        raise RuntimeError(f"cannot hook instruction {insn}: uc error {status}")
    return handle


class RegisterBatch:
    """Reads or writes a fixed list of 64-bit registers in one ``uc_reg_read_batch`` call.

    The binding's ``reg_read_batch`` picks a value class per register in Python, about
    70 µs for seven registers; the system-call path reads them on every call. This
    keeps the ids and value buffers ready and calls the library directly (about 2 µs)."""

    def __init__(self, uc: Uc, ids: list[int]) -> None:
        from unicorn.unicorn_py3.unicorn import uclib
        n = len(ids)
        self._read, self._write = uclib.uc_reg_read_batch, uclib.uc_reg_write_batch
        self._uch = uc._uch
        self._ids = (ctypes.c_int * n)(*ids)
        self._values = (ctypes.c_uint64 * n)()
        base = ctypes.addressof(self._values)
        self._ptrs = (ctypes.c_void_p * n)(*(base + 8 * i for i in range(n)))
        self._n = ctypes.c_int(n)

    def read(self) -> list[int]:
        if self._read(self._uch, self._ids, self._ptrs, self._n) != 0:
            raise UcError(1)
        return self._values[:]

    def write(self, values: list[int]) -> None:
        self._values[:] = [v & 0xFFFF_FFFF_FFFF_FFFF for v in values]
        if self._write(self._uch, self._ids, self._ptrs, self._n) != 0:
            raise UcError(1)


def vector_name(vector: int) -> str:
    if vector in VECTOR_NAMES:
        return VECTOR_NAMES[vector]
    if vector >= 32:
        return f"interrupt {vector}"
    return f"exception {vector}"


class DeliveryFault(Exception):
    """Delivering an interrupt failed (no usable gate, or the frame could not be pushed)."""

    def __init__(self, vector: int, reason: str, double: bool) -> None:
        super().__init__(f"{vector_name(vector)}: {reason}")
        self.vector = vector
        self.reason = reason
        self.double = double


@dataclass(frozen=True, slots=True)
class Gate:
    offset: int
    selector: int
    gate_type: int
    present: bool


class Cpu:
    """A Unicorn x86-64 engine with the instruction counter attached."""

    def __init__(self, model: str = CPU_MODEL, counter: str = "fast") -> None:
        self.model = model
        self.uc = Uc(UC_ARCH_X86, UC_MODE_64)
        self.uc.ctl_set_cpu_model(CPU_MODELS[model])
        self.counter = InstructionCounter(self.uc, counter)
        self._scratch_context = None           # forget_exception's, kept between calls
        self._old_exception = None

    # -- registers -------------------------------------------------------------------

    def reg(self, name: str) -> int:
        return self.uc.reg_read(_REG_IDS[name])

    def set_reg(self, name: str, value: int) -> None:
        self.uc.reg_write(_REG_IDS[name], value)

    def registers(self) -> dict[str, int]:
        """All architectural registers a report, digest or checkpoint needs."""
        values = self.uc.reg_read_batch(_STATE_IDS)
        regs = dict(zip(STATE_REG_NAMES, values))
        for name in ("gdtr", "idtr"):
            _sel, base, limit, _flags = self.uc.reg_read(getattr(x86, f"UC_X86_REG_{name.upper()}"))
            regs[f"{name}_base"] = base
            regs[f"{name}_limit"] = limit
        return regs

    def flush_tlb(self) -> None:
        """Empty the CPU's TLB (what the guest sees does not change).

        QEMU sizes its TLB only when it is flushed; a program that never changes its
        mappings would keep the first 256 entries for good and walk page tables on most
        accesses to a large working set (a random walk over 4 MiB ran ~6x slower)."""
        status = _ucbind.uclib.uc_ctl(self.uc._uch, ctypes.c_int(_CTL_FLUSH_TLB))
        if status != 0:
            raise UcError(status)

    def forget_exception(self) -> None:
        """Tell the CPU the last exception was handled.

        QEMU remembers the exception in flight (``old_exception``) until it has delivered
        it through the IDT, and turns the next #PF or contributory fault into a double
        fault. Unicorn hands exceptions to the VMM instead, so nothing resets it: a Linux
        program's second page fault would be a #DF. The field is cleared through a CPU
        context (its offset found once, by ``_old_exception_offset``).
        """
        ctx = self._scratch_context
        if ctx is None:
            ctx = self._scratch_context = self.uc.context_save()     # allocated once
            base = ctypes.cast(ctx.context, ctypes.c_void_p).value + _CONTEXT_DATA
            self._old_exception = ctypes.c_int32.from_address(base + _old_exception_offset())
        else:
            _ucbind.uclib.uc_context_save(self.uc._uch, ctx.context)
        self._old_exception.value = -1
        _ucbind.uclib.uc_context_restore(self.uc._uch, ctx.context)

    def vector_state(self) -> bytes:
        """The whole x87, SSE and MXCSR state (VECTOR_STATE_SIZE bytes): what checkpoints,
        digests and thread switches add for Linux programs, which keep live values there
        (a long double computation in x87 registers, doubles in XMM)."""
        uc = self.uc
        head = _VECTOR_HEAD.pack(uc.reg_read(x86.UC_X86_REG_FPCW), uc.reg_read(x86.UC_X86_REG_FPSW),
                                 uc.reg_read(x86.UC_X86_REG_FPTAG), uc.reg_read(x86.UC_X86_REG_FOP),
                                 uc.reg_read(x86.UC_X86_REG_MXCSR), uc.reg_read(x86.UC_X86_REG_FIP),
                                 uc.reg_read(x86.UC_X86_REG_FDP))
        fp = b"".join(struct.pack("<QH", *uc.reg_read(reg)) for reg in _FP_IDS)
        return head + fp + b"".join(uc.reg_read(reg).to_bytes(16, "little") for reg in _XMM_IDS)

    def set_vector_state(self, raw: bytes) -> None:
        """Load a ``vector_state()``."""
        uc = self.uc
        fpcw, fpsw, fptag, fop, mxcsr, fip, fdp = _VECTOR_HEAD.unpack_from(raw, 0)
        at = _VECTOR_HEAD.size
        for reg in _FP_IDS:
            uc.reg_write(reg, struct.unpack_from("<QH", raw, at))
            at += 10
        # FSW carries TOP; the tag word only says which registers are empty (Unicorn
        # works out the other tags from the register contents, as a real FXRSTOR does).
        uc.reg_write(x86.UC_X86_REG_FPSW, fpsw)
        uc.reg_write(x86.UC_X86_REG_FPTAG, fptag)
        uc.reg_write(x86.UC_X86_REG_FPCW, fpcw)
        uc.reg_write(x86.UC_X86_REG_FOP, fop)
        uc.reg_write(x86.UC_X86_REG_FIP, fip)
        uc.reg_write(x86.UC_X86_REG_FDP, fdp)
        uc.reg_write(x86.UC_X86_REG_MXCSR, mxcsr)
        for reg in _XMM_IDS:
            uc.reg_write(reg, int.from_bytes(raw[at:at + 16], "little"))
            at += 16

    def reset_fpu(self) -> None:
        """The FPU as Linux starts a process and enters a signal handler (its init_fpstate:
        FNINIT's x87 state, MXCSR 0x1F80, every x87 and XMM register zero)."""
        uc = self.uc
        for reg in _FP_IDS:
            uc.reg_write(reg, (0, 0))
        for reg in _XMM_IDS:
            uc.reg_write(reg, 0)
        for reg, value in ((x86.UC_X86_REG_FPSW, 0), (x86.UC_X86_REG_FPTAG, FPTAG_EMPTY),
                           (x86.UC_X86_REG_FPCW, FCW_INIT), (x86.UC_X86_REG_FOP, 0), (x86.UC_X86_REG_FIP, 0),
                           (x86.UC_X86_REG_FDP, 0), (x86.UC_X86_REG_MXCSR, MXCSR_INIT)):
            uc.reg_write(reg, value)

    def fxsave(self) -> bytes:
        """The 512-byte FXSAVE image (64-bit form) of the FPU state, as this CPU model's
        FXSAVE stores it: ST0-7 in stack order (ST(i) is physical register (TOP+i) mod 8),
        the abridged tag word (bit i set: physical register i not empty), and FIP, FDP
        and FOP as the CPU tracks them (an Intel CPU stores them always). Bytes 464-511
        are left zero: they belong to software (Linux's signal frames use them)."""
        uc = self.uc
        fsw, fptag = uc.reg_read(x86.UC_X86_REG_FPSW), uc.reg_read(x86.UC_X86_REG_FPTAG)
        abridged = sum(1 << i for i in range(8) if (fptag >> 2 * i) & 3 != 3)
        head = _FXSAVE_HEAD.pack(uc.reg_read(x86.UC_X86_REG_FPCW), fsw, abridged, uc.reg_read(x86.UC_X86_REG_FOP),
                                 uc.reg_read(x86.UC_X86_REG_FIP), uc.reg_read(x86.UC_X86_REG_FDP),
                                 uc.reg_read(x86.UC_X86_REG_MXCSR), MXCSR_MASK)
        top = (fsw >> 11) & 7
        st = b"".join(struct.pack("<QH6x", *uc.reg_read(_FP_IDS[(top + i) & 7])) for i in range(8))
        xmm = b"".join(uc.reg_read(reg).to_bytes(16, "little") for reg in _XMM_IDS)
        return (head + st + xmm).ljust(FXSAVE_SIZE, b"\0")

    def fxrstor(self, image: bytes) -> None:
        """Load a 512-byte FXSAVE image, as FXRSTOR does (MXCSR's reserved bits, which
        would make FXRSTOR fault, are cleared first: Linux sanitises them so)."""
        uc = self.uc
        fcw, fsw, abridged, fop, fip, fdp, mxcsr, _mask = _FXSAVE_HEAD.unpack_from(image, 0)
        top = (fsw >> 11) & 7
        for i in range(8):
            uc.reg_write(_FP_IDS[(top + i) & 7], struct.unpack_from("<QH", image, 32 + 16 * i))
        uc.reg_write(x86.UC_X86_REG_FPSW, fsw)
        # Only "empty or not" is in the image; Unicorn derives the rest from the values.
        uc.reg_write(x86.UC_X86_REG_FPTAG, sum(3 << 2 * i for i in range(8) if not abridged >> i & 1))
        for reg, value in ((x86.UC_X86_REG_FPCW, fcw), (x86.UC_X86_REG_FOP, fop & 0x7FF),
                           (x86.UC_X86_REG_FIP, fip), (x86.UC_X86_REG_FDP, fdp),
                           (x86.UC_X86_REG_MXCSR, mxcsr & MXCSR_MASK)):
            uc.reg_write(reg, value)
        for i, reg in enumerate(_XMM_IDS):
            uc.reg_write(reg, int.from_bytes(image[160 + 16 * i:176 + 16 * i], "little"))

    @property
    def interrupts_enabled(self) -> bool:
        return bool(self.uc.reg_read(x86.UC_X86_REG_RFLAGS) & RFLAGS_IF)

    # -- delivery --------------------------------------------------------------------

    def read_gate(self, vector: int) -> Gate | None:
        """The IDT gate for ``vector``, or None when the IDT does not reach it or RAM does not hold it."""
        _sel, base, limit, _flags = self.uc.reg_read(x86.UC_X86_REG_IDTR)
        if vector * 16 + 15 > limit:
            return None
        try:
            raw = self.uc.mem_read(base + vector * 16, 16)
        except UcError:
            return None
        lo, hi = struct.unpack("<QQ", raw)
        offset = (lo & 0xFFFF) | (((lo >> 48) & 0xFFFF) << 16) | ((hi & 0xFFFFFFFF) << 32)
        attrs = (lo >> 40) & 0xFF
        return Gate(offset, (lo >> 16) & 0xFFFF, attrs & 0xF, bool(attrs & 0x80))

    def deliver(self, vector: int, *, return_rip: int, error_code: int | None = None) -> None:
        """Enter the guest's handler for ``vector`` as the CPU would.

        Args:
            vector: 0-255.
            return_rip: the RIP pushed in the frame (the faulting instruction for a
                fault, the next one for a trap or an external interrupt).
            error_code: pushed below RIP when not None.

        Raises:
            DeliveryFault: no present interrupt/trap gate, or the frame could not be
                written (``double`` is set then: the delivery itself faulted).
        """
        gate = self.read_gate(vector)
        if gate is None or not gate.present or gate.gate_type not in (0xE, 0xF):
            raise DeliveryFault(vector, "no present interrupt or trap gate in the IDT", double=False)
        uc = self.uc
        rsp, rflags, cs, ss = uc.reg_read_batch(
            [x86.UC_X86_REG_RSP, x86.UC_X86_REG_RFLAGS, x86.UC_X86_REG_CS, x86.UC_X86_REG_SS])
        frame = [return_rip, cs, rflags, rsp, ss]
        if error_code is not None:
            frame.insert(0, error_code)
        new_rsp = (rsp & ~0xF) - 8 * len(frame)
        try:
            uc.mem_write(new_rsp, struct.pack(f"<{len(frame)}Q", *frame))
        except UcError:
            raise DeliveryFault(vector, f"cannot push the interrupt frame at {new_rsp:#x}",
                                double=True) from None
        new_flags = rflags & ~(RFLAGS_TF | RFLAGS_RF)
        if gate.gate_type == 0xE:
            new_flags &= ~RFLAGS_IF
        if gate.selector != cs:
            uc.reg_write(x86.UC_X86_REG_CS, gate.selector)
        uc.reg_write_batch([(x86.UC_X86_REG_RSP, new_rsp), (x86.UC_X86_REG_RFLAGS, new_flags),
                            (x86.UC_X86_REG_RIP, gate.offset)])

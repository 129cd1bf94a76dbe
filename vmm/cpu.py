"""The virtual CPU: a Unicorn x86-64 engine pinned to one model, and interrupt delivery.

Unicorn never walks the guest IDT (exceptions and ``int n`` surface as UC_HOOK_INTR), so
``Cpu.deliver`` does what the hardware would: read the gate, push the interrupt frame on
the current stack, clear IF for interrupt gates, and jump. The guest returns with its
own ``iretq``. See docs/machine.md, "Interrupts and exceptions".
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from unicorn import UC_ARCH_X86, UC_MODE_64, Uc, UcError
from unicorn import x86_const as x86

from vmm.icount import InstructionCounter

CPU_MODEL = "qemu64"           # CPUID without RDRAND/RDSEED: see docs/machine.md
SUPPORTED_CPU_MODELS = frozenset({CPU_MODEL})      # what a trace header's cpu_model may name
_UC_CPU_MODEL = x86.UC_CPU_X86_QEMU64

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

    def __init__(self) -> None:
        self.uc = Uc(UC_ARCH_X86, UC_MODE_64)
        self.uc.ctl_set_cpu_model(_UC_CPU_MODEL)
        self.counter = InstructionCounter(self.uc)

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

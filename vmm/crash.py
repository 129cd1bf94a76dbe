"""Crash reports: what stopped the VM, where, and what the code and registers looked like."""

from __future__ import annotations

from dataclasses import dataclass, field

import capstone
from unicorn import UcError

from vmm.symbols import SymbolTable

_CS = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)


class CrashKind:
    UNMAPPED = "unmapped access"
    UNHANDLED = "unhandled exception"
    DOUBLE_FAULT = "double fault"


@dataclass
class CrashReport:
    """A guest crash: kind, vector (if an exception), RIP, icount, and the evidence.

    Attributes:
        kind: one of CrashKind.
        vector: the exception vector, or None for an unmapped access.
        rip: the instruction that faulted.
        icount: instructions begun when it stopped (the faulting one included).
        detail: one line on what happened (the address and access for unmapped memory).
        registers: all registers at the crash.
        disassembly: lines around RIP, the faulting one marked.
    """

    kind: str
    vector: int | None
    rip: int
    icount: int
    detail: str
    registers: dict[str, int] = field(default_factory=dict)
    disassembly: list[str] = field(default_factory=list)
    fault_address: int | None = None
    signal: int | None = None              # a Linux program: the signal that killed it
    pid: int | None = None                 # a Linux program: the process that crashed
    program: str | None = None             # ... and the program it ran (its path)

    def summary(self) -> str:
        where = f"rip={self.rip:#x} icount={self.icount}"
        if self.signal is not None:
            return f"program crashed: {self.kind} at {where}: {self.detail}"
        vec = f" vector {self.vector}" if self.vector is not None else ""
        return f"guest crashed: {self.kind}{vec} at {where}: {self.detail}"

    def format(self) -> str:
        lines = [self.summary()]
        if self.pid is not None:
            lines.append(f"in process {self.pid} ({self.program})")
        lines += ["", "code:"]
        lines += [f"  {line}" for line in self.disassembly]
        lines += ["", "registers:"]
        regs = self.registers
        gprs = [n for n in ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp",
                            "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rip", "rflags")
                if n in regs]
        for i in range(0, len(gprs), 4):
            lines.append("  " + "  ".join(f"{n:>6}={regs[n]:016x}" for n in gprs[i:i + 4]))
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"reason": "crash", "kind": self.kind, "vector": self.vector, "rip": self.rip,
                "icount": self.icount, "detail": self.detail, "fault_address": self.fault_address,
                **({"signal": self.signal} if self.signal is not None else {}),
                **({"pid": self.pid, "program": self.program} if self.pid is not None else {})}


def disassemble_around(read, rip: int, symbols: SymbolTable, before: int = 6, after: int = 4) -> list[str]:
    """Disassemble the instructions around ``rip``, syncing from its function's start.

    Args:
        read: (address, size) -> bytes, or None where nothing is mapped.
    """
    sym = symbols.lookup(rip)
    start = sym.address if sym is not None and 0 <= rip - sym.address < 4096 else max(0, rip - 48)
    code = read(start, rip - start + 16 * (after + 1))
    if code is None:
        code = read(rip, 16 * (after + 1))
        start = rip
        if code is None:
            code = read(rip, 1)
            if code is None:
                return [f"=> {rip:#x}: <not in RAM>"]
    insns = list(_CS.disasm(code, start))
    index = next((i for i, ins in enumerate(insns) if ins.address == rip), None)
    if index is None:                         # could not sync: start at rip itself
        insns = list(_CS.disasm(code[rip - start:], rip))
        index = 0
    lines = []
    for ins in insns[max(0, index - before): index + after + 1]:
        mark = "=>" if ins.address == rip else "  "
        lines.append(f"{mark} {ins.address:#x} <{symbols.describe(ins.address)}>: "
                     f"{ins.mnemonic} {ins.op_str}".rstrip())
    return lines

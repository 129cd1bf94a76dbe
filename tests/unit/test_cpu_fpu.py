"""The FPU state vmm.cpu.Cpu saves, restores and writes as an FXSAVE image.

Signal frames (Cpu.fxsave / Cpu.fxrstor) and checkpoints, digests and thread switches
(Cpu.vector_state / set_vector_state) must hold all of it — x87 registers with their
exponents, TOP, the tags, control words, XMM — or a long double computation continues
with different values. The image is checked against the CPU's own FXSAVE instruction.
"""

from __future__ import annotations

import struct

from unicorn import x86_const as x86

from vmm.cpu import FXSAVE_SIZE, LINUX_CPU_MODEL, VECTOR_STATE_SIZE, Cpu

CODE, DATA = 0x1000, 0x3000
VALUES = struct.pack("<dddd", 1.0 / 3.0, -2.5e300, 5e-324, 7.0)


def _run(cpu: Cpu, start: int, end: int) -> None:
    """Execute [start, end) through the CPU's instruction counter (which stops the CPU at
    its limit, as the machine's run loop does)."""
    cpu.uc.reg_write(x86.UC_X86_REG_RIP, start)
    cpu.counter.limit = cpu.counter.icount + 1000
    cpu.counter.run(end)
    assert cpu.uc.reg_read(x86.UC_X86_REG_RIP) == end


def _fpu_busy_cpu() -> Cpu:
    """A CPU with four values on the x87 stack (TOP 4), FCW and MXCSR changed, XMM set."""
    cpu = Cpu(LINUX_CPU_MODEL)
    uc = cpu.uc
    uc.mem_map(0, 0x10000)
    uc.mem_write(DATA, VALUES)
    uc.mem_write(DATA + 0x100, struct.pack("<HI", 0x0E7F, 0x7FA0))
    code = bytes.fromhex(
        "d92c2500310000"          # fldcw [0x3100]
        "0fae142502310000"        # ldmxcsr [0x3102]
        "dd042500300000"          # fld qword [0x3000]
        "dd042508300000"          # fld qword [0x3008]
        "dd042510300000"          # fld qword [0x3010]
        "dd042518300000"          # fld qword [0x3018]
        "66480f6ec0"              # movq xmm0, rax
        "66490f6ef8")             # movq xmm7, r8
    uc.mem_write(CODE, code)
    cpu.reset_fpu()
    uc.reg_write(x86.UC_X86_REG_RAX, 0x1122334455667788)
    uc.reg_write(x86.UC_X86_REG_R8, 0x99AABBCCDDEEFF00)
    uc.reg_write(x86.UC_X86_REG_CR4, uc.reg_read(x86.UC_X86_REG_CR4) | 0x600)
    _run(cpu, CODE, CODE + len(code))
    return cpu


def _guest_fxsave(cpu: Cpu) -> bytes:
    """What the CPU's own FXSAVE instruction stores."""
    uc = cpu.uc
    uc.mem_write(CODE + 0x800, bytes.fromhex("0fae042500400000"))     # fxsave [0x4000]
    _run(cpu, CODE + 0x800, CODE + 0x808)
    return bytes(uc.mem_read(0x4000, FXSAVE_SIZE))


def _x87(cpu: Cpu) -> list:
    uc = cpu.uc
    return [uc.reg_read(getattr(x86, f"UC_X86_REG_{n}")) for n in
            ("FPCW", "FPSW", "FPTAG", "MXCSR", *(f"FP{i}" for i in range(8)), "XMM0", "XMM7")]


def test_fxsave_image_is_the_cpus_own():
    cpu = _fpu_busy_cpu()
    image = cpu.fxsave()
    own = _guest_fxsave(cpu)
    assert len(image) == FXSAVE_SIZE
    assert struct.unpack_from("<HHB", image) == (0x0E7F, 4 << 11, 0xF0)    # TOP 4; R4-R7 in use
    # FCW, FSW, abridged tag word, MXCSR, MXCSR_MASK, ST0-7, XMM0-15 as FXSAVE stores them
    # (FIP/FDP/FOP: Unicorn's FXSAVE stores only FIP; ours stores what the CPU tracks).
    for lo, hi in ((0, 5), (24, 32), (32, 160), (160, 416)):
        assert image[lo:hi] == own[lo:hi], (lo, hi)
    assert struct.unpack_from("<Q", image, 8)[0] == struct.unpack_from("<Q", own, 8)[0]       # FIP
    st0 = struct.unpack_from("<QH", image, 32)
    assert st0 == (0xE000000000000000, 0x4001)                                                # 7.0


def test_fxrstor_loads_an_edited_image():
    cpu = _fpu_busy_cpu()
    image = bytearray(cpu.fxsave())
    struct.pack_into("<QH", image, 32 + 16, 0xC000000000000000, 0x4000)     # ST1 := 3.0
    struct.pack_into("<I", image, 24, 0x5FA0)                                # MXCSR: round up
    image[4] = 0xE0                                                          # R4 (ST0) empty
    other = Cpu(LINUX_CPU_MODEL)
    other.uc.mem_map(0, 0x10000)
    other.reset_fpu()
    other.fxrstor(bytes(image))
    assert other.fxsave() == bytes(image)
    assert _x87(other)[2] & 0x300 == 0x300, "R4 is empty after the load"


def test_vector_state_round_trips_the_x87_registers():
    cpu = _fpu_busy_cpu()
    raw = cpu.vector_state()
    assert len(raw) == VECTOR_STATE_SIZE
    other = Cpu(LINUX_CPU_MODEL)
    other.uc.mem_map(0, 0x10000)
    other.set_vector_state(raw)
    assert _x87(other) == _x87(cpu)
    assert other.vector_state() == raw
    # ...and computes on with them: faddp adds ST0 (7.0) and ST1 (5e-324) as before.
    for c in (cpu, other):
        c.uc.mem_write(CODE + 0x900, bytes.fromhex("dec1" "dd1c2500500000"))    # faddp; fstp qword [0x5000]
        _run(c, CODE + 0x900, CODE + 0x909)
    assert cpu.uc.mem_read(0x5000, 8) == other.uc.mem_read(0x5000, 8)
    assert _x87(other) == _x87(cpu)


def test_reset_fpu_is_linuxs_initial_state():
    cpu = _fpu_busy_cpu()
    cpu.reset_fpu()
    image = _guest_fxsave(cpu)
    assert struct.unpack_from("<HHBxHQQI", image) == (0x037F, 0, 0, 0, 0, 0, 0x1F80)
    assert image[32:416] == bytes(384)
    assert cpu.uc.reg_read(x86.UC_X86_REG_FPTAG) == 0xFFFF

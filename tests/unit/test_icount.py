"""The exact instruction count: tiny guests assembled at test time, run in-process.

Each guest is a few instructions whose execution we can count by hand, so the VMM's
icount at power-off, at an instruction limit, and inside a device callback can be
compared with a straight count.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from unicorn import x86_const as x86

from trace_format.events import EventKind
from vmm.boundary import MAX_SLICE, LiveBoundary
from vmm.loader import parse_image
from vmm.machine import Machine, Outcome

pytestmark = pytest.mark.timeout(60)

BASE = 0x100000
MEM = 4 << 20


@pytest.fixture(scope="module")
def assemble(tmp_path_factory):
    """assemble(source) -> GuestImage linked at 0x100000."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    workdir = tmp_path_factory.mktemp("asm")
    built = {}

    def build(source: str):
        if source not in built:
            n = len(built)
            src, elf = workdir / f"g{n}.S", workdir / f"g{n}.elf"
            src.write_text(".globl _start\n_start:\n" + source)
            subprocess.run(["gcc", "-nostdlib", "-static", "-no-pie", f"-Wl,-Ttext={BASE:#x}",
                            "-Wl,--build-id=none", str(src), "-o", str(elf)],
                           check=True, capture_output=True, timeout=60)
            built[source] = parse_image(elf.name, elf.read_bytes(), where=str(elf))
        return built[source]

    return build


class Booted:
    """A Machine on a LiveBoundary whose tap keeps every (icount, kind, payload)."""

    def __init__(self, image) -> None:
        self.machine = Machine(image, mem_size=MEM)
        self.boundary = LiveBoundary(self.machine)
        self.machine.connect(self.boundary)
        self.log: list[tuple[int, EventKind, object]] = []
        self.boundary.tap = lambda icount, kind, payload: self.log.append((icount, kind, payload))

    def run(self, **kwargs):
        return self.machine.run(**kwargs)

    def reg(self, reg: int) -> int:
        return self.machine.uc.reg_read(reg)

    def close(self) -> None:
        self.boundary.close()


@pytest.fixture
def boot():
    machines: list[Booted] = []

    def start(image) -> Booted:
        m = Booted(image)
        machines.append(m)
        return m

    yield start
    for m in machines:
        m.close()


# mov ecx, K (5 bytes) ; dec ecx (2) ; jnz (2) ; hlt (1)
LOOP = """
    mov $%d, %%ecx
1:  dec %%ecx
    jnz 1b
    hlt
"""
DEC, JNZ, HLT_AT = BASE + 5, BASE + 7, BASE + 9


def loop_model(k: int, n: int) -> tuple[int, int]:
    """After n instructions of LOOP(k): (RIP of the next instruction, ECX)."""
    if n == 0:
        return BASE, 0
    body = n - 1                      # loop instructions run after the mov
    if body >= 2 * k:
        return HLT_AT, 0
    return (DEC if body % 2 == 0 else JNZ), k - (body + 1) // 2


@pytest.mark.parametrize("k", [1, 10, 1000, MAX_SLICE + 12345])
def test_loop_powers_off_at_the_exact_icount(assemble, boot, k):
    m = boot(assemble(LOOP % k))
    result = m.run()
    assert result.outcome is Outcome.POWER_OFF
    assert result.exit_status == 0                   # HLT with IF=0: nothing could wake it
    assert result.icount == 1 + 2 * k + 1            # mov, k x (dec, jnz), hlt
    assert m.machine.icount == result.icount
    assert m.reg(x86.UC_X86_REG_RIP) == HLT_AT + 1   # HLT leaves RIP after itself
    assert m.log == []                               # nothing crossed the boundary


@pytest.mark.parametrize("n", [1, 2, 3, 4, 7, 20, 21, 2 * MAX_SLICE + 1, 2 * MAX_SLICE + 2])
def test_instruction_limit_stops_exactly(assemble, boot, n):
    k = MAX_SLICE + 10                               # long enough to cross slices
    m = boot(assemble(LOOP % k))
    result = m.run(max_instructions=n)
    assert result.outcome is Outcome.LIMIT
    assert result.icount == n
    rip, ecx = loop_model(k, n)
    assert m.reg(x86.UC_X86_REG_RIP) == rip
    assert m.reg(x86.UC_X86_REG_ECX) == ecx


def test_limit_on_the_hlt_itself_powers_off(assemble, boot):
    m = boot(assemble(LOOP % 10))
    result = m.run(max_instructions=22)              # the 22nd instruction is the HLT
    assert (result.outcome, result.icount) == (Outcome.POWER_OFF, 22)
    m2 = boot(assemble(LOOP % 10))
    result = m2.run(max_instructions=21)
    assert (result.outcome, result.icount) == (Outcome.LIMIT, 21)
    assert m2.reg(x86.UC_X86_REG_RIP) == HLT_AT


ENTROPY_LOOP = """
    mov $%d, %%ecx
1:  in $0x90, %%eax
    add %%eax, %%ebx
    dec %%ecx
    jnz 1b
    hlt
"""


@pytest.mark.parametrize("k", [1, 5, 300])
def test_icount_inside_a_device_callback(assemble, boot, k):
    m = boot(assemble(ENTROPY_LOOP % k))
    result = m.run()
    assert result.outcome is Outcome.POWER_OFF
    assert result.icount == 1 + 4 * k + 1
    # The i-th `in` (0-based) is instruction number 2 + 4*i: icount counts it as begun.
    assert [(icount, kind) for icount, kind, _ in m.log] == \
        [(2 + 4 * i, EventKind.ENTROPY) for i in range(k)]
    total = sum(value for _, _, value in m.log) & 0xFFFFFFFF
    assert m.reg(x86.UC_X86_REG_EBX) == total        # the guest saw what was logged


def test_rdtsc_is_intercepted_at_its_icount(assemble, boot):
    m = boot(assemble("""
        nop
        nop
        rdtsc
        mov %eax, %ebx
        mov %edx, %esi
        rdtsc
        hlt
    """))
    result = m.run()
    assert (result.outcome, result.icount) == (Outcome.POWER_OFF, 7)
    assert [(icount, kind) for icount, kind, _ in m.log] == [(3, EventKind.RDTSC), (6, EventKind.RDTSC)]
    first, second = (value for _, _, value in m.log)
    assert second >= first
    assert m.reg(x86.UC_X86_REG_RBX) | m.reg(x86.UC_X86_REG_RSI) << 32 == first
    assert m.reg(x86.UC_X86_REG_RAX) | m.reg(x86.UC_X86_REG_RDX) << 32 == second


def test_fault_icount_counts_the_faulting_instruction(assemble, boot):
    m = boot(assemble("""
        nop
        nop
        movq $1, 0x8
        hlt
    """))
    result = m.run()
    assert result.outcome is Outcome.CRASH
    assert result.icount == 3
    assert result.crash.kind == "unmapped access"
    assert result.crash.rip == BASE + 2
    assert result.crash.fault_address == 0x8


def test_exception_without_idt_crashes_at_its_icount(assemble, boot):
    m = boot(assemble("""
        nop
        ud2
        hlt
    """))
    result = m.run()
    assert result.outcome is Outcome.CRASH
    assert (result.icount, result.crash.vector, result.crash.rip) == (2, 6, BASE + 1)
    assert result.crash.kind == "unhandled exception"


def test_power_port_exit_status(assemble, boot):
    m = boot(assemble("""
        mov $42, %eax
        out %eax, $0xf4
        jmp .
    """))
    result = m.run()
    assert (result.outcome, result.exit_status, result.icount) == (Outcome.POWER_OFF, 42, 2)


def test_same_guest_same_count_every_run(assemble, boot):
    image = assemble(ENTROPY_LOOP % 50)
    runs = [boot(image).run().icount for _ in range(3)]
    assert runs == [202] * 3


@settings(max_examples=40, deadline=None)
@given(n=st.integers(min_value=0, max_value=2 * 300 + 2))
def test_instruction_limit_matches_a_straight_count(assemble, n):
    """Any limit, on a loop of 300 iterations: stops with icount n, at the model's RIP."""
    m = Booted(assemble(LOOP % 300))
    try:
        result = m.run(max_instructions=n)
        if n == 2 * 300 + 2:
            assert result.outcome is Outcome.POWER_OFF
        else:
            assert result.outcome is Outcome.LIMIT
            assert (m.reg(x86.UC_X86_REG_RIP), m.reg(x86.UC_X86_REG_ECX)) == loop_model(300, n)
        assert result.icount == n
    finally:
        m.close()

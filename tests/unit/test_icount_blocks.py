"""Block-mode counting is the per-instruction counter, bit for bit.

The counter counts whole translated blocks and runs per instruction only where it must
(vmm/icount.py). Each property here runs the same guest twice — once in block mode (the
default) and once with ``counter.set_exact(True)`` (a native hook on every instruction,
the counter vmrr had before) — and compares icount, RIP, registers, RAM and every event
the boundary saw, at random stop points: in the middle of blocks, in the middle of
``rep movsb``, right after port I/O and RDTSC, at faults and exceptions mid-block.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recorder import RecordSession
from replay import Replay
from trace_format.events import EventKind
from vmm import icount as icount_mod
from vmm.boundary import LiveBoundary
from vmm.loader import load_image, parse_image
from vmm.machine import Machine, Outcome

pytestmark = pytest.mark.timeout(300)

BASE = 0x100000
MEM = 4 << 20
SCRATCH = 0x200000             # a RAM buffer the programs read and write
IMAGES = Path(__file__).resolve().parents[2] / "guests" / "images"


class DeterministicBoundary(LiveBoundary):
    """Live boundary whose synchronous answers depend on the icount only (so two runs agree)."""

    def rdtsc(self, icount: int) -> int:
        value = icount * 7 + 3
        if self.tap:
            self.tap(icount, EventKind.RDTSC, value)
        return value

    def clock_ns(self, icount: int, which: int) -> int:
        value = icount * 11 + which
        if self.tap:
            self.tap(icount, EventKind.CLOCK, value)
        return value

    def entropy32(self, icount: int) -> int:
        value = (icount * 2654435761) & 0xFFFFFFFF
        if self.tap:
            self.tap(icount, EventKind.ENTROPY, value)
        return value


def boot(image, *, exact: bool, boot_args: str = "", mem: int = MEM):
    machine = Machine(image, mem_size=mem, boot_args=boot_args)
    boundary = DeterministicBoundary(machine)
    machine.connect(boundary)
    log: list = []
    boundary.tap = lambda icount, kind, payload: log.append((icount, kind, payload))
    if exact:
        machine.counter.set_exact(True)
    return machine, boundary, log


def observe(machine, log, result) -> dict:
    crash = result.crash
    return {"outcome": result.outcome, "icount": result.icount, "machine_icount": machine.icount,
            "last_pc": machine.counter.last_pc, "registers": machine.cpu.registers(),
            "ram": machine.ram_digest(), "events": list(log),
            "crash": None if crash is None else (crash.kind, crash.vector, crash.rip, crash.icount)}


def run_both(image, stops: list[int], **kw) -> tuple[list[dict], list[dict]]:
    """Run block mode and exact mode through the same stop points; observations at each."""
    seen = []
    for exact in (False, True):
        machine, boundary, log = boot(image, exact=exact, **kw)
        try:
            marks = []
            for stop in stops:
                result = machine.run(max_instructions=stop)
                marks.append(observe(machine, log, result))
                if result.outcome is not Outcome.LIMIT:
                    break
            seen.append(marks)
        finally:
            boundary.close()
    return seen[0], seen[1]


@pytest.fixture(scope="module")
def assemble(tmp_path_factory):
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    workdir = tmp_path_factory.mktemp("asm_blocks")
    built: dict[str, object] = {}

    def build(source: str):
        if source not in built:
            n = len(built)
            src, elf = workdir / f"b{n}.S", workdir / f"b{n}.elf"
            src.write_text(".globl _start\n_start:\n" + source)
            subprocess.run(["gcc", "-nostdlib", "-static", "-no-pie", f"-Wl,-Ttext={BASE:#x}",
                            "-Wl,--build-id=none", str(src), "-o", str(elf)],
                           check=True, capture_output=True, timeout=60)
            built[source] = parse_image(elf.name, elf.read_bytes(), where=str(elf))
        return built[source]

    return build


# -- random programs -------------------------------------------------------------------

STRAIGHT = [
    "add %rax, %rbx", "xor $0x55, %eax", "lea 3(%rbx,%rax,2), %rdx", "imul $7, %rdx, %rsi",
    "inc %rdi", "shl $3, %rax", "mov (%r14), %r8", "mov %rax, 8(%r14)", "add %rbx, 16(%r14)",
    "push %rax", "pop %r9", "nop", "cmp %rax, %rbx", "setne %cl", "cmovz %rdx, %rax",
    "neg %rbx", "bswap %rsi", "in $0x90, %eax", "rdtsc", "out %al, $0x80", "rdtscp",
    "mov %r8, %r10", "sub $1, %rdx", "pushf\npop %r11", "lahf", "sahf", "stc", "cmc",
    "adc %rax, (%r14)", "cmpsb",
]

SEGMENT = st.one_of(
    st.lists(st.sampled_from(STRAIGHT), min_size=1, max_size=12).map(lambda xs: ("straight", xs)),
    st.tuples(st.integers(1, 40), st.lists(st.sampled_from(STRAIGHT), min_size=1, max_size=6))
      .map(lambda t: ("loop", t)),
    st.integers(0, 70).map(lambda n: ("rep", n)),
    st.just(("call", None)),
)
ENDING = st.sampled_from(["hlt", "ud2", "movq $1, 0x8", "div %r13", "jmp *%r13"])


def program(segments, ending: str) -> str:
    lines = [f"mov ${SCRATCH:#x}, %r14", "xor %r13, %r13", "mov $1, %rax", "mov $2, %rbx"]
    label = 0
    for kind, arg in segments:
        if kind == "straight":
            lines += arg
        elif kind == "loop":
            count, body = arg
            label += 1
            lines += [f"mov ${count}, %r15d", f"L{label}:", *body, "dec %r15d", f"jnz L{label}"]
        elif kind == "rep":
            lines += [f"lea 64(%r14), %rsi", "lea 512(%r14), %rdi", f"mov ${arg}, %ecx",
                      "cld", "rep movsb", "add %rcx, %rax"]
        else:
            label += 1
            lines += [f"call F{label}", "add $5, %rax", f"jmp E{label}",
                      f"F{label}:", "add $9, %rbx", "ret", f"E{label}:"]
    lines.append(ending)
    lines.append("hlt")
    return "\n".join(lines) + "\n"


@settings(max_examples=35, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(segments=st.lists(SEGMENT, min_size=1, max_size=6), ending=ENDING,
       cuts=st.lists(st.integers(1, 400), min_size=1, max_size=6), data=st.data())
def test_random_programs_stop_alike_in_block_and_exact_mode(assemble, segments, ending, cuts, data):
    image = assemble(program(segments, ending))
    machine, boundary, log = boot(image, exact=True)
    total = machine.run().icount                          # how long the program runs
    boundary.close()
    stops = sorted({min(c, total + 1) for c in cuts} | {data.draw(st.integers(0, total + 1))})
    stops.append(total + 5)
    block, exact = run_both(image, stops)
    assert block == exact


@pytest.mark.parametrize("length", [0, 1, 2, 5, 17, 64])
def test_rep_movsb_counts_each_iteration_and_stops_inside_it(assemble, length):
    image = assemble(f"""
        mov ${SCRATCH:#x}, %rsi
        lea 256(%rsi), %rdi
        mov ${length}, %ecx
        nop
        rep movsb
        nop
        hlt
    """)
    # 3 movs + nop; the rep begins once per iteration and once more to find RCX = 0; nop, hlt
    total = 4 + length + 1 + 2
    for stop in range(0, total + 1):
        block, exact = run_both(image, [stop, total + 3])
        assert block == exact, stop
        assert block[-1]["icount"] == total
    # inside the rep: RCX shows how many iterations ran
    block, _ = run_both(image, [4 + min(length, 3)])
    assert block[0]["registers"]["rcx"] == max(0, length - min(length, 3))


def test_port_io_in_the_middle_of_a_block_sees_its_own_icount(assemble):
    image = assemble("""
        nop
        in $0x90, %eax
        nop
        nop
        rdtsc
        nop
        mov $3, %eax
        out %eax, $0xf4
        nop
        nop
        hlt
    """)
    block, exact = run_both(image, [100])
    assert block == exact
    assert [(i, k) for i, k, _ in block[0]["events"]] == [(2, EventKind.ENTROPY), (5, EventKind.RDTSC)]
    # power-off stops before the next instruction, as it always did
    assert (block[0]["outcome"], block[0]["icount"], block[0]["machine_icount"]) == (Outcome.POWER_OFF, 8, 8)


@pytest.mark.parametrize("ending,kind", [("movq $1, 0x8", "unmapped access"), ("ud2", "unhandled exception"),
                                         ("div %r13", "unhandled exception")])
def test_faults_in_the_middle_of_a_block(assemble, ending, kind):
    image = assemble(f"""
        xor %r13, %r13
        nop
        nop
        {ending}
        nop
        nop
        hlt
    """)
    block, exact = run_both(image, [100])
    assert block == exact
    assert block[0]["outcome"] is Outcome.CRASH
    assert block[0]["crash"][0] == kind
    assert block[0]["icount"] == 4                 # the faulting instruction began
    assert block[0]["crash"][2] == BASE + 3 + 2


def test_code_written_at_run_time_is_counted_afresh(assemble):
    """Self-modifying code: the same addresses hold a 1-instruction then a 3-instruction body."""
    image = assemble(f"""
        mov $2, %r12
    again:
        mov $target, %rdi
        call target
        movl $0x90909090, target     # nop; nop; nop; nop over the `ret`... padding below
        movb $0xc3, target+4
        dec %r12
        jnz again
        hlt
    target:
        ret
        .byte 0xcc, 0xcc, 0xcc, 0xcc
    """)
    block, exact = run_both(image, [1000])
    assert block == exact
    assert block[0]["outcome"] is Outcome.POWER_OFF


# -- the test guests (interrupts, exceptions, nested handlers) ---------------------------

DETERMINISTIC_GUESTS = ["t_exceptions", "t_malloc", "t_rdtsc", "t_entropy", "t_hello",
                        "t_crash_null", "t_crash_unhandled", "t_crash_double", "t_crash_fetch",
                        "t_exit_status"]


def _guest_and_stops(name: str, rng, count: int):
    """A built test guest and ``count`` random icounts inside its run, then one past its end."""
    if not (IMAGES / f"{name}.elf").exists():
        pytest.skip(f"{name} is not built")
    image = load_image(str(IMAGES / f"{name}.elf"))
    machine, boundary, _ = boot(image, exact=True, mem=16 << 20)
    total = machine.run(max_instructions=5_000_000).icount
    boundary.close()
    return image, sorted({rng.randrange(0, total + 1) for _ in range(count)}) + [total + 1]


@pytest.mark.parametrize("name", DETERMINISTIC_GUESTS)
def test_test_guests_stop_alike_at_random_icounts(name):
    image, stops = _guest_and_stops(name, __import__("random").Random(name), 6)
    block, exact = run_both(image, stops, mem=16 << 20)
    assert block == exact


@pytest.mark.parametrize("name,args", [("t_interrupts", ""), ("t_timer_modes", ""), ("t_nested", ""),
                                       ("cpubench", "rounds=1")])
@pytest.mark.parametrize("record_exact", [False, True])
def test_record_in_one_mode_replays_verified_in_the_other(tmp_path, name, args, record_exact):
    """Interrupts land at odd icounts (chaos varies slice lengths): the other counter agrees."""
    path = IMAGES / f"{name}.elf"
    image = load_image(str(path)) if path.exists() else load_image(name)
    trace = str(tmp_path / "t.vmrr")
    session = RecordSession(image, trace, mem_size=16 << 20, boot_args=args, chaos_seed=7,
                            digest_every=2_000)
    if record_exact:
        session.machine.counter.set_exact(True)
    summary = session.run()
    with Replay(trace, verify=True) as replay:
        if not record_exact:
            replay.machine.counter.set_exact(True)
        report = replay.run()
    assert report.result.icount == summary.instructions
    assert report.digests_checked > 0
    assert "final registers, devices and RAM match" in report.checks


def test_invalidate_forgets_blocks_and_still_counts_exactly(assemble):
    image = assemble("""
        mov $50, %ecx
    1:  in $0x90, %eax
        dec %ecx
        jnz 1b
        hlt
    """)
    machine, boundary, log = boot(image, exact=False)
    try:
        first = machine.run(max_instructions=77)
        assert machine.counter.stats()["exact_ranges"] >= 1
        machine.counter.invalidate()
        assert machine.counter.stats()["exact_ranges"] == 0
        result = machine.run()
        assert (first.icount, result.icount) == (77, 1 + 3 * 50 + 1)
        assert [i for i, _, _ in log] == [2 + 3 * k for k in range(50)]
    finally:
        boundary.close()


def test_blocks_that_overlap_an_exact_range_count_each_instruction_once(assemble):
    """Translation blocks end after 512 instructions, so a block entered in the middle of
    a long straight run overlaps the one entered at its start without being inside it.
    Unicorn calls every code hook whose range holds an instruction: two exact ranges over
    one instruction counted it twice (sha256sum's recording drifted by millions)."""
    image = assemble("""
        mov $3, %r12
        jmp 1f
    1:  rdtsc
        .rept 100
        nop
        .endr
    2:  .rept 700
        nop
        .endr
        dec %r12
        jnz 2b
        hlt
    """)
    total = 2 + 1 + 100 + 3 * (700 + 2) + 1
    block, exact = run_both(image, [total + 5])
    assert block == exact
    assert block[0]["icount"] == total
    # Stopping anywhere in the second round: blocks there start under the first block's
    # range and end outside it (they count only their own part, and must not run into
    # the limit trusting that part alone), or are the tail.
    for stop in range(103 + 702, 103 + 2 * 702, 5):
        block, exact = run_both(image, [stop, total + 5])
        assert block == exact, stop


# -- the shipped machine code ------------------------------------------------------------

@pytest.mark.skipif(not icount_mod.have_toolchain(),
                    reason=f"needs gcc {icount_mod.NATIVE_GCC} and binutils")
def test_shipped_native_code_is_built_from_its_source():
    code, entries = icount_mod.make_native()
    assert entries == icount_mod.NATIVE_ENTRY
    assert code == icount_mod.NATIVE_CODE, "rebuild NATIVE_CODE from vmm/icount_native.c"
    assert os.path.getsize(icount_mod.NATIVE_SOURCE) > 0


# -- the Linux personality's SYSCALL hook ------------------------------------------------

def test_a_syscall_hook_sees_the_syscall_counted_and_can_stop_right_after_it(assemble):
    from unicorn import UC_HOOK_INSN
    from unicorn import x86_const as x86
    image = assemble("""
        nop
        nop
        syscall
        nop
        nop
        syscall
        nop
        hlt
    """)
    for exact in (False, True):
        machine, boundary, _ = boot(image, exact=exact)
        seen = []

        def on_syscall(uc, _ud, machine=machine, seen=seen):
            seen.append((machine.icount, uc.reg_read(x86.UC_X86_REG_RIP)))
            if len(seen) == 1:
                machine.pause("syscall")
        machine.uc.hook_add(UC_HOOK_INSN, on_syscall, None, 1, 0, x86.UC_X86_INS_SYSCALL)
        try:
            first = machine.run(max_instructions=1000)
            assert (first.outcome, seen) == (Outcome.PAUSED, [(3, BASE + 2)])
            assert machine.icount == 3              # stopped before the next instruction
            result = machine.run()
            assert seen[1][0] == 6
            assert (result.outcome, result.icount) == (Outcome.POWER_OFF, 8)
        finally:
            boundary.close()


PAGING = """
    mov $0x300000, %rdi
    xor %eax, %eax
    mov $2048, %ecx
    rep stosq                          # four zeroed pages of tables at 0x300000
    movq $0x301003, 0x300000           # PML4[0] -> PDPT
    movq $0x302003, 0x301000           # PDPT[0] -> PD
    movq $0x303003, 0x302000           # PD[0] -> PT: 4 KiB pages for 0..2 MiB
    movq $0x200083, 0x302008           # PD[1]: 2 MiB page, identity
    mov $1, %ecx                       # PT: identity but page 0 (the null guard)
1:  mov %rcx, %rax
    shl $12, %rax
    or $3, %rax
    mov %rax, 0x303000(,%rcx,8)
    inc %ecx
    cmp $512, %ecx
    jne 1b
    mov $0x300000, %rax
    mov %rax, %cr3
    mov %cr4, %rax
    or $0x20, %rax
    mov %rax, %cr4
    mov %cr0, %rax
    bts $31, %rax
    mov %rax, %cr0
    mov $6, %r12                       # A first: its block is cached, unhooked, when C comes
2:  mov %r12, %rax
    and $1, %eax
    syscall                            # the host maps page 0x1f0000 to code A or C
    mov %cr3, %rax
    mov %rax, %cr3
    mov $0x1f0000, %rax
    call *%rax
    dec %r12
    jnz 2b
    hlt
"""
CODE_A = bytes.fromhex("48ffc048ffc0c3")      # inc %rax; inc %rax; ret
CODE_C = bytes.fromhex("e5904883c101c3")      # in $0x90,%eax; add $1,%rcx; ret: the same shape


def test_paging_one_virtual_page_remapped_between_codes_of_the_same_shape(assemble):
    """The Linux personality's case: a virtual address that maps other code after an
    mmap; the host changes the mapping in a SYSCALL hook and calls invalidate()."""
    from unicorn import UC_HOOK_INSN
    from unicorn import x86_const as x86
    image = assemble(PAGING)
    seen = []
    stops = [150]
    for exact in (True, False, True):
        machine, boundary, log = boot(image, exact=exact)
        machine.uc.mem_write(0x310000, CODE_A)
        machine.uc.mem_write(0x311000, CODE_C)

        def on_syscall(uc, _ud, machine=machine):
            phys = 0x311000 if uc.reg_read(x86.UC_X86_REG_RAX) else 0x310000
            uc.mem_write(0x303000 + 0x1F0 * 8, (phys | 3).to_bytes(8, "little"))
            machine.counter.invalidate()
        machine.uc.hook_add(UC_HOOK_INSN, on_syscall, None, 1, 0, x86.UC_X86_INS_SYSCALL)
        try:
            marks = []
            for stop in stops:
                result = machine.run(max_instructions=stop)
                marks.append(observe(machine, log, result))
            if len(stops) == 1:               # a first run to learn the length: stop all along the calls
                total = machine.run().icount
                stops += list(range(total - 90, total + 2, 7))
            else:
                seen.append(marks)
        finally:
            boundary.close()
    block, exact = seen
    assert block == exact
    assert block[-1]["outcome"] is Outcome.POWER_OFF
    assert len(block[-1]["events"]) == 3              # code C ran for r12 = 5, 3, 1
    assert block[-1]["registers"]["cr0"] >> 31 == 1


def test_block_cells_that_name_the_wrong_entry_still_count_exactly():
    """A translated block's cell names its table entry (icount_native.c, struct cell). Cells
    that name another block's entry, or none, are caught: the count stays exact."""
    import ctypes
    rng = __import__("random").Random(5)
    image, stops = _guest_and_stops("t_interrupts", rng, 8)
    _block, exact = run_both(image, stops, mem=16 << 20)
    machine, boundary, log = boot(image, exact=False, mem=16 << 20)
    try:
        counter = machine.counter
        assert getattr(counter, "_cells", None) is not None, "this Unicorn's hook layout was not recognised"
        marks = []
        for i, stop in enumerate(stops):
            result = machine.run(max_instructions=stop)
            marks.append(observe(machine, log, result))
            if result.outcome is not Outcome.LIMIT:
                break
            wrong = ctypes.addressof(counter._table[rng.randrange(len(counter._table))]) if i % 2 else None
            for cell in counter._cells[:min(counter._state.next_cell + 1, icount_mod.CELLS)]:
                cell.e = wrong
        assert marks == exact
    finally:
        boundary.close()

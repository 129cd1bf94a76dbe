"""A Linux program sees the CPU state Linux gives it: at its first instruction, in a new
thread, around a signal handler, and after a checkpoint or time travel put it back.

Record and replay always agree with each other; only a comparison with the program run
natively shows a state Linux would not give (vmrr once started programs with the x87
control word and MXCSR at 0: single precision, every exception unmasked, so sqlite3
printed 1.0/3 as 0.333333349227905). So each probe here runs natively and under ``vmrr
run``, ``vmrr record`` and ``vmrr replay``, and the outputs must be equal byte for byte:

- tests/data/linux/initstate.c (entry point ``probe_entry``): registers, selectors,
  RFLAGS, the x87 and SSE state at the first instruction, the stack layout and the
  auxiliary vector (in order; values as the relation Linux defines), a new thread's FPU
  state;
- tests/data/linux/sigfpu.c: the FXSAVE image in a signal frame, the FPU a handler starts
  with, and what rt_sigreturn restores (including the handler's edits to the frame).

The probes print CPU-specific values (AT_HWCAP, MXCSR_MASK, FIP/FDP/FOP, XSAVE sizes) as
relations, and name the deliberate differences (no vDSO, no rseq), which the raw output
checks here; docs/linux.md lists them.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from conftest import REPO, describe, replay_verify, vmrr
from linux_helpers import linux_prog, record_linux  # noqa: F401  (fixture)

pytestmark = pytest.mark.timeout(300)

ENTRY = "-Wl,-e,probe_entry"
# The same environment natively and under vmrr (--clear-env), in the same order.
ENV = {"LC_ALL": "C", "PROBE": "initstate"}
ENV_OPTIONS = ["--clear-env"] + [arg for name, value in ENV.items() for arg in ("--env", f"{name}={value}")]


def _native(argv) -> str:
    proc = subprocess.run([str(a) for a in argv], env=ENV, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"native run failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def _under_vmrr(tmp_path, argv, name: str) -> dict[str, str]:
    """The program's output under ``vmrr run``, ``vmrr record`` and ``vmrr replay --verify``."""
    run = vmrr("run", *ENV_OPTIONS, "--", *argv, timeout=120)
    assert run.returncode == 0, describe(run)
    trace = tmp_path / f"{name}.vmrr"
    record = record_linux(trace, argv, *ENV_OPTIONS, timeout=120)
    assert record.returncode == 0, describe(record)
    replay = replay_verify(trace, timeout=120)
    return {"run": run.stdout, "record": record.stdout, "replay": replay.stdout}


def _assert_same(native: str, outputs: dict[str, str]) -> None:
    for how, out in outputs.items():
        assert out == native, f"vmrr {how} differs from the native run:\n" + "\n".join(
            f"  native: {a!r}\n  {how + ':':7} {b!r}"
            for a, b in zip(native.splitlines(), out.splitlines()) if a != b)[:4000]


@pytest.mark.parametrize("variant", ["static", "pie"])
def test_initial_state_is_linuxs(linux_prog, tmp_path, variant):
    prog = linux_prog("initstate", variant, ENTRY)
    native = _native([prog])
    assert native.endswith("PASS initstate\n") and "WRONG" not in native, native
    assert "entry: x87 environment fcw 037f fsw 0000 tag word ffff" in native, native
    _assert_same(native, _under_vmrr(tmp_path, [prog], f"initstate-{variant}"))


def _raw_auxv(out: str) -> list[tuple[int, int]]:
    return [(int(t), int(v, 16)) for t, v in re.findall(r"^raw auxv (\d+) (0x[0-9a-f]+|0)$", out, re.M)]


def test_deliberate_auxv_differences(linux_prog):
    """What vmrr leaves out of the auxiliary vector on purpose, and what it puts in for its
    pinned CPU: everything else is Linux's order (the probe compares that with native)."""
    prog = linux_prog("initstate", "static", ENTRY)
    run = vmrr("run", *ENV_OPTIONS, "--", prog, "raw", timeout=120)
    assert run.returncode == 0, describe(run)
    auxv = _raw_auxv(run.stdout)
    types = [t for t, _ in auxv]
    # No vDSO (AT_SYSINFO_EHDR 33), and rseq is ENOSYS (no AT_RSEQ_FEATURE_SIZE/ALIGN 27, 28).
    assert not {33, 27, 28} & set(types), types
    # create_elf_tables' order for x86-64, without those three.
    assert types == [51, 16, 6, 17, 3, 4, 5, 7, 8, 9, 11, 12, 13, 14, 23, 25, 26, 31, 15], types
    values = dict(auxv)
    # AT_MINSIGSTKSZ for a CPU without XSAVE on a kernel with IA32 emulation (as Debian's):
    # sigframe_ia32 736 + 15 + FXSAVE 512 + fsave header 112 + 63, rounded up to 16.
    assert values[51] == 1440, values
    assert values[26] == 0, "westmere has no FSGSBASE: AT_HWCAP2 is 0"
    assert values[6] == 4096 and values[17] == 100 and values[4] == 56, values
    native_types = [t for t, _ in _raw_auxv(_native([prog, "raw"]))]
    assert [t for t in native_types if t not in (33, 27, 28)] == types, native_types


@pytest.mark.parametrize("variant", ["static", "pie"])
def test_signal_frame_fpu_state_is_linuxs(linux_prog, tmp_path, variant):
    prog = linux_prog("sigfpu", variant)
    native = _native([prog])
    assert native.endswith("PASS sigfpu\n") and "WRONG" not in native, native
    assert "after: the interrupted state restored, with the handler's edits: yes" in native, native
    _assert_same(native, _under_vmrr(tmp_path, [prog], f"sigfpu-{variant}"))


SQLITE3 = "/usr/bin/sqlite3"
QUERY = ("select 1.0/3; select avg(value % 97) from generate_series(1, 1000); "
         "select round(avg(value * 0.1), 3), sum(value * 1.5e-3) from generate_series(1, 5000); "
         "select printf('%.17g', 2.0/7), 1e300*1e10, -0.0;")


@pytest.mark.skipif(not os.path.exists(SQLITE3), reason="sqlite3 is not installed (Debian: sqlite3)")
def test_sqlite3_floating_point_matches_native(tmp_path):
    """sqlite3 averages and prints doubles with long double arithmetic: under the wrong x87
    control word it printed 1.0/3 as 0.333333349227905."""
    argv = [SQLITE3, ":memory:", QUERY]
    native = _native(argv)
    assert native.startswith("0.333333333333333\n"), native
    _assert_same(native, _under_vmrr(tmp_path, argv, "sqlite3"))


# -- checkpoints and time travel inside x87 arithmetic ------------------------------------

def _fpu(machine) -> list:
    """The x87 and SSE registers, read from the CPU itself."""
    from unicorn import x86_const as x86
    names = ["FPCW", "FPSW", "FPTAG", "MXCSR", *(f"FP{i}" for i in range(8)), *(f"XMM{i}" for i in range(16))]
    return [machine.uc.reg_read(getattr(x86, f"UC_X86_REG_{n}")) for n in names]


@pytest.fixture(scope="module")
def x87_trace(linux_prog, tmp_path_factory):
    """x87loop recorded with a checkpoint every 4M instructions: most land in its loop,
    where its three running values live only in x87 registers."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    prog = linux_prog("x87loop", "pie")
    native = _native([prog])
    trace = tmp_path_factory.mktemp("x87") / "x87loop.vmrr"
    record = record_linux(trace, [prog], "--checkpoint-every", "4000000", timeout=180)
    assert record.returncode == 0, describe(record)
    assert record.stdout == native, (record.stdout, native)
    return trace


def test_checkpoints_inside_x87_arithmetic_restore_the_x87_registers(x87_trace):
    from replay import Replay
    with Replay(str(x87_trace), verify=True, console_output=None) as straight:
        marks = [ref.icount for ref in straight.reader.checkpoints]
        final = straight.run()
        end_digest = straight.machine.state_digest()
        end_ram = straight.machine.ram_digest()
    inside = 0
    for index in range(1, len(marks)):
        with Replay(str(x87_trace), verify=False, console_output=None) as replay:
            replay.run(until=marks[index])
            expected = _fpu(replay.machine)
        with Replay(str(x87_trace), verify=True, console_output=None) as entered:
            assert entered.start_from_checkpoint(index) == marks[index]
            assert _fpu(entered.machine) == expected, f"checkpoint {index} at icount {marks[index]}"
            inside += expected[2] != 0xFFFF                  # some x87 register in use
            report = entered.run()
            assert report.result.icount == final.result.icount
            assert entered.machine.ram_digest() == end_ram, f"checkpoint {index}: the sums came out different"
            assert entered.machine.state_digest() == end_digest, f"checkpoint {index}"
    assert inside >= 3, f"only {inside} checkpoints landed in the x87 loop"


def test_time_travel_inside_x87_arithmetic_lands_on_the_straight_replays_state(x87_trace):
    from replay import Replay
    from replay.timetravel import TimeTravel
    # A budget of about one RAM image: snapshots are dropped, so seeks far from the last
    # one start from the trace's on-disk checkpoints.
    engine = TimeTravel(str(x87_trace), memory_budget=1 << 20, sidecar=False)
    try:
        for fraction in (0.85, 0.3, 0.7, 0.5, 0.15):
            target = int(fraction * engine.last_icount)
            with Replay(str(x87_trace), verify=False, console_output=None) as straight:
                straight.run(until=target)
                expected = (straight.machine.cpu.registers(), _fpu(straight.machine),
                            straight.machine.state_digest())
            engine.seek(target)
            assert expected[1][2] != 0xFFFF, f"icount {target} is not inside the x87 loop"
            assert engine.registers() == expected[0], target
            assert _fpu(engine.machine) == expected[1], f"x87/SSE registers at icount {target}"
            assert engine.machine.state_digest() == expected[2], target
        assert engine.disk_checkpoints_loaded > 0
        engine.step_back()
        engine.step()
        assert _fpu(engine.machine) == expected[1]
    finally:
        engine.close()

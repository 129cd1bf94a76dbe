"""CPU-bound speed, side by side in one run: Unicorn alone, vmrr run, record, replay.

    python bench/bench_cpu.py [--image cpubench] [--args "rounds=N"] [--repeat 3]

Prints MIPS for each mode and the ratios the targets speak of:
  vmm / unicorn(no hooks)  target >= 0.6    (the ceiling: Unicorn with no counting at all)
  vmm / unicorn(count=)    was >= 0.5       (Unicorn counting with emu_start(count=) slices)
  record / run             target >= 0.9    (issue: record and replay)
  replay / record          target >= 1.0
Each mode runs ``--repeat`` times, interleaved, and the best time counts: the machine is
shared and noisy, and the best of several is the least disturbed.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from unicorn import UC_ARCH_X86, UC_HOOK_INSN, UC_MODE_64, UC_PROT_ALL, Uc  # noqa: E402
from unicorn import x86_const as x86  # noqa: E402

from recorder import RecordSession  # noqa: E402
from replay import Replay  # noqa: E402
from vmm.boundary import LiveBoundary  # noqa: E402
from vmm.loader import load_image  # noqa: E402
from vmm.machine import BOOT_INFO, RAM_START, Machine, Outcome  # noqa: E402

MEM = 64 << 20
PORT_POWER = 0xF4


def run_vmm(image, args: str) -> tuple[int, float]:
    machine = Machine(image, mem_size=MEM, boot_args=args)
    boundary = LiveBoundary(machine)
    machine.connect(boundary)
    start = time.perf_counter()
    result = machine.run()
    seconds = time.perf_counter() - start
    boundary.close()
    assert result.outcome is Outcome.POWER_OFF, result
    return result.icount, seconds


def _bare_unicorn(image, args: str) -> Uc:
    machine = Machine(image, mem_size=MEM, boot_args=args)    # only to copy its boot RAM
    uc = Uc(UC_ARCH_X86, UC_MODE_64)
    uc.ctl_set_cpu_model(x86.UC_CPU_X86_QEMU64)
    uc.mem_map(RAM_START, MEM - RAM_START, UC_PROT_ALL)
    uc.mem_write(RAM_START, bytes(machine.ram[RAM_START:]))
    uc.reg_write(x86.UC_X86_REG_CR4, machine.uc.reg_read(x86.UC_X86_REG_CR4))
    uc.reg_write(x86.UC_X86_REG_RIP, image.entry)
    uc.reg_write(x86.UC_X86_REG_RDI, BOOT_INFO)
    uc.reg_write(x86.UC_X86_REG_RSP, MEM - 16)
    uc.hook_add(UC_HOOK_INSN, lambda *a: 0, None, 1, 0, x86.UC_X86_INS_IN)
    return uc


def run_ceiling(image, args: str) -> float:
    """The same image on a bare Unicorn with no counting at all: one emu_start until the
    guest writes the power port (its only I/O is console output and that write)."""
    uc = _bare_unicorn(image, args)

    def on_out(uc, port, _size, _value, _ud):
        if port == PORT_POWER:
            uc.emu_stop()
    uc.hook_add(UC_HOOK_INSN, on_out, None, 1, 0, x86.UC_X86_INS_OUT)
    start = time.perf_counter()
    uc.emu_start(uc.reg_read(x86.UC_X86_REG_RIP), 0xFFFF_FFFF_FFFF_F000)
    return time.perf_counter() - start


def run_unicorn(image, args: str, instructions: int, slice_len: int = 1_000_000) -> float:
    """The same image on a bare Unicorn, advancing with emu_start(count=slice_len)."""
    uc = _bare_unicorn(image, args)
    uc.hook_add(UC_HOOK_INSN, lambda *a: None, None, 1, 0, x86.UC_X86_INS_OUT)
    done = 0
    start = time.perf_counter()
    while done < instructions:
        n = min(slice_len, instructions - done)
        uc.emu_start(uc.reg_read(x86.UC_X86_REG_RIP), 0xFFFF_FFFF_FFFF_F000, count=n)
        done += n
    return time.perf_counter() - start


def run_record(image, args: str, path: str) -> tuple[int, float]:
    if os.path.exists(path):
        os.unlink(path)
    session = RecordSession(image, path, mem_size=MEM, boot_args=args)
    summary = session.run()
    return summary.instructions, summary.wall_seconds


def run_replay(path: str) -> tuple[int, float]:
    with Replay(path, verify=True) as rep:
        start = time.perf_counter()
        report = rep.run()
        return report.result.icount, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default="cpubench")
    parser.add_argument("--args", default="")
    parser.add_argument("--repeat", type=int, default=3)
    opts = parser.parse_args()
    image = load_image(opts.image)
    best = {"ceiling": float("inf"), "unicorn": float("inf"), "vmm": float("inf"),
            "record": float("inf"), "replay": float("inf")}
    with tempfile.TemporaryDirectory() as tmp:
        trace = os.path.join(tmp, "bench.vmrr")
        for _ in range(opts.repeat):
            icount, t = run_vmm(image, opts.args)
            best["vmm"] = min(best["vmm"], t)
            best["ceiling"] = min(best["ceiling"], run_ceiling(image, opts.args))
            best["unicorn"] = min(best["unicorn"], run_unicorn(image, opts.args, icount))
            n, t = run_record(image, opts.args, trace)
            assert n == icount, (n, icount)
            best["record"] = min(best["record"], t)
            n, t = run_replay(trace)
            assert n == icount, (n, icount)
            best["replay"] = min(best["replay"], t)
        size = os.path.getsize(trace)
    mips = {k: icount / v / 1e6 for k, v in best.items()}
    print(f"image {opts.image} args {opts.args!r}: {icount} instructions, trace {size} bytes")
    names = {"ceiling": "unicorn, no hooks", "unicorn": "unicorn, count=", "vmm": "vmrr run",
             "record": "vmrr record", "replay": "vmrr replay"}
    for k in ("ceiling", "unicorn", "vmm", "record", "replay"):
        print(f"  {names[k]:<17} {mips[k]:7.1f} MIPS  ({best[k]:.3f} s)")
    print(f"  run/unicorn(no hooks)  {mips['vmm'] / mips['ceiling']:.2f}   (target >= 0.60)")
    print(f"  run/unicorn(count=)    {mips['vmm'] / mips['unicorn']:.2f}")
    print(f"  record/run             {mips['record'] / mips['vmm']:.2f}   (target >= 0.90)")
    print(f"  replay/record          {mips['replay'] / mips['record']:.2f}   (target >= 1.00)")


if __name__ == "__main__":
    main()

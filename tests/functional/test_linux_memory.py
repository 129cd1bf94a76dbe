"""Memory system calls of Linux programs, recorded and replayed (tests/data/linux/memory.c).

brk, anonymous and file mappings, munmap, mprotect with a SIGSEGV handler that
siglongjmp's out, mremap, madvise(MADV_DONTNEED), 5,000 alternating-protection pages in
one mapping and 2,500 separate mappings (past Unicorn's ~4,096-section limit), and a
malloc larger than the machine's RAM (--mem 256M) failing with ENOMEM.

Known costs kept small on purpose (reported to the lead): replay/boundary.py's
``_next_stop`` scans every inline SYSCALL event up to the next stop at each slice, and
every page fault ends a slice, so replay is O(faults x syscalls ahead); memory.py's VMA
list makes munmap (``list.index``) and ``find_gap`` linear. The program does its
call-heavy parts first and touches only some of the 5,000 pages.
"""

from __future__ import annotations

import re

import pytest

from linux_helpers import linux_prog, record_replay_linux  # noqa: F401  (fixture)

pytestmark = pytest.mark.timeout(90)


@pytest.mark.parametrize("variant", ["pie", "static"])
def test_memory_calls(linux_prog, tmp_path, variant):
    record, _, _ = record_replay_linux(tmp_path, [linux_prog("memory", variant), tmp_path / "mapped.bin"],
                                       "--mem", "256M")
    assert "PASS memory" in record.stdout, record.stdout
    assert (tmp_path / "mapped.bin").stat().st_size == 3 * 4096


def test_prot_none_page_is_not_readable(linux_prog, tmp_path):
    record, _, _ = record_replay_linux(
        tmp_path, [linux_prog("memory", "static"), tmp_path / "mapped.bin", "protnone-read"], "--mem", "256M")
    assert "PASS protnone-read" in record.stdout, record.stdout


def test_generated_code(linux_prog, tmp_path):
    """JIT-style code: written, made executable, rewritten (via mprotect and in RWX memory)."""
    record, _, _ = record_replay_linux(tmp_path, [linux_prog("jit", "pie")])
    assert "PASS jit" in record.stdout, record.stdout


def test_stack_grows_to_its_limit(linux_prog, tmp_path):
    exe = linux_prog("stack", "pie")
    record, _, _ = record_replay_linux(tmp_path, [exe, "deep"], name="deep")
    assert "PASS stack" in record.stdout, record.stdout
    record, _, _ = record_replay_linux(tmp_path, [exe, "altstack"], name="altstack")
    assert "PASS altstack" in record.stdout, record.stdout


def test_stack_overflow_is_a_crash(linux_prog, tmp_path):
    record, replay, _ = record_replay_linux(tmp_path, [linux_prog("stack", "pie"), "overflow"], expect=3,
                                            name="overflow")
    match = re.search(r"program crashed: SIGSEGV at rip=(0x[0-9a-f]+) icount=(\d+): "
                      r"segmentation fault at address (0x[0-9a-f]+)", record.stderr)
    assert match, record.stderr
    # The fault is at the bottom of an 8 MiB stack (RLIMIT_STACK), below the top of user space.
    assert 0x7FFFFFFFF000 - int(match.group(3), 16) >= 7 << 20, record.stderr
    assert f"crash recurred: SIGSEGV at rip {match.group(1)}, icount {match.group(2)}" in replay.stderr

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

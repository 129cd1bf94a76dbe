"""The system-call table: every entry well-formed, and docs/linux.md generated from it."""

from __future__ import annotations

import re
from pathlib import Path

from vmm.linux.syscalls import ALL_NAMES, SYSCALLS, Support, markdown_table

ARG_TYPES = {"clone_args", "int", "uint", "hex", "ptr", "fd", "dirfd", "path", "buf_in", "buf_out", "len", "oflags", "mode",
             "prot", "mapflags", "clockid", "signo", "whence", "atflags", "fcntl", "ioctl", "sigprocmask",
             "futex", "arch_prctl", "madvise", "rlimit", "sockdomain", "socktype"}


def test_names_match_the_kernel_numbering():
    for nr, entry in SYSCALLS.items():
        assert ALL_NAMES.get(nr) == entry.name, (nr, entry.name)


def test_entries_are_well_formed():
    for nr, entry in SYSCALLS.items():
        assert set(entry.args) <= ARG_TYPES, (entry.name, entry.args)
        assert len(entry.args) <= 6
        if entry.support is Support.PARTIAL or entry.support is Support.ERRNO:
            assert entry.note, f"{entry.name}: a partial or errno entry says why"
        if entry.handler is not None:
            assert callable(entry.handler)


def test_docs_table_is_generated_from_the_code():
    doc = (Path(__file__).resolve().parents[2] / "docs" / "linux.md").read_text()
    table = re.search(r"<!-- syscall-table:begin -->\n(.*)\n<!-- syscall-table:end -->", doc, re.S)
    assert table is not None
    assert table.group(1) == markdown_table(), "run: python -m vmm.linux.syscalls, paste into docs/linux.md"

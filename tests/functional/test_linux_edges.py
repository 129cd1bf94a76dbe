"""Edge cases of Linux's answers (tests/data/linux/edges.c), recorded and replayed.

Errors of file calls (EBADF on the wrong access mode, ENOTDIR, EISDIR, ENOTEMPTY, ERANGE,
ESPIPE, EAGAIN on an empty non-blocking pipe), O_APPEND, ftruncate, rename over a file,
/proc/self/fd links; nanosleep with bad arguments, clock_nanosleep TIMER_ABSTIME; signal
details: SA_RESETHAND, SA_NODEFER, the handler's own mask, sigaltstack, a SIGSEGV handler
that returns past the faulting instruction by editing RIP in its ucontext, and pending
signals that an ignoring action discards (while a blocked one is never ignored).
"""

from __future__ import annotations

import pytest

from linux_helpers import linux_prog, record_replay_linux  # noqa: F401  (fixture)

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("variant", ["pie", "static"])
def test_edge_cases(linux_prog, tmp_path, variant):
    work = tmp_path / "work"
    work.mkdir()
    record, _, _ = record_replay_linux(tmp_path, [linux_prog("edges", variant), work])
    assert "PASS edges" in record.stdout, record.stdout
    assert list(work.iterdir()) == []

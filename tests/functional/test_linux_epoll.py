"""epoll reports descriptors in Linux's order: the ready list (fs/eventpoll.c), compared
with the program run natively."""

from __future__ import annotations

import subprocess

import pytest

from linux_helpers import linux_prog, record_replay_linux  # noqa: F401  (fixture)


@pytest.mark.parametrize("variant", ["static", "pie"])
def test_ready_list_order_is_linux_order(linux_prog, tmp_path, variant):
    exe = linux_prog("epollmod", variant)
    native = subprocess.run([exe], capture_output=True, text=True, timeout=60)
    assert native.returncode == 0 and native.stdout.startswith("PASS epollmod"), native.stdout
    record, replay, _trace = record_replay_linux(tmp_path, [exe])
    assert record.stdout == native.stdout
    assert replay.stdout == native.stdout

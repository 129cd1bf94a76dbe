"""futex: the waiting and waking primitive under every glibc lock and condition variable.

One thread runs at a time. A WAKE with no waiter wakes nobody; a WAIT whose word no
longer holds the expected value fails with EAGAIN, as on Linux. A WAIT that would
block forever with no other thread to wake it is a deadlock: the run ends with a
report of what the thread waits on, instead of hanging.
"""

from __future__ import annotations

import struct

from vmm.linux import abi

FUTEX_WAIT, FUTEX_WAKE, FUTEX_REQUEUE, FUTEX_CMP_REQUEUE, FUTEX_WAKE_OP = 0, 1, 3, 4, 5
FUTEX_WAIT_BITSET, FUTEX_WAKE_BITSET = 9, 10
FUTEX_PRIVATE_FLAG, FUTEX_CLOCK_REALTIME = 128, 256
ETIMEDOUT = 110


def sys_futex(k, uaddr, op, val, timeout, uaddr2, val3):
    cmd = op & ~(FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME)
    if uaddr & 3:
        return -abi.EINVAL
    if cmd in (FUTEX_WAKE, FUTEX_WAKE_BITSET):
        return 0
    if cmd in (FUTEX_REQUEUE, FUTEX_CMP_REQUEUE):
        if cmd == FUTEX_CMP_REQUEUE and struct.unpack("<I", k.read(uaddr, 4))[0] != val3 & 0xFFFFFFFF:
            return -abi.EAGAIN
        return 0
    if cmd == FUTEX_WAKE_OP:
        _wake_op(k, uaddr2, val3)
        return 0
    if cmd in (FUTEX_WAIT, FUTEX_WAIT_BITSET):
        if struct.unpack("<I", k.read(uaddr, 4))[0] != val & 0xFFFFFFFF:
            return -abi.EAGAIN
        if timeout:
            ns = abi.read_timespec(k.read(timeout, 16))
            if ns is None:
                return -abi.EINVAL
            if cmd == FUTEX_WAIT_BITSET:           # an absolute deadline on the chosen clock
                clock = 0 if op & FUTEX_CLOCK_REALTIME else 1
                ns = max(0, ns - int(k.host("clock", clock)))
            k.boundary.sleep(ns)
            return -ETIMEDOUT
        rip = k.uc.reg_read(k.RIP)
        k.machine.crash_program("deadlock", 0, rip,
                                f"thread {k.tid} waits forever on futex {uaddr:#x} (value {val & 0xFFFFFFFF}); "
                                f"no other thread can wake it")
        return 0
    return -abi.ENOSYS


def _wake_op(k, uaddr2: int, encoded: int) -> None:
    """FUTEX_WAKE_OP's atomic operation on *uaddr2 (nobody waits, so only the store matters)."""
    op, cmp_arg = (encoded >> 28) & 0xF, encoded & 0xFFF
    oparg = (encoded >> 12) & 0xFFF
    if op & 8:
        oparg = 1 << oparg
    old = struct.unpack("<I", k.read(uaddr2, 4))[0]
    new = {0: oparg, 1: old + oparg, 2: old | oparg, 3: old & ~oparg, 4: old ^ oparg}.get(op & 7, old)
    k.write(uaddr2, struct.pack("<I", new & 0xFFFFFFFF))
    del cmp_arg

"""futex: the waiting and waking primitive under every glibc lock and condition variable.

A WAIT whose word no longer holds the expected value fails with EAGAIN, as on Linux;
otherwise the task waits (vmm/linux/tasks.py) until a WAKE with a matching bitset
wakes it — waiters are woken in the order they began waiting — or until its timeout,
measured against the recorded clock. Waits are keyed as Linux keys them: a private
futex, or a shared one in private memory, by the process and the word's address; a
shared futex in MAP_SHARED memory by the word's physical address, so that processes
sharing the memory (at any addresses) wake each other. A wait nobody can end
(every thread waiting, none with a timeout, nothing outside to wait for) is reported
as a deadlock by the scheduler instead of hanging.
"""

from __future__ import annotations

import struct

from vmm.linux import abi
from vmm.linux.memory import MAP_SHARED
from vmm.linux.tasks import WAIT, Blocked

FUTEX_WAIT, FUTEX_WAKE, FUTEX_FD, FUTEX_REQUEUE, FUTEX_CMP_REQUEUE, FUTEX_WAKE_OP = 0, 1, 2, 3, 4, 5
FUTEX_LOCK_PI, FUTEX_UNLOCK_PI, FUTEX_TRYLOCK_PI = 6, 7, 8
FUTEX_WAIT_BITSET, FUTEX_WAKE_BITSET = 9, 10
FUTEX_PRIVATE_FLAG, FUTEX_CLOCK_REALTIME = 128, 256
FUTEX_BITSET_MATCH_ANY = 0xFFFFFFFF
ETIMEDOUT = 110
INT_MAX = 0x7FFFFFFF


def _word(k, uaddr: int) -> int:
    return struct.unpack("<I", k.read(uaddr, 4))[0]


def futex_key(k, uaddr: int, private: bool) -> list[int]:
    """[space, address]: [pid, uaddr] for a private futex or a word in private memory,
    [0, physical address] for a shared futex in MAP_SHARED memory (get_futex_key)."""
    if not private:
        vma = k.space.find(uaddr)
        if vma is not None and vma.flags & MAP_SHARED:
            return [0, k.space._phys(uaddr, False)]
    return [k.pid, uaddr]


def waiters(k, key: list[int]) -> list:
    """Tasks waiting on the futex ``key``, in the order they began waiting."""
    found = [t for t in k.tasks.values() if t.state == WAIT and t.wait[0] == "futex" and t.wait[3:] == key]
    return sorted(found, key=lambda t: t.seq)


def wake_waiters(k, key: list[int], count: int, bitset: int) -> int:
    woken = 0
    for task in waiters(k, key):
        if woken >= count:
            break
        if task.wait[2] & bitset:
            k.wake(task, 0)
            woken += 1
    return woken


def sys_futex(k, uaddr, op, val, timeout, uaddr2, val3):
    cmd = op & ~(FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME)
    private = bool(op & FUTEX_PRIVATE_FLAG)
    val &= 0xFFFFFFFF
    if uaddr & 3:
        return -abi.EINVAL
    if cmd in (FUTEX_WAIT, FUTEX_WAIT_BITSET):
        bitset = FUTEX_BITSET_MATCH_ANY if cmd == FUTEX_WAIT else val3 & 0xFFFFFFFF
        if bitset == 0:
            return -abi.EINVAL
        if k.timed_out:
            return -ETIMEDOUT
        if _word(k, uaddr) != val:
            return -abi.EAGAIN
        ns = None
        if timeout:
            ns = abi.read_timespec(k.read(timeout, 16))
            if ns is None:
                return -abi.EINVAL
            if cmd == FUTEX_WAIT_BITSET:           # an absolute deadline on the chosen clock
                clock = 0 if op & FUTEX_CLOCK_REALTIME else 1
                ns = max(0, ns - int(k.host("clock", clock)))
        raise Blocked(["futex", uaddr, bitset, *futex_key(k, uaddr, private)], ns)
    if cmd in (FUTEX_WAKE, FUTEX_WAKE_BITSET):
        bitset = FUTEX_BITSET_MATCH_ANY if cmd == FUTEX_WAKE else val3 & 0xFFFFFFFF
        if bitset == 0:
            return -abi.EINVAL
        _word(k, uaddr)                          # EFAULT unless mapped (and the page present)
        return wake_waiters(k, futex_key(k, uaddr, private), min(val, INT_MAX), bitset)
    if cmd in (FUTEX_REQUEUE, FUTEX_CMP_REQUEUE):
        if cmd == FUTEX_CMP_REQUEUE and _word(k, uaddr) != val3 & 0xFFFFFFFF:
            return -abi.EAGAIN
        if uaddr2 & 3:
            return -abi.EINVAL
        _word(k, uaddr2)
        key, key2 = futex_key(k, uaddr, private), futex_key(k, uaddr2, private)
        woken = wake_waiters(k, key, val, FUTEX_BITSET_MATCH_ANY)
        moved, limit = 0, timeout & INT_MAX          # the fourth argument is val2: how many to move
        for task in waiters(k, key):
            if moved >= limit:
                break
            task.wait = ["futex", uaddr2, task.wait[2], *key2]
            moved += 1
        return woken + moved
    if cmd == FUTEX_WAKE_OP:
        if uaddr2 & 3:
            return -abi.EINVAL
        old = _wake_op(k, uaddr2, val3)
        _word(k, uaddr)
        woken = wake_waiters(k, futex_key(k, uaddr, private), val, FUTEX_BITSET_MATCH_ANY)
        if _compare(old, val3):
            woken += wake_waiters(k, futex_key(k, uaddr2, private), timeout & INT_MAX, FUTEX_BITSET_MATCH_ANY)
        return woken
    if cmd in (FUTEX_LOCK_PI, FUTEX_UNLOCK_PI, FUTEX_TRYLOCK_PI):
        return -abi.ENOSYS
    return -abi.ENOSYS


def _wake_op(k, uaddr2: int, encoded: int) -> int:
    """FUTEX_WAKE_OP's atomic operation on *uaddr2; returns the old value."""
    op = (encoded >> 28) & 0xF
    oparg = (encoded >> 12) & 0xFFF
    if op & 8:
        oparg = 1 << (oparg & 31)
    old = _word(k, uaddr2)
    new = {0: oparg, 1: old + oparg, 2: old | oparg, 3: old & ~oparg, 4: old ^ oparg}.get(op & 7, old)
    k.write(uaddr2, struct.pack("<I", new & 0xFFFFFFFF))
    return old


def _compare(old: int, encoded: int) -> bool:
    cmp, arg = (encoded >> 24) & 0xF, encoded & 0xFFF
    if arg & 0x800:
        arg -= 0x1000
    sold = old - (1 << 32) if old & 0x80000000 else old
    return {0: sold == arg, 1: sold != arg, 2: sold < arg, 3: sold <= arg, 4: sold > arg,
            5: sold >= arg}.get(cmp, False)

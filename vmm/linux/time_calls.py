"""Time and entropy: clocks, sleeps, getrandom.

Clock readings and random bytes depend on the host: each is a ``host`` answer, logged
while recording and replayed from the trace. A sleep really waits while recording
(the VM sleeps on the host) and is skipped in replay; its result does not depend on
the host, so nothing about it is logged.
"""

from __future__ import annotations

import struct

from vmm.linux import abi
from vmm.linux.tasks import Blocked
from vmm.linux.files import s32

CLOCK_REALTIME, CLOCK_MONOTONIC, CLOCK_PROCESS_CPUTIME_ID, CLOCK_THREAD_CPUTIME_ID = 0, 1, 2, 3
CLOCK_MONOTONIC_RAW, CLOCK_REALTIME_COARSE, CLOCK_MONOTONIC_COARSE, CLOCK_BOOTTIME = 4, 5, 6, 7
CLOCK_REALTIME_ALARM, CLOCK_BOOTTIME_ALARM, CLOCK_TAI = 8, 9, 11
VALID_CLOCKS = frozenset({0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11})
TIMER_ABSTIME = 1
GRND_NONBLOCK, GRND_RANDOM = 1, 2
MAX_RANDOM = 1 << 25


def clock_ns(k, clock: int) -> int:
    return int(k.host("clock", clock))


def sys_clock_gettime(k, clock, tp):
    clock = s32(clock)
    if clock not in VALID_CLOCKS:
        return -abi.EINVAL
    k.write(tp, abi.timespec(clock_ns(k, clock)))
    return 0


def sys_clock_getres(k, clock, tp):
    clock = s32(clock)
    if clock not in VALID_CLOCKS:
        return -abi.EINVAL
    if tp:
        k.write(tp, abi.timespec(4_000_000 if clock in (CLOCK_REALTIME_COARSE, CLOCK_MONOTONIC_COARSE) else 1))
    return 0


def sys_gettimeofday(k, tv, tz):
    if tv:
        ns = clock_ns(k, CLOCK_REALTIME)
        k.write(tv, struct.pack("<qq", ns // 10**9, (ns % 10**9) // 1000))
    if tz:
        k.write(tz, struct.pack("<ii", 0, 0))
    return 0


def sys_time(k, tloc):
    seconds = clock_ns(k, CLOCK_REALTIME) // 10**9
    if tloc:
        k.write(tloc, struct.pack("<q", seconds))
    return seconds


def sys_times(k, buf):
    ticks = clock_ns(k, CLOCK_MONOTONIC) // 10_000_000
    if buf:
        cpu = clock_ns(k, CLOCK_PROCESS_CPUTIME_ID) // 10_000_000
        k.write(buf, struct.pack("<qqqq", cpu, 0, 0, 0))
    return ticks


def _sleep(k, ns: int, rem: int) -> int:
    """The task waits on the clock alone (vmm/linux/tasks.py); replay skips the wait."""
    if not k.timed_out and ns > 0:
        raise Blocked(["fds", []], ns)
    if rem:
        k.write(rem, abi.timespec(0))
    return 0


def sys_nanosleep(k, req, rem):
    ns = abi.read_timespec(k.read(req, 16))
    if ns is None:
        return -abi.EINVAL
    return _sleep(k, ns, rem)


def sys_clock_nanosleep(k, clock, flags, req, rem):
    clock = s32(clock)
    if clock not in VALID_CLOCKS or clock in (CLOCK_THREAD_CPUTIME_ID,):
        return -abi.EINVAL
    ns = abi.read_timespec(k.read(req, 16))
    if ns is None:
        return -abi.EINVAL
    if flags & TIMER_ABSTIME:
        ns = max(0, ns - clock_ns(k, clock))
        rem = 0
    return _sleep(k, ns, rem)


def sys_getrandom(k, buf, count, flags):
    if flags & ~(GRND_NONBLOCK | GRND_RANDOM | 4):
        return -abi.EINVAL
    count = min(count, MAX_RANDOM)
    data = k.host("random", count)
    if len(data) != count:
        raise ValueError("random bytes of the wrong length")
    k.write(buf, data)
    return count

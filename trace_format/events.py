"""Event kinds and the Event record.

The numbers of ``EventKind`` are stored in every trace. The enum is append-only:
a new kind goes at the end with the next number, and changing the order or the
meaning of an existing kind bumps ``FORMAT_VERSION`` (trace_format/layout.py), the
way QEMU's ``ReplayEvents`` does. Payload conventions are in the comments; the
trace stores whatever msgpack value the recorder passes and does not check it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class EventKind(enum.IntEnum):
    """What an event records. Append-only: new kinds go at the end (see module doc)."""

    CLOCK = 1          # payload: int ns — a wall/monotonic clock device read (sync)
    RDTSC = 2          # payload: int — TSC value returned to RDTSC/RDTSCP (sync)
    ENTROPY = 3        # payload: int — 32 random bits returned by the entropy device (sync)
    TIMER = 4          # payload: None — the timer expired (async, injected at icount)
    SOCK_ACCEPT = 5    # payload: int channel — a connection became acceptable (async)
    SOCK_DATA = 6      # payload: [channel, bytes] — bytes from the peer landed in the device (async)
    SOCK_HUP = 7       # payload: int channel — the peer hung up (async)
    CONSOLE_IN = 8     # payload: bytes — console input arrived (async)
    INTERRUPT = 9      # payload: int vector — an interrupt was delivered to the guest (async, for verification)
    DIGEST = 10        # payload: [rip, regs_hash bytes, ram_hash bytes] — state digest (verification)
    OUTPUT = 11        # payload: [stream name, sha256-so-far bytes, total bytes] — output digest (verification)
    CHECKPOINT = 12    # payload: reserved for checkpoint records (format-internal)
    EXCEPTION = 13     # payload: [vector, error_code] — a CPU exception delivered to the guest
    END = 14           # payload: the end dict — how the run ended
    SYSCALL = 15       # payload: [tid, nr, args, ret, answers] — a system call of a Linux program (sync)
    BLOB = 16          # payload: [sha256 bytes(32), part, parts, data bytes] — file content, content-addressed (format data)
    SIGNAL = 17        # payload: [tid, signo, code, addr] — a signal delivered to a Linux program (verification)
    # New kinds go here, at the end, with the next number.


# Answers the guest asked for at a precise instruction: replay must see the same request.
SYNC_KINDS: frozenset[EventKind] = frozenset({EventKind.CLOCK, EventKind.RDTSC, EventKind.ENTROPY,
                                              EventKind.SYSCALL})

# Inputs the host pushed at an instruction count of its choosing: replay injects them there.
ASYNC_KINDS: frozenset[EventKind] = frozenset({
    EventKind.TIMER, EventKind.SOCK_ACCEPT, EventKind.SOCK_DATA, EventKind.SOCK_HUP,
    EventKind.CONSOLE_IN, EventKind.INTERRUPT,
})

# Number in the file -> kind; a dict lookup is several times cheaper than EventKind(n).
KIND_BY_NUMBER: dict[int, EventKind] = {int(kind): kind for kind in EventKind}


@dataclass(frozen=True, slots=True)
class Event:
    """One record of the trace: at instruction count ``icount``, ``kind`` happened.

    Payloads come back as msgpack decodes them: arrays as lists, str as str, bin as bytes.
    """

    icount: int
    kind: EventKind
    payload: object

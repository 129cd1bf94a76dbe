"""Event kinds and the Event record.

The numbers of ``EventKind`` are stored in every trace. The enum is append-only:
a new kind goes at the end with the next number, and changing the order or the
meaning of an existing kind bumps ``FORMAT_VERSION`` (trace_format/layout.py), the
way QEMU's ``ReplayEvents`` does. Payload conventions are in the comments and, checked,
in ``PAYLOAD_CHECKS``: the reader refuses a record whose payload does not have its
kind's shape, so no consumer ever sees a malformed payload. A new kind adds its entry
there (a test makes sure every kind has one).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
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
    SWITCH = 18        # payload: [tid, how] — thread tid goes on the CPU; how: 0 run, 1 retry its call, 2 its wait timed out (async)
    SIGNAL_IN = 19     # payload: int signo — a signal sent to the Linux program from outside (async)
    # New kinds go here, at the end, with the next number.


# Answers the guest asked for at a precise instruction: replay must see the same request.
SYNC_KINDS: frozenset[EventKind] = frozenset({EventKind.CLOCK, EventKind.RDTSC, EventKind.ENTROPY,
                                              EventKind.SYSCALL})

# Inputs the host pushed at an instruction count of its choosing: replay injects them there.
ASYNC_KINDS: frozenset[EventKind] = frozenset({
    EventKind.TIMER, EventKind.SOCK_ACCEPT, EventKind.SOCK_DATA, EventKind.SOCK_HUP,
    EventKind.CONSOLE_IN, EventKind.INTERRUPT, EventKind.SWITCH, EventKind.SIGNAL_IN,
})

# Number in the file -> kind; a dict lookup is several times cheaper than EventKind(n).
KIND_BY_NUMBER: dict[int, EventKind] = {int(kind): kind for kind in EventKind}


# --- payload shapes ------------------------------------------------------------------
# Each check returns None when ``payload`` has its kind's shape, else what is wrong (one
# short phrase). They run on every decoded record, so they are written to be cheap.

U64 = 1 << 64
MAX_CHANNEL = 1 << 16              # channel numbers: the device has fewer; replay checks the exact bound
DIGEST_LEN = 16                    # blake2b-128 of registers/devices and of RAM (Machine.state_digest)


def _u64(payload: object) -> str | None:
    if type(payload) is int and 0 <= payload < U64:
        return None
    return "not an integer in 0..2^64-1"


def _channel(payload: object) -> str | None:
    if type(payload) is int and 0 <= payload < MAX_CHANNEL:
        return None
    return f"not a channel number in 0..{MAX_CHANNEL - 1}"


def _nil(payload: object) -> str | None:
    return None if payload is None else "not nil"


def _bin(payload: object) -> str | None:
    return None if type(payload) is bytes else "not bytes"


def _sock_data(payload: object) -> str | None:
    if (type(payload) is list and len(payload) == 2 and _channel(payload[0]) is None
            and type(payload[1]) is bytes):
        return None
    return "not [channel, bytes]"


def _vector(payload: object) -> str | None:
    return None if type(payload) is int and 0 <= payload < 256 else "not a vector in 0..255"


def is_state_digest(value: object) -> bool:
    """[rip, 16-byte hash, 16-byte hash]: the shape of Machine.state_digest()."""
    return (type(value) is list and len(value) == 3 and type(value[0]) is int
            and 0 <= value[0] < U64 and type(value[1]) is bytes and len(value[1]) == DIGEST_LEN
            and type(value[2]) is bytes and len(value[2]) == DIGEST_LEN)


def _digest(payload: object) -> str | None:
    return None if is_state_digest(payload) else "not [rip, 16-byte hash, 16-byte hash]"


def _output(payload: object) -> str | None:
    if (type(payload) is list and len(payload) == 3 and type(payload[0]) is str
            and type(payload[1]) is bytes and _u64(payload[2]) is None):
        return None
    return "not [stream name, digest bytes, total bytes]"


def _exception(payload: object) -> str | None:
    if (type(payload) is list and len(payload) == 2 and _vector(payload[0]) is None
            and type(payload[1]) is int and 0 <= payload[1] < U64):
        return None
    return "not [vector, error code]"


def _checkpoint(payload: object) -> str | None:
    return None if type(payload) is dict else "not a map"      # the reader checks its fields


# END map: key -> (types allowed, range check or None). Keys not listed may hold any value
# (a newer recorder may add a summary); consumers use only the keys listed here.
_INT = (int,)
END_FIELDS: dict[str, tuple[tuple[type, ...], Callable[[object], bool] | None]] = {
    "reason": ((str,), lambda v: len(v) <= 64),
    "icount": (_INT, lambda v: 0 <= v < U64),
    "exit_status": (_INT, lambda v: 0 <= v < U64),
    "rip": (_INT, lambda v: 0 <= v < U64),
    "vector": ((int, type(None)), lambda v: v is None or 0 <= v < 256),
    "kind": ((str,), lambda v: len(v) <= 256),
    "why": ((str,), lambda v: len(v) <= 4096),
    "detail": ((str,), lambda v: len(v) <= 65536),
    "report": ((str,), lambda v: len(v) <= 1 << 20),
    "fault_address": ((int, type(None)), lambda v: v is None or 0 <= v < U64),
    "digest": ((list,), is_state_digest),
    "outputs": ((dict,), lambda v: all(
        type(k) is str and type(x) is list and len(x) == 2 and type(x[0]) is str
        and type(x[1]) is int and 0 <= x[1] < U64 for k, x in v.items())),
    "registers": ((dict,), lambda v: all(type(k) is str and type(x) is int for k, x in v.items())),
    "disassembly": ((list,), lambda v: all(type(x) is str for x in v)),
    "signal": ((int,), lambda v: 0 <= v <= 64),
    "pid": ((int,), lambda v: 0 <= v < 1 << 31),          # a Linux program's crash: which process
    "program": ((str,), lambda v: len(v) <= 65536),
    "linux": ((dict,), None),                  # a Linux program's summary: vmrr info checks its parts
}


def check_end(payload: object) -> str | None:
    """None when ``payload`` is a well-formed end map (the END record, the footer's end)."""
    if type(payload) is not dict:
        return "not a map"
    if type(payload.get("reason")) is not str:
        return "it has no reason"
    for key, value in payload.items():
        if type(key) is not str:
            return f"key {key!r} is not a string"
        spec = END_FIELDS.get(key)
        if spec is None:
            continue
        types, ok = spec
        if type(value) not in types or (ok is not None and not ok(value)):
            return f"field {key} is malformed"
    if payload["reason"] == "crash":
        for key in ("icount", "rip", "kind"):
            if key not in payload:
                return f"a crash end has no {key}"
    return None


def check_syscall(payload: object) -> str | None:
    """SYSCALL: [tid, nr, args, ret, answers]; ret is None for a call that does not return.

    Plain loops, not all() over generators: every system call of a recording passes here
    twice (written, then read)."""
    if not (type(payload) is list and len(payload) == 5):
        return "not [tid, nr, args, ret, answers]"
    tid, nr, args, ret, answers = payload
    if not (type(tid) is int and 0 <= tid < 1 << 31 and type(nr) is int and 0 <= nr < 1 << 16
            and type(args) is list and len(args) <= 6):
        return "a bad thread, number or argument list"
    for a in args:
        kind = type(a)
        if kind is int:
            if not 0 <= a < U64:
                return "an argument is neither a register value nor a path"
        elif kind is str:
            if len(a) > 4096:
                return "an argument is neither a register value nor a path"
        elif a is not None:
            return "an argument is neither a register value nor a path"
    if not (ret is None or type(ret) is int and -U64 < ret < U64):
        return "a bad result"
    if type(answers) is not list:
        return "the host answers are not [op, value] pairs"
    for a in answers:
        if not (type(a) is list and len(a) == 2 and type(a[0]) is str and len(a[0]) <= 32):
            return "the host answers are not [op, value] pairs"
    return None


def check_blob(payload: object) -> str | None:
    """BLOB: [sha256 (32 bytes), part, parts, bytes]."""
    if (type(payload) is list and len(payload) == 4 and type(payload[0]) is bytes and len(payload[0]) == 32
            and type(payload[1]) is int and type(payload[2]) is int and 0 <= payload[1] < payload[2] <= 1 << 10
            and type(payload[3]) is bytes):
        return None
    return "not [sha256, part, parts, bytes]"


def check_signal(payload: object) -> str | None:
    """SIGNAL: [tid, signo, code, value]."""
    if (type(payload) is list and len(payload) == 4 and type(payload[0]) is int and 0 <= payload[0] < 1 << 31
            and type(payload[1]) is int and 1 <= payload[1] <= 64 and type(payload[2]) is int
            and 0 <= payload[2] < 1 << 32 and type(payload[3]) is int and -U64 < payload[3] < U64):
        return None
    return "not [tid, signo, code, value]"


def check_switch(payload: object) -> str | None:
    """SWITCH: [tid, how]."""
    if (type(payload) is list and len(payload) == 2 and type(payload[0]) is int and 0 <= payload[0] < 1 << 31
            and payload[1] in (0, 1, 2) and type(payload[1]) is int):
        return None
    return "not [tid, how 0..2]"


def _signo(payload: object) -> str | None:
    return None if type(payload) is int and 1 <= payload <= 64 else "not a signal number 1..64"


PAYLOAD_CHECKS: dict[EventKind, Callable[[object], str | None]] = {
    EventKind.CLOCK: _u64,
    EventKind.RDTSC: _u64,
    EventKind.ENTROPY: _u64,
    EventKind.TIMER: _nil,
    EventKind.SOCK_ACCEPT: _channel,
    EventKind.SOCK_DATA: _sock_data,
    EventKind.SOCK_HUP: _channel,
    EventKind.CONSOLE_IN: _bin,
    EventKind.INTERRUPT: _vector,
    EventKind.DIGEST: _digest,
    EventKind.OUTPUT: _output,
    EventKind.CHECKPOINT: _checkpoint,
    EventKind.EXCEPTION: _exception,
    EventKind.END: check_end,
    EventKind.SYSCALL: check_syscall,
    EventKind.BLOB: check_blob,
    EventKind.SIGNAL: check_signal,
    EventKind.SWITCH: check_switch,
    EventKind.SIGNAL_IN: _signo,
}


@dataclass(frozen=True, slots=True)
class Event:
    """One record of the trace: at instruction count ``icount``, ``kind`` happened.

    Payloads come back as msgpack decodes them: arrays as lists, str as str, bin as bytes.
    """

    icount: int
    kind: EventKind
    payload: object

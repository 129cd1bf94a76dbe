"""Hostile traces: mutate vmrr traces and sidecars, run vmrr on them in-process, judge.

The harness of ``tests/functional/test_fuzz.py`` (a few thousand mutants, fixed seeds)
and ``bench/bench_fuzz.py`` (the long campaign). Two kinds of mutants:

- *byte-level*: flipped, inserted, deleted or truncated bytes, optionally with every
  checksum recomputed afterwards (header CRC, chunk CRCs, footer and trailer CRCs), so
  that the damage reaches the decoder;
- *structure-aware*: the trace is decoded into its header map, image and records, one
  value somewhere is replaced (a header field, an event payload, a checkpoint's
  register, device field or page byte, a footer entry, ...), and the trace is framed
  again with valid chunks, a consistent footer and correct checksums, so that the
  mutation reaches the replayer.

A run is judged by what escapes: a traceback (any exception other than a VmrrError,
including vmrr's last-resort "internal error" line), an exit code other than 0, 1 or 2,
a hang, or a *wrong answer*: a mutant that is accepted but behaves differently from the
original (a verified replay ending in another state, a checkpoint that enters a state
other than the one recorded, a rejected sidecar leaving output behind).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import os
import random
import resource
import signal
import struct
import sys
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import lz4.block
import lz4.frame
import msgpack

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from trace_format import layout  # noqa: E402

_pack = msgpack.Packer(use_bin_type=True, autoreset=True).pack


def _unpack(data: bytes) -> object:
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


# --- decoding and framing a trace ----------------------------------------------------


@dataclass
class Decoded:
    """A trace as values: enough to change any of them and frame the trace again."""

    version: int
    header: dict
    image: bytes
    chunks: list[list]              # per chunk: its records, [delta, kind, payload]
    firsts: list[int]               # per chunk: first_icount of its frame
    footer: dict | None             # None for a killed recording
    tail: bytes = b""               # bytes after the last complete chunk (a cut chunk)


def decode(data: bytes) -> Decoded:
    """Decode a trace vmrr wrote (trusted: the originals, not mutants)."""
    version, header_len, image_len = struct.unpack_from("<IIQ", data, 8)
    header = _unpack(data[28:28 + header_len])
    image = data[28 + header_len:28 + header_len + image_len]
    offset = 28 + header_len + image_len
    end = len(data)
    footer = None
    if data[-8:] == layout.TRAILER_MAGIC:
        footer_offset, footer_len = struct.unpack_from("<QI", data, len(data) - 32)
        footer = _unpack(data[footer_offset:footer_offset + footer_len])
        end = footer_offset
    chunks, firsts = [], []
    while offset + 40 <= end:
        _, _, comp_len, raw_len, n, first, _ = layout.CHUNK_HEAD.unpack_from(data, offset)
        if offset + 40 + comp_len > end:
            break
        raw = lz4.block.decompress(data[offset + 40:offset + 40 + comp_len], uncompressed_size=raw_len)
        chunks.append(layout.unpack_records(raw, n))
        firsts.append(first)
        offset += 40 + comp_len
    return Decoded(version, header, image, chunks, firsts, footer, data[offset:end])


def encode(d: Decoded, *, footer_hook=None) -> bytes:
    """Frame ``d`` as a trace with valid checksums; the footer's chunk index and counts
    are recomputed from the chunks, then ``footer_hook(footer)`` may change it."""
    header_map = _pack(d.header)
    fields = layout.HEADER_FIELDS.pack(layout.FILE_MAGIC, d.version, len(header_map), len(d.image))
    out = [fields, layout.HEADER_CRC.pack(zlib.crc32(header_map, zlib.crc32(fields))), header_map, d.image]
    offset = sum(map(len, out))
    rows, totals = [], Counter()
    for index, (records, first) in enumerate(zip(d.chunks, d.firsts)):
        raw = b"".join(_pack(record) for record in records)
        last = first + sum(r[0] for r in records if type(r) is list and r and type(r[0]) is int and r[0] > 0)
        last = min(max(last, first), layout.MAX_ICOUNT)
        frame = layout.pack_chunk(index, raw, len(records), first, last)
        counts = Counter(r[1] for r in records if type(r) is list and len(r) > 1 and type(r[1]) is int)
        rows.append([offset, len(frame), first, last, len(records), sorted(map(list, counts.items()))])
        totals.update(counts)
        out.append(frame)
        offset += len(frame)
    if d.footer is None:
        out.append(d.tail)
        return b"".join(out)
    footer = dict(d.footer)
    footer["chunks"] = rows
    totals.pop(12, None)
    footer["event_counts"] = sorted(map(list, totals.items()))
    if footer_hook is not None:
        footer_hook(footer)
    footer_bytes = _pack(footer)
    out.append(footer_bytes)
    out.append(layout.pack_trailer(offset, footer_bytes, len(d.chunks)))
    return b"".join(out)


def fix_checksums(data: bytearray) -> bytearray:
    """Recompute every CRC of a (damaged) trace where its frames can still be found."""
    if len(data) < 28:
        return data
    header_len, image_len = struct.unpack_from("<IQ", data, 12)
    if 28 + header_len <= len(data):
        struct.pack_into("<I", data, 24, zlib.crc32(bytes(data[28:28 + header_len]), zlib.crc32(bytes(data[:24]))))
    offset = 28 + header_len + image_len
    footer_offset = None
    if data[-8:] == layout.TRAILER_MAGIC and len(data) >= 32:
        footer_offset, footer_len = struct.unpack_from("<QI", data, len(data) - 32)
        if footer_offset + footer_len <= len(data) - 32:
            struct.pack_into("<I", data, len(data) - 20, zlib.crc32(bytes(data[footer_offset:footer_offset + footer_len])))
        trailer = len(data) - 32
        struct.pack_into("<I", data, trailer + 20, zlib.crc32(bytes(data[trailer:trailer + 20])))
    limit = footer_offset if footer_offset is not None and footer_offset <= len(data) else len(data)
    while offset + 40 <= limit and data[offset:offset + 4] == layout.CHUNK_MAGIC:
        comp_len = struct.unpack_from("<I", data, offset + 8)[0]
        if offset + 40 + comp_len > limit:
            break
        crc = zlib.crc32(bytes(data[offset + 40:offset + 40 + comp_len]), zlib.crc32(bytes(data[offset:offset + 36])))
        struct.pack_into("<I", data, offset + 36, crc)
        offset += 40 + comp_len
    return data


# --- mutating values -----------------------------------------------------------------

INTERESTING = [0, 1, -1, 2, 255, 256, 4095, 4096, 65535, 65536, 2**31 - 1, 2**31, 2**32 - 1,
               2**32, 2**40, 2**52, 2**63 - 1, 2**63, 2**64 - 1, -2**63, 0.5, -0.0, 1e308,
               float("nan"), float("inf"), float("-inf"), "", "x", "qemu64", "a" * 5000, b"",
               b"\x00", bytes(16), bytes(4096), bytes(4097), None, True, False, [], [0], [[0, b""]],
               {}, {"a": 1}, {b"k": b"v"}, {1: 2}, [None, None, None], [1, b"", b""]]


def mutate_value(value: object, rng: random.Random, depth: int = 0) -> object:
    """``value`` with one thing somewhere inside it changed."""
    if depth < 6 and rng.random() < 0.75:
        if isinstance(value, list) and value:
            i = rng.randrange(len(value))
            value = list(value)
            value[i] = mutate_value(value[i], rng, depth + 1)
            return value
        if isinstance(value, dict) and value:
            key = rng.choice(list(value))
            value = dict(value)
            value[key] = mutate_value(value[key], rng, depth + 1)
            return value
    choice = rng.random()
    if choice < 0.35:
        return copy.deepcopy(rng.choice(INTERESTING))
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return rng.choice([value + 1, value - 1, value * 2, value ^ (1 << rng.randrange(64)), -value])
    if isinstance(value, bytes):
        data = bytearray(value)
        if data and rng.random() < 0.6:
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        elif data and rng.random() < 0.5:
            del data[rng.randrange(len(data)):]
        else:
            data += bytes(rng.randrange(1, 64))
        return bytes(data)
    if isinstance(value, str):
        return value + rng.choice(["x", "\u00e9", "\x00", "9"]) if rng.random() < 0.5 else value[:-1]
    if isinstance(value, list):
        value = list(value)
        op = rng.random()
        if value and op < 0.4:
            del value[rng.randrange(len(value))]
        elif value and op < 0.7:
            value.insert(rng.randrange(len(value) + 1), copy.deepcopy(rng.choice(value)))
        else:
            value.append(copy.deepcopy(rng.choice(INTERESTING)))
        return value
    if isinstance(value, dict):
        value = dict(value)
        if value and rng.random() < 0.5:
            del value[rng.choice(list(value))]
        else:
            value[rng.choice(["extra", b"bin", 7, None, "cpu", "digest"])] = rng.choice(INTERESTING)
        return value
    return copy.deepcopy(rng.choice(INTERESTING))


def byte_mutant(data: bytes, rng: random.Random, *, fix: bool) -> bytes:
    """Flip, insert, delete or cut bytes; with ``fix``, recompute the checksums after."""
    out = bytearray(data)
    for _ in range(rng.choice([1, 1, 1, 2, 4, 16])):
        op = rng.random()
        at = rng.randrange(len(out)) if out else 0
        if op < 0.6 and out:
            out[at] ^= 1 << rng.randrange(8) if rng.random() < 0.7 else rng.randrange(1, 256)
        elif op < 0.75:
            out[at:at] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 9)))
        elif op < 0.9 and out:
            del out[at:at + rng.randrange(1, 65)]
        else:
            del out[at:]
    return bytes(fix_checksums(out)) if fix else bytes(out)


CHECKPOINT = 12


def structure_mutant(d: Decoded, rng: random.Random) -> tuple[bytes, str]:
    """One value of the trace changed, framed again with valid checksums; (bytes, what)."""
    d = Decoded(d.version, copy.deepcopy(d.header), d.image, [list(c) for c in d.chunks],
                list(d.firsts), copy.deepcopy(d.footer), d.tail)
    checkpoint_chunks = [i for i, c in enumerate(d.chunks) if any(r[1] == CHECKPOINT for r in c)]
    event_chunks = [i for i, c in enumerate(d.chunks) if i not in checkpoint_chunks]
    target = rng.choices(["header", "event", "record", "checkpoint", "page", "footer", "chunks", "image"],
                         [3, 4, 1, 3, 3, 2, 1, 1])[0]
    hook = None
    if target == "header":
        d.header = mutate_value(d.header, rng)
    elif target in ("event", "record") and event_chunks:
        i = rng.choice(event_chunks)
        j = rng.randrange(len(d.chunks[i]))
        record = list(d.chunks[i][j])
        if target == "event":
            record[2] = mutate_value(record[2], rng)
        else:
            record = mutate_value(record, rng)
        d.chunks[i][j] = record
    elif target in ("checkpoint", "page") and checkpoint_chunks:
        i = rng.choice(checkpoint_chunks)
        record = copy.deepcopy(d.chunks[i][0])
        payload = record[2]
        if target == "page" and payload.get("pages"):
            entry = rng.choice(payload["pages"])
            page = bytearray(entry[1])
            page[rng.randrange(len(page))] ^= 1 << rng.randrange(8)
            entry[1] = bytes(page)
        else:
            key = rng.choice([k for k in payload if payload[k] is not None] or list(payload))
            payload[key] = mutate_value(payload[key], rng)
        d.chunks[i][0] = record
    elif target == "footer" and d.footer is not None:
        key = rng.choice(["checkpoints", "end", "chunks", "event_counts"])

        def hook(footer, key=key):
            footer[key] = mutate_value(footer.get(key), rng)
    elif target == "chunks" and len(d.chunks) > 1:
        i, j = rng.randrange(len(d.chunks)), rng.randrange(len(d.chunks))
        op = rng.random()
        if op < 0.4:
            del d.chunks[i], d.firsts[i]
        elif op < 0.7:
            d.chunks.insert(j, d.chunks[i])
            d.firsts.insert(j, d.firsts[i])
        else:
            d.chunks[i], d.chunks[j] = d.chunks[j], d.chunks[i]
            d.firsts[i], d.firsts[j] = d.firsts[j], d.firsts[i]
    elif target == "image":
        image = bytearray(d.image)
        for _ in range(rng.choice([1, 1, 4, 32])):
            at = rng.randrange(len(image))
            image[at] = rng.randrange(256)
        d.image = bytes(image)
        if isinstance(d.header.get("config"), dict):
            d.header["config"]["image_sha256"] = hashlib.sha256(d.image).hexdigest()
    else:
        d.header = mutate_value(d.header, rng)
        target = "header"
    return encode(d, footer_hook=hook), target


# --- sidecars --------------------------------------------------------------------------


def sidecar_structure_mutant(data: bytes, rng: random.Random, key: bytes | None) -> tuple[bytes, bool]:
    """A sidecar with one decoded value changed; re-signed with ``key`` if given (else its
    old MAC is kept, as an attacker without the key would have to). Returns (bytes,
    whether the content differs at all: a mutation may put back an equal value)."""
    from replay import sidecar

    old_body = data[sidecar.HEAD_LEN:]
    packed = lz4.frame.decompress(old_body)
    content = mutate_value(_unpack(packed), rng)
    new_packed = _pack(content)
    if new_packed == packed:
        return data, False
    new_body = lz4.frame.compress(new_packed)
    mac = data[len(sidecar.MAGIC):sidecar.HEAD_LEN] if key is None else sidecar._mac(key, new_body)
    return sidecar.MAGIC + mac + new_body, True


# --- a corpus: every kind of trace vmrr writes -------------------------------------------


def record(path: str, guest: str, *, max_instructions: int = 5_000_000, checkpoint_every: int = 500_000,
           boot_args: str = "", client=None, mem_size: int = 4 << 20) -> str:
    """Record ``guest`` (an image name under guests/images) in this process into ``path``.

    ``client(address)``, if given, runs in a thread against the recording's listener."""
    import threading

    from recorder import RecordSession
    from vmm.loader import load_image

    session = RecordSession(load_image(str(ROOT / "guests" / "images" / f"{guest}.elf")), path,
                            mem_size=mem_size, boot_args=boot_args, checkpoint_every=checkpoint_every,
                            listen=("127.0.0.1", 0) if client else None)
    thread = None
    if client is not None:
        thread = threading.Thread(target=client, args=(session.boundary.listen_address,), daemon=True)
        thread.start()
    session.run(max_instructions=max_instructions, duration=20)
    if thread is not None:
        thread.join(10)
    return path


LINUX_PROGRAM = r"""
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <sys/random.h>
int main(void) {
    struct timespec ts; unsigned r = 0; char line[64] = "";
    clock_gettime(CLOCK_MONOTONIC, &ts);
    getrandom(&r, sizeof r, 0);
    FILE *f = fopen("/etc/hostname", "r");
    if (f) { fgets(line, sizeof line, f); fclose(f); }
    char *p = malloc(1 << 16); p[100] = 1;
    printf("%u %ld %s", r % 1000, (long)ts.tv_nsec % 7, line);
    return 0;
}
"""


LINUX_THREADS_PROGRAM = r"""
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static long total;
static int pipefd[2];
static void *worker(void *arg) {
    long id = (long)arg;
    for (int i = 0; i < 20000; i++) {
        pthread_mutex_lock(&lock);
        total += id * i % 7;
        pthread_mutex_unlock(&lock);
        if (i % 5000 == 0) write(pipefd[1], "x", 1);
    }
    return 0;
}
int main(void) {
    pthread_t t[3];
    char buf[64];
    pipe(pipefd);
    for (long i = 0; i < 3; i++) pthread_create(&t[i], 0, worker, (void *)(i + 1));
    int got = 0;
    while (got < 12) got += read(pipefd[0], buf, sizeof buf);
    for (int i = 0; i < 3; i++) pthread_join(t[i], 0);
    printf("%ld\n", total);
    return 0;
}
"""


LINUX_PROCESSES_PROGRAM = r"""
#define _GNU_SOURCE
#include <semaphore.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
int main(void) {
    int sv[2], p[2];
    socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    pipe(p);
    sem_t *sem = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    sem_init(sem, 1, 0);
    pid_t kid = fork();
    if (kid == 0) {                       /* receives a descriptor, reads through it */
        char c, buf[CMSG_SPACE(sizeof(int))];
        struct iovec io = {&c, 1};
        struct msghdr m = {0};
        m.msg_iov = &io; m.msg_iovlen = 1; m.msg_control = buf; m.msg_controllen = sizeof buf;
        recvmsg(sv[1], &m, 0);
        int fd;
        memcpy(&fd, CMSG_DATA(CMSG_FIRSTHDR(&m)), sizeof fd);
        char got[8] = {0};
        read(fd, got, 5);
        sem_post(sem);
        _exit(got[0] == 'h' ? 3 : 4);
    }
    pid_t zombie = fork();
    if (zombie == 0)
        _exit(7);
    for (volatile long i = 0; i < 300000; i++) ;   /* checkpoints with three processes */
    char c = 'x', buf[CMSG_SPACE(sizeof(int))];
    struct iovec io = {&c, 1};
    struct msghdr m = {0};
    m.msg_iov = &io; m.msg_iovlen = 1; m.msg_control = buf; m.msg_controllen = sizeof buf;
    struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
    cm->cmsg_level = SOL_SOCKET; cm->cmsg_type = SCM_RIGHTS; cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &p[0], sizeof(int));
    sendmsg(sv[0], &m, 0);
    write(p[1], "hello", 5);
    sem_wait(sem);
    int st1, st2;
    waitpid(kid, &st1, 0);
    waitpid(zombie, &st2, 0);
    printf("%d %d\n", WEXITSTATUS(st1), WEXITSTATUS(st2));
    return 0;
}
"""


def record_linux(path: str, directory: Path, *, threads: bool = False, processes: bool = False) -> str | None:
    """A Linux program's trace (a small static C program: SYSCALL, BLOB events; with
    ``threads``, three pthreads on a mutex and a pipe: SWITCH events too; with
    ``processes``, a fork tree passing a descriptor over a socketpair, a zombie and a
    shared semaphore: processes, descriptors in flight and futexes in checkpoints), or
    None without gcc."""
    import shutil
    import subprocess

    from recorder import RecordSession
    from vmm.linux.program import LinuxProgram

    gcc = shutil.which("gcc")
    if gcc is None:
        return None
    name = "linux-threads" if threads else "linux-processes" if processes else "linux"
    source, exe = directory / f"{name}.c", directory / f"{name}-prog"
    source.write_text(LINUX_THREADS_PROGRAM if threads else LINUX_PROCESSES_PROGRAM if processes else LINUX_PROGRAM)
    subprocess.run([gcc, "-O1", "-static", "-pthread", "-o", str(exe), str(source)], check=True)
    program = LinuxProgram.from_host([str(exe)], ["LANG=C"], cwd=str(directory))
    session = RecordSession(program, path, mem_size=64 << 20, checkpoint_every=100_000, console_output=None)
    session.run(duration=20)
    return path


def echo_clients(address) -> None:
    """Two TCP clients of t_echo: a line, then 5000 bytes, each echoed back."""
    import socket

    for message in (b"hello over tcp\n", b"x" * 5000):
        with socket.create_connection(address, timeout=10) as sock:
            sock.sendall(message)
            got = b""
            while len(got) < len(message):
                more = sock.recv(65536)
                if not more:
                    break
                got += more


def build_corpus(directory: str) -> dict[str, str]:
    """{kind: path} of every kind of trace vmrr writes, recorded small and fast."""
    d = Path(directory)
    traces = {
        "poweroff": record(str(d / "hello.vmrr"), "t_hello"),
        "checkpoints": record(str(d / "timers.vmrr"), "t_timer_modes", checkpoint_every=300_000,
                              max_instructions=1_200_000),
        "crash": record(str(d / "crash.vmrr"), "t_crash_null"),
        "sockets": record(str(d / "echo.vmrr"), "t_echo", boot_args="max_clients=2", client=echo_clients),
        "exceptions": record(str(d / "exceptions.vmrr"), "t_exceptions"),
    }
    linux = record_linux(str(d / "linux.vmrr"), d)
    if linux is not None:
        traces["linux"] = linux
        traces["linux-threads"] = record_linux(str(d / "linux-threads.vmrr"), d, threads=True)
        traces["linux-processes"] = record_linux(str(d / "linux-processes.vmrr"), d, processes=True)
    # A killed recording: the trace as it was on disk before the footer was written,
    # with a chunk cut short after it.
    decoded = decode(Path(traces["checkpoints"]).read_bytes())
    decoded.footer = None
    killed = d / "killed.vmrr.incomplete"
    killed.write_bytes(encode(decoded) + b"VMCK" + bytes(30))
    traces["killed"] = str(killed)
    return traces


# --- running vmrr in-process -------------------------------------------------------------


class Hang(BaseException):
    """A run took longer than its time limit."""


@dataclass
class Outcome:
    code: int | None                 # the exit code, or None when something escaped main()
    stdout: bytes = b""
    stderr: str = ""
    escaped: str | None = None       # a traceback's exception, or "internal error ..."
    hang: bool = False
    wrong: str | None = None         # a wrong answer, described
    seconds: float = 0.0


@contextlib.contextmanager
def _time_limit(seconds: float):
    def on_alarm(_signum, _frame):
        raise Hang()

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def _captured():
    """Capture stdout and stderr; the dict yielded gets "out" (bytes) and "err" (str) at the end."""
    out, err = io.BytesIO(), io.BytesIO()
    saved = sys.stdout, sys.stderr, signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    wrappers = io.TextIOWrapper(out, write_through=True), io.TextIOWrapper(err, write_through=True)
    sys.stdout, sys.stderr = wrappers
    captured: dict = {}
    try:
        yield captured
    finally:
        for wrapper in wrappers:
            try:
                wrapper.flush()
            except ValueError:
                pass
        captured["out"] = out.getvalue() if not out.closed else b""
        captured["err"] = err.getvalue().decode("utf-8", "replace") if not err.closed else ""
        sys.stdout, sys.stderr = saved[0], saved[1]
        signal.signal(signal.SIGINT, saved[2])
        signal.signal(signal.SIGTERM, saved[3])


def run_cli(argv: list[str], *, limit: float = 30.0) -> Outcome:
    """``vmrr.main(argv)`` in this process, stdout and stderr captured."""
    import vmrr

    start = time.perf_counter()
    result = Outcome(None)
    with _captured() as captured:
        try:
            with _time_limit(limit):
                result.code = vmrr.main(argv)
        except Hang:
            result.hang = True
        except SystemExit as exc:                 # argparse
            result.code = exc.code if isinstance(exc.code, int) else 2
        except BaseException as exc:              # noqa: BLE001 - this is what we count
            result.escaped = f"{type(exc).__name__}: {exc}"[:300]
    result.stdout = captured["out"]
    result.stderr = captured["err"]
    if "internal error" in result.stderr or "Traceback" in result.stderr:
        result.escaped = result.escaped or result.stderr.strip().splitlines()[-1][:300]
    result.seconds = time.perf_counter() - start
    return result


def run_api(action, *, limit: float = 30.0) -> Outcome:
    """Call ``action()``: a VmrrError is a clean refusal (exit 2, or 1 for a failed check);
    ``action`` returns None, or a description of a wrong answer."""
    from vmm.errors import VmrrError

    start = time.perf_counter()
    result = Outcome(0)
    try:
        with _time_limit(limit):
            result.wrong = action()
    except Hang:
        result.hang = True
        result.code = None
    except VmrrError as exc:
        result.code = exc.exit_code
        result.stderr = str(exc)
    except BaseException as exc:                  # noqa: BLE001
        result.code = None
        import traceback
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        result.escaped = f"{type(exc).__name__}: {exc} at {frame.filename}:{frame.lineno}"[:400]
    result.seconds = time.perf_counter() - start
    return result


# --- what an original trace does, to judge its mutants by ------------------------------


@dataclass
class Reference:
    """What the unmutated trace replays to: final state, outputs, each checkpoint's state."""

    path: str
    complete: bool
    final_digest: list | None = None
    outputs: dict = field(default_factory=dict)
    checkpoint_digests: dict[int, list] = field(default_factory=dict)    # icount -> digest
    last_icount: int = 0
    console: bytes = b""


def reference(path: str, *, max_mem: int) -> Reference:
    from replay import Replay

    with Replay(path, verify=True, max_mem=max_mem) as rep:
        rep.run()
        ref = Reference(path, rep.reader.complete, rep.machine.state_digest(), rep.machine.output_summary(),
                        last_icount=rep.icount)
        refs = list(rep.reader.checkpoints)
    for checkpoint in refs:
        with Replay(path, verify=False, max_mem=max_mem) as rep:
            rep.start_from_checkpoint(checkpoint.index)
            ref.checkpoint_digests[checkpoint.icount] = rep.machine.state_digest()
    return ref


def replay_verified(path: str, ref: Reference, *, max_mem: int):
    """Action: replay --verify through the API; a complete mutant that verifies must end
    exactly like the original."""
    from replay import Replay
    from vmm.machine import Outcome as RunOutcome

    def action():
        with Replay(path, verify=True, max_mem=max_mem, console_output=io.BytesIO()) as rep:
            report = rep.run()
            if ref.complete and rep.reader.complete and report.result.outcome is not RunOutcome.LIMIT:
                if rep.machine.state_digest() != ref.final_digest:
                    return "replay --verify accepted a trace that ends in another state"
                if rep.machine.output_summary() != ref.outputs:
                    return "replay --verify accepted a trace with other guest output"
        return None
    return action


def enter_checkpoints(path: str, ref: Reference, *, max_mem: int):
    """Action: enter every checkpoint; each one entered must be the recorded state, and a
    verified run from it must end like the original."""
    from replay import Replay
    from trace_format import TraceReader
    from vmm.machine import Outcome as RunOutcome

    def action():
        with TraceReader(path) as reader:
            refs = list(reader.checkpoints)[:4]
        for checkpoint in refs:
            with Replay(path, verify=True, max_mem=max_mem) as rep:
                icount = rep.start_from_checkpoint(checkpoint.index)
                expected = ref.checkpoint_digests.get(icount)
                if expected is None or rep.machine.state_digest() != expected:
                    return f"checkpoint {checkpoint.index} entered a state that was never recorded"
                report = rep.run()
                if (ref.complete and rep.reader.complete and report.result.outcome is not RunOutcome.LIMIT
                        and rep.machine.state_digest() != ref.final_digest):
                    return f"a verified run from checkpoint {checkpoint.index} ends in another state"
        return None
    return action


def time_travel(path: str, *, max_mem: int, sidecar: bool = False, ref: Reference | None = None):
    """Action: open for time travel, move around; with ``ref``, the history must be the original's."""
    from replay.timetravel import TimeTravel

    def action():
        tt = TimeTravel(path, memory_budget=64 << 20, sidecar=sidecar, max_mem=max_mem)
        try:
            wrong = None
            if ref is not None:
                if tt.last_icount != ref.last_icount:
                    wrong = f"time travel's history ends at {tt.last_icount}, not {ref.last_icount}"
                elif tt.console_output(tt.last_icount) != ref.console:
                    wrong = "time travel shows other console output"
            tt.seek(tt.last_icount // 2)
            tt.step_back()
            tt.step()
            tt.goto_end()
            tt.step_back()
            return wrong
        finally:
            tt.close()
    return action


def rss_mb() -> float:
    """This process's resident memory now, MiB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / (1 << 20)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

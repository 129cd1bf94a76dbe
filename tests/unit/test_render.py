"""Events rendered like strace (replay/render.py, vmm/linux/names.py) and `vmrr events`.

Synthetic SYSCALL events are rendered against a small table of our own (the shape of
vmm/linux/syscalls.py), so each argument type is checked on its own; a few are checked
against the real table. The CLI tests record a short appliance trace with console input.
"""

from __future__ import annotations

import errno
import json
import mmap
import os
import signal
import subprocess
import sys
from dataclasses import dataclass

import pytest

from tests.conftest import REPO, describe, guest, vmrr
from trace_format.events import Event, EventKind
from replay.render import escape_bytes, event_to_json, render_event, syscall_numbers_named
from vmm.linux import names

U64 = (1 << 64) - 1


def reg(value: int) -> int:
    """A signed number as the unsigned 64-bit register value the event stores."""
    return value & U64


@dataclass(frozen=True)
class Entry:
    name: str
    args: tuple[str, ...]


TABLE = {
    0: Entry("read", ("fd", "buf_out", "len")),
    1: Entry("write", ("fd", "buf_in", "len")),
    9: Entry("mmap", ("ptr", "len", "prot", "mapflags", "fd", "hex")),
    12: Entry("brk", ("ptr",)),
    72: Entry("fcntl", ("fd", "fcntl", "hex")),
    231: Entry("exit_group", ("int",)),
    257: Entry("openat", ("dirfd", "path", "oflags", "mode")),
    439: Entry("faccessat2", ("dirfd", "path", "int", "atflags")),
    500: Entry("probe", ("x",)),          # the type under test is patched in by test_argument_type
}
ALL_NAMES = {41: "socket"}


def syscall(nr, args, ret=0, answers=(), tid=1, icount=1000) -> Event:
    return Event(icount, EventKind.SYSCALL, [tid, nr, list(args), ret, list(answers)])


def text(event, **kw) -> str:
    return render_event(event, table=TABLE, all_names=ALL_NAMES, **kw)


# -- strings ----------------------------------------------------------------------------------

@pytest.mark.parametrize("data, expected", [
    (b"root:x:0\n", r'"root:x:0\n"'),
    (b"a\tb\rc\x0bd\x0c", r'"a\tb\rc\vd\f"'),
    (b'say "hi" \\o/', r'"say \"hi\" \\o/"'),
    (b"\x00", r'"\0"'),
    (b"\x001", r'"\0001"'),              # an octal digit follows: three digits, so it reads back
    (b"\x009", r'"\09"'),
    (b"\x7f\x01\xff\xc3\xa9", r'"\177\1\377\303\251"'),
    (b"", '""'),
])
def test_escape_like_strace(data, expected):
    assert escape_bytes(data, 0) == expected


def test_escape_cuts_at_the_limit():
    assert escape_bytes(b"0123456789", 4) == '"0123"...'
    assert escape_bytes(b"0123", 4) == '"0123"'
    assert escape_bytes(b"0123456789", 0) == '"0123456789"'
    assert escape_bytes(b"x" * 40) == '"' + "x" * 32 + '"...'


# -- system calls -----------------------------------------------------------------------------

def test_openat_as_strace_prints_it():
    event = syscall(257, [reg(-100), "/etc/passwd", 0o2000000, 0], ret=3, answers=[["open", 3]])
    assert text(event) == 'openat(AT_FDCWD, "/etc/passwd", O_RDONLY|O_CLOEXEC) = 3'
    # AT_FDCWD passed as a 32-bit int (upper half zero) is still AT_FDCWD.
    event = syscall(257, [0xffffff9c, "/tmp/x", 0o1101, 0o644], ret=4)
    assert text(event) == 'openat(AT_FDCWD, "/tmp/x", O_WRONLY|O_CREAT|O_TRUNC, 0644) = 4'


def test_error_return_names_the_errno_and_its_text():
    event = syscall(257, [reg(-100), "/nope", 0, 0], ret=-2)
    assert text(event) == 'openat(AT_FDCWD, "/nope", O_RDONLY) = -1 ENOENT (No such file or directory)'
    assert text(syscall(1, [1, 0x1000, 1], ret=-9)).endswith("= -1 EBADF (Bad file descriptor)")
    assert text(syscall(1, [1, 0x1000, 1], ret=reg(-38))).endswith("= -1 ENOSYS (Function not implemented)")
    assert text(syscall(1, [1, 0x1000, 1], ret=-4000)).endswith("= -1 ERRNO_4000 (Unknown error 4000)")


def test_path_strings_are_escaped_in_full_and_unreadable_ones_said_so():
    long_path = "/very/long/" + "d" * 60 + "/caf\u00e9\n"
    event = syscall(257, [3, long_path, 0o200000, 0], ret=5)
    assert text(event) == ('openat(3, "/very/long/' + "d" * 60 + r'/caf\303\251\n", O_RDONLY|O_DIRECTORY) = 5')
    assert text(syscall(257, [3, None, 0, 0], ret=-14)).startswith("openat(3, <unreadable>, O_RDONLY) = -1 EFAULT")


def test_read_shows_the_bytes_the_host_answered():
    data = b"root:x:0:0:root:/root:/bin/bash\nbin:x:1:1::/:/usr/sbin/nologin\n"
    event = syscall(0, [3, 0x7ffd0000, 4096], ret=len(data), answers=[["read", data]])
    assert text(event) == fr'read(3, "root:x:0:0:root:/root:/bin/bash\n"..., 4096) = {len(data)}'
    assert text(event, string_limit=4) == f'read(3, "root"..., 4096) = {len(data)}'
    assert text(event, string_limit=0) == (r'read(3, "root:x:0:0:root:/root:/bin/bash\nbin:x:1:1::/:/usr/sbin/nologin\n", '
                                           f"4096) = {len(data)}")
    # Only the bytes the call returned; the first bytes-valued answer; none: the pointer.
    short = syscall(0, [3, 0x7ffd0000, 4096], ret=2, answers=[["clock", 5], ["read", b"abcd"], ["read", b"zz"]])
    assert text(short) == 'read(3, "ab", 4096) = 2'
    assert text(syscall(0, [3, 0x7ffd0000, 4096], ret=0, answers=[["read", b""]])) == 'read(3, "", 4096) = 0'
    assert text(syscall(0, [3, 0x7ffd0000, 4096], ret=-11)) == \
        "read(3, 0x7ffd0000, 4096) = -1 EAGAIN (Resource temporarily unavailable)"


def test_write_shows_the_pointer():
    assert text(syscall(1, [1, 0x7ffde000, 12], ret=12)) == "write(1, 0x7ffde000, 12) = 12"


def test_mmap_and_brk_return_addresses_in_hex():
    event = syscall(9, [0, 8192, 3, 0x22, reg(-1), 0], ret=0x7ffff7ff0000)
    assert text(event) == "mmap(NULL, 8192, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x7ffff7ff0000"
    event = syscall(9, [0x400000, 4096, 5, 0x812, 3, 0x1000], ret=0x400000)
    assert text(event) == "mmap(0x400000, 4096, PROT_READ|PROT_EXEC, MAP_PRIVATE|MAP_FIXED|MAP_DENYWRITE, 3, 0x1000) = 0x400000"
    assert text(syscall(9, [0, 1 << 40, 0, 0x4022, reg(-1), 0], ret=-12)) == \
        ("mmap(NULL, 1099511627776, PROT_NONE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_NORESERVE, -1, 0) "
         "= -1 ENOMEM (Cannot allocate memory)")
    assert text(syscall(12, [0], ret=0x555555559000)) == "brk(NULL) = 0x555555559000"


def test_exit_group_returns_nothing():
    assert text(syscall(231, [0], ret=0)) == "exit_group(0) = ?"
    assert text(syscall(231, [reg(-1)], ret=None)) == "exit_group(-1) = ?"


def test_unknown_call_shows_six_registers_in_hex():
    event = syscall(999, [1, 0, U64, 0x10, 5, 6], ret=-38)
    assert text(event) == ("syscall_999(0x1, 0, 0xffffffffffffffff, 0x10, 0x5, 0x6) "
                           "= -1 ENOSYS (Function not implemented)")
    # A call the kernel has but the table lacks keeps its name.
    assert text(syscall(41, [2, 1, 0, 0, 0, 0], ret=-38)).startswith("socket(0x2, 0x1, 0, 0, 0, 0) = -1 ENOSYS")


def test_fcntl_arguments_and_flags_returned():
    assert text(syscall(72, [3, 2, 1])) == "fcntl(3, F_SETFD, FD_CLOEXEC) = 0"
    assert text(syscall(72, [3, 1, 0], ret=1)) == "fcntl(3, F_GETFD) = 0x1 (flags FD_CLOEXEC)"
    assert text(syscall(72, [3, 3, 0], ret=0o100002)) == "fcntl(3, F_GETFL) = 0x8002 (flags O_RDWR|O_LARGEFILE)"
    assert text(syscall(72, [3, 4, 0o4002])) == "fcntl(3, F_SETFL, O_RDWR|O_NONBLOCK) = 0"
    assert text(syscall(72, [3, 1030, 10], ret=10)) == "fcntl(3, F_DUPFD_CLOEXEC, 10) = 10"
    assert text(syscall(72, [3, 6, 0x7ffd0010])) == "fcntl(3, F_SETLK, 0x7ffd0010) = 0"


def test_futex_shows_the_arguments_its_operation_reads():
    futex = Entry("futex", ("ptr", "futex", "int", "ptr", "ptr", "int"))
    table = {**TABLE, 202: futex}
    wake = syscall(202, [0x7ffff7fb1a4c, 129, 0x7fffffff, 0, 3, 0], ret=1)
    assert render_event(wake, table=table) == "futex(0x7ffff7fb1a4c, FUTEX_WAKE_PRIVATE, 2147483647) = 1"
    wait = syscall(202, [0x1000, 128, 2, 0, 0, 0], ret=-11)
    assert render_event(wait, table=table) == \
        "futex(0x1000, FUTEX_WAIT_PRIVATE, 2, NULL) = -1 EAGAIN (Resource temporarily unavailable)"


def test_faccessat2_flags_mean_eaccess():
    assert text(syscall(439, [reg(-100), "/bin/sh", 1, 0x200])) == 'faccessat2(AT_FDCWD, "/bin/sh", 1, AT_EACCESS) = 0'


@pytest.mark.parametrize("kind, value, expected", [
    ("int", reg(-5), "-5"),
    ("int", 42, "42"),
    ("uint", U64, str(U64)),
    ("hex", 0, "0"),
    ("hex", 0x1f, "0x1f"),
    ("ptr", 0, "NULL"),
    ("ptr", 0x7ffd1234, "0x7ffd1234"),
    ("buf_in", 0x1000, "0x1000"),
    ("buf_out", 0x2000, "0x2000"),
    ("len", 4096, "4096"),
    ("fd", reg(-1), "-1"),
    ("fd", 0xffffffff, "-1"),
    ("dirfd", 7, "7"),
    ("dirfd", reg(-100), "AT_FDCWD"),
    ("oflags", 0o2200000 | 0x80000000, "O_RDONLY|O_DIRECTORY|O_CLOEXEC|0x80000000"),
    ("oflags", 0o4010002, "O_RDWR|O_SYNC"),
    ("oflags", 0o20200002, "O_RDWR|O_TMPFILE"),
    ("mode", 0o755, "0755"),
    ("mode", 0o100644, "S_IFREG|0644"),
    ("mode", 0o40700, "S_IFDIR|0700"),
    ("mode", 0, "000"),
    ("prot", 0, "PROT_NONE"),
    ("prot", 7, "PROT_READ|PROT_WRITE|PROT_EXEC"),
    ("prot", 0x10, "0x10"),
    ("mapflags", 0x20022, "MAP_PRIVATE|MAP_ANONYMOUS|MAP_STACK"),
    ("mapflags", 0x100002, "MAP_PRIVATE|MAP_FIXED_NOREPLACE"),
    ("mapflags", 0x1 | 0x8000000, "MAP_SHARED|0x8000000"),
    ("clockid", 1, "CLOCK_MONOTONIC"),
    ("clockid", 7, "CLOCK_BOOTTIME"),
    ("clockid", 99, "0x63 /* CLOCK_??? */"),
    ("signo", 11, "SIGSEGV"),
    ("signo", 32, "SIGRTMIN"),
    ("signo", 34, "SIGRT_2"),
    ("signo", 0, "0"),
    ("whence", 2, "SEEK_END"),
    ("atflags", 0x1100, "AT_SYMLINK_NOFOLLOW|AT_EMPTY_PATH"),
    ("atflags", 0x200, "AT_REMOVEDIR"),
    ("atflags", 0, "0"),
    ("atflags", 0x10000100, "AT_SYMLINK_NOFOLLOW|0x10000000"),
    ("fcntl", 1030, "F_DUPFD_CLOEXEC"),
    ("ioctl", 0x5401, "TCGETS"),
    ("ioctl", 0x5413, "TIOCGWINSZ"),
    ("ioctl", 0x5421, "FIONBIO"),
    ("ioctl", 0x5451, "FIOCLEX"),
    ("ioctl", 0xdead, "0xdead"),
    ("sigprocmask", 0, "SIG_BLOCK"),
    ("sigprocmask", 2, "SIG_SETMASK"),
    ("futex", 0, "FUTEX_WAIT"),
    ("futex", 129, "FUTEX_WAKE_PRIVATE"),
    ("futex", 9 | 128 | 256, "FUTEX_WAIT_BITSET_PRIVATE|FUTEX_CLOCK_REALTIME"),
    ("arch_prctl", 0x1002, "ARCH_SET_FS"),
    ("arch_prctl", 0x3001, "0x3001 /* ARCH_??? */"),
    ("madvise", 4, "MADV_DONTNEED"),
    ("madvise", 14, "MADV_HUGEPAGE"),
    ("rlimit", 3, "RLIMIT_STACK"),
    ("rlimit", 7, "RLIMIT_NOFILE"),
    ("sockdomain", 1, "AF_UNIX"),
    ("sockdomain", 2, "AF_INET"),
    ("sockdomain", 10, "AF_INET6"),
    ("socktype", 1 | 0o4000 | 0o2000000, "SOCK_STREAM|SOCK_NONBLOCK|SOCK_CLOEXEC"),
    ("socktype", 2, "SOCK_DGRAM"),
])
def test_argument_type(kind, value, expected, monkeypatch):
    monkeypatch.setitem(TABLE, 500, Entry("probe", (kind,)))
    assert text(syscall(500, [value], ret=0)) == f"probe({expected}) = 0"


def test_other_threads_get_a_pid_prefix():
    event = syscall(1, [1, 0x1000, 3], ret=3, tid=7)
    assert text(event, main_tid=7) == "write(1, 0x1000, 3) = 3"
    assert text(event, main_tid=1) == "[pid 7] write(1, 0x1000, 3) = 3"
    assert text(event) == "write(1, 0x1000, 3) = 3"


def test_a_payload_of_the_wrong_shape_renders_without_a_traceback():
    assert text(Event(5, EventKind.SYSCALL, [1, 2])) == "[1, 2]"
    assert render_event(Event(5, EventKind.SOCK_DATA, 7)) == "7"


def test_real_table_renders_glibc_startup_calls():
    pytest.importorskip("vmm.linux.syscalls")
    assert render_event(syscall(257, [reg(-100), "/etc/ld.so.cache", 0o2000000, 0], ret=3)) == \
        'openat(AT_FDCWD, "/etc/ld.so.cache", O_RDONLY|O_CLOEXEC) = 3'
    assert render_event(syscall(158, [0x1002, 0x7ffff7d8a740])) == "arch_prctl(ARCH_SET_FS, 0x7ffff7d8a740) = 0"
    assert render_event(syscall(16, [1, 0x5401, 0x7ffd0000], ret=-25)) == \
        "ioctl(1, TCGETS, 0x7ffd0000) = -1 ENOTTY (Inappropriate ioctl for device)"
    assert render_event(syscall(231, [0])) == "exit_group(0) = ?"
    assert syscall_numbers_named(["read", "openat"]) == {0, 257}
    with pytest.raises(KeyError, match="nope"):
        syscall_numbers_named(["read", "nope"])


# -- other kinds ------------------------------------------------------------------------------

def test_signal_line():
    event = Event(9, EventKind.SIGNAL, [1, 11, 1, 0])
    assert render_event(event) == "--- SIGSEGV {si_signo=SIGSEGV, si_code=1, si_addr=0x0} ---"
    event = Event(9, EventKind.SIGNAL, [2, 7, 2, 0xdead0000])
    assert "si_code=-6," in render_event(Event(9, EventKind.SIGNAL, [1, 6, 0xfffffffa, 0]))
    assert render_event(event, main_tid=1) == \
        "[pid 2] --- SIGBUS {si_signo=SIGBUS, si_code=2, si_addr=0xdead0000} ---"


def test_data_events_are_escaped_and_counted():
    data = b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n" * 100
    assert render_event(Event(1, EventKind.SOCK_DATA, [4, data])) == \
        r'[4] "*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r"... (3300 bytes)'
    assert render_event(Event(1, EventKind.SOCK_DATA, [0, b"PING\r\n"]), string_limit=0) == \
        r'[0] "PING\r\n" (6 bytes)'
    assert render_event(Event(1, EventKind.CONSOLE_IN, b"x")) == '"x" (1 byte)'
    assert render_event(Event(1, EventKind.CONSOLE_IN, b"ls -l\n"), string_limit=2) == '"ls"... (6 bytes)'


def test_blob_and_compact_kinds():
    digest = bytes(range(32))
    assert render_event(Event(0, EventKind.BLOB, [digest, 0, 3, b"\x7fELF" * 256])) == \
        "sha256 0001020304050607 part 1/3, 1024 bytes"
    assert render_event(Event(5, EventKind.TIMER, None)) == ""
    assert render_event(Event(5, EventKind.INTERRUPT, 32)) == "32"
    assert render_event(Event(5, EventKind.EXCEPTION, [14, 2])) == "[14, 2]"
    assert render_event(Event(5, EventKind.DIGEST, [0x401000, b"\xaa" * 32, b"\xbb" * 32])) == \
        "rip=0x401000 regs=aaaaaaaaaaaaaaaa... ram=bbbbbbbbbbbbbbbb..."
    end = render_event(Event(5, EventKind.END, {"reason": "poweroff", "exit_status": 0,
                                                "digest": b"\x00" * 32, "report": "x" * 1000}))
    assert end == '{reason="poweroff", exit_status=0}'


# -- JSON -------------------------------------------------------------------------------------

def test_json_keeps_every_byte():
    payload = {b"\x00key": [b"\x01\x02", {"inner": b""}], "n": 5, "s": "text"}
    obj = event_to_json(Event(3, EventKind.CHECKPOINT, payload))
    assert json.loads(json.dumps(obj)) == {
        "icount": 3, "kind": "CHECKPOINT",
        "payload": {"006b6579": [{"hex": "0102"}, {"inner": {"hex": ""}}], "n": 5, "s": "text"}}
    obj = event_to_json(Event(4, EventKind.SOCK_DATA, [2, b"\xff" * 5000]))
    assert bytes.fromhex(json.loads(json.dumps(obj))["payload"][1]["hex"]) == b"\xff" * 5000
    assert event_to_json(Event(4, EventKind.CONSOLE_IN, b"x"))["payload"] == {"hex": "78"}


def test_json_of_a_syscall_has_its_name_and_line():
    data = b"0123456789" * 10
    event = syscall(0, [3, 0x7ffd0000, 4096], ret=100, answers=[["read", data]], tid=1, icount=77)
    obj = json.loads(json.dumps(event_to_json(event, string_limit=8, table=TABLE)))
    assert obj == {"icount": 77, "kind": "SYSCALL", "syscall": "read",
                   "payload": [1, 0, [3, 0x7ffd0000, 4096], 100, [["read", {"hex": data.hex()}]]],
                   "text": 'read(3, "01234567"..., 4096) = 100'}


def test_json_of_end_drops_digest_and_report():
    obj = event_to_json(Event(9, EventKind.END, {"reason": "crash", "digest": b"\x00", "report": "..."}))
    assert obj["payload"] == {"reason": "crash"}


# -- names ------------------------------------------------------------------------------------

def test_errno_table_runs_through_ehwpoison_and_matches_linux():
    assert names.ERRNO[1][0] == "EPERM" and names.ERRNO[133][0] == "EHWPOISON"
    assert all(n in names.ERRNO for n in range(1, 134) if n not in (41, 58))
    assert names.errno_name(11) == "EAGAIN" and names.strerror(13) == "Permission denied"
    if sys.platform == "linux" and os.uname().machine == "x86_64":
        for number, (name, _text) in names.ERRNO.items():
            if hasattr(errno, name):
                assert getattr(errno, name) == number, name


def test_signal_names_match_linux():
    assert names.signal_name(1) == "SIGHUP" and names.signal_name(31) == "SIGSYS"
    if sys.platform == "linux":
        for number in range(1, 32):
            assert names.SIGNALS[number] == signal.Signals(number).name or number == 6 and \
                signal.Signals(number).name == "SIGIOT"


def test_flag_values_match_the_host_constants():
    if not (sys.platform == "linux" and os.uname().machine == "x86_64"):
        pytest.skip("Linux x86-64 constants")
    for name in ("O_CREAT", "O_EXCL", "O_NOCTTY", "O_TRUNC", "O_APPEND", "O_NONBLOCK", "O_DSYNC",
                 "O_DIRECT", "O_DIRECTORY", "O_NOFOLLOW", "O_NOATIME", "O_CLOEXEC", "O_SYNC",
                 "O_PATH", "O_TMPFILE"):
        assert names.open_flags(getattr(os, name)) == f"O_RDONLY|{name}", name
    for name in ("MAP_SHARED", "MAP_PRIVATE"):
        assert names.mmap_flags(getattr(mmap, name)) == name
    for name in ("MAP_ANONYMOUS", "MAP_DENYWRITE", "MAP_EXECUTABLE", "MAP_NORESERVE",
                 "MAP_POPULATE", "MAP_STACK"):
        if hasattr(mmap, name):
            assert names.mmap_flags(getattr(mmap, name)) == name, name
    assert names.mmap_prot(mmap.PROT_READ | mmap.PROT_WRITE) == "PROT_READ|PROT_WRITE"
    for name in ("MADV_DONTNEED", "MADV_FREE", "MADV_HUGEPAGE", "MADV_DONTDUMP"):
        if hasattr(mmap, name):
            assert names.madvise_advice(getattr(mmap, name)) == name
    assert names.seek_whence(os.SEEK_DATA) == "SEEK_DATA"
    assert names.clock_id(os.CLOCK_BOOTTIME if hasattr(os, "CLOCK_BOOTTIME") else 7) == "CLOCK_BOOTTIME"


# -- the CLI ----------------------------------------------------------------------------------

CONSOLE_INPUT = b'hello\tworld\n\x01\x7f"\\ and then some more text\n'


@pytest.fixture(scope="module")
def console_trace(tmp_path_factory):
    """t_nested recorded with console input: a short trace with one CONSOLE_IN event."""
    trace = tmp_path_factory.mktemp("render") / "nested.vmrr"
    record = vmrr("record", guest("t_nested"), "-o", trace, input=CONSOLE_INPUT)
    assert record.returncode == 0 and trace.is_file(), describe(record)
    return trace


def test_events_shows_console_input_escaped(console_trace):
    proc = vmrr("events", console_trace, "--kind", "console_in")
    assert proc.returncode == 0, describe(proc)
    lines = proc.stdout.splitlines()
    assert len(lines) == 1, describe(proc)
    icount, kind, rest = lines[0].split(maxsplit=2)
    assert int(icount) > 0 and kind == "CONSOLE_IN"
    assert lines[0].startswith(f"{icount:>14}  CONSOLE_IN   ")
    assert rest == rf'"hello\tworld\n\1\177\"\\ and then some m"... ({len(CONSOLE_INPUT)} bytes)'

    full = vmrr("events", console_trace, "--kind", "CONSOLE_IN", "-s", "0")
    assert full.stdout.split(maxsplit=2)[2].strip() == \
        rf'"hello\tworld\n\1\177\"\\ and then some more text\n" ({len(CONSOLE_INPUT)} bytes)'
    short = vmrr("events", console_trace, "--kind", "CONSOLE_IN", "--string-limit", "5")
    assert short.stdout.split(maxsplit=2)[2].strip() == f'"hello"... ({len(CONSOLE_INPUT)} bytes)'


def test_events_kinds_comma_separated_and_json(console_trace):
    proc = vmrr("events", console_trace, "--kind", "console_in,End", "--json")
    assert proc.returncode == 0, describe(proc)
    objs = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [o["kind"] for o in objs] == ["CONSOLE_IN", "END"]
    assert bytes.fromhex(objs[0]["payload"]["hex"]) == CONSOLE_INPUT
    assert "digest" not in objs[1]["payload"] and objs[1]["payload"]["reason"] == "poweroff"
    every = vmrr("events", console_trace)
    kinds = {line.split()[1] for line in every.stdout.splitlines()}
    assert {"CONSOLE_IN", "INTERRUPT", "END"} <= kinds


@pytest.mark.parametrize("args, named", [
    (["-s", "-1"], "-1"),
    (["--string-limit", "many"], "many"),
    (["--syscall", "read,frobnicate"], "frobnicate"),
    (["--kind", "console_in,nope"], "nope"),
])
def test_events_usage_errors(console_trace, args, named):
    if args[0] == "--syscall":
        pytest.importorskip("vmm.linux.syscalls")
    proc = vmrr("events", console_trace, *args)
    assert proc.returncode == 2, describe(proc)
    assert len(proc.stderr.strip().splitlines()) == 1 and named in proc.stderr.lower(), describe(proc)
    assert "Traceback" not in proc.stderr


def test_events_syscall_filter_on_an_appliance_trace_is_empty(console_trace):
    pytest.importorskip("vmm.linux.syscalls")
    proc = vmrr("events", console_trace, "--syscall", "read", "--syscall", "write")
    assert proc.returncode == 0 and proc.stdout == "", describe(proc)


def test_events_into_a_closed_pipe_exits_quietly(console_trace):
    proc = subprocess.Popen([sys.executable, "-m", "vmrr", "events", str(console_trace)], cwd=REPO,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()                 # like `| head` that has already gone
    try:
        stderr = proc.stderr.read()
        proc.wait(60)
    finally:
        proc.stderr.close()
    assert proc.returncode == 0, stderr
    assert stderr == b""

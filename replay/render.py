"""Events as text a person reads: system calls the way strace prints them, the rest compact.

``render_event`` gives one line per event (without the icount and kind columns, which
``vmrr events`` adds); ``event_to_json`` gives a dict ``json.dumps`` accepts with every
byte kept. A SYSCALL event carries the call's number, its raw arguments (paths already
read from guest memory) and what the host answered; the argument types that decide how
each one prints come from the Linux personality's table (vmm/linux/syscalls.py), the
flag and errno names from vmm/linux/names.py.

    openat(AT_FDCWD, "/etc/passwd", O_RDONLY|O_CLOEXEC) = 3
    read(3, "root:x:0:0:root:/root:/bin/bash\\n"..., 4096) = 1234
    mmap(NULL, 8192, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x7ffff7ff0000
    openat(AT_FDCWD, "/nope", O_RDONLY) = -1 ENOENT (No such file or directory)
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from trace_format.events import Event, EventKind
from vmm.linux import names

DEFAULT_STRING_LIMIT = 32                   # strace's default -s
_RAW_ARGS = 6                               # a call missing from the table shows all six registers
_HEX_RETURNS = frozenset({"mmap", "brk", "mremap"})
_NO_RETURN = frozenset({"exit", "exit_group"})
_FCNTL_NO_ARG = frozenset({1, 3, 9, 11, 1025, 1032, 1034})   # F_GETFD, F_GETFL, F_GETOWN, ... take none
_FUTEX_ARGS = {0: 4, 1: 3}                  # FUTEX_WAIT, FUTEX_WAKE: arguments they read
_MAX_ERRNO = 4095                           # the kernel's -4095..-1 error range
_END_DROPPED = ("digest", "report")         # big fields of the END dict a listing leaves out

# Mapping nr -> entry with ``.name`` and ``.args`` (vmm.linux.syscalls.Syscall's shape).
SyscallTable = Mapping[int, Any]


def syscall_table() -> tuple[SyscallTable, Mapping[int, str]]:
    """The personality's table and the names of every amd64 call, imported on first use.

    Imported lazily: the table pulls in the handler modules, which rendering an appliance
    trace does not need.
    """
    from vmm.linux.syscalls import ALL_NAMES, SYSCALLS

    return SYSCALLS, ALL_NAMES


def syscall_name(nr: int, table: SyscallTable | None = None,
                 all_names: Mapping[int, str] | None = None) -> str:
    """The name of call ``nr``: from ``table``, else ``all_names``, else ``syscall_N``."""
    if table is None:
        table, all_names = syscall_table()
    entry = table.get(nr)
    if entry is not None:
        return entry.name
    return (all_names or {}).get(nr, f"syscall_{nr}")


def syscall_numbers(name: str, table: SyscallTable | None = None,
                    all_names: Mapping[int, str] | None = None) -> set[int]:
    """Every number whose call is called ``name`` (empty when no call has that name)."""
    if table is None:
        table, all_names = syscall_table()
    found = {nr for nr, entry in table.items() if entry.name == name}
    found |= {nr for nr, known in (all_names or {}).items() if known == name and nr not in table}
    if name.startswith("syscall_") and name[8:].isdigit():
        found.add(int(name[8:]))
    return found


def syscall_numbers_named(call_names: list[str], table: SyscallTable | None = None,
                          all_names: Mapping[int, str] | None = None) -> set[int]:
    """The numbers of all the calls in ``call_names``.

    Raises:
        KeyError: with the first name no system call has.
    """
    numbers: set[int] = set()
    for name in call_names:
        found = syscall_numbers(name, table, all_names)
        if not found:
            raise KeyError(name)
        numbers |= found
    return numbers


# -- strings ----------------------------------------------------------------------------------

_ESCAPES = {0x09: "\\t", 0x0a: "\\n", 0x0b: "\\v", 0x0c: "\\f", 0x0d: "\\r",
            0x22: '\\"', 0x5c: "\\\\"}


def escape_bytes(data: bytes, limit: int = DEFAULT_STRING_LIMIT) -> str:
    """``data`` as strace quotes it: ``"ab\\n\\0"``, cut to ``limit`` bytes with ``...`` after.

    Printable ASCII stays; tab, newline, quote and backslash get their C escapes; any
    other byte is octal, three digits when an octal digit follows (so it reads back).
    ``limit`` 0 means no limit.
    """
    cut = 0 < limit < len(data)
    shown = data[:limit] if cut else data
    out = []
    for i, byte in enumerate(shown):
        if byte in _ESCAPES:
            out.append(_ESCAPES[byte])
        elif 0x20 <= byte < 0x7f:
            out.append(chr(byte))
        else:
            follows_digit = i + 1 < len(shown) and 0x30 <= shown[i + 1] <= 0x37
            out.append(f"\\{byte:03o}" if follows_digit else f"\\{byte:o}")
    return '"' + "".join(out) + '"' + ("..." if cut else "")


def _path(value: object) -> str:
    """A path argument: the string read from guest memory, always in full (as strace)."""
    if value is None:
        return "<unreadable>"
    if isinstance(value, str):
        return escape_bytes(value.encode("utf-8", "surrogateescape"), 0)
    if isinstance(value, (bytes, bytearray)):
        return escape_bytes(bytes(value), 0)
    return _hex(value)


def _hex(value: object) -> str:
    if isinstance(value, int):
        value &= (1 << 64) - 1
        return f"{value:#x}" if value else "0"
    return str(value)


def _ptr(value: object) -> str:
    if isinstance(value, int) and value & ((1 << 64) - 1) == 0:
        return "NULL"
    return _hex(value)


# -- system calls -----------------------------------------------------------------------------

# Argument type -> decoder of its raw register value (types of vmm/linux/syscalls.py).
_DECODERS: dict[str, Callable[[int], str]] = {
    "int": lambda v: str(names.signed64(v)),
    "uint": lambda v: str(v & ((1 << 64) - 1)),
    "len": lambda v: str(v & ((1 << 64) - 1)),
    "hex": _hex,
    "ptr": _ptr,
    "buf_in": _ptr,
    "fd": lambda v: str(names.signed32(v)),
    "dirfd": names.dirfd,
    "oflags": names.open_flags,
    "mode": names.file_mode,
    "prot": names.mmap_prot,
    "mapflags": names.mmap_flags,
    "clockid": names.clock_id,
    "signo": names.signal_name,
    "whence": names.seek_whence,
    "atflags": names.at_flags,
    "fcntl": names.fcntl_cmd,
    "ioctl": names.ioctl_request,
    "sigprocmask": names.sigprocmask_how,
    "futex": names.futex_op,
    "arch_prctl": names.arch_prctl_code,
    "madvise": names.madvise_advice,
    "rlimit": names.rlimit_resource,
    "sockdomain": names.socket_domain,
    "socktype": names.socket_type,
    "clone_args": lambda v: "{flags=" + _hex(v) + ", ...}",
}


def _data_answer(answers: object) -> bytes | None:
    """The first bytes the host answered during the call (what a buf_out argument received)."""
    for answer in answers if isinstance(answers, list) else ():
        if isinstance(answer, (list, tuple)) and len(answer) == 2 and isinstance(answer[1], bytes):
            return answer[1]
    return None


def _signed_ret(ret: object) -> object:
    if isinstance(ret, int) and ret >= 1 << 63:
        return ret - (1 << 64)
    return ret


def _return_text(name: str, args: list, ret: object) -> str:
    """`` = 3``, `` = -1 ENOENT (No such file or directory)``, `` = 0x7f...`` or `` = ?``."""
    ret = _signed_ret(ret)
    if name in _NO_RETURN or not isinstance(ret, int):
        return "?"
    if -_MAX_ERRNO <= ret < 0:
        number = -ret
        return f"-1 {names.errno_name(number)} ({names.strerror(number)})"
    if name in _HEX_RETURNS:
        return _hex(ret)
    if name == "fcntl" and ret > 0 and len(args) > 1 and isinstance(args[1], int):
        cmd = names.signed32(args[1])
        if cmd == 1:                                   # F_GETFD
            return f"{ret:#x} (flags {names.fd_flags(ret)})"
        if cmd == 3:                                   # F_GETFL
            return f"{ret:#x} (flags {names.open_flags(ret)})"
    return str(ret)


def _arguments(name: str, types: tuple[str, ...], args: list, ret: object, answers: object,
               string_limit: int) -> list[str]:
    """Each argument as strace prints it, given the call's argument types."""
    ret = _signed_ret(ret)
    data = _data_answer(answers)
    if data is not None and isinstance(ret, int) and 0 <= ret < len(data):
        data = data[:ret]
    shown = []
    for position, (kind, value) in enumerate(zip(types, args)):
        if kind == "path":
            shown.append(_path(value))
        elif not isinstance(value, int):                 # not a register value: show what it is
            shown.append(_compact(value))
        elif kind == "buf_out":
            failed = not isinstance(ret, int) or ret < 0
            shown.append(_ptr(value) if data is None or failed else escape_bytes(data, string_limit))
        elif kind == "mode" and position and types[position - 1] == "oflags" \
                and isinstance(args[position - 1], int) and not names.open_takes_mode(args[position - 1]):
            continue                                     # open without O_CREAT: no mode (strace)
        elif kind == "atflags" and name.startswith("faccessat"):
            shown.append(names.at_flags(value, eaccess=True))
        elif name == "fcntl" and position == 2 and isinstance(args[1], int):
            cmd = names.signed32(args[1])
            if cmd in _FCNTL_NO_ARG:
                continue
            shown.append(names.fd_flags(value) if cmd == 2             # F_SETFD
                         else names.open_flags(value) if cmd == 4      # F_SETFL
                         else str(names.signed32(value)) if cmd in (0, 1030)   # F_DUPFD*
                         else _hex(value))
        else:
            shown.append(_DECODERS.get(kind, _hex)(value))
    return shown


def render_syscall(payload: list, *, string_limit: int = DEFAULT_STRING_LIMIT,
                   table: SyscallTable | None = None, all_names: Mapping[int, str] | None = None,
                   main_tid: int | None = None) -> str:
    """A SYSCALL payload ``[tid, nr, args, ret, answers]`` as strace's line.

    Args:
        payload: the event's payload.
        string_limit: bytes of a buffer to show (strace -s); 0 shows all.
        table: nr -> entry with ``.name`` and ``.args`` (default: the personality's table).
        all_names: names of calls missing from ``table`` (default: every amd64 call).
        main_tid: when given, a call of another thread gets strace -f's ``[pid N]`` prefix.

    Returns:
        e.g. ``openat(AT_FDCWD, "/etc/passwd", O_RDONLY|O_CLOEXEC) = 3``.
    """
    if table is None:
        table, all_names = syscall_table()
    tid, nr, args, ret, answers = payload
    args = list(args) if isinstance(args, (list, tuple)) else []
    entry = table.get(nr)
    if entry is not None:
        name = entry.name
        shown = _arguments(name, tuple(entry.args), args, ret, answers, string_limit)
    else:
        name = syscall_name(nr, table, all_names)
        shown = [_hex(value) for value in args[:_RAW_ARGS]]
    if name == "futex" and len(args) > 1 and isinstance(args[1], int):
        # strace shows only the arguments the operation reads: WAIT has a timeout, WAKE none.
        cmd = args[1] & ~(names.FUTEX_PRIVATE_FLAG | names.FUTEX_CLOCK_REALTIME)
        shown = shown[:_FUTEX_ARGS.get(cmd, len(shown))]
    prefix = f"[pid {tid}] " if main_tid is not None and tid != main_tid else ""
    return f"{prefix}{name}({', '.join(shown)}) = {_return_text(name, args, ret)}"


_SIGCHLD = 17
_CLD_CODES = {1: "CLD_EXITED", 2: "CLD_KILLED", 3: "CLD_DUMPED", 4: "CLD_TRAPPED", 5: "CLD_STOPPED",
              6: "CLD_CONTINUED"}
_SI_USER, _SI_TKILL = 0, -6


def _render_signal(payload: list, main_tid: int | None) -> str:
    """``--- SIGSEGV {si_signo=SIGSEGV, si_code=1, si_addr=0x0} ---``; the payload's last
    value is the sender's pid for a signal a process sent (kill, tgkill) and the child's
    pid for SIGCHLD, which then show as ``si_pid`` (strace's form)."""
    tid, signo, code, addr = payload
    sig = names.signal_name(signo)
    prefix = f"[pid {tid}] " if main_tid is not None and tid != main_tid else ""
    code = names.signed32(code) if isinstance(code, int) else code     # stored as u32
    if signo == _SIGCHLD and code in _CLD_CODES:
        return f"{prefix}--- {sig} {{si_signo={sig}, si_code={_CLD_CODES[code]}, si_pid={addr}}} ---"
    if code in (_SI_USER, _SI_TKILL) and isinstance(addr, int):
        return f"{prefix}--- {sig} {{si_signo={sig}, si_code={code}, si_pid={addr}}} ---"
    return f"{prefix}--- {sig} {{si_signo={sig}, si_code={code}, si_addr={_hex(addr) if addr else '0x0'}}} ---"


# -- every other kind -------------------------------------------------------------------------

_SWITCH_HOW = {0: "", 1: ", its call tried again", 2: ", its wait timed out"}


def _count(n: int) -> str:
    return f"({n} byte{'' if n == 1 else 's'})"


def _compact(value: object, *, bytes_shown: int = 8) -> str:
    """A short text form of a payload: bytes as a little hex, containers inline."""
    if value is None:
        return ""
    if isinstance(value, (bytes, bytearray)):
        text = bytes(value[:bytes_shown]).hex()
        return text + ("..." if len(value) > bytes_shown else "")
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_compact(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_compact(k) if not isinstance(k, str) else k}={_compact(v)}"
                               for k, v in value.items()) + "}"
    if isinstance(value, str):
        return escape_bytes(value.encode("utf-8", "surrogateescape"), 0)
    return str(value)


def render_event(event: Event, *, string_limit: int = DEFAULT_STRING_LIMIT,
                 table: SyscallTable | None = None, all_names: Mapping[int, str] | None = None,
                 main_tid: int | None = None) -> str:
    """The text of one event, after the icount and kind columns of ``vmrr events``.

    Args:
        event: the event.
        string_limit: bytes of data to show before ``...`` (strace -s); 0 shows all.
        table, all_names: the system-call table (default: the personality's, see render_syscall).
        main_tid: the first thread seen; calls and signals of others get ``[pid N]``.

    Returns:
        One line: strace's form for SYSCALL and SIGNAL, escaped bytes with their count for
        SOCK_DATA and CONSOLE_IN, the hash and part for BLOB, a compact payload otherwise.
    """
    payload = event.payload
    kind = event.kind
    try:
        if kind is EventKind.SYSCALL:
            return render_syscall(payload, string_limit=string_limit, table=table,
                                  all_names=all_names, main_tid=main_tid)
        if kind is EventKind.SIGNAL:
            return _render_signal(payload, main_tid)
        if kind is EventKind.SWITCH:
            tid, how = payload
            return f"thread {tid} on the CPU{_SWITCH_HOW.get(how, f' (how {how})')}"
        if kind is EventKind.SIGNAL_IN:
            return f"--- {names.signal_name(payload)} sent from outside ---"
        if kind is EventKind.SOCK_DATA:
            channel, data = payload
            return f"[{channel}] {escape_bytes(data, string_limit)} {_count(len(data))}"
        if kind is EventKind.CONSOLE_IN:
            return f"{escape_bytes(payload, string_limit)} {_count(len(payload))}"
        if kind is EventKind.BLOB:
            digest, part, parts, data = payload
            return f"sha256 {digest[:8].hex()} part {part + 1}/{parts}, {len(data)} bytes"
        if kind is EventKind.DIGEST:
            rip, regs_hash, ram_hash = payload
            return f"rip={rip:#x} regs={_compact(regs_hash)} ram={_compact(ram_hash)}"
        if kind is EventKind.END and isinstance(payload, dict):
            payload = {k: v for k, v in payload.items() if k not in _END_DROPPED}
    except (TypeError, ValueError, AttributeError):
        pass                       # a payload of an unexpected shape: show it as it is
    return _compact(payload)


# -- JSON -------------------------------------------------------------------------------------

def _jsonable(value: object) -> object:
    """``value`` with bytes (also as dict keys) turned into ``{"hex": ...}`` (keys: the hex)."""
    if isinstance(value, (bytes, bytearray)):
        return {"hex": bytes(value).hex()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    if isinstance(value, dict):
        return {(bytes(k).hex() if isinstance(k, (bytes, bytearray)) else k): _jsonable(v)
                for k, v in value.items()}
    return value


def event_to_json(event: Event, *, string_limit: int = DEFAULT_STRING_LIMIT,
                  table: SyscallTable | None = None,
                  all_names: Mapping[int, str] | None = None) -> dict:
    """An event as a dict for ``json.dumps``: ``{"icount", "kind", "payload"}``, bytes as hex.

    A SYSCALL also gets ``"syscall"`` (its name) and ``"text"`` (its strace line, cut to
    ``string_limit``); END leaves out its big digest and report.
    """
    payload = event.payload
    if event.kind is EventKind.END and isinstance(payload, dict):
        payload = {k: v for k, v in payload.items() if k not in _END_DROPPED}
    obj: dict = {"icount": event.icount, "kind": event.kind.name, "payload": _jsonable(payload)}
    if event.kind is EventKind.SYSCALL:
        try:
            obj["syscall"] = syscall_name(payload[1], table, all_names)
        except (TypeError, IndexError, KeyError):
            obj["syscall"] = None
        obj["text"] = render_event(event, string_limit=string_limit, table=table, all_names=all_names)
    return obj

"""``monitor`` commands: what gdb's ``monitor WORDS`` runs on the time-travel session.

Each command takes the TimeTravel and its argument words and returns the text to show.
A user mistake raises ``MonitorError``, whose message is shown like any output (gdb has
no way to show a monitor failure other than as text).
"""

from __future__ import annotations

from collections.abc import Callable

from trace_format.events import Event, EventKind

# Events that are inputs or outcomes, not the trace's own verification records.
_SHOWN_KINDS = frozenset(EventKind) - {EventKind.DIGEST, EventKind.OUTPUT, EventKind.CHECKPOINT}
_WINDOW_START = 100_000
_MAX_EVENTS = 1000


class MonitorError(Exception):
    """A monitor command was used wrongly; the message says how to use it."""


def run(tt, line: str) -> str:
    """Run one monitor command line and return its output (ending in a newline).

    Args:
        tt: the TimeTravel session.
        line: the words after ``monitor``.
    """
    words = line.split()
    if not words:
        return help_text(tt, [])
    command = COMMANDS.get(words[0])
    if command is None:
        return f"unknown monitor command {words[0]!r}; 'monitor help' lists them\n"
    try:
        return command(tt, words[1:])
    except MonitorError as exc:
        return f"error: {exc}\n"


def parse_number(word: str, what: str) -> int:
    """A decimal or 0x-hex number; ``_`` separators allowed."""
    try:
        value = int(word.replace("_", ""), 0)
    except ValueError:
        raise MonitorError(f"{what}: expected a number, got {word!r}") from None
    if value < 0:
        raise MonitorError(f"{what}: expected a non-negative number, got {word}")
    return value


def _where(tt) -> str:
    rip = tt.registers()["rip"]
    return f"icount {tt.icount}, rip {rip:#x} ({tt.symbols.describe(rip)})"


def icount(tt, args: list[str]) -> str:
    """monitor icount: the current position."""
    if args:
        raise MonitorError("usage: monitor icount")
    return f"icount {tt.icount} (history {tt.first_icount}..{tt.last_icount})\n"


def seek(tt, args: list[str]) -> str:
    """monitor seek N: move to position N (clamped to the history)."""
    if len(args) != 1:
        raise MonitorError("usage: monitor seek ICOUNT")
    tt.seek(parse_number(args[0], "ICOUNT"))
    return (f"now at {_where(tt)}\n"
            "gdb still shows the old state: run 'maint flush register-cache' to refresh it\n")


def _address(tt, word: str) -> tuple[int, int | None]:
    """An address given as a number or a symbol name → (address, symbol size or None)."""
    address = tt.symbols.address_of(word)
    if address is not None:
        sym = tt.symbols.lookup(address)
        return address, (sym.size if sym is not None and sym.size else None)
    return parse_number(word, "ADDR"), None


def _bytes_value(data: bytes) -> str:
    if 0 < len(data) <= 8:
        return f"{int.from_bytes(data, 'little'):#x}"
    return data.hex(" ") if data else "(nothing)"


def last_write(tt, args: list[str]) -> str:
    """monitor last-write ADDR [SIZE]: the last write to the range before now."""
    if not 1 <= len(args) <= 2:
        raise MonitorError("usage: monitor last-write ADDR|SYMBOL [SIZE]")
    address, symbol_size = _address(tt, args[0])
    size = parse_number(args[1], "SIZE") if len(args) == 2 else (symbol_size or 1)
    if not 1 <= size <= 4096:
        raise MonitorError("SIZE: expected 1 to 4096 bytes")
    record = tt.last_write(address, size)
    if record is None:
        return f"no write to {address:#x} [{size} bytes] before icount {tt.icount}\n"
    return (f"icount {record.icount}, rip {record.rip:#x} ({tt.symbols.describe(record.rip)}): "
            f"{record.address:#x} [{len(record.new)} bytes] {_bytes_value(record.old)} -> "
            f"{_bytes_value(record.new)}\n")


def _events_near(tt, count: int) -> list[Event]:
    """About ``count`` shown events around the current position, half before, half after."""
    here, window = tt.icount, _WINDOW_START
    while True:
        start, end = max(tt.first_icount, here - window), min(tt.last_icount, here + window)
        events = [e for e in tt.events_between(start, end, kinds=set(_SHOWN_KINDS))]
        whole = start == tt.first_icount and end == tt.last_icount
        if len(events) >= 2 * count or whole or len(events) > _MAX_EVENTS:
            break
        window *= 8
    before = [e for e in events if e.icount <= here][-((count + 1) // 2):] if count else []
    after = [e for e in events if e.icount > here][:count - len(before)]
    if len(before) + len(after) < count:            # few after: show more before
        before = [e for e in events if e.icount <= here][-(count - len(after)):]
    return before + after


def _payload_text(payload: object) -> str:
    if isinstance(payload, bytes):
        text = repr(payload[:40]) + ("..." if len(payload) > 40 else "")
        return f"{len(payload)} bytes {text}"
    if isinstance(payload, list):
        return ", ".join(_payload_text(p) for p in payload)
    if isinstance(payload, dict):
        return ", ".join(f"{k}={v}" for k, v in payload.items() if k not in ("digest", "report", "outputs"))
    return "" if payload is None else str(payload)


def events(tt, args: list[str]) -> str:
    """monitor events [N]: the N events nearest the current position (default 10)."""
    if len(args) > 1:
        raise MonitorError("usage: monitor events [N]")
    count = parse_number(args[0], "N") if args else 10
    lines, here, marked = [], tt.icount, False
    for event in _events_near(tt, count):
        if not marked and event.icount > here:
            lines.append(f"-> {here:>14}  (you are here)")
            marked = True
        lines.append(f"   {event.icount:>14}  {event.kind.name:<12} {_payload_text(event.payload)}")
    if not marked:
        lines.append(f"-> {here:>14}  (you are here)")
    return "\n".join(lines) + "\n"


def help_text(tt, args: list[str]) -> str:
    """monitor help: the list of commands."""
    return ("vmrr monitor commands:\n"
            "  monitor icount                 the current position (instructions executed)\n"
            "  monitor seek ICOUNT            move to a position (then 'maint flush register-cache')\n"
            "  monitor last-write ADDR [SIZE] who last wrote memory: icount, rip, old -> new\n"
            "                                 (ADDR may be a global's name; SIZE defaults to its size, else 1)\n"
            "  monitor events [N]             the N recorded events nearest here (default 10)\n"
            "  monitor help                   this list\n")


COMMANDS: dict[str, Callable[[object, list[str]], str]] = {
    "icount": icount, "when": icount, "seek": seek, "last-write": last_write,
    "events": events, "help": help_text,
}

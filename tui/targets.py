"""What the user typed into a prompt, parsed: places to go, memory to watch, things to find.

No textual here. Each parser returns a small record or raises ``BadInput`` with a message
for the status line.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from trace_format.events import EventKind


class BadInput(ValueError):
    """The text does not parse; the message says what was expected."""


class TargetKind(enum.Enum):
    ICOUNT = "icount"          # a position in history
    ADDRESS = "address"        # the next time RIP gets there
    SYMBOL = "symbol"          # the next time RIP enters the symbol (plus an offset)
    EVENT = "event"            # the position of event number N
    THREAD = "thread"          # back to where thread N last ran
    PROCESS = "process"        # back to where process N last ran
    CRASH = "crash"
    START = "start"
    END = "end"


@dataclass(frozen=True, slots=True)
class Target:
    kind: TargetKind
    value: int = 0             # icount, address, offset (SYMBOL), event number, thread or process id
    name: str = ""             # SYMBOL only


_NUMBER = re.compile(r"[0-9][0-9_,]*\Z")
_SYMBOL = re.compile(r"([A-Za-z_.$][\w.$@]*)(?:\s*\+\s*(0x[0-9a-fA-F]+|[0-9]+))?\Z")


def parse_number(text: str) -> int:
    """'1234', '1_234', '1,234', '0x4d2' → 1234. Raises BadInput."""
    text = text.strip().replace("_", "").replace(",", "")
    try:
        value = int(text, 0) if text.lower().startswith("0x") else int(text, 10)
    except ValueError:
        raise BadInput(f"not a number: {text!r}") from None
    if value < 0:
        raise BadInput(f"negative: {text}")
    return value


def parse_target(text: str) -> Target:
    """The ``g`` prompt: a number is an icount, ``0x…`` an address, ``e N`` event N,
    ``t N`` (``thread N``) where thread N last ran, ``p N`` (``pid N``, ``process N``)
    where process N last ran, ``crash``/``start``/``end`` those places, anything else a symbol (``name`` or ``name+0x10``).

    Raises:
        BadInput: empty or malformed.
    """
    text = text.strip()
    if not text:
        raise BadInput("nothing to go to")
    lowered = text.lower()
    if _NUMBER.match(text):
        return Target(TargetKind.ICOUNT, parse_number(text))
    if lowered.startswith("0x"):
        return Target(TargetKind.ADDRESS, parse_number(text))
    if lowered.startswith("e ") or lowered.startswith("e#") or re.match(r"e[0-9]+\Z", lowered):
        return Target(TargetKind.EVENT, parse_number(text[1:].lstrip(" #")))
    thread = re.match(r"(?:t|thread)\s*#?\s*([0-9]+)\Z", lowered)
    if thread:
        return Target(TargetKind.THREAD, parse_number(thread.group(1)))
    process = re.match(r"(?:p|pid|process)\s*#?\s*([0-9]+)\Z", lowered)
    if process:
        return Target(TargetKind.PROCESS, parse_number(process.group(1)))
    if lowered in ("crash", "start", "end"):
        return Target(TargetKind(lowered))
    match = _SYMBOL.match(text)
    if not match:
        raise BadInput(f"expected an icount, 0xADDRESS, a symbol, 'e N', 't N' or 'p N': {text!r}")
    offset = parse_number(match.group(2)) if match.group(2) else 0
    return Target(TargetKind.SYMBOL, offset, match.group(1))


@dataclass(frozen=True, slots=True)
class WatchSpec:
    address: int | None        # None: resolve ``name`` through the symbol table
    name: str
    length: int | None         # None: the symbol's size, else 8
    kind: str                  # "w", "r" or "a"


def parse_watch(text: str) -> WatchSpec:
    """The ``w`` prompt: ``ADDRESS[,LEN][,r|w|a]`` where ADDRESS is 0x… or a symbol.

    Raises:
        BadInput: malformed.
    """
    parts = [p.strip() for p in re.split(r"[,\s]+", text.strip()) if p.strip()]
    if not parts:
        raise BadInput("nothing to watch")
    kind = "w"
    if parts[-1].lower() in ("r", "w", "a", "rw"):
        kind = {"rw": "a"}.get(parts[-1].lower(), parts[-1].lower())
        parts = parts[:-1]
    if not parts or len(parts) > 2:
        raise BadInput(f"expected ADDRESS[,LEN][,r|w|a]: {text!r}")
    length = parse_number(parts[1]) if len(parts) == 2 else None
    if length is not None and not 1 <= length <= 1 << 20:
        raise BadInput(f"length {length}: expected 1 to 1048576 bytes")
    head = parts[0]
    if head[0].isdigit():
        return WatchSpec(parse_number(head), "", length, kind)
    return WatchSpec(None, head, length, kind)


class SearchKind(enum.Enum):
    ANY = "any"                # events first, then memory
    EVENTS = "events"
    MEMORY = "memory"


@dataclass(frozen=True, slots=True)
class SearchSpec:
    kind: SearchKind
    text: str                  # for events: a kind name or text inside the payload
    pattern: bytes             # for memory


def parse_search(text: str) -> SearchSpec:
    """The ``/`` prompt: ``TEXT`` (events, then memory), ``e:TEXT`` (events only),
    ``m:TEXT`` (memory, as ASCII) or ``m:x:HEX`` (memory, as hex bytes).

    Raises:
        BadInput: empty, or bad hex.
    """
    kind = SearchKind.ANY
    if text[:2].lower() in ("e:", "m:"):
        kind = SearchKind.EVENTS if text[0].lower() == "e" else SearchKind.MEMORY
        text = text[2:]
    if not text:
        raise BadInput("nothing to search for")
    pattern = text.encode(errors="replace")
    if kind is SearchKind.MEMORY and text[:2].lower() == "x:":
        try:
            pattern = bytes.fromhex(text[2:].replace(" ", ""))
        except ValueError:
            raise BadInput(f"not hex bytes: {text[2:]!r}") from None
        if not pattern:
            raise BadInput("nothing to search for")
    return SearchSpec(kind, text, pattern)


def parse_kinds(text: str) -> frozenset[EventKind] | None:
    """The event filter prompt: ``TIMER,SOCK_DATA`` (only those), ``-DIGEST`` (all but),
    ``all`` or empty (everything). Returns None for everything.

    Raises:
        BadInput: an unknown kind.
    """
    words = [w for w in re.split(r"[,\s]+", text.strip().upper()) if w]
    if not words or words == ["ALL"]:
        return None
    include = [w for w in words if not w.startswith("-")]
    exclude = [w[1:] for w in words if w.startswith("-")]
    try:
        inc = {EventKind[w] for w in include}
        exc = {EventKind[w] for w in exclude}
    except KeyError as error:
        names = ", ".join(k.name for k in EventKind)
        raise BadInput(f"unknown event kind {error.args[0]} (one of {names})") from None
    chosen = inc if inc else set(EventKind)
    return frozenset(chosen - exc)

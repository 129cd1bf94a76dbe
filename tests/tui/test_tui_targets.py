"""What the prompts accept: go-to targets, watch specs, searches, event filters."""

from __future__ import annotations

import pytest

from trace_format.events import EventKind
from tui.targets import (BadInput, SearchKind, TargetKind, parse_kinds, parse_search, parse_target,
                         parse_watch)


@pytest.mark.parametrize("text, kind, value, name", [
    ("12345", TargetKind.ICOUNT, 12345, ""),
    ("1_000_000", TargetKind.ICOUNT, 1_000_000, ""),
    ("1,000", TargetKind.ICOUNT, 1000, ""),
    ("0x10007e", TargetKind.ADDRESS, 0x10007E, ""),
    ("e 7", TargetKind.EVENT, 7, ""),
    ("e7", TargetKind.EVENT, 7, ""),
    ("e #12", TargetKind.EVENT, 12, ""),
    ("crash", TargetKind.CRASH, 0, ""),
    ("Start", TargetKind.START, 0, ""),
    ("kmain", TargetKind.SYMBOL, 0, "kmain"),
    ("on_timer+0x10", TargetKind.SYMBOL, 0x10, "on_timer"),
    ("malloc.part.0", TargetKind.SYMBOL, 0, "malloc.part.0"),
    ("end", TargetKind.END, 0, ""),
    ("e", TargetKind.SYMBOL, 0, "e"),
    ("t 1002", TargetKind.THREAD, 1002, ""),
    ("p 4242", TargetKind.PROCESS, 4242, ""),
    ("pid 4242", TargetKind.PROCESS, 4242, ""),
    ("process #7", TargetKind.PROCESS, 7, ""),
    ("p", TargetKind.SYMBOL, 0, "p"),
    ("pipe", TargetKind.SYMBOL, 0, "pipe"),
])
def test_parse_target(text, kind, value, name):
    target = parse_target(text)
    assert (target.kind, target.value, target.name) == (kind, value, name)


@pytest.mark.parametrize("text", ["", "   ", "0xZZ", "foo bar", "kmain+", "e x"])
def test_parse_target_rejects(text):
    with pytest.raises(BadInput):
        parse_target(text)


def test_parse_watch():
    spec = parse_watch("0x1000,4,r")
    assert (spec.address, spec.length, spec.kind) == (0x1000, 4, "r")
    spec = parse_watch("ticks")
    assert (spec.address, spec.name, spec.length, spec.kind) == (None, "ticks", None, "w")
    assert parse_watch("ticks 8 rw").kind == "a"
    for bad in ("", "0x10,0", "a,b,c,d", "0x10,99999999"):
        with pytest.raises(BadInput):
            parse_watch(bad)


def test_parse_search():
    assert parse_search("SET foo").kind is SearchKind.ANY
    spec = parse_search("m:x:de ad be ef")
    assert (spec.kind, spec.pattern) == (SearchKind.MEMORY, b"\xde\xad\xbe\xef")
    spec = parse_search("e:TIMER")
    assert (spec.kind, spec.text) == (SearchKind.EVENTS, "TIMER")
    for bad in ("", "m:", "m:x:zz"):
        with pytest.raises(BadInput):
            parse_search(bad)


def test_parse_kinds():
    assert parse_kinds("") is None and parse_kinds("all") is None
    assert parse_kinds("timer, sock_data") == {EventKind.TIMER, EventKind.SOCK_DATA}
    assert parse_kinds("-DIGEST -OUTPUT") == set(EventKind) - {EventKind.DIGEST, EventKind.OUTPUT}
    with pytest.raises(BadInput, match="unknown event kind"):
        parse_kinds("TIMERS")

"""The debugger's model (tui/session.py) on real traces, without any screen."""

from __future__ import annotations

import threading

import pytest

from tui.session import DebugSession, SessionBusy, end_summary
from tui.targets import BadInput, parse_search, parse_watch
from tui_fixtures import recorded_trace


@pytest.fixture(scope="module")
def crash_trace(tmp_path_factory):
    return recorded_trace(tmp_path_factory, "t_crash_null")


@pytest.fixture
def session(crash_trace):
    s = DebugSession.open(str(crash_trace))
    yield s
    s.close()


def test_opens_at_the_crash_with_everything_the_screen_needs(session):
    moment = session.moment
    assert moment.icount == session.crash_icount == session.last_icount
    assert session.end_text.startswith("crash: unmapped access") and "kmain" in session.end_text
    assert session.trace_name == "t_crash_null.vmrr"
    row = moment.code[moment.current_row]
    assert row.kind == "insn" and row.text == "mov qword ptr [8], 1" and row.address == moment.rip
    assert str(row.location) == "tests/t_crash_null.c:8"
    labels = [r.text for r in moment.code if r.kind == "label"]
    assert labels == ["kmain"]
    assert moment.access == 0x8                      # the faulting store's target
    assert moment.changed_registers == frozenset()   # nothing moved yet
    assert moment.console == b"t_crash_null: writing to 0x8\n"
    assert moment.stack[0].address == moment.registers["rsp"]
    assert dict(moment.flags())["ZF"] in (True, False)


def test_moves_and_notes(session):
    crash = session.crash_icount
    moment = session.move("step_back")
    assert moment.icount == crash - 1
    moment = session.move("goto", "kmain")            # kmain never runs again after the crash
    assert moment.icount == crash and "kmain is not reached after icount" in moment.note
    with pytest.raises(BadInput, match="no event #0"):
        session.move("goto", "e 0")                    # t_crash_null has no events
    with pytest.raises(BadInput, match="no symbol"):
        session.move("goto", "no_such_function")
    moment = session.move("start")
    assert moment.icount == 0 and moment.stop.reason.name == "HISTORY_START"
    moment = session.move("goto", "kmain")
    assert moment.rip == session.symbols.address_of("kmain") and moment.note == "at kmain"
    assert moment.stop.reason.name == "STEP" and not moment.breakpoints and not moment.hits
    moment = session.move("crash")
    assert moment.icount == crash


def test_search_finds_console_text_in_memory(session):
    text = b"t_crash_null: still alive"               # never printed, but in .rodata
    moment = session.move("search", parse_search("m:" + text.decode()))
    assert "found in memory at" in moment.note
    found = int(moment.note.split("found in memory at ")[1].split()[0], 16)
    assert session.tt.read_memory(found, len(text)) == text
    assert moment.memory.address == found & ~0xF
    again = session.move("search", None)              # empty prompt: search again (wraps around)
    assert f"found in memory at {found:#x}" in again.note
    assert "not found" in session.move("search", parse_search("m:no such bytes anywhere")).note


def test_watchpoint_toggle_resolves_symbols(session):
    with pytest.raises(BadInput):
        session.toggle_watchpoint(parse_watch("no_such_symbol"))
    moment = session.toggle_watchpoint(parse_watch("0x116bd0,8"))
    assert [(w.addr, w.length, w.kind) for w in moment.watchpoints] == [(0x116BD0, 8, "w")]
    moment = session.toggle_watchpoint(parse_watch("0x116bd0,8"))
    assert moment.watchpoints == ()


def test_a_busy_session_refuses_instead_of_blocking(session):
    holding, release = threading.Event(), threading.Event()

    def hold():
        with session._guard():
            holding.set()
            release.wait(10)

    worker = threading.Thread(target=hold)
    worker.start()
    try:
        assert holding.wait(10)
        assert session.busy
        with pytest.raises(SessionBusy):
            session.move("step_back")
        with pytest.raises(SessionBusy):
            session.refresh()
    finally:
        release.set()
        worker.join(10)
    assert session.move("step_back").icount == session.crash_icount - 1


def test_end_summary_words():
    describe = lambda a: f"f+{a:#x}"
    assert end_summary(None, describe).startswith("incomplete trace")
    assert end_summary({"reason": "poweroff", "exit_status": 0}, describe) == "power-off, status 0"
    assert end_summary({"reason": "crash", "kind": "double fault", "vector": 8, "rip": 16}, describe) \
        == "crash: double fault vector 8 at f+0x10"

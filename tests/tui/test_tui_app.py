"""The debugger driven by textual's Pilot on real recorded traces: keys move through
time, panels follow, long work runs in the background and Esc cancels it."""

from __future__ import annotations

import asyncio
import time

import pytest

from tui_fixtures import SIZE, make_app, press_now, recorded_trace, run, settle


@pytest.fixture(scope="module")
def crash_trace(tmp_path_factory):
    return recorded_trace(tmp_path_factory, "t_crash_null")


@pytest.fixture(scope="module")
def timer_trace(tmp_path_factory):
    return recorded_trace(tmp_path_factory, "t_interrupts")


@pytest.fixture(scope="module")
def long_trace(tmp_path_factory):
    # ~1e8 instructions: reverse-continuing over all of it takes seconds.
    return recorded_trace(tmp_path_factory, "cpubench")


def status_text(app) -> str:
    return str(app.main.status.render())


def current_code_text(app) -> str:
    moment = app.session.moment
    return moment.code[moment.current_row].text


def test_opens_on_the_crash_and_steps_both_ways(crash_trace):
    async def scenario():
        app = make_app(crash_trace)
        async with app.run_test(size=SIZE) as pilot:
            await settle(app, pilot)
            session = app.session
            crash = session.crash_icount
            assert crash is not None and session.moment.icount == crash
            status = status_text(app)
            assert f"icount {crash}" in status and "t_crash_null.vmrr" in status
            assert "crash: unmapped access" in status
            assert current_code_text(app) == "mov qword ptr [8], 1"
            assert session.moment.access == 0x8

            await pilot.press("S")
            await settle(app, pilot)
            assert session.moment.icount == crash - 1
            assert f"icount {crash - 1}" in status_text(app)

            await pilot.press("S", "S", "S")
            await settle(app, pilot)
            assert session.moment.icount == crash - 4

            await pilot.press("s")
            await settle(app, pilot)
            assert session.moment.icount == crash - 3
            registers = app.main.query_one("#registers")
            assert registers.moment is session.moment
            assert f"{session.moment.rip:016x}" in str(registers.render())

            await pilot.press("x")
            await settle(app, pilot)
            assert session.moment.icount == crash
            await pilot.press("less_than_sign")
            await settle(app, pilot)
            assert session.moment.icount == 0
            await pilot.press("x")
            await settle(app, pilot)
            assert session.moment.icount == crash
    run(scenario())


def test_step_highlights_changed_registers_and_memory(crash_trace):
    async def scenario():
        app = make_app(crash_trace)
        async with app.run_test(size=SIZE) as pilot:
            await settle(app, pilot)
            session = app.session
            # Back over the call to puts: N lands on the call instruction itself. (The crash
            # position counts the faulting instruction as begun: one S first to leave it.)
            await pilot.press("S", "N")
            await settle(app, pilot)
            assert current_code_text(app).startswith("call ")
            call_icount, call_rip = session.moment.icount, session.moment.rip
            rsp = session.moment.registers["rsp"]

            # Show the stack slot the call will push the return address into, then step in.
            await pilot.press("m")
            await pilot.press(*f"{rsp - 16:#x}", "enter")
            await settle(app, pilot)
            assert session.moment.memory.address == (rsp - 16) & ~0xF
            await pilot.press("s")
            await settle(app, pilot)
            moment = session.moment
            assert moment.icount == call_icount + 1
            assert {"rip", "rsp"} <= moment.changed_registers
            assert "rax" not in moment.changed_registers
            # The return address landed in the slot; only bytes whose value changed light up.
            pushed = moment.memory.byte_map()
            assert bytes(pushed[a] for a in range(rsp - 8, rsp)) == (call_rip + 5).to_bytes(8, "little")
            assert moment.memory.changed and moment.memory.changed <= set(range(rsp - 8, rsp))
            slot = next(s for s in moment.stack if s.address == rsp - 8)
            assert slot.changed and slot.symbol and slot.symbol.startswith("kmain")

            # Step over forward from the call: one move, back to just after it.
            await pilot.press("S")
            await settle(app, pilot)
            assert session.moment.icount == call_icount
            await pilot.press("n")
            await settle(app, pilot)
            assert session.moment.icount > call_icount + 1
            assert session.moment.rip == call_rip + 5
    run(scenario())


def test_breakpoint_continue_and_reverse_continue(timer_trace):
    async def scenario():
        app = make_app(timer_trace)
        async with app.run_test(size=SIZE) as pilot:
            await settle(app, pilot)
            session = app.session
            assert session.moment.icount == 0              # no crash: opens at the start
            handler = session.symbols.address_of("on_timer")

            await pilot.press("g", *"on_timer", "enter")
            await settle(app, pilot)
            first = session.moment.icount
            assert session.moment.rip == handler and first > 0
            assert not session.moment.breakpoints          # "go to" leaves no breakpoint behind

            await pilot.press("b")
            await settle(app, pilot)
            assert session.moment.breakpoints == {handler}
            code = str(app.main.query_one("#code").render())
            assert "●" in code

            await pilot.press("c")
            await settle(app, pilot)
            second = session.moment.icount
            assert second > first and session.moment.rip == handler
            assert session.moment.stop.reason.name == "BREAKPOINT"
            assert "breakpoint at on_timer" in status_text(app)
            assert second in session.moment.hits

            await pilot.press("C")
            await settle(app, pilot)
            assert session.moment.icount == first and session.moment.rip == handler

            await pilot.press("b")                          # toggles it off again
            await settle(app, pilot)
            assert not session.moment.breakpoints

            # Click a code line below the current one: b breaks there, Enter runs to it.
            code_panel = app.main.query_one("#code")
            row = session.moment.current_row + 2
            while session.moment.code[row].kind != "insn":
                row += 1
            await pilot.click("#code", offset=(10, 1 + row - code_panel._top))
            await pilot.pause()
            address = session.moment.code[row].address
            assert code_panel.selected_address == address
            await pilot.press("b")
            await settle(app, pilot)
            assert session.moment.breakpoints == {address}
            await pilot.click("#code", offset=(10, 1 + row - code_panel._top))
            await pilot.press("enter")
            await settle(app, pilot)
            assert session.moment.rip == address
    run(scenario())


def test_watchpoint_and_last_write_find_the_writer(timer_trace):
    async def scenario():
        app = make_app(timer_trace)
        async with app.run_test(size=SIZE) as pilot:
            await settle(app, pilot)
            session = app.session
            ticks = session.symbols.address_of("ticks")
            handler = session.symbols.lookup(session.symbols.address_of("on_timer"))
            await pilot.press("greater_than_sign")
            await settle(app, pilot)
            end = session.moment.icount
            assert end == session.last_icount

            # Who last wrote `ticks`? The timer handler's increment.
            await pilot.press("l")
            await pilot.press("ctrl+u", *"ticks,4", "enter")
            await settle(app, pilot)
            writer = session.moment
            assert writer.icount < end
            assert handler.address <= writer.rip < handler.address + handler.size
            assert "last write to" in status_text(app)

            # The same with a watchpoint and reverse-continue, from the end.
            await pilot.press("greater_than_sign")
            await settle(app, pilot)
            await pilot.press("w", "ctrl+u", *"ticks,4,w", "enter")
            await settle(app, pilot)
            assert [(w.addr, w.length, w.kind) for w in session.moment.watchpoints] == [(ticks, 4, "w")]
            await pilot.press("C")
            await settle(app, pilot)
            stop = session.moment.stop
            assert stop.reason.name == "WATCHPOINT" and stop.address == ticks
            assert f"the current instruction writes {ticks:#x}" in status_text(app)
            assert session.moment.icount == writer.icount
            assert session.moment.memory.address == ticks & ~0xF
    run(scenario())


def test_events_follow_e_and_E(timer_trace):
    async def scenario():
        app = make_app(timer_trace)
        async with app.run_test(size=SIZE) as pilot:
            await settle(app, pilot)
            session = app.session
            events = app.main.query_one("#events")
            assert events.selected == -1                    # nothing has happened at icount 0
            await pilot.press("e")
            await settle(app, pilot)
            first = events.selected
            assert first >= 0 and session.events[first].icount == session.moment.icount
            await pilot.press("e")
            await settle(app, pilot)
            second = events.selected
            assert second > first
            assert session.events[second].icount == session.moment.icount > session.events[first].icount
            await pilot.press("E")
            await settle(app, pilot)
            assert events.selected == first
            assert session.moment.icount == session.events[first].icount

            # Only INTERRUPT events: e skips the TIMER records.
            await pilot.press("k", "ctrl+u", *"INTERRUPT", "enter")
            await settle(app, pilot)
            await pilot.press("e")
            await settle(app, pilot)
            assert session.events[events.selected].kind.name == "INTERRUPT"
            assert "1 of" not in events.border_title and "INTERRUPT" in events.border_title

            # g e N goes to event N; / finds an event by kind.
            await pilot.press("g", *"e 7", "enter")
            await settle(app, pilot)
            assert session.moment.icount == session.events[7].icount
            await pilot.press("slash", *"timer", "enter")
            await settle(app, pilot)
            assert "found in event" in status_text(app)

            # A click on an event row goes to that event.
            await pilot.press("k", "ctrl+u", *"all", "enter")
            await settle(app, pilot)
            target = events._shown[2]
            await pilot.click("#events", offset=(4, 1 + 2))      # below the border: third row
            await settle(app, pilot)
            assert session.moment.icount == session.events[target].icount
    run(scenario())


def test_goto_icount_and_timeline_click(timer_trace):
    async def scenario():
        app = make_app(timer_trace)
        async with app.run_test(size=SIZE) as pilot:
            await settle(app, pilot)
            session = app.session
            await pilot.press("g", *"1_000", "enter")
            await settle(app, pilot)
            assert session.moment.icount == 1000

            timeline = app.main.query_one("#timeline")
            column = timeline.columns // 2
            await pilot.click("#timeline", offset=(2 + column, 2))
            await settle(app, pilot)
            assert session.moment.icount == timeline.icount_at(column)
            assert abs(session.moment.icount - session.last_icount // 2) < session.last_icount // 20

            before = session.moment.icount
            await pilot.press("right_square_bracket")
            await settle(app, pilot)
            assert session.moment.icount > before

            await pilot.press("g", *"nonsense+", "enter")
            await settle(app, pilot)
            assert "expected an icount" in app.last_error
    run(scenario())


def test_help_screen_and_palette(crash_trace):
    async def scenario():
        from tui.screens.help import HelpScreen

        app = make_app(crash_trace)
        async with app.run_test(size=SIZE) as pilot:
            await settle(app, pilot)
            crash = app.session.moment.icount
            await pilot.press("question_mark")
            await pilot.pause()
            assert isinstance(app.screen, HelpScreen)
            await pilot.press("S")                          # keys do not move time under the help
            await settle(app, pilot)
            assert app.session.moment.icount == crash
            await pilot.press("escape")
            await pilot.pause()
            assert app.screen is app.main

            await pilot.press("less_than_sign")
            await settle(app, pilot)
            await pilot.press("ctrl+p")
            await pilot.pause()
            await pilot.press(*"jump to the crash")
            await asyncio.sleep(0.5)                        # the palette searches in a task
            await pilot.pause()
            await pilot.press("enter")
            await settle(app, pilot)
            assert app.session.moment.icount == crash
    run(scenario())


def test_escape_cancels_a_long_reverse_continue(long_trace):
    async def scenario():
        app = make_app(long_trace)
        async with app.run_test(size=SIZE) as pilot:
            await settle(app, pilot)
            session = app.session
            await pilot.press("greater_than_sign")
            await settle(app, pilot)
            end = session.moment.icount
            assert end == session.last_icount > 50_000_000
            # A breakpoint the run never reaches: reverse-continue searches all of history.
            app._apply(session.toggle_breakpoint, session.symbols.address_of("panic"))

            status = app.main.status
            press_now(app, "C")
            deadline = time.monotonic() + 2
            while "continuing backward" not in status_text(app) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert app.busy, "reverse-continue over 1e8 instructions finished at once"
            assert "continuing backward" in status_text(app) and "Esc cancels" in status_text(app)
            tick = status._tick
            started = time.monotonic()
            await asyncio.sleep(0.3)
            assert time.monotonic() - started < 0.6          # the event loop is not starved
            assert status._tick > tick                       # the spinner keeps turning
            press_now(app, "s")                              # refused, not queued, while busy
            await asyncio.sleep(0.05)
            assert "busy" in status.message and app.busy

            press_now(app, "escape")
            await settle(app, pilot, timeout=30)
            moment = session.moment
            assert moment.stop.reason.name == "CANCELLED"
            assert "cancelled" in status_text(app)
            assert 0 <= moment.icount <= session.last_icount
            assert moment.icount == end                     # TimeTravel went back where it was
            assert moment.registers == session.tt.registers()

            await pilot.press("S")                          # and the session still works
            await settle(app, pilot)
            assert session.moment.icount == end - 1
    run(scenario())

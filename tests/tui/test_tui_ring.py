"""The TUI on a flight recorder's window (vmrr record --ring): it opens at the crash, steps
back, and its history starts at the window's first checkpoint, not at boot."""

from __future__ import annotations

import pytest

from tui_fixtures import SIZE, make_app, run, settle
from conftest import describe, vmrr
from linux_helpers import linux_prog  # noqa: F401  (fixture)
from trace_format import TraceReader

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def window_trace(tmp_path_factory, linux_prog):
    program = linux_prog("ringcrash", "pie")
    tmp = tmp_path_factory.mktemp("ring-tui")
    data = tmp / "input.txt"
    data.write_text("tui\n")
    trace = tmp / "window.vmrr"
    record = vmrr("record", "--ring", "1s", "-o", trace, "--no-stdin", "--", program, "3", data)
    assert record.returncode == 3, describe(record)
    return trace


def test_the_tui_steps_back_from_the_crash_to_the_start_of_the_window(window_trace):
    with TraceReader(str(window_trace)) as reader:
        first, crash = reader.first_icount, reader.end["icount"]
    assert first > 0

    async def scenario():
        app = make_app(window_trace)
        async with app.run_test(size=SIZE) as pilot:
            await settle(app, pilot)
            session = app.session
            assert session.moment.icount == session.crash_icount == crash
            await pilot.press("S", "S")
            await settle(app, pilot)
            assert session.moment.icount == crash - 2
            await pilot.press("less_than_sign")                 # the start of history: the window's
            await settle(app, pilot)
            assert session.moment.icount == first
            await pilot.press("S")                              # nothing before it
            await settle(app, pilot)
            assert session.moment.icount == first
            await pilot.press("greater_than_sign")
            await settle(app, pilot)
            assert session.moment.icount == crash
    run(scenario())

"""The debugger on a Linux program's trace: a gcc -g PIE that prints through libc and then
stores through a NULL pointer, recorded with ``vmrr record -o T -- PROG`` and driven with
textual's Pilot: the crash with the program's symbols and source lines, libc's symbols,
system calls as strace prints them, memory search over the program's mappings."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from tui_fixtures import SIZE, make_app, run, settle
from conftest import describe, replay_verify, vmrr
from tui.session import end_summary

SOURCE = r"""
#include <stdio.h>

static int *target;

__attribute__((noinline)) void store_through_null(int value)
{
    printf("about to store %d\n", value);
    *target = value;
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0); store_through_null(42);   /* as on a terminal: stdout may be a pipe */
    return 0;
}
"""


def record_crash(tmp_path_factory, name: str, source: str, *cflags: str, c_file: str | None = None):
    """Build ``source`` (as ``c_file``, default NAME.c) with gcc -g -O0 into NAME and record
    it; it must crash with SIGSEGV."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    work = tmp_path_factory.mktemp(f"tui-{name}")
    c_file = c_file or f"{name}.c"
    (work / c_file).write_text(source)
    subprocess.run(["gcc", "-g", "-O0", *cflags, "-o", name, c_file], cwd=work, check=True, timeout=60)
    trace = work / f"{name}.vmrr"
    record = vmrr("record", "-o", trace, "--", work / name, timeout=120)
    assert record.returncode == 3, "the program should crash" + describe(record)
    assert "SIGSEGV" in record.stderr, describe(record)
    assert trace.is_file(), describe(record)
    return trace


@pytest.fixture(scope="module")
def linux_trace(tmp_path_factory):
    return record_crash(tmp_path_factory, "null_store", SOURCE, "-fPIE", "-pie", c_file="crash.c")


def status_text(app) -> str:
    return str(app.main.status.render())


def panel_text(app, selector: str) -> str:
    return str(app.main.query_one(selector).render())


def current_code_text(app) -> str:
    moment = app.session.moment
    return moment.code[moment.current_row].text


def test_replay_verify_reproduces_the_crash(linux_trace):
    replay = replay_verify(linux_trace)
    assert "crash recurred: SIGSEGV" in replay.stderr, describe(replay)
    assert replay.stdout == "about to store 42\n"


def test_opens_at_the_crash_with_the_programs_symbols_and_lines(linux_trace):
    async def scenario():
        app = make_app(linux_trace)
        async with app.run_test(size=SIZE) as pilot:
            await settle(app, pilot)
            session = app.session
            moment = session.moment
            assert session.linux and moment.icount == session.crash_icount
            status = status_text(app)
            assert "null_store.vmrr" in status and "null_store" in session.program
            assert "crashed: SIGSEGV at store_through_null+" in status
            assert "segmentation fault at address 0x0" in status        # the greeting

            assert current_code_text(app) == "mov dword ptr [rax], edx"
            code = app.main.query_one("#code")
            title = str(code.border_title)
            assert "store_through_null" in title or "store_through_null:" in panel_text(app, "#code")
            assert title.endswith(" crash.c:9")                         # DWARF, PIE bias applied
            assert "*target = value;" in panel_text(app, "#code")
            assert "store_through_null+" in panel_text(app, "#registers")

            # The stack's return address into main; the memory window on the stack mapping.
            stack = panel_text(app, "#stack")
            assert "main+" in stack
            symbols = [slot.symbol or "" for slot in moment.stack]   # the panel shows the first rows
            assert any(s.startswith("libc.so.6+0x") for s in symbols), symbols   # __libc_start_call_main
            stack_vma = [v for v in session.tt.machine.kernel.space.vmas if v.name == "[stack]"][0]
            assert stack_vma.start <= moment.memory.address < stack_vma.end
            assert None not in moment.memory.data

            # Events: system calls as strace prints them, file content (BLOB) hidden.
            events = panel_text(app, "#events")
            assert "write(1, 0x" in events and ", 18) = 18" in events   # the printf
            assert "SYSCALL" in events and "RDTSC" in events
            assert "BLOB" not in events and "BLOB" in "".join(e.kind.name for e in session.events)
            assert "about to store 42" in panel_text(app, "#console")
    run(scenario())


def test_steps_back_into_libc_and_forward_to_the_crash(linux_trace):
    async def scenario():
        app = make_app(linux_trace)
        async with app.run_test(size=SIZE) as pilot:
            await settle(app, pilot)
            session = app.session
            crash = session.crash_icount
            await pilot.press("S", "S", "S", "S")                      # back out of printf's ret
            await settle(app, pilot)
            assert session.moment.icount == crash - 4
            assert current_code_text(app) == "ret"
            assert session.describe(session.moment.rip).startswith("printf+")   # libc's symbol
            assert "printf" in str(app.main.query_one("#code").border_title)  # its label is far above
            assert "at printf+" in status_text(app)
            code_ranges = session.code_ranges                          # libc's code is code
            assert any(lo <= session.moment.rip < hi for lo, hi in code_ranges)

            await pilot.press("s", "s", "s", "s")
            await settle(app, pilot)
            assert session.moment.icount == crash
            assert current_code_text(app) == "mov dword ptr [rax], edx"

            await pilot.press("F")                                     # back to the call in main
            await settle(app, pilot)
            assert session.describe(session.moment.rip).startswith("main+")
            assert current_code_text(app).startswith("call ")
            assert "store_through_null(42);" in panel_text(app, "#code")

            await pilot.press("less_than_sign")                        # the start: ld.so runs
            await settle(app, pilot)
            assert session.moment.icount == 0
            interp = [v for v in session.tt.machine.kernel.space.vmas if v.prot & 4]
            assert len(interp) == 2                                    # the program and ld.so
            assert any(v.start <= session.moment.rip < v.end and "ld-linux" in v.name for v in interp)
            assert session.code_ranges == [(v.start, v.end) for v in interp]    # read now, not at the crash
            await pilot.press("g", *"printf", "enter")                 # a libc symbol, by name
            await settle(app, pilot)
            assert session.describe(session.moment.rip) == "printf", app.last_error
            assert "printf" in panel_text(app, "#code")
            assert session.moment.icount < crash
    run(scenario())


def test_memory_search_covers_the_mappings(linux_trace):
    async def scenario():
        app = make_app(linux_trace)
        async with app.run_test(size=SIZE) as pilot:
            await settle(app, pilot)
            session = app.session
            await pilot.press("slash", *"m:about to store", "enter")
            await settle(app, pilot)
            note = session.moment.note
            assert note.startswith("found in memory at "), note
            address = int(note.split()[4], 16)
            assert session.tt.read_memory(address, 14) == b"about to store"
            assert session.image_start <= address < session.image_end    # the format string

            found = [address]
            for _ in range(4):                                         # again, past each match
                await pilot.press("slash", "enter")
                await settle(app, pilot)
                note = session.moment.note
                found.append(int(note.split()[4], 16))
                if note.endswith("([heap])"):
                    break
            assert found == sorted(set(found)), found
            assert note.endswith("([heap])"), note
            assert session.tt.read_memory(found[-1], 17) == b"about to store 42"    # stdout's buffer
    run(scenario())


def test_last_write_and_watchpoints_use_virtual_addresses(linux_trace):
    """The stack slot store_through_null spilled its argument to: found by 'who wrote?',
    and a watchpoint on it stops a reverse continue there. Unicorn reports physical
    addresses; the session watches the frame behind the virtual slot."""
    async def scenario():
        app = make_app(linux_trace)
        async with app.run_test(size=SIZE) as pilot:
            await settle(app, pilot)
            session = app.session
            crash = session.crash_icount
            rbp = session.moment.registers["rbp"]
            frame = session.tt.read_memory(rbp - 0x20, 0x20)
            slot = rbp - 0x20 + frame.index((42).to_bytes(4, "little"))
            await pilot.press("l", *f"{slot:#x},4", "enter")
            await settle(app, pilot)
            moment = session.moment
            assert moment.note.startswith(f"last write to {slot:#x}: "), (moment.note, app.last_error)
            assert "→ 2a000000 by store_through_null+" in moment.note, moment.note
            written_at = moment.icount
            assert written_at < crash

            await pilot.press("greater_than_sign")                     # back to the end
            await settle(app, pilot)
            await pilot.press("w", *f"{slot:#x},4,w", "enter")
            await settle(app, pilot)
            assert f"{slot:#x}+4 write" in panel_text(app, "#breakpoints")
            await pilot.press("C")                                     # reverse continue
            await settle(app, pilot)
            moment = session.moment
            assert moment.icount == written_at, (moment.icount, written_at, moment.note)
            assert moment.note == f"the current instruction writes {slot:#x}", moment.note
            await pilot.press("w", *f"{slot:#x},4,w", "enter")           # toggles it off
            await settle(app, pilot)
            assert session.moment.watchpoints == () and session.tt.watchpoints == []
    run(scenario())


def test_how_a_linux_program_ended_in_words():
    assert end_summary({"reason": "poweroff", "exit_status": 3}, hex, linux=True) == "exited with status 3"
    assert end_summary({"reason": "crash", "kind": "SIGABRT", "signal": 6, "rip": 0x10}, hex,
                       linux=True) == "crashed: SIGABRT at 0x10"
    assert end_summary({"reason": "crash", "signal": 7}, hex, linux=True) == "crashed: signal 7"
    assert end_summary({"reason": "poweroff", "exit_status": 3}, hex) == "power-off, status 3"


THREADS_SOURCE = r"""
#define _GNU_SOURCE
#include <pthread.h>
#include <unistd.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static int ready;
static int *volatile target;

static void *waiter(void *arg)
{
    pthread_setname_np(pthread_self(), "waiter");
    pthread_mutex_lock(&lock);
    while (!ready)
        pthread_cond_wait(&wake, &lock);
    pthread_mutex_unlock(&lock);
    return arg;
}

static void *crasher(void *arg)
{
    pthread_setname_np(pthread_self(), "crasher");
    usleep(2000);
    *target = 1;
    return arg;
}

int main(void)
{
    pthread_t a, b;
    pthread_create(&a, 0, waiter, 0);
    pthread_create(&b, 0, crasher, 0);
    pthread_join(b, 0);
    return 0;
}
"""


@pytest.fixture(scope="module")
def threads_trace(tmp_path_factory):
    trace = record_crash(tmp_path_factory, "threads", THREADS_SOURCE, "-pthread")
    replay = replay_verify(trace)
    assert "crash recurred: SIGSEGV" in replay.stderr, describe(replay)
    return trace


def test_threads_panel_and_going_back_to_a_thread(threads_trace):
    async def scenario():
        app = make_app(threads_trace)
        async with app.run_test(size=SIZE) as pilot:
            await settle(app, pilot)
            session = app.session
            crash = session.crash_icount
            moment = session.moment
            assert moment.icount == crash
            rows = {row.name: row for row in moment.threads}
            assert set(rows) == {"threads", "waiter", "crasher"}, moment.threads
            assert moment.threads[0].name == "crasher" and moment.threads[0].on_cpu
            assert "futex" in rows["waiter"].state and "futex" in rows["threads"].state
            panel = panel_text(app, "#processes")                     # the process and its threads
            assert re.search(r"▶\s+tid %d\s+crasher\s+on the CPU" % rows["crasher"].tid, panel), panel
            assert re.search(r"tid %d\s+waiter\s+futex" % rows["waiter"].tid, panel), panel
            assert re.search(r"^\s+%d\s+running\s+\S*threads" % main_tid_of(session), panel, re.M), panel
            assert session.thread_at(crash) == rows["crasher"].tid
            main_tid = rows["threads"].tid
            assert main_tid == session.thread_runs[0][1]

            await pilot.press("g", *f"t {main_tid}", "enter")          # where main last ran
            await settle(app, pilot)
            moment = session.moment
            assert moment.icount == rows["threads"].last_ran, app.last_error
            assert moment.icount < crash
            assert moment.threads[0].tid == main_tid and moment.threads[0].on_cpu
            assert session.thread_at(moment.icount) == main_tid
            assert "thread %d: its last instruction" % main_tid in moment.note
            assert "syscall" in current_code_text(app)                 # about to wait in futex
            await pilot.press("s")                                     # its futex call blocks:
            await settle(app, pilot)                                   # the crasher runs next
            assert session.thread_at(session.moment.icount) != main_tid

            await pilot.press("g", *"t 4242", "enter")
            await settle(app, pilot)
            assert "no thread 4242" in status_text(app) + str(app.last_error)
    run(scenario())


def main_tid_of(session) -> int:
    """The program's pid: the thread that ran first."""
    return session.thread_runs[0][1]


def test_switches_and_outside_signals_read_as_words():
    from replay.render import render_event
    from trace_format.events import Event, EventKind
    assert render_event(Event(7, EventKind.SWITCH, [1002, 0])) == "thread 1002 on the CPU"
    assert render_event(Event(7, EventKind.SWITCH, [1001, 2])) == "thread 1001 on the CPU, its wait timed out"
    assert render_event(Event(7, EventKind.SIGNAL_IN, 15)) == "--- SIGTERM sent from outside ---"

"""The debugger on a trace of several processes: ``/bin/sh -c 'echo a | cat; /bin/true'``
(a shell that forks a subshell for ``echo``, a child that execs ``cat``, and one that execs
``/bin/true``), recorded with ``vmrr record -o T -- /bin/sh -c ...`` and replayed with
``--verify``.

What the screen says is checked against the trace itself, not against the debugger's own
model: the pids, parents, commands and exit statuses from ``vmrr ps --json`` (the END
record's process list), and who is on the CPU from the SWITCH events. The model is driven
directly (tree, process switches, another thread's registers and memory through its own
page tables), with Pilot, and in a real terminal under tmux.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
import time
from pathlib import Path

import pytest

from conftest import describe, replay_verify, vmrr
from trace_format import TraceReader
from trace_format.events import EventKind
from tui_fixtures import REPO, SIZE, make_app, run, settle

SCRIPT = "echo a | cat; /bin/true"
ICOUNT = re.compile(r"icount (\d+) / (\d+)")


@pytest.fixture(scope="module")
def shell_trace(tmp_path_factory) -> Path:
    if not Path("/bin/sh").is_file() or not Path("/bin/true").is_file():
        pytest.skip("no /bin/sh or /bin/true")
    trace = tmp_path_factory.mktemp("tui-processes") / "pipeline.vmrr"
    record = vmrr("record", "-o", trace, "--", "/bin/sh", "-c", SCRIPT, timeout=180)
    assert record.returncode == 0, "the recording failed" + describe(record)
    assert record.stdout == "a\n", describe(record)
    replay = replay_verify(trace, timeout=180)
    assert replay.stdout == "a\n", describe(replay)
    return trace


class Truth:
    """The trace's own account: its processes (``vmrr ps --json``) and who ran when
    (SWITCH events, tids mapped to pids with the process list)."""

    def __init__(self, trace: Path) -> None:
        ps = vmrr("ps", trace, "--json")
        assert ps.returncode == 0, describe(ps)
        self.processes = [json.loads(line) for line in ps.stdout.splitlines() if line.strip()]
        self.by_pid = {p["pid"]: p for p in self.processes}
        owner = {tid: p["pid"] for p in self.processes for tid in p["tids"]}
        shell = self.processes[0]
        assert shell["argv"] == ["/bin/sh", "-c", SCRIPT], shell
        self.shell = shell["pid"]
        with TraceReader(str(trace)) as reader:
            switches = [(e.icount, e.payload[0]) for e in reader.events(kinds=[EventKind.SWITCH])]
        self.runs = [(0, self.shell)]                 # (first icount, pid on the CPU)
        for icount, tid in switches:
            if owner[tid] != self.runs[-1][1]:
                self.runs.append((icount, owner[tid]))
        cats = [p for p in self.processes if p["argv"] == ["cat"]]
        trues = [p for p in self.processes if p["argv"] == ["/bin/true"]]
        assert len(cats) == 1 and len(trues) == 1, self.processes
        self.cat, self.true = cats[0]["pid"], trues[0]["pid"]
        # The subshell that ran `echo a`: a fork of the shell that never exec'd.
        subshells = [p for p in self.processes[1:] if p["argv"] == shell["argv"]]
        assert len(subshells) == 1, self.processes
        self.echo = subshells[0]["pid"]
        assert {p["ppid"] for p in self.processes[1:]} == {self.shell}
        assert all(p["state"] == "exited" and p["exit_code"] == 0 for p in self.processes)

    def pid_at(self, icount: int) -> int:
        return [pid for start, pid in self.runs if start <= icount][-1]

    def cat_running(self) -> int:
        """A position where cat (after its exec) is on the CPU, with the echo subshell reaped."""
        start, end = [(s, e) for (s, pid), (e, _) in zip(self.runs, self.runs[1:] + [(None, None)])
                      if pid == self.cat][-1]
        here = (start + end) // 2
        assert here > self.by_pid[self.cat]["start_icount"] and here > self.by_pid[self.echo]["end_icount"]
        return here


@pytest.fixture(scope="module")
def truth(shell_trace) -> Truth:
    return Truth(shell_trace)


@pytest.fixture
def session(shell_trace):
    from tui.session import DebugSession
    s = DebugSession.open(str(shell_trace))
    yield s
    s.close()


# -- the model -------------------------------------------------------------------------------

def test_process_switches_are_where_the_trace_switches_processes(session, truth):
    assert session.process_runs == truth.runs
    assert len({pid for _icount, pid in truth.runs}) == 4      # the shell, echo, cat, true
    kernel = session.tt.machine.kernel
    seen = [session.moment.icount]
    for start, pid in truth.runs[1:]:
        before = session.process_at(seen[-1])
        moment = session.move("next_process")
        assert moment.icount == start and moment.icount > seen[-1]
        assert kernel.pid == pid != before                       # another process has the CPU
        assert moment.cpu[:2] == (pid, kernel.tid)
        assert f"pid {pid}" in moment.note and f"after pid {before}" in moment.note
        seen.append(moment.icount)
    moment = session.move("next_process")                       # none left: it stays
    assert moment.icount == seen[-1] and "no process switch after" in moment.note
    for start, pid in reversed(truth.runs[1:-1]):
        moment = session.move("prev_process")
        assert moment.icount == start and kernel.pid == pid
    moment = session.move("prev_process")                       # the start is not a switch
    assert moment.icount == truth.runs[1][0] and "no process switch before" in moment.note


def test_the_tree_at_a_position_where_cat_runs(session, truth):
    here = truth.cat_running()
    moment = session.move("seek", here)
    assert moment.cpu == (truth.cat, truth.cat, "cat", "cat")
    tree = {row.pid: row for row in moment.processes}
    assert list(tree) == [truth.shell, truth.cat]                # the parent first, then its child
    shell, cat = tree[truth.shell], tree[truth.cat]
    assert shell.depth == 0 and cat.depth == 1 and cat.ppid == truth.shell
    assert shell.command == shlex.join(["/bin/sh", "-c", SCRIPT]) and cat.command == "cat"
    assert shell.state_text() == "alive" and cat.state_text() == "running" and cat.on_cpu
    assert [t.tid for t in cat.threads] == [truth.cat] and cat.threads[0].on_cpu
    [waiting] = shell.threads
    assert waiting.tid == truth.shell and not waiting.on_cpu and "wait4" in waiting.state
    cat_got_it = max(start for start, _pid in truth.runs if start <= here)    # from the shell
    assert truth.pid_at(cat_got_it - 1) == truth.shell and waiting.last_ran == cat_got_it - 1
    # The echo subshell ended and was reaped before now; /bin/true has not started.
    assert [(row.pid, row.state_text()) for row in moment.ended] == [(truth.echo, "exited 0")]
    assert truth.true not in tree
    assert moment.ended[0].end_icount == truth.by_pid[truth.echo]["end_icount"]
    # The code is named with cat's symbols (its program and libraries), not the shell's.
    kernel = session.tt.machine.kernel
    assert session.symbols is kernel.processes[truth.cat].symbols is not kernel.processes[truth.shell].symbols


def test_another_processes_thread_reads_through_its_own_page_tables(session, truth):
    here = truth.cat_running()
    session.move("seek", here)
    kernel = session.tt.machine.kernel
    cpu = session.moment
    shell_space = kernel.processes[truth.shell].space
    cat_space = kernel.processes[truth.cat].space
    assert shell_space.root != cat_space.root

    moment = session.view_thread(truth.shell)
    assert moment.viewing == (truth.shell, truth.shell) and moment.icount == here
    assert moment.cpu[:2] == (truth.cat, truth.cat)              # the CPU is still cat's
    assert kernel.pid == truth.cat and kernel.proc.pid == truth.cat   # nothing moved in the machine
    task = kernel.tasks[truth.shell]
    ints, _vector = task.ctx
    from vmm.linux.tasks import CTX_NAMES
    saved = dict(zip(CTX_NAMES, ints))
    assert moment.rip == saved["rip"] != cpu.rip
    assert moment.registers["rsp"] == saved["rsp"]
    assert moment.registers["cr3"] == shell_space.root != cpu.registers["cr3"]
    # The code, the stack and the memory window are the shell's bytes, which are not cat's.
    row = moment.code[moment.current_row]
    assert row.address == moment.rip and row.raw == shell_space.peek(moment.rip, len(row.raw))
    stack = [slot for slot in moment.stack if slot.value is not None]
    assert stack and all(slot.value == int.from_bytes(shell_space.peek(slot.address, 8), "little")
                         for slot in stack)
    theirs = [cat_space.peek(slot.address, 8) for slot in stack]
    assert any(data is None or int.from_bytes(data, "little") != slot.value
               for data, slot in zip(theirs, stack)), "the shell's stack reads the same as cat's"
    assert "wait4" in moment.note and session.symbols is kernel.processes[truth.shell].symbols

    # The tree marks the shown thread; a move shows the CPU's again.
    back = session.move("step")
    assert back.viewing is None and back.icount == here + 1 and back.rip != moment.rip
    assert back.registers["cr3"] == cpu.registers["cr3"]


def test_going_back_to_where_a_process_last_ran(session, truth):
    session.move("end")
    moment = session.move("goto", f"p {truth.cat}")
    assert moment.icount == truth.by_pid[truth.cat]["end_icount"] - 1
    assert session.tt.machine.kernel.pid == truth.cat
    from tui.targets import BadInput
    with pytest.raises(BadInput, match="no process 4242"):
        session.move("goto", "p 4242")


# -- the screen (Pilot) -----------------------------------------------------------------------

def test_tree_panel_status_and_keys_with_pilot(shell_trace, truth):
    here = truth.cat_running()

    async def scenario():
        app = make_app(shell_trace)
        async with app.run_test(size=SIZE) as pilot:
            await settle(app, pilot)
            status = str(app.main.status.render())
            assert f"pid {truth.shell} tid {truth.shell} sh" in status, status
            await pilot.press("g", *str(here), "enter")
            await settle(app, pilot)
            panel = str(app.main.query_one("#processes").render())
            status = str(app.main.status.render())
            assert f"icount {here} /" in status and f"pid {truth.cat} tid {truth.cat} cat" in status, status
            lines = panel.splitlines()
            shell_line = next(i for i, line in enumerate(lines) if line.strip().startswith(str(truth.shell)))
            assert "alive" in lines[shell_line] and SCRIPT in lines[shell_line], panel
            assert "wait4" in lines[shell_line + 1] and f"tid {truth.shell}" in lines[shell_line + 1], panel
            assert f"└ {truth.cat}" in lines[shell_line + 2] and "running" in lines[shell_line + 2], panel
            assert lines[shell_line + 3].startswith("▶") and f"tid {truth.cat}" in lines[shell_line + 3], panel
            assert "ended before icount" in panel and f"{truth.echo}" in panel and "exited 0" in panel

            # Tab to the tree; from cat's thread down past the heading to the echo subshell,
            # which ended: Enter goes back to its last instruction.
            await pilot.press("tab", "tab")
            assert app.focused is app.main.query_one("#processes")
            await pilot.press("down", "enter")
            await settle(app, pilot)
            moment = app.session.moment
            assert moment.icount == truth.by_pid[truth.echo]["end_icount"] - 1, app.last_error
            assert moment.cpu[0] == truth.echo == truth.pid_at(moment.icount)
            await pilot.press("g", *str(here), "enter")
            await settle(app, pilot)
            assert app.session.moment.icount == here

            # Up twice from cat's thread to the shell's, Enter shows it.
            await pilot.press("up", "up", "enter")
            await settle(app, pilot)
            moment = app.session.moment
            assert moment.viewing == (truth.shell, truth.shell), app.last_error
            assert f"showing tid {truth.shell}" in str(app.main.status.render())
            assert "◆" in str(app.main.query_one("#processes").render())

            await pilot.press("p")                                # the next process switch
            await settle(app, pilot)
            moment = app.session.moment
            nxt = min(start for start, _pid in truth.runs if start > here)
            assert moment.icount == nxt and moment.viewing is None
            assert moment.cpu[0] == truth.pid_at(nxt) != truth.cat
            await pilot.press("P")
            await settle(app, pilot)
            assert app.session.moment.icount == max(s for s, _p in truth.runs if s <= here)
    run(scenario())


# -- a real terminal ---------------------------------------------------------------------------

def test_process_tree_in_a_real_terminal(shell_trace, truth, request):
    import shutil
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed")
    from test_tui_tmux import Tmux, shown_icount

    tmux = Tmux(f"vmrr-tui-proc-{os.getpid()}-{request.node.name[:30]}")
    request.addfinalizer(tmux.kill)
    command = (f"cd {shlex.quote(str(REPO))} && exec env -u COLUMNS -u LINES "
               f"{shlex.quote(sys.executable)} -m vmrr tui {shlex.quote(str(shell_trace))}")
    tmux.start(command)
    screen = tmux.wait_for(lambda s: shown_icount(s) == 0 and "Processes" in s
                           and len(s.splitlines()[0]) >= tmux.width - 1, "the main screen at 160x50")
    assert f"pid {truth.shell} tid {truth.shell} sh" in screen

    here = truth.cat_running()
    tmux.keys("g")
    tmux.wait_for(lambda s: "Go to" in s, "the go-to prompt")
    tmux.keys(str(here), "Enter")
    screen = tmux.wait_for(lambda s: shown_icount(s) == here, f"icount {here}")
    screen = tmux.wait_for(lambda s: f"pid {truth.cat} tid {truth.cat} cat" in s, "the status line naming cat")
    write_capture(screen)
    assert re.search(rf"\b{truth.shell}\s+alive\s+/bin/sh -c 'echo a \| cat; /bin/true'", screen), screen
    assert re.search(rf"tid {truth.shell}\s+sh\s+wait4", screen), screen
    assert re.search(rf"└ {truth.cat}\s+running\s+cat", screen), screen
    assert re.search(rf"▶\s+tid {truth.cat}\s+cat\s+on the CPU", screen), screen
    assert re.search(rf"\b{truth.echo}\s+exited 0", screen), screen

    tmux.keys("p")                                   # to where another process gets the CPU
    nxt = min(start for start, _pid in truth.runs if start > here)
    other = truth.pid_at(nxt)
    assert other != truth.cat
    screen = tmux.wait_for(lambda s: shown_icount(s) == nxt, f"icount {nxt} after p")
    assert f"pid {other} tid {other} " in screen, screen
    assert f"pid {truth.cat} tid" not in screen.splitlines()[-2], screen

    tmux.keys("q")
    deadline = time.monotonic() + 15
    while tmux.alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not tmux.alive(), "q did not quit the debugger"


def write_capture(screen: str) -> None:
    """Keep the screen for a person to look at: VMRR_TUI_CAPTURE=FILE."""
    path = os.environ.get("VMRR_TUI_CAPTURE")
    if path:
        Path(path).write_text(screen)

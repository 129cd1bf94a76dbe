"""The process tree rebuilt from events (replay/pstree.py), on made-up event streams:
threads, a vfork, exec, exits, SIGKILL, reaping, and payloads of every wrong shape."""

from __future__ import annotations

import pytest

from replay.pstree import (ENDED, EXITED, KILLED, RUNNING, UNKNOWN, Process, ProcessTree, TreeBuilder, as_json,
                           command_text, counts_text, exit_text, from_events, from_summary, printable, table)
from trace_format.events import Event, EventKind

SYSCALL, SIGNAL, SWITCH = EventKind.SYSCALL, EventKind.SIGNAL, EventKind.SWITCH
CLONE_THREAD_FLAGS = 0x3D0F00          # what glibc's pthread_create passes
U64 = (1 << 64) - 1


def call(icount, tid, nr, args=(), ret=0):
    return Event(icount, SYSCALL, [tid, nr, list(args), ret, []])


def tree(*events, argv=("/bin/prog", "x"), exe="/bin/prog") -> dict[int, Process]:
    return from_events(list(events), list(argv), exe).by_pid()


def test_forks_threads_exec_and_exits():
    procs = tree(
        call(10, 1000, 39, ret=1000),                                  # getpid
        call(20, 1000, 56, [CLONE_THREAD_FLAGS, 0, 0, 0, 0], 1001),    # a thread
        call(30, 1001, 57, ret=1002),                                  # the thread forks
        call(40, 1002, 59, ["/usr/bin/cat", 0, 0], None),              # the child execs
        call(50, 1002, 231, [0x107]),                                  # exit_group(0x107): code 7
        call(60, 1000, 61, [U64 & 0xFFFFFFFF, 0, 0, 0], 1002),         # wait4 reaps it
        call(70, 1001, 60, [0]),                                       # the thread exits
        call(80, 1000, 60, [4]),                                       # the last thread: the process ends
    )
    assert sorted(procs) == [1000, 1002]
    first, child = procs[1000], procs[1002]
    assert (first.ppid, first.argv, first.tids, first.state, first.exit_code, first.end_icount) == \
        (0, ["/bin/prog", "x"], [1000, 1001], EXITED, 4, 80)
    assert (child.ppid, child.start_icount, child.argv, child.exe, child.exit_code, child.end_icount) == \
        (1000, 30, None, "/usr/bin/cat", 7, 50)
    assert command_text(child) == "? (execve /usr/bin/cat)" and exit_text(child) == "7"


def test_a_vfork_child_is_the_next_id_and_a_sigkill_ends_a_process():
    procs = tree(
        call(5, 1000, 56, [CLONE_THREAD_FLAGS, 0, 0, 0, 0], 1001),
        call(10, 1000, 58, ret=None),                                  # vfork: waits, no result
        Event(11, SWITCH, [1002, 0]),
        call(12, 1002, 59, ["/bin/sleep", 0, 0], None),
        call(20, 1000, 62, [1002, 9], 0),                              # kill(1002, SIGKILL)
        call(30, 1000, 62, [1000, 15], 0),                             # SIGTERM: not known to kill
        call(40, 1001, 234, [1000, 1000, 9], 0),                       # tgkill(.., 1000, SIGKILL)
    )
    assert procs[1002].start_icount == 10 and procs[1002].exe == "/bin/sleep"
    assert procs[1002].ppid == 1               # nobody reaped it before 1000 died: init's, as in the kernel
    assert (procs[1002].state, procs[1002].signal, procs[1002].end_icount) == (KILLED, 9, 20)
    assert (procs[1000].state, procs[1000].end_icount) == (KILLED, 40)
    assert exit_text(procs[1002]) == "-9"


def test_what_the_events_do_not_tell_is_unknown():
    procs = tree(
        call(10, 1000, 57, ret=1001),
        call(20, 1000, 57, ret=1002),
        Event(30, SIGNAL, [1000, 17, 2, 1001]),                        # SIGCHLD, CLD_KILLED: 1001 ended
        call(40, 1000, 61, [0, 0, 0, 0], 1002),                        # wait4 reaped 1002
        call(50, 1003, 0, [0, 0, 0], 0),                               # a thread from nowhere
    )
    assert procs[1001].state == ENDED and procs[1002].state == ENDED and procs[1000].state == UNKNOWN
    assert exit_text(procs[1001]) == "?" and procs[1001].end_icount is None
    stranger = procs[1003]
    assert (stranger.ppid, stranger.argv, stranger.start_icount, stranger.state) == (None, None, None, UNKNOWN)
    lines = table(from_events([call(10, 1000, 57, ret=1001), call(50, 1003, 0, [0, 0, 0], 0)], ["p"], "/p"))
    assert lines[0].split() == ["PID", "PPID", "EXIT", "START-ICOUNT", "END-ICOUNT", "CMD"]
    assert lines[-1].split() == ["1003", "?", "?", "?", "?", "?"]


@pytest.mark.parametrize("payload", [
    [], [None], ["1000", 57, [], 1, []], [1000, "fork", [], 1, []], [1000, 56, "flags", 5, []],
    [1000, 56, [], 5, []], [1000, 57, [], -11, []], [1000, 57, [], 1 << 40, []], [1000, 59, [], None, []],
    [1000, 59, [7, 0, 0], None, []], [1000, 231, [], None, []], [1000, 231, ["x"], None, []],
    [1000, 62, [None, 9], 0, []], [1000, 62, [1 << 63, 9], 0, []], [1000, 234, [], 0, []],
    [1000, 61, [], "1001", []], [1000, 60, [], None, []], [1000, 322, [3, "rel/path", 0, 0, 0], None, []],
])
def test_payloads_of_any_shape_never_raise(payload):
    builder = TreeBuilder(["p"], "/p")
    builder.feed(Event(1, SYSCALL, [1000, 39, [], 1000, []]))
    builder.feed(Event(2, SYSCALL, payload))
    builder.feed(Event(3, SIGNAL, [1000, 17, 1, "x"]))
    builder.feed(Event(4, SIGNAL, payload))
    builder.feed(Event(5, SWITCH, payload))
    built = builder.tree()
    assert built.processes[0].pid == 1000 and built.rebuilt
    assert table(built) and all(as_json(p, True) for p in built.processes)


def test_from_summary_and_the_text_forms():
    summary = {"processes": [
        {"pid": 1001, "ppid": 1000, "argv": ["sh", "-c", "kill -9 $$"], "exe": "/usr/bin/sh", "exit": 9,
         "start_icount": 5, "end_icount": 9, "tids": [1001]},
        {"pid": 1000, "ppid": 0, "argv": ["a b", "\x1b[31m"], "exe": "/p", "exit": None,
         "start_icount": 0, "end_icount": None, "tids": [1000, 1002], "cut": True},
    ], "processes_omitted": 2}
    built = from_summary(summary)
    assert [p.pid for p in built.processes] == [1000, 1001] and not built.rebuilt and built.omitted == 2
    first, killed = built.processes
    assert first.state == RUNNING and exit_text(first) == "-" and command_text(first) == "'a b' '\\x1b[31m' ..."
    assert killed.state == KILLED and as_json(killed, False)["signal_name"] == "SIGKILL"
    assert table(built)[1].split()[:5] == ["1000", "0", "-", "0", "-"]
    rows = [as_json(p, False) for p in built.processes]
    assert counts_text(rows, False, 2) == ("4: 1 killed by a signal, 0 exited non-zero, 1 still running at the end; "
                                           "2 left out of the trace's list, which is bounded")
    assert from_summary({"syscalls": {}}) is None
    assert printable("a\nb\x00\u200b\udcff") == "a\\nb\\x00\\u200b\\udcff"
    assert ProcessTree([], rebuilt=True).first is None


def test_a_vfork_child_is_the_pid_the_host_gave_when_the_event_has_it():
    given = Event(10, SYSCALL, [40312, 58, [], None, [["newpid", 40377]]])     # host pids: not in order
    procs = tree(call(5, 40312, 39, ret=40312), given, Event(11, SWITCH, [40377, 0]),
                 call(12, 40377, 231, [2]))
    assert sorted(procs) == [40312, 40377]
    assert (procs[40377].ppid, procs[40377].start_icount, procs[40377].exit_code) == (40312, 10, 2)
    first = from_events([call(5, 40312, 39, ret=40312)], ["p"], "/p", 40001).first
    assert (first.pid, first.ppid) == (40312, 40001)


def test_children_left_behind_are_inits_as_the_kernel_shows_them():
    procs = tree(
        call(10, 1000, 57, ret=1001),
        call(20, 1001, 57, ret=1002),                                  # a grandchild
        call(25, 1001, 57, ret=1003),
        call(26, 1003, 231, [0]),
        call(27, 1001, 61, [0, 0, 0, 0], 1003),                        # reaped before its parent ends
        call(30, 1001, 231, [0]),                                      # 1002 is left behind
        call(40, 1000, 61, [0, 0, 0, 0], 1001),
    )
    assert (procs[1001].ppid, procs[1002].ppid, procs[1003].ppid) == (1000, 1, 1001)

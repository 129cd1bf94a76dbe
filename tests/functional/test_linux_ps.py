"""`vmrr ps`, `vmrr events --pid` and `vmrr info`'s processes, on a real shell's process tree.

One recording of /bin/sh running a pipeline, a command substitution, a subshell that
exits 3, a child shell that kills itself with SIGKILL and a last external command; the
replay verifies it. Every column `vmrr ps` prints is checked against what the trace's own
events say (which call made which child, where it exited and with what), not against the
summary it is printed from. A killed recording (no END record) and a cut file opened with
--recover rebuild the tree from the events, with `?` where they do not tell. Crash reports
name the process that crashed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from conftest import REPO, describe, replay_verify, vmrr
from linux_helpers import linux_prog, record_linux, record_replay_linux  # noqa: F401  (fixture)

sys.path.insert(0, str(REPO / "tools"))
import tracefuzz as tf  # noqa: E402
from test_hostile import one_error_line, rewritten  # noqa: E402

pytestmark = pytest.mark.timeout(120)

SCRIPT = "echo a | cat; x=$(echo sub); echo \"$x\"; (exit 3); echo st=$?; sh -c 'kill -9 $$'; echo k=$?; " \
         "/bin/true; echo done"
ARGV = ["/bin/sh", "-c", SCRIPT]
HEADER = ["PID", "PPID", "EXIT", "START-ICOUNT", "END-ICOUNT", "CMD"]
END_KIND = 14


class Recorded:
    """The recording, its `vmrr ps` rows and its events (as `vmrr events --json` gives them)."""

    def __init__(self, trace: Path, record) -> None:
        self.trace = trace
        self.record = record
        events = vmrr("events", trace, "--json")
        assert events.returncode == 0, describe(events)
        self.events = [json.loads(line) for line in events.stdout.splitlines()]
        self.calls = [e for e in self.events if e["kind"] == "SYSCALL"]
        self.main = self.calls[0]["payload"][0]
        from trace_format import TraceReader
        with TraceReader(str(trace)) as reader:
            identity = reader.header.config.devices["linux"].get("identity")
        self.main_ppid = identity[1] if identity else 0      # vmrr's parent, when pids are the host's

    def calls_of(self, tid: int, name: str | None = None) -> list[dict]:
        return [e for e in self.calls if e["payload"][0] == tid and (name is None or e["syscall"] == name)]


@pytest.fixture(scope="module")
def shell(tmp_path_factory) -> Recorded:
    trace = tmp_path_factory.mktemp("ps") / "shell.vmrr"
    record = record_linux(trace, ARGV, "--no-stdin")
    assert record.returncode == 0, describe(record)
    assert record.stdout == "a\nsub\nst=3\nk=137\ndone\n", describe(record)
    replay = replay_verify(trace)
    assert replay.stdout == record.stdout, describe(replay)
    return Recorded(trace, record)


def ps_rows(*args) -> tuple[list[dict], str]:
    """`vmrr ps ARGS` as rows keyed by column (CMD keeps its spaces), and its stderr."""
    out = vmrr("ps", *args)
    assert out.returncode == 0 and "Traceback" not in out.stderr, describe(out)
    lines = out.stdout.splitlines()
    assert lines[0].split() == HEADER, out.stdout
    return [dict(zip(HEADER, line.split(None, 5))) for line in lines[1:]], out.stderr


def _ints(row: dict, column: str) -> int:
    return int(row[column])


def test_ps_names_every_process_of_the_pipeline_as_the_events_show_it(shell):
    rows, stderr = ps_rows(shell.trace)
    assert "rebuilt" not in stderr, stderr
    by_pid = {int(r["PID"]): r for r in rows}
    # Every thread that made a call is a process of its own (the shell has no threads).
    assert set(by_pid) == {e["payload"][0] for e in shell.calls}, (rows, shell.calls[:3])
    first = rows[0]
    assert (int(first["PID"]), int(first["PPID"]), first["EXIT"], first["START-ICOUNT"]) == \
        (shell.main, shell.main_ppid, "0", "0")
    end = next(e for e in shell.events if e["kind"] == "END")
    assert int(first["END-ICOUNT"]) == end["icount"] and first["CMD"] == "/bin/sh -c " + _quoted(SCRIPT)
    for pid, row in by_pid.items():
        start, stop = _ints(row, "START-ICOUNT"), _ints(row, "END-ICOUNT")
        assert start <= stop, row
        if pid == shell.main:
            continue
        # Its parent made the fork, clone or vfork that started it, at START-ICOUNT: the result
        # names it (a vfork, which waits for the child, has none in its event).
        ppid = int(row["PPID"])
        assert ppid == shell.main, row
        makers = [e for e in shell.calls_of(ppid) if e["syscall"] in ("clone", "fork", "vfork")
                  and e["icount"] == start and e["payload"][3] in (pid, None)]
        assert makers, (row, [e["text"] for e in shell.calls_of(ppid) if e["syscall"] in ("clone", "vfork")])
        if row["EXIT"] == "-9":
            killed = [e for e in shell.calls if e["syscall"] == "kill" and e["payload"][2][:2] == [pid, 9]]
            assert [e["icount"] for e in killed] == [stop], row
        else:
            exits = shell.calls_of(pid, "exit_group")
            assert [(e["icount"], e["payload"][2][0]) for e in exits] == [(stop, int(row["EXIT"]))], row
    # What each child ran: the pipeline's cat, the subshell's exit 3, sh -c 'kill -9 $$', /bin/true.
    cmds = {r["CMD"]: r for r in rows[1:]}
    assert cmds["cat"]["EXIT"] == "0", rows
    assert cmds["sh -c 'kill -9 $$'"]["EXIT"] == "-9", rows
    assert cmds["/bin/true"]["EXIT"] == "0", rows
    subshells = [r for r in rows[1:] if r["CMD"] == first["CMD"]]         # forks that never exec'd
    assert sorted(r["EXIT"] for r in subshells) == ["0", "0", "3"], rows   # pipeline's echo, $(...), (exit 3)
    assert len(rows) == 7, rows
    killed = int(cmds["sh -c 'kill -9 $$'"]["PID"])
    assert [e["payload"][2][0] for e in shell.calls_of(killed, "execve")] == ["/usr/bin/sh"], rows
    assert [e["payload"][3] for e in shell.calls_of(killed, "getpid")] == [killed]


def _quoted(text: str) -> str:
    import shlex
    return shlex.quote(text)


def test_ps_json_is_the_table_with_states_signal_names_and_thread_ids(shell):
    rows, _ = ps_rows(shell.trace)
    out = vmrr("ps", shell.trace, "--json")
    assert out.returncode == 0, describe(out)
    objects = [json.loads(line) for line in out.stdout.splitlines()]
    assert [o["pid"] for o in objects] == [int(r["PID"]) for r in rows]
    for obj, row in zip(objects, rows):
        assert obj["tids"] == [obj["pid"]] and obj["rebuilt"] is False and obj["cut"] is False, obj
        assert (obj["start_icount"], obj["end_icount"]) == (int(row["START-ICOUNT"]), int(row["END-ICOUNT"]))
        if row["EXIT"] == "-9":
            assert (obj["state"], obj["signal"], obj["signal_name"], obj["exit_code"]) == \
                ("killed", 9, "SIGKILL", None), obj
        else:
            assert (obj["state"], obj["exit_code"], obj["signal"]) == ("exited", int(row["EXIT"]), None), obj
            assert obj["wait_status"] == int(row["EXIT"]) << 8, obj
    assert objects[0]["argv"] == ARGV and objects[0]["exe"] == "/bin/sh"
    cat = next(o for o in objects if o["argv"] == ["cat"])
    assert cat["exe"] == "/usr/bin/cat" and cat["ppid"] == objects[0]["pid"], cat


def _event_lines(*args) -> list[str]:
    out = vmrr("events", *args)
    assert out.returncode == 0 and "Traceback" not in out.stderr, describe(out)
    return out.stdout.splitlines()


def test_events_pid_shows_only_the_threads_of_those_processes(shell):
    rows, _ = ps_rows(shell.trace)
    killed = next(int(r["PID"]) for r in rows if r["EXIT"] == "-9")
    cat = next(int(r["PID"]) for r in rows if r["CMD"] == "cat")
    lines = _event_lines(shell.trace, "--pid", killed)
    assert lines and all(f"[pid {killed}] " in line for line in lines), lines[:5]
    assert all(line.split()[1] in ("SYSCALL", "SIGNAL") for line in lines), lines[:5]
    assert lines[-1].endswith(f"kill({killed}, SIGKILL) = 0"), lines[-3:]
    assert len(lines) == len(shell.calls_of(killed))
    # The first process's main thread gets no [pid N], as without --pid; its SIGCHLDs name each child.
    main = _event_lines(shell.trace, "--pid", shell.main)
    assert main and not any("[pid " in line for line in main), [line for line in main if "[pid " in line][:3]
    assert len([line for line in main if " SYSCALL " in line]) == len(shell.calls_of(shell.main))
    chld = [line for line in main if "SIGCHLD" in line]
    assert f"si_code=CLD_KILLED, si_pid={killed}" in "".join(chld) and f"si_pid={cat}" in "".join(chld), chld
    everything = _event_lines(shell.trace, "--kind", "SYSCALL,SIGNAL")
    assert len(everything) == len(main) + sum(len(_event_lines(shell.trace, "--pid", int(r["PID"])))
                                              for r in rows[1:])
    # Several at once: repeated or comma-separated; with --syscall and --json.
    both = _event_lines(shell.trace, "--pid", f"{killed},{cat}", "--syscall", "execve")
    assert [line.split("] ")[1].split("(")[0] for line in both] == ["execve", "execve"], both
    assert _event_lines(shell.trace, "--pid", killed, "--pid", cat, "--syscall", "execve") == both
    objects = [json.loads(line) for line in _event_lines(shell.trace, "--pid", cat, "--json")]
    assert objects and {o["payload"][0] for o in objects} == {cat}, objects[:2]


@pytest.mark.parametrize("args, fragment", [
    (["--pid", "99"], "has no process 99"),
    (["--pid", "abc"], "--pid abc: not a process id"),
    (["--pid", "1000", "--kind", "SWITCH"], "--pid shows only SYSCALL and SIGNAL"),
])
def test_events_pid_errors_are_one_line(shell, args, fragment):
    out = vmrr("events", shell.trace, *args)
    assert out.returncode == 2 and out.stdout == "", describe(out)
    assert out.stderr.startswith("vmrr: error: ") and fragment in out.stderr and len(out.stderr.splitlines()) == 1, \
        describe(out)


def test_info_counts_the_processes_and_lists_them_in_json(shell):
    info = vmrr("info", shell.trace)
    assert info.returncode == 0, describe(info)
    line = next(line for line in info.stdout.splitlines() if line.startswith("processes"))
    assert line.split(None, 1)[1] == "7: 1 killed by a signal, 1 exited non-zero; vmrr ps lists them", line
    data = json.loads(vmrr("info", shell.trace, "--json").stdout)["linux"]
    ps = [json.loads(line) for line in vmrr("ps", shell.trace, "--json").stdout.splitlines()]
    assert data["processes"] == ps and data["processes_rebuilt"] is False and data["processes_omitted"] == 0


def _cut(src: Path, dst: Path, icount: int) -> Path:
    """``src`` as a recording killed right after icount: the chunks' records up to it, no
    END record and no footer (what the recorder leaves as TRACE.incomplete)."""
    d = tf.decode(src.read_bytes())
    chunks, firsts = [], []
    for records, first in zip(d.chunks, d.firsts):
        at, kept = first, []
        for record in records:
            at += record[0]
            if at > icount or record[1] == END_KIND:
                break
            kept.append(record)
        if kept:
            chunks.append(kept)
            firsts.append(first)
        if len(kept) < len(records):
            break
    d.chunks, d.firsts, d.footer, d.tail = chunks, firsts, None, b""
    dst.write_bytes(tf.encode(d))
    return dst


def test_a_killed_recording_has_its_tree_rebuilt_from_the_events(shell, tmp_path):
    full, _ = ps_rows(shell.trace)
    killed = next(r for r in full if r["EXIT"] == "-9")
    cut = _cut(shell.trace, tmp_path / "killed.vmrr.incomplete", int(killed["END-ICOUNT"]))
    rows, stderr = ps_rows(cut)
    assert "no END record" in stderr and "rebuilt from its events" in stderr, stderr
    # The processes that had started by then, where they started, who made them; what the
    # events tell of how they ended; '?' for the rest.
    assert [r["PID"] for r in rows] == [r["PID"] for r in full[:len(rows)]] and len(rows) == len(full) - 1, rows
    for row, known in zip(rows, full):
        assert (row["PPID"], row["START-ICOUNT"]) == (known["PPID"], known["START-ICOUNT"]), (row, known)
        if row["PID"] == full[0]["PID"]:
            assert (row["EXIT"], row["END-ICOUNT"], row["CMD"]) == ("?", "?", known["CMD"]), row
        else:
            assert (row["EXIT"], row["END-ICOUNT"]) == (known["EXIT"], known["END-ICOUNT"]), (row, known)
    cmds = [r["CMD"] for r in rows]
    assert "? (execve /usr/bin/cat)" in cmds and "? (execve /usr/bin/sh)" in cmds, cmds
    assert cmds.count(full[0]["CMD"]) == 4, cmds            # the first and its three forks (argv inherited)
    objects = [json.loads(line) for line in vmrr("ps", cut, "--json").stdout.splitlines()]
    assert all(o["rebuilt"] for o in objects) and objects[0]["state"] == "unknown", objects[0]
    assert next(o for o in objects if o["exe"] == "/usr/bin/cat")["argv"] is None
    info = vmrr("info", cut)
    assert "processes   6 (rebuilt from events): 1 killed by a signal, 1 exited non-zero, " \
           "1 whose end the events do not tell" in info.stdout, describe(info)
    lines = _event_lines(cut, "--pid", killed["PID"])
    assert lines[-1].endswith(f"kill({killed['PID']}, SIGKILL) = 0"), lines[-2:]


def test_a_cut_trace_needs_recover_and_then_shows_what_its_chunks_hold(shell, tmp_path):
    full, _ = ps_rows(shell.trace)
    data = shell.trace.read_bytes()
    d = tf.decode(data)
    no_footer = tmp_path / "nofooter.vmrr"
    no_footer.write_bytes(data[:d.footer["chunks"][-1][0] + d.footer["chunks"][-1][1]])
    refused = vmrr("ps", no_footer)
    assert refused.returncode == 2 and refused.stdout == "", describe(refused)
    assert refused.stderr.startswith("vmrr: error: ") and "--recover" in refused.stderr, describe(refused)
    rows, stderr = ps_rows(no_footer, "--recover")           # its END record survived in the last chunk
    assert rows == full and "rebuilt" not in stderr, (rows, stderr)
    # Cut inside the last chunk: the END record is gone with it.
    last_offset = d.footer["chunks"][-1][0]
    cut = tmp_path / "cut.vmrr"
    cut.write_bytes(data[:last_offset + 100])
    rows, stderr = ps_rows(cut, "--recover")
    assert "rebuilt from its events" in stderr, stderr
    assert rows and [r["PID"] for r in rows] == [r["PID"] for r in full[:len(rows)]], rows
    for row, known in zip(rows, full):
        for column in HEADER[1:5]:
            assert row[column] in (known[column], "?"), (column, row, known)


def test_a_trace_that_is_not_one_is_a_one_line_error(tmp_path):
    bogus = tmp_path / "bogus.vmrr"
    bogus.write_bytes(b"not a trace at all" * 10)
    for args in ([bogus], [bogus, "--recover"], [bogus, "--json"], [tmp_path / "missing.vmrr"]):
        out = vmrr("ps", *args)
        assert out.returncode == 2 and out.stdout == "" and "Traceback" not in out.stderr, describe(out)
        assert out.stderr.startswith("vmrr: error: ") and len(out.stderr.splitlines()) == 1, describe(out)


def _processes_change(what: str):
    def change(record):
        processes = record["linux"]["processes"]
        if what == "not a list":
            record["linux"]["processes"] = 5
        elif what == "a key missing":
            del processes[1]["tids"]
        elif what == "a pid out of range":
            processes[1]["pid"] = -4
        elif what == "a pid twice":
            processes[2]["pid"] = processes[1]["pid"]
        elif what == "an exit with no end":
            processes[1]["end_icount"] = None
        elif what == "an end before the start":
            processes[1]["end_icount"] = processes[1]["start_icount"] - 1
        elif what == "argv of numbers":
            processes[0]["argv"] = [1, 2]
        elif what == "tids of text":
            processes[0]["tids"] = ["1000"]
        elif what == "cut false":
            processes[0]["cut"] = False
        else:
            record["linux"]["processes_omitted"] = -1
    return change


@pytest.mark.parametrize("what", ["not a list", "a key missing", "a pid out of range", "a pid twice",
                                  "an exit with no end", "an end before the start", "argv of numbers",
                                  "tids of text", "cut false", "omitted negative"])
def test_a_malformed_process_list_is_one_line_for_ps_info_and_events_pid(shell, tmp_path, what):
    trace = rewritten(shell.trace, tmp_path / "bad.vmrr", end=_processes_change(what))
    for command in (["ps", str(trace)], ["ps", str(trace), "--json"], ["info", str(trace)],
                    ["info", str(trace), "--json"], ["events", str(trace), "--pid", "1000"]):
        one_error_line(tf.run_cli(command), 2, "linux summary")
    plain = tf.run_cli(["events", str(trace), "--kind", "SYSCALL"])    # the summary is not needed
    assert plain.code == 0 and plain.escaped is None, plain.stderr


def test_crash_reports_name_the_process(linux_prog, tmp_path):
    program = str(linux_prog("signals"))
    # The program vmrr started crashes: the report says which process, END and info too.
    record, replay, trace = record_replay_linux(tmp_path, [program, "null"], expect=3, name="main")
    main = ps_rows(trace)[0][0]
    assert main["EXIT"] == "-11" and main["CMD"] == f"{program} null", main
    assert f"\nin process {main['PID']} ({program})\n" in record.stderr, describe(record)
    assert f"\nin process {main['PID']} ({program})\n" in replay.stderr, describe(replay)
    end = json.loads(vmrr("info", trace, "--json").stdout)["end"]
    assert (end["pid"], end["program"]) == (int(main["PID"]), program), end
    assert f"in process {main['PID']} ({program})" in vmrr("info", trace).stdout
    # A child crashes: the notice (recording and replay) names its pid and program; ps agrees.
    record, replay, trace = record_replay_linux(tmp_path, ["/bin/sh", "-c", f"{program} null; echo rc=$?"],
                                                name="child")
    assert record.stdout.endswith("rc=139\n"), describe(record)
    rows, _ = ps_rows(trace)
    child = next(r for r in rows if r["CMD"] == f"{program} null")
    assert child["EXIT"] == "-11" and rows[0]["EXIT"] == "0", rows
    notice = f"vmrr: process {child['PID']} ({program}) crashed: SIGSEGV at rip="
    assert notice in record.stderr and notice in replay.stderr, describe(record) + describe(replay)


def test_a_crashed_programs_time_travel_index_is_reused(linux_prog, tmp_path):
    from replay.timetravel import TimeTravel

    trace = tmp_path / "crash.vmrr"
    record = record_linux(trace, [linux_prog("signals"), "null"])
    assert record.returncode == 3, describe(record)
    opened = []
    for _ in range(2):
        with TimeTravel(str(trace)) as tt:
            stop = tt.goto_crash()
            opened.append((tt.loaded_from_sidecar, tt.icount, str(stop)))
    assert opened[0][0] is False and opened[1][0] is True, opened
    assert opened[0][1:] == opened[1][1:], opened


def test_mutants_of_the_trace_never_crash_ps_or_events_pid(shell, tmp_path):
    import random

    data = shell.trace.read_bytes()
    decoded = tf.decode(data)
    rng = random.Random("ps-mutants")
    mutant = tmp_path / "mutant.vmrr"
    escaped = []
    for n in range(60):
        if n % 3:
            out, _what = tf.structure_mutant(decoded, rng)
        else:
            out = tf.byte_mutant(data, rng, fix=True)
        mutant.write_bytes(out)
        for command in (["ps", str(mutant), "--recover"], ["ps", str(mutant), "--json"],
                        ["events", str(mutant), "--recover", "--pid", str(shell.main)]):
            outcome = tf.run_cli(command)
            if outcome.escaped or outcome.hang or outcome.code not in (0, 2):
                escaped.append((command[0], outcome.code, outcome.escaped, outcome.stderr[-300:]))
    assert not escaped, escaped[:5]

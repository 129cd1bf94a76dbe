"""Signals and crashes of Linux programs (tests/data/linux/signals.c).

Handled signals (SIGSEGV with SA_SIGINFO and siglongjmp, SIGFPE from a divide by zero,
raise/kill of SIGUSR1, blocked-then-pending delivery) run to "PASS signals". Unhandled
ones end the recording with exit 3 and a crash report (signal, address, function from
the program's symbols); the replay reaches the same crash at the same icount and RIP.
"""

from __future__ import annotations

import json
import re

import pytest

from conftest import describe, vmrr
from linux_helpers import linux_prog, record_replay_linux  # noqa: F401  (fixture)

pytestmark = pytest.mark.timeout(60)

_CRASH = re.compile(r"program crashed: (\w+) at rip=(0x[0-9a-f]+) icount=(\d+): (.*)")
_RECURRED = re.compile(r"verified: crash recurred: (\w+) at rip (0x[0-9a-f]+), icount (\d+)")


def _crash(stderr: str) -> tuple[str, int, int, str]:
    match = _CRASH.search(stderr)
    assert match, f"no crash report in:\n{stderr}"
    return match.group(1), int(match.group(2), 16), int(match.group(3)), match.group(4)


@pytest.mark.parametrize("variant", ["pie", "static"])
def test_handled_signals(linux_prog, tmp_path, variant):
    record, _, _ = record_replay_linux(tmp_path, [linux_prog("signals", variant), "handled"])
    assert "PASS signals" in record.stdout, record.stdout


@pytest.mark.parametrize("variant", ["pie", "static"])
def test_null_store_crash_replays_to_the_same_instruction(linux_prog, tmp_path, variant):
    record, replay, trace = record_replay_linux(tmp_path, [linux_prog("signals", variant), "null"],
                                                expect=3)
    assert record.stdout == "scenario null\n"
    kind, rip, icount, detail = _crash(record.stderr)
    assert kind == "SIGSEGV" and "address 0x0" in detail, record.stderr
    assert re.search(r"=> 0x[0-9a-f]+ <store_null(\+0x[0-9a-f]+)?>:", record.stderr), record.stderr
    assert "the crash was captured in full" in record.stderr
    recurred = _RECURRED.search(replay.stderr)
    assert recurred, describe(replay)
    assert (recurred.group(1), int(recurred.group(2), 16), int(recurred.group(3))) == (kind, rip, icount)
    assert _crash(replay.stderr) == (kind, rip, icount, detail)

    info = vmrr("info", trace, "--json")
    assert info.returncode == 0, describe(info)
    end = json.loads(info.stdout)["end"]
    assert end["reason"] == "crash" and end["kind"] == "SIGSEGV" and end["signal"] == 11, end
    assert (end["icount"], end["rip"], end["fault_address"]) == (icount, rip, 0), end
    text = vmrr("info", trace)
    assert re.search(rf"crash: SIGSEGV .*rip {rip:#x}, icount {icount}", text.stdout), text.stdout


def test_abort_is_a_crash(linux_prog, tmp_path):
    record, replay, _ = record_replay_linux(tmp_path, [linux_prog("signals", "pie"), "abort"], expect=3)
    kind, rip, icount, _ = _crash(record.stderr)
    assert kind == "SIGABRT", record.stderr
    recurred = _RECURRED.search(replay.stderr)
    assert recurred and (int(recurred.group(2), 16), int(recurred.group(3))) == (rip, icount), replay.stderr


def test_run_reports_the_crash_with_exit_3(linux_prog):
    run = vmrr("run", "--", linux_prog("signals", "static"), "null")
    assert run.returncode == 3, describe(run)
    assert "Traceback" not in run.stderr
    assert _crash(run.stderr)[0] == "SIGSEGV"


def test_exit_status_and_termination_by_signal(linux_prog, tmp_path):
    """A non-zero exit and a fatal non-core signal end the run with exit 1, not as a crash."""
    exe = linux_prog("signals", "pie")
    record, _, trace = record_replay_linux(tmp_path, [exe, "exit7"], expect=1, name="exit7")
    assert "program exited with status 7" in record.stderr, record.stderr
    end = json.loads(vmrr("info", trace, "--json").stdout)["end"]
    assert end["exit_status"] == 7 and end["reason"] != "crash", end
    record, _, _ = record_replay_linux(tmp_path, [exe, "term"], expect=1, name="term")
    assert "terminated by signal 15" in record.stderr and "crashed" not in record.stderr, record.stderr
    record, _, _ = record_replay_linux(tmp_path, [exe, "sigpipe"], expect=1, name="sigpipe")
    assert "terminated by signal 13" in record.stderr and "survived" not in record.stdout, describe(record)

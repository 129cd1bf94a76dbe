"""The multi-threaded heisenbug (tests/data/linux/race.c, docs/heisenbug.md).

race.c is a pthreads work queue whose consumer reads the head node without the lock when
it sees exactly one job queued, while the producer links a node in before it stores the
node's job pointer. It crashes (SIGSEGV in consumer(), reading through a NULL job) only
when the producer is preempted in that gap of about 70 instructions on a queue that was
empty while the consumer was busy.

- With chaos (``vmrr record --chaos SEED``) a crash comes within a few seeds; the test
  tries a fixed list, so it is deterministic, and fails if none of them crashes. Replay
  ``--verify`` reaches the same crash at the same icount and RIP, twice.
- With the default scheduler the program completes: both threads block long before a
  200,000-instruction quantum runs out, so every switch is at a blocking futex wait or a
  thread exit, never inside the gap. Two recordings switch at the same icounts: without
  chaos and without host waits the schedule is a function of the program alone, so
  "rare" here means "never, for this program".
- gdb, as docs/heisenbug.md shows it: at the crash, ``watch -l queue.head`` and
  ``reverse-continue`` stop in the producer thread's reserve(), where it linked the node
  in; a watchpoint on the node's job pointer then sees no write before the crash.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from conftest import VmrrProcess, describe, replay_verify, vmrr
from linux_helpers import linux_prog, record_linux  # noqa: F401  (fixture)

pytestmark = pytest.mark.timeout(60)

CHAOS_SEEDS = range(1, 9)        # about half of all seeds crash race.c; 8 misses would be news
FUTEX, EXIT = 202, 60

_CRASH = re.compile(r"program crashed: (\w+) at rip=(0x[0-9a-f]+) icount=(\d+): (.*)")
_RECURRED = re.compile(r"verified: crash recurred: (\w+) at rip (0x[0-9a-f]+), icount (\d+)")
_SERVING = re.compile(r"vmrr: gdbserver listening on 127\.0\.0\.1:(\d+) ")


def _race(linux_prog):
    return linux_prog("race", "pie", "-pthread")


def _events(trace) -> list[dict]:
    listing = vmrr("events", trace, "--json")
    assert listing.returncode == 0, describe(listing)
    return [json.loads(line) for line in listing.stdout.splitlines()]


def _preemptions(events: list[dict]) -> list[dict]:
    """SWITCH events not at a system call that blocked or ended a thread: quanta run out."""
    blocking = {e["icount"] for e in events if e["kind"] == "SYSCALL"
                and e["payload"][1] in (FUTEX, EXIT) and e["payload"][3] is None}
    return [e for e in events if e["kind"] == "SWITCH" and e["icount"] not in blocking]


@pytest.fixture(scope="module")
def chaos_crash(linux_prog, tmp_path_factory):
    """The first of CHAOS_SEEDS whose recording crashes: (trace, record CompletedProcess)."""
    exe = _race(linux_prog)
    out = tmp_path_factory.mktemp("race")
    survived = []
    for seed in CHAOS_SEEDS:
        trace = out / f"race-{seed}.vmrr"
        record = record_linux(trace, [exe], "--chaos", str(seed))
        if record.returncode != 0:
            assert record.returncode == 3, describe(record)
            return trace, record
        assert "PASS race: 1000 jobs" in record.stdout, describe(record)
        survived.append(seed)
    pytest.fail(f"no crash with chaos seeds {survived}: the race (or chaos mode) changed")


def test_chaos_catches_the_race_and_replay_reaches_the_same_crash(chaos_crash):
    trace, record = chaos_crash
    match = _CRASH.search(record.stderr)
    assert match, describe(record)
    kind, rip, icount, detail = match.group(1), int(match.group(2), 16), int(match.group(3)), match.group(4)
    assert kind == "SIGSEGV" and "address 0x8 " in detail, record.stderr   # &((struct job *)NULL)->value
    assert re.search(r"=> 0x[0-9a-f]+ <consumer\+0x[0-9a-f]+>:", record.stderr), record.stderr
    assert "the crash was captured in full" in record.stderr
    assert _preemptions(_events(trace)), "a chaos crash without a single preemption"

    for _ in range(2):
        replay = replay_verify(trace)
        recurred = _RECURRED.search(replay.stderr)
        assert recurred, describe(replay)
        assert (recurred.group(1), int(recurred.group(2), 16), int(recurred.group(3))) == (kind, rip, icount)
        assert replay.stdout == record.stdout

    end = json.loads(vmrr("info", trace, "--json").stdout)["end"]
    assert end["reason"] == "crash" and end["kind"] == "SIGSEGV", end
    assert (end["icount"], end["rip"], end["fault_address"]) == (icount, rip, 8), end


def test_default_scheduler_switches_only_where_a_thread_blocks(linux_prog, tmp_path):
    exe = _race(linux_prog)
    schedules = []
    for name in ("first", "second"):
        trace = tmp_path / f"{name}.vmrr"
        record = record_linux(trace, [exe])
        assert record.returncode == 0, describe(record)
        assert re.fullmatch(r"PASS race: 1000 jobs, checksum \d+\n", record.stdout), describe(record)
        events = _events(trace)
        # Thread ids are the host's, new in each recording: compare them by order of first use.
        ids: dict[int, int] = {}
        switches = [(e["icount"], [ids.setdefault(e["payload"][0], len(ids)), e["payload"][1]])
                    for e in events if e["kind"] == "SWITCH"]
        assert len(switches) > 100, f"the threads hardly alternated: {len(switches)} switches"
        assert _preemptions(events) == [], "the default scheduler preempted a thread"
        schedules.append(switches)
    assert schedules[0] == schedules[1], "two recordings without chaos switched differently"


@pytest.mark.skipif(shutil.which("gdb") is None, reason="gdb is not installed")
def test_gdb_goes_back_from_the_crash_to_the_producers_write(chaos_crash):
    trace, _ = chaos_crash
    server = VmrrProcess(["gdbserver", trace, "--port", "0", "--at", "crash"])
    try:
        port = int(server.wait_for_stderr(_SERVING, timeout=40).group(1))
        commands = ["print *n", "print queue.count", "watch -l queue.head", "reverse-continue", "bt",
                    "delete 1", "watch -l n->job", "continue"]
        args = ["gdb", "-batch", "-nx", "-ex", "set confirm off", "-ex", "set pagination off",
                "-ex", "set debuginfod enabled off", "-ex", f"target remote 127.0.0.1:{port}"]
        for command in commands:
            args += ["-ex", command]
        out = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             timeout=45, stdin=subprocess.DEVNULL).stdout
    finally:
        server.terminate_quietly()
    assert "Traceback" not in server.stderr_text(), server.stderr_text()
    assert re.search(r"^\$1 = \{next = 0x0, job = 0x0\}$", out, re.M), out     # the half-made node
    assert re.search(r"^\$2 = 1$", out, re.M), out
    back = out.split("hit Hardware watchpoint 1: -location queue.head", 1)
    assert len(back) == 2, out
    assert re.search(r"^reserve \(\) at \S*race\.c:\d+$", back[1], re.M), out
    assert re.search(r"^#1 .* in producer \(", back[1], re.M), out
    threads = re.findall(r"\[Switching to Thread (\d+)\.(\d+)\]", out)
    assert len(threads) >= 1 and threads[0][1] != threads[0][0], out             # not main: the producer
    forward = back[1].split("Hardware watchpoint 2: -location n->job", 1)
    assert len(forward) == 2, out
    assert "received signal SIGSEGV" in forward[1] and "hit Hardware watchpoint 2" not in forward[1], out
    assert re.search(r" in consumer \(", forward[1]), out

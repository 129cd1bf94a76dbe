"""The flight recorder (docs/flight-recorder.md): windows of a run, saved as ordinary traces.

A window trace starts at a full checkpoint instead of at boot (header flag ``window``).
Every test here replays what it saved with ``vmrr replay --verify`` and checks what the
window holds against the recording it came from.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest

from conftest import VmrrProcess, describe, free_port, replay_verify, vmrr
from gdb_helpers import gdbserver, run_gdb  # noqa: F401  (fixture)
from linux_helpers import linux_prog  # noqa: F401  (fixture)
from trace_format import TraceReader
from trace_format.window import WindowSource, write_window

pytestmark = pytest.mark.timeout(120)


def test_a_recording_cut_at_a_checkpoint_replays_the_rest_without_the_files_it_read(tmp_path):
    data = hashlib.sha256(b"seed").digest() * 60000             # 1.9 MB, read from the start
    source = tmp_path / "input.bin"
    source.write_bytes(data)
    trace = tmp_path / "whole.vmrr"
    record = vmrr("record", "-o", trace, "--checkpoint-every", "3000000", "--no-stdin", "--",
                  "/usr/bin/sha256sum", source)
    assert record.returncode == 0, describe(record)
    assert hashlib.sha256(data).hexdigest() in record.stdout
    with TraceReader(str(trace)) as reader:
        assert len(reader.checkpoints) >= 4, reader.checkpoints
        middle = len(reader.checkpoints) // 2
        start = reader.checkpoints[middle].icount
        end = reader.end
        stats = write_window(str(tmp_path / "cut.vmrr"), [WindowSource(reader, middle)],
                             window={"trigger": "test"}, end=end)
    assert stats.start_icount == start > 0
    assert stats.blobs >= 1                          # the input, opened before the window
    source.unlink()                                  # replay needs no host file
    replay = replay_verify(tmp_path / "cut.vmrr")
    assert replay.stdout == record.stdout            # the hash printed after the window began
    assert f"replayed {end['icount'] - start} instructions (icount {start} to {end['icount']})" \
        in replay.stderr, describe(replay)
    with TraceReader(str(tmp_path / "cut.vmrr")) as cut:
        assert cut.first_icount == start and cut.window["trigger"] == "test"
        assert cut.checkpoints[0].icount == start
        assert cut.end["icount"] == end["icount"]


# --- the flight recorder: vmrr record --ring ------------------------------------------

_CRASH = re.compile(r"program crashed: (\w+) at rip=(0x[0-9a-f]+) icount=(\d+)")
_RECURRED = re.compile(r"verified: crash recurred: (\w+) at rip (0x[0-9a-f]+), icount (\d+)")


def _ringcrash(linux_prog):
    return linux_prog("ringcrash", "pie")


def _open_at_crash(trace: Path, crash_icount: int) -> None:
    """Time travel opens the window: its history starts at the window, the crash at its end."""
    from replay.timetravel import StopReason, TimeTravel
    with TimeTravel(str(trace), sidecar=False) as tt:
        with TraceReader(str(trace)) as reader:
            first = reader.first_icount
        assert tt.first_icount == first > 0
        stop = tt.goto_crash()
        assert stop.reason is StopReason.CRASH and tt.icount == crash_icount
        assert tt.step_back().icount == crash_icount - 1
        assert tt.goto_start().reason is StopReason.HISTORY_START and tt.icount == first
        assert tt.step_back().reason is StopReason.HISTORY_START


def test_a_crash_saves_the_window_that_ends_in_it(tmp_path, linux_prog, gdbserver):
    program = _ringcrash(linux_prog)
    data = tmp_path / "input.txt"
    data.write_text("".join(f"{i}\n" for i in range(20000)))
    trace = tmp_path / "crash.vmrr"
    record = vmrr("record", "--ring", "2s", "-o", trace, "--no-stdin", "--", program, "5", data)
    assert record.returncode == 3, describe(record)
    recorded = _CRASH.search(record.stderr)
    assert recorded, describe(record)
    assert not (tmp_path / "crash.vmrr.ring").exists(), "the ring outlived the recording"
    with TraceReader(str(trace)) as reader:
        window = reader.window
        assert reader.end["reason"] == "crash" and reader.end["icount"] == int(recorded.group(3))
    assert window["trigger"] == "crash" and window["dropped_segments"] >= 1, window
    assert window["start_icount"] > 0 and window["end_unix"] - window["start_unix"] >= 2.0
    data.unlink()                 # read before the window began, and again inside it
    replay = replay_verify(trace, timeout=90)
    assert _RECURRED.search(replay.stderr).groups() == recorded.groups(), describe(replay)
    assert "checksum" in replay.stdout and "DIFFERENT" not in replay.stdout
    assert replay.stdout in record.stdout and replay.stdout.endswith(record.stdout.splitlines(True)[-1])
    info = vmrr("info", trace)
    assert info.returncode == 0, describe(info)
    assert re.search(r"window\s+icount \d+ to \d+", info.stdout), describe(info)
    assert "saved on crash" in info.stdout and "dropped before it" in info.stdout, describe(info)
    _open_at_crash(trace, int(recorded.group(3)))
    events = vmrr("events", trace, "--kind", "SYSCALL", "--syscall", "openat")
    assert events.returncode == 0 and "input.txt" in events.stdout, describe(events)
    if shutil.which("gdb") is not None:
        port = gdbserver(trace, "--at", "crash")
        out = run_gdb(port, "bt", "reverse-stepi", "reverse-stepi", "info registers rip", "continue")
        assert re.search(r"#0 .*main", out), out                   # the program's symbols, from the trace
        assert "SIGSEGV" in out, out


def test_the_race_under_chaos_crashes_inside_the_window_at_the_same_icount(tmp_path, linux_prog):
    program = linux_prog("race", "pie", "-pthread")
    for seed in range(1, 9):
        trace = tmp_path / f"race-{seed}.vmrr"
        record = vmrr("record", "--ring", "1s", "--chaos", seed, "-o", trace, "--no-stdin", "--", program)
        if record.returncode == 3:
            break
        assert record.returncode == 0, describe(record)
        assert not trace.exists(), "a run that ended well saved a window"
    else:
        pytest.fail("no chaos seed in 1..8 crashed race.c under the flight recorder")
    recorded = _CRASH.search(record.stderr)
    replay = replay_verify(trace)
    assert _RECURRED.search(replay.stderr).groups() == recorded.groups(), describe(replay)
    with TraceReader(str(trace)) as reader:
        assert reader.first_icount <= int(recorded.group(3)) == reader.end["icount"]
        assert reader.header.flags["chaos_seed"] == seed


REDIS = Path("/usr/bin/redis-check-rdb")
needs_redis = pytest.mark.skipif(not REDIS.exists() or shutil.which("redis-benchmark") is None,
                                 reason="needs redis-tools (redis-check-rdb, redis-cli, redis-benchmark)")
_SAVED = r"flight recorder: saved {path} \(({trigger})\): icount (\d+) to (\d+)"


def _redis_under_ring(start_vmrr, tmp_path: Path, ring: str, port: int) -> tuple[VmrrProcess, Path]:
    server = tmp_path / "redis-server"
    server.symlink_to(REDIS)
    trace = tmp_path / "redis.vmrr"
    proc = start_vmrr(["record", "--ring", ring, "-o", trace, "--", server, "--port", port,
                       "--save", "", "--appendonly", "no"], listening=False)
    deadline = time.monotonic() + 40
    while _cli(port, "ping") != "PONG":
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr_text()
        time.sleep(0.3)
    return proc, trace


def _cli(port: int, *args: str) -> str:
    return subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True, text=True,
                          timeout=30).stdout.strip()


def _benchmark(port: int, seconds: float) -> float:
    """redis-benchmark SET/GET rounds until ``seconds`` have passed; returns how long it ran."""
    began = time.monotonic()
    while time.monotonic() - began < seconds:
        bench = subprocess.run(["redis-benchmark", "-p", str(port), "-q", "-t", "set,get", "-n", "2000",
                                "-c", "8", "-r", "500"], capture_output=True, text=True, timeout=120)
        assert bench.returncode == 0, bench.stderr
    return time.monotonic() - began


def _check_saved_window(trace: Path, trigger: str) -> dict:
    """The saved window: history dropped before it, replayed --verify, opened in time travel."""
    from replay.timetravel import StopReason, TimeTravel
    with TraceReader(str(trace)) as reader:
        window, end, first = reader.window, reader.end, reader.first_icount
    assert window["trigger"] == trigger and window["dropped_segments"] >= 1, window
    assert end["reason"] == "stopped" and end["why"] == f"saved: {trigger}"
    assert first == window["start_icount"] > 0
    replay = replay_verify(trace, timeout=120)
    assert f"(icount {first} to {end['icount']})" in replay.stderr, describe(replay)
    with TimeTravel(str(trace), sidecar=False) as tt:
        assert (tt.first_icount, tt.last_icount) == (first, end["icount"])
        assert tt.goto_end().icount == end["icount"]
        assert tt.step_back().icount == end["icount"] - 1
        assert tt.goto_start().reason is StopReason.HISTORY_START and tt.icount == first
    return window


@needs_redis
def test_redis_under_load_saves_its_window_on_sigusr1_and_vmrr_save(tmp_path, start_vmrr):
    port = free_port()
    proc, trace = _redis_under_ring(start_vmrr, tmp_path, "3s", port)
    assert _benchmark(port, 6.0) > 3.0                            # longer than the window
    assert _cli(port, "SET", "marker", "before-the-saves") == "OK"
    proc.send_signal(signal.SIGUSR1)
    first = proc.wait_for_stderr(re.compile(_SAVED.format(path=re.escape(str(tmp_path / "redis-1.vmrr")),
                                                          trigger="sigusr1")), timeout=60)
    save = vmrr("save", proc.pid, "-o", tmp_path / "now.vmrr")
    assert save.returncode == 0, describe(save)
    assert re.search(r"saved .*now\.vmrr: icount \d+ to \d+", save.stderr), describe(save)
    again = vmrr("save", proc.pid, "-o", tmp_path / "now.vmrr")
    assert again.returncode == 2 and "exists" in again.stderr, describe(again)   # never overwritten
    assert _cli(port, "GET", "marker") == "before-the-saves"        # the recording went on
    proc.send_signal(signal.SIGTERM)                                # redis shuts down its own way
    proc.wait(60)
    done = proc.finish()
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert not trace.exists() and not (tmp_path / "redis.vmrr.ring").exists()
    assert "nothing saved on exit (2 windows saved on request)" in done.stderr, done.stderr
    sigusr1 = _check_saved_window(tmp_path / "redis-1.vmrr", "sigusr1")
    assert int(first.group(2)) == sigusr1["start_icount"] and int(first.group(3)) == sigusr1["end_icount"]
    later = _check_saved_window(tmp_path / "now.vmrr", "vmrr save")
    assert later["end_icount"] > sigusr1["end_icount"]              # two independent windows


def _disk_usage(directory: Path) -> int:
    """Bytes the files under ``directory`` take on disk (blocks, as du counts them: a file
    hard-linked twice, as a save links the segments it reads, counts once)."""
    seen: dict[int, int] = {}
    for root, _dirs, files in os.walk(directory):
        for name in files:
            try:
                info = os.lstat(os.path.join(root, name))
            except FileNotFoundError:
                continue                              # dropped while we looked
            seen[info.st_ino] = info.st_blocks * 512
    return sum(seen.values())


def test_a_sigkilled_ring_is_saved_from_its_directory_and_replays(tmp_path, linux_prog, start_vmrr):
    program = _ringcrash(linux_prog)
    data = tmp_path / "input.txt"
    data.write_text("".join(f"{i}\n" for i in range(20000)))
    trace = tmp_path / "killed.vmrr"
    proc = start_vmrr(["record", "--ring", "2s", "-o", trace, "--no-stdin", "--", program, "60", data],
                      listening=False)
    deadline = time.monotonic() + 40
    while "round 9 " not in proc.stdout_text():                # 4.5 s: some segments dropped
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr_text()
        time.sleep(0.2)
    proc.kill()
    proc.wait()
    ring = tmp_path / "killed.vmrr.ring"
    assert stat.S_IMODE(ring.stat().st_mode) == 0o700
    assert not (ring / "segment-000001.vmrr").exists()        # the oldest were dropped
    data.unlink()
    save = vmrr("save", "--from-ring", ring, "-o", tmp_path / "saved.vmrr")
    assert save.returncode == 0, describe(save)
    with TraceReader(str(tmp_path / "saved.vmrr")) as reader:
        assert reader.first_icount > 0
        # Where the last segment's records end; or, killed while the next one's first
        # checkpoint was being written, where the segment before it ended (with its digest).
        assert reader.end["reason"] == "killed" or "recorder was killed" in reader.end["why"], reader.end
        assert reader.window["trigger"] == "from-ring"
    replay = vmrr("replay", tmp_path / "saved.vmrr", "--verify", timeout=90)
    assert replay.returncode == 0, describe(replay)
    digests = re.search(r"verified: (\d+) state digests", replay.stderr)
    assert digests and int(digests.group(1)) >= 2, describe(replay)
    assert replay.stdout.strip() and replay.stdout in proc.stdout_text()
    assert "DIFFERENT" not in replay.stdout
    bad = vmrr("save", "--from-ring", tmp_path, "-o", tmp_path / "nothing.vmrr")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "holds no segment" in bad.stderr, describe(bad)


def test_a_ring_bounded_by_size_stays_under_it(tmp_path, linux_prog):
    program = _ringcrash(linux_prog)
    data = tmp_path / "input.txt"
    data.write_text("x\n")
    trace = tmp_path / "noisy.vmrr"
    ring = tmp_path / "noisy.vmrr.ring"
    bound = 12 << 20
    usage: list[int] = []
    proc = VmrrProcess(["record", "--ring", "12M", "-o", trace, "--no-stdin", "--", program, "8", data,
                        "16384"])                                 # random input: ~1-2 MB/s of trace
    try:
        while proc.poll() is None:
            usage.append(_disk_usage(ring))
            time.sleep(0.05)
    finally:
        proc.terminate_quietly()
    done = proc.finish()
    assert done.returncode == 3, done.stderr
    dropped = re.search(r"(\d+) older ones \((\d+) bytes\) dropped", done.stderr)
    assert dropped and int(dropped.group(2)) > bound, done.stderr    # far more than the bound went by
    assert len(usage) > 50 and max(usage) <= bound, (max(usage), bound, done.stderr)
    with TraceReader(str(trace)) as reader:
        assert reader.window["dropped_segments"] >= 1 and reader.end["reason"] == "crash"
    replay_verify(trace, timeout=120)


def test_a_save_on_output_and_the_crash_are_two_independent_windows(tmp_path, linux_prog):
    program = _ringcrash(linux_prog)
    data = tmp_path / "input.txt"
    data.write_text("abc\n")
    trace = tmp_path / "out.vmrr"
    record = vmrr("record", "--ring", "1s", "--save-on-output", r"round 3 \w+", "-o", trace, "--no-stdin",
                  "--", program, "4", data)
    assert record.returncode == 3, describe(record)
    saved = tmp_path / "out-1.vmrr"
    assert re.search(r"flight recorder: saved \S+out-1\.vmrr \(output matched 'round 3 checksum'\)",
                     record.stderr), describe(record)
    with TraceReader(str(saved)) as early, TraceReader(str(trace)) as crash:
        assert early.end["icount"] < crash.end["icount"] and crash.end["reason"] == "crash"
        assert early.window["trigger"] == "output matched 'round 3 checksum'"
    replay = replay_verify(saved)
    assert "round 3 checksum" in replay.stdout and "round 4" not in replay.stdout, describe(replay)
    replay_verify(trace)


@pytest.mark.parametrize("args, message", [
    (["record", "--ring", "5x", "-o", "{tmp}/t.vmrr", "--", "/bin/true"], "--ring 5x: unknown unit"),
    (["record", "--ring", "0.5s", "-o", "{tmp}/t.vmrr", "--", "/bin/true"], "between 1 second and a year"),
    (["record", "--ring", "1M", "-o", "{tmp}/t.vmrr", "--", "/bin/true"], "at least 4M"),
    (["record", "--save-on-output", "x", "-o", "{tmp}/t.vmrr", "--", "/bin/true"], "for a flight recorder (--ring)"),
    (["record", "--ring", "10s", "--save-on-output", "(", "-o", "{tmp}/t.vmrr", "--", "/bin/true"],
     "not a regular expression"),
    (["record", "--ring", "10s", "-o", "{tmp}/exists.vmrr", "--", "/bin/true"], "a trace already exists"),
    (["record", "--ring", "10s", "-o", "{tmp}/ringed.vmrr", "--", "/bin/true"], "ringed.vmrr.ring: exists"),
    (["save", "-o", "{tmp}/s.vmrr"], "give the PID"),
    (["save", "2147483000", "-o", "{tmp}/s.vmrr"], "no flight recorder"),
    (["save", "--from-ring", "{tmp}/exists.vmrr", "-o", "{tmp}/s.vmrr"], "not a directory"),
])
def test_bad_flight_recorder_input_is_one_line_and_exit_2(tmp_path, args, message):
    (tmp_path / "exists.vmrr").write_bytes(b"x")
    (tmp_path / "ringed.vmrr.ring").mkdir()
    done = vmrr(*[a.format(tmp=tmp_path) for a in args])
    assert done.returncode == 2, describe(done)
    assert done.stderr.count("\n") == 1 and message in done.stderr, describe(done)
    assert not (tmp_path / "t.vmrr.ring").exists()


def test_a_window_that_does_not_begin_with_its_checkpoint_is_refused(tmp_path):
    from trace_format import MachineConfig, TraceHeader, TraceWriter
    from trace_format.layout import PAGE_SIZE
    config = MachineConfig(mem_size=4 << 20, cpu_model="qemu64", boot_args="", devices={},
                           image_name="x", image=b"\x7fELF")
    for name, window, checkpoint_at in (("bad-flag", {"start_icount": "soon"}, 100),
                                        ("elsewhere", {"start_icount": 100}, 200)):
        path = tmp_path / f"{name}.vmrr"
        with TraceWriter(path, TraceHeader.new(config, flags={"window": window})) as writer:
            writer.write_checkpoint(checkpoint_at, {"rip": 0}, {}, {1: bytes(PAGE_SIZE)}, full=True)
            writer.close({"reason": "stopped", "why": "test"})
        info = vmrr("info", path)
        assert info.returncode == 2 and info.stderr.count("\n") == 1, describe(info)
        assert ("flags.window" in info.stderr if name == "bad-flag"
                else "must begin with a full checkpoint at its start icount 100" in info.stderr), describe(info)


def test_a_shell_and_the_programs_it_runs_replay_from_a_window(tmp_path):
    """Processes under the ring: a window starts in a shell between two fork+execs (its
    descriptors reused in another order than they were made), and the program it runs is
    deleted before the replay (its content was read long before the window began)."""
    program = tmp_path / "myecho"
    shutil.copy("/bin/echo", program)
    trace = tmp_path / "sh.vmrr"
    script = f"i=0; while [ $i -lt 60 ]; do {program} $i > /dev/null; i=$((i+1)); done; exit 7"
    record = vmrr("record", "--ring", "1s", "-o", trace, "--no-stdin", "--", "/bin/sh", "-c", script,
                  timeout=120)
    assert record.returncode == 1, describe(record)
    program.unlink()
    with TraceReader(str(trace)) as reader:
        assert reader.first_icount > 0 and reader.window["trigger"] == "exit status 7"
        assert reader.header.flags["linux_state"] == "canonical"
    replay = replay_verify(trace, timeout=90)
    assert "program exited with status 7" in replay.stderr, describe(replay)
    ps = vmrr("ps", trace)
    assert ps.returncode == 0 and str(program) in ps.stdout, describe(ps)

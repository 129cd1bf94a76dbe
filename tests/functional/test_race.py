"""The showcase heisenbug: kvstore-race crashes under load with --chaos; replay reaches
the same crash at the same icount and RIP, every time."""

from __future__ import annotations

import re
import shutil
import subprocess
import time

import pytest

from conftest import describe, free_port, vmrr

pytestmark = pytest.mark.skipif(shutil.which("redis-benchmark") is None, reason="needs redis-tools")

CRASH = re.compile(r"guest crashed: (.+?) at rip=(0x[0-9a-f]+) icount=(\d+)")
LOAD = ["-c", "20", "-n", "2000000", "-r", "1000", "-q", "SET", "key:__rand_int__", "v", "PX", "5"]


def test_kvstore_race_crashes_under_chaos_and_replays_to_the_same_crash(tmp_path, start_vmrr):
    trace = tmp_path / "race.vmrr"
    rec = start_vmrr(["record", "kvstore-race", "-o", trace, "--listen", f"127.0.0.1:{free_port()}",
                      "--no-stdin", "--chaos=7"])
    load = subprocess.Popen(["redis-benchmark", "-p", str(rec.port), *LOAD],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # Usually a few seconds; the time to the crash has a long tail (0.2 to 42 s seen),
        # longest when the suite's other worker loads the machine.
        rec.wait(55)
    except subprocess.TimeoutExpired:
        pytest.fail("kvstore-race did not crash within 55 s of load under --chaos")
    finally:
        load.kill()
        load.wait()
    done = rec.finish()
    assert done.returncode == 3, describe(done)
    recorded = CRASH.search(done.stderr)
    assert recorded, describe(done)
    assert "the crash was captured in full" in done.stderr

    for _ in range(2):
        replay = vmrr("replay", trace, "--verify", "--quiet", timeout=120)
        assert replay.returncode == 3, describe(replay)              # it crashes again, as recorded
        replayed = CRASH.search(replay.stderr)
        assert replayed and replayed.groups() == recorded.groups(), describe(replay)
        assert f"crash recurred: {recorded.group(1)} at rip {recorded.group(2)}" in replay.stderr


def test_kvstore_race_does_not_crash_without_load(tmp_path, start_vmrr):
    trace = tmp_path / "idle.vmrr"
    rec = start_vmrr(["record", "kvstore-race", "-o", trace, "--listen", f"127.0.0.1:{free_port()}",
                      "--no-stdin", "--chaos=7"])
    subprocess.run(["redis-cli", "-p", str(rec.port), "SET", "k", "v", "PX", "200"], check=True,
                   capture_output=True, timeout=10)
    time.sleep(3)                             # the reaper runs in the timer interrupt meanwhile
    done = rec.stop()
    assert done.returncode == 0, describe(done)
    assert "guest crashed" not in done.stderr
    replay = vmrr("replay", trace, "--verify", "--quiet", timeout=60)
    assert replay.returncode == 0, describe(replay)

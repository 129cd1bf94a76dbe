"""An idle guest idles the host: HLT with interrupts on waits for the next deadline or
host I/O instead of spinning (bench/bench_kvstore.py measures idle trace growth)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest

from conftest import describe, free_port, replay_verify

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS          # utime + stime


@pytest.mark.skipif(shutil.which("redis-cli") is None, reason="needs redis-tools")
def test_an_idle_server_sleeps_instead_of_spinning(tmp_path, start_vmrr):
    trace = tmp_path / "idle.vmrr"
    rec = start_vmrr(["record", "kvstore", "-o", trace, "--listen", f"127.0.0.1:{free_port()}", "--no-stdin"])
    # A key with an expiry keeps the 100 Hz expiry timer running: the worst idle case.
    subprocess.run(["redis-cli", "-p", str(rec.port), "SET", "session", "x", "EX", "600"], check=True,
                   capture_output=True, timeout=10)
    time.sleep(0.5)
    cpu_before, wall_before = cpu_seconds(rec.pid), time.monotonic()
    time.sleep(3)
    cpu_used = cpu_seconds(rec.pid) - cpu_before
    wall = time.monotonic() - wall_before
    done = rec.stop()
    assert done.returncode == 0, describe(done)
    # A busy-waiting VMM would use a whole core (~3 s of CPU); sleeping costs a few percent.
    assert cpu_used < 0.35 * wall, f"{cpu_used:.2f} s of CPU in {wall:.2f} s idle"
    replay_verify(trace)

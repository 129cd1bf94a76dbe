"""Property: whatever the host's timing and the clients' workload, replay is identical.

Hypothesis draws a chaos seed (timer jitter, delayed socket data, varied slice lengths),
a workload of real redis-cli commands and the pauses between them; the kvstore
appliance is recorded in-process while a client thread runs the workload over real
TCP, then replayed with verification of every digest, the final state and the output.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recorder import RecordSession
from replay import Replay
from vmm.loader import load_image
from vmm.machine import Outcome

pytestmark = pytest.mark.skipif(shutil.which("redis-cli") is None, reason="needs redis-tools")

KEYS = st.sampled_from(["a", "b", "c", "counter", "list"])
COMMANDS = st.one_of(
    st.tuples(st.just("SET"), KEYS, st.text("xyz0123", min_size=1, max_size=8)),
    st.tuples(st.just("SET"), KEYS, st.just("v"), st.just("PX"), st.integers(1, 40).map(str)),
    st.tuples(st.just("GET"), KEYS),
    st.tuples(st.just("INCR"), st.just("counter")),
    st.tuples(st.just("LPUSH"), st.just("list"), st.text("abc", min_size=1, max_size=4)),
    st.tuples(st.just("LRANGE"), st.just("list"), st.just("0"), st.just("-1")),
    st.tuples(st.just("DEL"), KEYS),
    st.tuples(st.just("TTL"), KEYS),
    st.tuples(st.just("PING")),
)


def run_workload(port: int, steps: list[tuple[tuple[str, ...], float]], replies: list[str]) -> None:
    for command, pause in steps:
        out = subprocess.run(["redis-cli", "-p", str(port), *command], capture_output=True,
                             text=True, timeout=20)
        replies.append(out.stdout.strip())
        time.sleep(pause)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1),
       steps=st.lists(st.tuples(COMMANDS, st.sampled_from([0.0, 0.0, 0.005, 0.03])), min_size=1, max_size=12))
def test_any_timing_and_workload_replays_identically(tmp_path_factory, seed, steps):
    trace = str(tmp_path_factory.mktemp("prop") / "kv.vmrr")
    session = RecordSession(load_image("kvstore"), trace, mem_size=64 << 20,
                            listen=("127.0.0.1", 0), chaos_seed=seed, digest_every=2_000_000)
    port = session.boundary.listen_address[1]
    replies: list[str] = []
    errors: list[BaseException] = []

    def client() -> None:
        try:
            time.sleep(0.2)
            run_workload(port, steps, replies)
        except BaseException as exc:            # reported by the test thread below
            errors.append(exc)
        finally:
            session.machine.request_shutdown("workload done")

    worker = threading.Thread(target=client, daemon=True)
    worker.start()
    summary = session.run(duration=60)
    worker.join(30)
    assert not errors, errors
    assert summary.result.outcome is Outcome.STOPPED
    assert len(replies) == len(steps)
    assert all(reply == "PONG" for (command, _), reply in zip(steps, replies) if command == ("PING",))

    with Replay(trace, verify=True) as replay:
        report = replay.run()
    assert report.result.icount == summary.instructions
    assert "final registers, devices and RAM match" in report.checks
    assert "console and socket output match" in report.checks
    assert report.digests_checked >= summary.instructions // 2_000_000 - 1

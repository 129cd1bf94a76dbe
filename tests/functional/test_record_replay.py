"""Record kvstore under real clients, replay it exactly; killed recorders; damaged traces.

Every recording here is replayed with --verify (state digests, final registers, devices
and RAM, and output digests must match).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import describe, free_port, replay_verify, vmrr

pytestmark = pytest.mark.skipif(shutil.which("redis-benchmark") is None, reason="needs redis-tools")


def redis_cli(port: int, *args: str) -> str:
    out = subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True, text=True,
                         timeout=20, check=True)
    return out.stdout.strip()


def redis_benchmark(port: int, *args: str, timeout: float = 120) -> str:
    out = subprocess.run(["redis-benchmark", "-p", str(port), "-q", *args], capture_output=True,
                         text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr
    return out.stdout


def info(trace: Path) -> dict:
    proc = vmrr("info", trace, "--json")
    assert proc.returncode == 0, describe(proc)
    return json.loads(proc.stdout)


def test_kvstore_under_redis_benchmark_replays_exactly_and_repeatably(tmp_path, start_vmrr):
    trace = tmp_path / "kv.vmrr"
    rec = start_vmrr(["record", "kvstore", "-o", trace, "--listen", f"127.0.0.1:{free_port()}", "--no-stdin"])
    port = rec.port
    assert redis_cli(port, "SET", "greeting", "hello", "EX", "100") == "OK"
    # Keys that expire while the server runs: the expiry reaper runs off the timer.
    redis_benchmark(port, "-c", "8", "-n", "2000", "-r", "500", "SET", "vol:__rand_int__", "v", "PX", "30")
    out = redis_benchmark(port, "-c", "8", "-n", "2000", "-t", "set,get,incr,lpush,rpush,lpop,rpop,lrange_100")
    assert out.count("requests per second") >= 8, out
    time.sleep(0.3)                                     # let the reaper run over expired keys
    assert redis_cli(port, "GET", "greeting") == "hello"
    assert int(redis_cli(port, "DBSIZE")) >= 1
    done = rec.stop()
    assert done.returncode == 0, describe(done)
    assert "events:" in done.stderr and "trace " in done.stderr

    meta = info(trace)
    assert meta["complete"] and meta["end"]["reason"] == "stopped"
    assert meta["events"]["SOCK_DATA"] >= 1000 and meta["events"]["TIMER"] >= 5
    assert meta["events"]["INTERRUPT"] > 0 and meta["events"]["CLOCK"] > 0

    first = replay_verify(trace, timeout=120)
    second = replay_verify(trace, timeout=120)
    assert first.stdout == second.stdout
    lines = [line for line in first.stderr.splitlines() if line.startswith("vmrr: verified")]
    assert lines == [line for line in second.stderr.splitlines() if line.startswith("vmrr: verified")]
    assert f"replayed {meta['instructions']} instructions" in first.stderr


@pytest.mark.parametrize("seed", [11, 23, 37])
def test_a_killed_recorder_leaves_a_prefix_that_replays(tmp_path, start_vmrr, seed):
    """SIGKILL at a random moment under load: the .incomplete file opens and replays verified."""
    trace = tmp_path / "killed.vmrr"
    rec = start_vmrr(["record", "kvstore", "-o", trace, "--listen", f"127.0.0.1:{free_port()}", "--no-stdin"])
    load = subprocess.Popen(["redis-benchmark", "-p", str(rec.port), "-q", "-c", "8", "-n", "200000",
                             "-t", "set,get,incr"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(random.Random(seed).uniform(1.2, 3.5))   # at least one flush (every second)
        rec.send_signal(signal.SIGKILL)
        rec.wait(10)
    finally:
        load.kill()
        load.wait()
    partial = Path(str(trace) + ".incomplete")
    assert partial.is_file() and not trace.exists()
    assert oct(partial.stat().st_mode & 0o777) == "0o600"
    meta = info(partial)
    assert not meta["complete"] and meta["end"] is None and meta["instructions"] > 0
    replay = vmrr("replay", partial, "--verify", "--quiet", timeout=120)
    assert replay.returncode == 0, describe(replay)
    assert "the trace is incomplete" in replay.stderr


@pytest.fixture(scope="module")
def small_trace(tmp_path_factory) -> Path:
    trace = tmp_path_factory.mktemp("small") / "t.vmrr"
    proc = vmrr("record", "t_interrupts", "-o", trace, "--no-stdin")
    assert proc.returncode == 0, describe(proc)
    replay_verify(trace)
    return trace


def _assert_clean_error(proc: subprocess.CompletedProcess, *words: str) -> None:
    assert proc.returncode == 2, describe(proc)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vmrr: error:"), describe(proc)
    assert "Traceback" not in proc.stderr
    for word in words:
        assert word in lines[0], describe(proc)


def test_flipped_bytes_anywhere_give_a_clean_error(tmp_path, small_trace):
    data = small_trace.read_bytes()
    rng = random.Random(5)
    offsets = sorted(rng.sample(range(len(data)), 40)) + [0, 9, len(data) - 1, len(data) - 20]
    for offset in offsets:
        bad = bytearray(data)
        bad[offset] ^= 1 << rng.randrange(8)
        path = tmp_path / "flipped.vmrr"
        path.write_bytes(bytes(bad))
        proc = vmrr("replay", path, "--verify", "--quiet")
        _assert_clean_error(proc, str(path))


def test_cut_traces_give_a_clean_error_and_recover_on_request(tmp_path, small_trace):
    data = small_trace.read_bytes()
    for cut in (0, 5, 27, 200, len(data) // 2, len(data) - 33, len(data) - 1):
        path = tmp_path / "cut.vmrr"
        path.write_bytes(data[:cut])
        _assert_clean_error(vmrr("replay", path, "--quiet"), str(path))
    path.write_bytes(data[:len(data) - 1])
    recovered = vmrr("replay", path, "--recover", "--verify", "--quiet")
    assert recovered.returncode == 0, describe(recovered)


def test_wrong_version_and_garbage_give_a_clean_error(tmp_path, small_trace):
    data = bytearray(small_trace.read_bytes())
    data[8:12] = (99).to_bytes(4, "little")            # format version field
    newer = tmp_path / "newer.vmrr"
    newer.write_bytes(bytes(data))
    _assert_clean_error(vmrr("info", newer), "version 99")
    garbage = tmp_path / "garbage.vmrr"
    garbage.write_bytes(os.urandom(5000))
    for command in ("replay", "info", "events"):
        _assert_clean_error(vmrr(command, garbage), str(garbage))
    missing = tmp_path / "missing.vmrr"
    _assert_clean_error(vmrr("replay", missing), str(missing))


def test_events_and_info_describe_the_run(small_trace):
    meta = info(small_trace)
    assert meta["end"]["reason"] == "poweroff" and meta["end"]["exit_status"] == 0
    assert meta["machine"]["image"] == "t_interrupts" and meta["machine"]["cpu_model"] == "qemu64"
    proc = vmrr("events", small_trace, "--kind", "TIMER", "--json")
    assert proc.returncode == 0, describe(proc)
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(events) == meta["events"]["TIMER"] >= 20
    assert all(e["kind"] == "TIMER" for e in events)
    assert [e["icount"] for e in events] == sorted(e["icount"] for e in events)


def test_every_checkpoint_restores_exactly(tmp_path, start_vmrr):
    """A replay can start from any checkpoint of the trace and reach the same final state."""
    from replay import Replay

    trace = tmp_path / "ckpt.vmrr"
    rec = start_vmrr(["record", "kvstore", "-o", trace, "--listen", f"127.0.0.1:{free_port()}",
                      "--no-stdin", "--checkpoint-every", "2000000"])
    redis_cli(rec.port, "SET", "soon", "x", "PX", "200")
    redis_benchmark(rec.port, "-c", "5", "-n", "1500", "-t", "set,get,lpush")
    time.sleep(0.5)                                     # idle too: checkpoints while halted
    done = rec.stop()
    assert done.returncode == 0, describe(done)
    meta = info(trace)
    assert meta["checkpoints"] >= 3, meta
    for index in range(meta["checkpoints"]):
        with Replay(str(trace), verify=True) as replay:
            start = replay.start_from_checkpoint(index)
            report = replay.run()
        assert report.result.icount == meta["instructions"], (index, start)
        assert "final registers, devices and RAM match" in report.checks, (index, start)
    replay_verify(trace)

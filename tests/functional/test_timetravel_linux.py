"""Time travel on Linux programs: any path to a position lands where a straight replay does,
and the sidecar index is reused — or rejected when it does not fit the trace."""

from __future__ import annotations

import hashlib
import os

import lz4.frame
import msgpack
import pytest

from linux_helpers import linux_prog, record_linux, record_replay_linux, replay_verify  # noqa: F401
from replay import sidecar
from replay import timetravel
from replay.timetravel import TimeTravel
from timetravel_helpers import check_positions, straight_digests

PROGRAMS = {
    # an epoll interest list changed in place (MOD, ONESHOT re-arming) between snapshots
    "epollmod": (("epollmod", "static"), []),
    # handlers, sigreturn, a crash with a core-dumping signal
    "signals": (("signals", "pie"), ["handled"]),
    # threads that switch where they block, futexes
    "race": (("race", "pie", "-pthread"), []),
    # clock reads, alarms delivered at exact icounts, pause
    "clocks": (("clocks", "static"), []),
    # host sockets between threads, answered natively while recording, blocking waits
    "sockio": (("sockio", "pie", "-pthread"), []),
}


@pytest.fixture(scope="module")
def traces(linux_prog, tmp_path_factory):
    made = {}

    def get(name: str):
        if name not in made:
            build, args = PROGRAMS[name]
            tmp = tmp_path_factory.mktemp(f"tt-{name}")
            record, _replay, trace = record_replay_linux(tmp, [linux_prog(*build), *args])
            assert f"PASS {name}" in record.stdout or name == "race", record.stdout
            made[name] = str(trace)
        return made[name]
    return get


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_random_positions_match_a_straight_replay(traces, monkeypatch, name):
    # Snapshots every few hundred thousand instructions: many restores, in the middle of
    # everything the program does.
    monkeypatch.setattr(timetravel, "SPARSE", 300_000)
    monkeypatch.setattr(timetravel, "DENSE", 50_000)
    problems = check_positions(traces(name), count=10, seed=len(name), sidecar=False)
    assert problems == []


def test_the_sidecar_of_a_linux_trace_is_reused(traces):
    trace = traces("epollmod")
    idx = sidecar.sidecar_path(trace)
    if os.path.exists(idx):
        os.unlink(idx)
    first = TimeTravel(trace)
    try:
        assert not first.loaded_from_sidecar
        first.sidecar_written()
        assert os.path.exists(idx)
    finally:
        first.close()
    second = TimeTravel(trace)
    try:
        assert second.loaded_from_sidecar
        assert check_positions(trace, count=4, seed=3, engine=second) == []
    finally:
        second.close()


def _resign(trace: str, change) -> None:
    """Alter the sidecar's content and sign it again with this user's key (what only its
    owner, or a stolen key, can do)."""
    path = sidecar.sidecar_path(trace)
    data = open(path, "rb").read()
    content = msgpack.unpackb(lz4.frame.decompress(data[sidecar.HEAD_LEN:]), raw=False,
                              strict_map_key=False)
    change(content)
    body = lz4.frame.compress(msgpack.packb(content, use_bin_type=True))
    mac = hashlib.blake2b(body, key=sidecar.sidecar_key(), digest_size=sidecar.MAC_LEN).digest()
    with open(path, "wb") as f:
        f.write(sidecar.MAGIC + mac + body)


def _end_page_flipped(content: dict) -> None:
    last = content["snapshots"][-1]
    pages = last["delta"] if last["keyframe"] is None else None
    if pages:
        off = sorted(pages)[len(pages) // 2]
        pages[off] = bytes([pages[off][0] ^ 1]) + pages[off][1:]
    else:
        key = bytearray(last["keyframe"])
        key[len(key) // 2] ^= 1
        last["keyframe"] = bytes(key)


@pytest.mark.parametrize("change", ["end-ram", "end-registers"])
def test_a_sidecar_that_does_not_fit_the_trace_is_rebuilt(traces, tmp_path, change):
    import shutil
    trace = str(tmp_path / "t.vmrr")
    shutil.copy(traces("epollmod"), trace)
    TimeTravel(trace).close()
    if change == "end-ram":
        _resign(trace, _end_page_flipped)
    else:
        def regs(content):
            cpu = bytearray(content["snapshots"][-1]["cpu"])
            cpu[64] ^= 0x10                          # somewhere in the general registers
            content["snapshots"][-1]["cpu"] = bytes(cpu)
        _resign(trace, regs)
    engine = TimeTravel(trace)
    try:
        assert not engine.loaded_from_sidecar
        middle = engine.last_icount // 2
        engine.seek(middle)
        assert engine.machine.state_digest() == straight_digests(trace, [middle])[middle]
    finally:
        engine.close()
    assert TimeTravel(trace).loaded_from_sidecar        # rebuilt, and good again


def _changed(part: str):
    def change(content: dict) -> None:
        if part == "console":
            rows = content["console"]
            rows[-1][1] = rows[-1][1].replace(b"PASS", b"FAIL")
        else:                                         # a snapshot in the middle: its RIP
            snap = content["snapshots"][len(content["snapshots"]) // 2]
            cpu = bytearray(snap["cpu"])
            cpu[_RIP_IN_CONTEXT + 5] ^= 0x40
            snap["cpu"] = bytes(cpu)
    return change


_RIP_IN_CONTEXT = 40 + 16 * 8       # uc_context's header, then CPUX86State: regs[16], eip


@pytest.mark.parametrize("part", ["console", "middle-snapshot"])
def test_a_resigned_sidecar_that_lies_is_caught_and_the_truth_shown(traces, tmp_path, part):
    import shutil
    trace = str(tmp_path / "t.vmrr")
    shutil.copy(traces("epollmod"), trace)
    TimeTravel(trace).close()
    _resign(trace, _changed(part))
    engine = TimeTravel(trace)
    try:
        if part == "console":
            assert not engine.loaded_from_sidecar             # outputs checked against END
            assert b"PASS epollmod" in engine.console_output(engine.last_icount)
        else:
            assert engine.loaded_from_sidecar
            middle = [s.icount for s in engine._snaps][len(engine._snaps) // 2]
            target = middle + 100_000                         # before the next snapshot
            engine.seek(target)                               # runs from the forged snapshot
            assert engine.sidecar_rejected
            assert engine.machine.state_digest() == straight_digests(trace, [target])[target]
    finally:
        engine.close()


@pytest.fixture(scope="module")
def checkpointed(linux_prog, tmp_path_factory):
    """Threads and host sockets, recorded with on-disk checkpoints every 1M instructions."""
    trace = tmp_path_factory.mktemp("tt-split") / "sockio.vmrr"
    record = record_linux(trace, [linux_prog("sockio", "pie", "-pthread")], "--checkpoint-every", "1000000")
    assert record.returncode == 0 and "PASS sockio" in record.stdout, record.stderr
    assert replay_verify(trace).stdout == record.stdout
    return str(trace)


def test_a_first_pass_split_at_a_checkpoint_lands_where_a_straight_replay_does(checkpointed, monkeypatch):
    monkeypatch.setattr(timetravel, "PARALLEL_MIN", 0)
    monkeypatch.setattr(timetravel.os, "sched_getaffinity", lambda pid: {0, 1})   # even on one CPU
    split = TimeTravel(checkpointed, sidecar=False)
    try:
        assert split.first_pass_split is not None, "no checkpoint inside the trace to split at"
        monkeypatch.setattr(timetravel, "PARALLEL_MIN", 1 << 62)
        with TimeTravel(checkpointed, sidecar=False) as whole:
            assert whole.first_pass_split is None
            assert split.last_icount == whole.last_icount
            assert split.console_output(split.last_icount) == whole.console_output(whole.last_icount)
            assert [s.icount for s in split._snaps if s.icount < split.first_pass_split] == \
                [s.icount for s in whole._snaps if s.icount < split.first_pass_split]
        assert check_positions(checkpointed, count=8, seed=11, engine=split) == []
    finally:
        split.close()


def test_a_second_pass_that_fails_leaves_the_first_pass_to_this_process(checkpointed, monkeypatch):
    parent = os.getpid()
    sends = TimeTravel._first_pass_content

    def fail_in_the_child(self):
        if os.getpid() != parent:
            raise RuntimeError("the forked pass dies")
        return sends(self)
    monkeypatch.setattr(TimeTravel, "_first_pass_content", fail_in_the_child)
    monkeypatch.setattr(timetravel, "PARALLEL_MIN", 0)
    monkeypatch.setattr(timetravel.os, "sched_getaffinity", lambda pid: {0, 1})
    with TimeTravel(checkpointed, sidecar=False) as engine:
        assert engine.first_pass_split is None
        assert check_positions(checkpointed, count=4, seed=12, engine=engine) == []


def test_a_fork_that_fails_leaves_one_pass(checkpointed, monkeypatch):
    def no_fork():
        raise OSError(12, "Cannot allocate memory")
    monkeypatch.setattr(timetravel, "PARALLEL_MIN", 0)
    monkeypatch.setattr(timetravel.os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr(timetravel.os, "fork", no_fork)
    with TimeTravel(checkpointed, sidecar=False) as engine:
        assert engine.first_pass_split is None
        assert check_positions(checkpointed, count=3, seed=13, engine=engine) == []

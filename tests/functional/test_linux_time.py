"""Time, randomness and identity for Linux programs (tests/data/linux/timeid.c, sleeper.c).

Clocks, gettimeofday, time, nanosleep, getrandom, /dev/urandom, uname, ids, sysinfo,
rlimits, sched_getaffinity (one CPU), /proc/self/exe and /proc/self/maps, /dev/null.
The program prints the host-dependent values: two recordings differ, and each replay
reproduces its own recording byte for byte. Sleeps are not waited for in replay.
"""

from __future__ import annotations

import re

import pytest

from linux_helpers import linux_prog, record_replay_linux, reported_seconds  # noqa: F401

pytestmark = pytest.mark.timeout(60)


def _line(stdout: str, key: str) -> str:
    match = re.search(rf"^{key} (.*)$", stdout, re.M)
    assert match, f"no {key!r} line in:\n{stdout}"
    return match.group(1)


@pytest.mark.parametrize("variant", ["pie", "static"])
def test_time_randomness_identity(linux_prog, tmp_path, variant):
    exe = linux_prog("timeid", variant)
    (tmp_path / "a").mkdir()
    first, _, _ = record_replay_linux(tmp_path / "a", [exe, exe])
    assert "PASS timeid" in first.stdout, first.stdout
    assert _line(first.stdout, "uname").startswith("Linux ")
    assert re.match(r"\d+ uid \d+", _line(first.stdout, "pid"))
    assert int(_line(first.stdout, "slept").split()[0]) >= 50
    (tmp_path / "b").mkdir()
    second, _, _ = record_replay_linux(tmp_path / "b", [exe, exe])
    assert "PASS timeid" in second.stdout, second.stdout
    # Host-dependent answers really come from the host: another recording sees others.
    assert _line(first.stdout, "getrandom") != _line(second.stdout, "getrandom")
    assert _line(first.stdout, "urandom") != _line(second.stdout, "urandom")
    assert _line(first.stdout, "clock 1") != _line(second.stdout, "clock 1")


def test_sleep_is_skipped_in_replay(linux_prog, tmp_path):
    """4 x 50 ms of nanosleep/clock_nanosleep: recording waits, replay does not."""
    record, replay, _ = record_replay_linux(tmp_path, [linux_prog("sleeper", "static")])
    assert "PASS sleeper" in record.stdout, record.stdout
    recorded = reported_seconds(record.stderr, "vmrr: program exited")
    replayed = reported_seconds(replay.stderr, "vmrr: replayed")
    assert recorded >= 0.2, record.stderr
    assert replayed < recorded, (recorded, replayed)

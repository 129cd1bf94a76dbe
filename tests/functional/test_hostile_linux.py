"""Hostile Linux-program traces: every value `info` prints and replay loads goes through
the same checks, and a bad one is a one-line error (exit 2), never an internal error."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "tools"))
import tracefuzz as tf  # noqa: E402
from test_hostile import one_error_line, rewritten  # noqa: E402

pytestmark = pytest.mark.timeout(120)
CHECKPOINT = 12


@pytest.fixture(scope="module")
def linux_trace(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("hostile-linux")
    path = tf.record_linux(str(directory / "linux.vmrr"), directory)
    if path is None:
        pytest.skip("gcc is not installed")
    return Path(path)


def _header_change(what: str):
    def change(h):
        devices = h["config"]["devices"]
        if what == "not a map":
            devices["linux"] = "not a map"
        elif what == "env=True":
            devices["linux"]["env"] = True
        elif what == "argv of numbers":
            devices["linux"]["argv"] = [1, 2]
        elif what == "short at_random":
            devices["linux"]["at_random"] = b"short"
        else:
            devices["linux"]["cwd"] = 7
    return change


@pytest.mark.parametrize("what, fragment", [
    ("not a map", "linux.argv"), ("env=True", "linux.env"), ("argv of numbers", "linux.argv/env"),
    ("short at_random", "linux.at_random"), ("cwd a number", "linux.cwd"),
])
def test_a_malformed_linux_header_is_one_line_for_info_and_replay(linux_trace, tmp_path, what, fragment):
    trace = rewritten(linux_trace, tmp_path / "bad.vmrr", header=_header_change(what))
    for command in (["info", str(trace)], ["info", str(trace), "--json"], ["replay", str(trace), "--verify"]):
        one_error_line(tf.run_cli(command), 2, fragment)


def _end_change(what: str):
    def change(record):
        summary = record["linux"]
        if what == "not a map":
            record["linux"] = 17
        elif what == "unimplemented a number":
            summary["unimplemented"] = 5
        elif what == "counts of text":
            summary["syscalls"] = {"read": "many"}
        elif what == "files malformed":
            summary["files"] = [["/etc/passwd", 3, 4]]
        else:
            summary["libraries"] = [b"bytes"]
    return change


@pytest.mark.parametrize("what", ["not a map", "unimplemented a number", "counts of text", "files malformed",
                                  "libraries of bytes"])
def test_a_malformed_linux_end_summary_is_one_line_for_info(linux_trace, tmp_path, what):
    trace = rewritten(linux_trace, tmp_path / "bad.vmrr", end=_end_change(what))
    for command in (["info", str(trace)], ["info", str(trace), "--json"]):
        one_error_line(tf.run_cli(command), 2, "linux")


@pytest.mark.parametrize("kind", [["blob"], {"k": 1}, 3, None])
def test_an_open_file_of_an_unhashable_kind_in_a_checkpoint_is_refused(linux_trace, tmp_path, kind):
    def change(linux):
        linux["files"][0][0] = kind                     # the first open file description's kind
    assert _refused_with_checkpoints(linux_trace, tmp_path, change)


def _refused_with_checkpoints(linux_trace: Path, tmp_path: Path, change) -> list[str]:
    """Replay --verify of the trace with ``change`` made to the Linux state of every
    checkpoint: a one-line error, no traceback; returns the error lines."""
    d = tf.decode(linux_trace.read_bytes())
    changed = 0
    for chunk in d.chunks:
        for record in chunk:
            if record[1] == CHECKPOINT:
                change(record[2]["devices"]["linux"])
                changed += 1
    assert changed, "the recording has no checkpoint"
    trace = tmp_path / "bad.vmrr"
    trace.write_bytes(tf.encode(d))
    outcome = tf.run_cli(["replay", str(trace), "--verify"])
    assert outcome.escaped is None and outcome.code in (1, 2), (outcome.code, outcome.stderr)
    errors = [line for line in outcome.stderr.splitlines() if line.startswith("vmrr: error: ")]
    assert errors, outcome.stderr
    return errors


@pytest.mark.parametrize("key, value", [
    ("shm", [2, [[1, "anon", None, [[0, 1 << 40]], [], False]]]),            # a page outside RAM
    ("shm", [2, [[1, "file", "8:1", [], [[0, 1, "not a content id"]], True]]]),
    ("ipc", [1, [[0, 0, 0o600, 0, 0, 0, 0, "shm:99", 4096, 1, 1, 0, 0, 0]], [], []]),   # no such object
    ("ipc", [1, [], [[0, 0, 0o600, 0, 0, 0, 0, [1, 2], [0], 0, 0]], []]),    # values and pids differ
    ("ipc", [1, [], [], [[1, 0, 0, "seven"]]]),
    ("in_flight", [[7, [10 ** 6]]]),                                          # no such open file
])
def test_malformed_shared_memory_or_ipc_in_a_checkpoint_is_refused(linux_trace, tmp_path, key, value):
    errors = _refused_with_checkpoints(linux_trace, tmp_path, lambda linux: linux.__setitem__(key, value))
    assert any(word in errors[0] for word in ("shared memory", "System V", "semaphore", "in flight", key)), errors


def test_a_guest_too_small_to_load_the_program_is_one_line_naming_the_size(linux_trace, tmp_path):
    if not Path("/usr/bin/python3").exists():
        pytest.skip("needs Debian's python3")
    outcome = tf.run_cli(["run", "--mem", "2M", "--", "/usr/bin/python3", "-c", "1"])
    line = one_error_line(outcome, 2, "guest RAM of 2 MiB is too small for /usr/bin/python3",
                          "loading it alone takes")
    assert "MiB" in line
    trace = rewritten(linux_trace, tmp_path / "small.vmrr", header=lambda h: h["config"].update(mem_size=128 << 10))
    for command in (["replay", str(trace)], ["replay", str(trace), "--verify"]):
        one_error_line(tf.run_cli(command), 2, "guest RAM of 128 KiB is too small")


def test_what_a_trace_holds_is_shown_before_it_is_shared(tmp_path):
    from conftest import vmrr
    trace = tmp_path / "env.vmrr"
    record = vmrr("record", "-o", trace, "--env", "API_TOKEN=s3cr3t-value", "--", "/bin/true")
    assert record.returncode == 0, record.stderr
    assert "the trace keeps this environment whole" in record.stderr and "--clear-env" in record.stderr
    info = vmrr("info", trace)
    assert info.returncode == 0, info.stderr
    line = next(line for line in info.stdout.splitlines() if line.startswith("environment"))
    assert "API_TOKEN" in line.split() and "s3cr3t-value" not in info.stdout
    assert "/lib/x86_64-linux-gnu/libc.so.6" in info.stdout                  # the files it read
    quiet = vmrr("record", "-o", tmp_path / "clear.vmrr", "--clear-env", "--env", "A=1", "--", "/bin/true")
    assert quiet.returncode == 0 and "keeps this environment" not in quiet.stderr, quiet.stderr
    info = vmrr("info", tmp_path / "clear.vmrr", "--json")
    assert '"environment_names": ["A"]' in info.stdout, info.stdout

"""Issue 11, class by class: values read from files are validated before use, limits are
enforced, and what a trace or sidecar restores is checked (see also test_fuzz.py)."""

from __future__ import annotations

import gc
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import lz4.frame
import msgpack
import pytest

from conftest import REPO, VmrrProcess, describe, guest, vmrr

sys.path.insert(0, str(REPO / "tools"))
import tracefuzz as tf  # noqa: E402

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def hello(tmp_path_factory) -> Path:
    from recorder import RecordSession
    from vmm.loader import load_image

    path = tmp_path_factory.mktemp("hostile") / "hello.vmrr"
    RecordSession(load_image(str(guest("t_hello"))), str(path), mem_size=4 << 20).run()
    return path


def rewritten(src: Path, dst: Path, header=None, end=None) -> Path:
    """A copy of src with header fields or the END record changed, checksums valid."""
    d = tf.decode(src.read_bytes())
    if header is not None:
        header(d.header)
    if end is not None:
        record = d.chunks[-1][-1]
        end(record[2])
        d.footer["end"] = record[2]
    dst.write_bytes(tf.encode(d))
    return dst


def one_error_line(outcome: tf.Outcome, code: int, *fragments: str) -> str:
    assert outcome.code == code and outcome.escaped is None, (outcome.code, outcome.stderr)
    errors = [line for line in outcome.stderr.splitlines() if line.startswith("vmrr: error: ")]
    assert len(errors) == 1, outcome.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


@pytest.mark.parametrize("mem_size, fragment", [
    (1 << 40, "more than --max-mem allows (268435456 bytes)"),
    (4 << 30, "4294967296 bytes of RAM (header field config.mem_size)"),
    (4096, "config.mem_size is 4096, below"),
])
def test_a_header_asking_for_too_much_memory_is_refused_with_the_number(hello, tmp_path, mem_size, fragment):
    trace = rewritten(hello, tmp_path / "big.vmrr", header=lambda h: h["config"].update(mem_size=mem_size))
    for command in (["replay", str(trace), "--verify"], ["replay", str(trace)]):
        one_error_line(tf.run_cli(command + ["--max-mem", "256M"]), 2, fragment)
    assert tf.run_cli(["info", str(trace), "--max-mem", "256M"]).code == 0       # info needs no RAM


def test_default_max_mem_is_a_share_of_this_host():
    from vmm.machine import default_max_mem

    physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert default_max_mem() <= min(4 << 30, physical // 2)


def test_a_large_declared_machine_costs_no_memory_it_does_not_use(hello, tmp_path):
    trace = rewritten(hello, tmp_path / "4g.vmrr", header=lambda h: h["config"].update(mem_size=1 << 30))
    before = tf.rss_mb()
    for verify in ([], ["--verify"]):
        outcome = tf.run_cli(["replay", str(trace), "--max-mem", "2G", "--quiet", *verify])
        assert outcome.code in (0, 1) and outcome.escaped is None, outcome.stderr
    assert outcome.code == 1        # with --verify: its checkpoint was recorded in 4 MiB of RAM
    assert tf.rss_mb() - before < 200


@pytest.mark.parametrize("field, value, fragment", [
    ("created_unix", 1e300, "created_unix is out of range"),
    ("created_unix", float("nan"), "created_unix is out of range"),
    ("tool_version", b"bytes", "tool_version is a bytes, not a str"),
    ("flags", {"chaos_seed": -5}, "flags.chaos_seed is out of range"),
    ("flags", {b"k": 1}, "header field flags is out of range"),
])
def test_header_fields_are_checked_and_named(hello, tmp_path, field, value, fragment):
    trace = rewritten(hello, tmp_path / "h.vmrr", header=lambda h: h.update({field: value}))
    for command in ("info", "events", "replay"):
        one_error_line(tf.run_cli([command, str(trace)]), 2, "bad header", fragment)


@pytest.mark.parametrize("change, fragment", [
    (lambda e: e.update(digest=[1, b"x", 2]), "field digest is malformed"),
    (lambda e: e.update(reason=["poweroff"]), "it has no reason"),
    (lambda e: e.update(icount=-1), "field icount is malformed"),
])
def test_a_malformed_end_is_corruption_not_a_traceback(hello, tmp_path, change, fragment):
    trace = rewritten(hello, tmp_path / "end.vmrr", end=change)
    for command in (["info", "--json"], ["events", "--json"], ["replay", "--verify"]):
        one_error_line(tf.run_cli([command[0], str(trace), *command[1:]]), 2, "corrupt", fragment)


def test_unknown_end_fields_of_any_shape_still_print_as_json(hello, tmp_path):
    import json

    trace = rewritten(hello, tmp_path / "note.vmrr", end=lambda e: e.update(note={b"k": [b"v", 1.5]}))
    for command in (["info", "--json"], ["events", "--json"]):
        outcome = tf.run_cli([command[0], str(trace), *command[1:]])
        assert outcome.code == 0, outcome.stderr
        for line in outcome.stdout.decode().splitlines():
            json.loads(line)


def test_every_event_kind_has_a_payload_check():
    from trace_format.events import PAYLOAD_CHECKS, EventKind

    assert set(PAYLOAD_CHECKS) == set(EventKind), "add the new kind's payload shape to PAYLOAD_CHECKS"


def test_every_device_checks_its_saved_state():
    from vmm.devices import BadDeviceState
    from vmm.loader import load_image
    from vmm.machine import Machine

    machine = Machine(load_image(str(guest("t_hello"))), mem_size=4 << 20)
    try:
        for dev in machine.devices:
            good = dev.state()
            dev.check_state(good)
            for bad in (None, [], {"x": 1}, {key: "?" for key in good} if good else {"extra": 0},
                        {key: [[1], [2]] for key in good} if good else {"extra": [[]]}):
                with pytest.raises(BadDeviceState):
                    dev.check_state(bad)
    finally:
        machine.close()


def test_a_verified_replay_needs_the_final_digest(hello, tmp_path):
    trace = rewritten(hello, tmp_path / "nodigest.vmrr", end=lambda e: e.pop("digest"))
    one_error_line(tf.run_cli(["replay", str(trace), "--verify"]), 1, "no final state digest")
    assert tf.run_cli(["replay", str(trace)]).code == 0


def test_events_json_of_every_kind_is_json(hello):
    import json

    outcome = tf.run_cli(["events", str(hello), "--json"])
    assert outcome.code == 0
    kinds = {json.loads(line)["kind"] for line in outcome.stdout.decode().splitlines()}
    assert "END" in kinds


@pytest.mark.parametrize("make", ["fifo", "directory", "device"])
def test_a_trace_that_is_not_a_regular_file_is_refused_at_once(tmp_path, make):
    path = tmp_path / "thing"
    if make == "fifo":
        os.mkfifo(path)
    elif make == "directory":
        path.mkdir()
    else:
        path = Path("/dev/zero")
    start = time.monotonic()
    for command in ("info", "replay", "events", "gdbserver"):
        proc = vmrr(command, path, "--port", "0", timeout=20) if command == "gdbserver" else \
            vmrr(command, path, timeout=20)
        assert proc.returncode == 2 and "not a regular file" in proc.stderr, describe(proc)
    assert time.monotonic() - start < 20


def test_record_refuses_a_directory_as_output(tmp_path):
    proc = vmrr("record", guest("t_hello"), "-o", tmp_path, "--no-stdin")
    assert proc.returncode == 2 and "is a directory" in proc.stderr, describe(proc)


@pytest.mark.parametrize("args, fragment", [
    (["gdbserver", "T", "--port", "99999"], "--port"),
    (["gdbserver", "T", "--port", "-1"], "--port"),
    (["record", "IMG", "-o", "O", "--duration", "nan"], "--duration"),
    (["record", "IMG", "-o", "O", "--duration", "inf"], "--duration"),
    (["record", "IMG", "-o", "O", "--duration", "0"], "--duration"),
    (["record", "IMG", "-o", "O", "--checkpoint-every", "0"], "--checkpoint-every"),
    (["record", "IMG", "-o", "O", "--digest-every", "0"], "--digest-every"),
    (["record", "IMG", "-o", "O", "--chaos", str(1 << 64)], "--chaos"),
    (["replay", "T", "--until", str(1 << 64)], "--until"),
    (["replay", "T", "--max-mem", "lots"], "--max-mem"),
    (["demo", "--requests", "0"], "--requests"),
    (["run", "IMG", "--max-instructions", "1e9"], "--max-instructions"),
])
def test_every_numeric_option_is_range_checked(hello, tmp_path, args, fragment):
    args = [str(hello) if a == "T" else str(guest("t_hello")) if a == "IMG" else
            str(tmp_path / "o.vmrr") if a == "O" else a for a in args]
    outcome = tf.run_cli(args)
    assert outcome.code == 2 and fragment in outcome.stderr, outcome.stderr
    assert not (tmp_path / "o.vmrr").exists()


def signed_sidecar(trace: Path, change) -> None:
    """Rewrite TRACE.idx with ``change(content)`` applied and a valid MAC (our own key)."""
    from replay import sidecar

    path = Path(sidecar.sidecar_path(str(trace)))
    data = path.read_bytes()
    content = msgpack.unpackb(lz4.frame.decompress(data[sidecar.HEAD_LEN:]), raw=False, strict_map_key=False)
    change(content)
    body = lz4.frame.compress(msgpack.packb(content, use_bin_type=True))
    path.write_bytes(sidecar.MAGIC + sidecar._mac(sidecar.sidecar_key(), body) + body)


@pytest.fixture
def tt_trace(tmp_path, hello, monkeypatch):
    from replay.timetravel import TimeTravel

    monkeypatch.setenv("VMRR_CACHE_DIR", str(tmp_path / "cache"))
    trace = tmp_path / "tt.vmrr"
    trace.write_bytes(hello.read_bytes())
    with TimeTravel(str(trace)) as tt:
        expected = (tt.last_icount, tt.console_output(tt.last_icount))
    assert expected[1]
    return trace, expected


@pytest.mark.parametrize("change", [
    lambda c: c.update(sockets=[["not", "rows"]]),                   # fails after console was read
    lambda c: c.update(last_icount=c["last_icount"] // 2),           # a false end of history
    lambda c: c["snapshots"][0].update(icount=5),
    lambda c: c["snapshots"][-1]["devices"]["sockets"].update(args=[1 << 40, 0, 0, 0]),
    lambda c: c["snapshots"][-1]["devices"].update(pic={"pending": "x", "mask": 0, "in_service": 0}),
    lambda c: c["snapshots"][-1].update(cpu=b"short"),
    lambda c: c["snapshots"][-1].update(result=["crash", 1, None, {"kind": 1}, ""]),
])
def test_a_rejected_sidecar_leaves_nothing_behind(tt_trace, change):
    from replay.timetravel import TimeTravel

    trace, (last_icount, console) = tt_trace
    signed_sidecar(trace, change)
    with TimeTravel(str(trace)) as tt:
        assert not tt.loaded_from_sidecar
        assert tt.last_icount == last_icount
        assert tt.console_output(tt.last_icount) == console          # once, not twice
        tt.goto_end()
        tt.step_back()
    with TimeTravel(str(trace)) as tt:                                # rebuilt and trusted again
        assert tt.loaded_from_sidecar and tt.last_icount == last_icount


def test_a_sidecar_altered_without_the_key_is_refused(tt_trace):
    from replay import sidecar
    from replay.timetravel import TimeTravel

    trace, (last_icount, _) = tt_trace
    path = Path(sidecar.sidecar_path(str(trace)))
    data = path.read_bytes()
    content = msgpack.unpackb(lz4.frame.decompress(data[sidecar.HEAD_LEN:]), raw=False, strict_map_key=False)
    content["console"] = [[0, b"forged console output\n"]]
    body = lz4.frame.compress(msgpack.packb(content, use_bin_type=True))
    path.write_bytes(data[:sidecar.HEAD_LEN] + body)                  # old MAC: any checksum would pass
    with TimeTravel(str(trace)) as tt:
        assert not tt.loaded_from_sidecar and b"forged" not in tt.console_output(last_icount)


def test_time_travel_objects_free_their_memory_when_closed(tt_trace):
    from replay.timetravel import TimeTravel

    trace, _ = tt_trace
    gc.collect()
    gc.disable()
    try:
        before = tf.rss_mb()
        for _ in range(6):
            tt = TimeTravel(str(trace), sidecar=False)
            tt.goto_end()
            tt.close()
            del tt
        grown = tf.rss_mb() - before
    finally:
        gc.enable()
    assert grown < 60, f"{grown:.0f} MiB left behind by 6 closed TimeTravel objects"


def test_record_digest_every(tmp_path):
    trace = tmp_path / "d.vmrr"
    proc = vmrr("record", guest("t_timer_modes"), "-o", trace, "--no-stdin", "--mem", "4M",
                "--digest-every", "200000")
    assert proc.returncode == 0, describe(proc)
    replay = vmrr("replay", trace, "--verify", "--quiet")
    digests = int(re.search(r"verified: (\d+) state digests", replay.stderr)[1])
    assert replay.returncode == 0 and digests >= 2, describe(replay)      # one at the end only, by default


def test_a_killed_recording_verifies_its_prefix_with_digests_along_the_way(tmp_path, start_vmrr):
    import socket

    trace = tmp_path / "killed.vmrr"
    proc = start_vmrr(["record", "kvstore", "-o", trace, "--no-stdin", "--listen", "127.0.0.1:0"])
    try:
        with socket.create_connection((proc.host, proc.port), timeout=10) as client:
            for i in range(50):
                client.sendall(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$%d\r\n%d\r\n" % (len(str(i)), i))
                client.recv(100)
                time.sleep(0.07)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    incomplete = Path(f"{trace}.incomplete")
    assert incomplete.exists() and not trace.exists()
    replay = vmrr("replay", incomplete, "--verify", "--quiet", timeout=60)
    assert replay.returncode == 0, describe(replay)
    digests = int(re.search(r"verified: (\d+) state digests", replay.stderr)[1])
    assert digests >= 1, describe(replay)


# -- files vmrr writes are created safely (no following of planted links) -----------------

def test_a_link_planted_at_the_sidecar_is_not_written_through(hello, tmp_path):
    import shutil as sh
    from replay.timetravel import TimeTravel
    trace = tmp_path / "t.vmrr"
    sh.copy(hello, trace)
    victim = tmp_path / "victim"
    victim.write_text("precious")
    os.symlink(victim, str(trace) + ".idx")
    engine = TimeTravel(str(trace))
    try:
        assert engine.sidecar_problem and "symbolic link" in engine.sidecar_problem
    finally:
        engine.close()
    assert victim.read_text() == "precious" and os.path.islink(str(trace) + ".idx")
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]      # no temporary left


def test_links_planted_where_record_writes_are_refused_with_one_line(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious")
    linked = tmp_path / "linked.vmrr"
    os.symlink(victim, linked)
    outcome = tf.run_cli(["record", "t_hello", "-o", str(linked), "--force", "--no-stdin"])
    one_error_line(outcome, 2, "symbolic link")
    os.symlink(victim, tmp_path / "fresh.vmrr.incomplete")
    outcome = tf.run_cli(["record", "t_hello", "-o", str(tmp_path / "fresh.vmrr"), "--no-stdin"])
    one_error_line(outcome, 2, "symbolic link")
    os.symlink(victim, tmp_path / "console.log")
    outcome = tf.run_cli(["run", "t_hello", "--no-stdin", "--console-log", str(tmp_path / "console.log")])
    one_error_line(outcome, 2, "--console-log", "symbolic link")
    assert victim.read_text() == "precious"

"""Unit tests of trace_format: the writer, the reader, the spec's second reader (tools/dump_trace.py)."""

from __future__ import annotations

import importlib.util
import os
import stat
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # lets the file run without the project on sys.path
    sys.path.insert(0, str(ROOT))

from trace_format import (FORMAT_VERSION, PAGE_SIZE, Event, EventKind, MachineConfig,  # noqa: E402
                          TraceCorrupt, TraceError, TraceExists, TraceHeader, TraceIncomplete,
                          TraceNotFound, TraceReader, TraceVersionError, TraceWriteError,
                          TraceWriter)
from trace_format import layout  # noqa: E402
from vmm.errors import VmrrError  # noqa: E402

MEM_SIZE = 2 << 20
IMAGE = b"\x7fELF\x02\x01\x01" + bytes(range(256)) * 4


def load_dump_tool():
    spec = importlib.util.spec_from_file_location("dump_trace", ROOT / "tools" / "dump_trace.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


dump_trace = load_dump_tool()


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make_header(**flags) -> TraceHeader:
    config = MachineConfig(mem_size=MEM_SIZE, cpu_model="qemu64", boot_args="mode=test",
                           devices={"sock": {"listen": "127.0.0.1:7000"}, "console": {}},
                           image_name="kvstore", image=IMAGE)
    return TraceHeader.new(config, tool_version="0.1-test", flags=flags, created_unix=1.7e9)


def page(fill: int) -> bytes:
    return bytes([fill]) * PAGE_SIZE


SAMPLE_EVENTS = [
    (0, EventKind.CLOCK, 1_700_000_000_000_000_000),
    (10, EventKind.RDTSC, 123456),
    (10, EventKind.ENTROPY, 0xDEADBEEF),
    (25, EventKind.TIMER, None),
    (30, EventKind.SOCK_ACCEPT, 0),
    (31, EventKind.SOCK_DATA, [0, b"GET /\r\n"]),
    (40, EventKind.SOCK_HUP, 0),
    (41, EventKind.CONSOLE_IN, b"q"),
    (50, EventKind.INTERRUPT, 32),
    (60, EventKind.DIGEST, [0x100000, b"\x01" * 16, b"\x02" * 16]),
    (61, EventKind.OUTPUT, ["console", b"\x03" * 32, 5]),
    (70, EventKind.EXCEPTION, [13, 0]),
]


def write_sample(path: Path, *, close: bool = True, events_per_kind: int = 1,
                 chunk_target: int = 100) -> tuple[TraceWriter, list[tuple]]:
    """A trace with checkpoints and every kind; small chunks so there are many."""
    writer = TraceWriter(path, make_header(chaos_seed=7), chunk_target=chunk_target,
                         clock=FakeClock())
    expected: list[tuple] = []
    writer.write_checkpoint(0, {"rip": 0x100000, "gdtr": b"\x00" * 10}, {"pic": {"mask": 0}},
                            {1: page(1), 2: page(2), 200: page(3)})
    base = 0
    for round_ in range(events_per_kind):
        for icount, kind, payload in SAMPLE_EVENTS:
            writer.append(base + icount, kind, payload)
            expected.append((base + icount, kind, payload))
        base += 100
        if round_ == 0:
            writer.write_checkpoint(base, {"rip": 0x100010}, {"pic": {"mask": 1}}, {2: page(9)})
    if close:
        end_icount = writer.last_icount
        writer.close({"reason": "poweroff", "exit_status": 0})
        expected.append((end_icount, EventKind.END, {"reason": "poweroff", "exit_status": 0}))
    else:
        writer.flush()
    return writer, expected


def as_tuples(events) -> list[tuple]:
    return [(event.icount, event.kind, event.payload) for event in events]


# --- round trip ---------------------------------------------------------------------------


def test_round_trip_header_events_index_and_end(tmp_path):
    path = tmp_path / "run.vmrr"
    writer, expected = write_sample(path, events_per_kind=20)
    assert path.exists() and not (tmp_path / "run.vmrr.incomplete").exists()
    assert writer.bytes_written == path.stat().st_size
    assert writer.events_written == len(expected)
    with TraceReader.open(path) as trace:
        assert trace.complete and trace.recovery_offset is None
        assert trace.header == make_header(chaos_seed=7)
        assert trace.header.config.image == IMAGE
        assert trace.header.config.image_sha256 == make_header().config.image_sha256
        assert trace.header.config.devices["sock"]["listen"] == "127.0.0.1:7000"
        assert trace.header.flags == {"chaos_seed": 7}
        assert as_tuples(trace.events()) == expected
        assert all(type(event) is Event for event in trace.events())
        assert trace.end == {"reason": "poweroff", "exit_status": 0}
        assert trace.last_icount == expected[-1][0]
        assert trace.event_counts[EventKind.RDTSC] == 20
        assert trace.event_counts[EventKind.END] == 1
        assert EventKind.CHECKPOINT not in trace.event_counts
        assert len(trace.chunks) == writer.chunks_written > 10
        assert sum(chunk.n_records for chunk in trace.chunks) == len(expected) + 2
        assert trace.file_size == path.stat().st_size
        assert [ref.icount for ref in trace.checkpoints] == [0, 100]


def test_append_accepts_ints_for_kinds_and_reads_back_enum_members(tmp_path):
    path = tmp_path / "run.vmrr"
    with TraceWriter(path, make_header()) as writer:
        writer.append(5, 2, 99)
        writer.close({"reason": "stopped", "why": "sigint"})
    with TraceReader(path) as trace:
        (first, end) = list(trace.events())
        assert first.kind is EventKind.RDTSC and first.payload == 99
        assert end == Event(5, EventKind.END, {"reason": "stopped", "why": "sigint"})


def test_append_many_writes_what_append_writes(tmp_path):
    records = [(10 + i, [1000, 96, [0x7ffc0, 0], 0, [["clock", 1_700_000_000_000_000_000 + i]]])
               for i in range(5000)]
    one, many = tmp_path / "one.vmrr", tmp_path / "many.vmrr"
    with TraceWriter(one, make_header(), chunk_target=4096) as writer:
        writer.append(3, EventKind.RDTSC, 1)
        for icount, payload in records:
            writer.append(icount, EventKind.SYSCALL, payload)
        writer.close({"reason": "stopped", "why": "sigint"})
    with TraceWriter(many, make_header(), chunk_target=4096) as writer:
        writer.append(3, EventKind.RDTSC, 1)
        writer.append_many(EventKind.SYSCALL, records)
        writer.close({"reason": "stopped", "why": "sigint"})
    with TraceReader(one) as a, TraceReader(many) as b:
        assert as_tuples(a.events()) == as_tuples(b.events())
        assert len(a.chunks) == len(b.chunks) > 2


def test_append_many_checks_each_record_and_keeps_those_before_a_bad_one(tmp_path):
    path = tmp_path / "run.vmrr"
    good = [1000, 228, [1, 0x7ffc0], 0, [["clock", 5]]]
    with TraceWriter(path, make_header()) as writer:
        with pytest.raises(ValueError, match="SYSCALL payload at icount 8"):
            writer.append_many(EventKind.SYSCALL, [(7, good), (8, [1000, 228, [-1], 0, []])])
        with pytest.raises(ValueError, match="icount 6"):
            writer.append_many(EventKind.SYSCALL, [(6, good)])          # before icount 7
        writer.close({"reason": "stopped", "why": "sigint"})
    with TraceReader(path) as trace:
        assert [(e.icount, e.kind) for e in trace.events()] == [(7, EventKind.SYSCALL), (7, EventKind.END)]


def test_empty_trace_round_trips(tmp_path):
    path = tmp_path / "run.vmrr"
    TraceWriter(path, make_header()).close({"reason": "poweroff", "exit_status": 3})
    with TraceReader(path) as trace:
        assert trace.complete and trace.checkpoints == []
        assert as_tuples(trace.events()) == [(0, EventKind.END, {"reason": "poweroff", "exit_status": 3})]


def test_open_of_complete_trace_reads_no_chunk(tmp_path, monkeypatch):
    path = tmp_path / "run.vmrr"
    write_sample(path, events_per_kind=10)

    def no_chunk_reads(*args, **kwargs):
        raise AssertionError("opening a complete trace must not read chunks")

    monkeypatch.setattr(TraceReader, "_read_frame", no_chunk_reads)
    with TraceReader(path) as trace:
        assert trace.complete and len(trace.chunks) > 10


# --- writer rules ---------------------------------------------------------------------------


def test_trace_files_are_created_0600_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        writer = TraceWriter(tmp_path / "run.vmrr", make_header())
        assert stat.S_IMODE(os.stat(tmp_path / "run.vmrr.incomplete").st_mode) == 0o600
        writer.close({"reason": "poweroff", "exit_status": 0})
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "run.vmrr").st_mode) == 0o600


def test_writer_refuses_to_overwrite_a_trace_unless_told(tmp_path):
    path = tmp_path / "run.vmrr"
    write_sample(path)
    before = path.read_bytes()
    with pytest.raises(TraceExists, match="already exists"):
        TraceWriter(path, make_header())
    assert path.read_bytes() == before
    writer = TraceWriter(path, make_header(), overwrite=True)
    assert path.read_bytes() == before  # the old trace survives until the new one is complete
    writer.close({"reason": "poweroff", "exit_status": 0})
    with TraceReader(path) as trace:
        assert trace.checkpoints == []


def test_writer_refuses_a_stale_incomplete_file_unless_told(tmp_path):
    path = tmp_path / "run.vmrr"
    (tmp_path / "run.vmrr.incomplete").write_bytes(b"someone else's")
    with pytest.raises(TraceExists, match="incomplete"):
        TraceWriter(path, make_header())
    TraceWriter(path, make_header(), overwrite=True).close({"reason": "poweroff", "exit_status": 0})
    assert TraceReader(path).complete


def test_trace_appearing_during_recording_is_not_clobbered(tmp_path):
    path = tmp_path / "run.vmrr"
    writer = TraceWriter(path, make_header())
    path.write_bytes(b"precious")
    with pytest.raises(TraceExists, match="kept as"):
        writer.close({"reason": "poweroff", "exit_status": 0})
    assert path.read_bytes() == b"precious"
    assert TraceReader(tmp_path / "run.vmrr.incomplete").complete


@pytest.mark.parametrize("icount, kind, payload, message", [
    (-1, EventKind.RDTSC, 1, "negative"),
    (1.5, EventKind.RDTSC, 1, "must be an int"),
    (True, EventKind.RDTSC, 1, "must be an int"),
    (5, 99, 1, "unknown event kind"),
    (5, EventKind.CHECKPOINT, {}, "write_checkpoint"),
    (5, EventKind.END, {}, "close"),
    (5, EventKind.RDTSC, object(), "cannot record RDTSC"),
    (5, EventKind.RDTSC, 1 << 70, "cannot record RDTSC"),
])
def test_append_rejects_bad_events(tmp_path, icount, kind, payload, message):
    writer = TraceWriter(tmp_path / "run.vmrr", make_header())
    with pytest.raises(ValueError, match=message):
        writer.append(icount, kind, payload)
    writer.close({"reason": "poweroff", "exit_status": 0})


def test_append_rejects_icount_going_backwards_and_appends_after_close(tmp_path):
    writer = TraceWriter(tmp_path / "run.vmrr", make_header())
    writer.append(10, EventKind.RDTSC, 1)
    with pytest.raises(ValueError, match="less than the last recorded icount 10"):
        writer.append(9, EventKind.RDTSC, 1)
    writer.write_checkpoint(20, {}, {}, {})
    with pytest.raises(ValueError, match="last recorded icount 20"):
        writer.append(19, EventKind.RDTSC, 1)
    writer.close({"reason": "poweroff", "exit_status": 0})
    writer.close({"reason": "ignored"})  # idempotent
    assert writer.last_icount == 20
    with pytest.raises(ValueError, match="closed"):
        writer.append(30, EventKind.RDTSC, 1)
    with TraceReader(tmp_path / "run.vmrr") as trace:
        assert trace.end == {"reason": "poweroff", "exit_status": 0}


def test_record_cap_is_enforced_by_the_writer(tmp_path):
    writer = TraceWriter(tmp_path / "run.vmrr", make_header())
    with pytest.raises(ValueError, match="caps a record"):
        writer.append(1, EventKind.CONSOLE_IN, bytes(layout.MAX_RECORD_LEN))
    with pytest.raises(ValueError, match="caps a record"):
        writer.write_checkpoint(1, {}, {"big": bytes(layout.MAX_RECORD_LEN)}, {})
    writer.close({"reason": "poweroff", "exit_status": 0})
    assert TraceReader(tmp_path / "run.vmrr").checkpoints == []


@pytest.mark.parametrize("pages, message", [
    ({MEM_SIZE // PAGE_SIZE: page(0)}, "outside guest RAM"),
    ({-1: page(0)}, "outside guest RAM"),
    ({3: b"short"}, "not 4096 bytes"),
])
def test_write_checkpoint_rejects_bad_pages(tmp_path, pages, message):
    writer = TraceWriter(tmp_path / "run.vmrr", make_header())
    with pytest.raises(ValueError, match=message):
        writer.write_checkpoint(0, {}, {}, pages)
    writer.close({"reason": "poweroff", "exit_status": 0})


def test_context_manager_closes_with_an_error_end_on_exception(tmp_path):
    path = tmp_path / "run.vmrr"
    with pytest.raises(RuntimeError):
        with TraceWriter(path, make_header()) as writer:
            writer.append(7, EventKind.TIMER, None)
            raise RuntimeError("boom")
    with TraceReader(path) as trace:
        assert trace.end == {"reason": "stopped", "why": "error"}
        assert as_tuples(trace.events())[0] == (7, EventKind.TIMER, None)


def test_write_failure_is_a_trace_error_and_keeps_the_incomplete_file(tmp_path, monkeypatch):
    path = tmp_path / "run.vmrr"
    writer = TraceWriter(path, make_header(), chunk_target=64)
    writer.append(1, EventKind.CONSOLE_IN, b"a" * 100)  # one chunk on disk

    def disk_full(fd, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", disk_full)
    with pytest.raises(TraceWriteError, match="No space left on device"):
        writer.append(2, EventKind.CONSOLE_IN, b"b" * 100)
    with pytest.raises(TraceWriteError):
        writer.append(3, EventKind.TIMER, None)
    with pytest.raises(TraceWriteError):
        writer.close({"reason": "poweroff", "exit_status": 0})
    monkeypatch.undo()
    with TraceReader(tmp_path / "run.vmrr.incomplete") as trace:
        assert not trace.complete
        assert as_tuples(trace.events()) == [(1, EventKind.CONSOLE_IN, b"a" * 100)]


def test_bad_header_fails_before_any_file_exists(tmp_path):
    config = MachineConfig(mem_size=1000, cpu_model="qemu64", boot_args="", devices={},
                           image_name="x", image=b"")
    with pytest.raises(ValueError, match="mem_size"):
        TraceWriter(tmp_path / "run.vmrr", TraceHeader.new(config))
    assert list(tmp_path.iterdir()) == []


# --- flushing ------------------------------------------------------------------------------


def test_events_reach_the_file_within_the_flush_interval_without_close(tmp_path):
    clock = FakeClock()
    path = tmp_path / "run.vmrr"
    writer = TraceWriter(path, make_header(), clock=clock, flush_interval=1.0)
    incomplete = tmp_path / "run.vmrr.incomplete"
    header_size = incomplete.stat().st_size
    writer.append(1, EventKind.RDTSC, 11)
    clock.now += 0.5
    writer.append(2, EventKind.RDTSC, 22)
    writer.flush_if_due()
    assert incomplete.stat().st_size == header_size  # younger than a second: still buffered
    clock.now += 0.5
    writer.append(3, EventKind.RDTSC, 33)  # the oldest is now 1 s old: append writes the chunk
    assert incomplete.stat().st_size > header_size
    with TraceReader(incomplete) as trace:
        assert not trace.complete and trace.end is None
        assert as_tuples(trace.events()) == [(1, 2, 11), (2, 2, 22), (3, 2, 33)]
    # An idle recorder: no appends, only flush_if_due from its loop, with its own clock reading.
    writer.append(4, EventKind.TIMER, None)
    writer.flush_if_due(now=clock.now + 0.99)
    assert len(TraceReader(incomplete).chunks) == 1
    writer.flush_if_due(now=clock.now + 1.0)
    assert len(TraceReader(incomplete).chunks) == 2
    writer.close({"reason": "poweroff", "exit_status": 0})


KILLED_RECORDER = """
import os, signal, sys
sys.path.insert(0, sys.argv[2])
from test_trace_format import FakeClock, make_header
from trace_format import EventKind, TraceWriter
clock = FakeClock()
writer = TraceWriter(sys.argv[1], make_header(), clock=clock, flush_interval=1.0)
for icount in range(100):
    writer.append(icount, EventKind.RDTSC, icount)
clock.now += 1.0
writer.append(100, EventKind.RDTSC, 100)  # a second old: this writes the chunk
for icount in range(101, 110):
    writer.append(icount, EventKind.RDTSC, icount)  # younger: lost with the process
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_killed_recorder_keeps_what_was_flushed(tmp_path):
    path = tmp_path / "run.vmrr"
    child = subprocess.run([sys.executable, "-c", KILLED_RECORDER, str(path), str(Path(__file__).parent)],
                           capture_output=True, text=True, cwd=ROOT)
    assert child.returncode == -9, child.stderr
    with pytest.raises(TraceIncomplete):
        TraceReader(path)
    with TraceReader(str(path) + ".incomplete") as trace:
        assert not trace.complete and trace.end is None
        assert [event.icount for event in trace.events()] == list(range(101))


def test_a_chunk_is_written_when_the_buffer_reaches_its_target_size(tmp_path):
    writer = TraceWriter(tmp_path / "run.vmrr", make_header(), clock=FakeClock(), chunk_target=1000)
    for icount in range(99):
        writer.append(icount, EventKind.CONSOLE_IN, b"0123456789")
    assert writer.chunks_written == 1  # 99 * 15 bytes passed 1000 once
    writer.close({"reason": "poweroff", "exit_status": 0})


# --- recovery --------------------------------------------------------------------------------


def test_every_prefix_of_a_killed_recording_opens_or_fails_cleanly(tmp_path):
    path = tmp_path / "run.vmrr"
    _, expected = write_sample(path, close=False, events_per_kind=3, chunk_target=100)
    data = (tmp_path / "run.vmrr.incomplete").read_bytes()
    with TraceReader(tmp_path / "run.vmrr.incomplete") as full:
        assert not full.complete and full.recovered_chunks == len(full.chunks) > 6
        assert full.recovery_offset == len(data)
        assert as_tuples(full.events()) == expected
        chunks = full.chunks
    body_offset = chunks[0].offset
    cut_path = tmp_path / "cut.vmrr.incomplete"
    for cut in range(len(data) + 1):
        cut_path.write_bytes(data[:cut])
        try:
            trace = TraceReader(cut_path)
        except TraceError:
            assert cut < body_offset, f"cut at {cut}: a complete header must open"
            continue
        with trace:
            intact = [chunk for chunk in chunks if chunk.offset + chunk.length <= cut]
            assert trace.recovered_chunks == len(intact), f"cut at {cut}"
            assert trace.recovery_offset == (intact[-1].offset + intact[-1].length if intact
                                             else body_offset)
            n_events = sum(chunk.n_records for chunk in intact
                           if EventKind.CHECKPOINT not in chunk.counts)
            assert as_tuples(trace.events()) == expected[:n_events]
            assert len(trace.checkpoints) == sum(EventKind.CHECKPOINT in c.counts for c in intact)


def test_recovery_keeps_every_chunk_before_the_cut(tmp_path):
    path = tmp_path / "run.vmrr"
    _, expected = write_sample(path, close=False, events_per_kind=3, chunk_target=100)
    data = (tmp_path / "run.vmrr.incomplete").read_bytes()
    with TraceReader(tmp_path / "run.vmrr.incomplete") as full:
        chunks = full.chunks
    for chunk in chunks[3:]:
        for cut in (chunk.offset, chunk.offset + 1, chunk.offset + 39, chunk.offset + chunk.length - 1):
            cut_path = tmp_path / f"cut{cut}.vmrr.incomplete"
            cut_path.write_bytes(data[:cut])
            with TraceReader(cut_path) as trace:
                assert not trace.complete
                assert trace.recovered_chunks == chunk.index
                assert trace.recovery_offset == chunk.offset
                assert as_tuples(trace.events()) == expected[:sum(
                    c.n_records for c in chunks[:chunk.index]
                    if EventKind.CHECKPOINT not in c.counts)]
                if cut != chunk.offset:
                    assert f"chunk {chunk.index}" in trace.recovery_reason or "truncated" in trace.recovery_reason


def test_unfinished_checkpoint_is_dropped_by_recovery(tmp_path):
    path = tmp_path / "run.vmrr"
    writer = TraceWriter(path, make_header())
    writer.append(1, EventKind.TIMER, None)
    writer.write_checkpoint(2, {"rip": 1}, {}, {n: page(n % 251 + 1) for n in range(200)})
    writer.write_checkpoint(3, {"rip": 2}, {}, {n: page(7) for n in range(100, 250)})
    writer.append(4, EventKind.TIMER, None)
    writer.write_checkpoint(5, {"rip": 3}, {}, {n: page(5) for n in range(0, 400)})
    writer.flush()
    data = (tmp_path / "run.vmrr.incomplete").read_bytes()
    with TraceReader(tmp_path / "run.vmrr.incomplete") as trace:
        assert len(trace.checkpoints) == 3
        *_, first_part, last_part = trace.chunks
        assert first_part.counts == last_part.counts == {EventKind.CHECKPOINT: 1}
    cut = tmp_path / "cut.vmrr.incomplete"
    cut.write_bytes(data[:last_part.offset + 10])
    with TraceReader(cut) as trace:
        assert [ref.icount for ref in trace.checkpoints] == [2, 3]
        assert trace.recovered_chunks == first_part.index  # the complete first part goes too
        assert trace.recovery_offset == first_part.offset
        assert "unfinished checkpoint" in trace.recovery_reason
        assert as_tuples(trace.events()) == [(1, EventKind.TIMER, None), (4, EventKind.TIMER, None)]
        assert trace.load_checkpoint(1).cpu == {"rip": 2}


def test_cut_inside_the_footer_recovers_every_chunk_and_the_end(tmp_path):
    path = tmp_path / "run.vmrr"
    _, expected = write_sample(path, events_per_kind=2)
    data = path.read_bytes()
    (footer_offset,) = struct.unpack_from("<Q", data, len(data) - 32)
    for cut in (footer_offset, footer_offset + 5, len(data) - 1):
        (tmp_path / "cut.vmrr.incomplete").write_bytes(data[:cut])
        with TraceReader(tmp_path / "cut.vmrr.incomplete") as trace:
            assert not trace.complete and trace.recovery_offset == footer_offset
            assert as_tuples(trace.events()) == expected
            assert trace.end == {"reason": "poweroff", "exit_status": 0}
            assert len(trace.checkpoints) == 2


def test_recover_option_ignores_the_footer(tmp_path):
    path = tmp_path / "run.vmrr"
    _, expected = write_sample(path)
    with TraceReader(path, recover=True) as trace:
        assert not trace.complete and "footer" in trace.recovery_reason
        assert as_tuples(trace.events()) == expected


# --- opening errors ------------------------------------------------------------------------


def test_missing_trace_and_incomplete_trace_are_told_apart(tmp_path):
    path = tmp_path / "run.vmrr"
    with pytest.raises(TraceNotFound, match="no such trace file") as missing:
        TraceReader(path)
    assert not isinstance(missing.value, TraceIncomplete)
    write_sample(path, close=False)
    with pytest.raises(TraceIncomplete, match=r"run\.vmrr\.incomplete exists.*open .*incomplete"):
        TraceReader(path)
    with TraceReader(str(path) + ".incomplete") as trace:
        assert not trace.complete and trace.recovered_chunks > 0


def test_a_directory_is_not_a_trace(tmp_path):
    with pytest.raises(TraceNotFound, match="not a regular file"):
        TraceReader(tmp_path)


def test_errors_are_vmrr_errors_with_exit_code_2():
    for error in (TraceError, TraceCorrupt, TraceNotFound, TraceVersionError, TraceExists):
        assert issubclass(error, VmrrError) and error.exit_code == 2


def test_bad_magic_empty_file_and_other_files(tmp_path):
    cases = {b"": "empty", b"\x89VMR": "truncated", b"hello world, not a trace": "bad magic",
             b"\x7fELF" + bytes(100): "bad magic"}
    for content, message in cases.items():
        path = tmp_path / "x.vmrr"
        path.write_bytes(content)
        with pytest.raises(TraceCorrupt, match=message) as caught:
            TraceReader(path)
        assert caught.value.offset == 0 and str(path) in str(caught.value)


@pytest.mark.parametrize("version, relation", [(FORMAT_VERSION + 1, "newer"), (0, "older")])
def test_other_format_versions_are_refused_with_advice(tmp_path, version, relation):
    path = tmp_path / "run.vmrr"
    write_sample(path)
    data = bytearray(path.read_bytes())
    data[8:12] = version.to_bytes(4, "little")
    path.write_bytes(bytes(data))
    with pytest.raises(TraceVersionError) as caught:
        TraceReader(path)
    message = str(caught.value)
    assert f"trace format version {version} is {relation} than this vmrr supports " \
           f"({FORMAT_VERSION}); " in message and "re-record with this version" in message


def patched(path: Path, offset: int, fmt: str, value: int) -> Path:
    data = bytearray(path.read_bytes())
    struct.pack_into(fmt, data, offset, value)
    out = path.with_name("patched.vmrr.incomplete")
    out.write_bytes(bytes(data))
    return out


@pytest.mark.parametrize("field_offset, fmt, message", [
    (12, "<I", "header length"),
    (16, "<Q", "image length"),
])
def test_oversized_header_lengths_are_refused(tmp_path, field_offset, fmt, message):
    path = tmp_path / "run.vmrr"
    write_sample(path)
    bad = patched(path, field_offset, fmt, (1 << (8 * struct.calcsize(fmt))) - 1)
    with pytest.raises(TraceCorrupt, match=message):
        TraceReader(bad)


@pytest.mark.parametrize("field, fmt", [(8, "<I"), (12, "<I")])
def test_oversized_chunk_lengths_are_refused(tmp_path, field, fmt):
    path = tmp_path / "run.vmrr"
    write_sample(path, close=False)
    incomplete = tmp_path / "run.vmrr.incomplete"
    with TraceReader(incomplete) as trace:
        second = trace.chunks[1]
    bad = patched(incomplete, second.offset + field, fmt, 0xFFFFFFFF)
    with TraceReader(bad) as trace:  # a footer-less trace recovers what precedes the damage
        assert trace.recovered_chunks == 1 and trace.recovery_offset == second.offset
        assert "beyond the caps" in trace.recovery_reason


def test_oversized_footer_and_damaged_footer_are_refused(tmp_path):
    path = tmp_path / "run.vmrr"
    write_sample(path)
    size = path.stat().st_size
    bad = patched(path, size - 24, "<I", 0xFFFFFFFF)  # footer_len (trailer checksum now wrong)
    with pytest.raises(TraceCorrupt, match="trailer checksum"):
        TraceReader(bad)
    data = bytearray(path.read_bytes())
    (footer_offset,) = struct.unpack_from("<Q", data, size - 32)
    data[footer_offset + 3] ^= 0x40
    path.write_bytes(bytes(data))
    with pytest.raises(TraceCorrupt, match=f"offset {footer_offset}: footer checksum mismatch.*--recover"):
        TraceReader(path)
    with TraceReader(path, recover=True) as trace:
        assert len(trace.checkpoints) == 2


def test_damaged_chunk_in_a_complete_trace_fails_when_read(tmp_path):
    path = tmp_path / "run.vmrr"
    write_sample(path, events_per_kind=3)
    with TraceReader(path) as trace:
        victim = trace.chunks[4]
    data = bytearray(path.read_bytes())
    data[victim.offset + 45] ^= 1
    path.write_bytes(bytes(data))
    with TraceReader(path) as trace:
        with pytest.raises(TraceCorrupt) as caught:
            list(trace.events())
    assert caught.value.chunk == 4 and caught.value.offset == victim.offset
    assert f"chunk 4 at offset {victim.offset}: chunk checksum mismatch" in str(caught.value)


# --- records with a valid checksum but bad content ------------------------------------------


def trace_with_raw_chunk(tmp_path: Path, raw: bytes, n_records: int = 1, first: int = 0,
                         last: int = 0) -> Path:
    """A header written by the writer, followed by one hand-made chunk holding ``raw``."""
    path = tmp_path / "run.vmrr"
    writer = TraceWriter(path, make_header())
    del writer  # killed before any chunk
    incomplete = tmp_path / "run.vmrr.incomplete"
    frame = layout.pack_chunk(0, raw, n_records, first, last)
    out = tmp_path / "hand.vmrr.incomplete"   # footer-less: opened by scanning
    out.write_bytes(incomplete.read_bytes() + frame)
    incomplete.unlink()
    return out


@pytest.mark.parametrize("records, message", [
    ([[1000, 2]], "record 0 is not a [icount, kind, payload] array"),
    ([[1, 2, None, None]], "record 0 is not a [icount, kind, payload] array"),
    (["text"], "record 0 is not a [icount, kind, payload] array"),
    ([[-1, 2, None]], "record 0 has icount delta -1"),
    ([[1.5, 2, None]], "record 0 has icount delta 1.5"),
    ([[5, 2, None]], "record 0 has icount delta 5"),                  # the first delta must be 0
    ([[0, 2, 0], [-1, 2, 0]], "record 1 has icount delta -1 (previous icount: 0)"),
    ([[0, 2, None]], "record 0 (RDTSC at icount 0): bad payload: not an integer"),
    ([[0, 6, [1, "text"]]], "record 0 (SOCK_DATA at icount 0): bad payload: not [channel, bytes]"),
    ([[0, 10, [1, b"short", b"x"]]], "bad payload: not [rip, 16-byte hash, 16-byte hash]"),
    ([[0, 14, {"reason": "crash"}]], "a crash end has no icount"),
    ([[0, 99, None]], "record 0 has unknown event kind 99"),
    ([[0, "RDTSC", None]], "record 0 has unknown event kind 'RDTSC'"),
    ([[0, True, None]], "record 0 has unknown event kind True"),
])
def test_malformed_records_are_corruption(tmp_path, records, message):
    raw = b"".join(msgpack.packb(record) for record in records)
    path = trace_with_raw_chunk(tmp_path, raw, len(records), 0, 0)
    with TraceReader(path) as trace:
        assert trace.recovered_chunks == 0
        assert message in trace.recovery_reason


def test_truncated_and_mismatched_records_are_corruption(tmp_path):
    good = msgpack.packb([0, 2, 70000])          # the chunk's first record: delta 0, icount 3
    cases = [
        (good[:-1], 1, 3, 3, "records are truncated"),
        (good + b"\xc1", 2, 3, 3, "malformed"),
        (good, 2, 3, 3, "records are truncated"),
        (good, 3, 3, 3, "3 records cannot fit in 8 bytes"),
        (good + good, 1, 3, 3, "more records than the 1"),
        (good, 1, 3, 4, "records span icounts 3..3, the chunk header says 3..4"),
    ]
    for raw, n, first, last, message in cases:
        path = trace_with_raw_chunk(tmp_path, raw, n, first, last)
        with TraceReader(path) as trace:
            assert trace.recovered_chunks == 0 and message in trace.recovery_reason, raw


def test_lz4_data_that_lies_about_its_size_is_corruption(tmp_path):
    path = trace_with_raw_chunk(tmp_path, msgpack.packb([0, 2, 7]), 1, 3, 3)
    data = bytearray(path.read_bytes())
    with TraceReader(path) as trace:
        offset = trace.chunks[0].offset
    struct.pack_into("<I", data, offset + 12, 1000)  # raw_len too large; fix the checksum
    comp_len = struct.unpack_from("<I", data, offset + 8)[0]
    crc = zlib.crc32(bytes(data[offset + 40:offset + 40 + comp_len]), zlib.crc32(bytes(data[offset:offset + 36])))
    struct.pack_into("<I", data, offset + 36, crc)
    path.write_bytes(bytes(data))
    with TraceReader(path) as trace:
        assert trace.recovered_chunks == 0 and "decompresses to" in trace.recovery_reason


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(min_size=1, max_size=200), n=st.integers(1, 5))
def test_arbitrary_record_bytes_never_escape_as_other_exceptions(tmp_path, raw, n):
    path = trace_with_raw_chunk(tmp_path, raw, n, 0, 2**64 - 1)
    try:
        with TraceReader(path) as trace:
            list(trace.events())
    except TraceError:
        pass


# --- byte flips -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sample_bytes(tmp_path_factory) -> tuple[bytes, bytes, list[tuple], list[tuple]]:
    directory = tmp_path_factory.mktemp("flip")
    _, expected = write_sample(directory / "run.vmrr", events_per_kind=3)
    _, partial = write_sample(directory / "killed.vmrr", close=False, events_per_kind=3)
    return ((directory / "run.vmrr").read_bytes(),
            (directory / "killed.vmrr.incomplete").read_bytes(), expected, partial)


def read_everything(path: Path) -> tuple[TraceReader, list[tuple]]:
    with TraceReader(path) as trace:
        events = as_tuples(trace.events())
        for ref in trace.checkpoints:
            trace.load_checkpoint(ref.index)
        return trace, events


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(where=st.floats(0, 1, exclude_max=True), xor=st.integers(1, 255), killed=st.booleans())
def test_flipped_byte_is_always_detected(tmp_path, sample_bytes, where, xor, killed):
    complete, incomplete, expected, partial = sample_bytes
    data = bytearray(incomplete if killed else complete)
    offset = int(where * len(data))
    data[offset] ^= xor
    path = tmp_path / "flipped.vmrr"
    path.write_bytes(bytes(data))
    try:
        trace, recovered = read_everything(path)
    except TraceError as error:
        assert str(path) in str(error)
        return
    # Every byte is covered by a checksum or a hash: if it opened, it fell back to a scan
    # that stopped at the damage, keeping only what came before it.
    assert not trace.complete
    assert trace.recovery_offset <= offset or (not killed and offset >= len(data) - 8)
    assert recovered == (partial if killed else expected)[:len(recovered)]


# --- checkpoints ------------------------------------------------------------------------------


def test_checkpoint_base_and_deltas_rebuild_ram(tmp_path):
    path = tmp_path / "run.vmrr"
    writer = TraceWriter(path, make_header())
    model: dict[int, bytes] = {n: page(n % 200 + 1) for n in range(0, 256, 1)}
    states = []
    writer.write_checkpoint(0, {"rip": 0, "idtr": b"\x01" * 10}, {"timer": {"armed": False}}, dict(model))
    states.append(dict(model))
    deltas = [
        {5: page(0xAA), 255: page(0xBB)},
        {5: page(0), 7: page(0xCC)},  # a page that became zero is passed explicitly
        {n: page(0xDD) for n in range(0, 256, 3)},
    ]
    for i, delta in enumerate(deltas, start=1):
        writer.append(i * 10 - 1, EventKind.TIMER, None)
        writer.write_checkpoint(i * 10, {"rip": i}, {"timer": {"armed": bool(i % 2)}}, delta)
        model.update(delta)
        states.append(dict(model))
    writer.append(40, EventKind.TIMER, None)
    writer.close({"reason": "poweroff", "exit_status": 0})
    with TraceReader(path) as trace:
        assert trace.checkpoints == [(0, 0), (10, 1), (20, 2), (30, 3)]
        for order in ([0, 1, 2, 3], [3, 2, 1, 0], [2, 2, 0, 3, 1]):
            for i in order:
                checkpoint = trace.load_checkpoint(i)
                assert checkpoint.icount == i * 10
                assert checkpoint.cpu["rip"] == i
                assert checkpoint.devices == {"timer": {"armed": bool(i % 2)}}
                assert checkpoint.pages == states[i], f"checkpoint {i} in order {order}"
        assert trace.load_checkpoint(-1).icount == 30
        assert trace.load_checkpoint(0).cpu["idtr"] == b"\x01" * 10
        with pytest.raises(IndexError):
            trace.load_checkpoint(4)
        # Events after a checkpoint in file order, even at its own icount, follow it.
        assert as_tuples(trace.events(after_checkpoint=2)) == [
            (29, EventKind.TIMER, None), (40, EventKind.TIMER, None),
            (40, EventKind.END, {"reason": "poweroff", "exit_status": 0})]


def test_large_checkpoints_split_into_capped_records(tmp_path):
    path = tmp_path / "run.vmrr"
    writer = TraceWriter(path, make_header())
    pages = {n: bytes([n % 256]) * PAGE_SIZE for n in range(MEM_SIZE // PAGE_SIZE)}
    writer.write_checkpoint(0, {}, {}, pages)
    writer.close({"reason": "poweroff", "exit_status": 0})
    with TraceReader(path) as trace:
        parts = [chunk for chunk in trace.chunks if EventKind.CHECKPOINT in chunk.counts]
        assert len(parts) == len(pages) // layout.CHECKPOINT_PAGES_PER_RECORD
        assert trace.load_checkpoint(0).pages == pages


def test_full_checkpoint_starts_a_new_base(tmp_path):
    path = tmp_path / "run.vmrr"
    writer = TraceWriter(path, make_header())
    writer.write_checkpoint(0, {}, {}, {1: page(1), 2: page(2)})
    writer.write_checkpoint(10, {}, {}, {3: page(3)}, full=True)
    writer.write_checkpoint(20, {}, {}, {4: page(4)})
    writer.close({"reason": "poweroff", "exit_status": 0})
    with TraceReader(path) as trace:
        assert trace.load_checkpoint(2).pages == {3: page(3), 4: page(4)}
        assert trace.load_checkpoint(0).pages == {1: page(1), 2: page(2)}


# --- events(): skipping and filtering --------------------------------------------------------


def test_events_skip_chunks_before_start_icount_and_without_wanted_kinds(tmp_path, monkeypatch):
    path = tmp_path / "run.vmrr"
    writer = TraceWriter(path, make_header(), chunk_target=100)
    expected = []
    for icount in range(0, 3000, 3):
        kind = EventKind.SOCK_DATA if icount == 2400 else EventKind.RDTSC
        payload = [1, b"x"] if kind is EventKind.SOCK_DATA else icount
        writer.append(icount, kind, payload)
        expected.append((icount, kind, payload))
    writer.close({"reason": "poweroff", "exit_status": 0})
    read: list[int] = []
    original = TraceReader._read_chunk

    def counting(self, info):
        read.append(info.index)
        return original(self, info)

    monkeypatch.setattr(TraceReader, "_read_chunk", counting)
    with TraceReader(path) as trace:
        total = len(trace.chunks)
        assert total > 50
        got = as_tuples(trace.events(start_icount=2000, end_icount=2100))
        assert got == [e for e in expected if 2000 <= e[0] < 2100]
        assert len(read) <= 4
        read.clear()
        got = as_tuples(trace.events(start_icount=2001))
        assert got[0][0] == 2001 and got[:-1] == [e for e in expected if e[0] >= 2001]
        assert min(read) >= total * 2 // 3 - 2
        read.clear()
        assert as_tuples(trace.events(kinds=[EventKind.SOCK_DATA])) == [(2400, EventKind.SOCK_DATA, [1, b"x"])]
        assert len(read) == 1
        read.clear()
        assert [e.kind for e in trace.events(kinds={EventKind.END})] == [EventKind.END]
        assert read == [total - 1]
        with pytest.raises(ValueError, match="unknown event kind"):
            list(trace.events(kinds=[77]))


# --- the second reader ------------------------------------------------------------------------


def test_dump_tool_agrees_with_the_reader(tmp_path):
    path = tmp_path / "run.vmrr"
    write_sample(path, events_per_kind=5)
    decoded = dump_trace.decode(str(path))
    with TraceReader(path) as trace:
        assert decoded["version"] == FORMAT_VERSION and decoded["image_sha256_ok"]
        config = decoded["header"]["config"]
        assert (config["mem_size"], config["cpu_model"], config["boot_args"], config["devices"],
                config["image_name"]) == (MEM_SIZE, "qemu64", "mode=test", trace.header.config.devices,
                                          "kvstore")
        assert decoded["header"]["flags"] == trace.header.flags
        assert [(c["offset"], c["length"], c["first_icount"], c["last_icount"]) for c in decoded["chunks"]] \
            == [(c.offset, c.length, c.first_icount, c.last_icount) for c in trace.chunks]
        assert [(c["counts"]) for c in decoded["chunks"]] == [
            {int(k): n for k, n in c.counts.items()} for c in trace.chunks]
        records = [r for r in decoded["events"] if r[1] != EventKind.CHECKPOINT]
        assert records == [(e.icount, int(e.kind), e.payload) for e in trace.events()]
        assert decoded["end"] == trace.end
        assert [[e[0], e[2]["pages"]] for e in decoded["events"] if e[1] == EventKind.CHECKPOINT][1] == \
            [100, [[2, page(9)]]]
        assert dict(map(tuple, decoded["footer"]["event_counts"])) == \
            {int(k): n for k, n in trace.event_counts.items()}


def test_dump_tool_agrees_on_a_recovered_trace(tmp_path):
    path = tmp_path / "run.vmrr"
    write_sample(path, close=False, events_per_kind=4, chunk_target=100)
    incomplete = tmp_path / "run.vmrr.incomplete"
    data = incomplete.read_bytes()
    cut = tmp_path / "cut.vmrr.incomplete"
    cut.write_bytes(data[:len(data) * 2 // 3])
    decoded = dump_trace.decode(str(cut))
    with TraceReader(cut) as trace:
        assert decoded["footer"] is None
        assert len(decoded["chunks"]) == trace.recovered_chunks
        assert decoded["stop"][0] == trace.recovery_offset
        assert [r for r in decoded["events"] if r[1] != EventKind.CHECKPOINT] == \
            [(e.icount, int(e.kind), e.payload) for e in trace.events()]


def test_dump_tool_command_line(tmp_path):
    path = tmp_path / "run.vmrr"
    write_sample(path)
    tool = str(ROOT / "tools" / "dump_trace.py")
    out = subprocess.run([sys.executable, tool, str(path)], capture_output=True, text=True, check=True).stdout
    assert f"format version {FORMAT_VERSION}" in out and "127.0.0.1:7000" in out
    assert "SOCK_DATA    [0, <7 bytes 474554202f0d0a>]" in out
    assert "end: {'reason': 'poweroff', 'exit_status': 0}" in out
    js = subprocess.run([sys.executable, tool, "--json", str(path)], capture_output=True, text=True, check=True)
    assert '"chaos_seed": 7' in js.stdout
    bad = tmp_path / "bad.vmrr"
    bad.write_bytes(b"nope")
    failed = subprocess.run([sys.executable, tool, str(bad)], capture_output=True, text=True)
    assert failed.returncode == 2 and "bad magic" in failed.stderr and "Traceback" not in failed.stderr


def test_a_cut_finished_trace_is_an_error_unless_recovery_is_asked_for(tmp_path):
    path = tmp_path / "run.vmrr"
    write_sample(path)
    data = path.read_bytes()
    cut = tmp_path / "cut.vmrr"
    cut.write_bytes(data[:-100])                 # the trailer and part of the footer are gone
    with pytest.raises(TraceCorrupt) as caught:
        TraceReader(cut)
    assert "truncated" in str(caught.value) and "--recover" in str(caught.value)
    with TraceReader(cut, recover=True) as trace:
        assert not trace.complete and trace.recovered_chunks > 0

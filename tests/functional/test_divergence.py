"""Replay detects a trace that does not match the execution, and names the icount.

A real recording is rewritten with trace_format's own reader and writer (header,
events and checkpoints copied in order) with one event altered: a value changed, an
event deleted, or an event moved by one instruction. ``vmrr replay --verify`` must
exit 1 with one error line naming the icount. An unaltered rewrite must replay cleanly,
which shows the rewriting itself is faithful.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Union

import pytest

from conftest import describe, guest, record_and_replay, vmrr
from trace_format import Checkpoint, Event, EventKind, TraceHeader, TraceReader, TraceWriter

pytestmark = pytest.mark.timeout(60)

Item = Union[Event, Checkpoint]
Mutation = Callable[[list[Item]], list[Item]]


def read_stream(trace: Path) -> tuple[TraceHeader, list[Item], Event]:
    """A trace as (header, events and checkpoints in file order, END event)."""
    with TraceReader(trace) as reader:
        assert reader.complete
        events = list(reader.events())
        assert events and events[-1].kind is EventKind.END
        end = events.pop()
        # Checkpoint i comes after the events recorded before it (some may share its icount).
        positions = [len(events) + 1 - sum(1 for _ in reader.events(after_checkpoint=i))
                     for i in range(len(reader.checkpoints))]
        stream: list[Item] = list(events)
        for position, i in sorted(zip(positions, range(len(positions))), reverse=True):
            stream.insert(position, reader.load_checkpoint(i))
        return reader.header, stream, end


def rewrite(src: Path, dst: Path, mutate: Mutation) -> None:
    """Copy the trace at src to dst with TraceReader/TraceWriter, its stream passed through mutate."""
    header, stream, end = read_stream(src)
    with TraceWriter(dst, header) as writer:
        for item in mutate(stream):
            if isinstance(item, Checkpoint):
                writer.write_checkpoint(item.icount, item.cpu, item.devices, item.pages, full=True,
                                        digest=item.digest)
            else:
                writer.append(item.icount, item.kind, item.payload)
        writer.close(end.payload, icount=end.icount)


def nth(stream: list[Item], kind: EventKind, n: int) -> int:
    """Index in ``stream`` of the n-th event of ``kind``."""
    return [i for i, e in enumerate(stream) if isinstance(e, Event) and e.kind is kind][n]


def neighbours(stream: list[Item], index: int) -> tuple[int, int]:
    """icounts of the items just before and after stream[index] (the END event's if last)."""
    after = stream[index + 1].icount if index + 1 < len(stream) else None
    return stream[index - 1].icount, after


def replaced(event: Event, **changes) -> Event:
    return Event(changes.get("icount", event.icount), changes.get("kind", event.kind),
                 changes.get("payload", event.payload))


def diverged_at(proc) -> int:
    """Exit 1 and one "vmrr: error: replay diverged at icount N" line; returns N."""
    assert proc.returncode == 1, describe(proc)
    assert "Traceback" not in proc.stderr, describe(proc)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("vmrr: error:")]
    assert len(errors) == 1, describe(proc)
    match = re.match(r"vmrr: error: replay diverged at icount (\d+)", errors[0])
    assert match, describe(proc)
    return int(match[1])


RECORDINGS = {
    "t_entropy": (),
    "t_rdtsc": (),
    # Slices end at every interrupt: small checkpoint spacing interleaves checkpoints.
    "t_interrupts": ("--checkpoint-every", "1000"),
}


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    """Recorded and verified traces: name -> (trace path, console output)."""
    out = {}
    for name, extra in RECORDINGS.items():
        tmp = tmp_path_factory.mktemp(name)
        record, _replay, trace = record_and_replay(tmp, guest(name), *extra)
        assert record.returncode == 0, describe(record)
        out[name] = (trace, record.stdout)
    return out


def alter(tmp_path: Path, trace: Path, name: str, mutate: Mutation):
    """Rewrite ``trace`` through ``mutate`` and replay the result with --verify."""
    altered = tmp_path / f"{name}.vmrr"
    rewrite(trace, altered, mutate)
    return vmrr("replay", altered, "--verify")


@pytest.mark.parametrize("name", sorted(RECORDINGS))
def test_unaltered_rewrite_replays(tmp_path, recordings, name):
    trace, stdout = recordings[name]
    copy = tmp_path / "copy.vmrr"
    rewrite(trace, copy, lambda stream: stream)
    original, copied = read_stream(trace), read_stream(copy)
    assert copied[1:] == original[1:]
    with TraceReader(trace) as a, TraceReader(copy) as b:
        assert [c.icount for c in b.checkpoints] == [c.icount for c in a.checkpoints]
        if name == "t_interrupts":
            assert len(a.checkpoints) > 1
    replay = vmrr("replay", copy, "--verify")
    assert replay.returncode == 0, describe(replay)
    assert replay.stdout == stdout


@pytest.mark.parametrize("name,kind,n", [("t_entropy", EventKind.ENTROPY, 0),
                                          ("t_entropy", EventKind.ENTROPY, 37),
                                          ("t_rdtsc", EventKind.RDTSC, 0),
                                          ("t_rdtsc", EventKind.CLOCK, 1)])
def test_changed_value_is_detected(tmp_path, recordings, name, kind, n):
    trace, stdout = recordings[name]
    stream = read_stream(trace)[1]
    index = nth(stream, kind, n)
    icount = stream[index].icount

    def mutate(items):
        items[index] = replaced(items[index], payload=items[index].payload ^ 0x5A5A)
        return items

    replay = alter(tmp_path, trace, "changed", mutate)
    # The guest takes the altered value without complaint; a state check finds it later.
    assert diverged_at(replay) >= icount
    assert "DIGEST: state differs" in replay.stderr or "output differs" in replay.stderr
    assert replay.stdout != stdout                 # the guest printed what it was given


@pytest.mark.parametrize("name,kind,n", [("t_entropy", EventKind.ENTROPY, 0),
                                          ("t_entropy", EventKind.ENTROPY, 63),
                                          ("t_rdtsc", EventKind.RDTSC, 1),
                                          ("t_rdtsc", EventKind.CLOCK, 0)])
def test_deleted_event_is_detected_at_its_icount(tmp_path, recordings, name, kind, n):
    trace, _ = recordings[name]
    stream = read_stream(trace)[1]
    index = nth(stream, kind, n)
    icount = stream[index].icount
    replay = alter(tmp_path, trace, "deleted", lambda items: items[:index] + items[index + 1:])
    assert diverged_at(replay) == icount
    assert f"the guest asked for {kind.name}" in replay.stderr


@pytest.mark.parametrize("delta", [1, -1])
@pytest.mark.parametrize("name,kind,n", [("t_entropy", EventKind.ENTROPY, 10),
                                          ("t_rdtsc", EventKind.RDTSC, 0),
                                          ("t_rdtsc", EventKind.CLOCK, 2)])
def test_moved_event_is_detected_at_its_icount(tmp_path, recordings, name, kind, n, delta):
    trace, _ = recordings[name]
    stream = read_stream(trace)[1]
    index = nth(stream, kind, n)
    icount = stream[index].icount
    before, after = neighbours(stream, index)
    assert before < icount + delta and (after is None or icount + delta < after)

    def mutate(items):
        items[index] = replaced(items[index], icount=icount + delta)
        return items

    replay = alter(tmp_path, trace, "moved", mutate)
    assert diverged_at(replay) == icount
    assert f"recording has {kind.name} at icount {icount + delta}" in replay.stderr


# Interrupts are asynchronous: when the recorder injected one while the guest was halted
# (the usual case), replay stops at exactly its icount; when the guest was running, it
# notices only at its next HLT. Either way the divergence is reported, never before it.
@pytest.mark.parametrize("n", [0, 5, 19])
def test_deleted_interrupt_is_detected(tmp_path, recordings, n):
    trace, _ = recordings["t_interrupts"]
    stream = read_stream(trace)[1]
    index = nth(stream, EventKind.INTERRUPT, n)
    icount = stream[index].icount
    replay = alter(tmp_path, trace, "no-interrupt", lambda items: items[:index] + items[index + 1:])
    assert diverged_at(replay) >= icount


@pytest.mark.parametrize("n", [0, 5, 19])
def test_moved_interrupt_is_detected(tmp_path, recordings, n):
    trace, _ = recordings["t_interrupts"]
    stream = read_stream(trace)[1]
    index = nth(stream, EventKind.INTERRUPT, n)
    icount = stream[index].icount
    before, after = neighbours(stream, index)
    assert after is None or icount + 1 < after

    def mutate(items):
        items[index] = replaced(items[index], icount=icount + 1)
        return items

    replay = alter(tmp_path, trace, "late-interrupt", mutate)
    assert diverged_at(replay) >= icount


@pytest.mark.parametrize("name,kind", [("t_entropy", EventKind.ENTROPY),    # asked for in an `in` hook
                                       ("t_rdtsc", EventKind.RDTSC)])       # in the native RDTSC hook
def test_divergence_in_a_hook_propagates_from_the_replay_api(tmp_path, recordings, capfd, name, kind):
    """The divergence raised inside a Unicorn hook leaves Replay.run, with nothing printed."""
    from replay import Replay
    from vmm.errors import ReplayDivergence

    trace, _ = recordings[name]
    stream = read_stream(trace)[1]
    index = nth(stream, kind, 1)
    icount = stream[index].icount
    altered = tmp_path / "deleted.vmrr"
    rewrite(trace, altered, lambda items: items[:index] + items[index + 1:])
    with Replay(str(altered), verify=True) as rep:
        with pytest.raises(ReplayDivergence, match=rf"^replay diverged at icount {icount}\b"):
            rep.run()
        assert rep.icount == icount               # stopped right there, not later
    assert capfd.readouterr().err == ""

"""Windows: one ordinary trace made of a stretch of others (a flight recorder's save).

A *window* trace starts at a full checkpoint instead of at boot (header flag ``window``,
docs/trace-format.md). ``write_window`` builds one from a list of sources in run order:
the first is entered at one of its checkpoints, each next one continues where the one
before it stopped (the flight recorder's segments: each begins with a full checkpoint at
the icount its predecessor ended). Checkpoints are copied as they were recorded (a base
stays a base, a delta a delta), events in file order; every BLOB of every source — those
recorded before the window's start included — is kept once, so the window holds every
file content the run read before it. END records are dropped: the window ends with the
``end`` its maker gives.

Nothing here knows about machines: the bytes of a trace in, the bytes of a trace out.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass, field, replace

from trace_format.events import Event, EventKind
from trace_format.header import TraceHeader
from trace_format.layout import PAGE_SIZE
from trace_format.reader import TraceReader
from trace_format.writer import TraceWriter

_BLOB = EventKind.BLOB
_END = EventKind.END
_CHECKPOINT = EventKind.CHECKPOINT
_ZERO_PAGE = bytes(PAGE_SIZE)
BLOB_PART = 4 << 20                 # bytes of file content per BLOB record, as the recorder writes them


@dataclass
class WindowSource:
    """One trace a window is made of.

    Args:
        reader: the trace, open (a ``.incomplete`` one opened with ``chunk_limit`` gives
            the prefix its writer had flushed).
        start_checkpoint: the first source's checkpoint where the window begins (the
            others are taken from their checkpoint 0, which must be a base).
    """

    reader: TraceReader
    start_checkpoint: int = 0


@dataclass
class WindowStats:
    """What ``write_window`` wrote."""

    path: str
    bytes: int
    start_icount: int
    end_icount: int
    checkpoints: int
    events: int
    blobs: int = 0
    blob_bytes: int = 0
    sources: int = 0
    kinds: dict[str, int] = field(default_factory=dict)


def write_window(path: str, sources: list[WindowSource], *, window: dict, end: dict,
                 tool_version: str | None = None, overwrite: bool = False,
                 contents: dict[str, str] | None = None) -> WindowStats:
    """Write the trace at ``path`` that replays the sources' stretch of the run.

    Args:
        path: the trace to create (``path.incomplete`` until done, as any trace).
        sources: the traces in run order (see WindowSource).
        window: the header's ``window`` map; ``start_icount`` is set here.
        end: the END record (``icount`` at least the last record's).
        tool_version: the vmrr writing it (default: the first source's).
        overwrite: replace an existing trace at ``path``.
        contents: more file content for the window, content id (sha256 hex) -> the path of
            a file holding it (a flight recorder keeps each content once, outside its
            segments); written as BLOBs right after the first checkpoint, unless a source
            holds it already. A file whose bytes do not hash to its id is refused.

    Returns:
        What was written.

    Raises:
        ValueError: no sources, a start checkpoint that does not exist, or sources that
            do not continue each other (icounts going backwards).
        TraceError: a source is damaged, or ``path`` cannot be written.
    """
    if not sources:
        raise ValueError("a window needs at least one trace")
    first = sources[0].reader
    refs = first.checkpoints
    if not 0 <= sources[0].start_checkpoint < len(refs):
        raise ValueError(f"{first.path}: no checkpoint {sources[0].start_checkpoint} "
                         f"(it has {len(refs)})")
    start_icount = refs[sources[0].start_checkpoint].icount
    flags = {k: v for k, v in first.header.flags.items() if k != "window"}
    flags["window"] = {**window, "start_icount": start_icount}
    header = replace(first.header, tool_version=tool_version or first.header.tool_version,
                     created_unix=float(window.get("start_unix", first.header.created_unix)),
                     flags=flags)
    writer = TraceWriter(path, header, overwrite=overwrite, flush_interval=math.inf)
    stats = WindowStats(path, 0, start_icount, end.get("icount", 0), 0, 0, sources=len(sources))
    blobs: set[tuple[bytes, int]] = set()
    extra = _have_anyway(sources, contents or {})
    try:
        for number, source in enumerate(sources):
            _copy(writer, source, number == 0, blobs, stats, extra if number == 0 else {})
        writer.close(end, icount=end.get("icount", writer.last_icount))
    except BaseException:
        if not writer.closed:
            writer.close({"reason": "stopped", "why": "error"})
        _unlink(writer.path)
        _unlink(writer.incomplete_path)
        raise
    stats.bytes = os.path.getsize(path)
    stats.checkpoints = writer.checkpoints_written
    return stats


def _have_anyway(sources: list[WindowSource], contents: dict[str, str]) -> dict[str, str]:
    """``contents`` less what the sources' own BLOB records hold."""
    if not contents:
        return {}
    held = set()
    for source in sources:
        for event in source.reader.events(kinds={_BLOB}):
            if event.payload[1] == 0:
                held.add(event.payload[0].hex())
    return {file_id: where for file_id, where in contents.items() if file_id not in held}


def _content_events(contents: dict[str, str], icount: int) -> list[Event]:
    """BLOB events for the files in ``contents`` (content id -> path)."""
    events = []
    for file_id, where in sorted(contents.items()):
        with open(where, "rb") as f:
            data = f.read()
        if hashlib.sha256(data).hexdigest() != file_id:
            raise ValueError(f"{where}: does not hold the content {file_id[:16]} it is named for")
        digest = bytes.fromhex(file_id)
        parts = max(1, -(-len(data) // BLOB_PART))
        events.extend(Event(icount, _BLOB, [digest, part, parts, data[part * BLOB_PART:(part + 1) * BLOB_PART]])
                      for part in range(parts))
    return events


def _copy(writer: TraceWriter, source: WindowSource, first: bool,
          blobs: set[tuple[bytes, int]], stats: WindowStats, contents: dict[str, str]) -> None:
    reader = source.reader
    start = source.start_checkpoint if first else 0
    entries = reader._checkpoints
    if not entries:
        raise ValueError(f"{reader.path}: holds no checkpoint to start from")
    if not first and not entries[0].full:
        raise ValueError(f"{reader.path}: does not begin with a full checkpoint")
    begin = entries[start].first_chunk
    starts = {entry.first_chunk: j for j, entry in enumerate(entries)}
    early: list[Event] = []             # file content read before the window: kept too
    for info in reader.chunks:
        if info.counts.keys() == {_CHECKPOINT}:
            j = starts.get(info.index)
            if j is None or j < start:
                continue                                   # a later part, or before the window
            icount, full, cpu, devices, digest, pages = reader.checkpoint_record(j)
            if j == start and not full:                    # the window's base: all of RAM
                pages = {n: page for n, page in reader.load_checkpoint(j).pages.items()
                         if page != _ZERO_PAGE}
            writer.write_checkpoint(icount, cpu, devices, pages, full=full or j == start,
                                    digest=digest)
            if early or contents:
                for event in early + _content_events(contents, icount):
                    _append(writer, event, icount, blobs, stats)
                early, contents = [], {}
            continue
        if info.index < begin:
            if _BLOB in info.counts:
                early.extend(e for e in reader.chunk_events(info) if e.kind is _BLOB)
            continue
        for event in reader.chunk_events(info):
            if event.kind is not _END:
                _append(writer, event, event.icount, blobs, stats)


def _append(writer: TraceWriter, event: Event, icount: int,
            blobs: set[tuple[bytes, int]], stats: WindowStats) -> None:
    payload = event.payload
    if event.kind is _BLOB:
        key = (payload[0], payload[1])
        if key in blobs:
            return
        blobs.add(key)
        stats.blobs += payload[1] == 0
        stats.blob_bytes += len(payload[3])
    writer.append(icount, event.kind, payload)
    stats.events += 1
    name = event.kind.name
    stats.kinds[name] = stats.kinds.get(name, 0) + 1


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass

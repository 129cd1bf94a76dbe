"""TraceReader: opens a trace, checks it, and reads events and checkpoints from it.

The reader trusts nothing in the file: every length is checked against a cap before
anything is allocated, every chunk's checksum and every record's shape is checked,
and any damage becomes one TraceCorrupt naming the file offset and chunk. A trace with
a footer opens by reading the header and the footer only; one without (a killed
recorder) opens by scanning its chunks and keeps every complete one before the first
damaged or truncated one. Spec: docs/trace-format.md.
"""

from __future__ import annotations

import bisect
import gc
import os
import stat
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from operator import attrgetter
from typing import NamedTuple

import lz4.block

from trace_format import layout
from trace_format.errors import (TraceCorrupt, TraceError, TraceIncomplete, TraceNotFound,
                                 TraceVersionError)
from trace_format.events import KIND_BY_NUMBER, PAYLOAD_CHECKS, Event, EventKind, check_end, is_state_digest
from trace_format.header import TraceHeader, decode_header_map

_CHECKPOINT = EventKind.CHECKPOINT
_END = EventKind.END
_kind_of = attrgetter("kind")


@dataclass(frozen=True, slots=True)
class ChunkInfo:
    """Where a chunk is and what it holds, from the footer index or from a scan.

    ``counts`` counts records by kind, CHECKPOINT records included.
    """

    index: int
    offset: int
    length: int
    first_icount: int
    last_icount: int
    counts: dict[EventKind, int]

    @property
    def n_records(self) -> int:
        return sum(self.counts.values())


class CheckpointRef(NamedTuple):
    """A checkpoint in ``TraceReader.checkpoints``: its icount and its index for load_checkpoint."""

    icount: int
    index: int


@dataclass(frozen=True)
class Checkpoint:
    """The machine state at ``icount``.

    ``pages`` is the whole RAM as of this checkpoint: page number -> 4096 bytes, for
    every page the base or a later delta recorded; a missing page is zero. ``digest`` is
    the machine's ``state_digest()`` the recorder took at that moment (None if it wrote
    none): whoever restores the checkpoint checks that the restored machine has it.
    """

    icount: int
    cpu: dict
    devices: dict
    pages: dict[int, bytes]
    digest: list | None


@dataclass(frozen=True, slots=True)
class _CheckpointEntry:
    icount: int
    full: bool
    first_chunk: int
    parts: int


class TraceReader:
    """A trace opened for reading.

    Args:
        path: the trace; ``PATH.incomplete`` files open too (by scanning).
        recover: ignore the footer and scan the chunks, to salvage what precedes
            damage that makes the footer unusable.
        chunk_limit: scan at most this many chunks (with ``recover``, or for a
            ``.incomplete`` file): the prefix a writer had flushed at some moment, while
            it goes on writing (a flight recorder's save).

    Attributes:
        path, header, file_size.
        complete: True when the footer was read; False for a recovered trace.
        end: the end dict of the run (footer, or the END event a scan found), or None.
        chunks: list of ChunkInfo, in file order.
        event_counts: EventKind -> number of events (CHECKPOINT records not included).
        last_icount: icount of the last record (0 for an empty trace).
        checkpoints: list of CheckpointRef(icount, index), in icount order.
        window: the header's ``window`` map for a flight recorder's window, else None.
        first_icount: where the trace's history starts: 0, or a window's start_icount
            (its checkpoint 0, the first thing in the file).
        recovered_chunks: number of chunks that can be read (all of them when complete).
        recovery_offset: for a recovered trace, the byte offset where the scan stopped.
        recovery_reason: for a recovered trace, why the scan stopped there.

    Raises:
        TraceNotFound: no such file (TraceIncomplete when only PATH.incomplete exists).
        TraceVersionError: the trace is in another format version.
        TraceCorrupt: the header or footer is damaged.
    """

    def __init__(self, path: str | os.PathLike, *, recover: bool = False,
                 chunk_limit: int | None = None):
        self.path = os.fspath(path)
        self._chunk_limit = chunk_limit
        self._fd = _open_trace(self.path)
        try:
            self.file_size = os.fstat(self._fd).st_size
            self.header = self._read_header()
            self.chunks: list[ChunkInfo] = []
            self._checkpoints: list[_CheckpointEntry] = []
            self.event_counts: dict[EventKind, int] = {}
            self.end: dict | None = None
            self.complete = False
            self.recovery_offset: int | None = None
            self.recovery_reason: str | None = None
            if not recover and self._has_trailer():
                self._read_footer()
                self.complete = True
            elif recover or self.path.endswith(".incomplete"):
                self._scan()
            else:
                # A finished trace always ends in its trailer: this one was cut short.
                raise TraceCorrupt(self.path, self.file_size,
                                   "truncated: the trace has no footer (a killed recording "
                                   "is named .incomplete); to salvage its complete chunks, "
                                   "open it with --recover")
            self._chunk_lasts = [chunk.last_icount for chunk in self.chunks]
            self.last_icount = self.chunks[-1].last_icount if self.chunks else 0
            self.checkpoints = [CheckpointRef(entry.icount, i)
                                for i, entry in enumerate(self._checkpoints)]
            self._checkpoint_starts = {entry.first_chunk: i
                                       for i, entry in enumerate(self._checkpoints)}
            self.recovered_chunks = len(self.chunks)
            self._cached: tuple[int, dict[int, bytes]] | None = None
            self.window = self.header.flags.get("window")
            self.first_icount = self._check_window() if self.window is not None else 0
        except BaseException:
            self.close()
            raise

    @classmethod
    def open(cls, path: str | os.PathLike, *, recover: bool = False) -> "TraceReader":
        """Open a trace; same as ``TraceReader(path)``."""
        return cls(path, recover=recover)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> "TraceReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_fd", -1) >= 0:
            self.close()

    # --- events --------------------------------------------------------------------------

    def events(self, *, start_icount: int = 0, end_icount: int | None = None,
               kinds: Iterable[EventKind | int] | None = None,
               after_checkpoint: int | None = None,
               checkpoint_marks: bool = False) -> Iterator[Event]:
        """The events of the trace in recorded order, CHECKPOINT records left out.

        Chunks that the index shows lie wholly before ``start_icount``, or hold none of
        ``kinds``, are not read.

        Args:
            start_icount: skip events before this icount.
            end_icount: stop before the first event at or after this icount.
            kinds: only events of these kinds.
            after_checkpoint: only events recorded after checkpoint number
                ``after_checkpoint``; replay resuming from that checkpoint uses this,
                because events at the checkpoint's own icount may precede it.
            checkpoint_marks: also yield, where each checkpoint lies in the stream, an
                ``Event(icount, CHECKPOINT, index)`` (its index for ``load_checkpoint``),
                so that a verifying replay can compare its state with the checkpoint
                exactly there. The checkpoint's chunks are not read for this.

        Raises:
            TraceCorrupt: a chunk is damaged (raised when the iteration reaches it).
            ValueError: an unknown kind was asked for.
        """
        wanted = None
        if kinds is not None:
            wanted = frozenset(_as_kind(kind) for kind in kinds) - {_CHECKPOINT}
        first = bisect.bisect_left(self._chunk_lasts, start_icount)
        if after_checkpoint is not None:
            entry = self._checkpoints[after_checkpoint]
            first = max(first, entry.first_chunk + entry.parts)
        marks = self._checkpoint_starts if checkpoint_marks else {}
        for info in self.chunks[first:]:
            if end_icount is not None and info.first_icount >= end_icount:
                return
            counts = info.counts
            if wanted is None:
                if len(counts) == 1 and _CHECKPOINT in counts:
                    mark = marks.get(info.index)
                    if mark is not None and info.first_icount >= start_icount:
                        yield Event(info.first_icount, _CHECKPOINT, mark)
                    continue
            elif wanted.isdisjoint(counts):
                continue
            events = self._read_chunk(info)
            if (info.first_icount < start_icount
                    or (end_icount is not None and info.last_icount >= end_icount)):
                events = [event for event in events
                          if start_icount <= event.icount
                          and (end_icount is None or event.icount < end_icount)]
            if wanted is None:
                if _CHECKPOINT in counts:
                    events = [event for event in events if event.kind is not _CHECKPOINT]
            else:
                events = [event for event in events if event.kind in wanted]
            yield from events

    # --- checkpoints ---------------------------------------------------------------------

    def load_checkpoint(self, i: int) -> Checkpoint:
        """The machine state at checkpoint ``i`` (an index into ``checkpoints``).

        RAM is rebuilt from the nearest base at or before ``i`` and the deltas after
        it; the image of the last checkpoint loaded is kept, so loading checkpoints
        in increasing order reads each delta once.

        Raises:
            IndexError: no checkpoint ``i``.
            TraceCorrupt: a checkpoint record is damaged.
        """
        if not -len(self._checkpoints) <= i < len(self._checkpoints):
            raise IndexError(f"checkpoint {i} does not exist; the trace has "
                             f"{len(self._checkpoints)}")
        i %= len(self._checkpoints)
        base = max(j for j in range(i + 1) if self._checkpoints[j].full)
        if self._cached is not None and base <= self._cached[0] <= i:
            start, pages = self._cached[0] + 1, dict(self._cached[1])
        else:
            start, pages = base, {}
        state = None
        for j in range(start, i + 1):
            for part in range(self._checkpoints[j].parts):
                record, corrupt = self._checkpoint_part(j, part)
                self._apply_pages(record, corrupt, pages)
                if j == i and part == 0:
                    state = record
        if state is None:  # checkpoint i itself was cached: only its cpu and devices are needed
            state, _ = self._checkpoint_part(i, 0)
        self._cached = (i, pages)
        return Checkpoint(self._checkpoints[i].icount, state["cpu"], state["devices"], dict(pages),
                          state.get("digest"))

    def checkpoint_record(self, j: int) -> tuple[int, bool, dict, dict, list | None, dict[int, bytes]]:
        """Checkpoint ``j`` as recorded: (icount, full, cpu, devices, digest, its own pages).

        The pages are those the checkpoint itself lists (all non-zero RAM for a base, the
        changed pages for a delta), for copying it into another trace as it was.

        Raises:
            IndexError: no checkpoint ``j``. TraceCorrupt: a part is damaged.
        """
        entry = self._checkpoints[j]
        pages: dict[int, bytes] = {}
        state = None
        for part in range(entry.parts):
            record, corrupt = self._checkpoint_part(j, part)
            self._apply_pages(record, corrupt, pages)
            if part == 0:
                state = record
        return entry.icount, entry.full, state["cpu"], state["devices"], state.get("digest"), pages

    def chunk_events(self, info: ChunkInfo) -> list[Event]:
        """Every record of one chunk of ``chunks``, checked, CHECKPOINT and END included.

        Raises:
            TraceCorrupt: the chunk is damaged.
        """
        return self._read_chunk(info)

    def _checkpoint_part(self, j: int, part: int) -> tuple[dict, Callable[[str], TraceCorrupt]]:
        """The checked payload of part ``part`` of checkpoint ``j``, and its error maker."""
        entry = self._checkpoints[j]
        info = self.chunks[entry.first_chunk + part]
        events = self._read_chunk(info)  # the index made sure it holds one CHECKPOINT record

        def corrupt(what: str) -> TraceCorrupt:
            return TraceCorrupt(self.path, info.offset, f"checkpoint {j} part {part}: {what}",
                                chunk=info.index)

        record = _checkpoint_fields(events[0], corrupt)
        if (record["n"], record["part"], record["parts"], record["full"]) != \
                (j, part, entry.parts, entry.full) or events[0].icount != entry.icount:
            raise corrupt("does not match the index")
        if part == 0 and (type(record["cpu"]) is not dict or type(record["devices"]) is not dict):
            raise corrupt("cpu or devices state is not a map")
        if part == 0 and record.get("digest") is not None and not is_state_digest(record["digest"]):
            raise corrupt("its state digest is not [rip, 16-byte hash, 16-byte hash]")
        if type(record["pages"]) is not list:
            raise corrupt("pages is not an array")
        return record, corrupt

    def _apply_pages(self, record: dict, corrupt: Callable[[str], TraceCorrupt],
                     pages: dict[int, bytes]) -> None:
        mem_pages = self.header.config.mem_size >> layout.PAGE_SHIFT
        for item in record["pages"]:
            if (type(item) is not list or len(item) != 2 or type(item[0]) is not int
                    or not 0 <= item[0] < mem_pages or type(item[1]) is not bytes
                    or len(item[1]) != layout.PAGE_SIZE):
                raise corrupt(f"bad page entry (want [page number < {mem_pages}, "
                              f"{layout.PAGE_SIZE} bytes])")
            pages[item[0]] = item[1]

    def _check_window(self) -> int:
        """A window trace must begin with its full checkpoint 0 at the window's start."""
        start = self.window["start_icount"]
        if not self._checkpoints:
            raise TraceCorrupt(self.path, self._body_offset,
                               "a flight recorder's window with no complete checkpoint: nothing "
                               "in it can be replayed (the recorder was killed while writing it)")
        first = self._checkpoints[0]
        if first.first_chunk != 0 or first.icount != start or not first.full:
            raise TraceCorrupt(self.path, self._body_offset,
                               f"a flight recorder's window must begin with a full checkpoint at "
                               f"its start icount {start} (header flags.window)")
        return start

    # --- opening -------------------------------------------------------------------------

    def _read_header(self) -> TraceHeader:
        prefix = self._pread(0, layout.VERSION_PREFIX_LEN)
        if not prefix:
            raise TraceCorrupt(self.path, 0, "the file is empty (recording stopped before "
                               "the header was written)")
        if layout.FILE_MAGIC.startswith(prefix):
            raise self._truncated(0, layout.VERSION_PREFIX_LEN, "the file header")
        if prefix[:8] != layout.FILE_MAGIC:
            raise TraceCorrupt(self.path, 0, "not a vmrr trace (bad magic number)")
        if len(prefix) < layout.VERSION_PREFIX_LEN:
            raise self._truncated(0, layout.VERSION_PREFIX_LEN, "the file header")
        version = int.from_bytes(prefix[8:12], "little")
        if version != layout.FORMAT_VERSION:
            relation = "newer" if version > layout.FORMAT_VERSION else "older"
            advice = ("upgrade vmrr to read it, or re-record with this version"
                      if relation == "newer" else "re-record with this version")
            raise TraceVersionError(
                f"{self.path}: trace format version {version} is {relation} than this vmrr "
                f"supports ({layout.FORMAT_VERSION}); {advice}")
        prefix = self._read_exact(0, layout.HEADER_PREFIX_LEN, "the file header")
        _, _, header_len, image_len = layout.HEADER_FIELDS.unpack_from(prefix)
        (header_crc,) = layout.HEADER_CRC.unpack_from(prefix, layout.HEADER_FIELDS.size)
        if header_len > layout.MAX_HEADER_LEN:
            raise TraceCorrupt(self.path, 12, f"header length {header_len} exceeds the cap "
                               f"of {layout.MAX_HEADER_LEN}")
        if image_len > layout.MAX_IMAGE_LEN:
            raise TraceCorrupt(self.path, 16, f"image length {image_len} exceeds the cap "
                               f"of {layout.MAX_IMAGE_LEN}")
        map_offset = layout.HEADER_PREFIX_LEN
        header_map = self._read_exact(map_offset, header_len, "the header")
        if zlib.crc32(header_map, zlib.crc32(prefix[:layout.HEADER_FIELDS.size])) != header_crc:
            raise TraceCorrupt(self.path, 0, "header checksum mismatch")
        image = self._read_exact(map_offset + header_len, image_len, "the guest image")
        self._body_offset = map_offset + header_len + image_len
        try:
            return decode_header_map(layout.unpack_exactly(header_map, header_len), image)
        except ValueError as error:
            raise TraceCorrupt(self.path, map_offset, f"bad header: {error}") from None

    def _has_trailer(self) -> bool:
        if self.file_size < self._body_offset + layout.TRAILER_LEN:
            return False
        tail = self._pread(self.file_size - len(layout.TRAILER_MAGIC), len(layout.TRAILER_MAGIC))
        return tail == layout.TRAILER_MAGIC

    def _read_footer(self) -> None:
        trailer_offset = self.file_size - layout.TRAILER_LEN
        hint = "; --recover (TraceReader(recover=True)) salvages its complete chunks"

        def corrupt(offset: int, what: str) -> TraceCorrupt:
            return TraceCorrupt(self.path, offset, what + hint)

        trailer = self._pread(trailer_offset, layout.TRAILER_LEN)
        try:
            footer_offset, footer_len, footer_crc, chunk_count = layout.unpack_trailer(trailer)
        except ValueError as error:
            raise corrupt(trailer_offset, f"bad trailer: {error}") from None
        if footer_len > layout.MAX_FOOTER_LEN:
            raise corrupt(trailer_offset, f"footer length {footer_len} exceeds the cap of "
                          f"{layout.MAX_FOOTER_LEN}")
        if footer_offset < self._body_offset or footer_offset + footer_len != trailer_offset:
            raise corrupt(trailer_offset, f"trailer places the footer at {footer_offset}+"
                          f"{footer_len}, not right before the trailer")
        footer = self._read_exact(footer_offset, footer_len, "the footer")
        if zlib.crc32(footer) != footer_crc:
            raise corrupt(footer_offset, "footer checksum mismatch")
        try:
            value = layout.unpack_exactly(footer, footer_len)
            self._index_from_footer(value, footer_offset, chunk_count)
        except ValueError as error:
            raise corrupt(footer_offset, f"bad footer: {error}") from None

    def _index_from_footer(self, value: object, footer_offset: int, chunk_count: int) -> None:
        """Fill the index from the decoded footer, checking it is consistent; ValueError if not."""
        footer = _need(value, dict, "footer")
        chunk_rows = _need(footer.get("chunks"), list, "chunks")
        if len(chunk_rows) != chunk_count:
            raise ValueError(f"footer lists {len(chunk_rows)} chunks, trailer says {chunk_count}")
        offset = self._body_offset
        last = 0
        totals: Counter[EventKind] = Counter()
        for index, row in enumerate(chunk_rows):
            row = _need(row, list, f"chunk {index} entry")
            if len(row) != 6:
                raise ValueError(f"chunk {index} entry has {len(row)} fields, not 6")
            chunk_offset, length, first, last_i, n_records, count_rows = row
            for name, number in (("offset", chunk_offset), ("length", length),
                                 ("first icount", first), ("last icount", last_i),
                                 ("record count", n_records)):
                _need(number, int, f"chunk {index} {name}")
            if chunk_offset != offset:
                raise ValueError(f"chunk {index} is at {chunk_offset}, expected {offset}")
            if not layout.CHUNK_FRAME_LEN < length <= layout.CHUNK_FRAME_LEN + layout.MAX_CHUNK_COMP:
                raise ValueError(f"chunk {index} length {length} is out of range")
            if not last <= first <= last_i <= layout.MAX_ICOUNT:
                raise ValueError(f"chunk {index} icounts {first}..{last_i} are out of order")
            counts = self._counts_from_rows(_need(count_rows, list, f"chunk {index} counts"), index)
            if sum(counts.values()) != n_records or n_records < 1:
                raise ValueError(f"chunk {index} counts do not add up to its {n_records} records")
            self.chunks.append(ChunkInfo(index, chunk_offset, length, first, last_i, counts))
            totals.update(counts)
            offset += length
            last = last_i
        if offset != footer_offset:
            raise ValueError(f"chunks end at {offset}, but the footer starts at {footer_offset}")
        event_counts = self._counts_from_rows(_need(footer.get("event_counts"), list,
                                                    "event_counts"), None)
        del totals[_CHECKPOINT]
        if event_counts != dict(totals):
            raise ValueError("event_counts do not match the chunks' counts")
        self.event_counts = event_counts
        for i, row in enumerate(_need(footer.get("checkpoints"), list, "checkpoints")):
            row = _need(row, list, f"checkpoint {i} entry")
            if len(row) != 4:
                raise ValueError(f"checkpoint {i} entry has {len(row)} fields, not 4")
            icount, full, first_chunk, parts = row
            _need(icount, int, f"checkpoint {i} icount")
            _need(full, bool, f"checkpoint {i} full flag")
            _need(first_chunk, int, f"checkpoint {i} first chunk")
            _need(parts, int, f"checkpoint {i} part count")
            previous = self._checkpoints[-1] if self._checkpoints else None
            floor = previous.first_chunk + previous.parts if previous else 0
            if not (floor <= first_chunk and parts >= 1 and first_chunk + parts <= len(self.chunks)):
                raise ValueError(f"checkpoint {i} chunks {first_chunk}+{parts} are out of range")
            if i == 0 and not full:
                raise ValueError("the first checkpoint is not a full base")
            for info in self.chunks[first_chunk:first_chunk + parts]:
                if info.counts != {_CHECKPOINT: 1} or info.first_icount != icount:
                    raise ValueError(f"checkpoint {i}: chunk {info.index} is not one of its parts")
            self._checkpoints.append(_CheckpointEntry(icount, full, first_chunk, parts))
        self.end = _need(footer.get("end"), dict, "end")
        problem = check_end(self.end)
        if problem is not None:
            raise ValueError(f"the end map is malformed: {problem}")

    @staticmethod
    def _counts_from_rows(rows: list, index: int | None) -> dict[EventKind, int]:
        where = "event_counts" if index is None else f"chunk {index} counts"
        counts: dict[EventKind, int] = {}
        for pair in rows:
            if (type(pair) is not list or len(pair) != 2 or type(pair[0]) is not int
                    or type(pair[1]) is not int or pair[1] < 1):
                raise ValueError(f"{where}: entry {pair!r} is not [kind, count >= 1]")
            kind = KIND_BY_NUMBER.get(pair[0])
            if kind is None or kind in counts:
                raise ValueError(f"{where}: unknown or repeated kind {pair[0]}")
            counts[kind] = pair[1]
        return counts

    def _scan(self) -> None:
        """Index the trace by reading every chunk; stop at the first bad one."""
        offset = self._body_offset
        last = 0
        totals: Counter[EventKind] = Counter()
        pending: _CheckpointEntry | None = None
        while True:
            remaining = self.file_size - offset
            if self._chunk_limit is not None and len(self.chunks) >= self._chunk_limit:
                self._stop_scan(offset, f"the first {self._chunk_limit} chunks were asked for")
                break
            if remaining == 0:
                self._stop_scan(offset, "the file ends after the last complete chunk, "
                                "without a footer")
                break
            index = len(self.chunks)
            try:
                info, events = self._read_frame(offset, index, last)
            except TraceCorrupt as error:
                if remaining >= layout.TRAILER_LEN and self._pread(offset, 4) != layout.CHUNK_MAGIC \
                        and self._has_trailer():
                    self._stop_scan(offset, "recovery ignored the footer")
                else:
                    self._stop_scan(offset, error.what)
                break
            if _CHECKPOINT in info.counts:
                try:
                    pending = self._scan_checkpoint(info, events, pending)
                except TraceCorrupt as error:
                    self._stop_scan(offset, error.what)
                    break
            elif pending is not None:
                self._stop_scan(offset, f"chunk {index} interrupts checkpoint "
                                f"{len(self._checkpoints)}")
                break
            for event in events:
                if event.kind is _END:
                    self.end = event.payload if type(event.payload) is dict else None
            self.chunks.append(info)
            offset += info.length
            last = info.last_icount
        if pending is not None:  # an unfinished checkpoint cannot be loaded: drop its parts
            self.chunks = self.chunks[:pending.first_chunk]
            self.recovery_offset = self.chunks[-1].offset + self.chunks[-1].length \
                if self.chunks else self._body_offset
            self.recovery_reason = f"{self.recovery_reason}; an unfinished checkpoint before it was dropped"
        for info in self.chunks:
            totals.update(info.counts)
        del totals[_CHECKPOINT]
        self.event_counts = dict(totals)

    def _stop_scan(self, offset: int, reason: str) -> None:
        self.recovery_offset = offset
        self.recovery_reason = reason

    def _scan_checkpoint(self, info: ChunkInfo, events: list[Event],
                         pending: _CheckpointEntry | None) -> _CheckpointEntry | None:
        number = len(self._checkpoints)

        def corrupt(what: str) -> TraceCorrupt:
            return TraceCorrupt(self.path, info.offset, f"checkpoint {number}: {what}",
                                chunk=info.index)

        if len(events) != 1:
            raise corrupt("a checkpoint record shares its chunk with other records")
        record = _checkpoint_fields(events[0], corrupt)
        n, part, parts, full = record["n"], record["part"], record["parts"], record["full"]
        if n != number or not 0 <= part < parts:
            raise corrupt(f"record says checkpoint {n} part {part} of {parts}")
        if part == 0:
            if pending is not None:
                raise corrupt("starts before the previous checkpoint ended")
            if number == 0 and not full:
                raise corrupt("the first checkpoint is not a full base")
            pending = _CheckpointEntry(info.first_icount, full, info.index, parts)
        elif (pending is None or part != info.index - pending.first_chunk or parts != pending.parts
              or full != pending.full or info.first_icount != pending.icount):
            raise corrupt(f"part {part} of {parts} is out of sequence")
        if part == parts - 1:
            self._checkpoints.append(pending)
            return None
        return pending

    # --- chunks ----------------------------------------------------------------------------

    def _read_chunk(self, info: ChunkInfo) -> list[Event]:
        """The records of an indexed chunk, checked against the index."""
        checked, events = self._read_frame(info.offset, info.index, info.first_icount)
        if (checked.length, checked.first_icount, checked.last_icount, checked.counts) != \
                (info.length, info.first_icount, info.last_icount, info.counts):
            raise TraceCorrupt(self.path, info.offset, "chunk does not match the footer index",
                               chunk=info.index)
        return events

    def verify_checksums(self) -> None:
        """Check the checksum of every indexed chunk, checkpoints included, without decoding.

        Replaying from the start reads no checkpoint; this finds a damaged byte there too.

        Raises:
            TraceCorrupt: naming the first chunk whose bytes do not match their checksum.
        """
        for info in self.chunks:
            head = self._pread(info.offset, layout.CHUNK_FRAME_LEN)
            comp_len = info.length - layout.CHUNK_FRAME_LEN
            comp = self._pread(info.offset + layout.CHUNK_FRAME_LEN, comp_len)
            if len(head) < layout.CHUNK_FRAME_LEN or len(comp) < comp_len:
                raise TraceCorrupt(self.path, info.offset, "truncated chunk", chunk=info.index)
            (crc,) = layout.CHUNK_CRC.unpack_from(head, layout.CHUNK_HEAD.size)
            if zlib.crc32(comp, zlib.crc32(head[:layout.CHUNK_HEAD.size])) != crc:
                raise TraceCorrupt(self.path, info.offset, "chunk checksum mismatch", chunk=info.index)

    def _read_frame(self, offset: int, index: int, floor: int) -> tuple[ChunkInfo, list[Event]]:
        """Read, check and decode the chunk at ``offset``, which must be number ``index``.

        ``floor`` is the last icount before this chunk. Raises TraceCorrupt.
        """
        def corrupt(what: str) -> TraceCorrupt:
            return TraceCorrupt(self.path, offset, what, chunk=index)

        head = self._pread(offset, layout.CHUNK_FRAME_LEN)
        if len(head) < layout.CHUNK_FRAME_LEN:
            raise corrupt(f"truncated chunk header ({len(head)} of {layout.CHUNK_FRAME_LEN} bytes)")
        magic, number, comp_len, raw_len, n_records, first, last = layout.CHUNK_HEAD.unpack_from(head)
        if magic != layout.CHUNK_MAGIC:
            raise corrupt("no chunk here (bad chunk magic)")
        if number != index:
            raise corrupt(f"chunk header says it is chunk {number}")
        if not 0 < comp_len <= layout.MAX_CHUNK_COMP or not 0 < raw_len <= layout.MAX_CHUNK_RAW:
            raise corrupt(f"chunk sizes {comp_len} (compressed) / {raw_len} (raw) are beyond "
                          f"the caps {layout.MAX_CHUNK_COMP} / {layout.MAX_CHUNK_RAW}")
        if not 0 < n_records <= raw_len // layout.MIN_RECORD_LEN:
            raise corrupt(f"{n_records} records cannot fit in {raw_len} bytes")
        comp = self._pread(offset + layout.CHUNK_FRAME_LEN, comp_len)
        if len(comp) < comp_len:
            raise corrupt(f"truncated chunk ({len(comp)} of {comp_len} bytes of data)")
        (crc,) = layout.CHUNK_CRC.unpack_from(head, layout.CHUNK_HEAD.size)
        if zlib.crc32(comp, zlib.crc32(head[:layout.CHUNK_HEAD.size])) != crc:
            raise corrupt("chunk checksum mismatch")
        if not floor <= first <= last:
            raise corrupt(f"chunk icounts {first}..{last} go backwards (previous: {floor})")
        try:
            raw = lz4.block.decompress(comp, uncompressed_size=raw_len)
        except Exception as error:  # lz4 raises its own error class for any bad input
            raise corrupt(f"LZ4 data does not decompress: {error}") from None
        if len(raw) != raw_len:
            raise corrupt(f"LZ4 data decompresses to {len(raw)} bytes, not {raw_len}")
        # A chunk decodes into tens of thousands of fresh containers and no cycles; the
        # collector's passes over them cost more than the decoding, so it waits.
        collecting = gc.isenabled()
        gc.disable()
        try:
            records = layout.unpack_records(raw, n_records)
            events = self._check_records(records, corrupt, first)
        except ValueError as error:
            raise corrupt(str(error)) from None
        finally:
            if collecting:
                gc.enable()
        if events[0].icount != first or events[-1].icount != last:
            raise corrupt(f"records span icounts {events[0].icount}..{events[-1].icount}, "
                          f"the chunk header says {first}..{last}")
        counts = dict(Counter(map(_kind_of, events)))
        return ChunkInfo(index, offset, layout.CHUNK_FRAME_LEN + comp_len, first, last, counts), events

    @staticmethod
    def _check_records(records: list, corrupt: Callable[[str], TraceCorrupt],
                       floor: int) -> list[Event]:
        """Events from decoded records, each checked to be [icount delta >= 0, known kind, payload].

        ``floor`` is the chunk's first icount (from its frame); the first record's delta is 0.
        """
        events: list[Event] = []
        add = events.append
        kind_of = KIND_BY_NUMBER.get
        checks = PAYLOAD_CHECKS.get
        previous = floor
        for record in records:
            if type(record) is not list or len(record) != 3:
                raise corrupt(f"record {len(events)} is not a [icount, kind, payload] array")
            delta, kind, payload = record
            if type(delta) is not int or delta < 0 or (not events and delta):
                raise corrupt(f"record {len(events)} has icount delta {delta!r} (previous icount: {previous})")
            icount = previous + delta
            event_kind = kind_of(kind) if type(kind) is int else None
            if event_kind is None:
                raise corrupt(f"record {len(events)} has unknown event kind {kind!r}")
            check = checks(event_kind)
            problem = "it has no known shape" if check is None else check(payload)
            if problem is not None:
                raise corrupt(f"record {len(events)} ({event_kind.name} at icount {icount}): "
                              f"bad payload: {problem}")
            if icount > layout.MAX_ICOUNT:
                raise corrupt(f"record {len(events)} has icount {icount}, beyond 64 bits")
            previous = icount
            add(Event(icount, event_kind, payload))
        if not events:
            raise corrupt("chunk holds no records")
        return events

    # --- bytes ----------------------------------------------------------------------------

    def _pread(self, offset: int, length: int) -> bytes:
        if self._fd < 0:
            raise TraceError(f"{self.path}: trace reader is closed")
        try:
            data = os.pread(self._fd, length, offset)
            while len(data) < length:  # a short read is not necessarily the end of the file
                more = os.pread(self._fd, length - len(data), offset + len(data))
                if not more:
                    break
                data += more
        except OSError as error:
            raise TraceError(f"{self.path}: reading at offset {offset} failed: "
                             f"{error.strerror}") from None
        return data

    def _read_exact(self, offset: int, length: int, what: str) -> bytes:
        data = self._pread(offset, length)
        if len(data) < length:
            raise self._truncated(offset, length, what)
        return data

    def _truncated(self, offset: int, length: int, what: str) -> TraceCorrupt:
        return TraceCorrupt(self.path, offset, f"truncated: {what} needs {length} bytes, "
                            f"the file is {self.file_size} bytes")


def _open_trace(path: str) -> int:
    """Open ``path`` for reading, refusing anything but a regular file at once.

    O_NONBLOCK makes opening a FIFO return instead of waiting for a writer; the file
    type is checked before a byte is read. (Regular files ignore O_NONBLOCK.)
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        incomplete = path + ".incomplete"
        if os.path.exists(incomplete):
            raise TraceIncomplete(
                f"{path}: no such trace, but {incomplete} exists: the recording did not "
                f"finish (still running, or killed); open {incomplete} to recover what it "
                f"holds") from None
        raise TraceNotFound(f"{path}: no such trace file") from None
    except OSError as error:
        raise TraceNotFound(f"{path}: cannot open trace: {error.strerror}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise TraceNotFound(f"{path}: not a trace file (a {file_kind(mode)}, not a regular file)")
    return fd


def file_kind(mode: int) -> str:
    """'directory', 'FIFO', ... for an st_mode that is not a regular file."""
    for test, name in ((stat.S_ISDIR, "directory"), (stat.S_ISFIFO, "FIFO"),
                       (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"),
                       (stat.S_ISSOCK, "socket")):
        if test(mode):
            return name
    return "special file"


def _checkpoint_fields(event: Event, corrupt) -> dict:
    payload = event.payload
    if event.kind is not _CHECKPOINT or type(payload) is not dict:
        raise corrupt("is not a checkpoint record")
    for name, kind in (("n", int), ("part", int), ("parts", int), ("full", bool)):
        if type(payload.get(name)) is not kind:
            raise corrupt(f"field {name} is missing or not {kind.__name__}")
    if "pages" not in payload or "cpu" not in payload or "devices" not in payload:
        raise corrupt("fields pages, cpu or devices are missing")
    return payload


def _as_kind(kind: EventKind | int) -> EventKind:
    found = KIND_BY_NUMBER.get(kind) if type(kind) in (int, EventKind) else None
    if found is None:
        raise ValueError(f"unknown event kind {kind!r}")
    return found


def _need(value: object, kind: type, name: str):
    if type(value) is not kind:
        raise ValueError(f"{name} is {type(value).__name__}, not {kind.__name__}")
    return value

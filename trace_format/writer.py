"""TraceWriter: appends events and checkpoints to a trace, crash-safely.

The file is written as ``PATH.incomplete`` and renamed to ``PATH`` by ``close()``,
like rr. Events are buffered and written as one chunk when the buffer reaches
``chunk_target`` bytes or its oldest event is ``flush_interval`` seconds old, so a
killed recorder loses at most about that much. Spec: docs/trace-format.md.
"""

from __future__ import annotations

import math
import os
import time
from collections import Counter
from collections.abc import Callable, Mapping

from trace_format import layout
from trace_format.errors import TraceError, TraceExists, TraceWriteError
from trace_format.events import PAYLOAD_CHECKS, EventKind, check_end, is_state_digest
from trace_format.header import TraceHeader, encode_header
from trace_format.safefile import SymlinkRefused, create_new, refuse_symlink

# Kinds a caller may append: all but checkpoint records (write_checkpoint) and END (close).
_APPENDABLE = frozenset(int(kind) for kind in EventKind) - {EventKind.CHECKPOINT, EventKind.END}
_CHECKPOINT = int(EventKind.CHECKPOINT)
_END = int(EventKind.END)
# What the reader will accept, checked when written: a trace we write we can read back.
_CHECKS = {int(kind): check for kind, check in PAYLOAD_CHECKS.items()}


class TraceWriter:
    """Writes one trace file.

    Args:
        path: where the finished trace goes; it is written as ``path + ".incomplete"``
            until ``close()``.
        header: the machine and recording metadata (``TraceHeader.new(config, ...)``).
        flush_interval: longest time, in seconds, an appended event waits in memory
            before its chunk is written (checked on ``append`` and ``flush_if_due``).
        overwrite: replace an existing trace at ``path`` (and a stale
            ``path.incomplete``) instead of refusing.
        clock: monotonic clock in seconds; tests inject a fake one.
        chunk_target: uncompressed size at which a chunk is written.

    Raises:
        TraceExists: ``path`` or ``path.incomplete`` exists and overwrite is False.
        TraceWriteError: the file cannot be created or written.
        ValueError, TypeError: the header is malformed.
    """

    def __init__(self, path: str | os.PathLike, header: TraceHeader, *,
                 flush_interval: float = layout.FLUSH_INTERVAL, overwrite: bool = False,
                 clock: Callable[[], float] = time.monotonic,
                 chunk_target: int = layout.CHUNK_TARGET_RAW):
        if not 0 < chunk_target <= layout.MAX_CHUNK_RAW - layout.MAX_RECORD_LEN:
            raise ValueError(f"chunk_target {chunk_target} is outside "
                             f"(0, {layout.MAX_CHUNK_RAW - layout.MAX_RECORD_LEN}]")
        self.path = os.fspath(path)
        self.incomplete_path = self.path + ".incomplete"
        self.header = header
        header_bytes = encode_header(header)  # a bad header fails before any file exists
        self._mem_pages = header.config.mem_size >> layout.PAGE_SHIFT
        self._overwrite = overwrite
        self._interval = flush_interval
        self._clock = clock
        self._chunk_target = chunk_target
        self._pack = layout.make_packer().pack
        self._offset = 0
        self._closed = True  # until the file exists
        self._failed: str | None = None
        # The event buffer: packed records, their kinds, their total size.
        self._parts: list[bytes] = []
        self._kinds: list[int] = []
        self._size = 0
        self._first_icount = 0
        # append() compares against _last_icount only; closing or failing sets it to
        # infinity so that every later append takes the slow path and is refused.
        self._last_icount: float = 0
        self._final_icount = 0
        self._deadline = 0.0
        # What the footer will index.
        self._chunks: list[list] = []
        self._checkpoints: list[list] = []
        self._event_counts: Counter[int] = Counter()
        self._flushed_events = 0
        self.end: dict | None = None
        self.raw_chunk_bytes = 0              # msgpack bytes before compression, for summaries
        self.compressed_chunk_bytes = 0       # the same chunks on disk, frames included
        self._fd = self._create()
        try:
            self._write(header_bytes)
        except TraceError:
            os.close(self._fd)
            _unlink_quietly(self.incomplete_path)
            raise
        self._closed = False

    # --- the fast path -----------------------------------------------------------

    def append(self, icount: int, kind: EventKind | int, payload: object) -> None:
        """Record that ``kind`` happened at instruction count ``icount``.

        Costs a msgpack pack, a list append and a clock read; writes a chunk when one
        is due.

        Args:
            icount: instructions retired before the event; never less than the
                previous event's or checkpoint's.
            kind: an EventKind other than CHECKPOINT and END.
            payload: any msgpack-able value (see EventKind for each kind's convention).

        Raises:
            ValueError: icount goes backwards or is not an int, the kind is unknown,
                the payload cannot be packed or is larger than the record cap.
            TraceWriteError: the chunk could not be written.
        """
        if type(icount) is not int or icount < self._last_icount or kind not in _APPENDABLE:
            self._reject_event(icount, kind)
        check = _CHECKS.get(kind)
        problem = "it has no known shape (the kind has no entry in PAYLOAD_CHECKS)" if check is None else check(payload)
        if problem is not None:
            raise ValueError(f"cannot record {_kind_name(kind)} payload at icount {icount}: "
                             f"bad payload: {problem}")
        parts = self._parts
        try:
            # icounts are stored as the delta from the previous record of the chunk (the
            # first record's is 0: the frame holds its icount), so they pack into 1-3 bytes.
            packed = self._pack((icount - self._last_icount if parts else 0, kind, payload))
        except (TypeError, ValueError, OverflowError) as error:
            raise ValueError(f"cannot record {_kind_name(kind)} payload at icount {icount}: "
                             f"{error}") from None
        size = len(packed)
        if size > layout.MAX_RECORD_LEN:
            raise ValueError(f"{_kind_name(kind)} event at icount {icount} packs to {size} "
                             f"bytes; the format caps a record at {layout.MAX_RECORD_LEN}")
        self._last_icount = icount
        if not parts:
            self._first_icount = icount
            self._deadline = self._clock() + self._interval
        parts.append(packed)
        self._kinds.append(kind)
        self._size += size
        if self._size >= self._chunk_target or self._clock() >= self._deadline:
            self._flush_events()

    def append_many(self, kind: EventKind | int, records: list[tuple[int, object]]) -> None:
        """``append(icount, kind, payload)`` for each (icount, payload), in order: the same
        checks and the same bytes, with one clock read for the lot.

        Raises:
            ValueError, TraceWriteError: as ``append``; the records before the bad one are kept.
        """
        if kind not in _APPENDABLE:
            self._reject_event(records[0][0] if records else 0, kind)
        check = _CHECKS.get(kind)
        if check is None:
            raise ValueError(f"cannot record {_kind_name(kind)}: of no known shape")
        pack, parts, kinds = self._pack, self._parts, self._kinds
        cap, target = layout.MAX_RECORD_LEN, self._chunk_target
        for icount, payload in records:
            if type(icount) is not int or icount < self._last_icount:
                self._reject_event(icount, kind)
            problem = check(payload)
            if problem is not None:
                raise ValueError(f"cannot record {_kind_name(kind)} payload at icount {icount}: "
                                 f"bad payload: {problem}")
            try:
                packed = pack((icount - self._last_icount if parts else 0, kind, payload))
            except (TypeError, ValueError, OverflowError) as error:
                raise ValueError(f"cannot record {_kind_name(kind)} payload at icount {icount}: "
                                 f"{error}") from None
            if len(packed) > cap:
                raise ValueError(f"{_kind_name(kind)} event at icount {icount} packs to {len(packed)} "
                                 f"bytes; the format caps a record at {cap}")
            self._last_icount = icount
            if not parts:
                self._first_icount = icount
                self._deadline = self._clock() + self._interval
            parts.append(packed)
            kinds.append(kind)
            self._size += len(packed)
            if self._size >= target:
                self._flush_events()
                parts, kinds = self._parts, self._kinds
        if parts and self._clock() >= self._deadline:
            self._flush_events()

    def flush_if_due(self, now: float | None = None) -> None:
        """Write the buffered events if the oldest is ``flush_interval`` old.

        The recorder calls this from its main loop (e.g. between emulation slices and
        while the guest idles), since ``append`` only looks at the clock when an event
        arrives.

        Args:
            now: the current clock reading, if the caller has one; else the clock is read.
        """
        if self._parts and (self._clock() if now is None else now) >= self._deadline:
            self._flush_events()

    def flush_due(self, now: float | None = None) -> bool:
        """True when ``flush_if_due`` would write a chunk now (events wait, the oldest is old)."""
        return bool(self._parts) and (self._clock() if now is None else now) >= self._deadline

    def flush(self) -> None:
        """Write the buffered events now, whatever their age."""
        self._check_open()
        self._flush_events()

    # --- checkpoints -----------------------------------------------------------------

    def write_checkpoint(self, icount: int, cpu: Mapping, devices: Mapping,
                         pages: Mapping[int, bytes], *, full: bool = False,
                         digest: list | None = None) -> None:
        """Record the machine state at ``icount``.

        Buffered events are written first, so every event appended before this call
        comes before the checkpoint in the trace and every later one after it.

        Args:
            icount: instruction count of the state; not less than the last event's.
            cpu: register name -> value, any msgpack-able dict.
            devices: device state, any msgpack-able dict.
            pages: guest-physical page number (address >> 12) -> its 4096 bytes. The
                first checkpoint (and any with ``full=True``) is a base: pass every
                non-zero page; a page missing from a base is zero. Later checkpoints
                pass only the pages changed since the previous checkpoint (a page that
                became zero is passed as 4096 zero bytes).
            full: make this checkpoint a new base, so loading later checkpoints does
                not need to go back to the first one.
            digest: the machine's state digest at ``icount`` ([rip, 16-byte hash,
                16-byte hash]), so that whoever restores the checkpoint can check it.

        Raises:
            ValueError: icount goes backwards, a page number or page size is wrong, or
                cpu+devices pack to more than the record cap.
            TraceWriteError: the checkpoint could not be written.
        """
        self._check_open()
        if type(icount) is not int or icount < self._last_icount:
            raise ValueError(f"checkpoint icount {icount!r} is not an int >= the last "
                             f"recorded icount {self._last_icount}")
        if not isinstance(cpu, Mapping) or not isinstance(devices, Mapping):
            raise ValueError("checkpoint cpu and devices must be dicts")
        numbers = sorted(pages)
        for number in numbers:
            page = pages[number]
            if type(number) is not int or not 0 <= number < self._mem_pages:
                raise ValueError(f"checkpoint page number {number!r} is outside guest RAM "
                                 f"(0..{self._mem_pages - 1})")
            if not isinstance(page, (bytes, bytearray, memoryview)) or len(page) != layout.PAGE_SIZE:
                raise ValueError(f"checkpoint page {number:#x} is not {layout.PAGE_SIZE} bytes")
        if digest is not None and not is_state_digest(digest):
            raise ValueError("checkpoint digest must be [rip, 16-byte hash, 16-byte hash]")
        full = bool(full) or not self._checkpoints
        per = layout.CHECKPOINT_PAGES_PER_RECORD
        batches = [numbers[i:i + per] for i in range(0, len(numbers), per)] or [[]]
        number = len(self._checkpoints)

        def record(part: int) -> bytes:
            return self._pack((0, _CHECKPOINT, {               # alone in its chunk: delta 0
                "n": number, "part": part, "parts": len(batches), "full": full,
                "cpu": dict(cpu) if part == 0 else None,
                "devices": dict(devices) if part == 0 else None,
                "digest": digest if part == 0 else None,
                "pages": [[pn, bytes(pages[pn])] for pn in batches[part]],
            }))

        try:
            first = record(0)  # the only part whose size the caller controls
        except (TypeError, ValueError, OverflowError) as error:
            raise ValueError(f"cannot record checkpoint at icount {icount}: {error}") from None
        if len(first) > layout.MAX_RECORD_LEN:
            raise ValueError(f"checkpoint cpu+devices state at icount {icount} packs to "
                             f"{len(first)} bytes; the format caps a record at "
                             f"{layout.MAX_RECORD_LEN}")
        self._flush_events()
        self._last_icount = icount
        first_chunk = len(self._chunks)
        for part in range(len(batches)):
            self._write_chunk(first if part == 0 else record(part), 1, icount, icount,
                              {_CHECKPOINT: 1})
        self._checkpoints.append([icount, full, first_chunk, len(batches)])

    # --- the end -----------------------------------------------------------------------

    def close(self, end: dict, *, icount: int | None = None) -> None:
        """Finish the trace: END event, footer, fsync, rename to ``path``. Idempotent.

        Args:
            end: how the run ended, a msgpack-able dict such as
                {"reason": "poweroff", "exit_status": 0}.
            icount: icount of the END event; defaults to the last recorded icount.

        Raises:
            ValueError: ``end`` is not a msgpack-able dict.
            TraceExists: ``path`` appeared during recording; the trace stays at
                ``path.incomplete``.
            TraceWriteError: writing failed; what was written stays in ``path.incomplete``.
        """
        if self._closed:
            return
        if not isinstance(end, dict):
            raise ValueError(f"end must be a dict, not {type(end).__name__}")
        problem = check_end(end)
        if problem is not None:
            raise ValueError(f"the end map is malformed: {problem}")
        if self._failed is not None:
            self._shut()
            raise TraceWriteError(self._failed)
        icount = int(self._last_icount) if icount is None else icount
        if type(icount) is not int or icount < self._last_icount:
            raise ValueError(f"END icount {icount!r} is not an int >= the last recorded "
                             f"icount {self._last_icount}")
        try:
            packed = self._pack((icount - int(self._last_icount) if self._parts else 0, _END, end))
        except (TypeError, ValueError, OverflowError) as error:
            raise ValueError(f"cannot record the end {end!r}: {error}") from None
        if len(packed) > layout.MAX_RECORD_LEN:
            raise ValueError(f"the end record packs to {len(packed)} bytes; the format caps "
                             f"a record at {layout.MAX_RECORD_LEN}")
        if not self._parts:
            self._first_icount = icount
        self._last_icount = icount
        self._parts.append(packed)
        self._kinds.append(_END)
        try:
            self._flush_events()
            footer = self._pack({
                "chunks": self._chunks,
                "checkpoints": self._checkpoints,
                "event_counts": sorted(self._event_counts.items()),
                "end": end,
            })
            footer_offset = self._offset
            self._write(footer)
            self._write(layout.pack_trailer(footer_offset, footer, len(self._chunks)))
            try:
                os.fsync(self._fd)
            except OSError as error:
                raise self._write_error(error) from None
        finally:
            self._shut()
        self.end = end
        self._publish()

    def __enter__(self) -> "TraceWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if self._closed:
            return False
        if exc_type is None:
            end = {"reason": "stopped", "why": "unclosed"}
        elif issubclass(exc_type, KeyboardInterrupt):
            end = {"reason": "stopped", "why": "sigint"}
        else:
            end = {"reason": "stopped", "why": "error"}
        try:
            self.close(end)
        except TraceError:
            if exc_type is None:
                raise
            # The exception already propagating says more; the data stays in .incomplete.
        return False

    def __del__(self) -> None:
        # Dropped without close(): behave like a killed recorder, leave .incomplete.
        if not getattr(self, "_closed", True):
            self._shut()

    # --- counters for the recorder's summary -------------------------------------------

    @property
    def bytes_written(self) -> int:
        """Bytes in the file so far (buffered events not included)."""
        return self._offset

    @property
    def events_written(self) -> int:
        """Events accepted by ``append`` (END included), buffered or written."""
        return self._flushed_events + len(self._parts)

    @property
    def chunks_written(self) -> int:
        return len(self._chunks)

    @property
    def checkpoints_written(self) -> int:
        return len(self._checkpoints)

    @property
    def last_icount(self) -> int:
        """The icount of the last event or checkpoint recorded."""
        if self._closed or self._failed is not None:
            return self._final_icount
        return int(self._last_icount)

    @property
    def closed(self) -> bool:
        return self._closed

    # --- internals ---------------------------------------------------------------------

    def _create(self) -> int:
        if not self._overwrite:
            if os.path.lexists(self.path):
                raise TraceExists(f"{self.path}: a trace already exists; refusing to "
                                  f"overwrite it")
        else:
            try:
                refuse_symlink(self.path)
            except SymlinkRefused as exc:
                raise TraceWriteError(f"{exc}: refusing to replace it (remove it first)") from None
            _unlink_quietly(self.incomplete_path)
        try:
            return create_new(self.incomplete_path)
        except FileExistsError:
            if os.path.islink(self.incomplete_path):
                raise TraceWriteError(f"{self.incomplete_path}: is a symbolic link; vmrr does not "
                                      f"write through links (remove it)") from None
            raise TraceExists(
                f"{self.incomplete_path}: exists: another recording is writing it, or one "
                f"was killed (open it to recover its events, or remove it)") from None
        except OSError as error:
            raise TraceWriteError(f"{self.incomplete_path}: cannot create trace: "
                                  f"{error.strerror}") from None

    def _flush_events(self) -> None:
        parts = self._parts
        if not parts:
            return
        counts = Counter(self._kinds)
        raw = b"".join(parts)
        self._write_chunk(raw, len(parts), self._first_icount, self._last_icount, counts)
        self._event_counts.update(counts)
        self._flushed_events += len(parts)
        self._parts = []
        self._kinds = []
        self._size = 0

    def _write_chunk(self, raw: bytes, n_records: int, first_icount: int, last_icount: int,
                     counts: Mapping[int, int]) -> None:
        if last_icount > layout.MAX_ICOUNT:
            raise ValueError(f"icount {last_icount} does not fit in 64 bits")
        frame = layout.pack_chunk(len(self._chunks), raw, n_records, first_icount, last_icount)
        offset = self._offset
        self._write(frame)
        self.raw_chunk_bytes += len(raw)
        self.compressed_chunk_bytes += len(frame)
        self._chunks.append([offset, len(frame), first_icount, last_icount, n_records,
                             sorted([int(kind), n] for kind, n in counts.items())])

    def _write(self, data: bytes) -> None:
        if self._failed is not None:
            raise TraceWriteError(self._failed)
        view = memoryview(data)
        try:
            while view:
                written = os.write(self._fd, view)
                self._offset += written
                view = view[written:]
        except OSError as error:
            raise self._write_error(error) from None

    def _write_error(self, error: OSError) -> TraceWriteError:
        self._failed = (f"{self.incomplete_path}: writing the trace failed at offset "
                        f"{self._offset}: {error.strerror}")
        self._bar_appends()
        return TraceWriteError(self._failed)

    def _bar_appends(self) -> None:
        if self._last_icount != math.inf:
            self._final_icount = int(self._last_icount)
            self._last_icount = math.inf

    def _shut(self) -> None:
        self._bar_appends()
        self._closed = True
        os.close(self._fd)

    def _publish(self) -> None:
        """Rename PATH.incomplete to PATH, never replacing a trace unless told to."""
        try:
            if self._overwrite:
                os.replace(self.incomplete_path, self.path)
            else:
                try:
                    os.link(self.incomplete_path, self.path)
                except FileExistsError:
                    raise TraceExists(f"{self.path}: a trace appeared there during recording; "
                                      f"this one is kept as {self.incomplete_path}") from None
                except OSError:  # no hard links on this file system
                    if os.path.lexists(self.path):
                        raise TraceExists(f"{self.path}: a trace appeared there during "
                                          f"recording; this one is kept as "
                                          f"{self.incomplete_path}") from None
                    os.rename(self.incomplete_path, self.path)
                else:
                    os.unlink(self.incomplete_path)
        except TraceError:
            raise
        except OSError as error:
            raise TraceWriteError(f"{self.incomplete_path}: cannot rename to {self.path}: "
                                  f"{error.strerror}") from None
        _fsync_directory(os.path.dirname(os.path.abspath(self.path)))

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"{self.path}: trace writer is closed")
        if self._failed is not None:
            raise TraceWriteError(self._failed)

    def _reject_event(self, icount: object, kind: object) -> None:
        self._check_open()
        if type(icount) is not int:
            raise ValueError(f"icount must be an int, not {type(icount).__name__}")
        if icount < 0:
            raise ValueError(f"icount {icount} is negative")
        if icount < self._last_icount:
            raise ValueError(f"icount {icount} of a {_kind_name(kind)} event is less than the "
                             f"last recorded icount {self._last_icount}")
        if kind == _CHECKPOINT:
            raise ValueError("checkpoints are written with write_checkpoint(), not append()")
        if kind == _END:
            raise ValueError("the END event is written by close(end), not append()")
        raise ValueError(f"unknown event kind {kind!r}")


def _kind_name(kind: object) -> str:
    try:
        return EventKind(kind).name
    except ValueError:
        return repr(kind)


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _fsync_directory(directory: str) -> None:
    """Make the rename durable; some file systems cannot fsync a directory."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)

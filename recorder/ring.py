"""The flight recorder's ring: a recording kept as a bounded run of segment traces.

``vmrr record --ring 10m|2G`` (docs/flight-recorder.md). The recorder writes its trace as
*segments* in a private directory (``TRACE.ring/``, mode 0700): each segment is a window
trace of its own (header flag ``window``) that begins with a full checkpoint of the
machine and the content of every file that state refers to, so any segment, and any run
of consecutive segments, replays on its own. When the current segment has lasted long
enough (or grown large enough) the recorder closes it at a slice boundary and starts the
next at the same icount; the oldest segments are deleted once the newer ones cover the
window (``--ring DURATION``) or to keep the directory under the size (``--ring SIZE``).

File content (a library, a file the program read) is kept once, in ``TRACE.ring/blobs/``
(named by its SHA-256), not in every segment: a segment lists the contents its state and
its events name (``segment-N.refs``), and a content no kept segment names is deleted with
the last segment that did. A segment file alone therefore replays only with its contents
beside it: ``vmrr save --from-ring`` joins segments and contents into one trace.

A *save* joins the kept segments into one ordinary trace (trace_format/window.py). The
recorder captures what the save needs between two slices — the writer flushed, each
segment hard-linked into a private folder so that dropping it later does not pull it
away, the state digest of the window's end — and a background thread writes the trace
while the guest runs on. Saves queue and are independent of each other.
"""

from __future__ import annotations

import hashlib
import os
import queue
import re
import shutil
import stat
import threading
import time
from dataclasses import dataclass, field

from trace_format import TraceReader
from trace_format.errors import TraceError
from trace_format.safefile import create_new
from trace_format.window import WindowSource, WindowStats, write_window
from vmm.errors import UsageError

SEGMENT_NAME = re.compile(r"segment-(\d{6})\.vmrr(\.incomplete)?$")
MIN_SEGMENT_SECONDS = 1.0
MAX_SEGMENT_SECONDS = 300.0
SEGMENTS_PER_WINDOW = 4            # a window of W keeps W .. W + W/4 of history
_DURATION_UNITS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}
_SIZE_UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
MIN_RING_BYTES = 4 << 20
BLOCK = 4096                       # a file's last block, partly used
CHUNK_ROOM = 512 << 10             # a chunk (256 KiB of records, lz4 worst case) written between looks


@dataclass(frozen=True)
class RingBound:
    """How much history the ring keeps: at least ``seconds`` of it, or at most ``bytes`` on disk."""

    seconds: float | None = None
    bytes: int | None = None

    @property
    def segment_seconds(self) -> float:
        if self.seconds is None:
            return MAX_SEGMENT_SECONDS
        return min(max(self.seconds / SEGMENTS_PER_WINDOW, MIN_SEGMENT_SECONDS), MAX_SEGMENT_SECONDS)

    def describe(self) -> str:
        if self.seconds is not None:
            return f"the last {_seconds_text(self.seconds)}"
        return f"at most {self.bytes >> 20} MiB on disk"


def parse_ring(spec: str) -> RingBound:
    """'10m', '90s', '1h', '600' (seconds) → a duration; '2G', '500M', '64MiB' → a size.

    Lowercase m is minutes, uppercase M mebibytes.

    Raises:
        UsageError: naming the option and what it expects.
    """
    text = spec.strip()
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([a-zA-Z]*)", text)
    if match is None or len(text) > 32:
        raise UsageError(f"--ring {spec[:40]}: expected a duration (10m, 90s, 1h) or a size (2G, 500M)")
    number, unit = float(match.group(1)), match.group(2)
    if unit == "" or unit in _DURATION_UNITS:
        seconds = number * _DURATION_UNITS.get(unit, 1)
        if not 1.0 <= seconds <= 365 * 86400:
            raise UsageError(f"--ring {spec}: a window between 1 second and a year")
        return RingBound(seconds=seconds)
    size_unit = unit.upper().removesuffix("B").removesuffix("I")
    if size_unit not in _SIZE_UNITS or (unit[0] == "m" and unit != "mb"):
        raise UsageError(f"--ring {spec}: unknown unit {unit!r} (s, m, h for a duration; K, M, G, T for a size)")
    size = int(number * _SIZE_UNITS[size_unit])
    if size < MIN_RING_BYTES:
        raise UsageError(f"--ring {spec}: at least {MIN_RING_BYTES >> 20}M (a segment holds a whole "
                         f"checkpoint of the machine)")
    return RingBound(bytes=size)


def _seconds_text(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


def make_private_dir(path: str) -> None:
    """Create ``path`` as a new directory only its owner can enter (never an existing one).

    Raises:
        UsageError: it exists (an earlier ring: save it or remove it) or cannot be made.
    """
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        raise UsageError(f"{path}: exists (a flight recorder's ring from an earlier run? "
                         f"'vmrr save --from-ring {path} -o FILE' saves what it holds; remove "
                         f"it to start afresh)") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot create the ring directory: {exc.strerror}") from None
    os.chmod(path, 0o700)                          # whatever the umask


@dataclass
class Segment:
    """One segment file of the ring."""

    number: int
    path: str                  # the finished name; the file is path + ".incomplete" while open
    start_icount: int
    start_unix: float
    bytes: int = 0
    end_icount: int | None = None
    closed: bool = False
    refs: set[str] = field(default_factory=set)    # content ids its state and events name

    @property
    def file(self) -> str:
        return self.path if self.closed else self.path + ".incomplete"


@dataclass
class SaveJob:
    """A save captured between two slices, written by the saver thread."""

    output: str
    trigger: str
    end: dict
    links: list[tuple[str, bool]]          # (hard link, closed) per segment, oldest first
    contents: dict[str, str]               # content id -> hard link of its file in the store
    chunk_limit: int                       # chunks of the open segment that belong to the window
    folder: str
    window: dict
    overwrite: bool = False
    done: threading.Event = field(default_factory=threading.Event)
    stats: WindowStats | None = None
    seconds: float = 0.0
    error: str | None = None


class Ring:
    """The ring directory, its segments and the saves made from them.

    Args:
        directory: the ring directory to create (private; must not exist).
        bound: how much history to keep.
        tool_version: written into saved traces.
        report: called with a line for the user when a save finishes (from the saver thread).
    """

    def __init__(self, directory: str, bound: RingBound, *, tool_version: str,
                 report=None) -> None:
        make_private_dir(directory)
        self.directory = directory
        self.store = os.path.join(directory, "blobs")
        os.mkdir(self.store, 0o700)
        self.stored: dict[str, int] = {}          # content id -> bytes, in the store
        self.bound = bound
        self.tool_version = tool_version
        self.report = report or (lambda line: None)
        self.segments: list[Segment] = []
        self.started_unix = time.time()
        self.dropped_segments = 0
        self.dropped_bytes = 0
        self.dropped_until_unix = self.started_unix
        self.saves: list[SaveJob] = []           # the saves not written yet, and the latest
        self.saved = 0                           # windows written
        self._save_number = 0
        self._jobs: queue.Queue[SaveJob | None] = queue.Queue()
        self._saver = threading.Thread(target=self._save_loop, name="vmrr-ring-saver", daemon=True)
        self._saver.start()

    # -- segments --------------------------------------------------------------------

    def new_segment(self, start_icount: int) -> Segment:
        number = self.segments[-1].number + 1 if self.segments else 1
        segment = Segment(number, os.path.join(self.directory, f"segment-{number:06d}.vmrr"),
                          start_icount, time.time())
        self.segments.append(segment)
        return segment

    def segment_window(self, segment: Segment) -> dict:
        """The header's window map of a segment file."""
        return {"start_icount": segment.start_icount, "start_unix": segment.start_unix,
                "recording_started_unix": self.started_unix, "segment": segment.number,
                "trigger": "segment"}

    def closed(self, segment: Segment, end_icount: int, size: int) -> None:
        segment.closed, segment.end_icount, segment.bytes = True, end_icount, size
        fd = create_new(segment.path[:-len(".vmrr")] + ".refs")
        with os.fdopen(fd, "w") as f:
            f.write("".join(f"{file_id}\n" for file_id in sorted(segment.refs)))

    def keep_content(self, segment: Segment, file_id: str, data: bytes) -> None:
        """``segment`` names this file content: it must be in the store while the segment is kept."""
        segment.refs.add(file_id)
        if file_id in self.stored:
            return
        path = os.path.join(self.store, file_id)
        try:
            fd = create_new(path)
        except FileExistsError:
            os.unlink(path)                       # a half-written one: a content is its name
            fd = create_new(path)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        self.stored[file_id] = len(data)

    def rotation_due(self, now_unix: float, current_bytes: int, checkpoint_bytes: int) -> bool:
        """Time for the next segment: the current one has lasted long enough, or (--ring SIZE)
        has gathered a quarter of what the bound leaves for events (at least as much as
        its own full checkpoint, so that checkpoints never crowd out history)."""
        segment = self.segments[-1]
        if now_unix - segment.start_unix >= self.bound.segment_seconds:
            return True
        if self.bound.bytes is None:
            return False
        room = self.bound.bytes - sum(self.stored.values()) - checkpoint_bytes
        return current_bytes - checkpoint_bytes >= max(checkpoint_bytes, room // SEGMENTS_PER_WINDOW)

    def too_small(self, checkpoint_bytes: int) -> str | None:
        """Why --ring SIZE cannot keep two segments of this program, or None."""
        if self.bound.bytes is None:
            return None
        needed = sum(self.stored.values()) + 4 * checkpoint_bytes
        if needed <= self.bound.bytes:
            return None
        return (f"--ring {self.bound.bytes >> 20}M is small for this program: its file contents "
                f"({sum(self.stored.values()) >> 20} MiB) and full checkpoints ({checkpoint_bytes >> 20} MiB "
                f"each) leave little room for history; {needed >> 20 << 1}M or more keeps a useful window")

    def disk_bytes(self, current_bytes: int) -> int:
        """What the ring takes on disk, the open segment at ``current_bytes`` included; each
        file rounded up to whole blocks, and room for a chunk the writer may add before the
        next look (a ring bounded by size must stay under it whenever du looks)."""
        files = 2 * len(self.segments) + len(self.stored)
        return (sum(s.bytes for s in self.segments if s.closed) + current_bytes
                + sum(self.stored.values()) + files * BLOCK + CHUNK_ROOM)

    def drop_old(self, now_unix: float, current_bytes: int) -> None:
        """Delete the oldest segments the window no longer needs."""
        while len(self.segments) > 1:
            oldest, successor = self.segments[0], self.segments[1]
            if self.bound.seconds is not None:
                if now_unix - successor.start_unix < self.bound.seconds:
                    return
            elif self.disk_bytes(current_bytes) <= self.bound.bytes:
                return
            for path in (oldest.file, oldest.path[:-len(".vmrr")] + ".refs"):
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass
            self.segments.pop(0)
            self.dropped_segments += 1
            self.dropped_bytes += oldest.bytes
            self.dropped_until_unix = successor.start_unix
            self._forget_contents()

    def _forget_contents(self) -> None:
        """Delete the stored contents no kept segment names."""
        named = set().union(*(segment.refs for segment in self.segments))
        for file_id in [f for f in self.stored if f not in named]:
            try:
                os.unlink(os.path.join(self.store, file_id))
            except FileNotFoundError:
                pass
            del self.stored[file_id]

    # -- saves -----------------------------------------------------------------------

    def next_output(self, base: str) -> str:
        """``incident-1.vmrr``, ``incident-2.vmrr``, ... beside ``base``, never an existing name."""
        stem, dot, suffix = base.rpartition(".")
        if not dot or "/" in suffix:
            stem, suffix = base, "vmrr"
        while True:
            self._save_number += 1
            path = f"{stem}-{self._save_number}.{suffix}"
            if not os.path.lexists(path) and not os.path.lexists(path + ".incomplete"):
                return path

    def capture(self, output: str, trigger: str, end: dict, *, current_chunks: int,
                overwrite: bool = False) -> SaveJob:
        """Take what a save of the current window needs, now (between two slices).

        The open segment's writer must have been flushed: its first ``current_chunks``
        chunks are the window's end. Each segment is hard-linked into a private folder,
        so that the ring may drop it while the save reads it.
        """
        self._save_number_folder = getattr(self, "_save_number_folder", 0) + 1
        folder = os.path.join(self.directory, f"save-{self._save_number_folder}")
        os.mkdir(folder, 0o700)
        links = []
        for segment in self.segments:
            name = os.path.basename(segment.file)
            link = os.path.join(folder, name)
            os.link(segment.file, link)
            links.append((link, segment.closed))
        contents = {}
        for file_id in sorted(set().union(*(segment.refs for segment in self.segments))):
            if file_id in self.stored:
                contents[file_id] = os.path.join(folder, file_id)
                os.link(os.path.join(self.store, file_id), contents[file_id])
        first = self.segments[0]
        window = {"start_unix": first.start_unix, "end_icount": end["icount"], "end_unix": time.time(),
                  "trigger": trigger, "recording_started_unix": self.started_unix,
                  "segments": len(self.segments), "dropped_segments": self.dropped_segments,
                  "dropped_bytes": self.dropped_bytes,
                  "dropped_seconds": max(0.0, first.start_unix - self.started_unix)}
        job = SaveJob(output, trigger, end, links, contents, current_chunks, folder, window, overwrite)
        # Finished saves are forgotten (a recorder may save thousands of windows in its life).
        self.saves = [old for old in self.saves if not old.done.is_set()] + [job]
        self._jobs.put(job)
        return job

    def _save_loop(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            self._write(job)
            if job.error is None:
                self.saved += 1
            job.done.set()
            self.report(self.describe_save(job))

    def _write(self, job: SaveJob) -> None:
        start = time.perf_counter()
        readers: list[TraceReader] = []
        try:
            for link, closed in job.links:
                if closed:
                    readers.append(TraceReader(link))
                else:
                    readers.append(TraceReader(link, recover=True, chunk_limit=job.chunk_limit))
            job.stats = write_window(job.output, [WindowSource(r) for r in readers], window=job.window,
                                     end=job.end, tool_version=self.tool_version,
                                     overwrite=job.overwrite, contents=job.contents)
        except (TraceError, ValueError, OSError) as exc:
            job.error = str(exc)
        finally:
            for reader in readers:
                reader.close()
            shutil.rmtree(job.folder, ignore_errors=True)
            job.seconds = time.perf_counter() - start

    @staticmethod
    def describe_save(job: SaveJob) -> str:
        if job.error is not None:
            return f"flight recorder: saving {job.output} ({job.trigger}) failed: {job.error}"
        stats = job.stats
        span = job.window["end_unix"] - job.window["start_unix"]
        return (f"flight recorder: saved {job.output} ({job.trigger}): icount {stats.start_icount} to "
                f"{stats.end_icount}, {span:.1f} s of history, {stats.bytes} bytes, in {job.seconds:.2f} s")

    def wait(self) -> None:
        """Until every save asked for so far is written."""
        for job in list(self.saves):
            job.done.wait()

    def close(self, *, keep: bool) -> None:
        """Stop the saver; remove the ring directory unless ``keep``."""
        self._jobs.put(None)
        self._saver.join()
        if not keep:
            for segment in self.segments:
                for path in (segment.path, segment.path + ".incomplete", segment.path[:-len(".vmrr")] + ".refs"):
                    try:
                        os.unlink(path)
                    except FileNotFoundError:
                        pass
            for file_id in self.stored:
                try:
                    os.unlink(os.path.join(self.store, file_id))
                except FileNotFoundError:
                    pass
            for path in (self.store, self.directory):
                try:
                    os.rmdir(path)
                except OSError:
                    pass


def _holds(path: str, file_id: str) -> bool:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest() == file_id


def segments_in(directory: str) -> list[tuple[int, str]]:
    """The segment files of a ring directory, (number, path) in order.

    Raises:
        UsageError: not a private directory of this user's, or no segment in it.
    """
    try:
        info = os.lstat(directory)
    except OSError as exc:
        raise UsageError(f"--from-ring {directory}: {exc.strerror}") from None
    if not stat.S_ISDIR(info.st_mode):
        raise UsageError(f"--from-ring {directory}: not a directory")
    if info.st_uid != os.getuid():
        raise UsageError(f"--from-ring {directory}: belongs to another user")
    found = []
    for name in os.listdir(directory):
        match = SEGMENT_NAME.fullmatch(name)
        if match:
            found.append((int(match.group(1)), os.path.join(directory, name)))
    if not found:
        raise UsageError(f"--from-ring {directory}: holds no segment (segment-NNNNNN.vmrr)")
    return sorted(found)


def save_from_ring(directory: str, output: str, *, tool_version: str,
                   overwrite: bool = False) -> WindowStats:
    """Join what a ring directory holds (a recorder killed, or still running) into a trace.

    The newest run of consecutive segments is used; a last segment cut before its first
    checkpoint was complete is left out. The trace ends where the last segment's records
    end (an END without a final digest: what a killed recorder leaves cannot vouch for
    its final state; every digest and checkpoint before it is checked by replay --verify).

    Raises:
        UsageError: nothing usable in the directory. TraceError: a segment is damaged.
    """
    readers: list[TraceReader] = []
    found = segments_in(directory)
    try:
        for _number, path in found:
            try:
                reader = TraceReader(path, recover=path.endswith(".incomplete"))
            except TraceError:
                if path == found[-1][1]:
                    break                          # killed while writing its first checkpoint
                raise
            if readers and readers[-1].last_icount > reader.first_icount:
                for old in readers:
                    old.close()
                readers = []                       # not a continuation: start over from here
            readers.append(reader)
        if not readers:
            raise UsageError(f"--from-ring {directory}: no segment holds a complete checkpoint")
        last = readers[-1]
        first_window = readers[0].window or {}
        if last.end is None:
            end = {"reason": "killed", "why": "the recorder was killed; its records end here",
                   "icount": last.last_icount}
        elif last.end.get("why") == "segment":       # killed before its next segment had a checkpoint
            end = {**last.end, "why": "the recorder was killed; the window ends with its last whole segment"}
        else:
            end = dict(last.end)                     # it had ended (and its own save failed)
        window = {"start_unix": first_window.get("start_unix", readers[0].header.created_unix),
                  "end_icount": end["icount"], "trigger": "from-ring",
                  "segments": len(readers)}
        if "recording_started_unix" in first_window:
            window["recording_started_unix"] = first_window["recording_started_unix"]
        # Every stored content: the refs of a segment the recorder did not close are lost.
        store = os.path.join(directory, "blobs")
        contents = {}
        for name in sorted(os.listdir(store)) if os.path.isdir(store) else ():
            path = os.path.join(store, name)
            if re.fullmatch(r"[0-9a-f]{64}", name) and _holds(path, name):
                contents[name] = path                # not one the kill cut short
        return write_window(output, [WindowSource(r) for r in readers], window=window, end=end,
                            tool_version=tool_version, overwrite=overwrite, contents=contents)
    finally:
        for reader in readers:
            reader.close()

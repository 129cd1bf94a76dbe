"""One recording: a Machine on the live host, its inputs logged into a trace file."""

from __future__ import annotations

import ctypes
import mmap
import os
import queue
import re
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field

import msgpack

from trace_format import MachineConfig, TraceHeader, TraceWriter
from trace_format.events import EventKind
from vmm.boundary import Chaos, LiveBoundary
from vmm.loader import GuestImage
from vmm.machine import (BOOT_INFO, PAGE, RAM_START, Machine, Outcome, RunResult, changed_pages, digest_of,
                          ram_digest_of)

DEFAULT_DIGEST_EVERY = 200_000_000
DIGEST_INTERVAL = 1.0              # ... and at least one digest per second of recording
# Events wait at most this long in memory. The writer's check runs between slices (up to
# ~0.2 s apart on a loaded host), so 0.8 s keeps a killed recording's loss under 1 s.
FLUSH_INTERVAL = 0.8
DEFAULT_CHECKPOINT_EVERY = 500_000_000
MAX_PEERS = 1000                   # distinct network peers a Linux program's summary lists
RING_CHECKPOINT_SECONDS = 5.0      # --ring: a checkpoint (the pages changed) this often at least
OUTPUT_TAIL = 4096                 # --save-on-output: bytes of a stream kept to match across writes
_ZERO_PAGE = bytes(PAGE)
_BLOB_ID = re.compile(rb"\xd9\x40([0-9a-f]{64})")     # a content id in packed state (msgpack str 8)


@dataclass
class RecordSummary:
    """What a recording did, for the user and for scripts."""

    path: str
    result: RunResult
    wall_seconds: float
    events_by_kind: dict[str, int] = field(default_factory=dict)
    trace_bytes: int = 0
    checkpoints: int = 0
    input_bytes: int = 0
    compression: float = 0.0          # chunk bytes before / after lz4
    syscalls: dict[str, int] | None = None        # a Linux program: system calls by name
    unimplemented: dict[str, int] = field(default_factory=dict)
    file_bytes: int = 0                           # content of files the program read, stored once
    ring: list[str] = field(default_factory=list)   # --ring: what the flight recorder kept and saved

    @property
    def instructions(self) -> int:
        return self.result.icount

    def lines(self) -> list[str]:
        mips = self.instructions / self.wall_seconds / 1e6 if self.wall_seconds > 0 else 0.0
        events = ", ".join(f"{k.lower()} {n}" for k, n in sorted(self.events_by_kind.items())) or "none"
        written = (f"flight recorder: {self.trace_bytes} bytes of segments written over the run"
                   if self.ring else f"trace {self.path}: {self.trace_bytes} bytes")
        return [
            f"{written}, {self.checkpoints} checkpoints, compression {self.compression:.1f}x",
            f"{self.instructions} instructions in {self.wall_seconds:.2f} s ({mips:.1f} MIPS)",
            f"events: {events}",
            f"host input: {self.input_bytes} bytes",
        ] + self._linux_lines() + self.ring

    def _linux_lines(self) -> list[str]:
        if self.syscalls is None:
            return []
        result = self.result
        if result.crash is not None:
            ended = f"crashed: {result.crash.kind}"
        elif result.outcome.value == "poweroff":
            ended = result.why if result.why.startswith("terminated") else f"exited with status {result.exit_status}"
        else:
            ended = result.outcome.value
        top = ", ".join(f"{name} {n}" for name, n in list(self.syscalls.items())[:12])
        lines = [f"program {ended}; {sum(self.syscalls.values())} system calls ({top})",
                 f"file content captured: {self.file_bytes} bytes"]
        if self.unimplemented:
            lines.append("not implemented (returned ENOSYS): " +
                         ", ".join(f"{name} x{n}" for name, n in sorted(self.unimplemented.items())))
        return lines


class RecordSession:
    """Record ``image`` into ``path``.

    Args:
        image: the guest.
        path: the trace to create (written as ``path.incomplete`` until closed).
        mem_size, boot_args: the machine.
        listen: (host, port) for the socket device, or None.
        chaos_seed: perturb interrupt timing from this seed (``--chaos``), or None.
        digest_every: instructions between state digests (one is also written after
            each ``digest_interval`` seconds, so that a killed recording's prefix is
            verified along the way, not only by its end).
        digest_interval: seconds of recording between state digests.
        checkpoint_every: instructions between checkpoints (RAM pages changed since the last).
        console_output: binary stream for the guest console, or None.
        console_input: forward this process's stdin to the guest console.
        overwrite: replace an existing trace.
        counter: the instruction counter, ``"fast"`` or ``"reference"`` (same icounts).
        ring: keep the recording as a flight recorder's ring of segments
            (recorder/ring.py); ``path`` is then where a crash's window is saved.
        save_on_output: --ring: save the window when the program's output matches this.
        save_on_exit: --ring: save the window however the run ends (not only on a crash
            or a non-zero exit status).

    Raises:
        TraceError: the trace cannot be created. HostError: the listen address is busy.
    """

    def __init__(self, image: GuestImage, path: str, *, mem_size: int, boot_args: str = "",
                 listen: tuple[str, int] | None = None, chaos_seed: int | None = None,
                 digest_every: int = DEFAULT_DIGEST_EVERY,
                 digest_interval: float = DIGEST_INTERVAL,
                 checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY,
                 console_output=None, console_input: bool = False, overwrite: bool = False,
                 tool_version: str = "unknown", counter: str = "fast", ring=None,
                 save_on_output: re.Pattern | None = None, save_on_exit: bool = False) -> None:
        self.machine = Machine(image, mem_size=mem_size, boot_args=boot_args, counter=counter)
        self.boundary = LiveBoundary(self.machine, listen=listen, console_input=console_input,
                                     console_output=console_output,
                                     chaos=Chaos(chaos_seed) if chaos_seed is not None else None)
        self.machine.connect(self.boundary)
        bound = self.boundary.listen_address
        if self.machine.kernel is not None:
            devices = {"linux": image.header_map()}
        else:
            devices = {"pic": {}, "timer": {}, "clock": {}, "entropy": {}, "console": {}, "power": {},
                       "sockets": {"listen": f"{bound[0]}:{bound[1]}" if bound else None}}
        config = MachineConfig(mem_size=mem_size, cpu_model=self.machine.cpu_model,
                               boot_args=boot_args, devices=devices, image_name=image.name,
                               image=image.elf)
        flags = {"chaos_seed": chaos_seed} if chaos_seed is not None else {}
        if self.machine.kernel is not None:
            self.machine.kernel.canonical_state = True
            flags["linux_state"] = "canonical"
        if counter != "fast":
            flags["counter"] = counter
        self._config, self._flags, self._tool_version = config, flags, tool_version
        self.ring = ring
        self._segment = None
        self._overwrite = overwrite
        try:
            if ring is not None:
                self._segment = ring.new_segment(0)
                self.writer = self._segment_writer(self._segment)
            else:
                self.writer = TraceWriter(path, TraceHeader.new(config, tool_version=tool_version, flags=flags),
                                          overwrite=overwrite, flush_interval=FLUSH_INTERVAL)
        except BaseException:
            self.boundary.close()
            raise
        self.path = path
        self.digest_every = digest_every
        self.digest_interval = digest_interval
        self.checkpoint_every = checkpoint_every
        self._next_digest_time = 0.0
        self.digests_written = 0
        self._counts: Counter[int] = Counter()
        self._input_bytes = 0
        self._syscalls: Counter[int] = Counter()
        self._peers: Counter[str] = Counter()
        self._blob_bytes = 0
        self._next_digest = digest_every
        self._next_checkpoint = checkpoint_every
        self._ram_copy = _RamCopy(self.machine)
        self._checkpoint_thread = _CheckpointThread()
        self._job: _CheckpointJob | None = None
        self._pending: _PendingEvents | None = None
        self.checkpoint_write_seconds: list[float] = []
        self._full_checkpoint_bytes = 0
        self._delta_checkpoint_bytes = 0
        self._deadline: float | None = None
        self.boundary.tap = self._log
        self.boundary.tap_many = self._log_many
        self._written = Counter()                 # --ring: the closed segments' writer counters
        self.checkpoint_costs: list[tuple[float, int, bool]] = []   # (seconds the guest stopped, bytes, full)
        if ring is not None:
            self._save_requests: deque = deque()
            self._next_ring_checkpoint = 0.0
            self._warned_small = False
            self._growth = 0                       # bytes written between two looks, decaying
            self._written_at_tick = 0
            self.boundary.tap = self._log_ring
            self._save_on_output = save_on_output
            self._save_on_exit = save_on_exit
            self._output_tails: dict[str, bytes] = {}
            if save_on_output is not None:
                self._watch_output()

    def _log(self, icount: int, kind: EventKind, payload: object) -> None:
        self._counts[kind] += 1
        if kind == EventKind.SYSCALL:
            self._syscalls[payload[1]] += 1
            for op, answer in payload[4]:
                if op in ("accept", "recvfrom") and type(answer) is list and len(answer) == 2:
                    self._note_peer(answer[1])
        elif kind == EventKind.BLOB:
            self._blob_bytes += len(payload[3])
        elif kind == EventKind.SOCK_DATA:
            self._input_bytes += len(payload[1])
        elif kind == EventKind.CONSOLE_IN:
            self._input_bytes += len(payload)
        self.writer.append(icount, kind, payload)

    # -- the flight recorder (--ring) ----------------------------------------------------

    def _segment_writer(self, segment) -> TraceWriter:
        """The writer of a ring segment: a window trace of its own, starting at its checkpoint."""
        flags = {**self._flags, "window": self.ring.segment_window(segment)}
        return TraceWriter(segment.path, TraceHeader.new(self._config, tool_version=self._tool_version,
                                                         flags=flags, created_unix=segment.start_unix),
                           flush_interval=FLUSH_INTERVAL)

    def _log_ring(self, icount: int, kind: EventKind, payload: object) -> None:
        """``_log``, and the ring keeps every file content the segment's events name.

        A file read before the segment began is named again by a later open or exec of
        the same content (captured once per run): the segment names it too, so a window
        that starts with it holds it (recorder/ring.py keeps contents once, in a store)."""
        self._log(icount, kind, payload)
        if kind == EventKind.BLOB:
            if payload[1] == 0:
                self._keep_content(payload[0].hex())
        elif kind == EventKind.SYSCALL:
            refs = self._segment.refs
            for _op, answer in payload[4]:
                if type(answer) is list and len(answer) >= 2 and answer[0] == "blob" \
                        and answer[1] not in refs:
                    self._keep_content(answer[1])

    def _keep_content(self, file_id: str) -> None:
        kernel = self.machine.kernel
        program = kernel.program
        if file_id == program.exe.sha256 or (program.interp is not None and file_id == program.interp.sha256):
            return                                   # in the header of every trace
        data = self.boundary.blob(file_id) or kernel._blobs.get(file_id)
        if data is not None:
            self.ring.keep_content(self._segment, file_id, data)

    def request_save(self, trigger: str, output: str | None = None, *, overwrite: bool = False,
                     reply=None) -> None:
        """Save the current window at the next slice boundary; the recording goes on.

        Safe in a signal handler and from other threads.

        Args:
            trigger: why, for ``vmrr info`` ("sigusr1", "vmrr save", "output matched ...").
            output: the trace to write; None: the next ``TRACE-N.vmrr`` beside ``-o``.
            reply: called with the SaveJob once it is written (or failed).
        """
        self._save_requests.append((trigger, output, overwrite, reply))
        if threading.current_thread() is threading.main_thread():
            self.machine.request_stop()      # a signal handler or a hook; a slice is short anyway

    def _ring_tick(self, icount: int, now_mono: float) -> None:
        ring = self.ring
        now = time.time()
        self._finish_background_checkpoint(wait=False)
        if self._job is not None:
            return                                   # the next look, once it is written
        # What the trace grew by since the last look, decaying: the ring keeps room for as
        # much again, since it looks only between slices (--ring SIZE holds whenever du looks).
        written = self._written["bytes"] + self.writer.bytes_written
        self._growth = max(written - self._written_at_tick, self._growth // 2)
        self._written_at_tick = written
        while self._save_requests:
            self._capture_save(icount, *self._save_requests.popleft())
        if ring.rotation_due(now, self.writer.bytes_written, self._full_checkpoint_bytes):
            if not self._warned_small:
                self._warned_small = True
                problem = ring.too_small(self._full_checkpoint_bytes)
                if problem is not None:
                    self.boundary.notice(f"flight recorder: {problem}")
            # Room for the next segment's full checkpoint first, so the ring stays under --ring SIZE.
            ring.drop_old(now, self.writer.bytes_written + self._full_checkpoint_bytes + 2 * self._growth)
            self._rotate(icount)
            self._next_ring_checkpoint = now_mono + RING_CHECKPOINT_SECONDS
        elif now_mono >= self._next_ring_checkpoint:
            ring.drop_old(now, self.writer.bytes_written + self._delta_checkpoint_bytes + 2 * self._growth)
            self._checkpoint(base=False)
            self._next_checkpoint = icount + self.checkpoint_every
            self._next_ring_checkpoint = now_mono + RING_CHECKPOINT_SECONDS
        ring.drop_old(now, self.writer.bytes_written + 2 * self._growth)

    def _capture_save(self, icount: int, trigger: str, output: str | None, overwrite: bool, reply) -> None:
        machine = self.machine
        self._finish_background_checkpoint()
        self.writer.flush()
        end = {"reason": "stopped", "why": f"saved: {trigger}", "icount": icount,
               "digest": machine.state_digest(), "outputs": machine.output_summary()}
        if machine.kernel is not None:
            end["linux"] = self._linux_summary()
        path = output or self.ring.next_output(self.path)
        try:
            job = self.ring.capture(path, trigger, end, current_chunks=self.writer.chunks_written,
                                    overwrite=overwrite)
        except OSError as exc:
            self.boundary.notice(f"flight recorder: cannot save {path}: {exc.strerror}")
            return
        if reply is not None:
            threading.Thread(target=lambda: (job.done.wait(), reply(job)), daemon=True).start()

    def _rotate(self, icount: int) -> None:
        """Close the current segment here and begin the next one with a full checkpoint."""
        ring, machine = self.ring, self.machine
        end = {"reason": "stopped", "why": "segment", "icount": icount, "digest": machine.state_digest()}
        self.writer.close(end, icount=icount)
        self._count_writer()
        ring.closed(self._segment, icount, self.writer.bytes_written)
        self._segment = ring.new_segment(icount)
        self.writer = self._segment_writer(self._segment)
        self._checkpoint(base=True)
        self._next_checkpoint = icount + self.checkpoint_every

    def _finish_ring(self, result: RunResult, end: dict) -> list[str]:
        """The run is over: save its window if it ended badly (or always, --save-on-exit)."""
        ring = self.ring
        ring.closed(self._segment, result.icount, self.writer.bytes_written)
        if result.outcome is Outcome.CRASH:
            trigger = "crash"
        elif result.outcome is Outcome.POWER_OFF and result.exit_status != 0:
            trigger = result.why if result.why.startswith("terminated") else f"exit status {result.exit_status}"
        elif self._save_on_exit:
            trigger = "end of recording"
        else:
            trigger = None
        final = None
        if trigger is not None:
            try:
                final = ring.capture(self.path, trigger, end, current_chunks=0, overwrite=self._overwrite)
            except OSError as exc:
                self.boundary.notice(f"flight recorder: cannot save {self.path}: {exc.strerror}")
        ring.wait()
        # The ring outlives the recording only when the incident's own window could not be saved.
        failed = trigger is not None and (final is None or final.error is not None)
        ring.close(keep=failed)
        lines = [f"flight recorder: kept {ring.bound.describe()} in {len(ring.segments)} segments; "
                 f"{ring.dropped_segments} older ones ({ring.dropped_bytes} bytes) dropped over the run; "
                 f"file contents kept once beside them: {sum(ring.stored.values())} bytes"]
        costs = self.checkpoint_costs
        if costs:
            full = [c for c in costs if c[2]]
            delta = [c for c in costs if not c[2]]
            for name, group in (("full", full), ("incremental", delta)):
                if group:
                    lines.append(f"{name} checkpoints: {len(group)}, guest stopped {1000 * sum(c[0] for c in group) / len(group):.1f} ms "
                                 f"on average (max {1000 * max(c[0] for c in group):.1f}), "
                                 f"{sum(c[1] for c in group) // len(group)} bytes each")
            if self.checkpoint_write_seconds:
                writes = self.checkpoint_write_seconds
                lines.append(f"checkpoints packed, compressed and written beside the guest: "
                             f"{1000 * sum(writes) / len(writes):.1f} ms on average")
        if trigger is None:
            lines.append(f"{self.path} not written: the run ended normally, nothing saved on exit "
                         f"({ring.saved} windows saved on request)")
        if failed:
            lines.append(f"the ring is kept in {ring.directory} (a save failed): "
                         f"vmrr save --from-ring {ring.directory} -o FILE")
        return lines

    def _watch_output(self) -> None:
        """--save-on-output: look at what the program writes before passing it on."""
        boundary = self.boundary
        for name in ("stdio_write", "console_write"):
            passed_on = getattr(boundary, name)
            if name == "stdio_write":
                def watched(stream, data, passed_on=passed_on):
                    self._match_output(stream, data)
                    passed_on(stream, data)
            else:
                def watched(data, passed_on=passed_on):
                    self._match_output("console", data)
                    passed_on(data)
            setattr(boundary, name, watched)

    def _match_output(self, stream: str, data: bytes) -> None:
        text = self._output_tails.get(stream, b"") + bytes(data)
        match = self._save_on_output.search(text)
        if match is not None:
            shown = match.group(0)[:60].decode("utf-8", "backslashreplace")
            self.request_save(f"output matched {shown!r}")
            text = text[match.end():]
        self._output_tails[stream] = text[-OUTPUT_TAIL:]

    def _note_peer(self, address: object) -> None:
        """A host the program heard from over the network (an accept, a datagram)."""
        if type(address) is list and len(address) >= 2 and address[0] in ("in", "in6") \
                and type(address[1]) is str and len(self._peers) < MAX_PEERS:
            self._peers[address[1]] += 1

    def _log_many(self, kind: EventKind, records: list[tuple[int, object]]) -> None:
        """Many events of one kind (the native hook's system calls), as ``_log`` each."""
        self._counts[kind] += len(records)
        if kind == EventKind.SYSCALL:
            syscalls = self._syscalls
            for _icount, payload in records:
                syscalls[payload[1]] += 1
        self.writer.append_many(kind, records)

    def run(self, *, duration: float | None = None, max_instructions: int | None = None) -> RecordSummary:
        """Record until power-off, a crash, ``duration`` seconds, ``max_instructions`` or shutdown."""
        start = time.perf_counter()
        self._deadline = time.monotonic() + duration if duration else None
        self._next_digest_time = time.monotonic() + self.digest_interval
        if self.ring is not None:
            self._next_ring_checkpoint = time.monotonic() + RING_CHECKPOINT_SECONDS
        try:
            self._checkpoint(base=True, boot=True)      # carries the boot state's digest (format 3)
            result = self.machine.run(max_instructions=max_instructions, between=self._between)
            self._finish_background_checkpoint()
            end = self._end_record(result)
            self.writer.close(end, icount=result.icount)
        finally:
            self.boundary.close()
            if self._job is not None:
                self._job.done.wait()
                self.writer = self._pending.writer
            self._checkpoint_thread.stop()
            if not self.writer.closed:
                self.writer.close({"reason": "stopped", "why": "error"})
                if self.ring is not None:
                    self.ring.close(keep=True)
        self._count_writer()
        written = self._written
        summary = RecordSummary(self.path, result, time.perf_counter() - start,
                                {EventKind(k).name: n for k, n in self._counts.items()},
                                written["bytes"], written["checkpoints"], self._input_bytes,
                                written["raw"] / max(1, written["compressed"]))
        if self.ring is not None:
            summary.ring = self._finish_ring(result, end)
        if self.machine.kernel is not None:
            linux = self._linux_summary()
            summary.syscalls, summary.unimplemented = linux["syscalls"], linux["unimplemented"]
            summary.file_bytes = self._blob_bytes
        return summary

    def _linux_summary(self) -> dict:
        """A Linux program's system calls, processes, files and libraries: for END and the summary."""
        from vmm.linux.syscalls import describe
        kernel = self.machine.kernel
        return {"syscalls": {describe(nr): n for nr, n in self._syscalls.most_common()},
                **kernel.summary(),                    # unimplemented calls, the processes
                "files": sorted([path, fid, size] for path, (fid, size) in kernel.files_read.items()),
                "libraries": [path for path, _bias in kernel.libraries()],
                "peers": dict(self._peers.most_common())}

    def _count_writer(self) -> None:
        writer = self.writer
        self._written.update({"bytes": writer.bytes_written, "checkpoints": writer.checkpoints_written,
                              "raw": writer.raw_chunk_bytes, "compressed": writer.compressed_chunk_bytes})

    def _between(self) -> None:
        machine = self.machine
        icount = machine.icount
        now = time.monotonic()
        # A chunk written because it is a second old ends with a digest: a killed
        # recording's prefix is then verified up to its last chunk, not only at its end.
        if icount >= self._next_digest or now >= self._next_digest_time or self.writer.flush_due():
            self._log(icount, EventKind.DIGEST, machine.state_digest())
            self.digests_written += 1
            self._next_digest = icount + self.digest_every
            self._next_digest_time = now + self.digest_interval
        if icount >= self._next_checkpoint:
            self._checkpoint(base=False)
            self._next_checkpoint = icount + self.checkpoint_every
        if self.ring is not None:
            self._ring_tick(icount, now)
        self.writer.flush_if_due()
        if self._deadline is not None and time.monotonic() >= self._deadline:
            machine.request_shutdown("duration reached")

    def _checkpoint(self, *, base: bool, boot: bool = False) -> None:
        """Write the machine state; RAM as the pages changed since the previous checkpoint.

        The base at boot needs only the pages the loader wrote: the rest of RAM is zero.
        A base later on (a flight recorder's segment) lists every non-zero page in use.
        The pages are found by comparing RAM with a copy of it as of the previous
        checkpoint, 64 KiB at a time in C. Under --ring the guest stops only while the
        state is copied: the checkpoint is packed, compressed and written by a thread
        (the events that arrive meanwhile wait for it, in order).
        """
        self._finish_background_checkpoint()
        began = time.perf_counter()
        machine = self.machine
        copy, in_use = self._ram_copy, machine.ram_in_use
        if boot:
            ram = machine.ram
            pages = {off // PAGE: ram[off:off + PAGE] for off in self._boot_page_offsets()
                     if ram[off:off + PAGE] != _ZERO_PAGE}
            copy.note(pages)
            numbers = None
        else:
            changed = copy.update(in_use)            # the copy is now RAM as of this checkpoint
            numbers = copy.nonzero(in_use) if base else changed
            pages = None
        # Packed now: the device state holds lists the guest's next system calls change.
        devices = msgpack.packb(machine.device_state(), use_bin_type=True, unicode_errors="surrogateescape")
        job = _CheckpointJob(self.writer, machine.icount, machine.cpu_state(), devices,
                             base, copy, in_use, pages=pages, numbers=numbers,
                             names_contents=self.ring is not None and base and machine.kernel is not None)
        if self.ring is None or boot:
            job.run()
            self._checkpoint_written(job, time.perf_counter() - began)
            return
        # The thread reads the pages and hashes RAM from the copy, which stays as it is
        # until the next checkpoint (that one waits for this one first).
        self.writer.flush()
        self._pending = _PendingEvents(self.writer)
        self.writer = self._pending
        job.stop_seconds = time.perf_counter() - began
        self._checkpoint_thread.submit(job)
        self._job = job

    def _finish_background_checkpoint(self, *, wait: bool = True) -> None:
        """A checkpoint a thread was writing is done: the waiting events go to the writer."""
        job = self._job
        if job is None or (not wait and not job.done.is_set()):
            return
        job.done.wait()
        self._job = None
        self.writer = self._pending.writer
        for icount, kind, payload in self._pending.events:
            self.writer.append(icount, kind, payload)
        self._pending = None
        if job.error is not None:
            raise job.error
        self._checkpoint_written(job, job.stop_seconds)

    def _checkpoint_written(self, job: "_CheckpointJob", stop_seconds: float) -> None:
        self.checkpoint_costs.append((stop_seconds, job.bytes, job.base))
        self.checkpoint_write_seconds.append(job.seconds)
        if job.base:
            self._full_checkpoint_bytes = job.bytes
        else:
            self._delta_checkpoint_bytes = job.bytes
        for file_id in job.content_ids:
            self._keep_content(file_id)

    def _boot_page_offsets(self) -> list[int]:
        """Offsets of every page the loader may have written (boot information, segments)."""
        if self.machine.kernel is not None:            # the personality's pages, page tables included
            return list(range(RAM_START, self.machine.ram_in_use, PAGE))
        offsets = {BOOT_INFO & ~(PAGE - 1)}
        for seg in self.machine.image.segments:
            first = seg.guest_phys & ~(PAGE - 1)
            offsets.update(range(first, seg.guest_phys + seg.mem_size, PAGE))
        return sorted(offsets)

    def _end_record(self, result: RunResult) -> dict:
        machine = self.machine
        end: dict = {"reason": result.outcome.value, "icount": result.icount,
                     "digest": machine.state_digest(),
                     "outputs": machine.output_summary()}
        if machine.kernel is not None:
            end["linux"] = self._linux_summary()
        if result.outcome is Outcome.POWER_OFF:
            end["exit_status"] = result.exit_status
            if result.why:
                end["why"] = result.why
        elif result.outcome is Outcome.CRASH:
            end.update(result.crash.to_dict())
            end["report"] = result.crash.format()
        else:
            end["why"] = result.why
        return end


class _RamCopy:
    """Guest RAM as of the last checkpoint, to find the pages written since.

    A private anonymous mapping as large as RAM: the host gives it memory only where it
    is written (the pages the guest ever made non-zero; a bytearray would be zero-filled
    whole). Compared 64 KiB at a time with memcmp, then page by page inside the blocks
    that differ."""

    def __init__(self, machine: Machine) -> None:
        self.machine = machine
        self.copy = mmap.mmap(-1, machine.mem_size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        self._pin = ctypes.c_char.from_buffer(self.copy)
        self.ptr = ctypes.addressof(self._pin)

    def note(self, pages: dict[int, bytes]) -> None:
        for number, page in pages.items():
            self.copy[number * PAGE:(number + 1) * PAGE] = page

    def update(self, in_use: int) -> list[int]:
        """The pages that changed since the last look; the copy is brought up to date."""
        ram_ptr, ptr = self.machine._ram_ptr, self.ptr
        changed = changed_pages(ram_ptr, ptr, RAM_START, in_use)
        for off in changed:
            ctypes.memmove(ptr + off, ram_ptr + off, PAGE)
        return [off // PAGE for off in changed]

    def nonzero(self, in_use: int) -> list[int]:
        """Every non-zero page below ``in_use``, in the copy (up to date: ``update`` first)."""
        return [off // PAGE for off in changed_pages(self.ptr, None, RAM_START, in_use)]

    def pages(self, numbers: list[int]) -> dict[int, bytes]:
        copy = self.copy
        return {n: copy[n * PAGE:(n + 1) * PAGE] for n in numbers}

    def ram_digest(self, in_use: int) -> bytes:
        return ram_digest_of(self.copy, self.ptr, in_use, self.machine.mem_size)


class _CheckpointJob:
    """One checkpoint: its pages read from the RAM copy, its digest computed from the copy,
    packed, compressed and written (by the checkpoint thread under --ring).

    The cpu map is a fresh copy, the device state comes packed (unpacked here it packs to
    the same bytes, so its digest is the machine's) and the RAM copy does not change until
    the job is done: the guest runs on meanwhile. With ``names_contents`` it also lists
    the file contents the state names (content ids in the packed device state), for the
    ring's store."""

    def __init__(self, writer: TraceWriter, icount: int, cpu: dict, devices: bytes, base: bool,
                 copy: _RamCopy, in_use: int, *, pages: dict[int, bytes] | None,
                 numbers: list[int] | None, names_contents: bool) -> None:
        self.writer, self.icount, self.cpu, self.devices, self.base = writer, icount, cpu, devices, base
        self.copy, self.in_use, self.pages, self.numbers = copy, in_use, pages, numbers
        self.names_contents = names_contents
        self.bytes = 0
        self.seconds = 0.0
        self.stop_seconds = 0.0
        self.content_ids: list[str] = []
        self.error: BaseException | None = None
        self.done = threading.Event()

    def run(self) -> None:
        began = time.perf_counter()
        written = self.writer.bytes_written
        try:
            pages = self.pages if self.pages is not None else self.copy.pages(self.numbers)
            devices = msgpack.unpackb(self.devices, raw=False, unicode_errors="surrogateescape",
                                      strict_map_key=False)
            digest = digest_of(self.cpu, devices, self.copy.ram_digest(self.in_use))
            self.writer.write_checkpoint(self.icount, self.cpu, devices, pages,
                                         full=self.base, digest=digest)
            if self.names_contents:
                self.content_ids = [raw.decode() for raw in sorted(set(_BLOB_ID.findall(self.devices)))]
        except BaseException as exc:           # raised again in the recorder's thread
            self.error = exc
        self.bytes = self.writer.bytes_written - written
        self.pages = self.numbers = None
        self.seconds = time.perf_counter() - began
        self.done.set()


class _CheckpointThread:
    """Runs checkpoint jobs one at a time, beside the guest (started on the first)."""

    def __init__(self) -> None:
        self._jobs: "queue.SimpleQueue[_CheckpointJob | None]" = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def submit(self, job: _CheckpointJob) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="vmrr-checkpoint", daemon=True)
            self._thread.start()
        self._jobs.put(job)

    def _loop(self) -> None:
        while (job := self._jobs.get()) is not None:
            job.run()

    def stop(self) -> None:
        if self._thread is not None:
            self._jobs.put(None)
            self._thread.join()
            self._thread = None


class _PendingEvents:
    """Stands for the writer while a thread writes a checkpoint: events wait here, in order."""

    def __init__(self, writer: TraceWriter) -> None:
        self.writer = writer
        self.events: list[tuple[int, int, object]] = []

    def append(self, icount: int, kind, payload: object) -> None:
        self.events.append((icount, kind, payload))

    def append_many(self, kind, records: list[tuple[int, object]]) -> None:
        self.events.extend((icount, kind, payload) for icount, payload in records)

    def flush_if_due(self, now: float | None = None) -> None:
        pass

    def flush_due(self, now: float | None = None) -> bool:
        return False

    @property
    def bytes_written(self) -> int:
        return self.writer.bytes_written

"""One recording: a Machine on the live host, its inputs logged into a trace file."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

from trace_format import MachineConfig, TraceHeader, TraceWriter
from trace_format.events import EventKind
from vmm.boundary import Chaos, LiveBoundary
from vmm.loader import GuestImage
from vmm.machine import BOOT_INFO, PAGE, RAM_START, Machine, Outcome, RunResult

DEFAULT_DIGEST_EVERY = 200_000_000
DIGEST_INTERVAL = 1.0              # ... and at least one digest per second of recording
# Events wait at most this long in memory. The writer's check runs between slices (up to
# ~0.2 s apart on a loaded host), so 0.8 s keeps a killed recording's loss under 1 s.
FLUSH_INTERVAL = 0.8
DEFAULT_CHECKPOINT_EVERY = 500_000_000
MAX_PEERS = 1000                   # distinct network peers a Linux program's summary lists
_ZERO_PAGE = bytes(PAGE)


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


    @property
    def instructions(self) -> int:
        return self.result.icount

    def lines(self) -> list[str]:
        mips = self.instructions / self.wall_seconds / 1e6 if self.wall_seconds > 0 else 0.0
        events = ", ".join(f"{k.lower()} {n}" for k, n in sorted(self.events_by_kind.items())) or "none"
        return [
            f"trace {self.path}: {self.trace_bytes} bytes, {self.checkpoints} checkpoints, "
            f"compression {self.compression:.1f}x",
            f"{self.instructions} instructions in {self.wall_seconds:.2f} s ({mips:.1f} MIPS)",
            f"events: {events}",
            f"host input: {self.input_bytes} bytes",
        ] + self._linux_lines()

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

    Raises:
        TraceError: the trace cannot be created. HostError: the listen address is busy.
    """

    def __init__(self, image: GuestImage, path: str, *, mem_size: int, boot_args: str = "",
                 listen: tuple[str, int] | None = None, chaos_seed: int | None = None,
                 digest_every: int = DEFAULT_DIGEST_EVERY,
                 digest_interval: float = DIGEST_INTERVAL,
                 checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY,
                 console_output=None, console_input: bool = False, overwrite: bool = False,
                 tool_version: str = "unknown", counter: str = "fast") -> None:
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
        if counter != "fast":
            flags["counter"] = counter
        try:
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
        self._ram_at_checkpoint: bytes | None = None     # None: RAM as booted (the base)
        self._base_pages: dict[int, bytes] = {}
        self._deadline: float | None = None
        self.boundary.tap = self._log
        self.boundary.tap_many = self._log_many

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
        try:
            self._checkpoint(base=True)      # carries the boot state's digest (format 3)
            result = self.machine.run(max_instructions=max_instructions, between=self._between)
            self.writer.close(self._end_record(result), icount=result.icount)
        finally:
            self.boundary.close()
            if not self.writer.closed:
                self.writer.close({"reason": "stopped", "why": "error"})
        summary = RecordSummary(self.path, result, time.perf_counter() - start,
                                {EventKind(k).name: n for k, n in self._counts.items()},
                                self.writer.bytes_written, self.writer.checkpoints_written, self._input_bytes,
                                self.writer.raw_chunk_bytes / max(1, self.writer.compressed_chunk_bytes))
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
        self.writer.flush_if_due()
        if self._deadline is not None and time.monotonic() >= self._deadline:
            machine.request_shutdown("duration reached")

    def _checkpoint(self, *, base: bool) -> None:
        """Write the machine state; RAM as the pages changed since the previous checkpoint.

        The base, at boot, needs only the pages the loader wrote: the rest of RAM is zero.
        """
        machine = self.machine
        ram = machine.ram
        in_use = machine.ram_in_use
        if base:
            pages = {off // PAGE: ram[off:off + PAGE] for off in self._boot_page_offsets()
                     if ram[off:off + PAGE] != _ZERO_PAGE}
            self._base_pages = pages
            self._ram_at_checkpoint = None
        else:
            previous = self._ram_at_checkpoint
            pages = {}
            for off in range(RAM_START, in_use, PAGE):
                page = ram[off:off + PAGE]
                if previous is None:
                    before = self._base_pages.get(off // PAGE, _ZERO_PAGE)
                else:
                    before = previous[off:off + PAGE] if off < len(previous) else _ZERO_PAGE
                if page != before:
                    pages[off // PAGE] = page
            self._ram_at_checkpoint = bytes(ram[:in_use])
        self.writer.write_checkpoint(machine.icount, machine.cpu_state(), machine.device_state(),
                                     pages, full=base, digest=machine.state_digest())

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

"""The replay API: open a trace, run it to an icount or its end, look at the machine."""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field

from trace_format import TraceHeader, TraceReader
from trace_format.events import Event, EventKind
from vmm.cpu import SUPPORTED_CPU_MODELS
from vmm.errors import BadTraceData, CheckFailed, CheckpointMismatch, ReplayDivergence, UsageError, VmrrError
from vmm.loader import parse_image
from vmm.machine import (MAX_BOOT_ARGS, MIN_MACHINE_MEM, Machine, Outcome, RunResult, default_max_mem,
                         digest_difference)
from replay.boundary import TraceBoundary


@dataclass
class ReplayReport:
    """How a replay ended and what was verified."""

    result: RunResult
    recorded_end: dict | None
    digests_checked: int = 0
    checks: list[str] = field(default_factory=list)
    checkpoints_checked: int = 0

    @property
    def complete(self) -> bool:
        return self.recorded_end is not None


class Replay:
    """A recorded run, replayable from its start.

    Args:
        path: the trace file (a ``.incomplete`` file from a killed recorder works too).
        verify: check state digests while replaying, every checkpoint the replay passes
            (its CPU, devices and RAM against the replayed machine) and the final state.
        console_output: binary stream for the reproduced guest console, or None.
        recover: salvage the complete chunks of a cut or damaged trace.
        max_mem: refuse a trace whose machine has more RAM than this many bytes
            (default: ``default_max_mem()``, a share of this host's memory).
        counter: the instruction counter, ``"fast"`` or ``"reference"``: either replays
            a trace recorded with either.

    Raises:
        TraceError: the trace cannot be opened. ImageError: its embedded image is bad.
        UsageError: the trace's machine is larger than ``max_mem`` or cannot be built.
    """

    def __init__(self, path: str, *, verify: bool = True, console_output=None,
                 recover: bool = False, max_mem: int | None = None, counter: str = "fast") -> None:
        self.reader = TraceReader(path, recover=recover)
        self.machine = None
        try:
            if verify:
                self.reader.verify_checksums()
            self.path = path
            header = self.reader.header
            config = header.config
            self.header = header
            check_machine_limits(path, header, default_max_mem() if max_mem is None else max_mem)
            linux = config.devices.get("linux")
            if linux is not None:
                from vmm.cpu import LINUX_CPU_MODEL
                from vmm.linux.program import LinuxProgram
                if config.cpu_model != LINUX_CPU_MODEL:
                    raise BadTraceData(f"{path}: a Linux program's trace names CPU model "
                                       f"{config.cpu_model!r} (header field config.cpu_model), "
                                       f"not {LINUX_CPU_MODEL!r}")
                self.image = LinuxProgram.from_header(linux, config.image, config.image_name, where=path)
            else:
                self.image = parse_image(config.image_name, config.image, where=f"{path} (embedded image)")
            self.machine = Machine(self.image, mem_size=config.mem_size, boot_args=config.boot_args,
                                   counter=counter)
            if self.machine.kernel is not None and header.flags.get("linux_state") == "canonical":
                self.machine.kernel.canonical_state = True
            end = self.reader.end
            last = end["icount"] if end and isinstance(end.get("icount"), int) else self.reader.last_icount
            reader, me = self.reader, weakref.ref(self)
            # Neither callback holds the Replay: without a cycle through it, dropping a
            # Replay closes it (``__del__``) and frees its machine at once.
            self.boundary = TraceBoundary(
                self.machine,
                lambda start: reader.events(start_icount=start, checkpoint_marks=verify),
                last_icount=last, verify=verify, console_output=console_output,
                check_checkpoint=lambda index: me()._check_checkpoint_passed(index),
                blob_events=lambda: reader.events(kinds={EventKind.BLOB}))
            self.machine.connect(self.boundary)
            self.verify = verify
            self._from_checkpoint = False
            # A flight recorder's window starts at its checkpoint 0, not at boot: the
            # machine as booted is replaced by the state the recorder saved there.
            self.first_icount = self.reader.first_icount
            if self.reader.window is not None:
                self.start_from_checkpoint(0)
        except BaseException:
            self.close()
            raise

    # -- running ---------------------------------------------------------------------

    def start_from_checkpoint(self, index: int) -> int:
        """Load the trace's checkpoint ``index`` instead of replaying up to it.

        Events recorded at the checkpoint's icount after it are applied, so the machine
        is then exactly where a replay from the start would be. The final output digests
        cannot be checked afterwards (they cover output from the start).

        Returns:
            The checkpoint's icount.

        Raises:
            TraceCorrupt, ReplayDivergence: the checkpoint is damaged or does not fit.
            CheckpointMismatch: its contents are not the state its recorded digest names,
                or it has no digest (the machine is left unchanged then).
        """
        checkpoint = self.reader.load_checkpoint(index)
        try:
            self.machine.restore_checkpoint(checkpoint.icount, checkpoint.cpu, checkpoint.devices,
                                            checkpoint.pages, checkpoint.digest)
        except CheckpointMismatch as exc:
            raise CheckpointMismatch(f"{self.path}: checkpoint {index}: {exc}") from None
        self.boundary.reposition_after_checkpoint(
            self.reader.events(after_checkpoint=index, checkpoint_marks=self.verify))
        for kind, payload in self.boundary.poll(checkpoint.icount, idle=False):
            self.machine.apply(kind, payload)
        self._from_checkpoint = True
        return checkpoint.icount

    @property
    def icount(self) -> int:
        return self.machine.icount

    def _check_checkpoint_passed(self, index: object) -> bool:
        """The replay is where checkpoint ``index`` was taken: the checkpoint must be this state.

        Its contents must describe exactly the replayed CPU, devices and RAM, and its
        recorded digest (if any) must be the replayed machine's digest.

        Returns:
            Whether a recorded state digest was checked (it counts as one).

        Raises:
            CheckpointMismatch: naming the checkpoint and what differs.
        """
        if type(index) is not int or not 0 <= index < len(self.reader.checkpoints):
            raise BadTraceData(f"{self.path}: checkpoint mark {index!r} names no checkpoint")
        checkpoint = self.reader.load_checkpoint(index)
        machine = self.machine
        where = f"{self.path}: checkpoint {index} at icount {checkpoint.icount}"
        if checkpoint.icount != machine.icount:
            raise CheckpointMismatch(f"{where}: the replay reached it at icount {machine.icount}")
        live = machine.state_digest()
        try:
            described = machine.check_checkpoint(checkpoint.icount, checkpoint.cpu,
                                                 checkpoint.devices, checkpoint.pages)
        except CheckpointMismatch as exc:
            raise CheckpointMismatch(f"{where}: {exc}") from None
        if described != live:
            raise CheckpointMismatch(f"{where}: its contents differ from the replayed machine: "
                                     f"{digest_difference(described, live)}")
        if checkpoint.digest is not None and checkpoint.digest != live:
            raise CheckpointMismatch(f"{where}: its recorded digest differs from the replayed "
                                     f"machine: {digest_difference(checkpoint.digest, live)}")
        return checkpoint.digest is not None

    def run(self, until: int | None = None) -> ReplayReport:
        """Replay to ``until`` (Outcome.LIMIT) or the end of the recording.

        Raises:
            ReplayDivergence: the guest did something the recording does not match.
            CheckpointMismatch: (verify) a checkpoint is not the state the replay reached.
        """
        result = self.machine.run(max_instructions=until)
        report = ReplayReport(result, self.reader.end, self.boundary.digests_checked,
                              checkpoints_checked=self.boundary.checkpoints_checked)
        if result.outcome is not Outcome.LIMIT:
            self._check_end(report)
        return report

    def _check_end(self, report: ReplayReport) -> None:
        end, result = report.recorded_end, report.result
        if end is None:
            report.checks.append(f"the trace is incomplete (recorder killed?): replayed its "
                                 f"{self.reader.last_icount} recorded instructions")
            return
        reason = end.get("reason")
        expected = {"poweroff": Outcome.POWER_OFF, "crash": Outcome.CRASH}.get(reason, Outcome.END_OF_TRACE)
        where = f"icount {result.icount}"
        if result.outcome is not expected or result.icount != end.get("icount"):
            raise ReplayDivergence(f"replay diverged: the recording ended in {reason} at icount "
                                   f"{end.get('icount')}, the replay in {result.outcome.value} at {where}")
        if reason == "crash":
            crash = result.crash
            recorded = (end.get("kind"), end.get("vector"), end.get("rip"))
            if (crash.kind, crash.vector, crash.rip) != recorded:
                raise ReplayDivergence(f"replay diverged: the recorded crash was {recorded}, "
                                       f"the replay's {(crash.kind, crash.vector, crash.rip)} at {where}")
            report.checks.append(f"crash recurred: {crash.kind} at rip {crash.rip:#x}, {where}")
        if reason == "poweroff" and result.exit_status != end.get("exit_status"):
            raise ReplayDivergence(f"replay diverged: exit status {result.exit_status}, "
                                   f"recorded {end.get('exit_status')}")
        if self.verify:
            self._check_final_state(end, report)

    def _check_final_state(self, end: dict, report: ReplayReport) -> None:
        machine = self.machine
        if end.get("digest") is None and end.get("reason") in ("poweroff", "crash", "stopped"):
            # vmrr always records it; a finished trace without it cannot be verified.
            raise CheckFailed(f"{self.path}: the recorded end has no final state digest, so the "
                              f"final state cannot be verified")
        if end.get("digest") is not None:
            try:
                machine.verify_digest(end["digest"])
            except ReplayDivergence as exc:
                raise ReplayDivergence(f"{exc} (final state)") from None
            report.checks.append("final registers, devices and RAM match")
        outputs = machine.output_summary()
        recorded = end.get("outputs")
        if recorded is not None and not self._from_checkpoint:
            if recorded != outputs:
                raise ReplayDivergence(f"replay diverged: guest output differs (recorded {recorded}, "
                                       f"replayed {outputs})")
            report.checks.append("console and socket output match")

    # -- looking around --------------------------------------------------------------

    def registers(self) -> dict[str, int]:
        return self.machine.cpu.registers()

    def read_memory(self, address: int, size: int) -> bytes:
        data = self.machine.read_guest(address, size)
        if data is None:
            raise VmrrError(f"guest memory at {address:#x} ({size} bytes) is not mapped")
        return data

    def events(self, kinds: set[EventKind] | None = None) -> list[Event]:
        return list(self.reader.events(kinds=kinds))

    def close(self) -> None:
        """Close the trace and free the machine (its RAM and CPU engine) now."""
        self.reader.close()
        if self.machine is not None:
            self.machine.close()

    def __del__(self) -> None:
        if getattr(self, "machine", None) is not None and getattr(self, "reader", None) is not None:
            self.close()

    def __enter__(self) -> Replay:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def check_machine_limits(path: str, header: TraceHeader, max_mem: int) -> None:
    """Refuse, before allocating anything, a machine this vmrr cannot or should not build.

    Raises:
        UsageError: naming the header field and the limit.
    """
    config = header.config
    if config.mem_size > max_mem:
        raise UsageError(f"{path}: the trace's machine has {config.mem_size} bytes of RAM "
                         f"(header field config.mem_size), more than --max-mem allows "
                         f"({max_mem} bytes); raise --max-mem to replay it")
    if config.mem_size < MIN_MACHINE_MEM:
        raise BadTraceData(f"{path}: header field config.mem_size is {config.mem_size}, below "
                           f"the {MIN_MACHINE_MEM} bytes any guest needs")
    if config.cpu_model not in SUPPORTED_CPU_MODELS:
        raise BadTraceData(f"{path}: recorded on CPU model {config.cpu_model!r} (header field "
                           f"config.cpu_model); this vmrr emulates {sorted(SUPPORTED_CPU_MODELS)}")
    if len(config.boot_args.encode("utf-8", "surrogatepass")) > MAX_BOOT_ARGS:
        raise BadTraceData(f"{path}: header field config.boot_args is longer than {MAX_BOOT_ARGS} bytes")

"""The replay API: open a trace, run it to an icount or its end, look at the machine."""

from __future__ import annotations

from dataclasses import dataclass, field

from trace_format import TraceReader
from trace_format.events import Event, EventKind
from vmm.errors import ReplayDivergence, VmrrError
from vmm.loader import parse_image
from vmm.machine import Machine, Outcome, RunResult
from replay.boundary import TraceBoundary


@dataclass
class ReplayReport:
    """How a replay ended and what was verified."""

    result: RunResult
    recorded_end: dict | None
    digests_checked: int = 0
    checks: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.recorded_end is not None


class Replay:
    """A recorded run, replayable from its start.

    Args:
        path: the trace file (a ``.incomplete`` file from a killed recorder works too).
        verify: check state digests while replaying and the final state at the end.
        console_output: binary stream for the reproduced guest console, or None.
        recover: salvage the complete chunks of a cut or damaged trace.

    Raises:
        TraceError: the trace cannot be opened. ImageError: its embedded image is bad.
    """

    def __init__(self, path: str, *, verify: bool = True, console_output=None,
                 recover: bool = False) -> None:
        self.reader = TraceReader(path, recover=recover)
        if verify:
            self.reader.verify_checksums()
        self.path = path
        header = self.reader.header
        config = header.config
        self.header = header
        linux = config.devices.get("linux")
        if linux is not None:
            from vmm.linux.program import LinuxProgram
            self.image = LinuxProgram.from_header(linux, config.image, config.image_name, where=path)
        else:
            self.image = parse_image(config.image_name, config.image, where=f"{path} (embedded image)")
        self.machine = Machine(self.image, mem_size=config.mem_size, boot_args=config.boot_args)
        end = self.reader.end
        last = end["icount"] if end and isinstance(end.get("icount"), int) else self.reader.last_icount
        self.boundary = TraceBoundary(self.machine, lambda start: self.reader.events(start_icount=start),
                                      last_icount=last,
                                      verify=verify, console_output=console_output,
                                      blob_events=lambda: self.reader.events(kinds={EventKind.BLOB}))
        self.machine.connect(self.boundary)
        self.verify = verify
        self._from_checkpoint = False

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
        """
        checkpoint = self.reader.load_checkpoint(index)
        self.machine.restore_checkpoint(checkpoint.icount, checkpoint.cpu, checkpoint.devices,
                                        checkpoint.pages)
        self.boundary.reposition_after_checkpoint(self.reader.events(after_checkpoint=index))
        for kind, payload in self.boundary.poll(checkpoint.icount, idle=False):
            self.machine.apply(kind, payload)
        self._from_checkpoint = True
        return checkpoint.icount

    @property
    def icount(self) -> int:
        return self.machine.icount

    def run(self, until: int | None = None) -> ReplayReport:
        """Replay to ``until`` (Outcome.LIMIT) or the end of the recording.

        Raises:
            ReplayDivergence: the guest did something the recording does not match.
        """
        result = self.machine.run(max_instructions=until)
        report = ReplayReport(result, self.reader.end, self.boundary.digests_checked)
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
        self.reader.close()

    def __enter__(self) -> Replay:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

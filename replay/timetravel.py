"""Time travel: random access to a recorded run — seek, step and continue both ways, queries.

Built on replay: a ``Replay`` machine that can be put back to earlier states. Snapshots
hold the CPU (a Unicorn CPU context: every register including hidden segment state),
the devices, the run loop's own state, and RAM. RAM is kept as a few full *keyframes*
and, for every other snapshot, the pages that differ from its keyframe — so a snapshot
costs only the pages the guest changed. Going to position P restores the nearest
snapshot at or before P and replays forward; going forward takes snapshots on the way,
densely near where the user is and sparsely far away, within a memory budget.

Backward operations (reverse-continue, "who last wrote here?") replay the stretch
between two snapshots with the relevant Unicorn hooks collecting every hit, and then
seek to the last hit before the current position — the approach of rr and QEMU.

Positions: position N is the state after N instructions ran and every input recorded at
icount N was applied (see docs/timetravel-api.md).
"""

from __future__ import annotations

import bisect
import ctypes
import os
import enum
import signal
import threading
import hashlib
import weakref
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable

import capstone
import msgpack
from unicorn import (UC_ARCH_X86, UC_HOOK_CODE, UC_HOOK_MEM_READ, UC_HOOK_MEM_WRITE, UC_MODE_64,
                     UcError)
from unicorn.unicorn_py3.unicorn import UcContext

from trace_format.events import Event, EventKind
from vmm.errors import DATA_ERRORS, CheckpointMismatch, ReplayDivergence, VmrrError
from vmm.crash import CrashReport
from vmm.devices import BadDeviceState
from vmm.devices.sockets import CHANNELS
from vmm.machine import PAGE, RAM_START, Outcome, RunResult, changed_pages
from replay import sidecar
from trace_format.safefile import SymlinkRefused, refuse_symlink
from replay.session import Replay

DENSE = 1_000_000           # snapshot spacing right before the position the user went to
SPARSE = 12_000_000         # snapshot spacing everywhere else on a forward pass
# A Linux program replays at ~120 MIPS, an appliance at several hundred: the same seek
# latency needs closer snapshots (and a Linux snapshot is cheaper: the RAM in use).
SPARSE_LINUX = 6_000_000
# The first pass splits in two processes at an on-disk checkpoint at least this far from
# either end (a fork and the transfer of the second half's snapshots cost ~0.5 s).
PARALLEL_MIN = 100_000_000
KEYFRAME_DELTA_LIMIT = 0.25  # a delta bigger than this fraction of RAM becomes a keyframe
_CS = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
_SNAPSHOT_FIELDS = frozenset({"icount", "cpu", "cpu_size", "devices", "halted", "ended", "result",
                              "keyframe", "base", "delta"})
_OUTCOMES = frozenset(outcome.value for outcome in Outcome)
_CRASH_TYPES = {"kind": (str,), "vector": (int, type(None)), "rip": (int,), "icount": (int,),
                "detail": (str,), "registers": (dict,), "disassembly": (list,),
                "fault_address": (int, type(None))}
_CRASH_FIELDS = frozenset(_CRASH_TYPES)
# A Linux program's crash also has the signal and the process (None for an appliance's).
_CRASH_OPTIONAL = {"signal": (int, type(None)), "pid": (int, type(None)), "program": (str, type(None))}


def _freeze(state: dict) -> bytes:
    return msgpack.packb(state, use_bin_type=True, unicode_errors="surrogateescape")


def _thaw(frozen: bytes) -> dict:
    return msgpack.unpackb(frozen, raw=False, strict_map_key=False, unicode_errors="surrogateescape")


_CONSOLE_STREAMS = frozenset({"console", "stdout", "stderr"})


class UnreadableMemory(VmrrError):
    """The guest-physical range is not RAM."""


class OperationCancelled(VmrrError):
    """A long query was cancelled; the position is unchanged."""


class StopReason(str, enum.Enum):
    SEEK = "seek"
    STEP = "step"
    BREAKPOINT = "breakpoint"
    WATCHPOINT = "watchpoint"
    EVENT = "event"
    HISTORY_START = "history-start"
    HISTORY_END = "history-end"
    CRASH = "crash"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class Stop:
    reason: StopReason
    icount: int
    address: int | None = None
    watch_kind: str | None = None
    detail: str = ""


@dataclass(frozen=True)
class Watchpoint:
    addr: int
    length: int
    kind: str          # "w", "r" or "a"


@dataclass(frozen=True)
class WriteRecord:
    icount: int        # the position just after the writing instruction ran
    rip: int
    address: int
    old: bytes
    new: bytes


@dataclass
class _Snapshot:
    icount: int
    cpu: object                        # UcContext (CPU only)
    state: dict                        # devices, run-loop flags, output digests
    keyframe: bytes | None = None      # full RAM, or None for a delta
    base: "_Snapshot | None" = None    # the keyframe a delta is relative to
    delta: dict[int, bytes] = field(default_factory=dict)
    # False: read from a sidecar and not yet met by a digest the trace itself recorded
    trusted: bool = True

    @property
    def cost(self) -> int:
        return len(self.keyframe) if self.keyframe is not None else len(self.delta) * PAGE


@dataclass
class _Hit:
    icount: int        # instruction number of the hit (it begins as instruction #icount)
    address: int
    kind: str          # "b", "w", "r"
    rip: int = 0
    old: bytes = b""
    new: bytes = b""


class TimeTravel:
    """A recorded run you can move around in. See docs/timetravel-api.md.

    Args:
        path: the trace.
        memory_budget: bytes the snapshot store may use (keyframes and deltas).
        progress: called with a fraction in [0, 1] during long operations.

    Raises:
        TraceError, ImageError: the trace cannot be opened or its image is bad.
    """

    def __init__(self, path: str, *, memory_budget: int = 1 << 30,
                 progress: Callable[[float], None] | None = None, sidecar: bool = True,
                 max_mem: int | None = None) -> None:
        self.replay = Replay(path, verify=False, max_mem=max_mem)
        try:
            self._open(path, memory_budget, progress, sidecar)
        except BaseException:
            self.replay.close()
            raise

    def _open(self, path: str, memory_budget: int, progress, sidecar: bool) -> None:
        self.path = path
        self.machine = self.replay.machine
        if self.machine.kernel is None:
            self.machine.console.flush_at = 1
        self.boundary = self.replay.boundary
        self.reader = self.replay.reader
        self.header = self.replay.header
        self.image = self.replay.image
        self.symbols = self.machine.symbols
        self.end = self.reader.end
        self.memory_budget = memory_budget
        self.progress = progress
        self.breakpoints: set[int] = set()
        self.watchpoints: list[Watchpoint] = []
        self._snaps: list[_Snapshot] = []
        self._second_pass: tuple[int, int] | None = None     # (pid, pipe) of _parallel_pass's child
        self.first_pass_split: int | None = None    # where a forked process took the first pass over
        self._console: list[tuple[int, bytes, str]] = []      # (icount, bytes, stream)
        self._sockets: list[tuple[int, int, bytes]] = []
        self._capturing = True              # outputs are collected on the first pass only
        self.disk_checkpoints_loaded = 0
        self._sidecar_problems: list[str] = []      # why the sidecar could not be written
        self.sidecar_rejected = False                # a sidecar snapshot met a digest it differs from
        # Weak: the engine must not be part of a reference cycle, so that dropping it
        # frees its snapshots at once (``__del__`` closes it), not at the next collection.
        me = weakref.ref(self)
        self.boundary.console_write = lambda data: _call(me, "_capture_console", "console", data)
        self.boundary.stdio_write = lambda stream, data: _call(me, "_capture_console", stream, data)
        self.boundary.sock_send = lambda chan, data: _call(me, "_capture_socket", chan, data)
        self._trusted_state = True          # the machine descends from trusted snapshots only
        self._ended = False                 # the machine sits at the end of history
        self.last_icount = 1 << 64          # until the first pass has found it
        end_icount = self.end.get("icount") if self.end else None
        self._expected_end = end_icount if isinstance(end_icount, int) else self.reader.last_icount
        self._boot_registers = self.machine.cpu.registers()
        self.loaded_from_sidecar = sidecar and self._load_sidecar()
        if not self.loaded_from_sidecar:
            self._take_snapshot()
            self.last_icount = self._find_last_icount()
            if sidecar:
                self._save_sidecar()
        self._index_outputs()
        self.seek(self.first_icount)

    # -- positions -------------------------------------------------------------------

    @property
    def icount(self) -> int:
        return self.machine.icount

    @property
    def first_icount(self) -> int:
        """Where history starts: 0, or a flight recorder's window's first checkpoint."""
        return self.replay.first_icount

    @property
    def crash_icount(self) -> int | None:
        if self.end and self.end.get("reason") == "crash":
            return self.last_icount
        return None

    def _find_last_icount(self) -> int:
        """Replay the whole run once: learn where history ends, capture outputs, lay snapshots.

        With two CPUs or more and an on-disk checkpoint near the middle of a long trace, a
        forked process replays from that checkpoint to the end while this one replays up to
        it (``_parallel_pass``)."""
        second = self._parallel_pass()
        if second is None:
            self._advance(None, cancel=None)
        else:
            try:
                self._advance(second, cancel=None, dense=False)
                joined = not self._ended and self.icount == second and self._join_second_pass()
            finally:
                self._abandon_second_pass()
            if joined:
                self.first_pass_split = second
                self._capturing = False
                return self.last_icount
            self._advance(None, cancel=None)               # without it: this process goes on
        self._take_snapshot()
        self._capturing = False
        return self.icount

    # -- the sidecar index -----------------------------------------------------------

    def _first_pass_content(self) -> dict:
        """What the first pass learned, as the sidecar holds it (msgpack-able)."""
        index = {id(snap): i for i, snap in enumerate(self._snaps)}
        snaps = []
        for snap in self._snaps:
            state = snap.state
            result = state["result"]
            snaps.append({
                "icount": snap.icount, "cpu": bytes(snap.cpu), "cpu_size": snap.cpu.size,
                "devices": _thaw(state["devices"]), "halted": state["halted"], "ended": state["ended"],
                "result": None if result is None else [result.outcome.value, result.icount, result.exit_status,
                                                       None if result.crash is None else asdict(result.crash),
                                                       result.why],
                "keyframe": snap.keyframe, "base": None if snap.base is None else index[id(snap.base)],
                "delta": snap.delta,
            })
        return {"last_icount": self.last_icount, "console": list(self._console), "sockets": list(self._sockets),
                "snapshots": snaps}

    def _save_sidecar(self) -> None:
        try:
            refuse_symlink(sidecar.sidecar_path(self.path))     # said now, not when written
        except SymlinkRefused as exc:
            self.sidecar_problem = f"sidecar index not written: {exc}"
            return
        # Packed, compressed and written by a thread (a second or more for a long trace):
        # the engine is usable meanwhile. close() waits for it; so does the next opening
        # of the same trace in this process, and the interpreter before it exits.
        _wait_for_sidecar(self.path)
        writer = threading.Thread(target=_write_sidecar, name="vmrr-sidecar", args=(
            self.path, self._first_pass_content(), self._sidecar_problems))
        _sidecar_writers[os.path.abspath(self.path)] = writer
        writer.start()

    def sidecar_written(self) -> None:
        """Return once the sidecar this engine writes (if any) is on disk."""
        _wait_for_sidecar(self.path)

    @property
    def sidecar_problem(self) -> str | None:
        """Why the sidecar could not be written, or None (so far)."""
        return self._sidecar_problems[0] if self._sidecar_problems else None

    @sidecar_problem.setter
    def sidecar_problem(self, value: str | None) -> None:
        self._sidecar_problems[:] = [] if value is None else [value]

    def _load_sidecar(self) -> bool:
        """Take the first pass's results from TRACE.idx; False (and rebuild) if it is not right.

        Every field is checked and turned into fresh objects first; only when all of it
        passed is it committed, so a rejected sidecar leaves nothing behind (no output,
        no snapshot, no machine state).
        """
        machine = self.machine
        _wait_for_sidecar(self.path)
        try:
            content = sidecar.read(self.path, max_bytes=self._sidecar_cap())
            parsed = self._parse_sidecar(content)
        except (sidecar.SidecarInvalid, *DATA_ERRORS):
            return False
        snaps, last_icount, console, sockets = parsed
        boot = machine.uc.context_save()
        self._snaps = snaps
        try:
            self._check_end_snapshot(snaps[-1], last_icount)
            self._restore(snaps[0])
            if machine.cpu.registers() != self._boot_registers:
                raise sidecar.SidecarInvalid("its CPU state does not restore to the boot state")
        except (sidecar.SidecarInvalid, UcError, *DATA_ERRORS):
            self._snaps = []
            self._put_back_boot(snaps[0])
            machine.uc.context_restore(boot)
            machine.counter.icount = self.first_icount
            self.boundary.reposition(self.first_icount)
            return False
        self.last_icount = last_icount
        self._console = console
        self._sockets = sockets
        self._capturing = False
        return True

    def _put_back_boot(self, snap0: _Snapshot) -> None:
        """RAM and devices as booted again after a rejected sidecar: its snapshot 0 was
        checked equal to them before anything was restored."""
        machine = self.machine
        key = snap0.keyframe
        machine.ram[:len(key)] = key
        if machine.ram_in_use > len(key):
            machine.ram[len(key):machine.ram_in_use] = bytes(machine.ram_in_use - len(key))
        devices = _thaw(snap0.state["devices"])
        for dev in machine.devices:
            dev.load_state(devices[dev.name])
        machine.halted, machine.result = False, None
        machine.output_digests, machine.output_bytes = {}, {}
        self._ended = False
        machine.uc.ctl_flush_tb()

    def _check_end_snapshot(self, snap: _Snapshot, last_icount: int) -> None:
        """The sidecar's last snapshot is where the recording ends; restored, it must be the
        state the recorder digested there (END), or the sidecar does not fit this trace
        (made by a vmrr that replays differently, or altered and re-signed)."""
        recorded = self.end.get("digest") if self.end else None
        if recorded is None:
            return
        if snap.icount != last_icount:
            raise sidecar.SidecarInvalid("its last snapshot is not at the end of history")
        self._restore(snap)
        if self.machine.state_digest() != recorded:
            raise sidecar.SidecarInvalid("its end state is not the state the recording ended in")
        snap.trusted = True

    def _sidecar_cap(self) -> int:
        """The largest sidecar worth reading: the snapshot budget, two RAM images, outputs."""
        return self.memory_budget + 2 * self.machine.mem_size + (256 << 20)

    def _parse_sidecar(self, content: dict) -> tuple[list[_Snapshot], int, list, list]:
        """Check every field of a decoded sidecar; fresh snapshots and outputs, or SidecarInvalid."""
        def bad(what: str) -> sidecar.SidecarInvalid:
            return sidecar.SidecarInvalid(what)

        machine = self.machine
        mem_size = machine.mem_size
        last_icount = content.get("last_icount")
        if type(last_icount) is not int or not 0 <= last_icount <= self.reader.last_icount:
            raise bad(f"last_icount {last_icount!r} is outside the trace (0..{self.reader.last_icount})")
        if self.end is not None and last_icount != self._expected_end:
            raise bad(f"last_icount {last_icount} is not where the recording ends ({self._expected_end})")
        console = self._parse_outputs(content.get("console"), "console", last_icount)
        sockets = self._parse_outputs(content.get("sockets"), "sockets", last_icount)
        self._check_outputs(console, sockets)
        entries = content.get("snapshots")
        if type(entries) is not list or not entries:
            raise bad("no snapshots")
        ctx_size = machine.uc.context_save().size
        device_names = {dev.name for dev in machine.devices}
        if self._snaps:                # the boot snapshot (a second pass's results, _parallel_pass)
            boot_ram, boot_devices = self._snaps[0].keyframe, self._snaps[0].state["devices"]
        else:                          # the machine as it boots (a sidecar read at opening)
            boot_ram, boot_devices = machine.ram[:machine.ram_in_use], _freeze(machine.device_state())
        snaps: list[_Snapshot] = []
        cost = 0
        for i, entry in enumerate(entries):
            if type(entry) is not dict or entry.keys() != _SNAPSHOT_FIELDS:
                raise bad(f"snapshot {i} does not have the snapshot fields")
            icount = entry["icount"]
            if type(icount) is not int or not 0 <= icount <= last_icount \
                    or (snaps and icount <= snaps[-1].icount):
                raise bad(f"snapshot {i} icount {icount!r} is out of order or outside history")
            cpu = entry["cpu"]
            if type(cpu) is not bytes or len(cpu) != ctx_size or entry["cpu_size"] != ctx_size:
                raise bad(f"snapshot {i} CPU context is not {ctx_size} bytes")
            devices = entry["devices"]
            if type(devices) is not dict or devices.keys() != device_names:
                raise bad(f"snapshot {i} device set is wrong")
            for dev in machine.devices:
                try:
                    dev.check_state(devices[dev.name])
                except BadDeviceState as exc:
                    raise bad(f"snapshot {i}: {exc}") from None
            if type(entry["halted"]) is not bool or type(entry["ended"]) is not bool:
                raise bad(f"snapshot {i} halted/ended flags are not booleans")
            result = self._parse_result(entry["result"], i)
            keyframe, base, delta = entry["keyframe"], entry["base"], entry["delta"]
            if keyframe is not None:
                # RAM from address 0 up to what was in use (all of it for an appliance;
                # a Linux program's pages are given out bottom-up, the rest is zero).
                if (type(keyframe) is not bytes or not 0 < len(keyframe) <= mem_size or len(keyframe) % PAGE
                        or base is not None or delta):
                    raise bad(f"snapshot {i} keyframe is not whole pages of RAM (at most {mem_size} "
                              f"bytes) alone")
                base_snap = None
                pages: dict[int, bytes] = {}
            else:
                if type(base) is not int or not 0 <= base < i or snaps[base].keyframe is None:
                    raise bad(f"snapshot {i} base {base!r} is not an earlier keyframe")
                base_snap = snaps[base]
                if type(delta) is not dict:
                    raise bad(f"snapshot {i} delta is not a map")
                pages = {}
                for off, page in delta.items():
                    if (type(off) is not int or off % PAGE or not RAM_START <= off < mem_size
                            or type(page) is not bytes or len(page) != PAGE):
                        raise bad(f"snapshot {i} delta page {off!r} is outside RAM or not {PAGE} bytes")
                    pages[off] = page
            if i == 0 and (icount != self.first_icount or keyframe != boot_ram or _freeze(devices) != boot_devices
                           or entry["halted"] or entry["ended"] or result is not None):
                raise bad("snapshot 0 is not the machine as it boots")
            ctx = UcContext.__new__(UcContext)
            ctx.__setstate__((cpu, ctx_size, UC_ARCH_X86, UC_MODE_64))
            state = {"devices": _freeze(devices), "halted": entry["halted"], "result": result,
                     "ended": entry["ended"], "digests": {}, "out_bytes": {}}
            # Snapshot 0 was checked equal to boot above; the others wait for a digest.
            snap = _Snapshot(icount, ctx, state, keyframe, base_snap, pages, trusted=i == 0)
            cost += snap.cost
            snaps.append(snap)
        if cost > self.memory_budget + 2 * mem_size:
            raise bad(f"its snapshots hold {cost} bytes, more than the memory budget")
        return snaps, last_icount, console, sockets

    @staticmethod
    def _parse_outputs(rows: object, name: str, last_icount: int) -> list[tuple]:
        """Console rows (icount, bytes, stream) or socket rows (icount, channel, bytes),
        icounts non-decreasing within history."""
        if type(rows) is not list:
            raise sidecar.SidecarInvalid(f"{name} output is not a list")
        parsed, previous = [], 0
        for row in rows:
            ok = type(row) is list and len(row) == 3 and type(row[0]) is int and previous <= row[0] <= last_icount
            if ok and name == "console":
                ok = type(row[1]) is bytes and row[2] in _CONSOLE_STREAMS
            elif ok:
                ok = type(row[1]) is int and 0 <= row[1] < CHANNELS and type(row[2]) is bytes
            if not ok:
                raise sidecar.SidecarInvalid(f"{name} output row {row!r:.60} is malformed")
            previous = row[0]
            parsed.append(tuple(row))
        return parsed

    def _check_outputs(self, console: list[tuple], sockets: list[tuple]) -> None:
        """The sidecar's guest output is, stream by stream, what the recording digested (END)."""
        recorded = self.end.get("outputs") if self.end else None
        if not isinstance(recorded, dict):
            return
        digests: dict[str, hashlib._Hash] = {}
        sizes: dict[str, int] = {}

        def add(stream: str, data: bytes) -> None:
            digests.setdefault(stream, hashlib.sha256()).update(data)
            sizes[stream] = sizes.get(stream, 0) + len(data)
        for _icount, data, stream in console:
            add(stream, data)
        for _icount, chan, data in sockets:
            add(f"sock{chan}", data)
        mine = {stream: [d.hexdigest(), sizes[stream]] for stream, d in digests.items()}
        if mine != {k: v for k, v in recorded.items() if not (isinstance(v, list) and v[1:] == [0])}:
            raise sidecar.SidecarInvalid("its guest output is not the output the recording digested")

    @staticmethod
    def _parse_result(value: object, i: int) -> RunResult | None:
        if value is None:
            return None
        bad = sidecar.SidecarInvalid(f"snapshot {i} run result is malformed")
        if type(value) is not list or len(value) != 5:
            raise bad
        outcome, icount, status, crash, why = value
        if (outcome not in _OUTCOMES or type(icount) is not int or icount < 0
                or (status is not None and type(status) is not int) or type(why) is not str):
            raise bad
        report = None
        if crash is not None:
            if type(crash) is not dict or not _CRASH_FIELDS <= crash.keys() <= _CRASH_FIELDS | _CRASH_OPTIONAL.keys():
                raise bad
            for name, kinds in (*_CRASH_TYPES.items(), *_CRASH_OPTIONAL.items()):
                if name in crash and type(crash[name]) not in kinds:
                    raise bad
            if not all(type(k) is str and type(v) is int for k, v in crash["registers"].items()) \
                    or not all(type(line) is str for line in crash["disassembly"]):
                raise bad
            report = CrashReport(**crash)
        return RunResult(Outcome(outcome), icount, status, report, why)

    # -- snapshots -------------------------------------------------------------------

    def _take_snapshot(self) -> None:
        machine = self.machine
        icount = machine.icount
        i = bisect.bisect_right([s.icount for s in self._snaps], icount)
        if i and self._snaps[i - 1].icount == icount:
            return
        state = {
            # Frozen as bytes: device state holds the devices' own live lists (a Linux
            # program's epoll interest lists, tasks, ...), which the run goes on changing.
            "devices": _freeze(machine.device_state()), "halted": machine.halted, "result": machine.result,
            "ended": self._ended,
            "digests": {k: d.copy() for k, d in machine.output_digests.items()},
            "out_bytes": dict(machine.output_bytes),
        }
        snap = _Snapshot(icount, machine.uc.context_save(), state, trusted=self._trusted_state)
        ram = machine.ram
        in_use = machine.ram_in_use           # RAM beyond this is still zero (a Linux program's)
        keyframe = next((s for s in reversed(self._snaps[:i]) if s.keyframe is not None), None)
        if keyframe is not None:
            # Pages below the keyframe's end differ from it, the rest from zero.
            key = keyframe.keyframe
            covered = min(len(key), in_use)
            key_address = ctypes.cast(ctypes.c_char_p(key), ctypes.c_void_p).value
            changed = (changed_pages(machine._ram_ptr, key_address, RAM_START, covered)
                       + changed_pages(machine._ram_ptr, None, covered, in_use))
            delta = {}
            limit = KEYFRAME_DELTA_LIMIT * in_use / PAGE
            for off in changed:
                delta[off] = ram[off:off + PAGE]
                if len(delta) > limit:
                    break
            if len(delta) <= limit:
                snap.base, snap.delta = keyframe, delta
        if snap.base is None:
            snap.keyframe = bytes(ram[:in_use])
        self._snaps.insert(i, snap)
        self._enforce_budget()

    def _restore(self, snap: _Snapshot) -> None:
        machine = self.machine
        ram = machine.ram
        key = snap.keyframe if snap.keyframe is not None else snap.base.keyframe
        in_use = machine.ram_in_use
        ram[:len(key)] = key
        if in_use > len(key):
            ram[len(key):in_use] = bytes(in_use - len(key))
        if snap.keyframe is None:
            for off, page in snap.delta.items():
                ram[off:off + PAGE] = page
        machine.uc.ctl_flush_tb()                 # RAM changed behind Unicorn's back
        self._trusted_state = snap.trusted
        machine.uc.context_restore(snap.cpu)
        machine.counter.icount = snap.icount
        state = snap.state
        devices = _thaw(state["devices"])          # fresh objects on every restore
        for dev in machine.devices:
            dev.load_state(devices[dev.name])
        machine.halted = state["halted"]
        machine.result = state["result"]
        machine.output_digests = {k: d.copy() for k, d in state["digests"].items()}
        machine.output_bytes = dict(state["out_bytes"])
        self._ended = state["ended"]
        self.boundary.reposition(snap.icount)

    def _enforce_budget(self) -> None:
        """Drop snapshots, far from the position first, until the store fits its budget."""
        while sum(s.cost for s in self._snaps) > self.memory_budget and len(self._snaps) > 2:
            here = self.icount
            bases = {id(s.base) for s in self._snaps if s.base is not None}
            candidates = [s for s in self._snaps[1:] if id(s) not in bases]
            if not candidates:
                return
            victim = max(candidates, key=lambda s: abs(s.icount - here))
            self._snaps.remove(victim)

    def memory_used(self) -> int:
        """Bytes held by the snapshot store."""
        return sum(s.cost for s in self._snaps)

    def _snapshot_before(self, icount: int) -> _Snapshot:
        i = bisect.bisect_right([s.icount for s in self._snaps], icount) - 1
        return self._snaps[max(i, 0)]

    # -- running forward ---------------------------------------------------------------

    def _parallel_pass(self) -> int | None:
        """Start the second half of the first pass in a forked process: the icount of the
        checkpoint it starts from, where this process is to stop; or None (one CPU, a short trace, no
        checkpoint near the middle).

        The child loads the trace's checkpoint (its digest checked), replays to the end
        laying snapshots as this process would, and sends what it learned — in the
        sidecar's form — through a pipe; ``_join_second_pass`` takes it.
        """
        if len(os.sched_getaffinity(0)) < 2 or not hasattr(os, "fork"):
            return None
        start, end = self.first_icount, self._expected_end
        best = None
        for index, ref in enumerate(self.reader.checkpoints):
            if start + max(PARALLEL_MIN, 1) <= ref.icount <= end - max(PARALLEL_MIN, 1):
                if best is None or abs(2 * ref.icount - start - end) < abs(2 * best[1] - start - end):
                    best = (index, ref.icount)
        if best is None:
            return None
        try:
            read_end, write_end = os.pipe()
        except OSError:
            return None
        try:
            pid = os.fork()
        except OSError:                                # no memory or processes left: one pass
            os.close(read_end)
            os.close(write_end)
            return None
        if pid == 0:                                   # the child: never returns
            status = 1
            try:
                os.close(read_end)
                self.progress = None
                self.memory_budget = max(self.memory_budget // 2, 1)
                self._load_disk_checkpoint(best[0])
                self._advance(None, cancel=None)
                self._take_snapshot()
                self.last_icount = self.icount
                content = self._first_pass_content()
                with os.fdopen(write_end, "wb") as out:
                    for chunk in sidecar.packed(content):
                        out.write(chunk)
                status = 0
            except BaseException:
                pass
            finally:
                os._exit(status)
        os.close(write_end)
        self._second_pass = (pid, read_end)
        return best[1]

    def _join_second_pass(self) -> bool:
        """Take the forked process's snapshots and outputs (this process stands at its
        checkpoint). False if it failed or what it sent does not check out: then nothing
        of it is kept."""
        pid, read_end = self._second_pass
        self._second_pass = None
        try:
            with os.fdopen(read_end, "rb") as pipe:
                data = pipe.read()
        finally:
            _, status = os.waitpid(pid, 0)
        if status != 0 or not data:
            return False
        try:
            content = msgpack.unpackb(data, raw=False, strict_map_key=False, unicode_errors="surrogateescape")
            del data
            checkpoint_icount = self.icount
            content["console"] = [list(row) for row in self._console] + content["console"]
            content["sockets"] = [list(row) for row in self._sockets] + content["sockets"]
            snaps, last_icount, console, sockets = self._parse_sidecar(content)
        except Exception:  # noqa: BLE001 - anything amiss in it: this process replays that half
            return False
        boot = self._snaps[0]
        theirs = [snap for snap in snaps[1:] if snap.icount >= checkpoint_icount]
        for snap in theirs:
            snap.trusted = True                        # from the trace's own checkpoint
            if snap.base is snaps[0]:
                snap.base = boot
        self._snaps = [snap for snap in self._snaps if snap.icount < checkpoint_icount] + theirs
        self._console, self._sockets = console, sockets
        self.last_icount = last_icount
        self._enforce_budget()
        return True

    def _abandon_second_pass(self) -> None:
        """The forked process is not wanted (this one failed or was interrupted): stop it."""
        if self._second_pass is not None:
            pid, read_end = self._second_pass
            self._second_pass = None
            os.close(read_end)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(pid, 0)

    def _advance(self, target: int | None, *, cancel, dense: bool = True) -> bool:
        """Run forward to ``target`` (None: to the end), laying snapshots. False when cancelled.

        Snapshots go every SPARSE (SPARSE_LINUX) instructions on a long run, and at halving distances
        down to DENSE before the target, so that stepping back from it is cheap. Stops
        early at the end of history or when a first-hit hook pauses the machine.
        """
        machine = self.machine
        cancel = cancel or _NoCancel
        start = self.icount
        while not self._ended and (target is None or self.icount < target):
            if cancel.is_set():
                return False
            gap = None if target is None else target - self.icount
            sparse = SPARSE if machine.kernel is None else min(SPARSE, SPARSE_LINUX)
            if gap is None or gap > sparse or not dense:
                spacing = sparse
            else:
                spacing = max(DENSE, gap // 2)
            stop_at = self._snapshot_before(self.icount).icount + spacing
            if stop_at <= self.icount:
                stop_at = self.icount + spacing
            if target is not None:
                stop_at = min(stop_at, target)
            result = self._run(stop_at)
            if result.outcome is Outcome.PAUSED:
                return True
            if result.outcome is not Outcome.LIMIT:
                self._ended = True
                break
            if self.icount < (target if target is not None else 1 << 64):
                self._take_snapshot()
            goal = target if target is not None else self._expected_end
            if self.progress and goal > start:
                self.progress(min(1.0, (self.icount - start) / (goal - start)))
        return True

    def _run(self, until: int) -> RunResult:
        """``machine.run(max_instructions=until)``, checking what a sidecar snapshot holds.

        A machine restored from a snapshot the sidecar gave (and no digest has confirmed)
        runs with the trace's digests checked; the first one met confirms the snapshots it
        descends from. One that differs means the sidecar lied: its unconfirmed snapshots
        are dropped, the sidecar file removed, and the run made again from a trusted
        snapshot — the caller gets the true state either way.
        """
        boundary = self.boundary
        untrusted = not self._trusted_state
        checked = boundary.digests_checked
        boundary.verify = untrusted
        try:
            result = self.machine.run(max_instructions=until)
            if untrusted and result.outcome not in (Outcome.LIMIT, Outcome.PAUSED) \
                    and result.icount != self._expected_end:
                raise ReplayDivergence(f"the run ended ({result.outcome.value}) at icount {result.icount}, "
                                       f"not where the recording does")
            return result
        except (ReplayDivergence, CheckpointMismatch):
            if not untrusted:
                raise
            self._drop_untrusted()
            self._restore(self._snapshot_before(self.icount))
            return self._run(until)
        finally:
            boundary.verify = False
            if untrusted and self._trusted_state is False and boundary.digests_checked > checked:
                for snap in self._snaps:               # the trace's own digest agreed
                    snap.trusted = True
                self._trusted_state = True

    def _drop_untrusted(self) -> None:
        """The sidecar's snapshots do not fit the trace: forget them, and the file."""
        self._snaps = [snap for snap in self._snaps if snap.trusted]
        self.sidecar_rejected = True
        try:
            os.unlink(sidecar.sidecar_path(self.path))
        except OSError:
            pass

    def _capture_console(self, stream: str, data: bytes) -> None:
        if self._capturing:
            self._console.append((self.icount, data, stream))

    def _capture_socket(self, chan: int, data: bytes) -> None:
        if self._capturing:
            self._sockets.append((self.icount, chan, data))

    def _go(self, icount: int, *, cancel=None) -> bool:
        """Put the machine at position ``icount`` exactly (clamped to history).

        Starts from the nearest in-memory snapshot, or from the trace's own on-disk
        checkpoint when that is much nearer (snapshots far from here may have been
        dropped to stay within the memory budget).
        """
        icount = max(self.first_icount, min(icount, self.last_icount))
        if icount == self.icount:
            return True
        snap = self._snapshot_before(icount)
        backward = icount < self.icount or snap.icount > self.icount
        start = snap.icount if backward else self.icount
        disk = self._disk_checkpoint_before(icount)
        if disk is not None and disk.icount > start + SPARSE:
            self._load_disk_checkpoint(disk.index)
        elif backward:
            self._restore(snap)
        return self._advance(icount, cancel=cancel)

    def _disk_checkpoint_before(self, icount: int):
        marks = [ref.icount for ref in self.reader.checkpoints]
        i = bisect.bisect_right(marks, icount) - 1
        return self.reader.checkpoints[i] if i >= 0 else None

    def _load_disk_checkpoint(self, index: int) -> None:
        """Load the trace's checkpoint ``index`` into the machine and keep it as a snapshot."""
        self.replay.start_from_checkpoint(index)
        self._trusted_state = True                 # the trace's own checkpoint, digest checked
        self._ended = False
        self.disk_checkpoints_loaded += 1
        self._take_snapshot()

    def _stop_here(self, reason: StopReason, **kw) -> Stop:
        return Stop(reason, self.icount, **kw)

    # -- the API: looking --------------------------------------------------------------

    def registers(self) -> dict[str, int]:
        return self.machine.cpu.registers()

    def read_memory(self, addr: int, size: int) -> bytes:
        try:
            data = self.machine.read_guest(addr, size)
        except (UcError, OverflowError):
            data = None
        if data is None:
            raise UnreadableMemory(f"memory {addr:#x}+{size} is not mapped") from None
        return data

    def _index_outputs(self) -> None:
        """After the first pass: index the captured output by icount for O(log n) lookups."""
        self._console_marks = [icount for icount, _data, _stream in self._console]
        self._console_blob = b"".join(data for _icount, data, _stream in self._console)
        ends, total = [], 0
        for _icount, data, _stream in self._console:
            total += len(data)
            ends.append(total)
        self._console_ends = ends
        self._socket_marks = [entry[0] for entry in self._sockets]

    def console_output(self, upto: int | None = None) -> bytes:
        """The guest's console output written up to position ``upto`` (default: now)."""
        upto = self.icount if upto is None else upto
        i = bisect.bisect_right(self._console_marks, upto)
        return self._console_blob[:self._console_ends[i - 1]] if i else b""

    def socket_output(self, upto: int | None = None) -> list[tuple[int, int, bytes]]:
        """(icount, channel, bytes) the guest sent up to position ``upto`` (default: now)."""
        upto = self.icount if upto is None else upto
        return self._sockets[:bisect.bisect_right(self._socket_marks, upto)]

    def events_between(self, start: int, end: int, kinds: Iterable[EventKind] | None = None) -> list[Event]:
        kinds = set(kinds) if kinds else None
        return list(self.reader.events(start_icount=max(0, start), end_icount=end, kinds=kinds))

    def event_density(self, buckets: int) -> list[int]:
        counts = [0] * max(1, buckets)
        span = max(1, self.last_icount + 1)
        for chunk in self.reader.chunks:
            n = sum(c for k, c in chunk.counts.items() if k != EventKind.CHECKPOINT)
            if not n:
                continue
            lo, hi = chunk.first_icount, max(chunk.first_icount, chunk.last_icount)
            b_lo = min(len(counts) - 1, lo * len(counts) // span)
            b_hi = min(len(counts) - 1, hi * len(counts) // span)
            per = n / (b_hi - b_lo + 1)
            for b in range(b_lo, b_hi + 1):
                counts[b] += per
        return [round(c) for c in counts]

    # -- breakpoints and watchpoints ---------------------------------------------------

    def add_breakpoint(self, addr: int) -> None:
        self.breakpoints.add(addr)

    def remove_breakpoint(self, addr: int) -> None:
        self.breakpoints.discard(addr)

    def add_watchpoint(self, addr: int, length: int, kind: str = "w") -> None:
        if kind not in ("w", "r", "a") or length <= 0:
            raise ValueError(f"bad watchpoint {addr:#x}+{length} {kind!r}")
        wp = Watchpoint(addr, length, kind)
        if wp not in self.watchpoints:
            self.watchpoints.append(wp)

    def remove_watchpoint(self, addr: int, length: int, kind: str = "w") -> None:
        wp = Watchpoint(addr, length, kind)
        if wp in self.watchpoints:
            self.watchpoints.remove(wp)

    def _install(self, hits: list[_Hit], *, first_only: bool, code: Iterable[int] = (),
                 watches: Iterable[Watchpoint] = (),
                 condition: Callable[[int], bool] | None = None) -> list[int]:
        """Add Unicorn hooks that append to ``hits``; with ``first_only`` the first hit pauses.

        Breakpoint hits stop *before* their instruction runs; watchpoint hits after it.
        """
        uc, machine, counter = self.machine.uc, self.machine, self.machine.counter
        handles = []
        if code or watches:
            # Python hooks read the icount at every instruction or access: count each one
            # (this hook goes first, so the icount includes the instruction being hooked).
            counter.set_exact(True)
        # A breakpoint under the start position is stepped over when continuing.
        skip_first = counter.icount + 1 if first_only else -1

        def on_code(_uc, address, _size, _ud):
            n = counter.icount
            if n == skip_first or (condition is not None and not condition(address)):
                return
            hits.append(_Hit(n, address, "b", address))
            if first_only:
                counter.icount = n - 1            # the instruction will not run: uncount it
                machine.pause("breakpoint")
                uc.emu_stop()

        for addr in set(code):
            handles.append(uc.hook_add(UC_HOOK_CODE, on_code, None, addr, addr))

        for wp in watches:
            lo, hi = wp.addr, wp.addr + wp.length

            def on_mem(_uc, access, address, size, value, _ud, lo=lo, hi=hi, wp=wp):
                if address + size <= lo or address >= hi:
                    return
                is_write = access == 17                   # UC_MEM_WRITE
                kind = "w" if is_write else "r"
                if wp.kind != "a" and wp.kind != kind:
                    return
                hit = _Hit(counter.icount, max(address, lo), kind, counter.last_pc)
                if is_write:
                    try:                                  # the address is guest-physical
                        hit.old = bytes(uc.mem_read(address, size))
                    except UcError:
                        hit.old = b""
                    hit.new = (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")
                    hit.address = address
                hits.append(hit)
                if first_only:
                    machine.pause("watchpoint")

            types = 0
            if wp.kind in ("w", "a"):
                types |= UC_HOOK_MEM_WRITE
            if wp.kind in ("r", "a"):
                types |= UC_HOOK_MEM_READ
            handles.append(uc.hook_add(types, on_mem, None, max(0, lo - 7), hi - 1))
        if handles:
            uc.ctl_flush_tb()            # blocks translated before the hooks would miss them
        return handles

    def _uninstall(self, handles: list[int]) -> None:
        for h in handles:
            self.machine.uc.hook_del(h)
        if handles:
            self.machine.uc.ctl_flush_tb()
        self.machine.counter.set_exact(False)

    # -- the API: moving ---------------------------------------------------------------

    def seek(self, icount: int, *, cancel=None) -> Stop:
        if not self._go(icount, cancel=cancel):
            return self._stop_here(StopReason.CANCELLED)
        return self._stop_here(StopReason.SEEK)

    def step(self) -> Stop:
        """One instruction forward. Watchpoints are reported by continuing, not by steps,
        in both directions, so that a debugger's idea of a watched value stays consistent."""
        if self.icount >= self.last_icount:
            return self._end_stop()
        self._go(self.icount + 1)
        return self._stop_here(StopReason.STEP) if self.icount < self.last_icount else self._end_stop()

    def step_back(self) -> Stop:
        if self.icount <= self.first_icount:
            return self._stop_here(StopReason.HISTORY_START)
        self._go(self.icount - 1)
        return self._stop_here(StopReason.STEP if self.icount > self.first_icount else StopReason.HISTORY_START)

    def _end_stop(self) -> Stop:
        reason = StopReason.CRASH if self.crash_icount is not None else StopReason.HISTORY_END
        return self._stop_here(reason)

    def goto_start(self, cancel=None) -> Stop:
        return self._goto(self.first_icount, StopReason.HISTORY_START, cancel)

    def goto_end(self, cancel=None) -> Stop:
        return self._goto(self.last_icount, None, cancel)

    def goto_crash(self, cancel=None) -> Stop:
        if self.crash_icount is None:
            return self.goto_end(cancel)
        return self._goto(self.crash_icount, StopReason.CRASH, cancel)

    def _goto(self, icount: int, reason: StopReason | None, cancel) -> Stop:
        if not self._go(icount, cancel=cancel):
            return self._stop_here(StopReason.CANCELLED)
        return self._stop_here(reason) if reason is not None else self._end_stop()

    def cont(self, cancel=None, *, until: int | None = None,
             condition: Callable[[int], bool] | None = None) -> Stop:
        """Continue forward to a breakpoint or watchpoint, or the end of history.

        Args:
            until: stop at this position at the latest (a SEEK stop there, if nothing
                was hit before it).
            condition: called with the address of a breakpoint about to be hit; False
                lets the run go past it (a debugger hiding some threads).
        """
        return self._forward_until(code=self.breakpoints, watches=self.watchpoints, cancel=cancel,
                                   condition=condition, until=until)

    def _forward_until(self, *, code, watches, cancel, condition=None, until: int | None = None) -> Stop:
        if self.icount >= self.last_icount:
            return self._end_stop()
        limit = self.last_icount if until is None else max(self.icount, min(until, self.last_icount))
        hits: list[_Hit] = []
        handles = self._install(hits, first_only=True, code=code, watches=watches, condition=condition)
        try:
            done = self._advance(limit, cancel=cancel)
        finally:
            self._uninstall(handles)
            if self.machine.result is not None and self.machine.result.outcome is Outcome.PAUSED:
                self.machine.result = None
        if not done:
            return self._stop_here(StopReason.CANCELLED)
        if hits:
            hit = hits[0]
            if hit.kind == "b":
                return self._stop_here(StopReason.BREAKPOINT, address=hit.address)
            return self._stop_here(StopReason.WATCHPOINT, address=hit.address, watch_kind=hit.kind)
        if self.icount < self.last_icount:
            return self._stop_here(StopReason.SEEK)           # at ``until``
        return self._end_stop()

    def cont_back(self, cancel=None, *, condition: Callable[[int], bool] | None = None) -> Stop:
        """Continue backward to the last breakpoint or watchpoint hit before now, or the start.
        ``condition``: as for ``cont``."""
        hit = self._search_back(code=self.breakpoints, watches=self.watchpoints, cancel=cancel,
                                condition=condition)
        if hit is _CANCELLED:
            return self._stop_here(StopReason.CANCELLED)
        if hit is None:
            self._go(self.first_icount)
            return self._stop_here(StopReason.HISTORY_START)
        self._go(hit.icount - 1)
        if hit.kind == "b":
            return self._stop_here(StopReason.BREAKPOINT, address=hit.address)
        return self._stop_here(StopReason.WATCHPOINT, address=hit.address, watch_kind=hit.kind)

    def _search_back(self, *, code=(), watches=(), cancel=None, before: int | None = None,
                     condition=None, accept: Callable[[_Hit], bool] | None = None):
        """The last hit whose position (hit.icount - 1) is before ``before`` (default: now)."""
        origin = self.icount
        before = origin if before is None else before
        cancel = cancel or _NoCancel
        if not code and not watches:
            return None
        self._take_snapshot()                     # so that coming back here costs nothing
        end = before
        try:
            while end > self.first_icount:
                if cancel.is_set():
                    return _CANCELLED
                snap = self._snapshot_before(end - 1)
                self._restore(snap)
                hits: list[_Hit] = []
                handles = self._install(hits, first_only=False, code=code, watches=watches,
                                        condition=condition)
                try:
                    self._run(end)
                finally:
                    self._uninstall(handles)
                found = [h for h in hits if h.icount - 1 < before and h.icount <= end
                         and (accept is None or accept(h))]
                if found:
                    return found[-1]
                if self.progress and origin > self.first_icount:
                    self.progress(1 - (snap.icount - self.first_icount) / (origin - self.first_icount))
                end = snap.icount
            return None
        finally:
            self._go(origin)

    def step_over(self, cancel=None) -> Stop:
        """One instruction; a call runs to its return."""
        regs = self.registers()
        insn = self._instruction_at(regs["rip"])
        if insn is None or insn.mnemonic != "call":
            return self.step()
        ret_addr, rsp = regs["rip"] + insn.size, regs["rsp"]
        return self._run_to_address(ret_addr, lambda _a: self.machine.cpu.reg("rsp") == rsp, cancel)

    def _run_to_address(self, address: int, condition, cancel=None) -> Stop:
        stop = self._forward_until(code={address}, watches=(), cancel=cancel, condition=condition)
        if stop.reason is StopReason.BREAKPOINT:
            return Stop(StopReason.STEP, stop.icount)
        return stop

    def step_over_back(self) -> Stop:
        """Back one instruction; stepping back out of a callee's return goes to its call."""
        before = self.registers()
        stop = self.step_back()
        if stop.reason is not StopReason.STEP:
            return stop
        insn = self._instruction_at(self.registers()["rip"])
        if insn is not None and insn.mnemonic == "ret" and self.registers()["rsp"] < before["rsp"]:
            slot = before["rsp"] - 8
            record = self.last_write(slot, 8)
            if record is not None:
                self._go(record.icount - 1)
                return self._stop_here(StopReason.STEP)
        return stop

    def finish_back(self, cancel=None) -> Stop:
        """Back to the call that entered the current function."""
        entry = self._function_entry(cancel)
        if entry is _CANCELLED:
            return self._stop_here(StopReason.CANCELLED)
        if entry is None:
            return self.step_back()
        self._go(entry.icount - 1)
        return self.step_back()

    def finish(self, cancel=None) -> Stop:
        """Forward to just after the current function returns."""
        origin = self.icount
        entry = self._function_entry(cancel)
        if entry is _CANCELLED:
            return self._stop_here(StopReason.CANCELLED)
        if entry is None:
            return self.step()
        self._go(entry.icount - 1)
        rsp = self.registers()["rsp"]
        ret_addr = int.from_bytes(self.read_memory(rsp, 8), "little")
        self._go(origin)
        return self._run_to_address(ret_addr, lambda _a: self.machine.cpu.reg("rsp") == rsp + 8, cancel)

    def _function_entry(self, cancel):
        """The hit at which the current function was entered (its first instruction), or None."""
        regs = self.registers()
        sym = self.symbols.lookup(regs["rip"])
        if sym is None:
            return None
        if sym.address == regs["rip"]:
            return _Hit(self.icount + 1, sym.address, "b", sym.address)
        rsp_now = regs["rsp"]
        rsps: dict[int, int] = {}

        def record_rsp(_addr):
            rsps[self.machine.counter.icount] = self.machine.cpu.reg("rsp")
            return True
        return self._search_back(code={sym.address}, cancel=cancel, condition=record_rsp,
                                 accept=lambda h: rsps.get(h.icount, -1) >= rsp_now)

    def next_event(self, kinds: Iterable[EventKind] | None = None, cancel=None) -> Stop:
        kinds = set(kinds) if kinds else None
        for event in self.reader.events(start_icount=self.icount + 1, kinds=kinds):
            if event.icount > self.icount and event.icount <= self.last_icount:
                if not self._go(event.icount, cancel=cancel):
                    return self._stop_here(StopReason.CANCELLED)
                return self._stop_here(StopReason.EVENT, detail=event.kind.name)
        return self.goto_end(cancel)

    def prev_event(self, kinds: Iterable[EventKind] | None = None, cancel=None) -> Stop:
        kinds = set(kinds) if kinds else None
        previous = None
        for event in self.reader.events(end_icount=self.icount, kinds=kinds):
            if event.icount < self.icount:
                previous = event
        if previous is None:
            return self.goto_start(cancel)
        if not self._go(previous.icount, cancel=cancel):
            return self._stop_here(StopReason.CANCELLED)
        return self._stop_here(StopReason.EVENT, detail=previous.kind.name)

    # -- the API: queries ----------------------------------------------------------------

    def last_write(self, addr: int, size: int = 1, before: int | None = None,
                   cancel=None) -> WriteRecord | None:
        """The last write to [addr, addr+size) before ``before`` (default now); None if none.

        Raises:
            OperationCancelled: ``cancel`` was set before the search finished.
        """
        hit = self._search_back(watches=[Watchpoint(addr, size, "w")], before=before, cancel=cancel)
        if hit is _CANCELLED:
            raise OperationCancelled("the search for the last write was cancelled")
        if hit is None:
            return None
        return WriteRecord(hit.icount, hit.rip, hit.address, hit.old, hit.new)

    def memory_history(self, addr: int, size: int, start: int, end: int) -> list[WriteRecord]:
        origin = self.icount
        self._take_snapshot()
        hits: list[_Hit] = []
        try:
            self._go(start)
            handles = self._install(hits, first_only=False, watches=[Watchpoint(addr, size, "w")])
            try:
                self._advance(min(end, self.last_icount), cancel=None)
            finally:
                self._uninstall(handles)
        finally:
            self._go(origin)
        return [WriteRecord(h.icount, h.rip, h.address, h.old, h.new)
                for h in hits if start < h.icount <= end]

    def _instruction_at(self, address: int):
        try:
            code = self.read_memory(address, 16)
        except UnreadableMemory:
            return None
        return next(_CS.disasm(code, address, 1), None)

    def close(self) -> None:
        """Free the snapshots, the machine and the trace now; the object is unusable after.

        The boundary's output hooks point back here (a cycle through bound methods), so
        without this the snapshots' RAM would wait for the garbage collector.
        """
        self.sidecar_written()
        self._snaps = []
        self._console = []
        self._sockets = []
        self._console_blob = b""
        self.boundary.__dict__.pop("console_write", None)
        self.boundary.__dict__.pop("stdio_write", None)
        self.boundary.__dict__.pop("sock_send", None)
        self.replay.close()

    def __del__(self) -> None:
        if getattr(self, "replay", None) is not None and getattr(self, "boundary", None) is not None:
            self.close()

    def __enter__(self) -> "TimeTravel":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

_sidecar_writers: dict[str, threading.Thread] = {}     # trace (absolute path): its sidecar's writer


def _write_sidecar(trace: str, content: dict, problems: list[str]) -> None:
    """The writer thread's work. It holds no reference to the engine: dropping the engine
    closes it at once, and close() waits here."""
    try:
        sidecar.write(trace, content)
    except SymlinkRefused as exc:                  # planted while it was written
        problems.append(f"sidecar index not written: {exc}")
    except OSError:
        pass                                       # a read-only directory: reopening just costs a pass


def _wait_for_sidecar(trace: str) -> None:
    """Until the sidecar of ``trace`` being written in this process (if any) is on disk."""
    key = os.path.abspath(trace)
    writer = _sidecar_writers.get(key)
    if writer is not None and writer is not threading.current_thread():
        writer.join()
        if _sidecar_writers.get(key) is writer:
            del _sidecar_writers[key]


def _call(ref, method: str, *args) -> None:
    engine = ref()
    if engine is not None:
        getattr(engine, method)(*args)


class _NoCancelType:
    @staticmethod
    def is_set() -> bool:
        return False


_NoCancel = _NoCancelType()
_CANCELLED = object()

"""The time-travel engine: exact positions, both directions, and the race worked example."""

from __future__ import annotations

import shutil
import subprocess

import capstone
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import describe, free_port, replay_verify, vmrr
from replay import Replay
from replay.timetravel import StopReason, TimeTravel

pytestmark = pytest.mark.skipif(shutil.which("redis-benchmark") is None, reason="needs redis-tools")
_CS = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
_CS.detail = True


def _record_kvstore(path, start_vmrr, image: str, load: list[str], *extra: str, wait: float | None = None):
    rec = start_vmrr(["record", image, "-o", path, "--listen", f"127.0.0.1:{free_port()}", "--no-stdin", *extra])
    subprocess.run(["redis-cli", "-p", str(rec.port), "SET", "session", "s", "PX", "300"], check=True,
                   capture_output=True, timeout=10)
    bench = subprocess.Popen(["redis-benchmark", "-p", str(rec.port), "-q", *load],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if wait is None:
            bench.wait(60)
            return rec.stop()
        rec.wait(wait)
        return rec.finish()
    finally:
        bench.kill()
        bench.wait()


def _recorded_kvstore(path, load: list[str], *extra: str):
    """Record the kvstore appliance under ``load``: the recording's CompletedProcess."""
    from conftest import VmrrProcess
    procs = []

    def start(args):
        proc = VmrrProcess(args)
        procs.append(proc)
        proc.wait_listening()
        return proc
    try:
        return _record_kvstore(path, start, "kvstore", load, *extra)
    finally:
        for proc in procs:
            proc.terminate_quietly()


@pytest.fixture(scope="module")
def kv_trace(tmp_path_factory, request):
    path = tmp_path_factory.mktemp("tt") / "kv.vmrr"
    done = _recorded_kvstore(path, ["-c", "4", "-n", "300", "-t", "set,get,lpush,lrange_100"])
    assert done.returncode == 0, describe(done)
    replay_verify(path)
    return str(path)


@pytest.fixture(scope="module")
def tt(kv_trace):
    engine = TimeTravel(kv_trace)
    yield engine
    engine.close()


def _straight(path: str, icount: int):
    with Replay(path, verify=False) as rep:
        rep.run(until=icount)
        return rep.registers(), rep.machine.ram_digest()


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(st.tuples(st.sampled_from(["seek", "step", "back", "over", "over_back", "event", "prev_event"]),
                              st.floats(0, 1)), min_size=1, max_size=6))
def test_any_path_to_a_position_gives_the_same_state(tt, kv_trace, ops):
    for op, x in ops:
        if op == "seek":
            tt.seek(int(x * tt.last_icount))
        elif op == "step":
            tt.step()
        elif op == "back":
            tt.step_back()
        elif op == "over":
            tt.step_over()
        elif op == "over_back":
            tt.step_over_back()
        elif op == "event":
            tt.next_event()
        else:
            tt.prev_event()
    regs, ram = _straight(kv_trace, tt.icount)
    assert tt.registers() == regs
    assert tt.machine.ram_digest() == ram


def test_breakpoint_hits_are_the_same_forward_and_backward(tt):
    addr = tt.symbols.address_of("command_execute")
    assert addr is not None
    tt.add_breakpoint(addr)
    try:
        tt.goto_start()
        forward = []
        for _ in range(12):
            stop = tt.cont()
            assert stop.reason is StopReason.BREAKPOINT
            assert tt.registers()["rip"] == addr
            forward.append(stop.icount)
        assert forward == sorted(set(forward))
        backward = []
        while True:
            stop = tt.cont_back()
            if stop.reason is not StopReason.BREAKPOINT:
                assert stop.reason is StopReason.HISTORY_START and tt.icount == 0
                break
            backward.append(stop.icount)
        assert backward == forward[-2::-1]
    finally:
        tt.remove_breakpoint(addr)


def test_watchpoint_and_last_write_agree(tt):
    stats = tt.symbols.address_of("stats")
    tt.goto_end()
    record = tt.last_write(stats, 8)
    assert record is not None and record.icount <= tt.last_icount
    tt.add_watchpoint(stats, 8, "w")
    try:
        stop = tt.cont_back()
    finally:
        tt.remove_watchpoint(stats, 8, "w")
    assert stop.reason is StopReason.WATCHPOINT
    assert stop.icount == record.icount - 1 and tt.registers()["rip"] == record.rip
    assert tt.read_memory(record.address, len(record.old)) == record.old
    tt.step()
    assert tt.read_memory(record.address, len(record.new)) == record.new


def test_a_small_memory_budget_is_respected_and_still_exact(kv_trace):
    engine = TimeTravel(kv_trace, memory_budget=200 << 20)
    try:
        for fraction in (0.9, 0.1, 0.5, 0.7, 0.3):
            engine.seek(int(fraction * engine.last_icount))
            engine.step_back()
            assert engine.memory_used() <= 200 << 20
        regs, ram = _straight(kv_trace, engine.icount)
        assert engine.registers() == regs and engine.machine.ram_digest() == ram
    finally:
        engine.close()


def _pointer_source(engine: TimeTravel, bad_pointer: int, steps: int = 50) -> int:
    """Walking back from the crash, the memory address the bad pointer was loaded from."""
    for _ in range(steps):
        engine.step_back()
        regs = engine.registers()
        insn = next(_CS.disasm(engine.read_memory(regs["rip"], 16), regs["rip"], 1))
        if insn.mnemonic != "mov" or len(insn.operands) != 2:
            continue
        src = insn.operands[1]
        if src.type != capstone.x86.X86_OP_MEM:
            continue
        base = regs[insn.reg_name(src.mem.base)] if src.mem.base else 0
        address = base + src.mem.disp
        if int.from_bytes(engine.read_memory(address, 8), "little") == bad_pointer:
            return address
    raise AssertionError("no load of the bad pointer found near the crash")


def test_race_worked_example_reverse_continue_lands_in_the_timer_interrupt(tmp_path, start_vmrr):
    """docs/timetravel.md: from the crash, watch the corrupted field, reverse-continue."""
    trace = tmp_path / "race.vmrr"
    done = _record_kvstore(trace, start_vmrr, "kvstore-race",
                           ["-c", "20", "-n", "2000000", "-r", "1000", "SET", "key:__rand_int__", "v", "PX", "5"],
                           "--chaos=7", wait=40)
    assert done.returncode == 3, describe(done)
    replay_verify(trace, timeout=120)
    engine = TimeTravel(str(trace))
    try:
        assert engine.goto_crash().reason is StopReason.CRASH
        bad = engine.end["fault_address"]
        field = _pointer_source(engine, bad)
        engine.goto_crash()
        engine.add_watchpoint(field, 8, "w")
        stop = engine.cont_back()
        assert stop.reason is StopReason.WATCHPOINT and stop.address == field
        rip = engine.registers()["rip"]
        assert engine.symbols.lookup(rip).name == "free"
        rsp = engine.registers()["rsp"]
        frames = {engine.symbols.lookup(int.from_bytes(engine.read_memory(rsp + 8 * i, 8), "little")).name
                  for i in range(64)
                  if engine.symbols.lookup(int.from_bytes(engine.read_memory(rsp + 8 * i, 8), "little"))}
        assert {"db_reap_expired", "on_timer"} <= frames          # the reaper, in the timer interrupt
        engine.step()
        assert int.from_bytes(engine.read_memory(field, 8), "little") == bad
    finally:
        engine.close()


def test_the_sidecar_index_skips_the_first_pass_and_gives_the_same_positions(kv_trace):
    import os
    idx = kv_trace + ".idx"
    if os.path.exists(idx):
        os.unlink(idx)
    first = TimeTravel(kv_trace)
    assert not first.loaded_from_sidecar
    first.sidecar_written()                    # written by a thread while the engine is in use
    assert os.path.exists(idx)
    assert oct(os.stat(idx).st_mode & 0o777) == "0o600"
    second = TimeTravel(kv_trace)
    try:
        assert second.loaded_from_sidecar and second.last_icount == first.last_icount
        assert second.console_output(second.last_icount) == first.console_output(first.last_icount)
        for fraction in (0.8, 0.2, 0.5):
            target = int(fraction * first.last_icount)
            first.seek(target)
            second.seek(target)
            assert first.registers() == second.registers()
            assert first.machine.ram_digest() == second.machine.ram_digest()
    finally:
        first.close()
        second.close()


@pytest.mark.parametrize("damage", ["flip", "truncate", "stale", "garbage"])
def test_a_corrupt_or_stale_sidecar_is_detected_and_rebuilt(kv_trace, tmp_path, damage):
    import os
    import shutil as sh
    trace = str(tmp_path / "copy.vmrr")
    sh.copy(kv_trace, trace)
    TimeTravel(trace).close()                          # writes copy.vmrr.idx
    idx = trace + ".idx"
    data = bytearray(open(idx, "rb").read())
    if damage == "flip":
        data[len(data) // 2] ^= 0x40
    elif damage == "truncate":
        data = data[: len(data) // 3]
    elif damage == "garbage":
        data = bytearray(os.urandom(len(data)))
    else:                                              # the trace changed under its sidecar
        with open(trace, "ab") as f:
            f.write(b"\0")
        os.truncate(trace, os.path.getsize(trace) - 1)
        other = str(tmp_path / "other.vmrr")
        proc = vmrr("record", "t_interrupts", "-o", other, "--no-stdin")
        assert proc.returncode == 0, describe(proc)
        TimeTravel(other).close()
        data = bytearray(open(other + ".idx", "rb").read())
    open(idx, "wb").write(bytes(data))
    engine = TimeTravel(trace)
    try:
        assert not engine.loaded_from_sidecar
        regs, ram = _straight(trace, engine.last_icount // 2)
        engine.seek(engine.last_icount // 2)
        assert engine.registers() == regs and engine.machine.ram_digest() == ram
    finally:
        engine.close()
    assert TimeTravel(trace).loaded_from_sidecar       # rebuilt, and good again


def test_on_disk_checkpoints_serve_seeks_when_snapshots_were_dropped(tmp_path):
    trace = tmp_path / "cpu.vmrr"
    proc = vmrr("record", "cpubench", "-o", trace, "--no-stdin", "--args", "rounds=4",
                "--checkpoint-every", "10000000", timeout=120)
    assert proc.returncode == 0, describe(proc)
    replay_verify(trace)
    engine = TimeTravel(str(trace), memory_budget=70 << 20, sidecar=False)   # about one keyframe
    try:
        for fraction in (0.9, 0.3, 0.8, 0.55):
            target = int(fraction * engine.last_icount)
            engine.seek(target)
            regs, ram = _straight(str(trace), target)
            assert engine.registers() == regs and engine.machine.ram_digest() == ram, target
        assert engine.disk_checkpoints_loaded > 0
    finally:
        engine.close()


def test_an_appliance_first_pass_split_at_a_checkpoint_is_exact(tmp_path, monkeypatch):
    """A server appliance with sockets, checkpoints every 150k instructions: the first pass
    split in two processes gives the outputs and positions of one straight pass."""
    from replay import timetravel
    from timetravel_helpers import check_positions
    path = tmp_path / "kv.vmrr"
    done = _recorded_kvstore(path, ["-c", "2", "-n", "200", "-t", "set,get"], "--checkpoint-every", "150000")
    assert done.returncode == 0, describe(done)
    trace = str(path)
    monkeypatch.setattr(timetravel, "PARALLEL_MIN", 0)
    monkeypatch.setattr(timetravel.os, "sched_getaffinity", lambda pid: {0, 1})
    with TimeTravel(trace, sidecar=False) as split:
        assert split.first_pass_split is not None
        monkeypatch.setattr(timetravel, "PARALLEL_MIN", 1 << 62)
        with TimeTravel(trace, sidecar=False) as whole:
            assert (split.last_icount, split._console, split._sockets) == \
                (whole.last_icount, whole._console, whole._sockets)
        assert check_positions(trace, count=6, seed=4, engine=split) == []

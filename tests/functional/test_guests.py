"""Every test guest, recorded and replayed through the real CLI (the rr way).

Each guest in guests/images/t_*.elf is recorded with ``vmrr record``, its success marker
and exit code checked, then replayed with ``--verify``: the replay must exit 0, verify
the final state and reproduce the console byte for byte. Crash guests must stop with a
full crash report (exit 3) that the replay reproduces at the same icount and RIP.
"""

from __future__ import annotations

import json
import re

import pytest

from conftest import IMAGES, describe, guest, record_and_replay, vmrr

pytestmark = pytest.mark.timeout(60)

# name -> (crash kind, vector or None, detail text, "=>" line text)
CRASHES = {
    "t_crash_null": ("unmapped access", None, "write of 8 bytes at 0x8, which is not RAM",
                     "mov qword ptr [8], 1"),
    "t_crash_unhandled": ("unhandled exception", 0, "#DE divide error", "div rcx"),
    "t_crash_double": ("double fault", 3, "cannot push the interrupt frame", None),
    "t_crash_fetch": ("unmapped access", None, "instruction fetch at 0x7fff0000", "<not in RAM>"),
}
SERVERS = {"t_echo"}                              # tested in test_sockets.py
# Guests with an exit code or marker other than "PASS <name>" and 0.
SPECIAL = {
    "t_exit_status": (1, "t_exit_status: powering off with status 7"),
    "t_poweroff_cli_hlt": (0, "t_poweroff_cli_hlt: halting with interrupts off"),
}
STDIN = {"t_nested": b"x"}                        # guests that read the console


def _all_guests() -> list[str]:
    return sorted(p.stem for p in IMAGES.glob("t_*.elf"))


ORDINARY = [g for g in _all_guests() if g not in CRASHES and g not in SERVERS] or ["t_hello"]


def events(trace, *kinds) -> list[dict]:
    args = ["events", trace, "--json"]
    for kind in kinds:
        args += ["--kind", kind]
    proc = vmrr(*args)
    assert proc.returncode == 0, describe(proc)
    return [json.loads(line) for line in proc.stdout.splitlines()]


def info(trace) -> dict:
    proc = vmrr("info", trace, "--json")
    assert proc.returncode == 0, describe(proc)
    return json.loads(proc.stdout)


@pytest.mark.parametrize("name", ORDINARY)
def test_guest_records_and_replays(tmp_path, name):
    image = guest(name)
    code, marker = SPECIAL.get(name, (0, f"PASS {name}"))
    record, replay, trace = record_and_replay(tmp_path, image, input=STDIN.get(name))
    assert record.returncode == code, describe(record)
    assert marker in record.stdout.splitlines(), describe(record)
    assert f"FAIL {name}" not in record.stdout
    end = info(trace)["end"]
    assert end["reason"] == "poweroff", end
    assert "guest powered off with status" in replay.stderr
    if name == "t_exit_status":
        assert end["exit_status"] == 7
        assert "guest powered off with status 7" in record.stderr
        assert "guest powered off with status 7" in replay.stderr


def test_hello_prints_its_boot_arguments(tmp_path):
    image = guest("t_hello")
    record, _replay, trace = record_and_replay(tmp_path, image, "--args", "x=1 y")
    assert "args=x=1 y" in record.stdout.splitlines()
    assert info(trace)["machine"]["boot_args"] == "x=1 y"


def test_run_passes_boot_arguments():
    proc = vmrr("run", guest("t_hello"), "--args", "a b", "--no-stdin")
    assert proc.returncode == 0, describe(proc)
    assert proc.stdout.splitlines() == ["hello from the guest", "args=a b", "PASS t_hello"]
    assert "guest powered off with status 0" in proc.stderr


def test_entropy_values_in_the_trace_are_the_ones_the_guest_saw(tmp_path):
    record, _replay, trace = record_and_replay(tmp_path, guest("t_entropy"))
    assert record.returncode == 0, describe(record)
    printed = [int(word, 16) for line in record.stdout.splitlines()[:8] for word in line.split()]
    recorded = [e["payload"] for e in events(trace, "ENTROPY")]
    assert len(printed) == 64
    assert recorded == printed
    icounts = [e["icount"] for e in events(trace, "ENTROPY")]
    assert icounts == sorted(set(icounts)), "each read has its own, increasing icount"


def test_rdtsc_values_in_the_trace_are_the_ones_the_guest_saw(tmp_path):
    record, _replay, trace = record_and_replay(tmp_path, guest("t_rdtsc"))
    assert record.returncode == 0, describe(record)
    match = re.search(r"tsc1=(\d+) tsc2=(\d+)", record.stdout)
    assert match, describe(record)
    assert [e["payload"] for e in events(trace, "RDTSC")] == [int(match[1]), int(match[2])]
    assert len(events(trace, "CLOCK")) == 3


def test_exceptions_are_logged_with_their_vectors(tmp_path):
    record, _replay, trace = record_and_replay(tmp_path, guest("t_exceptions"))
    assert record.returncode == 0, describe(record)
    vectors = [e["payload"][0] for e in events(trace, "EXCEPTION")]
    assert vectors == [0, 6, 3, 128, 6]


def test_interrupts_are_logged(tmp_path):
    record, _replay, trace = record_and_replay(tmp_path, guest("t_interrupts"))
    assert record.returncode == 0, describe(record)
    interrupts = events(trace, "INTERRUPT")
    assert [e["payload"] for e in interrupts] == [32] * 20
    assert len(events(trace, "TIMER")) == 20


def test_nested_interrupts_see_the_console_byte(tmp_path):
    record, _replay, trace = record_and_replay(tmp_path, guest("t_nested"), input=b"x")
    assert record.returncode == 0, describe(record)
    assert "PASS t_nested" in record.stdout
    console = events(trace, "CONSOLE_IN")
    assert [e["payload"] for e in console] == [{"hex": b"x".hex()}]
    vectors = [e["payload"] for e in events(trace, "INTERRUPT")]
    assert 33 in vectors and vectors.count(32) >= 3


@pytest.mark.parametrize("name", sorted(CRASHES))
def test_crash_is_captured_and_replayed(tmp_path, name):
    kind, vector, detail, marked = CRASHES[name]
    record, replay, trace = record_and_replay(tmp_path, guest(name))
    assert record.returncode == 3, describe(record)
    vec = f" vector {vector}" if vector is not None else ""
    summary = re.search(rf"^guest crashed: {re.escape(kind)}{vec} at rip=(0x[0-9a-f]+) "
                        rf"icount=(\d+): (.*)$", record.stderr, re.M)
    assert summary, describe(record)
    rip, icount = int(summary[1], 16), int(summary[2])
    assert detail in summary[3]
    arrow = [line for line in record.stderr.splitlines() if line.lstrip().startswith("=>")]
    assert len(arrow) == 1, describe(record)
    assert f"{rip:#x}" in arrow[0]
    if marked:
        assert marked in arrow[0]
    assert "registers:" in record.stderr
    assert re.search(r"rax=[0-9a-f]{16}", record.stderr)
    assert re.search(rf"rip=0*{rip:x}\b", record.stderr)
    assert "the crash was captured in full" in record.stderr
    assert "Traceback" not in record.stderr

    end = info(trace)["end"]
    assert (end["reason"], end["kind"], end["vector"], end["icount"], end["rip"]) == \
        ("crash", kind, vector, icount, rip)

    # The replay stops at the same crash: same kind, icount and rip, same report.
    assert summary[0] in replay.stderr.splitlines(), describe(replay)
    assert f"verified: crash recurred: {kind} at rip {rip:#x}, icount {icount}" in replay.stderr
    assert crash_report(replay.stderr) == crash_report(record.stderr)


def crash_report(stderr: str) -> str:
    """The multi-line crash report: from "guest crashed:" to the next "vmrr:" line."""
    match = re.search(r"^guest crashed:.*?(?=^vmrr: |\Z)", stderr, re.M | re.S)
    assert match, stderr
    return match[0]

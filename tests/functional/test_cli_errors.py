"""Bad input never produces a traceback: one ``vmrr: error:`` line on stderr and exit 2."""

from __future__ import annotations

import io
import socket

import pytest
from elftools.elf.elffile import ELFFile

from conftest import IMAGES, describe, guest, record_and_replay, vmrr

pytestmark = pytest.mark.timeout(60)


def assert_usage_error(proc, *fragments: str) -> str:
    """Exit 2, nothing on stdout, exactly one stderr line starting "vmrr: error:"."""
    assert proc.returncode == 2, describe(proc)
    assert "Traceback" not in proc.stderr, describe(proc)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, describe(proc)
    assert lines[0].startswith("vmrr: error: "), describe(proc)
    for fragment in fragments:
        assert fragment in lines[0], describe(proc)
    assert proc.stdout == "", describe(proc)
    return lines[0]


@pytest.mark.parametrize("command", ["run", "record"])
def test_missing_image(tmp_path, command):
    missing = tmp_path / "nope.elf"
    extra = ["-o", tmp_path / "t.vmrr"] if command == "record" else []
    proc = vmrr(command, missing, *extra, "--no-stdin")
    assert_usage_error(proc, str(missing), "no such file")
    assert list(tmp_path.iterdir()) == []


def test_not_an_elf(tmp_path):
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(b"this is not an ELF file\n" * 100)
    assert_usage_error(vmrr("run", garbage, "--no-stdin"), str(garbage), "not an ELF")


def test_empty_file(tmp_path):
    empty = tmp_path / "empty.elf"
    empty.write_bytes(b"")
    assert_usage_error(vmrr("run", empty, "--no-stdin"), str(empty))


def test_dynamic_executable_is_rejected(tmp_path):
    true = "/bin/true"
    with open(true, "rb") as f:
        if f.read(4) != b"\x7fELF":
            pytest.skip("/bin/true is not an ELF here")
    assert_usage_error(vmrr("run", true, "--no-stdin"), true)


def test_wrong_architecture(tmp_path):
    data = bytearray((IMAGES / "t_hello.elf").read_bytes())
    data[18:20] = (183).to_bytes(2, "little")          # e_machine = EM_AARCH64
    arm = tmp_path / "arm.elf"
    arm.write_bytes(bytes(data))
    assert_usage_error(vmrr("run", arm, "--no-stdin"), str(arm), "x86-64")


def segment_ends(data: bytes) -> list[int]:
    """File offsets where the PT_LOAD segments with file bytes end."""
    elf = ELFFile(io.BytesIO(data))
    return sorted(seg["p_offset"] + seg["p_filesz"] for seg in elf.iter_segments()
                  if seg["p_type"] == "PT_LOAD" and seg["p_filesz"] > 0)


@pytest.mark.parametrize("where", ["first segment", "last segment"])
def test_truncated_image(tmp_path, where):
    data = guest("t_hello").read_bytes()
    ends = segment_ends(data)
    size = (ends[0] if where == "first segment" else ends[-1]) - 1     # one byte short
    cut = tmp_path / "cut.elf"
    cut.write_bytes(data[:size])
    trace = tmp_path / "cut.vmrr"
    line = assert_usage_error(vmrr("record", cut, "-o", trace, "--no-stdin"), str(cut))
    assert "truncated" in line
    assert not trace.exists() and not (tmp_path / "cut.vmrr.incomplete").exists()


def test_unknown_builtin_name():
    assert_usage_error(vmrr("run", "no-such-appliance", "--no-stdin"), "no-such-appliance",
                       "built-in appliance")


def test_busy_listen_port(tmp_path):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        trace = tmp_path / "busy.vmrr"
        for args in (["run", guest("t_echo"), "--no-stdin"],
                     ["record", guest("t_echo"), "-o", trace, "--no-stdin"]):
            proc = vmrr(*args, "--listen", f"127.0.0.1:{port}")
            assert_usage_error(proc, f"127.0.0.1:{port}", "address already in use")
        assert not trace.exists() and not (tmp_path / "busy.vmrr.incomplete").exists()


@pytest.mark.parametrize("mem", ["3", "1.5G", "0", "lots", "1M", "5G", "-64M", ""])
def test_bad_mem(mem):
    assert_usage_error(vmrr("run", guest("t_hello"), "--mem", mem, "--no-stdin"), "--mem")


@pytest.mark.parametrize("listen", ["nope", "127.0.0.1:", "127.0.0.1:99999", "127.0.0.1:http"])
def test_bad_listen(listen):
    assert_usage_error(vmrr("run", guest("t_echo"), "--listen", listen, "--no-stdin"),
                       "--listen")


def test_usage_error_from_argparse():
    proc = vmrr("record", guest("t_hello"))                 # -o is required
    assert_usage_error(proc, "-o")


def test_replay_missing_trace(tmp_path):
    missing = tmp_path / "missing.vmrr"
    assert_usage_error(vmrr("replay", missing, "--verify"), str(missing))


@pytest.mark.parametrize("command", ["replay", "info", "events"])
def test_garbage_trace(tmp_path, command):
    garbage = tmp_path / "garbage.vmrr"
    garbage.write_bytes(bytes(range(256)) * 64)
    assert_usage_error(vmrr(command, garbage), str(garbage), "corrupt")


def test_events_unknown_kind(tmp_path):
    _record, _replay, trace = record_and_replay(tmp_path, guest("t_entropy"))
    assert_usage_error(vmrr("events", trace, "--kind", "NOPE"), "NOPE", "ENTROPY")
    ok = vmrr("events", trace, "--kind", "entropy")           # kinds are case-insensitive
    assert ok.returncode == 0 and len(ok.stdout.splitlines()) == 64, describe(ok)


def test_record_refuses_to_overwrite(tmp_path):
    record, _replay, trace = record_and_replay(tmp_path, guest("t_hello"))
    assert record.returncode == 0, describe(record)
    before = trace.read_bytes()
    proc = vmrr("record", guest("t_entropy"), "-o", trace, "--no-stdin")
    assert_usage_error(proc, str(trace), "already exists")
    assert trace.read_bytes() == before
    assert not (tmp_path / f"{trace.name}.incomplete").exists()

    forced = vmrr("record", guest("t_entropy"), "-o", trace, "--no-stdin", "--force")
    assert forced.returncode == 0, describe(forced)
    assert trace.read_bytes() != before
    replay = vmrr("replay", trace, "--verify")
    assert replay.returncode == 0 and replay.stdout == forced.stdout, describe(replay)

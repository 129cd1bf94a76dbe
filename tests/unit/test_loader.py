"""Guest image validation (vmm/loader.py): the built guests load, bad ELFs are refused.

Bad images are real files: built with gcc at test time (wrong link address, wrong entry,
32-bit, position-independent), or a real guest with one header field changed.
"""

from __future__ import annotations

import io
import shutil
import struct
import subprocess

import pytest
from elftools.elf.elffile import ELFFile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import IMAGES
from vmm.errors import ImageError
from vmm.loader import IMAGE_BASE, GuestImage, load_image, parse_image

pytestmark = pytest.mark.timeout(60)

GUESTS = sorted(IMAGES.glob("t_*.elf"))
SOURCE = ".globl _start\n_start:\n    mov $1, %eax\n    hlt\n"


@pytest.fixture(scope="module")
def gcc_elf(tmp_path_factory):
    """gcc_elf(name, *flags) -> path of SOURCE built with those flags (skips without gcc)."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    workdir = tmp_path_factory.mktemp("elf")
    src = workdir / "start.S"
    src.write_text(SOURCE)

    def build(name: str, *flags: str):
        out = workdir / name
        proc = subprocess.run(["gcc", "-nostdlib", "-Wl,--build-id=none", *flags, str(src),
                               "-o", str(out)], capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            pytest.skip(f"gcc cannot build {name} here: {proc.stderr.strip()[:200]}")
        return out

    return build


def rejected(path, *fragments: str) -> str:
    """load_image(path) must raise ImageError naming the path; returns the message."""
    with pytest.raises(ImageError) as info:
        load_image(str(path))
    message = str(info.value)
    assert str(path) in message
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message
    assert info.value.exit_code == 2
    return message


@pytest.mark.parametrize("path", GUESTS, ids=[p.stem for p in GUESTS])
def test_built_guests_load(path):
    image = load_image(str(path))
    assert isinstance(image, GuestImage)
    assert image.name == str(path)
    assert image.elf == path.read_bytes()
    assert image.segments and all(s.guest_phys >= IMAGE_BASE for s in image.segments)
    assert any(s.guest_phys <= image.entry < s.guest_phys + s.mem_size for s in image.segments)
    assert image.end % 0x1000 == 0
    assert image.end >= max(s.guest_phys + s.mem_size for s in image.segments)
    assert all(len(s.data) <= s.mem_size for s in image.segments)


def test_test_guest_loads_by_name():
    image = load_image("t_hello")
    assert image.name == "t_hello"
    assert image.elf == (IMAGES / "t_hello.elf").read_bytes()


def test_gcc_built_static_image_loads(gcc_elf):
    path = gcc_elf("ok.elf", "-static", "-no-pie", f"-Wl,-Ttext={IMAGE_BASE:#x}")
    image = load_image(str(path))
    assert image.entry == IMAGE_BASE
    code = next(s for s in image.segments if s.guest_phys == IMAGE_BASE)
    assert code.data.startswith(bytes.fromhex("b801000000f4"))      # mov $1, %eax; hlt


def test_missing_file(tmp_path):
    rejected(tmp_path / "missing.elf", "no such file")


def test_directory(tmp_path):
    rejected(tmp_path, "not a regular file")


def test_not_an_elf(tmp_path):
    path = tmp_path / "text.elf"
    path.write_text("#!/bin/sh\necho hi\n")
    rejected(path, "not an ELF")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.elf"
    path.write_bytes(b"")
    rejected(path, "not an ELF")


def test_32_bit_elf(gcc_elf):
    rejected(gcc_elf("i386.elf", "-m32", "-static", "-no-pie", f"-Wl,-Ttext={IMAGE_BASE:#x}"),
             "not an x86-64 ELF")


def test_other_machine(tmp_path):
    data = bytearray((IMAGES / "t_hello.elf").read_bytes())
    data[18:20] = struct.pack("<H", 183)                     # EM_AARCH64
    path = tmp_path / "aarch64.elf"
    path.write_bytes(bytes(data))
    rejected(path, "not an x86-64 ELF")


def test_position_independent_executable(gcc_elf):
    rejected(gcc_elf("pie.elf", "-static-pie"), "not a static executable", "ET_DYN")


def test_segment_overlapping_the_boot_page(gcc_elf):
    rejected(gcc_elf("low.elf", "-static", "-no-pie", "-Wl,-Ttext=0x5000"),
             "overlaps the null page or boot information")


def test_segment_in_the_null_page(gcc_elf):
    rejected(gcc_elf("null.elf", "-static", "-no-pie", "-Wl,-Ttext=0x0",
                     "-Wl,-z,max-page-size=0x1000"), "overlaps")


def test_entry_outside_segments(gcc_elf):
    rejected(gcc_elf("entry.elf", "-static", "-no-pie", f"-Wl,-Ttext={IMAGE_BASE:#x}",
                     "-Wl,-e,0x900000"), "entry point 0x900000 is outside its segments")


def test_no_loadable_segments(tmp_path):
    data = bytearray((IMAGES / "t_hello.elf").read_bytes())
    phoff, = struct.unpack_from("<Q", data, 32)
    phentsize, phnum = struct.unpack_from("<HH", data, 54)
    for i in range(phnum):
        struct.pack_into("<I", data, phoff + i * phentsize, 4)           # PT_NOTE
    path = tmp_path / "noload.elf"
    path.write_bytes(bytes(data))
    rejected(path, "no loadable segments")


@pytest.mark.parametrize("cut", ["in the ELF header", "in the program headers",
                                 "in the first segment", "one byte short of the last segment"])
def test_truncated_file(tmp_path, cut):
    data = (IMAGES / "t_hello.elf").read_bytes()
    ends = sorted(seg["p_offset"] + seg["p_filesz"] for seg in ELFFile(io.BytesIO(data)).iter_segments()
                  if seg["p_type"] == "PT_LOAD" and seg["p_filesz"] > 0)
    keep = {"in the ELF header": 40, "in the program headers": 64 + 56 + 10,
            "in the first segment": ends[0] - 100, "one byte short of the last segment": ends[-1] - 1}[cut]
    path = tmp_path / "cut.elf"
    path.write_bytes(data[:keep])
    message = rejected(path)
    if "segment" in cut:
        assert "truncated" in message


def test_file_cut_after_its_segments_still_loads(tmp_path):
    """Section headers and debug info are not needed to boot: a cut there is harmless."""
    data = (IMAGES / "t_hello.elf").read_bytes()
    end = max(seg["p_offset"] + seg["p_filesz"] for seg in ELFFile(io.BytesIO(data)).iter_segments()
              if seg["p_type"] == "PT_LOAD")
    path = tmp_path / "short.elf"
    path.write_bytes(data[:end])
    assert load_image(str(path)).entry == load_image(str(IMAGES / "t_hello.elf")).entry


def test_where_names_the_source():
    with pytest.raises(ImageError, match=r"trace\.vmrr \(embedded image\)"):
        parse_image("t_hello", b"junk", where="trace.vmrr (embedded image)")
    with pytest.raises(ImageError, match="image t_hello:"):
        parse_image("t_hello", b"junk")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_damaged_headers_give_image_errors_only(data):
    """Any damage to a real guest's headers is an ImageError or a loadable image, never a crash."""
    elf = bytearray((IMAGES / "t_hello.elf").read_bytes())
    for _ in range(data.draw(st.integers(1, 6), label="changes")):
        pos = data.draw(st.integers(0, 64 + 3 * 56 - 1), label="pos")    # ELF + program headers
        elf[pos] = data.draw(st.integers(0, 255), label="byte")
    if data.draw(st.booleans(), label="truncate"):
        elf = elf[:data.draw(st.integers(0, len(elf)), label="length")]
    try:
        image = parse_image("fuzzed", bytes(elf))
    except ImageError as exc:
        assert "fuzzed" in str(exc)
        return
    for seg in image.segments:
        assert len(seg.data) <= seg.mem_size
        assert seg.guest_phys >= 0x6000

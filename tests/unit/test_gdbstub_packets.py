"""The gdb remote protocol codec: framing, checksums, escaping, malformed input.

``PacketDecoder`` is fed bytes the way a socket delivers them (whole, split, mixed with
acknowledgements and noise); ``Connection`` runs over a real socketpair to check the
acknowledgement rules. The register layout and target description are checked against
what gdb 13 requires of an i386:x86-64 target.
"""

from __future__ import annotations

import socket
import xml.etree.ElementTree as ET

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gdbstub.protocol import (MAX_PACKET, BadPacket, Connection, ConnectionClosed, Interrupt, Nak,
                              Packet, PacketDecoder, checksum, escape, frame, hex_text, unescape)
from gdbstub.target import (LINUX_REGISTERS, REGISTERS, encode_register, encode_registers,
                            g_packet_registers, target_xml)

pytestmark = pytest.mark.timeout(30)


# -- checksums and framing ---------------------------------------------------------------

def test_checksum_is_the_byte_sum_modulo_256():
    assert checksum(b"") == 0
    assert checksum(b"OK") == 0x9A
    assert checksum(b"\xff\x02") == 0x01


def test_frame_matches_what_gdb_sends():
    assert frame(b"OK") == b"$OK#9a"
    assert frame(b"") == b"$#00"
    assert frame(b"qSupported") == b"$qSupported#37"


def test_hex_text_is_what_O_packets_carry():
    assert hex_text("icount 5\n") == "69636f756e7420350a"


# -- escaping -------------------------------------------------------------------------------

def test_escape_the_four_special_bytes():
    assert escape(b"a#b$c}d*e") == b"a}\x03b}\x04c}]d}\x0ae"
    assert escape(b"plain") == b"plain"


@given(st.binary(max_size=300))
def test_escape_round_trips_and_leaves_no_framing_bytes(data):
    escaped = escape(data)
    assert unescape(escaped) == data
    assert b"#" not in escaped and b"$" not in escaped and b"*" not in escaped


def test_unescape_rejects_a_dangling_escape():
    with pytest.raises(ValueError):
        unescape(b"abc}")


# -- decoding -----------------------------------------------------------------------------

def test_decode_one_packet():
    assert PacketDecoder().feed(b"$g#67") == [Packet(b"g")]


@given(st.lists(st.binary(max_size=60).map(escape), min_size=1, max_size=5), st.data())
def test_decode_any_split_of_a_stream(payloads, data):
    stream = b"".join(b"+" + frame(p) for p in payloads)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    decoder, items, last = PacketDecoder(), [], 0
    for cut in cuts + [len(stream)]:
        items += decoder.feed(stream[last:cut])
        last = cut
    assert items == [Packet(p) for p in payloads]


def test_acks_and_noise_between_packets_are_ignored():
    items = PacketDecoder().feed(b"+++garbage\r\n" + frame(b"m10,4") + b"+ \x00$?#3f")
    assert items == [Packet(b"m10,4"), Packet(b"?")]


def test_nak_and_interrupt_outside_packets():
    assert PacketDecoder().feed(b"-\x03") == [Nak(), Interrupt()]


def test_bytes_inside_a_packet_are_data_not_control():
    assert PacketDecoder().feed(frame(b"a-b\x03+")) == [Packet(b"a-b\x03+")]


def test_bad_checksum():
    decoder = PacketDecoder()
    assert decoder.feed(b"$g#00") == [BadPacket("checksum")]
    assert decoder.feed(b"$g#zz") == [BadPacket("checksum")]
    assert decoder.feed(b"$g#67") == [Packet(b"g")]          # and the stream goes on


def test_a_new_start_abandons_a_torn_packet():
    assert PacketDecoder().feed(b"$m10,$g#67") == [Packet(b"g")]


def test_oversize_packet_is_refused_and_the_stream_recovers():
    decoder = PacketDecoder(max_packet=16)
    big = frame(b"X" * 1000)
    assert decoder.feed(big + frame(b"g")) == [BadPacket("oversize"), Packet(b"g")]


def test_oversize_is_bounded_in_memory():
    decoder = PacketDecoder(max_packet=16)
    assert decoder.feed(b"$") == []
    for _ in range(1000):
        assert decoder.feed(b"Y" * 1000) == []
    assert len(decoder._buf) < 64
    assert decoder.feed(b"#00") == [BadPacket("oversize")]


def test_default_limit_accepts_a_full_packet():
    payload = b"m" * MAX_PACKET
    assert PacketDecoder().feed(frame(payload)) == [Packet(payload)]


# -- a connection on a real socket pair ------------------------------------------------------

@pytest.fixture
def pair():
    ours, gdb = socket.socketpair()
    gdb.settimeout(5)
    ours.settimeout(5)
    yield Connection(ours), gdb
    ours.close()
    gdb.close()


def _read_exactly(sock: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        assert chunk, "connection closed"
        out += chunk
    return out


def test_ack_mode_acknowledges_and_naks(pair):
    conn, gdb = pair
    gdb.sendall(b"$g#00$g#67")
    assert conn.receive() == Packet(b"g")
    assert _read_exactly(gdb, 2) == b"-+"        # bad checksum NAKed (gdb resends), good one ACKed


def test_nak_from_gdb_retransmits(pair):
    conn, gdb = pair
    conn.send("OK")
    assert _read_exactly(gdb, 6) == b"$OK#9a"
    gdb.sendall(b"-$?#3f")
    assert conn.receive() == Packet(b"?")
    assert _read_exactly(gdb, 7) == b"$OK#9a+"


def test_no_ack_mode_reports_bad_packets(pair):
    conn, gdb = pair
    conn.ack_mode = False
    gdb.sendall(b"$g#00")
    assert conn.receive() == BadPacket("checksum")
    gdb.sendall(b"$g#67")
    assert conn.receive() == Packet(b"g")
    gdb.setblocking(False)
    with pytest.raises(BlockingIOError):
        gdb.recv(1)                               # nothing was acknowledged


def test_poll_interrupt_keeps_other_input(pair):
    conn, gdb = pair
    assert conn.poll_interrupt(0.01) is False
    gdb.sendall(b"$?#3f\x03")
    assert conn.poll_interrupt(2) is True
    assert conn.receive() == Packet(b"?")


def test_peer_closing_is_reported(pair):
    conn, gdb = pair
    gdb.close()
    with pytest.raises(ConnectionClosed):
        conn.receive()


# -- registers and the target description --------------------------------------------------

def test_target_description_is_what_gdb_requires():
    root = ET.fromstring(target_xml().split(b"\n", 2)[2])   # past the XML and DOCTYPE lines
    assert root.find("architecture").text == "i386:x86-64"
    features = {f.get("name"): [r.get("name") for r in f.findall("reg")] for f in root.findall("feature")}
    core = features["org.gnu.gdb.i386.core"]
    assert core[:24] == ["rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp",
                         "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15",
                         "rip", "eflags", "cs", "ss", "ds", "es", "fs", "gs"]
    assert core[24:] == [f"st{i}" for i in range(8)] + ["fctrl", "fstat", "ftag", "fiseg",
                                                         "fioff", "foseg", "fooff", "fop"]
    assert features["org.gnu.gdb.i386.segments"] == ["fs_base", "gs_base"]
    listed = [r for regs in features.values() for r in regs]
    assert listed == [r.name for r in REGISTERS]


def test_g_packet_layout():
    values = {r.source: i + 1 for i, r in enumerate(REGISTERS) if r.source}
    values["rflags"] = 0x1_0000_0246                 # bits above 32 do not fit eflags
    g = encode_registers(values)
    assert len(g) == 2 * sum(r.size for r in REGISTERS)
    assert g.startswith((1).to_bytes(8, "little").hex())            # rax
    rip_at = 2 * 16 * 8
    assert g[rip_at:rip_at + 16] == (17).to_bytes(8, "little").hex()
    assert g[rip_at + 16:rip_at + 24] == "46020000"                  # eflags, 32 bits
    st0 = next(r for r in REGISTERS if r.name == "st0")
    assert encode_register(st0, values) == "xx" * 10                 # unavailable, not zero


def test_linux_registers_are_numbered_as_gdbs_own_amd64_linux_description():
    """gdb reads a target description for the inferior it connects to only; one it adds
    for a fork's child or meets in a thread list uses its built-in amd64 GNU/Linux layout
    (gdb 13: ``maint print remote-registers`` with no target), so a Linux program's
    registers and g packet must be laid out exactly so: 0-59, 560 bytes."""
    names = [r.name for r in LINUX_REGISTERS]
    assert names[:40] == [r.name for r in REGISTERS[:40]]                       # core: gprs, x87
    assert names[40:57] == [f"xmm{i}" for i in range(16)] + ["mxcsr"]
    assert names[57:60] == ["orig_rax", "fs_base", "gs_base"]
    assert names[60:] == ["cr0", "cr2", "cr3", "cr4"]                             # read by p only
    g = encode_registers({}, g_packet_registers(True))
    assert len(g) == 2 * 560 and [r.name for r in g_packet_registers(True)] == names[:60]
    root = ET.fromstring(target_xml(linux=True).split(b"\n", 2)[2])
    assert root.find("osabi").text == "GNU/Linux"
    features = [(f.get("name"), [r.get("name") for r in f.findall("reg")]) for f in root.findall("feature")]
    assert [name for name, _ in features] == ["org.gnu.gdb.i386.core", "org.gnu.gdb.i386.sse",
                                              "org.gnu.gdb.i386.linux", "org.gnu.gdb.i386.segments",
                                              "org.vmrr.x86.system"]
    assert [reg for _, regs in features for reg in regs] == names
    xmm0 = LINUX_REGISTERS[40]
    assert encode_register(xmm0, {"xmm0": 1 << 120}) == "00" * 15 + "01"        # 16 bytes, little-endian

"""The interrupt controller's priority, masking and EOI rules (vmm/devices/pic.py).

The PIC only calls back into its machine to ask the run loop to stop (``request_stop``)
when a write makes a line deliverable; a tiny recorder of those calls stands in for the
machine. Everything else is the real device.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vmm.devices.pic import LINES, PIC_EOI, PIC_INSERVICE, PIC_MASK, PIC_PENDING, VECTOR_BASE, Pic

pytestmark = pytest.mark.timeout(60)


class StopCounter:
    """Stands in for the Machine: counts request_stop() calls."""

    def __init__(self) -> None:
        self.stops = 0

    def request_stop(self) -> None:
        self.stops += 1


@pytest.fixture
def pic():
    return Pic(StopCounter())


def test_reset_state(pic):
    assert (pic.pending, pic.mask, pic.in_service) == (0, 0, 0)
    assert pic.deliverable_line() is None
    for port in (PIC_MASK, PIC_PENDING, PIC_INSERVICE):
        assert pic.port_read(port, 1) == 0


def test_lowest_numbered_pending_line_wins(pic):
    pic.raise_line(5)
    pic.raise_line(2)
    pic.raise_line(9)
    assert pic.deliverable_line() == 2
    assert pic.port_read(PIC_PENDING, 2) == (1 << 2) | (1 << 5) | (1 << 9)


def test_acknowledge_moves_pending_to_in_service(pic):
    pic.raise_line(3)
    assert pic.acknowledge(3) == VECTOR_BASE + 3 == 35
    assert pic.port_read(PIC_PENDING, 1) == 0
    assert pic.port_read(PIC_INSERVICE, 1) == 1 << 3
    assert pic.deliverable_line() is None


def test_raising_a_line_twice_is_one_request(pic):
    pic.raise_line(1)
    pic.raise_line(1)
    pic.acknowledge(1)
    assert pic.deliverable_line() is None


def test_masked_line_is_not_delivered(pic):
    pic.port_write(PIC_MASK, 1, 1 << 0)
    pic.raise_line(0)
    pic.raise_line(4)
    assert pic.deliverable_line() == 4
    assert pic.port_read(PIC_MASK, 1) == 1
    assert pic.port_read(PIC_PENDING, 1) == (1 << 0) | (1 << 4)   # masked, still pending


def test_unmasking_a_pending_line_asks_the_loop_to_stop(pic):
    pic.port_write(PIC_MASK, 1, 0xFFFF)
    assert pic.machine.stops == 0
    pic.raise_line(6)
    assert pic.deliverable_line() is None
    pic.port_write(PIC_MASK, 1, 0xFFFF & ~(1 << 6))
    assert pic.deliverable_line() == 6
    assert pic.machine.stops == 1


def test_mask_write_with_nothing_pending_does_not_stop(pic):
    pic.port_write(PIC_MASK, 4, 0)
    assert pic.machine.stops == 0


def test_mask_keeps_16_bits(pic):
    pic.port_write(PIC_MASK, 4, 0xFFFF_FFFF)
    assert pic.port_read(PIC_MASK, 4) == 0xFFFF


def test_in_service_line_blocks_itself_and_lower_priorities(pic):
    pic.raise_line(2)
    pic.acknowledge(2)
    pic.raise_line(2)
    pic.raise_line(3)
    assert pic.deliverable_line() is None
    pic.raise_line(1)                                   # higher priority: may nest
    assert pic.deliverable_line() == 1
    pic.raise_line(0)
    assert pic.deliverable_line() == 0


def test_eoi_ends_the_highest_priority_line_in_service(pic):
    pic.raise_line(1)
    pic.acknowledge(1)
    pic.raise_line(0)
    pic.acknowledge(0)                                  # nested inside line 1
    assert pic.port_read(PIC_INSERVICE, 1) == 0b11
    pic.port_write(PIC_EOI, 1, 0)
    assert pic.port_read(PIC_INSERVICE, 1) == 0b10
    pic.port_write(PIC_EOI, 1, 0)
    assert pic.port_read(PIC_INSERVICE, 1) == 0


def test_eoi_releases_a_waiting_lower_line_and_stops_the_loop(pic):
    pic.raise_line(0)
    pic.acknowledge(0)
    pic.raise_line(2)
    assert pic.deliverable_line() is None
    pic.port_write(PIC_EOI, 1, 0)
    assert pic.deliverable_line() == 2
    assert pic.machine.stops == 1


def test_eoi_with_nothing_in_service_is_harmless(pic):
    pic.port_write(PIC_EOI, 1, 0)
    assert (pic.pending, pic.in_service) == (0, 0)
    assert pic.machine.stops == 0


def test_writes_to_read_only_ports_change_nothing(pic):
    pic.raise_line(4)
    pic.port_write(PIC_PENDING, 1, 0)
    pic.port_write(PIC_INSERVICE, 1, 0xFF)
    assert (pic.pending, pic.in_service) == (1 << 4, 0)
    assert pic.machine.stops == 0


def test_state_round_trip(pic):
    pic.raise_line(7)
    pic.raise_line(3)
    pic.acknowledge(3)
    pic.port_write(PIC_MASK, 1, 0x80)
    other = Pic(StopCounter())
    other.load_state(pic.state())
    assert other.state() == pic.state() == {"pending": 0x80, "mask": 0x80, "in_service": 0x08}
    assert other.deliverable_line() is None


# -- the rules as a reference model, checked on random operation sequences ------------

def reference_deliverable(pending: int, mask: int, in_service: int) -> int | None:
    """docs/machine.md: the lowest line pending, not masked, above every line in service."""
    highest_in_service = min((n for n in range(LINES) if in_service >> n & 1), default=LINES)
    for line in range(LINES):
        if pending >> line & 1 and not mask >> line & 1 and line < highest_in_service:
            return line
    return None


operations = st.lists(st.one_of(
    st.tuples(st.just("raise"), st.integers(0, LINES - 1)),
    st.tuples(st.just("mask"), st.integers(0, 0xFFFF)),
    st.tuples(st.just("eoi"), st.just(0)),
    st.tuples(st.just("deliver"), st.just(0)),
), max_size=60)


@settings(max_examples=300, deadline=None)
@given(operations)
def test_pic_matches_the_documented_rules(ops):
    pic = Pic(StopCounter())
    pending = mask = in_service = 0
    for op, arg in ops:
        stops = pic.machine.stops
        if op == "raise":
            pic.raise_line(arg)
            pending |= 1 << arg
        elif op == "mask":
            pic.port_write(PIC_MASK, 2, arg)
            mask = arg
        elif op == "eoi":
            pic.port_write(PIC_EOI, 1, 0)
            if in_service:
                in_service &= ~(1 << min(n for n in range(LINES) if in_service >> n & 1))
        elif op == "deliver":
            line = reference_deliverable(pending, mask, in_service)
            assert pic.deliverable_line() == line
            if line is not None:
                assert pic.acknowledge(line) == VECTOR_BASE + line
                pending &= ~(1 << line)
                in_service |= 1 << line
        if op in ("mask", "eoi"):             # a write that makes a line deliverable stops the loop
            expected = stops + (reference_deliverable(pending, mask, in_service) is not None)
            assert pic.machine.stops == expected
        assert (pic.port_read(PIC_PENDING, 2), pic.port_read(PIC_MASK, 2),
                pic.port_read(PIC_INSERVICE, 2)) == (pending, mask, in_service)
        assert pic.deliverable_line() == reference_deliverable(pending, mask, in_service)

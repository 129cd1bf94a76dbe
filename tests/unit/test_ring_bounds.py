"""recorder/ring.py's pure parts: --ring values, and the window map a header may carry."""

from __future__ import annotations

import pytest

from recorder.ring import RingBound, parse_ring
from trace_format.header import window_problem
from vmm.errors import UsageError


@pytest.mark.parametrize("spec, bound", [
    ("10m", RingBound(seconds=600)), ("90s", RingBound(seconds=90)), ("1h", RingBound(seconds=3600)),
    ("600", RingBound(seconds=600)), ("1.5min", RingBound(seconds=90)), ("2d", RingBound(seconds=172800)),
    ("2G", RingBound(bytes=2 << 30)), ("500M", RingBound(bytes=500 << 20)), ("64MiB", RingBound(bytes=64 << 20)),
    ("1.5G", RingBound(bytes=3 << 29)), ("8mb", RingBound(bytes=8 << 20)), ("4096K", RingBound(bytes=4 << 20)),
])
def test_ring_bounds(spec, bound):
    assert parse_ring(spec) == bound


@pytest.mark.parametrize("spec", ["", "m", "10x", "-5m", "0s", "0.5", "2y", "1M", "3K", "1e9", "10 minutes",
                                  "9" * 40])
def test_bad_ring_bounds_are_usage_errors(spec):
    with pytest.raises(UsageError) as caught:
        parse_ring(spec)
    assert str(caught.value).startswith("--ring")


def test_segments_last_a_quarter_of_the_window_within_bounds():
    assert RingBound(seconds=600).segment_seconds == 150
    assert RingBound(seconds=2).segment_seconds == 1.0           # at least a second
    assert RingBound(seconds=86400).segment_seconds == 300       # at most five minutes
    assert RingBound(bytes=1 << 30).segment_seconds == 300


@pytest.mark.parametrize("window, problem", [
    ({"start_icount": 5}, None),
    ({"start_icount": 5, "trigger": "crash", "start_unix": 1.0e9, "dropped_segments": 3, "note": "x"}, None),
    ({"start_icount": 5, "start_unix": 10}, None),                      # an int where a float goes
    ({}, "start_icount is missing"),
    ({"start_icount": -1}, "start_icount is out of range"),
    ({"start_icount": 1 << 64}, "start_icount is out of range"),
    ({"start_icount": 5, "trigger": 3}, "trigger is out of range"),
    ({"start_icount": 5, "start_unix": float("nan")}, "start_unix is out of range"),
    ({"start_icount": 5, "other": [1]}, "entry 'other' is not a scalar"),
])
def test_window_maps(window, problem):
    assert window_problem(window) == problem

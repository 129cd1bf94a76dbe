"""The flight recorder (docs/flight-recorder.md): windows of a run, saved as ordinary traces.

A window trace starts at a full checkpoint instead of at boot (header flag ``window``).
Every test here replays what it saved with ``vmrr replay --verify`` and checks what the
window holds against the recording it came from.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from conftest import describe, replay_verify, vmrr
from trace_format import TraceReader
from trace_format.window import WindowSource, write_window

pytestmark = pytest.mark.timeout(120)


def test_a_recording_cut_at_a_checkpoint_replays_the_rest_without_the_files_it_read(tmp_path):
    data = hashlib.sha256(b"seed").digest() * 60000             # 1.9 MB, read from the start
    source = tmp_path / "input.bin"
    source.write_bytes(data)
    trace = tmp_path / "whole.vmrr"
    record = vmrr("record", "-o", trace, "--checkpoint-every", "3000000", "--no-stdin", "--",
                  "/usr/bin/sha256sum", source)
    assert record.returncode == 0, describe(record)
    assert hashlib.sha256(data).hexdigest() in record.stdout
    with TraceReader(str(trace)) as reader:
        assert len(reader.checkpoints) >= 4, reader.checkpoints
        middle = len(reader.checkpoints) // 2
        start = reader.checkpoints[middle].icount
        end = reader.end
        stats = write_window(str(tmp_path / "cut.vmrr"), [WindowSource(reader, middle)],
                             window={"trigger": "test"}, end=end)
    assert stats.start_icount == start > 0
    assert stats.blobs >= 1                          # the input, opened before the window
    source.unlink()                                  # replay needs no host file
    replay = replay_verify(tmp_path / "cut.vmrr")
    assert replay.stdout == record.stdout            # the hash printed after the window began
    assert f"replayed {end['icount'] - start} instructions (icount {start} to {end['icount']})" \
        in replay.stderr, describe(replay)
    with TraceReader(str(tmp_path / "cut.vmrr")) as cut:
        assert cut.first_icount == start and cut.window["trigger"] == "test"
        assert cut.checkpoints[0].icount == start
        assert cut.end["icount"] == end["icount"]

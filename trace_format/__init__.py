"""The vmrr trace file: the one module that knows its bytes (spec: docs/trace-format.md).

Writing::

    header = TraceHeader.new(MachineConfig(...), tool_version=...)
    with TraceWriter("run.vmrr", header) as writer:
        writer.write_checkpoint(0, cpu, devices, all_pages)
        writer.append(icount, EventKind.RDTSC, tsc)
        ...
        writer.close({"reason": "poweroff", "exit_status": 0})

Reading::

    with TraceReader("run.vmrr") as trace:
        for event in trace.events(start_icount=1000):
            ...
"""

from trace_format.errors import (TraceCorrupt, TraceError, TraceExists, TraceIncomplete,
                                 TraceNotFound, TraceVersionError, TraceWriteError)
from trace_format.events import ASYNC_KINDS, SYNC_KINDS, Event, EventKind
from trace_format.header import MachineConfig, TraceHeader
from trace_format.layout import FORMAT_VERSION, PAGE_SIZE
from trace_format.reader import Checkpoint, CheckpointRef, ChunkInfo, TraceReader
from trace_format.writer import TraceWriter

__all__ = [
    "ASYNC_KINDS", "Checkpoint", "CheckpointRef", "ChunkInfo", "Event", "EventKind",
    "FORMAT_VERSION", "MachineConfig", "PAGE_SIZE", "SYNC_KINDS", "TraceCorrupt", "TraceError",
    "TraceExists", "TraceHeader", "TraceIncomplete", "TraceNotFound", "TraceReader",
    "TraceVersionError", "TraceWriteError", "TraceWriter",
]

"""Errors raised while reading or writing a trace.

Every message is one line that names the file and, for damage, the byte offset and
chunk number, so the CLI can print ``str(error)`` and exit with ``error.exit_code``.
"""

from __future__ import annotations

from vmm.errors import VmrrError


class TraceError(VmrrError):
    """Anything wrong with a trace file: missing, incompatible, damaged or unwritable."""

    exit_code = 2


class TraceNotFound(TraceError):
    """The trace file does not exist (or cannot be opened)."""


class TraceIncomplete(TraceNotFound):
    """PATH does not exist but PATH.incomplete does: the recording never finished."""


class TraceExists(TraceError):
    """The writer refuses to overwrite an existing trace."""


class TraceVersionError(TraceError):
    """The trace was written in a format version this vmrr cannot read."""


class TraceWriteError(TraceError):
    """The host refused a write (disk full, permission, ...) while recording."""


class TraceCorrupt(TraceError):
    """The bytes of the trace are damaged, truncated or malformed.

    Attributes:
        path: the trace file.
        offset: byte offset in the file where the damage was found.
        chunk: number of the chunk holding the damage, or None outside the body.
    """

    def __init__(self, path: str, offset: int, what: str, *, chunk: int | None = None):
        self.path = path
        self.offset = offset
        self.chunk = chunk
        where = f"offset {offset}" if chunk is None else f"chunk {chunk} at offset {offset}"
        super().__init__(f"{path}: corrupt trace: {where}: {what}")
        self.what = what

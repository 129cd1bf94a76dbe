"""The one exception hierarchy of vmrr: every error a user can see, with its exit code.

The CLI catches ``VmrrError``, prints ``str(error)`` as one line and exits with
``error.exit_code``. Anything else escaping to the CLI is a bug.
"""

from __future__ import annotations

import struct

# What library code (pyelftools, msgpack, struct, dict and list access, int conversions)
# raises when handed values it cannot use. Code that decodes or applies data read from a
# file catches exactly these at its boundary and raises a VmrrError naming the data.
DATA_ERRORS: tuple[type[BaseException], ...] = (
    ValueError, TypeError, KeyError, IndexError, OverflowError, AttributeError,
    UnicodeError, RecursionError, struct.error)


class VmrrError(Exception):
    """An error with a one-line message for the user; the CLI prints it and exits with exit_code."""

    exit_code = 2


class UsageError(VmrrError):
    """A bad command-line value (memory size, address, count)."""


class ImageError(VmrrError):
    """The guest image is missing, is not an x86-64 ELF, or does not fit in RAM."""


class HostError(VmrrError):
    """The host refused something the VM needs (a busy port, a closed terminal)."""


class CheckFailed(VmrrError):
    """A replay diverged from its recording or a verification failed."""

    exit_code = 1


class ReplayDivergence(CheckFailed):
    """The guest asked for, or the trace held, something other than what was recorded."""


class CheckpointMismatch(CheckFailed):
    """A checkpoint (or a saved snapshot) is not the state it claims: damaged, altered,
    or not the state the replay reached there."""


class BadTraceData(VmrrError):
    """A value read from a file is not what the code can use (the message names it)."""

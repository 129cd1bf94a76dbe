"""Replay: the same Machine, fed from a trace instead of the host.

``Replay`` opens a trace, rebuilds the recorded machine from the header (the guest image
is embedded), and runs it with a ``TraceBoundary`` that answers every input from the
trace and checks the guest asked for the same thing at the same icount. It is the
Python API for scripts; ``vmrr replay``, the gdb server and the TUI are its clients.
"""

from replay.boundary import TraceBoundary
from replay.session import Replay, ReplayReport

__all__ = ["Replay", "ReplayReport", "TraceBoundary"]

"""Messages the widgets send up to the app: the user asked to go somewhere.

Widgets never touch TimeTravel; they say what the user wants and the app decides how
(at once, or in a worker when it may take long).
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message


@dataclass
class SeekRequested(Message):
    """Go to this position (a click on the timeline)."""

    icount: int


@dataclass
class EventChosen(Message):
    """Go to the position of this event (by its number in the trace)."""

    number: int


@dataclass
class RunToAddress(Message):
    """Continue until RIP is at this address (Enter on a disassembly line)."""

    address: int


@dataclass
class ThreadChosen(Message):
    """Show this thread (Enter or a click on it in the process tree)."""

    tid: int


@dataclass
class ProcessChosen(Message):
    """Go back to where this process last ran (an ended process in the tree)."""

    pid: int

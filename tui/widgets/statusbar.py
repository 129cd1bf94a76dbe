"""One line, always there: the position (``icount N``), for a Linux program's trace the
process and thread on the CPU there (``pid 4242 tid 4242 cat``, and the thread shown
instead of it, if any), the trace (and the program), how the run ended, and what is going
on (the last stop, or the progress of a long operation)."""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

from tui.session import Moment

SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"


class StatusBar(Widget):
    """Position, trace name, ending, and the activity of the moment."""

    DEFAULT_CSS = """
    StatusBar { text-wrap: nowrap; text-overflow: ellipsis; height: 1; background: $panel; color: $text; padding: 0 1; }
    """

    def __init__(self, *, trace_name: str, last_icount: int, end_text: str, program: str | None = None,
                 linux: bool | None = None, id: str | None = None) -> None:
        super().__init__(id=id)
        self.trace_name = trace_name
        self.program = program            # a Linux program's command line (None: not shown)
        self.linux = bool(program) if linux is None else linux
        self.last_icount = last_icount
        self.end_text = end_text
        self.moment: Moment | None = None
        self.message = ""
        self.message_style = ""
        self.busy_label: str | None = None
        self.progress: float | None = None
        self._tick = 0

    def show(self, moment: Moment) -> None:
        self.moment = moment
        self.refresh()

    def say(self, message: str, style: str = "") -> None:
        """Show a message until the next one (errors in red, results plain)."""
        self.message, self.message_style = message, style
        self.refresh()

    def set_busy(self, label: str | None, progress: float | None = None) -> None:
        self.busy_label, self.progress = label, progress
        self._tick += 1
        self.refresh()

    def render(self) -> Text:
        text = Text(no_wrap=True, overflow="ellipsis")
        icount = self.moment.icount if self.moment is not None else 0
        text.append(f"icount {icount}", style="bold")
        text.append(f" / {self.last_icount}", style="dim")
        text.append("  │  ")
        if self.moment is not None and self.moment.cpu is not None:
            text.append_text(cpu_text(self.moment))
            text.append("  │  ")
        text.append(self.trace_name, style="bold cyan")
        if self.program:                  # a Linux program: its command line, and it "exited"/"crashed"
            text.append(f": {self.program}", style="cyan")
        text.append("  │  ")
        ending = self.end_text if self.linux else f"ended: {self.end_text}"
        text.append(ending, style="red" if self.end_text.startswith("crash") else "green")
        text.append("  │  ")
        if self.busy_label is not None:
            spin = SPINNER[self._tick % len(SPINNER)]
            pct = f" {self.progress * 100:3.0f}%" if self.progress is not None else ""
            text.append(f"{spin} {self.busy_label}{pct} — Esc cancels", style="bold yellow")
        else:
            text.append(self.message, style=self.message_style)
        return text


def cpu_text(moment: Moment) -> Text:
    """``pid 4242 tid 4242 cat``: who is on the CPU (the thread's name after the process's
    when they differ), then ``showing tid N (pid P)`` when another thread is shown."""
    pid, tid, comm, name = moment.cpu
    text = Text()
    text.append(f"pid {pid} tid {tid} ", style="bold")
    text.append(comm if name == comm else f"{comm}/{name}", style="bold green")
    if moment.viewing is not None:
        text.append(f"  showing tid {moment.viewing[1]} (pid {moment.viewing[0]})", style="bold magenta")
    return text

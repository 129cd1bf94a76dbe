"""One line, always there: the position (``icount N``), the trace (and the program, for
a Linux program's trace), how the run ended, and what is going on (the last stop, or the
progress of a long operation)."""

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
                 id: str | None = None) -> None:
        super().__init__(id=id)
        self.trace_name = trace_name
        self.program = program
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
        text.append(self.trace_name, style="bold cyan")
        if self.program:                  # a Linux program: its command line, and it "exited"/"crashed"
            text.append(f": {self.program}", style="cyan")
        text.append("  │  ")
        ending = self.end_text if self.program else f"ended: {self.end_text}"
        text.append(ending, style="red" if self.end_text.startswith("crash") else "green")
        text.append("  │  ")
        if self.busy_label is not None:
            spin = SPINNER[self._tick % len(SPINNER)]
            pct = f" {self.progress * 100:3.0f}%" if self.progress is not None else ""
            text.append(f"{spin} {self.busy_label}{pct} — Esc cancels", style="bold yellow")
        else:
            text.append(self.message, style=self.message_style)
        return text

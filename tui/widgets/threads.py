"""A Linux program's threads at the current position: which one is on the CPU, what the
others wait on, and where each last ran (``g`` then ``t N`` goes back there)."""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

from tui.session import Moment


class Threads(Widget):
    """One line a live thread, the one on the CPU first and marked."""

    DEFAULT_CSS = """
    Threads { text-wrap: nowrap; text-overflow: ellipsis; border: round $primary-darken-2; padding: 0 1; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.moment: Moment | None = None
        self.border_title = "Threads"

    def show(self, moment: Moment) -> None:
        self.moment = moment
        self.border_title = f"Threads — {len(moment.threads)}" if moment.threads else "Threads"
        self.refresh()

    def render(self) -> Text:
        moment = self.moment
        if moment is None or not moment.threads:
            return Text("")
        text = Text(no_wrap=True, overflow="ellipsis")
        for i, row in enumerate(moment.threads):
            if i:
                text.append("\n")
            text.append("▶ " if row.on_cpu else "  ", style="bold green")
            text.append(f"{row.tid:<6}", style="bold cyan" if row.on_cpu else "cyan")
            text.append(f"{row.name[:15]:<16}", style="bold" if row.on_cpu else "")
            text.append(row.state, style="green" if row.on_cpu else "dim")
            if row.last_ran is not None:
                text.append(f"  ran to {row.last_ran + 1:,}", style="dim")
        return text

"""Breakpoints and watchpoints currently set."""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

from tui.session import Moment

_KIND = {"w": "write", "r": "read", "a": "access"}


class Breakpoints(Widget):
    """The list of breakpoints (with symbols) and watchpoints."""

    DEFAULT_CSS = """
    Breakpoints { text-wrap: nowrap; text-overflow: ellipsis; border: round $primary-darken-2; padding: 0 1; }
    """

    def __init__(self, *, symbolize=None, id: str | None = None) -> None:
        super().__init__(id=id)
        self.moment: Moment | None = None
        self._symbolize = symbolize or (lambda address: f"{address:#x}")
        self.border_title = "Breakpoints"

    def show(self, moment: Moment) -> None:
        self.moment = moment
        self.refresh()

    def render(self) -> Text:
        moment = self.moment
        if moment is None:
            return Text("")
        if not moment.breakpoints and not moment.watchpoints:
            return Text("none — b breaks at the selected line, w watches memory", style="dim")
        text = Text(no_wrap=True, overflow="ellipsis")
        lines = 0
        for address in sorted(moment.breakpoints):
            if lines:
                text.append("\n")
            text.append("● ", style="bold red")
            text.append(f"{address:#x} ", style="cyan")
            text.append(self._symbolize(address), style="yellow")
            lines += 1
        for wp in moment.watchpoints:
            if lines:
                text.append("\n")
            text.append("◆ ", style="bold magenta")
            text.append(f"{wp.addr:#x}+{wp.length} ", style="cyan")
            text.append(f"{_KIND.get(wp.kind, wp.kind)} ", style="magenta")
            text.append(self._symbolize(wp.addr), style="yellow")
            lines += 1
        if moment.hits:
            text.append(f"\nhits at icount {', '.join(str(h) for h in moment.hits[-4:])}", style="dim")
        return text

"""What the guest has written so far: its console, and the bytes it sent on each socket.

Both are as of the current position: stepping back un-writes them.
"""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

from tui.session import Moment


def _tail_lines(data: bytes, count: int) -> list[str]:
    text = data.decode("utf-8", errors="replace").replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines = lines[:-1]
    return lines[-count:] if count > 0 else []


class ConsoleOutput(Widget):
    """The guest console up to the current position (its last lines)."""

    DEFAULT_CSS = """
    ConsoleOutput { text-wrap: nowrap; text-overflow: ellipsis; border: round $primary-darken-2; padding: 0 1; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.moment: Moment | None = None
        self.border_title = "Console"

    def show(self, moment: Moment) -> None:
        self.moment = moment
        self.border_title = f"Console ({moment.console_total} bytes)"
        self.refresh()

    def render(self) -> Text:
        if self.moment is None:
            return Text("")
        lines = _tail_lines(self.moment.console, max(1, self.content_size.height))
        if not lines:
            return Text("(nothing yet)", style="dim")
        return Text("\n".join(lines), no_wrap=True, overflow="ellipsis")


class SocketOutput(Widget):
    """The last sends on the guest's sockets up to the current position."""

    DEFAULT_CSS = """
    SocketOutput { text-wrap: nowrap; text-overflow: ellipsis; border: round $primary-darken-2; padding: 0 1; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.moment: Moment | None = None
        self.border_title = "Socket output"

    def show(self, moment: Moment) -> None:
        self.moment = moment
        self.border_title = f"Socket output ({moment.sockets_total} sends)" if moment.sockets_total else "Socket output"
        self.refresh()

    def render(self) -> Text:
        if self.moment is None:
            return Text("")
        height = max(1, self.content_size.height)
        sends = self.moment.sockets[-height:]
        if not sends:
            return Text("(nothing sent)", style="dim")
        text = Text(no_wrap=True, overflow="ellipsis")
        for i, (icount, chan, data) in enumerate(sends):
            if i:
                text.append("\n")
            text.append(f"ch{chan:<2} ", style="green")
            text.append(f"{icount:>11} ", style="cyan")
            text.append(repr(bytes(data))[2:-1])
        return text

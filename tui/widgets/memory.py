"""A hexdump window: bytes the last move changed highlighted, watched bytes marked.

``m`` moves the window (address or symbol); a watchpoint stop or a memory search moves
it to what was found.
"""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

from tui.session import Moment


class Memory(Widget):
    """Guest memory around an address, 16 bytes a row."""

    DEFAULT_CSS = """
    Memory { text-wrap: nowrap; text-overflow: ellipsis; border: round $primary-darken-2; padding: 0 1; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.moment: Moment | None = None
        self.border_title = "Memory"

    def show(self, moment: Moment) -> None:
        self.moment = moment
        self.border_title = f"Memory — {moment.memory.address:#x}"
        self.refresh()

    def render(self) -> Text:
        moment = self.moment
        if moment is None:
            return Text("")
        window = moment.memory
        watched = set()
        for wp in moment.watchpoints:
            watched.update(range(wp.addr, wp.addr + wp.length))
        access = moment.access
        text = Text(no_wrap=True, overflow="ellipsis")
        rows = min(len(window.data) // 16, max(1, self.content_size.height))
        for row in range(rows):
            base = window.address + 16 * row
            if row:
                text.append("\n")
            text.append(f"{base:010x} ", style="cyan")
            chunk = window.data[16 * row:16 * row + 16]
            for i, byte in enumerate(chunk):
                address = base + i
                if i == 8:
                    text.append(" ")
                style = ""
                if address in window.changed:
                    style = "bold black on yellow"
                elif address in watched:
                    style = "bold magenta"
                elif access is not None and access <= address < access + 8:
                    style = "underline"
                text.append(" ")
                text.append("??" if byte is None else f"{byte:02x}", style=style or ("red" if byte is None else ""))
            text.append("  ")
            for i, byte in enumerate(chunk):
                ch = "." if byte is None or not 32 <= byte < 127 else chr(byte)
                text.append(ch, style="bold black on yellow" if base + i in window.changed else "dim")
        return text

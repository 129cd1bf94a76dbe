"""Raw qwords from RSP up, with the symbol when a value points into the image's code."""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

from tui.session import Moment


class Stack(Widget):
    """The top of the stack at the current position; changed slots highlighted."""

    DEFAULT_CSS = """
    Stack { text-wrap: nowrap; text-overflow: ellipsis; border: round $primary-darken-2; padding: 0 1; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.moment: Moment | None = None
        self.border_title = "Stack"

    def show(self, moment: Moment) -> None:
        self.moment = moment
        self.border_title = f"Stack — rsp {moment.registers.get('rsp', 0):#x}"
        self.refresh()

    def render(self) -> Text:
        moment = self.moment
        if moment is None:
            return Text("")
        rsp = moment.registers.get("rsp", 0)
        rbp = moment.registers.get("rbp")
        text = Text(no_wrap=True, overflow="ellipsis")
        for i, slot in enumerate(moment.stack[: max(1, self.content_size.height)]):
            if i:
                text.append("\n")
            offset = slot.address - rsp
            mark = "rbp" if slot.address == rbp else f"+{offset:02x}"
            text.append(f"{mark:>4} ", style="bold cyan" if slot.address == rbp else "dim")
            text.append(f"{slot.address:08x}  ", style="cyan")
            if slot.value is None:
                text.append("?" * 16, style="red")
                continue
            text.append(f"{slot.value:016x}", style="bold black on yellow" if slot.changed else "")
            if slot.symbol:
                text.append(f"  {slot.symbol}", style="yellow")
        return text

"""The code around RIP: labels, source lines, instructions; the current one highlighted.

A cursor selects a line (↑/↓, PgUp/PgDn, click): ``b`` toggles a breakpoint there and
Enter continues to it. Every move puts the cursor back on the current instruction.
"""

from __future__ import annotations

from rich.text import Text
from textual.binding import Binding
from textual.events import Click
from textual.widget import Widget

from tui.messages import RunToAddress
from tui.session import CodeRow, Moment

BYTES_SHOWN = 8


class Disassembly(Widget, can_focus=True):
    """Disassembly with symbols and source lines."""

    DEFAULT_CSS = """
    Disassembly { text-wrap: nowrap; text-overflow: ellipsis; border: round $primary-darken-2; padding: 0 1; }
    Disassembly:focus { border: round $accent; }
    """

    BINDINGS = [
        Binding("up", "cursor(-1)", "line up", show=False),
        Binding("down", "cursor(1)", "line down", show=False),
        Binding("pageup", "cursor(-10)", "page up", show=False),
        Binding("pagedown", "cursor(10)", "page down", show=False),
        Binding("enter", "run_to_cursor", "run to line", show=False),
    ]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.moment: Moment | None = None
        self.cursor = -1                 # row index of the selected instruction
        self._top = 0
        self.border_title = "Code"

    def show(self, moment: Moment) -> None:
        self.moment = moment
        self.cursor = moment.current_row
        self.border_title = self._title(moment, None)
        self.refresh()

    @staticmethod
    def _title(moment: Moment, top: int | None) -> str:
        """'Code — FILE:LINE' of the current instruction; when the label of the function it is
        in has scrolled off the top (a long function), its name too."""
        parts = ["Code"]
        current = moment.current_row
        if top is not None and current >= 0:
            label = next((i for i in range(current, -1, -1) if moment.code[i].kind == "label"), None)
            if label is not None and label < top:
                parts.append(moment.code[label].text)
        if current >= 0 and moment.code[current].location:
            parts.append(str(moment.code[current].location))
        return " — ".join(parts)

    @property
    def selected_address(self) -> int | None:
        """The selected instruction's address (the current one unless the cursor moved)."""
        if self.moment is None:
            return None
        if 0 <= self.cursor < len(self.moment.code):
            return self.moment.code[self.cursor].address
        return self.moment.rip

    def action_cursor(self, delta: int) -> None:
        if self.moment is None:
            return
        rows = self.moment.code
        insns = [i for i, r in enumerate(rows) if r.kind == "insn"]
        if not insns:
            return
        try:
            pos = insns.index(self.cursor)
        except ValueError:
            pos = 0
        self.cursor = insns[max(0, min(len(insns) - 1, pos + delta))]
        self.refresh()

    def action_run_to_cursor(self) -> None:
        address = self.selected_address
        if address is not None and self.moment is not None and address != self.moment.rip:
            self.post_message(RunToAddress(address))

    def on_click(self, event: Click) -> None:
        offset = event.get_content_offset(self)
        if self.moment is None or offset is None:
            return
        index = self._top + offset.y
        if 0 <= index < len(self.moment.code) and self.moment.code[index].kind == "insn":
            self.cursor = index
            self.refresh()

    def render(self) -> Text:
        moment = self.moment
        if moment is None:
            return Text("(no code)")
        height = max(1, self.content_size.height)
        rows = moment.code
        if not rows:
            return Text(f"no code at {moment.rip:#x} (not RAM)", style="bold red")
        focus = self.cursor if self.cursor >= 0 else 0
        self._top = max(0, min(focus - height // 2, len(rows) - height))
        title = self._title(moment, self._top)
        if title != self.border_title:
            self.border_title = title
        text = Text(no_wrap=True, overflow="ellipsis")
        for i in range(self._top, min(len(rows), self._top + height)):
            if i > self._top:
                text.append("\n")
            text.append_text(self._row(rows[i], i, moment))
        return text

    def _row(self, row: CodeRow, index: int, moment: Moment) -> Text:
        if row.kind == "label":
            return Text(f"{row.text}:", style="bold yellow")
        if row.kind == "source":
            where = str(row.location)
            body = f"  {row.text}" if row.text else ""
            line = Text(f"    {where}", style="green")
            line.append(body, style="italic green")
            return line
        current = index == moment.current_row
        selected = index == self.cursor and not current
        marker = "▶" if current else " "
        bp = "●" if row.address in moment.breakpoints else " "
        raw = " ".join(f"{b:02x}" for b in row.raw[:BYTES_SHOWN]) + ("…" if len(row.raw) > BYTES_SHOWN else "")
        line = Text()
        line.append(f"{marker}", style="bold green" if current else "")
        line.append(f"{bp} ", style="bold red")
        line.append(f"{row.address:#010x}  ", style="cyan" if not current else "")
        line.append(f"{raw:<{3 * BYTES_SHOWN + 1}} ", style="dim" if not current else "")
        line.append(row.text, style="bold" if current else "")
        if current and moment.access is not None:
            line.append(f"    ; [{moment.access:#x}]", style="magenta")
        if current:
            line.stylize("reverse")
        elif selected:
            line.stylize("on grey23")
        return line

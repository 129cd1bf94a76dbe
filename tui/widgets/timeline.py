"""The whole recording as one line: event density over icount, where we are, the crash,
and the breakpoint and watchpoint hits found so far. A click seeks there.

    row 1  ▁▁▂█▃▁  ▁▁▁▅▁        density of events per column (all kinds)
    row 2     ◆   ▲          ✖  ◆ hits, ▲ the position, ✖ the crash
    row 3  0      8123     13148  the scale and the current icount
"""

from __future__ import annotations

from rich.text import Text
from textual.events import Click
from textual.widget import Widget

from tui.messages import SeekRequested
from tui.session import Moment

BARS = " ▁▂▃▄▅▆▇█"


class Timeline(Widget):
    """Scrubbable overview of the trace."""

    DEFAULT_CSS = """
    Timeline { text-wrap: nowrap; text-overflow: ellipsis; border: round $primary-darken-2; padding: 0 1; height: 5; }
    """

    def __init__(self, *, last_icount: int, crash_icount: int | None, density: list[int],
                 id: str | None = None) -> None:
        super().__init__(id=id)
        self.last_icount = max(0, last_icount)
        self.crash_icount = crash_icount
        self.density = density
        self.moment: Moment | None = None
        self.border_title = "Timeline"

    def show(self, moment: Moment) -> None:
        self.moment = moment
        self.refresh()

    @property
    def columns(self) -> int:
        return max(1, self.content_size.width)

    def column_of(self, icount: int) -> int:
        width = self.columns
        return min(width - 1, icount * width // (self.last_icount + 1))

    def icount_at(self, column: int) -> int:
        """The position a click on ``column`` goes to (the last column is the end)."""
        width = self.columns
        column = max(0, min(width - 1, column))
        if column == width - 1:
            return self.last_icount
        return column * (self.last_icount + 1) // width

    def step_columns(self, icount: int, columns: int) -> int:
        """The position ``columns`` timeline columns away from ``icount`` (for scrubbing)."""
        return self.icount_at(self.column_of(icount) + columns)

    def _resampled(self) -> list[int]:
        width = self.columns
        out = [0] * width
        n = len(self.density)
        for i, count in enumerate(self.density):
            out[min(width - 1, i * width // max(1, n))] += count
        return out

    def on_click(self, event: Click) -> None:
        offset = event.get_content_offset(self)
        if offset is not None and 0 <= offset.x < self.columns:
            self.post_message(SeekRequested(self.icount_at(offset.x)))

    def render(self) -> Text:
        width = self.columns
        counts = self._resampled()
        peak = max(counts) or 1
        here = self.column_of(self.moment.icount) if self.moment is not None else -1
        bars = Text(no_wrap=True)
        for col, count in enumerate(counts):
            level = 0 if count == 0 else 1 + (len(BARS) - 2) * count // peak
            style = "reverse bold green" if col == here else "blue"
            bars.append(BARS[min(level, len(BARS) - 1)] if col != here or count else "│", style=style)
        marks = [" "] * width
        styles = [""] * width
        if self.moment is not None:
            for hit in self.moment.hits:
                c = self.column_of(hit)
                marks[c], styles[c] = "◆", "bold magenta"
        if self.crash_icount is not None:
            c = self.column_of(self.crash_icount)
            marks[c], styles[c] = "✖", "bold red"
        if here >= 0:
            marks[here], styles[here] = "▲", "bold green"
        marker_row = Text(no_wrap=True)
        for mark, style in zip(marks, styles):
            marker_row.append(mark, style=style)
        scale = self._scale(width, here)
        text = Text(no_wrap=True)
        text.append_text(bars)
        text.append("\n")
        text.append_text(marker_row)
        text.append("\n")
        text.append_text(scale)
        return text

    def _scale(self, width: int, here: int) -> Text:
        line = [" "] * width
        left, right = "0", str(self.last_icount)

        def put(at: int, label: str) -> None:
            for i, ch in enumerate(label):
                if 0 <= at + i < width:
                    line[at + i] = ch

        put(0, left)
        put(width - len(right), right)
        if self.moment is not None:
            label = str(self.moment.icount)
            at = here - len(label) // 2
            if len(left) < at and at + len(label) < width - len(right):
                put(at, label)
        text = Text("".join(line), style="dim", no_wrap=True)
        return text

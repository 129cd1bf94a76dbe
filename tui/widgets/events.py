"""The trace's events around the current position, filtered by kind.

The selected event is the last one at or before the position; ↑/↓ move the selection
and Enter (or a click) goes to the selected event. Events still in the future are dim.
"""

from __future__ import annotations

import bisect

from rich.text import Text
from textual.binding import Binding
from textual.events import Click
from textual.widget import Widget

from trace_format.events import Event, EventKind
from tui.messages import EventChosen
from tui.session import Moment, format_payload

KIND_STYLES = {
    EventKind.TIMER: "yellow", EventKind.INTERRUPT: "yellow", EventKind.EXCEPTION: "bold red",
    EventKind.SOCK_DATA: "green", EventKind.SOCK_ACCEPT: "green", EventKind.SOCK_HUP: "green",
    EventKind.CONSOLE_IN: "green", EventKind.CLOCK: "cyan", EventKind.RDTSC: "cyan",
    EventKind.ENTROPY: "cyan", EventKind.END: "bold red",
}


class Events(Widget, can_focus=True):
    """Event list centred on the selected event."""

    DEFAULT_CSS = """
    Events { text-wrap: nowrap; text-overflow: ellipsis; border: round $primary-darken-2; padding: 0 1; }
    Events:focus { border: round $accent; }
    """

    BINDINGS = [
        Binding("up", "select(-1)", "previous event", show=False),
        Binding("down", "select(1)", "next event", show=False),
        Binding("pageup", "select(-10)", "page up", show=False),
        Binding("pagedown", "select(10)", "page down", show=False),
        Binding("enter", "go", "go to event", show=False),
    ]

    def __init__(self, events: list[Event], *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.events = events
        self.kinds: frozenset[EventKind] | None = None
        self.moment: Moment | None = None
        self.selected = -1            # event number, or -1
        self._shown: list[int] = []   # event numbers on screen, top to bottom
        self._visible: list[int] = list(range(len(events)))
        self.border_title = "Events"

    def show(self, moment: Moment, kinds: frozenset[EventKind] | None) -> None:
        if kinds != self.kinds or not self._visible and self.events:
            self.kinds = kinds
            self._visible = [i for i, e in enumerate(self.events) if kinds is None or e.kind in kinds]
        self.moment = moment
        self.selected = self._last_visible_at_or_before(moment.event_index)
        shown = "all kinds" if kinds is None else (
            "all but " + ", ".join(sorted(k.name for k in set(EventKind) - kinds))
            if len(kinds) > len(EventKind) // 2 else ", ".join(sorted(k.name for k in kinds)))
        self.border_title = f"Events ({len(self._visible)} of {len(self.events)}; {shown})"
        self.refresh()

    def _last_visible_at_or_before(self, number: int) -> int:
        i = bisect.bisect_right(self._visible, number) - 1
        return self._visible[i] if i >= 0 else -1

    def action_select(self, delta: int) -> None:
        if not self._visible:
            return
        if self.selected < 0:
            pos = -1 if delta > 0 else 0
        else:
            pos = bisect.bisect_left(self._visible, self.selected)
        pos = max(0, min(len(self._visible) - 1, pos + delta))
        self.selected = self._visible[pos]
        self.refresh()

    def action_go(self) -> None:
        if self.selected >= 0:
            self.post_message(EventChosen(self.selected))

    def on_click(self, event: Click) -> None:
        offset = event.get_content_offset(self)
        row = -1 if offset is None else offset.y
        if 0 <= row < len(self._shown):
            self.selected = self._shown[row]
            self.post_message(EventChosen(self.selected))

    def render(self) -> Text:
        moment = self.moment
        height = max(1, self.content_size.height)
        if moment is None:
            return Text("")
        if not self._visible:
            self._shown = []
            return Text("no events" + ("" if self.kinds is None else " of these kinds (k changes the filter)"),
                        style="dim")
        anchor = bisect.bisect_left(self._visible, max(self.selected, 0))
        top = max(0, min(anchor - height // 2, len(self._visible) - height))
        self._shown = self._visible[top:top + height]
        text = Text(no_wrap=True, overflow="ellipsis")
        for row, number in enumerate(self._shown):
            event = self.events[number]
            if row:
                text.append("\n")
            selected = number == self.selected
            future = event.icount > moment.icount
            line = Text()
            line.append("▶" if selected else " ", style="bold green")
            line.append(f"#{number:<6}", style="dim")
            line.append(f"{event.icount:>12}  ", style="cyan")
            line.append(f"{event.kind.name:<11} ", style=KIND_STYLES.get(event.kind, ""))
            line.append(format_payload(event))
            if future:
                line.stylize("dim")
            if selected:
                line.stylize("reverse" if self.has_focus else "bold")
            text.append_text(line)
        return text

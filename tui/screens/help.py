"""The help screen: every key, made from the same table as the bindings (tui/keys.py)."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from tui.keys import EXTRA_HELP, KEYS, MOVING


def help_table(groups: list[str], extra: bool = False) -> Table:
    """The keys of ``groups`` (and the panel and mouse notes when ``extra``)."""
    table = Table(box=None, show_header=False, padding=(0, 1), expand=False)
    table.add_column("key", style="bold cyan", no_wrap=True, justify="right")
    table.add_column("what")
    first = True
    for group in groups:
        if not first:
            table.add_row("", "")
        first = False
        table.add_row("", Text(group, style="bold underline"))
        for key in KEYS:
            if key.group == group:
                table.add_row(key.shown, key.help)
    if extra:
        table.add_row("", "")
        table.add_row("", Text("Panels and mouse", style="bold underline"))
        for shown, text in EXTRA_HELP:
            table.add_row(shown, text)
    return table


class HelpScreen(ModalScreen[None]):
    """Keys and what they do; any of ? q Esc closes it."""

    BINDINGS = [
        Binding("escape", "close", "close", show=False),
        Binding("question_mark", "close", "close", show=False),
        Binding("q", "close", "close", show=False),
    ]

    def compose(self) -> ComposeResult:
        others = sorted({k.group for k in KEYS} - {MOVING}, key=[k.group for k in KEYS].index)
        with VerticalScroll(id="help"):
            yield Static(Text("vmrr tui — keys  (? q Esc close this)", style="bold"), id="help-title")
            with Horizontal(id="help-columns"):
                yield Static(help_table([MOVING]), id="help-moving")
                yield Static(help_table(others, extra=True), id="help-other")
            yield Static(Text("The status bar always shows the position (icount), the trace and how the run ended. "
                              "Long operations run in the background with a progress indicator; Esc cancels them.",
                              style="dim"), id="help-footer")

    def action_close(self) -> None:
        self.dismiss(None)

"""A one-line question at the bottom of the screen (go to, watch, search, ...)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label


class PromptScreen(ModalScreen[str | None]):
    """Ask for one line; Enter answers it, Esc answers None."""

    BINDINGS = [Binding("escape", "dismiss_none", "cancel", show=False)]

    def __init__(self, question: str, *, placeholder: str = "", value: str = "",
                 cursor_blink: bool = True) -> None:
        super().__init__()
        self.question = question
        self.placeholder = placeholder
        self.value = value
        self.cursor_blink = cursor_blink

    def compose(self) -> ComposeResult:
        with Vertical(id="prompt"):
            yield Label(self.question, id="prompt-question")
            yield Input(value=self.value, placeholder=self.placeholder, id="prompt-input")

    def on_mount(self) -> None:
        field = self.query_one(Input)
        field.cursor_blink = self.cursor_blink
        field.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value)

    def action_dismiss_none(self) -> None:
        self.dismiss(None)

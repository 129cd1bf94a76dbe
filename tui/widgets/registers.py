"""General registers, RIP with its symbol, RFLAGS decoded, segments and control registers.

Registers the last move changed are highlighted; set flags are upper case and bright,
clear ones lower case and dim, so the panel reads right even without colour.
"""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

from tui.session import Moment

GENERAL = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp",
           "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15")
SEGMENTS = ("cs", "ss", "ds", "es", "fs", "gs")
CHANGED = "bold black on yellow"


class Registers(Widget):
    """The register file at the current position."""

    DEFAULT_CSS = """
    Registers { text-wrap: nowrap; text-overflow: ellipsis; border: round $primary-darken-2; padding: 0 1; }
    """

    def __init__(self, *, symbolize=None, id: str | None = None) -> None:
        super().__init__(id=id)
        self.moment: Moment | None = None
        self._symbolize = symbolize or (lambda address: f"{address:#x}")
        self.border_title = "Registers"

    def show(self, moment: Moment) -> None:
        self.moment = moment
        self.refresh()

    def _reg(self, text: Text, name: str, width: int = 16) -> None:
        regs, changed = self.moment.registers, self.moment.changed_registers
        value = regs.get(name)
        text.append(f"{name:>3} ", style="bold cyan")
        shown = "?" * width if value is None else f"{value:0{width}x}"
        text.append(shown, style=CHANGED if name in changed else "")

    def render(self) -> Text:
        moment = self.moment
        if moment is None:
            return Text("")
        regs = moment.registers
        text = Text(no_wrap=True, overflow="ellipsis")
        for i in range(0, len(GENERAL), 2):
            self._reg(text, GENERAL[i])
            text.append("  ")
            self._reg(text, GENERAL[i + 1])
            text.append("\n")
        self._reg(text, "rip")
        text.append(f"  {self._symbolize(regs.get('rip', 0))}", style="yellow")
        text.append("\n")
        rflags_changed = "rflags" in moment.changed_registers
        text.append("flg ", style="bold cyan")
        text.append(f"{regs.get('rflags', 0):08x}", style=CHANGED if rflags_changed else "")
        text.append("  ")
        for name, is_set in moment.flags():
            text.append(name if is_set else name.lower(), style="bold green" if is_set else "dim")
            text.append(" ")
        text.append("\n")
        for i, name in enumerate(SEGMENTS):
            text.append(f"{' ' if i else ''}{name} ", style="bold cyan")
            text.append(f"{regs.get(name, 0):04x}", style=CHANGED if name in moment.changed_registers else "")
        text.append("\n")
        for pair in (("fs_base", "gs_base"), ("cr0", "cr2"), ("cr3", "cr4")):
            for j, name in enumerate(pair):
                label = name.replace("_base", "b")
                text.append(f"{label:>3} ", style="bold cyan")
                value = regs.get(name)
                shown = "?" * 16 if value is None else f"{value:016x}"
                text.append(shown, style=CHANGED if name in moment.changed_registers else "")
                if j == 0:
                    text.append("  ")
            text.append("\n")
        text.rstrip()
        return text

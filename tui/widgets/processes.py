"""A Linux program's processes at the current position, as a tree, with their threads.

Each process in the table (pid, its state, its command line) sits under its parent, with
its live threads below it (tid, name, what each waits on and how far it had run); ``▶``
marks the thread on the CPU, ``◆`` the one shown instead of it (Enter on another
thread). Below the tree, the processes that ended and were reaped before now, the latest
first, with how they ended. ↑/↓ move the cursor (the list scrolls, the mouse wheel too);
Enter (or a click) on a thread shows it — its registers, code, stack and memory, read
through its own process's page tables — and on an ended process goes back to its last
instruction.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.binding import Binding
from textual.events import Click, MouseScrollDown, MouseScrollUp
from textual.widget import Widget

from tui.messages import ProcessChosen, ThreadChosen
from tui.session import Moment, ProcessRow, ThreadRow

STATE_STYLES = {"running": "bold green", "alive": "", "zombie": "yellow"}


@dataclass(frozen=True, slots=True)
class Line:
    """One line of the panel: a process, one of its threads, the ended heading, or an
    ended process."""

    kind: str                       # "process", "thread", "heading", "ended"
    process: ProcessRow | None = None
    thread: ThreadRow | None = None

    @property
    def key(self) -> tuple:
        return (self.kind, self.process.pid if self.process else None, self.thread.tid if self.thread else None)


class Processes(Widget, can_focus=True):
    """The process tree, scrolled so that the cursor stays in view."""

    DEFAULT_CSS = """
    Processes { text-wrap: nowrap; text-overflow: ellipsis; border: round $primary-darken-2; padding: 0 1; }
    Processes:focus { border: round $accent; }
    """

    BINDINGS = [
        Binding("up", "select(-1)", "previous line", show=False),
        Binding("down", "select(1)", "next line", show=False),
        Binding("pageup", "select(-10)", "page up", show=False),
        Binding("pagedown", "select(10)", "page down", show=False),
        Binding("home", "select(-1000000)", "first line", show=False),
        Binding("end", "select(1000000)", "last line", show=False),
        Binding("enter", "choose", "show the thread", show=False),
    ]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.moment: Moment | None = None
        self.lines: list[Line] = []
        self.cursor = 0               # index in ``lines``
        self.top = 0                  # the first line on screen
        self.border_title = "Processes"

    # -- content ------------------------------------------------------------------------

    def show(self, moment: Moment) -> None:
        self.moment = moment
        lines: list[Line] = []
        for proc in moment.processes:
            lines.append(Line("process", proc))
            lines.extend(Line("thread", proc, thread) for thread in proc.threads)
        if moment.ended:
            lines.append(Line("heading"))
            lines.extend(Line("ended", proc) for proc in moment.ended)
        self.lines = lines
        self.cursor = self._shown_thread_line()
        live = sum(1 for p in moment.processes if p.alive)
        zombies = len(moment.processes) - live
        title = f"Processes — {live} live"
        if zombies:
            title += f", {zombies} zombie"
        if moment.ended:
            title += f", {max(moment.ended_total, len(moment.ended))} ended"
        self.border_title = title
        self._scroll_to_cursor()
        self.refresh()

    def _shown_thread_line(self) -> int:
        """The line of the thread whose registers the screen shows (the CPU's, or the viewed one)."""
        moment = self.moment
        tid = moment.viewing[1] if moment is not None and moment.viewing else (
            moment.cpu[1] if moment is not None and moment.cpu else None)
        for i, line in enumerate(self.lines):
            if line.kind == "thread" and line.thread.tid == tid:
                return i
        for i, line in enumerate(self.lines):
            if line.kind != "heading" and line.process is not None and line.process.on_cpu:
                return i
        return 0

    def selected(self) -> Line | None:
        return self.lines[self.cursor] if 0 <= self.cursor < len(self.lines) else None

    # -- moving around ----------------------------------------------------------------------

    def _height(self) -> int:
        return max(1, self.content_size.height)

    def _scroll_to_cursor(self) -> None:
        height = self._height()
        if self.cursor < self.top:
            self.top = self.cursor
        elif self.cursor >= self.top + height:
            self.top = self.cursor - height + 1
        self._scroll_to(self.top)

    def _scroll_to(self, top: int) -> None:
        """Put line ``top`` first (within bounds); the bottom border says which lines show."""
        height = self._height()
        self.top = max(0, min(top, len(self.lines) - height))
        last = min(len(self.lines), self.top + height)
        subtitle = f"lines {self.top + 1}–{last} of {len(self.lines)}" if len(self.lines) > height else ""
        if self.border_subtitle != subtitle:
            self.border_subtitle = subtitle

    def action_select(self, delta: int) -> None:
        if not self.lines:
            return
        target = max(0, min(len(self.lines) - 1, self.cursor + delta))
        if self.lines[target].kind == "heading":     # the heading is not a choice: step over it
            step = 1 if delta > 0 else -1
            target = target + step if 0 <= target + step < len(self.lines) else target - step
        self.cursor = max(0, min(len(self.lines) - 1, target))
        self._scroll_to_cursor()
        self.refresh()

    def action_choose(self) -> None:
        line = self.selected()
        if line is None or line.kind == "heading":
            return
        if line.kind == "thread":
            self.post_message(ThreadChosen(line.thread.tid))
        elif line.kind == "process" and line.process.threads:
            self.post_message(ThreadChosen(line.process.threads[0].tid))
        else:                                        # ended, or a zombie: where it last ran
            self.post_message(ProcessChosen(line.process.pid))

    def on_click(self, event: Click) -> None:
        offset = event.get_content_offset(self)
        row = -1 if offset is None else self.top + offset.y
        if 0 <= row < len(self.lines) and self.lines[row].kind != "heading":
            self.cursor = row
            self.refresh()
            self.action_choose()

    def on_mouse_scroll_down(self, event: MouseScrollDown) -> None:
        self._scroll_to(self.top + 3)
        self.refresh()
        event.stop()

    def on_mouse_scroll_up(self, event: MouseScrollUp) -> None:
        self._scroll_to(self.top - 3)
        self.refresh()
        event.stop()

    def on_resize(self) -> None:
        self._scroll_to_cursor()

    # -- drawing ------------------------------------------------------------------------

    def render(self) -> Text:
        moment = self.moment
        if moment is None:
            return Text("")
        if not self.lines:
            return Text("no processes", style="dim")
        height = self._height()
        shown = self.lines[self.top:self.top + height]
        text = Text(no_wrap=True, overflow="ellipsis")
        for row, line in enumerate(shown):
            if row:
                text.append("\n")
            rendered = self._line(line, moment)
            if self.top + row == self.cursor and line.kind != "heading":
                rendered.stylize("reverse" if self.has_focus else "underline")
            text.append_text(rendered)
        return text

    def _line(self, line: Line, moment: Moment) -> Text:
        out = Text(no_wrap=True, overflow="ellipsis")
        proc = line.process
        if line.kind == "heading":
            shown = len(moment.ended)
            more = f" (the latest {shown} of {moment.ended_total})" if moment.ended_total > shown else ""
            out.append(f"ended before icount {moment.icount:,}{more}", style="dim italic")
            return out
        if line.kind == "ended":
            out.append("▶ " if proc.on_cpu else "  ", style="bold green")
            out.append(f"{proc.pid:<7}", style="dim cyan")
            out.append(f"{proc.state_text():<10}", style="red" if proc.status and proc.status & 0x7F else "dim")
            out.append(proc.command, style="dim")
            if proc.start_icount is not None and proc.end_icount is not None:
                out.append(f"  ran {proc.start_icount:,}–{proc.end_icount:,}", style="dim")
            return out
        indent = "  " * proc.depth
        if line.kind == "process":
            out.append("  ")
            out.append(indent + ("└ " if proc.depth else ""), style="dim")
            out.append(f"{proc.pid:<7}", style="bold cyan" if proc.on_cpu else "cyan")
            state = proc.state_text()
            out.append(f"{state:<9} ", style=STATE_STYLES.get(state.split(",")[0], "yellow"))
            out.append(proc.command, style="bold" if proc.on_cpu else "")
            return out
        thread = line.thread
        viewed = moment.viewing is not None and moment.viewing[1] == thread.tid
        mark = "▶ " if thread.on_cpu else "◆ " if viewed else "  "
        out.append(mark, style="bold green" if thread.on_cpu else "bold magenta")
        out.append(indent + ("  " if proc.depth else "") + "  ")
        out.append("tid ", style="dim")
        out.append(f"{thread.tid:<7}", style="bold cyan" if thread.on_cpu else "cyan")
        out.append(f"{thread.name[:15]:<16}", style="bold" if thread.on_cpu else "")
        out.append(thread.state, style="green" if thread.on_cpu else "dim")
        if thread.last_ran is not None:
            out.append(f"  ran to {thread.last_ran + 1:,}", style="dim")
        return out

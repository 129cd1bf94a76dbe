"""The debugger screen: code, registers, stack, memory, timeline, events, outputs, status.

A Linux program's screen has the process tree where an appliance's has its socket
output (a Linux program's sockets are the host's: nothing shows there)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer

from tui.session import DebugSession, Moment
from tui.widgets.breakpoints import Breakpoints
from tui.widgets.disassembly import Disassembly
from tui.widgets.events import Events
from tui.widgets.memory import Memory
from tui.widgets.output import ConsoleOutput, SocketOutput
from tui.widgets.processes import Processes
from tui.widgets.registers import Registers
from tui.widgets.stack import Stack
from tui.widgets.statusbar import StatusBar
from tui.widgets.timeline import Timeline


class MainScreen(Screen):
    """Every panel at once; ``show`` hands each the new Moment."""

    def __init__(self, session: DebugSession) -> None:
        super().__init__()
        self.session = session

    def compose(self) -> ComposeResult:
        session = self.session
        describe = session.describe
        with Horizontal(id="top"):
            yield Disassembly(id="code")
            with Vertical(id="side"):
                yield Registers(symbolize=describe, id="registers")
                yield Breakpoints(symbolize=describe, id="breakpoints")
        with Horizontal(id="middle"):
            yield Memory(id="memory")
            yield Stack(id="stack")
        yield Timeline(last_icount=session.last_icount, crash_icount=session.crash_icount,
                       density=session.density, id="timeline")
        with Horizontal(id="bottom"):
            yield Events(session.events, id="events")
            with Vertical(id="outputs"):
                if session.linux:
                    yield Processes(id="processes")
                    yield ConsoleOutput(id="console")
                else:
                    yield ConsoleOutput(id="console")
                    yield SocketOutput(id="sockets")
        yield StatusBar(trace_name=session.trace_name, last_icount=session.last_icount,
                        end_text=session.end_text, linux=session.linux,
                        program=None if session.multiprocess else session.program, id="status")
        yield Footer()

    def on_mount(self) -> None:
        if self.session.linux:
            self.add_class("linux")
        self.query_one(Disassembly).focus()
        self.show(self.session.moment)

    def show(self, moment: Moment) -> None:
        for widget_type in (Disassembly, Registers, Stack, Memory, Timeline, ConsoleOutput,
                            Breakpoints, StatusBar):
            self.query_one(widget_type).show(moment)
        self.query_one(Events).show(moment, self.session.event_filter)
        if self.session.linux:
            self.query_one(Processes).show(moment)
        else:
            self.query_one(SocketOutput).show(moment)

    @property
    def status(self) -> StatusBar:
        return self.query_one(StatusBar)

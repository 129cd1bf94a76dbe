"""The command palette (Ctrl+P): every key's command by name, event filters, and
"go to symbol" for each function of the image."""

from __future__ import annotations

from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider

from trace_format.events import EventKind
from tui.keys import KEYS


class DebuggerCommands(Provider):
    """Commands of the vmrr debugger."""

    def _commands(self) -> list[tuple[str, object, str]]:
        app = self.app
        commands: list[tuple[str, object, str]] = []
        for key in KEYS:
            if key.action in ("help", "quit", "cancel"):
                continue
            title = key.help[0].upper() + key.help[1:]
            commands.append((title, partial(app.run_action, key.action), f"key {key.shown}"))
        commands.append(("Events: show all kinds", partial(app.set_event_filter, None), "including digests"))
        commands.append(("Events: hide verification records", partial(app.set_event_filter, "default"),
                         "DIGEST, OUTPUT, CHECKPOINT"))
        for kind in EventKind:
            commands.append((f"Events: only {kind.name}", partial(app.set_event_filter, frozenset({kind})),
                             "filter the event list and e/E"))
        commands.append(("Breakpoints: clear all", app.clear_breakpoints, "breakpoints and watchpoints"))
        return commands

    def _symbol_commands(self) -> list[tuple[str, object, str]]:
        app = self.app
        session = getattr(app, "session", None)
        if session is None:
            return []
        out = []
        start, end = session.image_start, session.image_end     # the program's own functions
        for sym in session.symbols:
            if sym.size and start <= sym.address < end:
                out.append((f"Go to symbol {sym.name}", partial(app.goto_text, sym.name),
                            f"continue to {sym.address:#x}"))
        return out

    async def discover(self) -> Hits:
        for title, callback, help_text in self._commands():
            yield DiscoveryHit(title, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, callback, help_text in self._commands() + self._symbol_commands():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), callback, help=help_text)

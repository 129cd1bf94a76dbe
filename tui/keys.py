"""The key map: one table that makes the app's bindings, the footer, the help screen and
the command palette, so the four never disagree."""

from __future__ import annotations

from dataclasses import dataclass

from textual.binding import Binding


@dataclass(frozen=True, slots=True)
class Key:
    key: str          # textual's key name
    shown: str        # what the user presses, as the help screen writes it
    action: str       # the app action it runs
    short: str        # footer label
    help: str         # one line for the help screen and the command palette
    group: str
    footer: bool = False


MOVING, STOPPING, LOOKING, OTHER = "Moving through time", "Breakpoints and watchpoints", "Looking around", "Other"

KEYS: tuple[Key, ...] = (
    Key("s", "s", "move('step')", "step", "step forward one instruction", MOVING, True),
    Key("S", "S", "move('step_back')", "back", "step backward one instruction", MOVING, True),
    Key("n", "n", "move('step_over')", "next", "step over forward (a call counts as one instruction)", MOVING, True),
    Key("N", "N", "move('step_over_back')", "prev", "step over backward", MOVING),
    Key("c", "c", "move('cont')", "cont", "continue forward to a breakpoint, a watchpoint or the end", MOVING, True),
    Key("C", "C", "move('cont_back')", "rev-cont", "continue backward to a breakpoint, a watchpoint or the start", MOVING, True),
    Key("f", "f", "move('finish')", "finish", "finish: forward to just after the current function returns", MOVING),
    Key("F", "F", "move('finish_back')", "caller", "finish backward: back to the call that entered this function", MOVING),
    Key("e", "e", "move('next_event')", "event", "next event (of the kinds the event list shows)", MOVING),
    Key("E", "E", "move('prev_event')", "prev event", "previous event (of the kinds the event list shows)", MOVING),
    Key("p", "p", "move('next_process')", "process", "next process switch: where another process gets the CPU", MOVING),
    Key("P", "P", "move('prev_process')", "prev process", "previous process switch", MOVING),
    Key("x", "x", "move('crash')", "crash", "jump to the crash", MOVING, True),
    Key("less_than_sign", "<", "move('start')", "start", "go to the start of the recording", MOVING),
    Key("greater_than_sign", ">", "move('end')", "end", "go to the end of the recording", MOVING),
    Key("g", "g", "goto", "go to", "go to an icount, 0xADDRESS (next time RIP is there), a symbol, 'e N' (event N), 't N' / 'p N' (back to where thread / process N last ran)", MOVING, True),
    Key("left_square_bracket", "[", "scrub(-1)", "scrub", "timeline: back one column", MOVING),
    Key("right_square_bracket", "]", "scrub(1)", "scrub", "timeline: forward one column", MOVING),
    Key("left_curly_bracket", "{", "scrub(-10)", "scrub", "timeline: back ten columns", MOVING),
    Key("right_curly_bracket", "}", "scrub(10)", "scrub", "timeline: forward ten columns", MOVING),
    Key("b", "b", "breakpoint", "break", "toggle a breakpoint at the selected code line (default: the current one)", STOPPING, True),
    Key("w", "w", "watch", "watch", "toggle a watchpoint: ADDRESS[,LEN][,r|w|a] (address or symbol)", STOPPING, True),
    Key("l", "l", "last_write", "who wrote?", "go to the last write to ADDRESS[,LEN] before now", STOPPING),
    Key("m", "m", "memory", "memory", "show memory at an address or symbol", LOOKING),
    Key("slash", "/", "search", "search", "search events (kind or payload text) and memory (m:TEXT, m:x:HEX)", LOOKING, True),
    Key("k", "k", "filter", "filter", "event filter: KIND,KIND | -KIND | all", LOOKING),
    Key("escape", "Esc", "cancel", "cancel", "cancel the running operation", OTHER),
    Key("question_mark", "?", "help", "help", "this help", OTHER, True),
    Key("q", "q", "quit", "quit", "quit", OTHER, True),
)


def bindings() -> list[Binding]:
    return [Binding(k.key, k.action, k.short, show=k.footer, key_display=k.shown) for k in KEYS]


EXTRA_HELP = (
    ("↑ ↓ PgUp PgDn", "move the cursor in the focused panel (code, events or processes)"),
    ("Enter", "code: continue to the selected line; events: go to the selected event; "
              "processes: show the selected thread (an ended process: back to its last instruction)"),
    ("Tab", "move focus between the code, the event list and the processes"),
    ("mouse", "click the timeline to go there, an event to go to it, a code line to select it"),
    ("Ctrl+P", "command palette: every command by name"),
)

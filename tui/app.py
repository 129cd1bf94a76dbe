"""The vmrr terminal debugger: a textual App over one DebugSession.

Threading: TimeTravel is not thread-safe, and some moves take seconds. Every move runs
in a thread worker while the app is *busy*, so the screen never freezes: after a short
delay the status bar shows the progress TimeTravel reports, Esc sets the ``cancel``
event the move polls, and nothing else touches the session until the worker is done
(``DebugSession`` enforces it with a lock it never waits on). Steps pressed while a step
runs queue up (key repeat); anything else is refused with "busy".
"""

from __future__ import annotations

import threading
import time
from collections import deque
from functools import partial

from textual.app import App
from textual.worker import Worker, WorkerState

from tui.commands import DebuggerCommands
from tui.keys import bindings
from tui.messages import EventChosen, ProcessChosen, RunToAddress, SeekRequested, ThreadChosen
from tui.screens.help import HelpScreen
from tui.screens.main import MainScreen
from tui.screens.prompt import PromptScreen
from tui.session import DebugSession, Moment, SessionBusy
from tui.targets import (BadInput, Target, TargetKind, parse_kinds, parse_number, parse_search,
                         parse_target, parse_watch)
from trace_format.events import EventKind
from vmm.errors import VmrrError

QUICK_MOVES = frozenset({"step", "step_back", "step_over", "step_over_back"})
MAX_QUEUED_STEPS = 64
SPINNER_DELAY = 0.15          # seconds before a move shows the busy indicator
BUSY_LABELS = {
    "step": "stepping", "step_back": "stepping backward",
    "step_over": "stepping over", "step_over_back": "stepping over backward",
    "cont": "continuing", "cont_back": "continuing backward", "finish": "finishing",
    "finish_back": "finding the caller", "next_event": "going to the next event",
    "prev_event": "going to the previous event", "crash": "going to the crash",
    "start": "going to the start", "end": "going to the end", "seek": "seeking",
    "seek_event": "going to the event", "goto": "going", "last_write": "looking for the last write",
    "search": "searching", "next_process": "going to the next process switch",
    "prev_process": "going to the previous process switch",
}
# Actions that need the session, refused while another screen (help, a prompt) is up.
MAIN_ONLY = frozenset({"move", "goto", "scrub", "breakpoint", "watch", "last_write", "memory",
                       "search", "filter"})


class VmrrApp(App[None]):
    """Step through a recorded run, forward and backward.

    Args:
        session: the open trace (``DebugSession.open(path)``).
        cursor_blink: blink the prompt's cursor (tests turn it off for stable screenshots).
    """

    CSS_PATH = "app.tcss"
    TITLE = "vmrr"
    BINDINGS = bindings()
    COMMANDS = App.COMMANDS | {DebuggerCommands}

    def __init__(self, session: DebugSession, *, cursor_blink: bool = True) -> None:
        super().__init__()
        self.session = session
        self.cursor_blink = cursor_blink
        self.busy = False
        self.last_error: str = ""
        self._cancel: threading.Event | None = None
        self._busy_op: str | None = None
        self._pending_seek: int | None = None
        self._queue: deque[tuple[str, tuple]] = deque()
        self._busy_since = 0.0
        self._progress_timer = None
        self.main: MainScreen | None = None

    # -- life cycle ---------------------------------------------------------------------

    def on_mount(self) -> None:
        self.main = MainScreen(self.session)
        self.push_screen(self.main)
        self._progress_timer = self.set_interval(0.1, self._show_progress, pause=True)
        self.call_after_refresh(self._greet)

    def _greet(self) -> None:
        moment = self.session.moment
        if moment.stop is not None and moment.stop.reason.name == "CRASH":
            self._say(f"at the crash: {self._crash_words()} — S steps back, ? shows every key")
        else:
            self._say("at the start of the recording — s steps, c continues, ? shows every key")

    def _crash_words(self) -> str:
        """What went wrong, as the recorder said it (``SIGSEGV: segmentation fault at …``)."""
        end = self.session.end or {}
        detail = end.get("detail") or self.session.end_text
        if self.session.linux and end.get("kind"):
            return f"{end['kind']}: {detail}"
        return detail

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        if action in MAIN_ONLY and self.main is not None and self.screen is not self.main:
            return False
        return True

    def _show(self, moment: Moment) -> None:
        if self.main is not None and self.main.is_attached:
            self.main.show(moment)

    def _say(self, message: str, style: str = "") -> None:
        if style == "bold red":
            self.last_error = message
        if self.main is not None and self.main.is_attached:
            self.main.status.say(message, style)

    def _error(self, message: str) -> None:
        self._say(message, "bold red")

    # -- moves ----------------------------------------------------------------------------

    def action_move(self, op: str) -> None:
        self.start_move(op)

    def start_move(self, op: str, *args) -> None:
        """Run a move in a worker thread; steps pressed meanwhile queue up behind it."""
        if self.busy:
            if op in QUICK_MOVES and self._busy_op in QUICK_MOVES and len(self._queue) < MAX_QUEUED_STEPS:
                self._queue.append((op, args))       # key repeat: keep every step, in order
                return
            self._say(f"busy {BUSY_LABELS.get(self._busy_op or '', '')} — Esc cancels", "yellow")
            return
        self.busy = True
        self._busy_op = op
        self._busy_since = time.monotonic()
        self._cancel = threading.Event()
        self._progress_timer.resume()
        self.run_worker(partial(self.session.move, op, *args, cancel=self._cancel),
                        name=op, group="timetravel", thread=True, exit_on_error=False)

    def _show_progress(self) -> None:
        # A step usually answers in milliseconds: show the spinner only when it does not.
        if self.busy and self.main is not None and time.monotonic() - self._busy_since > SPINNER_DELAY:
            self.main.status.set_busy(BUSY_LABELS.get(self._busy_op or "", "working"), self.session.progress)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        worker = event.worker
        if worker.group != "timetravel" or event.state not in (
                WorkerState.SUCCESS, WorkerState.ERROR, WorkerState.CANCELLED):
            return
        cancelled = self._cancel is not None and self._cancel.is_set()
        self.busy = False
        self._busy_op = None
        self._progress_timer.pause()
        if self.main is not None:
            self.main.status.set_busy(None)
        if event.state is WorkerState.SUCCESS:
            moment = worker.result
            self._show(moment)
            message = self.describe_stop(moment)
            if cancelled and (moment.stop is None or moment.stop.reason.name != "CANCELLED"):
                message += " (it finished before Esc could stop it)"
            self._say(message, "yellow" if moment.stop is not None and moment.stop.reason.name == "CANCELLED" else "")
        elif event.state is WorkerState.ERROR:
            error = worker.error
            self._error(str(error) if isinstance(error, (VmrrError, BadInput, SessionBusy))
                        else f"internal error: {error!r}")
            try:
                self._show(self.session.refresh())
            except SessionBusy:
                pass
        if self._queue and event.state is WorkerState.SUCCESS and not cancelled:
            op, args = self._queue.popleft()
            self.start_move(op, *args)
            return
        self._queue.clear()
        if self._pending_seek is not None:
            target, self._pending_seek = self._pending_seek, None
            if target != self.session.moment.icount:
                self.start_move("seek", target)

    def describe_stop(self, moment: Moment) -> str:
        """What the status bar says after a move."""
        stop = moment.stop
        note = moment.note
        if stop is None:
            return note
        describe = self.session.describe
        reason = stop.reason.name
        here = f"icount {moment.icount}"
        text = {
            "STEP": f"at {describe(moment.rip)}",
            "SEEK": f"at {describe(moment.rip)}",
            "EVENT": f"event {stop.detail or ''} at {here}".replace("  ", " "),
            "BREAKPOINT": f"breakpoint at {describe(stop.address if stop.address is not None else moment.rip)}",
            "HISTORY_START": "start of the recording",
            "HISTORY_END": "end of the recording",
            "CRASH": f"at the crash: {self._crash_words() if self.session.linux else self.session.end_text}",
            "CANCELLED": f"cancelled — stopped at {here}",
        }.get(reason)
        if reason == "WATCHPOINT":
            text = f"watchpoint at {describe(moment.rip)}"
        if text is None:
            text = reason.lower()
        return f"{text} — {note}" if note and note not in text else text

    def action_cancel(self) -> None:
        if self.busy and self._cancel is not None:
            self._cancel.set()
            self._say("cancelling…", "yellow")

    def action_scrub(self, columns: int) -> None:
        if self.main is None:
            return
        timeline = self.main.query_one("#timeline")
        base = self._pending_seek if self._pending_seek is not None else self.session.moment.icount
        target = timeline.step_columns(base, columns)
        if self.busy:
            self._pending_seek = target          # coalesce key repeats while a seek runs
            return
        self.start_move("seek", target)

    def on_seek_requested(self, message: SeekRequested) -> None:
        if self.busy:
            self._pending_seek = message.icount
            return
        self.start_move("seek", message.icount)

    def on_event_chosen(self, message: EventChosen) -> None:
        self.start_move("seek_event", message.number)

    def on_run_to_address(self, message: RunToAddress) -> None:
        self.start_move("goto", Target(TargetKind.ADDRESS, message.address))

    def on_thread_chosen(self, message: ThreadChosen) -> None:
        self._apply(self.session.view_thread, message.tid)

    def on_process_chosen(self, message: ProcessChosen) -> None:
        self.start_move("goto", Target(TargetKind.PROCESS, message.pid))

    # -- changes that do not move -----------------------------------------------------------

    def _apply(self, change, *args) -> bool:
        """Run a quick session change (breakpoints, views) unless a worker owns the session."""
        if self.busy:
            self._say("busy — Esc cancels the running operation", "yellow")
            return False
        try:
            moment = change(*args)
        except (SessionBusy, BadInput, VmrrError) as error:
            self._error(str(error))
            return False
        self._show(moment)
        if moment.note:
            self._say(moment.note)
        return True

    def action_breakpoint(self) -> None:
        address = self.main.query_one("#code").selected_address
        if address is not None:
            self._apply(self.session.toggle_breakpoint, address)

    def clear_breakpoints(self) -> None:
        self._apply(self.session.clear_breakpoints)

    def set_event_filter(self, kinds) -> None:
        if kinds == "default":
            kinds = self.session.default_event_filter
        self._apply(self.session.set_event_filter, kinds)

    # -- prompts --------------------------------------------------------------------------

    def _ask(self, question: str, callback, *, placeholder: str = "", value: str = "") -> None:
        if self.busy:
            self._say("busy — Esc cancels the running operation", "yellow")
            return

        def answered(text: str | None) -> None:
            if text is None:
                return
            try:
                callback(text.strip())
            except BadInput as error:
                self._error(str(error))

        self.push_screen(PromptScreen(question, placeholder=placeholder, value=value,
                                      cursor_blink=self.cursor_blink), answered)

    def _operand_hint(self) -> str:
        moment = self.session.moment
        return f"{moment.access:#x},8" if moment.access is not None else ""

    def action_goto(self) -> None:
        self._ask("Go to", self.goto_text,
                  placeholder="icount | 0xADDRESS (next time RIP is there) | symbol[+off] | e N | t N (thread) | p N (process) | crash | start | end")

    def goto_text(self, text: str) -> None:
        target = parse_target(text)
        self.start_move("goto", target)

    def action_watch(self) -> None:
        def watch(text: str) -> None:
            self._apply(self.session.toggle_watchpoint, parse_watch(text))
        self._ask("Watch memory (toggles)", watch, placeholder="0xADDRESS or symbol [,LEN=8] [,w|r|a]",
                  value=self._operand_hint())

    def action_last_write(self) -> None:
        def last_write(text: str) -> None:
            spec = parse_watch(text)
            address, length = self.session.resolve_address(spec)
            self.start_move("last_write", address, length or 8)
        default = self._operand_hint() or f"{self.session.moment.memory.address:#x},8"
        self._ask("Who last wrote", last_write, placeholder="0xADDRESS or symbol [,LEN=8]", value=default)

    def action_memory(self) -> None:
        def memory(text: str) -> None:
            if text[:1].isdigit():
                address = parse_number(text)
            else:
                address = self.session.symbols.address_of(text)
                if address is None:
                    raise BadInput(f"no symbol {text!r} in the image")
            self._apply(self.session.set_memory_address, address)
        self._ask("Show memory at", memory, placeholder="0xADDRESS or symbol")

    def action_search(self) -> None:
        def search(text: str) -> None:
            self.start_move("search", parse_search(text) if text else None)
        self._ask("Search", search,
                  placeholder="TEXT (events, then memory) | e:TEXT | m:TEXT | m:x:HEX — empty repeats")

    def action_filter(self) -> None:
        current = self.session.event_filter
        if current is None:
            value = "all"
        else:
            value = ",".join(f"-{k.name}" for k in EventKind if k not in current)
        self._ask("Event kinds", lambda text: self.set_event_filter(parse_kinds(text)),
                  placeholder="KIND,KIND (only) | -KIND (all but) | all", value=value)

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    async def action_quit(self) -> None:
        if self._cancel is not None:
            self._cancel.set()
        self.exit()

    def on_unmount(self) -> None:
        if not self.busy:
            try:
                self.session.close()
            except SessionBusy:
                pass

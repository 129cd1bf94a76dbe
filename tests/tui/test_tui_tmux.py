"""End to end in a real terminal: ``python -m vmrr tui TRACE`` inside tmux, keys sent with
``tmux send-keys``, the screen read with ``tmux capture-pane``.

Each test uses its own tmux server (``-L``), killed by a finalizer whatever happens.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time

import pytest

from tui_fixtures import REPO, recorded_trace

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")

ICOUNT = re.compile(r"icount (\d+) / (\d+)")


class Tmux:
    """One detached tmux session on a private server."""

    def __init__(self, socket_name: str, width: int = 160, height: int = 50) -> None:
        self.socket_name = socket_name
        self.width, self.height = width, height

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(["tmux", "-L", self.socket_name, *args], capture_output=True,
                              text=True, timeout=20, check=check)

    def start(self, command: str) -> None:
        self.run("new-session", "-d", "-s", "tui", "-x", str(self.width), "-y", str(self.height), command)

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", "tui").stdout

    def keys(self, *keys: str) -> None:
        self.run("send-keys", "-t", "tui", *keys)

    def alive(self) -> bool:
        return self.run("has-session", "-t", "tui", check=False).returncode == 0

    def wait_for(self, predicate, what: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            if not self.alive():
                raise AssertionError(f"the tmux session ended while waiting for {what}; last screen:\n{screen}")
            screen = self.screen()
            if predicate(screen):
                return screen
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}; screen:\n{screen}")

    def kill(self) -> None:
        self.run("kill-server", check=False)


@pytest.fixture
def tmux(request):
    session = Tmux(f"vmrr-tui-test-{os.getpid()}-{request.node.name[:40]}")
    yield session
    session.kill()


@pytest.fixture(scope="module")
def crash_trace(tmp_path_factory):
    return recorded_trace(tmp_path_factory, "t_crash_null")


def shown_icount(screen: str) -> int | None:
    match = ICOUNT.search(screen)
    return int(match.group(1)) if match else None


def test_steps_in_a_real_terminal_and_quits(tmux, crash_trace):
    # COLUMNS/LINES can reach the pane holding tmux's initial 80x24 and would pin textual to it.
    command = (f"cd {shlex.quote(str(REPO))} && exec env -u COLUMNS -u LINES "
               f"{shlex.quote(sys.executable)} -m vmrr tui {shlex.quote(str(crash_trace))}")
    tmux.start(command)
    # tmux may hand the program an 80x24 terminal first and resize it a moment later.
    screen = tmux.wait_for(lambda s: shown_icount(s) is not None and "ended: crash" in s
                           and len(s.splitlines()[0]) >= tmux.width - 1, "the main screen at 160x50")
    crash = shown_icount(screen)
    assert crash > 0 and f"icount {crash} / {crash}" in screen       # opened on the crash
    assert "t_crash_null.vmrr" in screen
    assert "mov qword ptr [8], 1" in screen and "t_crash_null.c:8" in screen

    tmux.keys("S")
    tmux.wait_for(lambda s: shown_icount(s) == crash - 1, "icount to go back by one after S")
    tmux.keys("S")
    tmux.wait_for(lambda s: shown_icount(s) == crash - 2, "icount to go back by two")
    tmux.keys("s")
    tmux.wait_for(lambda s: shown_icount(s) == crash - 1, "icount to move forward after s")

    tmux.keys("?")
    tmux.wait_for(lambda s: "step backward one instruction" in s, "the help screen")
    tmux.keys("Escape")
    tmux.wait_for(lambda s: "step backward one instruction" not in s, "the help screen to close")

    tmux.keys("q")
    deadline = time.monotonic() + 15
    while tmux.alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not tmux.alive(), "q did not quit the debugger"

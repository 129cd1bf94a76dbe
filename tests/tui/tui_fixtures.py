"""Helpers for the TUI tests: real traces recorded once per test run, and app driving.

Not a conftest (a second ``conftest`` module would shadow tests/conftest.py for the
modules that import from it); test modules import what they need from here.

Every trace is recorded with ``python -m vmrr record IMAGE -o TRACE --no-stdin`` and
replayed once with ``vmrr replay TRACE --verify`` before any test uses it.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from conftest import describe, replay_verify, vmrr  # noqa: E402  (tests/conftest.py helpers)

SIZE = (160, 50)
# A copy of guests/images/t_crash_null.elf frozen for the snapshot tests, so that
# rebuilding the guests (which moves every address) does not change the screenshots.
FROZEN_CRASH_IMAGE = REPO / "tests" / "data" / "tui" / "t_crash_null.elf"
_traces: dict[tuple[str, str], Path] = {}


def recorded_trace(tmp_path_factory: pytest.TempPathFactory, image: str, *, args: str = "",
                   name: str | None = None, timeout: float = 120) -> Path:
    """Record IMAGE once per test run (cached), replay it with --verify, return the trace.

    Args:
        image: a built-in name (``t_crash_null``, ``cpubench``, ...) or an ELF path.
        args: boot arguments.
        name: the trace's file name without ``.vmrr`` (the status bar shows it).
    """
    key = (image, args)
    if key in _traces:
        return _traces[key]
    if not Path(image).is_file() and not (REPO / "guests" / "images" / f"{image}.elf").is_file():
        pytest.skip(f"guest image {image} is not built (make -C guests)")
    trace = tmp_path_factory.mktemp("tui-traces") / f"{name or Path(image).stem}.vmrr"
    cmd = ["record", image, "-o", trace, "--no-stdin"]
    if args:
        cmd += ["--args", args]
    record = vmrr(*cmd, timeout=timeout)
    assert record.returncode in (0, 3), "recording failed" + describe(record)
    assert trace.is_file(), "the recording left no trace" + describe(record)
    replay_verify(trace, timeout=timeout)
    _traces[key] = trace
    return trace


def make_app(trace: Path, **kwargs):
    """A VmrrApp over a fresh DebugSession of ``trace`` (at the crash, if any)."""
    from tui.app import VmrrApp
    from tui.session import DebugSession

    return VmrrApp(DebugSession.open(str(trace)), cursor_blink=False, **kwargs)


async def settle(app, pilot, timeout: float = 60.0) -> None:
    """Wait until every move (and queued step) has finished and the screen has caught up."""
    deadline = time.monotonic() + timeout
    while True:
        await pilot.pause()
        await app.workers.wait_for_complete()
        await pilot.pause()
        if not app.busy:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"the app stayed busy for {timeout} s ({app._busy_op})")
        await asyncio.sleep(0.01)


def run(coro):
    """Run a Pilot scenario (no pytest-asyncio here: a plain event loop per test)."""
    return asyncio.run(coro)


def press_now(app, key: str, character: str | None = None) -> None:
    """Deliver a key press the way the terminal driver does, without Pilot's wait for an
    idle process (which, while a worker thread runs, would stall up to a second a key)."""
    from textual import events

    if character is None and len(key) == 1:
        character = key
    app.post_message(events.Key(key, character))

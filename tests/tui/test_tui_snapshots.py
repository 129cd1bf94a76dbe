"""Screenshots of the debugger at a fixed terminal size, compared with stored SVGs.

The trace is t_crash_null: no timer, clock or entropy input, so every recording executes
the same instructions and the screen is the same on every machine (the header's
timestamp is never drawn). Its image is a frozen copy in tests/data/tui/, so rebuilding
the guests does not move the addresses on screen (an edit to the source lines shown
still shows). Cursor blink is off.

After an intended change to the screen, refresh them:

    VMRR_UPDATE_SNAPSHOTS=1 python -m pytest tests/tui/test_tui_snapshots.py

and look at the new SVGs in tests/data/snapshots/ (any browser shows them) before
committing. A failing comparison writes the actual screen next to the test's tmp_path.
"""

from __future__ import annotations

import difflib
import html
import os
import re
from pathlib import Path

import pytest

from tui_fixtures import FROZEN_CRASH_IMAGE, REPO, SIZE, make_app, recorded_trace, run, settle

SNAPSHOTS = REPO / "tests" / "data" / "snapshots"
UPDATE = os.environ.get("VMRR_UPDATE_SNAPSHOTS") == "1"


@pytest.fixture(scope="module")
def crash_trace(tmp_path_factory):
    return recorded_trace(tmp_path_factory, str(FROZEN_CRASH_IMAGE), name="t_crash_null")


def svg_lines(svg: str) -> list[str]:
    """The text of an exported screen, one string per terminal row (for a readable diff)."""
    rows: dict[float, list[tuple[float, str]]] = {}
    for x, y, body in re.findall(r'<text[^>]* x="([\d.]+)" y="([\d.]+)"[^>]*>(.*?)</text>', svg):
        rows.setdefault(float(y), []).append((float(x), html.unescape(body).replace("\xa0", " ")))
    return ["".join(t for _x, t in sorted(parts)) for _y, parts in sorted(rows.items())]


def check_snapshot(svg: str, name: str, tmp_path: Path) -> None:
    path = SNAPSHOTS / f"{name}.svg"
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(svg, encoding="utf-8")
        return
    if not path.is_file():
        pytest.fail(f"no stored snapshot {path}: run with VMRR_UPDATE_SNAPSHOTS=1 to create it")
    expected = path.read_text(encoding="utf-8")
    if svg == expected:
        return
    actual = tmp_path / f"{name}.actual.svg"
    actual.write_text(svg, encoding="utf-8")
    diff = "\n".join(difflib.unified_diff(svg_lines(expected), svg_lines(svg), "stored", "now", lineterm="", n=1))
    pytest.fail(f"screen differs from {path} (actual: {actual}); text diff "
                f"(empty when only colours differ):\n{diff}")


def test_main_screen_at_the_crash(crash_trace, tmp_path):
    async def scenario():
        app = make_app(crash_trace)
        async with app.run_test(size=SIZE) as pilot:
            await settle(app, pilot)
            return app.export_screenshot()
    svg = run(scenario())
    assert "icount" in "".join(svg_lines(svg))
    check_snapshot(svg, "main_crash", tmp_path)


def test_main_screen_after_stepping_back_with_a_breakpoint(crash_trace, tmp_path):
    async def scenario():
        app = make_app(crash_trace)
        async with app.run_test(size=SIZE) as pilot:
            await settle(app, pilot)
            await pilot.press("S", "S", "S")         # back into puts: registers and stack change
            await settle(app, pilot)
            await pilot.press("up", "up", "b")       # a breakpoint two lines above
            await settle(app, pilot)
            return app.export_screenshot()
    svg = run(scenario())
    check_snapshot(svg, "main_stepped_back", tmp_path)


def test_help_screen(crash_trace, tmp_path):
    async def scenario():
        app = make_app(crash_trace)
        async with app.run_test(size=SIZE) as pilot:
            await settle(app, pilot)
            await pilot.press("question_mark")
            await settle(app, pilot)
            return app.export_screenshot()
    svg = run(scenario())
    assert any("step backward one instruction" in line for line in svg_lines(svg))
    check_snapshot(svg, "help", tmp_path)

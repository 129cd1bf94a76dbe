"""Make the screenshots of docs/tui.md (not a test): drive the debugger with Pilot on real
traces and save SVGs into docs/images/.

    python tests/tui/docs_screenshots.py RACE_TRACE CRASH_TRACE

RACE_TRACE is a kvstore-race recording that ended in the crash (docs/tui.md says how to
make one); CRASH_TRACE a t_crash_null recording.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "tests" / "tui"))

from tui_fixtures import SIZE, make_app, settle  # noqa: E402

IMAGES = REPO / "docs" / "images"


async def race(trace: str) -> None:
    app = make_app(trace)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        app.save_screenshot("tui-race-1-crash.svg", str(IMAGES))
        await pilot.press("F")
        await settle(app, pilot)
        app.save_screenshot("tui-race-2-caller.svg", str(IMAGES))
        await pilot.press("S")
        await settle(app, pilot)
        await pilot.press("w")
        await pilot.pause()
        app.save_screenshot("tui-race-3-watch.svg", str(IMAGES))
        await pilot.press("enter")
        await settle(app, pilot)
        await pilot.press("C")
        await settle(app, pilot)
        app.save_screenshot("tui-race-4-racing-write.svg", str(IMAGES))
        await pilot.press("s")
        await settle(app, pilot)
        app.save_screenshot("tui-race-5-after-the-write.svg", str(IMAGES))


async def crash(trace: str) -> None:
    app = make_app(trace)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        app.save_screenshot("tui-crash-null.svg", str(IMAGES))
        await pilot.press("question_mark")
        await settle(app, pilot)
        app.save_screenshot("tui-help.svg", str(IMAGES))


def main() -> None:
    IMAGES.mkdir(parents=True, exist_ok=True)
    asyncio.run(race(sys.argv[1]))
    asyncio.run(crash(sys.argv[2]))
    print(f"screenshots in {IMAGES}")


if __name__ == "__main__":
    main()

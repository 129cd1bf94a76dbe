"""One-way imports: the core (vmm, trace_format, recorder, replay) never loads the TUI or
textual, and importing the ``tui`` package itself loads no textual until the app runs."""

from __future__ import annotations

import json
import subprocess
import sys

from tui_fixtures import REPO

CORE = ["replay", "replay.timetravel", "recorder", "vmm.machine", "trace_format"]


def loaded_after(imports: list[str]) -> list[str]:
    """Module names loaded by importing ``imports`` in a fresh interpreter."""
    code = ("import importlib, json, sys\n"
            f"for name in {imports!r}:\n"
            "    importlib.import_module(name)\n"
            "print(json.dumps(sorted(sys.modules)))\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


def test_core_never_imports_textual_or_tui():
    modules = loaded_after(CORE)
    assert "replay.timetravel" in modules and "vmm.machine" in modules
    offenders = [m for m in modules if m.split(".")[0] in ("textual", "tui")]
    assert offenders == [], f"the core loaded UI modules: {offenders}"


def test_tui_data_modules_and_package_need_no_textual():
    modules = loaded_after(["tui", "tui.source", "tui.targets", "tui.session"])
    offenders = [m for m in modules if m.split(".")[0] == "textual"]
    assert offenders == [], f"tui's data modules loaded textual: {offenders}"

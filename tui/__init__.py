"""vmrr's terminal debugger (``vmrr tui TRACE``), a client of replay.timetravel.

The core packages never import this one (tests/tui/test_import_boundary.py checks it),
and importing ``tui`` itself loads no textual: ``run_tui`` imports the app when called.
"""

from __future__ import annotations


def run_tui(path: str, *, max_mem: int | None = None) -> int:
    """Open TRACE at its crash (or its start) and run the debugger until the user quits.

    Returns:
        0.

    Raises:
        VmrrError: the trace cannot be opened, or there is no terminal to run in.
    """
    import sys

    from vmm.errors import UsageError

    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise UsageError("vmrr tui needs an interactive terminal (stdin and stdout must be a tty)")
    from tui.session import DebugSession

    print(f"vmrr: opening {path} (the whole run is replayed once to index it) …", file=sys.stderr, flush=True)
    session = DebugSession.open(path, max_mem=max_mem)
    if session.tt.sidecar_problem:
        print(f"vmrr: warning: {session.tt.sidecar_problem}", file=sys.stderr, flush=True)
    from tui.app import VmrrApp

    VmrrApp(session).run()
    return 0

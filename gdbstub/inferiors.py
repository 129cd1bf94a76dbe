"""Which processes of a Linux program's trace gdb holds as inferiors, as the position moves.

gdb's multiprocess extensions let one connection debug several processes: every thread
is ``pPID.TID`` and gdb keeps an *inferior* per pid. How gdb learns about a process
decides whether it can debug it:

- the process gdb connected to: gdb reads its target description, executable, auxv and
  shared libraries (``post_create_inferior``);
- a fork's child reported by a ``fork``/``vfork`` stop: gdb clones the parent's program
  space (symbols already relocated, breakpoints) and description, then follows its
  ``follow-fork-mode`` and ``detach-on-fork`` settings (``D;PID`` for the one it leaves);
- a program reported by an ``exec`` stop: gdb loads the new executable and its libraries;
- a pid met in a thread list or a stop reply with no event before: gdb adds a bare
  inferior and loads the executable, but neither reads a target description nor relocates
  a PIE — its symbols are wrong. So when gdb takes fork events, a process it was not told
  about is not shown at all.

So ``Inferiors`` keeps ``known``, the pids gdb holds as live inferiors because this
session told it about them, and shows gdb those processes only (``follow`` mode, when
gdb speaks multiprocess and takes fork events, as gdb 13 does). Without fork events gdb
sees every process, in thread lists only.

A replay also moves backward, where a process gdb holds may not exist yet (before its
fork): the session reports it ended (``W00;process:PID``), since gdb has no other way to
drop an inferior; going forward again, its fork is reported again and gdb makes a new
inferior for it. The end of a process going forward is reported with its real status. The
last process gdb holds is never reported ended, as gdb would close the connection: the
end of history is where the session stays (``replaylog:end``).
"""

from __future__ import annotations

from gdbstub.linux import LinuxProcess


class Inferiors:
    """The processes one gdb session shows, over ``LinuxProcess``.

    Args:
        process: the Linux view of the trace.
    """

    def __init__(self, process: LinuxProcess) -> None:
        self.process = process
        self.follow = False                  # gdb takes fork events: show only ``known``
        self.known: set[int] = set()         # pids gdb holds as live inferiors, as we told it
        self.detached: set[int] = set()      # pids gdb let go of (D;PID, vKill;PID)
        self.started = False

    def start(self, follow: bool) -> None:
        """gdb connected (qSupported): it attaches to the process on the CPU."""
        self.follow = follow
        self.known = {self.process.pid}
        self.detached = set()
        self.started = True

    # -- what gdb sees ---------------------------------------------------------------

    def shown(self, pid: int) -> bool:
        """Whether gdb sees process ``pid``'s threads."""
        if pid in self.detached:
            return False
        return pid in self.known if self.follow else True

    def threads(self) -> list[tuple[int, int]]:
        """(pid, tid) of the threads gdb sees now, the one on the CPU first if it is one."""
        return [(pid, tid) for pid, tid in self.process.threads() if self.shown(pid)]

    def pids(self) -> list[int]:
        """The live processes gdb sees now."""
        return [pid for pid in self.process.pids() if self.shown(pid)]

    def listed(self, pids) -> None:
        """gdb got these pids in a thread list or a stop reply: it holds them now."""
        self.known.update(pids)

    def stop_thread(self) -> tuple[int, int]:
        """(pid, tid) a stop names: the thread on the CPU if gdb sees it, else the first
        thread gdb sees (its registers are its saved ones), else a thread id of a process
        gdb still holds that has ended (the CPU's registers: there is nothing else)."""
        here = self.process.current()
        if self.shown(here[0]):
            return here
        threads = self.threads()
        if threads:
            return threads[0]
        held = sorted(self.known)
        return (held[0], held[0]) if held else here

    def let_go(self, pid: int) -> None:
        """gdb detached (or killed) process ``pid``: it is hidden from this session."""
        self.detached.add(pid)
        self.known.discard(pid)

    def nothing_left(self) -> bool:
        """gdb holds no process any more (every live one let go of)."""
        if self.follow:
            return not self.known
        return not self.pids()

    # -- events ------------------------------------------------------------------------

    def births(self) -> list[tuple[int, int, int, bool]]:
        """(child, parent, forking thread, vfork) for the processes born at this position
        whose parent gdb sees and that gdb does not hold yet; they are held from now on
        (gdb adds an inferior when told). The child of a process gdb let go of is let go
        of too, as with a live process."""
        out = []
        for child, parent, tid, vfork in self.process.births():
            if not self.shown(parent):
                self.detached.add(child)
            elif child not in self.known:
                out.append((child, parent, tid, vfork))
        return out

    def take_births(self, births) -> None:
        self.known.update(child for child, *_ in births)

    def execs(self) -> list[tuple[int, int, str]]:
        """(pid, tid, path) of each exec at this position by a process gdb sees."""
        return [(pid, tid, path) for pid, tid, path in self.process.execs() if self.shown(pid)]

    def gone(self) -> list[tuple[int, int]]:
        """(pid, wait status) of each process gdb holds that does not live at this position
        (it ended here or before, or going backward it is not born yet: status 0); they
        are dropped from ``known``. None are while no other held process lives, since gdb
        would end the session with the last one."""
        if not self.follow:
            return []
        alive = set(self.process.pids())
        gone = sorted(self.known - alive)
        if not gone or not self.known & alive:
            return []
        statuses = dict(self.process.deaths())
        self.known -= set(gone)
        return [(pid, statuses.get(pid, 0)) for pid in gone]

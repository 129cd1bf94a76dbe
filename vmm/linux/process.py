"""Processes: what the threads of one program share (Linux's thread group, gVisor's ThreadGroup).

The personality holds processes; each has its own address space (page tables of its own
over the machine's one RAM), descriptor table, signal actions and pending signals,
working directory, umask, program break, resource limits, credentials and its place
in the process tree (parent, process group, session). Its threads are tasks
(vmm/linux/tasks.py), which the one scheduler runs one at a time, whichever process
they belong to. Open file descriptions, pipes and the frames of physical memory are the
kernel's, shared by every process that holds them (after a fork, a dup, a MAP_SHARED).

A process that exits becomes a zombie (its exit status kept) until its parent reaps it
with wait4/waitid; one whose parent is gone is reaped by the personality itself (as
the machine's init would).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vmm.linux import abi
from vmm.linux.files import FileTable
from vmm.linux.memory import AddressSpace
from vmm.linux.signals import SignalState
from vmm.linux.tasks import ALIVE, REAPED, ZOMBIE  # noqa: F401  (the states live with the shared types)
from vmm.symbols import SymbolTable

if TYPE_CHECKING:
    from vmm.linux.kernel import LinuxKernel

# The END record's list of processes (``vmrr ps``, LinuxKernel.process_list) stays well
# below the format's 8 MiB a record: argv characters (one more for each argument's end)
# and thread ids kept per process, rows, and about how many bytes in all.
SUMMARY_ARGV, SUMMARY_TIDS, SUMMARY_PROCESSES, SUMMARY_BYTES = 4096, 1024, 20000, 2 << 20


class Process:
    """One process. ``exit`` is None while it runs, else its wait status (Linux's encoding:
    ``status << 8`` for an exit, the signal number for a death by signal)."""

    def __init__(self, kernel: LinuxKernel, pid: int, space: AddressSpace, *, ppid: int, cwd: str,
                 argv: list[str], env: list[str], exe: str) -> None:
        self.k = kernel
        self.pid = pid
        self.ppid = ppid
        self.pgid = pid
        self.sid = pid
        self.space = space
        self.files = FileTable(kernel, self)
        self.signals = SignalState(kernel, self)
        self.cwd = cwd
        self.umask = 0o022
        self.brk_start = self.brk = 0
        self.rlimits: dict[int, list[int]] = abi.default_rlimits(kernel.machine.mem_size)
        self.creds = list(kernel.initial_creds)       # ruid euid suid rgid egid sgid, then groups
        self.groups: list[int] = list(kernel.initial_groups)
        self.argv = list(argv)
        self.env = list(env)
        self.exe = exe                                 # path of the program it runs
        self.exe_base = self.interp_base = 0
        self.auxv = b""
        self.state = ALIVE
        self.exit: int | None = None                   # wait status once a zombie
        self.pdeathsig = 0
        self.exit_signal = abi.SIGCHLD                 # what the parent gets when it ends
        self.vfork_parent: int | None = None           # a vfork child's parent tid, until exec or exit
        self.start_icount = kernel.machine.icount
        self.end_icount: int | None = None
        # Threads that ended while the process lives on are forgotten (a server making
        # threads all day would fill the table); their ids stay for `vmrr ps`, bounded.
        self.gone_tids: list[int] = []
        self.symbols = SymbolTable([])
        self.symbol_files: set[str] = set()

    @property
    def comm(self) -> str:
        leader = self.k.tasks.get(self.pid)
        if leader is not None:
            return leader.name
        return (self.argv[0].rsplit("/", 1)[-1] if self.argv else "program")[:15]

    def all_tids(self) -> list[int]:
        """Every thread it had: the ones it has, and the ended ones it remembers."""
        return sorted(set(self.gone_tids) | {t.tid for t in self.k.tasks.values() if t.pid == self.pid})

    def forget_thread(self, task) -> None:
        """``task``, an ended thread that is not the leader, leaves the thread table."""
        from vmm.linux.tasks import DONE
        if task.state == DONE and task.tid != self.pid and task is not self.k.current:
            if len(self.gone_tids) < SUMMARY_TIDS:
                self.gone_tids.append(task.tid)
            self.k.tasks.pop(task.tid, None)

    def threads(self) -> list:
        return [t for t in self.k.tasks.values() if t.pid == self.pid]

    def live_threads(self) -> list:
        from vmm.linux.tasks import DONE
        return [t for t in self.k.tasks.values() if t.pid == self.pid and t.state != DONE]

    def children(self) -> list["Process"]:
        return [p for p in self.k.processes.values() if p.ppid == self.pid and p.state != REAPED]

    # -- state -----------------------------------------------------------------------

    def as_dict(self, description_index: dict[int, int]) -> dict:
        return {"pid": self.pid, "ppid": self.ppid, "pgid": self.pgid, "sid": self.sid,
                "space": self.space.state(), "fds": self.files.state(description_index),
                "signals": self.signals.state(), "cwd": self.cwd, "umask": self.umask,
                "brk": [self.brk_start, self.brk],
                "rlimits": sorted([k, list(v)] for k, v in self.rlimits.items()),
                "creds": list(self.creds), "groups": list(self.groups), "argv": list(self.argv),
                "env": list(self.env), "exe": self.exe, "bases": [self.exe_base, self.interp_base],
                "auxv": self.auxv, "state": self.state, "exit": self.exit,
                "signals_out": [self.pdeathsig, self.exit_signal],
                "vfork_parent": self.vfork_parent, "icounts": [self.start_icount, self.end_icount],
                "gone_tids": list(self.gone_tids)}

    def load_dict(self, raw: dict, descriptions: list) -> None:
        self.pid, self.ppid, self.pgid, self.sid = raw["pid"], raw["ppid"], raw["pgid"], raw["sid"]
        self.space.load_state(raw["space"])
        self.files.load_state(raw["fds"], descriptions)
        self.signals.load_state(raw["signals"])
        self.cwd, self.umask = raw["cwd"], raw["umask"]
        self.brk_start, self.brk = raw["brk"]
        self.rlimits = {int(k): list(v) for k, v in raw["rlimits"]}
        self.creds, self.groups = list(raw["creds"]), list(raw["groups"])
        self.argv, self.env, self.exe = list(raw["argv"]), list(raw["env"]), raw["exe"]
        self.exe_base, self.interp_base = raw["bases"]
        self.auxv, self.state, self.exit = raw["auxv"], raw["state"], raw["exit"]
        (self.pdeathsig, self.exit_signal), self.vfork_parent = raw["signals_out"], raw["vfork_parent"]
        self.start_icount, self.end_icount = raw["icounts"]
        self.gone_tids = list(raw["gone_tids"])


STATE_KEYS = frozenset({"pid", "ppid", "pgid", "sid", "space", "fds", "signals", "cwd", "umask", "brk",
                        "rlimits", "creds", "groups", "argv", "env", "exe", "bases", "auxv", "state", "exit",
                        "signals_out", "vfork_parent", "icounts", "gone_tids"})

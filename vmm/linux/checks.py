"""Checks of what a trace or sidecar says about a Linux program, before anything uses it.

A checkpoint or a time-travel sidecar restores the personality's state; it comes from a
file, so it may be damaged or hostile. ``state_problem`` returns None for a well-formed
state and a short description of the first problem otherwise; it never raises, whatever
it is given. (The shapes of the SYSCALL, BLOB and SIGNAL payloads are checked with every
other kind's, in trace_format/events.py.)
"""

from __future__ import annotations

import re

from vmm.cpu import VECTOR_STATE_SIZE
from vmm.linux.memory import FIRST_FRAME, PAGE, USER_END
from vmm.linux.tasks import CTX_NAMES, DONE, MAX_TASKS, RUN, WAIT

U64 = 1 << 64
MAX_VMAS = 1 << 20
MAX_FILES = 1 << 16
SCM_MAX_FD = 253                  # Linux's limit of descriptors in one message (SCM_RIGHTS)
MAX_NAME = 4096
FILE_KINDS = {"blob", "host", "dir", "synth", "null", "zero", "random", "pipe", "stdout", "stderr", "socket",
              "epoll", "eventfd"}
_HEX_ID = re.compile(r"[0-9a-f]{64}\Z")
_SHM_ID = re.compile(r"shm:[0-9]{1,10}\Z")          # a shared memory object (MAP_SHARED anonymous)


def _u(value: object, limit: int = U64) -> bool:
    return type(value) is int and 0 <= value < limit


def _str(value: object, limit: int = MAX_NAME) -> bool:
    return type(value) is str and len(value) <= limit


def _stat(value: object) -> bool:
    return value is None or (type(value) is list and len(value) == 13 and all(type(v) is int for v in value))


def _frames(frames: object, mem_size: int) -> str | None:
    end = mem_size // PAGE
    if not (type(frames) is list and len(frames) == 4 and _u(frames[0], end + 1) and _u(frames[1], end + 1)
            and type(frames[2]) is list and len(frames[2]) <= end and type(frames[3]) is list):
        return "frames is malformed"
    last = FIRST_FRAME
    for run in frames[2]:
        if not (type(run) is list and len(run) == 2 and _u(run[0], end) and _u(run[1], end + 1)
                and last <= run[0] < run[1]):
            return "frames holds a run out of order or outside RAM"
        last = run[1]
    if not all(type(r) is list and len(r) == 2 and _u(r[0], end) and _u(r[1], 1 << 31) and r[1] >= 2
               for r in frames[3]):
        return "frames' shared counts are malformed"
    return None


def _space(space: object, mem_size: int) -> str | None:
    if not (type(space) is list and len(space) == 2):
        return "space is not [root, vmas]"
    root, vmas = space
    if root == 0 and vmas == []:
        return None                                   # an ended process's: nothing left
    if not (_u(root, mem_size) and root % PAGE == 0 and root >= FIRST_FRAME * PAGE):
        return "space.root is not a page of RAM"
    if type(vmas) is not list or len(vmas) > MAX_VMAS:
        return "space.vmas is not a list"
    last = 0
    for vma in vmas:
        if not (type(vma) is list and len(vma) == 7):
            return "a VMA is not [start, end, prot, flags, file, offset, name]"
        start, stop, prot, flags, file, offset, name = vma
        if not (_u(start, USER_END) and _u(stop, USER_END + 1) and last <= start < stop
                and start % PAGE == 0 and stop % PAGE == 0):
            return f"a VMA at {start!r:.20} is out of order or outside the address space"
        if not (_u(prot, 8) and _u(flags, 1 << 32) and _u(offset) and offset % PAGE == 0 and _str(name)):
            return f"the VMA at {start:#x} has a bad protection, flags, offset or name"
        if file is not None and not (type(file) is str and (_HEX_ID.match(file) or _SHM_ID.match(file))):
            return f"the VMA at {start:#x} names no file content"
        last = stop
    return None


def _shared(shm: object, mem_size: int) -> str | None:
    """vmm/linux/shmem.py's state: [next id, [[id, kind, key, pages, sources, keep], ...]]."""
    if not (type(shm) is list and len(shm) == 2 and _u(shm[0], 1 << 32) and type(shm[1]) is list):
        return "shm is not [next id, objects]"
    end = mem_size // PAGE
    for obj in shm[1]:
        if not (type(obj) is list and len(obj) == 6 and _u(obj[0], shm[0]) and obj[1] in ("anon", "file", "sysv")
                and (obj[2] is None or _str(obj[2], 64)) and type(obj[3]) is list and len(obj[3]) <= end
                and type(obj[4]) is list and obj[5] in (True, False)):
            return "a shared memory object is malformed"
        if not all(type(p) is list and len(p) == 2 and _u(p[0], USER_END // PAGE) and _u(p[1], end)
                   and p[1] >= FIRST_FRAME for p in obj[3]):
            return f"shared memory object {obj[0]} holds a page outside RAM"
        if not all(type(s) is list and len(s) == 3 and _u(s[0], USER_END // PAGE) and _u(s[1], USER_END // PAGE)
                   and type(s[2]) is str and _HEX_ID.match(s[2]) for s in obj[4]):
            return f"shared memory object {obj[0]} has a malformed source"
    return None


def _ipc(ipc: object, shm: list) -> str | None:
    """vmm/linux/ipc.py's state: [sequence, segments, semaphore sets, undo adjustments]."""
    if not (type(ipc) is list and len(ipc) == 4 and _u(ipc[0], 1 << 32) and all(type(t) is list for t in ipc[1:])):
        return "ipc is not [sequence, segments, semaphore sets, undo]"
    objects = {f"shm:{obj[0]}" for obj in shm[1]}
    for seg in ipc[1]:
        if not (type(seg) is list and len(seg) == 14 and _u(seg[0], 1 << 31) and type(seg[1]) is int
                and -(1 << 31) <= seg[1] < 1 << 31 and all(_u(v, 1 << 32) for v in seg[2:7])
                and seg[7] in objects and _u(seg[8]) and all(_u(v, 1 << 32) for v in seg[9:11])
                and all(_u(v, 1 << 63) for v in seg[11:])):
            return "a System V shared memory segment is malformed"
    for sem in ipc[2]:
        if not (type(sem) is list and len(sem) == 11 and _u(sem[0], 1 << 31) and type(sem[1]) is int
                and -(1 << 31) <= sem[1] < 1 << 31 and all(_u(v, 1 << 32) for v in sem[2:7])
                and type(sem[7]) is list and 1 <= len(sem[7]) <= 32000 and all(_u(v, 32768) for v in sem[7])
                and type(sem[8]) is list and len(sem[8]) == len(sem[7]) and all(_u(v, 1 << 31) for v in sem[8])
                and _u(sem[9], 1 << 63) and _u(sem[10], 1 << 63)):
            return "a System V semaphore set is malformed"
    if not all(type(u) is list and len(u) == 4 and _u(u[0], 1 << 31) and _u(u[1], 1 << 31) and _u(u[2], 32000)
               and type(u[3]) is int and -(1 << 20) < u[3] < 1 << 20 for u in ipc[3]):
        return "the semaphore undo adjustments are malformed"
    return None


def _descriptions(descriptions: object) -> str | None:
    if type(descriptions) is not list or len(descriptions) > MAX_FILES:
        return "files is not a list of open file descriptions"
    for f in descriptions:
        if not (type(f) is list and len(f) == 9):
            return "an open file is malformed"
        kind, path, flags, pos, ref, stat, data, handle, pipe = f
        if type(kind) is not str or kind not in FILE_KINDS or not (_str(path) and _u(flags, 1 << 32) and _u(pos)
                                                                   and _u(ref, 1 << 20) and _stat(stat)):
            return f"an open file of kind {kind!r:.20} is malformed"
        if handle is not None and not _u(handle, 1 << 32) or pipe is not None and not _u(pipe, 1 << 32):
            return "an open file has a bad handle or pipe number"
        if kind == "blob" and not (type(data) is str and _HEX_ID.match(data)):
            return "a file's content id is malformed"
        if kind == "synth" and type(data) is not bytes:
            return "a made-up file has no bytes"
        if kind == "dir" and not (type(data) is list and all(
                type(e) is list and len(e) == 3 and _u(e[0]) and _u(e[1], 256) and _str(e[2]) for e in data)):
            return "a directory's entries are malformed"
        if kind in ("host", "socket", "epoll") and handle is None or kind == "pipe" and pipe is None:
            return f"a {kind} file lacks its handle"
        if kind == "socket" and not (type(data) is list and len(data) == 5 and all(_u(v, 1 << 32) for v in data[:3])
                                     and (data[3] is None or _u(data[3], len(descriptions)))
                                     and type(data[4]) is list and len(data[4]) <= MAX_FILES
                                     and all(type(m) is list and len(m) <= SCM_MAX_FD
                                             and all(_u(i, len(descriptions)) for i in m) for m in data[4])):
            return "a socket's domain, type, peer or descriptors in flight are malformed"
        if kind == "eventfd" and not (type(data) is list and len(data) == 2 and _u(data[0]) and data[1] in (0, 1)):
            return "an eventfd's counter is malformed"
        if kind == "epoll" and not (type(data) is list and len(data) <= MAX_FILES and all(
                type(e) is list and len(e) == 6 and _u(e[0], 1 << 31) and _u(e[1], 1 << 32) and _u(e[2])
                and (e[3] is None or _u(e[3], 1 << 32)) and (e[4] is None or _u(e[4]))
                and (e[5] is None or _u(e[5], len(descriptions))) for e in data)):
            return "an epoll's interest list is malformed"
    return None


def _fd_table(table: object, n_descriptions: int) -> bool:
    return type(table) is list and len(table) <= MAX_FILES and all(
        type(row) is list and len(row) == 3 and _u(row[0], 1 << 20) and _u(row[1], n_descriptions)
        and type(row[2]) is bool for row in table)


def _signals(signals: object) -> str | None:
    if not (type(signals) is list and len(signals) in (4, 5)):
        return "signals is not [actions, mask, altstack, pending, itimer]"
    actions, mask, altstack, pending = signals[:4]
    itimer = signals[4] if len(signals) == 5 else None
    if not (itimer is None or type(itimer) is list and len(itimer) == 2
            and all(type(v) is int and 0 <= v < 1 << 63 for v in itimer)):
        return "signals.itimer is malformed"
    if not (type(actions) is list and len(actions) <= 64 and all(
            type(a) is list and len(a) == 2 and type(a[0]) is int and 1 <= a[0] <= 64 and type(a[1]) is list
            and len(a[1]) == 4 and all(_u(v) for v in a[1]) for a in actions)):
        return "signals.actions is malformed"
    if not (_u(mask) and type(altstack) is list and len(altstack) == 3 and all(_u(v) for v in altstack)):
        return "signals.mask or altstack is malformed"
    if not (type(pending) is list and len(pending) <= 64 and all(
            type(p) is list and len(p) == 3 and type(p[0]) is int and 1 <= p[0] <= 64
            and all(type(v) is int and -U64 < v < U64 for v in p[1:]) for p in pending)):
        return "signals.pending is malformed"
    return None


def _process(p: object, mem_size: int, n_descriptions: int) -> str | None:
    from vmm.linux.process import ALIVE, REAPED, STATE_KEYS, ZOMBIE
    if not (type(p) is dict and set(p) == STATE_KEYS):
        return "a process is not its map of fields"
    pid = p["pid"]
    if not (_u(pid, 1 << 31) and _u(p["ppid"], 1 << 31) and _u(p["pgid"], 1 << 31) and _u(p["sid"], 1 << 31)):
        return f"process {pid!r:.20} has ids out of range"
    if not _fd_table(p["fds"], n_descriptions):
        return f"process {pid}'s descriptor table is malformed"
    cwd = p["cwd"]
    if not (_str(cwd) and cwd.startswith("/") and _u(p["umask"], 0o1000)):
        return f"process {pid}'s cwd or umask is malformed"
    if not (type(p["brk"]) is list and len(p["brk"]) == 2 and all(_u(v, USER_END + 1) for v in p["brk"])):
        return f"process {pid}'s program break is malformed"
    if not (type(p["rlimits"]) is list and len(p["rlimits"]) <= 64 and all(
            type(r) is list and len(r) == 2 and _u(r[0], 64) and type(r[1]) is list and len(r[1]) == 2
            and all(_u(v) for v in r[1]) for r in p["rlimits"])):
        return f"process {pid}'s rlimits are malformed"
    if not (type(p["creds"]) is list and len(p["creds"]) == 6 and all(_u(v, 1 << 32) for v in p["creds"])
            and type(p["groups"]) is list and len(p["groups"]) <= 65536 and all(_u(v, 1 << 32) for v in p["groups"])):
        return f"process {pid}'s credentials are malformed"
    if not (type(p["argv"]) is list and type(p["env"]) is list and all(_str(a, 1 << 20) for a in p["argv"] + p["env"])
            and _str(p["exe"]) and type(p["auxv"]) is bytes and len(p["auxv"]) <= 4096):
        return f"process {pid}'s program is malformed"
    if not (type(p["bases"]) is list and len(p["bases"]) == 2 and all(_u(v) for v in p["bases"])):
        return f"process {pid}'s load bases are malformed"
    if not (p["state"] in (ALIVE, ZOMBIE, REAPED) and (p["exit"] is None or _u(p["exit"], 1 << 16))
            and type(p["signals_out"]) is list and len(p["signals_out"]) == 2
            and all(_u(v, 65) for v in p["signals_out"])
            and (p["vfork_parent"] is None or _u(p["vfork_parent"], 1 << 31))):
        return f"process {pid}'s state is malformed"
    icounts = p["icounts"]
    if not (type(icounts) is list and len(icounts) == 2 and _u(icounts[0]) and (icounts[1] is None or _u(icounts[1]))):
        return f"process {pid}'s icounts are malformed"
    from vmm.linux.process import SUMMARY_TIDS
    gone = p["gone_tids"]
    if not (type(gone) is list and len(gone) <= SUMMARY_TIDS and all(_u(t, 1 << 31) for t in gone)):
        return f"process {pid}'s ended threads are malformed"
    return _space(p["space"], mem_size) or _signals(p["signals"])


def _history(history: object) -> str | None:
    if not (type(history) is list and len(history) == 3 and _u(history[0], 1 << 31)
            and (history[1] is None or _u(history[1], 1 << 16)) and type(history[2]) is list):
        return "history is malformed"
    for row in history[2]:
        if not (type(row) is list and len(row) == 8 and _u(row[0], 1 << 31) and _u(row[1], 1 << 31)
                and type(row[2]) is list and all(_str(a, 1 << 20) for a in row[2]) and _str(row[3])
                and (row[4] is None or _u(row[4], 1 << 16)) and _u(row[5]) and (row[6] is None or _u(row[6]))
                and type(row[7]) is list and len(row[7]) <= 1 << 20 and all(_u(t, 1 << 31) for t in row[7])):
            return "a line of process history is malformed"
    return None


def _proc(proc: object) -> str | None:
    if not (type(proc) is list and len(proc) == 5 and all(_u(v) for v in proc)
            and _u(proc[0], 1 << 31) and _u(proc[1], 1 << 31)):
        return "proc is not [running thread, next tid, next pipe, wait sequence, switches]"
    return None


def _wait(wait: object) -> bool:
    if type(wait) is not list or not wait:
        return False
    if wait[0] == "futex":
        return (len(wait) == 5 and _u(wait[1], USER_END) and _u(wait[2], 1 << 32) and _u(wait[3], 1 << 31)
                and _u(wait[4], USER_END if wait[3] else 1 << 40))
    if wait[0] == "fds":
        return len(wait) == 2 and type(wait[1]) is list and len(wait[1]) <= MAX_FILES and all(
            type(w) is list and len(w) == 2 and _u(w[0], 1 << 31) and _u(w[1], 1 << 32) for w in wait[1])
    if wait[0] == "sem":
        return len(wait) == 4 and _u(wait[1], 1 << 31) and _u(wait[2], 1 << 16) and wait[3] in (0, 1)
    if wait[0] in ("child", "vfork"):
        return len(wait) == 2 and type(wait[1]) is int and -(1 << 31) <= wait[1] < 1 << 31
    return wait in (["retry"], ["signal"])


def _ctx(ctx: object) -> bool:
    return (type(ctx) is list and len(ctx) == 2 and type(ctx[0]) is list and len(ctx[0]) == len(CTX_NAMES)
            and all(_u(v) for v in ctx[0]) and type(ctx[1]) is bytes and len(ctx[1]) == VECTOR_STATE_SIZE)


def _tasks(tasks: object, current: int) -> str | None:
    if not (type(tasks) is list and 1 <= len(tasks) <= MAX_TASKS):
        return "tasks is not a list of threads"
    seen = set()
    for t in tasks:
        if not (type(t) is list and len(t) == 14):
            return "a thread is not its fourteen fields"
        tid, state, ctx, wait, call, timeout, seq, sigmask, altstack, clear_tid, robust, name, pid, saved = t
        if not (_u(tid, 1 << 31) and tid not in seen and state in (RUN, WAIT, DONE) and type(timeout) is bool
                and _u(seq) and _u(sigmask) and _u(clear_tid) and _str(name, 64) and _u(pid, 1 << 31)
                and (saved is None or _u(saved))):
            return f"thread {tid!r:.20} holds a field out of range"
        seen.add(tid)
        if not (type(altstack) is list and len(altstack) == 3 and all(_u(v) for v in altstack)
                and type(robust) is list and len(robust) == 2 and all(_u(v) for v in robust)):
            return f"thread {tid}'s altstack or robust list is malformed"
        if (tid == current) != (ctx is None) and state != DONE or ctx is not None and not _ctx(ctx):
            return f"thread {tid}'s registers are malformed"
        if state == WAIT and not (_wait(wait) and type(call) is list and len(call) == 2 and _u(call[0], 1024)
                                  and type(call[1]) is list and len(call[1]) == 6
                                  and all(_u(v) for v in call[1])):
            return f"thread {tid}'s wait is malformed"
        if state != WAIT and (wait is not None or call is not None):
            return f"thread {tid} waits but is not waiting"
    if current not in seen:
        return "the running thread is not among the threads"
    return None


def state_problem(state: object, mem_size: int) -> str | None:
    """None when ``state`` is a LinuxKernel.state() this machine can load, else what is wrong
    (never an exception: the state comes from a file)."""
    try:
        return _state_problem(state, mem_size)
    except (TypeError, ValueError, KeyError, IndexError, AttributeError) as exc:
        return f"linux state is malformed where no check expected it ({type(exc).__name__})"


_STATE_KEYS = {"frames", "shm", "ipc", "pipes", "files", "in_flight", "processes", "tasks", "proc", "history", "unimplemented"}


def _state_problem(state: object, mem_size: int) -> str | None:
    if type(state) is not dict or set(state) != _STATE_KEYS:
        return "linux state is not a map of " + ", ".join(sorted(_STATE_KEYS))
    unimplemented = state["unimplemented"]
    if not (type(unimplemented) is list and all(type(u) is list and len(u) == 2 and _str(u[0], 64)
                                                and _u(u[1]) for u in unimplemented)):
        return "linux state's unimplemented counts are malformed"
    pipes = state["pipes"]
    if not (type(pipes) is list and all(type(p) is list and len(p) == 2 and _u(p[0], 1 << 32)
                                        and type(p[1]) is bytes for p in pipes)):
        return "pipes is malformed"
    problem = (_frames(state["frames"], mem_size) or _shared(state["shm"], mem_size) or _ipc(state["ipc"], state["shm"])
               or _descriptions(state["files"]) or _proc(state["proc"]))
    if problem:
        return problem
    in_flight = state["in_flight"]
    if not (type(in_flight) is list and len(in_flight) <= MAX_FILES and all(
            type(m) is list and len(m) == 2 and _u(m[0]) and type(m[1]) is list and len(m[1]) <= SCM_MAX_FD
            and all(_u(i, len(state["files"])) for i in m[1]) for m in in_flight)):
        return "the descriptors in flight are malformed"
    if problem:
        return problem
    processes = state["processes"]
    if not (type(processes) is list and 1 <= len(processes) <= MAX_TASKS):
        return "processes is not a list"
    pids = set()
    for process in processes:
        problem = _process(process, mem_size, len(state["files"]))
        if problem:
            return problem
        if process["pid"] in pids:
            return f"process {process['pid']} appears twice"
        pids.add(process["pid"])
    problem = _tasks(state["tasks"], state["proc"][0]) or _history(state["history"])
    if problem:
        return problem
    if not all(t[12] in pids for t in state["tasks"]):
        return "a thread belongs to no process"
    return None


def summary_problem(summary: object) -> str | None:
    """None when ``summary`` is the END record's ``linux`` map as the recorder writes it
    (RecordSession._linux_summary), else what is wrong: ``vmrr info`` prints it."""
    if type(summary) is not dict:
        return "is not a map"
    counts = lambda v: type(v) is dict and all(_str(k, 64) and _u(n) for k, n in v.items())  # noqa: E731
    for key in ("syscalls", "unimplemented"):
        if key in summary and not counts(summary[key]):
            return f"{key} is not a map of names to counts"
    files = summary.get("files", [])
    if not (type(files) is list and all(type(f) is list and len(f) == 3 and _str(f[0]) and type(f[1]) is str
                                        and _HEX_ID.match(f[1]) and _u(f[2]) for f in files)):
        return "files is not a list of [path, sha256, size]"
    libraries = summary.get("libraries", [])
    if not (type(libraries) is list and all(_str(p) for p in libraries)):
        return "libraries is not a list of paths"
    peers = summary.get("peers", {})
    if not (type(peers) is dict and len(peers) <= 1000 and all(_str(h, 64) and _u(n) for h, n in peers.items())):
        return "peers is not a map of host addresses to counts"
    return _processes_problem(summary.get("processes", []), summary.get("processes_omitted", 0))


_PROCESS_KEYS = frozenset({"pid", "ppid", "argv", "exe", "exit", "start_icount", "end_icount", "tids"})


def _processes_problem(processes: object, omitted: object) -> str | None:
    """The summary's process list (LinuxKernel.process_list), bounded as the kernel bounds it."""
    from vmm.linux.process import SUMMARY_ARGV, SUMMARY_PROCESSES, SUMMARY_TIDS
    if not _u(omitted):
        return "processes_omitted is not a count"
    if not (type(processes) is list and len(processes) <= SUMMARY_PROCESSES):
        return f"processes is not a list of at most {SUMMARY_PROCESSES} processes"
    seen = set()
    for row in processes:
        if not (type(row) is dict and (set(row) == _PROCESS_KEYS or set(row) == _PROCESS_KEYS | {"cut"})
                and row.get("cut", True) is True):
            return "a process is not a map of " + ", ".join(sorted(_PROCESS_KEYS))
        pid = row["pid"]
        if not (_u(pid, 1 << 31) and _u(row["ppid"], 1 << 31)):
            return f"process {pid!r:.20} has ids out of range"
        if pid in seen:
            return f"process {pid} appears twice"
        seen.add(pid)
        argv = row["argv"]
        if not (type(argv) is list and len(argv) <= SUMMARY_ARGV and all(_str(a, SUMMARY_ARGV) for a in argv)
                and _str(row["exe"])):
            return f"process {pid}'s argv or exe is malformed"
        tids = row["tids"]
        if not (type(tids) is list and len(tids) <= SUMMARY_TIDS and all(_u(t, 1 << 31) for t in tids)):
            return f"process {pid}'s thread ids are malformed"
        status, start, end = row["exit"], row["start_icount"], row["end_icount"]
        if not (_u(start) and (status is None and end is None or _u(status, 1 << 16) and _u(end) and end >= start)):
            return f"process {pid}'s exit status or icounts are malformed"
    return None

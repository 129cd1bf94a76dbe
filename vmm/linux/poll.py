"""Readiness: epoll, poll, select and eventfd, and what a waiting thread waits on.

A descriptor is either inside the program — a pipe, an eventfd, a regular file's
captured content — whose readiness the personality computes from its own state, or on
the host — a socket, a terminal, a file opened for writing — whose readiness is a host
answer, logged. An epoll instance keeps its interest list in the personality; its host
members are mirrored into a host epoll, so one host answer covers a thousand sockets.

An epoll keeps Linux's *ready list* for the descriptors inside the program, so that
epoll_wait reports them in the order Linux does (fs/eventpoll.c): an item joins the tail
when it is added or modified while ready, and whenever its file wakes its waiters with
events the item asks for (``wake``: a pipe or eventfd written, read or closed); a
report takes the list, drops items no longer ready, disables EPOLLONESHOT ones, puts
level-triggered ones back at the tail, and leaves what did not fit in ``maxevents`` at
the head. Edge-triggered items are reported once per wake-up. Host members follow the
inside ones in the order the host's epoll gives.

A call that finds nothing ready and may wait makes the thread wait on its descriptors
(``Blocked(["fds", ...])``, vmm/linux/tasks.py). When something inside the program
changes — a pipe written or closed, an eventfd counted — every such thread runs its
call again (``retry_waiters``); for host descriptors the recorder's scheduler polls the
host and says, in a SWITCH, when to run it again.
"""

from __future__ import annotations

import struct
from typing import Callable

from vmm.linux import abi
from vmm.linux.files import PIPE_BUF, OpenFile, pipe_ends, s32
from vmm.linux.signals import call_mask
from vmm.linux.tasks import Blocked

POLLIN, POLLPRI, POLLOUT, POLLERR, POLLHUP, POLLNVAL = 0x1, 0x2, 0x4, 0x8, 0x10, 0x20
POLLRDNORM, POLLWRNORM, POLLRDHUP = 0x40, 0x100, 0x2000
EPOLL_CTL_ADD, EPOLL_CTL_DEL, EPOLL_CTL_MOD = 1, 2, 3
EPOLLEXCLUSIVE, EPOLLWAKEUP, EPOLLONESHOT, EPOLLET = 1 << 28, 1 << 29, 1 << 30, 1 << 31
EPOLL_CLOEXEC = 0o2000000
EFD_SEMAPHORE, EFD_NONBLOCK, EFD_CLOEXEC = 1, 0o4000, 0o2000000
EVENTFD_MAX = (1 << 64) - 2
HOST_KINDS = ("host", "socket")
MAX_POLL_FDS = 1 << 16
ANON_STAT = [0, 0, 0o600, 1, 0, 0, 0, 0, 4096, 0, 0, 0, 0]


class _BadTimeout(Exception):
    """A timeout argument Linux rejects with EINVAL."""


def _timespec_ns(k, ptr: int) -> int | None:
    """A ``struct timespec *`` timeout in ns; NULL is None (wait for ever)."""
    if not ptr:
        return None
    ns = abi.read_timespec(k.read(ptr, 16))
    if ns is None:
        raise _BadTimeout
    return ns


def host_backed(f: OpenFile) -> bool:
    return f.kind in HOST_KINDS and f.handle is not None


def ready_inside(k, f: OpenFile, events: int) -> int:
    """poll revents of a descriptor inside the program."""
    kind = f.kind
    if kind == "pipe":
        readers, writers = pipe_ends(k, f.pipe)
        buffered = len(k.pipes.get(f.pipe, b""))
        if f.flags & abi.O_ACCMODE == 0:
            return (POLLIN if buffered else 0) | (0 if writers else POLLHUP)
        return (POLLOUT if buffered < PIPE_BUF else 0) | (0 if readers else POLLERR)
    if kind == "eventfd":
        value = f.data[0]
        return (POLLIN if value > 0 else 0) | (POLLOUT if value < EVENTFD_MAX else 0)
    if kind == "epoll":
        return POLLIN if _any_ready(k, f) else 0
    return POLLIN | POLLOUT | POLLRDNORM | POLLWRNORM


def wait_targets(k, fds: list, files=None) -> tuple[list[tuple[int, int]], bool]:
    """For the scheduler: ([(host handle, events)], whether something inside is ready now).
    ``files``: the descriptor table the numbers are in (the waiting task's process's; by
    default the one on the CPU)."""
    targets: list[tuple[int, int]] = []
    files = k.files if files is None else files
    for fd, events in fds:
        f = files.get(fd)
        if f is None:
            return targets, True
        if f.kind == "epoll":
            if f.handle is not None and any(e[3] is not None for e in f.data):
                targets.append((f.handle, POLLIN))
            if _any_ready(k, f):
                return targets, True
        elif host_backed(f):
            targets.append((f.handle, events))
        elif ready_inside(k, f, events) & (events | POLLERR | POLLHUP):
            return targets, True
    return targets, False


def _poll_now(k, wanted: list[tuple[int, int]]) -> list[int]:
    """revents for each (fd, events): inside ones computed, host ones in one host answer."""
    revents = [0] * len(wanted)
    host, where = [], []
    for i, (fd, events) in enumerate(wanted):
        if fd < 0:
            continue
        f = k.files.get(fd)
        if f is None:
            revents[i] = POLLNVAL
        elif host_backed(f):
            host.append([f.handle, events & 0xFFFF])
            where.append(i)
        elif f.kind == "epoll":
            revents[i] = ready_inside(k, f, events) & events
            if not revents[i] and f.handle is not None and any(e[3] is not None for e in f.data):
                host.append([f.handle, POLLIN])
                where.append(i)
        else:
            revents[i] = ready_inside(k, f, events) & (events | POLLERR | POLLHUP | POLLNVAL)
    if host:
        answer = k.host("poll", host)
        for index, value in answer:
            revents[where[index]] = value
    return revents


def _timeout_ms(ms: int) -> int | None:
    ms = s32(ms)
    return None if ms < 0 else ms * 1_000_000


# -- poll, ppoll, select, pselect6 -------------------------------------------------------------

def _poll(k, fds_ptr, nfds, timeout_ns):
    if nfds > MAX_POLL_FDS:
        return -abi.EINVAL
    raw = k.read(fds_ptr, 8 * nfds) if nfds else b""
    wanted = [(s32(struct.unpack_from("<i", raw, 8 * i)[0]), struct.unpack_from("<h", raw, 8 * i + 4)[0] & 0xFFFF)
              for i in range(nfds)]
    revents = _poll_now(k, wanted)
    ready = sum(1 for r in revents if r)
    if ready == 0 and timeout_ns != 0 and not k.timed_out:
        raise Blocked(["fds", [[fd, ev] for fd, ev in wanted if fd >= 0]], timeout_ns)
    if nfds:
        out = bytearray(raw)
        for i, value in enumerate(revents):
            struct.pack_into("<H", out, 8 * i + 6, value & 0xFFFF)
        k.write(fds_ptr, bytes(out))
    return ready


def sys_poll(k, fds, nfds, timeout):
    return _poll(k, fds, nfds, _timeout_ms(timeout))


def sys_ppoll(k, fds, nfds, tsp, sigmask, size):
    try:
        timeout = _timespec_ns(k, tsp)
        return call_mask(k, sigmask, size, lambda: _poll(k, fds, nfds, timeout))
    except _BadTimeout:
        return -abi.EINVAL


def _select(k, nfds, readfds, writefds, exceptfds, timeout_ns):
    nfds = s32(nfds)
    if not 0 <= nfds <= 1024:
        return -abi.EINVAL
    words = (nfds + 63) // 64
    sets = [int.from_bytes(k.read(p, 8 * words), "little") if p and words else 0
            for p in (readfds, writefds, exceptfds)]
    wanted = []
    for fd in range(nfds):
        events = (POLLIN if sets[0] >> fd & 1 else 0) | (POLLOUT if sets[1] >> fd & 1 else 0) \
            | (POLLPRI if sets[2] >> fd & 1 else 0)
        if events:
            if k.files.get(fd) is None:
                return -abi.EBADF
            wanted.append((fd, events))
    revents = _poll_now(k, wanted)
    out = [0, 0, 0]
    count = 0
    for (fd, events), r in zip(wanted, revents):
        for i, bit in enumerate((POLLIN | POLLHUP | POLLERR, POLLOUT | POLLERR, POLLPRI)):
            if events & (POLLIN, POLLOUT, POLLPRI)[i] and r & bit:
                out[i] |= 1 << fd
                count += 1
    if count == 0 and timeout_ns != 0 and not k.timed_out:
        raise Blocked(["fds", [[fd, ev] for fd, ev in wanted]], timeout_ns)
    for p, value in zip((readfds, writefds, exceptfds), out):
        if p and words:
            k.write(p, value.to_bytes(8 * words, "little"))
    return count


def sys_select(k, nfds, readfds, writefds, exceptfds, timeout):
    ns = None
    if timeout:
        sec, usec = struct.unpack("<qq", k.read(timeout, 16))
        if sec < 0 or not 0 <= usec < 1_000_000:
            return -abi.EINVAL
        ns = sec * 1_000_000_000 + usec * 1000
    return _select(k, nfds, readfds, writefds, exceptfds, ns)


def sys_pselect6(k, nfds, readfds, writefds, exceptfds, timeout, sigmask):
    try:
        timeout_ns = _timespec_ns(k, timeout)
        mask, size = struct.unpack("<QQ", k.read(sigmask, 16)) if sigmask else (0, 0)
        return call_mask(k, mask, size, lambda: _select(k, nfds, readfds, writefds, exceptfds, timeout_ns))
    except _BadTimeout:
        return -abi.EINVAL


# -- epoll ---------------------------------------------------------------------------------------
# An epoll file's data: its interest list, [[fd, events, data, host handle or None, ready, file], ...];
# ready is None, or the item's place on the ready list (the list is the items in that order);
# file is the open file description watched (as Linux's epitem names the file, not the
# number: the item outlives the descriptor until the file itself is released).
EP_PRIVATE_BITS = EPOLLWAKEUP | EPOLLONESHOT | EPOLLET | EPOLLEXCLUSIVE
_READY, _FILE = 4, 5


def _link_tail(ep: OpenFile, entry: list) -> bool:
    """Put an item at the ready list's tail unless it is on it already; True if it joined."""
    if entry[_READY] is not None:
        return False
    entry[_READY] = 1 + max((e[_READY] for e in ep.data if e[_READY] is not None), default=0)
    return True


def wake(k, woken: Callable[[OpenFile], bool], flags: int = 0, depth: int = 0) -> None:
    """A file inside the program woke its waiters with ``flags`` (0: any event): every epoll
    item watching it that asks for one of them joins its ready list (ep_poll_callback);
    an epoll whose list grew wakes the epolls watching it in turn."""
    if depth > 4:                                # Linux's EP_MAX_NESTS
        return
    if depth == 0:
        k.retry_waiters(woken)
    for ep in [f for f in k.open_files() if f.kind == "epoll"]:
        joined = False
        for entry in reversed(ep.data):          # newest first, as on the file's wait queue
            if entry[3] is not None or not entry[1] & ~EP_PRIVATE_BITS:
                continue                         # a host member, or a disabled one-shot
            if flags and not flags & entry[1]:
                continue
            f = entry[_FILE]
            if f is not None and woken(f):
                joined |= _link_tail(ep, entry)
        if joined:
            k.retry_waiters(lambda f, ep=ep: f is ep)
            wake(k, lambda f, ep=ep: f is ep, POLLIN, depth + 1)


def _any_ready(k, ep: OpenFile) -> bool:
    """An item on the ready list is ready now (what a poll of the epoll itself reports)."""
    return any(e[_READY] is not None and _entry_ready(k, e) for e in ep.data if e[3] is None)

def sys_epoll_create(k, size):
    return -abi.EINVAL if s32(size) <= 0 else sys_epoll_create1(k, 0)


def sys_epoll_create1(k, flags):
    if flags & ~EPOLL_CLOEXEC:
        return -abi.EINVAL
    handle = k.host("epcreate")
    if handle < 0:
        return handle
    f = OpenFile("epoll", "anon_inode:[eventpoll]", abi.O_RDWR, stat=list(ANON_STAT), handle=handle, data=[])
    fd = k.files.install(f, cloexec=bool(flags & EPOLL_CLOEXEC))
    if fd < 0:
        k.host("close", handle)
    return fd


def sys_epoll_ctl(k, epfd, op, fd, event):
    ep = k.files.get(epfd)
    target = k.files.get(fd)
    if ep is None or target is None:
        return -abi.EBADF
    if ep.kind != "epoll" or target is ep:
        return -abi.EINVAL
    if target.kind in ("blob", "dir", "synth", "null", "zero"):
        return -abi.EPERM                                  # regular files cannot be watched
    fd, op = s32(fd), s32(op)
    entry = next((e for e in ep.data if e[0] == fd and e[_FILE] is target), None)
    events = data = 0
    if op in (EPOLL_CTL_ADD, EPOLL_CTL_MOD):
        events, data = struct.unpack("<IQ", k.read(event, 12))
        events |= POLLERR | POLLHUP
    if op == EPOLL_CTL_ADD:
        if entry is not None:
            return -abi.EEXIST
        handle = target.handle if host_backed(target) else None
        if handle is not None:
            result = k.host("epctl", ep.handle, EPOLL_CTL_ADD, handle, events & ~(EPOLLEXCLUSIVE | EPOLLWAKEUP))
            if result < 0:
                return result
        entry = [fd, events, data, handle, None, target]
        ep.data.append(entry)
        if handle is None and _entry_ready(k, entry):
            _link_tail(ep, entry)
            wake(k, lambda f: f is ep, POLLIN)
        return 0
    if entry is None:
        return -abi.ENOENT
    if op == EPOLL_CTL_DEL:
        if entry[3] is not None:
            k.host("epctl", ep.handle, EPOLL_CTL_DEL, entry[3], 0)
        ep.data.remove(entry)
        return 0
    if op == EPOLL_CTL_MOD:
        if entry[3] is not None:
            result = k.host("epctl", ep.handle, EPOLL_CTL_MOD, entry[3], events & ~(EPOLLEXCLUSIVE | EPOLLWAKEUP))
            if result < 0:
                return result
        entry[1], entry[2] = events, data
        if entry[3] is None and _entry_ready(k, entry) and _link_tail(ep, entry):
            wake(k, lambda f: f is ep, POLLIN)
        return 0
    return -abi.EINVAL


def _entry_ready(k, entry: list) -> int:
    f = entry[_FILE]
    if f is None or entry[1] & 0xFFFF == 0:
        return 0
    return ready_inside(k, f, entry[1]) & (entry[1] | POLLERR | POLLHUP)


def _epoll_wait(k, epfd, events_ptr, maxevents, timeout_ns):
    ep = k.files.get(epfd)
    if ep is None:
        return -abi.EBADF
    if ep.kind != "epoll":
        return -abi.EINVAL
    maxevents = s32(maxevents)
    if not 0 < maxevents <= 1 << 20:
        return -abi.EINVAL
    out: list[tuple[int, int]] = []
    linked = sorted((e for e in ep.data if e[3] is None and e[_READY] is not None), key=lambda e: e[_READY])
    if linked:
        tail = linked[-1][_READY]
        for entry in linked:
            if len(out) >= maxevents:
                break                            # what did not fit stays ahead of the re-added
            entry[_READY] = None
            revents = _entry_ready(k, entry)
            if not revents:
                continue
            out.append((revents, entry[2]))
            if entry[1] & EPOLLONESHOT:
                entry[1] &= EP_PRIVATE_BITS
            elif not entry[1] & EPOLLET:
                tail += 1
                entry[_READY] = tail
    if len(out) < maxevents and any(e[3] is not None for e in ep.data):
        by_handle = {e[3]: e for e in ep.data if e[3] is not None}
        answer = k.host("epwait", ep.handle, maxevents - len(out))
        if isinstance(answer, int):
            return answer
        for handle, revents in answer:
            entry = by_handle.get(handle)
            if entry is not None:
                out.append((revents, entry[2]))
                if entry[1] & EPOLLONESHOT:
                    entry[1] &= EP_PRIVATE_BITS
    if not out and timeout_ns != 0 and not k.timed_out:
        raise Blocked(["fds", [[s32(epfd), POLLIN]]], timeout_ns)
    if out:
        k.write(events_ptr, b"".join(struct.pack("<IQ", ev & 0xFFFFFFFF, data) for ev, data in out))
    return len(out)


def sys_epoll_wait(k, epfd, events, maxevents, timeout):
    return _epoll_wait(k, epfd, events, maxevents, _timeout_ms(timeout))


def sys_epoll_pwait(k, epfd, events, maxevents, timeout, sigmask, size):
    return call_mask(k, sigmask, size, lambda: _epoll_wait(k, epfd, events, maxevents, _timeout_ms(timeout)))


def sys_epoll_pwait2(k, epfd, events, maxevents, timeout, sigmask, size):
    try:
        timeout_ns = _timespec_ns(k, timeout)
        return call_mask(k, sigmask, size, lambda: _epoll_wait(k, epfd, events, maxevents, timeout_ns))
    except _BadTimeout:
        return -abi.EINVAL


def forget_file(k, gone: OpenFile) -> None:
    """The last descriptor of a file closed (in every process): Linux drops it from every
    epoll's interest list."""
    for f in k.open_files():
        if f.kind == "epoll":
            f.data[:] = [e for e in f.data if e[_FILE] is not gone]


# -- eventfd -----------------------------------------------------------------------------------
# An eventfd's data: [counter, semaphore].

def sys_eventfd(k, initval):
    return sys_eventfd2(k, initval, 0)


def sys_eventfd2(k, initval, flags):
    if flags & ~(EFD_SEMAPHORE | EFD_NONBLOCK | EFD_CLOEXEC):
        return -abi.EINVAL
    f = OpenFile("eventfd", "anon_inode:[eventfd]", abi.O_RDWR | (flags & EFD_NONBLOCK), stat=list(ANON_STAT),
                 data=[initval & 0xFFFFFFFF, int(bool(flags & EFD_SEMAPHORE))])
    return k.files.install(f, cloexec=bool(flags & EFD_CLOEXEC))


def eventfd_read(k, f: OpenFile, fd: int, count: int) -> bytes | int:
    if count < 8:
        return -abi.EINVAL
    value, semaphore = f.data
    if value == 0:
        if f.flags & abi.O_NONBLOCK:
            return -abi.EAGAIN
        raise Blocked(["fds", [[s32(fd), POLLIN]]])
    taken = 1 if semaphore else value
    f.data[0] = value - taken
    wake(k, lambda o: o is f, POLLOUT)
    return struct.pack("<Q", taken)


def eventfd_write(k, f: OpenFile, fd: int, data: bytes) -> int:
    if len(data) < 8:
        return -abi.EINVAL
    add = struct.unpack_from("<Q", data)[0]
    if add == (1 << 64) - 1:
        return -abi.EINVAL
    if f.data[0] + add > EVENTFD_MAX:
        if f.flags & abi.O_NONBLOCK:
            return -abi.EAGAIN
        raise Blocked(["fds", [[s32(fd), POLLOUT]]])
    f.data[0] += add
    wake(k, lambda o: o is f, POLLIN)
    return 8

"""Readiness: which descriptors a waiting thread waits on, and whether they are ready."""

from __future__ import annotations

POLLIN, POLLPRI, POLLOUT, POLLERR, POLLHUP, POLLNVAL = 0x1, 0x2, 0x4, 0x8, 0x10, 0x20


def wait_targets(k, fds: list) -> tuple[list[tuple[int, int]], bool]:
    """([(host handle, poll events)], whether something inside the program is ready now)."""
    targets: list[tuple[int, int]] = []
    for fd, events in fds:
        f = k.files.get(fd)
        if f is None:
            return targets, True
        if f.handle is not None and f.kind in ("host", "socket"):
            targets.append((f.handle, events))
        else:
            return targets, True
    return targets, False
